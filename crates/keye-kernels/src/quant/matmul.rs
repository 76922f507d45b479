//! `out = x · wᵀ + bias` for GGML block-quantized `w`.
//!
//! Decode (few activation rows) is bound by reading the weights. The activation rows are
//! rounded once per call to 8 bits ([`ActivationLayout`]: an f32 scale per block of 32 like
//! GGML's `Q8_0`, or per 256 like its `Q8_K` for `Q4_K` weights), and each weight row is
//! streamed from memory once and dotted with every activation row by integer dot products
//! ([`super::intdot`]), rayon splitting the weight rows.
//!
//! Prefill and vision (many rows) are bound by arithmetic. With AVX-512 VNNI they take the
//! integer GEMM ([`super::gemm`]) on the same 8-bit activation blocks; elsewhere a bounded panel
//! of weight rows is decoded to f32 at a time and multiplied by the `gemm` crate's blocked
//! kernel, the activations keeping full precision.

use std::cell::RefCell;

use rayon::prelude::*;

use super::intdot::{CHAINS, IntDot, IntLevel, dispatch_int};
use super::{QuantType, dequantize_blocks, formats};
use crate::linear::{STREAMING_MAX_ROWS, gemm_by_panels};
use crate::math::round_half_away;
use crate::parallel::{SharedMut, threads};
use crate::simd::SimdLevel;

/// Values per activation block: one integer dot product, and one `Q4_K` sub-block.
pub(super) const ACTIVATION_BLOCK: usize = 32;
/// Most activation rows dotted per pass over a weight row ([`IntDot::ROW_TILE`] per level).
const MAX_ROW_TILE: usize = 8;

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
    let int_level = IntLevel::for_simd(level);
    if m <= STREAMING_MAX_ROWS {
        return gemv(int_level, x, m, k, ty, w, n, bias, out);
    }
    #[cfg(target_arch = "x86_64")]
    if int_level == IntLevel::Avx512Vnni {
        return super::gemm::linear(x, m, k, ty, w, n, bias, out);
    }
    let row_bytes = k / ty.block_values() * ty.block_bytes();
    gemm_by_panels(x, m, k, n, bias, out, |row, values| {
        dequantize_blocks(ty, &w[row * row_bytes..(row + 1) * row_bytes], values)
    });
}

/// How [`QuantizedRows`] rounds activations to 8 bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum ActivationLayout {
    /// An f32 scale per block of 32 values, in order.
    #[default]
    Blocks,
    /// One f32 scale per 256 values (a `Q4_K` super-block), as GGML's `Q8_K`: the GEMV then sums
    /// a whole super-block in integers, with one f32 step for its eight sub-blocks instead of
    /// one per sub-block (1.29 times the one-row speed with the weights in cache, 1.22 times
    /// from memory on 2 Zen 5 cores). Within each 128 values the blocks of 32 are stored
    /// 0, 2, 1, 3, the order of the low and high nibbles of 64 `Q4_K` weight bytes.
    Q4KSuperBlocks,
}

impl ActivationLayout {
    /// Blocks of 32 values sharing one scale.
    pub(crate) const fn blocks_per_scale(self) -> usize {
        match self {
            ActivationLayout::Blocks => 1,
            ActivationLayout::Q4KSuperBlocks => 8,
        }
    }
}

/// Activation rows rounded to 8 bits: `quants` `[m, k]` (i8 as bytes, in `layout` order), a
/// scale per `layout.blocks_per_scale()` blocks of 32, and per block of 32 `scale · Σ quants`
/// (for the `Q4_0` offset and the `Q4_K` min term).
#[derive(Default)]
pub(super) struct QuantizedRows {
    pub(super) layout: ActivationLayout,
    pub(super) quants: Vec<u8>,
    pub(super) scales: Vec<f32>,
    pub(super) scaled_sums: Vec<f32>,
}

thread_local! {
    static ACTIVATIONS: RefCell<QuantizedRows> = RefCell::default();
}

