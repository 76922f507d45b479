use std::path::{Path, PathBuf};

use keye_media::{ImageOptions, VideoOptions};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::{ChatError, Result};

/// One chat turn. `role` is kept as the string the template sees (`system`, `user`, `assistant`,
/// `tool`).
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub role: String,
    pub content: Content,
    /// The message object's other keys (`reasoning_content`, `tool_calls`, `name`, …), handed to
    /// the chat template unchanged.
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Part {
    Text(String),
    Image(ImagePart),
    Video(VideoPart),
}

/// An image reference: a local path, `file://`, `http(s)://` or `data:` URL.
#[derive(Clone, Debug, PartialEq)]
pub struct ImagePart {
    pub source: String,
    pub options: ImageOptions,
}

#[derive(Clone, Debug, PartialEq)]
pub struct VideoPart {
    pub source: VideoSource,
    pub options: VideoOptions,
}

/// A video file or URL, or a list of frame images (each a path or URL).
#[derive(Clone, Debug, PartialEq)]
pub enum VideoSource {
    File(String),
    Frames(Vec<String>),
}

impl Message {
    pub fn new(role: impl Into<String>, content: Content) -> Self {
        Self {
            role: role.into(),
            content,
            extra: Map::new(),
        }
    }

    pub fn system(text: impl Into<String>) -> Self {
        Self::new("system", Content::Text(text.into()))
    }

    pub fn user(content: impl Into<Content>) -> Self {
        Self::new("user", content.into())
    }

    pub fn assistant(text: impl Into<String>) -> Self {
        Self::new("assistant", Content::Text(text.into()))
    }

    /// The message as Hugging Face templates see it: `{"role", "content", ...extra}` with parts as
    /// `{"type": "text", "text"}`, `{"type": "image", "image", ...options}` and
    /// `{"type": "video", "video", ...options}`.
    pub fn to_template_value(&self) -> Value {
        let mut object = Map::with_capacity(2 + self.extra.len());
        object.insert("role".into(), Value::String(self.role.clone()));
        let content = match &self.content {
            Content::Text(text) => Value::String(text.clone()),
            Content::Parts(parts) => {
                Value::Array(parts.iter().map(Part::to_template_value).collect())
            }
        };
        object.insert("content".into(), content);
        for (key, value) in &self.extra {
            object.insert(key.clone(), value.clone());
        }
        Value::Object(object)
    }
}

impl From<String> for Content {
    fn from(text: String) -> Self {
        Content::Text(text)
    }
}

impl From<&str> for Content {
    fn from(text: &str) -> Self {
        Content::Text(text.to_owned())
    }
}

impl From<Vec<Part>> for Content {
    fn from(parts: Vec<Part>) -> Self {
        Content::Parts(parts)
    }
}

impl Content {
    pub fn images(&self) -> impl Iterator<Item = &ImagePart> {
        self.parts().iter().filter_map(|part| match part {
            Part::Image(image) => Some(image),
            _ => None,
        })
    }

    pub fn videos(&self) -> impl Iterator<Item = &VideoPart> {
        self.parts().iter().filter_map(|part| match part {
            Part::Video(video) => Some(video),
            _ => None,
        })
    }

    fn parts(&self) -> &[Part] {
        match self {
            Content::Text(_) => &[],
            Content::Parts(parts) => parts,
        }
    }
}

impl Part {
    fn to_template_value(&self) -> Value {
        let mut object = Map::new();
        match self {
            Part::Text(text) => {
                object.insert("type".into(), "text".into());
                object.insert("text".into(), text.as_str().into());
            }
            Part::Image(image) => {
                object.insert("type".into(), "image".into());
                object.insert("image".into(), image.source.as_str().into());
                let options = &image.options;
                insert_some(&mut object, "min_pixels", options.min_pixels);
                insert_some(&mut object, "max_pixels", options.max_pixels);
                insert_some(&mut object, "resized_height", options.resized_height);
                insert_some(&mut object, "resized_width", options.resized_width);
            }
            Part::Video(video) => {
                object.insert("type".into(), "video".into());
                let source = match &video.source {
                    VideoSource::File(file) => Value::String(file.clone()),
                    VideoSource::Frames(frames) => {
                        Value::Array(frames.iter().map(|frame| frame.as_str().into()).collect())
                    }
                };
                object.insert("video".into(), source);
                let options = &video.options;
                insert_some(&mut object, "fps", options.fps);
                insert_some(&mut object, "nframes", options.nframes);
                insert_some(&mut object, "min_frames", options.min_frames);
                insert_some(&mut object, "max_frames", options.max_frames);
                insert_some(&mut object, "min_pixels", options.min_pixels);
                insert_some(&mut object, "max_pixels", options.max_pixels);
                insert_some(&mut object, "total_pixels", options.total_pixels);
                insert_some(
                    &mut object,
                    "video_total_pixels",
                    options.video_total_pixels,
                );
                insert_some(&mut object, "video_start", options.video_start);
                insert_some(&mut object, "video_end", options.video_end);
                insert_some(&mut object, "resized_height", options.resized_height);
                insert_some(&mut object, "resized_width", options.resized_width);
                insert_some(
                    &mut object,
                    "min_frame_similarity",
                    options.min_frame_similarity,
                );
            }
        }
        Value::Object(object)
    }
}

