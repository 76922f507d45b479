//! Quality of each weight format on every fixture case of the tiny models, against the f32
//! reference of the official Python code: how many of the 16 greedy tokens agree with the
//! reference before the first divergence, and the max / mean absolute error of the first
//! token's logits.
//!
//! ```text
//! cargo run --release -p keye --example quant_quality
//! ```
//!
//! The format applies to the language model's and the vision tower's linear weights alike; the
//! rows marked "bf16 activations" run with `--matmul-precision bf16`, which rounds the
//! activations of the bf16 products to bf16 and, on CPUs with AMX, sends quantized products of
//! 17 rows or more (prompts, images) to the bf16 tiles with the weights decoded and rounded to
//! bf16 (elsewhere those rows differ from the exact ones only in the vision attention); the
//! last rows keep the weights as stored and use the bf16 and 8-bit KV caches instead.

use std::path::{Path, PathBuf};

use keye::{
    Flow, GenerationOptions, Keye, KvCacheFormat, LoadOptions, MatmulPrecision, QuantType, Request,
    TokenEvent, WeightFormat,
};
use keye_chat::MessagesFile;
use safetensors::SafeTensors;

const GREEDY_TOKENS: usize = 16;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

struct Case {
    name: String,
    dir: PathBuf,
    reference_ids: Vec<u32>,
    reference_logits: Vec<f32>,
}

fn load_cases(model: &str) -> Result<Vec<Case>, Box<dyn std::error::Error>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures().join("cases").join(model))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    dirs.sort();
    dirs.into_iter()
        .map(|dir| {
            let meta: serde_json::Value =
                serde_json::from_slice(&std::fs::read(dir.join("outputs.json"))?)?;
            let reference_ids = meta["generated_ids"]
                .as_array()
                .ok_or("outputs.json lacks generated_ids")?
                .iter()
                .map(|v| v.as_u64().map(|v| v as u32).ok_or("bad id"))
                .collect::<Result<_, _>>()?;
            let bytes = std::fs::read(dir.join("outputs.safetensors"))?;
            let tensors = SafeTensors::deserialize(&bytes)?;
            let reference_logits = tensors
                .tensor("logits_last")?
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            Ok(Case {
                name: dir
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
                dir,
                reference_ids,
                reference_logits,
            })
        })
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let exact = MatmulPrecision::F32;
    let configurations = [
        (WeightFormat::Stored, exact, KvCacheFormat::F32),
        (WeightFormat::Bf16, exact, KvCacheFormat::F32),
        (
            WeightFormat::Bf16,
            MatmulPrecision::Bf16,
            KvCacheFormat::F32,
        ),
        (
            WeightFormat::Quantized(QuantType::Q8_0),
            exact,
            KvCacheFormat::F32,
        ),
        (
            WeightFormat::Quantized(QuantType::Q4_0),
            exact,
            KvCacheFormat::F32,
        ),
        (
            WeightFormat::Quantized(QuantType::Q4K),
            exact,
            KvCacheFormat::F32,
        ),
        (
            WeightFormat::Quantized(QuantType::Q8_0),
            MatmulPrecision::Bf16,
            KvCacheFormat::F32,
        ),
        (
            WeightFormat::Quantized(QuantType::Q4K),
            MatmulPrecision::Bf16,
            KvCacheFormat::F32,
        ),
        (WeightFormat::Stored, exact, KvCacheFormat::Bf16),
        (WeightFormat::Stored, exact, KvCacheFormat::Q8),
    ];
    println!(
        "| model | weights | KV cache | case | greedy tokens agreeing | max abs logit error | mean abs logit error | mean abs reference logit |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for model in ["keye-preview-tiny", "keye-1.5-tiny"] {
        let cases = load_cases(model)?;
        for (format, matmul_precision, kv_cache) in configurations {
            let options = LoadOptions {
                quant: format,
                quant_vision: format,
                matmul_precision,
                kv_cache,
                ..LoadOptions::default()
            };
            let keye = Keye::load(
                fixtures()
                    .join("models")
                    .join(model)
                    .to_str()
                    .ok_or("path")?,
                &options,
            )?;
            let format = match matmul_precision {
                MatmulPrecision::F32 => format.to_string(),
                MatmulPrecision::Bf16 => format!("{format}, bf16 activations"),
            };
            let (mut agreeing, mut total, mut max_error, mut error_sum, mut logits) =
                (0, 0, 0f32, 0f64, 0);
            let mut reference_sum = 0f64;
            for case in &cases {
                let mut request = Request::new(
                    MessagesFile::load(case.dir.join("messages.json"))?.into_resolved(),
                );
                request.generation = GenerationOptions {
                    max_new_tokens: Some(GREEDY_TOKENS),
                    temperature: Some(0.0),
                    ignore_eos: true,
                    ..GenerationOptions::default()
                };
                request.trace = true;
                let completion = keye.generate(&request, &mut |_: &TokenEvent| Flow::Continue)?;
                let prefix = completion
                    .token_ids
                    .iter()
                    .zip(&case.reference_ids)
                    .take_while(|(a, b)| a == b)
                    .count();
                let ours = completion
                    .trace
                    .as_ref()
                    .and_then(|t| t.get("logits_last"))
                    .ok_or("no logits in the trace")?;
                let errors: Vec<f32> = ours
                    .data
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .zip(&case.reference_logits)
                    .map(|(a, b)| (a - b).abs())
                    .collect();
                let case_max = errors.iter().copied().fold(0f32, f32::max);
                let case_sum: f64 = errors.iter().map(|&e| f64::from(e)).sum();
                let case_reference: f64 = case
                    .reference_logits
                    .iter()
                    .map(|&x| f64::from(x.abs()))
                    .sum();
                println!(
                    "| {model} | {format} | {kv_cache} | {} | {prefix}/{} | {case_max:.2e} | {:.2e} | {:.1} |",
                    case.name,
                    case.reference_ids.len(),
                    case_sum / errors.len() as f64,
                    case_reference / case.reference_logits.len() as f64
                );
                reference_sum += case_reference;
                agreeing += prefix;
                total += case.reference_ids.len();
                max_error = max_error.max(case_max);
                error_sum += case_sum;
                logits += errors.len();
            }
            println!(
                "| **{model}** | **{format}** | **{kv_cache}** | **all {} cases** | **{agreeing}/{total}** | **{max_error:.2e}** | **{:.2e}** | **{:.1}** |",
                cases.len(),
                error_sum / logits as f64,
                reference_sum / logits as f64
            );
        }
    }
    Ok(())
}
