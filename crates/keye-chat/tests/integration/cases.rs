//! Every fixture case: messages.json → chat template → prompt text → input ids, compared with
//! the official processor's `prompt_text`, `input_ids` and `expanded_prompt_text`.

use std::path::{Path, PathBuf};

use keye_chat::{
    ChatTemplate, FrameKind, MessagesFile, PromptAssembler, RenderOptions, Tokenizer, VideoFrame,
    VideoLayout,
};
use keye_media::GridThw;
use safetensors::{Dtype, SafeTensors};

use crate::{fixtures, read_json};

struct Case {
    model_dir: PathBuf,
    dir: PathBuf,
    outputs: serde_json::Value,
    tensors: Vec<u8>,
}

impl Case {
    fn name(&self) -> String {
        let model = self.model_dir.file_name().unwrap().to_string_lossy();
        let case = self.dir.file_name().unwrap().to_string_lossy();
        format!("{model}/{case}")
    }

    fn is_v1_5(&self) -> bool {
        self.outputs["arch"] == "1.5"
    }

    fn tensor(&self, name: &str) -> Option<(Dtype, Vec<u8>)> {
        let tensors = SafeTensors::deserialize(&self.tensors).expect("outputs.safetensors");
        let view = tensors.tensor(name).ok()?;
        Some((view.dtype(), view.data().to_vec()))
    }

    fn i64_tensor(&self, name: &str) -> Option<Vec<i64>> {
        let (dtype, data) = self.tensor(name)?;
        assert_eq!(dtype, Dtype::I64, "{name}");
        Some(
            data.chunks_exact(8)
                .map(|bytes| i64::from_le_bytes(bytes.try_into().unwrap()))
                .collect(),
        )
    }

    fn i32_tensor(&self, name: &str) -> Option<Vec<i32>> {
        let (dtype, data) = self.tensor(name)?;
        assert_eq!(dtype, Dtype::I32, "{name}");
        Some(
            data.chunks_exact(4)
                .map(|bytes| i32::from_le_bytes(bytes.try_into().unwrap()))
                .collect(),
        )
    }

    fn f32_tensor(&self, name: &str) -> Option<Vec<f32>> {
        let (dtype, data) = self.tensor(name)?;
        assert_eq!(dtype, Dtype::F32, "{name}");
        Some(
            data.chunks_exact(4)
                .map(|bytes| f32::from_le_bytes(bytes.try_into().unwrap()))
                .collect(),
        )
    }

    fn grids(&self, key: &str) -> Vec<GridThw> {
        match &self.outputs[key] {
            serde_json::Value::Null => Vec::new(),
            rows => rows
                .as_array()
                .unwrap()
                .iter()
                .map(|row| {
                    let n = |i: usize| row[i].as_u64().unwrap() as usize;
                    GridThw::new(n(0), n(1), n(2))
                })
                .collect(),
        }
    }

    /// The videos as the processor saw them. Preview: one grid row per video. 1.5: the merged
    /// per-frame rows, split back into frames and paired with keye-vl-utils' frame types and
    /// timestamps.
    fn videos(&self) -> Vec<VideoLayout> {
        let rows = self.grids("video_grid_thw");
        if !self.is_v1_5() {
            return rows.into_iter().map(VideoLayout::Block).collect();
        }
        let mut frame_grids = rows
            .iter()
            .flat_map(|row| std::iter::repeat_n(GridThw::new(1, row.h, row.w), row.t));
        let frame_counts = self.i64_tensor("num_frames").unwrap_or_default();
        frame_counts
            .iter()
            .enumerate()
            .map(|(video, &count)| {
                let kinds = self
                    .i32_tensor(&format!("video{video}_frame_types"))
                    .unwrap_or_else(|| vec![0; count as usize]);
                let timestamps = self.f32_tensor(&format!("video{video}_timestamps"));
                assert_eq!(kinds.len(), count as usize);
                let frames = (0..count as usize)
                    .map(|frame| VideoFrame {
                        grid: frame_grids.next().expect("enough grid rows"),
                        kind: if kinds[frame] == 0 {
                            FrameKind::Slow
                        } else {
                            FrameKind::Fast
                        },
                        timestamp: timestamps.as_ref().map(|ts| ts[frame]),
                    })
                    .collect();
                VideoLayout::Frames(frames)
            })
            .collect()
    }
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    let root = fixtures().join("cases");
    for model in sorted_dirs(&root) {
        let model_dir = fixtures().join("models").join(model.file_name().unwrap());
        for dir in sorted_dirs(&model) {
            let outputs = read_json(&dir.join("outputs.json"));
            let tensors = std::fs::read(dir.join("outputs.safetensors")).unwrap();
            cases.push(Case {
                model_dir: model_dir.clone(),
                dir,
                outputs,
                tensors,
            });
        }
    }
    assert!(cases.len() >= 12, "fixture cases missing");
    cases
}

