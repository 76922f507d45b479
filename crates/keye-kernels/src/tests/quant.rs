//! GGML block formats: metadata, our quantizers and dequantizers against candle's independent
//! implementation, round-trip error bounds, and `linear` on quantized weights.

use candle_core::quantized::k_quants::{BlockQ4_0, BlockQ4K, BlockQ8_0, GgmlType};
use rand::Rng;

use super::{rng, uniform};
use crate::linear::linear_at;
use crate::quant::intdot::IntLevel;
use crate::quant::matmul::gemv;
use crate::{KernelError, QuantType, SimdLevel, Weights, dequantize, linear_reference, quantize};

/// Rows with the features that exercise quantizer edge cases: mixed magnitudes per block, an
/// all-zero block, a constant block, all-positive and all-negative blocks, exact ties.
fn awkward_rows(seed: u64, blocks_of_256: usize) -> Vec<f32> {
    let mut rng = rng(seed);
    let mut values = Vec::with_capacity(blocks_of_256 * 256);
    for block in 0..blocks_of_256 {
        let scale = 10f32.powi(rng.random_range(-3..3));
        let chunk: Vec<f32> = match block % 6 {
            0 => vec![0.0; 256],
            1 => vec![0.37 * scale; 256],
            2 => uniform(&mut rng, 256, 0.1, 1.0)
                .iter()
                .map(|v| v * scale)
                .collect(),
            3 => uniform(&mut rng, 256, -1.0, -0.2)
                .iter()
                .map(|v| v * scale)
                .collect(),
            // Multiples of 1/8 of the absmax land exactly on rounding ties.
            4 => (0..256).map(|i| ((i % 17) as f32 - 8.0) / 8.0).collect(),
            _ => uniform(&mut rng, 256, -1.0, 1.0)
                .iter()
                .map(|v| v * scale)
                .collect(),
        };
        values.extend(chunk);
    }
    values
}

fn random_rows(seed: u64, len: usize) -> Vec<f32> {
    let mut rng = rng(seed);
    // Gaussian-like (sum of uniforms) with occasional outliers, like real weight rows.
    (0..len)
        .map(|i| {
            let v: f32 = (0..4).map(|_| rng.random_range(-1.0f32..1.0)).sum();
            if i % 97 == 0 { v * 8.0 } else { v * 0.05 }
        })
        .collect()
}

fn as_bytes<T>(blocks: &[T]) -> &[u8] {
    // SAFETY: candle's blocks are `#[repr(C)]` structs of integers and f16, no padding.
    unsafe {
        std::slice::from_raw_parts(blocks.as_ptr().cast::<u8>(), std::mem::size_of_val(blocks))
    }
}

fn candle_quantize<T: GgmlType>(values: &[f32]) -> Vec<T> {
    let mut blocks = vec![T::zeros(); values.len() / T::BLCK_SIZE];
    T::from_float(values, &mut blocks);
    blocks
}

fn ours(ty: QuantType, values: &[f32]) -> Vec<u8> {
    let mut bytes = vec![0xAA; ty.bytes_for(values.len()).unwrap()];
    quantize(ty, values, &mut bytes).unwrap();
    bytes
}

fn decoded(ty: QuantType, bytes: &[u8], len: usize) -> Vec<f32> {
    let mut values = vec![f32::NAN; len];
    dequantize(ty, bytes, &mut values).unwrap();
    values
}

fn assert_bits_equal(got: &[f32], expected: &[f32], context: &str) {
    assert_eq!(got.len(), expected.len(), "{context}");
    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
        assert_eq!(g.to_bits(), e.to_bits(), "{context}: value {i}: {g} vs {e}");
    }
}

#[test]
fn metadata_matches_ggml() {
    let expected = [
        (QuantType::Q8_0, 32, 34, 8, "q8_0"),
        (QuantType::Q4_0, 32, 18, 2, "q4_0"),
        (QuantType::Q4K, 256, 144, 12, "q4_k"),
    ];
    for (ty, values, bytes, id, name) in expected {
        assert_eq!(ty.block_values(), values);
        assert_eq!(ty.block_bytes(), bytes);
        assert_eq!(ty.ggml_type(), id);
        assert_eq!(QuantType::from_ggml_type(id), Some(ty));
        assert_eq!(ty.name(), name);
        assert_eq!(ty.to_string(), name);
        assert_eq!(name.to_uppercase().parse::<QuantType>(), Ok(ty));
        assert_eq!(ty.bytes_for(values * 3), Ok(bytes * 3));
        assert!(matches!(
            ty.bytes_for(values + 1),
            Err(KernelError::PartialBlock { .. })
        ));
    }
    assert_eq!(std::mem::size_of::<BlockQ8_0>(), 34);
    assert_eq!(std::mem::size_of::<BlockQ4_0>(), 18);
    assert_eq!(std::mem::size_of::<BlockQ4K>(), 144);
    assert_eq!(QuantType::from_ggml_type(0), None);
    assert!(matches!(
        "q5_k".parse::<QuantType>(),
        Err(KernelError::UnknownQuantType { .. })
    ));
}

