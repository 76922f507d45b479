//! Weight storage formats: what a checkpoint holds ([`StoredDtype`]), what the user asks for
//! ([`WeightFormat`]), which matrices each request applies to, and the conversion between them.
//! Quantizing at load and writing a GGUF file go through the same [`encode_tensor`], so both
//! produce the same bytes.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use half::{bf16, f16};
use keye_kernels::QuantType;
use rayon::prelude::*;

use crate::checkpoint::StoredTensor;
use crate::error::{Error, Result};

/// The element type of a stored tensor, in a safetensors checkpoint or a GGUF file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StoredDtype {
    F32,
    F16,
    Bf16,
    /// GGML blocks; rows (the innermost dimension) are whole blocks.
    Quantized(QuantType),
}

impl StoredDtype {
    pub const fn ggml_type(self) -> u32 {
        match self {
            StoredDtype::F32 => 0,
            StoredDtype::F16 => 1,
            StoredDtype::Bf16 => 30,
            StoredDtype::Quantized(q) => q.ggml_type(),
        }
    }

    pub fn from_ggml_type(id: u32) -> Option<Self> {
        match id {
            0 => Some(StoredDtype::F32),
            1 => Some(StoredDtype::F16),
            30 => Some(StoredDtype::Bf16),
            other => QuantType::from_ggml_type(other).map(StoredDtype::Quantized),
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            StoredDtype::F32 => "f32",
            StoredDtype::F16 => "f16",
            StoredDtype::Bf16 => "bf16",
            StoredDtype::Quantized(q) => q.name(),
        }
    }

    /// Bytes of a tensor of `values` values whose rows hold `row` values; `None` when a row is
    /// not a whole number of blocks or the size overflows.
    pub fn bytes_for(self, values: usize, row: usize) -> Option<usize> {
        match self {
            StoredDtype::F32 => values.checked_mul(4),
            StoredDtype::F16 | StoredDtype::Bf16 => values.checked_mul(2),
            StoredDtype::Quantized(q) => {
                if row == 0 || !row.is_multiple_of(q.block_values()) {
                    return None;
                }
                q.bytes_for(values).ok()
            }
        }
    }
}

impl fmt::Display for StoredDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a group of weight matrices is held in memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum WeightFormat {
    /// As the checkpoint stores them (bf16 or f32, or the blocks of a quantized GGUF file).
    #[default]
    Stored,
    /// bf16 (f32 checkpoints are rounded to nearest even).
    Bf16,
    /// GGML blocks.
    Quantized(QuantType),
}

impl WeightFormat {
    /// Every format, for help texts and reports.
    pub const ALL: [WeightFormat; 5] = [
        WeightFormat::Stored,
        WeightFormat::Bf16,
        WeightFormat::Quantized(QuantType::Q8_0),
        WeightFormat::Quantized(QuantType::Q4_0),
        WeightFormat::Quantized(QuantType::Q4K),
    ];

    pub const fn name(self) -> &'static str {
        match self {
            WeightFormat::Stored => "stored",
            WeightFormat::Bf16 => "bf16",
            WeightFormat::Quantized(q) => q.name(),
        }
    }

    /// The dtype a matrix of `cols` columns stored as `stored` is held in. Block formats need
    /// rows of whole blocks: a matrix that does not fit falls back to q8_0 when its rows are
    /// whole 32-value blocks, else stays as stored. Already-quantized tensors stay as they are.
    pub fn resolve(self, stored: StoredDtype, cols: usize) -> StoredDtype {
        match (self, stored) {
            (_, StoredDtype::Quantized(_)) | (WeightFormat::Stored, _) => stored,
            (WeightFormat::Bf16, _) => StoredDtype::Bf16,
            (WeightFormat::Quantized(q), _) => [q, QuantType::Q8_0]
                .into_iter()
                .find(|q| cols > 0 && cols.is_multiple_of(q.block_values()))
                .map_or(stored, StoredDtype::Quantized),
        }
    }
}

impl fmt::Display for WeightFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for WeightFormat {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        parse_named(
            &WeightFormat::ALL,
            WeightFormat::name,
            "weight format",
            name,
        )
    }
}

