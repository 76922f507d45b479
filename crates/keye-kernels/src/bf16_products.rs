//! `out = bf16(x) · wᵀ + bias` for bf16 weights with the activations rounded to bf16 (nearest
//! even) first, as PyTorch's bf16 inference and llama.cpp's bf16 path do. Products and sums stay
//! f32: every bf16 × bf16 product is exact in f32, so the result is the f32 product of the rounded
//! activations with the weights, up to summation order.
//!
//! The point is speed on CPUs with AVX-512 BF16: `vdpbf16ps` multiplies 32 pairs per instruction,
//! twice the f32 FMA rate, and reads the weights as stored, so many-row products (prefill,
//! vision) need neither the f32 GEMM's widened weight panels nor their packing.
//!
//! Layout of the many-row product: the activations are rounded and transposed once per call into
//! panels of [`PANEL_ROWS`] rows (`[pairs][PANEL_ROWS]` words, each word two neighbouring values
//! of one row), so a vector holds one pair of 16 rows. Weight pairs are broadcast straight from
//! the weight rows. A register tile is [`TILE_COLUMNS`] weight rows × one panel; each task keeps
//! its weight rows in cache while every panel passes by, so the weights are read from memory
//! once.
//!
//! With few rows (decode, speculative verification) the product is bound by reading the weights:
//! each weight row is streamed once and dotted, 32 values per `vdpbf16ps`, with every activation
//! row, each sum in one accumulator so a row's result does not depend on how many rows come
//! with it.
//!
//! Without AVX-512 BF16 the rounded activations go through [`crate::linear`]: the same numbers,
//! at the f32 rate.
//!
//! GGML block-quantized weights take the AMX tiles too, from [`PRODUCT_MIN_ROWS`] rows: each
//! block of 32 weight rows is decoded and rounded to bf16 as it is packed for the tiles, so the
//! result is the f32 product of the rounded activations with the rounded decoded weights (one
//! more rounding of each weight, 2⁻⁹ of it at most, far inside the 4- or 8-bit format's own
//! step). Elsewhere, and with fewer rows, quantized weights go to [`crate::linear`], which rounds
//! the activations to its 8-bit blocks instead.

use std::cell::RefCell;

use half::bf16;

#[cfg(target_arch = "x86_64")]
use crate::amx;
use crate::error::KernelError;
use crate::linear::{STREAMING_MAX_ROWS, Weights, fill_with_bias, linear_at, validate};
use crate::simd::SimdLevel;

/// Activation rows per transposed panel: two 16-lane vectors.
const PANEL_ROWS: usize = 32;
/// Bytes of activation panels one pass of the weight tiles covers: well inside the shared
/// last-level cache.
const PASS_BYTES: usize = 8 << 20;
/// Weight rows per register tile: `2 × TILE_COLUMNS` accumulators, the two activation vectors
/// and a broadcast fit the 32 vector registers, with load slots to spare.
const TILE_COLUMNS: usize = 8;
/// From this many activation rows up the panel product runs. Up to [`STREAMING_MAX_ROWS`] rows
/// stay on the weight-streaming kernel, whose rows equal one-row calls bit for bit (speculative
/// decoding's verification relies on it).
const PRODUCT_MIN_ROWS: usize = STREAMING_MAX_ROWS + 1;

thread_local! {
    static ROUNDED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `out[m×n] = bf16(x[m×k]) · wᵀ (+ bias[n])`, `w` `[n, k]` row-major, accumulating in f32.
///
/// f32 weights are used as they are; quantized ones as the module documentation says.
pub fn linear_bf16_products(
    x: &[f32],
    m: usize,
    k: usize,
    w: Weights<'_>,
    n: usize,
    bias: Option<&[f32]>,
    out: &mut [f32],
) -> Result<(), KernelError> {
    linear_bf16_products_at(SimdLevel::detected(), x, m, k, w, n, bias, out)
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn linear_bf16_products_at(
    level: SimdLevel,
    x: &[f32],
    m: usize,
    k: usize,
    w: Weights<'_>,
    n: usize,
    bias: Option<&[f32]>,
    out: &mut [f32],
) -> Result<(), KernelError> {
    validate(x, m, k, w, n, bias, out)?;
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        fill_with_bias(out, n, bias);
        return Ok(());
    }
    #[cfg(target_arch = "x86_64")]
    if x86::is_supported(level) {
        let amx = m >= PRODUCT_MIN_ROWS
            && level >= SimdLevel::Amx
            && SimdLevel::Amx.is_supported()
            && n >= amx::BLOCK;
        let kernel = match w {
            Weights::Bf16(w) if amx => Some(x86::PanelKernel::Amx(x86::AmxWeights::Bf16(w))),
            Weights::Quantized(ty, w) if amx => {
                Some(x86::PanelKernel::Amx(x86::AmxWeights::Quantized(ty, w)))
            }
            Weights::Bf16(w) if m >= PRODUCT_MIN_ROWS => Some(x86::PanelKernel::Vector(w)),
            Weights::Bf16(w) => {
                x86::stream(x, m, k, w, n, bias, out);
                return Ok(());
            }
            Weights::F32(_) | Weights::Quantized(..) => None,
        };
        if let Some(kernel) = kernel {
            x86::linear(x, m, k, kernel, n, bias, out);
            return Ok(());
        }
    }
    if let Weights::Quantized(..) = w {
        // The 8-bit activation blocks of the quantized kernels already round the activations.
        return linear_at(level, x, m, k, w, n, bias, out);
    }
    // Taken out of the cell, not borrowed: a nested call on this thread (a rayon task stolen
    // while this one waits) finds it empty and allocates its own.
    let mut rounded = ROUNDED.with(|cell| std::mem::take(&mut *cell.borrow_mut()));
    rounded.clear();
    rounded.extend(x.iter().map(|&v| round_to_bf16(v)));
    let result = linear_at(level, &rounded, m, k, w, n, bias, out);
    ROUNDED.with(|cell| *cell.borrow_mut() = rounded);
    result
}

/// `v` rounded to the nearest bf16 (ties to even), as an f32. NaN stays NaN; values past the
/// largest bf16 become infinite, as in every bf16 conversion.
#[inline(always)]
pub(crate) fn round_to_bf16(v: f32) -> f32 {
    f32::from_bits(u32::from(bf16_bits(v)) << 16)
}

/// The bits of `v` rounded to the nearest bf16 (ties to even); a NaN keeps its sign and stays
/// quiet.
#[inline(always)]
pub(crate) fn bf16_bits(v: f32) -> u16 {
    let bits = v.to_bits();
    if v.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    let rounding = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(rounding) >> 16) as u16
}