impl QuantizedRows {
    /// Rounds each value to `round(x · 127 / absmax)` (ties away from zero) as GGML's `Q8_0` and
    /// `Q8_K`, the absmax taken over each group of blocks sharing a scale; groups are
    /// independent, so many rows (prefill, vision) are rounded in parallel tasks.
    fn fill(&mut self, x: &[f32], layout: ActivationLayout) {
        /// Blocks per task: 32 K values, small against a vision layer's 22 M.
        const TASK_BLOCKS: usize = 1024;
        let blocks_per_scale = layout.blocks_per_scale();
        let blocks = x.len() / ACTIVATION_BLOCK;
        self.layout = layout;
        self.quants.resize(x.len(), 0);
        self.scales.resize(blocks / blocks_per_scale, 0.0);
        self.scaled_sums.resize(blocks, 0.0);
        #[cfg(target_arch = "x86_64")]
        let vector = vector_rounding_supported();
        self.quants
            .par_chunks_mut(TASK_BLOCKS * ACTIVATION_BLOCK)
            .zip(self.scales.par_chunks_mut(TASK_BLOCKS / blocks_per_scale))
            .zip(self.scaled_sums.par_chunks_mut(TASK_BLOCKS))
            .zip(x.par_chunks(TASK_BLOCKS * ACTIVATION_BLOCK))
            .for_each(|(((quants, scales), scaled_sums), x)| {
                #[cfg(target_arch = "x86_64")]
                if vector {
                    // SAFETY: AVX-512 F and BW are supported (checked above).
                    unsafe { x86::round_blocks(x, quants, scales, scaled_sums, blocks_per_scale) };
                } else {
                    round_blocks(x, quants, scales, scaled_sums, blocks_per_scale);
                }
                #[cfg(not(target_arch = "x86_64"))]
                round_blocks(x, quants, scales, scaled_sums, blocks_per_scale);
                if layout == ActivationLayout::Q4KSuperBlocks {
                    for half in quants.chunks_exact_mut(4 * ACTIVATION_BLOCK) {
                        let (second, third) = half[ACTIVATION_BLOCK..3 * ACTIVATION_BLOCK]
                            .split_at_mut(ACTIVATION_BLOCK);
                        second.swap_with_slice(third);
                    }
                }
            });
    }
}

/// Where a `Q4_K` super-block's sub-block `j` starts in [`ActivationLayout::Q4KSuperBlocks`].
pub(super) const fn q4k_activation_offset(j: usize) -> usize {
    const SLOT: [usize; 4] = [0, 2, 1, 3];
    (4 * (j / 4) + SLOT[j % 4]) * ACTIVATION_BLOCK
}

/// Whether [`QuantizedRows::fill`] rounds 16 values per step (AVX-512; `KEYE_SIMD` caps it).
#[cfg(target_arch = "x86_64")]
fn vector_rounding_supported() -> bool {
    SimdLevel::detected() >= SimdLevel::Avx512
}

