//! Streaming detokenisation with the real tokenizer, on text whose tokens split characters.

use keye_chat::StreamDecoder;

use crate::real_tokenizer;

/// Streams `ids`; returns the deltas and how many pushes were held back.
fn stream(ids: &[u32], skip_special_tokens: bool) -> (Vec<String>, usize) {
    let mut decoder = StreamDecoder::new(real_tokenizer(), skip_special_tokens);
    let mut deltas = Vec::new();
    let mut held = 0;
    for &id in ids {
        match decoder.push(id).unwrap() {
            Some(delta) => deltas.push(delta),
            None => held += 1,
        }
    }
    deltas.extend(decoder.finish().unwrap());
    (deltas, held)
}

#[test]
fn deltas_never_split_characters_and_add_up_to_the_full_decode() {
    let tokenizer = real_tokenizer();
    let texts = [
        "emoji: 😀😃😄😁😆 👍🏽 🇨🇳 👨‍👩‍👧‍👦 ❤️",
        "한국어 문장도 토큰화합니다.",
        "हिन्दी पाठ",
        "Σ(x_i)² ≤ ∞ ∫ f(x)dx ≈ √2 ± 0.001",
        "快手可灵Keye-VL是一个多模态大模型，支持图像和视频理解。",
    ];
    for text in texts {
        let ids = tokenizer.encode(text).unwrap();
        let single_tokens_split_characters = ids
            .iter()
            .any(|&id| tokenizer.decode(&[id], false).unwrap().contains('\u{FFFD}'));
        let (deltas, _) = stream(&ids, false);
        assert_eq!(deltas.concat(), text, "{text:?}");
        assert_eq!(deltas.concat(), tokenizer.decode(&ids, false).unwrap());
        for delta in &deltas {
            assert!(!delta.contains('\u{FFFD}'), "{text:?}: delta {delta:?}");
        }
        if single_tokens_split_characters {
            assert!(deltas.len() < ids.len(), "{text:?}: nothing was held back");
        }
    }
}

#[test]
fn emoji_bytes_are_held_until_the_character_is_complete() {
    let tokenizer = real_tokenizer();
    // "👍🏽": the probe ids show it takes partial-byte tokens.
    let ids = tokenizer.encode(" 👍🏽!").unwrap();
    let (deltas, held) = stream(&ids, false);
    assert!(held > 0);
    assert_eq!(deltas.concat(), " 👍🏽!");
}

#[test]
fn unfinished_character_at_the_end_matches_the_full_decode() {
    let tokenizer = real_tokenizer();
    let ids = tokenizer.encode("ok 👨‍👩‍👧‍👦").unwrap();
    for cut in 1..=ids.len() {
        let prefix = &ids[..cut];
        let (deltas, _) = stream(prefix, false);
        assert_eq!(
            deltas.concat(),
            tokenizer.decode(prefix, false).unwrap(),
            "first {cut} ids"
        );
    }
}

#[test]
fn skipping_special_tokens() {
    let tokenizer = real_tokenizer();
    let text = "<|im_start|>assistant\n<think>\n想一想 🤔\n</think>\n\n答案<|im_end|><|endoftext|>";
    let ids = tokenizer.encode(text).unwrap();
    for skip in [false, true] {
        let (deltas, _) = stream(&ids, skip);
        assert_eq!(
            deltas.concat(),
            tokenizer.decode(&ids, skip).unwrap(),
            "skip {skip}"
        );
    }
    let (deltas, _) = stream(&ids, true);
    assert_eq!(
        deltas.concat(),
        "assistant\n<think>\n想一想 🤔\n</think>\n\n答案"
    );
}
