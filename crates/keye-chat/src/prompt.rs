use keye_media::GridThw;

use crate::error::{ChatError, Result, VisualKind};
use crate::tokenizer::Tokenizer;

pub const IMAGE_PAD: &str = "<|image_pad|>";
pub const VIDEO_PAD: &str = "<|video_pad|>";
pub const VISION_START: &str = "<|vision_start|>";
pub const VISION_END: &str = "<|vision_end|>";
pub const FRAME: &str = "<|frame|>";
pub const FAST_START: &str = "<|fast_start|>";
pub const FAST_END: &str = "<|fast_end|>";

/// How the single `<|video_pad|>` the chat template writes for a video is expanded.
#[derive(Clone, Debug, PartialEq)]
pub enum VideoLayout {
    /// Keye-VL-8B-Preview: one run of `t·h·w/merge²` pads for the whole video.
    Block(GridThw),
    /// Keye-VL-1.5: every frame in chronological order becomes `<|frame|>`, its timestamp text and
    /// its pads, fast frames' pads wrapped in `<|fast_start|>…<|fast_end|>`.
    Frames(Vec<VideoFrame>),
}

/// One sampled frame of a Keye-VL-1.5 video.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VideoFrame {
    /// The frame's patch grid; `t` is 1.
    pub grid: GridThw,
    pub kind: FrameKind,
    /// Seconds from the start of the video, written as `format(ts, ".1f")`; `None` writes nothing.
    pub timestamp: Option<f32>,
}

/// Keye-VL-1.5 slow/fast video frames (`frame_types` 0 and 1 of keye-vl-utils).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    Slow,
    Fast,
}

/// Turns a rendered prompt into the processor's `input_ids`: tokenises it, then expands the k-th
/// `<|image_pad|>` / `<|video_pad|>` for the k-th image / video. The expansion happens on ids,
/// which gives exactly the ids of tokenising the expanded text because every inserted marker is
/// an added token and added tokens cut the text into independently tokenised pieces.
#[derive(Clone, Debug)]
pub struct PromptAssembler {
    tokenizer: Tokenizer,
    merge_size: usize,
    image_pad: u32,
    video_pad: u32,
    /// `<|frame|>`, `<|fast_start|>`, `<|fast_end|>`: Keye-VL-1.5 tokenizers only.
    frame_markers: Option<FrameMarkers>,
}

#[derive(Clone, Copy, Debug)]
struct FrameMarkers {
    frame: u32,
    fast_start: u32,
    fast_end: u32,
}

impl PromptAssembler {
    /// `spatial_merge_size` is the vision config's merge factor (2 for every Keye model): each
    /// `merge×merge` block of patches becomes one token.
    pub fn new(tokenizer: &Tokenizer, spatial_merge_size: usize) -> Result<Self> {
        if spatial_merge_size == 0 || spatial_merge_size.checked_mul(spatial_merge_size).is_none() {
            return Err(ChatError::InvalidMergeSize {
                merge_size: spatial_merge_size,
            });
        }
        let frame_markers = match (
            tokenizer.token_id(FRAME),
            tokenizer.token_id(FAST_START),
            tokenizer.token_id(FAST_END),
        ) {
            (Ok(frame), Ok(fast_start), Ok(fast_end)) => Some(FrameMarkers {
                frame,
                fast_start,
                fast_end,
            }),
            _ => None,
        };
        Ok(Self {
            tokenizer: tokenizer.clone(),
            merge_size: spatial_merge_size,
            image_pad: tokenizer.token_id(IMAGE_PAD)?,
            video_pad: tokenizer.token_id(VIDEO_PAD)?,
            frame_markers,
        })
    }

    pub fn image_pad_id(&self) -> u32 {
        self.image_pad
    }

    pub fn video_pad_id(&self) -> u32 {
        self.video_pad
    }

    /// Tokenises `prompt` and expands its placeholders.
    pub fn assemble(
        &self,
        prompt: &str,
        images: &[GridThw],
        videos: &[VideoLayout],
    ) -> Result<Vec<u32>> {
        let ids = self.tokenizer.encode(prompt)?;
        self.expand(&ids, images, videos)
    }

