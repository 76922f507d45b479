//! Prompt-lookup speculative decoding must not change a single token: on every fixture case,
//! runs with and without it give the same ids, text, streamed events and finish reason, for
//! greedy and seeded sampling, through EOS, stop strings, `max_new_tokens` and batched steps.
//! Tiny random models fall into loops, so drafts do get accepted; the tests assert that they
//! were, so they cannot pass without speculation doing anything.

use std::path::{Path, PathBuf};

use keye::{
    Completion, FinishReason, Flow, GenerationOptions, Keye, LoadOptions, PromptLookup, QuantType,
    Request, TokenEvent, WeightFormat,
};
use keye_chat::MessagesFile;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn cases(model: &str) -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(fixtures().join("cases").join(model))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert!(cases.len() >= 6, "{model}: fixture cases missing");
    cases
}

fn request(case_dir: &Path, generation: GenerationOptions) -> Request {
    let mut request = Request::new(
        MessagesFile::load(case_dir.join("messages.json"))
            .unwrap()
            .into_resolved(),
    );
    request.generation = generation;
    request
}

fn greedy(max_new_tokens: usize) -> GenerationOptions {
    GenerationOptions {
        max_new_tokens: Some(max_new_tokens),
        temperature: Some(0.0),
        ignore_eos: true,
        ..GenerationOptions::default()
    }
}

fn with_lookup(options: &GenerationOptions, lookup: PromptLookup) -> GenerationOptions {
    GenerationOptions {
        prompt_lookup: Some(lookup),
        ..options.clone()
    }
}

/// The completion and every streamed event.
fn run(keye: &Keye, request: &Request) -> (Completion, Vec<TokenEvent>) {
    let mut events = Vec::new();
    let completion = keye
        .generate(request, &mut |e: &TokenEvent| {
            events.push(e.clone());
            Flow::Continue
        })
        .unwrap();
    (completion, events)
}

fn assert_same_output(
    what: &str,
    plain: &(Completion, Vec<TokenEvent>),
    spec: &(Completion, Vec<TokenEvent>),
) {
    assert_eq!(spec.0.token_ids, plain.0.token_ids, "{what}: ids");
    assert_eq!(spec.0.text, plain.0.text, "{what}: text");
    assert_eq!(
        spec.0.finish_reason, plain.0.finish_reason,
        "{what}: finish reason"
    );
    assert_eq!(spec.0.usage, plain.0.usage, "{what}: usage");
    assert_eq!(spec.1, plain.1, "{what}: streamed events");
}

/// Every case, long greedy runs through EOS: identical output; returns the accepted drafts.
fn check_long_greedy_runs(model: &str, lookup: PromptLookup) -> usize {
    let keye = Keye::from_dir(&fixtures().join("models").join(model)).unwrap();
    check_long_greedy_runs_of(&keye, model, lookup)
}

fn check_long_greedy_runs_of(keye: &Keye, model: &str, lookup: PromptLookup) -> usize {
    let mut accepted = 0;
    for case_dir in cases(model) {
        let what = format!("{model}/{} {lookup:?}", case_dir.display());
        let options = greedy(160);
        let plain = run(keye, &request(&case_dir, options.clone()));
        assert_eq!(
            plain.0.drafts,
            Default::default(),
            "{what}: drafts without lookup"
        );
        let spec = run(keye, &request(&case_dir, with_lookup(&options, lookup)));
        assert_same_output(&what, &plain, &spec);
        let drafts = spec.0.drafts;
        assert!(drafts.accepted <= drafts.drafted, "{what}: {drafts:?}");
        // Each pass checks at least one drafted token and emits at most one token per row.
        assert!(drafts.verify_passes <= drafts.drafted, "{what}: {drafts:?}");
        assert!(
            drafts.drafted <= drafts.verify_passes * lookup.draft_tokens,
            "{what}: {drafts:?}"
        );
        accepted += drafts.accepted;
    }
    accepted
}

