//! Softmax attention with an online (streaming) softmax, in bounded memory at any length.
//!
//! Work is cut into tasks of at most [`MAX_ROWS`] query rows that share one key/value sequence
//! (one head of a vision segment, or every query head of one grouped-query KV head, so GQA reads
//! each cached key once per task). A task walks its keys in blocks of [`KEY_BLOCK`], keeping a
//! running max and sum per row (flash-attention style); no score matrix larger than
//! `MAX_ROWS × KEY_BLOCK` ever exists.
//!
//! Two layouts, chosen per task:
//! * **wide** (at least one vector of rows): queries, scores and outputs are held transposed so
//!   the rows run along the vector lanes; scores are a small GEMM with keys broadcast, and the
//!   softmax bookkeeping is vectorised across rows.
//! * **narrow** (decode: a few rows against a long cache): each key row is loaded once and dotted
//!   with every query row, then accumulated into row-major outputs. This streams the cache at
//!   memory speed.
//!
//! When a call has too few tasks to occupy the threads (decode with few KV heads), the key range
//! is split and the partial softmax states are merged exactly afterwards.

use std::ops::Range;

use rayon::prelude::*;

use crate::error::{KernelError, expect_len, expect_nonzero, product};
use crate::math::exp2;
use crate::parallel::{SharedMut, threads, with_scratch};
use crate::simd::{Simd, SimdLevel, dispatch, load_upto, store_upto};

/// Query rows per task; a multiple of every level's lane count.
pub(crate) const MAX_ROWS: usize = 64;
/// Keys per online-softmax step.
pub(crate) const KEY_BLOCK: usize = 64;
/// Fewest keys worth giving a task of their own when splitting a long key range.
const MIN_SPLIT_KEYS: usize = 1024;
/// Widest vector of any level, for padding head dimensions.
const MAX_LANES: usize = 16;

