//! Run Keye-VL: load a checkpoint (folder or hub id), send chat messages with images, get the
//! answer as a stream of tokens plus the final text, usage and timings.
//!
//! ```no_run
//! use keye::{Keye, LoadOptions, Request};
//! use keye_chat::{ImagePart, Message, Part};
//!
//! let keye = Keye::load("Kwai-Keye/Keye-VL-8B-Preview", &LoadOptions::default())?;
//! let request = Request::new(vec![Message::user(vec![
//!     Part::Image(ImagePart { source: "photo.jpg".into(), options: Default::default() }),
//!     Part::Text("Describe this image.".into()),
//! ])]);
//! let completion = keye.generate(&request, &mut |event: &keye::TokenEvent| {
//!     print!("{}", event.text);
//!     keye::Flow::Continue
//! })?;
//! println!("\n{} tokens", completion.usage.completion_tokens);
//! # Ok::<(), keye::Error>(())
//! ```

mod error;
mod export;
mod files;
mod hub;
mod lookup;
mod progress;
mod prompt;
mod request;
mod sequence;
mod trace;

use std::path::{Path, PathBuf};
use std::time::Instant;

use keye_chat::{ChatTemplate, PromptAssembler, StopMatcher, StreamDecoder, Tokenizer};
use keye_media::{ProcessorConfig, UtilsLimits};
use keye_model::{
    GenerationConfig, KeyeConfig, KeyeModel, MAX_EXACT_VERIFY_ROWS, Sampler, SamplingParams,
    SequenceChunk, WeightFormats,
};

use crate::files::{ModelFiles, ModelText};

pub use error::{Error, Result};
pub use export::{ExportSummary, write_gguf};
pub use hub::{HubOptions, looks_like_hub_id, resolve_model};
pub use keye_model::{KvCacheFormat, MatmulPrecision, QuantType, WeightFormat};
pub use lookup::{MAX_DRAFT_TOKENS, PromptLookup};
pub use progress::{Progress, Stage};
pub use prompt::{Prompt, VideoSummary, VisualInput};
pub use request::{GenerationOptions, Request};
pub use sequence::{Completion, DraftStats, FinishReason, Sequence, Timings, TokenEvent, Usage};
pub use trace::{Trace, TraceTensor};

/// What a [`TokenSink`] wants after seeing a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// Receives tokens as they are generated (the CLI prints them, the server streams them).
pub trait TokenSink {
    fn on_token(&mut self, event: &TokenEvent) -> Flow;
}

impl<F: FnMut(&TokenEvent) -> Flow> TokenSink for F {
    fn on_token(&mut self, event: &TokenEvent) -> Flow {
        self(event)
    }
}

/// How to find and size a model.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    pub hub: HubOptions,
    /// Caps the context (prompt plus answer) below the model's `max_position_embeddings`,
    /// which bounds the KV cache of a request.
    pub max_context: Option<usize>,
    /// Format of the language model's linear weights (q/k/v/o, gate/up/down, lm_head).
    /// Embedding tables, norms and biases stay as stored.
    pub quant: WeightFormat,
    /// Format of the vision tower's and projector's linear weights.
    pub quant_vision: WeightFormat,
    /// Whether products with bf16 weights round their activations to bf16 (faster prompts and
    /// images on CPUs with AVX-512 BF16) or keep them f32 (the default).
    pub matmul_precision: MatmulPrecision,
    /// Storage of each request's KV cache.
    pub kv_cache: KvCacheFormat,
}

/// What a model's files say about its inputs, read without its weights (`keye media`).
pub struct InputSettings {
    pub config: KeyeConfig,
    /// `preprocessor_config.json`, or the defaults of the model's generation.
    pub processor: ProcessorConfig,
    pub tokenizer: Tokenizer,
}

impl InputSettings {
    /// `path` is a checkpoint folder or a GGUF file written by `keye quantize`.
    pub fn read(path: &Path) -> Result<Self> {
        Self::from_files(&ModelFiles::open(path)?)
    }

    fn from_files(files: &ModelFiles) -> Result<Self> {
        let config = KeyeConfig::from_json(
            &files.required_text(ModelText::Config)?,
            &files.origin(ModelText::Config),
        )?;
        let generation_rules = media_generation(config.architecture()?);
        let processor = match files.text(ModelText::PreprocessorConfig)? {
            Some(json) => ProcessorConfig::from_json(&json, generation_rules)?,
            None => ProcessorConfig::defaults(generation_rules),
        };
        Ok(Self {
            config,
            processor,
            tokenizer: files.tokenizer()?,
        })
    }

