//! Media preprocessing for Keye-VL.
//!
//! Turns image and video sources into exactly the `pixel_values` and `grid_thw` that the
//! official Python pipeline (keye-vl-utils + the Hugging Face processor) produces. Plain arrays
//! only: this crate knows nothing about tensors, tokenizers or the model.
//!
//! Image path: [`load_image`] (fetch under a [`MediaPolicy`], decode like Pillow) →
//! [`preprocess_image`] (keye-vl-utils resize, processor resize, normalisation, patches).
//! [`plan_image`] gives the same sizes and token counts without touching pixels.
//!
//! Video path: [`load_video`] (fetch, probe with `ffprobe`, pick frames as keye-vl-utils does;
//! or load a frame list) → [`plan_video`] (slow/fast kinds, sizes, grids, timestamps, token
//! counts) → [`preprocess_video`]. [`SampledVideo::for_each_frame`] yields the sampled frames.
//!
//! keye-vl-utils' constants come from [`UtilsLimits`], which can read the environment
//! overrides of the deployments that honour them.

mod config;
mod decode;
mod error;
mod fetch;
mod grid;
mod image;
mod limits;
mod normalize;
mod options;
mod pipeline;
mod resample;
mod smart_resize;
mod torch_resample;
mod video;

pub use config::{Generation, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, ProcessorConfig};
pub use decode::{AlphaMode, ImageFormat, decode_image};
pub use error::{MediaError, Result};
pub use fetch::{
    MediaPolicy, MediaSource, PILLOW_MAX_IMAGE_PIXELS, describe_source, fetch_bytes, is_public,
    resolve_local_path,
};
pub use grid::GridThw;
pub use image::RgbImage;
pub use limits::UtilsLimits;
pub use normalize::{NormalizeLut, patchify};
pub use options::{ImageOptions, VideoOptions};
pub use pipeline::{
    ImagePlan, ImageSize, MAX_TARGET_PIXELS, ProcessedImage, load_image, plan_image,
    plan_image_with_limits, preprocess_image, preprocess_image_with_limits,
};
pub use resample::{ResampleFilter, resize, resize_reference};
pub use smart_resize::{MAX_ASPECT_RATIO, ResizeBounds, SmartResizeRule, smart_resize};
pub use torch_resample::{resize_torch_bilinear_aa, resize_torchvision_bicubic_aa};
pub use video::{
    FfmpegTools, FrameKind, FramePlan, FrameProgress, ProcessedVideo, SampledVideo, VideoInfo,
    VideoInput, VideoOrigin, VideoPlan, VideoSettings, VideoSizing, load_video, plan_video,
    preprocess_video, sample_decoded,
};
