//! GGUF files written by `keye quantize` on the tiny fixture models: an as-stored file answers
//! exactly as the safetensors folder does, a quantized file exactly as quantizing at load does,
//! the metadata carries the model's text files verbatim, and the `gguf` Python package reads
//! the file and decodes its blocks to the values our dequantizer gives.

use std::path::{Path, PathBuf};
use std::process::Command;

use keye::{
    Flow, GenerationOptions, HubOptions, Keye, LoadOptions, QuantType, Request, TokenEvent,
    WeightFormat,
};
use keye_chat::MessagesFile;
use keye_model::gguf::{GgufFile, MetadataValue};
use keye_model::{Checkpoint, StoredDtype, WeightFormats};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn model_dir(model: &str) -> PathBuf {
    fixtures().join("models").join(model)
}

const MODELS: [&str; 2] = ["keye-preview-tiny", "keye-1.5-tiny"];

fn cases(model: &str) -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(fixtures().join("cases").join(model))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert!(cases.len() >= 6, "{model}: fixture cases missing");
    cases
}

fn write(model: &str, formats: WeightFormats, out: &Path) {
    keye::write_gguf(
        model_dir(model).to_str().unwrap(),
        &HubOptions::default(),
        formats,
        out,
        &mut |_, _| {},
    )
    .unwrap();
}

/// Greedy ids and the bits of every float the trace holds (logits, embeddings) of a case.
fn answer(keye: &Keye, case_dir: &Path) -> (Vec<u32>, Vec<(String, Vec<u8>)>) {
    let mut request = Request::new(
        MessagesFile::load(case_dir.join("messages.json"))
            .unwrap()
            .into_resolved(),
    );
    request.generation = GenerationOptions {
        max_new_tokens: Some(8),
        temperature: Some(0.0),
        ignore_eos: true,
        ..GenerationOptions::default()
    };
    request.trace = true;
    let completion = keye
        .generate(&request, &mut |_: &TokenEvent| Flow::Continue)
        .unwrap();
    let trace = completion.trace.unwrap();
    let tensors = trace
        .names()
        .map(|name| (name.to_owned(), trace.get(name).unwrap().data.clone()))
        .collect();
    (completion.token_ids, tensors)
}

fn assert_same_answers(model: &str, a: &Keye, b: &Keye, what: &str) {
    for case_dir in cases(model) {
        let case = case_dir.file_name().unwrap().to_string_lossy().into_owned();
        let (ids_a, tensors_a) = answer(a, &case_dir);
        let (ids_b, tensors_b) = answer(b, &case_dir);
        assert_eq!(ids_a, ids_b, "{model}/{case} {what}: greedy ids");
        assert!(tensors_a.iter().any(|(n, _)| n == "logits_last"));
        for ((name, x), (_, y)) in tensors_a.iter().zip(&tensors_b) {
            assert!(x == y, "{model}/{case} {what}: {name} differs");
        }
    }
}

#[test]
fn an_as_stored_file_answers_bit_for_bit_as_the_folder() {
    let tmp = tempfile::tempdir().unwrap();
    for model in MODELS {
        let path = tmp.path().join(format!("{model}.gguf"));
        write(model, WeightFormats::default(), &path);
        let folder = Keye::from_dir(&model_dir(model)).unwrap();
        let file = Keye::load(path.to_str().unwrap(), &LoadOptions::default()).unwrap();
        assert_eq!(file.model_dir(), path);
        assert_same_answers(model, &folder, &file, "as-stored GGUF vs folder");
    }
}

#[test]
fn quantizing_at_load_and_a_quantized_file_answer_identically() {
    let tmp = tempfile::tempdir().unwrap();
    for model in MODELS {
        for quant in QuantType::ALL {
            let format = WeightFormat::Quantized(quant);
            let path = tmp.path().join(format!("{model}-{quant}.gguf"));
            write(
                model,
                WeightFormats {
                    text: format,
                    vision: format,
                    ..WeightFormats::default()
                },
                &path,
            );
            let options = LoadOptions {
                quant: format,
                quant_vision: format,
                ..LoadOptions::default()
            };
            let at_load = Keye::load(model_dir(model).to_str().unwrap(), &options).unwrap();
            let file = Keye::load(path.to_str().unwrap(), &LoadOptions::default()).unwrap();
            assert_same_answers(model, &at_load, &file, &format!("{quant}"));
        }
    }
}

