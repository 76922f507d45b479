//! CPU kernels for Keye-VL inference, on plain slices.
//!
//! The numerics contract: activations are f32, weights are f32 or bf16 (widened exactly to f32
//! in registers), and every product accumulates in f32, so results match an f32 PyTorch
//! reference up to summation order. Activations are never rounded to bf16, except by
//! [`linear_bf16_products`], which does exactly that on request (PyTorch's bf16 semantics) to run
//! on AVX-512 BF16 dot products.
//!
//! GGML block-quantized weights ([`QuantType`]: `Q8_0`, `Q4_0`, `Q4_K`, byte-compatible with
//! GGUF files) are the exception, as in llama.cpp: [`linear`] rounds the activations to 8-bit
//! blocks of 32 (256 for `Q4_K` weights and at most [`STREAMING_MAX_ROWS`] rows, as llama.cpp's
//! `Q8_K`) and uses integer dot products, so its results are close to, not equal to, the f32
//! product with the dequantized weights (the error is bounded by `Σ |w| · absmax(x block) / 254`). Only for many rows on a CPU without AVX-512 VNNI does it
//! decode the weights to f32 panels and keep the activations exact. [`linear_bf16_products`] on
//! quantized weights, from 17 rows on a CPU with AMX, rounds the activations and the decoded
//! weights to bf16 instead. The optional compact KV caches
//! ([`CompactRows`], [`attention_causal_compact`]) likewise round what they store: to bf16, or
//! each cached row to 8 bits.
//!
//! Every kernel picks the best instruction set at run time (AVX-512, AVX2 + FMA, or portable
//! code; see [`SimdLevel`]), parallelises with rayon where the work is large enough, validates
//! its arguments (returning [`KernelError`] instead of panicking), and has a `*_reference` twin:
//! a plain, slow, f64-accumulating implementation used to test it.
//!
//! Layout conventions: matrices are row-major; weights are `[out_features, in_features]` as in
//! PyTorch; attention tensors are token-major `[tokens, heads, head_dim]`, KV caches
//! head-major `[kv_heads, capacity, head_dim]`.

mod activation;
mod amx;
mod attention;
mod attention_bf16;
mod bf16_products;
mod embedding;
mod error;
mod kv_compact;
mod linear;
mod math;
mod norm;
mod parallel;
mod quant;
mod simd;
#[cfg(test)]
mod tests;

pub use activation::{
    gelu_erf, gelu_erf_reference, gelu_tanh, gelu_tanh_reference, silu_mul, silu_mul_reference,
};
pub use attention::{
    attention_causal, attention_causal_reference, attention_segments, attention_segments_reference,
};
pub use attention_bf16::attention_segments_bf16_products;
pub use bf16_products::{linear_bf16_products, linear_bf16_products_reference};
pub use embedding::{gather_rows, gather_rows_reference};
pub use error::KernelError;
pub use kv_compact::{
    CompactRows, Q8Rows, attention_causal_compact, attention_causal_compact_reference,
    dequantize_kv_rows, quantize_kv_rows,
};
pub use linear::{STREAMING_MAX_ROWS, Weights, linear, linear_reference};
pub use norm::{layer_norm, layer_norm_reference, rms_norm, rms_norm_reference};
pub use quant::{QuantType, dequantize, quantize};
pub use simd::{SIMD_LEVEL_ENV, SimdLevel};