#[test]
fn preview_tiny_greedy_output_is_unchanged() {
    let accepted = check_long_greedy_runs("keye-preview-tiny", PromptLookup::default());
    assert!(accepted > 0, "no draft was ever accepted");
}

#[test]
fn keye_1_5_tiny_greedy_output_is_unchanged() {
    let accepted = check_long_greedy_runs("keye-1.5-tiny", PromptLookup::default());
    assert!(accepted > 0, "no draft was ever accepted");
}

/// Verification multiplies several rows at once; quantized products must give each row what a
/// one-row decode step gives it, or greedy picks can flip. (The tiny model's margins are wide:
/// the bit-for-bit property itself is pinned by the kernels' own test.)
#[test]
fn quantized_weights_give_the_same_output() {
    let dir = fixtures().join("models").join("keye-1.5-tiny");
    let mut accepted = 0;
    for quant in QuantType::ALL {
        let options = LoadOptions {
            quant: WeightFormat::Quantized(quant),
            ..LoadOptions::default()
        };
        let keye = Keye::load(dir.to_str().unwrap(), &options).unwrap();
        accepted += check_long_greedy_runs_of(&keye, "keye-1.5-tiny", PromptLookup::default());
    }
    assert!(accepted > 0, "no draft was ever accepted");
}

#[test]
fn every_draft_length_and_ngram_setting_gives_the_same_output() {
    let mut accepted = 0;
    for lookup in [
        PromptLookup {
            draft_tokens: 1,
            max_ngram: 1,
            min_ngram: 1,
        },
        PromptLookup {
            draft_tokens: keye::MAX_DRAFT_TOKENS,
            max_ngram: 4,
            min_ngram: 2,
        },
    ] {
        accepted += check_long_greedy_runs("keye-1.5-tiny", lookup);
    }
    assert!(accepted > 0, "no draft was ever accepted");
}

#[test]
fn seeded_sampling_output_is_unchanged() {
    let model = "keye-preview-tiny";
    let keye = Keye::from_dir(&fixtures().join("models").join(model)).unwrap();
    let mut accepted = 0;
    for case_dir in cases(model) {
        let what = format!("{model}/{}", case_dir.display());
        let options = GenerationOptions {
            temperature: Some(0.7),
            top_k: Some(20),
            top_p: Some(0.95),
            repetition_penalty: Some(1.05),
            seed: Some(11),
            ..greedy(120)
        };
        let plain = run(&keye, &request(&case_dir, options.clone()));
        let spec = run(
            &keye,
            &request(&case_dir, with_lookup(&options, PromptLookup::default())),
        );
        assert_same_output(&what, &plain, &spec);
        accepted += spec.0.drafts.accepted;
    }
    assert!(accepted > 0, "no draft was ever accepted");
}

#[test]
fn eos_stop_strings_and_max_new_tokens_end_where_they_do_without_lookup() {
    let model = "keye-1.5-tiny";
    let keye = Keye::from_dir(&fixtures().join("models").join(model)).unwrap();
    for case_dir in cases(model) {
        let what = format!("{model}/{}", case_dir.display());
        let long = run(&keye, &request(&case_dir, greedy(160)));

        let mut settings = vec![
            (
                "eos",
                GenerationOptions {
                    ignore_eos: false,
                    ..greedy(160)
                },
            ),
            ("one token", greedy(1)),
            ("two tokens", greedy(2)),
            ("seventeen tokens", greedy(17)),
        ];
        // Stop strings cut out of the middle and the end of the long answer, so generation
        // stops inside what an accepted draft covers.
        let text = &long.0.text;
        let chars: Vec<char> = text.chars().collect();
        for at in [chars.len() / 3, chars.len() * 2 / 3] {
            if at + 3 <= chars.len() {
                let stop: String = chars[at..at + 3].iter().collect();
                settings.push((
                    "stop",
                    GenerationOptions {
                        stop: vec![stop],
                        ..greedy(160)
                    },
                ));
            }
        }
        for (name, options) in settings {
            let plain = run(&keye, &request(&case_dir, options.clone()));
            let spec = run(
                &keye,
                &request(&case_dir, with_lookup(&options, PromptLookup::default())),
            );
            assert_same_output(&format!("{what} {name}"), &plain, &spec);
            if name == "stop" {
                assert_eq!(
                    plain.0.finish_reason,
                    FinishReason::Stop,
                    "{what}: stop string"
                );
            }
            if let Some(max) = options.max_new_tokens.filter(|_| options.ignore_eos) {
                assert!(spec.0.usage.completion_tokens <= max, "{what} {name}");
            }
        }
    }
}

