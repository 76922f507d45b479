//! `keye quantize`: one self-contained GGUF file from a checkpoint: every tensor the model reads
//! under its Hugging Face name, in the requested formats, plus the config, generation config,
//! preprocessor settings, tokenizer and chat template as metadata.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use keye_model::gguf::{self, GgufTensorHeader, GgufWriter, MetadataValue, keys};
use keye_model::{
    Checkpoint, KeyeConfig, KeyeModel, QuantType, StoredDtype, WeightFormats, WeightRole,
    encode_tensor,
};

use crate::error::Result;
use crate::files::{ModelFiles, ModelText};
use crate::hub::{self, HubOptions};

/// What [`write_gguf`] wrote.
#[derive(Clone, Debug)]
pub struct ExportSummary {
    pub path: PathBuf,
    pub tensors: usize,
    /// Tensor data bytes (the file adds its header and alignment padding).
    pub data_bytes: u64,
    /// How many tensors each dtype holds.
    pub dtypes: BTreeMap<&'static str, usize>,
}

/// Writes the model `spec` (folder, GGUF file or hub id) to the GGUF file `out` with its linear
/// weights in `formats`, streaming tensor by tensor. `progress(done, total)` counts tensor data
/// bytes.
pub fn write_gguf(
    spec: &str,
    hub_options: &HubOptions,
    formats: WeightFormats,
    out: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ExportSummary> {
    let source = hub::resolve_model(spec, hub_options)?;
    let files = ModelFiles::open(&source)?;
    let config_json = files.required_text(ModelText::Config)?;
    KeyeConfig::from_json(&config_json, &files.origin(ModelText::Config))?;
    let checkpoint = match &files {
        ModelFiles::Folder(dir) => Checkpoint::open(dir)?,
        ModelFiles::Gguf(file) => Checkpoint::from_gguf(file),
    };

    let mut headers = Vec::new();
    for name in checkpoint.names() {
        if KeyeModel::is_unused_tensor(&name) {
            continue;
        }
        let tensor = checkpoint.tensor(&name)?;
        let dtype = match tensor.shape.as_slice() {
            [_, cols] => formats.for_tensor(&name).resolve(tensor.dtype, *cols),
            _ => tensor.dtype,
        };
        headers.push(GgufTensorHeader {
            name,
            shape: tensor.shape,
            dtype,
        });
    }

    let mut metadata = vec![
        (keys::ARCHITECTURE, string(gguf::ARCHITECTURE)),
        (keys::NAME, string(&model_name(spec, &source))),
        (keys::FILE_TYPE, MetadataValue::U32(file_type(&headers))),
    ];
    if headers
        .iter()
        .any(|h| matches!(h.dtype, StoredDtype::Quantized(_)))
    {
        // The block layouts of GGML's quantization version 2, which keye's formats follow.
        metadata.push((keys::QUANTIZATION_VERSION, MetadataValue::U32(2)));
    }
    metadata.push((keys::CONFIG, MetadataValue::String(config_json)));
    for text in [ModelText::GenerationConfig, ModelText::PreprocessorConfig] {
        if let Some(json) = files.text(text)? {
            metadata.push((text.gguf_key(), MetadataValue::String(json)));
        }
    }
    metadata.push((
        keys::TOKENIZER_JSON,
        MetadataValue::String(files.required_text(ModelText::TokenizerJson)?),
    ));
    metadata.push((
        keys::CHAT_TEMPLATE,
        MetadataValue::String(files.chat_template_source()?),
    ));

    let total: u64 = headers.iter().map(|h| checkpoint_bytes(h) as u64).sum();
    let mut writer = GgufWriter::create(out, &metadata, &headers)?;
    let mut done = 0u64;
    let mut dtypes = BTreeMap::new();
    progress(0, total);
    for header in &headers {
        let tensor = checkpoint.tensor(&header.name)?;
        writer.write_tensor(&encode_tensor(&tensor, header.dtype)?)?;
        *dtypes.entry(header.dtype.name()).or_insert(0) += 1;
        done += checkpoint_bytes(header) as u64;
        progress(done, total);
    }
    let path = writer.finish()?;
    Ok(ExportSummary {
        path,
        tensors: headers.len(),
        data_bytes: total,
        dtypes,
    })
}

/// Bytes of a tensor as written.
fn checkpoint_bytes(header: &GgufTensorHeader) -> usize {
    let values: usize = header.shape.iter().product();
    header
        .dtype
        .bytes_for(values, *header.shape.last().unwrap_or(&1))
        .unwrap_or(0)
}

fn string(s: &str) -> MetadataValue {
    MetadataValue::String(s.to_owned())
}

/// The hub id as given, else the folder's or file's name without extension.
fn model_name(spec: &str, source: &Path) -> String {
    if hub::looks_like_hub_id(spec) && !Path::new(spec).exists() {
        return spec.to_owned();
    }
    source
        .file_stem()
        .map_or_else(|| spec.to_owned(), |n| n.to_string_lossy().into_owned())
}

/// llama.cpp's `general.file_type` (`LLAMA_FTYPE_*`) for the language model's linear weights:
/// what tools show as the file's quantization.
fn file_type(headers: &[GgufTensorHeader]) -> u32 {
    let text = headers
        .iter()
        .find(|h| WeightRole::of(&h.name) == WeightRole::TextLinear)
        .map_or(StoredDtype::F32, |h| h.dtype);
    match text {
        StoredDtype::F32 => 0,
        StoredDtype::F16 => 1,
        StoredDtype::Quantized(QuantType::Q4_0) => 2,
        StoredDtype::Quantized(QuantType::Q8_0) => 7,
        // Every matrix in Q4_K is llama.cpp's Q4_K_S.
        StoredDtype::Quantized(QuantType::Q4K) => 14,
        StoredDtype::Bf16 => 32,
    }
}
