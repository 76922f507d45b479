//! The OpenAI chat-completions wire format: reading a request body into a [`ChatRequest`] with
//! precise 4xx errors, and writing responses and stream chunks.

use keye::{FinishReason, GenerationOptions, Usage};
use keye_chat::{Message, ThinkingMode};
use serde_json::{Map, Value, json};

use crate::error::{ApiError, messages_param};

/// Stop strings a request may give; each is matched against the whole answer so far.
const MAX_STOP_STRINGS: usize = 16;
const MAX_STOP_LENGTH: usize = 1024;

/// A validated `/v1/chat/completions` request.
#[derive(Clone, Debug)]
pub(crate) struct ChatRequest {
    pub messages: Vec<Message>,
    pub thinking: ThinkingMode,
    /// `max_new_tokens` is the client's `max_tokens`, if any.
    pub generation: GenerationOptions,
    pub stream: bool,
    pub include_usage: bool,
}

/// Reads a request body. `served_model` is the only `model` accepted.
pub(crate) fn parse_chat_request(body: &[u8], served_model: &str) -> Result<ChatRequest, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|error| ApiError::invalid(format!("The body is not valid JSON: {error}.")))?;
    let Value::Object(fields) = value else {
        return Err(ApiError::invalid("The body must be a JSON object."));
    };
    let fields = Fields(&fields);

    if let Some(model) = fields.string("model")?
        && model != served_model
    {
        return Err(ApiError::unknown_model(model, served_model));
    }

    let messages = match fields.get("messages") {
        None => {
            return Err(ApiError::invalid_param(
                "messages",
                "`messages` is required.",
            ));
        }
        Some(Value::Array(list)) if list.is_empty() => {
            return Err(ApiError::invalid_param(
                "messages",
                "`messages` must contain at least one message.",
            ));
        }
        Some(list @ Value::Array(_)) => {
            keye_chat::messages_from_value(list).map_err(|error| match error {
                keye_chat::ChatError::InvalidMessages {
                    location, reason, ..
                } => ApiError::invalid_param(
                    messages_param(&location),
                    format!("Invalid message at {}: {reason}", messages_param(&location)),
                ),
                other => ApiError::invalid_param("messages", other.to_string()),
            })?
        }
        Some(_) => return Err(type_error("messages", "an array of messages")),
    };

    let stream = fields.boolean("stream")?.unwrap_or(false);
    let include_usage = match fields.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(Value::Object(options)) => {
            if !stream {
                return Err(ApiError::invalid_param(
                    "stream_options",
                    "`stream_options` is only allowed when `stream` is true.",
                ));
            }
            Fields(options)
                .boolean("include_usage")
                .map_err(|error| error.with_param("stream_options.include_usage"))?
                .unwrap_or(false)
        }
        Some(_) => return Err(type_error("stream_options", "an object")),
    };

    if let Some(n) = fields.integer("n")?
        && n != 1
    {
        return Err(ApiError::unsupported("n", "Only `n` = 1 is supported."));
    }
    let mut penalties = [None; 2];
    for (slot, penalty) in penalties
        .iter_mut()
        .zip(["frequency_penalty", "presence_penalty"])
    {
        if let Some(value) = fields.number(penalty)? {
            if !(-2.0..=2.0).contains(&value) {
                return Err(ApiError::invalid_param(
                    penalty,
                    format!("`{penalty}` must be between -2 and 2."),
                ));
            }
            *slot = Some(value as f32);
        }
    }
    let [frequency_penalty, presence_penalty] = penalties;
    if fields.boolean("logprobs")? == Some(true) || fields.is_set("top_logprobs") {
        return Err(ApiError::unsupported(
            "logprobs",
            "Log probabilities are not supported by this server.",
        ));
    }
    if fields.is_set("logit_bias") && !fields.is_empty_object("logit_bias") {
        return Err(ApiError::unsupported(
            "logit_bias",
            "`logit_bias` is not supported by this server.",
        ));
    }
    if fields.is_set("tools") && !fields.is_empty_array("tools") {
        return Err(ApiError::unsupported(
            "tools",
            "Tool calling is not supported by this server.",
        ));
    }
    match fields.get("response_format") {
        None | Some(Value::Null) => {}
        Some(Value::Object(format)) if format.get("type") == Some(&Value::from("text")) => {}
        Some(_) => {
            return Err(ApiError::unsupported(
                "response_format",
                "Only the `text` response format is supported.",
            ));
        }
    }

    let max_tokens = match fields.integer("max_completion_tokens")? {
        Some(n) => Some(("max_completion_tokens", n)),
        None => fields.integer("max_tokens")?.map(|n| ("max_tokens", n)),
    };
    let max_new_tokens = match max_tokens {
        Some((param, n)) if n < 1 => {
            return Err(ApiError::invalid_param(
                param,
                format!("`{param}` must be at least 1."),
            ));
        }
        Some((_, n)) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
        None => None,
    };
    let temperature = fields.number("temperature")?;
    if let Some(t) = temperature
        && !(0.0..=2.0).contains(&t)
    {
        return Err(ApiError::invalid_param(
            "temperature",
            "`temperature` must be between 0 and 2.",
        ));
    }
    let top_p = fields.number("top_p")?;
    if let Some(p) = top_p
        && !(p > 0.0 && p <= 1.0)
    {
        return Err(ApiError::invalid_param(
            "top_p",
            "`top_p` must be in (0, 1].",
        ));
    }
    // vLLM's spelling: -1 (or 0) turns top-k off.
    let top_k = match fields.integer("top_k")? {
        None => None,
        Some(-1 | 0) => Some(0),
        Some(k) if k > 0 => Some(usize::try_from(k).unwrap_or(usize::MAX)),
        Some(_) => {
            return Err(ApiError::invalid_param(
                "top_k",
                "`top_k` must be positive, or -1 to disable it.",
            ));
        }
    };
    let repetition_penalty = fields.number("repetition_penalty")?;
    if let Some(penalty) = repetition_penalty
        && !(penalty > 0.0 && penalty <= 10.0)
    {
        return Err(ApiError::invalid_param(
            "repetition_penalty",
            "`repetition_penalty` must be in (0, 10].",
        ));
    }
    // Seeds are 64-bit integers; negative ones are reinterpreted, not refused.
    let seed = fields.integer("seed")?.map(|seed| seed as u64);
    let stop = parse_stop(fields.get("stop"))?;
    let ignore_eos = fields.boolean("ignore_eos")?.unwrap_or(false);

    let mut enable_thinking = fields.boolean("enable_thinking")?;
    match fields.get("chat_template_kwargs") {
        None | Some(Value::Null) => {}
        Some(Value::Object(kwargs)) => {
            if let Some(enabled) = Fields(kwargs)
                .boolean("enable_thinking")
                .map_err(|error| error.with_param("chat_template_kwargs.enable_thinking"))?
            {
                enable_thinking = Some(enabled);
            }
        }
        Some(_) => return Err(type_error("chat_template_kwargs", "an object")),
    }
    let thinking = match enable_thinking {
        None => ThinkingMode::Auto,
        Some(true) => ThinkingMode::Think,
        Some(false) => ThinkingMode::NoThink,
    };

    Ok(ChatRequest {
        messages,
        thinking,
        generation: GenerationOptions {
            max_new_tokens,
            temperature: temperature.map(|t| t as f32),
            top_p: top_p.map(|p| p as f32),
            top_k,
            repetition_penalty: repetition_penalty.map(|p| p as f32),
            frequency_penalty,
            presence_penalty,
            seed,
            stop,
            ignore_eos,
            prompt_lookup: None,
        },
        stream,
        include_usage,
    })
}

