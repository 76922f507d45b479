//! The video path of the official pipelines.
//!
//! * Keye-VL-1.5 (keye-vl-utils 1.5.2 + the 1.5 processor): frames sampled at up to 2 fps, each
//!   with a timestamp; frames classified slow or fast by HSV patch similarity; one size for slow
//!   frames and a smaller one for fast frames from the token budget; every frame resized with
//!   torch's uint8 bilinear antialias and cut into patches on its own.
//! * Keye-VL-8B-Preview (keye-vl-utils 1.0.0 + the Preview processor): an even number of
//!   frames, one size for all of them from the per-video pixel budget, torchvision's bicubic
//!   antialias, then the processor's own resize; one `[T, h, w]` grid per video.
//!
//! [`load_video`] fetches and probes the source and picks the frames, [`plan_video`] computes
//! every size and token count (for Keye-VL-1.5 it decodes the frames once to classify them),
//! and [`preprocess_video`] produces `pixel_values`. [`SampledVideo::for_each_frame`] hands out
//! the sampled frames themselves.

mod budget;
mod ffmpeg;
mod sampling;
mod similarity;

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rayon::prelude::*;

pub use ffmpeg::{FfmpegTools, VideoInfo};

use crate::config::{Generation, ProcessorConfig};
use crate::decode::decode_labelled;
use crate::error::{MediaError, Result};
use crate::fetch::{
    MediaPolicy, MediaSource, describe_source, fetch_bytes, fetch_remote_into, resolve_local_path,
};
use crate::grid::GridThw;
use crate::image::RgbImage;
use crate::limits::UtilsLimits;
use crate::normalize::{NormalizeLut, patchify_into};
use crate::options::VideoOptions;
use crate::pipeline::{
    ImageSize, check_target_area, processor_target, resize_if_needed, to_size, utils_target,
};
use crate::resample::{ResampleFilter, resize};
use crate::smart_resize::{SmartResizeRule, smart_resize_with};
use crate::torch_resample::{resize_torch_bilinear_aa, resize_torchvision_bicubic_aa};

/// Decoded frames are kept in memory between the planning and the pixel pass up to this many
/// bytes; longer videos are decoded twice instead.
const FRAME_CACHE_BYTES: usize = 512 << 20;

/// A video part's media.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VideoInput<'a> {
    /// A path, `file://`, `http(s)://` or `data:` URL of a video file.
    File(&'a str),
    /// Frame images (each a path or URL), in order.
    Frames(&'a [String]),
}

/// Everything loading a video needs besides the part itself.
#[derive(Clone, Debug, PartialEq)]
pub struct VideoSettings {
    pub generation: Generation,
    pub limits: UtilsLimits,
    pub policy: MediaPolicy,
    pub tools: FfmpegTools,
}

impl VideoSettings {
    /// The released keye-vl-utils constants, the default policy, FFmpeg from the `PATH`.
    pub fn new(generation: Generation) -> Self {
        Self {
            generation,
            limits: UtilsLimits::defaults(generation),
            policy: MediaPolicy::default(),
            tools: FfmpegTools::default(),
        }
    }
}

/// Where sampled frames come from.
#[derive(Clone, Debug, PartialEq)]
pub enum VideoOrigin {
    /// A video file, as probed.
    File(VideoInfo),
    /// A list of frame images, with the part's `fps` if it states one.
    FrameList {
        frame_count: usize,
        fps: Option<f64>,
    },
}

impl VideoOrigin {
    /// Frames in the source.
    pub fn frame_count(&self) -> u64 {
        match self {
            Self::File(info) => info.frame_count,
            Self::FrameList { frame_count, .. } => *frame_count as u64,
        }
    }

    /// Frames per second of the source, if known.
    pub fn fps(&self) -> Option<f64> {
        match self {
            Self::File(info) => Some(info.avg_fps),
            Self::FrameList { fps, .. } => *fps,
        }
    }
}

/// Decoding progress of a video file: `done` of its `total` sampled frames decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameProgress {
    pub done: usize,
    pub total: usize,
}