/// The member of `all` called `name` (any case, surrounding spaces ignored), or an error that
/// names `what` and lists the choices.
fn parse_named<T: Copy>(
    all: &[T],
    name_of: fn(T) -> &'static str,
    what: &str,
    name: &str,
) -> Result<T> {
    let name = name.trim();
    all.iter()
        .copied()
        .find(|&choice| name_of(choice).eq_ignore_ascii_case(name))
        .ok_or_else(|| {
            let choices: Vec<&str> = all.iter().map(|&choice| name_of(choice)).collect();
            Error::InvalidInput(format!(
                "unknown {what} `{name}` (choose one of {})",
                choices.join(", ")
            ))
        })
}

/// How matrix products with bf16 weights treat their f32 activations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum MatmulPrecision {
    /// Activations stay f32 (weights are widened exactly): results match the f32 reference to
    /// float tolerance.
    #[default]
    F32,
    /// Activations are rounded to bf16 first, as in PyTorch's bf16 inference and llama.cpp, so
    /// prompt and image products run on AVX-512 BF16 dot products where the CPU has them
    /// (about 3× the f32 path). On CPUs with AMX, products of 17 rows or more with quantized
    /// weights run on the bf16 tiles too, each block of weight rows decoded and rounded to bf16
    /// (elsewhere quantized products keep their 8-bit activation blocks); products with f32
    /// weights are unchanged. The vision tower's attention rounds q, k, v and its softmax
    /// weights likewise.
    Bf16,
}

impl MatmulPrecision {
    pub const ALL: [MatmulPrecision; 2] = [MatmulPrecision::F32, MatmulPrecision::Bf16];

    pub const fn name(self) -> &'static str {
        match self {
            MatmulPrecision::F32 => "f32",
            MatmulPrecision::Bf16 => "bf16",
        }
    }
}

impl fmt::Display for MatmulPrecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for MatmulPrecision {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        parse_named(
            &MatmulPrecision::ALL,
            MatmulPrecision::name,
            "matmul precision",
            name,
        )
    }
}

/// Which weight format each part of the model uses, and how products with bf16 weights round.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct WeightFormats {
    /// Linear weights of the language model: q/k/v/o, gate/up/down and `lm_head`.
    pub text: WeightFormat,
    /// Linear weights of the vision tower's encoder layers and of the projector.
    pub vision: WeightFormat,
    /// Applies to every linear layer whose weights are held as bf16, and to vision attention.
    pub matmul_precision: MatmulPrecision,
}

/// Which format group a checkpoint tensor belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightRole {
    TextLinear,
    VisionLinear,
    /// Embedding tables (rows are gathered), norms, biases, the patch embedding and the
    /// position table: kept as stored.
    Kept,
}

impl WeightRole {
    pub fn of(name: &str) -> Self {
        let linear = |n: &str| n.ends_with("_proj.weight");
        if name == "lm_head.weight" || (name.starts_with("model.layers.") && linear(name)) {
            WeightRole::TextLinear
        } else if (name.starts_with("visual.vision_model.encoder.layers.")
            && (linear(name)
                || name.ends_with(".mlp.fc1.weight")
                || name.ends_with(".mlp.fc2.weight")))
            || (name.starts_with("mlp_AR.linear_") && name.ends_with(".weight"))
        {
            WeightRole::VisionLinear
        } else {
            WeightRole::Kept
        }
    }
}

impl WeightFormats {
    /// The format requested for the tensor called `name`.
    pub fn for_tensor(&self, name: &str) -> WeightFormat {
        match WeightRole::of(name) {
            WeightRole::TextLinear => self.text,
            WeightRole::VisionLinear => self.vision,
            WeightRole::Kept => WeightFormat::Stored,
        }
    }
}

/// Rows widened and quantized together: ~1 MiB of f32 per task, small enough to stay in cache.
const QUANTIZE_TASK_VALUES: usize = 1 << 18;

