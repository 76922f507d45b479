//! A client for any OpenAI-compatible `/v1/chat/completions` endpoint (keye serve, vLLM, SGLang,
//! OpenAI), used both as an evaluation backend and as the LLM judge.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use keye_chat::{Content, Message, Part, VideoSource};
use serde_json::{Value, json};

use crate::backend::{Backend, BackendError, EvalRequest};

/// Connection settings of one endpoint.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// Base URL such as `http://gpu-node:8000/v1`, or the full `…/chat/completions` URL.
    pub base_url: String,
    /// The model id sent in every request.
    pub model: String,
    pub api_key: Option<String>,
    /// Limit for one HTTP request, connection included.
    pub timeout: Duration,
    /// How many times a transient failure is retried.
    pub retries: u32,
    /// First retry delay; doubles each retry, capped at [`MAX_BACKOFF`].
    pub backoff: Duration,
}

impl EndpointConfig {
    pub fn new(base_url: &str, model: &str) -> Self {
        EndpointConfig {
            base_url: base_url.to_string(),
            model: model.to_string(),
            api_key: None,
            timeout: Duration::from_secs(600),
            retries: 3,
            backoff: Duration::from_secs(1),
        }
    }

    fn completions_url(&self) -> String {
        let base = self.base_url.trim_end_matches('/');
        if base.ends_with("/chat/completions") {
            base.to_string()
        } else {
            format!("{base}/chat/completions")
        }
    }
}

pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Largest media file inlined as a `data:` URL.
const MAX_INLINE_MEDIA: u64 = 512 << 20;

/// An OpenAI-compatible chat client with timeouts and retries.
pub struct OpenAiClient {
    config: EndpointConfig,
    url: String,
    agent: ureq::Agent,
}

impl OpenAiClient {
    pub fn new(config: EndpointConfig) -> Self {
        let agent = ureq::AgentBuilder::new().timeout(config.timeout).build();
        let url = config.completions_url();
        OpenAiClient { config, url, agent }
    }

