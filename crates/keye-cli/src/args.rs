//! Flags shared by `run` and `chat`.

use anyhow::Result;
use keye::{
    GenerationOptions, HubOptions, Keye, KvCacheFormat, LoadOptions, MatmulPrecision, PromptLookup,
    WeightFormat,
};
use keye_chat::ThinkingMode;
use keye_chat::{Part, VideoPart, VideoSource};
use keye_media::{ImageOptions, VideoOptions};
use keye_model::WeightFormats;

/// The official checkpoint, downloaded and cached on first use.
pub const DEFAULT_MODEL: &str = "Kwai-Keye/Keye-VL-8B-Preview";

#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// Checkpoint folder, GGUF file written by `keye quantize` (memory-mapped), or a Hugging Face
    /// hub id (downloaded into the hub cache on first use; honours HF_TOKEN, HF_ENDPOINT,
    /// HF_HOME, HF_HUB_CACHE and HF_HUB_OFFLINE).
    #[arg(short, long, env = "KEYE_MODEL", default_value = DEFAULT_MODEL)]
    pub model: String,
    /// Hub revision (branch, tag or commit) for hub ids.
    #[arg(long)]
    pub revision: Option<String>,
    /// Worker threads (default: all cores).
    #[arg(long, env = "KEYE_THREADS")]
    pub threads: Option<usize>,
    /// Largest context (prompt + answer) in tokens; bounds the KV cache. Default: the model's.
    #[arg(long)]
    pub max_context: Option<usize>,
    #[command(flatten)]
    pub quant: QuantArgs,
    /// KV cache storage: f32 (exact), bf16 (values rounded to bf16 as in PyTorch's bf16
    /// inference: half the memory and half the reads of long-context decoding) or q8 (8-bit rows
    /// with a scale each: about a quarter of the memory, at a small attention error).
    #[arg(long, default_value = "f32", value_name = "FORMAT")]
    pub kv_cache: KvCacheFormat,
}

/// Weight formats chosen at load.
#[derive(clap::Args, Debug, Clone)]
pub struct QuantArgs {
    /// Format of the language model's linear weights: stored (as the checkpoint holds them),
    /// bf16, q8_0, q4_0 or q4_k (quantized at load, GGML-compatible blocks).
    #[arg(long, default_value = "stored", value_name = "FORMAT")]
    pub quant: WeightFormat,
    /// Format of the vision tower's and projector's linear weights (same choices).
    #[arg(long, default_value = "stored", value_name = "FORMAT")]
    pub quant_vision: WeightFormat,
    /// Products with bf16 weights: f32 (activations kept exact; matches the f32 reference) or
    /// bf16 (activations rounded to bf16 as in PyTorch's bf16 inference; prompts and images about
    /// 3× faster on CPUs with AVX-512 BF16). With bf16, quantized weights also run prompts and
    /// images on AMX tiles where the CPU has them (decoded to bf16 a block at a time).
    #[arg(long, default_value = "f32", value_name = "PRECISION")]
    pub matmul_precision: MatmulPrecision,
}

impl QuantArgs {
    pub fn formats(&self) -> WeightFormats {
        WeightFormats {
            text: self.quant,
            vision: self.quant_vision,
            matmul_precision: self.matmul_precision,
        }
    }
}

