//! Every executed vector of `keye-evaluation-vectors.json` (golden outputs of the original
//! Python functions; see tests/data/README.md for their provenance).

use keye_eval::extract::{
    Compat, can_infer, process_answer, topic_sequence_matches, video_mme_letter, yes_no,
    yes_no_chinese,
};
use keye_eval::metrics::{VqaMetric, normalised_levenshtein, relaxed_correct};
use keye_eval::postprocess::keye_post_process;
use keye_eval::python::parse_list_literal;
use keye_eval::score::{MathVistaRow, Prefetch, circular_prefetch};
use serde_json::Value;

fn vectors() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/keye-evaluation-vectors.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("vectors file")).expect("valid JSON")
}

fn cases(name: &str) -> Vec<Value> {
    vectors()[name]
        .as_array()
        .unwrap_or_else(|| panic!("section {name}"))
        .clone()
}

fn text(value: &Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("expected a string, got {value}"))
}

fn choices(options: &Value) -> Vec<(char, String)> {
    let mut choices: Vec<(char, String)> = options
        .as_object()
        .expect("options object")
        .iter()
        .map(|(letter, text)| {
            (
                letter.chars().next().expect("letter"),
                text.as_str().expect("text").to_string(),
            )
        })
        .collect();
    choices.sort();
    choices
}

/// `false` in the vectors means "extraction failed".
fn expected_letter(value: &Value) -> Option<char> {
    match value {
        Value::Bool(false) => None,
        Value::String(s) => s.chars().next(),
        other => panic!("unexpected expectation {other}"),
    }
}

#[test]
fn mcq_can_infer_fork_and_upstream() {
    let cases = cases("mcq");
    assert_eq!(cases.len(), 44);
    for case in cases {
        let id = text(&case["id"]);
        let prediction = text(&case["prediction"]);
        let options = choices(&case["options"]);
        let fork = can_infer(prediction, &options, Compat::Fork);
        assert_eq!(
            fork,
            expected_letter(&case["fork_can_infer"]),
            "{id} fork: {prediction:?}"
        );
        let upstream = can_infer(prediction, &options, Compat::Upstream);
        assert_eq!(
            upstream,
            expected_letter(&case["upstream_can_infer"]),
            "{id} upstream: {prediction:?}"
        );
        // Without a judge the fork's extract_answer_from_item falls back to Z.
        let extracted = fork.unwrap_or('Z');
        assert_eq!(
            Some(extracted),
            expected_letter(&case["fork_extract_no_judge"]),
            "{id} extract"
        );
    }
}

#[test]
fn keye_post_processing() {
    for case in cases("keye_post_process") {
        let raw = text(&case["raw"]);
        assert_eq!(
            keye_post_process(raw),
            text(&case["post_process"]),
            "raw {raw:?}"
        );
    }
}

#[test]
fn yes_no_extraction() {
    for case in cases("yorn") {
        let prediction = text(&case["prediction"]);
        assert_eq!(
            yes_no(prediction).as_str(),
            text(&case["YOrN_Extraction"]),
            "{prediction:?}"
        );
    }
    for case in cases("yorn_cn") {
        let prediction = text(&case["prediction"]);
        assert_eq!(
            yes_no_chinese(prediction).as_chinese(),
            text(&case["YOrN_cn_Extraction"]),
            "{prediction:?}"
        );
    }
}

