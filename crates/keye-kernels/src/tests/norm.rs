use super::{assert_close, rng, uniform};
use crate::norm::{layer_norm_at, rms_norm_at};
use crate::{KernelError, SimdLevel, layer_norm_reference, rms_norm_reference};

/// Allowed error relative to the output magnitude `|w| · max(1, |x̂|)`.
const RELATIVE_TOLERANCE: f32 = 1e-5;

const SHAPES: [(usize, usize); 7] = [
    (1, 1),
    (3, 5),
    (2, 16),
    (4, 17),
    (5, 72),
    (40, 1152),
    (2, 4099),
];

#[test]
fn rms_norm_matches_reference() {
    for level in SimdLevel::supported() {
        for (rows, dim) in SHAPES {
            let mut rng = rng((rows * dim) as u64);
            let x = uniform(&mut rng, rows * dim, -3.0, 3.0);
            let weight = uniform(&mut rng, dim, -2.0, 2.0);
            let mut got = vec![f32::NAN; rows * dim];
            let mut expected = vec![0.0; rows * dim];
            rms_norm_at(level, &x, &weight, 1e-6, &mut got).unwrap();
            rms_norm_reference(&x, &weight, 1e-6, &mut expected).unwrap();
            let scale = |i: usize| weight[i % dim].abs() * expected[i].abs().max(1.0);
            assert_close(
                &got,
                &expected,
                scale,
                RELATIVE_TOLERANCE,
                &format!("rms_norm {level} {rows}×{dim}"),
            );
        }
    }
}

#[test]
fn layer_norm_matches_reference_even_off_centre() {
    for level in SimdLevel::supported() {
        for (rows, dim) in SHAPES {
            for offset in [0.0, 300.0] {
                let mut rng = rng((rows * dim) as u64 + 1);
                let x: Vec<f32> = uniform(&mut rng, rows * dim, -3.0, 3.0)
                    .into_iter()
                    .map(|v| v + offset)
                    .collect();
                let weight = uniform(&mut rng, dim, -2.0, 2.0);
                let bias = uniform(&mut rng, dim, -1.0, 1.0);
                let mut got = vec![f32::NAN; rows * dim];
                let mut expected = vec![0.0; rows * dim];
                layer_norm_at(level, &x, &weight, &bias, 1e-6, &mut got).unwrap();
                layer_norm_reference(&x, &weight, &bias, 1e-6, &mut expected).unwrap();
                // Centring a value near 300 loses log2(300/3) ≈ 7 bits before any kernel runs.
                let conditioning = 1.0 + offset / 3.0;
                let scale =
                    |i: usize| conditioning * (weight[i % dim].abs() * 3.0 + bias[i % dim].abs());
                let context = format!("layer_norm {level} {rows}×{dim} offset {offset}");
                assert_close(&got, &expected, scale, RELATIVE_TOLERANCE, &context);
            }
        }
    }
}

#[test]
fn norms_reject_ragged_rows() {
    let mut out = [0.0; 7];
    let err = crate::rms_norm(&[0.0; 7], &[1.0; 2], 1e-6, &mut out).unwrap_err();
    assert!(matches!(
        err,
        KernelError::LengthMismatch { operand: "x", .. }
    ));
    let err = crate::layer_norm(&[0.0; 6], &[1.0; 2], &[0.0; 3], 1e-6, &mut out[..6]).unwrap_err();
    assert!(matches!(
        err,
        KernelError::LengthMismatch {
            operand: "bias",
            ..
        }
    ));
    let err = crate::rms_norm(&[], &[], 1e-6, &mut []).unwrap_err();
    assert!(matches!(err, KernelError::ZeroDimension { .. }));
}
