use serde::Deserialize;

/// Per-image options of a message part, named like keye-vl-utils' element keys.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ImageOptions {
    pub min_pixels: Option<u64>,
    pub max_pixels: Option<u64>,
    pub resized_height: Option<u32>,
    pub resized_width: Option<u32>,
}

/// Per-video options of a message part, named like keye-vl-utils' element keys.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct VideoOptions {
    pub fps: Option<f64>,
    pub nframes: Option<u32>,
    pub min_frames: Option<u32>,
    pub max_frames: Option<u32>,
    pub min_pixels: Option<u64>,
    pub max_pixels: Option<u64>,
    pub total_pixels: Option<u64>,
    pub video_total_pixels: Option<u64>,
    pub video_start: Option<f64>,
    pub video_end: Option<f64>,
    pub resized_height: Option<u32>,
    pub resized_width: Option<u32>,
    pub min_frame_similarity: Option<f64>,
}
