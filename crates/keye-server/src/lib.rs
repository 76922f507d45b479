//! An OpenAI-compatible HTTP server for Keye-VL with continuous batching and a web chat page.
//!
//! Endpoints: `POST /v1/chat/completions` (JSON or server-sent events, images as `image_url`
//! parts, videos as `video_url` parts), `GET /v1/models`, `GET /health`, `GET /metrics`
//! (Prometheus) and the chat page at `/`.
//!
//! Requests are checked and their media read as they arrive; then they wait in a bounded queue
//! for a slot in the batch. One engine thread owns the running sequences and advances all of
//! them with one batched decode step at a time, so a new request joins between two steps and a
//! request whose client disconnected leaves before the next one.
//!
//! ```no_run
//! use std::sync::Arc;
//! use keye_server::{ServerConfig, ServerHandle};
//!
//! let keye = Arc::new(keye::Keye::load("Kwai-Keye/Keye-VL-8B-Preview", &Default::default())?);
//! let server = ServerHandle::spawn(keye, ServerConfig::default())?;
//! println!("OpenAI base URL: {}/v1", server.base_url());
//! server.shutdown()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod config;
mod engine;
mod error;
mod http;
mod media;
mod metrics;
mod openai;
mod server;

pub use config::{ServeArgs, ServerConfig};
pub use error::{ApiError, ServerError};
pub use server::{Server, ServerHandle, serve};
