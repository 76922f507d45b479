//! Temporary straightforward kernels; replaced by the SIMD kernels of the `kernels` branch.

use half::bf16;

pub enum Weights<'a> {
    F32(&'a [f32]),
    Bf16(&'a [bf16]),
}

pub fn linear(
    x: &[f32],
    m: usize,
    k: usize,
    w: Weights<'_>,
    n: usize,
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    for i in 0..m {
        let xr = &x[i * k..(i + 1) * k];
        for j in 0..n {
            let mut acc = 0f32;
            match &w {
                Weights::F32(w) => {
                    for (a, b) in xr.iter().zip(&w[j * k..(j + 1) * k]) {
                        acc += a * b;
                    }
                }
                Weights::Bf16(w) => {
                    for (a, b) in xr.iter().zip(&w[j * k..(j + 1) * k]) {
                        acc += a * b.to_f32();
                    }
                }
            }
            out[i * n + j] = acc + bias.map_or(0.0, |b| b[j]);
        }
    }
}

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
) {
    let stride = heads * head_dim;
    for seg in cu_seqlens.windows(2) {
        let (s, e) = (seg[0], seg[1]);
        for h in 0..heads {
            for i in s..e {
                let qi = &q[i * stride + h * head_dim..][..head_dim];
                let scores: Vec<f32> = (s..e)
                    .map(|j| {
                        let kj = &k[j * stride + h * head_dim..][..head_dim];
                        qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f32>() * scale
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                let exps: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
                let sum: f32 = exps.iter().sum();
                let o = &mut out[i * stride + h * head_dim..][..head_dim];
                o.fill(0.0);
                for (jj, j) in (s..e).enumerate() {
                    let vj = &v[j * stride + h * head_dim..][..head_dim];
                    for d in 0..head_dim {
                        o[d] += exps[jj] / sum * vj[d];
                    }
                }
            }
        }
    }
}

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
) {
    let group = q_heads / kv_heads;
    for i in 0..n_new {
        for h in 0..q_heads {
            let kvh = h / group;
            let qi = &q[(i * q_heads + h) * head_dim..][..head_dim];
            let n_keys = past + i + 1;
            let scores: Vec<f32> = (0..n_keys)
                .map(|j| {
                    let kj = &k_cache[(kvh * capacity + j) * head_dim..][..head_dim];
                    qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f32>() * scale
                })
                .collect();
            let max = scores.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let exps: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
            let sum: f32 = exps.iter().sum();
            let o = &mut out[(i * q_heads + h) * head_dim..][..head_dim];
            o.fill(0.0);
            for (j, e) in exps.iter().enumerate() {
                let vj = &v_cache[(kvh * capacity + j) * head_dim..][..head_dim];
                for d in 0..head_dim {
                    o[d] += e / sum * vj[d];
                }
            }
        }
    }
}
