//! One block at a time: GGML's reference quantizers and its dequantizers, on block bytes.
//!
//! The arithmetic is kept in the order GGML's C performs it, in f32, because the point is to
//! produce the same bytes as `llama-quantize`: a different summation order or rounding rule
//! changes a scale's last bit now and then, and with it every value of the block.

use half::f16;

use crate::math::round_half_away;

/// Values in a `Q4_K` sub-block (one 6-bit scale and min each).
const SUB_BLOCK: usize = 32;
/// Sub-blocks per `Q4_K` super-block.
const SUB_BLOCKS: usize = 8;
/// Byte offsets inside a `Q4_K` block.
pub(crate) const Q4K_SCALES: usize = 4;
pub(crate) const Q4K_QUANTS: usize = 16;

#[inline]
pub(crate) fn read_f16(block: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([block[at], block[at + 1]]).to_f32()
}

fn write_f16(block: &mut [u8], at: usize, value: f32) {
    block[at..at + 2].copy_from_slice(&f16::from_f32(value).to_le_bytes());
}

/// GGML's `nearest_int`: adding 1.5·2²³ leaves the rounded integer (ties to even) in the low
/// mantissa bits. Not `f32::round`, which rounds ties away from zero.
fn nearest_int(value: f32) -> i32 {
    let shifted = value + 12_582_912.0;
    (shifted.to_bits() as i32 & 0x007f_ffff) - 0x0040_0000
}

/// `quantize_row_q8_0_ref` on one block of 32 values into 34 bytes.
pub(crate) fn quantize_q8_0(values: &[f32], block: &mut [u8]) {
    let amax = values.iter().fold(0.0f32, |m, &v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    write_f16(block, 0, d);
    for (q, &v) in block[2..].iter_mut().zip(values) {
        // C `roundf`: ties away from zero.
        *q = round_half_away(v * id) as i8 as u8;
    }
}

pub(crate) fn dequantize_q8_0(block: &[u8], values: &mut [f32]) {
    let d = read_f16(block, 0);
    for (value, &q) in values.iter_mut().zip(&block[2..]) {
        *value = f32::from(q as i8) * d;
    }
}

/// `quantize_row_q4_0_ref` on one block of 32 values into 18 bytes: the scale maps the value of
/// largest magnitude (with its sign) to −8, so it uses the asymmetric end of the nibble range.
pub(crate) fn quantize_q4_0(values: &[f32], block: &mut [u8]) {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in values {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    let d = max / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    write_f16(block, 0, d);
    let (low, high) = values.split_at(16);
    for ((q, &v0), &v1) in block[2..].iter_mut().zip(low).zip(high) {
        // C converts with `(int8_t)`, truncating toward zero.
        let q0 = ((v0 * id + 8.5) as i8).min(15) as u8;
        let q1 = ((v1 * id + 8.5) as i8).min(15) as u8;
        *q = q0 | (q1 << 4);
    }
}

pub(crate) fn dequantize_q4_0(block: &[u8], values: &mut [f32]) {
    let d = read_f16(block, 0);
    let (low, high) = values.split_at_mut(16);
    for ((&q, v0), v1) in block[2..].iter().zip(low).zip(high) {
        *v0 = f32::from(i16::from(q & 0x0f) - 8) * d;
        *v1 = f32::from(i16::from(q >> 4) - 8) * d;
    }
}

/// GGML's `get_scale_min_k4`: the 6-bit scale and min of sub-block `j` from the 12 packed bytes.
/// Sub-blocks 0–3 keep theirs in the low 6 bits of bytes `j` and `j + 4`; sub-blocks 4–7 keep the
/// low nibbles in byte `j + 4` and the top 2 bits in the spare high bits of bytes `j − 4` and `j`.
pub(crate) fn scale_min_k4(j: usize, scales: &[u8]) -> (u8, u8) {
    if j < 4 {
        (scales[j] & 63, scales[j + 4] & 63)
    } else {
        (
            (scales[j + 4] & 0x0f) | ((scales[j - 4] >> 6) << 4),
            (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4),
        )
    }
}

/// All eight 6-bit sub-block scales and mins of a `Q4_K` block at once (the same values as
/// [`scale_min_k4`] for `j = 0..8`), one byte each, sub-block 0 lowest: word arithmetic on the
/// 12 packed bytes (`packed[..12]`) instead of eight lookups, for the GEMV's inner loop.
#[inline(always)]
pub(crate) fn scales_mins_k4(packed: &[u8; 12]) -> (u64, u64) {
    const LOW6: u32 = 0x3f3f_3f3f;
    const LOW4: u32 = 0x0f0f_0f0f;
    const TOP2: u32 = 0x0303_0303;
    let word =
        |i: usize| u32::from_le_bytes([packed[i], packed[i + 1], packed[i + 2], packed[i + 3]]);
    let (first, second, third) = (word(0), word(4), word(8));
    let low_scales = first & LOW6;
    let low_mins = second & LOW6;
    let high_scales = (third & LOW4) | (((first >> 6) & TOP2) << 4);
    let high_mins = ((third >> 4) & LOW4) | (((second >> 6) & TOP2) << 4);
    (
        u64::from(low_scales) | (u64::from(high_scales) << 32),
        u64::from(low_mins) | (u64::from(high_mins) << 32),
    )
}

/// `quantize_row_q4_K_ref` on one super-block of 256 values into 144 bytes.
pub(crate) fn quantize_q4_k(values: &[f32], block: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked above).
        return unsafe { x86::quantize_q4_k_avx2(values, block) };
    }
    quantize_q4_k_with(values, block, fit_scales_and_mins)
}