/// Vision tower attention: non-causal inside each segment, nothing across segments
/// (block-diagonal; FlashAttention varlen semantics).
///
/// `q`, `k`, `v` and `out` are `[tokens, heads, head_dim]`; `cu_seqlens` is
/// `[0, n1, n1 + n2, …, tokens]`. Scores are `scale · q·k`.
#[allow(clippy::too_many_arguments)]
pub fn attention_segments(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    heads: usize,
    head_dim: usize,
    cu_seqlens: &[usize],
    scale: f32,
    out: &mut [f32],
) -> Result<(), KernelError> {
    attention_segments_at(
        SimdLevel::detected(),
        q,
        k,
        v,
        heads,
        head_dim,
        cu_seqlens,
        scale,
        out,
    )
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn attention_segments_at(
    level: SimdLevel,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    heads: usize,
    head_dim: usize,
    cu_seqlens: &[usize],
    scale: f32,
    out: &mut [f32],
) -> Result<(), KernelError> {
    validate_segments(q, k, v, heads, head_dim, cu_seqlens, out)?;
    let row_stride = heads * head_dim;
    let out = SharedMut::new(out);
    segment_tasks(heads, cu_seqlens, MAX_ROWS)
        .into_par_iter()
        .for_each(|(segment, head, queries)| {
            let rows =
                RowSet::new(queries.map(|t| (t * row_stride + head * head_dim, segment.end)));
            let kv = KvLayout {
                base: head * head_dim,
                stride: row_stride,
            };
            let problem = Problem {
                q,
                k,
                v,
                kv,
                head_dim,
                scale,
            };
            // SAFETY: each task owns the output rows of its own (head, queries).
            unsafe { attend_and_store(level, &problem, &rows, segment, out.get()) };
        });
    Ok(())
}

/// The tasks of a segment attention: `(segment, head, query rows)`, at most [`MAX_ROWS`] rows
/// each.
pub(crate) fn segment_tasks(
    heads: usize,
    cu_seqlens: &[usize],
    rows_per_task: usize,
) -> Vec<(Range<usize>, usize, Range<usize>)> {
    cu_seqlens
        .windows(2)
        .flat_map(|bounds| {
            let segment = bounds[0]..bounds[1];
            (0..heads).flat_map(move |head| {
                let segment = segment.clone();
                segment.clone().step_by(rows_per_task).map(move |first| {
                    (
                        segment.clone(),
                        head,
                        first..(first + rows_per_task).min(segment.end),
                    )
                })
            })
        })
        .collect()
}

pub(crate) fn validate_segments(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    heads: usize,
    head_dim: usize,
    cu_seqlens: &[usize],
    out: &[f32],
) -> Result<(), KernelError> {
    const KERNEL: &str = "attention_segments";
    expect_nonzero(KERNEL, "heads", heads)?;
    expect_nonzero(KERNEL, "head_dim", head_dim)?;
    let tokens = *cu_seqlens.last().ok_or(KernelError::EmptySegmentBounds)?;
    for (operand, len) in [
        ("q", q.len()),
        ("k", k.len()),
        ("v", v.len()),
        ("out", out.len()),
    ] {
        expect_len(KERNEL, operand, len, &[tokens, heads, head_dim])?;
    }
    let mut previous = 0;
    for (index, &value) in cu_seqlens.iter().enumerate() {
        if value < previous || (index == 0 && value != 0) || value > tokens {
            return Err(KernelError::InvalidSegmentBounds {
                index,
                value,
                previous,
                tokens,
            });
        }
        previous = value;
    }
    Ok(())
}

/// LLM attention: `n_new` new query tokens against a KV cache that already holds their keys
/// and values, causally.
///
/// `q` and `out` are `[n_new, q_heads, head_dim]`; `k_cache` and `v_cache` are
/// `[kv_heads, capacity, head_dim]` with rows `0..past + n_new` valid. Query `i` (position
/// `past + i`) attends to cache rows `0..=past + i`; query head `h` reads KV head
/// `h / (q_heads / kv_heads)`.
#[allow(clippy::too_many_arguments)]
pub fn attention_causal(
    q: &[f32],
    n_new: usize,
    q_heads: usize,
    k_cache: &[f32],
    v_cache: &[f32],
    kv_heads: usize,
    capacity: usize,
    past: usize,
    head_dim: usize,
    scale: f32,
    out: &mut [f32],
) -> Result<(), KernelError> {
    let shape = CausalShape {
        n_new,
        q_heads,
        kv_heads,
        capacity,
        past,
        head_dim,
    };
    attention_causal_at(
        SimdLevel::detected(),
        q,
        k_cache,
        v_cache,
        shape,
        scale,
        out,
    )
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct CausalShape {
    pub(crate) n_new: usize,
    pub(crate) q_heads: usize,
    pub(crate) kv_heads: usize,
    pub(crate) capacity: usize,
    pub(crate) past: usize,
    pub(crate) head_dim: usize,
}

impl CausalShape {
    pub(crate) fn group(&self) -> usize {
        self.q_heads / self.kv_heads
    }

    /// The query rows of KV head `kv_head` with indices `block` in its (token, head) order.
    pub(crate) fn rows(&self, kv_head: usize, block: Range<usize>) -> RowSet {
        let group = self.group();
        RowSet::new(block.map(|r| {
            let (token, head) = (r / group, kv_head * group + r % group);
            (
                (token * self.q_heads + head) * self.head_dim,
                self.past + token + 1,
            )
        }))
    }

    fn validate(
        &self,
        q: &[f32],
        k_cache: &[f32],
        v_cache: &[f32],
        out: &[f32],
    ) -> Result<(), KernelError> {
        self.validate_lengths(q.len(), k_cache.len(), v_cache.len(), out.len())
    }

    /// Checks the shape and the element counts of `q`, the caches and `out`.
    pub(crate) fn validate_lengths(
        &self,
        q: usize,
        k_cache: usize,
        v_cache: usize,
        out: usize,
    ) -> Result<(), KernelError> {
        const KERNEL: &str = "attention_causal";
        expect_nonzero(KERNEL, "q_heads", self.q_heads)?;
        expect_nonzero(KERNEL, "kv_heads", self.kv_heads)?;
        expect_nonzero(KERNEL, "head_dim", self.head_dim)?;
        if !self.q_heads.is_multiple_of(self.kv_heads) {
            return Err(KernelError::HeadsNotGrouped {
                q_heads: self.q_heads,
                kv_heads: self.kv_heads,
            });
        }
        let overflow = KernelError::CacheOverflow {
            past: self.past,
            new: self.n_new,
            capacity: self.capacity,
        };
        if self
            .past
            .checked_add(self.n_new)
            .is_none_or(|total| total > self.capacity)
        {
            return Err(overflow);
        }
        expect_len(KERNEL, "q", q, &[self.n_new, self.q_heads, self.head_dim])?;
        expect_len(
            KERNEL,
            "out",
            out,
            &[self.n_new, self.q_heads, self.head_dim],
        )?;
        expect_len(
            KERNEL,
            "k_cache",
            k_cache,
            &[self.kv_heads, self.capacity, self.head_dim],
        )?;
        expect_len(
            KERNEL,
            "v_cache",
            v_cache,
            &[self.kv_heads, self.capacity, self.head_dim],
        )?;
        Ok(())
    }
}

pub(crate) fn attention_causal_at(
    level: SimdLevel,
    q: &[f32],
    k_cache: &[f32],
    v_cache: &[f32],
    shape: CausalShape,
    scale: f32,
    out: &mut [f32],
) -> Result<(), KernelError> {
    shape.validate(q, k_cache, v_cache, out)?;
    if shape.n_new == 0 {
        return Ok(());
    }
    let d = shape.head_dim;
    let rows_per_head = shape.n_new * shape.group();
    let blocks_per_head = rows_per_head.div_ceil(MAX_ROWS);
    let block_tasks = shape.kv_heads * blocks_per_head;
    let total_keys = shape.past + shape.n_new;
    // Split the keys only when the natural tasks cannot keep every thread busy.
    let wanted = 4 * threads();
    let splits = if block_tasks >= wanted {
        1
    } else {
        wanted
            .div_ceil(block_tasks)
            .min(total_keys / MIN_SPLIT_KEYS)
            .max(1)
    };
    let task_rows = |task: usize| {
        let (kv_head, block) = (task / blocks_per_head, task % blocks_per_head);
        let rows = block * MAX_ROWS..((block + 1) * MAX_ROWS).min(rows_per_head);
        (kv_head, shape.rows(kv_head, rows))
    };
    let problem = |kv_head: usize| Problem {
        q,
        k: k_cache,
        v: v_cache,
        kv: KvLayout {
            base: kv_head * shape.capacity * d,
            stride: d,
        },
        head_dim: d,
        scale,
    };
    let out = SharedMut::new(out);

    if splits == 1 {
        (0..block_tasks).into_par_iter().for_each(|task| {
            let (kv_head, rows) = task_rows(task);
            let keys = 0..rows.max_key_end();
            // SAFETY: each task owns the output rows of its own (kv head, row block).
            unsafe { attend_and_store(level, &problem(kv_head), &rows, keys, out.get()) };
        });
        return Ok(());
    }

    // Partial states: per (block task, split, row) the running max, the sum, then `d` outputs.
    let state_len = d + 2;
    let per_task = splits * MAX_ROWS * state_len;
    let partial_len = product(
        "attention_causal",
        "partial states",
        &[block_tasks, per_task],
    )?;
    let mut partials = vec![0.0f32; partial_len];
    let split_keys = total_keys.div_ceil(splits).next_multiple_of(KEY_BLOCK);
    partials
        .par_chunks_mut(MAX_ROWS * state_len)
        .enumerate()
        .for_each(|(index, states)| {
            let (task, split) = (index / splits, index % splits);
            let (kv_head, rows) = task_rows(task);
            let keys = (split * split_keys).min(rows.max_key_end())
                ..((split + 1) * split_keys).min(rows.max_key_end());
            attend_partial(level, &problem(kv_head), &rows, keys, states);
        });
    partials
        .par_chunks(per_task)
        .enumerate()
        .for_each(|(task, states)| {
            let (_, rows) = task_rows(task);
            // SAFETY: each task owns the output rows of its own (kv head, row block).
            unsafe { merge_partials(states, splits, &rows, d, out.get()) };
        });
    Ok(())
}

/// The data one task reads.
pub(crate) struct Problem<'a> {
    pub(crate) q: &'a [f32],
    pub(crate) k: &'a [f32],
    pub(crate) v: &'a [f32],
    pub(crate) kv: KvLayout,
    pub(crate) head_dim: usize,
    pub(crate) scale: f32,
}

/// Where a task's key/value sequence lives: key `j` starts at `base + j * stride` in `k` and `v`.
#[derive(Clone, Copy)]
pub(crate) struct KvLayout {
    pub(crate) base: usize,
    pub(crate) stride: usize,
}

/// The query rows of one task: where each starts in `q` (and `out`) and the exclusive end of the
/// keys it may attend to. Rows are ordered by non-decreasing key end.
pub(crate) struct RowSet {
    pub(crate) len: usize,
    pub(crate) offsets: [usize; MAX_ROWS],
    pub(crate) key_ends: [usize; MAX_ROWS],
}

impl RowSet {
    pub(crate) fn new(rows: impl Iterator<Item = (usize, usize)>) -> RowSet {
        let mut set = RowSet {
            len: 0,
            offsets: [0; MAX_ROWS],
            key_ends: [0; MAX_ROWS],
        };
        for (offset, key_end) in rows.take(MAX_ROWS) {
            set.offsets[set.len] = offset;
            set.key_ends[set.len] = key_end;
            set.len += 1;
        }
        set
    }

    pub(crate) fn max_key_end(&self) -> usize {
        self.key_ends[..self.len].iter().copied().max().unwrap_or(0)
    }

    fn min_key_end(&self) -> usize {
        self.key_ends[..self.len].iter().copied().min().unwrap_or(0)
    }
}

/// Online-softmax state of a task: unnormalised output rows (`len × head_dim`), running max
/// and running sum per row.
pub(crate) struct SoftmaxState<'a> {
    pub(crate) output: &'a mut [f32],
    pub(crate) max: [f32; MAX_ROWS],
    pub(crate) sum: [f32; MAX_ROWS],
}

