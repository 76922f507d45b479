//! Progress of the slow stages before the first token, for progress bars.

use std::fmt;
use std::sync::Arc;

/// Which stage a progress report is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Video frames decoded (`done` of `total` sampled frames, per video).
    Decoding,
    /// Vision tower patches encoded (`done` of `total` over the whole request).
    Encoding,
}

/// A callback receiving `(stage, done, total)` reports; cheap to clone.
#[derive(Clone)]
pub struct Progress(Arc<dyn Fn(Stage, usize, usize) + Send + Sync>);

impl Progress {
    pub fn new(callback: impl Fn(Stage, usize, usize) + Send + Sync + 'static) -> Self {
        Self(Arc::new(callback))
    }

    pub fn report(&self, stage: Stage, done: usize, total: usize) {
        (self.0)(stage, done, total)
    }
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Progress")
    }
}