/// The super-block around a sub-block fit: `fit` is [`fit_scales_and_mins`] or its AVX2 twin.
#[inline(always)]
pub(crate) fn quantize_q4_k_with(
    values: &[f32],
    block: &mut [u8],
    fit: impl Fn(&[Lanes; SUB_BLOCK], &[Lanes; SUB_BLOCK]) -> SubBlockFits,
) {
    // The eight sub-blocks are fitted side by side, sub-block `j` in lane `j`.
    let mut x = [[0.0f32; SUB_BLOCKS]; SUB_BLOCK];
    let mut weights = [[0.0f32; SUB_BLOCKS]; SUB_BLOCK];
    for j in 0..SUB_BLOCKS {
        let sub_block = &values[j * SUB_BLOCK..(j + 1) * SUB_BLOCK];
        let mut sum_x2 = 0.0f32;
        for &v in sub_block {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / SUB_BLOCK as f32).sqrt();
        for (i, &v) in sub_block.iter().enumerate() {
            x[i][j] = v;
            weights[i][j] = av_x + v.abs();
        }
    }
    let fit = fit(&x, &weights);
    let mut levels = [0u8; SUB_BLOCKS * SUB_BLOCK];
    for (i, lane_levels) in fit.levels.iter().enumerate() {
        for (j, &level) in lane_levels.iter().enumerate() {
            levels[j * SUB_BLOCK + i] = level;
        }
    }
    let (scales, mins) = (fit.scales, fit.mins);
    let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
    for j in 0..SUB_BLOCKS {
        if scales[j] > max_scale {
            max_scale = scales[j];
        }
        if mins[j] > max_min {
            max_min = mins[j];
        }
    }

    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let packed = &mut block[Q4K_SCALES..Q4K_QUANTS];
    packed.fill(0);
    for j in 0..SUB_BLOCKS {
        // C stores the int in a `uint8_t` (wrapping) before clamping to 63.
        let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
        if j < 4 {
            packed[j] = ls;
            packed[j + 4] = lm;
        } else {
            packed[j + 4] = (ls & 0x0f) | ((lm & 0x0f) << 4);
            packed[j - 4] |= (ls >> 4) << 6;
            packed[j] |= (lm >> 4) << 6;
        }
    }
    write_f16(block, 0, max_scale / 63.0);
    write_f16(block, 2, max_min / 63.0);

    // Re-quantize against the scales as stored (6-bit, f16-scaled), so rounding them is
    // compensated. A sub-block whose stored scale is zero keeps the levels of the fit.
    let (d, dmin) = (read_f16(block, 0), read_f16(block, 2));
    for j in 0..SUB_BLOCKS {
        let (sc, m) = scale_min_k4(j, &block[Q4K_SCALES..Q4K_QUANTS]);
        let d = d * f32::from(sc);
        if d == 0.0 {
            continue;
        }
        let dm = dmin * f32::from(m);
        for i in 0..SUB_BLOCK {
            let level = nearest_int((values[j * SUB_BLOCK + i] + dm) / d);
            levels[j * SUB_BLOCK + i] = level.clamp(0, 15) as u8;
        }
    }

    // Each 32 bytes hold two sub-blocks: the first in the low nibbles, the next in the high.
    let quants = &mut block[Q4K_QUANTS..];
    for (pair, out) in quants.chunks_exact_mut(SUB_BLOCK).enumerate() {
        let base = pair * 2 * SUB_BLOCK;
        for (l, q) in out.iter_mut().enumerate() {
            *q = levels[base + l] | (levels[base + SUB_BLOCK + l] << 4);
        }
    }
}