    /// Expands the placeholders of already tokenised prompt ids.
    pub fn expand(
        &self,
        ids: &[u32],
        images: &[GridThw],
        videos: &[VideoLayout],
    ) -> Result<Vec<u32>> {
        let image_slots = ids.iter().filter(|&&id| id == self.image_pad).count();
        let video_slots = ids.iter().filter(|&&id| id == self.video_pad).count();
        check_count(VisualKind::Image, image_slots, images.len())?;
        check_count(VisualKind::Video, video_slots, videos.len())?;

        let image_tokens = images
            .iter()
            .enumerate()
            .map(|(index, grid)| self.grid_tokens(*grid, VisualKind::Image, index))
            .collect::<Result<Vec<_>>>()?;
        let video_expansions = videos
            .iter()
            .enumerate()
            .map(|(index, layout)| self.video_expansion(layout, index))
            .collect::<Result<Vec<_>>>()?;

        let added: usize = image_tokens.iter().sum::<usize>()
            + video_expansions
                .iter()
                .map(VideoExpansion::len)
                .sum::<usize>();
        let mut out = Vec::with_capacity(ids.len() - image_slots - video_slots + added);
        let mut next_image = image_tokens.iter();
        let mut next_video = video_expansions.iter();
        for &id in ids {
            if id == self.image_pad
                && let Some(&count) = next_image.next()
            {
                out.extend(std::iter::repeat_n(self.image_pad, count));
            } else if id == self.video_pad
                && let Some(expansion) = next_video.next()
            {
                expansion.write(self.video_pad, &mut out);
            } else {
                out.push(id);
            }
        }
        Ok(out)
    }

    /// Placeholder tokens of one item: `t·h·w / merge²`.
    fn grid_tokens(&self, grid: GridThw, kind: VisualKind, index: usize) -> Result<usize> {
        let invalid = |reason: String| ChatError::InvalidVisual {
            kind,
            index,
            reason,
        };
        if grid.t == 0 || grid.h == 0 || grid.w == 0 {
            return Err(invalid(format!("empty grid {grid:?}")));
        }
        if !grid.h.is_multiple_of(self.merge_size) || !grid.w.is_multiple_of(self.merge_size) {
            return Err(invalid(format!(
                "grid {grid:?} is not a multiple of the {m}×{m} merge",
                m = self.merge_size
            )));
        }
        grid.t
            .checked_mul(grid.h)
            .and_then(|n| n.checked_mul(grid.w))
            .map(|patches| patches / (self.merge_size * self.merge_size))
            .ok_or_else(|| invalid(format!("grid {grid:?} is too large")))
    }

    fn video_expansion(&self, layout: &VideoLayout, index: usize) -> Result<VideoExpansion> {
        let frames = match layout {
            VideoLayout::Block(grid) => {
                return Ok(VideoExpansion::Block(self.grid_tokens(
                    *grid,
                    VisualKind::Video,
                    index,
                )?));
            }
            VideoLayout::Frames(frames) => frames,
        };
        let invalid = |reason: String| ChatError::InvalidVisual {
            kind: VisualKind::Video,
            index,
            reason,
        };
        if frames.is_empty() {
            return Err(invalid("a video needs at least one frame".into()));
        }
        let markers = self.frame_markers.ok_or_else(|| {
            invalid(format!(
                "per-frame video layout needs the Keye-VL-1.5 tokens {FRAME}, {FAST_START} and \
                 {FAST_END}, which this tokenizer lacks"
            ))
        })?;
        let mut segments = Vec::with_capacity(frames.len());
        for (frame_index, frame) in frames.iter().enumerate() {
            if frame.grid.t != 1 {
                return Err(invalid(format!(
                    "frame {frame_index} has grid {:?}; a frame's t must be 1",
                    frame.grid
                )));
            }
            let pads = self.grid_tokens(frame.grid, VisualKind::Video, index)?;
            let timestamp = match frame.timestamp {
                None => Vec::new(),
                Some(seconds) if seconds.is_finite() => {
                    self.tokenizer.encode(&format_timestamp(seconds))?
                }
                Some(seconds) => {
                    return Err(invalid(format!(
                        "frame {frame_index} has timestamp {seconds}"
                    )));
                }
            };
            segments.push(FrameSegment {
                timestamp,
                pads,
                fast: frame.kind == FrameKind::Fast,
            });
        }
        Ok(VideoExpansion::Frames { markers, segments })
    }
}

