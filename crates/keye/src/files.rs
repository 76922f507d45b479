//! Where a model's text files come from: a checkpoint folder, or the metadata of a keye GGUF
//! file that carries them verbatim.

use std::path::{Path, PathBuf};

use keye_chat::{ChatTemplate, Tokenizer};
use keye_model::gguf::{GgufFile, keys};

use crate::error::{Error, Result};

/// The model's JSON files, by their folder name and GGUF metadata key.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ModelText {
    Config,
    GenerationConfig,
    PreprocessorConfig,
    TokenizerJson,
}

impl ModelText {
    fn file_name(self) -> &'static str {
        match self {
            ModelText::Config => "config.json",
            ModelText::GenerationConfig => "generation_config.json",
            ModelText::PreprocessorConfig => "preprocessor_config.json",
            ModelText::TokenizerJson => "tokenizer.json",
        }
    }

    pub(crate) fn gguf_key(self) -> &'static str {
        match self {
            ModelText::Config => keys::CONFIG,
            ModelText::GenerationConfig => keys::GENERATION_CONFIG,
            ModelText::PreprocessorConfig => keys::PREPROCESSOR_CONFIG,
            ModelText::TokenizerJson => keys::TOKENIZER_JSON,
        }
    }
}

pub(crate) enum ModelFiles {
    Folder(PathBuf),
    Gguf(GgufFile),
}

impl ModelFiles {
    /// A checkpoint folder (it must hold `config.json`) or a keye GGUF file.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        if path.is_file() {
            return Ok(ModelFiles::Gguf(GgufFile::open_keye(path)?));
        }
        if !path.join("config.json").is_file() {
            return Err(Error::ModelNotFound(format!(
                "{} has no config.json; is it a Keye-VL checkpoint folder?",
                path.display()
            )));
        }
        Ok(ModelFiles::Folder(path.to_owned()))
    }

    /// Where a text came from, for error messages.
    pub(crate) fn origin(&self, text: ModelText) -> PathBuf {
        match self {
            ModelFiles::Folder(dir) => dir.join(text.file_name()),
            ModelFiles::Gguf(file) => file.path().to_owned(),
        }
    }

    /// The text, or `None` when the model has none (only `config.json` and `tokenizer.json` are
    /// required, and their absence is reported by the caller's loader).
    pub(crate) fn text(&self, text: ModelText) -> Result<Option<String>> {
        match self {
            ModelFiles::Folder(dir) => {
                let path = dir.join(text.file_name());
                if !path.is_file() {
                    return Ok(None);
                }
                std::fs::read_to_string(&path)
                    .map(Some)
                    .map_err(|e| Error::io(&path, e))
            }
            ModelFiles::Gguf(file) => Ok(file.optional_string(text.gguf_key())?.map(str::to_owned)),
        }
    }

    /// A text the model cannot do without.
    pub(crate) fn required_text(&self, text: ModelText) -> Result<String> {
        match self {
            ModelFiles::Gguf(file) => Ok(file.string(text.gguf_key())?.to_owned()),
            ModelFiles::Folder(_) => self.text(text)?.ok_or_else(|| {
                Error::ModelNotFound(format!("{} does not exist", self.origin(text).display()))
            }),
        }
    }

    pub(crate) fn tokenizer(&self) -> Result<Tokenizer> {
        match self {
            ModelFiles::Folder(dir) => Ok(Tokenizer::from_model_dir(dir)?),
            ModelFiles::Gguf(file) => Ok(Tokenizer::from_json_bytes(
                file.string(keys::TOKENIZER_JSON)?.as_bytes(),
                file.path(),
            )?),
        }
    }

    pub(crate) fn chat_template(&self) -> Result<ChatTemplate> {
        match self {
            ModelFiles::Folder(dir) => Ok(ChatTemplate::from_model_dir(dir)?),
            ModelFiles::Gguf(file) => Ok(ChatTemplate::new(file.string(keys::CHAT_TEMPLATE)?)?),
        }
    }

    /// The chat template's source, found as transformers' processors look for it:
    /// `chat_template.jinja`, else `chat_template.json`, else the tokenizer's in
    /// `tokenizer_config.json` (the one named `default` when it is a list).
    pub(crate) fn chat_template_source(&self) -> Result<String> {
        let dir = match self {
            ModelFiles::Gguf(file) => return Ok(file.string(keys::CHAT_TEMPLATE)?.to_owned()),
            ModelFiles::Folder(dir) => dir,
        };
        let jinja = dir.join("chat_template.jinja");
        if jinja.is_file() {
            return std::fs::read_to_string(&jinja).map_err(|e| Error::io(&jinja, e));
        }
        for file in ["chat_template.json", "tokenizer_config.json"] {
            let path = dir.join(file);
            if !path.is_file() {
                continue;
            }
            let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
            let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                Error::InvalidRequest(format!("{} is not JSON: {e}", path.display()))
            })?;
            match json.get("chat_template") {
                Some(serde_json::Value::String(source)) => return Ok(source.clone()),
                Some(serde_json::Value::Array(named)) => {
                    let default = named.iter().find(|entry| {
                        entry.get("name").and_then(serde_json::Value::as_str) == Some("default")
                    });
                    if let Some(source) = default
                        .and_then(|entry| entry.get("template"))
                        .and_then(serde_json::Value::as_str)
                    {
                        return Ok(source.to_owned());
                    }
                }
                _ => {}
            }
        }
        Err(Error::ModelNotFound(format!(
            "{} has no chat template (chat_template.jinja, chat_template.json or tokenizer_config.json)",
            dir.display()
        )))
    }
}
