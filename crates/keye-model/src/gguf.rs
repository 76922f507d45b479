//! GGUF v3 files (the GGML ecosystem's single-file model format): a reader that memory-maps the
//! file and checks every count, length and offset against the file's size before using it, and
//! a streaming writer.
//!
//! Layout: magic `GGUF`, version, tensor count, metadata count, the metadata key/value pairs,
//! the tensor descriptions (name, dimensions innermost first, GGML type, offset), padding to the
//! alignment, then the tensor data, each tensor at an aligned offset. All little-endian.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;

use crate::error::{Error, Result};
use crate::format::StoredDtype;

const MAGIC: &[u8; 4] = b"GGUF";
const VERSION: u32 = 3;
/// The alignment keye writes (GGUF's default) and assumes when a file does not say.
pub const ALIGNMENT: usize = 32;
/// GGML tensors have at most four dimensions.
const MAX_DIMS: usize = 4;
/// Arrays of arrays are legal; deeper nesting than this is refused rather than recursed into.
const MAX_ARRAY_DEPTH: usize = 4;

/// Keys keye writes and reads.
pub mod keys {
    pub const ARCHITECTURE: &str = "general.architecture";
    pub const NAME: &str = "general.name";
    pub const FILE_TYPE: &str = "general.file_type";
    pub const ALIGNMENT: &str = "general.alignment";
    pub const QUANTIZATION_VERSION: &str = "general.quantization_version";
    pub const CONFIG: &str = "keye.config_json";
    pub const GENERATION_CONFIG: &str = "keye.generation_config_json";
    pub const PREPROCESSOR_CONFIG: &str = "keye.preprocessor_config_json";
    pub const CHAT_TEMPLATE: &str = "tokenizer.chat_template";
    pub const TOKENIZER_JSON: &str = "tokenizer.huggingface.json";
}

/// The `general.architecture` of keye's files.
pub const ARCHITECTURE: &str = "keye";

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum MetadataValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Vec<MetadataValue>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl MetadataValue {
    fn type_id(&self) -> u32 {
        match self {
            MetadataValue::U8(_) => 0,
            MetadataValue::I8(_) => 1,
            MetadataValue::U16(_) => 2,
            MetadataValue::I16(_) => 3,
            MetadataValue::U32(_) => 4,
            MetadataValue::I32(_) => 5,
            MetadataValue::F32(_) => 6,
            MetadataValue::Bool(_) => 7,
            MetadataValue::String(_) => 8,
            MetadataValue::Array(_) => 9,
            MetadataValue::U64(_) => 10,
            MetadataValue::I64(_) => 11,
            MetadataValue::F64(_) => 12,
        }
    }

    /// The value of an unsigned or non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            MetadataValue::U8(v) => Some(v.into()),
            MetadataValue::U16(v) => Some(v.into()),
            MetadataValue::U32(v) => Some(v.into()),
            MetadataValue::U64(v) => Some(v),
            MetadataValue::I8(v) => u64::try_from(v).ok(),
            MetadataValue::I16(v) => u64::try_from(v).ok(),
            MetadataValue::I32(v) => u64::try_from(v).ok(),
            MetadataValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetadataValue::String(s) => Some(s),
            _ => None,
        }
    }
}

/// One tensor of a GGUF file.
#[derive(Clone, Debug)]
pub struct GgufTensor {
    pub name: String,
    /// Outermost dimension first, as in PyTorch: the file's `ne` reversed.
    pub shape: Vec<usize>,
    pub dtype: StoredDtype,
    /// Byte range of the data in the file.
    pub range: Range<usize>,
}

/// A memory-mapped GGUF file whose structure has been validated.
pub struct GgufFile {
    path: PathBuf,
    map: Arc<Mmap>,
    metadata: BTreeMap<String, MetadataValue>,
    tensors: Vec<GgufTensor>,
}