fn insert_some<T: Into<Value>>(object: &mut Map<String, Value>, key: &str, value: Option<T>) {
    if let Some(value) = value {
        object.insert(key.to_owned(), value.into());
    }
}

/// A message list read from a file, with the folder its relative media paths are relative to.
#[derive(Clone, Debug, PartialEq)]
pub struct MessagesFile {
    pub messages: Vec<Message>,
    pub base_dir: PathBuf,
}

impl MessagesFile {
    /// Reads a `messages.json`: a list of messages, or an object with a `messages` list (the shape
    /// of an OpenAI chat request).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ChatError::Io {
            path: path.to_owned(),
            source,
        })?;
        let messages = parse_messages(&text).map_err(|error| match error {
            ChatError::InvalidMessages {
                location, reason, ..
            } => ChatError::InvalidMessages {
                file: Some(path.to_owned()),
                location,
                reason,
            },
            ChatError::Json { source, .. } => ChatError::Json {
                file: Some(path.to_owned()),
                source,
            },
            other => other,
        })?;
        let base_dir = path.parent().map(Path::to_owned).unwrap_or_default();
        Ok(Self { messages, base_dir })
    }

    /// Resolves a media source against [`Self::base_dir`]: URLs (`scheme://…`, `data:`) and
    /// absolute paths are returned unchanged, relative paths are joined to the base folder.
    pub fn resolve(&self, source: &str) -> String {
        resolve_against(&self.base_dir, source)
    }

    /// The messages with every relative media path resolved (see [`Self::resolve`]).
    pub fn into_resolved(self) -> Vec<Message> {
        let Self {
            mut messages,
            base_dir,
        } = self;
        let resolve = |source: &mut String| *source = resolve_against(&base_dir, source);
        for message in &mut messages {
            let Content::Parts(parts) = &mut message.content else {
                continue;
            };
            for part in parts {
                match part {
                    Part::Text(_) => {}
                    Part::Image(image) => resolve(&mut image.source),
                    Part::Video(video) => match &mut video.source {
                        VideoSource::File(file) => resolve(file),
                        VideoSource::Frames(frames) => frames.iter_mut().for_each(resolve),
                    },
                }
            }
        }
        messages
    }
}

fn resolve_against(base_dir: &Path, source: &str) -> String {
    let is_url = source.starts_with("data:") || source.contains("://");
    if is_url || Path::new(source).is_absolute() {
        source.to_owned()
    } else {
        base_dir.join(source).to_string_lossy().into_owned()
    }
}

/// Parses a message list in the OpenAI / Qwen-VL JSON format: a list of messages, or an object
/// with a `messages` list.
pub fn parse_messages(json: &str) -> Result<Vec<Message>> {
    let value: Value =
        serde_json::from_str(json).map_err(|source| ChatError::Json { file: None, source })?;
    messages_from_value(&value)
}

/// Converts already-parsed JSON (see [`parse_messages`]) into messages.
pub fn messages_from_value(value: &Value) -> Result<Vec<Message>> {
    let (list, prefix) = match value {
        Value::Array(list) => (list, "$".to_owned()),
        Value::Object(object) => match object.get("messages") {
            Some(Value::Array(list)) => (list, "$.messages".to_owned()),
            _ => return Err(invalid("$", "expected a list of messages")),
        },
        _ => return Err(invalid("$", "expected a list of messages")),
    };
    list.iter()
        .enumerate()
        .map(|(index, message)| parse_message(message, &format!("{prefix}[{index}]")))
        .collect()
}

fn parse_message(value: &Value, location: &str) -> Result<Message> {
    let Value::Object(object) = value else {
        return Err(invalid(location, "a message must be an object"));
    };
    let role = match object.get("role") {
        Some(Value::String(role)) => role.clone(),
        Some(_) => return Err(invalid(&format!("{location}.role"), "must be a string")),
        None => return Err(invalid(location, "missing \"role\"")),
    };
    let content = match object.get("content") {
        // OpenAI allows `null` content on assistant turns that only carry tool calls.
        None | Some(Value::Null) => Content::Text(String::new()),
        Some(Value::String(text)) => Content::Text(text.clone()),
        Some(Value::Array(parts)) => Content::Parts(
            parts
                .iter()
                .enumerate()
                .map(|(index, part)| parse_part(part, &format!("{location}.content[{index}]")))
                .collect::<Result<_>>()?,
        ),
        Some(_) => {
            return Err(invalid(
                &format!("{location}.content"),
                "must be a string or a list of parts",
            ));
        }
    };
    let extra = object
        .iter()
        .filter(|(key, _)| !matches!(key.as_str(), "role" | "content"))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    Ok(Message {
        role,
        content,
        extra,
    })
}

