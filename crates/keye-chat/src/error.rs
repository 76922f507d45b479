use std::path::PathBuf;

/// Everything that can go wrong between chat messages and token ids.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChatError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{}invalid JSON: {source}", file_prefix(file))]
    Json {
        file: Option<PathBuf>,
        #[source]
        source: serde_json::Error,
    },

    /// A message list that is valid JSON but not a valid conversation. `location` is a JSON path
    /// such as `$[0].content[1]`.
    #[error("{}invalid messages at {location}: {reason}", file_prefix(file))]
    InvalidMessages {
        file: Option<PathBuf>,
        location: String,
        reason: String,
    },

    #[error("cannot load tokenizer {}: {reason}", path.display())]
    TokenizerLoad { path: PathBuf, reason: String },

    #[error("tokenizer failed to {operation}: {reason}")]
    Tokenizer {
        operation: &'static str,
        reason: String,
    },

    #[error("token {token:?} is not in the tokenizer's vocabulary")]
    UnknownToken { token: String },

    #[error(
        "no chat template in {}: expected chat_template.jinja, chat_template.json or a \
         `chat_template` entry in tokenizer_config.json",
        dir.display()
    )]
    NoChatTemplate { dir: PathBuf },

    #[error("{}: {reason}", path.display())]
    InvalidTemplateConfig { path: PathBuf, reason: String },

    #[error("chat template: {source:#}")]
    Template {
        #[source]
        source: minijinja::Error,
    },

    /// The prompt holds a different number of placeholders than visual items were supplied.
    #[error(
        "the prompt has {in_prompt} {kind} placeholder(s) but {supplied} {kind}(s) were supplied"
    )]
    PlaceholderCount {
        kind: VisualKind,
        in_prompt: usize,
        supplied: usize,
    },

    #[error("invalid spatial merge size {merge_size}")]
    InvalidMergeSize { merge_size: usize },

    #[error("{kind} {index}: {reason}")]
    InvalidVisual {
        kind: VisualKind,
        index: usize,
        reason: String,
    },
}

/// The two kinds of visual items a prompt can reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VisualKind {
    Image,
    Video,
}

impl std::fmt::Display for VisualKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            VisualKind::Image => "image",
            VisualKind::Video => "video",
        })
    }
}

fn file_prefix(file: &Option<PathBuf>) -> String {
    file.as_ref()
        .map(|path| format!("{}: ", path.display()))
        .unwrap_or_default()
}

pub type Result<T, E = ChatError> = std::result::Result<T, E>;