impl SoftmaxState<'_> {
    /// Folds in the state of the same rows over further keys: both rescaled to the larger max.
    /// A row that saw none of those keys (sum 0) is left as it is.
    pub(crate) fn merge(&mut self, other: &SoftmaxState<'_>, rows: usize, d: usize) {
        for r in 0..rows {
            if other.sum[r] == 0.0 {
                continue;
            }
            let max = self.max[r].max(other.max[r]);
            let (old, new) = ((self.max[r] - max).exp(), (other.max[r] - max).exp());
            self.sum[r] = self.sum[r] * old + other.sum[r] * new;
            self.max[r] = max;
            let target = &mut self.output[r * d..(r + 1) * d];
            for (t, &o) in target.iter_mut().zip(&other.output[r * d..(r + 1) * d]) {
                *t = *t * old + o * new;
            }
        }
    }
}

pub(crate) fn scratch_len(head_dim: usize) -> usize {
    let padded = head_dim.next_multiple_of(MAX_LANES);
    MAX_ROWS * (3 * padded + KEY_BLOCK)
}

/// Attends `rows` to `keys` and writes the normalised rows to `out`.
///
/// # Safety
/// `out` points to a buffer laid out like `problem.q` that no other task writes at these rows'
/// offsets; `keys` is inside the sequence of `problem.kv`.
unsafe fn attend_and_store(
    level: SimdLevel,
    problem: &Problem<'_>,
    rows: &RowSet,
    keys: Range<usize>,
    out: *mut f32,
) {
    let d = problem.head_dim;
    with_scratch(scratch_len(d), |scratch| {
        dispatch!(level, |s| {
            let (output, work) = scratch.split_at_mut(MAX_ROWS * d);
            let mut state = SoftmaxState {
                output,
                max: [0.0; MAX_ROWS],
                sum: [0.0; MAX_ROWS],
            };
            // SAFETY: shapes validated by the caller; outputs disjoint per the contract.
            unsafe {
                attend(s, problem, rows, keys, work, &mut state);
                for r in 0..rows.len {
                    let inverse = 1.0 / state.sum[r];
                    scale_row(
                        s,
                        &state.output[r * d..(r + 1) * d],
                        inverse,
                        out.add(rows.offsets[r]),
                    );
                }
            }
        })
    });
}

