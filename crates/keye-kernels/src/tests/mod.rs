//! Every kernel against its reference twin, at every SIMD level this machine has.

mod activation;
mod attention;
mod bf16_products;
mod kv_compact;
mod linear;
mod math;
mod norm;
mod quant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub(crate) fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

pub(crate) fn uniform(rng: &mut StdRng, len: usize, low: f32, high: f32) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(low..high)).collect()
}

/// Asserts `|got - expected| <= tolerance · scale[i]` element-wise, naming the first failure.
pub(crate) fn assert_close(
    got: &[f32],
    expected: &[f32],
    scale: impl Fn(usize) -> f32,
    tolerance: f32,
    context: &str,
) {
    assert_eq!(got.len(), expected.len(), "{context}: lengths differ");
    for (i, (&g, &e)) in got.iter().zip(expected).enumerate() {
        let bound = tolerance * scale(i);
        assert!(
            (g - e).abs() <= bound,
            "{context}: element {i}: got {g}, expected {e} (|diff| {} > {bound})",
            (g - e).abs()
        );
    }
}

#[test]
fn detected_level_is_supported_and_scalar_always_is() {
    let supported = crate::SimdLevel::supported();
    assert_eq!(supported.first(), Some(&crate::SimdLevel::Scalar));
    assert!(crate::SimdLevel::detected().is_supported());
}