#[test]
fn bad_lengths_are_errors() {
    for ty in QuantType::ALL {
        let values = vec![0.5; ty.block_values() * 2];
        let mut short = vec![0; ty.block_bytes() * 2 - 1];
        assert!(matches!(
            quantize(ty, &values, &mut short),
            Err(KernelError::LengthMismatch { .. })
        ));
        let mut bytes = vec![0; ty.block_bytes()];
        assert!(matches!(
            quantize(
                ty,
                &values[1..ty.block_values() + 1][..ty.block_values() - 1],
                &mut bytes
            ),
            Err(KernelError::PartialBlock { .. })
        ));
        let mut out = vec![0.0; ty.block_values()];
        assert!(dequantize(ty, &bytes[1..], &mut out).is_err());
        assert!(dequantize(ty, &bytes, &mut out[1..]).is_err());
        let x = vec![0.0; 3 * ty.block_values()];
        let mut y = vec![0.0; 6];
        let misshapen = linear_at(
            SimdLevel::detected(),
            &x,
            3,
            ty.block_values(),
            Weights::Quantized(ty, &bytes),
            2,
            None,
            &mut y,
        );
        assert!(matches!(misshapen, Err(KernelError::LengthMismatch { .. })));
    }
}

#[test]
fn q8_0_and_q4_0_quantizers_equal_candles_byte_for_byte() {
    for seed in 0..4 {
        let rows = [awkward_rows(seed, 12), random_rows(seed + 100, 4096)];
        for values in rows {
            let q8: Vec<BlockQ8_0> = candle_quantize(&values);
            assert_eq!(
                ours(QuantType::Q8_0, &values),
                as_bytes(&q8),
                "q8_0 seed {seed}"
            );
            let q4: Vec<BlockQ4_0> = candle_quantize(&values);
            assert_eq!(
                ours(QuantType::Q4_0, &values),
                as_bytes(&q4),
                "q4_0 seed {seed}"
            );
        }
    }
}

#[test]
fn dequantizers_equal_candles_bit_for_bit() {
    for seed in 0..4 {
        let values = random_rows(seed, 8192);
        let len = values.len();
        let q8: Vec<BlockQ8_0> = candle_quantize(&values);
        let q4: Vec<BlockQ4_0> = candle_quantize(&values);
        let q4k: Vec<BlockQ4K> = candle_quantize(&values);
        let mut expected = vec![0.0; len];
        BlockQ8_0::to_float(&q8, &mut expected);
        assert_bits_equal(
            &decoded(QuantType::Q8_0, as_bytes(&q8), len),
            &expected,
            "q8_0",
        );
        BlockQ4_0::to_float(&q4, &mut expected);
        assert_bits_equal(
            &decoded(QuantType::Q4_0, as_bytes(&q4), len),
            &expected,
            "q4_0",
        );
        BlockQ4K::to_float(&q4k, &mut expected);
        assert_bits_equal(
            &decoded(QuantType::Q4K, as_bytes(&q4k), len),
            &expected,
            "q4_k",
        );
    }
}