type ProgressCallback = Arc<dyn Fn(FrameProgress) + Send + Sync>;

/// The frames a video contributes, chosen as the reference chooses them, with access to their
/// pixels.
pub struct SampledVideo {
    pub origin: VideoOrigin,
    /// Source frame of each sampled frame, in chronological order.
    pub frame_indices: Vec<u64>,
    /// Seconds from the start of the video of each sampled frame: Keye-VL-1.5 video files, and
    /// Keye-VL-1.5 frame lists whose part states `fps`.
    pub timestamps: Option<Vec<f32>>,
    /// Size of the sampled frames before the model's resize (decoded size; for frame lists,
    /// the size keye-vl-utils gave the first frame).
    pub frame_size: ImageSize,
    /// Keye-VL-8B-Preview: sampled frames per second of video, the processor's `fps`.
    pub sample_fps: Option<f64>,
    options: VideoOptions,
    settings: VideoSettings,
    source_desc: String,
    frames: FrameStore,
    progress: Option<ProgressCallback>,
}

enum FrameStore {
    /// One image per sampled frame.
    Memory(Vec<RgbImage>),
    /// Decoded on demand; kept after the first pass when small enough.
    Decoder {
        file: LocalVideo,
        cache: OnceLock<Vec<RgbImage>>,
    },
}

/// A video file `ffmpeg` can read: the user's own, or a download deleted on drop.
enum LocalVideo {
    Path(PathBuf),
    Download(tempfile::NamedTempFile),
}

impl LocalVideo {
    fn path(&self) -> &Path {
        match self {
            Self::Path(path) => path,
            Self::Download(file) => file.path(),
        }
    }
}

impl std::fmt::Debug for SampledVideo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SampledVideo")
            .field("source", &self.source_desc)
            .field("origin", &self.origin)
            .field("frame_indices", &self.frame_indices)
            .field("timestamps", &self.timestamps)
            .field("frame_size", &self.frame_size)
            .field("sample_fps", &self.sample_fps)
            .finish_non_exhaustive()
    }
}

/// Slow (key) and fast frames of Keye-VL-1.5 (`frame_types` 0 and 1 of keye-vl-utils).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrameKind {
    Slow,
    Fast,
}

/// One sampled frame as the model sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FramePlan {
    /// Index of the frame in the source.
    pub source_index: u64,
    /// Seconds from the start of the video (see [`SampledVideo::timestamps`]).
    pub timestamp: Option<f32>,
    /// Keye-VL-1.5 only.
    pub kind: Option<FrameKind>,
    /// Size the frame is cut into patches at.
    pub size: ImageSize,
    /// `[1, h/patch, w/patch]`.
    pub grid: GridThw,
    /// `<|video_pad|>` placeholders of this frame (patches / merge²).
    pub tokens: usize,
}

impl FramePlan {
    /// The timestamp as the prompt writes it, Python's `format(ts, ".1f")`.
    pub fn timestamp_text(&self) -> Option<String> {
        self.timestamp.map(|ts| format!("{:.1}", f64::from(ts)))
    }
}

/// How the frames of a video were sized.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum VideoSizing {
    /// Keye-VL-1.5: keye-vl-utils' `height`/`width` (slow frames) and
    /// `fast_height`/`fast_width`.
    SlowFast {
        slow_size: ImageSize,
        fast_size: ImageSize,
    },
    /// Keye-VL-8B-Preview: one size for every frame.
    Uniform {
        /// Size after keye-vl-utils' resize, before the processor's.
        utils_size: ImageSize,
        /// The processor's `second_per_grid_ts` entry: `1 / sample_fps` as `f32`.
        second_per_grid: f32,
    },
}

/// Every size and token count of a video, without its pixels.
#[derive(Clone, Debug, PartialEq)]
pub struct VideoPlan {
    pub origin: VideoOrigin,
    /// The sampled frames, chronological.
    pub frames: Vec<FramePlan>,
    /// This video's rows of `video_grid_thw`: Keye-VL-1.5 merges runs of equal per-frame rows
    /// into `[run, h, w]`; the Preview has one `[T, h, w]` row.
    pub grid_rows: Vec<GridThw>,
    pub sizing: VideoSizing,
    /// All `<|video_pad|>` placeholders of the video.
    pub tokens: usize,
}

