//! Routes and handlers: the chat page, `/health`, `/metrics`, `/v1/models` and
//! `/v1/chat/completions` (plain JSON or server-sent events).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::{Stream, StreamExt, stream};
use keye::{FinishReason, Keye, Usage};
use keye_chat::{ChunkKind, ReasoningSplitter};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use crate::config::ServerConfig;
use crate::engine::{Engine, Job, QueueSlot, Update};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::openai::{self, ResponseMeta};

const CHAT_PAGE: &str = include_str!("web/index.html");

/// What every handler shares.
pub(crate) struct AppState {
    pub keye: Arc<Keye>,
    pub config: ServerConfig,
    pub engine: Engine,
    pub metrics: Arc<Metrics>,
    /// Requests whose media and prompt are being prepared at once.
    pub prepare_permits: Semaphore,
    pub kv_token_budget: usize,
    pub started: u64,
    id_prefix: u64,
    next_id: AtomicU64,
}

impl AppState {
    pub fn new(
        keye: Arc<Keye>,
        config: ServerConfig,
        engine: Engine,
        metrics: Arc<Metrics>,
        kv_token_budget: usize,
    ) -> Self {
        use std::hash::{BuildHasher, RandomState};
        Self {
            prepare_permits: Semaphore::new(config.prepare_concurrency),
            keye,
            config,
            engine,
            metrics,
            kv_token_budget,
            started: unix_time(),
            id_prefix: RandomState::new().hash_one(SystemTime::now()),
            next_id: AtomicU64::new(0),
        }
    }

    fn new_response_meta(&self) -> ResponseMeta {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        ResponseMeta {
            id: format!("chatcmpl-{:016x}{n:08x}", self.id_prefix),
            created: unix_time(),
            model: self.config.served_model_name.clone(),
        }
    }
}

fn unix_time() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(crate) fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/metrics", get(metrics))
        .route("/v1/models", get(list_models))
        .route("/v1/models/{*id}", get(get_model))
        .route("/v1/chat/completions", post(chat_completions))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            require_api_key,
        ));
    Router::new()
        .route("/", get(chat_page))
        .route("/health", get(health))
        .merge(api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            count_statuses,
        ))
        .with_state(state)
}

async fn count_statuses(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    state.metrics.record_status(response.status().as_u16());
    response
}

