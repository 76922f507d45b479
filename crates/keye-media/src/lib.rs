//! Media preprocessing for Keye-VL.
//!
//! Turns image (and later video) sources into exactly the `pixel_values` and `grid_thw` that the
//! official Python pipeline (keye-vl-utils + the Hugging Face processor) produces. Plain arrays
//! only: this crate knows nothing about tensors, tokenizers or the model.

mod grid;
mod options;

pub use grid::GridThw;
pub use options::{ImageOptions, VideoOptions};
