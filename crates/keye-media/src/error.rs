use std::path::PathBuf;

/// Everything that can go wrong while turning a media source into model inputs.
///
/// `source_desc` fields describe where the media came from (a path, a URL, or a shortened data
/// URL) so that a message names the offending input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    #[error("cannot read {path}: {error}")]
    Io {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },

    #[error(
        "unsupported scheme `{scheme}` in media source {source_desc} (use a path, file://, http(s):// or data:)"
    )]
    UnsupportedScheme { scheme: String, source_desc: String },

    #[error("invalid data URL {source_desc}: {reason}")]
    InvalidDataUrl { source_desc: String, reason: String },

    #[error("media source {source_desc} refused by policy: {reason}")]
    PolicyRefused { source_desc: String, reason: String },

    #[error("media source {source_desc} is larger than the {limit_bytes}-byte limit")]
    SourceTooLarge {
        source_desc: String,
        limit_bytes: u64,
    },

    #[error("fetching {url} failed: {reason}")]
    Http { url: String, reason: String },

    #[error("fetching {url} timed out")]
    Timeout { url: String },

    #[error("{source_desc}: unrecognised image format (supported: JPEG, PNG, WebP, GIF, BMP)")]
    UnknownFormat { source_desc: String },

    #[error("{source_desc}: cannot decode {format} image: {reason}")]
    Decode {
        source_desc: String,
        format: &'static str,
        reason: String,
    },

    #[error(
        "{source_desc}: image is {width}x{height} ({} pixels), above the limit of {max_pixels} pixels",
        u64::from(*width) * u64::from(*height)
    )]
    ImageTooLarge {
        source_desc: String,
        width: u32,
        height: u32,
        max_pixels: u64,
    },

    #[error(
        "absolute aspect ratio must be smaller than {max_ratio}, got {ratio} (image {height}x{width} HxW)"
    )]
    AspectRatio {
        height: u64,
        width: u64,
        ratio: f64,
        max_ratio: f64,
    },

    #[error("invalid image size {width}x{height}: {reason}")]
    InvalidSize {
        width: u64,
        height: u64,
        reason: String,
    },

    #[error("cannot encode image: {reason}")]
    Encode { reason: String },

    #[error("invalid processor config: {reason}")]
    Config { reason: String },

    #[error(
        "cannot run `{program}`: {reason} (video input needs FFmpeg's `ffmpeg` and `ffprobe` \
         programs on the PATH, e.g. `apt-get install ffmpeg`)"
    )]
    ToolMissing { program: String, reason: String },

    #[error("`{program}` failed on {source_desc}: {reason}")]
    ToolFailed {
        program: String,
        source_desc: String,
        reason: String,
    },

    #[error("`{program}` took longer than the {seconds} s limit on {source_desc}")]
    ToolTimeout {
        program: String,
        source_desc: String,
        seconds: f64,
    },

    #[error("{source_desc}: {reason}")]
    InvalidVideo { source_desc: String, reason: String },

    #[error(
        "{source_desc}: video frames are {width}x{height} ({} pixels), above the limit of {max_pixels} pixels",
        u64::from(*width) * u64::from(*height)
    )]
    FrameTooLarge {
        source_desc: String,
        width: u32,
        height: u32,
        max_pixels: u64,
    },

    #[error("invalid video options: {reason}")]
    VideoOptions { reason: String },

    #[error("the video would take {tokens} visual tokens, above the limit of {limit}")]
    TooManyVideoTokens { tokens: u64, limit: u64 },
}

pub type Result<T, E = MediaError> = std::result::Result<T, E>;
