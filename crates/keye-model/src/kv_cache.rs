//! Per-sequence key/value cache, preallocated once at the request's full length so decoding
//! never reallocates or copies past entries.

use candle_core::{DType, Device, Tensor};

use crate::error::Result;

/// Keys and values of every layer, `[kv_heads, capacity, head_dim]` each. Owned by the
/// sequence, not by the model, so one model serves many sequences.
pub struct KvCache {
    pub(crate) keys: Vec<Tensor>,
    pub(crate) values: Vec<Tensor>,
    len: usize,
    capacity: usize,
}

impl KvCache {
    pub(crate) fn new(
        layers: usize,
        kv_heads: usize,
        head_dim: usize,
        capacity: usize,
        device: &Device,
    ) -> Result<Self> {
        let shape = (kv_heads, capacity, head_dim);
        let alloc = || Tensor::zeros(shape, DType::F32, device);
        Ok(Self {
            keys: (0..layers)
                .map(|_| alloc())
                .collect::<candle_core::Result<_>>()?,
            values: (0..layers)
                .map(|_| alloc())
                .collect::<candle_core::Result<_>>()?,
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

    pub(crate) fn advance(&mut self, tokens: usize) {
        self.len += tokens;
    }

    /// Counts the first `len` rows as filled without computing them (a new cache holds zeros
    /// there). Attention costs the same whatever the keys hold, so a benchmark can time work at
    /// a deep context without first running a prompt that long.
    pub fn assume_filled(&mut self, len: usize) -> Result<()> {
        if len > self.capacity {
            return Err(crate::error::Error::ContextOverflow {
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