/// Attends `rows` to `keys` and stores the unnormalised state (max, sum, outputs) per row in
/// `states` (`MAX_ROWS × (head_dim + 2)`).
fn attend_partial(
    level: SimdLevel,
    problem: &Problem<'_>,
    rows: &RowSet,
    keys: Range<usize>,
    states: &mut [f32],
) {
    let d = problem.head_dim;
    let state_len = d + 2;
    if keys.is_empty() {
        for state in states.chunks_exact_mut(state_len) {
            state[0] = f32::NEG_INFINITY;
            state[1] = 0.0;
        }
        return;
    }
    with_scratch(scratch_len(d), |scratch| {
        dispatch!(level, |s| {
            let (output, work) = scratch.split_at_mut(MAX_ROWS * d);
            let mut state = SoftmaxState {
                output,
                max: [0.0; MAX_ROWS],
                sum: [0.0; MAX_ROWS],
            };
            // SAFETY: shapes validated by the caller.
            unsafe { attend(s, problem, rows, keys, work, &mut state) };
            for (r, target) in states
                .chunks_exact_mut(state_len)
                .take(rows.len)
                .enumerate()
            {
                target[0] = state.max[r];
                target[1] = state.sum[r];
                target[2..].copy_from_slice(&state.output[r * d..(r + 1) * d]);
            }
        })
    });
}

/// Merges per-split softmax states into normalised output rows.
///
/// # Safety
/// As [`attend_and_store`].
unsafe fn merge_partials(states: &[f32], splits: usize, rows: &RowSet, d: usize, out: *mut f32) {
    let state_len = d + 2;
    let split_states = |r: usize| {
        (0..splits).map(move |split| &states[(split * MAX_ROWS + r) * state_len..][..state_len])
    };
    for r in 0..rows.len {
        let global_max = split_states(r)
            .map(|state| state[0])
            .fold(f32::NEG_INFINITY, f32::max);
        // SAFETY: the caller guarantees this row's output is ours.
        let target = unsafe { std::slice::from_raw_parts_mut(out.add(rows.offsets[r]), d) };
        target.fill(0.0);
        let mut sum = 0.0;
        for state in split_states(r) {
            if state[1] == 0.0 {
                continue;
            }
            let weight = (state[0] - global_max).exp();
            sum += weight * state[1];
            for (t, &o) in target.iter_mut().zip(&state[2..]) {
                *t += weight * o;
            }
        }
        let inverse = 1.0 / sum;
        target.iter_mut().for_each(|t| *t *= inverse);
    }
}

/// `out[c] = row[c] * factor`.
///
/// # Safety
/// `row.len()` floats at `out` are writable.
#[inline(always)]
pub(crate) unsafe fn scale_row<S: Simd>(s: S, row: &[f32], factor: f32, out: *mut f32) {
    let factor = s.splat(factor);
    let mut c = 0;
    while c < row.len() {
        let lanes = (row.len() - c).min(S::LANES);
        // SAFETY: within `row` and the caller's `out` extent.
        unsafe {
            store_upto(
                s,
                out.add(c),
                s.mul(load_upto(s, row.as_ptr().add(c), lanes), factor),
                lanes,
            )
        };
        c += lanes;
    }
}

/// Runs the online softmax of `rows` over `keys`, choosing the layout for this level.
///
/// # Safety
/// Every row offset plus `head_dim` is inside `q`; every key in `keys` is inside the sequence;
/// `work` has `scratch_len(head_dim) - MAX_ROWS * head_dim` floats.
#[inline(always)]
pub(crate) unsafe fn attend<S: Simd>(
    s: S,
    problem: &Problem<'_>,
    rows: &RowSet,
    keys: Range<usize>,
    work: &mut [f32],
    state: &mut SoftmaxState<'_>,
) {
    // SAFETY: forwarded.
    unsafe {
        if rows.len >= S::LANES {
            attend_wide(s, problem, rows, keys, work, state)
        } else {
            attend_narrow(s, problem, rows, keys, work, state)
        }
    }
}

/// Wide layout: rows along the lanes. Queries `qt` and outputs `ot` are `[head_dim, padded rows]`,
/// scores `st` are `[keys, padded rows]`.
#[inline(always)]
unsafe fn attend_wide<S: Simd>(
    s: S,
    problem: &Problem<'_>,
    rows: &RowSet,
    keys: Range<usize>,
    work: &mut [f32],
    state: &mut SoftmaxState<'_>,
) {
    let d = problem.head_dim;
    let lanes = S::LANES;
    let padded = rows.len.next_multiple_of(lanes);
    let (qt, rest) = work.split_at_mut(d * padded);
    let (ot, rest) = rest.split_at_mut(d * padded);
    let st = &mut rest[..KEY_BLOCK * padded];

    qt.fill(0.0);
    ot.fill(0.0);
    for (r, &offset) in rows.offsets[..rows.len].iter().enumerate() {
        for (c, &value) in problem.q[offset..offset + d].iter().enumerate() {
            qt[c * padded + r] = value;
        }
    }
    let mut columns = SoftmaxColumns::new();
    let (k_data, v_data) = (problem.k.as_ptr(), problem.v.as_ptr());

    let mut block = keys.start;
    while block < keys.end {
        let count = KEY_BLOCK.min(keys.end - block);
        let key_rows = problem.kv.base + block * problem.kv.stride;
        // SAFETY: keys block..block+count are inside the sequence; scratch extents as sized.
        unsafe {
            // st[j][r] = Σ_c K[j][c] · qt[c][r]
            let scores = Operand {
                data: k_data.add(key_rows),
                row_stride: problem.kv.stride,
                column_stride: 1,
            };
            matmul(
                s,
                count,
                padded,
                d,
                scores,
                qt.as_ptr(),
                padded,
                st.as_mut_ptr(),
                padded,
                false,
            );

            softmax_block_wide(
                s,
                st,
                padded,
                count,
                block,
                rows,
                problem.scale,
                &mut columns,
            );
            scale_output_wide(s, ot, padded, d, &columns.correction);
            // ot[c][r] += Σ_j V[j][c] · st[j][r]
            let values = Operand {
                data: v_data.add(key_rows),
                row_stride: 1,
                column_stride: problem.kv.stride,
            };
            matmul(
                s,
                d,
                padded,
                count,
                values,
                st.as_ptr(),
                padded,
                ot.as_mut_ptr(),
                padded,
                true,
            );
        }
        block += count;
    }

    columns.store(state, ot, padded, rows.len, d);
}

