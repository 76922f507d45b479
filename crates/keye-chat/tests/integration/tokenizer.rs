//! The real Keye-VL-8B-Preview tokenizer against the ids transformers and tiktoken give.

use keye_chat::{ChatError, Tokenizer};

use crate::{fixtures, read_json, real_model_dir, real_tokenizer};

#[test]
fn reproduces_every_probe() {
    let probes = read_json(&real_model_dir().join("tokenizer-probes.json"));
    let probes = probes["probes"].as_array().unwrap();
    assert!(probes.len() >= 20);
    let tokenizer = real_tokenizer();
    for probe in probes {
        let text = probe["text"].as_str().unwrap();
        let expected: Vec<u32> = probe["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|id| id.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(tokenizer.encode(text).unwrap(), expected, "{text:?}");
        // The probe texts are NFC already, so decoding gives them back.
        assert_eq!(
            tokenizer.decode(&expected, false).unwrap(),
            text,
            "{text:?}"
        );
    }
}

#[test]
fn special_token_ids() {
    let tokenizer = real_tokenizer();
    let expected = [
        ("<|endoftext|>", 151643),
        ("<|im_start|>", 151644),
        ("<|im_end|>", 151645),
        ("<|vision_start|>", 151652),
        ("<|vision_end|>", 151653),
        ("<|image_pad|>", 151655),
        ("<|video_pad|>", 151656),
        ("<think>", 151667),
        ("</think>", 151668),
    ];
    for (token, id) in expected {
        assert_eq!(tokenizer.token_id(token).unwrap(), id, "{token}");
        assert_eq!(tokenizer.token(id).as_deref(), Some(token));
    }
    assert_eq!(tokenizer.vocab_size(), 151675);
    assert!(matches!(
        tokenizer.token_id("<|frame|>"),
        Err(ChatError::UnknownToken { token }) if token == "<|frame|>"
    ));

    let tiny = Tokenizer::from_model_dir(fixtures().join("models/keye-1.5-tiny")).unwrap();
    for (token, id) in [
        ("<|frame|>", 2000),
        ("<|fast_start|>", 2001),
        ("<|fast_end|>", 2002),
        ("<|fast_video_pad|>", 2003),
    ] {
        assert_eq!(tiny.token_id(token).unwrap(), id, "{token}");
    }
}

#[test]
fn skip_special_tokens_follows_the_special_flag() {
    let tokenizer = real_tokenizer();
    let ids = tokenizer
        .encode("<|im_start|>assistant\n<think>\nhm\n</think>\n\nOK<|im_end|>")
        .unwrap();
    // `<think>` is an added token but not a special one in Qwen's tokenizer_config.
    assert_eq!(
        tokenizer.decode(&ids, true).unwrap(),
        "assistant\n<think>\nhm\n</think>\n\nOK"
    );
}

#[test]
fn load_errors_name_the_file() {
    let missing = fixtures().join("no-such-model");
    assert!(matches!(
        Tokenizer::from_model_dir(&missing),
        Err(ChatError::Io { path, .. }) if path == missing.join("tokenizer.json")
    ));
    let not_a_tokenizer = fixtures().join("keye-vl-8b-preview/config.json");
    assert!(matches!(
        Tokenizer::from_file(&not_a_tokenizer),
        Err(ChatError::TokenizerLoad { path, .. }) if path == not_a_tokenizer
    ));
}

#[test]
fn out_of_vocabulary_ids_do_not_panic() {
    let tokenizer = real_tokenizer();
    // The embedding has padding rows beyond the tokenizer (151936 vs 151675).
    let decoded = tokenizer.decode(&[9707, 151900, u32::MAX], false).unwrap();
    assert_eq!(decoded, "Hello");
    assert_eq!(tokenizer.token(151900), None);
}
