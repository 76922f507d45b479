use half::bf16;

use super::{assert_close, rng, uniform};
use crate::bf16_products::{bf16_bits, linear_bf16_products_at, round_to_bf16};
use crate::linear::linear_at;
use crate::{QuantType, SimdLevel, Weights, linear_bf16_products_reference, quantize};

/// As for `linear`: relative to `Σ|bf16(x)·w| + |bias|`, far above any summation order's effect
/// and far below a wrong, missing or unrounded term's.
const RELATIVE_TOLERANCE: f32 = 1e-5;

fn check(level: SimdLevel, seed: u64, m: usize, k: usize, n: usize, with_bias: bool) {
    let mut rng = rng(seed);
    let x = uniform(&mut rng, m * k, -1.0, 1.0);
    let w: Vec<bf16> = uniform(&mut rng, n * k, -1.0, 1.0)
        .into_iter()
        .map(bf16::from_f32)
        .collect();
    let bias = with_bias.then(|| uniform(&mut rng, n, -1.0, 1.0));
    let weights = &w;
    let mut got = vec![f32::NAN; m * n];
    let mut expected = vec![0.0; m * n];
    let w = Weights::Bf16(&w);
    linear_bf16_products_at(level, &x, m, k, w, n, bias.as_deref(), &mut got).unwrap();
    linear_bf16_products_reference(&x, m, k, w, n, bias.as_deref(), &mut expected).unwrap();
    let magnitude = |index: usize| {
        let (i, j) = (index / n, index % n);
        let dot: f32 = (0..k)
            .map(|c| (round_to_bf16(x[i * k + c]) * weights[j * k + c].to_f32()).abs())
            .sum();
        dot + bias.as_ref().map_or(0.0, |b| b[j].abs())
    };
    let context = format!("bf16 products {level} m={m} k={k} n={n} bias={with_bias}");
    assert_close(&got, &expected, magnitude, RELATIVE_TOLERANCE, &context);
}

#[test]
fn matches_reference_for_every_level_and_shape() {
    // Rows below, at and past the panel halves and tiles; odd depths (a half-empty last pair);
    // weight-row counts that leave partial tiles; AMX blocks with a partial depth step and a
    // last block that overlaps the one before, read as stored (up to 3 panels) and packed.
    let shapes = [
        (1, 1),
        (2, 8),
        (3, 9),
        (33, 17),
        (64, 40),
        (129, 7),
        (45, 70),
        (96, 33),
    ];
    let ms = [1, 7, 16, 17, 32, 33, 48, 70, 129];
    for level in SimdLevel::supported() {
        for (index, &(k, n)) in shapes.iter().enumerate() {
            for &m in &ms {
                check(
                    level,
                    index as u64 * 37 + m as u64,
                    m,
                    k,
                    n,
                    (m + n) % 2 == 1,
                );
            }
        }
    }
}

#[test]
fn long_rows_and_many_tasks_stay_within_tolerance() {
    for level in SimdLevel::supported() {
        check(level, 5, 45, 4099, 21, true);
        check(level, 6, 130, 256, 1000, false);
        // More panels (35 of 256 KiB) than one pass over the weight tiles covers.
        check(level, 7, 1100, 4096, 9, true);
    }
}

#[test]
fn activations_are_rounded_like_half() {
    let mut rng = rng(9);
    let mut values = uniform(&mut rng, 100_000, -3.0e5, 3.0e5);
    // Exact ties both ways, the largest finite values, infinities, zeros and a denormal.
    values.extend([
        f32::from_bits(0x3f80_8000),
        f32::from_bits(0x3f81_8000),
        f32::from_bits(0xbf80_8000),
        f32::MAX,
        f32::MIN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        0.0,
        -0.0,
        f32::from_bits(1),
    ]);
    for &v in &values {
        assert_eq!(
            round_to_bf16(v).to_bits(),
            bf16::from_f32(v).to_f32().to_bits(),
            "{v:e}"
        );
    }
    assert!(round_to_bf16(f32::NAN).is_nan());
    assert!(round_to_bf16(-f32::NAN).is_nan());
    values.extend([f32::NAN, -f32::NAN, f32::from_bits(0x7f80_0001)]);
    #[cfg(target_arch = "x86_64")]
    if SimdLevel::supported().contains(&SimdLevel::Avx512) {
        // The vector rounding of the many-row products gives the same bits, NaNs included.
        for chunk in values.chunks(16) {
            let mut inputs = [0.0f32; 16];
            inputs[..chunk.len()].copy_from_slice(chunk);
            let mut lanes = [0u32; 16];
            // SAFETY: AVX-512 F is supported; 16 floats in, 16 words out.
            unsafe {
                let rounded = crate::bf16_products::x86::rounded_bits(
                    std::arch::x86_64::_mm512_loadu_ps(inputs.as_ptr()),
                );
                std::arch::x86_64::_mm512_storeu_si512(lanes.as_mut_ptr().cast(), rounded);
            }
            for (&v, &lane) in chunk.iter().zip(&lanes) {
                assert_eq!((lane >> 16) as u16, bf16_bits(v), "{v:e}");
            }
        }
    }
}

