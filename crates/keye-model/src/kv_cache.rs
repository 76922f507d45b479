//! Per-sequence key/value cache, preallocated once at the request's full length so decoding
//! never reallocates or copies past entries.

use std::fmt;
use std::str::FromStr;

use candle_core::{DType, Device, Tensor};
use keye_kernels::Q8Rows;

use crate::error::{Error, Result};

/// How cached keys and values are stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KvCacheFormat {
    /// Exact: attention reads what the projections produced.
    #[default]
    F32,
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
            Self::Q8 => head_dim + std::mem::size_of::<f32>(),
        }
    }
}

impl FromStr for KvCacheFormat {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(Self::F32),
            "q8" | "q8_0" => Ok(Self::Q8),
            other => Err(format!(
                "unknown KV cache format `{other}` (expected f32 or q8)"
            )),
        }
    }
}

impl fmt::Display for KvCacheFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::F32 => "f32",
            Self::Q8 => "q8",
        })
    }
}

/// Keys and values of every layer, `[kv_heads, capacity, head_dim]` each. Owned by the
/// sequence, not by the model, so one model serves many sequences.
pub struct KvCache {
    pub(crate) layers: CacheLayers,
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
    Q8 {
        keys: Vec<Q8Cache>,
        values: Vec<Q8Cache>,
    },
}

/// One layer's 8-bit keys or values: levels `[kv_heads, capacity, head_dim]`, scales
/// `[kv_heads, capacity]`.
pub(crate) struct Q8Cache {
    levels: Vec<i8>,
    scales: Vec<f32>,
}

impl Q8Cache {
    fn new(kv_heads: usize, capacity: usize, head_dim: usize) -> Self {
        Self {
            levels: vec![0; kv_heads * capacity * head_dim],
            scales: vec![0.0; kv_heads * capacity],
        }
    }

    pub(crate) fn rows(&self) -> Q8Rows<'_> {
        Q8Rows {
            levels: &self.levels,
            scales: &self.scales,
        }
    }

    /// Quantizes `rows` (`[kv_heads, n, head_dim]`, f32) into cache rows `past..past + n`.
    fn write(&mut self, rows: &Tensor, past: usize, capacity: usize) -> Result<()> {
        let (kv_heads, n, head_dim) = rows.dims3()?;
        let values = rows.flatten_all()?.to_vec1::<f32>()?;
        for head in 0..kv_heads {
            let first = head * capacity + past;
            keye_kernels::quantize_kv_rows(
                &values[head * n * head_dim..(head + 1) * n * head_dim],
                head_dim,
                &mut self.levels[first * head_dim..(first + n) * head_dim],
                &mut self.scales[first..first + n],
            )
            .map_err(candle_core::Error::wrap)?;
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
            KvCacheFormat::Q8 => {
                if !device.is_cpu() {
                    return Err(Error::InvalidInput(
                        "the 8-bit KV cache runs on the CPU only".into(),
                    ));
                }
                let alloc = || Q8Cache::new(kv_heads, capacity, head_dim);
                CacheLayers::Q8 {
                    keys: (0..layers).map(|_| alloc()).collect(),
                    values: (0..layers).map(|_| alloc()).collect(),
                }
            }
        };
        Ok(Self {
            layers: cache_layers,
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
        match self.layers {
            CacheLayers::F32 { .. } => KvCacheFormat::F32,
            CacheLayers::Q8 { .. } => KvCacheFormat::Q8,
        }
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
            CacheLayers::Q8 { keys: k, values: v } => {
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
