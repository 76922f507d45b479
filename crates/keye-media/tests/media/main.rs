//! Integration tests of keye-media's image path, one binary with one module per area.

mod common;
mod decode;
mod fetch;
mod fixtures;
mod normalize;
mod resample;
mod smart_resize;
mod synth_pipeline;
mod video;
mod video_clips;
mod video_fixtures;