async fn require_api_key(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(key) = &state.config.api_key {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !constant_time_eq(given.trim().as_bytes(), key.as_bytes()) {
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(request).await
}

/// Compares without an early exit, so response timing does not reveal how much of a guessed key
/// was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn not_found() -> ApiError {
    ApiError::not_found("No such endpoint.")
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

async fn chat_page() -> Html<&'static str> {
    Html(CHAT_PAGE)
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    if state.engine.is_serving() {
        axum::Json(json!({"status": "ok"})).into_response()
    } else {
        ApiError::shutting_down().into_response()
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        state.metrics.render(),
    )
        .into_response()
}

fn model_json(state: &AppState) -> Value {
    json!({
        "id": state.config.served_model_name,
        "object": "model",
        "created": state.started,
        "owned_by": "keye",
        "max_model_len": state.keye.max_context(),
    })
}

async fn list_models(State(state): State<Arc<AppState>>) -> axum::Json<Value> {
    axum::Json(json!({"object": "list", "data": [model_json(&state)]}))
}

async fn get_model(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    if id == state.config.served_model_name {
        Ok(axum::Json(model_json(&state)))
    } else {
        Err(ApiError::unknown_model(
            &id,
            &state.config.served_model_name,
        ))
    }
}

async fn chat_completions(State(state): State<Arc<AppState>>, body: Body) -> Response {
    match answer(state, body).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn answer(state: Arc<AppState>, body: Body) -> Result<Response, ApiError> {
    let arrived = Instant::now();
    let config = &state.config;
    if !state.engine.is_serving() {
        return Err(ApiError::shutting_down());
    }
    // The slot is taken before the body is read, so waiting requests (and their bodies) are
    // bounded by the queue size.
    let slot = QueueSlot::try_acquire(&state.metrics, config.max_queue)
        .ok_or_else(|| ApiError::overloaded("The server's request queue is full"))?;
    let bytes = read_body(body, config.max_body_bytes, config.idle_timeout).await?;
    let chat = openai::parse_chat_request(&bytes, &config.served_model_name)?;
    drop(bytes);
    crate::media::check_counts(&chat.messages, config)?;

    let request = keye::Request {
        messages: chat.messages,
        thinking: chat.thinking,
        generation: chat.generation,
        media_policy: config.media_policy.clone(),
        trace: false,
        progress: None,
    };
    let (mut request, prompt_tokens) = prepare(&state, request).await?;
    let max_new_tokens = budget_answer(&state, &request.generation, prompt_tokens)?;
    request.generation.max_new_tokens = Some(max_new_tokens);

    let (updates, mut receiver) = unbounded_channel();
    state.engine.submit(Job {
        request,
        kv_tokens: prompt_tokens + max_new_tokens,
        arrived,
        deadline: arrived + config.request_timeout,
        updates,
        slot,
    })?;
    match receiver.recv().await {
        Some(Update::Started) => {}
        Some(Update::Failed(error)) => return Err(error),
        Some(_) => return Err(ApiError::internal("The engine answered out of order.")),
        None => return Err(ApiError::shutting_down()),
    }
    let meta = state.new_response_meta();
    if chat.stream {
        Ok(stream_response(receiver, meta, chat.include_usage))
    } else {
        collect_response(receiver, &meta).await
    }
}

/// Reads the whole body, refusing more than `limit` bytes and clients slower than `timeout`.
async fn read_body(body: Body, limit: usize, timeout: Duration) -> Result<Vec<u8>, ApiError> {
    let read = async {
        let mut stream = body.into_data_stream();
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|error| {
                ApiError::invalid(format!("Cannot read the request body: {error}."))
            })?;
            if bytes.len() + chunk.len() > limit {
                return Err(ApiError::body_too_large(limit));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| ApiError::timeout("The request body did not arrive in time."))?
}

/// Reads the request's media and renders its prompt on the blocking pool (a few requests at a
/// time), returning the request with media inlined and its prompt length.
async fn prepare(
    state: &Arc<AppState>,
    mut request: keye::Request,
) -> Result<(keye::Request, usize), ApiError> {
    let _permit = state
        .prepare_permits
        .acquire()
        .await
        .map_err(|_| ApiError::shutting_down())?;
    let keye = Arc::clone(&state.keye);
    tokio::task::spawn_blocking(move || {
        let policy = request.media_policy.clone();
        crate::media::inline_media(&mut request.messages, &policy)?;
        let prompt = keye.prepare(&request)?;
        Ok((request, prompt.input_ids.len()))
    })
    .await
    .map_err(|_| ApiError::internal("Preparing the prompt failed."))?
}

/// The answer length: the client's `max_tokens` if the context has room for it, otherwise the
/// checkpoint's or server's default cut to the room left.
fn budget_answer(
    state: &AppState,
    options: &keye::GenerationOptions,
    prompt_tokens: usize,
) -> Result<usize, ApiError> {
    let max_context = state.keye.max_context();
    let overflow = |message: String| {
        ApiError::invalid_param("messages", message).with_code("context_length_exceeded")
    };
    if prompt_tokens >= max_context {
        return Err(overflow(format!(
            "This model's maximum context length is {max_context} tokens; the messages take \
             {prompt_tokens}."
        )));
    }
    let room = max_context - prompt_tokens;
    let max_new_tokens = match options.max_new_tokens {
        Some(requested) if requested > room => {
            return Err(overflow(format!(
                "This model's maximum context length is {max_context} tokens; the request asks \
                 for {} ({prompt_tokens} in the messages, {requested} in the completion).",
                prompt_tokens.saturating_add(requested)
            ))
            .with_param("max_tokens"));
        }
        Some(requested) => requested,
        None => state
            .keye
            .generation_config()
            .max_new_tokens
            .unwrap_or(state.config.default_max_tokens)
            .clamp(1, room),
    };
    let kv_tokens = prompt_tokens + max_new_tokens;
    if kv_tokens > state.kv_token_budget {
        return Err(ApiError::invalid_param(
            "max_tokens",
            format!(
                "The request needs {kv_tokens} KV-cache tokens ({prompt_tokens} prompt + \
                 {max_new_tokens} answer); this server holds at most {}.",
                state.kv_token_budget
            ),
        )
        .with_code("context_length_exceeded"));
    }
    Ok(max_new_tokens)
}

async fn collect_response(
    mut receiver: UnboundedReceiver<Update>,
    meta: &ResponseMeta,
) -> Result<Response, ApiError> {
    let mut text = String::new();
    loop {
        match receiver.recv().await {
            Some(Update::Text(delta)) => text.push_str(&delta),
            Some(Update::Finished { reason, usage }) => {
                let split = keye_chat::split_reasoning(&text);
                let reasoning = (!split.reasoning.is_empty()).then_some(split.reasoning.as_str());
                let body = openai::completion_json(meta, &split.answer, reasoning, reason, usage);
                return Ok(axum::Json(body).into_response());
            }
            Some(Update::Failed(error)) => return Err(error),
            Some(Update::Started) => {}
            None => return Err(ApiError::shutting_down()),
        }
    }
}

/// Per-request state of a streamed answer.
struct ChatStream {
    receiver: UnboundedReceiver<Update>,
    splitter: ReasoningSplitter,
    meta: ResponseMeta,
    include_usage: bool,
    done: bool,
}

impl ChatStream {
    fn chunk(&self, delta: Value, reason: Option<FinishReason>) -> Event {
        json_event(&openai::chunk_json(
            &self.meta,
            delta,
            reason,
            self.include_usage,
        ))
    }

    fn text_chunks(&self, chunks: Vec<keye_chat::ReasoningChunk>) -> Vec<Event> {
        chunks
            .into_iter()
            .map(|chunk| {
                let delta = match chunk.kind {
                    ChunkKind::Thinking => json!({"reasoning_content": chunk.text}),
                    ChunkKind::Answer => json!({"content": chunk.text}),
                };
                self.chunk(delta, None)
            })
            .collect()
    }

    fn finished(&mut self, reason: FinishReason, usage: Usage) -> Vec<Event> {
        let rest = std::mem::take(&mut self.splitter).finish();
        let mut events = self.text_chunks(rest.into_iter().collect());
        events.push(self.chunk(json!({}), Some(reason)));
        if self.include_usage {
            events.push(json_event(&openai::usage_chunk_json(&self.meta, usage)));
        }
        events.push(Event::default().data("[DONE]"));
        self.done = true;
        events
    }

    /// vLLM's convention for a stream that fails after it started: an error object, then the end.
    fn failed(&mut self, error: &ApiError) -> Vec<Event> {
        self.done = true;
        vec![
            json_event(&error.to_json()),
            Event::default().data("[DONE]"),
        ]
    }

    async fn next_events(&mut self) -> Option<Vec<Event>> {
        if self.done {
            return None;
        }
        Some(match self.receiver.recv().await {
            Some(Update::Text(delta)) => {
                let chunks = self.splitter.push(&delta);
                self.text_chunks(chunks)
            }
            Some(Update::Finished { reason, usage }) => self.finished(reason, usage),
            Some(Update::Failed(error)) => self.failed(&error),
            Some(Update::Started) => Vec::new(),
            None => self.failed(&ApiError::shutting_down()),
        })
    }
}

fn json_event(value: &Value) -> Event {
    Event::default().data(value.to_string())
}

fn stream_response(
    receiver: UnboundedReceiver<Update>,
    meta: ResponseMeta,
    include_usage: bool,
) -> Response {
    let state = ChatStream {
        receiver,
        splitter: ReasoningSplitter::new(),
        meta,
        include_usage,
        done: false,
    };
    let opening = state.chunk(json!({"role": "assistant", "content": ""}), None);
    let rest = stream::unfold(state, |mut state| async move {
        let events = state.next_events().await?;
        Some((events, state))
    })
    .flat_map(stream::iter);
    let events: std::pin::Pin<Box<dyn Stream<Item = Event> + Send>> =
        Box::pin(stream::once(async move { opening }).chain(rest));
    let mut response = Sse::new(events.map(Ok::<_, Infallible>))
        .keep_alive(KeepAlive::default())
        .into_response();
    let headers: &mut HeaderMap = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}
