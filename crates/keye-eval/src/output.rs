//! Reading prediction files and writing score outputs.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::dataset::Dataset;
use crate::error::EvalError;
use crate::score::{Prediction, ScoreOutput, ScoreTable, Scores};
use crate::table::{Table, read_delimited, read_xlsx};

/// Reads a predictions file: keye's JSONL checkpoint, or VLMEvalKit's `.xlsx`/`.tsv`/`.csv`
/// result files (columns `index` and `prediction`). Rows are matched to the dataset by index.
pub fn read_predictions(path: &Path, dataset: &Dataset) -> Result<Vec<Prediction>, EvalError> {
    let invalid = |reason: String| EvalError::InvalidPredictions {
        path: path.to_path_buf(),
        reason,
    };
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let pairs: Vec<(String, String)> = match extension.as_str() {
        "jsonl" => {
            let entries = crate::runner::read_checkpoint_file(path)?;
            let mut order: Vec<String> = Vec::new();
            let mut latest: HashMap<String, String> = HashMap::new();
            for entry in entries {
                if latest
                    .insert(entry.index.clone(), entry.prediction)
                    .is_none()
                {
                    order.push(entry.index);
                }
            }
            order
                .into_iter()
                .map(|index| {
                    let prediction = latest.remove(&index).expect("recorded");
                    (index, prediction)
                })
                .collect()
        }
        "xlsx" => table_pairs(read_xlsx(path)?, false).map_err(invalid)?,
        "tsv" => table_pairs(read_delimited(path, b'\t')?, true).map_err(invalid)?,
        "csv" => table_pairs(read_delimited(path, b',')?, true).map_err(invalid)?,
        other => {
            return Err(invalid(format!(
                "unsupported extension `.{other}` (jsonl, xlsx, tsv or csv)"
            )));
        }
    };
    let mut predictions = Vec::with_capacity(pairs.len());
    for (index, text) in pairs {
        let row = dataset.row_with_index(&index).ok_or_else(|| {
            invalid(format!(
                "index {index} is not in dataset {}",
                dataset.name()
            ))
        })?;
        predictions.push(Prediction { row, text });
    }
    Ok(predictions)
}

/// `(index, prediction)` pairs; a missing prediction reads as `nan`, as `str(NaN)` does.
fn table_pairs(mut table: Table, infer_numbers: bool) -> Result<Vec<(String, String)>, String> {
    if infer_numbers {
        table.normalise_numeric_columns(&[]);
    }
    let index = table.column("index").ok_or("no `index` column")?;
    let prediction = table.column("prediction").ok_or("no `prediction` column")?;
    (0..table.len())
        .map(|row| {
            let index = table
                .cell(row, index)
                .ok_or_else(|| format!("row {} has no index", row + 2))?;
            Ok((
                index.to_string(),
                table.cell(row, prediction).unwrap_or("nan").to_string(),
            ))
        })
        .collect()
}

/// How the numbers were produced, recorded next to them.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RunSettings {
    pub model: String,
    pub compat: String,
    pub judge: String,
    pub prompt_style: String,
    pub think: String,
    pub image_encoding: String,
    pub max_tokens: u32,
    pub post_process: bool,
}

/// `<dataset>_summary.json`: the machine-readable result of scoring one dataset.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    pub dataset: String,
    pub dataset_file: String,
    pub dataset_md5: String,
    /// `None` when VLMEvalKit pins no MD5 for this dataset.
    pub dataset_md5_matches: Option<bool>,
    pub settings: RunSettings,
    pub rows: usize,
    pub scored: usize,
    pub failed: usize,
    pub random_fallbacks: usize,
    /// The summary numbers (percentages, or MME / OCRBench raw totals).
    pub headline: BTreeMap<String, f64>,
    /// The score table (`columns`/`rows`) or the JSON rating.
    pub scores: Value,
    pub score_file: String,
    pub records_file: String,
    pub keye_version: String,
}

