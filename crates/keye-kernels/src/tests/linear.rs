use half::bf16;

use super::{assert_close, rng, uniform};
use crate::linear::linear_at;
use crate::{KernelError, SimdLevel, Weights, linear_reference};

/// Allowed error relative to `Σ|x·w| + |bias|`: f32 accumulation of up to ~10⁴ terms in any order
/// stays well inside it; a wrong element or a dropped tail is orders of magnitude above it.
const RELATIVE_TOLERANCE: f32 = 1e-5;

struct Case {
    m: usize,
    k: usize,
    n: usize,
    x: Vec<f32>,
    w: Vec<f32>,
    w_bf16: Vec<bf16>,
    bias: Option<Vec<f32>>,
}

impl Case {
    fn new(seed: u64, m: usize, k: usize, n: usize, with_bias: bool) -> Case {
        let mut rng = rng(seed);
        let x = uniform(&mut rng, m * k, -1.0, 1.0);
        let w_bf16: Vec<bf16> = uniform(&mut rng, n * k, -1.0, 1.0)
            .into_iter()
            .map(bf16::from_f32)
            .collect();
        // Full-precision f32 weights, so the f32 path is not only ever fed bf16-exact values.
        let w = uniform(&mut rng, n * k, -1.0, 1.0);
        let bias = with_bias.then(|| uniform(&mut rng, n, -1.0, 1.0));
        Case {
            m,
            k,
            n,
            x,
            w,
            w_bf16,
            bias,
        }
    }

    fn weights(&self, bf16_weights: bool) -> Weights<'_> {
        if bf16_weights {
            Weights::Bf16(&self.w_bf16)
        } else {
            Weights::F32(&self.w)
        }
    }

    fn check(&self, level: SimdLevel, bf16_weights: bool) {
        let (m, k, n) = (self.m, self.k, self.n);
        let w = self.weights(bf16_weights);
        let mut got = vec![f32::NAN; m * n];
        let mut expected = vec![0.0; m * n];
        linear_at(level, &self.x, m, k, w, n, self.bias.as_deref(), &mut got).unwrap();
        linear_reference(&self.x, m, k, w, n, self.bias.as_deref(), &mut expected).unwrap();
        let magnitude = |index: usize| {
            let (i, j) = (index / n, index % n);
            let weight = |c: usize| {
                if bf16_weights {
                    self.w_bf16[j * k + c].to_f32()
                } else {
                    self.w[j * k + c]
                }
            };
            let dot: f32 = (0..k).map(|c| (self.x[i * k + c] * weight(c)).abs()).sum();
            dot + self.bias.as_ref().map_or(0.0, |b| b[j].abs())
        };
        let context = format!(
            "linear {level} m={m} k={k} n={n} bf16={bf16_weights} bias={}",
            self.bias.is_some()
        );
        assert_close(&got, &expected, magnitude, RELATIVE_TOLERANCE, &context);
    }
}

#[test]
fn matches_reference_for_every_level_shape_and_dtype() {
    let shapes = [
        (1, 1),
        (5, 3),
        (15, 9),
        (16, 4),
        (17, 33),
        (100, 7),
        (257, 129),
    ];
    let ms = [1, 2, 3, 7, 16, 17, 64, 300];
    for level in SimdLevel::supported() {
        for (index, &(k, n)) in shapes.iter().enumerate() {
            for &m in &ms {
                let case = Case::new(index as u64 * 31 + m as u64, m, k, n, (m + k) % 2 == 0);
                case.check(level, true);
                case.check(level, false);
            }
        }
    }
}

#[test]
fn long_rows_accumulate_within_tolerance() {
    for level in SimdLevel::supported() {
        for m in [1, 4, 17] {
            Case::new(7, m, 4099, 13, true).check(level, true);
        }
    }
}