/// The tensor's bytes in `target` (a dtype [`WeightFormat::resolve`] chose): borrowed when
/// nothing changes, else converted in parallel with at most one task's rows widened to f32 per
/// worker.
pub fn encode_tensor(tensor: &StoredTensor, target: StoredDtype) -> Result<Cow<'_, [u8]>> {
    let bytes = tensor.bytes();
    if target == tensor.dtype {
        return Ok(Cow::Borrowed(bytes));
    }
    let values = tensor.values();
    if values == 0 {
        return Ok(Cow::Owned(Vec::new()));
    }
    let cols = tensor.shape.last().copied().unwrap_or(1).max(1);
    let unsupported = || Error::UnsupportedDtype {
        name: tensor.name.clone(),
        dtype: format!("{} (cannot convert to {target})", tensor.dtype),
    };
    let source = tensor.dtype;
    if matches!(source, StoredDtype::Quantized(_)) {
        return Err(unsupported());
    }
    match target {
        StoredDtype::Bf16 => {
            let mut out = weight_buffer(values * 2);
            out.par_chunks_mut(QUANTIZE_TASK_VALUES * 2)
                .zip(bytes.par_chunks(QUANTIZE_TASK_VALUES * element_bytes(source)))
                .for_each(|(out, src)| {
                    for (dst, value) in out.chunks_exact_mut(2).zip(widen(source, src)) {
                        dst.copy_from_slice(&bf16::from_f32(value).to_le_bytes());
                    }
                });
            Ok(Cow::Owned(out))
        }
        StoredDtype::Quantized(q) => {
            target.bytes_for(values, cols).ok_or_else(unsupported)?;
            let row_bytes = cols * element_bytes(source);
            let quantized =
                quantize_rows(q, values / cols, cols, &tensor.name, |rows, scratch| {
                    scratch.extend(widen(
                        source,
                        &bytes[rows.start * row_bytes..rows.end * row_bytes],
                    ));
                })?;
            Ok(Cow::Owned(quantized))
        }
        StoredDtype::F32 | StoredDtype::F16 => Err(unsupported()),
    }
}

/// `rows` rows of `cols` values in `q` blocks (`cols` a whole number of blocks), quantized in
/// parallel tasks of whole rows; `widen_rows` appends a task's rows as f32 to its scratch, so at
/// most one task's rows per worker are ever held in f32.
pub(crate) fn quantize_rows(
    q: QuantType,
    rows: usize,
    cols: usize,
    name: &str,
    widen_rows: impl Fn(std::ops::Range<usize>, &mut Vec<f32>) + Sync,
) -> Result<Vec<u8>> {
    let row_bytes = q
        .bytes_for(cols)
        .map_err(|e| Error::InvalidInput(format!("quantizing {name}: {e}")))?;
    let mut out = weight_buffer(rows * row_bytes);
    if rows == 0 {
        return Ok(out);
    }
    let rows_per_task = (QUANTIZE_TASK_VALUES / cols.max(1)).max(1);
    out.par_chunks_mut(rows_per_task * row_bytes)
        .enumerate()
        .try_for_each_init(Vec::new, |scratch: &mut Vec<f32>, (task, out)| {
            let first = task * rows_per_task;
            scratch.clear();
            widen_rows(first..first + out.len() / row_bytes, scratch);
            keye_kernels::quantize(q, scratch, out)
        })
        .map_err(|e| Error::InvalidInput(format!("quantizing {name}: {e}")))?;
    Ok(out)
}

/// A zeroed buffer for weights that every decode step reads end to end, backed by transparent
/// huge pages where the kernel offers them (Linux in `madvise` mode): 4 KiB pages cost a TLB
/// miss and a restart of the hardware prefetchers every 4 KiB of the stream.
pub(crate) fn weight_buffer<T: bytemuck::Zeroable + Clone>(len: usize) -> Vec<T> {
    let mut buffer: Vec<T> = Vec::with_capacity(len);
    #[cfg(target_os = "linux")]
    {
        const PAGE: usize = 4096;
        let start = buffer.as_mut_ptr() as usize;
        let aligned = start.next_multiple_of(PAGE);
        let bytes = len * std::mem::size_of::<T>();
        if bytes > aligned - start {
            // SAFETY: the range lies inside this allocation; advice only changes how its pages
            // are backed, and a refusal is harmless.
            unsafe {
                libc::madvise(
                    aligned as *mut libc::c_void,
                    bytes - (aligned - start),
                    libc::MADV_HUGEPAGE,
                )
            };
        }
    }
    buffer.resize(len, T::zeroed());
    buffer
}