#[test]
fn the_file_carries_the_models_text_files_and_typed_tensors() {
    let tmp = tempfile::tempdir().unwrap();
    let model = "keye-preview-tiny";
    let path = tmp.path().join("q8.gguf");
    let q8 = WeightFormat::Quantized(QuantType::Q8_0);
    write(
        model,
        WeightFormats {
            text: q8,
            vision: WeightFormat::Stored,
            ..WeightFormats::default()
        },
        &path,
    );
    let file = GgufFile::open_keye(&path).unwrap();
    let dir = model_dir(model);
    let text = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    assert_eq!(
        file.string("keye.config_json").unwrap(),
        text("config.json")
    );
    assert_eq!(
        file.string("keye.generation_config_json").unwrap(),
        text("generation_config.json")
    );
    assert_eq!(
        file.string("keye.preprocessor_config_json").unwrap(),
        text("preprocessor_config.json")
    );
    assert_eq!(
        file.string("tokenizer.huggingface.json").unwrap(),
        text("tokenizer.json")
    );
    let template: serde_json::Value = serde_json::from_str(&text("chat_template.json")).unwrap();
    assert_eq!(
        file.string("tokenizer.chat_template").unwrap(),
        template["chat_template"].as_str().unwrap()
    );
    assert_eq!(file.string("general.name").unwrap(), model);
    let meta = file.metadata();
    assert_eq!(meta["general.alignment"], MetadataValue::U32(32));
    // llama.cpp's LLAMA_FTYPE_MOSTLY_Q8_0.
    assert_eq!(meta["general.file_type"], MetadataValue::U32(7));

    let source = Checkpoint::open(&dir).unwrap();
    let mut expected: Vec<String> = source
        .names()
        .into_iter()
        .filter(|n| !keye_model::KeyeModel::is_unused_tensor(n))
        .collect();
    let mut written: Vec<String> = file.tensors().iter().map(|t| t.name.clone()).collect();
    expected.sort();
    written.sort();
    assert_eq!(written, expected);
    for tensor in file.tensors() {
        let stored = source.tensor(&tensor.name).unwrap();
        assert_eq!(tensor.shape, stored.shape, "{}", tensor.name);
        let language_linear = tensor.name.starts_with("model.layers.")
            && tensor.name.ends_with("_proj.weight")
            || tensor.name == "lm_head.weight";
        let want = if language_linear {
            StoredDtype::Quantized(QuantType::Q8_0)
        } else {
            StoredDtype::Bf16
        };
        assert_eq!(tensor.dtype, want, "{}", tensor.name);
    }
}

#[test]
fn a_tensor_of_the_wrong_shape_names_tensor_and_shapes() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("bad.gguf");
    write("keye-preview-tiny", WeightFormats::default(), &path);
    let mut bytes = std::fs::read(&path).unwrap();
    // The description follows the name: dimension count, then ne[0] = 64, ne[1] = 32.
    let name = b"model.layers.0.self_attn.k_proj.weight";
    let at = bytes.windows(name.len()).position(|w| w == name).unwrap() + name.len();
    assert_eq!(&bytes[at..at + 4], &2u32.to_le_bytes());
    assert_eq!(&bytes[at + 4..at + 12], &64u64.to_le_bytes());
    bytes[at + 4..at + 12].copy_from_slice(&32u64.to_le_bytes());
    bytes[at + 12..at + 20].copy_from_slice(&64u64.to_le_bytes());
    std::fs::write(&path, bytes).unwrap();
    let error = Keye::load(path.to_str().unwrap(), &LoadOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains(
            "tensor `model.layers.0.self_attn.k_proj.weight` has shape [64, 32], expected [32, 64]"
        ),
        "{error}"
    );
}

#[test]
fn the_gguf_python_package_reads_our_files_and_decodes_our_values() {
    let has_gguf = Command::new("python3")
        .args(["-c", "import gguf, numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_gguf {
        eprintln!(
            "\n*** SKIPPED: python3 with the `gguf` and `numpy` packages is needed to check GGUF \
             interoperability (pip install gguf numpy) ***\n"
        );
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gguf_interop.py");
    let tmp = tempfile::tempdir().unwrap();
    // Preview weights are bf16, 1.5 weights f32: between them every type keye writes appears.
    for (model, text, vision) in [
        (
            "keye-preview-tiny",
            QuantType::Q4_0,
            WeightFormat::Quantized(QuantType::Q8_0),
        ),
        ("keye-1.5-tiny", QuantType::Q4K, WeightFormat::Bf16),
    ] {
        let path = tmp.path().join(format!("{model}.gguf"));
        write(
            model,
            WeightFormats {
                text: WeightFormat::Quantized(text),
                vision,
                ..WeightFormats::default()
            },
            &path,
        );
        let out = Command::new("python3")
            .arg(&script)
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["architecture"], "keye");
        let file = GgufFile::open_keye(&path).unwrap();
        let ckpt = Checkpoint::from_gguf(&file);
        let listed = report["tensors"].as_array().unwrap();
        assert_eq!(listed.len(), file.tensors().len());
        let mut decoded_types = Vec::new();
        for entry in listed {
            let name = entry["name"].as_str().unwrap();
            let ours = file.tensors().iter().find(|t| t.name == name).unwrap();
            let ggml_name = entry["type"].as_str().unwrap();
            assert_eq!(
                ggml_name,
                keye_model::gguf::ggml_type_name(ours.dtype.ggml_type()),
                "{name}"
            );
            let ne: Vec<usize> = ours.shape.iter().rev().copied().collect();
            let theirs: Vec<usize> = entry["ne"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            assert_eq!(theirs, ne, "{name}");
            if let Some(values) = entry.get("values") {
                let values: Vec<f32> = values
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap() as f32)
                    .collect();
                let ours = ckpt.tensor(name).unwrap().to_f32_vec().unwrap();
                assert_eq!(values.len(), ours.len(), "{name}");
                for (i, (a, b)) in values.iter().zip(&ours).enumerate() {
                    assert!(
                        a.to_bits() == b.to_bits(),
                        "{name} ({ggml_name}) value {i}: gguf-py {a}, keye {b}"
                    );
                }
                decoded_types.push(ggml_name.to_owned());
            }
        }
        decoded_types.sort();
        eprintln!("{model}: gguf-py decoded {decoded_types:?} exactly as keye");
    }
}
