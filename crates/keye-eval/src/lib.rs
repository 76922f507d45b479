//! `keye eval`: a VLMEvalKit-compatible benchmark runner and scorer for Keye-VL.
//!
//! Reads VLMEvalKit's dataset files as they are, builds the prompts Keye is evaluated with,
//! generates through the local engine or any OpenAI-compatible endpoint, and scores with the
//! exact rules of the VLMEvalKit fork Kwai shipped (or of upstream VLMEvalKit with
//! `--compat upstream`).
//!
//! Data flow: [`dataset`] (TSV → rows, images materialised) → [`prompt`] (row → chat messages) →
//! [`backend::Backend`] (messages → raw text) → [`postprocess`] (raw → prediction) → [`runner`]
//! (checkpointed, sharded, concurrent) → [`score`] (predictions → records + score table) →
//! [`report`] (work dir → HTML/JSON/CSV).

pub mod backend;
pub mod cli;
pub mod dataset;
pub mod error;
pub mod extract;
pub mod jpeg;
pub mod judge;
pub mod metrics;
pub mod openai;
pub mod output;
pub mod postprocess;
pub mod prompt;
pub mod python;
pub mod report;
pub mod runner;
pub mod score;
pub mod table;

pub use backend::{
    Backend, BackendError, EvalRequest, GenerationSettings, LocalBackendFactory, NoLocalEngine,
};
pub use error::EvalError;
