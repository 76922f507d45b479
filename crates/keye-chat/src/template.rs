use std::path::Path;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::Value;
use minijinja::{Environment, Error, ErrorKind};
use serde_json::Map;

use crate::error::{ChatError, Result};
use crate::message::Message;
use crate::python;

const TEMPLATE_NAME: &str = "chat_template";

/// A compiled Hugging Face chat template, rendered the way `apply_chat_template` renders it:
/// jinja2 with `trim_blocks` and `lstrip_blocks`, loop controls, Python string methods,
/// `raise_exception`, `strftime_now` and transformers' `tojson`.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    /// `bos_token`, `eos_token`, … from `tokenizer_config.json`, which transformers passes to
    /// every template.
    special_tokens: Map<String, serde_json::Value>,
}

/// The variables of one rendering besides `messages`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RenderOptions {
    /// Append the opening of the assistant turn (`<|im_start|>assistant\n`).
    pub add_generation_prompt: bool,
    /// Prefix images and videos with `Picture N: ` / `Video N: `.
    pub add_vision_id: bool,
    /// Any other template variables (`enable_thinking`, `tools`, `documents`, …). They override
    /// the special tokens, like keyword arguments of `apply_chat_template`.
    pub kwargs: Map<String, serde_json::Value>,
}

impl ChatTemplate {
    /// Compiles a template source.
    pub fn new(source: impl Into<String>) -> Result<Self> {
        let mut env = Environment::new();
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|source| ChatError::Template { source })?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.set_formatter(python::format_value);
        env.add_filter("tojson", python::tojson);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned(TEMPLATE_NAME, source.into())
            .map_err(|source| ChatError::Template { source })?;
        Ok(Self {
            env,
            special_tokens: Map::new(),
        })
    }

    /// Loads the template of a model folder the way a transformers processor does:
    /// `chat_template.jinja`, else `chat_template.json` (key `chat_template`), else the
    /// tokenizer's `chat_template` in `tokenizer_config.json` (the one named `default` when it is
    /// a list). Special tokens come from `tokenizer_config.json` when that file exists.
    pub fn from_model_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let jinja_path = dir.join("chat_template.jinja");
        let json_path = dir.join("chat_template.json");
        let config_path = dir.join("tokenizer_config.json");
        let config = if config_path.is_file() {
            Some(read_json(&config_path)?)
        } else {
            None
        };

        let source = if jinja_path.is_file() {
            std::fs::read_to_string(&jinja_path).map_err(|source| ChatError::Io {
                path: jinja_path,
                source,
            })?
        } else if json_path.is_file() {
            let json = read_json(&json_path)?;
            template_entry(&json, &json_path, None)?.ok_or_else(|| {
                ChatError::InvalidTemplateConfig {
                    path: json_path,
                    reason: "no `chat_template` key".into(),
                }
            })?
        } else {
            config
                .as_ref()
                .map(|config| template_entry(config, &config_path, None))
                .transpose()?
                .flatten()
                .ok_or_else(|| ChatError::NoChatTemplate {
                    dir: dir.to_owned(),
                })?
        };
        let mut template = Self::new(source)?;
        if let Some(config) = &config {
            template.special_tokens = special_tokens(config);
        }
        Ok(template)
    }

    /// Loads the tokenizer's own template from a `tokenizer_config.json`; `name` picks one of a
    /// list of named templates (default: the one named `default`).
    pub fn from_tokenizer_config(path: impl AsRef<Path>, name: Option<&str>) -> Result<Self> {
        let path = path.as_ref();
        let config = read_json(path)?;
        let source = template_entry(&config, path, name)?.ok_or_else(|| {
            ChatError::InvalidTemplateConfig {
                path: path.to_owned(),
                reason: match name {
                    Some(name) => format!("no chat template named {name:?}"),
                    None => "no `chat_template` entry".into(),
                },
            }
        })?;
        let mut template = Self::new(source)?;
        template.special_tokens = special_tokens(&config);
        Ok(template)
    }

    /// Renders `messages` (passed in Hugging Face shape, see [`Message::to_template_value`]).
    pub fn render(&self, messages: &[Message], options: &RenderOptions) -> Result<String> {
        let messages: Vec<serde_json::Value> =
            messages.iter().map(Message::to_template_value).collect();
        self.render_json(&messages, options)
    }

    /// Renders messages that are already Hugging Face-shaped JSON objects.
    pub fn render_json(
        &self,
        messages: &[serde_json::Value],
        options: &RenderOptions,
    ) -> Result<String> {
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|source| ChatError::Template { source })?;
        let mut context: Vec<(String, Value)> =
            Vec::with_capacity(5 + self.special_tokens.len() + options.kwargs.len());
        context.push((
            "messages".into(),
            messages.iter().map(json_to_value).collect(),
        ));
        // transformers always defines these two, as None unless given.
        context.push(("tools".into(), Value::from(())));
        context.push(("documents".into(), Value::from(())));
        context.push((
            "add_generation_prompt".into(),
            options.add_generation_prompt.into(),
        ));
        context.push(("add_vision_id".into(), options.add_vision_id.into()));
        for (key, value) in self.special_tokens.iter().chain(&options.kwargs) {
            context.push((key.clone(), json_to_value(value)));
        }
        // Later entries win, so kwargs override the defaults above.
        let context = Value::from_pairs(context);
        template
            .render(context)
            .map_err(|source| ChatError::Template { source })
    }
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|source| ChatError::Io {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| ChatError::Json {
        file: Some(path.to_owned()),
        source,
    })
}