/// Round-trip error bounds, as fractions of the block's largest magnitude.
///
/// Q8_0: half a step of `absmax/127`, plus `d`'s f16 rounding (relative 2⁻¹¹) times 127 steps.
const Q8_0_MAX_ERROR: f32 = 0.5 / 127.0 + 1.0 / 2048.0;
/// Q4_0: the scale maps the signed absmax to −8, so the opposite extreme clamps to +7: a whole
/// step of `absmax/8`, plus f16 rounding of `d` (relative 2⁻¹¹) over 8 steps of `absmax/8`.
const Q4_0_MAX_ERROR: f32 = 1.0 / 8.0 + 1.0 / 2048.0;
/// Q4_K, of the super-block's range `max(x, 0) − min(x, 0)`: half a step of a 15-level
/// sub-block grid, with the 6-bit rounding of scale and min and their f16 super-scales; the
/// weighted least-squares fit may trade a little worst-case error for mean error, so the bound
/// is one whole step.
const Q4K_MAX_ERROR: f32 = 1.0 / 15.0;
/// Block scales are f16: below 2⁻¹⁴ they are subnormal with absolute spacing 2⁻²⁴, so a scale
/// can be off by half of that whatever its size; a value multiplies it by at most this many
/// levels (Q4_K: 63 · 15 for the scale plus 63 for the min).
const F16_SUBNORMAL_HALF_STEP: f32 = 1.0 / (1 << 25) as f32;
fn max_levels(ty: QuantType) -> f32 {
    match ty {
        QuantType::Q8_0 => 127.0,
        QuantType::Q4_0 => 8.0,
        QuantType::Q4K => 63.0 * 15.0 + 63.0,
    }
}

#[test]
fn round_trip_error_is_within_the_format_bounds() {
    for seed in 0..3 {
        for values in [awkward_rows(seed, 12), random_rows(seed, 1 << 14)] {
            for ty in QuantType::ALL {
                let restored = decoded(ty, &ours(ty, &values), values.len());
                let block = ty.block_values();
                for (b, (original, restored)) in
                    values.chunks(block).zip(restored.chunks(block)).enumerate()
                {
                    let bound = match ty {
                        QuantType::Q8_0 | QuantType::Q4_0 => {
                            let absmax = original.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                            let fraction = if ty == QuantType::Q8_0 {
                                Q8_0_MAX_ERROR
                            } else {
                                Q4_0_MAX_ERROR
                            };
                            fraction * absmax
                        }
                        QuantType::Q4K => {
                            let max = original.iter().fold(0.0f32, |m, &v| m.max(v));
                            let min = original.iter().fold(0.0f32, |m, &v| m.min(v));
                            Q4K_MAX_ERROR * (max - min)
                        }
                    };
                    let bound = bound + max_levels(ty) * F16_SUBNORMAL_HALF_STEP;
                    for (i, (o, r)) in original.iter().zip(restored).enumerate() {
                        assert!(
                            (o - r).abs() <= bound * (1.0 + 1e-6),
                            "{ty} seed {seed} block {b} value {i}: {o} -> {r}, bound {bound}"
                        );
                    }
                }
            }
        }
    }
}

/// Quantized `linear` against the f64 reference on the dequantized weights. The kernels may
/// round each block of activations sharing a scale to 8 bits (step `absmax/127`, error at most
/// half of it) before the integer dot products, so the bound is `Σ |w_c| · absmax(x block)/254`
/// plus f32 accumulation noise. The blocks are 32 values, except 256 for `Q4_K` weights in the
/// GEMV (one scale per super-block, as GGML's `Q8_K`).
const F32_RELATIVE_TOLERANCE: f32 = 1e-5;

/// Which implementation computes the product under test.
#[derive(Clone, Copy, Debug)]
enum Kernel {
    /// The public dispatch at a float SIMD level.
    Linear(SimdLevel),
    /// The integer GEMV at one instruction set.
    Gemv(IntLevel),
}

