//! Prompts as Keye is evaluated: the dataset's own `build_prompt` by default, the Qwen2-VL style
//! model-side prompts on request, the think-mode suffix and the optional system turn.

use std::path::{Path, PathBuf};

use keye_chat::{Content, ImagePart, Message, Part, VideoPart, VideoSource};
use keye_media::{ImageOptions, VideoOptions};

use crate::dataset::{Benchmark, Dataset, DatasetType, FrameSampling, ImageEncoding, YesNoRating};
use crate::python::{float_repr, has_cjk, to_list_str};

/// Whose prompt template to use (`--prompt-style`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PromptStyle {
    /// The dataset's `build_prompt` (what Keye's published numbers use).
    #[default]
    Dataset,
    /// The model wrapper's custom prompts (`use_custom_prompt=True`).
    Model,
}

/// Keye's thinking switch, appended to the last text part.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ThinkMode {
    /// No suffix: the model decides (auto-think).
    #[default]
    Auto,
    /// Append `/think`.
    Think,
    /// Append `/no_think`.
    #[value(name = "no_think")]
    NoThink,
}

impl ThinkMode {
    pub fn suffix(self) -> &'static str {
        match self {
            ThinkMode::Auto => "",
            ThinkMode::Think => "/think",
            ThinkMode::NoThink => "/no_think",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct PromptOptions {
    pub style: PromptStyle,
    pub think: ThinkMode,
    /// A system turn; without one the chat template inserts its default.
    pub system_prompt: Option<String>,
    pub image_encoding: ImageEncoding,
    /// Pixel bounds forwarded to every image (the wrapper's `min_pixels`/`max_pixels`).
    pub min_pixels: Option<u64>,
    pub max_pixels: Option<u64>,
}

const MCQ_INSTRUCTION: &str = "Please select the correct answer from the options above. \n";
const VQA_SUFFIX: &str = "\nAnswer the question using a single word or phrase.";
const AMBER_SUFFIX: &str = "\nPlease answer yes or no.";
const KWAI_YORN_SUFFIX: &str =
    "\n请直接给出结论，回答是或者否，不需要做额外分析，并且不许回答不确定";
const MODEL_MCQ_EN: &str = "Please select the correct answer from the options above.";
const MODEL_MCQ_CN: &str = "请直接回答选项字母。";
const MODEL_YORN_SUFFIX: &str = " Please answer yes or no.";
const MODEL_VQA_SUFFIX: &str =
    "\nPlease try to answer the question with short words or phrases if possible.";
const VIDEO_MME_INSTRUCTION: &str = "\nThese are the frames of a video. Select the best answer to the following \
multiple-choice question based on the video. Respond with only the letter (A, B, C, or D) of the correct option.\n";
/// Keye's wrapper raises `min_pixels` for OCRBench only.
const OCRBENCH_MIN_PIXELS: u64 = 10 * 10 * 28 * 28;

/// The chat messages for one dataset row.
pub fn build_messages(
    dataset: &Dataset,
    row: usize,
    options: &PromptOptions,
) -> Result<Vec<Message>, String> {
    let mut parts = user_parts(dataset, row, options)?;
    if let Some(Part::Text(last)) = parts.iter_mut().rev().find(|p| matches!(p, Part::Text(_))) {
        last.push_str(options.think.suffix());
    }
    let mut messages = Vec::with_capacity(2);
    if let Some(system) = &options.system_prompt {
        messages.push(Message {
            role: "system".into(),
            content: Content::Text(system.clone()),
        });
    }
    messages.push(Message {
        role: "user".into(),
        content: Content::Parts(parts),
    });
    Ok(messages)
}

fn user_parts(dataset: &Dataset, row: usize, options: &PromptOptions) -> Result<Vec<Part>, String> {
    let question = dataset.get(row, "question").unwrap_or("nan");
    if let Benchmark::VideoMme(sampling) = dataset.spec.benchmark {
        return video_mme_parts(dataset, row, sampling, question, options);
    }
    let image_options = ImageOptions {
        min_pixels: if dataset.name() == "OCRBench" {
            Some(OCRBENCH_MIN_PIXELS)
        } else {
            options.min_pixels
        },
        max_pixels: options.max_pixels,
        ..ImageOptions::default()
    };
    let images: Vec<Part> = dataset
        .image_files(row, options.image_encoding)?
        .into_iter()
        .map(|path| image_part(&path, &image_options))
        .collect();
    let model_style = options.style == PromptStyle::Model && uses_model_prompt(dataset);
    let text = match (&dataset.spec.benchmark, model_style) {
        (Benchmark::Mcq { mmmu, .. }, true) => {
            let text = mcq_text(
                dataset,
                row,
                question,
                if *mmmu { Some(MODEL_MCQ_EN) } else { None },
            );
            text.trim_end().to_string()
        }
        (Benchmark::Mcq { .. }, false) => mcq_text(dataset, row, question, Some(MCQ_INSTRUCTION)),
        (Benchmark::YesNo(_), true) => format!("{question}{MODEL_YORN_SUFFIX}"),
        (Benchmark::Vqa(_), true) => format!("{question}{MODEL_VQA_SUFFIX}"),
        (Benchmark::YesNo(YesNoRating::Amber), false) => format!("{question}{AMBER_SUFFIX}"),
        (Benchmark::YesNo(YesNoRating::Kwai), false) => format!("{question}{KWAI_YORN_SUFFIX}"),
        (
            Benchmark::Vqa(
                crate::dataset::VqaScoring::OcrBench | crate::dataset::VqaScoring::MathVista,
            ),
            false,
        ) => question.to_string(),
        (Benchmark::Vqa(_), false) => format!("{question}{VQA_SUFFIX}"),
        (Benchmark::YesNo(_), false) => question.to_string(),
        (Benchmark::VideoMme(_), _) => unreachable!("handled above"),
    };
    let mmmu_interleave =
        matches!(dataset.spec.benchmark, Benchmark::Mcq { mmmu: true, .. }) && !model_style;
    if mmmu_interleave {
        return interleave_mmmu(images, &text);
    }
    let mut parts = images;
    parts.push(Part::Text(text));
    Ok(parts)
}

/// Which datasets the model-side prompts cover (`use_custom_prompt`).
fn uses_model_prompt(dataset: &Dataset) -> bool {
    match dataset.spec.dataset_type {
        DatasetType::Mcq => true,
        DatasetType::Yorn => matches!(dataset.name(), "HallusionBench" | "POPE"),
        DatasetType::Vqa => !matches!(dataset.name(), "MMVet" | "Benchmark_V21" | "IFEval"),
        DatasetType::VideoMcq => false,
    }
}

/// `[Hint: …⏎]Question: …⏎` then the options block and `instruction` when options exist. The
/// model-side variant picks its instruction by language (`instruction == None`).
fn mcq_text(dataset: &Dataset, row: usize, question: &str, instruction: Option<&str>) -> String {
    let mut text = String::new();
    if let Some(hint) = dataset.get(row, "hint") {
        text.push_str(&format!("Hint: {hint}\n"));
    }
    text.push_str(&format!("Question: {question}\n"));
    let options = dataset.options(row);
    if !options.is_empty() {
        text.push_str("Options:\n");
        for (letter, option) in &options {
            text.push_str(&format!("{letter}. {option}\n"));
        }
        let instruction = instruction.unwrap_or(if has_cjk(&text) {
            MODEL_MCQ_CN
        } else {
            MODEL_MCQ_EN
        });
        text.push_str(instruction);
    }
    text
}

/// MMMU: `<image k>` placeholders in the text become the k-th image, in place.
fn interleave_mmmu(images: Vec<Part>, text: &str) -> Result<Vec<Part>, String> {
    let mut segments = text.split("<image ");
    let first = segments.next().unwrap_or_default();
    let rest: Vec<&str> = segments.collect();
    if rest.is_empty() {
        let mut parts = images;
        parts.push(Part::Text(text.to_string()));
        return Ok(parts);
    }
    let mut parts = vec![Part::Text(first.to_string())];
    for segment in rest {
        let mut chars = segment.chars();
        let (Some(digit), Some('>')) = (chars.next().and_then(|c| c.to_digit(10)), chars.next())
        else {
            return Err(format!(
                "malformed MMMU image placeholder `<image {}`",
                segment.chars().take(8).collect::<String>()
            ));
        };
        let image = (digit as usize)
            .checked_sub(1)
            .and_then(|i| images.get(i))
            .ok_or_else(|| {
                format!(
                    "placeholder <image {digit}> but the row has {} images",
                    images.len()
                )
            })?;
        parts.push(image.clone());
        parts.push(Part::Text(segment[2..].to_string()));
    }
    Ok(parts)
}

fn image_part(path: &Path, options: &ImageOptions) -> Part {
    Part::Image(ImagePart {
        source: path.display().to_string(),
        options: options.clone(),
    })
}

/// Video-MME frames mode: empty system text, the frames, the instruction, then the question
/// with its candidates. Without extracted frames the video itself is sent with the sampling.
fn video_mme_parts(
    dataset: &Dataset,
    row: usize,
    sampling: FrameSampling,
    question: &str,
    options: &PromptOptions,
) -> Result<Vec<Part>, String> {
    let video = dataset
        .get(row, "video")
        .ok_or("the row has no `video` column")?;
    let candidates = dataset.get(row, "candidates").map_or(Ok(Vec::new()), |c| {
        to_list_str(c).ok_or_else(|| "the `candidates` cell does not parse as a list".to_string())
    })?;
    let frame_dir = dataset.image_dir().join(video);
    let image_options = ImageOptions {
        min_pixels: options.min_pixels,
        max_pixels: options.max_pixels,
        ..ImageOptions::default()
    };
    let mut parts = vec![Part::Text(String::new())];
    match extracted_frames(&frame_dir, sampling) {
        Some(frames) => parts.extend(frames.iter().map(|f| image_part(f, &image_options))),
        None => {
            let video_path = dataset
                .media_dir()
                .join("video")
                .join(format!("{video}.mp4"));
            if !video_path.is_file() {
                return Err(format!(
                    "neither extracted frames in {} nor the video {} exist",
                    frame_dir.display(),
                    video_path.display()
                ));
            }
            let (nframes, fps) = match sampling {
                FrameSampling::Frames(n) => (Some(n), None),
                FrameSampling::Fps(f) => (None, Some(f)),
            };
            let video_options = VideoOptions {
                nframes,
                fps,
                min_pixels: options.min_pixels,
                max_pixels: options.max_pixels,
                ..VideoOptions::default()
            };
            parts.push(Part::Video(VideoPart {
                source: VideoSource::File(video_path.display().to_string()),
                options: video_options,
            }));
        }
    }
    parts.push(Part::Text(VIDEO_MME_INSTRUCTION.to_string()));
    let mut question_block = question.to_string();
    question_block.push('\n');
    question_block.push_str(&candidates.join("\n"));
    parts.push(Part::Text(format!("Question: {question_block}\nAnswer: ")));
    Ok(parts)
}

/// Frames VLMEvalKit already extracted: `frame-<i>-of-<n>.jpg`, or `frame-<i>-of-<k>-<f>fps.jpg`.
fn extracted_frames(frame_dir: &Path, sampling: FrameSampling) -> Option<Vec<PathBuf>> {
    let frames: Vec<PathBuf> = match sampling {
        FrameSampling::Frames(n) => (1..=n)
            .map(|i| frame_dir.join(format!("frame-{i}-of-{n}.jpg")))
            .collect(),
        FrameSampling::Fps(fps) => {
            let suffix = format!("-{}fps.jpg", float_repr(fps));
            let count = std::fs::read_dir(frame_dir)
                .ok()?
                .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
                .find_map(|name| {
                    let middle = name.strip_prefix("frame-1-of-")?.strip_suffix(&suffix)?;
                    middle.parse::<u32>().ok()
                })?;
            (1..=count)
                .map(|i| frame_dir.join(format!("frame-{i}-of-{count}{suffix}")))
                .collect()
        }
    };
    (!frames.is_empty() && frames.iter().all(|f| f.is_file())).then_some(frames)
}
