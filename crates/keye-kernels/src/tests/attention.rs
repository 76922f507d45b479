use super::{assert_close, rng, uniform};
use crate::attention::{CausalShape, attention_causal_at, attention_segments_at};
use crate::{KernelError, SimdLevel, attention_causal_reference, attention_segments_reference};

/// Allowed absolute error on outputs that are convex combinations of values in [-1, 1].
const ABSOLUTE_TOLERANCE: f32 = 1e-5;

/// Score regime of a test input.
#[derive(Clone, Copy, Debug)]
enum Scores {
    /// Uniform q, k in [-1, 1] with scale 1/√d: O(1) scores.
    Moderate,
    /// Integer q in [-8, 8], k in multiples of 1/8 and scale 1/8: scores up to ±72, computed
    /// exactly in f32, so only the softmax's own arithmetic can lose accuracy.
    Peaked,
}

fn check_segments(
    level: SimdLevel,
    heads: usize,
    head_dim: usize,
    cu_seqlens: &[usize],
    scores: Scores,
) {
    let tokens = *cu_seqlens.last().unwrap();
    let len = tokens * heads * head_dim;
    let mut rng = rng((tokens * 131 + heads * 7 + head_dim) as u64);
    let (q, k, scale) = match scores {
        Scores::Moderate => {
            let q = uniform(&mut rng, len, -1.0, 1.0);
            (
                q,
                uniform(&mut rng, len, -1.0, 1.0),
                1.0 / (head_dim as f32).sqrt(),
            )
        }
        Scores::Peaked => {
            let q = uniform(&mut rng, len, -8.5, 8.5)
                .into_iter()
                .map(f32::round)
                .collect();
            let k = uniform(&mut rng, len, -8.5, 8.5)
                .into_iter()
                .map(|x| x.round() / 8.0)
                .collect();
            (q, k, 0.125)
        }
    };
    let v = uniform(&mut rng, len, -1.0, 1.0);
    let mut got = vec![f32::NAN; len];
    let mut expected = vec![0.0; len];
    attention_segments_at(
        level, &q, &k, &v, heads, head_dim, cu_seqlens, scale, &mut got,
    )
    .unwrap();
    attention_segments_reference(
        &q,
        &k,
        &v,
        heads,
        head_dim,
        cu_seqlens,
        scale,
        &mut expected,
    )
    .unwrap();
    let context =
        format!("segments {level} heads={heads} d={head_dim} cu={cu_seqlens:?} {scores:?}");
    assert_close(&got, &expected, |_| 1.0, ABSOLUTE_TOLERANCE, &context);
}

#[test]
fn segments_match_reference() {
    let layouts: [&[usize]; 6] = [
        &[0, 1],
        &[0, 1, 2, 3],
        &[0, 5, 5, 70, 200],
        &[0, 64, 128],
        &[0, 17, 300],
        &[0, 129, 130, 131],
    ];
    for level in SimdLevel::supported() {
        for cu_seqlens in layouts {
            for (heads, head_dim) in [(1, 72), (3, 5), (2, 16), (2, 128), (1, 33)] {
                check_segments(level, heads, head_dim, cu_seqlens, Scores::Moderate);
            }
        }
    }
}

#[test]
fn segments_with_peaked_scores_stay_stable() {
    // Scores up to ±72: without max subtraction exp overflows, and the running max changes
    // between key blocks, exercising the rescaling.
    for level in SimdLevel::supported() {
        check_segments(level, 2, 72, &[0, 90, 200], Scores::Peaked);
        check_segments(level, 3, 16, &[0, 3, 150], Scores::Peaked);
    }
}

#[test]
fn segments_reject_bad_bounds() {
    let q = vec![0.0; 4 * 2 * 8];
    let mut out = q.clone();
    let bad: [&[usize]; 4] = [&[1, 4], &[0, 3, 2, 4], &[0, 5], &[0, 3]];
    for cu_seqlens in bad {
        let err =
            crate::attention_segments(&q, &q, &q, 2, 8, cu_seqlens, 1.0, &mut out).unwrap_err();
        assert!(
            matches!(
                err,
                KernelError::InvalidSegmentBounds { .. } | KernelError::LengthMismatch { .. }
            ),
            "{cu_seqlens:?}: {err:?}"
        );
    }
    let err = crate::attention_segments(&q, &q, &q, 2, 8, &[], 1.0, &mut out).unwrap_err();
    assert_eq!(err, KernelError::EmptySegmentBounds);
}

