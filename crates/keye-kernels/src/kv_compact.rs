//! KV caches stored narrower than f32, and causal attention that reads them directly:
//!
//! - bf16 ([`CompactRows::Bf16`]): each cached value rounded to the nearest bf16, half the f32
//!   cache's memory and reads. PyTorch's bf16 inference keeps its cache the same way, and so
//!   does llama.cpp (in f16).
//! - 8-bit ([`CompactRows::Q8`]): each cached row of `head_dim` values stored as i8 levels with
//!   one f32 scale (`absmax / 127`), a quarter of the memory. Rounding each row to 8 bits changes
//!   the scores and outputs by about 0.4 % of a row's largest value.
//!
//! Layout: values `[kv_heads, capacity, head_dim]` (the f32 cache's), 8-bit scales
//! `[kv_heads, capacity]`, one per row.

use half::bf16;
use rayon::prelude::*;

use crate::attention::{
    CausalShape, KvLayout, MAX_ROWS, Problem, RowSet, SoftmaxState, attend, scale_row, scratch_len,
};
use crate::error::{KernelError, expect_len, expect_nonzero};
use crate::math::round_half_away;
use crate::parallel::{SharedMut, with_scratch};
use crate::simd::{Element, Simd, SimdLevel, dispatch, load_upto, store_upto};

/// One 8-bit cache tensor (keys or values).
#[derive(Clone, Copy, Debug)]
pub struct Q8Rows<'a> {
    /// `[kv_heads, capacity, head_dim]` levels.
    pub levels: &'a [i8],
    /// `[kv_heads, capacity]` scales: a row's values are `level · scale`.
    pub scales: &'a [f32],
}

/// One compact cache tensor (keys or values), `[kv_heads, capacity, head_dim]` values.
#[derive(Clone, Copy, Debug)]
pub enum CompactRows<'a> {
    /// Values rounded to bf16.
    Bf16(&'a [bf16]),
    /// 8-bit levels with a scale per row.
    Q8(Q8Rows<'a>),
}

impl CompactRows<'_> {
    /// Stored values (levels for 8-bit rows).
    fn values_len(&self) -> usize {
        match self {
            Self::Bf16(values) => values.len(),
            Self::Q8(rows) => rows.levels.len(),
        }
    }

    /// Value `c` of cache row `row` (of `head_dim`), exactly.
    fn value(&self, row: usize, head_dim: usize, c: usize) -> f64 {
        match self {
            Self::Bf16(values) => f64::from(values[row * head_dim + c].to_f32()),
            Self::Q8(rows) => {
                f64::from(rows.levels[row * head_dim + c]) * f64::from(rows.scales[row])
            }
        }
    }

    /// Writes cache row `row` as f32 into `out` (`head_dim` long).
    ///
    /// # Safety
    /// The row lies inside the validated cache.
    #[inline(always)]
    unsafe fn widen_row<S: Simd>(&self, s: S, row: usize, out: &mut [f32]) {
        let d = out.len();
        let values = row * d..(row + 1) * d;
        // SAFETY: forwarded; `values` has `out.len()` elements.
        unsafe {
            match self {
                Self::Bf16(cache) => widen_scaled(s, &cache[values], None, out),
                Self::Q8(rows) => {
                    widen_scaled(s, &rows.levels[values], Some(rows.scales[row]), out)
                }
            }
        }
    }
}

/// Rounds rows of `head_dim` values to 8-bit levels and per-row scales: `round(v · 127 /
/// absmax)`, ties away from zero. `values` holds `rows · head_dim` values, `levels` as many and
/// `scales` `rows`.
pub fn quantize_kv_rows(
    values: &[f32],
    head_dim: usize,
    levels: &mut [i8],
    scales: &mut [f32],
) -> Result<(), KernelError> {
    const KERNEL: &str = "quantize_kv_rows";
    expect_nonzero(KERNEL, "head_dim", head_dim)?;
    let rows = values.len() / head_dim;
    expect_len(KERNEL, "values", values.len(), &[rows, head_dim])?;
    expect_len(KERNEL, "levels", levels.len(), &[rows, head_dim])?;
    expect_len(KERNEL, "scales", scales.len(), &[rows])?;
    for ((row, levels), scale) in values
        .chunks_exact(head_dim)
        .zip(levels.chunks_exact_mut(head_dim))
        .zip(scales.iter_mut())
    {
        let absmax = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        *scale = absmax / 127.0;
        let inverse = if *scale != 0.0 { 1.0 / *scale } else { 0.0 };
        for (level, &v) in levels.iter_mut().zip(row) {
            *level = round_half_away(v * inverse) as i8;
        }
    }
    Ok(())
}