fn parse_stop(value: Option<&Value>) -> Result<Vec<String>, ApiError> {
    let stops: Vec<&str> = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(stop)) => vec![stop.as_str()],
        Some(Value::Array(list)) => list
            .iter()
            .map(|item| {
                item.as_str()
                    .ok_or_else(|| type_error("stop", "a string or an array of strings"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(type_error("stop", "a string or an array of strings")),
    };
    if stops.len() > MAX_STOP_STRINGS {
        return Err(ApiError::invalid_param(
            "stop",
            format!("At most {MAX_STOP_STRINGS} stop strings are allowed."),
        ));
    }
    if stops
        .iter()
        .any(|stop| stop.is_empty() || stop.len() > MAX_STOP_LENGTH)
    {
        return Err(ApiError::invalid_param(
            "stop",
            format!("Stop strings must be 1 to {MAX_STOP_LENGTH} bytes long."),
        ));
    }
    Ok(stops.into_iter().map(str::to_owned).collect())
}

fn type_error(param: &str, expected: &str) -> ApiError {
    ApiError::invalid_param(param, format!("`{param}` must be {expected}."))
}

/// Typed access to optional request fields; `null` counts as absent, a wrong type is a 400.
struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    fn is_set(&self, name: &str) -> bool {
        !matches!(self.0.get(name), None | Some(Value::Null))
    }

    fn is_empty_object(&self, name: &str) -> bool {
        matches!(self.0.get(name), Some(Value::Object(map)) if map.is_empty())
    }

    fn is_empty_array(&self, name: &str) -> bool {
        matches!(self.0.get(name), Some(Value::Array(list)) if list.is_empty())
    }

    fn string(&self, name: &str) -> Result<Option<&str>, ApiError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(_) => Err(type_error(name, "a string")),
        }
    }

    fn boolean(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(flag)) => Ok(Some(*flag)),
            Some(_) => Err(type_error(name, "a boolean")),
        }
    }

    fn number(&self, name: &str) -> Result<Option<f64>, ApiError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(number)) => number
                .as_f64()
                .filter(|x| x.is_finite())
                .map(Some)
                .ok_or_else(|| type_error(name, "a finite number")),
            Some(_) => Err(type_error(name, "a number")),
        }
    }

    /// Integers, including integral floats such as `16.0` that some clients write.
    fn integer(&self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(number)) => {
                if let Some(n) = number.as_i64() {
                    Ok(Some(n))
                } else if let Some(n) = number.as_u64() {
                    Ok(Some(i64::try_from(n).unwrap_or(i64::MAX)))
                } else {
                    match number.as_f64() {
                        Some(x) if x.fract() == 0.0 && x.abs() < 9.0e15 => Ok(Some(x as i64)),
                        _ => Err(type_error(name, "an integer")),
                    }
                }
            }
            Some(_) => Err(type_error(name, "an integer")),
        }
    }
}