impl VideoPlan {
    /// Rows of `pixel_values` the video produces.
    pub fn patches(&self) -> usize {
        self.grid_rows.iter().map(GridThw::patches).sum()
    }
}

/// One video ready for the vision tower.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessedVideo {
    /// `[plan.patches(), 3, patch, patch]` row-major: frames in chronological order, each
    /// frame's patches in raster order.
    pub pixel_values: Vec<f32>,
    pub plan: VideoPlan,
}

/// Fetches the video `input` refers to and picks its frames: probes a file (frames are decoded
/// later, on demand), or loads, converts and resizes every image of a frame list as
/// keye-vl-utils' `fetch_image` does. Relative paths resolve against `base_dir`.
pub fn load_video(
    input: VideoInput<'_>,
    base_dir: Option<&Path>,
    opts: &VideoOptions,
    settings: &VideoSettings,
) -> Result<SampledVideo> {
    match input {
        VideoInput::File(source) => load_file(source, base_dir, opts, settings),
        VideoInput::Frames(sources) => load_frame_list(sources, base_dir, opts, settings),
    }
}

/// Samples a video whose frames were decoded elsewhere: `info` describes the source and
/// `frames` are the decoded frames at the indices the sampling picks (checked).
pub fn sample_decoded(
    info: VideoInfo,
    frames: Vec<RgbImage>,
    opts: &VideoOptions,
    settings: &VideoSettings,
) -> Result<SampledVideo> {
    let source_desc = "decoded frames".to_owned();
    let sampling = FileSampling::new(&info, opts, settings)?;
    if frames.len() != sampling.frame_indices.len() {
        return Err(MediaError::InvalidVideo {
            source_desc,
            reason: format!(
                "{} frames given, the sampling picks {}",
                frames.len(),
                sampling.frame_indices.len()
            ),
        });
    }
    let size = ImageSize {
        width: info.width,
        height: info.height,
    };
    check_frame_sizes(&frames, size, &source_desc)?;
    Ok(sampling.into_video(
        info,
        opts,
        settings,
        source_desc,
        FrameStore::Memory(frames),
    ))
}

impl SampledVideo {
    /// Number of sampled frames.
    pub fn len(&self) -> usize {
        self.frame_indices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frame_indices.is_empty()
    }

    /// Calls `callback` as the frames of a video file are decoded (`done` of `total`; a pass
    /// over a video too long to keep in memory decodes them again).
    pub fn set_progress(&mut self, callback: impl Fn(FrameProgress) + Send + Sync + 'static) {
        self.progress = Some(Arc::new(callback));
    }

    /// Hands each sampled frame, in chronological order, to `visit` with its position. Video
    /// files are decoded by `ffmpeg`: all at once and kept for later passes when they fit in
    /// 512 MiB, else streamed one frame at a time.
    pub fn for_each_frame(
        &self,
        mut visit: impl FnMut(usize, &RgbImage) -> Result<()>,
    ) -> Result<()> {
        if let Some(frames) = self.frames_in_memory()? {
            for (position, frame) in frames.iter().enumerate() {
                visit(position, frame)?;
            }
            return Ok(());
        }
        self.decode(|position, frame| visit(position, &frame))
    }

    /// The sampled frames, if they are in memory or a small video file's frames fit there (then
    /// they are decoded now and kept).
    fn frames_in_memory(&self) -> Result<Option<&[RgbImage]>> {
        let cache = match &self.frames {
            FrameStore::Memory(frames) => return Ok(Some(frames)),
            FrameStore::Decoder { cache, .. } => cache,
        };
        if let Some(frames) = cache.get() {
            return Ok(Some(frames));
        }
        let frame_bytes = self.frame_size.width as usize * self.frame_size.height as usize * 3;
        if frame_bytes.saturating_mul(self.len()) > FRAME_CACHE_BYTES {
            return Ok(None);
        }
        let mut frames = Vec::with_capacity(self.len());
        self.decode(|_, frame| {
            frames.push(frame);
            Ok(())
        })?;
        Ok(Some(cache.get_or_init(|| frames)))
    }

