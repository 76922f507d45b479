use std::path::Path;
use std::sync::Arc;

use crate::error::{ChatError, Result};

/// A Hugging Face fast tokenizer (`tokenizer.json`). Cheap to clone: clones share one loaded
/// vocabulary.
#[derive(Clone)]
pub struct Tokenizer {
    inner: Arc<tokenizers::Tokenizer>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .finish()
    }
}

impl Tokenizer {
    /// Loads `tokenizer.json` from a model folder.
    pub fn from_model_dir(dir: impl AsRef<Path>) -> Result<Self> {
        Self::from_file(dir.as_ref().join("tokenizer.json"))
    }

    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| ChatError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_json_bytes(&bytes, path)
    }

    /// A tokenizer from the bytes of a `tokenizer.json` (a GGUF file carries them as metadata);
    /// `origin` names where they came from in errors.
    pub fn from_json_bytes(json: &[u8], origin: &Path) -> Result<Self> {
        let inner =
            tokenizers::Tokenizer::from_bytes(json).map_err(|error| ChatError::TokenizerLoad {
                path: origin.to_owned(),
                reason: error.to_string(),
            })?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// Token ids of `text`. Added tokens written in the text (`<|im_start|>`, `<|image_pad|>`, …)
    /// become their single ids; nothing is added around the text (Qwen tokenizers add no BOS/EOS).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.inner
            .encode_fast(text, false)
            .map(|encoding| encoding.get_ids().to_vec())
            .map_err(|error| ChatError::Tokenizer {
                operation: "encode",
                reason: error.to_string(),
            })
    }

    /// Text of `ids`; with `skip_special_tokens`, added tokens marked special (`<|im_end|>`,
    /// `<|vision_start|>`, …) are left out, as in `tokenizer.decode(ids, skip_special_tokens=True)`.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|error| ChatError::Tokenizer {
                operation: "decode",
                reason: error.to_string(),
            })
    }

    /// The id of a token given by its exact string, e.g. `"<|image_pad|>"`.
    pub fn token_id(&self, token: &str) -> Result<u32> {
        self.inner
            .token_to_id(token)
            .ok_or_else(|| ChatError::UnknownToken {
                token: token.to_owned(),
            })
    }

    /// The string of a token id, if the id exists.
    pub fn token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Number of ids the tokenizer knows, added tokens included (`len(tokenizer)` in Python).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The underlying `tokenizers` object, for anything this wrapper does not cover.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}