fn check_quantized_linear(kernel: Kernel, ty: QuantType, m: usize, k: usize, n: usize, seed: u64) {
    let mut rng = rng(seed);
    let x = uniform(&mut rng, m * k, -1.0, 1.0);
    let w = ours(ty, &random_rows(seed + 7, n * k));
    let bias = seed
        .is_multiple_of(2)
        .then(|| uniform(&mut rng, n, -1.0, 1.0));
    let weights = Weights::Quantized(ty, &w);
    let mut got = vec![f32::NAN; m * n];
    let mut expected = vec![0.0; m * n];
    match kernel {
        Kernel::Linear(level) => {
            linear_at(level, &x, m, k, weights, n, bias.as_deref(), &mut got).unwrap()
        }
        Kernel::Gemv(level) => gemv(level, &x, m, k, ty, &w, n, bias.as_deref(), &mut got),
    }
    linear_reference(&x, m, k, weights, n, bias.as_deref(), &mut expected).unwrap();
    let w_values = decoded(ty, &w, n * k);
    let streamed = match kernel {
        Kernel::Gemv(_) => true,
        Kernel::Linear(_) => m <= crate::STREAMING_MAX_ROWS,
    };
    let activation_block = if streamed && ty == QuantType::Q4K {
        QuantType::Q4K.block_values()
    } else {
        32
    };
    for i in 0..m {
        let x_row = &x[i * k..(i + 1) * k];
        for j in 0..n {
            let w_row = &w_values[j * k..(j + 1) * k];
            let mut bound = 0.0f32;
            let mut magnitude = bias.as_ref().map_or(0.0, |b| b[j].abs());
            for (xb, wb) in x_row
                .chunks(activation_block)
                .zip(w_row.chunks(activation_block))
            {
                let absmax = xb.iter().fold(0.0f32, |a, v| a.max(v.abs()));
                let w_sum: f32 = wb.iter().map(|v| v.abs()).sum();
                bound += w_sum * absmax / 254.0;
                magnitude += xb.iter().zip(wb).map(|(a, b)| (a * b).abs()).sum::<f32>();
            }
            let bound = bound * (1.0 + 1e-3) + F32_RELATIVE_TOLERANCE * magnitude;
            let (g, e) = (got[i * n + j], expected[i * n + j]);
            assert!(
                (g - e).abs() <= bound,
                "{ty} {kernel:?} m={m} k={k} n={n}: out[{i}][{j}] = {g}, reference {e}, bound {bound}"
            );
        }
    }
}

#[test]
fn quantized_linear_matches_reference_for_every_level_and_shape() {
    let shapes: &[(usize, usize, usize)] = &[
        (1, 256, 1),
        (1, 256, 7),
        (3, 512, 13),
        (5, 768, 33),
        (6, 2048, 5),
        (16, 256, 9),
        (17, 512, 11),
        (40, 1024, 70),
        // 3 and 5 blocks of 32: the single-row kernel's blocks left over after its groups of 4
        // (too short for `Q4_K`, which is skipped).
        (1, 96, 6),
        (2, 160, 5),
        (4, 160, 9),
        // 13 blocks: a whole group of 8, a group of 4 and one block left over.
        (3, 416, 7),
    ];
    let kernels = SimdLevel::supported()
        .into_iter()
        .map(Kernel::Linear)
        .chain(IntLevel::supported().into_iter().map(Kernel::Gemv));
    for kernel in kernels {
        for ty in QuantType::ALL {
            for (seed, &(m, k, n)) in shapes.iter().enumerate() {
                if matches!(kernel, Kernel::Gemv(_)) && m > crate::STREAMING_MAX_ROWS
                    || !k.is_multiple_of(ty.block_values())
                {
                    continue;
                }
                check_quantized_linear(kernel, ty, m, k, n, seed as u64);
            }
        }
    }
}

#[test]
fn rounding_equals_roundf() {
    let mut rng = rng(8);
    let special = [
        0.0f32,
        -0.0,
        0.5,
        -0.5,
        1.5,
        -1.5,
        2.5,
        -126.5,
        127.0,
        0.499_999_97,
        -0.499_999_97,
        0.500_000_06,
        f32::NAN,
        1e-30,
    ];
    let random = (0..100_000).map(|_| rng.random_range(-130.0f32..130.0));
    let halves = (-260..=260).map(|i| i as f32 / 2.0);
    for x in special.into_iter().chain(random).chain(halves) {
        assert_eq!(
            crate::math::round_half_away(x),
            x.round() as i32,
            "rounding {x}"
        );
    }
}

#[test]
fn q4_k_scales_unpack_at_once_as_one_by_one() {
    let mut rng = rng(5);
    for _ in 0..1000 {
        let packed: [u8; 12] = std::array::from_fn(|_| rng.random());
        let (scales, mins) = crate::quant::formats::scales_mins_k4(&packed);
        for j in 0..8 {
            let (scale, min) = crate::quant::formats::scale_min_k4(j, &packed);
            assert_eq!(scales.to_le_bytes()[j], scale, "scale {j} of {packed:?}");
            assert_eq!(mins.to_le_bytes()[j], min, "min {j} of {packed:?}");
        }
    }
}

#[test]
fn quantized_k_must_be_whole_blocks() {
    let bytes = vec![0u8; 34];
    let x = vec![0.0; 31];
    let mut out = vec![0.0; 1];
    let result = crate::linear(
        &x,
        1,
        31,
        Weights::Quantized(QuantType::Q8_0, &bytes),
        1,
        None,
        &mut out,
    );
    assert!(matches!(result, Err(KernelError::PartialBlock { .. })));
}