/// Writes the records, the score file and the summary into `output_dir`.
pub fn write_scores(
    output_dir: &Path,
    dataset: &Dataset,
    scores: &Scores,
    settings: RunSettings,
) -> Result<Summary, EvalError> {
    std::fs::create_dir_all(output_dir).map_err(EvalError::io(output_dir))?;
    let records_path = output_dir.join(format!("{}_records.jsonl", dataset.name()));
    let mut records =
        BufWriter::new(File::create(&records_path).map_err(EvalError::io(&records_path))?);
    for record in &scores.records {
        let line = serde_json::to_string(record).expect("records serialise");
        writeln!(records, "{line}").map_err(EvalError::io(&records_path))?;
    }
    records.flush().map_err(EvalError::io(&records_path))?;

    let score_path = output_dir.join(format!(
        "{}_{}{}",
        settings.model,
        dataset.name(),
        scores.file_suffix
    ));
    let (score_text, score_value) = match &scores.output {
        ScoreOutput::Table(table) => (
            table.to_csv(),
            serde_json::to_value(table).expect("tables serialise"),
        ),
        ScoreOutput::Json(value) => (
            serde_json::to_string_pretty(value).expect("JSON serialises"),
            value.clone(),
        ),
    };
    std::fs::write(&score_path, score_text).map_err(EvalError::io(&score_path))?;

    let summary = Summary {
        dataset: dataset.name().to_string(),
        dataset_file: dataset.path.display().to_string(),
        dataset_md5: dataset.md5.actual.clone(),
        dataset_md5_matches: dataset.md5.matches(),
        settings,
        rows: dataset.len(),
        scored: scores.scored,
        failed: scores.failed,
        random_fallbacks: scores.random_fallbacks,
        headline: scores.headline.clone(),
        scores: score_value,
        score_file: file_name(&score_path),
        records_file: file_name(&records_path),
        keye_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let summary_path = summary_path(output_dir, dataset.name());
    let text = serde_json::to_string_pretty(&summary).expect("summaries serialise");
    std::fs::write(&summary_path, text).map_err(EvalError::io(&summary_path))?;
    Ok(summary)
}

pub fn summary_path(output_dir: &Path, dataset: &str) -> PathBuf {
    output_dir.join(format!("{dataset}_summary.json"))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

/// Console rendering of a score output.
pub fn render(output: &ScoreOutput) -> String {
    match output {
        ScoreOutput::Table(table) => table.to_text(),
        ScoreOutput::Json(value) => serde_json::to_string_pretty(value).expect("JSON serialises"),
    }
}

/// Reads the score table back out of a summary, when it holds one.
pub fn summary_table(summary: &Summary) -> Option<ScoreTable> {
    let columns: Vec<String> =
        serde_json::from_value(summary.scores.get("columns")?.clone()).ok()?;
    let rows = summary.scores.get("rows")?.as_array()?;
    let rows = rows
        .iter()
        .map(|row| {
            row.as_array()
                .map(|cells| {
                    cells
                        .iter()
                        .map(|cell| match cell {
                            Value::Number(n) => {
                                crate::score::Cell::Number(n.as_f64().unwrap_or(f64::NAN))
                            }
                            Value::Null => crate::score::Cell::Number(f64::NAN),
                            other => crate::score::Cell::Text(
                                other
                                    .as_str()
                                    .map_or_else(|| other.to_string(), str::to_string),
                            ),
                        })
                        .collect()
                })
                .unwrap_or_default()
        })
        .collect();
    Some(ScoreTable { columns, rows })
}

/// Loads every `*_summary.json` under `dir`.
pub fn read_summaries(dir: &Path) -> Result<Vec<Summary>, EvalError> {
    let mut summaries = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(summaries);
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        let is_summary = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with("_summary.json"));
        if !is_summary {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(EvalError::io(&path))?;
        let summary = serde_json::from_str(&text).map_err(|source| EvalError::Json {
            path: path.clone(),
            source,
        })?;
        summaries.push(summary);
    }
    Ok(summaries)
}
