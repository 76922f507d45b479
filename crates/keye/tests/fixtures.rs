//! The whole pipeline through the public API on every fixture case: messages.json in, the
//! reference's prompt, ids, intermediate tensors and greedy continuation out.

use std::path::{Path, PathBuf};

use keye::{Flow, GenerationOptions, Keye, Request, TokenEvent, TraceTensor};
use keye_chat::MessagesFile;
use safetensors::{Dtype, SafeTensors};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// Max |Δ| allowed per tensor; the references' own spread (fixtures README §5).
fn tolerance(name: &str, reference: &[f32]) -> f32 {
    match name {
        "pixel_values" | "pixel_values_videos" => 1e-5,
        "logits_last" => 1e-5 * reference.iter().fold(0f32, |m, x| m.max(x.abs())) + 1e-3,
        _ => 1e-4,
    }
}

fn floats(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn compare(
    case: &str,
    name: &str,
    ours: &TraceTensor,
    reference: &safetensors::tensor::TensorView<'_>,
) {
    assert_eq!(ours.shape, reference.shape(), "{case}: shape of {name}");
    assert_eq!(ours.dtype, reference.dtype(), "{case}: dtype of {name}");
    match ours.dtype {
        Dtype::F32 => {
            let (a, b) = (floats(&ours.data), floats(reference.data()));
            let diff = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            let tol = tolerance(name, &b);
            assert!(diff <= tol, "{case}: {name} max |Δ| {diff} > {tol}");
        }
        _ => assert_eq!(ours.data, reference.data(), "{case}: {name} differs"),
    }
}

fn greedy_request(case_dir: &Path) -> Request {
    let mut request = Request::new(
        MessagesFile::load(case_dir.join("messages.json"))
            .unwrap()
            .into_resolved(),
    );
    request.generation = GenerationOptions {
        max_new_tokens: Some(16),
        temperature: Some(0.0),
        ignore_eos: true,
        ..GenerationOptions::default()
    };
    request.trace = true;
    request
}

fn check_model(model: &str) {
    let keye = Keye::from_dir(&fixtures().join("models").join(model)).unwrap();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(fixtures().join("cases").join(model))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert!(cases.len() >= 6, "{model}: fixture cases missing");
    for case_dir in cases {
        let case = format!(
            "{model}/{}",
            case_dir.file_name().unwrap().to_string_lossy()
        );
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(case_dir.join("outputs.json")).unwrap()).unwrap();
        let reference_bytes = std::fs::read(case_dir.join("outputs.safetensors")).unwrap();
        let reference = SafeTensors::deserialize(&reference_bytes).unwrap();
        let request = greedy_request(&case_dir);

        let prompt = keye.prepare(&request).unwrap();
        assert_eq!(
            prompt.text,
            meta["prompt_text"].as_str().unwrap(),
            "{case}: prompt text"
        );

        let mut streamed = String::new();
        let completion = keye
            .generate(&request, &mut |e: &TokenEvent| {
                streamed.push_str(&e.text);
                Flow::Continue
            })
            .unwrap();
        let want: Vec<u32> = meta["generated_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(completion.token_ids, want, "{case}: greedy ids");
        assert_eq!(
            completion.text,
            meta["generated_text_skip_special"].as_str().unwrap(),
            "{case}: text"
        );
        assert_eq!(streamed, completion.text, "{case}: streamed text");
        assert_eq!(
            completion.usage.prompt_tokens,
            meta["num_input_tokens"].as_u64().unwrap() as usize
        );
        assert_eq!(completion.usage.completion_tokens, 16);

        let trace = completion.trace.expect("trace requested");
        let mut compared = 0;
        for name in trace.names() {
            if let Ok(reference) = reference.tensor(name) {
                compare(&case, name, trace.get(name).unwrap(), &reference);
                compared += 1;
            }
        }
        for required in [
            "input_ids",
            "position_ids",
            "rope_deltas",
            "inputs_embeds",
            "logits_last",
        ] {
            assert!(
                trace.get(required).is_some(),
                "{case}: trace lacks {required}"
            );
        }
        if reference.tensor("pixel_values").is_ok() {
            for name in [
                "pixel_values",
                "image_grid_thw",
                "image_vision_embeds",
                "image_projector_embeds",
            ] {
                assert!(trace.get(name).is_some(), "{case}: trace lacks {name}");
            }
        }
        assert!(compared >= 5, "{case}: only {compared} tensors compared");
    }
}

#[test]
fn preview_tiny_pipeline_matches_reference() {
    check_model("keye-preview-tiny");
}

#[test]
fn keye_1_5_tiny_pipeline_matches_reference() {
    check_model("keye-1.5-tiny");
}