    /// The preprocessing rules (Preview or 1.5) the model's generation uses.
    pub fn generation(&self) -> Result<keye_media::Generation> {
        Ok(media_generation(self.config.architecture()?))
    }
}

/// Default answer length when neither the request nor `generation_config.json` sets one.
const DEFAULT_MAX_NEW_TOKENS: usize = 1024;
/// Prompt tokens per forward pass during prefill: bounds activation memory for long prompts.
const PREFILL_CHUNK: usize = 1024;

/// A loaded Keye-VL model with its tokenizer, chat template and processor settings.
pub struct Keye {
    model: KeyeModel,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    assembler: PromptAssembler,
    processor: ProcessorConfig,
    /// keye-vl-utils' pixel and frame limits, with the environment overrides it honours.
    media_limits: UtilsLimits,
    generation: GenerationConfig,
    end_ids: Vec<u32>,
    max_context: usize,
    kv_cache: KvCacheFormat,
    path: PathBuf,
}

impl Keye {
    /// `spec` is a checkpoint folder, a GGUF file written by `keye quantize`, or a hub id such
    /// as `Kwai-Keye/Keye-VL-8B-Preview`.
    pub fn load(spec: &str, options: &LoadOptions) -> Result<Self> {
        let path = hub::resolve_model(spec, &options.hub)?;
        Self::open(&path, options)
    }