/// What every response and chunk of one request repeats.
#[derive(Clone, Debug)]
pub(crate) struct ResponseMeta {
    pub id: String,
    pub created: u64,
    pub model: String,
}

pub(crate) fn finish_reason(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Length => "length",
        // Cancelled answers never reach a client as finished: the server answers with an error.
        FinishReason::Stop | FinishReason::Cancelled => "stop",
    }
}

pub(crate) fn usage_json(usage: Usage) -> Value {
    json!({
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    })
}

/// A non-streamed answer. `reasoning` is `None` when the model did not reason.
pub(crate) fn completion_json(
    meta: &ResponseMeta,
    content: &str,
    reasoning: Option<&str>,
    reason: FinishReason,
    usage: Usage,
) -> Value {
    json!({
        "id": meta.id,
        "object": "chat.completion",
        "created": meta.created,
        "model": meta.model,
        "choices": [{
            "index": 0,
            "message": {
                "role": "assistant",
                "content": content,
                "reasoning_content": reasoning,
            },
            "logprobs": null,
            "finish_reason": finish_reason(reason),
        }],
        "usage": usage_json(usage),
    })
}

/// One streamed chunk with a choice. With `include_usage` every such chunk carries
/// `"usage": null`, as OpenAI's do.
pub(crate) fn chunk_json(
    meta: &ResponseMeta,
    delta: Value,
    reason: Option<FinishReason>,
    include_usage: bool,
) -> Value {
    let mut chunk = json!({
        "id": meta.id,
        "object": "chat.completion.chunk",
        "created": meta.created,
        "model": meta.model,
        "choices": [{
            "index": 0,
            "delta": delta,
            "logprobs": null,
            "finish_reason": reason.map(finish_reason),
        }],
    });
    if include_usage {
        chunk["usage"] = Value::Null;
    }
    chunk
}