/// Online-softmax bookkeeping of the wide layout, one lane per query row.
pub(crate) struct SoftmaxColumns {
    max: [f32; MAX_ROWS],
    sum: [f32; MAX_ROWS],
    /// The factor the last block applied to earlier outputs.
    pub(crate) correction: [f32; MAX_ROWS],
    /// Per row, keys of the current block at or past this index are masked (padding rows: none).
    visible: [f32; MAX_ROWS],
}

impl SoftmaxColumns {
    pub(crate) fn new() -> Self {
        SoftmaxColumns {
            max: [f32::NEG_INFINITY; MAX_ROWS],
            sum: [0.0; MAX_ROWS],
            correction: [0.0; MAX_ROWS],
            visible: [f32::INFINITY; MAX_ROWS],
        }
    }

    /// The running sums of the rows' weights.
    pub(crate) fn sums(&self) -> &[f32; MAX_ROWS] {
        &self.sum
    }

    /// Folds a block's largest scaled scores of the rows `lane0..lane0 + S::LANES` into their
    /// running max and stores the correction for earlier outputs; returns the shift to take
    /// from `score · scale · log2 e` before [`exp2`] (the new max · log2 e, 0 for a row with no
    /// visible key so far). [`Self::add_sum`] then adds the block's weights.
    ///
    /// # Safety
    /// `lane0 + S::LANES <= MAX_ROWS`.
    #[inline(always)]
    pub(crate) unsafe fn fold_max<S: Simd>(&mut self, s: S, lane0: usize, block_max: S::V) -> S::V {
        let log2_e = s.splat(std::f32::consts::LOG2_E);
        // SAFETY: the lanes are inside the columns (the caller guarantees it).
        unsafe {
            let old_max = s.load(self.max.as_ptr().add(lane0));
            let new_max = s.max(old_max, block_max);
            // A row with no visible key so far keeps max -inf; shift by 0 to avoid inf - inf.
            let shift = s.select_lt(new_max, s.splat(f32::MIN), s.zero(), new_max);
            let factor = exp2(s, s.mul(s.sub(old_max, shift), log2_e));
            s.store(self.max.as_mut_ptr().add(lane0), new_max);
            s.store(self.correction.as_mut_ptr().add(lane0), factor);
            s.mul(shift, log2_e)
        }
    }

    /// Adds a block's weights of the rows `lane0..lane0 + S::LANES` to their running sums,
    /// after the correction [`Self::fold_max`] stored.
    ///
    /// # Safety
    /// `lane0 + S::LANES <= MAX_ROWS`.
    #[inline(always)]
    pub(crate) unsafe fn add_sum<S: Simd>(&mut self, s: S, lane0: usize, block_sum: S::V) {
        // SAFETY: the lanes are inside the columns (the caller guarantees it).
        unsafe {
            let old_sum = s.load(self.sum.as_ptr().add(lane0));
            let factor = s.load(self.correction.as_ptr().add(lane0));
            s.store(
                self.sum.as_mut_ptr().add(lane0),
                s.mul_add(old_sum, factor, block_sum),
            );
        }
    }

    /// Moves the transposed outputs `ot` (`[d, padded]`) and the running max and sum of the
    /// first `len` rows into `state`.
    pub(crate) fn store(
        &self,
        state: &mut SoftmaxState<'_>,
        ot: &[f32],
        padded: usize,
        len: usize,
        d: usize,
    ) {
        for r in 0..len {
            for c in 0..d {
                state.output[r * d + c] = ot[c * padded + r];
            }
        }
        state.max[..len].copy_from_slice(&self.max[..len]);
        state.sum[..len].copy_from_slice(&self.sum[..len]);
    }
}

