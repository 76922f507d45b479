//! `out = x · wᵀ + bias` with f32 activations, f32 or bf16 weights and f32 accumulation.
//!
//! Two regimes. With few activation rows (decode) the product is bound by reading the weights,
//! so [`linear`] streams every weight row from memory exactly once and dots it with all rows of
//! `x` while it is in registers. With many rows (prefill, vision) it is bound by arithmetic, so
//! bf16 weights are widened a bounded panel at a time into f32 scratch and multiplied by the
//! `gemm` crate's blocked f32 kernel.

use half::bf16;
use rayon::prelude::*;

use crate::error::{KernelError, expect_len};
use crate::parallel::{SharedMut, threads, with_scratch};
use crate::simd::{Element, Simd, SimdLevel, dispatch, load_upto};

/// A weight matrix stored row-major as `[n, k]` (PyTorch `nn.Linear` layout), in its file dtype.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub enum Weights<'a> {
    F32(&'a [f32]),
    Bf16(&'a [bf16]),
}

impl Weights<'_> {
    /// Number of stored elements.
    pub fn len(&self) -> usize {
        match self {
            Weights::F32(w) => w.len(),
            Weights::Bf16(w) => w.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Up to this many activation rows take the weight-streaming path; above it, the GEMM path.
pub const STREAMING_MAX_ROWS: usize = 16;

/// Bytes of f32 scratch one widened bf16 weight panel may occupy on the GEMM path.
const PANEL_BYTES: usize = 8 << 20;

/// Weight rows one streaming task handles at least: one register tile.
const ROW_TILE: usize = 4;

/// `out[m×n] = x[m×k] · wᵀ (+ bias[n])`, accumulating in f32; `w` is `[n, k]` row-major.
///
/// bf16 weights are widened exactly to f32; activations are never rounded to bf16.
pub fn linear(
    x: &[f32],
    m: usize,
    k: usize,
    w: Weights<'_>,
    n: usize,
    bias: Option<&[f32]>,
    out: &mut [f32],
) -> Result<(), KernelError> {
    linear_at(SimdLevel::detected(), x, m, k, w, n, bias, out)
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn linear_at(
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
    match w {
        Weights::F32(w) if m <= STREAMING_MAX_ROWS => stream_rows(level, x, m, k, w, n, bias, out),
        Weights::Bf16(w) if m <= STREAMING_MAX_ROWS => stream_rows(level, x, m, k, w, n, bias, out),
        Weights::F32(w) => {
            fill_with_bias(out, n, bias);
            // SAFETY: lengths validated above; `w` is [n, k] row-major, read as the k×n matrix wᵀ.
            unsafe { gemm_f32(x, m, k, w.as_ptr(), n, n, bias.is_some(), out.as_mut_ptr()) };
        }
        Weights::Bf16(w) => gemm_widened(level, x, m, k, w, n, bias, out),
    }
    Ok(())
}

fn validate(
    x: &[f32],
    m: usize,
    k: usize,
    w: Weights<'_>,
    n: usize,
    bias: Option<&[f32]>,
    out: &[f32],
) -> Result<(), KernelError> {
    const KERNEL: &str = "linear";
    expect_len(KERNEL, "x", x.len(), &[m, k])?;
    expect_len(KERNEL, "w", w.len(), &[n, k])?;
    expect_len(KERNEL, "out", out.len(), &[m, n])?;
    if let Some(bias) = bias {
        expect_len(KERNEL, "bias", bias.len(), &[n])?;
    }
    Ok(())
}

fn fill_with_bias(out: &mut [f32], n: usize, bias: Option<&[f32]>) {
    match bias {
        Some(bias) => out
            .chunks_exact_mut(n)
            .for_each(|row| row.copy_from_slice(bias)),
        None => out.fill(0.0),
    }
}

/// Weight rows per parallel task: about 16 tasks per thread so rayon can balance uneven
/// progress, in whole register tiles.
fn rows_per_task(n: usize) -> usize {
    n.div_ceil(threads() * 16).next_multiple_of(ROW_TILE)
}

#[allow(clippy::too_many_arguments)]
fn stream_rows<W: Element>(
    level: SimdLevel,
    x: &[f32],
    m: usize,
    k: usize,
    w: &[W],
    n: usize,
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    let chunk = rows_per_task(n);
    let out = SharedMut::new(out);
    (0..n.div_ceil(chunk)).into_par_iter().for_each(|task| {
        let rows = task * chunk..((task + 1) * chunk).min(n);
        // SAFETY: shapes validated by `linear_at`; each task writes only the output columns of
        // its own weight rows.
        dispatch!(level, |s| unsafe {
            stream_row_block(s, x, m, k, w, n, bias, rows, out.get())
        });
    });
}

/// Computes output columns `rows` for all `m` activation rows.
///
/// # Safety
/// `x` is `[m, k]`, `w` is `[n, k]`, `out` points to `m × n` writable floats, `rows ⊆ 0..n`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn stream_row_block<S: Simd, W: Element>(
    s: S,
    x: &[f32],
    m: usize,
    k: usize,
    w: &[W],
    n: usize,
    bias: Option<&[f32]>,
    rows: std::ops::Range<usize>,
    out: *mut f32,
) {
    // Accumulators for ROW_TILE weight rows × this many activation rows, plus the loaded
    // weight vectors, must fit the register file.
    let activation_tile = if S::REGISTERS >= 32 { 4 } else { 2 };
    let mut j = rows.start;
    while j < rows.end {
        let weight_rows = if rows.end - j >= ROW_TILE {
            ROW_TILE
        } else {
            1
        };
        let mut i = 0;
        while i < m {
            let activations = (m - i).min(activation_tile);
            let args = TileArgs {
                x: x[i * k..].as_ptr(),
                w: w[j * k..].as_ptr(),
                k,
                out: unsafe { out.add(i * n + j) },
                n,
            };
            let bias = bias.map(|b| &b[j..j + weight_rows]);
            // SAFETY: the tile's rows and columns are inside the validated shapes.
            unsafe {
                match (weight_rows, activations) {
                    (ROW_TILE, 4) => dot_tile::<S, W, ROW_TILE, 4>(s, args, bias),
                    (ROW_TILE, 3) => dot_tile::<S, W, ROW_TILE, 3>(s, args, bias),
                    (ROW_TILE, 2) => dot_tile::<S, W, ROW_TILE, 2>(s, args, bias),
                    (ROW_TILE, _) => dot_tile::<S, W, ROW_TILE, 1>(s, args, bias),
                    (_, 4) => dot_tile::<S, W, 1, 4>(s, args, bias),
                    (_, 3) => dot_tile::<S, W, 1, 3>(s, args, bias),
                    (_, 2) => dot_tile::<S, W, 1, 2>(s, args, bias),
                    (_, _) => dot_tile::<S, W, 1, 1>(s, args, bias),
                }
            }
            i += activations;
        }
        j += weight_rows;
    }
}

struct TileArgs<W> {
    /// First activation row of the tile; rows are `k` apart.
    x: *const f32,
    /// First weight row of the tile; rows are `k` apart.
    w: *const W,
    k: usize,
    /// Output element of (first activation row, first weight row); rows are `n` apart.
    out: *mut f32,
    n: usize,
}

/// Dots `R` weight rows with `M` activation rows, loading each weight vector once.
///
/// # Safety
/// `R` weight rows and `M` activation rows of `k` elements are readable, and the `M × R`
/// output elements are writable.
#[inline(always)]
unsafe fn dot_tile<S: Simd, W: Element, const R: usize, const M: usize>(
    s: S,
    TileArgs { x, w, k, out, n }: TileArgs<W>,
    bias: Option<&[f32]>,
) {
    // acc[i][r]: activation row i · weight row r.
    let mut acc = [[s.zero(); R]; M];
    let mut c = 0;
    // SAFETY: every load below stays inside a row of `k` elements.
    unsafe {
        while c + S::LANES <= k {
            let weights: [S::V; R] = std::array::from_fn(|r| W::load(s, w.add(r * k + c)));
            for (i, row_acc) in acc.iter_mut().enumerate() {
                let activation = s.load(x.add(i * k + c));
                for (a, &weight) in row_acc.iter_mut().zip(&weights) {
                    *a = s.mul_add(weight, activation, *a);
                }
            }
            c += S::LANES;
        }
        if c < k {
            let tail = k - c;
            let weights: [S::V; R] = std::array::from_fn(|r| load_upto(s, w.add(r * k + c), tail));
            for (i, row_acc) in acc.iter_mut().enumerate() {
                let activation = s.load_partial(x.add(i * k + c), tail);
                for (a, &weight) in row_acc.iter_mut().zip(&weights) {
                    *a = s.mul_add(weight, activation, *a);
                }
            }
        }
        for (i, row_acc) in acc.iter().enumerate() {
            for (r, &a) in row_acc.iter().enumerate() {
                *out.add(i * n + r) = s.reduce_sum(a) + bias.map_or(0.0, |b| b[r]);
            }
        }
    }
}

/// `out[m×cols] (+)= x[m×k] · wᵀ` for the `cols` rows of a `[cols, k]` f32 matrix at `w`, with
/// output rows `out_stride` apart; adds to `out` when `accumulate`.
///
/// # Safety
/// `x` is `[m, k]`, `w` points to `cols × k` readable floats and `out` to `m` rows of `cols`
/// writable floats `out_stride` apart; every extent fits in `isize`.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_f32(
    x: &[f32],
    m: usize,
    k: usize,
    w: *const f32,
    cols: usize,
    out_stride: usize,
    accumulate: bool,
    out: *mut f32,
) {
    // SAFETY: the caller's extents; gemm computes dst = 1·dst + 1·lhs·rhs (or lhs·rhs).
    unsafe {
        gemm::gemm(
            m,
            cols,
            k,
            out,
            1,
            out_stride as isize,
            accumulate,
            x.as_ptr(),
            1,
            k as isize,
            w,
            k as isize,
            1,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(0),
        )
    }
}

#[allow(clippy::too_many_arguments)]
fn gemm_widened(
    level: SimdLevel,
    x: &[f32],
    m: usize,
    k: usize,
    w: &[bf16],
    n: usize,
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    fill_with_bias(out, n, bias);
    let panel_rows = (PANEL_BYTES / (4 * k)).clamp(1, n);
    with_scratch(panel_rows * k, |panel| {
        for first in (0..n).step_by(panel_rows) {
            let rows = panel_rows.min(n - first);
            let panel = &mut panel[..rows * k];
            widen(level, &w[first * k..(first + rows) * k], panel);
            // SAFETY: `panel` holds `rows` widened weight rows; the output block starts at
            // column `first` and spans `rows` columns of each of the `m` rows of `out`.
            unsafe {
                gemm_f32(
                    x,
                    m,
                    k,
                    panel.as_ptr(),
                    rows,
                    n,
                    bias.is_some(),
                    out.as_mut_ptr().add(first),
                );
            }
        }
    });
}

/// Widens bf16 to f32 (exact), in parallel.
fn widen(level: SimdLevel, source: &[bf16], target: &mut [f32]) {
    const CHUNK: usize = 1 << 16;
    target
        .par_chunks_mut(CHUNK)
        .zip(source.par_chunks(CHUNK))
        .for_each(|(target, source)| widen_serial(level, source, target));
}

/// Widens bf16 to f32 (exact) on the calling thread.
pub(crate) fn widen_serial(level: SimdLevel, source: &[bf16], target: &mut [f32]) {
    dispatch!(level, |s| widen_chunk(s, source, target))
}

#[inline(always)]
fn widen_chunk<S: Simd>(s: S, source: &[bf16], target: &mut [f32]) {
    let len = source.len().min(target.len());
    let mut i = 0;
    // SAFETY: every access is below `len`.
    unsafe {
        while i < len {
            let lanes = (len - i).min(S::LANES);
            crate::simd::store_upto(
                s,
                target.as_mut_ptr().add(i),
                load_upto(s, source.as_ptr().add(i), lanes),
                lanes,
            );
            i += lanes;
        }
    }
}

/// Reference twin of [`linear`]: a plain triple loop accumulating in f64.
pub fn linear_reference(
    x: &[f32],
    m: usize,
    k: usize,
    w: Weights<'_>,
    n: usize,
    bias: Option<&[f32]>,
    out: &mut [f32],
) -> Result<(), KernelError> {
    validate(x, m, k, w, n, bias, out)?;
    let weight = |j: usize, c: usize| -> f64 {
        match w {
            Weights::F32(w) => f64::from(w[j * k + c]),
            Weights::Bf16(w) => f64::from(w[j * k + c].to_f32()),
        }
    };
    for i in 0..m {
        for j in 0..n {
            let dot: f64 = (0..k).map(|c| f64::from(x[i * k + c]) * weight(j, c)).sum();
            out[i * n + j] = (dot + bias.map_or(0.0, |b| f64::from(b[j]))) as f32;
        }
    }
    Ok(())
}