#[test]
fn gather_rows_decodes_quantized_table_rows() {
    for ty in QuantType::ALL {
        let dim = 2 * ty.block_values();
        let table = random_rows(11, 5 * dim);
        let bytes = ours(ty, &table);
        let all = decoded(ty, &bytes, table.len());
        let ids = [4u32, 0, 4, 2];
        let mut got = vec![f32::NAN; ids.len() * dim];
        let mut expected = vec![f32::NAN; ids.len() * dim];
        crate::gather_rows(Weights::Quantized(ty, &bytes), dim, &ids, &mut got).unwrap();
        crate::gather_rows_reference(Weights::Quantized(ty, &bytes), dim, &ids, &mut expected)
            .unwrap();
        for (i, &id) in ids.iter().enumerate() {
            let row = &all[id as usize * dim..(id as usize + 1) * dim];
            assert_bits_equal(&got[i * dim..(i + 1) * dim], row, "gather_rows");
            assert_bits_equal(
                &expected[i * dim..(i + 1) * dim],
                row,
                "gather_rows_reference",
            );
        }
        let out_of_range =
            crate::gather_rows(Weights::Quantized(ty, &bytes), dim, &[5], &mut got[..dim]);
        assert!(matches!(
            out_of_range,
            Err(KernelError::IndexOutOfRange { .. })
        ));
        let partial = crate::gather_rows(
            Weights::Quantized(ty, &bytes),
            dim - 1,
            &[0],
            &mut got[..dim - 1],
        );
        assert!(matches!(partial, Err(KernelError::PartialBlock { .. })));
    }
}

#[test]
fn streamed_rows_equal_one_row_calls_bit_for_bit() {
    // Speculative decoding verifies up to STREAMING_MAX_ROWS rows in one call and needs each
    // row's result to equal a one-token step's, with quantized weights too.
    // 3 blocks of 32 past the groups of 4 for the 32-value formats; whole `Q4_K` blocks.
    for (ty, k) in QuantType::ALL
        .into_iter()
        .flat_map(|ty| [(ty, 512 + 96usize), (ty, 768)])
    {
        if !k.is_multiple_of(ty.block_values()) {
            continue;
        }
        let n = 13;
        let mut rng = rng(21);
        let x = uniform(&mut rng, crate::STREAMING_MAX_ROWS * k, -1.0, 1.0);
        let w = ours(ty, &random_rows(22, n * k));
        for level in IntLevel::supported() {
            let single: Vec<Vec<f32>> = x
                .chunks_exact(k)
                .map(|row| {
                    let mut out = vec![0.0; n];
                    gemv(level, row, 1, k, ty, &w, n, None, &mut out);
                    out
                })
                .collect();
            for m in 2..=crate::STREAMING_MAX_ROWS {
                let mut out = vec![0.0; m * n];
                gemv(level, &x[..m * k], m, k, ty, &w, n, None, &mut out);
                for (i, row) in out.chunks_exact(n).enumerate() {
                    assert_bits_equal(row, &single[i], &format!("{ty} {level:?} m={m} row {i}"));
                }
            }
        }
    }
}

#[test]
fn vector_levels_agree_bit_for_bit() {
    // The levels differ only in instructions (the AVX-512 one puts two chains in one 512-bit
    // register): same integer sums, same f32 operations in the same order.
    let vector_levels: Vec<IntLevel> = IntLevel::supported()
        .into_iter()
        .filter(|&level| level != IntLevel::Scalar)
        .collect();
    let n = 19;
    let mut rng = rng(23);
    // 24 blocks of 32 (three groups of 8) and 13 (a group of 8, one of 4, one block after).
    for (ty, k) in QuantType::ALL
        .into_iter()
        .flat_map(|ty| [(ty, 768usize), (ty, 416)])
    {
        if !k.is_multiple_of(ty.block_values()) {
            continue;
        }
        let w = ours(ty, &random_rows(24, n * k));
        for m in [1, 3, 4, 7, crate::STREAMING_MAX_ROWS] {
            let x = uniform(&mut rng, m * k, -1.0, 1.0);
            let outputs: Vec<Vec<f32>> = vector_levels
                .iter()
                .map(|&level| {
                    let mut out = vec![0.0; m * n];
                    gemv(level, &x, m, k, ty, &w, n, None, &mut out);
                    out
                })
                .collect();
            for (level, out) in vector_levels.iter().zip(&outputs).skip(1) {
                assert_bits_equal(out, &outputs[0], &format!("{ty} {level:?} k={k} m={m}"));
            }
        }
    }
}

