//! `out = x · wᵀ + bias` for block-quantized `w` and many activation rows (prefill, vision), by
//! 8-bit integer dot products: AVX-512 VNNI `vpdpbusd` multiplies 64 byte pairs per instruction,
//! four times the f32 FMA rate, so the products run well above the f32 GEMM on decoded weights.
//!
//! Every format is first brought to one form per 32-value block of a weight row: unsigned
//! levels `q` (bytes), a scale `s` and an offset `o` with `w = s·q − o`:
//!
//! | format | `q`            | `s`      | `o`        |
//! |--------|----------------|----------|------------|
//! | Q8_0   | stored + 128   | `d`      | `128·d`    |
//! | Q4_0   | nibble         | `d`      | `8·d`      |
//! | Q4_K   | nibble         | `d·sc_j` | `dmin·m_j` |
//!
//! With the activations rounded to 8-bit blocks of 32 (`a = sa·qa`, as the GEMV rounds them for
//! `Q8_0` and `Q4_0`; its `Q4_K` rounding shares a scale per 256 values), a block contributes
//! `s·sa·Σ q·qa − o·(sa·Σ qa)`: one integer dot product and two f32 multiply-adds per 32 values.
//!
//! Weight rows are packed [`PANEL`] at a time into `vpdpbusd` order (for each 4-value step of a
//! block, 4 bytes per weight row), the panel's per-block scales and offsets beside them; every
//! tile of [`TILE_ROWS`] activation rows then runs over the panel with its integer sums, f32
//! sums and the panel's two vectors all in registers.

use std::cell::RefCell;

use rayon::prelude::*;

use super::matmul::{ACTIVATION_BLOCK, ActivationLayout, QuantizedRows, with_quantized_rows};
use super::{QuantType, formats};
use crate::parallel::SharedMut;

/// Weight rows (output columns) per packed panel: two 16-lane vectors.
const PANEL: usize = 32;
/// Activation rows per register tile: 6 × 2 integer and 6 × 2 f32 accumulators, the two
/// weight vectors and the scale vectors fill the 32 vector registers.
const TILE_ROWS: usize = 6;
/// 4-value steps per block (one `vpdpbusd` each).
const STEPS: usize = ACTIVATION_BLOCK / 4;

/// One packed panel: `levels` `[blocks][STEPS][PANEL][4]` bytes, `params` `[blocks][2][PANEL]`
/// (scales, then offsets). Columns past the matrix are zero, so they add nothing.
#[derive(Default)]
struct Panel {
    levels: Vec<u8>,
    params: Vec<f32>,
}

thread_local! {
    static PANELS: RefCell<Panel> = RefCell::default();
}

/// Shapes validated by `linear_at`, all positive; the CPU has AVX-512 VNNI
/// ([`IntLevel::Avx512Vnni`](super::intdot::IntLevel::Avx512Vnni) is supported).
#[allow(clippy::too_many_arguments)]
pub(crate) fn linear(
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
    let out = SharedMut::new(out);
    with_quantized_rows(x, ActivationLayout::Blocks, |activations| {
        (0..n.div_ceil(PANEL))
            .into_par_iter()
            .for_each(|panel_index| {
                let first = panel_index * PANEL;
                let columns = PANEL.min(n - first);
                let mut panel = PANELS.with(|cell| std::mem::take(&mut *cell.borrow_mut()));
                pack(
                    ty,
                    &w[first * row_bytes..(first + columns) * row_bytes],
                    row_bytes,
                    k,
                    &mut panel,
                );
                let mut row = 0;
                while row < m {
                    let rows = TILE_ROWS.min(m - row);
                    // SAFETY: the CPU supports the instructions (the caller checked); the panel holds
                    // `k / 32` packed blocks; the tile's activation rows are inside `x`.
                    let sums = unsafe { x86::tile(&panel, activations, k, row, rows) };
                    for (t, sums) in sums[..rows].iter().enumerate() {
                        for (c, &sum) in sums[..columns].iter().enumerate() {
                            let value = sum + bias.map_or(0.0, |b| b[first + c]);
                            // SAFETY: row `row + t < m`, column `first + c < n`; each task writes
                            // only its panel's columns.
                            unsafe { *out.get().add((row + t) * n + first + c) = value };
                        }
                    }
                    row += rows;
                }
                PANELS.with(|cell| *cell.borrow_mut() = panel);
            });
    });
}

