//! The 8-bit KV cache: row rounding bounds and the attention kernel against its reference twin.

use super::{rng, uniform};
use crate::attention::CausalShape;
use crate::kv_q8::attention_causal_q8_at;
use crate::{
    KernelError, Q8Rows, SimdLevel, attention_causal_q8, attention_causal_q8_reference,
    dequantize_kv_rows, quantize_kv_rows,
};

/// Half a level of `absmax / 127`, with room for the f32 rounding of the scale and product.
const ROW_ROUNDING_BOUND: f32 = 0.5 / 127.0 * (1.0 + 1e-5);
/// f32 softmax and accumulation against the f64 reference, relative to the largest cached
/// value: scores up to |q|·|k|·d ≈ 30 lose about 2⁻²⁴·30 in `exp`, far below this.
const ATTENTION_TOLERANCE: f32 = 2e-5;

struct Cache {
    levels: Vec<i8>,
    scales: Vec<f32>,
}

impl Cache {
    fn random(seed: u64, rows: usize, head_dim: usize) -> Cache {
        let values = uniform(&mut rng(seed), rows * head_dim, -2.0, 2.0);
        let mut cache = Cache {
            levels: vec![0; rows * head_dim],
            scales: vec![0.0; rows],
        };
        quantize_kv_rows(&values, head_dim, &mut cache.levels, &mut cache.scales).unwrap();
        cache
    }

    fn rows(&self) -> Q8Rows<'_> {
        Q8Rows {
            levels: &self.levels,
            scales: &self.scales,
        }
    }
}

#[test]
fn rows_round_trip_within_half_a_level() {
    let head_dim = 72;
    let mut values = uniform(&mut rng(1), 40 * head_dim, -3.0, 3.0);
    values[..head_dim].fill(0.0);
    let mut levels = vec![0; values.len()];
    let mut scales = vec![0.0; 40];
    quantize_kv_rows(&values, head_dim, &mut levels, &mut scales).unwrap();
    let mut restored = vec![f32::NAN; values.len()];
    dequantize_kv_rows(&levels, &scales, head_dim, &mut restored).unwrap();
    for (r, (row, back)) in values
        .chunks(head_dim)
        .zip(restored.chunks(head_dim))
        .enumerate()
    {
        let absmax = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for (v, b) in row.iter().zip(back) {
            assert!(
                (v - b).abs() <= ROW_ROUNDING_BOUND * absmax,
                "row {r}: {v} -> {b}"
            );
        }
    }
    assert!(restored[..head_dim].iter().all(|&v| v == 0.0));
}

#[test]
fn attention_matches_reference_for_every_level_and_shape() {
    // (n_new, q_heads, kv_heads, head_dim, past, capacity)
    let shapes = [
        (1, 4, 1, 16, 0, 1),
        (1, 32, 8, 128, 200, 256),
        (3, 6, 2, 13, 5, 9),
        (2, 12, 1, 72, 70, 80),
        (5, 24, 2, 40, 0, 5),
        // Several row tiles per KV head, and key blocks that end inside the new tokens.
        (40, 8, 2, 64, 100, 140),
    ];
    for level in SimdLevel::supported() {
        for (seed, &(n_new, q_heads, kv_heads, head_dim, past, capacity)) in
            shapes.iter().enumerate()
        {
            let seed = seed as u64;
            let k = Cache::random(seed, kv_heads * capacity, head_dim);
            let v = Cache::random(seed + 50, kv_heads * capacity, head_dim);
            let q = uniform(&mut rng(seed + 90), n_new * q_heads * head_dim, -1.0, 1.0);
            let shape = CausalShape {
                n_new,
                q_heads,
                kv_heads,
                capacity,
                past,
                head_dim,
            };
            let scale = 1.0 / (head_dim as f32).sqrt();
            let mut got = vec![f32::NAN; q.len()];
            let mut expected = vec![f32::NAN; q.len()];
            attention_causal_q8_at(level, &q, k.rows(), v.rows(), shape, scale, &mut got).unwrap();
            attention_causal_q8_reference(
                &q,
                n_new,
                q_heads,
                k.rows(),
                v.rows(),
                kv_heads,
                capacity,
                past,
                head_dim,
                scale,
                &mut expected,
            )
            .unwrap();
            let largest_value = v.scales.iter().fold(0.0f32, |m, &s| m.max(s)) * 127.0;
            for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
                assert!(
                    (g - e).abs() <= ATTENTION_TOLERANCE * largest_value,
                    "{level} shape {:?}: element {i}: got {g}, expected {e}",
                    shapes[seed as usize]
                );
            }
        }
    }
}

#[test]
fn attention_equals_f32_attention_on_the_dequantized_cache() {
    let (n_new, q_heads, kv_heads, head_dim, past, capacity) = (2, 8, 2, 64, 30, 40);
    let k = Cache::random(7, kv_heads * capacity, head_dim);
    let v = Cache::random(8, kv_heads * capacity, head_dim);
    let q = uniform(&mut rng(9), n_new * q_heads * head_dim, -1.0, 1.0);
    let widen = |cache: &Cache| {
        let mut out = vec![0.0; cache.levels.len()];
        dequantize_kv_rows(&cache.levels, &cache.scales, head_dim, &mut out).unwrap();
        out
    };
    let (k_f32, v_f32) = (widen(&k), widen(&v));
    let scale = 0.125;
    let mut quantized = vec![0.0; q.len()];
    let mut float = vec![0.0; q.len()];
    attention_causal_q8(
        &q,
        n_new,
        q_heads,
        k.rows(),
        v.rows(),
        kv_heads,
        capacity,
        past,
        head_dim,
        scale,
        &mut quantized,
    )
    .unwrap();
    crate::attention_causal(
        &q, n_new, q_heads, &k_f32, &v_f32, kv_heads, capacity, past, head_dim, scale, &mut float,
    )
    .unwrap();
    let largest_value = v_f32.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    for (a, b) in quantized.iter().zip(&float) {
        assert!(
            (a - b).abs() <= ATTENTION_TOLERANCE * largest_value,
            "{a} vs {b}"
        );
    }
}

#[test]
fn inconsistent_arguments_are_errors() {
    let k = Cache::random(1, 4, 8);
    let q = vec![0.0; 2 * 8];
    let mut out = vec![0.0; 2 * 8];
    let short_scales = Q8Rows {
        levels: &k.levels,
        scales: &k.scales[..3],
    };
    let err = attention_causal_q8(&q, 1, 2, short_scales, k.rows(), 1, 4, 0, 8, 1.0, &mut out);
    assert!(matches!(err, Err(KernelError::LengthMismatch { .. })));
    let err = attention_causal_q8(&q, 1, 2, k.rows(), k.rows(), 1, 4, 4, 8, 1.0, &mut out);
    assert!(matches!(err, Err(KernelError::CacheOverflow { .. })));
    let wide = Cache::random(2, 1, 300);
    let (q, mut out) = (vec![0.0; 300], vec![0.0; 300]);
    let err = attention_causal_q8(
        &q,
        1,
        1,
        wide.rows(),
        wide.rows(),
        1,
        1,
        0,
        300,
        1.0,
        &mut out,
    );
    assert!(matches!(err, Err(KernelError::HeadDimTooLarge { .. })));
    let mut levels = vec![0; 10];
    let mut scales = vec![0.0; 1];
    assert!(quantize_kv_rows(&[0.0; 10], 8, &mut levels, &mut scales).is_err());
}
