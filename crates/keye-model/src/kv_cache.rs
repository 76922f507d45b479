//! Per-sequence key/value cache, preallocated once at the request's full length so decoding
//! never reallocates or copies past entries.

use std::fmt;
use std::str::FromStr;

use candle_core::{DType, Device, Tensor};
use half::bf16;
use keye_kernels::{CompactRows, Q8Rows};

use crate::error::{Error, Result};

/// How cached keys and values are stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KvCacheFormat {
    /// Exact: attention reads what the projections produced.
    #[default]
    F32,
    /// Each cached value rounded to the nearest bf16, as PyTorch's bf16 inference keeps its
    /// cache: half the memory and half the reads of long-context decoding, at bf16's rounding
    /// (2⁻⁹ of a value).
    Bf16,
    /// Each cached row of `head_dim` values as i8 levels with one f32 scale: about a quarter of
    /// the memory, so contexts four times longer fit, at a small error in attention (about
    /// 0.4 % of a row's largest value per element).
    Q8,
}

impl KvCacheFormat {
    /// Bytes one cached row of `head_dim` values takes.
    pub fn row_bytes(self, head_dim: usize) -> usize {
        match self {
            Self::F32 => head_dim * std::mem::size_of::<f32>(),
            Self::Bf16 => head_dim * std::mem::size_of::<bf16>(),
            Self::Q8 => head_dim + std::mem::size_of::<f32>(),
        }
    }
}

impl FromStr for KvCacheFormat {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(Self::F32),
            "bf16" => Ok(Self::Bf16),
            "q8" | "q8_0" => Ok(Self::Q8),
            other => Err(format!(
                "unknown KV cache format `{other}` (expected f32, bf16 or q8)"
            )),
        }
    }
}

impl fmt::Display for KvCacheFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::Q8 => "q8",
        })
    }
}

/// Keys and values of every layer, `[kv_heads, capacity, head_dim]` each. Owned by the
/// sequence, not by the model, so one model serves many sequences.
pub struct KvCache {
    pub(crate) layers: CacheLayers,
    format: KvCacheFormat,
    kv_heads: usize,
    head_dim: usize,
    len: usize,
    capacity: usize,
}

pub(crate) enum CacheLayers {
    F32 {
        keys: Vec<Tensor>,
        values: Vec<Tensor>,
    },
    Compact {
        keys: Vec<CompactCache>,
        values: Vec<CompactCache>,
    },
}

/// One layer's compact keys or values: `[kv_heads, capacity, head_dim]` values, and for the
/// 8-bit format `[kv_heads, capacity]` scales.
pub(crate) enum CompactCache {
    Bf16(Vec<bf16>),
    Q8 { levels: Vec<i8>, scales: Vec<f32> },
}

impl CompactCache {
    /// Zeroed memory, which the kernel maps lazily: a long context's cache costs nothing until
    /// it is filled.
    fn new(format: KvCacheFormat, kv_heads: usize, capacity: usize, head_dim: usize) -> Self {
        let values = kv_heads * capacity * head_dim;
        match format {
            KvCacheFormat::Bf16 => Self::Bf16(bytemuck::zeroed_vec(values)),
            _ => Self::Q8 {
                levels: vec![0; values],
                scales: vec![0.0; kv_heads * capacity],
            },
        }
    }

    pub(crate) fn rows(&self) -> CompactRows<'_> {
        match self {
            Self::Bf16(values) => CompactRows::Bf16(values),
            Self::Q8 { levels, scales } => CompactRows::Q8(Q8Rows { levels, scales }),
        }
    }

    /// Rounds `rows` (`[kv_heads, n, head_dim]`, f32) into cache rows `past..past + n`.
    fn write(&mut self, rows: &Tensor, past: usize, capacity: usize) -> Result<()> {
        let (kv_heads, n, head_dim) = rows.dims3()?;
        let values = rows.flatten_all()?.to_vec1::<f32>()?;
        for head in 0..kv_heads {
            let first = head * capacity + past;
            let head_rows = &values[head * n * head_dim..(head + 1) * n * head_dim];
            let stored = first * head_dim..(first + n) * head_dim;
            match self {
                Self::Bf16(cache) => {
                    for (slot, &v) in cache[stored].iter_mut().zip(head_rows) {
                        *slot = bf16::from_f32(v);
                    }
                }
                Self::Q8 { levels, scales } => keye_kernels::quantize_kv_rows(
                    head_rows,
                    head_dim,
                    &mut levels[stored],
                    &mut scales[first..first + n],
                )
                .map_err(candle_core::Error::wrap)?,
            }
        }
        Ok(())
    }
}

impl KvCache {
    pub(crate) fn new(
        layers: usize,
        kv_heads: usize,
        head_dim: usize,
        capacity: usize,
        format: KvCacheFormat,
        device: &Device,
    ) -> Result<Self> {
        let cache_layers = match format {
            KvCacheFormat::F32 => {
                let shape = (kv_heads, capacity, head_dim);
                let alloc = || Tensor::zeros(shape, DType::F32, device);
                CacheLayers::F32 {
                    keys: (0..layers)
                        .map(|_| alloc())
                        .collect::<candle_core::Result<_>>()?,
                    values: (0..layers)
                        .map(|_| alloc())
                        .collect::<candle_core::Result<_>>()?,
                }
            }
            KvCacheFormat::Bf16 | KvCacheFormat::Q8 => {
                if !device.is_cpu() {
                    return Err(Error::InvalidInput(format!(
                        "the {format} KV cache runs on the CPU only"
                    )));
                }
                let alloc = || CompactCache::new(format, kv_heads, capacity, head_dim);
                CacheLayers::Compact {
                    keys: (0..layers).map(|_| alloc()).collect(),
                    values: (0..layers).map(|_| alloc()).collect(),
                }
            }
        };
        Ok(Self {
            layers: cache_layers,
            format,
            kv_heads,
            head_dim,
            len: 0,
            capacity,
        })
    }

    /// Tokens already stored.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn format(&self) -> KvCacheFormat {
        self.format
    }

    /// Stores one layer's new keys and values (`[kv_heads, n, head_dim]` each) after the `past`
    /// rows already there.
    pub(crate) fn store(
        &mut self,
        layer: usize,
        keys: &Tensor,
        values: &Tensor,
        past: usize,
    ) -> Result<()> {
        debug_assert_eq!(keys.dims3()?, values.dims3()?);
        debug_assert_eq!(keys.dims3()?.0, self.kv_heads);
        debug_assert_eq!(keys.dims3()?.2, self.head_dim);
        match &mut self.layers {
            CacheLayers::F32 { keys: k, values: v } => {
                k[layer].slice_set(keys, 1, past)?;
                v[layer].slice_set(values, 1, past)?;
            }
            CacheLayers::Compact { keys: k, values: v } => {
                k[layer].write(keys, past, self.capacity)?;
                v[layer].write(values, past, self.capacity)?;
            }
        }
        Ok(())
    }

    pub(crate) fn advance(&mut self, tokens: usize) {
        self.len += tokens;
    }

    /// Counts the first `len` rows as filled without computing them (a new cache holds zeros
    /// there). Attention costs the same whatever the keys hold, so a benchmark can time work at
    /// a deep context without first running a prompt that long.
    pub fn assume_filled(&mut self, len: usize) -> Result<()> {
        if len > self.capacity {
            return Err(Error::ContextOverflow {
                needed: len,
                available: self.capacity,
                model_max: self.capacity,
            });
        }
        self.len = len;
        Ok(())
    }

    /// Forgets everything after the first `len` tokens (multi-turn reuse of a common prefix).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}