#[test]
fn a_sink_that_stops_sees_no_token_after_it() {
    let model = "keye-preview-tiny";
    let keye = Keye::from_dir(&fixtures().join("models").join(model)).unwrap();
    let mut accepted = 0;
    for case_dir in cases(model) {
        for stop_after in [1, 2, 5, 23] {
            let what = format!("{model}/{} stop after {stop_after}", case_dir.display());
            let stopping_run = |options: GenerationOptions| {
                let mut events = Vec::new();
                let completion = keye
                    .generate(&request(&case_dir, options), &mut |e: &TokenEvent| {
                        events.push(e.clone());
                        if events.len() >= stop_after {
                            Flow::Stop
                        } else {
                            Flow::Continue
                        }
                    })
                    .unwrap();
                (completion, events)
            };
            let plain = stopping_run(greedy(160));
            let spec = stopping_run(with_lookup(&greedy(160), PromptLookup::default()));
            assert_same_output(&what, &plain, &spec);
            assert_eq!(plain.0.finish_reason, FinishReason::Cancelled, "{what}");
            assert_eq!(spec.1.len(), stop_after, "{what}: events after the stop");
            accepted += spec.0.drafts.accepted;
        }
    }
    assert!(accepted > 0, "no draft was ever accepted");
}

#[test]
fn batched_steps_with_lookup_match_single_requests() {
    let model = "keye-preview-tiny";
    let keye = Keye::from_dir(&fixtures().join("models").join(model)).unwrap();
    let cases = cases(model);
    let options = greedy(96);
    let requests: Vec<Request> = cases
        .iter()
        .map(|c| request(c, with_lookup(&options, PromptLookup::default())))
        .collect();
    let expected: Vec<Vec<u32>> = cases
        .iter()
        .map(|c| run(&keye, &request(c, options.clone())).0.token_ids)
        .collect();
    let mut sequences: Vec<keye::Sequence> =
        requests.iter().map(|r| keye.start(r).unwrap()).collect();
    while sequences.iter().any(|s| !s.is_finished()) {
        let mut batch: Vec<&mut keye::Sequence> = sequences.iter_mut().collect();
        keye.step(&mut batch).unwrap();
    }
    let mut accepted = 0;
    for ((sequence, want), case) in sequences.iter().zip(&expected).zip(&cases) {
        assert_eq!(
            sequence.generated_tokens(),
            want.as_slice(),
            "{}: batched ids",
            case.display()
        );
        accepted += sequence.draft_stats().accepted;
    }
    assert!(accepted > 0, "no draft was ever accepted");
}

#[test]
fn invalid_settings_are_refused() {
    let model = "keye-preview-tiny";
    let keye = Keye::from_dir(&fixtures().join("models").join(model)).unwrap();
    let case_dir = &cases(model)[0];
    for lookup in [
        PromptLookup {
            draft_tokens: 0,
            ..PromptLookup::default()
        },
        PromptLookup {
            draft_tokens: keye::MAX_DRAFT_TOKENS + 1,
            ..PromptLookup::default()
        },
        PromptLookup {
            min_ngram: 0,
            ..PromptLookup::default()
        },
    ] {
        let request = request(case_dir, with_lookup(&greedy(4), lookup));
        assert!(
            matches!(keye.start(&request), Err(keye::Error::InvalidRequest(_))),
            "{lookup:?}"
        );
    }
}