#[test]
fn rounding_changes_the_result_where_activations_are_not_bf16() {
    // The kernel must round: with activations between two bf16 values, the exact product
    // differs from the rounded one by far more than the tolerance.
    for level in SimdLevel::supported() {
        for m in [1, 8, 40] {
            let x = vec![1.0 + 1.0 / 512.0; m];
            let mut got = vec![0.0; m];
            let one = Weights::Bf16(&[bf16::ONE]);
            linear_bf16_products_at(level, &x, m, 1, one, 1, None, &mut got).unwrap();
            assert_eq!(got, vec![1.0; m], "{level} m={m}");
        }
    }
}

#[test]
fn streamed_rows_equal_one_row_calls_bit_for_bit() {
    // Speculative decoding verifies up to STREAMING_MAX_ROWS rows in one call and needs each
    // row's result to equal a one-token step's.
    let (k, n) = (100, 23);
    let mut rng = rng(12);
    let x = uniform(&mut rng, crate::STREAMING_MAX_ROWS * k, -1.0, 1.0);
    let w: Vec<bf16> = uniform(&mut rng, n * k, -1.0, 1.0)
        .into_iter()
        .map(bf16::from_f32)
        .collect();
    let bias = uniform(&mut rng, n, -1.0, 1.0);
    let w = Weights::Bf16(&w);
    for level in SimdLevel::supported() {
        let single: Vec<Vec<f32>> = x
            .chunks_exact(k)
            .map(|row| {
                let mut out = vec![0.0; n];
                linear_bf16_products_at(level, row, 1, k, w, n, Some(&bias), &mut out).unwrap();
                out
            })
            .collect();
        for m in 2..=crate::STREAMING_MAX_ROWS {
            let mut out = vec![0.0; m * n];
            linear_bf16_products_at(level, &x[..m * k], m, k, w, n, Some(&bias), &mut out).unwrap();
            for (i, row) in out.chunks_exact(n).enumerate() {
                let same = row
                    .iter()
                    .zip(&single[i])
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{level} m={m} row {i} differs from its one-row call");
            }
        }
    }
}

#[test]
fn quantized_weights_on_amx_match_the_rounded_decoded_reference() {
    // On AMX the blocks are decoded and rounded to bf16 in the tiles' packing: the result must be
    // the rounded activations times the rounded decoded weights. Everywhere else (and below
    // PRODUCT_MIN_ROWS rows) the call is `linear` on the quantized weights, bit for bit.
    // Shapes: one block of weight rows, several with an overlapping last one, one and several
    // panels per pass, every format's block size.
    let shapes = [(17, 256, 32), (40, 512, 45), (129, 256, 70), (300, 768, 33)];
    for ty in QuantType::ALL {
        for (index, &(m, k, n)) in shapes.iter().enumerate() {
            let mut rng = rng(40 + index as u64);
            let x = uniform(&mut rng, m * k, -1.0, 1.0);
            let values = uniform(&mut rng, n * k, -1.0, 1.0);
            let mut data = vec![0u8; n * ty.bytes_for(k).unwrap()];
            quantize(ty, &values, &mut data).unwrap();
            let w = Weights::Quantized(ty, &data);
            let bias = (index % 2 == 1).then(|| uniform(&mut rng, n, -1.0, 1.0));
            for level in SimdLevel::supported() {
                let context = format!("quantized bf16 products {ty} {level} m={m} k={k} n={n}");
                let mut got = vec![f32::NAN; m * n];
                linear_bf16_products_at(level, &x, m, k, w, n, bias.as_deref(), &mut got).unwrap();
                let mut expected = vec![0.0; m * n];
                if level == SimdLevel::Amx {
                    linear_bf16_products_reference(&x, m, k, w, n, bias.as_deref(), &mut expected)
                        .unwrap();
                    let mut decoded = vec![0.0; n * k];
                    crate::dequantize(ty, &data, &mut decoded).unwrap();
                    let magnitude = |index: usize| {
                        let (i, j) = (index / n, index % n);
                        let dot: f32 = (0..k)
                            .map(|c| (x[i * k + c] * decoded[j * k + c]).abs())
                            .sum();
                        dot + bias.as_ref().map_or(0.0, |b| b[j].abs())
                    };
                    assert_close(&got, &expected, magnitude, RELATIVE_TOLERANCE, &context);
                } else {
                    linear_at(level, &x, m, k, w, n, bias.as_deref(), &mut expected).unwrap();
                    assert_eq!(got, expected, "{context}");
                }
            }
        }
    }
}

#[test]
fn padding_is_zero_after_a_call_with_infinite_activations() {
    // The panels are reused without clearing; their padding (rows past m, depth past k) must be
    // written as zeros, or an infinity left by an earlier call meets a zero weight and gives NaN.
    for level in SimdLevel::supported() {
        let (m, k, n) = (64, 64, 32);
        let x = vec![f32::INFINITY; m * k];
        let w = vec![bf16::ONE; n * k];
        let mut out = vec![0.0; m * n];
        linear_bf16_products_at(level, &x, m, k, Weights::Bf16(&w), n, None, &mut out).unwrap();
        check(level, 77, 40, 45, 33, false);
    }
}
