//! GGML block-quantized weights: the `Q8_0`, `Q4_0` and `Q4_K` formats, byte for byte as GGML
//! lays them out, with GGML's reference quantizers and its dequantizers.
//!
//! Blocks are handled as bytes (never as `#[repr(C)]` structs) so tensor data straight from a
//! memory-mapped GGUF file works in place whatever its alignment. Multi-byte fields are
//! little-endian, as in GGUF.
//!
//! Precision: [`crate::linear`] on quantized weights rounds the activations to 8-bit blocks (as
//! llama.cpp does) and accumulates integer dot products, so its results are close to, not equal
//! to, an f32 product with the dequantized weights.

pub(crate) mod formats;
#[cfg(target_arch = "x86_64")]
mod gemm;
pub(crate) mod intdot;
pub(crate) mod matmul;

use std::fmt;
use std::str::FromStr;

use rayon::prelude::*;

use crate::error::KernelError;

/// A GGML block-quantization format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuantType {
    /// 32 values: f16 scale `d`, 32 × i8; value = `q · d`.
    Q8_0,
    /// 32 values: f16 scale `d`, 16 bytes of nibbles; value = `(q − 8) · d`.
    Q4_0,
    /// 256 values in 8 sub-blocks of 32: f16 `d`, f16 `dmin`, 12 bytes of packed 6-bit
    /// sub-block scales and mins, 128 bytes of nibbles; value = `d·sc · q − dmin·m`.
    Q4K,
}

impl QuantType {
    pub const ALL: [QuantType; 3] = [QuantType::Q8_0, QuantType::Q4_0, QuantType::Q4K];

    /// Values per block.
    pub const fn block_values(self) -> usize {
        match self {
            QuantType::Q8_0 | QuantType::Q4_0 => 32,
            QuantType::Q4K => 256,
        }
    }

    /// Bytes per block (GGML layout).
    pub const fn block_bytes(self) -> usize {
        match self {
            QuantType::Q8_0 => 34,
            QuantType::Q4_0 => 18,
            QuantType::Q4K => 144,
        }
    }

    /// The GGML / GGUF tensor type id.
    pub const fn ggml_type(self) -> u32 {
        match self {
            QuantType::Q4_0 => 2,
            QuantType::Q8_0 => 8,
            QuantType::Q4K => 12,
        }
    }

    pub fn from_ggml_type(id: u32) -> Option<QuantType> {
        QuantType::ALL.into_iter().find(|ty| ty.ggml_type() == id)
    }

    /// Lower-case name as in llama.cpp's file names: `q8_0`, `q4_0`, `q4_k`.
    pub const fn name(self) -> &'static str {
        match self {
            QuantType::Q8_0 => "q8_0",
            QuantType::Q4_0 => "q4_0",
            QuantType::Q4K => "q4_k",
        }
    }

    /// Bytes holding `values` values; an error unless `values` is a multiple of
    /// [`block_values`](Self::block_values).
    pub fn bytes_for(self, values: usize) -> Result<usize, KernelError> {
        if !values.is_multiple_of(self.block_values()) {
            return Err(KernelError::PartialBlock {
                quant: self.name(),
                values,
                block_values: self.block_values(),
            });
        }
        (values / self.block_values())
            .checked_mul(self.block_bytes())
            .ok_or(KernelError::SizeOverflow {
                kernel: "quantize",
                operand: "blocks",
            })
    }
}

impl FromStr for QuantType {
    type Err = KernelError;

    fn from_str(name: &str) -> Result<QuantType, KernelError> {
        QuantType::ALL
            .into_iter()
            .find(|ty| ty.name().eq_ignore_ascii_case(name.trim()))
            .ok_or_else(|| KernelError::UnknownQuantType {
                name: name.to_owned(),
            })
    }
}

impl fmt::Display for QuantType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Blocks one parallel quantize/dequantize task handles: large enough to amortise scheduling.
const BLOCKS_PER_TASK: usize = 64;

/// Quantizes `values` with GGML's reference quantizer for `ty` (`quantize_row_q8_0_ref`,
/// `quantize_row_q4_0_ref`, `quantize_row_q4_K_ref`), producing the same bytes as llama.cpp.
/// `out.len()` must equal `ty.bytes_for(values.len())`.
pub fn quantize(ty: QuantType, values: &[f32], out: &mut [u8]) -> Result<(), KernelError> {
    let bytes = ty.bytes_for(values.len())?;
    crate::error::expect_len("quantize", "out", out.len(), &[bytes])?;
    let (block_values, block_bytes) = (ty.block_values(), ty.block_bytes());
    values
        .par_chunks(block_values * BLOCKS_PER_TASK)
        .zip(out.par_chunks_mut(block_bytes * BLOCKS_PER_TASK))
        .for_each(|(values, out)| {
            for (values, block) in values
                .chunks_exact(block_values)
                .zip(out.chunks_exact_mut(block_bytes))
            {
                match ty {
                    QuantType::Q8_0 => formats::quantize_q8_0(values, block),
                    QuantType::Q4_0 => formats::quantize_q4_0(values, block),
                    QuantType::Q4K => formats::quantize_q4_k(values, block),
                }
            }
        });
    Ok(())
}

/// Decodes GGML blocks of type `ty` to f32, as GGML's `dequantize_row_*` do. `data.len()` must be
/// a whole number of blocks and `out.len()` the number of values they hold.
pub fn dequantize(ty: QuantType, data: &[u8], out: &mut [f32]) -> Result<(), KernelError> {
    let bytes = ty.bytes_for(out.len())?;
    crate::error::expect_len("dequantize", "data", data.len(), &[bytes])?;
    let (block_values, block_bytes) = (ty.block_values(), ty.block_bytes());
    data.par_chunks(block_bytes * BLOCKS_PER_TASK)
        .zip(out.par_chunks_mut(block_values * BLOCKS_PER_TASK))
        .for_each(|(data, out)| dequantize_blocks(ty, data, out));
    Ok(())
}

/// Serial [`dequantize`] of whole blocks; lengths already consistent.
pub(crate) fn dequantize_blocks(ty: QuantType, data: &[u8], out: &mut [f32]) {
    for (block, values) in data
        .chunks_exact(ty.block_bytes())
        .zip(out.chunks_exact_mut(ty.block_values()))
    {
        match ty {
            QuantType::Q8_0 => formats::dequantize_q8_0(block, values),
            QuantType::Q4_0 => formats::dequantize_q4_0(block, values),
            QuantType::Q4K => formats::dequantize_q4_k(block, values),
        }
    }
}