/// Inverse of [`quantize_kv_rows`]: `out = level · scale` row by row.
pub fn dequantize_kv_rows(
    levels: &[i8],
    scales: &[f32],
    head_dim: usize,
    out: &mut [f32],
) -> Result<(), KernelError> {
    const KERNEL: &str = "dequantize_kv_rows";
    expect_nonzero(KERNEL, "head_dim", head_dim)?;
    expect_len(KERNEL, "levels", levels.len(), &[scales.len(), head_dim])?;
    expect_len(KERNEL, "out", out.len(), &[scales.len(), head_dim])?;
    for ((levels, &scale), out) in levels
        .chunks_exact(head_dim)
        .zip(scales)
        .zip(out.chunks_exact_mut(head_dim))
    {
        for (o, &level) in out.iter_mut().zip(levels) {
            *o = f32::from(level) * scale;
        }
    }
    Ok(())
}

/// [`crate::attention_causal`] over a compact cache: `n_new` new query tokens (`q` and `out`
/// `[n_new, q_heads, head_dim]`) against cache rows `0..past + n_new`, query `i` seeing rows
/// `0..=past + i`, query head `h` reading KV head `h / (q_heads / kv_heads)`. Scores are
/// `scale · q·k`; softmax and outputs accumulate in f32.
#[allow(clippy::too_many_arguments)]
pub fn attention_causal_compact(
    q: &[f32],
    n_new: usize,
    q_heads: usize,
    k_cache: CompactRows<'_>,
    v_cache: CompactRows<'_>,
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
    attention_causal_compact_at(
        SimdLevel::detected(),
        q,
        k_cache,
        v_cache,
        shape,
        scale,
        out,
    )
}

fn validate(
    shape: &CausalShape,
    q: &[f32],
    k_cache: CompactRows<'_>,
    v_cache: CompactRows<'_>,
    out: &[f32],
) -> Result<(), KernelError> {
    shape.validate_lengths(
        q.len(),
        k_cache.values_len(),
        v_cache.values_len(),
        out.len(),
    )?;
    const KERNEL: &str = "attention_causal_compact";
    let rows = [shape.kv_heads, shape.capacity];
    for (name, cache) in [("k_cache scales", k_cache), ("v_cache scales", v_cache)] {
        if let CompactRows::Q8(q8) = cache {
            expect_len(KERNEL, name, q8.scales.len(), &rows)?;
        }
    }
    Ok(())
}

/// Cache rows widened to f32 at a time: the widened keys and values (256 KiB at head_dim 128)
/// stay in L2 while the f32 kernel runs over them.
const CHUNK_KEYS: usize = 256;
/// Largest head dimension accepted.
const MAX_HEAD_DIM: usize = 256;

/// Each task takes the f32 kernel's row block of one KV head (a prefill chunk's tokens as well
/// as a token's heads), widens the cache rows it sees a chunk at a time (8-bit scales folded in) and
/// runs the f32 kernel ([`crate::attention`]) on each chunk, merging the chunks' softmax states
/// as it goes. Widening costs `1 / rows` of the arithmetic per cache value, and the attention
/// itself is the f32 cache's.
pub(crate) fn attention_causal_compact_at(
    level: SimdLevel,
    q: &[f32],
    k_cache: CompactRows<'_>,
    v_cache: CompactRows<'_>,
    shape: CausalShape,
    scale: f32,
    out: &mut [f32],
) -> Result<(), KernelError> {
    validate(&shape, q, k_cache, v_cache, out)?;
    if shape.head_dim > MAX_HEAD_DIM {
        return Err(KernelError::HeadDimTooLarge {
            head_dim: shape.head_dim,
            max: MAX_HEAD_DIM,
        });
    }
    let rows_per_head = shape.n_new * shape.group();
    let blocks_per_head = rows_per_head.div_ceil(MAX_ROWS);
    let out = SharedMut::new(out);
    (0..shape.kv_heads * blocks_per_head)
        .into_par_iter()
        .for_each(|task| {
            let (kv_head, block) = (task / blocks_per_head, task % blocks_per_head);
            let rows = shape.rows(
                kv_head,
                block * MAX_ROWS..((block + 1) * MAX_ROWS).min(rows_per_head),
            );
            let job = Job {
                q,
                k_cache,
                v_cache,
                shape,
                scale,
                kv_head,
                rows,
            };
            // SAFETY: validated shapes; each task writes the output rows of its own
            // (KV head, row block).
            unsafe { attend_chunks(level, &job, out.get()) };
        });
    Ok(())
}

struct Job<'a> {
    q: &'a [f32],
    k_cache: CompactRows<'a>,
    v_cache: CompactRows<'a>,
    shape: CausalShape,
    scale: f32,
    kv_head: usize,
    rows: RowSet,
}