#[test]
fn streaming_bf16_path_equals_f32_path_on_widened_weights() {
    // The bf16 kernel must only widen; same arithmetic on the widened matrix is bit-identical.
    let case = Case::new(3, 5, 77, 21, true);
    let widened: Vec<f32> = case.w_bf16.iter().map(|w| w.to_f32()).collect();
    for level in SimdLevel::supported() {
        let mut from_bf16 = vec![0.0; 5 * 21];
        let mut from_f32 = vec![0.0; 5 * 21];
        linear_at(
            level,
            &case.x,
            5,
            77,
            Weights::Bf16(&case.w_bf16),
            21,
            case.bias.as_deref(),
            &mut from_bf16,
        )
        .unwrap();
        linear_at(
            level,
            &case.x,
            5,
            77,
            Weights::F32(&widened),
            21,
            case.bias.as_deref(),
            &mut from_f32,
        )
        .unwrap();
        assert_eq!(from_bf16, from_f32, "{level}");
    }
}

#[test]
fn streamed_rows_equal_one_row_calls_bit_for_bit() {
    // Speculative decoding verifies up to STREAMING_MAX_ROWS rows in one call and needs each
    // row's result to equal a one-token step's. Depth 600 crosses the kernel's depth chunks and
    // leaves a partial vector; 13 columns leave a partial tile of weight rows.
    let m = crate::STREAMING_MAX_ROWS;
    let case = Case::new(11, m, 600, 13, true);
    for level in SimdLevel::supported() {
        for bf16_weights in [false, true] {
            let w = case.weights(bf16_weights);
            let bias = case.bias.as_deref();
            let single: Vec<f32> = case
                .x
                .chunks_exact(case.k)
                .flat_map(|row| {
                    let mut out = vec![0.0; case.n];
                    linear_at(level, row, 1, case.k, w, case.n, bias, &mut out).unwrap();
                    out
                })
                .collect();
            for rows in 2..=m {
                let mut out = vec![0.0; rows * case.n];
                let x = &case.x[..rows * case.k];
                linear_at(level, x, rows, case.k, w, case.n, bias, &mut out).unwrap();
                let expected = &single[..rows * case.n];
                let same = out
                    .iter()
                    .zip(expected)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{level} bf16={bf16_weights} rows={rows}");
            }
        }
    }
}

#[test]
fn panels_cover_wide_matrices() {
    // Enough activation rows for the GEMM path, more weight rows than fit one widened panel
    // (2048 at k = 4096), and a partial last panel.
    let (k, n) = (4096, 2048 + 40);
    let case = Case::new(11, 130, k, n, true);
    case.check(SimdLevel::detected(), true);
}

#[test]
fn empty_inner_dimension_gives_bias() {
    let bias = [1.0, -2.0, 3.0];
    let mut out = [f32::NAN; 6];
    linear_at(
        SimdLevel::detected(),
        &[],
        2,
        0,
        Weights::F32(&[]),
        3,
        Some(&bias),
        &mut out,
    )
    .unwrap();
    assert_eq!(out, [1.0, -2.0, 3.0, 1.0, -2.0, 3.0]);
}

#[test]
fn rejects_inconsistent_lengths() {
    let x = [0.0; 6];
    let w = [bf16::ZERO; 12];
    let mut out = [0.0; 8];
    let err = crate::linear(&x, 2, 3, Weights::Bf16(&w), 4, None, &mut out[..7]).unwrap_err();
    assert_eq!(
        err,
        KernelError::LengthMismatch {
            kernel: "linear",
            operand: "out",
            expected: 8,
            actual: 7
        }
    );
    let err = crate::linear(&x, 2, 3, Weights::Bf16(&w[..11]), 4, None, &mut out).unwrap_err();
    assert!(matches!(
        err,
        KernelError::LengthMismatch { operand: "w", .. }
    ));
    let err = crate::linear(&x, 2, 3, Weights::Bf16(&w), 4, Some(&[0.0; 3]), &mut out).unwrap_err();
    assert!(matches!(
        err,
        KernelError::LengthMismatch {
            operand: "bias",
            ..
        }
    ));
    let err = crate::linear(&x, usize::MAX, 3, Weights::Bf16(&w), 4, None, &mut out).unwrap_err();
    assert!(matches!(err, KernelError::SizeOverflow { .. }));
}