impl GgufFile {
    /// Maps and validates a GGUF file: magic, version, every length and offset, tensor types
    /// and that all tensor data lies inside the file.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        // SAFETY: the mapping is read-only; a file modified while we run is outside what any
        // inference engine can defend against.
        let map = unsafe { Mmap::map(&file) }.map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        let (metadata, tensors) = parse(&map, path)?;
        Ok(Self {
            path: path.to_owned(),
            map: Arc::new(map),
            metadata,
            tensors,
        })
    }

    /// [`Self::open`], refusing files whose `general.architecture` is not `keye`.
    pub fn open_keye(path: &Path) -> Result<Self> {
        let file = Self::open(path)?;
        let architecture = file.string(keys::ARCHITECTURE)?;
        if architecture != ARCHITECTURE {
            return Err(Error::WrongArchitecture {
                path: path.to_owned(),
                found: architecture.to_owned(),
            });
        }
        Ok(file)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn metadata(&self) -> &BTreeMap<String, MetadataValue> {
        &self.metadata
    }

    /// A string value that must be present.
    pub fn string(&self, key: &str) -> Result<&str> {
        match self.metadata.get(key) {
            None => Err(Error::MissingMetadata {
                path: self.path.clone(),
                key: key.to_owned(),
            }),
            Some(value) => value.as_str().ok_or_else(|| {
                Error::invalid_file(&self.path, format!("metadata `{key}` is not a string"))
            }),
        }
    }

    /// A string value that may be absent.
    pub fn optional_string(&self, key: &str) -> Result<Option<&str>> {
        match self.metadata.get(key) {
            None => Ok(None),
            Some(_) => self.string(key).map(Some),
        }
    }

    pub fn tensors(&self) -> &[GgufTensor] {
        &self.tensors
    }

    pub(crate) fn mapping(&self) -> Arc<Mmap> {
        self.map.clone()
    }
}

/// Reads little-endian fields, failing with the file's name when the data runs out.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(Error::invalid_file(
                self.path,
                format!(
                    "truncated: {what} needs {n} bytes at offset {} but the file has {} bytes",
                    self.pos,
                    self.bytes.len()
                ),
            ));
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        Ok(self.take(N, what)?.try_into().expect("took N bytes"))
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A count of items each at least `min_item_bytes` long: refused when they could not fit in
    /// the rest of the file, so a corrupt count never drives an allocation.
    fn count(&mut self, min_item_bytes: usize, what: &str) -> Result<usize> {
        let count = self.u64(what)?;
        let fits = usize::try_from(count).ok().filter(|&c| {
            c.checked_mul(min_item_bytes)
                .is_some_and(|b| b <= self.remaining())
        });
        fits.ok_or_else(|| {
            Error::invalid_file(
                self.path,
                format!(
                    "{what} is {count}, more than the {} bytes left in the file can hold",
                    self.remaining()
                ),
            )
        })
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let len = self.count(1, &format!("length of {what}"))?;
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| Error::invalid_file(self.path, format!("{what} is not UTF-8")))
    }

    fn value(&mut self, type_id: u32, key: &str, depth: usize) -> Result<MetadataValue> {
        Ok(match type_id {
            0 => MetadataValue::U8(self.array::<1>(key)?[0]),
            1 => MetadataValue::I8(i8::from_le_bytes(self.array(key)?)),
            2 => MetadataValue::U16(u16::from_le_bytes(self.array(key)?)),
            3 => MetadataValue::I16(i16::from_le_bytes(self.array(key)?)),
            4 => MetadataValue::U32(u32::from_le_bytes(self.array(key)?)),
            5 => MetadataValue::I32(i32::from_le_bytes(self.array(key)?)),
            6 => MetadataValue::F32(f32::from_le_bytes(self.array(key)?)),
            7 => match self.array::<1>(key)?[0] {
                0 => MetadataValue::Bool(false),
                1 => MetadataValue::Bool(true),
                other => {
                    return Err(Error::invalid_file(
                        self.path,
                        format!("metadata `{key}` has boolean byte {other}"),
                    ));
                }
            },
            8 => MetadataValue::String(self.string(&format!("metadata `{key}`"))?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(Error::invalid_file(
                        self.path,
                        format!("metadata `{key}` nests arrays more than {MAX_ARRAY_DEPTH} deep"),
                    ));
                }
                let item_type = self.u32(key)?;
                let min_bytes = match item_type {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    8 | 10..=12 => 8,
                    9 => 12,
                    other => return Err(unknown_value_type(self.path, key, other)),
                };
                let count = self.count(min_bytes, &format!("length of metadata array `{key}`"))?;
                let mut items = Vec::with_capacity(count);
                for _ in 0..count {
                    items.push(self.value(item_type, key, depth + 1)?);
                }
                MetadataValue::Array(items)
            }
            10 => MetadataValue::U64(u64::from_le_bytes(self.array(key)?)),
            11 => MetadataValue::I64(i64::from_le_bytes(self.array(key)?)),
            12 => MetadataValue::F64(f64::from_le_bytes(self.array(key)?)),
            other => return Err(unknown_value_type(self.path, key, other)),
        })
    }
}

