//! An 8-bit KV cache: each cached row of `head_dim` values is stored as i8 levels with one f32
//! scale (`absmax / 127`), a quarter of the f32 cache's memory and reads, and causal attention
//! that reads it directly.
//!
//! Layout: levels `[kv_heads, capacity, head_dim]`, scales `[kv_heads, capacity]`, the f32
//! cache's layout with one scale per row. Rounding each row to 8 bits changes the scores and
//! outputs by about 0.4 % of a row's largest value, so results are close to, not equal to,
//! attention over the f32 cache.

use rayon::prelude::*;

use crate::attention::CausalShape;
use crate::error::{KernelError, expect_len, expect_nonzero};
use crate::math::exp;
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
            *level = (v * inverse).round() as i8;
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

/// Query heads attended together: they share their KV head, so each cache row is read once
/// for all of them.
const HEAD_TILE: usize = 8;
/// Keys scored per online-softmax step.
const KEY_BLOCK: usize = 64;
/// Largest head dimension the per-task accumulators hold.
const MAX_HEAD_DIM: usize = 256;

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
    let group = shape.group();
    let head_tiles = group.div_ceil(HEAD_TILE);
    let out = SharedMut::new(out);
    (0..shape.n_new * shape.kv_heads * head_tiles)
        .into_par_iter()
        .for_each(|task| {
            let token = task / (shape.kv_heads * head_tiles);
            let kv_head = task / head_tiles % shape.kv_heads;
            let first = kv_head * group + task % head_tiles * HEAD_TILE;
            let heads = first..(first + HEAD_TILE).min((kv_head + 1) * group);
            let job = Job {
                q,
                k_cache,
                v_cache,
                shape,
                scale,
                token,
                kv_head,
                heads,
            };
            // SAFETY: validated shapes; each task writes the output rows of its own
            // (token, heads).
            with_scratch(KEY_BLOCK * shape.head_dim, |widened| {
                dispatch!(level, |s| unsafe {
                    attend_tile(s, &job, widened, out.get())
                })
            });
        });
    Ok(())
}

struct Job<'a> {
    q: &'a [f32],
    k_cache: Q8Rows<'a>,
    v_cache: Q8Rows<'a>,
    shape: CausalShape,
    scale: f32,
    token: usize,
    kv_head: usize,
    heads: std::ops::Range<usize>,
}