struct CausalCase {
    shape: CausalShape,
    q: Vec<f32>,
    k_cache: Vec<f32>,
    v_cache: Vec<f32>,
}

impl CausalCase {
    fn new(
        n_new: usize,
        q_heads: usize,
        kv_heads: usize,
        past: usize,
        head_dim: usize,
    ) -> CausalCase {
        let capacity = past + n_new + 3;
        let shape = CausalShape {
            n_new,
            q_heads,
            kv_heads,
            capacity,
            past,
            head_dim,
        };
        let mut rng = rng((n_new * 1009 + q_heads * 101 + kv_heads * 11 + past + head_dim) as u64);
        let q = uniform(&mut rng, n_new * q_heads * head_dim, -1.0, 1.0);
        let mut k_cache = uniform(&mut rng, kv_heads * capacity * head_dim, -1.0, 1.0);
        let mut v_cache = uniform(&mut rng, kv_heads * capacity * head_dim, -1.0, 1.0);
        // Rows past the valid ones must never be read: poison them.
        for head in 0..kv_heads {
            let unused =
                (head * capacity + past + n_new) * head_dim..(head + 1) * capacity * head_dim;
            k_cache[unused.clone()].fill(f32::NAN);
            v_cache[unused].fill(f32::NAN);
        }
        CausalCase {
            shape,
            q,
            k_cache,
            v_cache,
        }
    }

    fn check(&self, level: SimdLevel) {
        let CausalShape {
            n_new,
            q_heads,
            kv_heads,
            capacity,
            past,
            head_dim,
        } = self.shape;
        let scale = 1.0 / (head_dim as f32).sqrt();
        let mut got = vec![f32::NAN; self.q.len()];
        let mut expected = vec![0.0; self.q.len()];
        attention_causal_at(
            level,
            &self.q,
            &self.k_cache,
            &self.v_cache,
            self.shape,
            scale,
            &mut got,
        )
        .unwrap();
        attention_causal_reference(
            &self.q,
            n_new,
            q_heads,
            &self.k_cache,
            &self.v_cache,
            kv_heads,
            capacity,
            past,
            head_dim,
            scale,
            &mut expected,
        )
        .unwrap();
        let context = format!("causal {level} {:?}", self.shape);
        assert_close(&got, &expected, |_| 1.0, ABSOLUTE_TOLERANCE, &context);
    }
}

#[test]
fn causal_matches_reference_for_gqa_ratios() {
    // (q_heads, kv_heads): ratios 1, 2, 4, 8 and multi-query.
    let heads = [(4, 4), (4, 2), (8, 2), (8, 1), (16, 2), (6, 1)];
    for level in SimdLevel::supported() {
        for (q_heads, kv_heads) in heads {
            for (n_new, past) in [(1, 0), (1, 37), (3, 0), (17, 5), (70, 0), (40, 130)] {
                for head_dim in [128, 72, 7] {
                    CausalCase::new(n_new, q_heads, kv_heads, past, head_dim).check(level);
                }
            }
        }
    }
}

#[test]
fn causal_prefill_spanning_many_blocks() {
    for level in SimdLevel::supported() {
        CausalCase::new(300, 4, 1, 0, 64).check(level);
        CausalCase::new(150, 2, 2, 100, 16).check(level);
    }
}

#[test]
fn long_decode_splits_keys_and_merges_exactly() {
    // A single KV head cannot occupy the threads, so the key range is split and merged.
    for level in SimdLevel::supported() {
        CausalCase::new(1, 8, 1, 3000, 64).check(level);
        CausalCase::new(2, 2, 1, 2500, 33).check(level);
        CausalCase::new(1, 1, 1, 5000, 128).check(level);
    }
}