    pub fn model(&self) -> &str {
        &self.config.model
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends `body` (with `model` filled in) and returns the first choice's text, retrying
    /// transient failures with exponential backoff.
    pub fn complete(&self, mut body: Value) -> Result<String, BackendError> {
        body["model"] = Value::String(self.config.model.clone());
        let mut attempt = 0;
        loop {
            match self.send_once(&body) {
                Ok(text) => return Ok(text),
                Err(error) if error.is_transient() && attempt < self.config.retries => {
                    let delay = self
                        .config
                        .backoff
                        .saturating_mul(1 << attempt.min(16))
                        .min(MAX_BACKOFF);
                    tracing::debug!(url = %self.url, attempt, %error, "retrying after {delay:?}");
                    std::thread::sleep(delay);
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    fn send_once(&self, body: &Value) -> Result<String, BackendError> {
        let mut request = self
            .agent
            .post(&self.url)
            .set("Content-Type", "application/json");
        if let Some(key) = &self.config.api_key {
            request = request.set("Authorization", &format!("Bearer {key}"));
        }
        let url = || self.url.clone();
        let response = match request.send_string(&body.to_string()) {
            Ok(response) => response,
            Err(ureq::Error::Status(status, response)) => {
                let mut body = response.into_string().unwrap_or_default();
                truncate_chars(&mut body, 500);
                return Err(BackendError::Status {
                    url: url(),
                    status,
                    body,
                });
            }
            Err(ureq::Error::Transport(transport)) => {
                return Err(BackendError::Transport {
                    url: url(),
                    reason: transport.to_string(),
                });
            }
        };
        let text = response
            .into_string()
            .map_err(|e| BackendError::Transport {
                url: url(),
                reason: format!("reading the answer: {e}"),
            })?;
        let parsed: Value = serde_json::from_str(&text).map_err(|e| BackendError::BadResponse {
            url: url(),
            reason: format!("invalid JSON ({e})"),
        })?;
        let choice = parsed
            .get("choices")
            .and_then(|c| c.get(0))
            .ok_or_else(|| BackendError::BadResponse {
                url: url(),
                reason: "no `choices`".into(),
            })?;
        match choice.pointer("/message/content") {
            Some(Value::String(content)) => Ok(content.clone()),
            // A reasoning parser may leave `content` empty when the budget ran out while thinking.
            Some(Value::Null) => Ok(String::new()),
            _ => Err(BackendError::BadResponse {
                url: url(),
                reason: "no `message.content` in the first choice".into(),
            }),
        }
    }
}

fn truncate_chars(text: &mut String, limit: usize) {
    if let Some((cut, _)) = text.char_indices().nth(limit) {
        text.truncate(cut);
    }
}

/// Evaluates through an OpenAI-compatible endpoint.
pub struct OpenAiBackend {
    client: OpenAiClient,
}

impl OpenAiBackend {
    pub fn new(config: EndpointConfig) -> Self {
        OpenAiBackend {
            client: OpenAiClient::new(config),
        }
    }
}

impl Backend for OpenAiBackend {
    fn generate(&self, request: &EvalRequest) -> Result<String, BackendError> {
        let settings = &request.settings;
        let mut body = json!({
            "messages": request.messages.iter().map(message_json).collect::<Result<Vec<_>, _>>()?,
            "max_tokens": settings.max_tokens,
            "temperature": settings.temperature,
        });
        if let Some(top_p) = settings.top_p {
            body["top_p"] = json!(top_p);
        }
        if let Some(top_k) = settings.top_k {
            body["top_k"] = json!(top_k);
        }
        if let Some(penalty) = settings.repetition_penalty {
            body["repetition_penalty"] = json!(penalty);
        }
        if let Some(seed) = settings.seed {
            body["seed"] = json!(seed);
        }
        self.client.complete(body)
    }

    fn name(&self) -> &str {
        self.client.model()
    }
}

/// One chat message in OpenAI form: images as `image_url` data URLs, videos as `video_url`
/// (vLLM's extension), frame lists as images, empty text parts dropped (they render nothing).
pub fn message_json(message: &Message) -> Result<Value, BackendError> {
    let content = match &message.content {
        Content::Text(text) => Value::String(text.clone()),
        Content::Parts(parts) => {
            let mut items = Vec::with_capacity(parts.len());
            for part in parts {
                match part {
                    Part::Text(text) if text.is_empty() => {}
                    Part::Text(text) => items.push(json!({"type": "text", "text": text})),
                    Part::Image(image) => {
                        items.push(json!({"type": "image_url", "image_url": {"url": media_url(&image.source)?}}));
                    }
                    Part::Video(video) => match &video.source {
                        VideoSource::File(source) => {
                            items.push(json!({"type": "video_url", "video_url": {"url": media_url(source)?}}));
                        }
                        VideoSource::Frames(frames) => {
                            for frame in frames {
                                items.push(json!({"type": "image_url", "image_url": {"url": media_url(frame)?}}));
                            }
                        }
                    },
                }
            }
            Value::Array(items)
        }
    };
    Ok(json!({"role": message.role, "content": content}))
}

/// URLs pass through; local files (plain or `file://`) become `data:` URLs.
fn media_url(source: &str) -> Result<String, BackendError> {
    if source.starts_with("http://")
        || source.starts_with("https://")
        || source.starts_with("data:")
    {
        return Ok(source.to_string());
    }
    let path = Path::new(source.strip_prefix("file://").unwrap_or(source));
    let media_error = |reason: String| BackendError::Media {
        path: path.display().to_string(),
        reason,
    };
    let size = std::fs::metadata(path)
        .map_err(|e| media_error(e.to_string()))?
        .len();
    if size > MAX_INLINE_MEDIA {
        return Err(media_error(format!(
            "{size} bytes is more than the {} MiB inline limit",
            MAX_INLINE_MEDIA >> 20
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| media_error(e.to_string()))?;
    let mime = mime_type(path);
    Ok(format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

fn mime_type(path: &Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        Some("webp") => "image/webp",
        Some("gif") => "image/gif",
        Some("bmp") => "image/bmp",
        Some("mp4") => "video/mp4",
        Some("webm") => "video/webm",
        Some("mkv") => "video/x-matroska",
        Some("avi") => "video/x-msvideo",
        Some("mov") => "video/quicktime",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_url_is_derived_from_the_base() {
        let mut config = EndpointConfig::new("http://h:8000/v1/", "m");
        assert_eq!(
            config.completions_url(),
            "http://h:8000/v1/chat/completions"
        );
        config.base_url = "http://h/v1/chat/completions".into();
        assert_eq!(config.completions_url(), "http://h/v1/chat/completions");
    }
}