/// Packs the weight rows in `rows` (at most [`PANEL`] of `row_bytes` each) into `panel`.
fn pack(ty: QuantType, rows: &[u8], row_bytes: usize, k: usize, panel: &mut Panel) {
    let blocks = k / ACTIVATION_BLOCK;
    panel.levels.resize(blocks * ACTIVATION_BLOCK * PANEL, 0);
    panel.params.resize(blocks * 2 * PANEL, 0.0);
    if rows.len() / row_bytes < PANEL {
        // Columns past the matrix must add nothing; full panels overwrite every byte.
        panel.levels.fill(0);
        panel.params.fill(0.0);
    }
    for (column, row) in rows.chunks_exact(row_bytes).enumerate() {
        for b in 0..blocks {
            let (words, scale, offset) = block_words(ty, row, b);
            let block =
                &mut panel.levels[b * ACTIVATION_BLOCK * PANEL..][..ACTIVATION_BLOCK * PANEL];
            for (step, word) in words.into_iter().enumerate() {
                block[(step * PANEL + column) * 4..][..4].copy_from_slice(&word.to_le_bytes());
            }
            panel.params[b * 2 * PANEL + column] = scale;
            panel.params[b * 2 * PANEL + PANEL + column] = offset;
        }
    }
}

/// Block `b` (32 values) of a weight row as unsigned levels, four to a little-endian word (one
/// `vpdpbusd` group each; word arithmetic, as packing is a large part of a short prompt's
/// time), and its `(scale, offset)`.
fn block_words(ty: QuantType, row: &[u8], b: usize) -> ([u32; STEPS], f32, f32) {
    const NIBBLES: u32 = 0x0f0f_0f0f;
    let word = |bytes: &[u8], at: usize| {
        u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
    };
    match ty {
        QuantType::Q8_0 => {
            let bytes = QuantType::Q8_0.block_bytes();
            let block = &row[b * bytes..(b + 1) * bytes];
            let d = formats::read_f16(block, 0);
            let stored = &block[2..];
            let words = std::array::from_fn(|step| word(stored, 4 * step) ^ 0x8080_8080);
            (words, d, 128.0 * d)
        }
        QuantType::Q4_0 => {
            let bytes = QuantType::Q4_0.block_bytes();
            let block = &row[b * bytes..(b + 1) * bytes];
            let d = formats::read_f16(block, 0);
            let packed = &block[2..];
            // Values 0..16 are the low nibbles of the 16 bytes, values 16..32 the high ones.
            let words = std::array::from_fn(|step| {
                let half = step / 4;
                (word(packed, 4 * (step % 4)) >> (4 * half)) & NIBBLES
            });
            (words, d, 8.0 * d)
        }
        QuantType::Q4K => {
            let (super_block, sub_block) = (b / 8, b % 8);
            let bytes = QuantType::Q4K.block_bytes();
            let block = &row[super_block * bytes..(super_block + 1) * bytes];
            let d = formats::read_f16(block, 0);
            let dmin = formats::read_f16(block, 2);
            let (sc, m) = formats::scale_min_k4(sub_block, &block[4..16]);
            // Sub-blocks 2j and 2j + 1 are the low and high nibbles of the same 32 bytes.
            let nibbles = &block[16 + 32 * (sub_block / 2)..][..32];
            let shift = 4 * (sub_block % 2);
            let words = std::array::from_fn(|step| (word(nibbles, 4 * step) >> shift) & NIBBLES);
            (words, d * f32::from(sc), dmin * f32::from(m))
        }
    }
}

mod x86 {
    use std::arch::x86_64::*;

    use super::*;

