//! `out = x · wᵀ + bias` for GGML block-quantized `w`.
//!
//! Decode (few activation rows) is bound by reading the weights. The activation rows are
//! rounded once per call to 8-bit blocks of 32 (f32 scale per block, like GGML's `Q8_0` but with
//! an exact scale), and each weight row is streamed from memory once and dotted with every
//! activation row by integer dot products ([`super::intdot`]), rayon splitting the weight rows.
//!
//! Prefill and vision (many rows) are bound by arithmetic: a bounded panel of weight rows is
//! decoded to f32 at a time and multiplied by the `gemm` crate's blocked kernel, so the
//! activations keep full precision there.

use std::cell::RefCell;

use rayon::prelude::*;

use super::intdot::{IntDot, IntLevel, dispatch_int};
use super::{QuantType, dequantize_blocks, formats};
use crate::linear::{STREAMING_MAX_ROWS, gemm_by_panels};
use crate::parallel::{SharedMut, threads};
use crate::simd::SimdLevel;

/// Values per activation block: one integer dot product, and one `Q4_K` sub-block.
const ACTIVATION_BLOCK: usize = 32;
/// Activation rows dotted per pass over the weight rows (accumulators stay in registers).
const ROW_TILE: usize = 4;
/// Weight rows streamed together: several independent memory streams and accumulator chains.
const WEIGHT_TILE: usize = 4;

/// Shapes validated by `linear_at`: `x` `[m, k]`, `w` `n` rows of `k` values in `ty` blocks,
/// `out` `[m, n]`, all positive.
#[allow(clippy::too_many_arguments)]
pub(crate) fn linear(
    level: SimdLevel,
    x: &[f32],
    m: usize,
    k: usize,
    ty: QuantType,
    w: &[u8],
    n: usize,
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    if m <= STREAMING_MAX_ROWS {
        gemv(IntLevel::for_simd(level), x, m, k, ty, w, n, bias, out);
    } else {
        let row_bytes = k / ty.block_values() * ty.block_bytes();
        gemm_by_panels(x, m, k, n, bias, out, |row, values| {
            dequantize_blocks(ty, &w[row * row_bytes..(row + 1) * row_bytes], values)
        });
    }
}

/// Activation rows rounded to 8-bit blocks: `quants` `[m, k]` (i8 as bytes), and per block its
/// scale and `scale · Σ quants` (for the `Q4_K` min term).
#[derive(Default)]
struct QuantizedRows {
    quants: Vec<u8>,
    scales: Vec<f32>,
    scaled_sums: Vec<f32>,
}

thread_local! {
    static ACTIVATIONS: RefCell<QuantizedRows> = RefCell::default();
}

impl QuantizedRows {
    /// Rounds each block to `round(x · 127 / absmax)` (ties away from zero), as GGML's `Q8_0`.
    fn fill(&mut self, x: &[f32]) {
        let blocks = x.len() / ACTIVATION_BLOCK;
        self.quants.resize(x.len(), 0);
        self.scales.resize(blocks, 0.0);
        self.scaled_sums.resize(blocks, 0.0);
        for (b, (values, quants)) in x
            .chunks_exact(ACTIVATION_BLOCK)
            .zip(self.quants.chunks_exact_mut(ACTIVATION_BLOCK))
            .enumerate()
        {
            let absmax = values.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let scale = absmax / 127.0;
            let inverse = if scale != 0.0 { 1.0 / scale } else { 0.0 };
            let mut sum = 0i32;
            for (q, &v) in quants.iter_mut().zip(values) {
                let level = (v * inverse).round() as i8;
                sum += i32::from(level);
                *q = level as u8;
            }
            self.scales[b] = scale;
            self.scaled_sums[b] = scale * sum as f32;
        }
    }
}

/// Runs `f` with `x` quantized into this thread's reusable buffers.
fn with_quantized_rows<R>(x: &[f32], f: impl FnOnce(&QuantizedRows) -> R) -> R {
    let mut rows = ACTIVATIONS.with(|cell| std::mem::take(&mut *cell.borrow_mut()));
    rows.fill(x);
    let result = f(&rows);
    ACTIVATIONS.with(|cell| *cell.borrow_mut() = rows);
    result
}

/// The weight-streaming product; `m <= STREAMING_MAX_ROWS`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemv(
    level: IntLevel,
    x: &[f32],
    m: usize,
    k: usize,
    ty: QuantType,
    w: &[u8],
    n: usize,
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    let row_bytes = k / ty.block_values() * ty.block_bytes();
    let chunk = n.div_ceil(threads() * 16).next_multiple_of(WEIGHT_TILE);
    let out = SharedMut::new(out);
    with_quantized_rows(x, |activations| {
        (0..n.div_ceil(chunk)).into_par_iter().for_each(|task| {
            let rows = task * chunk..((task + 1) * chunk).min(n);
            let operands = Operands {
                activations,
                m,
                k,
                w,
                row_bytes,
                n,
                bias,
            };
            // SAFETY: shapes validated by `linear_at`; each task writes only the output columns
            // of its own weight rows.
            dispatch_int!(level, |d| unsafe {
                gemv_rows(d, ty, &operands, rows, out.get())
            });
        });
    });
}