fn sorted_dirs(path: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(path)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_dir())
        .collect();
    dirs.sort();
    dirs
}

fn generation_prompt() -> RenderOptions {
    RenderOptions {
        add_generation_prompt: true,
        ..RenderOptions::default()
    }
}

#[test]
fn media_paths_resolve_against_the_case_folder() {
    for case in cases() {
        let file = MessagesFile::load(case.dir.join("messages.json")).unwrap();
        assert_eq!(file.base_dir, case.dir);
        for message in file.into_resolved() {
            for image in message.content.images() {
                assert!(
                    Path::new(&image.source).is_file(),
                    "{}: {}",
                    case.name(),
                    image.source
                );
            }
            for video in message.content.videos() {
                match &video.source {
                    keye_chat::VideoSource::File(path) => {
                        assert!(Path::new(path).is_file(), "{}: {path}", case.name())
                    }
                    keye_chat::VideoSource::Frames(frames) => {
                        for frame in frames {
                            assert!(Path::new(frame).is_file(), "{}: {frame}", case.name());
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn chat_template_renders_every_fixture_prompt() {
    for case in cases() {
        let template = ChatTemplate::from_model_dir(&case.model_dir).unwrap();
        let messages = MessagesFile::load(case.dir.join("messages.json"))
            .unwrap()
            .messages;
        let prompt = template.render(&messages, &generation_prompt()).unwrap();
        assert_eq!(
            prompt,
            case.outputs["prompt_text"].as_str().unwrap(),
            "{}",
            case.name()
        );
    }
}

#[test]
fn assembled_ids_equal_the_processor_input_ids() {
    for case in cases() {
        let tokenizer = Tokenizer::from_model_dir(&case.model_dir).unwrap();
        let template = ChatTemplate::from_model_dir(&case.model_dir).unwrap();
        let assembler = PromptAssembler::new(&tokenizer, 2).unwrap();
        let messages = MessagesFile::load(case.dir.join("messages.json"))
            .unwrap()
            .messages;
        let prompt = template.render(&messages, &generation_prompt()).unwrap();

        let images = case.grids("image_grid_thw");
        let videos = case.videos();
        let ids = assembler.assemble(&prompt, &images, &videos).unwrap();

        let expected: Vec<u32> = case
            .i64_tensor("input_ids")
            .unwrap()
            .into_iter()
            .map(|id| id as u32)
            .collect();
        assert_eq!(ids, expected, "{}", case.name());

        let expanded = case.outputs["expanded_prompt_text"].as_str().unwrap();
        assert_eq!(
            tokenizer.decode(&ids, false).unwrap(),
            expanded,
            "{}",
            case.name()
        );
        // Expanding ids is the same as tokenising the expanded text.
        assert_eq!(
            tokenizer.encode(expanded).unwrap(),
            expected,
            "{}",
            case.name()
        );
    }
}

#[test]
fn placeholder_count_mismatch_is_an_error() {
    let case = cases()
        .into_iter()
        .find(|case| case.dir.ends_with("two_images"))
        .unwrap();
    let tokenizer = Tokenizer::from_model_dir(&case.model_dir).unwrap();
    let assembler = PromptAssembler::new(&tokenizer, 2).unwrap();
    let prompt = case.outputs["prompt_text"].as_str().unwrap();
    let images = case.grids("image_grid_thw");

    let too_few = assembler.assemble(prompt, &images[..1], &[]).unwrap_err();
    assert!(
        matches!(
            too_few,
            keye_chat::ChatError::PlaceholderCount {
                kind: keye_chat::VisualKind::Image,
                in_prompt: 2,
                supplied: 1
            }
        ),
        "{too_few}"
    );
    let mut three = images.clone();
    three.push(images[0]);
    assert!(assembler.assemble(prompt, &three, &[]).is_err());
    let video = VideoLayout::Block(GridThw::new(2, 4, 4));
    assert!(assembler.assemble(prompt, &images, &[video]).is_err());
}

#[test]
fn invalid_visual_items_are_errors() {
    let tokenizer = Tokenizer::from_model_dir(fixtures().join("models/keye-1.5-tiny")).unwrap();
    let assembler = PromptAssembler::new(&tokenizer, 2).unwrap();
    let video_prompt = "<|vision_start|><|video_pad|><|vision_end|>";
    let frame = |t, h, w, timestamp| VideoFrame {
        grid: GridThw::new(t, h, w),
        kind: FrameKind::Slow,
        timestamp,
    };
    for layout in [
        VideoLayout::Frames(vec![]),
        VideoLayout::Frames(vec![frame(2, 4, 4, None)]),
        VideoLayout::Frames(vec![frame(1, 3, 4, None)]),
        VideoLayout::Frames(vec![frame(1, 4, 4, Some(f32::NAN))]),
        VideoLayout::Block(GridThw::new(0, 4, 4)),
        VideoLayout::Block(GridThw::new(1, usize::MAX, 4)),
    ] {
        assert!(
            assembler
                .assemble(video_prompt, &[], std::slice::from_ref(&layout))
                .is_err(),
            "{layout:?}"
        );
    }
    assert!(PromptAssembler::new(&tokenizer, 0).is_err());

    // The Preview tokenizer has no <|frame|>: a per-frame layout cannot be written.
    let preview = Tokenizer::from_model_dir(fixtures().join("models/keye-preview-tiny")).unwrap();
    let assembler = PromptAssembler::new(&preview, 2).unwrap();
    let layout = VideoLayout::Frames(vec![frame(1, 4, 4, Some(0.5))]);
    assert!(assembler.assemble(video_prompt, &[], &[layout]).is_err());
}

#[test]
fn frames_without_timestamps_write_no_time_text() {
    let tokenizer = Tokenizer::from_model_dir(fixtures().join("models/keye-1.5-tiny")).unwrap();
    let assembler = PromptAssembler::new(&tokenizer, 2).unwrap();
    let frames = vec![
        VideoFrame {
            grid: GridThw::new(1, 2, 4),
            kind: FrameKind::Slow,
            timestamp: None,
        },
        VideoFrame {
            grid: GridThw::new(1, 2, 2),
            kind: FrameKind::Fast,
            timestamp: None,
        },
    ];
    let ids = assembler
        .assemble(
            "<|vision_start|><|video_pad|><|vision_end|>",
            &[],
            &[VideoLayout::Frames(frames)],
        )
        .unwrap();
    assert_eq!(
        tokenizer.decode(&ids, false).unwrap(),
        "<|vision_start|><|frame|><|video_pad|><|video_pad|><|frame|><|fast_start|>\
         <|video_pad|><|fast_end|><|vision_end|>"
    );
}

/// keye-preprocessing.md §11.8: six frames, types [0,1,1,0,1,0], timestamps 0.0…2.5, slow
/// frames 168×252 (54 tokens), fast frames 140×224 (40 tokens).
#[test]
fn slow_fast_prompt_segment_of_the_spec() {
    let tokenizer = Tokenizer::from_model_dir(fixtures().join("models/keye-1.5-tiny")).unwrap();
    let assembler = PromptAssembler::new(&tokenizer, 2).unwrap();
    let frames = [0, 1, 1, 0, 1, 0]
        .into_iter()
        .enumerate()
        .map(|(index, kind)| VideoFrame {
            grid: if kind == 0 {
                GridThw::new(1, 12, 18)
            } else {
                GridThw::new(1, 10, 16)
            },
            kind: if kind == 0 {
                FrameKind::Slow
            } else {
                FrameKind::Fast
            },
            timestamp: Some(index as f32 * 0.5),
        })
        .collect();
    let ids = assembler
        .assemble(
            "<|vision_start|><|video_pad|><|vision_end|>",
            &[],
            &[VideoLayout::Frames(frames)],
        )
        .unwrap();
    let pads = |n: usize| "<|video_pad|>".repeat(n);
    let expected = format!(
        "<|vision_start|><|frame|>0.0{}<|frame|>0.5<|fast_start|>{}<|fast_end|>\
         <|frame|>1.0<|fast_start|>{}<|fast_end|><|frame|>1.5{}<|frame|>2.0<|fast_start|>{}\
         <|fast_end|><|frame|>2.5{}<|vision_end|>",
        pads(54),
        pads(40),
        pads(40),
        pads(54),
        pads(40),
        pads(54)
    );
    assert_eq!(tokenizer.decode(&ids, false).unwrap(), expected);
    assert_eq!(ids, tokenizer.encode(&expected).unwrap());
}