impl ModelArgs {
    pub fn load(&self) -> Result<Keye> {
        if let Some(threads) = self.threads {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build_global()?;
        }
        let mut hub = HubOptions::from_env();
        hub.revision = self.revision.clone();
        let options = LoadOptions {
            hub,
            max_context: self.max_context,
            quant: self.quant.quant,
            quant_vision: self.quant.quant_vision,
            matmul_precision: self.quant.matmul_precision,
            kv_cache: self.kv_cache,
        };
        Ok(Keye::load(&self.model, &options)?)
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct GenerationArgs {
    /// Most tokens to generate.
    #[arg(long, short = 'n')]
    pub max_new_tokens: Option<usize>,
    /// Sampling temperature; 0 is greedy. Default: the checkpoint's generation_config.json.
    #[arg(long, short = 't')]
    pub temperature: Option<f32>,
    #[arg(long)]
    pub top_p: Option<f32>,
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Hugging Face's penalty on every token already in the conversation (e.g. 1.05).
    #[arg(long)]
    pub repetition_penalty: Option<f32>,
    /// OpenAI's penalty per earlier occurrence of a token in the answer (-2 to 2).
    #[arg(long, allow_negative_numbers = true)]
    pub frequency_penalty: Option<f32>,
    /// OpenAI's penalty on tokens the answer already contains (-2 to 2).
    #[arg(long, allow_negative_numbers = true)]
    pub presence_penalty: Option<f32>,
    /// Seed for sampling (random by default).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Stop before this text (repeatable).
    #[arg(long = "stop")]
    pub stop: Vec<String>,
    /// Keep generating through end-of-sequence tokens.
    #[arg(long)]
    pub ignore_eos: bool,
    /// Ask the model to think before answering (appends /think).
    #[arg(long, conflicts_with = "no_think")]
    pub think: bool,
    /// Ask the model to answer directly (appends /no_think). Default: the model decides.
    #[arg(long)]
    pub no_think: bool,
    /// Do not print the thinking part of the answer.
    #[arg(long)]
    pub hide_thinking: bool,
    /// Speculative decoding without a draft model: guess the next tokens from an earlier
    /// occurrence of the latest ones (in the prompt or the answer) and check the guess in one
    /// forward pass. Same output, fewer passes when the answer copies its input (OCR,
    /// transcription, editing).
    #[arg(long)]
    pub prompt_lookup: bool,
    /// Most tokens guessed per forward pass with --prompt-lookup (1 to 15; default 8).
    #[arg(long, value_name = "N", requires = "prompt_lookup",
          value_parser = clap::value_parser!(u8).range(1..=keye::MAX_DRAFT_TOKENS as i64))]
    pub draft_tokens: Option<u8>,
}

impl GenerationArgs {
    pub fn options(&self) -> GenerationOptions {
        GenerationOptions {
            max_new_tokens: self.max_new_tokens,
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            repetition_penalty: self.repetition_penalty,
            frequency_penalty: self.frequency_penalty,
            presence_penalty: self.presence_penalty,
            seed: self.seed,
            stop: self.stop.clone(),
            ignore_eos: self.ignore_eos,
            prompt_lookup: self.prompt_lookup.then(|| {
                let defaults = PromptLookup::default();
                PromptLookup {
                    draft_tokens: self.draft_tokens.map_or(defaults.draft_tokens, usize::from),
                    ..defaults
                }
            }),
        }
    }

    pub fn thinking(&self) -> ThinkingMode {
        if self.think {
            ThinkingMode::Think
        } else if self.no_think {
            ThinkingMode::NoThink
        } else {
            ThinkingMode::Auto
        }
    }
}

#[derive(clap::Args, Debug, Clone, Default)]
pub struct ImageArgs {
    /// Lower bound on an image's resized area in pixels.
    #[arg(long)]
    pub min_pixels: Option<u64>,
    /// Upper bound on an image's resized area in pixels (fewer tokens, faster).
    #[arg(long)]
    pub max_pixels: Option<u64>,
    /// Resize images to about this height (rounded to a multiple of 28); needs --resized-width.
    #[arg(long, requires = "resized_width")]
    pub resized_height: Option<u32>,
    /// Resize images to about this width (rounded to a multiple of 28); needs --resized-height.
    #[arg(long, requires = "resized_height")]
    pub resized_width: Option<u32>,
}

impl ImageArgs {
    pub fn options(&self) -> ImageOptions {
        ImageOptions {
            min_pixels: self.min_pixels,
            max_pixels: self.max_pixels,
            resized_height: self.resized_height,
            resized_width: self.resized_width,
        }
    }
}