struct Operands<'a> {
    activations: &'a QuantizedRows,
    m: usize,
    k: usize,
    w: &'a [u8],
    row_bytes: usize,
    n: usize,
    bias: Option<&'a [f32]>,
}

/// Output columns `rows` for every activation row.
///
/// # Safety
/// `out` points to the `[m, n]` output; `rows ⊆ 0..n`; the operands are consistent.
#[inline(always)]
unsafe fn gemv_rows<D: IntDot>(
    d: D,
    ty: QuantType,
    o: &Operands<'_>,
    rows: std::ops::Range<usize>,
    out: *mut f32,
) {
    let mut j = rows.start;
    while j < rows.end {
        let mut first = 0;
        let weight_rows = if rows.end - j >= WEIGHT_TILE {
            WEIGHT_TILE
        } else {
            1
        };
        while first < o.m {
            let tile = if o.m - first >= ROW_TILE { ROW_TILE } else { 1 };
            let mut dots = [[0.0f32; ROW_TILE]; WEIGHT_TILE];
            // SAFETY: the tile's activation rows and weight rows are inside the operands.
            unsafe {
                match (weight_rows, tile) {
                    (WEIGHT_TILE, ROW_TILE) => {
                        dots_for::<D, WEIGHT_TILE, ROW_TILE>(d, ty, o, j, first, &mut dots)
                    }
                    (WEIGHT_TILE, _) => {
                        dots_for::<D, WEIGHT_TILE, 1>(d, ty, o, j, first, &mut dots)
                    }
                    (_, ROW_TILE) => dots_for::<D, 1, ROW_TILE>(d, ty, o, j, first, &mut dots),
                    _ => dots_for::<D, 1, 1>(d, ty, o, j, first, &mut dots),
                }
            }
            for (r, dots) in dots[..weight_rows].iter().enumerate() {
                let bias = o.bias.map_or(0.0, |b| b[j + r]);
                for (t, dot) in dots[..tile].iter().enumerate() {
                    // SAFETY: row `first + t < m`, column `j + r < n`.
                    unsafe { *out.add((first + t) * o.n + j + r) = dot + bias };
                }
            }
            first += tile;
        }
        j += weight_rows;
    }
}

/// `dots[r][t] = w[j + r] · x[first + t]` for `R` weight rows and `T` activation rows.
///
/// # Safety
/// `j + R <= n`, `first + T <= m`.
#[inline(always)]
unsafe fn dots_for<D: IntDot, const R: usize, const T: usize>(
    d: D,
    ty: QuantType,
    o: &Operands<'_>,
    j: usize,
    first: usize,
    dots: &mut [[f32; ROW_TILE]; WEIGHT_TILE],
) {
    let rows: [&[u8]; R] =
        std::array::from_fn(|r| &o.w[(j + r) * o.row_bytes..(j + r + 1) * o.row_bytes]);
    // SAFETY: forwarded.
    unsafe {
        match ty {
            QuantType::Q8_0 | QuantType::Q4_0 => row_dots::<D, R, T>(d, ty, o, rows, first, dots),
            QuantType::Q4K => row_dots_q4k::<D, R, T>(d, o, rows, first, dots),
        }
    }
}

/// [`dots_for`] on `Q8_0` or `Q4_0` weights. `Q4_0` dots the unsigned nibbles and subtracts
/// `8 · Σ a` afterwards, cheaper than making the nibbles signed.
///
/// # Safety
/// `first + T <= m`; each of `rows` is one weight row of `k` values.
#[inline(always)]
unsafe fn row_dots<D: IntDot, const R: usize, const T: usize>(
    d: D,
    ty: QuantType,
    o: &Operands<'_>,
    rows: [&[u8]; R],
    first: usize,
    dots: &mut [[f32; ROW_TILE]; WEIGHT_TILE],
) {
    let blocks = o.k / ACTIVATION_BLOCK;
    let block_bytes = ty.block_bytes();
    let quants = o.activations.quants[first * o.k..].as_ptr();
    let scales = &o.activations.scales[first * blocks..(first + T) * blocks];
    let scaled_sums = &o.activations.scaled_sums[first * blocks..(first + T) * blocks];
    let mut acc = [[d.zero(); T]; R];
    let mut offsets = [[0.0f32; T]; R];
    // SAFETY: block `b` of a row spans `b·block_bytes..(b+1)·block_bytes`; activation block `b`
    // of tile row `t` is at `t·k + 32·b` from the tile's first row.
    unsafe {
        for b in 0..blocks {
            let mut weight_scales = [0.0f32; R];
            let mut levels = [d.zero_bytes(); R];
            for r in 0..R {
                let block = rows[r].as_ptr().add(b * block_bytes);
                weight_scales[r] = d.read_f16(block);
                levels[r] = if ty == QuantType::Q8_0 {
                    d.load(block.add(2))
                } else {
                    d.load_nibbles(block.add(2))
                };
            }
            for t in 0..T {
                let a = d.load(quants.add(t * o.k + b * ACTIVATION_BLOCK));
                let activation_scale = scales[t * blocks + b];
                for r in 0..R {
                    let sums = if ty == QuantType::Q8_0 {
                        d.dot_signed(levels[r], a)
                    } else {
                        offsets[r][t] += weight_scales[r] * scaled_sums[t * blocks + b];
                        d.dot_unsigned(levels[r], a)
                    };
                    acc[r][t] = d.scale_add(acc[r][t], sums, weight_scales[r] * activation_scale);
                }
            }
        }
    }
    for r in 0..R {
        for t in 0..T {
            dots[r][t] = d.reduce(acc[r][t]) - 8.0 * offsets[r][t];
        }
    }
}

