use std::path::PathBuf;

/// Everything that can stop `keye eval` as a whole. Failures of single rows (a broken image, an
/// endpoint that gave up) are not errors: they are recorded per row and counted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error(
        "dataset `{dataset}` not found: expected {expected} (keye eval never downloads; place the VLMEvalKit file there or pass --data-root)"
    )]
    DatasetMissing { dataset: String, expected: String },

    #[error(
        "unknown dataset `{dataset}`: pass --type mcq|yorn|vqa|video-mcq to evaluate a custom file"
    )]
    UnknownDataset { dataset: String },

    #[error("{path}, line {line}: {reason}")]
    MalformedTable {
        path: PathBuf,
        line: u64,
        reason: String,
    },

    #[error("dataset `{dataset}`: {reason}")]
    InvalidDataset { dataset: String, reason: String },

    #[error("predictions file {path}: {reason}")]
    InvalidPredictions { path: PathBuf, reason: String },

    #[error("scoring `{dataset}`: {reason}")]
    Scoring { dataset: String, reason: String },

    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    #[error("backend: {0}")]
    Backend(#[from] crate::backend::BackendError),

    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
}

impl EvalError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> EvalError {
        let path = path.into();
        move |source| EvalError::Io { path, source }
    }
}
