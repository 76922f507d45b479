//! From a request to model inputs: media loaded and preprocessed, the chat template rendered,
//! placeholders expanded to token ids, and the 3-D positions computed.

use keye_chat::{
    Content, FrameKind as ChatFrameKind, Part, RenderOptions, VideoFrame, VideoLayout, VideoSource,
};
use keye_media::{
    FrameKind, GridThw, ProcessedVideo, VideoInput, VideoSettings, VideoSizing, load_video,
    plan_video, preprocess_video,
};
use keye_model::{Architecture, Positions, VideoBlock};

use crate::error::{Error, Result};
use crate::progress::{Progress, Stage};
use crate::{Keye, Request};

/// Preprocessed visual items of one modality, in prompt order.
#[derive(Clone, Debug, Default)]
pub struct VisualInput {
    /// `[patches, 3, P, P]` flattened, items concatenated.
    pub pixel_values: Vec<f32>,
    /// Vision blocks as the model runs them (Keye-VL-1.5 videos: one per frame).
    pub grids: Vec<GridThw>,
    /// Blocks per vision-tower call: an item, or a group of independent frames.
    pub batches: Vec<usize>,
    /// The grids as the reference processor reports them (`*_grid_thw` rows).
    pub trace_grids: Vec<GridThw>,
}

impl VisualInput {
    fn patches(&self) -> usize {
        self.grids.iter().map(GridThw::patches).sum()
    }
}

/// What the processor reports about one video besides its pixels.
#[derive(Clone, Debug)]
pub struct VideoSummary {
    pub frame_indices: Vec<u64>,
    pub frame_types: Option<Vec<i32>>,
    pub timestamps: Option<Vec<f32>>,
    /// Preview: `second_per_grid_ts`.
    pub second_per_grid: Option<f32>,
}

/// A request turned into model inputs.
#[derive(Clone, Debug)]
pub struct Prompt {
    /// The rendered chat template, before placeholder expansion.
    pub text: String,
    pub input_ids: Vec<u32>,
    pub positions: Positions,
    pub images: Option<VisualInput>,
    pub videos: Option<VisualInput>,
    pub video_summaries: Vec<VideoSummary>,
}

/// Keye-VL-1.5 frames encoded per vision-tower call: each frame is its own attention segment,
/// so grouping only trades progress granularity against call overhead.
const FRAMES_PER_BATCH: usize = 16;

pub(crate) fn prepare(keye: &Keye, request: &Request) -> Result<Prompt> {
    if request.messages.is_empty() {
        return Err(Error::InvalidRequest("no messages".into()));
    }
    let generation = crate::media_generation(keye.model.architecture());
    let mut images = VisualInput::default();
    let mut videos = VisualInput::default();
    let mut layouts = Vec::new();
    let mut blocks = Vec::new();
    let mut summaries = Vec::new();
    for message in &request.messages {
        let Content::Parts(parts) = &message.content else {
            continue;
        };
        for part in parts {
            match part {
                Part::Image(image) => {
                    let decoded = keye_media::load_image(
                        &image.source,
                        None,
                        &request.media_policy,
                        generation,
                    )?;
                    let processed = keye_media::preprocess_image_with_limits(
                        &decoded,
                        &image.options,
                        &keye.processor,
                        generation,
                        &keye.media_limits,
                    )?;
                    images
                        .pixel_values
                        .extend_from_slice(&processed.pixel_values);
                    images.grids.push(processed.plan.grid);
                    images.trace_grids.push(processed.plan.grid);
                    images.batches.push(1);
                }
                Part::Video(video) => {
                    let settings = VideoSettings {
                        generation,
                        limits: keye.media_limits,
                        policy: request.media_policy.clone(),
                        tools: Default::default(),
                    };
                    let input = match &video.source {
                        VideoSource::File(source) => VideoInput::File(source),
                        VideoSource::Frames(frames) => VideoInput::Frames(frames),
                    };
                    let mut sampled = load_video(input, None, &video.options, &settings)?;
                    if let Some(progress) = &request.progress {
                        let progress = progress.clone();
                        sampled.set_progress(move |p| {
                            progress.report(Stage::Decoding, p.done, p.total);
                        });
                    }
                    let plan = plan_video(&sampled, &keye.processor)?;
                    let processed = preprocess_video(&sampled, &plan, &keye.processor)?;
                    add_video(
                        keye.model.architecture(),
                        processed,
                        &mut videos,
                        &mut layouts,
                        &mut blocks,
                        &mut summaries,
                    )?;
                }
                Part::Text(_) => {}
            }
        }
    }
    let mut messages = request.messages.clone();
    request.thinking.apply(&mut messages);
    let options = RenderOptions {
        add_generation_prompt: true,
        ..RenderOptions::default()
    };
    let text = keye.template.render(&messages, &options)?;
    let input_ids = keye.assembler.assemble(&text, &images.grids, &layouts)?;
    let positions = keye.model.positions(&input_ids, &images.grids, &blocks)?;
    Ok(Prompt {
        text,
        input_ids,
        positions,
        images: (!images.grids.is_empty()).then_some(images),
        videos: (!videos.grids.is_empty()).then_some(videos),
        video_summaries: summaries,
    })
}