/// # Safety
/// `out` is the `[n_new, q_heads, head_dim]` output, whose rows of `job.rows` only this call
/// writes; the job's shapes are validated.
unsafe fn attend_chunks(level: SimdLevel, job: &Job<'_>, out: *mut f32) {
    let d = job.shape.head_dim;
    let rows = &job.rows;
    let keys = rows.max_key_end();
    let widened_len = CHUNK_KEYS * d;
    let scratch = 2 * widened_len + MAX_ROWS * d + scratch_len(d);
    with_scratch(scratch, |scratch| {
        dispatch!(level, |s| {
            let (keys_f32, rest) = scratch.split_at_mut(widened_len);
            let (values_f32, rest) = rest.split_at_mut(widened_len);
            let (merged, rest) = rest.split_at_mut(MAX_ROWS * d);
            let (chunk_output, work) = rest.split_at_mut(MAX_ROWS * d);
            // The state of every chunk so far.
            let mut total = SoftmaxState {
                output: merged,
                max: [f32::NEG_INFINITY; MAX_ROWS],
                sum: [0.0; MAX_ROWS],
            };
            let mut chunk = SoftmaxState {
                output: chunk_output,
                max: [0.0; MAX_ROWS],
                sum: [0.0; MAX_ROWS],
            };
            let cache_row0 = job.kv_head * job.shape.capacity;
            let mut start = 0;
            while start < keys {
                let len = CHUNK_KEYS.min(keys - start);
                let cache_rows = cache_row0 + start..cache_row0 + start + len;
                for (row, (k, v)) in cache_rows.zip(
                    keys_f32
                        .chunks_exact_mut(d)
                        .zip(values_f32.chunks_exact_mut(d)),
                ) {
                    // SAFETY: the rows a job sees lie inside the validated cache.
                    unsafe {
                        job.k_cache.widen_row(s, row, k);
                        job.v_cache.widen_row(s, row, v);
                    }
                }
                let chunk_rows = RowSet::new((0..rows.len).map(|r| {
                    (
                        rows.offsets[r],
                        rows.key_ends[r].saturating_sub(start).min(len),
                    )
                }));
                let problem = Problem {
                    q: job.q,
                    k: keys_f32,
                    v: values_f32,
                    kv: KvLayout { base: 0, stride: d },
                    head_dim: d,
                    scale: job.scale,
                };
                // SAFETY: the widened chunk holds keys `0..len`; the rows are the job's.
                unsafe { attend(s, &problem, &chunk_rows, 0..len, work, &mut chunk) };
                total.merge(&chunk, rows.len, d);
                start += len;
            }
            for r in 0..rows.len {
                // SAFETY: row `r`'s output is this call's to write.
                unsafe {
                    scale_row(
                        s,
                        &total.output[r * d..(r + 1) * d],
                        1.0 / total.sum[r],
                        out.add(rows.offsets[r]),
                    )
                };
            }
        })
    });
}

/// `out[c] = values[c] · scale`, or the values alone without a scale.
///
/// # Safety
/// `out` and `values` have the same length.
#[inline(always)]
unsafe fn widen_scaled<S: Simd, E: Element>(
    s: S,
    values: &[E],
    scale: Option<f32>,
    out: &mut [f32],
) {
    let scale = scale.map(|scale| s.splat(scale));
    let mut c = 0;
    // SAFETY: every access stays below `out.len()`.
    unsafe {
        while c < out.len() {
            let lanes = (out.len() - c).min(S::LANES);
            let v = load_upto(s, values.as_ptr().add(c), lanes);
            let v = scale.map_or(v, |scale| s.mul(v, scale));
            store_upto(s, out.as_mut_ptr().add(c), v, lanes);
            c += lanes;
        }
    }
}

/// Reference twin of [`attention_causal_compact`]: the cache rows widened exactly, then a plain
/// softmax accumulated in f64.
#[allow(clippy::too_many_arguments)]
pub fn attention_causal_compact_reference(
    q: &[f32],
    n_new: usize,
    q_heads: usize,
    k_cache: CompactRows<'_>,
    v_cache: CompactRows<'_>,
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
    validate(&shape, q, k_cache, v_cache, out)?;
    let d = head_dim;
    let group = shape.group();
    for token in 0..n_new {
        for head in 0..q_heads {
            let row0 = head / group * capacity;
            let query = &q[(token * q_heads + head) * d..][..d];
            let keys = past + token + 1;
            let scores: Vec<f64> = (0..keys)
                .map(|j| {
                    let dot: f64 = (0..d)
                        .map(|c| f64::from(query[c]) * k_cache.value(row0 + j, d, c))
                        .sum();
                    dot * f64::from(scale)
                })
                .collect();
            let max = scores.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
            let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let total: f64 = weights.iter().sum();
            for c in 0..d {
                let mixed: f64 = (0..keys)
                    .map(|j| weights[j] * v_cache.value(row0 + j, d, c))
                    .sum();
                out[(token * q_heads + head) * d + c] = (mixed / total) as f32;
            }
        }
    }
    Ok(())
}
