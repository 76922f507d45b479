//! Flags shared by `run` and `chat`.

use anyhow::Result;
use keye::{GenerationOptions, HubOptions, Keye, LoadOptions};
use keye_chat::ThinkingMode;
use keye_media::ImageOptions;

/// The official checkpoint, downloaded and cached on first use.
pub const DEFAULT_MODEL: &str = "Kwai-Keye/Keye-VL-8B-Preview";

#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// Checkpoint folder, or a Hugging Face hub id (downloaded into the hub cache on first use;
    /// honours HF_TOKEN, HF_ENDPOINT, HF_HOME, HF_HUB_CACHE and HF_HUB_OFFLINE).
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
    #[arg(long)]
    pub repetition_penalty: Option<f32>,
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
}

impl GenerationArgs {
    pub fn options(&self) -> GenerationOptions {
        GenerationOptions {
            max_new_tokens: self.max_new_tokens,
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            repetition_penalty: self.repetition_penalty,
            seed: self.seed,
            stop: self.stop.clone(),
            ignore_eos: self.ignore_eos,
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
