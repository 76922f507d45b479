use keye_chat::{Message, ThinkingMode};
use keye_media::MediaPolicy;

use crate::lookup::PromptLookup;
use crate::progress::Progress;

/// One chat request: the conversation, how to generate, and where media may come from.
#[derive(Clone, Debug)]
pub struct Request {
    pub messages: Vec<Message>,
    pub thinking: ThinkingMode,
    pub generation: GenerationOptions,
    pub media_policy: MediaPolicy,
    /// Keep the intermediate tensors of the request (see [`crate::Trace`]).
    pub trace: bool,
    /// Called while videos decode and the vision tower runs.
    pub progress: Option<Progress>,
}

impl Request {
    pub fn new(messages: Vec<Message>) -> Self {
        Self {
            messages,
            thinking: ThinkingMode::Auto,
            generation: GenerationOptions::default(),
            media_policy: MediaPolicy::default(),
            trace: false,
            progress: None,
        }
    }
}

/// Sampling and stopping. `None` fields take the checkpoint's `generation_config.json` value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GenerationOptions {
    pub max_new_tokens: Option<usize>,
    /// 0 means greedy.
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<usize>,
    pub repetition_penalty: Option<f32>,
    /// OpenAI's penalties on tokens the answer already holds (per occurrence, and once);
    /// 0 or absent is off.
    pub frequency_penalty: Option<f32>,
    pub presence_penalty: Option<f32>,
    /// Random when absent.
    pub seed: Option<u64>,
    /// Generation ends before the first occurrence of any of these; it is not part of the text.
    pub stop: Vec<String>,
    /// Keep going through end-of-sequence tokens until `max_new_tokens`.
    pub ignore_eos: bool,
    /// Speculative decoding by prompt lookup. The tokens are exactly those of plain decoding,
    /// greedy or seeded sampling alike; only the number of forward passes changes.
    pub prompt_lookup: Option<PromptLookup>,
}
