//! Memory-mapped checkpoints: safetensors (one file or shards listed in
//! `model.safetensors.index.json`) or one GGUF file. Tensors stay in the mapping; nothing is
//! copied at open.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::{Device, Tensor};
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};

use crate::error::{Error, Result};
use crate::format::{StoredDtype, WeightFormat, WeightFormats, quantize_rows, widen};
use crate::gguf::GgufFile;
use crate::linear::MatrixWeight;

/// A tensor as stored in the checkpoint: a shared mapping plus the byte range of its data.
#[derive(Clone)]
pub struct StoredTensor {
    pub name: String,
    pub dtype: StoredDtype,
    /// Outermost dimension first, as in PyTorch (a GGUF file's `ne` reversed).
    pub shape: Vec<usize>,
    map: Arc<Mmap>,
    range: Range<usize>,
}

impl StoredTensor {
    pub fn bytes(&self) -> &[u8] {
        &self.map[self.range.clone()]
    }

    /// Number of values.
    pub fn values(&self) -> usize {
        self.shape.iter().product()
    }

    /// The values widened to f32 (exact for bf16 and f16; GGML's dequantizer for blocks).
    pub fn to_f32_vec(&self) -> Result<Vec<f32>> {
        match self.dtype {
            StoredDtype::Quantized(q) => {
                let mut out = vec![0f32; self.values()];
                keye_kernels::dequantize(q, self.bytes(), &mut out)
                    .map_err(|e| Error::InvalidInput(format!("dequantizing {}: {e}", self.name)))?;
                Ok(out)
            }
            float => Ok(widen(float, self.bytes()).collect()),
        }
    }

    /// An f32 candle tensor of the stored shape; for the small tensors (norms, biases, tables).
    pub fn to_f32_tensor(&self, device: &Device) -> Result<Tensor> {
        Ok(Tensor::from_vec(
            self.to_f32_vec()?,
            self.shape.as_slice(),
            device,
        )?)
    }

    /// Borrow the data as a typed slice when the mapping is suitably aligned.
    pub(crate) fn typed<T: bytemuck::Pod>(&self) -> Option<&[T]> {
        bytemuck::try_cast_slice(self.bytes()).ok()
    }

    pub(crate) fn mapping(&self) -> (Arc<Mmap>, Range<usize>) {
        (self.map.clone(), self.range.clone())
    }
}

struct Entry {
    shard: usize,
    /// The safetensors dtype's name when keye cannot read it.
    dtype: std::result::Result<StoredDtype, String>,
    shape: Vec<usize>,
    range: Range<usize>,
}

/// Weight matrices that did not fit the requested block size.
#[derive(Default)]
struct Fallbacks {
    matrices: usize,
    to_q8_0: usize,
    kept: usize,
    /// Matrices a GGUF file already holds in a block format, which stay as they are.
    already_quantized: usize,
}

/// All tensors of a checkpoint, by name, and the formats its weight matrices are loaded in.
/// Tracks which tensors the model consumed so that loading can report leftovers.
pub struct Checkpoint {
    shards: Vec<Arc<Mmap>>,
    entries: HashMap<String, Entry>,
    consumed: Mutex<BTreeSet<String>>,
    formats: WeightFormats,
    fallbacks: Mutex<Fallbacks>,
}

