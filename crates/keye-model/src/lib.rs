//! The Keye-VL model: configuration, memory-mapped checkpoint (safetensors or GGUF), weight
//! formats (bf16, f32, GGML blocks quantized at load), vision tower, `mlp_AR` projector, Qwen3
//! language model, 3-D positions, KV cache and sampling.
//!
//! Inputs are plain data (`pixel_values`, grids, token ids); this crate never decodes media or
//! renders templates.

mod checkpoint;
mod config;
mod error;
mod format;
pub mod gguf;
mod kv_cache;
mod layers;
mod linear;
mod llm;
mod model;
mod positions;
mod projector;
mod rope;
mod sampling;
mod vision;

pub use checkpoint::{Checkpoint, StoredTensor};
pub use config::{Architecture, GenerationConfig, KeyeConfig, RopeScaling, TokenIds, VisionConfig};
pub use error::{Error, Result};
pub use format::{
    MatmulPrecision, StoredDtype, WeightFormat, WeightFormats, WeightRole, encode_tensor,
};
pub use keye_kernels::QuantType;
pub use kv_cache::{KvCache, KvCacheFormat};
pub use linear::MatrixWeight;
pub use llm::{MAX_EXACT_VERIFY_ROWS, SequenceChunk, TextModel};
pub use model::{KeyeModel, VisualEmbeddings};
pub use positions::{PositionSpec, Positions, VideoBlock, rope_index};
pub use sampling::{Sampler, SamplingParams, argmax};