#[test]
#[cfg(target_arch = "x86_64")]
fn vector_activation_rounding_equals_the_scalar_rounding() {
    if SimdLevel::detected() < SimdLevel::Avx512 {
        return;
    }
    let mut rng = rng(41);
    // 38 groups of 256 values.
    let mut x = uniform(&mut rng, 32 * 304, -4.0, 4.0);
    // A block of exact ties both ways (absmax 127, so the levels are the values themselves,
    // all k + 0.5), a zero block and a block of one non-zero value.
    for (i, v) in x[..32].iter_mut().enumerate() {
        *v = i as f32 - 15.5;
    }
    x[31] = 127.0;
    x[32..96].fill(0.0);
    x[64] = -3.0;
    // A zero group of 256.
    x[512..768].fill(0.0);
    let blocks = x.len() / 32;
    for blocks_per_scale in [1, 8] {
        let round = |vector: bool| {
            let mut rounded = (
                vec![0u8; x.len()],
                vec![0.0f32; blocks / blocks_per_scale],
                vec![0.0f32; blocks],
            );
            let (quants, scales, sums) = (&mut rounded.0, &mut rounded.1, &mut rounded.2);
            if vector {
                // SAFETY: AVX-512 is supported (checked above).
                unsafe {
                    crate::quant::matmul::x86::round_blocks(
                        &x,
                        quants,
                        scales,
                        sums,
                        blocks_per_scale,
                    )
                }
            } else {
                crate::quant::matmul::round_blocks(&x, quants, scales, sums, blocks_per_scale)
            }
            rounded
        };
        let (scalar, vector) = (round(false), round(true));
        assert_eq!(
            scalar.0, vector.0,
            "levels, {blocks_per_scale} blocks per scale"
        );
        assert_eq!(
            scalar.1, vector.1,
            "scales, {blocks_per_scale} blocks per scale"
        );
        assert_eq!(
            scalar.2, vector.2,
            "scaled sums, {blocks_per_scale} blocks per scale"
        );
    }
}

/// The AVX2 sub-block fit writes the portable fit's bytes (which the golden test ties to
/// GGML's), on the golden inputs and on blocks at the edges of f32: denormal and huge ranges,
/// two-valued, constant and sign-of-zero sub-blocks.
#[cfg(target_arch = "x86_64")]
#[test]
fn q4_k_avx2_fit_writes_the_portable_fits_bytes() {
    use crate::quant::formats::{fit_scales_and_mins, quantize_q4_k, quantize_q4_k_with};
    if !is_x86_feature_detected!("avx2") {
        eprintln!("\n*** SKIPPED: this CPU has no AVX2 ***\n");
        return;
    }
    let golden = include_bytes!("../../tests/data/q4_k_input.f32");
    let mut values: Vec<f32> = golden
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    // Enough ordinary blocks that a different rounding anywhere in the search shows.
    values.extend(awkward_rows(45, 4096));
    let mut rng = rng(44);
    for scale in [1e-44, 1e-40, 1e-38, 1e-20, 1.0, 1e20, 1e36] {
        values.extend(uniform(&mut rng, 256, -1.0, 1.0).iter().map(|v| v * scale));
        values.extend(uniform(&mut rng, 256, 0.0, 1.0).iter().map(|v| v * scale));
    }
    let two_valued: Vec<f32> = (0..256)
        .map(|i| if i % 3 == 0 { 0.25 } else { -3.0 })
        .collect();
    let zeros: Vec<f32> = (0..256)
        .map(|i| if i % 2 == 0 { 0.0 } else { -0.0 })
        .collect();
    values.extend(two_valued.iter().chain(&zeros).chain(&[7.5; 256]));
    for (b, block) in values.chunks_exact(256).enumerate() {
        let (mut ours, mut portable) = ([0u8; 144], [0u8; 144]);
        quantize_q4_k(block, &mut ours);
        quantize_q4_k_with(block, &mut portable, fit_scales_and_mins);
        assert_eq!(ours, portable, "block {b}");
    }
}