impl Checkpoint {
    /// Opens `model.safetensors`, the shards of `model.safetensors.index.json`, or failing those
    /// every `*.safetensors` file in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        let files = shard_files(dir)?;
        let mut shards = Vec::with_capacity(files.len());
        let mut entries = HashMap::new();
        for (shard, path) in files.iter().enumerate() {
            let file = std::fs::File::open(path).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            // SAFETY: the mapping is read-only; a checkpoint modified while we run is outside
            // what any inference engine can defend against.
            let map = unsafe { Mmap::map(&file) }.map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            let (header_len, metadata) = SafeTensors::read_metadata(&map)
                .map_err(|e| Error::invalid_file(path, format!("not a safetensors file: {e}")))?;
            let data_start = 8 + header_len;
            for (name, info) in metadata.tensors() {
                let (start, end) = info.data_offsets;
                let dtype = match info.dtype {
                    Dtype::F32 => Ok(StoredDtype::F32),
                    Dtype::F16 => Ok(StoredDtype::F16),
                    Dtype::BF16 => Ok(StoredDtype::Bf16),
                    other => Err(format!("{other:?}")),
                };
                entries.insert(
                    name,
                    Entry {
                        shard,
                        dtype,
                        shape: info.shape.clone(),
                        range: data_start + start..data_start + end,
                    },
                );
            }
            shards.push(Arc::new(map));
        }
        Ok(Self::new(shards, entries))
    }

    /// The tensors of a GGUF file, in place.
    pub fn from_gguf(file: &GgufFile) -> Self {
        let entries = file
            .tensors()
            .iter()
            .map(|t| {
                (
                    t.name.clone(),
                    Entry {
                        shard: 0,
                        dtype: Ok(t.dtype),
                        shape: t.shape.clone(),
                        range: t.range.clone(),
                    },
                )
            })
            .collect();
        Self::new(vec![file.mapping()], entries)
    }

    fn new(shards: Vec<Arc<Mmap>>, entries: HashMap<String, Entry>) -> Self {
        Self {
            shards,
            entries,
            consumed: Mutex::new(BTreeSet::new()),
            formats: WeightFormats::default(),
            fallbacks: Mutex::new(Fallbacks::default()),
        }
    }

    /// Loads weight matrices in `formats` from now on.
    pub fn with_formats(mut self, formats: WeightFormats) -> Self {
        self.formats = formats;
        self
    }

    pub fn formats(&self) -> WeightFormats {
        self.formats
    }

    /// Every tensor name, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.entries.keys().cloned().collect();
        names.sort();
        names
    }

    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// Fetches a tensor and checks its shape; the error names the tensor and both shapes.
    pub fn get(&self, name: &str, expected: &[usize]) -> Result<StoredTensor> {
        let entry = self.entries.get(name).ok_or_else(|| Error::MissingTensor {
            name: name.to_owned(),
            expected: expected.to_vec(),
        })?;
        if entry.shape != expected {
            return Err(Error::ShapeMismatch {
                name: name.to_owned(),
                expected: expected.to_vec(),
                found: entry.shape.clone(),
            });
        }
        self.consumed
            .lock()
            .expect("consumed-set lock poisoned")
            .insert(name.to_owned());
        self.tensor(name)
    }

    /// Fetches a tensor whatever its shape, without marking it consumed.
    pub fn tensor(&self, name: &str) -> Result<StoredTensor> {
        let entry = self.entries.get(name).ok_or_else(|| Error::MissingTensor {
            name: name.to_owned(),
            expected: Vec::new(),
        })?;
        let dtype = entry
            .dtype
            .clone()
            .map_err(|dtype| Error::UnsupportedDtype {
                name: name.to_owned(),
                dtype,
            })?;
        Ok(StoredTensor {
            name: name.to_owned(),
            dtype,
            shape: entry.shape.clone(),
            map: self.shards[entry.shard].clone(),
            range: entry.range.clone(),
        })
    }

    /// A weight matrix in the format its role asks for (see [`WeightFormats::for_tensor`]).
    pub fn matrix(&self, name: &str, shape: &[usize]) -> Result<MatrixWeight> {
        self.matrix_as(name, shape, self.formats.for_tensor(name))
    }

    /// A weight matrix in `format`, counting block-size fallbacks for [`Self::report_fallbacks`].
    pub fn matrix_as(
        &self,
        name: &str,
        shape: &[usize],
        format: WeightFormat,
    ) -> Result<MatrixWeight> {
        let tensor = self.get(name, shape)?;
        let cols = shape[1..].iter().product();
        let target = format.resolve(tensor.dtype, cols);
        self.count_fallback(format, tensor.dtype, target);
        MatrixWeight::from_stored_as(tensor, target)
    }

    /// The float or block matrix `name`, stored as `[rows, cols]`, grown with zeros to
    /// `[padded_rows, padded_cols]` and converted to `format` like [`Self::matrix_as`] would for
    /// the grown width, which must make it blocks. A matrix already in blocks can only gain
    /// rows (zero blocks).
    pub fn padded_matrix(
        &self,
        name: &str,
        [rows, cols]: [usize; 2],
        [padded_rows, padded_cols]: [usize; 2],
        format: WeightFormat,
    ) -> Result<MatrixWeight> {
        let tensor = self.get(name, &[rows, cols])?;
        let target = format.resolve(tensor.dtype, padded_cols);
        self.count_fallback(format, tensor.dtype, target);
        let cannot = || {
            Error::InvalidInput(format!(
                "cannot grow {name} ({}, [{rows}, {cols}]) to [{padded_rows}, {padded_cols}] as {target}",
                tensor.dtype
            ))
        };
        if padded_rows < rows || padded_cols < cols {
            return Err(cannot());
        }
        let (q, bytes) = match (tensor.dtype, target) {
            (StoredDtype::Quantized(q), _) if padded_cols == cols => {
                // All-zero bytes are a block of zeros in every GGML format (scales 0).
                let mut bytes = tensor.bytes().to_vec();
                bytes.resize(q.bytes_for(padded_rows * cols).map_err(|_| cannot())?, 0);
                (q, bytes)
            }
            (StoredDtype::Quantized(_), _) => return Err(cannot()),
            (source, StoredDtype::Quantized(q)) => {
                let source_row = tensor.bytes().len() / rows.max(1);
                let bytes = quantize_rows(q, padded_rows, padded_cols, name, |range, scratch| {
                    for row in range {
                        let start = scratch.len();
                        if row < rows {
                            let bytes = &tensor.bytes()[row * source_row..(row + 1) * source_row];
                            scratch.extend(widen(source, bytes));
                        }
                        scratch.resize(start + padded_cols, 0.0);
                    }
                })?;
                (q, bytes)
            }
            // Padding only pays where it lets the matrix into blocks.
            _ => return Err(cannot()),
        };
        Ok(MatrixWeight::from_blocks(
            q,
            padded_rows,
            padded_cols,
            bytes,
        ))
    }

    fn count_fallback(&self, format: WeightFormat, stored: StoredDtype, target: StoredDtype) {
        if format != WeightFormat::Stored && matches!(stored, StoredDtype::Quantized(_)) {
            self.fallbacks
                .lock()
                .expect("fallback lock poisoned")
                .already_quantized += 1;
        } else if let WeightFormat::Quantized(q) = format {
            let mut fallbacks = self.fallbacks.lock().expect("fallback lock poisoned");
            fallbacks.matrices += 1;
            match target {
                StoredDtype::Quantized(got) if got == q => {}
                StoredDtype::Quantized(_) => fallbacks.to_q8_0 += 1,
                _ => fallbacks.kept += 1,
            }
        }
    }

    /// One log line summarising the matrices whose rows were not whole blocks of the requested
    /// format, and a warning when a requested format was not applied to already-quantized
    /// matrices.
    pub fn report_fallbacks(&self) {
        let fallbacks = self.fallbacks.lock().expect("fallback lock poisoned");
        if fallbacks.already_quantized > 0 {
            tracing::warn!(
                count = fallbacks.already_quantized,
                "weight matrices already quantized in the file keep their format; \
                 --quant and --quant-vision apply to float weights only"
            );
        }
        if fallbacks.to_q8_0 + fallbacks.kept > 0 {
            tracing::info!(
                to_q8_0 = fallbacks.to_q8_0,
                kept_as_stored = fallbacks.kept,
                of = fallbacks.matrices,
                "some weight matrices have rows that are not whole blocks of the requested \
                 format and use the nearest format that fits"
            );
        }
    }

    /// Names present in the checkpoint that no module asked for, sorted.
    pub fn unconsumed(&self) -> Vec<String> {
        let consumed = self.consumed.lock().expect("consumed-set lock poisoned");
        let mut left: Vec<String> = self
            .entries
            .keys()
            .filter(|name| !consumed.contains(*name))
            .cloned()
            .collect();
        left.sort();
        left
    }
}

fn shard_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let text = std::fs::read_to_string(&index).map_err(|source| Error::Io {
            path: index.clone(),
            source,
        })?;
        #[derive(serde::Deserialize)]
        struct Index {
            weight_map: BTreeMap<String, String>,
        }
        let parsed: Index =
            serde_json::from_str(&text).map_err(|e| Error::invalid_file(&index, e.to_string()))?;
        let names: BTreeSet<&String> = parsed.weight_map.values().collect();
        let files: Vec<PathBuf> = names.into_iter().map(|n| dir.join(n)).collect();
        if let Some(missing) = files.iter().find(|f| !f.is_file()) {
            return Err(Error::invalid_file(
                &index,
                format!("lists shard {} which does not exist", missing.display()),
            ));
        }
        return Ok(files);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| Error::Io {
            path: dir.to_owned(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::invalid_file(
            dir,
            "no model.safetensors, model.safetensors.index.json or *.safetensors file",
        ));
    }
    Ok(files)
}
