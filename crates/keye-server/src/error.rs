//! The server's own failures ([`ServerError`]) and the OpenAI-style error answers sent to clients
//! ([`ApiError`]).

use std::borrow::Cow;
use std::path::PathBuf;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keye_media::MediaError;

/// Why the server could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    #[error("cannot load the model: {0}")]
    Load(#[source] keye::Error),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{} (given to --allowed-local-media-path) is not a readable folder: {source}", path.display())]
    MediaRoot {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid setting {setting}: {reason}")]
    Config {
        setting: &'static str,
        reason: String,
    },
    #[error("cannot set up the {what}: {source}")]
    Runtime {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("the batching engine stopped unexpectedly")]
    EngineCrashed,
}

/// A failed request as OpenAI reports it:
/// `{"error": {"message", "type", "param", "code"}}` with a matching HTTP status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<Cow<'static, str>>,
    /// Seconds after which a refused request may be retried (`Retry-After`).
    pub retry_after: Option<u32>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
            retry_after: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            message.into(),
        )
    }

    /// An invalid value of the request field `param`.
    pub fn invalid_param(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self::invalid(message).with_param(param)
    }

    pub fn unsupported(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self::invalid(message)
            .with_param(param)
            .with_code("unsupported_parameter")
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "invalid_request_error", message)
    }

    pub fn unknown_model(requested: &str, served: &str) -> Self {
        Self::not_found(format!(
            "The model `{requested}` does not exist; this server serves `{served}`."
        ))
        .with_param("model")
        .with_code("model_not_found")
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            "Method not allowed for this endpoint.",
        )
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "Missing or incorrect API key: send `Authorization: Bearer <key>`.",
        )
        .with_code("invalid_api_key")
    }

    pub fn body_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            format!("The request body is larger than the server's limit of {limit} bytes."),
        )
        .with_code("request_too_large")
    }

    pub fn overloaded(reason: &str) -> Self {
        let mut error = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_overloaded",
            format!("{reason}; retry shortly."),
        )
        .with_code("server_overloaded");
        error.retry_after = Some(1);
        error
    }

    pub fn shutting_down() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_shutting_down",
            "The server is shutting down.",
        )
        .with_code("server_shutting_down")
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(StatusCode::REQUEST_TIMEOUT, "timeout_error", message).with_code("timeout")
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
            .with_code("internal_error")
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(Cow::Borrowed(code));
        self
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry_after = self.retry_after;
        let mut response = (self.status, axum::Json(self.to_json())).into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// Client mistakes become 4xx answers naming the problem; only the server's own failures are 5xx.
impl From<keye::Error> for ApiError {
    fn from(error: keye::Error) -> Self {
        match error {
            keye::Error::InvalidRequest(reason) => ApiError::invalid(reason),
            keye::Error::Chat(error) => chat_error(error),
            keye::Error::Media(error) => media_error(error),
            keye::Error::Model(keye_model::Error::ContextOverflow {
                needed, available, ..
            }) => ApiError::invalid(format!(
                "This model's maximum context length is {available} tokens, but the request \
                 needs {needed}."
            ))
            .with_param("messages")
            .with_code("context_length_exceeded"),
            other => ApiError::internal(other.to_string()),
        }
    }
}

fn chat_error(error: keye_chat::ChatError) -> ApiError {
    use keye_chat::ChatError;
    match error {
        ChatError::InvalidMessages {
            location, reason, ..
        } => ApiError::invalid_param(
            messages_param(&location),
            format!("Invalid message at {}: {reason}", messages_param(&location)),
        ),
        // The template rejects malformed conversations (roles out of order, …) by raising.
        error @ (ChatError::Template { .. }
        | ChatError::PlaceholderCount { .. }
        | ChatError::InvalidVisual { .. }
        | ChatError::Tokenizer { .. }) => ApiError::invalid_param("messages", error.to_string()),
        other => ApiError::internal(other.to_string()),
    }
}

/// keye-chat names locations from the root of a bare message list (`$[0].content[1]`); in the
/// request body that list is `messages`.
pub(crate) fn messages_param(location: &str) -> String {
    match location.strip_prefix('$') {
        Some(rest) => format!("messages{rest}"),
        None => location.to_owned(),
    }
}

pub(crate) fn media_error(error: MediaError) -> ApiError {
    let code = match &error {
        // The server's own setup: its processor config, or FFmpeg missing or unusable.
        MediaError::Config { .. } | MediaError::Encode { .. } | MediaError::ToolMissing { .. } => {
            return ApiError::internal(error.to_string());
        }
        MediaError::PolicyRefused { .. } | MediaError::UnsupportedScheme { .. } => {
            "media_not_allowed"
        }
        MediaError::Http { .. } | MediaError::Io { .. } => "media_unavailable",
        MediaError::Timeout { .. } | MediaError::ToolTimeout { .. } => "media_timeout",
        MediaError::SourceTooLarge { .. }
        | MediaError::ImageTooLarge { .. }
        | MediaError::FrameTooLarge { .. }
        | MediaError::TooManyVideoTokens { .. } => "media_too_large",
        _ => "invalid_media",
    };
    let message = match &error {
        // The path is the server's business; the client named the file and gets the reason.
        MediaError::Io { error, .. } => format!("cannot read a local media file: {error}"),
        other => other.to_string(),
    };
    ApiError::invalid_param("messages", message).with_code(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_json_has_the_openai_shape() {
        let error = ApiError::invalid_param("temperature", "must be a number");
        assert_eq!(
            error.to_json(),
            serde_json::json!({"error": {
                "message": "must be a number",
                "type": "invalid_request_error",
                "param": "temperature",
                "code": null,
            }})
        );
    }

    #[test]
    fn overload_answers_carry_retry_after() {
        let response = ApiError::overloaded("the queue is full").into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }

    #[test]
    fn client_mistakes_are_4xx() {
        let refused = keye::Error::Media(MediaError::PolicyRefused {
            source_desc: "`/etc/passwd`".into(),
            reason: "local files are not allowed".into(),
        });
        let error = ApiError::from(refused);
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert_eq!(error.code.as_deref(), Some("media_not_allowed"));

        let overflow = keye::Error::Model(keye_model::Error::ContextOverflow {
            needed: 5000,
            available: 4096,
            model_max: 4096,
        });
        let error = ApiError::from(overflow);
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert_eq!(error.code.as_deref(), Some("context_length_exceeded"));

        let messages = keye::Error::Chat(keye_chat::ChatError::InvalidMessages {
            file: None,
            location: "$[1].content[0]".into(),
            reason: "a text part needs a string \"text\"".into(),
        });
        let error = ApiError::from(messages);
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert_eq!(error.param.as_deref(), Some("messages[1].content[0]"));
    }
}