fn element_bytes(dtype: StoredDtype) -> usize {
    match dtype {
        StoredDtype::F32 => 4,
        _ => 2,
    }
}

/// Little-endian float bytes of `dtype` widened to f32 (exact).
pub(crate) fn widen(dtype: StoredDtype, bytes: &[u8]) -> impl Iterator<Item = f32> + '_ {
    let step = element_bytes(dtype);
    bytes.chunks_exact(step).map(move |c| match dtype {
        StoredDtype::F32 => f32::from_le_bytes([c[0], c[1], c[2], c[3]]),
        StoredDtype::F16 => f16::from_le_bytes([c[0], c[1]]).to_f32(),
        _ => bf16::from_le_bytes([c[0], c[1]]).to_f32(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_follow_the_checkpoint_names() {
        for (name, role) in [
            (
                "model.layers.3.self_attn.q_proj.weight",
                WeightRole::TextLinear,
            ),
            (
                "model.layers.0.mlp.down_proj.weight",
                WeightRole::TextLinear,
            ),
            ("lm_head.weight", WeightRole::TextLinear),
            ("model.layers.0.self_attn.q_norm.weight", WeightRole::Kept),
            ("model.embed_tokens.weight", WeightRole::Kept),
            (
                "visual.vision_model.encoder.layers.1.self_attn.out_proj.weight",
                WeightRole::VisionLinear,
            ),
            (
                "visual.vision_model.encoder.layers.1.mlp.fc2.weight",
                WeightRole::VisionLinear,
            ),
            (
                "visual.vision_model.encoder.layers.1.mlp.fc2.bias",
                WeightRole::Kept,
            ),
            ("mlp_AR.linear_1.weight", WeightRole::VisionLinear),
            ("mlp_AR.pre_norm.weight", WeightRole::Kept),
            (
                "visual.vision_model.embeddings.patch_embedding.weight",
                WeightRole::Kept,
            ),
        ] {
            assert_eq!(WeightRole::of(name), role, "{name}");
        }
    }

    #[test]
    fn block_formats_fall_back_when_rows_do_not_fit() {
        let q4k = WeightFormat::Quantized(QuantType::Q4K);
        assert_eq!(
            q4k.resolve(StoredDtype::Bf16, 4096),
            StoredDtype::Quantized(QuantType::Q4K)
        );
        // The SigLIP MLP's 4304 = 134.5 × 32: no block format fits.
        assert_eq!(q4k.resolve(StoredDtype::Bf16, 4304), StoredDtype::Bf16);
        // 1152 = 4.5 × 256 = 36 × 32.
        assert_eq!(
            q4k.resolve(StoredDtype::F32, 1152),
            StoredDtype::Quantized(QuantType::Q8_0)
        );
        let q4_0 = WeightFormat::Quantized(QuantType::Q4_0);
        assert_eq!(q4_0.resolve(StoredDtype::F32, 588), StoredDtype::F32);
        assert_eq!(
            q4_0.resolve(StoredDtype::Quantized(QuantType::Q8_0), 64),
            StoredDtype::Quantized(QuantType::Q8_0)
        );
        assert_eq!(
            WeightFormat::Bf16.resolve(StoredDtype::F32, 7),
            StoredDtype::Bf16
        );
        assert_eq!(
            WeightFormat::Stored.resolve(StoredDtype::F16, 7),
            StoredDtype::F16
        );
    }

    #[test]
    fn formats_parse_by_name() {
        for format in WeightFormat::ALL {
            assert_eq!(
                format
                    .name()
                    .to_uppercase()
                    .parse::<WeightFormat>()
                    .unwrap(),
                format
            );
        }
        assert!("q6_k".parse::<WeightFormat>().is_err());
    }
}