/// The last chunk of a stream with `include_usage`: no choices, the request's usage.
pub(crate) fn usage_chunk_json(meta: &ResponseMeta, usage: Usage) -> Value {
    json!({
        "id": meta.id,
        "object": "chat.completion.chunk",
        "created": meta.created,
        "model": meta.model,
        "choices": [],
        "usage": usage_json(usage),
    })
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use keye_chat::{Content, Part};

    use super::*;

    fn parse(body: Value) -> Result<ChatRequest, ApiError> {
        parse_chat_request(body.to_string().as_bytes(), "keye")
    }

    fn user(text: &str) -> Value {
        json!([{"role": "user", "content": text}])
    }

    #[test]
    fn openai_fields_map_to_generation_options() {
        let request = parse(json!({
            "model": "keye",
            "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "high"}},
                {"type": "text", "text": "What is it?"},
            ]}],
            "max_tokens": 32,
            "max_completion_tokens": 16,
            "temperature": 0,
            "top_p": 0.5,
            "top_k": -1,
            "seed": 7,
            "stop": "END",
            "repetition_penalty": 1.1,
            "presence_penalty": 0.25,
            "frequency_penalty": -0.5,
            "n": 1,
            "stream": true,
            "stream_options": {"include_usage": true},
            "chat_template_kwargs": {"enable_thinking": false},
            "user": "ignored",
        }))
        .unwrap();
        assert_eq!(
            request.generation,
            GenerationOptions {
                max_new_tokens: Some(16),
                temperature: Some(0.0),
                top_p: Some(0.5),
                top_k: Some(0),
                repetition_penalty: Some(1.1),
                frequency_penalty: Some(-0.5),
                presence_penalty: Some(0.25),
                seed: Some(7),
                stop: vec!["END".into()],
                ignore_eos: false,
                prompt_lookup: None,
            }
        );
        assert!(request.stream && request.include_usage);
        assert_eq!(request.thinking, ThinkingMode::NoThink);
        let Content::Parts(parts) = &request.messages[0].content else {
            panic!("parts expected");
        };
        assert!(
            matches!(&parts[0], Part::Image(image) if image.source == "data:image/png;base64,AAAA")
        );
    }

    #[test]
    fn thinking_switches() {
        let think = parse(json!({"messages": user("hi"), "enable_thinking": true})).unwrap();
        assert_eq!(think.thinking, ThinkingMode::Think);
        let auto = parse(json!({"messages": user("hi")})).unwrap();
        assert_eq!(auto.thinking, ThinkingMode::Auto);
        let kwargs_win = parse(json!({
            "messages": user("hi"),
            "enable_thinking": true,
            "chat_template_kwargs": {"enable_thinking": false},
        }))
        .unwrap();
        assert_eq!(kwargs_win.thinking, ThinkingMode::NoThink);
    }

    fn rejected(body: Value) -> ApiError {
        parse(body).expect_err("request should be rejected")
    }

    #[test]
    fn bad_requests_name_the_parameter() {
        let cases = [
            (json!({"messages": []}), "messages"),
            (json!({"model": "keye"}), "messages"),
            (json!({"messages": "hi"}), "messages"),
            (
                json!({"messages": user("hi"), "temperature": "hot"}),
                "temperature",
            ),
            (
                json!({"messages": user("hi"), "temperature": 3}),
                "temperature",
            ),
            (json!({"messages": user("hi"), "top_p": 0}), "top_p"),
            (json!({"messages": user("hi"), "top_k": -5}), "top_k"),
            (
                json!({"messages": user("hi"), "max_tokens": 0}),
                "max_tokens",
            ),
            (
                json!({"messages": user("hi"), "max_tokens": 1.5}),
                "max_tokens",
            ),
            (json!({"messages": user("hi"), "stop": [1]}), "stop"),
            (json!({"messages": user("hi"), "stop": [""]}), "stop"),
            (json!({"messages": user("hi"), "stream": "yes"}), "stream"),
            (
                json!({"messages": user("hi"), "stream_options": {"include_usage": true}}),
                "stream_options",
            ),
            (json!({"messages": user("hi"), "n": 2}), "n"),
            (
                json!({"messages": user("hi"), "frequency_penalty": 2.5}),
                "frequency_penalty",
            ),
            (
                json!({"messages": user("hi"), "presence_penalty": "high"}),
                "presence_penalty",
            ),
            (
                json!({"messages": user("hi"), "logprobs": true}),
                "logprobs",
            ),
            (
                json!({"messages": user("hi"), "tools": [{"type": "function"}]}),
                "tools",
            ),
            (
                json!({"messages": user("hi"), "response_format": {"type": "json_object"}}),
                "response_format",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}),
                "messages[0].content[0].type",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": 5}]}]}),
                "messages[0].content[0].image_url",
            ),
            (json!({"messages": [{"content": "hi"}]}), "messages[0]"),
        ];
        for (body, param) in cases {
            let error = rejected(body.clone());
            assert_eq!(error.status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(error.param.as_deref(), Some(param), "{body}: {error:?}");
        }
    }

    #[test]
    fn unknown_model_is_404() {
        let error = rejected(json!({"model": "gpt-4o", "messages": user("hi")}));
        assert_eq!(error.status, StatusCode::NOT_FOUND);
        assert_eq!(error.code.as_deref(), Some("model_not_found"));
    }

    #[test]
    fn malformed_json_is_400() {
        for body in [&b"{\"messages\": ["[..], b"[]", b"\xff\xfe", b""] {
            let error = parse_chat_request(body, "keye").unwrap_err();
            assert_eq!(error.status, StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn chunks_and_completions_have_the_openai_shape() {
        let meta = ResponseMeta {
            id: "chatcmpl-1".into(),
            created: 5,
            model: "keye".into(),
        };
        let usage = Usage {
            prompt_tokens: 3,
            completion_tokens: 2,
        };
        let completion = completion_json(&meta, "a", Some("r"), FinishReason::Length, usage);
        assert_eq!(completion["choices"][0]["message"]["content"], "a");
        assert_eq!(
            completion["choices"][0]["message"]["reasoning_content"],
            "r"
        );
        assert_eq!(completion["choices"][0]["finish_reason"], "length");
        assert_eq!(completion["usage"]["total_tokens"], 5);

        let chunk = chunk_json(&meta, json!({"content": "x"}), None, true);
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert!(chunk["usage"].is_null() && chunk.get("usage").is_some());
        assert!(chunk["choices"][0]["finish_reason"].is_null());
        let last = usage_chunk_json(&meta, usage);
        assert_eq!(last["choices"], json!([]));
        assert_eq!(last["usage"]["completion_tokens"], 2);
    }
}