/// One online-softmax step of the wide layout: turns the raw scores `st` (`[count, padded]`,
/// keys `block..block + count`; the scale is applied here) into weights, 0 for keys past each
/// row's end, and updates `columns` (max, sum and the correction for earlier outputs).
///
/// The running max is kept in scaled units; a weight is `2^(score·scale·log2 e − max·log2 e)`,
/// one fused multiply-add and an [`exp2`] per score.
///
/// # Safety
/// `st` holds `count × padded` floats; `padded` is a multiple of the lanes and at most
/// [`MAX_ROWS`].
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) unsafe fn softmax_block_wide<S: Simd>(
    s: S,
    st: &mut [f32],
    padded: usize,
    count: usize,
    block: usize,
    rows: &RowSet,
    scale: f32,
    columns: &mut SoftmaxColumns,
) {
    let lanes = S::LANES;
    let scale_log2_e = s.splat(scale * std::f32::consts::LOG2_E);
    let scale = s.splat(scale);
    let negative_infinity = s.splat(f32::NEG_INFINITY);
    let masked = block + count > rows.min_key_end();
    if masked {
        for (slot, &end) in columns.visible.iter_mut().zip(&rows.key_ends[..rows.len]) {
            *slot = end.saturating_sub(block).min(count) as f32;
        }
    }
    // SAFETY: every access is inside `st` and the `MAX_ROWS` columns, as the caller guarantees.
    unsafe {
        for lane0 in (0..padded).step_by(lanes) {
            let visible_keys = s.load(columns.visible.as_ptr().add(lane0));
            let mut block_max = negative_infinity;
            for j in 0..count {
                let p = st.as_mut_ptr().add(j * padded + lane0);
                let mut x = s.load(p);
                if masked {
                    x = s.select_lt(s.splat(j as f32), visible_keys, x, negative_infinity);
                    s.store(p, x);
                }
                block_max = s.max(block_max, s.mul(x, scale));
            }
            let shift = columns.fold_max(s, lane0, block_max);
            let mut block_sum = s.zero();
            for j in 0..count {
                let p = st.as_mut_ptr().add(j * padded + lane0);
                let weight = exp2(
                    s,
                    s.mul_add(s.load(p), scale_log2_e, s.sub(s.zero(), shift)),
                );
                s.store(p, weight);
                block_sum = s.add(block_sum, weight);
            }
            columns.add_sum(s, lane0, block_sum);
        }
    }
}

/// `ot[c][r] *= correction[r]` for the transposed outputs `[d, padded]`.
///
/// # Safety
/// `ot` holds `d × padded` floats; `padded` is a multiple of the lanes and at most [`MAX_ROWS`].
#[inline(always)]
pub(crate) unsafe fn scale_output_wide<S: Simd>(
    s: S,
    ot: &mut [f32],
    padded: usize,
    d: usize,
    correction: &[f32; MAX_ROWS],
) {
    // SAFETY: as the caller guarantees.
    unsafe {
        for c in 0..d {
            for lane0 in (0..padded).step_by(S::LANES) {
                let p = ot.as_mut_ptr().add(c * padded + lane0);
                s.store(p, s.mul(s.load(p), s.load(correction.as_ptr().add(lane0))));
            }
        }
    }
}

/// Narrow layout: row-major queries `qs` `[rows, head_dim]`, outputs `os` `[rows, padded
/// head_dim]`, scores `ss` `[rows, KEY_BLOCK]`.
#[inline(always)]
unsafe fn attend_narrow<S: Simd>(
    s: S,
    problem: &Problem<'_>,
    rows: &RowSet,
    keys: Range<usize>,
    work: &mut [f32],
    state: &mut SoftmaxState<'_>,
) {
    let d = problem.head_dim;
    let padded_d = d.next_multiple_of(MAX_LANES);
    let n = rows.len;
    let (qs, rest) = work.split_at_mut(n * d);
    let (os, rest) = rest.split_at_mut(n * padded_d);
    let ss = &mut rest[..n * KEY_BLOCK];

    for (r, &offset) in rows.offsets[..n].iter().enumerate() {
        qs[r * d..(r + 1) * d].copy_from_slice(&problem.q[offset..offset + d]);
    }
    os.fill(0.0);
    let mut max = [f32::NEG_INFINITY; MAX_ROWS];
    let mut sum = [0.0f32; MAX_ROWS];
    let (k_data, v_data) = (problem.k.as_ptr(), problem.v.as_ptr());

    let mut block = keys.start;
    while block < keys.end {
        let count = KEY_BLOCK.min(keys.end - block);
        let key_rows = problem.kv.base + block * problem.kv.stride;
        // SAFETY: keys block..block+count are inside the sequence; scratch extents as sized.
        unsafe {
            for j in 0..count {
                let key = k_data.add(key_rows + j * problem.kv.stride);
                let mut r = 0;
                while r < n {
                    let tile = (n - r).min(4);
                    let (queries, scores) = (
                        qs.as_ptr().add(r * d),
                        ss.as_mut_ptr().add(r * KEY_BLOCK + j),
                    );
                    match tile {
                        4 => dot_rows::<S, 4>(s, queries, key, d, scores),
                        3 => dot_rows::<S, 3>(s, queries, key, d, scores),
                        2 => dot_rows::<S, 2>(s, queries, key, d, scores),
                        _ => dot_rows::<S, 1>(s, queries, key, d, scores),
                    }
                    r += tile;
                }
            }
            for r in 0..n {
                let scores = &mut ss[r * KEY_BLOCK..(r + 1) * KEY_BLOCK];
                let visible = rows.key_ends[r].saturating_sub(block).min(count);
                let factor = softmax_block(
                    s,
                    scores,
                    count,
                    visible,
                    problem.scale,
                    &mut max[r],
                    &mut sum[r],
                );
                let row = &mut os[r * padded_d..(r + 1) * padded_d];
                row.iter_mut().for_each(|o| *o *= factor);
            }
            // os[r][c] += Σ_j ss[r][j] · V[j][c]
            let weights = Operand {
                data: ss.as_ptr(),
                row_stride: KEY_BLOCK,
                column_stride: 1,
            };
            let values = v_data.add(key_rows);
            matmul(
                s,
                n,
                d,
                count,
                weights,
                values,
                problem.kv.stride,
                os.as_mut_ptr(),
                padded_d,
                true,
            );
        }
        block += count;
    }

    for r in 0..n {
        state.output[r * d..(r + 1) * d].copy_from_slice(&os[r * padded_d..r * padded_d + d]);
    }
    state.max[..n].copy_from_slice(&max[..n]);
    state.sum[..n].copy_from_slice(&sum[..n]);
}

