//! Linear layers whose weights stay in the checkpoint's dtype (memory-mapped where possible) or
//! are quantized to GGML blocks at load, and run through our own kernels: candle's CPU bf16
//! matmul would widen every weight on every call.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use half::bf16;
use keye_kernels::{QuantType, Weights};
use memmap2::Mmap;
use rayon::prelude::*;

use crate::checkpoint::StoredTensor;
use crate::error::{Error, Result};
use crate::format::{MatmulPrecision, StoredDtype, encode_tensor, weight_buffer, widen};

enum MatrixData {
    MappedBf16(Arc<Mmap>, Range<usize>),
    MappedF32(Arc<Mmap>, Range<usize>),
    MappedQuantized(QuantType, Arc<Mmap>, Range<usize>),
    Bf16(Vec<bf16>),
    F32(Vec<f32>),
    Quantized(QuantType, Vec<u8>),
}

/// A row-major `[rows, cols]` weight matrix: bf16, f32 or GGML blocks.
pub struct MatrixWeight {
    rows: usize,
    cols: usize,
    data: MatrixData,
}

impl MatrixWeight {
    /// Takes a stored tensor of any rank ≥ 2 as `[shape[0], product of the rest]` (a conv kernel
    /// whose patch layout matches the input layout is a matrix too), as stored.
    pub fn from_stored(tensor: StoredTensor) -> Result<Self> {
        let dtype = tensor.dtype;
        Self::from_stored_as(tensor, dtype)
    }

    /// Like [`Self::from_stored`], converted to `target` (bf16 or GGML blocks; f16 is held as
    /// f32, which the kernels read). The mapping is used in place when nothing changes.
    pub fn from_stored_as(tensor: StoredTensor, target: StoredDtype) -> Result<Self> {
        let rows = tensor.shape.first().copied().unwrap_or(1);
        let cols = tensor.shape[1..].iter().product();
        let data = match (target, encode_tensor(&tensor, target)?) {
            (StoredDtype::Bf16, Cow::Borrowed(_)) if tensor.typed::<bf16>().is_some() => {
                let (map, range) = tensor.mapping();
                MatrixData::MappedBf16(map, range)
            }
            (StoredDtype::F32, Cow::Borrowed(_)) if tensor.typed::<f32>().is_some() => {
                let (map, range) = tensor.mapping();
                MatrixData::MappedF32(map, range)
            }
            (StoredDtype::Quantized(q), Cow::Borrowed(_)) => {
                let (map, range) = tensor.mapping();
                MatrixData::MappedQuantized(q, map, range)
            }
            (StoredDtype::Quantized(q), Cow::Owned(bytes)) => MatrixData::Quantized(q, bytes),
            // Misaligned data or a conversion: owned, in huge pages like quantized weights.
            (StoredDtype::Bf16, bytes) => {
                let mut values = weight_buffer::<bf16>(bytes.len() / 2);
                values
                    .par_chunks_mut(1 << 20)
                    .zip(bytes.par_chunks(2 << 20))
                    .for_each(|(values, bytes)| {
                        for (v, c) in values.iter_mut().zip(bytes.chunks_exact(2)) {
                            *v = bf16::from_le_bytes([c[0], c[1]]);
                        }
                    });
                MatrixData::Bf16(values)
            }
            (StoredDtype::F32 | StoredDtype::F16, bytes) => {
                MatrixData::F32(widen(target, &bytes).collect())
            }
        };
        Ok(Self { rows, cols, data })
    }