/// `make_qkx2_quants`' level range and trial inverse scales (`nmax`, `rmin`, `rdelta`, `nstep`).
const LEVEL_MAX: i32 = 15;
const TRIAL_START: f32 = -1.0;
const TRIAL_STEP: f32 = 0.1;
const TRIALS: i32 = 20;

/// One value per sub-block of a `Q4_K` block.
pub(crate) type Lanes = [f32; SUB_BLOCKS];

/// [`fit_scales_and_mins`]'s result: per sub-block the scale, the min and (`[i][j]`) the levels.
pub(crate) struct SubBlockFits {
    scales: Lanes,
    mins: Lanes,
    levels: [[u8; SUB_BLOCKS]; SUB_BLOCK],
}

/// GGML's `make_qkx2_quants(32, 15, x, weights, L, &min, Laux, -1, 0.1, 20, false)` on the
/// eight sub-blocks of a block at once (`x[i][j]` is value `i` of sub-block `j`): fits
/// `x ≈ scale · L − min` with `L` in 0..=15, minimising the weighted squared error over 21 trial
/// inverse scales around `15 / (max − min)` with a closed-form least-squares refit each.
///
/// Each lane runs the sequential search exactly (same operations in the same order, no fused
/// multiply-adds, a later trial seeing the `min` an earlier one chose), so the bytes equal the
/// reference's; the lanes only let the loops vectorise, the quantizer's whole cost.
#[inline(always)]
pub(crate) fn fit_scales_and_mins(
    x: &[Lanes; SUB_BLOCK],
    weights: &[Lanes; SUB_BLOCK],
) -> SubBlockFits {
    const L: usize = SUB_BLOCKS;

    let (mut min, mut max) = (x[0], x[0]);
    let mut sum_w = weights[0];
    let mut sum_x: Lanes = std::array::from_fn(|j| weights[0][j] * x[0][j]);
    for i in 1..SUB_BLOCK {
        for j in 0..L {
            if x[i][j] < min[j] {
                min[j] = x[i][j];
            }
            if x[i][j] > max[j] {
                max[j] = x[i][j];
            }
            sum_w[j] += weights[i][j];
            sum_x[j] += weights[i][j] * x[i][j];
        }
    }
    for m in &mut min {
        if *m > 0.0 {
            *m = 0.0;
        }
    }
    // A constant sub-block: all level 0, scale 0 (its lane's search below is discarded).
    let flat: [bool; L] = std::array::from_fn(|j| max[j] == min[j]);
    let flat_min = min;
    let mut scale = [0.0f32; L];
    let mut best_error = [0.0f32; L];
    let mut levels = [[0u8; L]; SUB_BLOCK];
    let iscale: Lanes = std::array::from_fn(|j| LEVEL_MAX as f32 / (max[j] - min[j]));
    for j in 0..L {
        scale[j] = 1.0 / iscale[j];
    }
    for i in 0..SUB_BLOCK {
        for j in 0..L {
            let l = nearest_int(iscale[j] * (x[i][j] - min[j])).clamp(0, LEVEL_MAX);
            levels[i][j] = l as u8;
            let diff = scale[j] * l as f32 + min[j] - x[i][j];
            best_error[j] += weights[i][j] * (diff * diff);
        }
    }
    let mut trial_levels = [[0.0f32; L]; SUB_BLOCK];
    for trial in 0..=TRIALS {
        let iscale: Lanes = std::array::from_fn(|j| {
            (TRIAL_START + TRIAL_STEP * trial as f32 + LEVEL_MAX as f32) / (max[j] - min[j])
        });
        let (mut sum_l, mut sum_l2, mut sum_xl) = ([0.0f32; L], [0.0f32; L], [0.0f32; L]);
        for i in 0..SUB_BLOCK {
            for j in 0..L {
                let l = nearest_int(iscale[j] * (x[i][j] - min[j])).clamp(0, LEVEL_MAX) as f32;
                trial_levels[i][j] = l;
                let w = weights[i][j];
                sum_l[j] += w * l;
                sum_l2[j] += w * l * l;
                sum_xl[j] += w * l * x[i][j];
            }
        }
        let mut solvable = [false; L];
        let (mut this_scale, mut this_min) = ([0.0f32; L], [0.0f32; L]);
        for j in 0..L {
            let determinant = sum_w[j] * sum_l2[j] - sum_l[j] * sum_l[j];
            solvable[j] = determinant > 0.0;
            this_scale[j] = (sum_w[j] * sum_xl[j] - sum_x[j] * sum_l[j]) / determinant;
            this_min[j] = (sum_l2[j] * sum_x[j] - sum_l[j] * sum_xl[j]) / determinant;
            if this_min[j] > 0.0 {
                this_min[j] = 0.0;
                this_scale[j] = sum_xl[j] / sum_l2[j];
            }
        }
        let mut error = [0.0f32; L];
        for i in 0..SUB_BLOCK {
            for j in 0..L {
                let diff = this_scale[j] * trial_levels[i][j] + this_min[j] - x[i][j];
                error[j] += weights[i][j] * (diff * diff);
            }
        }
        let better: [bool; L] = std::array::from_fn(|j| solvable[j] && error[j] < best_error[j]);
        for i in 0..SUB_BLOCK {
            for j in 0..L {
                if better[j] {
                    levels[i][j] = trial_levels[i][j] as u8;
                }
            }
        }
        for j in 0..L {
            if better[j] {
                best_error[j] = error[j];
                scale[j] = this_scale[j];
                min[j] = this_min[j];
            }
        }
    }
    for j in 0..L {
        if flat[j] {
            scale[j] = 0.0;
            min[j] = flat_min[j];
            for lane_levels in &mut levels {
                lane_levels[j] = 0;
            }
        }
    }
    SubBlockFits {
        scales: scale,
        mins: min.map(|m| -m),
        levels,
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::{
        __m256, _CMP_EQ_OQ, _CMP_GT_OQ, _CMP_LT_OQ, _mm256_add_ps, _mm256_and_ps, _mm256_and_si256,
        _mm256_blendv_ps, _mm256_castps_si256, _mm256_cmp_ps, _mm256_cvtepi32_ps, _mm256_div_ps,
        _mm256_loadu_ps, _mm256_max_epi32, _mm256_max_ps, _mm256_min_epi32, _mm256_min_ps,
        _mm256_mul_ps, _mm256_set1_epi32, _mm256_set1_ps, _mm256_setzero_ps, _mm256_setzero_si256,
        _mm256_storeu_ps, _mm256_sub_epi32, _mm256_sub_ps, _mm256_xor_ps,
    };

    use super::*;

    /// [`quantize_q4_k`] with the sub-block fit in AVX2 registers.
    ///
    /// # Safety
    /// The CPU has AVX2.
    #[target_feature(enable = "avx2")]
    pub(crate) unsafe fn quantize_q4_k_avx2(values: &[f32], block: &mut [u8]) {
        quantize_q4_k_with(values, block, |x, weights| {
            // SAFETY: this closure inherits AVX2 from the function it is defined in.
            unsafe { fit_scales_and_mins_avx2(x, weights) }
        })
    }

    /// [`fit_scales_and_mins`] with lane `j` of each register holding sub-block `j`: the same
    /// IEEE operations in the same order (no fused multiply-adds), compares and blends where
    /// the scalar code branches, and GGML's `nearest_int` in integer lanes, so the bytes are
    /// the same. The compiler vectorised the scalar lanes into shuffled 4-wide pieces, which
    /// made quantizing at load to `q4_k` take two minutes for an 8B model.
    ///
    /// # Safety
    /// The CPU has AVX2.
    #[target_feature(enable = "avx2")]
    unsafe fn fit_scales_and_mins_avx2(
        x: &[Lanes; SUB_BLOCK],
        weights: &[Lanes; SUB_BLOCK],
    ) -> SubBlockFits {
        // SAFETY: each `Lanes` is 8 floats, one register.
        let x: [__m256; SUB_BLOCK] = std::array::from_fn(|i| unsafe { load(&x[i]) });
        let w: [__m256; SUB_BLOCK] = std::array::from_fn(|i| unsafe { load(&weights[i]) });
        let zero = _mm256_setzero_ps();
        let select = |condition: __m256, if_true: __m256, otherwise: __m256| {
            _mm256_blendv_ps(otherwise, if_true, condition)
        };
        let levels_of = |v: __m256| {
            let shifted = _mm256_castps_si256(_mm256_add_ps(v, _mm256_set1_ps(12_582_912.0)));
            let level = _mm256_sub_epi32(
                _mm256_and_si256(shifted, _mm256_set1_epi32(0x007f_ffff)),
                _mm256_set1_epi32(0x0040_0000),
            );
            let level = _mm256_min_epi32(
                _mm256_max_epi32(level, _mm256_setzero_si256()),
                _mm256_set1_epi32(LEVEL_MAX),
            );
            _mm256_cvtepi32_ps(level)
        };

        let (mut min, mut max, mut sum_w) = (x[0], x[0], w[0]);
        let mut sum_x = _mm256_mul_ps(w[0], x[0]);
        for i in 1..SUB_BLOCK {
            // `minps`/`maxps` return their second operand unless the first is strictly beyond
            // it: the scalar `if x < min { min = x }`, NaNs included.
            min = _mm256_min_ps(x[i], min);
            max = _mm256_max_ps(x[i], max);
            sum_w = _mm256_add_ps(sum_w, w[i]);
            sum_x = _mm256_add_ps(sum_x, _mm256_mul_ps(w[i], x[i]));
        }
        min = select(_mm256_cmp_ps::<_CMP_GT_OQ>(min, zero), zero, min);
        let flat = _mm256_cmp_ps::<_CMP_EQ_OQ>(max, min);
        let flat_min = min;
        let iscale = _mm256_div_ps(_mm256_set1_ps(LEVEL_MAX as f32), _mm256_sub_ps(max, min));
        let mut scale = _mm256_div_ps(_mm256_set1_ps(1.0), iscale);
        let mut best_error = zero;
        let mut levels = [zero; SUB_BLOCK];
        for i in 0..SUB_BLOCK {
            let l = levels_of(_mm256_mul_ps(iscale, _mm256_sub_ps(x[i], min)));
            levels[i] = l;
            let diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(scale, l), min), x[i]);
            best_error = _mm256_add_ps(best_error, _mm256_mul_ps(w[i], _mm256_mul_ps(diff, diff)));
        }
        let mut trial_levels = [zero; SUB_BLOCK];
        for trial in 0..=TRIALS {
            let numerator = TRIAL_START + TRIAL_STEP * trial as f32 + LEVEL_MAX as f32;
            let iscale = _mm256_div_ps(_mm256_set1_ps(numerator), _mm256_sub_ps(max, min));
            let (mut sum_l, mut sum_l2, mut sum_xl) = (zero, zero, zero);
            for i in 0..SUB_BLOCK {
                let l = levels_of(_mm256_mul_ps(iscale, _mm256_sub_ps(x[i], min)));
                trial_levels[i] = l;
                let wl = _mm256_mul_ps(w[i], l);
                sum_l = _mm256_add_ps(sum_l, wl);
                sum_l2 = _mm256_add_ps(sum_l2, _mm256_mul_ps(wl, l));
                sum_xl = _mm256_add_ps(sum_xl, _mm256_mul_ps(wl, x[i]));
            }
            let determinant =
                _mm256_sub_ps(_mm256_mul_ps(sum_w, sum_l2), _mm256_mul_ps(sum_l, sum_l));
            let solvable = _mm256_cmp_ps::<_CMP_GT_OQ>(determinant, zero);
            let mut this_scale = _mm256_div_ps(
                _mm256_sub_ps(_mm256_mul_ps(sum_w, sum_xl), _mm256_mul_ps(sum_x, sum_l)),
                determinant,
            );
            let mut this_min = _mm256_div_ps(
                _mm256_sub_ps(_mm256_mul_ps(sum_l2, sum_x), _mm256_mul_ps(sum_l, sum_xl)),
                determinant,
            );
            let positive_min = _mm256_cmp_ps::<_CMP_GT_OQ>(this_min, zero);
            this_scale = select(positive_min, _mm256_div_ps(sum_xl, sum_l2), this_scale);
            this_min = select(positive_min, zero, this_min);
            let mut error = zero;
            for i in 0..SUB_BLOCK {
                let diff = _mm256_sub_ps(
                    _mm256_add_ps(_mm256_mul_ps(this_scale, trial_levels[i]), this_min),
                    x[i],
                );
                error = _mm256_add_ps(error, _mm256_mul_ps(w[i], _mm256_mul_ps(diff, diff)));
            }
            let better = _mm256_and_ps(solvable, _mm256_cmp_ps::<_CMP_LT_OQ>(error, best_error));
            for (level, &trial_level) in levels.iter_mut().zip(&trial_levels) {
                *level = select(better, trial_level, *level);
            }
            best_error = select(better, error, best_error);
            scale = select(better, this_scale, scale);
            min = select(better, this_min, min);
        }
        scale = select(flat, zero, scale);
        min = select(flat, flat_min, min);
        let mut fits = SubBlockFits {
            scales: [0.0; SUB_BLOCKS],
            mins: [0.0; SUB_BLOCKS],
            levels: [[0; SUB_BLOCKS]; SUB_BLOCK],
        };
        // SAFETY: each `Lanes` is 8 floats, one register.
        unsafe {
            _mm256_storeu_ps(fits.scales.as_mut_ptr(), scale);
            _mm256_storeu_ps(
                fits.mins.as_mut_ptr(),
                _mm256_xor_ps(min, _mm256_set1_ps(-0.0)),
            );
        }
        for (lane_levels, &level) in fits.levels.iter_mut().zip(&levels) {
            let mut as_floats = [0.0f32; SUB_BLOCKS];
            // SAFETY: as above.
            unsafe { _mm256_storeu_ps(as_floats.as_mut_ptr(), select(flat, zero, level)) };
            *lane_levels = as_floats.map(|l| l as u8);
        }
        fits
    }

    /// # Safety
    /// The CPU has AVX (implied by the callers' AVX2).
    #[inline(always)]
    unsafe fn load(lanes: &Lanes) -> __m256 {
        // SAFETY: `lanes` is 8 floats.
        unsafe { _mm256_loadu_ps(lanes.as_ptr()) }
    }
}

pub(crate) fn dequantize_q4_k(block: &[u8], values: &mut [f32]) {
    let (d, dmin) = (read_f16(block, 0), read_f16(block, 2));
    let scales = &block[Q4K_SCALES..Q4K_QUANTS];
    for (pair, quants) in block[Q4K_QUANTS..].chunks_exact(SUB_BLOCK).enumerate() {
        let (sc_low, m_low) = scale_min_k4(2 * pair, scales);
        let (sc_high, m_high) = scale_min_k4(2 * pair + 1, scales);
        let (d_low, min_low) = (d * f32::from(sc_low), dmin * f32::from(m_low));
        let (d_high, min_high) = (d * f32::from(sc_high), dmin * f32::from(m_high));
        let out = &mut values[pair * 2 * SUB_BLOCK..(pair + 1) * 2 * SUB_BLOCK];
        let (low, high) = out.split_at_mut(SUB_BLOCK);
        for ((&q, v0), v1) in quants.iter().zip(low).zip(high) {
            *v0 = d_low * f32::from(q & 0x0f) - min_low;
            *v1 = d_high * f32::from(q >> 4) - min_high;
        }
    }
}