    /// A checkpoint folder or GGUF file, weights as stored.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        Self::open(dir, &LoadOptions::default())
    }

    pub fn from_hub(repo_id: &str, hub: HubOptions) -> Result<Self> {
        Self::load(
            repo_id,
            &LoadOptions {
                hub,
                ..LoadOptions::default()
            },
        )
    }

    fn open(path: &Path, options: &LoadOptions) -> Result<Self> {
        let files = ModelFiles::open(path)?;
        let formats = WeightFormats {
            text: options.quant,
            vision: options.quant_vision,
            matmul_precision: options.matmul_precision,
        };
        let model = match &files {
            ModelFiles::Folder(dir) => KeyeModel::load_with_formats(dir, formats)?,
            ModelFiles::Gguf(file) => KeyeModel::from_gguf(file, formats)?,
        };
        let settings = InputSettings::from_files(&files)?;
        let media_limits = UtilsLimits::from_env(settings.generation()?)?;
        let InputSettings {
            processor,
            tokenizer,
            ..
        } = settings;
        let template = files.chat_template()?;
        let assembler =
            PromptAssembler::new(&tokenizer, model.config().vision_config.spatial_merge_size)?;
        let generation = match files.text(ModelText::GenerationConfig)? {
            Some(json) => {
                GenerationConfig::from_json(&json, &files.origin(ModelText::GenerationConfig))?
            }
            None => GenerationConfig::default(),
        };
        let mut end_ids: Vec<u32> = generation
            .eos_token_id
            .as_ref()
            .or(model.config().eos_token_id.as_ref())
            .map(|ids| ids.to_vec())
            .unwrap_or_default();
        if let Ok(im_end) = tokenizer.token_id("<|im_end|>")
            && !end_ids.contains(&im_end)
        {
            end_ids.push(im_end);
        }
        let model_max = model.config().max_position_embeddings;
        let max_context = options.max_context.map_or(model_max, |m| m.min(model_max));
        Ok(Self {
            model,
            tokenizer,
            template,
            assembler,
            processor,
            media_limits,
            generation,
            end_ids,
            max_context,
            kv_cache: options.kv_cache,
            path: path.to_owned(),
        })
    }

    pub fn model(&self) -> &KeyeModel {
        &self.model
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn generation_config(&self) -> &GenerationConfig {
        &self.generation
    }

    /// The checkpoint folder (the hub snapshot folder for hub ids) or GGUF file in use.
    pub fn model_dir(&self) -> &Path {
        &self.path
    }

    /// Bytes of KV cache one token of a request takes, in the cache format chosen at load.
    pub fn cache_bytes_per_token(&self) -> usize {
        self.model.text().cache_bytes_per_token(self.kv_cache)
    }

    pub fn max_context(&self) -> usize {
        self.max_context
    }

    /// Media, template and tokenisation of a request, without running the model.
    pub fn prepare(&self, request: &Request) -> Result<Prompt> {
        prompt::prepare(self, request)
    }

    /// Prepares the request, runs the prompt through the model and samples the first token.
    pub fn start(&self, request: &Request) -> Result<Sequence> {
        let started = Instant::now();
        let prompt = self.prepare(request)?;
        let preprocess = started.elapsed();

        let options = &request.generation;
        if let Some(lookup) = &options.prompt_lookup {
            lookup.validate()?;
        }
        let max_new_tokens = options
            .max_new_tokens
            .or(self.generation.max_new_tokens)
            .unwrap_or(DEFAULT_MAX_NEW_TOKENS)
            .max(1);
        let prompt_len = prompt.input_ids.len();
        if prompt_len >= self.max_context {
            return Err(keye_model::Error::ContextOverflow {
                needed: prompt_len + 1,
                available: self.max_context,
                model_max: self.model.config().max_position_embeddings,
            }
            .into());
        }
        let capacity = (prompt_len + max_new_tokens).min(self.max_context);

        let mut trace = request.trace.then(Trace::default);
        let vision_started = Instant::now();
        let total_patches = prompt::vision_patches(&prompt);
        let mut encoded_patches = 0;
        let mut encode =
            |input: &Option<VisualInput>, kind: Modality, trace: Option<&mut Trace>| {
                input
                    .as_ref()
                    .map(|v| {
                        self.encode(
                            v,
                            kind,
                            trace,
                            request.progress.as_ref(),
                            &mut encoded_patches,
                            total_patches,
                        )
                    })
                    .transpose()
            };
        let images = encode(&prompt.images, Modality::Image, trace.as_mut())?;
        let videos = encode(&prompt.videos, Modality::Video, trace.as_mut())?;
        let vision = vision_started.elapsed();

        let prefill_started = Instant::now();
        let embeds =
            self.model
                .embed_prompt(&prompt.input_ids, images.as_ref(), videos.as_ref())?;
        ensure_memory_for_cache(self.cache_bytes_per_token(), capacity)?;
        let mut cache = self.model.new_cache(capacity, self.kv_cache)?;
        let mut logits = None;
        let mut start = 0;
        while start < prompt_len {
            let n = PREFILL_CHUNK.min(prompt_len - start);
            let chunk = embeds.narrow(0, start, n)?;
            let positions = &prompt.positions.ids[start..start + n];
            logits = Some(self.model.forward(
                &chunk,
                &mut [SequenceChunk {
                    positions,
                    cache: &mut cache,
                }],
            )?);
            start += n;
        }
        let mut logits = logits
            .ok_or_else(|| Error::InvalidRequest("the prompt is empty".into()))?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let prefill = prefill_started.elapsed();

        if let Some(trace) = trace.as_mut() {
            trace.ints(
                "input_ids",
                &[prompt_len],
                prompt.input_ids.iter().map(|&i| i as i64),
            );
            trace.ints("position_ids", &[3, prompt_len], prompt.positions.to_rows());
            trace.ints("rope_deltas", &[1], [prompt.positions.rope_delta]);
            trace.tensor("inputs_embeds", &embeds)?;
            trace.floats("logits_last", &[logits.len()], &logits);
            trace_videos(trace, &prompt.video_summaries);
        }

        let mut sequence = Sequence {
            cache,
            sampler: Sampler::new(self.sampling_params(options)),
            history: prompt.input_ids.clone(),
            prompt_len,
            generated: Vec::new(),
            rope_delta: prompt.positions.rope_delta,
            max_new_tokens,
            end_ids: if options.ignore_eos {
                Vec::new()
            } else {
                self.end_ids.clone()
            },
            decoder: Some(StreamDecoder::new(&self.tokenizer, true)),
            stops: StopMatcher::new(options.stop.iter().cloned()),
            text: String::new(),
            shown: 0,
            released: String::new(),
            events: Vec::new(),
            finish: None,
            timings: Timings {
                preprocess,
                vision,
                prefill,
                decode: Default::default(),
            },
            trace,
            lookup: options.prompt_lookup,
            draft: Vec::new(),
            drafts: DraftStats::default(),
        };
        let token = sequence.sampler.sample(&mut logits, &sequence.history);
        sequence.accept(token)?;
        Ok(sequence)
    }

    /// Feeds every unfinished sequence its last sampled token in one batched forward pass and
    /// samples the next token of each. Sequences with prompt lookup also feed their draft in
    /// the same pass and may advance by several tokens.
    pub fn step(&self, sequences: &mut [&mut Sequence]) -> Result<()> {
        self.advance(sequences, None)
    }

    /// [`step`](Self::step), handing every event to `sink` as soon as its token is accepted, so
    /// a sink that stops sees no token after the one it stopped at, as in plain decoding.
    fn advance(
        &self,
        sequences: &mut [&mut Sequence],
        mut sink: Option<&mut dyn TokenSink>,
    ) -> Result<()> {
        let started = Instant::now();
        let mut active: Vec<&mut Sequence> = sequences
            .iter_mut()
            .filter(|s| !s.is_finished())
            .map(|s| &mut **s)
            .collect();
        if active.is_empty() {
            return Ok(());
        }
        // Drafts only fill the rows that keep every row's logits equal to a plain step's.
        let mut spare_rows = MAX_EXACT_VERIFY_ROWS.saturating_sub(active.len());
        for sequence in active.iter_mut() {
            sequence.propose_draft(&mut spare_rows);
        }
        let drafting = active.iter().any(|s| !s.draft.is_empty());
        let rows: usize = active.iter().map(|s| 1 + s.draft.len()).sum();
        let mut tokens = Vec::with_capacity(rows);
        let mut positions = Vec::with_capacity(rows);
        for sequence in &active {
            let pending = sequence
                .pending_token()
                .expect("unfinished sequences have a pending token");
            tokens.push(pending);
            tokens.extend_from_slice(&sequence.draft);
            // Generated tokens advance all three mRoPE axes together from the cache length.
            let first = sequence.cache.len() as i64 + sequence.rope_delta;
            positions.extend((0..=sequence.draft.len() as i64).map(|i| [first + i; 3]));
        }
        let embeds = self.model.embed_prompt(&tokens, None, None)?;
        let logits = {
            let mut chunks = Vec::with_capacity(active.len());
            let mut first_row = 0;
            for sequence in active.iter_mut() {
                let n = 1 + sequence.draft.len();
                chunks.push(SequenceChunk {
                    positions: &positions[first_row..first_row + n],
                    cache: &mut sequence.cache,
                });
                first_row += n;
            }
            if drafting {
                self.model.forward_every_row(&embeds, &mut chunks)?
            } else {
                self.model.forward(&embeds, &mut chunks)?
            }
        };
        let vocab = logits.dim(1)?;
        let mut logits = logits.flatten_all()?.to_vec1::<f32>()?;
        let mut unclaimed = logits.as_mut_slice();
        for sequence in active.iter_mut() {
            let (rows, rest) =
                std::mem::take(&mut unclaimed).split_at_mut((1 + sequence.draft.len()) * vocab);
            unclaimed = rest;
            sequence.verify(rows.chunks_exact_mut(vocab), sink.as_deref_mut())?;
            sequence.time_decode(started);
        }
        Ok(())
    }

    /// Runs a request to the end, handing each token to `sink` as it is produced.
    pub fn generate(&self, request: &Request, sink: &mut dyn TokenSink) -> Result<Completion> {
        let mut sequence = self.start(request)?;
        sequence.deliver_events(sink);
        while !sequence.is_finished() {
            self.advance(&mut [&mut sequence], Some(&mut *sink))?;
        }
        Ok(sequence.into_completion())
    }

    fn sampling_params(&self, options: &GenerationOptions) -> SamplingParams {
        let g = &self.generation;
        let temperature = options.temperature.unwrap_or(if g.do_sample {
            g.temperature.unwrap_or(1.0)
        } else {
            0.0
        });
        SamplingParams {
            temperature,
            top_k: options.top_k.or(g.top_k),
            top_p: options.top_p.or(g.top_p),
            repetition_penalty: options.repetition_penalty.or(g.repetition_penalty),
            frequency_penalty: options.frequency_penalty.unwrap_or(0.0),
            presence_penalty: options.presence_penalty.unwrap_or(0.0),
            seed: options.seed.unwrap_or_else(rand_seed),
        }
    }

    /// Vision tower and projector over one modality's items, a batch of blocks per call.
    fn encode(
        &self,
        input: &VisualInput,
        kind: Modality,
        trace: Option<&mut Trace>,
        progress: Option<&Progress>,
        done: &mut usize,
        total: usize,
    ) -> Result<candle_core::Tensor> {
        let patch = self.model.config().vision_config.patch_size;
        let values_per_patch = 3 * patch * patch;
        let rows = input.pixel_values.len() / values_per_patch;
        let (mut vision, mut projected) = (Vec::new(), Vec::new());
        let (mut first_grid, mut first_row) = (0, 0);
        prompt::report_encoding(progress, *done, total);
        for &blocks in &input.batches {
            let grids = &input.grids[first_grid..first_grid + blocks];
            let patches: usize = grids.iter().map(keye_media::GridThw::patches).sum();
            let pixels = candle_core::Tensor::from_slice(
                &input.pixel_values
                    [first_row * values_per_patch..(first_row + patches) * values_per_patch],
                (patches, 3, patch, patch),
                self.model.device(),
            )?;
            let encoded = self.model.encode_visual(&pixels, grids)?;
            if trace.is_some() {
                vision.push(encoded.vision);
            }
            projected.push(encoded.projected);
            first_grid += blocks;
            first_row += patches;
            *done += patches;
            prompt::report_encoding(progress, *done, total);
        }
        let projected = candle_core::Tensor::cat(&projected, 0)?;
        if let Some(trace) = trace {
            let (pixels_name, grid_name, prefix) = match kind {
                Modality::Image => ("pixel_values", "image_grid_thw", "image"),
                Modality::Video => ("pixel_values_videos", "video_grid_thw", "video"),
            };
            trace.floats(pixels_name, &[rows, 3, patch, patch], &input.pixel_values);
            trace.ints(
                grid_name,
                &[input.trace_grids.len(), 3],
                input
                    .trace_grids
                    .iter()
                    .flat_map(|g| [g.t as i64, g.h as i64, g.w as i64]),
            );
            trace.tensor(
                &format!("{prefix}_vision_embeds"),
                &candle_core::Tensor::cat(&vision, 0)?,
            )?;
            trace.tensor(&format!("{prefix}_projector_embeds"), &projected)?;
        }
        Ok(projected)
    }
}