    /// Decodes the sampled frames of the video file in order, reporting progress; an index
    /// sampled twice is decoded once and visited twice.
    fn decode(&self, mut visit: impl FnMut(usize, RgbImage) -> Result<()>) -> Result<()> {
        let (VideoOrigin::File(info), FrameStore::Decoder { file, .. }) =
            (&self.origin, &self.frames)
        else {
            return Err(MediaError::InvalidVideo {
                source_desc: self.source_desc.clone(),
                reason: "only video files are decoded".into(),
            });
        };
        let total = self.len();
        let mut unique: Vec<u64> = self.frame_indices.clone();
        unique.dedup();
        let mut position = 0;
        ffmpeg::decode_frames(
            file.path(),
            info,
            &unique,
            &self.settings.tools,
            self.settings.policy.video_timeout,
            &self.source_desc,
            |unique_position, frame| {
                let index = unique[unique_position];
                let copies = self.frame_indices[position..]
                    .iter()
                    .take_while(|&&i| i == index)
                    .count();
                let mut visit_next = |frame| {
                    visit(position, frame)?;
                    position += 1;
                    if let Some(progress) = &self.progress {
                        progress(FrameProgress {
                            done: position,
                            total,
                        });
                    }
                    Ok(())
                };
                for _ in 1..copies {
                    visit_next(frame.clone())?;
                }
                if copies > 0 {
                    visit_next(frame)?;
                }
                Ok(())
            },
        )
    }
}

/// Computes every frame's kind, size, grid and token count. For Keye-VL-1.5 this decodes the
/// sampled frames once (at their stored size) to classify them slow or fast; the Preview needs
/// no pixels.
pub fn plan_video(video: &SampledVideo, cfg: &ProcessorConfig) -> Result<VideoPlan> {
    match video.settings.generation {
        Generation::V1_5 => plan_slow_fast(video, cfg),
        Generation::Preview => plan_uniform(video, cfg),
    }
}

/// Resizes, normalises and patchifies every sampled frame as `plan` (from [`plan_video`] on
/// the same video and config) says.
pub fn preprocess_video(
    video: &SampledVideo,
    plan: &VideoPlan,
    cfg: &ProcessorConfig,
) -> Result<ProcessedVideo> {
    if plan.frames.len() != video.len() {
        return Err(MediaError::InvalidVideo {
            source_desc: video.source_desc.clone(),
            reason: format!(
                "the plan has {} frames, the video {}",
                plan.frames.len(),
                video.len()
            ),
        });
    }
    let limit = video.settings.policy.max_video_tokens;
    if plan.tokens as u64 > limit {
        return Err(MediaError::TooManyVideoTokens {
            tokens: plan.tokens as u64,
            limit,
        });
    }
    let patch_values = 3 * (cfg.patch_size as usize).pow(2);
    let total_values: usize =
        plan.frames.iter().map(|f| f.grid.patches()).sum::<usize>() * patch_values;
    let mut pixel_values = vec![0f32; total_values];
    let mut slots = Vec::with_capacity(plan.frames.len());
    let mut rest = pixel_values.as_mut_slice();
    for frame in &plan.frames {
        let (slot, tail) = rest.split_at_mut(frame.grid.patches() * patch_values);
        slots.push(slot);
        rest = tail;
    }
    let lut = NormalizeLut::new(cfg);
    let fill = |position: usize, frame: &RgbImage, out: &mut [f32]| -> Result<()> {
        let target = plan.frames[position].size;
        let resized = match (video.settings.generation, &plan.sizing) {
            (Generation::V1_5, _) => torch_resize_if_needed(frame, target)?,
            (Generation::Preview, VideoSizing::Uniform { utils_size, .. }) => {
                preview_resize(video, frame, *utils_size, target, cfg)?
            }
            (Generation::Preview, VideoSizing::SlowFast { .. }) => {
                return Err(MediaError::InvalidVideo {
                    source_desc: video.source_desc.clone(),
                    reason: "a slow/fast plan cannot drive a Keye-VL-8B-Preview video".into(),
                });
            }
        };
        patchify_into(&resized, &lut, cfg.patch_size, out)
    };
    match video.frames_in_memory()? {
        Some(frames) => frames
            .par_iter()
            .zip(slots.par_iter_mut())
            .enumerate()
            .try_for_each(|(position, (frame, out))| fill(position, frame, out))?,
        None => video.for_each_frame(|position, frame| fill(position, frame, slots[position]))?,
    }
    Ok(ProcessedVideo {
        pixel_values,
        plan: plan.clone(),
    })
}

