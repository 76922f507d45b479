use super::{rng, uniform};
use crate::SimdLevel;
use crate::activation::map_in_place;
use crate::math::exp2;
use crate::simd::dispatch;

fn exp2_at(level: SimdLevel, x: &mut [f32]) {
    dispatch!(level, |s| map_in_place(
        s,
        x,
        #[inline(always)]
        |v| exp2(s, v)
    ));
}

/// The softmax's `2^y` to within 2 ulp of the exact power over the whole range that scores
/// reach (the max's weight is exactly 1), 0 where the power is below the smallest normal float
/// or the input is `-inf`, and saturated rather than wrapped above `2^127`.
#[test]
fn exp2_is_within_two_ulp_and_exact_at_the_ends() {
    let mut inputs = uniform(&mut rng(2), 10_000, -126.0, 127.0);
    inputs.extend(uniform(&mut rng(3), 10_000, -1.0, 1.0));
    inputs.extend([0.0, -0.0, 0.5, -0.5, 1.0, -1.0, -126.0, 127.0]);
    for level in SimdLevel::supported() {
        let mut got = inputs.clone();
        exp2_at(level, &mut got);
        for (&y, &g) in inputs.iter().zip(&got) {
            let exact = 2f64.powf(f64::from(y));
            let ulp = f64::from(f32::EPSILON) * exact;
            assert!(
                (f64::from(g) - exact).abs() <= 2.0 * ulp,
                "{level}: 2^{y} = {g}, exact {exact}"
            );
        }
        let mut ends = [0.0, f32::NEG_INFINITY, -127.0, -1e9, 200.0, f32::INFINITY];
        exp2_at(level, &mut ends);
        assert_eq!(ends[..4], [1.0, 0.0, 0.0, 0.0], "{level}");
        assert_eq!(ends[4..], [2f32.powi(127); 2], "{level}");
    }
}
