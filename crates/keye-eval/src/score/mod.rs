//! Scoring: predictions + the dataset file → per-sample records and VLMEvalKit's score table.

mod mcq;
mod table;
mod video;
mod vqa;
mod yorn;

pub use mcq::{Prefetch, circular_prefetch};
pub use vqa::MathVistaRow;

use std::collections::BTreeMap;

use serde_json::{Map, Value};

pub use table::{Cell, ScoreTable};

use crate::dataset::{Benchmark, Dataset};
use crate::error::EvalError;
use crate::extract::Compat;
use crate::judge::Judge;

/// One prediction to score: the dataset row it answers and the stored (post-processed) text.
#[derive(Debug, Clone)]
pub struct Prediction {
    pub row: usize,
    pub text: String,
}

/// What scoring needs besides the data.
pub struct ScoreContext<'a> {
    pub compat: Compat,
    pub judge: Option<&'a Judge>,
    /// Threads for judge calls.
    pub concurrency: usize,
}

/// The per-sample outcome written to `<dataset>_records.jsonl`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Record {
    pub index: String,
    pub prediction: String,
    /// The letter / Yes / No / Unknown / normalised answer, or null when nothing was found.
    pub extracted: Option<String>,
    /// 1/0 for right/wrong, fractional for soft metrics.
    pub hit: f64,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Record {
    fn new(index: &str, prediction: &str, extracted: Option<String>, hit: f64) -> Record {
        Record {
            index: index.into(),
            prediction: prediction.into(),
            extracted,
            hit,
            extra: Map::new(),
        }
    }

    fn with(mut self, key: &str, value: impl Into<Value>) -> Record {
        self.extra.insert(key.into(), value.into());
        self
    }
}

/// The score output in VLMEvalKit's shape.
#[derive(Debug, Clone)]
pub enum ScoreOutput {
    /// Written as a CSV with every field quoted.
    Table(ScoreTable),
    /// Written as JSON (OCRBench, Video-MME ratings).
    Json(Value),
}

/// Everything scoring one dataset produces.
#[derive(Debug, Clone)]
pub struct Scores {
    pub records: Vec<Record>,
    pub output: ScoreOutput,
    /// VLMEvalKit's file-name suffix for the score file (`_acc.csv`, `_score.json`…).
    pub file_suffix: String,
    /// The summary numbers of `summarize.py` (percentages), in display order.
    pub headline: BTreeMap<String, f64>,
    /// Rows scored and rows whose prediction is a failure marker.
    pub scored: usize,
    pub failed: usize,
    /// Samples where the judge gave up and a seeded random option was used.
    pub random_fallbacks: usize,
}

/// Scores `predictions` against `dataset` with the dataset's VLMEvalKit evaluator.
pub fn score(
    dataset: &Dataset,
    predictions: &[Prediction],
    context: &ScoreContext,
) -> Result<Scores, EvalError> {
    let failed = predictions
        .iter()
        .filter(|p| p.text.contains("Failed to obtain answer"))
        .count();
    let mut scores = match &dataset.spec.benchmark {
        Benchmark::Mcq { circular, mmmu } => {
            mcq::score(dataset, predictions, context, *circular, *mmmu)?
        }
        Benchmark::YesNo(rating) => yorn::score(dataset, predictions, context, *rating)?,
        Benchmark::Vqa(kind) => vqa::score(dataset, predictions, context, *kind)?,
        Benchmark::VideoMme(_) => video::score(dataset, predictions)?,
    };
    scores.failed = failed;
    Ok(scores)
}

/// A quick rule-based verdict for one prediction (no judge), used for the running accuracy of
/// the progress bar; `None` where a single row has no meaning on its own.
pub fn quick_hit(dataset: &Dataset, row: usize, prediction: &str, compat: Compat) -> Option<f64> {
    match &dataset.spec.benchmark {
        Benchmark::Mcq { mmmu, .. } => mcq::quick_hit(dataset, row, prediction, compat, *mmmu),
        Benchmark::YesNo(rating) => yorn::quick_hit(dataset, row, prediction, *rating),
        Benchmark::Vqa(kind) => vqa::quick_hit(dataset, row, prediction, *kind, compat),
        Benchmark::VideoMme(_) => video::quick_hit(dataset, row, prediction),
    }
}

/// Runs `work` over `items` on `threads` scoped threads, keeping input order.
pub(crate) fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    work: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let threads = threads.clamp(1, items.len().max(1));
    if threads == 1 {
        return items.iter().map(work).collect();
    }
    let next = AtomicUsize::new(0);
    let mut results: Vec<Option<R>> = (0..items.len()).map(|_| None).collect();
    let chunks: Vec<Vec<(usize, R)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        done.push((i, work(item)));
                    }
                    done
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    for (i, result) in chunks.into_iter().flatten() {
        results[i] = Some(result);
    }
    results
        .into_iter()
        .map(|r| r.expect("every item processed"))
        .collect()
}

/// `np.mean(values) * 100`.
fn percent(values: &[f64]) -> f64 {
    crate::python::numpy_mean(values) * 100.0
}

/// Distinct non-missing values of `column` over `rows`, sorted.
fn sorted_values(
    dataset: &Dataset,
    rows: impl Iterator<Item = usize>,
    column: &str,
) -> Vec<String> {
    let mut values: Vec<String> = rows
        .filter_map(|row| dataset.get(row, column).map(str::to_string))
        .collect();
    values.sort();
    values.dedup();
    values
}
