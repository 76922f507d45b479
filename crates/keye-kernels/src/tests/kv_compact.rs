//! The compact KV caches: 8-bit row rounding bounds, and the attention kernel over bf16 and
//! 8-bit caches against its reference twin and against f32 attention.

use half::bf16;

use super::{rng, uniform};
use crate::attention::CausalShape;
use crate::kv_compact::attention_causal_compact_at;
use crate::{
    CompactRows, KernelError, Q8Rows, SimdLevel, attention_causal_compact,
    attention_causal_compact_reference, dequantize_kv_rows, quantize_kv_rows,
};

/// Half a level of `absmax / 127`, with room for the f32 rounding of the scale and product.
const ROW_ROUNDING_BOUND: f32 = 0.5 / 127.0 * (1.0 + 1e-5);
/// f32 softmax and accumulation against the f64 reference, relative to the largest cached
/// value: scores up to |q|·|k|·d ≈ 30 lose about 2⁻²⁴·30 in `exp`, far below this.
const ATTENTION_TOLERANCE: f32 = 2e-5;

/// A random cache tensor in one compact format.
enum Cache {
    Bf16(Vec<bf16>),
    Q8 { levels: Vec<i8>, scales: Vec<f32> },
}

impl Cache {
    fn random(q8: bool, seed: u64, rows: usize, head_dim: usize) -> Cache {
        let values = uniform(&mut rng(seed), rows * head_dim, -2.0, 2.0);
        if !q8 {
            return Cache::Bf16(values.iter().map(|&v| bf16::from_f32(v)).collect());
        }
        let mut levels = vec![0; rows * head_dim];
        let mut scales = vec![0.0; rows];
        quantize_kv_rows(&values, head_dim, &mut levels, &mut scales).unwrap();
        Cache::Q8 { levels, scales }
    }

    fn rows(&self) -> CompactRows<'_> {
        match self {
            Cache::Bf16(values) => CompactRows::Bf16(values),
            Cache::Q8 { levels, scales } => CompactRows::Q8(Q8Rows { levels, scales }),
        }
    }

    /// The stored values widened exactly to f32.
    fn widened(&self, head_dim: usize) -> Vec<f32> {
        match self {
            Cache::Bf16(values) => values.iter().map(|v| v.to_f32()).collect(),
            Cache::Q8 { levels, scales } => {
                let mut out = vec![0.0; levels.len()];
                dequantize_kv_rows(levels, scales, head_dim, &mut out).unwrap();
                out
            }
        }
    }
}

fn largest_magnitude(values: &[f32]) -> f32 {
    values.iter().fold(0.0f32, |m, v| m.max(v.abs()))
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
fn attention_matches_reference_for_every_format_level_and_shape() {
    // (n_new, q_heads, kv_heads, head_dim, past, capacity)
    let shapes = [
        (1, 4, 1, 16, 0, 1),
        (1, 32, 8, 128, 200, 256),
        (3, 6, 2, 13, 5, 9),
        (2, 12, 1, 72, 70, 80),
        (5, 24, 2, 40, 0, 5),
        // Several row tiles per KV head, and key blocks that end inside the new tokens.
        (40, 8, 2, 64, 100, 140),
        // More keys than one widened chunk.
        (1, 4, 2, 32, 600, 601),
    ];
    for q8 in [false, true] {
        for level in SimdLevel::supported() {
            for (seed, &(n_new, q_heads, kv_heads, head_dim, past, capacity)) in
                shapes.iter().enumerate()
            {
                let seed = seed as u64;
                let k = Cache::random(q8, seed, kv_heads * capacity, head_dim);
                let v = Cache::random(q8, seed + 50, kv_heads * capacity, head_dim);
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
                attention_causal_compact_at(level, &q, k.rows(), v.rows(), shape, scale, &mut got)
                    .unwrap();
                attention_causal_compact_reference(
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
                let largest_value = largest_magnitude(&v.widened(head_dim));
                for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
                    assert!(
                        (g - e).abs() <= ATTENTION_TOLERANCE * largest_value,
                        "q8 {q8} {level} shape {:?}: element {i}: got {g}, expected {e}",
                        shapes[seed as usize]
                    );
                }
            }
        }
    }
}

#[test]
fn attention_equals_f32_attention_on_the_widened_cache() {
    let (n_new, q_heads, kv_heads, head_dim, past, capacity) = (2, 8, 2, 64, 30, 40);
    for q8 in [false, true] {
        let k = Cache::random(q8, 7, kv_heads * capacity, head_dim);
        let v = Cache::random(q8, 8, kv_heads * capacity, head_dim);
        let q = uniform(&mut rng(9), n_new * q_heads * head_dim, -1.0, 1.0);
        let (k_f32, v_f32) = (k.widened(head_dim), v.widened(head_dim));
        let scale = 0.125;
        let mut compact = vec![0.0; q.len()];
        let mut float = vec![0.0; q.len()];
        attention_causal_compact(
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
            &mut compact,
        )
        .unwrap();
        crate::attention_causal(
            &q, n_new, q_heads, &k_f32, &v_f32, kv_heads, capacity, past, head_dim, scale,
            &mut float,
        )
        .unwrap();
        let largest_value = largest_magnitude(&v_f32);
        for (a, b) in compact.iter().zip(&float) {
            assert!(
                (a - b).abs() <= ATTENTION_TOLERANCE * largest_value,
                "q8 {q8}: {a} vs {b}"
            );
        }
    }
}

#[test]
fn inconsistent_arguments_are_errors() {
    let k = Cache::random(true, 1, 4, 8);
    let q = vec![0.0; 2 * 8];
    let mut out = vec![0.0; 2 * 8];
    let Cache::Q8 { levels, scales } = &k else {
        unreachable!()
    };
    let short_scales = CompactRows::Q8(Q8Rows {
        levels,
        scales: &scales[..3],
    });
    let err = attention_causal_compact(&q, 1, 2, short_scales, k.rows(), 1, 4, 0, 8, 1.0, &mut out);
    assert!(matches!(err, Err(KernelError::LengthMismatch { .. })));
    let err = attention_causal_compact(&q, 1, 2, k.rows(), k.rows(), 1, 4, 4, 8, 1.0, &mut out);
    assert!(matches!(err, Err(KernelError::CacheOverflow { .. })));
    let short = Cache::random(false, 1, 3, 8);
    let err = attention_causal_compact(&q, 1, 2, short.rows(), k.rows(), 1, 4, 0, 8, 1.0, &mut out);
    assert!(matches!(err, Err(KernelError::LengthMismatch { .. })));
    for q8 in [false, true] {
        let wide = Cache::random(q8, 2, 1, 300);
        let (q, mut out) = (vec![0.0; 300], vec![0.0; 300]);
        let err = attention_causal_compact(
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
    }
    let mut levels = vec![0; 10];
    let mut scales = vec![0.0; 1];
    assert!(quantize_kv_rows(&[0.0; 10], 8, &mut levels, &mut scales).is_err());
}