/// One online-softmax step of a row of `KEY_BLOCK` raw scores, of which the first `count` were
/// computed and the first `visible` may be attended to. Replaces the scores by their weights
/// (0 past `visible`), updates the running max (scaled units) and sum, and returns the factor the
/// row's earlier outputs must be multiplied by. Weights as in [`softmax_block_wide`].
#[inline(always)]
fn softmax_block<S: Simd>(
    s: S,
    row: &mut [f32],
    count: usize,
    visible: usize,
    scale: f32,
    max: &mut f32,
    sum: &mut f32,
) -> f32 {
    if visible == 0 {
        row[..count].fill(0.0);
        return 1.0;
    }
    let lanes = S::LANES;
    // Whole vectors from here on: lanes past `visible` hold -inf, so they weigh exactly 0.
    let padded = visible.next_multiple_of(lanes);
    row[visible..padded].fill(f32::NEG_INFINITY);
    let row = &mut row[..padded.max(count)];
    // SAFETY: every vector access is inside `row[..padded]`.
    unsafe {
        let mut block_max = s.splat(f32::NEG_INFINITY);
        for j in (0..padded).step_by(lanes) {
            block_max = s.max(
                block_max,
                s.mul(s.load(row.as_ptr().add(j)), s.splat(scale)),
            );
        }
        let new_max = max.max(s.reduce_max(block_max));
        let factor = (*max - new_max).exp();
        let scale_log2_e = s.splat(scale * std::f32::consts::LOG2_E);
        let shift = s.splat(-new_max * std::f32::consts::LOG2_E);
        let mut block_sum = s.zero();
        for j in (0..padded).step_by(lanes) {
            let p = row.as_mut_ptr().add(j);
            let weight = exp2(s, s.mul_add(s.load(p), scale_log2_e, shift));
            s.store(p, weight);
            block_sum = s.add(block_sum, weight);
        }
        row[padded..].fill(0.0);
        *sum = *sum * factor + s.reduce_sum(block_sum);
        *max = new_max;
        factor
    }
}

/// `R` dot products of consecutive query rows (`d` apart) with one key, stored `KEY_BLOCK` apart.
///
/// # Safety
/// `R × d` floats at `queries` and `d` at `key` are readable; `R` scores are writable.
#[inline(always)]
unsafe fn dot_rows<S: Simd, const R: usize>(
    s: S,
    queries: *const f32,
    key: *const f32,
    d: usize,
    scores: *mut f32,
) {
    let mut acc = [s.zero(); R];
    let mut c = 0;
    // SAFETY: all accesses are inside the rows.
    unsafe {
        while c < d {
            let len = (d - c).min(S::LANES);
            let key_v = load_upto(s, key.add(c), len);
            for (r, acc) in acc.iter_mut().enumerate() {
                *acc = s.mul_add(load_upto(s, queries.add(r * d + c), len), key_v, *acc);
            }
            c += len;
        }
        for (r, acc) in acc.into_iter().enumerate() {
            *scores.add(r * KEY_BLOCK) = s.reduce_sum(acc);
        }
    }
}

/// A matrix operand read by broadcasting single elements: element `(row, column)` is at
/// `data + row * row_stride + column * column_stride`.
#[derive(Clone, Copy)]
struct Operand {
    data: *const f32,
    row_stride: usize,
    column_stride: usize,
}

/// `C[rows × width] (+)= A[rows × depth] · B[depth × width]`, with `A` broadcast element by
/// element, `B` and `C` row-major with the given strides (unit column stride), and the last
/// vector of each row of `B` and `C` partial when `width` is not a multiple of the lanes.
///
/// # Safety
/// Every addressed element of `A`, `B` (read) and `C` (read and written) exists.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn matmul<S: Simd>(
    s: S,
    rows: usize,
    width: usize,
    depth: usize,
    a: Operand,
    b: *const f32,
    b_stride: usize,
    c: *mut f32,
    c_stride: usize,
    accumulate: bool,
) {
    let lanes = S::LANES;
    // Register tile: 4 rows × up to this many vectors of accumulators, plus the B vectors.
    let max_vectors = if S::REGISTERS >= 32 { 4 } else { 2 };
    let mut column = 0;
    while column < width {
        let remaining = width - column;
        let vectors = remaining.div_ceil(lanes).min(max_vectors);
        let last_len = (remaining - (vectors - 1) * lanes).min(lanes);
        let mut row = 0;
        while row < rows {
            let tile_rows = if rows - row >= 4 { 4 } else { 1 };
            // SAFETY: the tile is inside the operands.
            let tile = unsafe {
                Tile {
                    depth,
                    a: Operand {
                        data: a.data.add(row * a.row_stride),
                        ..a
                    },
                    b: b.add(column),
                    b_stride,
                    c: c.add(row * c_stride + column),
                    c_stride,
                    last_len,
                    accumulate,
                }
            };
            // SAFETY: forwarded.
            unsafe {
                match (tile_rows, vectors) {
                    (4, 4) => tile_kernel::<S, 4, 4>(s, tile),
                    (4, 3) => tile_kernel::<S, 4, 3>(s, tile),
                    (4, 2) => tile_kernel::<S, 4, 2>(s, tile),
                    (4, _) => tile_kernel::<S, 4, 1>(s, tile),
                    (_, 4) => tile_kernel::<S, 1, 4>(s, tile),
                    (_, 3) => tile_kernel::<S, 1, 3>(s, tile),
                    (_, 2) => tile_kernel::<S, 1, 2>(s, tile),
                    (_, _) => tile_kernel::<S, 1, 1>(s, tile),
                }
            }
            row += tile_rows;
        }
        column += vectors * lanes;
    }
}