fn torch_resize_if_needed(frame: &RgbImage, size: ImageSize) -> Result<Cow<'_, RgbImage>> {
    if frame.width() == size.width && frame.height() == size.height {
        return Ok(Cow::Borrowed(frame));
    }
    resize_torch_bilinear_aa(frame, size.width, size.height).map(Cow::Owned)
}

/// The Preview's two resizes: keye-vl-utils' torchvision bicubic (video files only; frame-list
/// images were resized on loading), then the processor's PIL resize when its bounds move the
/// size.
fn preview_resize<'a>(
    video: &SampledVideo,
    frame: &'a RgbImage,
    utils_size: ImageSize,
    target: ImageSize,
    cfg: &ProcessorConfig,
) -> Result<Cow<'a, RgbImage>> {
    let stage_a = match video.origin {
        VideoOrigin::File(_)
            if (frame.width(), frame.height()) != (utils_size.width, utils_size.height) =>
        {
            Cow::Owned(resize_torchvision_bicubic_aa(
                frame,
                utils_size.width,
                utils_size.height,
            )?)
        }
        _ => Cow::Borrowed(frame),
    };
    resize_if_needed(stage_a, target, cfg.resample)
}

fn plan_slow_fast(video: &SampledVideo, cfg: &ProcessorConfig) -> Result<VideoPlan> {
    let limits = &video.settings.limits;
    let opts = &video.options;
    let threshold = opts
        .min_frame_similarity
        .unwrap_or(similarity::DEFAULT_MIN_FRAME_SIMILARITY);
    let mut classifier = similarity::SlowFastClassifier::new(
        similarity::comparison_size(video.frame_size, limits)?,
        threshold,
    );
    let mut kinds = Vec::with_capacity(video.len());
    video.for_each_frame(|_, frame| {
        kinds.push(if classifier.is_slow(frame)? {
            FrameKind::Slow
        } else {
            FrameKind::Fast
        });
        Ok(())
    })?;
    let n_fast = kinds.iter().filter(|&&k| k == FrameKind::Fast).count();
    let (slow_size, fast_size) =
        budget::slow_fast_sizes(video.frame_size, kinds.len() - n_fast, n_fast, opts, limits)?;
    let mut frames = Vec::with_capacity(kinds.len());
    for (position, kind) in kinds.into_iter().enumerate() {
        let size = match kind {
            FrameKind::Slow => slow_size,
            FrameKind::Fast => fast_size,
        };
        let (grid, tokens) = frame_grid(size, cfg)?;
        frames.push(FramePlan {
            source_index: video.frame_indices[position],
            timestamp: video.timestamps.as_ref().map(|ts| ts[position]),
            kind: Some(kind),
            size,
            grid,
            tokens,
        });
    }
    let mut grid_rows: Vec<GridThw> = Vec::new();
    for frame in &frames {
        match grid_rows.last_mut() {
            Some(row) if (row.h, row.w) == (frame.grid.h, frame.grid.w) => row.t += 1,
            _ => grid_rows.push(frame.grid),
        }
    }
    Ok(VideoPlan {
        origin: video.origin.clone(),
        tokens: frames.iter().map(|f| f.tokens).sum(),
        frames,
        grid_rows,
        sizing: VideoSizing::SlowFast {
            slow_size,
            fast_size,
        },
    })
}

