//! Where answers come from: the local engine or any OpenAI-compatible endpoint, behind one trait.

use std::path::Path;

use keye_chat::Message;

use crate::prompt::ThinkMode;

/// Decoding settings for one request. Eval decodes greedily unless told otherwise.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GenerationSettings {
    pub max_tokens: u32,
    pub temperature: f32,
    /// `None` leaves the server default.
    pub top_p: Option<f32>,
    /// `None` leaves the server default (not every OpenAI-compatible server accepts `top_k`).
    pub top_k: Option<u32>,
    pub repetition_penalty: Option<f32>,
    pub seed: Option<u64>,
    /// The thinking mode; its suffix is already appended to the prompt's last text part.
    pub think: ThinkMode,
}

impl GenerationSettings {
    /// Keye's VLMEvalKit wrapper defaults: greedy, `top_p=0.001`, `top_k=1`.
    pub fn greedy(max_tokens: u32, think: ThinkMode) -> Self {
        GenerationSettings {
            max_tokens,
            temperature: 0.0,
            top_p: Some(0.001),
            top_k: Some(1),
            repetition_penalty: None,
            seed: None,
            think,
        }
    }
}

/// One chat request of the evaluation.
#[derive(Debug, Clone)]
pub struct EvalRequest {
    pub messages: Vec<Message>,
    pub settings: GenerationSettings,
    /// The dataset and row, for logs and for backends that adapt per dataset.
    pub dataset: String,
    pub index: String,
}

/// Anything that turns a chat request into the model's raw answer text.
pub trait Backend: Send + Sync {
    /// One chat request → the model's raw answer text (before Keye post-processing).
    fn generate(&self, request: &EvalRequest) -> Result<String, BackendError>;
    /// The model id recorded in outputs.
    fn name(&self) -> &str;
}

/// Builds the in-process engine for `keye eval run --model <path>`. The CLI passes the keye
/// facade's implementation; [`NoLocalEngine`] refuses.
pub trait LocalBackendFactory {
    fn create(&self, model: &Path) -> Result<Box<dyn Backend>, BackendError>;
}

/// A factory for builds without the local engine: every `--model` run fails with a clear error.
pub struct NoLocalEngine;

impl LocalBackendFactory for NoLocalEngine {
    fn create(&self, model: &Path) -> Result<Box<dyn Backend>, BackendError> {
        Err(BackendError::Unavailable(format!(
            "no local engine in this build to load {}; use --endpoint",
            model.display()
        )))
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    #[error("request to {url} failed: {reason}")]
    Transport { url: String, reason: String },
    #[error("{url} answered HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url} answered something that is not a chat completion: {reason}")]
    BadResponse { url: String, reason: String },
    #[error("cannot send {path}: {reason}")]
    Media { path: String, reason: String },
    #[error("{0}")]
    Unavailable(String),
    #[error("model error: {0}")]
    Model(String),
}

impl BackendError {
    /// Whether trying again may help (network trouble, overload, server errors, garbage).
    pub fn is_transient(&self) -> bool {
        match self {
            BackendError::Transport { .. } | BackendError::BadResponse { .. } => true,
            BackendError::Status { status, .. } => {
                matches!(status, 408 | 409 | 425 | 429) || *status >= 500
            }
            BackendError::Media { .. } | BackendError::Unavailable(_) | BackendError::Model(_) => {
                false
            }
        }
    }
}
