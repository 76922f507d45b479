//! The in-process engine as an evaluation backend: `keye eval run --model DIR` answers each row
//! through the `keye` library, without HTTP.

use std::path::Path;

use keye::{Flow, GenerationOptions, Keye, LoadOptions, Request, TokenEvent};
use keye_chat::ThinkingMode;

use crate::backend::{Backend, BackendError, EvalRequest, LocalBackendFactory};

/// Loads a checkpoint folder (or hub id) with the `keye` library.
pub struct LocalEngine;

impl LocalBackendFactory for LocalEngine {
    fn create(&self, model: &Path) -> Result<Box<dyn Backend>, BackendError> {
        let spec = model.to_string_lossy();
        let keye = Keye::load(&spec, &LoadOptions::default())
            .map_err(|e| BackendError::Unavailable(format!("cannot load {spec}: {e}")))?;
        let name = model
            .file_name()
            .map_or_else(|| spec.to_string(), |n| n.to_string_lossy().into_owned());
        Ok(Box::new(KeyeBackend { keye, name }))
    }
}

struct KeyeBackend {
    keye: Keye,
    name: String,
}

impl Backend for KeyeBackend {
    fn generate(&self, request: &EvalRequest) -> Result<String, BackendError> {
        let settings = &request.settings;
        let mut keye_request = Request::new(request.messages.clone());
        // The prompt builder already appended the thinking switch to the text.
        keye_request.thinking = ThinkingMode::Auto;
        keye_request.generation = GenerationOptions {
            max_new_tokens: Some(settings.max_tokens as usize),
            temperature: Some(settings.temperature),
            top_p: settings.top_p,
            top_k: settings.top_k.map(|k| k as usize),
            repetition_penalty: settings.repetition_penalty,
            seed: settings.seed,
            ..GenerationOptions::default()
        };
        let completion = self
            .keye
            .generate(&keye_request, &mut |_: &TokenEvent| Flow::Continue)
            .map_err(|e| BackendError::Model(e.to_string()))?;
        Ok(completion.text)
    }

    fn name(&self) -> &str {
        &self.name
    }
}