fn unknown_value_type(path: &Path, key: &str, type_id: u32) -> Error {
    Error::invalid_file(
        path,
        format!("metadata `{key}` has unknown value type {type_id}"),
    )
}

type Parsed = (BTreeMap<String, MetadataValue>, Vec<GgufTensor>);

fn parse(bytes: &[u8], path: &Path) -> Result<Parsed> {
    let mut r = Reader {
        bytes,
        pos: 0,
        path,
    };
    if bytes.len() < 4 || &bytes[..4] != MAGIC {
        return Err(Error::invalid_file(path, "not a GGUF file (no GGUF magic)"));
    }
    r.pos = 4;
    let version = r.u32("version")?;
    if !(2..=VERSION).contains(&version) {
        return Err(Error::invalid_file(
            path,
            format!("GGUF version {version}; keye reads versions 2 and 3"),
        ));
    }
    // A tensor description is at least 8 (name length) + 4 (dims) + 4 (type) + 8 (offset).
    let tensor_count = r.count(24, "tensor count")?;
    // A key/value pair is at least 8 (key length) + 4 (type) + 1 (value).
    let metadata_count = r.count(13, "metadata count")?;
    let mut metadata = BTreeMap::new();
    for _ in 0..metadata_count {
        let key = r.string("metadata key")?;
        let type_id = r.u32(&key)?;
        let value = r.value(type_id, &key, 0)?;
        if metadata.insert(key.clone(), value).is_some() {
            return Err(Error::invalid_file(
                path,
                format!("metadata `{key}` appears twice"),
            ));
        }
    }
    let alignment = match metadata.get(keys::ALIGNMENT) {
        None => ALIGNMENT,
        Some(value) => value
            .as_u64()
            .and_then(|a| usize::try_from(a).ok())
            .filter(|a| a.is_power_of_two())
            .ok_or_else(|| {
                Error::invalid_file(
                    path,
                    format!("{} is {value:?}, not a power of two", keys::ALIGNMENT),
                )
            })?,
    };

    struct Described {
        name: String,
        shape: Vec<usize>,
        dtype: StoredDtype,
        offset: u64,
        bytes: usize,
    }
    let mut described = Vec::with_capacity(tensor_count);
    let mut names = HashSet::with_capacity(tensor_count);
    for _ in 0..tensor_count {
        let name = r.string("tensor name")?;
        let dims = r.u32(&format!("dimension count of tensor {name}"))? as usize;
        if dims == 0 || dims > MAX_DIMS {
            return Err(Error::invalid_file(
                path,
                format!("tensor {name} has {dims} dimensions (GGML allows 1 to {MAX_DIMS})"),
            ));
        }
        let mut ne = Vec::with_capacity(dims);
        for _ in 0..dims {
            let dim = r.u64(&format!("dimensions of tensor {name}"))?;
            match usize::try_from(dim) {
                Ok(d) if d > 0 => ne.push(d),
                _ => {
                    return Err(Error::invalid_file(
                        path,
                        format!("tensor {name} has a dimension of {dim}"),
                    ));
                }
            }
        }
        let type_id = r.u32(&format!("type of tensor {name}"))?;
        let dtype =
            StoredDtype::from_ggml_type(type_id).ok_or_else(|| Error::UnsupportedTensorType {
                path: path.to_owned(),
                name: name.clone(),
                ggml_type: type_id,
                type_name: ggml_type_name(type_id),
            })?;
        let offset = r.u64(&format!("offset of tensor {name}"))?;
        let values = ne.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        let bytes = values.and_then(|v| dtype.bytes_for(v, ne[0])).ok_or_else(|| {
            Error::invalid_file(
                path,
                format!(
                    "tensor {name} of {dtype} with dimensions {ne:?} (innermost first) is not a \
                     whole number of blocks per row, or is too large"
                ),
            )
        })?;
        if !offset.is_multiple_of(alignment as u64) {
            return Err(Error::invalid_file(
                path,
                format!(
                    "tensor {name} starts at offset {offset}, not a multiple of the alignment {alignment}"
                ),
            ));
        }
        if !names.insert(name.clone()) {
            return Err(Error::invalid_file(
                path,
                format!("tensor {name} appears twice"),
            ));
        }
        ne.reverse();
        described.push(Described {
            name,
            shape: ne,
            dtype,
            offset,
            bytes,
        });
    }
    let data_start = r.pos.div_ceil(alignment) * alignment;
    let tensors = described
        .into_iter()
        .map(|t| {
            let range = usize::try_from(t.offset)
                .ok()
                .and_then(|o| data_start.checked_add(o))
                .and_then(|start| Some(start..start.checked_add(t.bytes)?))
                .filter(|range| range.end <= bytes.len())
                .ok_or_else(|| {
                    Error::invalid_file(
                        path,
                        format!(
                            "truncated: the data of tensor {} ({} bytes at offset {} after the \
                             header) goes past the end of the file ({} bytes)",
                            t.name,
                            t.bytes,
                            t.offset,
                            bytes.len()
                        ),
                    )
                })?;
            Ok(GgufTensor {
                name: t.name,
                shape: t.shape,
                dtype: t.dtype,
                range,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((metadata, tensors))
}

/// GGML's name for a tensor type id, for error messages.
pub fn ggml_type_name(id: u32) -> &'static str {
    const NAMES: [&str; 40] = [
        "F32",
        "F16",
        "Q4_0",
        "Q4_1",
        "Q4_2 (removed)",
        "Q4_3 (removed)",
        "Q5_0",
        "Q5_1",
        "Q8_0",
        "Q8_1",
        "Q2_K",
        "Q3_K",
        "Q4_K",
        "Q5_K",
        "Q6_K",
        "Q8_K",
        "IQ2_XXS",
        "IQ2_XS",
        "IQ3_XXS",
        "IQ1_S",
        "IQ4_NL",
        "IQ3_S",
        "IQ2_S",
        "IQ4_XS",
        "I8",
        "I16",
        "I32",
        "I64",
        "F64",
        "IQ1_M",
        "BF16",
        "Q4_0_4_4 (removed)",
        "Q4_0_4_8 (removed)",
        "Q4_0_8_8 (removed)",
        "TQ1_0",
        "TQ2_0",
        "IQ4_NL_4_4 (removed)",
        "IQ4_NL_4_8 (removed)",
        "IQ4_NL_8_8 (removed)",
        "MXFP4",
    ];
    NAMES.get(id as usize).copied().unwrap_or("unknown")
}

/// What the header says about a tensor the writer will write.
#[derive(Clone, Debug)]
pub struct GgufTensorHeader {
    pub name: String,
    /// Outermost dimension first, as in PyTorch.
    pub shape: Vec<usize>,
    pub dtype: StoredDtype,
}

impl GgufTensorHeader {
    fn bytes(&self) -> Option<usize> {
        let values = self
            .shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))?;
        self.dtype.bytes_for(values, *self.shape.last()?)
    }
}

/// Writes a GGUF v3 file tensor by tensor: the header (all metadata and tensor descriptions)
/// first, then each tensor's data in header order, so only one tensor need be in memory. The
/// file appears under its name only once [`Self::finish`] succeeds.
pub struct GgufWriter {
    out: BufWriter<File>,
    partial: PathBuf,
    path: PathBuf,
    sizes: Vec<(String, usize)>,
    next: usize,
}

impl GgufWriter {
    /// Creates `path` (via `path.partial`) and writes the header. `general.alignment` is added;
    /// metadata arrays must hold items of one type.
    pub fn create(
        path: &Path,
        metadata: &[(&str, MetadataValue)],
        tensors: &[GgufTensorHeader],
    ) -> Result<Self> {
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        let io = |source| Error::Io {
            path: partial.clone(),
            source,
        };
        let mut header = Vec::new();
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&VERSION.to_le_bytes());
        header.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
        header.extend_from_slice(&(metadata.len() as u64 + 1).to_le_bytes());
        let alignment = (keys::ALIGNMENT, MetadataValue::U32(ALIGNMENT as u32));
        for (key, value) in std::iter::once(&alignment).chain(metadata.iter()) {
            if *key == keys::ALIGNMENT && value != &alignment.1 {
                return Err(Error::InvalidInput(format!(
                    "{} is always {ALIGNMENT} in files keye writes",
                    keys::ALIGNMENT
                )));
            }
            put_string(&mut header, key);
            header.extend_from_slice(&value.type_id().to_le_bytes());
            put_value(&mut header, value);
        }
        let mut sizes = Vec::with_capacity(tensors.len());
        let mut offset = 0usize;
        for tensor in tensors {
            let bytes = tensor.bytes().ok_or_else(|| {
                Error::InvalidInput(format!(
                    "tensor {} of shape {:?} cannot be stored as {}",
                    tensor.name, tensor.shape, tensor.dtype
                ))
            })?;
            put_string(&mut header, &tensor.name);
            header.extend_from_slice(&(tensor.shape.len() as u32).to_le_bytes());
            for &dim in tensor.shape.iter().rev() {
                header.extend_from_slice(&(dim as u64).to_le_bytes());
            }
            header.extend_from_slice(&tensor.dtype.ggml_type().to_le_bytes());
            header.extend_from_slice(&(offset as u64).to_le_bytes());
            sizes.push((tensor.name.clone(), bytes));
            offset += bytes.next_multiple_of(ALIGNMENT);
        }
        header.resize(header.len().next_multiple_of(ALIGNMENT), 0);
        let mut out = BufWriter::with_capacity(1 << 22, File::create(&partial).map_err(io)?);
        out.write_all(&header).map_err(io)?;
        Ok(Self {
            out,
            partial,
            path: path.to_owned(),
            sizes,
            next: 0,
        })
    }

    /// The data of the next tensor in header order; its length must match the header.
    pub fn write_tensor(&mut self, data: &[u8]) -> Result<()> {
        let (name, bytes) = self.sizes.get(self.next).ok_or_else(|| {
            Error::InvalidInput("more tensor data than tensors in the GGUF header".into())
        })?;
        if data.len() != *bytes {
            return Err(Error::InvalidInput(format!(
                "tensor {name}: {} bytes of data, the header says {bytes}",
                data.len()
            )));
        }
        let padding = data.len().next_multiple_of(ALIGNMENT) - data.len();
        let partial = &self.partial;
        let io = |source| Error::Io {
            path: partial.clone(),
            source,
        };
        self.out.write_all(data).map_err(io)?;
        self.out
            .write_all(&[0u8; ALIGNMENT][..padding])
            .map_err(io)?;
        self.next += 1;
        Ok(())
    }

    /// Checks that every tensor was written, flushes and moves the file into place.
    pub fn finish(self) -> Result<PathBuf> {
        if self.next != self.sizes.len() {
            return Err(Error::InvalidInput(format!(
                "{} of {} tensors written to {}",
                self.next,
                self.sizes.len(),
                self.partial.display()
            )));
        }
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| Error::Io { path, source }
        };
        let file = self
            .out
            .into_inner()
            .map_err(|e| e.into_error())
            .map_err(io(&self.partial))?;
        file.sync_all().map_err(io(&self.partial))?;
        drop(file);
        std::fs::rename(&self.partial, &self.path).map_err(io(&self.path))?;
        Ok(self.path)
    }
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, value: &MetadataValue) {
    match value {
        MetadataValue::U8(v) => out.push(*v),
        MetadataValue::I8(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::Bool(v) => out.push(u8::from(*v)),
        MetadataValue::String(s) => put_string(out, s),
        MetadataValue::Array(items) => {
            // An empty array's element type is irrelevant; GGUF writers use u8.
            let item_type = items.first().map_or(0, MetadataValue::type_id);
            out.extend_from_slice(&item_type.to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                put_value(out, item);
            }
        }
        MetadataValue::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
    }
}
