//! Blocked GEMM for many activation rows: `out[m×n] = x[m×k] · wᵀ (+ bias)` with f32
//! accumulation, for f32 or bf16 weights.
//!
//! Classic register-tile design. The activations are packed once per call into panels of
//! `rows` × k (zero-padded), so a micro-kernel reads its broadcast operand contiguously. Each
//! task owns a block of at most [`ROW_BLOCK`] × [`COLUMN_BLOCK`] outputs, which stays in L2
//! across the whole inner dimension; for every [`DEPTH_BLOCK`] slice of it, the task widens and
//! transposes its weight rows into a thread-local panel (so bf16 costs nothing extra: packing
//! happens anyway) and sweeps register tiles of `rows × 2 vectors` over the block.

use rayon::prelude::*;

use crate::parallel::{SharedMut, with_scratch};
use crate::simd::{Element, Simd, SimdLevel, dispatch, load_upto, store_upto};

/// Inner-dimension slice per packed weight panel: one tile's weight strip (`DEPTH_BLOCK × 2
/// vectors`) stays in L1 while the tile sweeps down the rows.
const DEPTH_BLOCK: usize = 256;
/// Output columns (weight rows) per task.
const COLUMN_BLOCK: usize = 256;
/// Output rows per task (rounded down to whole register tiles).
const ROW_BLOCK: usize = 512;
/// Register-tile width in vectors.
const TILE_VECTORS: usize = 2;

/// Register-tile rows: as many accumulators as the register file holds next to the operands.
fn tile_rows<S: Simd>() -> usize {
    if S::REGISTERS >= 32 { 14 } else { 6 }
}

/// (tile rows, tile columns) of a level.
fn tile_shape(level: SimdLevel) -> (usize, usize) {
    fn shape<S: Simd>(_: S) -> (usize, usize) {
        (tile_rows::<S>(), TILE_VECTORS * S::LANES)
    }
    dispatch!(level, |s| shape(s))
}

/// `out = x · wᵀ (+ bias)`; shapes already validated (`x` `[m, k]`, `w` `[n, k]`, `out` `[m, n]`,
/// `k > 0`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm<W: Element>(
    level: SimdLevel,
    x: &[f32],
    m: usize,
    k: usize,
    w: &[W],
    n: usize,
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    let (rows, columns) = tile_shape(level);
    let row_tiles = m.div_ceil(rows);
    let row_block = (ROW_BLOCK / rows) * rows;
    let column_block = COLUMN_BLOCK.next_multiple_of(columns);
    let blocks = (m.div_ceil(row_block), n.div_ceil(column_block));
    let out = SharedMut::new(out);
    // The calling thread's scratch holds the packed activations; tasks use their own threads'.
    with_scratch(row_tiles * rows * k, |packed_x| {
        pack_activations(x, m, k, rows, packed_x);
        let packed_x = &*packed_x;
        (0..blocks.0 * blocks.1).into_par_iter().for_each(|block| {
            let (row_block_index, column_block_index) = (block / blocks.1, block % blocks.1);
            let task = Task {
                x: packed_x,
                k,
                w,
                n,
                bias,
                row_range: row_block_index * row_block..((row_block_index + 1) * row_block).min(m),
                column_range: column_block_index * column_block
                    ..((column_block_index + 1) * column_block).min(n),
            };
            with_scratch(column_block * DEPTH_BLOCK, |packed_w| {
                // SAFETY: tasks write disjoint output blocks; shapes validated by the caller.
                dispatch!(level, |s| unsafe {
                    run_task(s, &task, packed_w, out.get())
                })
            });
        });
    });
}

