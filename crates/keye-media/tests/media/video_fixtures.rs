//! Video preprocessing against the official pipelines' golden outputs: first from the frames
//! decord decoded (preprocessing alone), then from the mp4 itself through FFmpeg.

use std::path::PathBuf;

use keye_media::{
    FrameKind, Generation, GridThw, ProcessorConfig, RgbImage, SampledVideo, VideoInfo, VideoInput,
    VideoOptions, VideoSettings, VideoSizing, load_video, plan_video, preprocess_video,
    sample_decoded,
};
use safetensors::SafeTensors;
use serde_json::Value;

use crate::common::fixtures_dir;

/// Float rounding of the normalisation only; one u8 step is 2/255 ≈ 7.8e-3.
const PIXEL_TOLERANCE: f32 = 1e-5;

struct VideoCase {
    model: &'static str,
    generation: Generation,
    dir: PathBuf,
    source: String,
    options: VideoOptions,
    outputs: Value,
    tensors_bytes: Vec<u8>,
    cfg: ProcessorConfig,
}

impl VideoCase {
    fn load(model: &'static str, generation: Generation) -> Self {
        let root = fixtures_dir();
        let dir = root.join("cases").join(model).join("video_mp4_scenecut");
        let messages: Value = read_json(&dir.join("messages.json"));
        let element = messages[0]["content"]
            .as_array()
            .unwrap()
            .iter()
            .find(|part| part.get("video").is_some())
            .unwrap()
            .clone();
        let cfg = ProcessorConfig::from_file(
            &root
                .join("models")
                .join(model)
                .join("preprocessor_config.json"),
            generation,
        )
        .unwrap();
        Self {
            model,
            generation,
            source: element["video"].as_str().unwrap().to_owned(),
            options: serde_json::from_value(element).unwrap(),
            outputs: read_json(&dir.join("outputs.json")),
            tensors_bytes: std::fs::read(dir.join("outputs.safetensors")).unwrap(),
            dir,
            cfg,
        }
    }

    fn tensors(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.tensors_bytes).unwrap()
    }

    fn decoded_frames(&self) -> Vec<RgbImage> {
        let tensors = self.tensors();
        let frames = tensors.tensor("video0_decoded_frames_u8").unwrap();
        let [_, height, width, 3] = frames.shape() else {
            panic!("unexpected frame tensor shape {:?}", frames.shape())
        };
        frames
            .data()
            .chunks_exact(height * width * 3)
            .map(|frame| RgbImage::new(*width as u32, *height as u32, frame.to_vec()).unwrap())
            .collect()
    }

    fn decord_info(&self) -> VideoInfo {
        let call = &self.outputs["decord_calls"][0];
        let frames = self.decoded_frames();
        VideoInfo {
            stream_index: 0,
            codec: "h264".into(),
            width: frames[0].width(),
            height: frames[0].height(),
            frame_count: call["num_frames"].as_u64().unwrap(),
            avg_fps: call["avg_fps"].as_f64().unwrap(),
            duration: None,
        }
    }

    fn settings(&self) -> VideoSettings {
        VideoSettings::new(self.generation)
    }

    /// Checks sampling, plan and pixels of `video` against the golden outputs; `max_pixel_diff`
    /// is the largest difference allowed in normalised units.
    fn check(&self, video: &SampledVideo, max_pixel_diff: f32) {
        let model = self.model;
        let tensors = self.tensors();
        let decord = &self.outputs["decord_calls"][0];
        let expected_indices: Vec<u64> = decord["indices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        assert_eq!(
            video.frame_indices, expected_indices,
            "{model}: frame indices"
        );
        assert_eq!(
            i64s(&tensors, "video0_frame_indices"),
            expected_indices
                .iter()
                .map(|&i| i as i64)
                .collect::<Vec<_>>()
        );

        let plan = plan_video(video, &self.cfg).unwrap();
        let expected_rows: Vec<GridThw> = self.outputs["video_grid_thw"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| {
                let row: Vec<usize> = row
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap() as usize)
                    .collect();
                GridThw::new(row[0], row[1], row[2])
            })
            .collect();
        assert_eq!(plan.grid_rows, expected_rows, "{model}: video_grid_thw");
        let grid_tensor: Vec<usize> = i64s(&tensors, "video_grid_thw")
            .into_iter()
            .map(|v| v as usize)
            .collect();
        let plan_rows: Vec<usize> = plan
            .grid_rows
            .iter()
            .flat_map(|g| [g.t, g.h, g.w])
            .collect();
        assert_eq!(plan_rows, grid_tensor);

        match self.generation {
            Generation::V1_5 => self.check_v1_5(video, &plan, &tensors),
            Generation::Preview => {
                let VideoSizing::Uniform {
                    second_per_grid, ..
                } = plan.sizing
                else {
                    panic!("{model}: the Preview plans one size for all frames")
                };
                assert_eq!(
                    vec![second_per_grid],
                    f32s(&tensors, "second_per_grid_ts"),
                    "{model}: second_per_grid_ts"
                );
                let fps = self.outputs["video_kwargs_from_utils"]["fps"][0]
                    .as_f64()
                    .unwrap();
                assert_eq!(video.sample_fps, Some(fps), "{model}: sample fps");
                let shape = &self.outputs["videos"][0]["shape_TCHW"];
                let size = plan.frames[0].size;
                assert_eq!(
                    [shape[2].as_u64().unwrap(), shape[3].as_u64().unwrap()],
                    [u64::from(size.height), u64::from(size.width)],
                    "{model}: frame size after keye-vl-utils"
                );
            }
        }

        let processed = preprocess_video(video, &plan, &self.cfg).unwrap();
        let expected = f32s(&tensors, "pixel_values_videos");
        assert_eq!(
            processed.pixel_values.len(),
            expected.len(),
            "{model}: pixel count"
        );
        assert_eq!(processed.pixel_values.len(), plan.patches() * 3 * 14 * 14);
        let worst = processed
            .pixel_values
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            worst <= max_pixel_diff,
            "{model}: pixel_values_videos differ by {worst}"
        );
        let expected_tokens = tensors.tensor("video_projector_embeds").unwrap().shape()[0];
        assert_eq!(plan.tokens, expected_tokens, "{model}: video tokens");
    }

    fn check_v1_5(
        &self,
        video: &SampledVideo,
        plan: &keye_media::VideoPlan,
        tensors: &SafeTensors,
    ) {
        let model = self.model;
        let kwargs = &self.outputs["video_kwargs_from_utils"];
        let expected_types: Vec<Option<FrameKind>> = i32s(tensors, "video0_frame_types")
            .into_iter()
            .map(|t| {
                Some(if t == 0 {
                    FrameKind::Slow
                } else {
                    FrameKind::Fast
                })
            })
            .collect();
        let kinds: Vec<_> = plan.frames.iter().map(|f| f.kind).collect();
        assert_eq!(kinds, expected_types, "{model}: frame types");
        assert_eq!(
            video.timestamps.as_deref(),
            Some(&f32s(tensors, "video0_timestamps")[..]),
            "{model}: timestamps"
        );
        let texts: Vec<String> = plan
            .frames
            .iter()
            .filter_map(|f| f.timestamp_text())
            .collect();
        assert_eq!(
            texts,
            ["0.0", "0.6", "1.2", "1.9"],
            "{model}: timestamp text"
        );
        let VideoSizing::SlowFast {
            slow_size,
            fast_size,
        } = plan.sizing
        else {
            panic!("{model}: Keye-VL-1.5 plans slow and fast sizes")
        };
        let kwarg = |key: &str| kwargs[key][0].as_u64().unwrap() as u32;
        assert_eq!(
            [
                slow_size.height,
                slow_size.width,
                fast_size.height,
                fast_size.width
            ],
            [
                kwarg("height"),
                kwarg("width"),
                kwarg("fast_height"),
                kwarg("fast_width")
            ],
            "{model}: slow and fast sizes"
        );
        assert_eq!(
            i64s(tensors, "num_frames"),
            [plan.frames.len() as i64],
            "{model}: num_frames"
        );
    }
}

