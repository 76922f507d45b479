//! Row normalisations with f32 statistics: RMSNorm (Qwen3) and LayerNorm (SigLIP, projector).

use rayon::prelude::*;

use crate::error::{KernelError, expect_len, expect_nonzero};
use crate::simd::{Simd, SimdLevel, dispatch, load_upto, store_upto};

/// Elements below which a call stays on the calling thread.
const PARALLEL_MIN_ELEMENTS: usize = 1 << 15;

/// RMSNorm of every row: `out = weight ⊙ (x · 1/sqrt(mean(x²) + eps))`, rows of
/// `weight.len()` elements.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) -> Result<(), KernelError> {
    rms_norm_at(SimdLevel::detected(), x, weight, eps, out)
}

pub(crate) fn rms_norm_at(
    level: SimdLevel,
    x: &[f32],
    weight: &[f32],
    eps: f32,
    out: &mut [f32],
) -> Result<(), KernelError> {
    validate("rms_norm", x, weight, None, out)?;
    for_each_row(x, weight.len(), out, |x, out| {
        dispatch!(level, |s| rms_norm_row(s, x, weight, eps, out))
    });
    Ok(())
}

/// LayerNorm of every row with the biased variance:
/// `out = (x - mean) · 1/sqrt(var + eps) ⊙ weight + bias`, rows of `weight.len()` elements.
pub fn layer_norm(
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    eps: f32,
    out: &mut [f32],
) -> Result<(), KernelError> {
    layer_norm_at(SimdLevel::detected(), x, weight, bias, eps, out)
}

pub(crate) fn layer_norm_at(
    level: SimdLevel,
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    eps: f32,
    out: &mut [f32],
) -> Result<(), KernelError> {
    validate("layer_norm", x, weight, Some(bias), out)?;
    for_each_row(x, weight.len(), out, |x, out| {
        dispatch!(level, |s| layer_norm_row(s, x, weight, bias, eps, out))
    });
    Ok(())
}

fn validate(
    kernel: &'static str,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    out: &[f32],
) -> Result<(), KernelError> {
    let dim = weight.len();
    expect_nonzero(kernel, "weight", dim)?;
    expect_len(kernel, "x", x.len(), &[x.len().div_ceil(dim), dim])?;
    expect_len(kernel, "out", out.len(), &[x.len()])?;
    if let Some(bias) = bias {
        expect_len(kernel, "bias", bias.len(), &[dim])?;
    }
    Ok(())
}

fn for_each_row(x: &[f32], dim: usize, out: &mut [f32], row: impl Fn(&[f32], &mut [f32]) + Sync) {
    if x.len() < PARALLEL_MIN_ELEMENTS {
        x.chunks_exact(dim)
            .zip(out.chunks_exact_mut(dim))
            .for_each(|(x, out)| row(x, out));
    } else {
        x.par_chunks_exact(dim)
            .zip(out.par_chunks_exact_mut(dim))
            .for_each(|(x, out)| row(x, out));
    }
}

/// Lane indices, for masking the tail of a row.
const LANE_INDEX: [f32; 16] = [
    0., 1., 2., 3., 4., 5., 6., 7., 8., 9., 10., 11., 12., 13., 14., 15.,
];

/// `Σ f(x_i)` over a row, vectorised.
#[inline(always)]
fn sum_map<S: Simd>(s: S, x: &[f32], f: impl Fn(S::V) -> S::V) -> f32 {
    let mut acc = s.zero();
    let mut i = 0;
    while i + S::LANES <= x.len() {
        // SAFETY: a whole vector from `i` is inside `x`.
        acc = s.add(acc, f(unsafe { s.load(x.as_ptr().add(i)) }));
        i += S::LANES;
    }
    if i < x.len() {
        let len = x.len() - i;
        // SAFETY: `len` elements from `i` are inside `x`; LANES <= LANE_INDEX.len().
        let (tail, lane) = unsafe {
            (
                s.load_partial(x.as_ptr().add(i), len),
                s.load(LANE_INDEX.as_ptr()),
            )
        };
        acc = s.add(
            acc,
            s.select_lt(lane, s.splat(len as f32), f(tail), s.zero()),
        );
    }
    s.reduce_sum(acc)
}

#[inline(always)]
fn rms_norm_row<S: Simd>(s: S, x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let mean_square = sum_map(s, x, |v| s.mul(v, v)) / x.len() as f32;
    let inverse = s.splat(1.0 / (mean_square + eps).sqrt());
    let mut i = 0;
    while i < x.len() {
        let len = (x.len() - i).min(S::LANES);
        // SAFETY: `len` elements from `i` are inside `x`, `weight` and `out` (equal lengths).
        unsafe {
            let v = s.mul(load_upto(s, x.as_ptr().add(i), len), inverse);
            let w = load_upto(s, weight.as_ptr().add(i), len);
            store_upto(s, out.as_mut_ptr().add(i), s.mul(w, v), len);
        }
        i += len;
    }
}

#[inline(always)]
fn layer_norm_row<S: Simd>(
    s: S,
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    eps: f32,
    out: &mut [f32],
) {
    let dim = x.len() as f32;
    let mean = sum_map(s, x, |v| v) / dim;
    let mean_v = s.splat(mean);
    // Two passes: the centred second moment does not cancel like E[x²] - E[x]² does.
    let centred_squares = sum_map(s, x, |v| {
        let c = s.sub(v, mean_v);
        s.mul(c, c)
    });
    let inverse = s.splat(1.0 / (centred_squares / dim + eps).sqrt());
    let mut i = 0;
    while i < x.len() {
        let len = (x.len() - i).min(S::LANES);
        // SAFETY: `len` elements from `i` are inside every row slice (equal lengths).
        unsafe {
            let v = s.mul(s.sub(load_upto(s, x.as_ptr().add(i), len), mean_v), inverse);
            let w = load_upto(s, weight.as_ptr().add(i), len);
            let b = load_upto(s, bias.as_ptr().add(i), len);
            store_upto(s, out.as_mut_ptr().add(i), s.mul_add(v, w, b), len);
        }
        i += len;
    }
}

/// Reference twin of [`rms_norm`], with statistics in f64.
pub fn rms_norm_reference(
    x: &[f32],
    weight: &[f32],
    eps: f32,
    out: &mut [f32],
) -> Result<(), KernelError> {
    validate("rms_norm", x, weight, None, out)?;
    let dim = weight.len();
    for (x, out) in x.chunks_exact(dim).zip(out.chunks_exact_mut(dim)) {
        let mean_square = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / dim as f64;
        let inverse = 1.0 / (mean_square + f64::from(eps)).sqrt();
        for ((o, &v), &w) in out.iter_mut().zip(x).zip(weight) {
            *o = (f64::from(w) * f64::from(v) * inverse) as f32;
        }
    }
    Ok(())
}

/// Reference twin of [`layer_norm`], with statistics in f64.
pub fn layer_norm_reference(
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    eps: f32,
    out: &mut [f32],
) -> Result<(), KernelError> {
    validate("layer_norm", x, weight, Some(bias), out)?;
    let dim = weight.len();
    for (x, out) in x.chunks_exact(dim).zip(out.chunks_exact_mut(dim)) {
        let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / dim as f64;
        let variance = x
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / dim as f64;
        let inverse = 1.0 / (variance + f64::from(eps)).sqrt();
        for (((o, &v), &w), &b) in out.iter_mut().zip(x).zip(weight).zip(bias) {
            *o = ((f64::from(v) - mean) * inverse * f64::from(w) + f64::from(b)) as f32;
        }
    }
    Ok(())
}