/// One task of [`QuantizedRows::fill`], a value at a time: whole groups of `blocks_per_scale`
/// blocks of `x` into their levels, scales and per-block `scale · Σ levels`.
pub(crate) fn round_blocks(
    x: &[f32],
    quants: &mut [u8],
    scales: &mut [f32],
    scaled_sums: &mut [f32],
    blocks_per_scale: usize,
) {
    let group = blocks_per_scale * ACTIVATION_BLOCK;
    for (((values, quants), scale), scaled_sums) in x
        .chunks_exact(group)
        .zip(quants.chunks_exact_mut(group))
        .zip(scales.iter_mut())
        .zip(scaled_sums.chunks_exact_mut(blocks_per_scale))
    {
        let absmax = values.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        *scale = absmax / 127.0;
        let inverse = if *scale != 0.0 { 1.0 / *scale } else { 0.0 };
        for ((values, quants), scaled_sum) in values
            .chunks_exact(ACTIVATION_BLOCK)
            .zip(quants.chunks_exact_mut(ACTIVATION_BLOCK))
            .zip(scaled_sums.iter_mut())
        {
            let mut sum = 0i32;
            for (q, &v) in quants.iter_mut().zip(values) {
                let level = round_half_away(v * inverse) as i8;
                sum += i32::from(level);
                *q = level as u8;
            }
            *scaled_sum = *scale * sum as f32;
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use std::arch::x86_64::*;

    use super::ACTIVATION_BLOCK;

    /// [`super::round_blocks`] on 16 values per vector, with the same arithmetic: the scale
    /// and its inverse as scalars, `round_half_away` as truncation plus a step where the
    /// remainder reaches ±0.5, so the bytes and sums of finite values are the same.
    ///
    /// # Safety
    /// AVX-512 F and BW are supported.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(crate) unsafe fn round_blocks(
        x: &[f32],
        quants: &mut [u8],
        scales: &mut [f32],
        scaled_sums: &mut [f32],
        blocks_per_scale: usize,
    ) {
        let half = _mm512_set1_ps(0.5);
        let minus_half = _mm512_set1_ps(-0.5);
        let one = _mm512_set1_epi32(1);
        let group = blocks_per_scale * ACTIVATION_BLOCK;
        for (((values, quants), scale), scaled_sums) in x
            .chunks_exact(group)
            .zip(quants.chunks_exact_mut(group))
            .zip(scales.iter_mut())
            .zip(scaled_sums.chunks_exact_mut(blocks_per_scale))
        {
            // SAFETY: a group is whole blocks of 32 floats in and 32 bytes out.
            unsafe {
                let mut magnitudes = _mm512_setzero_ps();
                for sixteen in values.chunks_exact(16) {
                    magnitudes =
                        _mm512_max_ps(magnitudes, _mm512_abs_ps(_mm512_loadu_ps(sixteen.as_ptr())));
                }
                *scale = _mm512_reduce_max_ps(magnitudes) / 127.0;
                let inverse = _mm512_set1_ps(if *scale != 0.0 { 1.0 / *scale } else { 0.0 });
                for ((values, quants), scaled_sum) in values
                    .chunks_exact(ACTIVATION_BLOCK)
                    .zip(quants.chunks_exact_mut(ACTIVATION_BLOCK))
                    .zip(scaled_sums.iter_mut())
                {
                    let mut sum = _mm512_setzero_si512();
                    for half_index in 0..2 {
                        let v = _mm512_loadu_ps(values.as_ptr().add(16 * half_index));
                        let scaled = _mm512_mul_ps(v, inverse);
                        let truncated = _mm512_cvttps_epi32(scaled);
                        let fraction = _mm512_sub_ps(scaled, _mm512_cvtepi32_ps(truncated));
                        let up = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(fraction, half);
                        let down = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(fraction, minus_half);
                        let stepped = _mm512_mask_add_epi32(truncated, up, truncated, one);
                        let level = _mm512_mask_sub_epi32(stepped, down, stepped, one);
                        sum = _mm512_add_epi32(sum, level);
                        _mm_storeu_si128(
                            quants.as_mut_ptr().add(16 * half_index).cast(),
                            _mm512_cvtepi32_epi8(level),
                        );
                    }
                    *scaled_sum = *scale * _mm512_reduce_add_epi32(sum) as f32;
                }
            }
        }
    }
}

/// Runs `f` with `x` quantized in `layout` into this thread's reusable buffers.
pub(super) fn with_quantized_rows<R>(
    x: &[f32],
    layout: ActivationLayout,
    f: impl FnOnce(&QuantizedRows) -> R,
) -> R {
    let mut rows = ACTIVATIONS.with(|cell| std::mem::take(&mut *cell.borrow_mut()));
    rows.fill(x, layout);
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
    let chunk = n.div_ceil(threads() * 16);
    let out = SharedMut::new(out);
    let layout = match ty {
        QuantType::Q4K => ActivationLayout::Q4KSuperBlocks,
        QuantType::Q8_0 | QuantType::Q4_0 => ActivationLayout::Blocks,
    };
    with_quantized_rows(x, layout, |activations| {
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
/// Weight rows are streamed one after another, so each task reads one contiguous range of
/// memory: interleaving several rows (a separate stream each, crossing a 4 KiB page every row)
/// measured a third slower here, the hardware prefetchers restarting at every page. Each weight
/// row is dotted with up to [`IntDot::ROW_TILE`] activation rows at once, every sum in the same
/// [`CHAINS`] chains whatever the tile, so a row's result never depends on the rows beside it
/// (speculative decoding's verification relies on it).
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
    for j in rows {
        let bias = o.bias.map_or(0.0, |b| b[j]);
        let mut first = 0;
        while first < o.m {
            let tile = (o.m - first).min(D::ROW_TILE);
            // SAFETY: the tile's activation rows and the weight row are inside the operands.
            let dots = unsafe {
                match tile {
                    8 => dots_for::<D, 8>(d, ty, o, j, first),
                    7 => dots_for::<D, 7>(d, ty, o, j, first),
                    6 => dots_for::<D, 6>(d, ty, o, j, first),
                    5 => dots_for::<D, 5>(d, ty, o, j, first),
                    4 => dots_for::<D, 4>(d, ty, o, j, first),
                    3 => dots_for::<D, 3>(d, ty, o, j, first),
                    2 => dots_for::<D, 2>(d, ty, o, j, first),
                    _ => dots_for::<D, 1>(d, ty, o, j, first),
                }
            };
            for (t, dot) in dots[..tile].iter().enumerate() {
                // SAFETY: row `first + t < m`, column `j < n`.
                unsafe { *out.add((first + t) * o.n + j) = dot + bias };
            }
            first += tile;
        }
    }
}

type Dots = [f32; MAX_ROW_TILE];

/// `dots[t] = w[j] · x[first + t]` for `T` activation rows, each summed in [`CHAINS`]
/// independent accumulator chains (one pair alone would otherwise wait on one chain of FMAs).
///
/// # Safety
/// `j < n`, `first + T <= m`.
#[inline(always)]
unsafe fn dots_for<D: IntDot, const T: usize>(
    d: D,
    ty: QuantType,
    o: &Operands<'_>,
    j: usize,
    first: usize,
) -> Dots {
    let row = &o.w[j * o.row_bytes..(j + 1) * o.row_bytes];
    let blocks = o.k / ACTIVATION_BLOCK;
    let scales = blocks / o.activations.layout.blocks_per_scale();
    let tile = Tile {
        quants: o.activations.quants[first * o.k..(first + T) * o.k].as_ptr(),
        scales: o.activations.scales[first * scales..(first + T) * scales].as_ptr(),
        scaled_sums: o.activations.scaled_sums[first * blocks..(first + T) * blocks].as_ptr(),
        k: o.k,
        blocks,
    };
    // SAFETY: forwarded; the tile holds `T` whole activation rows.
    unsafe {
        match ty {
            QuantType::Q8_0 => block_dots::<D, T, true>(d, row, &tile),
            QuantType::Q4_0 => block_dots::<D, T, false>(d, row, &tile),
            QuantType::Q4K => q4k_dots::<D, T>(d, row, &tile),
        }
    }
}

/// `T` consecutive quantized activation rows (their scales per block of 32, or per super-block
/// for `Q4_K`).
struct Tile {
    quants: *const u8,
    scales: *const f32,
    scaled_sums: *const f32,
    k: usize,
    blocks: usize,
}

/// [`dots_for`] on `Q8_0` (`SIGNED`) or `Q4_0` weights. `Q4_0` dots the unsigned nibbles and
/// subtracts `8 · Σ a` afterwards, cheaper than making the nibbles signed.
///
/// Blocks go in groups of [`GROUP`] sharing one vector of scales, two blocks per step, so the
/// AVX-512 level dots two blocks per instruction; block `b` is summed in chain `b % CHAINS`
/// (the blocks past the last whole group of chains in chain 0) on every level and for every
/// tile.
///
/// # Safety
/// `row` is a weight row of `k` values; `a` holds `T` activation rows.
#[inline(always)]
unsafe fn block_dots<D: IntDot, const T: usize, const SIGNED: bool>(
    d: D,
    row: &[u8],
    a: &Tile,
) -> Dots {
    let block_bytes = if SIGNED {
        QuantType::Q8_0.block_bytes()
    } else {
        QuantType::Q4_0.block_bytes()
    };
    let mut acc = [d.zero_chains(); T];
    // Chained like `acc`: one scalar sum per row measured twice the time of a `Q4_0` GEMV row,
    // every block waiting on the previous block's addition.
    let mut offsets = [[0.0f32; CHAINS]; T];
    let whole = a.blocks / CHAINS * CHAINS;
    let row = row.as_ptr();
    // SAFETY: every block index is below `blocks`; activation block `b` of tile row `t` is at
    // `t·k + 32·b`, its scale at `t·blocks + b`.
    unsafe {
        let mut first = 0;
        while first < whole {
            if whole - first >= GROUP {
                group_step::<D, T, SIGNED, { GROUP / 2 }>(
                    d,
                    row,
                    block_bytes,
                    a,
                    first,
                    &mut acc,
                    &mut offsets,
                );
            } else {
                group_step::<D, T, SIGNED, { CHAINS / 2 }>(
                    d,
                    row,
                    block_bytes,
                    a,
                    first,
                    &mut acc,
                    &mut offsets,
                );
            }
            first += GROUP;
        }
        for b in whole..a.blocks {
            let block = row.add(b * block_bytes);
            let weight_scale = d.read_f16(block);
            let levels = if SIGNED {
                d.load(block.add(2))
            } else {
                d.load_nibbles(block.add(2))
            };
            for t in 0..T {
                let quants = d.load(a.quants.add(t * a.k + b * ACTIVATION_BLOCK));
                let activation_scale = *a.scales.add(t * a.blocks + b);
                let sums = if SIGNED {
                    d.dot_signed(levels, quants)
                } else {
                    offsets[t][0] += weight_scale * *a.scaled_sums.add(t * a.blocks + b);
                    d.dot_unsigned(levels, quants)
                };
                acc[t] = d.first_chain_scale_add(acc[t], sums, weight_scale * activation_scale);
            }
        }
    }
    let mut dots = [0.0; MAX_ROW_TILE];
    for t in 0..T {
        let offset: f32 = offsets[t].iter().sum();
        dots[t] = d.reduce(d.sum_chains(acc[t])) - 8.0 * offset;
    }
    dots
}

/// How far ahead of the blocks being dotted the weight row is prefetched: about one row of
/// `k` = 4096. With 8 or 16 activation rows the hardware prefetchers fell behind and every
/// block waited on memory (8 rows took 3.5 times as long as 4; now 1.8 times).
const PREFETCH_AHEAD: usize = 4096;

/// Prefetches the `len` bytes [`PREFETCH_AHEAD`] past `p` into L1 (past the end of the weights
/// it prefetches nothing useful, and never faults).
#[inline(always)]
fn prefetch_ahead(p: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    for line in (0..len).step_by(64) {
        // SAFETY: a prefetch only hints; any address is allowed.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                p.wrapping_add(PREFETCH_AHEAD + line).cast(),
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, len);
}

/// `Q8_0`/`Q4_0` blocks sharing one vector of weight × activation scales.
const GROUP: usize = 8;

/// Blocks `first..first + 2·PAIRS` of [`block_dots`] for every tile row. A function, not a
/// closure: a closure is not compiled into the caller's `#[target_feature]` function unless
/// inlined, and then calls every intrinsic out of line.
///
/// # Safety
/// As [`block_dots`]; the blocks are inside the row.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn group_step<D: IntDot, const T: usize, const SIGNED: bool, const PAIRS: usize>(
    d: D,
    row: *const u8,
    block_bytes: usize,
    a: &Tile,
    first: usize,
    acc: &mut [D::Chains; T],
    offsets: &mut [[f32; CHAINS]; T],
) {
    // SAFETY: as the caller guarantees.
    unsafe {
        prefetch_ahead(row.add(first * block_bytes), 2 * PAIRS * block_bytes);
        let mut weight_scales = [0.0f32; GROUP];
        for (i, scale) in weight_scales[..2 * PAIRS].iter_mut().enumerate() {
            *scale = d.read_f16(row.add((first + i) * block_bytes));
        }
        let pair_at = |p: usize| row.add((first + 2 * p) * block_bytes + 2);
        let mut levels =
            [d.load_block_pair::<SIGNED>(pair_at(0), pair_at(0).add(block_bytes)); PAIRS];
        for (p, levels) in levels.iter_mut().enumerate().skip(1) {
            *levels = d.load_block_pair::<SIGNED>(pair_at(p), pair_at(p).add(block_bytes));
        }
        let weight_scale_lanes = d.load_floats(weight_scales.as_ptr());
        for t in 0..T {
            let activation_scales = a.scales.add(t * a.blocks + first);
            let activation_scale_lanes = if 2 * PAIRS == GROUP {
                d.load_floats(activation_scales)
            } else {
                let mut lanes = [0.0f32; GROUP];
                lanes[..2 * PAIRS]
                    .copy_from_slice(std::slice::from_raw_parts(activation_scales, 2 * PAIRS));
                d.load_floats(lanes.as_ptr())
            };
            let scales = d.mul(weight_scale_lanes, activation_scale_lanes);
            let quants = a.quants.add(t * a.k + first * ACTIVATION_BLOCK);
            for (p, &levels) in levels.iter().enumerate() {
                let a = quants.add(2 * p * ACTIVATION_BLOCK);
                acc[t] = d.block_pair_step::<SIGNED>(acc[t], levels, a, scales, p);
            }
            if !SIGNED {
                for (i, &weight_scale) in weight_scales[..2 * PAIRS].iter().enumerate() {
                    let scaled_sum = *a.scaled_sums.add(t * a.blocks + first + i);
                    offsets[t][(first + i) % CHAINS] += weight_scale * scaled_sum;
                }
            }
        }
    }
}

/// [`dots_for`] on `Q4_K` weights and [`ActivationLayout::Q4KSuperBlocks`] activations: per
/// super-block `d·sa · Σ_j sc_j·Σ q·a − dmin · Σ_j m_j·(sa·Σ a)`, the first sum in integers
/// ([`IntDot::q4k_dot`], exact, so every level's lanes are equal) and one f32 step per row, the
/// min term as a vector of the eight sub-blocks.
///
/// # Safety
/// As [`block_dots`].
#[inline(always)]
unsafe fn q4k_dots<D: IntDot, const T: usize>(d: D, row: &[u8], a: &Tile) -> Dots {
    const SUB_BLOCKS: usize = QuantType::Q4K.block_values() / ACTIVATION_BLOCK;
    let block_bytes = QuantType::Q4K.block_bytes();
    let super_blocks = a.k / QuantType::Q4K.block_values();
    let mut sums = [d.q4k_zero(); T];
    let mut mins = [d.zero(); T];
    // SAFETY: 144-byte weight blocks; 256 activation bytes, one scale and 8 scaled sums per
    // super-block of each tile row.
    unsafe {
        for s in 0..super_blocks {
            let block = row.as_ptr().add(s * block_bytes);
            prefetch_ahead(block, block_bytes);
            let (sub_scales, sub_mins) = formats::scales_mins_k4(&*block.add(4).cast::<[u8; 12]>());
            let super_scale = d.read_f16(block);
            let super_min = d.splat(d.read_f16(block.add(2)));
            let sub_mins = d.mul(d.widen_bytes(sub_mins), super_min);
            let levels = d.load_q4k_levels(block.add(16));
            let sub_scales = d.q4k_scales(sub_scales);
            for t in 0..T {
                let quants = a.quants.add(t * a.k + s * QuantType::Q4K.block_values());
                let products = d.q4k_dot(&levels, &sub_scales, quants);
                let scale = super_scale * *a.scales.add(t * super_blocks + s);
                sums[t] = d.q4k_scale_add(sums[t], products, scale);
                let scaled_sums = d.load_floats(a.scaled_sums.add(t * a.blocks + s * SUB_BLOCKS));
                mins[t] = d.mul_add(sub_mins, scaled_sums, mins[t]);
            }
        }
    }
    let mut dots = [0.0; MAX_ROW_TILE];
    for t in 0..T {
        dots[t] = d.q4k_reduce(sums[t]) - d.reduce(mins[t]);
    }
    dots
}
