//! Integration tests against the golden fixtures (`tests/fixtures` at the repository root) and
//! the real Keye-VL-8B-Preview tokenizer.

mod cases;
mod messages;
mod streaming;
mod template;
mod tokenizer;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use keye_chat::Tokenizer;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

pub fn real_model_dir() -> PathBuf {
    fixtures().join("keye-vl-8b-preview")
}

/// The real 151k-token tokenizer, loaded once for all tests.
pub fn real_tokenizer() -> &'static Tokenizer {
    static TOKENIZER: OnceLock<Tokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| Tokenizer::from_model_dir(real_model_dir()).expect("real tokenizer"))
}

pub fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