/// Packs `x` into `m.div_ceil(rows)` panels of `[k][rows]`, zero-padding the last panel.
fn pack_activations(x: &[f32], m: usize, k: usize, rows: usize, packed: &mut [f32]) {
    packed
        .par_chunks_mut(k * rows)
        .enumerate()
        .for_each(|(tile, panel)| {
            for i in 0..rows {
                let row = tile * rows + i;
                if row < m {
                    for (p, &value) in x[row * k..(row + 1) * k].iter().enumerate() {
                        panel[p * rows + i] = value;
                    }
                } else {
                    (0..k).for_each(|p| panel[p * rows + i] = 0.0);
                }
            }
        });
}

struct Task<'a, W> {
    /// Packed activations (see [`pack_activations`]).
    x: &'a [f32],
    k: usize,
    w: &'a [W],
    n: usize,
    bias: Option<&'a [f32]>,
    row_range: std::ops::Range<usize>,
    column_range: std::ops::Range<usize>,
}

/// # Safety
/// `out` is `[m, n]` and no other task writes this task's block.
#[inline(always)]
unsafe fn run_task<S: Simd, W: Element>(
    s: S,
    task: &Task<'_, W>,
    packed_w: &mut [f32],
    out: *mut f32,
) {
    // SAFETY: forwarded.
    unsafe {
        if tile_rows::<S>() == 14 {
            run_task_tiles::<S, W, 14>(s, task, packed_w, out)
        } else {
            run_task_tiles::<S, W, 6>(s, task, packed_w, out)
        }
    }
}

/// # Safety
/// As [`run_task`]; `MR == tile_rows::<S>()`, the panel height `task.x` was packed with.
#[inline(always)]
unsafe fn run_task_tiles<S: Simd, W: Element, const MR: usize>(
    s: S,
    task: &Task<'_, W>,
    packed_w: &mut [f32],
    out: *mut f32,
) {
    let columns = TILE_VECTORS * S::LANES;
    let k = task.k;
    let first_tile = task.row_range.start / MR;
    let tiles = task.row_range.len().div_ceil(MR);
    let strips = task.column_range.len().div_ceil(columns);
    let mut depth = 0;
    while depth < k {
        let depth_len = DEPTH_BLOCK.min(k - depth);
        pack_weights(s, task, depth..depth + depth_len, columns, packed_w);
        for strip in 0..strips {
            let column = task.column_range.start + strip * columns;
            let valid_columns = (task.column_range.end - column).min(columns);
            let init = match (depth, task.bias) {
                (0, Some(bias)) => Init::Bias(bias[column..].as_ptr()),
                (0, None) => Init::Zero,
                _ => Init::Accumulate,
            };
            for tile in first_tile..first_tile + tiles {
                let row = tile * MR;
                let tile_args = MicroTile {
                    depth: depth_len,
                    // SAFETY: inside the packed panels and the output block.
                    a: unsafe { task.x.as_ptr().add(tile * MR * k + depth * MR) },
                    b: unsafe { packed_w.as_ptr().add(strip * depth_len * columns) },
                    c: unsafe { out.add(row * task.n + column) },
                    c_stride: task.n,
                    rows: (task.row_range.end - row).min(MR),
                    columns: valid_columns,
                    init,
                };
                // SAFETY: the tile is inside the operands.
                unsafe { micro_kernel::<S, MR>(s, tile_args) };
            }
        }
        depth += depth_len;
    }
}