fn plan_uniform(video: &SampledVideo, cfg: &ProcessorConfig) -> Result<VideoPlan> {
    let utils_size = match video.origin {
        VideoOrigin::File(_) => preview_utils_size(
            video.frame_size,
            video.len(),
            &video.options,
            &video.settings.limits,
        )?,
        VideoOrigin::FrameList { .. } => video.frame_size,
    };
    let size = check_target_area(processor_target(utils_size, cfg, Generation::Preview)?)?;
    let (frame_grid, frame_tokens) = frame_grid(size, cfg)?;
    let sample_fps = video.sample_fps.unwrap_or(sampling::DEFAULT_FPS);
    let frames: Vec<FramePlan> = video
        .frame_indices
        .iter()
        .map(|&source_index| FramePlan {
            source_index,
            timestamp: None,
            kind: None,
            size,
            grid: frame_grid,
            tokens: frame_tokens,
        })
        .collect();
    let grid = GridThw::new(frames.len(), frame_grid.h, frame_grid.w);
    Ok(VideoPlan {
        origin: video.origin.clone(),
        tokens: grid.tokens(cfg.merge_size as usize),
        frames,
        grid_rows: vec![grid],
        sizing: VideoSizing::Uniform {
            utils_size,
            // `temporal_patch_size / fps` in Python, stored in a float32 tensor.
            second_per_grid: (f64::from(cfg.temporal_patch_size) / sample_fps) as f32,
        },
    })
}

/// keye-vl-utils 1.0.0's frame size for a decoded video: frames share the per-video budget
/// (twice their share, a leftover of Qwen2-VL's frame pairs), within `min_pixels` and the
/// per-frame maximum; `resized_height`/`resized_width` override it with the image bounds.
fn preview_utils_size(
    frame: ImageSize,
    frames: usize,
    opts: &VideoOptions,
    limits: &UtilsLimits,
) -> Result<ImageSize> {
    let rule = SmartResizeRule::UtilsV1_0;
    let (h, w) = if let (Some(h), Some(w)) = (opts.resized_height, opts.resized_width) {
        let bounds = limits.image_bounds();
        smart_resize_with(
            h.into(),
            w.into(),
            bounds.factor,
            bounds.min_pixels as f64,
            bounds.max_pixels as f64,
            rule,
        )?
    } else {
        let min_pixels = opts.min_pixels.unwrap_or(limits.video_min_pixels) as f64;
        let total_pixels = opts.total_pixels.unwrap_or(limits.video_total_pixels) as f64;
        let share = (total_pixels / frames as f64 * 2.0).min(limits.video_max_pixels as f64);
        let limit = share.max((min_pixels * 1.05).trunc());
        let max_pixels = opts.max_pixels.map_or(limit, |m| (m as f64).min(limit));
        smart_resize_with(
            frame.height.into(),
            frame.width.into(),
            limits.factor,
            min_pixels,
            max_pixels,
            rule,
        )?
    };
    check_target_area(to_size(w, h)?)
}

/// The `[1, h/patch, w/patch]` grid and token count of a frame cut at `size`.
fn frame_grid(size: ImageSize, cfg: &ProcessorConfig) -> Result<(GridThw, usize)> {
    let (patch, merge) = (cfg.patch_size, cfg.merge_size);
    let unit = patch * merge;
    if !size.width.is_multiple_of(unit) || !size.height.is_multiple_of(unit) {
        return Err(MediaError::InvalidSize {
            width: size.width.into(),
            height: size.height.into(),
            reason: format!(
                "frame size is not a multiple of {unit} (patch {patch} × merge {merge})"
            ),
        });
    }
    let grid = GridThw::new(
        1,
        (size.height / patch) as usize,
        (size.width / patch) as usize,
    );
    Ok((grid, grid.tokens(merge as usize)))
}