/// [`dots_for`] on `Q4_K` weights: per sub-block `j` the dot is
/// `d·sc_j · Σ q·a − dmin·m_j · Σ a` (times the activation block's scale).
///
/// # Safety
/// As [`row_dots`].
#[inline(always)]
unsafe fn row_dots_q4k<D: IntDot, const R: usize, const T: usize>(
    d: D,
    o: &Operands<'_>,
    rows: [&[u8]; R],
    first: usize,
    dots: &mut [[f32; ROW_TILE]; WEIGHT_TILE],
) {
    const SUB_BLOCKS: usize = 8;
    let block_bytes = QuantType::Q4K.block_bytes();
    let blocks = o.k / ACTIVATION_BLOCK;
    let quants = o.activations.quants[first * o.k..].as_ptr();
    let scales = &o.activations.scales[first * blocks..(first + T) * blocks];
    let scaled_sums = &o.activations.scaled_sums[first * blocks..(first + T) * blocks];
    let mut acc = [[d.zero(); T]; R];
    let mut mins = [[0.0f32; T]; R];
    // SAFETY: as in `row_dots`, with 144-byte super-blocks of 8 activation blocks.
    unsafe {
        for s in 0..o.k / QuantType::Q4K.block_values() {
            let mut sub_scales = [[0.0f32; SUB_BLOCKS]; R];
            for r in 0..R {
                let block = &rows[r][s * block_bytes..(s + 1) * block_bytes];
                let super_scale = d.read_f16(block.as_ptr());
                let super_min = d.read_f16(block.as_ptr().add(2));
                let mut sub_mins = [0.0f32; SUB_BLOCKS];
                for j in 0..SUB_BLOCKS {
                    let (sc, m) = formats::scale_min_k4(j, &block[4..16]);
                    sub_scales[r][j] = super_scale * f32::from(sc);
                    sub_mins[j] = super_min * f32::from(m);
                }
                for t in 0..T {
                    let sums = &scaled_sums[t * blocks + s * SUB_BLOCKS..][..SUB_BLOCKS];
                    mins[r][t] += sub_mins.iter().zip(sums).map(|(m, s)| m * s).sum::<f32>();
                }
            }
            for pair in 0..SUB_BLOCKS / 2 {
                let mut halves = [(d.zero_bytes(), d.zero_bytes()); R];
                for r in 0..R {
                    let nibbles = d.load(rows[r].as_ptr().add(s * block_bytes + 16 + 32 * pair));
                    halves[r] = d.split_nibbles(nibbles);
                }
                let low_block = s * SUB_BLOCKS + 2 * pair;
                for t in 0..T {
                    let a_low = d.load(quants.add(t * o.k + low_block * ACTIVATION_BLOCK));
                    let a_high = d.load(quants.add(t * o.k + (low_block + 1) * ACTIVATION_BLOCK));
                    let (scale_low, scale_high) = (
                        scales[t * blocks + low_block],
                        scales[t * blocks + low_block + 1],
                    );
                    for r in 0..R {
                        let (low, high) = halves[r];
                        let low_scale = sub_scales[r][2 * pair] * scale_low;
                        let high_scale = sub_scales[r][2 * pair + 1] * scale_high;
                        acc[r][t] = d.scale_add(acc[r][t], d.dot_unsigned(low, a_low), low_scale);
                        acc[r][t] =
                            d.scale_add(acc[r][t], d.dot_unsigned(high, a_high), high_scale);
                    }
                }
            }
        }
    }
    for r in 0..R {
        for t in 0..T {
            dots[r][t] = d.reduce(acc[r][t]) - mins[r][t];
        }
    }
}