fn read_json(path: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn f32s(tensors: &SafeTensors, name: &str) -> Vec<f32> {
    tensors
        .tensor(name)
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn i64s(tensors: &SafeTensors, name: &str) -> Vec<i64> {
    tensors
        .tensor(name)
        .unwrap()
        .data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn i32s(tensors: &SafeTensors, name: &str) -> Vec<i32> {
    tensors
        .tensor(name)
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|b| i32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn from_decord_frames(model: &'static str, generation: Generation) {
    let case = VideoCase::load(model, generation);
    let video = sample_decoded(
        case.decord_info(),
        case.decoded_frames(),
        &case.options,
        &case.settings(),
    )
    .unwrap();
    case.check(&video, PIXEL_TOLERANCE);
}

/// Decodes the fixture mp4 with FFmpeg: the frame count and rate must be decord's, and on this
/// clip FFmpeg's RGB conversion reproduces decord's pixels exactly (max and mean difference 0),
/// so the whole pipeline must match bit for bit.
fn from_mp4(model: &'static str, generation: Generation) {
    let case = VideoCase::load(model, generation);
    let video = load_video(
        VideoInput::File(&case.source),
        Some(&case.dir),
        &case.options,
        &case.settings(),
    )
    .unwrap_or_else(|e| panic!("{model}: {e}"));
    let keye_media::VideoOrigin::File(info) = &video.origin else {
        panic!("{model}: an mp4 is a video file")
    };
    let decord = case.decord_info();
    assert_eq!(
        (info.frame_count, info.avg_fps, info.width, info.height),
        (
            decord.frame_count,
            decord.avg_fps,
            decord.width,
            decord.height
        ),
        "{model}: probe"
    );
    assert_eq!(info.codec, "h264");
    let reference = case.decoded_frames();
    let mut largest_difference = 0u8;
    video
        .for_each_frame(|position, frame| {
            let difference = frame
                .as_raw()
                .iter()
                .zip(reference[position].as_raw())
                .map(|(a, b)| a.abs_diff(*b))
                .max()
                .unwrap_or(0);
            largest_difference = largest_difference.max(difference);
            Ok(())
        })
        .unwrap();
    assert_eq!(largest_difference, 0, "{model}: FFmpeg vs decord pixels");
    case.check(&video, PIXEL_TOLERANCE);
}

#[test]
fn v1_5_video_from_decord_frames() {
    from_decord_frames("keye-1.5-tiny", Generation::V1_5);
}

#[test]
fn preview_video_from_decord_frames() {
    from_decord_frames("keye-preview-tiny", Generation::Preview);
}

#[test]
fn v1_5_video_from_mp4() {
    from_mp4("keye-1.5-tiny", Generation::V1_5);
}

#[test]
fn preview_video_from_mp4() {
    from_mp4("keye-preview-tiny", Generation::Preview);
}