#[derive(Clone, Copy)]
enum Modality {
    Image,
    Video,
}

/// The processor's per-video outputs, under the fixtures' names.
fn trace_videos(trace: &mut Trace, videos: &[VideoSummary]) {
    if videos.is_empty() {
        return;
    }
    if videos.iter().all(|v| v.second_per_grid.is_some()) {
        let seconds: Vec<f32> = videos.iter().filter_map(|v| v.second_per_grid).collect();
        trace.floats("second_per_grid_ts", &[seconds.len()], &seconds);
    } else {
        trace.ints(
            "num_frames",
            &[videos.len()],
            videos.iter().map(|v| v.frame_indices.len() as i64),
        );
    }
    for (i, video) in videos.iter().enumerate() {
        let frames = video.frame_indices.len();
        trace.ints(
            &format!("video{i}_frame_indices"),
            &[frames],
            video.frame_indices.iter().map(|&f| f as i64),
        );
        if let Some(types) = &video.frame_types {
            trace.ints32(&format!("video{i}_frame_types"), &[frames], types);
        }
        if let Some(timestamps) = &video.timestamps {
            trace.floats(&format!("video{i}_timestamps"), &[frames], timestamps);
        }
    }
}

/// Refuses a KV cache that cannot fit in the memory the system has available, with the numbers,
/// instead of letting the allocation fail or the machine swap.
fn ensure_memory_for_cache(bytes_per_token: usize, tokens: usize) -> Result<()> {
    let needed = bytes_per_token as u64 * tokens as u64;
    if let Some(available) = available_memory_bytes()
        && needed > available
    {
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        return Err(Error::InvalidRequest(format!(
            "the KV cache for {tokens} tokens needs {:.1} GiB but only {:.1} GiB of memory is available; \
             lower --max-context or max_new_tokens, use --kv-cache bf16 or q8, or shorten the prompt",
            gib(needed),
            gib(available)
        )));
    }
    Ok(())
}

fn available_memory_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Which keye-vl-utils and processor rules apply to a model's media.
pub(crate) fn media_generation(architecture: keye_model::Architecture) -> keye_media::Generation {
    match architecture {
        keye_model::Architecture::Preview => keye_media::Generation::Preview,
        keye_model::Architecture::V1_5 => keye_media::Generation::V1_5,
    }
}

fn rand_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}
