//! The verification pass of speculative decoding on every fixture case: each row of one
//! `forward_every_row` call must equal, bit for bit, the logits of feeding the same tokens one
//! at a time, and truncating the cache must roll a sequence back exactly.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use keye_model::{
    KeyeModel, KvCache, KvCacheFormat, MAX_EXACT_VERIFY_ROWS, MatmulPrecision, SequenceChunk,
    WeightFormats,
};
use safetensors::SafeTensors;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// A fixture case's prompt as the reference fed it to the LLM, and its greedy continuation.
struct Prompt {
    embeds: Tensor,
    positions: Vec<[i64; 3]>,
    rope_delta: i64,
    continuation: Vec<u32>,
}

fn load_prompt(model: &str, case: &str) -> Prompt {
    let bytes = std::fs::read(
        fixtures()
            .join("cases")
            .join(model)
            .join(case)
            .join("outputs.safetensors"),
    )
    .unwrap();
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    let i64s = |name: &str| -> Vec<i64> {
        tensors
            .tensor(name)
            .unwrap()
            .data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    let embeds_view = tensors.tensor("inputs_embeds").unwrap();
    let embeds: Vec<f32> = embeds_view
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let shape = embeds_view.shape();
    let rows = i64s("position_ids");
    let len = shape[0];
    Prompt {
        embeds: Tensor::from_vec(embeds, (shape[0], shape[1]), &Device::Cpu).unwrap(),
        positions: (0..len)
            .map(|i| [rows[i], rows[len + i], rows[2 * len + i]])
            .collect(),
        rope_delta: i64s("rope_deltas")[0],
        continuation: i64s("generated_ids").iter().map(|&i| i as u32).collect(),
    }
}

fn prefilled(model: &KeyeModel, prompt: &Prompt) -> KvCache {
    let mut cache = model
        .new_cache(
            prompt.positions.len() + prompt.continuation.len(),
            KvCacheFormat::F32,
        )
        .unwrap();
    model
        .forward(
            &prompt.embeds,
            &mut [SequenceChunk {
                positions: &prompt.positions,
                cache: &mut cache,
            }],
        )
        .unwrap();
    cache
}

fn rows(logits: Tensor) -> Vec<Vec<f32>> {
    logits.to_vec2::<f32>().unwrap()
}

/// Decoded positions are sequential from the cache length on every axis.
fn decode_positions(cache: &KvCache, rope_delta: i64, tokens: usize) -> Vec<[i64; 3]> {
    (0..tokens)
        .map(|i| [(cache.len() + i) as i64 + rope_delta; 3])
        .collect()
}

fn one_token(model: &KeyeModel, cache: &mut KvCache, rope_delta: i64, token: u32) -> Vec<f32> {
    let positions = decode_positions(cache, rope_delta, 1);
    let embed = model.embed_prompt(&[token], None, None).unwrap();
    let logits = model
        .forward(
            &embed,
            &mut [SequenceChunk {
                positions: &positions,
                cache,
            }],
        )
        .unwrap();
    rows(logits).remove(0)
}

fn assert_same_bits(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let differing = got
        .iter()
        .zip(want)
        .filter(|(a, b)| a.to_bits() != b.to_bits())
        .count();
    assert_eq!(
        differing, 0,
        "{what}: {differing} logits differ in their bits"
    );
}

fn check_case(model: &KeyeModel, model_name: &str, case: &str) {
    let name = format!("{model_name}/{case}");
    let prompt = load_prompt(model_name, case);
    let tokens = &prompt.continuation[..prompt.continuation.len().min(MAX_EXACT_VERIFY_ROWS)];
    assert!(tokens.len() >= 8, "{name}: continuation too short");

    let mut sequential_cache = prefilled(model, &prompt);
    let sequential: Vec<Vec<f32>> = tokens
        .iter()
        .map(|&t| one_token(model, &mut sequential_cache, prompt.rope_delta, t))
        .collect();

    let mut cache = prefilled(model, &prompt);
    let prompt_len = cache.len();
    let positions = decode_positions(&cache, prompt.rope_delta, tokens.len());
    let verified = rows(
        model
            .forward_every_row(
                &model.embed_prompt(tokens, None, None).unwrap(),
                &mut [SequenceChunk {
                    positions: &positions,
                    cache: &mut cache,
                }],
            )
            .unwrap(),
    );
    assert_eq!(verified.len(), tokens.len(), "{name}: one row per token");
    for (i, (got, want)) in verified.iter().zip(&sequential).enumerate() {
        assert_same_bits(&format!("{name} row {i}"), got, want);
    }

    // Rejecting everything after the fourth token: the cache forgets the rest and decoding
    // goes on as if the rejected tokens had never been fed.
    cache.truncate(prompt_len + 4);
    for (i, &token) in tokens.iter().enumerate().skip(4).take(2) {
        let got = one_token(model, &mut cache, prompt.rope_delta, token);
        assert_same_bits(
            &format!("{name} after rollback, row {i}"),
            &got,
            &sequential[i],
        );
    }

    // Two sequences in one verification pass do not disturb each other's rows.
    let (mut first, mut second) = (prefilled(model, &prompt), prefilled(model, &prompt));
    let (a, b) = (&tokens[..3], &tokens[..6]);
    let positions_a = decode_positions(&first, prompt.rope_delta, a.len());
    let positions_b = decode_positions(&second, prompt.rope_delta, b.len());
    let both: Vec<u32> = a.iter().chain(b).copied().collect();
    let batched = rows(
        model
            .forward_every_row(
                &model.embed_prompt(&both, None, None).unwrap(),
                &mut [
                    SequenceChunk {
                        positions: &positions_a,
                        cache: &mut first,
                    },
                    SequenceChunk {
                        positions: &positions_b,
                        cache: &mut second,
                    },
                ],
            )
            .unwrap(),
    );
    let expected = sequential[..3].iter().chain(&sequential[..6]);
    for (i, (got, want)) in batched.iter().zip(expected).enumerate() {
        assert_same_bits(&format!("{name} batched row {i}"), got, want);
    }
}

fn check_model(model_name: &str, matmul_precision: MatmulPrecision) {
    let formats = WeightFormats {
        matmul_precision,
        ..WeightFormats::default()
    };
    let model =
        KeyeModel::load_with_formats(&fixtures().join("models").join(model_name), formats).unwrap();
    let mut cases: Vec<String> = std::fs::read_dir(fixtures().join("cases").join(model_name))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    cases.sort();
    assert!(cases.len() >= 6, "{model_name}: fixture cases missing");
    for case in &cases {
        check_case(&model, model_name, case);
    }
}

#[test]
fn preview_tiny_verification_rows_equal_single_steps() {
    check_model("keye-preview-tiny", MatmulPrecision::F32);
}

#[test]
fn verification_rows_equal_single_steps_with_bf16_products() {
    // The tiny Preview model stores bf16 weights, so its products round their activations.
    check_model("keye-preview-tiny", MatmulPrecision::Bf16);
}

#[test]
fn keye_1_5_tiny_verification_rows_equal_single_steps() {
    check_model("keye-1.5-tiny", MatmulPrecision::F32);
}