struct Tile {
    depth: usize,
    a: Operand,
    b: *const f32,
    b_stride: usize,
    c: *mut f32,
    c_stride: usize,
    /// Lanes of the tile's last vector column.
    last_len: usize,
    accumulate: bool,
}

/// # Safety
/// As [`matmul`], for one `TA × TV`-vector tile.
#[inline(always)]
unsafe fn tile_kernel<S: Simd, const TA: usize, const TV: usize>(s: S, t: Tile) {
    let len = |v: usize| if v + 1 == TV { t.last_len } else { S::LANES };
    let mut acc = [[s.zero(); TV]; TA];
    // SAFETY: the caller guarantees the tile's extent.
    unsafe {
        if t.accumulate {
            for (i, row) in acc.iter_mut().enumerate() {
                for (v, acc) in row.iter_mut().enumerate() {
                    *acc = load_upto(s, t.c.add(i * t.c_stride + v * S::LANES), len(v));
                }
            }
        }
        for p in 0..t.depth {
            let b_row = t.b.add(p * t.b_stride);
            let mut b = [s.zero(); TV];
            for (v, vector) in b.iter_mut().enumerate() {
                *vector = load_upto(s, b_row.add(v * S::LANES), len(v));
            }
            for (i, row) in acc.iter_mut().enumerate() {
                let a = s.splat(*t.a.data.add(i * t.a.row_stride + p * t.a.column_stride));
                for (acc, &b) in row.iter_mut().zip(&b) {
                    *acc = s.mul_add(a, b, *acc);
                }
            }
        }
        for (i, row) in acc.iter().enumerate() {
            for (v, &acc) in row.iter().enumerate() {
                store_upto(s, t.c.add(i * t.c_stride + v * S::LANES), acc, len(v));
            }
        }
    }
}

/// Reference twin of [`attention_segments`]: per query, a full score row in f64, softmax, and the
/// weighted sum of values.
#[allow(clippy::too_many_arguments)]
pub fn attention_segments_reference(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    heads: usize,
    head_dim: usize,
    cu_seqlens: &[usize],
    scale: f32,
    out: &mut [f32],
) -> Result<(), KernelError> {
    validate_segments(q, k, v, heads, head_dim, cu_seqlens, out)?;
    let at = |t: usize, h: usize| (t * heads + h) * head_dim;
    for bounds in cu_seqlens.windows(2) {
        for h in 0..heads {
            for t in bounds[0]..bounds[1] {
                let keys: Vec<usize> = (bounds[0]..bounds[1]).map(|j| at(j, h)).collect();
                attend_reference(
                    &q[at(t, h)..][..head_dim],
                    k,
                    v,
                    &keys,
                    scale,
                    &mut out[at(t, h)..][..head_dim],
                );
            }
        }
    }
    Ok(())
}

/// Reference twin of [`attention_causal`], computed like [`attention_segments_reference`].
#[allow(clippy::too_many_arguments)]
pub fn attention_causal_reference(
    q: &[f32],
    n_new: usize,
    q_heads: usize,
    k_cache: &[f32],
    v_cache: &[f32],
    kv_heads: usize,
    capacity: usize,
    past: usize,
    head_dim: usize,
    scale: f32,
    out: &mut [f32],
) -> Result<(), KernelError> {
    let shape = CausalShape {
        n_new,
        q_heads,
        kv_heads,
        capacity,
        past,
        head_dim,
    };
    shape.validate(q, k_cache, v_cache, out)?;
    for i in 0..n_new {
        for h in 0..q_heads {
            let kv_head = h / shape.group();
            let keys: Vec<usize> = (0..=past + i)
                .map(|j| (kv_head * capacity + j) * head_dim)
                .collect();
            let at = (i * q_heads + h) * head_dim;
            attend_reference(
                &q[at..][..head_dim],
                k_cache,
                v_cache,
                &keys,
                scale,
                &mut out[at..][..head_dim],
            );
        }
    }
    Ok(())
}

/// One query against the keys and values starting at `key_offsets`.
fn attend_reference(
    query: &[f32],
    k: &[f32],
    v: &[f32],
    key_offsets: &[usize],
    scale: f32,
    out: &mut [f32],
) {
    let d = query.len();
    let scores: Vec<f64> = key_offsets
        .iter()
        .map(|&at| {
            let dot: f64 = query
                .iter()
                .zip(&k[at..at + d])
                .map(|(&a, &b)| f64::from(a) * f64::from(b))
                .sum();
            dot * f64::from(scale)
        })
        .collect();
    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = scores.iter().map(|&s| (s - max).exp()).collect();
    let total: f64 = weights.iter().sum();
    for (c, o) in out.iter_mut().enumerate() {
        let value: f64 = key_offsets
            .iter()
            .zip(&weights)
            .map(|(&at, &w)| w * f64::from(v[at + c]))
            .sum();
        *o = (value / total) as f32;
    }
}