/// Online softmax of the job's query heads over their visible cache rows. Each block of cache
/// rows is widened to f32 once (scales folded in) and then used by every head of the tile.
///
/// # Safety
/// `out` is the `[n_new, q_heads, head_dim]` output; the job's shapes are validated;
/// `widened` holds `KEY_BLOCK · head_dim` floats.
#[inline(always)]
unsafe fn attend_tile<S: Simd>(s: S, job: &Job<'_>, widened: &mut [f32], out: *mut f32) {
    let d = job.shape.head_dim;
    let tile = job.heads.len();
    let keys = job.shape.past + job.token + 1;
    let row0 = job.kv_head * job.shape.capacity;
    let query = |h: usize| {
        let start = (job.token * job.shape.q_heads + job.heads.start + h) * d;
        &job.q[start..start + d]
    };
    let mut outputs = [[0.0f32; MAX_HEAD_DIM]; HEAD_TILE];
    let mut max = [f32::NEG_INFINITY; HEAD_TILE];
    let mut sum = [0.0f32; HEAD_TILE];
    let mut scores = [[0.0f32; KEY_BLOCK]; HEAD_TILE];
    {
        let mut block = 0;
        while block < keys {
            let count = KEY_BLOCK.min(keys - block);
            let rows = row0 + block..row0 + block + count;
            // Widening the whole block first streams it from memory without stalls between
            // rows; the dot products then run from L1.
            for (row, widened) in rows.clone().zip(widened.chunks_exact_mut(d)) {
                let key = &job.k_cache.levels[row * d..(row + 1) * d];
                // SAFETY: both hold `d` elements.
                unsafe { widen_scaled(s, key, job.k_cache.scales[row] * job.scale, widened) };
            }
            for (h, scores) in scores[..tile].iter_mut().enumerate() {
                for (score, key) in scores.iter_mut().zip(widened[..count * d].chunks_exact(d)) {
                    // SAFETY: both rows hold `d` elements.
                    *score = unsafe { dot(s, query(h), key) };
                }
            }
            for h in 0..tile {
                let block_scores = &mut scores[h][..count];
                let block_max = block_scores
                    .iter()
                    .fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                let new_max = max[h].max(block_max);
                let correction = (max[h] - new_max).exp();
                let block_sum = exp_shifted(s, block_scores, new_max);
                sum[h] = sum[h] * correction + block_sum;
                max[h] = new_max;
                if correction != 1.0 {
                    outputs[h][..d].iter_mut().for_each(|o| *o *= correction);
                }
            }
            for (row, widened) in rows.clone().zip(widened.chunks_exact_mut(d)) {
                let value = &job.v_cache.levels[row * d..(row + 1) * d];
                // SAFETY: both hold `d` elements.
                unsafe { widen_scaled(s, value, job.v_cache.scales[row], widened) };
            }
            for (output, scores) in outputs[..tile].iter_mut().zip(&scores) {
                for (&weight, value) in scores[..count].iter().zip(widened.chunks_exact(d)) {
                    // SAFETY: both rows hold `d` elements.
                    unsafe { add_scaled(s, &mut output[..d], value, weight) };
                }
            }
            block += count;
        }
    }
    for h in 0..tile {
        let start = (job.token * job.shape.q_heads + job.heads.start + h) * d;
        let inverse = 1.0 / sum[h];
        for (c, &o) in outputs[h][..d].iter().enumerate() {
            // SAFETY: this task owns output row (token, head); `c < d`.
            unsafe { *out.add(start + c) = o * inverse };
        }
    }
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

/// `Σ a[c] · b[c]` in f32.
///
/// # Safety
/// `a` and `b` have the same length.
#[inline(always)]
unsafe fn dot<S: Simd>(s: S, a: &[f32], b: &[f32]) -> f32 {
    let mut acc = s.zero();
    let mut c = 0;
    // SAFETY: every load stays below `a.len()`.
    unsafe {
        while c < a.len() {
            let lanes = (a.len() - c).min(S::LANES);
            let x = load_upto(s, a.as_ptr().add(c), lanes);
            acc = s.mul_add(x, load_upto(s, b.as_ptr().add(c), lanes), acc);
            c += lanes;
        }
    }
    s.reduce_sum(acc)
}

/// `scores[j] = exp(scores[j] − max)`; returns their sum.
#[inline(always)]
fn exp_shifted<S: Simd>(s: S, scores: &mut [f32], max: f32) -> f32 {
    // A head with no finite score yet keeps max −inf; shifting by 0 avoids inf − inf.
    let shift = s.splat(if max == f32::NEG_INFINITY { 0.0 } else { max });
    let mut total = s.zero();
    let mut j = 0;
    // SAFETY: every access stays below `scores.len()`; padding lanes load 0 and are not stored
    // nor summed (masked by `lanes`).
    unsafe {
        while j < scores.len() {
            let lanes = (scores.len() - j).min(S::LANES);
            let p = scores.as_mut_ptr().add(j);
            let weights = exp(s, s.sub(load_upto(s, p.cast_const(), lanes), shift));
            store_upto(s, p, weights, lanes);
            if lanes == S::LANES {
                total = s.add(total, weights);
            } else {
                total = s.add(total, load_upto(s, p.cast_const(), lanes));
            }
            j += lanes;
        }
    }
    s.reduce_sum(total)
}

/// `out[c] += factor · row[c]`.
///
/// # Safety
/// `out` and `row` have the same length.
#[inline(always)]
unsafe fn add_scaled<S: Simd>(s: S, out: &mut [f32], row: &[f32], factor: f32) {
    let factor = s.splat(factor);
    let mut c = 0;
    // SAFETY: every access stays below `out.len()`.
    unsafe {
        while c < out.len() {
            let lanes = (out.len() - c).min(S::LANES);
            let p = out.as_mut_ptr().add(c);
            let v = load_upto(s, row.as_ptr().add(c), lanes);
            let sum = s.mul_add(factor, v, load_upto(s, p.cast_const(), lanes));
            store_upto(s, p, sum, lanes);
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
