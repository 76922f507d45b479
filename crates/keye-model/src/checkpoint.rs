//! Memory-mapped safetensors checkpoints: one file or shards listed in
//! `model.safetensors.index.json`. Tensors stay in the mapping; nothing is copied at open.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use candle_core::{Device, Tensor};
use half::{bf16, f16};
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};

use crate::error::{Error, Result};

/// A tensor as stored in the checkpoint: a shared mapping plus the byte range of its data.
#[derive(Clone)]
pub struct StoredTensor {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    map: Arc<Mmap>,
    range: Range<usize>,
}

impl StoredTensor {
    pub fn bytes(&self) -> &[u8] {
        &self.map[self.range.clone()]
    }

    /// The values widened to f32 (exact for bf16 and f16).
    pub fn to_f32_vec(&self) -> Result<Vec<f32>> {
        let bytes = self.bytes();
        Ok(match self.dtype {
            Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::BF16 => bytes
                .chunks_exact(2)
                .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::F16 => bytes
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => {
                return Err(Error::UnsupportedDtype {
                    name: self.name.clone(),
                    dtype: format!("{other:?}"),
                });
            }
        })
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
    dtype: Dtype,
    shape: Vec<usize>,
    range: Range<usize>,
}

/// All tensors of a checkpoint folder, by name. Tracks which ones the model consumed so that
/// loading can report leftovers.
pub struct Checkpoint {
    shards: Vec<Arc<Mmap>>,
    entries: HashMap<String, Entry>,
    consumed: Mutex<BTreeSet<String>>,
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
                entries.insert(
                    name,
                    Entry {
                        shard,
                        dtype: info.dtype,
                        shape: info.shape.clone(),
                        range: data_start + start..data_start + end,
                    },
                );
            }
            shards.push(Arc::new(map));
        }
        Ok(Self {
            shards,
            entries,
            consumed: Mutex::new(BTreeSet::new()),
        })
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
        if !matches!(entry.dtype, Dtype::F32 | Dtype::BF16 | Dtype::F16) {
            return Err(Error::UnsupportedDtype {
                name: name.to_owned(),
                dtype: format!("{:?}", entry.dtype),
            });
        }
        self.consumed
            .lock()
            .expect("consumed-set lock poisoned")
            .insert(name.to_owned());
        Ok(StoredTensor {
            name: name.to_owned(),
            dtype: entry.dtype,
            shape: entry.shape.clone(),
            map: self.shards[entry.shard].clone(),
            range: entry.range.clone(),
        })
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