    /// `[rows, cols]` already in `q` blocks.
    pub(crate) fn from_blocks(q: QuantType, rows: usize, cols: usize, bytes: Vec<u8>) -> Self {
        Self {
            rows,
            cols,
            data: MatrixData::Quantized(q, bytes),
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub fn weights(&self) -> Weights<'_> {
        match &self.data {
            MatrixData::MappedBf16(map, range) => {
                Weights::Bf16(bytemuck::cast_slice(&map[range.clone()]))
            }
            MatrixData::MappedF32(map, range) => {
                Weights::F32(bytemuck::cast_slice(&map[range.clone()]))
            }
            MatrixData::MappedQuantized(q, map, range) => {
                Weights::Quantized(*q, &map[range.clone()])
            }
            MatrixData::Bf16(v) => Weights::Bf16(v),
            MatrixData::F32(v) => Weights::F32(v),
            MatrixData::Quantized(q, v) => Weights::Quantized(*q, v),
        }
    }

    /// How the matrix is held.
    pub fn dtype(&self) -> StoredDtype {
        match self.weights() {
            Weights::Bf16(_) => StoredDtype::Bf16,
            Weights::F32(_) => StoredDtype::F32,
            Weights::Quantized(q, _) => StoredDtype::Quantized(q),
        }
    }

    /// Bytes streamed per full pass over the matrix (one decode step).
    pub fn stored_bytes(&self) -> usize {
        match self.weights() {
            Weights::Bf16(w) => w.len() * 2,
            Weights::F32(w) => w.len() * 4,
            Weights::Quantized(_, w) => w.len(),
        }
    }

    /// Gathers rows widened to f32: the embedding lookup.
    pub fn gather_rows(&self, rows: &[u32], device: &candle_core::Device) -> Result<Tensor> {
        let mut out = vec![0f32; rows.len() * self.cols];
        let weights = self.weights();
        for (dst, &row) in out.chunks_exact_mut(self.cols).zip(rows) {
            let row = row as usize;
            if row >= self.rows {
                return Err(Error::InvalidInput(format!(
                    "token id {row} is outside the embedding table of {} rows",
                    self.rows
                )));
            }
            let span = row * self.cols..(row + 1) * self.cols;
            match weights {
                Weights::Bf16(w) => {
                    for (d, s) in dst.iter_mut().zip(&w[span]) {
                        *d = s.to_f32();
                    }
                }
                Weights::F32(w) => dst.copy_from_slice(&w[span]),
                Weights::Quantized(q, w) => {
                    let row_bytes = w.len() / self.rows;
                    keye_kernels::dequantize(q, &w[row * row_bytes..(row + 1) * row_bytes], dst)
                        .map_err(|e| Error::InvalidInput(format!("embedding row {row}: {e}")))?;
                }
            }
        }
        Ok(Tensor::from_vec(out, (rows.len(), self.cols), device)?)
    }
}

/// `y = x·Wᵀ + b` over the last dimension of `x`.
pub struct Linear {
    weight: MatrixWeight,
    bias: Option<Vec<f32>>,
    precision: MatmulPrecision,
}

impl Linear {
    pub fn new(weight: MatrixWeight, bias: Option<Vec<f32>>, precision: MatmulPrecision) -> Self {
        Self {
            weight,
            bias,
            precision,
        }
    }

    pub fn out_features(&self) -> usize {
        self.weight.rows
    }

    pub fn weight(&self) -> &MatrixWeight {
        &self.weight
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.contiguous()?;
        Ok(x.apply_op1_no_bwd(self)?)
    }
}

impl CustomOp1 for Linear {
    fn name(&self) -> &'static str {
        "keye-linear"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (start, end) = layout
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::RequiresContiguous { op: "keye-linear" })?;
        let x = &storage.as_slice::<f32>()?[start..end];
        let dims = layout.shape().dims();
        let k = *dims.last().unwrap_or(&0);
        if k != self.weight.cols {
            candle_core::bail!(
                "keye-linear: input has {k} features, weight expects {}",
                self.weight.cols
            );
        }
        let m = x.len().checked_div(k).unwrap_or(0);
        let n = self.weight.rows;
        let mut out = vec![0f32; m * n];
        let bias = self.bias.as_deref();
        match (self.weight.weights(), self.precision) {
            (weights @ (Weights::Bf16(_) | Weights::Quantized(..)), MatmulPrecision::Bf16) => {
                keye_kernels::linear_bf16_products(x, m, k, weights, n, bias, &mut out)
            }
            (weights, _) => keye_kernels::linear(x, m, k, weights, n, bias, &mut out),
        }
        .map_err(candle_core::Error::wrap)?;
        let mut out_dims = dims.to_vec();
        *out_dims.last_mut().expect("rank >= 1") = n;
        Ok((CpuStorage::F32(out), Shape::from(out_dims)))
    }
}
