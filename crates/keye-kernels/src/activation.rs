//! Element-wise activations, applied in place to the output of the preceding linear layer.

use rayon::prelude::*;

use crate::error::{KernelError, expect_len};
use crate::math::{erfc, sigmoid};
use crate::simd::{Simd, SimdLevel, dispatch, load_upto, store_upto};

/// Elements per parallel chunk (and below which a call stays on the calling thread).
const CHUNK: usize = 1 << 14;

/// `√(2/π)`, the tanh-GELU input scale.
const SQRT_2_OVER_PI: f32 = 0.797_884_6;
/// The tanh-GELU cubic coefficient.
const GELU_CUBIC: f32 = 0.044_715;

/// Qwen3 MLP gate: `gate ← silu(gate) ⊙ up`, with `silu(g) = g · sigmoid(g)`.
pub fn silu_mul(gate: &mut [f32], up: &[f32]) -> Result<(), KernelError> {
    silu_mul_at(SimdLevel::detected(), gate, up)
}

pub(crate) fn silu_mul_at(
    level: SimdLevel,
    gate: &mut [f32],
    up: &[f32],
) -> Result<(), KernelError> {
    expect_len("silu_mul", "up", up.len(), &[gate.len()])?;
    let apply = |gate: &mut [f32], up: &[f32]| {
        dispatch!(level, |s| map2_in_place(
            s,
            gate,
            up,
            #[inline(always)]
            |g, u| { s.mul(s.mul(g, sigmoid(s, g)), u) }
        ))
    };
    if gate.len() <= CHUNK {
        apply(gate, up);
    } else {
        gate.par_chunks_mut(CHUNK)
            .zip(up.par_chunks(CHUNK))
            .for_each(|(g, u)| apply(g, u));
    }
    Ok(())
}

/// SigLIP MLP activation (`gelu_pytorch_tanh`), in place:
/// `u ← 0.5·u·(1 + tanh(√(2/π)·(u + 0.044715·u³)))`.
pub fn gelu_tanh(x: &mut [f32]) {
    gelu_tanh_at(SimdLevel::detected(), x)
}

pub(crate) fn gelu_tanh_at(level: SimdLevel, x: &mut [f32]) {
    // 0.5·(1 + tanh(y)) = sigmoid(2y): no cancellation where tanh(y) ≈ -1.
    map_chunks(x, |x| {
        dispatch!(level, |s| map_in_place(
            s,
            x,
            #[inline(always)]
            |u| {
                let cubic = s.mul(s.mul(u, u), s.mul(u, s.splat(GELU_CUBIC)));
                let y = s.mul(s.add(u, cubic), s.splat(2.0 * SQRT_2_OVER_PI));
                s.mul(u, sigmoid(s, y))
            }
        ))
    });
}

/// Exact GELU of the projector (`nn.GELU()`), in place: `u ← 0.5·u·(1 + erf(u/√2))`.
pub fn gelu_erf(x: &mut [f32]) {
    gelu_erf_at(SimdLevel::detected(), x)
}

pub(crate) fn gelu_erf_at(level: SimdLevel, x: &mut [f32]) {
    // 1 + erf(z) = erfc(-z), which stays accurate where erf(z) ≈ -1.
    map_chunks(x, |x| {
        dispatch!(level, |s| map_in_place(
            s,
            x,
            #[inline(always)]
            |u| {
                let z = s.mul(u, s.splat(-std::f32::consts::FRAC_1_SQRT_2));
                s.mul(s.mul(u, s.splat(0.5)), erfc(s, z))
            }
        ))
    });
}

fn map_chunks(x: &mut [f32], apply: impl Fn(&mut [f32]) + Sync + Send) {
    if x.len() <= CHUNK {
        apply(x);
    } else {
        x.par_chunks_mut(CHUNK).for_each(apply);
    }
}

#[inline(always)]
pub(crate) fn map_in_place<S: Simd>(s: S, x: &mut [f32], f: impl Fn(S::V) -> S::V) {
    let mut i = 0;
    while i < x.len() {
        let len = (x.len() - i).min(S::LANES);
        // SAFETY: `len` elements from `i` are inside `x`.
        unsafe {
            let p = x.as_mut_ptr().add(i);
            store_upto(s, p, f(load_upto(s, p, len)), len);
        }
        i += len;
    }
}

#[inline(always)]
fn map2_in_place<S: Simd>(s: S, x: &mut [f32], y: &[f32], f: impl Fn(S::V, S::V) -> S::V) {
    let mut i = 0;
    while i < x.len() {
        let len = (x.len() - i).min(S::LANES);
        // SAFETY: `len` elements from `i` are inside `x` and `y` (equal lengths).
        unsafe {
            let p = x.as_mut_ptr().add(i);
            store_upto(
                s,
                p,
                f(load_upto(s, p, len), load_upto(s, y.as_ptr().add(i), len)),
                len,
            );
        }
        i += len;
    }
}

/// Reference twin of [`silu_mul`], in f64.
pub fn silu_mul_reference(gate: &mut [f32], up: &[f32]) -> Result<(), KernelError> {
    expect_len("silu_mul", "up", up.len(), &[gate.len()])?;
    for (g, &u) in gate.iter_mut().zip(up) {
        let x = f64::from(*g);
        *g = (x / (1.0 + (-x).exp()) * f64::from(u)) as f32;
    }
    Ok(())
}

/// Reference twin of [`gelu_tanh`]: the tanh formula literally, in f64.
pub fn gelu_tanh_reference(x: &mut [f32]) {
    let scale = (2.0 / std::f64::consts::PI).sqrt();
    for v in x {
        let u = f64::from(*v);
        *v = (0.5 * u * (1.0 + (scale * (u + 0.044715 * u * u * u)).tanh())) as f32;
    }
}

/// Reference twin of [`gelu_erf`], in f64 with an independent erfc (series and continued
/// fraction).
pub fn gelu_erf_reference(x: &mut [f32]) {
    for v in x {
        let u = f64::from(*v);
        *v = (0.5 * u * erfc_f64(-u / std::f64::consts::SQRT_2)) as f32;
    }
}

/// erfc to about 1e-14 relative: the Maclaurin series of erf below 2.5 (where `1 - erf` loses
/// at most three digits), the Laplace continued fraction above, reflection for negatives.
fn erfc_f64(z: f64) -> f64 {
    if z < 0.0 {
        return 2.0 - erfc_f64(-z);
    }
    if z < 2.5 {
        // erf(z) = 2/√π Σ (-1)^n z^(2n+1) / (n! (2n+1))
        let mut power_over_factorial = z;
        let mut series = 0.0;
        for n in 0..100 {
            let term = power_over_factorial / (2 * n + 1) as f64;
            series += term;
            if term.abs() < 1e-17 * series.abs() {
                break;
            }
            power_over_factorial *= -z * z / (n + 1) as f64;
        }
        return 1.0 - 2.0 / std::f64::consts::PI.sqrt() * series;
    }
    // erfc(z) = e^(-z²)/√π · 1/(z + (1/2)/(z + 1/(z + (3/2)/(z + …))))
    let mut fraction = z;
    for n in (1..=60).rev() {
        fraction = z + (n as f64 / 2.0) / fraction;
    }
    (-z * z).exp() / std::f64::consts::PI.sqrt() / fraction
}