    /// Sums of activation rows `first..first + rows` (`rows <= TILE_ROWS`) with the panel's
    /// columns.
    ///
    /// # Safety
    /// AVX-512 F and VNNI are supported; `panel` holds `k / 32` blocks; the rows are inside
    /// `activations`.
    pub(super) unsafe fn tile(
        panel: &Panel,
        activations: &QuantizedRows,
        k: usize,
        first: usize,
        rows: usize,
    ) -> [[f32; PANEL]; TILE_ROWS] {
        // SAFETY: forwarded.
        unsafe {
            match rows {
                6 => tile_rows::<6>(panel, activations, k, first),
                5 => tile_rows::<5>(panel, activations, k, first),
                4 => tile_rows::<4>(panel, activations, k, first),
                3 => tile_rows::<3>(panel, activations, k, first),
                2 => tile_rows::<2>(panel, activations, k, first),
                _ => tile_rows::<1>(panel, activations, k, first),
            }
        }
    }

    #[target_feature(enable = "avx512f,avx512vnni")]
    unsafe fn tile_rows<const R: usize>(
        panel: &Panel,
        activations: &QuantizedRows,
        k: usize,
        first: usize,
    ) -> [[f32; PANEL]; TILE_ROWS] {
        let blocks = k / ACTIVATION_BLOCK;
        let quants = activations.quants[first * k..(first + R) * k].as_ptr();
        let scales = &activations.scales[first * blocks..(first + R) * blocks];
        let sums = &activations.scaled_sums[first * blocks..(first + R) * blocks];
        let mut result = [[0.0f32; PANEL]; TILE_ROWS];
        // SAFETY: block `b` of the panel is `32 · PANEL` level bytes at `b · 32 · PANEL` and
        // `2 · PANEL` params at `b · 2 · PANEL`; activation block `b` of tile row `t` is at
        // `t · k + 32 · b`.
        unsafe {
            let mut totals = [[_mm512_setzero_ps(); 2]; R];
            for b in 0..blocks {
                let levels = panel.levels.as_ptr().add(b * ACTIVATION_BLOCK * PANEL);
                let mut dots = [[_mm512_setzero_si512(); 2]; R];
                for step in 0..STEPS {
                    let w0 = _mm512_loadu_si512(levels.add(step * PANEL * 4).cast());
                    let w1 = _mm512_loadu_si512(levels.add(step * PANEL * 4 + 64).cast());
                    for (t, [low, high]) in dots.iter_mut().enumerate() {
                        let four = quants
                            .add(t * k + b * ACTIVATION_BLOCK + 4 * step)
                            .cast::<i32>()
                            .read_unaligned();
                        let a = _mm512_set1_epi32(four);
                        *low = _mm512_dpbusd_epi32(*low, w0, a);
                        *high = _mm512_dpbusd_epi32(*high, w1, a);
                    }
                }
                let params = panel.params.as_ptr().add(b * 2 * PANEL);
                let block_scales = [_mm512_loadu_ps(params), _mm512_loadu_ps(params.add(16))];
                let offsets = [
                    _mm512_loadu_ps(params.add(PANEL)),
                    _mm512_loadu_ps(params.add(PANEL + 16)),
                ];
                for t in 0..R {
                    let activation_scale = _mm512_set1_ps(scales[t * blocks + b]);
                    let activation_sum = _mm512_set1_ps(sums[t * blocks + b]);
                    for half in 0..2 {
                        let scale = _mm512_mul_ps(block_scales[half], activation_scale);
                        let total = _mm512_fmadd_ps(
                            _mm512_cvtepi32_ps(dots[t][half]),
                            scale,
                            totals[t][half],
                        );
                        totals[t][half] = _mm512_fnmadd_ps(offsets[half], activation_sum, total);
                    }
                }
            }
            for t in 0..R {
                _mm512_storeu_ps(result[t].as_mut_ptr(), totals[t][0]);
                _mm512_storeu_ps(result[t].as_mut_ptr().add(16), totals[t][1]);
            }
        }
        result
    }
}