#[test]
fn vqa_normalisation() {
    for case in cases("vqa_norm") {
        let raw = text(&case["raw"]);
        assert_eq!(
            process_answer(raw),
            text(&case["process_answer"]),
            "{raw:?}"
        );
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12
}

#[test]
fn vqa_soft_score() {
    for case in cases("vqa_score") {
        let answer = text(&case["answer"]);
        let answers = parse_list_literal(answer).unwrap_or_else(|| vec![answer.to_string()]);
        let prediction = text(&case["prediction"]);
        let (matches, score) = VqaMetric::Soft.score(&answers, prediction);
        let expected: Vec<f64> = case["match"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(matches.len(), expected.len(), "{answer} / {prediction}");
        for (got, want) in matches.iter().zip(&expected) {
            assert!(
                close(*got, *want),
                "{answer} / {prediction}: match {got} vs {want}"
            );
        }
        assert!(
            close(score, case["score"].as_f64().unwrap()),
            "{answer} / {prediction}: score {score}"
        );
    }
}

#[test]
fn anls() {
    for case in cases("anls") {
        let (answer, prediction) = (text(&case["answer"]), text(&case["prediction"]));
        let nld = normalised_levenshtein(answer, prediction);
        assert!(
            close(nld, case["nld"].as_f64().unwrap()),
            "{answer} / {prediction}: nld {nld}"
        );
        let (_, score) = VqaMetric::Anls.score(&[answer.to_string()], prediction);
        assert!(
            close(score, case["score"].as_f64().unwrap()),
            "{answer} / {prediction}: score {score}"
        );
    }
}

#[test]
fn relaxed_accuracy_vlmevalkit_and_textbook() {
    for case in cases("relaxed") {
        let (answer, prediction) = (text(&case["answer"]), text(&case["prediction"]));
        assert_eq!(
            relaxed_correct(answer, prediction),
            case["vlmevalkit"].as_bool().unwrap(),
            "{answer} / {prediction}"
        );
        // The textbook definition measures the tolerance against the gold value instead: the
        // same function with the roles swapped.
        assert_eq!(
            relaxed_correct(prediction, answer),
            case["textbook"].as_bool().unwrap(),
            "{answer} / {prediction}"
        );
        let (_, score) = VqaMetric::Relaxed.score(&[answer.to_string()], prediction);
        assert_eq!(score == 1.0, case["vlmevalkit"].as_bool().unwrap());
    }
}

#[test]
fn video_mme_letter_regex() {
    for case in cases("videomme_regex") {
        let prediction = text(&case["prediction"]);
        let got = video_mme_letter(prediction)
            .map(String::from)
            .unwrap_or_default();
        assert_eq!(
            got,
            text(&case["extract_characters_regex"]),
            "{prediction:?}"
        );
    }
}

#[test]
fn kc_topic_check() {
    for case in cases("kc_topic") {
        let (answer, reply) = (text(&case["answer"]), text(&case["judge_output"]));
        assert_eq!(
            topic_sequence_matches(answer, reply),
            case["is_topic_right"].as_bool().unwrap(),
            "{answer} / {reply}"
        );
    }
}

#[test]
fn mathvista_post_check() {
    for case in cases("mathvista_post_check") {
        let c = &case["case"];
        let row = MathVistaRow {
            question_type: text(&c["question_type"]),
            answer_type: text(&c["answer_type"]),
            answer: text(&c["answer"]),
            answer_option: c["answer_option"].as_str(),
            choices: text(&c["choices"]),
        };
        let prediction = text(&c["prediction"]);
        let prefetch = row.prefetch(prediction, Compat::Fork);
        let expected = match &case["prefetch"] {
            Value::Bool(false) => None,
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            other => panic!("unexpected prefetch {other}"),
        };
        assert_eq!(prefetch, expected, "{prediction:?}");
        if let Some(judged) = case["judged"].as_bool() {
            assert_eq!(
                row.is_correct(text(&c["res"]), Compat::Fork),
                judged,
                "res {}",
                c["res"]
            );
        }
    }
}

#[test]
fn circular_prefetch_groups() {
    let options =
        choices(&serde_json::json!({"A": "cat", "B": "dog", "C": "teddy bear", "D": "rabbit"}));
    for case in cases("circular_prefetch") {
        let predictions: Vec<&str> = case["preds"].as_array().unwrap().iter().map(text).collect();
        let golds: Vec<&str> = case["gts"].as_array().unwrap().iter().map(text).collect();
        let letters: Vec<Option<char>> = predictions
            .iter()
            .map(|p| can_infer(p, &options, Compat::Fork))
            .collect();
        let verdict = circular_prefetch(&letters, &golds);
        let result = text(&case["result"]);
        let expected = if result == "None" {
            Prefetch::Undecided
        } else if result.contains("'hit': 1") {
            Prefetch::AllMatched
        } else {
            let rolling = result
                .split("Rolling ")
                .nth(1)
                .and_then(|r| r.split(':').next())
                .unwrap();
            Prefetch::Mismatch(rolling.parse().unwrap())
        };
        assert_eq!(verdict, expected, "{predictions:?}");
    }
}