fn load_file(
    source: &str,
    base_dir: Option<&Path>,
    opts: &VideoOptions,
    settings: &VideoSettings,
) -> Result<SampledVideo> {
    let source_desc = describe_source(source);
    let policy = &settings.policy;
    let file = match MediaSource::parse(source)? {
        MediaSource::Path(path) => {
            let path = resolve_local_path(path, base_dir, policy)?;
            // A missing file is the user's mistake, not the decoder's: name the path.
            std::fs::metadata(&path).map_err(|error| MediaError::Io {
                path: path.clone(),
                error,
            })?;
            LocalVideo::Path(path)
        }
        MediaSource::Remote(url) => {
            let mut temp = temp_file()?;
            fetch_remote_into(url, policy, policy.max_video_bytes, temp.as_file_mut())?;
            LocalVideo::Download(temp)
        }
        MediaSource::Data(_) => {
            let data_policy = MediaPolicy {
                max_bytes: policy.max_video_bytes,
                ..policy.clone()
            };
            let bytes = fetch_bytes(source, base_dir, &data_policy)?;
            let mut temp = temp_file()?;
            std::io::Write::write_all(temp.as_file_mut(), &bytes).map_err(|error| {
                MediaError::Io {
                    path: temp.path().to_owned(),
                    error,
                }
            })?;
            LocalVideo::Download(temp)
        }
    };
    let info = ffmpeg::probe(
        file.path(),
        &settings.tools,
        policy.video_timeout,
        &source_desc,
    )?;
    let pixels = u64::from(info.width) * u64::from(info.height);
    if pixels > policy.max_image_pixels {
        return Err(MediaError::FrameTooLarge {
            source_desc,
            width: info.width,
            height: info.height,
            max_pixels: policy.max_image_pixels,
        });
    }
    let sampling = FileSampling::new(&info, opts, settings)?;
    let frames = FrameStore::Decoder {
        file,
        cache: OnceLock::new(),
    };
    Ok(sampling.into_video(info, opts, settings, source_desc, frames))
}

fn temp_file() -> Result<tempfile::NamedTempFile> {
    tempfile::NamedTempFile::new().map_err(|error| MediaError::Io {
        path: std::env::temp_dir(),
        error,
    })
}

/// The frames of a probed video file, picked with the rules of the settings' generation.
struct FileSampling {
    frame_indices: Vec<u64>,
    timestamps: Option<Vec<f32>>,
    sample_fps: Option<f64>,
}

impl FileSampling {
    fn new(info: &VideoInfo, opts: &VideoOptions, settings: &VideoSettings) -> Result<Self> {
        let fps = info.avg_fps;
        let (start, end) = sampling::frame_range(info.frame_count, fps, opts)?;
        let window = end - start + 1;
        Ok(match settings.generation {
            Generation::V1_5 => {
                let n = sampling::v1_5_frame_count(window, fps, opts, &settings.limits)?;
                let frame_indices = sampling::linspace_indices(start, end, n);
                let timestamps = Some(sampling::timestamps(&frame_indices, fps));
                Self {
                    frame_indices,
                    timestamps,
                    sample_fps: None,
                }
            }
            Generation::Preview => {
                let n = sampling::preview_frame_count(window, fps, opts)?;
                Self {
                    frame_indices: sampling::linspace_indices(start, end, n),
                    timestamps: None,
                    sample_fps: Some(n as f64 / (window as f64).max(1e-6) * fps),
                }
            }
        })
    }

    fn into_video(
        self,
        info: VideoInfo,
        opts: &VideoOptions,
        settings: &VideoSettings,
        source_desc: String,
        frames: FrameStore,
    ) -> SampledVideo {
        SampledVideo {
            frame_size: ImageSize {
                width: info.width,
                height: info.height,
            },
            origin: VideoOrigin::File(info),
            frame_indices: self.frame_indices,
            timestamps: self.timestamps,
            sample_fps: self.sample_fps,
            options: opts.clone(),
            settings: settings.clone(),
            source_desc,
            frames,
            progress: None,
        }
    }
}

