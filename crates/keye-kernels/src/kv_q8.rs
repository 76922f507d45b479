//! An 8-bit KV cache: each cached row of `head_dim` values is stored as i8 levels with one f32
//! scale (`absmax / 127`), a quarter of the f32 cache's memory and reads, and causal attention
//! that reads it directly.
//!
//! Layout: levels `[kv_heads, capacity, head_dim]`, scales `[kv_heads, capacity]`, the f32
//! cache's layout with one scale per row. Rounding each row to 8 bits changes the scores and
//! outputs by about 0.4 % of a row's largest value, so results are close to, not equal to,
//! attention over the f32 cache.

use rayon::prelude::*;

use crate::attention::{
    CausalShape, KvLayout, MAX_ROWS, Problem, RowSet, SoftmaxState, attend, scale_row, scratch_len,
};
use crate::error::{KernelError, expect_len, expect_nonzero};
use crate::math::round_half_away;
use crate::parallel::{SharedMut, with_scratch};
use crate::simd::{Simd, SimdLevel, dispatch, load_upto, store_upto};

/// One 8-bit cache tensor (keys or values).
#[derive(Clone, Copy, Debug)]
pub struct Q8Rows<'a> {
    /// `[kv_heads, capacity, head_dim]` levels.
    pub levels: &'a [i8],
    /// `[kv_heads, capacity]` scales: a row's values are `level · scale`.
    pub scales: &'a [f32],
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

/// [`crate::attention_causal`] over an 8-bit cache: `n_new` new query tokens (`q` and `out`
/// `[n_new, q_heads, head_dim]`) against cache rows `0..past + n_new`, query `i` seeing rows
/// `0..=past + i`, query head `h` reading KV head `h / (q_heads / kv_heads)`. Scores are
/// `scale · q·k`; softmax and outputs accumulate in f32.
#[allow(clippy::too_many_arguments)]
pub fn attention_causal_q8(
    q: &[f32],
    n_new: usize,
    q_heads: usize,
    k_cache: Q8Rows<'_>,
    v_cache: Q8Rows<'_>,
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
    attention_causal_q8_at(
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
    k_cache: Q8Rows<'_>,
    v_cache: Q8Rows<'_>,
    out: &[f32],
) -> Result<(), KernelError> {
    shape.validate_lengths(
        q.len(),
        k_cache.levels.len(),
        v_cache.levels.len(),
        out.len(),
    )?;
    const KERNEL: &str = "attention_causal_q8";
    let rows = [shape.kv_heads, shape.capacity];
    expect_len(KERNEL, "k_cache scales", k_cache.scales.len(), &rows)?;
    expect_len(KERNEL, "v_cache scales", v_cache.scales.len(), &rows)
}

/// Cache rows widened to f32 at a time: the widened keys and values (256 KiB at head_dim 128)
/// stay in L2 while the f32 kernel runs over them.
const CHUNK_KEYS: usize = 256;
/// Largest head dimension accepted.
const MAX_HEAD_DIM: usize = 256;

/// Each task takes the f32 kernel's row block of one KV head (a prefill chunk's tokens as well
/// as a token's heads), widens the cache rows it sees a chunk at a time (scales folded in) and
/// runs the f32 kernel ([`crate::attention`]) on each chunk, merging the chunks' softmax states
/// as it goes. Widening costs `1 / rows` of the arithmetic per cache value, and the attention
/// itself is the f32 cache's.
pub(crate) fn attention_causal_q8_at(
    level: SimdLevel,
    q: &[f32],
    k_cache: Q8Rows<'_>,
    v_cache: Q8Rows<'_>,
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
    k_cache: Q8Rows<'a>,
    v_cache: Q8Rows<'a>,
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
                    let levels = row * d..(row + 1) * d;
                    // SAFETY: each pair holds `d` elements.
                    unsafe {
                        widen_scaled(
                            s,
                            &job.k_cache.levels[levels.clone()],
                            job.k_cache.scales[row],
                            k,
                        );
                        widen_scaled(s, &job.v_cache.levels[levels], job.v_cache.scales[row], v);
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

/// `out[c] = level[c] · scale`.
///
/// # Safety
/// `out` and `levels` have the same length.
#[inline(always)]
unsafe fn widen_scaled<S: Simd>(s: S, levels: &[i8], scale: f32, out: &mut [f32]) {
    let scale = s.splat(scale);
    let mut c = 0;
    // SAFETY: every access stays below `out.len()`.
    unsafe {
        while c < out.len() {
            let lanes = (out.len() - c).min(S::LANES);
            let v = s.mul(load_upto(s, levels.as_ptr().add(c), lanes), scale);
            store_upto(s, out.as_mut_ptr().add(c), v, lanes);
            c += lanes;
        }
    }
}

/// Reference twin of [`attention_causal_q8`]: the cache rows dequantized exactly
/// (`level · scale`), then a plain softmax accumulated in f64.
#[allow(clippy::too_many_arguments)]
pub fn attention_causal_q8_reference(
    q: &[f32],
    n_new: usize,
    q_heads: usize,
    k_cache: Q8Rows<'_>,
    v_cache: Q8Rows<'_>,
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
    let value = |cache: Q8Rows<'_>, row: usize, c: usize| {
        f64::from(cache.levels[row * d + c]) * f64::from(cache.scales[row])
    };
    for token in 0..n_new {
        for head in 0..q_heads {
            let row0 = head / group * capacity;
            let query = &q[(token * q_heads + head) * d..][..d];
            let keys = past + token + 1;
            let scores: Vec<f64> = (0..keys)
                .map(|j| {
                    let dot: f64 = (0..d)
                        .map(|c| f64::from(query[c]) * value(k_cache, row0 + j, c))
                        .sum();
                    dot * f64::from(scale)
                })
                .collect();
            let max = scores.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
            let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let total: f64 = weights.iter().sum();
            for c in 0..d {
                let mixed: f64 = (0..keys)
                    .map(|j| weights[j] * value(v_cache, row0 + j, c))
                    .sum();
                out[(token * q_heads + head) * d + c] = (mixed / total) as f32;
            }
        }
    }
    Ok(())
}