/// Widens and transposes the task's weight rows, inner indices `depth`, into strips of
/// `[depth.len()][columns]`, zero-padding columns past the block. Works in `LANES × LANES`
/// blocks transposed in registers.
#[inline(always)]
fn pack_weights<S: Simd, W: Element>(
    s: S,
    task: &Task<'_, W>,
    depth: std::ops::Range<usize>,
    columns: usize,
    packed: &mut [f32],
) {
    let lanes = S::LANES;
    let depth_len = depth.len();
    let strips = task.column_range.len().div_ceil(columns);
    let mut block = [s.zero(); 16];
    for strip in 0..strips {
        for group in 0..TILE_VECTORS {
            let first_row = task.column_range.start + strip * columns + group * lanes;
            let valid_rows = task.column_range.end.saturating_sub(first_row).min(lanes);
            let target = strip * depth_len * columns + group * lanes;
            let mut p0 = 0;
            while p0 < depth_len {
                let len = (depth_len - p0).min(lanes);
                for (r, vector) in block[..lanes].iter_mut().enumerate() {
                    *vector = if r < valid_rows {
                        let at = (first_row + r) * task.k + depth.start + p0;
                        // SAFETY: `len` elements from `at` are inside weight row `first_row + r`.
                        unsafe { load_upto(s, task.w[at..].as_ptr(), len) }
                    } else {
                        s.zero()
                    };
                }
                s.transpose(&mut block[..lanes]);
                for (p, &vector) in block[..len].iter().enumerate() {
                    let at = target + (p0 + p) * columns;
                    assert!(at + lanes <= packed.len());
                    // SAFETY: checked just above.
                    unsafe { s.store(packed.as_mut_ptr().add(at), vector) };
                }
                p0 += len;
            }
        }
    }
}

/// How a micro-kernel starts its accumulators.
#[derive(Clone, Copy)]
enum Init {
    Zero,
    /// The bias of the tile's first column (same for every row).
    Bias(*const f32),
    /// The current contents of the output tile.
    Accumulate,
}

struct MicroTile {
    depth: usize,
    /// Packed activations: `depth × MR`.
    a: *const f32,
    /// Packed weights: `depth × TILE_VECTORS·LANES`.
    b: *const f32,
    c: *mut f32,
    c_stride: usize,
    /// Valid rows and columns of the tile (the rest is padding, computed but not stored).
    rows: usize,
    columns: usize,
    init: Init,
}

/// `C[MR × 2 vectors] (+)= A · B` over `depth`, all accumulators in registers.
///
/// # Safety
/// The packed operands hold `depth` steps; the valid part of the output tile is writable (and
/// readable for `Init::Accumulate`), and for `Init::Bias` `columns` floats are readable.
#[inline(always)]
unsafe fn micro_kernel<S: Simd, const MR: usize>(s: S, t: MicroTile) {
    let lanes = S::LANES;
    let width = TILE_VECTORS * lanes;
    let len = |v: usize| t.columns.saturating_sub(v * lanes).min(lanes);
    let mut acc = [[s.zero(); TILE_VECTORS]; MR];
    // SAFETY: the caller's extents.
    unsafe {
        match t.init {
            Init::Zero => {}
            Init::Bias(bias) => {
                let mut row = [s.zero(); TILE_VECTORS];
                for (v, vector) in row.iter_mut().enumerate() {
                    if len(v) > 0 {
                        *vector = load_upto(s, bias.add(v * lanes), len(v));
                    }
                }
                acc = [row; MR];
            }
            Init::Accumulate => {
                for (i, acc) in acc.iter_mut().enumerate().take(t.rows) {
                    for (v, acc) in acc.iter_mut().enumerate() {
                        if len(v) > 0 {
                            *acc = load_upto(s, t.c.add(i * t.c_stride + v * lanes), len(v));
                        }
                    }
                }
            }
        }
        for p in 0..t.depth {
            let mut b = [s.zero(); TILE_VECTORS];
            for (v, vector) in b.iter_mut().enumerate() {
                *vector = s.load(t.b.add(p * width + v * lanes));
            }
            let a = t.a.add(p * MR);
            for (i, acc) in acc.iter_mut().enumerate() {
                let a = s.splat(*a.add(i));
                for (acc, &b) in acc.iter_mut().zip(&b) {
                    *acc = s.mul_add(a, b, *acc);
                }
            }
        }
        for (i, acc) in acc.iter().enumerate().take(t.rows) {
            for (v, &acc) in acc.iter().enumerate() {
                if len(v) > 0 {
                    store_upto(s, t.c.add(i * t.c_stride + v * lanes), acc, len(v));
                }
            }
        }
    }
}