/// Adds one video as its architecture runs it: the Preview as a single vision block with
/// time-tied temporal positions; Keye-VL-1.5 as one block per frame with per-frame prompt text.
fn add_video(
    architecture: Architecture,
    video: ProcessedVideo,
    videos: &mut VisualInput,
    layouts: &mut Vec<VideoLayout>,
    blocks: &mut Vec<VideoBlock>,
    summaries: &mut Vec<VideoSummary>,
) -> Result<()> {
    let plan = video.plan;
    videos.pixel_values.extend_from_slice(&video.pixel_values);
    videos.trace_grids.extend_from_slice(&plan.grid_rows);
    let mut summary = VideoSummary {
        frame_indices: plan.frames.iter().map(|f| f.source_index).collect(),
        frame_types: None,
        timestamps: plan.frames.iter().map(|f| f.timestamp).collect(),
        second_per_grid: None,
    };
    match (architecture, plan.sizing) {
        (
            Architecture::Preview,
            VideoSizing::Uniform {
                second_per_grid, ..
            },
        ) => {
            let [grid] = plan.grid_rows[..] else {
                return Err(Error::InvalidRequest(
                    "a Preview video must form one vision block".into(),
                ));
            };
            videos.grids.push(grid);
            videos.batches.push(1);
            layouts.push(VideoLayout::Block(grid));
            blocks.push(VideoBlock {
                grid,
                seconds_per_grid: second_per_grid,
            });
            summary.second_per_grid = Some(second_per_grid);
        }
        (Architecture::V1_5, VideoSizing::SlowFast { .. }) => {
            let mut frames = Vec::with_capacity(plan.frames.len());
            let mut types = Vec::with_capacity(plan.frames.len());
            for frame in &plan.frames {
                let fast = frame.kind == Some(FrameKind::Fast);
                types.push(i32::from(fast));
                frames.push(VideoFrame {
                    grid: frame.grid,
                    kind: if fast {
                        ChatFrameKind::Fast
                    } else {
                        ChatFrameKind::Slow
                    },
                    timestamp: frame.timestamp,
                });
                videos.grids.push(frame.grid);
                blocks.push(VideoBlock {
                    grid: frame.grid,
                    seconds_per_grid: 0.0,
                });
            }
            let mut left = frames.len();
            while left > 0 {
                let n = left.min(FRAMES_PER_BATCH);
                videos.batches.push(n);
                left -= n;
            }
            layouts.push(VideoLayout::Frames(frames));
            summary.frame_types = Some(types);
        }
        _ => {
            return Err(Error::InvalidRequest(
                "video sizing does not match the model".into(),
            ));
        }
    }
    summaries.push(summary);
    Ok(())
}

/// Total vision patches of a prompt, for progress reporting.
pub(crate) fn vision_patches(prompt: &Prompt) -> usize {
    prompt.images.as_ref().map_or(0, VisualInput::patches)
        + prompt.videos.as_ref().map_or(0, VisualInput::patches)
}

pub(crate) fn report_encoding(progress: Option<&Progress>, done: usize, total: usize) {
    if let Some(progress) = progress {
        progress.report(Stage::Encoding, done, total);
    }
}