#[derive(clap::Args, Debug, Clone, Default)]
pub struct VideoArgs {
    /// Frames sampled per second of video (default 2).
    #[arg(long)]
    pub fps: Option<f64>,
    /// Exact number of frames to sample (Keye-VL-8B-Preview).
    #[arg(long)]
    pub nframes: Option<u32>,
    /// Fewest frames to sample (Keye-VL-8B-Preview).
    #[arg(long)]
    pub min_frames: Option<u32>,
    /// Most frames to sample.
    #[arg(long)]
    pub max_frames: Option<u32>,
    /// Lower bound on a frame's area in pixels.
    #[arg(long)]
    pub video_min_pixels: Option<u64>,
    /// Upper bound on a frame's area in pixels.
    #[arg(long)]
    pub video_max_pixels: Option<u64>,
    /// Pixel budget for all frames of a video (Keye-VL-1.5: `video_total_pixels`; Preview: `total_pixels`).
    #[arg(long)]
    pub video_total_pixels: Option<u64>,
    /// Start of the sampled window, in seconds.
    #[arg(long)]
    pub video_start: Option<f64>,
    /// End of the sampled window, in seconds.
    #[arg(long)]
    pub video_end: Option<f64>,
    /// Similarity above which a frame becomes a low-resolution "fast" frame (Keye-VL-1.5, default 0.9).
    #[arg(long)]
    pub min_frame_similarity: Option<f64>,
}

impl VideoArgs {
    pub fn options(&self) -> VideoOptions {
        VideoOptions {
            fps: self.fps,
            nframes: self.nframes,
            min_frames: self.min_frames,
            max_frames: self.max_frames,
            min_pixels: self.video_min_pixels,
            max_pixels: self.video_max_pixels,
            total_pixels: self.video_total_pixels,
            video_total_pixels: self.video_total_pixels,
            video_start: self.video_start,
            video_end: self.video_end,
            resized_height: None,
            resized_width: None,
            min_frame_similarity: self.min_frame_similarity,
        }
    }

    /// A video part: a file or URL, or a folder whose images are the frames in name order.
    pub fn part(&self, source: &str) -> Part {
        Part::Video(VideoPart {
            source: video_source(source),
            options: self.options(),
        })
    }
}

pub fn video_source(source: &str) -> VideoSource {
    if std::path::Path::new(source).is_dir() {
        VideoSource::Frames(frames_in(source))
    } else {
        VideoSource::File(source.to_owned())
    }
}

/// The images of a folder, sorted by name: a video given as frames.
fn frames_in(dir: &str) -> Vec<String> {
    let mut frames: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                matches!(
                    e.to_ascii_lowercase().as_str(),
                    "png" | "jpg" | "jpeg" | "webp" | "bmp"
                )
            })
        })
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    frames.sort();
    frames
}

/// Progress bars on stderr for video decoding and vision encoding, when stderr is a terminal.
pub fn progress_bars() -> Option<keye::Progress> {
    use std::io::IsTerminal;
    use std::sync::Mutex;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bars: Mutex<Option<(keye::Stage, indicatif::ProgressBar)>> = Mutex::new(None);
    Some(keye::Progress::new(move |stage, done, total| {
        let mut bars = bars.lock().expect("progress lock");
        if bars.as_ref().is_none_or(|(s, _)| *s != stage) {
            if let Some((_, bar)) = bars.take() {
                bar.finish_and_clear();
            }
            let label = match stage {
                keye::Stage::Decoding => "decoding video",
                keye::Stage::Encoding => "vision encoder",
            };
            let bar = indicatif::ProgressBar::new(total as u64).with_message(label);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg:15} [{bar:30}] {pos}/{len} {per_sec} eta {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            *bars = Some((stage, bar));
        }
        if let Some((_, bar)) = bars.as_ref() {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
            if done >= total {
                bar.finish_and_clear();
            }
        }
    }))
}