/// Reference twin of [`linear_bf16_products`]: the activations rounded to bf16, then
/// [`crate::linear_reference`]. Quantized weights are decoded and rounded to bf16 first, as
/// the AMX tiles take them.
pub fn linear_bf16_products_reference(
    x: &[f32],
    m: usize,
    k: usize,
    w: Weights<'_>,
    n: usize,
    bias: Option<&[f32]>,
    out: &mut [f32],
) -> Result<(), KernelError> {
    validate(x, m, k, w, n, bias, out)?;
    let rounded: Vec<f32> = x.iter().map(|&v| bf16::from_f32(v).to_f32()).collect();
    if let Weights::Quantized(ty, data) = w {
        let mut decoded = vec![0.0; n * k];
        crate::quant::dequantize(ty, data, &mut decoded)?;
        let decoded: Vec<bf16> = decoded.into_iter().map(bf16::from_f32).collect();
        return crate::linear_reference(&rounded, m, k, Weights::Bf16(&decoded), n, bias, out);
    }
    crate::linear_reference(&rounded, m, k, w, n, bias, out)
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use std::arch::x86_64::{
        __m512, __m512bh, __m512i, __mmask32, _CMP_UNORD_Q, _mm512_add_epi32, _mm512_and_si512,
        _mm512_castps_si512, _mm512_cmp_ps_mask, _mm512_dpbf16_ps, _mm512_loadu_ps,
        _mm512_loadu_si512, _mm512_mask_or_epi32, _mm512_maskz_loadu_epi16,
        _mm512_permutex2var_epi16, _mm512_reduce_add_ps, _mm512_set1_epi32, _mm512_setzero_ps,
        _mm512_setzero_si512, _mm512_srli_epi32, _mm512_storeu_ps, _mm512_storeu_si512,
    };

    use std::arch::x86_64::{
        _MM_HINT_ET0, _mm_loadu_si128, _mm_prefetch, _mm512_castsi512_ps, _mm512_cvtepi8_epi32,
        _mm512_cvtepi32_ps, _mm512_cvtepu8_epi32, _mm512_mul_ps, _mm512_set1_ps, _mm512_sub_epi32,
        _mm512_sub_ps,
    };

    use std::arch::x86_64::{
        __mmask16, _mm512_add_ps, _mm512_castpd_ps, _mm512_castps_pd, _mm512_mask_storeu_ps,
        _mm512_shuffle_f32x4, _mm512_unpackhi_pd, _mm512_unpackhi_ps, _mm512_unpacklo_pd,
        _mm512_unpacklo_ps,
    };
    use std::ops::Range;
    use std::sync::OnceLock;

    use rayon::prelude::*;

    use super::*;
    use crate::parallel::{SharedMut, threads};
    use crate::quant::QuantType;
    use crate::quant::formats::{Q4K_QUANTS, Q4K_SCALES, read_f16, scale_min_k4};

    pub(super) fn is_supported(level: SimdLevel) -> bool {
        level >= SimdLevel::Avx512
            && is_x86_feature_detected!("avx512bf16")
            && is_x86_feature_detected!("avx512bw")
    }

    thread_local! {
        static PANELS: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
        static ROWS: RefCell<Vec<u16>> = const { RefCell::new(Vec::new()) };
    }

    /// Weight rows per streaming register tile with several activation rows, interleaved so
    /// four sums are in flight.
    const STREAM_WEIGHT_ROWS: usize = 4;
    /// The most weight rows a streaming tile reads side by side (one activation row on Intel).
    const MAX_STREAM_WEIGHT_ROWS: usize = 8;
    /// Activation rows per streaming register tile: 4 × 4 accumulators.
    const STREAM_ACTIVATION_ROWS: usize = 4;

    /// The weight-streaming product for `m < PRODUCT_MIN_ROWS`; shapes validated, all positive;
    /// the CPU has AVX-512 F and BF16.
    pub(super) fn stream(
        x: &[f32],
        m: usize,
        k: usize,
        w: &[bf16],
        n: usize,
        bias: Option<&[f32]>,
        out: &mut [f32],
    ) {
        let mut rows = ROWS.with(|cell| std::mem::take(&mut *cell.borrow_mut()));
        rows.clear();
        rows.extend(x.iter().map(|&v| bf16_bits(v)));
        let chunk = n
            .div_ceil(threads() * 16)
            .next_multiple_of(MAX_STREAM_WEIGHT_ROWS);
        // With more than one activation row the side-by-side tile wins (it loads each activation
        // vector once for four weight rows). Each output is one accumulator summed in order
        // whatever the tile, so a row's result is the same in all of them.
        let tile_weight_rows = if m == 1 {
            one_row_weight_rows()
        } else {
            STREAM_WEIGHT_ROWS
        };
        let out = SharedMut::new(out);
        let activations = &rows;
        (0..n.div_ceil(chunk)).into_par_iter().for_each(|task| {
            let end = ((task + 1) * chunk).min(n);
            let mut j = task * chunk;
            while j < end {
                let weight_rows = tile_weight_rows.min(end - j);
                let mut first = 0;
                while first < m {
                    let tile_rows = STREAM_ACTIVATION_ROWS.min(m - first);
                    let tile = StreamTile {
                        activations: &activations[first * k..(first + tile_rows) * k],
                        weights: &w[j * k..(j + weight_rows) * k],
                        k,
                    };
                    // SAFETY: the CPU supports AVX-512 F and BF16 (the caller checked).
                    let sums = unsafe { tile.sums(weight_rows, tile_rows) };
                    for (r, sums) in sums[..weight_rows].iter().enumerate() {
                        let bias = bias.map_or(0.0, |b| b[j + r]);
                        for (t, &sum) in sums[..tile_rows].iter().enumerate() {
                            // SAFETY: row `first + t < m`, column `j + r < n`; each task writes
                            // only its own columns.
                            unsafe { *out.get().add((first + t) * n + j + r) = sum + bias };
                        }
                    }
                    first += tile_rows;
                }
                j += weight_rows;
            }
        });
        ROWS.with(|cell| *cell.borrow_mut() = rows);
    }

    /// Weight rows a task reads side by side for one activation row (decode), by CPU vendor.
    /// On Zen 5 one row after another, a single sequential stream per thread, ran 1.13 and
    /// 1.21 times as fast as four side by side over the 8B decode matrices (two runs); on a
    /// Xeon with AMX (KVM guest) eight side by side ran 1.46 times as fast as one and 1.06
    /// times as fast as four (`cargo bench -p keye-kernels -- "linear gemv"`).
    fn one_row_weight_rows() -> usize {
        static ROWS: OnceLock<usize> = OnceLock::new();
        *ROWS.get_or_init(|| {
            let vendor = std::arch::x86_64::__cpuid(0);
            let amd = [vendor.ebx, vendor.edx, vendor.ecx]
                == [
                    u32::from_le_bytes(*b"Auth"),
                    u32::from_le_bytes(*b"enti"),
                    u32::from_le_bytes(*b"cAMD"),
                ];
            if amd { 1 } else { MAX_STREAM_WEIGHT_ROWS }
        })
    }

    struct StreamTile<'a> {
        /// Activation rows rounded to bf16 (bits), `k` each.
        activations: &'a [u16],
        /// Weight rows, `k` each.
        weights: &'a [bf16],
        k: usize,
    }

    impl StreamTile<'_> {
        /// `sums[r][t]`: weight row `r` dotted with activation row `t`.
        ///
        /// # Safety
        /// AVX-512 F and BF16 are supported; `weight_rows <= MAX_STREAM_WEIGHT_ROWS` and
        /// `activation_rows <= STREAM_ACTIVATION_ROWS` match the slices.
        unsafe fn sums(
            &self,
            weight_rows: usize,
            activation_rows: usize,
        ) -> [[f32; STREAM_ACTIVATION_ROWS]; MAX_STREAM_WEIGHT_ROWS] {
            // SAFETY: forwarded.
            unsafe {
                match (weight_rows, activation_rows) {
                    (8, 1) => self.run::<8, 1>(),
                    (4, 4) => self.run::<4, 4>(),
                    (4, 3) => self.run::<4, 3>(),
                    (4, 2) => self.run::<4, 2>(),
                    (4, _) => self.run::<4, 1>(),
                    (_, 4) => self.run::<1, 4>(),
                    (_, 3) => self.run::<1, 3>(),
                    (_, 2) => self.run::<1, 2>(),
                    _ => self.run::<1, 1>(),
                }
            }
        }

        /// `R` weight rows × `T` activation rows. A tile of fewer than four weight rows takes
        /// them one at a time.
        #[target_feature(enable = "avx512f,avx512bf16,avx512bw")]
        unsafe fn run<const R: usize, const T: usize>(
            &self,
        ) -> [[f32; STREAM_ACTIVATION_ROWS]; MAX_STREAM_WEIGHT_ROWS] {
            let mut sums = [[0.0f32; STREAM_ACTIVATION_ROWS]; MAX_STREAM_WEIGHT_ROWS];
            let k = self.k;
            let groups = if R == 1 { self.weights.len() / k } else { 1 };
            for group in 0..groups {
                let weights = self.weights[group * R * k..].as_ptr().cast::<u16>();
                let activations = self.activations.as_ptr();
                // SAFETY: every load covers values `c..c + 32` (masked to `k`) of a row inside
                // the slices.
                unsafe {
                    let mut acc = [[_mm512_setzero_ps(); T]; R];
                    // Whole vectors with plain loads, then the tail with masked ones: masked
                    // loads in the streaming loop read about 15 % less of the memory bandwidth
                    // on Zen 5.
                    let whole = k / 32 * 32;
                    let mut c = 0;
                    while c < whole {
                        // No closures here: they would not inherit the target features and
                        // stay out-of-line calls.
                        let mut w = [_mm512_setzero_si512(); R];
                        for (r, w) in w.iter_mut().enumerate() {
                            *w = _mm512_loadu_si512(weights.add(r * k + c).cast());
                        }
                        for t in 0..T {
                            let row = activations.add(t * k + c);
                            let a = bh(_mm512_loadu_si512(row.cast()));
                            for (acc, &w) in acc.iter_mut().zip(&w) {
                                acc[t] = _mm512_dpbf16_ps(acc[t], bh(w), a);
                            }
                        }
                        c += 32;
                    }
                    if c < k {
                        let mask: __mmask32 = (1u32 << (k - c)) - 1;
                        let mut w = [_mm512_setzero_si512(); R];
                        for (r, w) in w.iter_mut().enumerate() {
                            *w = _mm512_maskz_loadu_epi16(mask, weights.add(r * k + c).cast());
                        }
                        for t in 0..T {
                            let row = activations.add(t * k + c);
                            let a = bh(_mm512_maskz_loadu_epi16(mask, row.cast()));
                            for (acc, &w) in acc.iter_mut().zip(&w) {
                                acc[t] = _mm512_dpbf16_ps(acc[t], bh(w), a);
                            }
                        }
                    }
                    for r in 0..R {
                        for t in 0..T {
                            sums[group * R + r][t] = _mm512_reduce_add_ps(acc[r][t]);
                        }
                    }
                }
            }
            sums
        }
    }

    /// What multiplies the panels: `vdpbf16ps` register tiles on stored bf16 rows, or AMX tiles.
    #[derive(Clone, Copy)]
    pub(super) enum PanelKernel<'a> {
        Vector(&'a [bf16]),
        Amx(AmxWeights<'a>),
    }

    /// The weights of the AMX product: stored bf16 rows, or GGML blocks decoded to bf16 a block
    /// of rows at a time.
    #[derive(Clone, Copy)]
    pub(super) enum AmxWeights<'a> {
        Bf16(&'a [bf16]),
        Quantized(QuantType, &'a [u8]),
    }

    /// Shapes validated, all positive; the CPU has AVX-512 F, BW and BF16, and for
    /// [`PanelKernel::Amx`] usable AMX tiles and `n >= amx::BLOCK`.
    pub(super) fn linear(
        x: &[f32],
        m: usize,
        k: usize,
        kernel: PanelKernel<'_>,
        n: usize,
        bias: Option<&[f32]>,
        out: &mut [f32],
    ) {
        let amx = matches!(kernel, PanelKernel::Amx(_));
        // AMX reads whole steps of depth from the panels: their pairs past `k` are zeros.
        let pairs = if amx {
            k.next_multiple_of(amx::STEP) / 2
        } else {
            k.div_ceil(2)
        };
        let panel_words = pairs * PANEL_ROWS;
        let panel_count = m.div_ceil(PANEL_ROWS);
        let mut panels = PANELS.with(|cell| std::mem::take(&mut *cell.borrow_mut()));
        // Not cleared first: `transpose_rounded` writes every word, the padding's zeros too.
        panels.resize(panel_count * panel_words, 0);
        panels
            .par_chunks_mut(panel_words)
            .zip(x.par_chunks(PANEL_ROWS * k))
            // SAFETY: the CPU supports AVX-512 F and BW (the caller checked).
            .for_each(|(panel, rows)| unsafe { transpose_rounded(rows, k, panel) });

        // About 16 tasks per thread, in whole tiles, so rayon can balance uneven progress; 8 on
        // AMX, whose tasks group their weight blocks against each panel (`AmxTiles::columns`),
        // so that a task of the vision tower's 1152 columns holds more than two blocks (its
        // three products 1.0-1.1x as fast as with 16 tasks per thread).
        let (tile_columns, tasks_per_thread) = if amx {
            (amx::BLOCK, 8)
        } else {
            (TILE_COLUMNS, 16)
        };
        let columns_per_task = n
            .div_ceil(threads() * tasks_per_thread)
            .next_multiple_of(tile_columns)
            .max(tile_columns);
        // Every weight tile passes over the panels of one pass in turn, so a pass must stay in
        // the last-level cache: all of a 1280-token image's MLP input (5120 × 4304 values,
        // 44 MB of panels) streamed from memory once per tile ran at a quarter of the peak.
        let panels_per_pass = (PASS_BYTES / (panel_words * 4)).max(1);
        let out = SharedMut::new(out);
        for pass in (0..panel_count).step_by(panels_per_pass) {
            let pass = pass..(pass + panels_per_pass).min(panel_count);
            let panels_ref = &panels;
            (0..n.div_ceil(columns_per_task))
                .into_par_iter()
                .for_each(|task| {
                    let first = task * columns_per_task;
                    let end = (first + columns_per_task).min(n);
                    let w = match kernel {
                        PanelKernel::Amx(weights) => {
                            let tiles = AmxTiles {
                                panels: panels_ref,
                                panel_words,
                                m,
                                k,
                                weights,
                                n,
                                bias,
                            };
                            // SAFETY: AMX is usable (the caller checked); `first..end` are this
                            // task's own columns.
                            unsafe { tiles.columns(first..end, pass.clone(), out) };
                            return;
                        }
                        PanelKernel::Vector(w) => w,
                    };
                    let mut column = first;
                    while column < end {
                        let columns = TILE_COLUMNS.min(end - column);
                        for panel in pass.clone() {
                            let rows = PANEL_ROWS.min(m - panel * PANEL_ROWS);
                            let tile = Tile {
                                activations: &panels_ref[panel * panel_words..][..panel_words],
                                weights: &w[column * k..(column + columns) * k],
                                k,
                            };
                            // SAFETY: the CPU supports AVX-512 F and BF16 (the caller checked).
                            let sums = unsafe { tile.sums(columns, rows) };
                            // Row by row, so each output row's columns are written together.
                            for r in 0..rows {
                                let row = panel * PANEL_ROWS + r;
                                for (c, sums) in sums[..columns].iter().enumerate() {
                                    let bias = bias.map_or(0.0, |b| b[column + c]);
                                    // SAFETY: row < m, column + c < n; each task writes only
                                    // its own columns.
                                    unsafe {
                                        *out.get().add(row * n + column + c) = sums[r] + bias
                                    };
                                }
                            }
                        }
                        column += columns;
                    }
                });
        }
        PANELS.with(|cell| *cell.borrow_mut() = panels);
    }

    /// The panel product on AMX tiles: blocks of [`amx::BLOCK`] weight rows by one panel.
    struct AmxTiles<'a> {
        panels: &'a [u32],
        panel_words: usize,
        m: usize,
        k: usize,
        weights: AmxWeights<'a>,
        n: usize,
        bias: Option<&'a [f32]>,
    }

    thread_local! {
        /// One weight block packed for the tiles, `[step][amx::BLOCK rows][amx::STEP values]`.
        static PACKED_BLOCK: RefCell<Vec<bf16>> = const { RefCell::new(Vec::new()) };
    }

    impl AmxTiles<'_> {
        /// Output columns `columns` of the rows in the panels `pass`.
        ///
        /// With several panels each block of stored bf16 weight rows is first copied step by
        /// step into 2 KiB runs: a tile of 16 rows straight from the stored matrix reads 16
        /// lines a whole row apart, which all fall in one set of the L1 cache, and with the
        /// packed block (and the panel prefetches of [`amx::bf16_block`]) a product of 512 rows
        /// of 4096 by 12288 ran 1.16 to 1.23 times as fast on two Xeon cores. One panel does not
        /// pay for the copy (32 rows ran at half the speed); the copy also pads a partial last
        /// step with zeros. Quantized blocks are always decoded into the packed layout.
        ///
        /// # Safety
        /// AMX is usable, `n >= amx::BLOCK`, and no other task writes these columns.
        unsafe fn columns(&self, columns: Range<usize>, pass: Range<usize>, out: SharedMut) {
            const PACKED_MIN_PANELS: usize = 4;
            // Blocks of weight rows that meet each panel in turn, packed together in at most
            // GROUP_BYTES (half of a core's L2): a panel then comes from the last-level cache
            // once per group instead of once per block (one block at a time: a 512 × 4096 ×
            // 12288 product 1.08-1.15x as slow, the vision shapes 1.06-1.22x).
            const GROUP_BLOCKS: usize = 8;
            const GROUP_BYTES: usize = 1 << 20;
            let k = self.k;
            let steps = k.div_ceil(amx::STEP);
            let pack = match self.weights {
                AmxWeights::Bf16(_) => {
                    pass.len() >= PACKED_MIN_PANELS || !k.is_multiple_of(amx::STEP)
                }
                AmxWeights::Quantized(..) => true,
            };
            let block_len = steps * amx::BLOCK * amx::STEP;
            let group_blocks = (GROUP_BYTES / (2 * block_len)).clamp(1, GROUP_BLOCKS);
            let mut packed = PACKED_BLOCK.with(|cell| std::mem::take(&mut *cell.borrow_mut()));
            if pack {
                packed.clear();
                packed.resize(group_blocks * block_len, bf16::ZERO);
            }
            let mut sums = [[0.0f32; amx::BLOCK]; amx::BLOCK];
            let mut column = columns.start;
            while column < columns.end {
                let mut group = [(0, 0, std::ptr::null::<bf16>()); GROUP_BLOCKS];
                let mut blocks = 0;
                while blocks < group_blocks && column < columns.end {
                    // A block needs 32 whole weight rows: the last, short one starts early and
                    // recomputes columns already written (the same sums), writing only its new
                    // ones.
                    let block = column.min(self.n - amx::BLOCK);
                    let start = match self.weights {
                        AmxWeights::Bf16(w) if !pack => w[block * k..].as_ptr(),
                        AmxWeights::Bf16(w) => {
                            let target = &mut packed[blocks * block_len..];
                            pack_block(&w[block * k..(block + amx::BLOCK) * k], k, target);
                            target.as_ptr()
                        }
                        AmxWeights::Quantized(ty, w) => {
                            let target = &mut packed[blocks * block_len..];
                            let row_bytes = k / ty.block_values() * ty.block_bytes();
                            let rows = &w[block * row_bytes..(block + amx::BLOCK) * row_bytes];
                            // SAFETY: AVX-512 F, BW and BF16 come with AMX here (the caller
                            // checked them); `k` is a whole number of blocks (validated).
                            unsafe { decode_block(ty, rows, target) };
                            target.as_ptr()
                        }
                    };
                    group[blocks] = (block, column - block, start);
                    blocks += 1;
                    column = (block + amx::BLOCK).min(columns.end);
                }
                let (row_bytes, step_bytes) = if pack {
                    (2 * amx::STEP, 2 * amx::STEP * amx::BLOCK)
                } else {
                    (2 * k, 2 * amx::STEP)
                };
                for panel in pass.clone() {
                    for &(block, new_from, start) in &group[..blocks] {
                        let operands = amx::Bf16Block {
                            weights: start.cast(),
                            row_bytes,
                            step_bytes,
                            steps,
                            panel: self.panels[panel * self.panel_words..].as_ptr(),
                        };
                        let written = OutputBlock {
                            first_row: panel * PANEL_ROWS,
                            rows: PANEL_ROWS.min(self.m - panel * PANEL_ROWS),
                            first_column: block,
                            new_from,
                        };
                        // SAFETY: the weights hold `steps` whole steps of 32 rows; the panel
                        // holds `k` rounded up to whole steps of pairs; AMX is usable (the
                        // caller guarantees it); the block is inside the output.
                        unsafe {
                            written.prefetch(out, self.n);
                            amx::bf16_block(&operands, &mut sums);
                            written.store(&sums, self.bias, out, self.n);
                        }
                    }
                }
            }
            PACKED_BLOCK.with(|cell| *cell.borrow_mut() = packed);
        }
    }

    /// `[step][amx::BLOCK rows][amx::STEP values]` of [`amx::BLOCK`] weight rows of `k` values;
    /// `packed` holds whole steps, zeros past `k`.
    fn pack_block(weights: &[bf16], k: usize, packed: &mut [bf16]) {
        for (r, row) in weights.chunks_exact(k).enumerate() {
            let (whole, tail) = row.as_chunks::<{ amx::STEP }>();
            for (step, values) in whole.iter().enumerate() {
                let at = (step * amx::BLOCK + r) * amx::STEP;
                // A fixed-size copy, one vector move, not a `memcpy` call per step.
                let target: &mut [bf16; amx::STEP] =
                    (&mut packed[at..at + amx::STEP]).try_into().unwrap();
                *target = *values;
            }
            if !tail.is_empty() {
                let at = (whole.len() * amx::BLOCK + r) * amx::STEP;
                packed[at..at + tail.len()].copy_from_slice(tail);
            }
        }
    }

    /// [`pack_block`] for [`amx::BLOCK`] rows of GGML blocks (`rows` holds them all, the same
    /// number of blocks each): every value decoded as [`crate::quant::dequantize`] decodes it
    /// (the same f32 operations), then rounded to bf16.
    ///
    /// # Safety
    /// AVX-512 F and BW are supported; `packed` holds a step for every 32 values of a row.
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn decode_block(ty: QuantType, rows: &[u8], packed: &mut [bf16]) {
        const BLOCK_STEP: usize = 2 * amx::STEP * amx::BLOCK;
        let row_bytes = rows.len() / amx::BLOCK;
        for (r, row) in rows.chunks_exact(row_bytes).enumerate() {
            // Step `s` of this row: `STEP` values, `BLOCK_STEP` bytes after step `s - 1`.
            let target = packed[r * amx::STEP..].as_mut_ptr().cast::<u8>();
            // SAFETY: every block read is inside `row`; every step written is inside `packed`;
            // the loads of 16 quants read bytes of the block.
            unsafe {
                let step = |s: usize| target.add(s * BLOCK_STEP);
                match ty {
                    QuantType::Q8_0 => {
                        for (s, block) in row.chunks_exact(ty.block_bytes()).enumerate() {
                            let d = _mm512_set1_ps(read_f16(block, 0));
                            let quants = block.as_ptr().add(2);
                            let low = _mm512_cvtepi8_epi32(_mm_loadu_si128(quants.cast()));
                            let high = _mm512_cvtepi8_epi32(_mm_loadu_si128(quants.add(16).cast()));
                            store_rounded(
                                _mm512_mul_ps(_mm512_cvtepi32_ps(low), d),
                                _mm512_mul_ps(_mm512_cvtepi32_ps(high), d),
                                step(s),
                            );
                        }
                    }
                    QuantType::Q4_0 => {
                        let eight = _mm512_set1_epi32(8);
                        for (s, block) in row.chunks_exact(ty.block_bytes()).enumerate() {
                            let d = _mm512_set1_ps(read_f16(block, 0));
                            let (low, high) = nibbles(block.as_ptr().add(2));
                            let low = _mm512_sub_epi32(low, eight);
                            let high = _mm512_sub_epi32(high, eight);
                            store_rounded(
                                _mm512_mul_ps(_mm512_cvtepi32_ps(low), d),
                                _mm512_mul_ps(_mm512_cvtepi32_ps(high), d),
                                step(s),
                            );
                        }
                    }
                    QuantType::Q4K => {
                        const SUB_BLOCK: usize = 32;
                        for (b, block) in row.chunks_exact(ty.block_bytes()).enumerate() {
                            let (d, dmin) = (read_f16(block, 0), read_f16(block, 2));
                            let scales = &block[Q4K_SCALES..Q4K_QUANTS];
                            for pair in 0..4 {
                                let quants = block.as_ptr().add(Q4K_QUANTS + pair * SUB_BLOCK);
                                let (first_low, first_high) = nibbles(quants);
                                let (second_low, second_high) = nibbles(quants.add(16));
                                for (half, low, high) in
                                    [(0, first_low, second_low), (1, first_high, second_high)]
                                {
                                    let (scale, min) = scale_min_k4(2 * pair + half, scales);
                                    let scale = _mm512_set1_ps(d * f32::from(scale));
                                    let min = _mm512_set1_ps(dmin * f32::from(min));
                                    store_rounded(
                                        scaled_less(low, scale, min),
                                        scaled_less(high, scale, min),
                                        step(8 * b + 2 * pair + half),
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// The low and the high nibbles of 16 bytes at `bytes`, as 32-bit integers.
    ///
    /// # Safety
    /// AVX-512 F is supported; 16 bytes at `bytes` are readable.
    #[inline(always)]
    unsafe fn nibbles(bytes: *const u8) -> (__m512i, __m512i) {
        // SAFETY: forwarded.
        unsafe {
            let quants = _mm512_cvtepu8_epi32(_mm_loadu_si128(bytes.cast()));
            let low = _mm512_and_si512(quants, _mm512_set1_epi32(0x0f));
            (low, _mm512_srli_epi32::<4>(quants))
        }
    }

    /// `q · scale − min` for 16 integers `q`, rounded twice as the scalar decoder does.
    ///
    /// # Safety
    /// AVX-512 F is supported.
    #[inline(always)]
    unsafe fn scaled_less(q: __m512i, scale: __m512, min: __m512) -> __m512 {
        // SAFETY: forwarded.
        unsafe { _mm512_sub_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(q), scale), min) }
    }

    /// `low` then `high` rounded to bf16 ([`rounded_bits`]): 64 bytes at `target`.
    ///
    /// # Safety
    /// AVX-512 F and BW are supported; 64 bytes at `target` are writable.
    #[inline(always)]
    unsafe fn store_rounded(low: __m512, high: __m512, target: *mut u8) {
        // SAFETY: forwarded.
        unsafe {
            let packed =
                _mm512_permutex2var_epi16(rounded_bits(low), high_halves(), rounded_bits(high));
            _mm512_storeu_si512(target.cast(), packed);
        }
    }

    /// Where a block's `sums[weight row][activation row]` go in the output.
    struct OutputBlock {
        first_row: usize,
        rows: usize,
        first_column: usize,
        /// Columns of the block below this one were written by an earlier block.
        new_from: usize,
    }

    impl OutputBlock {
        /// Asks for the block's output lines with intent to write: the sums arrive after the
        /// whole depth, by when the lines (of an output too large for the caches, written once)
        /// are no longer a miss on the store.
        ///
        /// # Safety
        /// The block's rows and columns are inside `out` (`n` columns).
        #[inline(always)]
        unsafe fn prefetch(&self, out: SharedMut, n: usize) {
            const LAST_BYTE: usize = 4 * amx::BLOCK - 1;
            for row in self.first_row..self.first_row + self.rows {
                // SAFETY: the row's 32 columns are inside the output.
                unsafe {
                    let at = out.get().add(row * n + self.first_column).cast::<i8>();
                    for offset in [0, 64, LAST_BYTE] {
                        _mm_prefetch::<_MM_HINT_ET0>(at.add(offset));
                    }
                }
            }
        }

        /// `out[row][column] = sums[column][row] + bias[column]`, 16 × 16 sums transposed in
        /// registers at a time.
        ///
        /// # Safety
        /// AVX-512 F is supported; the block's rows and columns are inside `out` (`n` columns)
        /// and no other task writes its new columns.
        #[target_feature(enable = "avx512f")]
        unsafe fn store(
            &self,
            sums: &[[f32; amx::BLOCK]; amx::BLOCK],
            bias: Option<&[f32]>,
            out: SharedMut,
            n: usize,
        ) {
            for half in 0..2 {
                let first = 16 * half;
                let skipped = self.new_from.saturating_sub(first).min(16);
                let mask: __mmask16 = (u32::from(u16::MAX) << skipped) as u16;
                if mask == 0 {
                    continue;
                }
                let bias = match bias {
                    // SAFETY: the block's 32 columns are inside `bias` (`n` values).
                    Some(b) => unsafe { _mm512_loadu_ps(b[self.first_column + first..].as_ptr()) },
                    None => _mm512_setzero_ps(),
                };
                for quarter in 0..2 {
                    let rows = std::array::from_fn(|i| {
                        // SAFETY: 16 of the 32 values of a sum row.
                        unsafe { _mm512_loadu_ps(sums[first + i][16 * quarter..].as_ptr()) }
                    });
                    let columns = transpose(rows);
                    for (j, &values) in columns.iter().enumerate() {
                        let t = 16 * quarter + j;
                        if t >= self.rows {
                            break;
                        }
                        let row = self.first_row + t;
                        // SAFETY: row < m and the 16 columns are inside the output row; the
                        // masked-off ones (written before) are not touched.
                        unsafe {
                            let at = out.get().add(row * n + self.first_column + first);
                            _mm512_mask_storeu_ps(at, mask, _mm512_add_ps(values, bias));
                        }
                    }
                }
            }
        }
    }

    /// The 16 × 16 transpose of `rows`: in-lane 32- and 64-bit interleaves, then two rounds of
    /// 128-bit lane shuffles.
    #[inline(always)]
    fn transpose(rows: [__m512; 16]) -> [__m512; 16] {
        // SAFETY: AVX-512 F is supported (the only caller runs with it).
        unsafe {
            let pairs: [__m512; 16] = std::array::from_fn(|i| {
                let (a, b) = (rows[i & !1], rows[i | 1]);
                if i % 2 == 0 {
                    _mm512_unpacklo_ps(a, b)
                } else {
                    _mm512_unpackhi_ps(a, b)
                }
            });
            // quads[4g + c], 128-bit lane L: column 4L + c of rows 4g..4g + 4.
            let quads: [__m512; 16] = std::array::from_fn(|i| {
                let (g, c) = (i / 4, i % 4);
                let a = _mm512_castps_pd(pairs[4 * g + c / 2]);
                let b = _mm512_castps_pd(pairs[4 * g + 2 + c / 2]);
                _mm512_castpd_ps(if c % 2 == 0 {
                    _mm512_unpacklo_pd(a, b)
                } else {
                    _mm512_unpackhi_pd(a, b)
                })
            });
            let mut columns = [_mm512_setzero_ps(); 16];
            for c in 0..4 {
                let even_low = _mm512_shuffle_f32x4::<0x88>(quads[c], quads[4 + c]);
                let even_high = _mm512_shuffle_f32x4::<0x88>(quads[8 + c], quads[12 + c]);
                let odd_low = _mm512_shuffle_f32x4::<0xdd>(quads[c], quads[4 + c]);
                let odd_high = _mm512_shuffle_f32x4::<0xdd>(quads[8 + c], quads[12 + c]);
                columns[c] = _mm512_shuffle_f32x4::<0x88>(even_low, even_high);
                columns[8 + c] = _mm512_shuffle_f32x4::<0xdd>(even_low, even_high);
                columns[4 + c] = _mm512_shuffle_f32x4::<0x88>(odd_low, odd_high);
                columns[12 + c] = _mm512_shuffle_f32x4::<0xdd>(odd_low, odd_high);
            }
            columns
        }
    }

    /// Rounds up to [`PANEL_ROWS`] activation rows to bf16 and writes them as `[pairs][PANEL_ROWS]`
    /// words (the low half the even value) over the whole `panel`: rows past `rows`, the odd
    /// value past an odd `k` and the pairs past `k` (a depth padded to whole AMX steps) are
    /// zeros, whatever the reused buffer held (an infinity left there would turn the zero
    /// weights of the padding into NaNs). Whole vectors of [`STEP_PAIRS`] pairs are rounded 32
    /// values at a time, the rest one pair at a time.
    ///
    /// # Safety
    /// AVX-512 F and BW are supported.
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn transpose_rounded(rows: &[f32], k: usize, panel: &mut [u32]) {
        // One vector of pair words: 32 values of a row, written into a 2 KiB block of the panel
        // (16 pairs × one 128-byte line per pair) that stays in L1 while the rows pass.
        const STEP_PAIRS: usize = 16;
        /// Rows whose pair words one 16 × 16 transpose turns into whole 64-byte runs.
        const GROUP: usize = 16;
        let pairs = k.div_ceil(2);
        let vector_pairs = k / (2 * STEP_PAIRS) * STEP_PAIRS;
        let row_count = rows.len() / k;
        for first in (0..vector_pairs).step_by(STEP_PAIRS) {
            let mut r = 0;
            // Whole groups: transposed in registers, each pair's 16 words stored as one vector
            // (a word at a time, 16 scattered stores per row, took 4 % of an image's time).
            while r + GROUP <= row_count {
                let mut words = [_mm512_setzero_ps(); GROUP];
                for (i, words) in words.iter_mut().enumerate() {
                    // SAFETY: pairs `first..first + 16` are 32 values inside row `r + i`.
                    *words =
                        _mm512_castsi512_ps(unsafe { pair_words(rows, (r + i) * k + 2 * first) });
                }
                for (i, &column) in transpose(words).iter().enumerate() {
                    // SAFETY: pair `first + i` of rows `r..r + 16`: 16 words of the panel.
                    unsafe {
                        let at = panel.as_mut_ptr().add((first + i) * PANEL_ROWS + r);
                        _mm512_storeu_ps(at.cast(), column);
                    }
                }
                r += GROUP;
            }
            let mut words = [0u32; STEP_PAIRS];
            for r in r..row_count {
                // SAFETY: pairs `first..first + 16` are 32 values inside row `r`; 16 words into
                // a 16-word array.
                unsafe {
                    let row_words = pair_words(rows, r * k + 2 * first);
                    _mm512_storeu_si512(words.as_mut_ptr().cast(), row_words);
                }
                for (i, &word) in words.iter().enumerate() {
                    panel[(first + i) * PANEL_ROWS + r] = word;
                }
            }
        }
        for (r, row) in rows.chunks_exact(k).enumerate() {
            for p in vector_pairs..pairs {
                let low = bf16_bits(row[2 * p]);
                let high = row.get(2 * p + 1).map_or(0, |&v| bf16_bits(v));
                panel[p * PANEL_ROWS + r] = u32::from(low) | (u32::from(high) << 16);
            }
        }
        for (p, words) in panel.chunks_exact_mut(PANEL_ROWS).enumerate() {
            let from = if p < pairs { row_count } else { 0 };
            words[from..].fill(0);
        }
    }

    /// The 16 pair words of the 32 values at `rows[at..]`, rounded to bf16.
    ///
    /// # Safety
    /// AVX-512 F and BW are supported; `at + 32 <= rows.len()`.
    #[inline(always)]
    unsafe fn pair_words(rows: &[f32], at: usize) -> __m512i {
        // SAFETY: forwarded.
        unsafe {
            let values = rows.as_ptr().add(at);
            _mm512_permutex2var_epi16(
                rounded_bits(_mm512_loadu_ps(values)),
                high_halves(),
                rounded_bits(_mm512_loadu_ps(values.add(16))),
            )
        }
    }

    /// Indices of the upper 16 bits of each 32-bit lane of two vectors, in order: packs 32
    /// values rounded by [`rounded_bits`] into 16 pair words.
    #[inline(always)]
    fn high_halves() -> __m512i {
        let indices: [u16; 32] = std::array::from_fn(|i| 2 * i as u16 + 1);
        // SAFETY: 64 bytes of plain data.
        unsafe { std::mem::transmute(indices) }
    }

    /// [`bf16_bits`] of 16 values, in the upper half of each lane (the lower half is garbage).
    ///
    /// # Safety
    /// AVX-512 F is supported.
    #[inline(always)]
    pub(crate) unsafe fn rounded_bits(x: __m512) -> __m512i {
        // SAFETY: the callers run with AVX-512 F.
        unsafe {
            let bits = _mm512_castps_si512(x);
            let odd = _mm512_and_si512(_mm512_srli_epi32::<16>(bits), _mm512_set1_epi32(1));
            let rounded = _mm512_add_epi32(bits, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7fff)));
            // A NaN keeps its upper bits and is made quiet, as `bf16_bits` does.
            let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x);
            _mm512_mask_or_epi32(rounded, nan, bits, _mm512_set1_epi32(0x0040_0000))
        }
    }

    struct Tile<'a> {
        /// One transposed activation panel.
        activations: &'a [u32],
        /// The tile's weight rows, `k` values each.
        weights: &'a [bf16],
        k: usize,
    }

    impl Tile<'_> {
        /// `sums[c][r]`: weight row `c` dotted with panel row `r`, for `columns <= TILE_COLUMNS`
        /// and `rows <= PANEL_ROWS`.
        ///
        /// # Safety
        /// AVX-512 F and BF16 are supported.
        unsafe fn sums(&self, columns: usize, rows: usize) -> [[f32; PANEL_ROWS]; TILE_COLUMNS] {
            // SAFETY: forwarded; `weights` holds `columns` rows.
            unsafe {
                match (columns, rows > PANEL_ROWS / 2) {
                    (8, true) => self.run::<8, 2>(),
                    (8, false) => self.run::<8, 1>(),
                    (7, _) => self.run::<7, 2>(),
                    (6, _) => self.run::<6, 2>(),
                    (5, _) => self.run::<5, 2>(),
                    (4, _) => self.run::<4, 2>(),
                    (3, _) => self.run::<3, 2>(),
                    (2, _) => self.run::<2, 2>(),
                    _ => self.run::<1, 2>(),
                }
            }
        }

        /// `C` weight rows × `H` vectors (16 panel rows each).
        #[target_feature(enable = "avx512f,avx512bf16")]
        unsafe fn run<const C: usize, const H: usize>(&self) -> [[f32; PANEL_ROWS]; TILE_COLUMNS] {
            let k = self.k;
            let full_pairs = k / 2;
            let weights = self.weights.as_ptr();
            let activations = self.activations.as_ptr();
            let mut sums = [[0.0f32; PANEL_ROWS]; TILE_COLUMNS];
            // SAFETY: pair `p < k / 2` of weight row `c` is the 4 bytes at `c·k + 2p` values;
            // the panel holds `k.div_ceil(2)` pairs of `PANEL_ROWS` words.
            unsafe {
                let mut acc = [[_mm512_setzero_ps(); H]; C];
                for p in 0..full_pairs {
                    let pairs = std::array::from_fn(|c| {
                        weights.add(c * k + 2 * p).cast::<i32>().read_unaligned()
                    });
                    step(&mut acc, activations.add(p * PANEL_ROWS), pairs);
                }
                if k % 2 == 1 {
                    let pairs =
                        std::array::from_fn(|c| i32::from((*weights.add(c * k + k - 1)).to_bits()));
                    step(&mut acc, activations.add(full_pairs * PANEL_ROWS), pairs);
                }
                for (c, acc) in acc.iter().enumerate() {
                    for (h, &a) in acc.iter().enumerate() {
                        _mm512_storeu_ps(sums[c].as_mut_ptr().add(16 * h), a);
                    }
                }
            }
            sums
        }
    }

    /// `acc[c][h] += pair c of the weights · pair of panel rows `16h..16h + 16` at `activations`.
    ///
    /// # Safety
    /// AVX-512 F and BF16 are supported; `activations` points to `16 · H` readable words.
    #[inline(always)]
    unsafe fn step<const C: usize, const H: usize>(
        acc: &mut [[__m512; H]; C],
        activations: *const u32,
        pairs: [i32; C],
    ) {
        // SAFETY: forwarded.
        unsafe {
            let mut lanes = [_mm512_setzero_si512(); H];
            for (h, lane) in lanes.iter_mut().enumerate() {
                *lane = _mm512_loadu_si512(activations.add(16 * h).cast());
            }
            for (acc, &pair) in acc.iter_mut().zip(&pairs) {
                let b = bh(_mm512_set1_epi32(pair));
                for (a, &lane) in acc.iter_mut().zip(&lanes) {
                    *a = _mm512_dpbf16_ps(*a, bh(lane), b);
                }
            }
        }
    }

    #[inline(always)]
    fn bh(v: __m512i) -> __m512bh {
        // SAFETY: both are 512 bits of plain data.
        unsafe { std::mem::transmute(v) }
    }
}
