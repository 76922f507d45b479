use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while loading or running a Keye model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid {path}: {message}")]
    InvalidFile { path: PathBuf, message: String },
    #[error("unsupported model configuration: {0}")]
    Unsupported(String),
    #[error("checkpoint is missing tensor `{name}` (expected shape {expected:?})")]
    MissingTensor { name: String, expected: Vec<usize> },
    #[error("checkpoint tensor `{name}` has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("checkpoint tensor `{name}` has unsupported dtype {dtype}")]
    UnsupportedDtype { name: String, dtype: String },
    #[error(
        "the request needs {needed} tokens of context but only {available} are available \
         (model maximum {model_max}); shorten the prompt, lower max_new_tokens or use smaller images"
    )]
    ContextOverflow {
        needed: usize,
        available: usize,
        model_max: usize,
    },
    #[error(
        "{path}: tensor {name} has GGML type {ggml_type} ({type_name}), which keye does not support (it reads f32, f16, bf16, q8_0, q4_0 and q4_k)"
    )]
    UnsupportedTensorType {
        path: PathBuf,
        name: String,
        ggml_type: u32,
        type_name: &'static str,
    },
    #[error("{path} was made for {found}, not keye (general.architecture is `{found}`)")]
    WrongArchitecture { path: PathBuf, found: String },
    #[error("{path} lacks the metadata `{key}`; write keye GGUF files with `keye quantize`")]
    MissingMetadata { path: PathBuf, key: String },
    #[error("invalid model input: {0}")]
    InvalidInput(String),
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
}

impl Error {
    pub(crate) fn invalid_file(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::InvalidFile {
            path: path.into(),
            message: message.into(),
        }
    }
}