/// The `chat_template` entry of a config: a string, or a list of `{"name", "template"}`.
fn template_entry(
    config: &serde_json::Value,
    path: &Path,
    name: Option<&str>,
) -> Result<Option<String>> {
    let invalid = |reason: &str| ChatError::InvalidTemplateConfig {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    match config.get("chat_template") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(source)) if name.is_none() => Ok(Some(source.clone())),
        Some(serde_json::Value::String(_)) => Ok(None),
        Some(serde_json::Value::Array(entries)) => {
            let wanted = name.unwrap_or("default");
            for entry in entries {
                let entry_name = entry.get("name").and_then(serde_json::Value::as_str);
                let source = entry.get("template").and_then(serde_json::Value::as_str);
                match (entry_name, source) {
                    (Some(entry_name), Some(source)) if entry_name == wanted => {
                        return Ok(Some(source.to_owned()));
                    }
                    (Some(_), Some(_)) => {}
                    _ => {
                        return Err(invalid(
                            "each named chat template needs a string \"name\" and \"template\"",
                        ));
                    }
                }
            }
            Ok(None)
        }
        Some(_) => Err(invalid(
            "`chat_template` must be a string or a list of named templates",
        )),
    }
}

/// transformers' `special_tokens_map`: the named special tokens that are set, as strings.
fn special_tokens(config: &serde_json::Value) -> Map<String, serde_json::Value> {
    let mut tokens = Map::new();
    for key in [
        "bos_token",
        "eos_token",
        "unk_token",
        "sep_token",
        "pad_token",
        "cls_token",
        "mask_token",
    ] {
        if let Some(token) = config.get(key).and_then(token_content) {
            tokens.insert(key.to_owned(), token.into());
        }
    }
    if let Some(serde_json::Value::Array(list)) = config.get("additional_special_tokens") {
        let additional: Vec<serde_json::Value> = list
            .iter()
            .filter_map(token_content)
            .map(serde_json::Value::from)
            .collect();
        if !additional.is_empty() {
            tokens.insert("additional_special_tokens".into(), additional.into());
        }
    }
    tokens
}

/// A token written as a string or as an `AddedToken` object with a `content` field.
fn token_content(token: &serde_json::Value) -> Option<&str> {
    match token {
        serde_json::Value::String(text) => Some(text),
        serde_json::Value::Object(object) => object.get("content")?.as_str(),
        _ => None,
    }
}

pub(crate) fn json_to_value(json: &serde_json::Value) -> Value {
    match json {
        serde_json::Value::Null => Value::from(()),
        serde_json::Value::Bool(flag) => Value::from(*flag),
        serde_json::Value::Number(number) => {
            if let Some(unsigned) = number.as_u64() {
                Value::from(unsigned)
            } else if let Some(signed) = number.as_i64() {
                Value::from(signed)
            } else {
                Value::from(number.as_f64().unwrap_or(f64::NAN))
            }
        }
        serde_json::Value::String(text) => Value::from(text.as_str()),
        serde_json::Value::Array(items) => items.iter().map(json_to_value).collect(),
        serde_json::Value::Object(object) => Value::from_pairs(
            object
                .iter()
                .map(|(key, value)| (key.as_str(), json_to_value(value))),
        ),
    }
}

fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

/// `datetime.now().strftime(format)` in local time.
fn strftime_now(format: String) -> Result<Value, Error> {
    use std::fmt::Write as _;
    let mut out = String::new();
    write!(out, "{}", chrono::Local::now().format(&format)).map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("strftime_now: invalid format {format:?}"),
        )
    })?;
    Ok(Value::from(out))
}
