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
use crate::quant::{QuantType, dequantize};
use crate::simd::{Element, Simd, SimdLevel, dispatch, load_upto, store_upto};

/// A weight matrix stored row-major as `[n, k]` (PyTorch `nn.Linear` layout), in its file dtype.
#[derive(Clone, Copy, Debug)]
pub enum Weights<'a> {
    F32(&'a [f32]),
    Bf16(&'a [bf16]),
    /// Raw GGML block bytes of a row-major `[n, k]` matrix (each row is `k / block_values`
    /// blocks), at any alignment: straight from a memory-mapped GGUF file or a `Vec<u8>`.
    Quantized(QuantType, &'a [u8]),
}

impl Weights<'_> {
    /// Number of stored elements: values for f32 and bf16, bytes for quantized weights.
    pub fn len(&self) -> usize {
        match self {
            Weights::F32(w) => w.len(),
            Weights::Bf16(w) => w.len(),
            Weights::Quantized(_, w) => w.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Up to this many activation rows take the weight-streaming path; above it, the GEMM path.
pub const STREAMING_MAX_ROWS: usize = 16;

/// Up to this many rows, f32 and bf16 weights are streamed once per [`STREAMING_MAX_ROWS`]
/// rows instead of taking the GEMM path: a streaming pass of 16 rows already runs near the
/// GEMM's arithmetic rate, while the GEMM's widening and packing of every weight cost as much
/// as the arithmetic of a few dozen rows (a 32-token prompt of the 8B model: 25.8 s on the GEMM
/// path).
const CHUNKED_STREAMING_MAX_ROWS: usize = 128;

/// Weight rows one streaming task handles at least: one register tile.
const ROW_TILE: usize = 4;

/// `out[m×n] = x[m×k] · wᵀ (+ bias[n])`, accumulating in f32; `w` is `[n, k]` row-major.
///
/// bf16 weights are widened exactly to f32; activations are never rounded to bf16. Quantized
/// weights need `k` to be a multiple of the block size; see [`crate::quant`] for their precision.
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
        Weights::F32(_) | Weights::Bf16(_) if m <= CHUNKED_STREAMING_MAX_ROWS => {
            for (x, out) in x
                .chunks(STREAMING_MAX_ROWS * k)
                .zip(out.chunks_mut(STREAMING_MAX_ROWS * n))
            {
                linear_at(level, x, x.len() / k, k, w, n, bias, out)?;
            }
        }
        Weights::F32(w) => {
            fill_with_bias(out, n, bias);
            // SAFETY: lengths validated above; `w` is [n, k] row-major, read as the k×n matrix wᵀ.
            unsafe { gemm_f32(x, m, k, w.as_ptr(), n, n, bias.is_some(), out.as_mut_ptr()) };
        }
        Weights::Bf16(w) => gemm_by_panels(x, m, k, n, bias, out, |row, values| {
            widen_serial(level, &w[row * k..(row + 1) * k], values)
        }),
        Weights::Quantized(ty, w) => {
            crate::quant::matmul::linear(level, x, m, k, ty, w, n, bias, out)
        }
    }
    Ok(())
}

pub(crate) fn validate(
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
    match w {
        Weights::Quantized(ty, bytes) => {
            let row_bytes = ty.bytes_for(k)?;
            expect_len(KERNEL, "w (bytes)", bytes.len(), &[n, row_bytes])?;
        }
        _ => expect_len(KERNEL, "w", w.len(), &[n, k])?,
    }
    expect_len(KERNEL, "out", out.len(), &[m, n])?;
    if let Some(bias) = bias {
        expect_len(KERNEL, "bias", bias.len(), &[n])?;
    }
    Ok(())
}

pub(crate) fn fill_with_bias(out: &mut [f32], n: usize, bias: Option<&[f32]>) {
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
/// `x` is `[m, k]`, `w` is `[n, k]`, `out` points to `m × n` writable floats, `rows ⊆ 0..n`,
/// `m <= STREAMING_MAX_ROWS`.
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
    // Tiles of `ROW_TILE` weight rows read side by side, so that even one activation row has
    // that many independent sums in flight (one row at a time is a single dependent chain of
    // fused multiply-adds: a sweep over the 8B model's decode matrices read at about 0.65 of
    // the probed bandwidth that way, 0.85 tiled). More activation rows also share each loaded or widened
    // weight vector. Each output is one accumulator summed in order either way, so a row's
    // result does not depend on the rows beside it.
    let mut j = rows.start;
    while j < rows.end {
        let weight_rows = if rows.end - j >= ROW_TILE {
            ROW_TILE
        } else {
            1
        };
        let tile = RowTile {
            x: x.as_ptr(),
            m,
            k,
            w: w[j * k..].as_ptr(),
            n,
            bias: bias.map(|b| &b[j..j + weight_rows]),
            // SAFETY: column `j` of `out` is inside the caller's extent.
            out: unsafe { out.add(j) },
        };
        // SAFETY: the tile's rows and columns are inside the validated shapes.
        unsafe {
            if weight_rows == ROW_TILE {
                stream_row_tile::<S, W, ROW_TILE>(s, tile)
            } else {
                stream_row_tile::<S, W, 1>(s, tile)
            }
        }
        j += weight_rows;
    }
}

/// Inner-dimension chunk over which a few weight rows are widened once into L1 and then dotted
/// with every activation row.
const DEPTH_CHUNK: usize = 256;

/// Activation rows per register tile: `ROW_TILE ×` this many accumulators, plus the weight
/// vectors, must fit the register file.
fn activation_tile<S: Simd>() -> usize {
    if S::REGISTERS >= 32 { 4 } else { 2 }
}

struct RowTile<'a, W> {
    /// All `m` activation rows, `k` apart.
    x: *const f32,
    m: usize,
    k: usize,
    /// The tile's first weight row; rows are `k` apart.
    w: *const W,
    n: usize,
    bias: Option<&'a [f32]>,
    /// Output element (row 0, the tile's first column); rows are `n` apart.
    out: *mut f32,
}

/// Dots `R` weight rows with every activation row.
///
/// With a single activation tile the weights go straight from memory into registers, each
/// vector loaded once. With more, each depth chunk of the `R` rows is widened once into an L1
/// buffer and every activation tile reuses it, so bf16 widening is not repeated per tile.
///
/// # Safety
/// As [`stream_row_block`] for this tile's `R` rows.
#[inline(always)]
unsafe fn stream_row_tile<S: Simd, W: Element, const R: usize>(s: S, t: RowTile<'_, W>) {
    let (m, k) = (t.m, t.k);
    let step = activation_tile::<S>();
    let mut sums = [[s.zero(); R]; STREAMING_MAX_ROWS];
    // SAFETY: every operand range below is inside the caller's extents.
    unsafe {
        if m <= step {
            accumulate(
                s,
                &mut sums[..m],
                Operands {
                    x: t.x,
                    x_stride: k,
                    w: t.w,
                    w_stride: k,
                    len: k,
                },
            );
        } else {
            let mut buffer = [0.0f32; ROW_TILE * DEPTH_CHUNK];
            let mut depth = 0;
            while depth < k {
                let len = DEPTH_CHUNK.min(k - depth);
                for r in 0..R {
                    let source = std::slice::from_raw_parts(t.w.add(r * k + depth), len);
                    widen_into(s, source, &mut buffer[r * DEPTH_CHUNK..][..len]);
                }
                let mut i = 0;
                while i < m {
                    let rows = step.min(m - i);
                    let operands = Operands {
                        x: t.x.add(i * k + depth),
                        x_stride: k,
                        w: buffer.as_ptr(),
                        w_stride: DEPTH_CHUNK,
                        len,
                    };
                    accumulate(s, &mut sums[i..i + rows], operands);
                    i += rows;
                }
                depth += len;
            }
        }
        for (i, row_sums) in sums[..m].iter().enumerate() {
            for (r, &sum) in row_sums.iter().enumerate() {
                *t.out.add(i * t.n + r) = s.reduce_sum(sum) + t.bias.map_or(0.0, |b| b[r]);
            }
        }
    }
}

#[derive(Clone, Copy)]
struct Operands<W> {
    /// First activation row, `x_stride` apart.
    x: *const f32,
    x_stride: usize,
    /// First weight row, `w_stride` apart.
    w: *const W,
    w_stride: usize,
    /// Elements to dot from each row.
    len: usize,
}

/// `sums[i][r] += x_i · w_r` over `len` elements, for `sums.len() <= 4` activation rows.
///
/// # Safety
/// `len` elements of each addressed row are readable.
#[inline(always)]
unsafe fn accumulate<S: Simd, W: Element, const R: usize>(
    s: S,
    sums: &mut [[S::V; R]],
    operands: Operands<W>,
) {
    // SAFETY: forwarded.
    unsafe {
        match sums.len() {
            4 => accumulate_tile::<S, W, R, 4>(s, sums, operands),
            3 => accumulate_tile::<S, W, R, 3>(s, sums, operands),
            2 => accumulate_tile::<S, W, R, 2>(s, sums, operands),
            _ => accumulate_tile::<S, W, R, 1>(s, sums, operands),
        }
    }
}

/// Register tile of [`accumulate`]: `M` activation rows × `R` weight rows, each weight vector
/// loaded once per step.
///
/// # Safety
/// As [`accumulate`]; `sums.len() >= M`.
#[inline(always)]
unsafe fn accumulate_tile<S: Simd, W: Element, const R: usize, const M: usize>(
    s: S,
    sums: &mut [[S::V; R]],
    Operands {
        x,
        x_stride,
        w,
        w_stride,
        len,
    }: Operands<W>,
) {
    let mut acc = [[s.zero(); R]; M];
    acc.copy_from_slice(&sums[..M]);
    // Whole vectors first, with the lane count a constant so every load is a plain one, then
    // the tail: partial (masked) loads in the streaming loop read measurably less of the memory
    // bandwidth.
    let whole = len / S::LANES * S::LANES;
    let mut c = 0;
    // SAFETY: every load stays inside the first `len` elements of its row.
    unsafe {
        while c + 2 * S::LANES <= whole {
            accumulate_step(s, &mut acc, x, x_stride, w, w_stride, c, S::LANES);
            accumulate_step(
                s,
                &mut acc,
                x,
                x_stride,
                w,
                w_stride,
                c + S::LANES,
                S::LANES,
            );
            c += 2 * S::LANES;
        }
        while c < whole {
            accumulate_step(s, &mut acc, x, x_stride, w, w_stride, c, S::LANES);
            c += S::LANES;
        }
        if c < len {
            accumulate_step(s, &mut acc, x, x_stride, w, w_stride, c, len - c);
        }
    }
    sums[..M].copy_from_slice(&acc);
}

/// One vector step of [`accumulate_tile`]: elements `c..c + lanes` of every row.
///
/// # Safety
/// Those elements of each addressed row are readable.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn accumulate_step<S: Simd, W: Element, const R: usize, const M: usize>(
    s: S,
    acc: &mut [[S::V; R]; M],
    x: *const f32,
    x_stride: usize,
    w: *const W,
    w_stride: usize,
    c: usize,
    lanes: usize,
) {
    // SAFETY: forwarded.
    unsafe {
        let mut weights = [s.zero(); R];
        for (r, weight) in weights.iter_mut().enumerate() {
            *weight = load_upto(s, w.add(r * w_stride + c), lanes);
        }
        for (i, row_acc) in acc.iter_mut().enumerate() {
            let activation = load_upto(s, x.add(i * x_stride + c), lanes);
            for (a, &weight) in row_acc.iter_mut().zip(&weights) {
                *a = s.mul_add(weight, activation, *a);
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
pub(crate) unsafe fn gemm_f32(
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

/// Decoded f32 values a GEMM panel holds (32 MiB): enough weight rows (2048 at k = 4096) that
/// decoding them and the `gemm` call's own setup are a small fraction of the panel's multiply
/// (8 MiB panels ran the 512×4096×12288 product at 110 GFLOP/s, 32 MiB at 145, f32 weights at
/// 153), few enough to stay bounded for any `k`.
const PANEL_VALUES: usize = 1 << 23;

/// `out = x · wᵀ (+ bias)` for many activation rows and weights stored other than as f32:
/// decodes a bounded panel of weight rows at a time into f32 scratch (`decode_row(row, values)`,
/// rows in parallel) and multiplies it with the `gemm` crate's blocked f32 kernel. Decoding
/// costs 1/m of the multiply per weight, and no f32 copy of the whole matrix ever exists.
/// Shapes validated by `linear_at`, all positive.
pub(crate) fn gemm_by_panels(
    x: &[f32],
    m: usize,
    k: usize,
    n: usize,
    bias: Option<&[f32]>,
    out: &mut [f32],
    decode_row: impl Fn(usize, &mut [f32]) + Sync,
) {
    fill_with_bias(out, n, bias);
    let panel_rows = (PANEL_VALUES / k).clamp(1, n);
    with_scratch(panel_rows * k, |decoded| {
        let mut start = 0;
        while start < n {
            let rows = panel_rows.min(n - start);
            let panel = &mut decoded[..rows * k];
            panel
                .par_chunks_mut(k)
                .enumerate()
                .for_each(|(row, values)| decode_row(start + row, values));
            // SAFETY: `panel` is `rows` weight rows of `k` floats; output columns
            // `start..start + rows` of the `[m, n]` output are in bounds.
            unsafe {
                gemm_f32(
                    x,
                    m,
                    k,
                    panel.as_ptr(),
                    rows,
                    n,
                    true,
                    out.as_mut_ptr().add(start),
                )
            };
            start += rows;
        }
    });
}

/// Widens bf16 to f32 (exact) on the calling thread.
pub(crate) fn widen_serial(level: SimdLevel, source: &[bf16], target: &mut [f32]) {
    dispatch!(level, |s| widen_into(s, source, target))
}

/// Converts `source` to f32 into `target` (equal lengths), vectorised.
#[inline(always)]
pub(crate) fn widen_into<S: Simd, W: Element>(s: S, source: &[W], target: &mut [f32]) {
    let len = source.len().min(target.len());
    let mut i = 0;
    // SAFETY: every access is below `len`.
    unsafe {
        while i < len {
            let lanes = (len - i).min(S::LANES);
            let value = load_upto(s, source.as_ptr().add(i), lanes);
            store_upto(s, target.as_mut_ptr().add(i), value, lanes);
            i += lanes;
        }
    }
}

/// Reference twin of [`linear`]: a plain triple loop accumulating in f64, on the exact weight
/// values (quantized weights are dequantized first; activations are not rounded).
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
    let dequantized = match w {
        Weights::Quantized(ty, bytes) => {
            let mut values = vec![0.0; n * k];
            dequantize(ty, bytes, &mut values)?;
            values
        }
        _ => Vec::new(),
    };
    let weight = |j: usize, c: usize| -> f64 {
        match w {
            Weights::F32(w) => f64::from(w[j * k + c]),
            Weights::Bf16(w) => f64::from(w[j * k + c].to_f32()),
            Weights::Quantized(..) => f64::from(dequantized[j * k + c]),
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