/// keye-vl-utils' frame-list videos: every image is fetched like an image part (with the
/// video's size keys, and for Keye-VL-1.5 the per-frame video bounds), then frames are sampled
/// from the list. Keye-VL-1.5 needs equal frame sizes; the Preview pads to an even count.
fn load_frame_list(
    sources: &[String],
    base_dir: Option<&Path>,
    opts: &VideoOptions,
    settings: &VideoSettings,
) -> Result<SampledVideo> {
    let source_desc = match sources {
        [] => "an empty frame list".to_owned(),
        [first, ..] => format!(
            "frame list {} (+{} more)",
            describe_source(first),
            sources.len() - 1
        ),
    };
    if sources.is_empty() {
        return Err(MediaError::InvalidVideo {
            source_desc,
            reason: "a video needs at least one frame".into(),
        });
    }
    let generation = settings.generation;
    let limits = &settings.limits;
    let default_bounds = match generation {
        Generation::V1_5 => limits.video_bounds(),
        Generation::Preview => limits.image_bounds(),
    };
    let frame_opts = opts.frame_options();
    let pixel_budget = settings
        .policy
        .max_video_tokens
        .saturating_mul(limits.factor * limits.factor);
    let mut held_pixels = 0u64;
    let mut images = Vec::with_capacity(sources.len());
    for source in sources {
        let bytes = fetch_bytes(source, base_dir, &settings.policy)?;
        let decoded = decode_labelled(
            &bytes,
            generation.alpha_mode(),
            settings.policy.max_image_pixels,
            &describe_source(source),
        )?;
        let size = utils_target(
            decoded.width(),
            decoded.height(),
            &frame_opts,
            default_bounds,
            limits.image_bounds(),
            generation,
        )?;
        held_pixels += u64::from(size.width) * u64::from(size.height);
        if held_pixels > pixel_budget {
            return Err(MediaError::TooManyVideoTokens {
                tokens: held_pixels / (limits.factor * limits.factor),
                limit: settings.policy.max_video_tokens,
            });
        }
        // keye-vl-utils resizes with PIL's default filter, bicubic.
        let resized = if (decoded.width(), decoded.height()) == (size.width, size.height) {
            decoded
        } else {
            resize(&decoded, size.width, size.height, ResampleFilter::Bicubic)?
        };
        images.push(resized);
    }
    let first = ImageSize {
        width: images[0].width(),
        height: images[0].height(),
    };
    let count = images.len();
    let (frame_indices, timestamps, sample_fps) = match generation {
        Generation::V1_5 => {
            check_frame_sizes(&images, first, &source_desc)?;
            let fps = opts.fps.unwrap_or(sampling::DEFAULT_FPS);
            let n = sampling::v1_5_frame_count(count as u64, fps, opts, limits)?;
            let indices = sampling::linspace_indices(0, count as u64 - 1, n);
            let timestamps = opts.fps.map(|fps| sampling::timestamps(&indices, fps));
            (indices, timestamps, None)
        }
        Generation::Preview => {
            // Padded to an even count by repeating the last frame.
            let padded = count.div_ceil(2) * 2;
            let indices = (0..padded as u64)
                .map(|i| i.min(count as u64 - 1))
                .collect();
            let fps = opts.fps.unwrap_or(sampling::DEFAULT_FPS);
            if !(fps.is_finite() && fps > 0.0) {
                return Err(MediaError::VideoOptions {
                    reason: format!("fps must be a positive number, got {fps}"),
                });
            }
            (indices, None, Some(fps))
        }
    };
    let frames = frame_indices
        .iter()
        .map(|&i| images[i as usize].clone())
        .collect();
    Ok(SampledVideo {
        origin: VideoOrigin::FrameList {
            frame_count: count,
            fps: opts.fps,
        },
        frame_indices,
        timestamps,
        frame_size: first,
        sample_fps,
        options: opts.clone(),
        settings: settings.clone(),
        source_desc,
        frames: FrameStore::Memory(frames),
        progress: None,
    })
}

fn check_frame_sizes(frames: &[RgbImage], size: ImageSize, source_desc: &str) -> Result<()> {
    if let Some((position, frame)) = frames
        .iter()
        .enumerate()
        .find(|(_, f)| (f.width(), f.height()) != (size.width, size.height))
    {
        return Err(MediaError::InvalidVideo {
            source_desc: source_desc.to_owned(),
            reason: format!(
                "frame {position} is {}x{} but frame 0 is {}x{}; all frames must have one size",
                frame.width(),
                frame.height(),
                size.width,
                size.height
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