/// Python's `format(ts, ".1f")`: Rust's fixed-precision formatting rounds the exact binary value
/// half-to-even, as Python does.
pub fn format_timestamp(seconds: f32) -> String {
    format!("{seconds:.1}")
}

fn check_count(kind: VisualKind, in_prompt: usize, supplied: usize) -> Result<()> {
    if in_prompt == supplied {
        Ok(())
    } else {
        Err(ChatError::PlaceholderCount {
            kind,
            in_prompt,
            supplied,
        })
    }
}

/// What one `<|video_pad|>` becomes, prepared before any output is written.
enum VideoExpansion {
    Block(usize),
    Frames {
        markers: FrameMarkers,
        segments: Vec<FrameSegment>,
    },
}

struct FrameSegment {
    timestamp: Vec<u32>,
    pads: usize,
    fast: bool,
}

impl VideoExpansion {
    fn len(&self) -> usize {
        match self {
            VideoExpansion::Block(pads) => *pads,
            VideoExpansion::Frames { segments, .. } => segments
                .iter()
                .map(|segment| {
                    1 + segment.timestamp.len() + segment.pads + 2 * usize::from(segment.fast)
                })
                .sum(),
        }
    }

    fn write(&self, pad: u32, out: &mut Vec<u32>) {
        match self {
            VideoExpansion::Block(pads) => out.extend(std::iter::repeat_n(pad, *pads)),
            VideoExpansion::Frames { markers, segments } => {
                for segment in segments {
                    out.push(markers.frame);
                    out.extend_from_slice(&segment.timestamp);
                    if segment.fast {
                        out.push(markers.fast_start);
                    }
                    out.extend(std::iter::repeat_n(pad, segment.pads));
                    if segment.fast {
                        out.push(markers.fast_end);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// keye-preprocessing.md §11.6: `format(f32((1/fps)·i), ".1f")`.
    #[test]
    fn timestamp_strings_of_the_spec() {
        let table: [(f64, &[u32], &[&str]); 7] = [
            (
                30.0,
                &[0, 16, 31, 47, 63, 79, 94, 110],
                &["0.0", "0.5", "1.0", "1.6", "2.1", "2.6", "3.1", "3.7"],
            ),
            (
                25.0,
                &[0, 14, 28, 42, 57, 71, 85, 99],
                &["0.0", "0.6", "1.1", "1.7", "2.3", "2.8", "3.4", "4.0"],
            ),
            (29.97, &[0, 22, 44], &["0.0", "0.7", "1.5"]),
            (
                4.0,
                &[0, 1, 2, 3, 4, 5, 6, 7],
                &["0.0", "0.2", "0.5", "0.8", "1.0", "1.2", "1.5", "1.8"],
            ),
            (
                20.0,
                &[5, 15, 25, 35, 45],
                &["0.2", "0.8", "1.2", "1.8", "2.2"],
            ),
            (
                24.0,
                &[3, 9, 15, 21, 27, 33],
                &["0.1", "0.4", "0.6", "0.9", "1.1", "1.4"],
            ),
            (
                8.0,
                &[2, 6, 10, 14, 18, 22],
                &["0.2", "0.8", "1.2", "1.8", "2.2", "2.8"],
            ),
        ];
        for (fps, indices, expected) in table {
            let strings: Vec<String> = indices
                .iter()
                .map(|&index| format_timestamp(((1.0 / fps) * f64::from(index)) as f32))
                .collect();
            assert_eq!(strings, expected, "fps {fps}");
        }
    }
}