/// Keys that identify a part's kind when it has no `type`, in the order the template checks them.
const MEDIA_KEYS: [&str; 5] = ["image", "image_url", "video", "video_url", "text"];

fn parse_part(value: &Value, location: &str) -> Result<Part> {
    let Value::Object(object) = value else {
        return Err(invalid(location, "a content part must be an object"));
    };
    let part_type = match object.get("type") {
        None => None,
        Some(Value::String(part_type)) => Some(part_type.as_str()),
        Some(_) => return Err(invalid(&format!("{location}.type"), "must be a string")),
    };
    // Like the chat template and keye-vl-utils, a part without `type` is recognised by its key.
    let kind = part_type.unwrap_or_else(|| {
        MEDIA_KEYS
            .into_iter()
            .find(|key| object.contains_key(*key))
            .unwrap_or("")
    });
    match kind {
        "text" => match object.get("text") {
            Some(Value::String(text)) => Ok(Part::Text(text.clone())),
            _ => Err(invalid(location, "a text part needs a string \"text\"")),
        },
        "image" | "image_url" => {
            let source = media_url(object, &["image", "image_url"], location)?;
            let options = parse_options(object, location)?;
            Ok(Part::Image(ImagePart { source, options }))
        }
        "video" | "video_url" => {
            let source = match object.get("video") {
                Some(Value::Array(frames)) => VideoSource::Frames(
                    frames
                        .iter()
                        .enumerate()
                        .map(|(index, frame)| match frame {
                            Value::String(frame) => Ok(frame.clone()),
                            _ => Err(invalid(
                                &format!("{location}.video[{index}]"),
                                "a video frame must be a string",
                            )),
                        })
                        .collect::<Result<_>>()?,
                ),
                _ => VideoSource::File(media_url(object, &["video", "video_url"], location)?),
            };
            let options = parse_options(object, location)?;
            Ok(Part::Video(VideoPart { source, options }))
        }
        "" => Err(invalid(
            location,
            "a content part needs a \"type\" or one of the keys text, image, image_url, video",
        )),
        other => Err(invalid(
            &format!("{location}.type"),
            &format!(
                "unknown content part type {other:?} (expected text, image, image_url, video or \
                 video_url)"
            ),
        )),
    }
}

/// The media reference under the first of `keys` present: a string, or OpenAI's `{"url": …}`.
fn media_url(object: &Map<String, Value>, keys: &[&str], location: &str) -> Result<String> {
    let Some((key, value)) = keys
        .iter()
        .find_map(|key| object.get(*key).map(|value| (*key, value)))
    else {
        let alternatives: Vec<String> = keys.iter().map(|key| format!("\"{key}\"")).collect();
        return Err(invalid(
            location,
            &format!("missing {}", alternatives.join(" or ")),
        ));
    };
    match value {
        Value::String(source) => Ok(source.clone()),
        Value::Object(inner) => match inner.get("url") {
            Some(Value::String(url)) => Ok(url.clone()),
            _ => Err(invalid(
                &format!("{location}.{key}"),
                "expected a string or an object with a string \"url\"",
            )),
        },
        _ => Err(invalid(
            &format!("{location}.{key}"),
            "expected a string or an object with a string \"url\"",
        )),
    }
}

/// Reads the element options (`min_pixels`, `fps`, …) that sit beside the media key. Python
/// writers often produce integral floats (`94080.0`) for pixel counts; those are accepted.
fn parse_options<T: DeserializeOwned>(object: &Map<String, Value>, location: &str) -> Result<T> {
    // The media keys are skipped: they may hold megabytes of inline `data:` URL.
    let coerced: Map<String, Value> = object
        .iter()
        .filter(|(key, _)| !MEDIA_KEYS.contains(&key.as_str()))
        .map(|(key, value)| (key.clone(), integral_float_to_integer(value)))
        .collect();
    serde_json::from_value(Value::Object(coerced))
        .map_err(|error| invalid(location, &format!("invalid option: {error}")))
}

fn integral_float_to_integer(value: &Value) -> Value {
    if let Value::Number(number) = value
        && !number.is_i64()
        && !number.is_u64()
        && let Some(float) = number.as_f64()
        && float.fract() == 0.0
        && (0.0..u64::MAX as f64).contains(&float)
    {
        return Value::from(float as u64);
    }
    value.clone()
}

fn invalid(location: &str, reason: &str) -> ChatError {
    ChatError::InvalidMessages {
        file: None,
        location: location.to_owned(),
        reason: reason.to_owned(),
    }
}