#[test]
fn causal_rejects_bad_shapes() {
    let q = vec![0.0; 2 * 4 * 8];
    let cache = vec![0.0; 2 * 10 * 8];
    let mut out = q.clone();
    let err =
        crate::attention_causal(&q, 2, 4, &cache, &cache, 3, 10, 0, 8, 1.0, &mut out).unwrap_err();
    assert_eq!(
        err,
        KernelError::HeadsNotGrouped {
            q_heads: 4,
            kv_heads: 3
        }
    );
    let err =
        crate::attention_causal(&q, 2, 4, &cache, &cache, 2, 10, 9, 8, 1.0, &mut out).unwrap_err();
    assert_eq!(
        err,
        KernelError::CacheOverflow {
            past: 9,
            new: 2,
            capacity: 10
        }
    );
    let err = crate::attention_causal(&q, 2, 4, &cache[1..], &cache, 2, 10, 0, 8, 1.0, &mut out)
        .unwrap_err();
    assert!(matches!(
        err,
        KernelError::LengthMismatch {
            operand: "k_cache",
            ..
        }
    ));
    let err =
        crate::attention_causal(&q, 2, 4, &cache, &cache, 0, 10, 0, 8, 1.0, &mut out).unwrap_err();
    assert!(matches!(
        err,
        KernelError::ZeroDimension {
            parameter: "kv_heads",
            ..
        }
    ));
}

/// `attention_segments_bf16_products` against the reference on bf16-rounded q, k, v. The kernel
/// also rounds the softmax weights: each by at most 2⁻⁹ of itself, which moves an output (a
/// convex combination of values in [-1, 1]) by at most about 2⁻⁸.
fn check_segments_bf16(level: SimdLevel, heads: usize, head_dim: usize, cu_seqlens: &[usize]) {
    let tokens = *cu_seqlens.last().unwrap();
    let len = tokens * heads * head_dim;
    let mut rng = rng((tokens * 17 + heads * 3 + head_dim) as u64);
    let q = uniform(&mut rng, len, -2.0, 2.0);
    let k = uniform(&mut rng, len, -2.0, 2.0);
    let v = uniform(&mut rng, len, -1.0, 1.0);
    let scale = 1.0 / (head_dim as f32).sqrt();
    let mut got = vec![f32::NAN; len];
    crate::attention_bf16::attention_segments_bf16_products_at(
        level, &q, &k, &v, heads, head_dim, cu_seqlens, scale, &mut got,
    )
    .unwrap();
    let round = |x: &[f32]| -> Vec<f32> {
        x.iter()
            .map(|&x| crate::bf16_products::round_to_bf16(x))
            .collect()
    };
    let mut expected = vec![0.0; len];
    attention_segments_reference(
        &round(&q),
        &round(&k),
        &round(&v),
        heads,
        head_dim,
        cu_seqlens,
        scale,
        &mut expected,
    )
    .unwrap();
    let context = format!("bf16 segments {level} heads={heads} d={head_dim} cu={cu_seqlens:?}");
    assert_close(&got, &expected, |_| 1.0, 1.0 / 256.0 + 1e-5, &context);
}

#[test]
fn bf16_segments_match_reference_on_rounded_inputs() {
    // Odd segment starts and lengths (a half-empty last weight pair), several row vectors and
    // key blocks; head dimensions even (the bf16 kernel) and odd (rounded inputs, f32 kernel).
    let layouts: [&[usize]; 5] = [
        &[0, 1],
        &[0, 5, 5, 70, 200],
        &[0, 17, 300],
        &[0, 129, 130, 131],
        &[0, 33, 97],
    ];
    for level in SimdLevel::supported() {
        for cu in layouts {
            for (heads, head_dim) in [(2, 72), (1, 2), (3, 16), (2, 7), (1, 128)] {
                check_segments_bf16(level, heads, head_dim, cu);
            }
        }
    }
}

#[test]
fn bf16_segments_differ_from_f32_where_inputs_are_not_bf16() {
    // Keys that round to equal bf16 values give equal weights: one value row, not a mixture.
    let (heads, head_dim) = (1, 2);
    let q = vec![8.0, 0.0, 8.0, 0.0];
    let k = vec![1.0, 0.0, 1.0 + 1.0 / 512.0, 0.0];
    let v = vec![0.0, 0.0, 1.0, 1.0];
    for level in SimdLevel::supported() {
        let mut out = vec![0.0; 4];
        crate::attention_bf16::attention_segments_bf16_products_at(
            level,
            &q,
            &k,
            &v,
            heads,
            head_dim,
            &[0, 2],
            1.0,
            &mut out,
        )
        .unwrap();
        assert_eq!(out, vec![0.5; 4], "{level}");
    }
}
