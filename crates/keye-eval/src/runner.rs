//! Inference over a dataset: sharding, concurrency, a JSONL checkpoint that makes every run
//! resumable, and a progress bar with ETA and running accuracy.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::backend::{Backend, EvalRequest, GenerationSettings};
use crate::dataset::Dataset;
use crate::error::EvalError;
use crate::extract::{Compat, FAIL_MSG};
use crate::postprocess::keye_post_process;
use crate::prompt::{PromptOptions, ThinkMode, build_messages};
use crate::score::{Prediction, quick_hit};

/// `--shards N --shard-index i`: rows `i, i+N, i+2N, …` by position, like VLMEvalKit's ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub count: usize,
    pub index: usize,
}

impl Shard {
    pub fn new(count: usize, index: usize) -> Result<Shard, EvalError> {
        if count == 0 || index >= count {
            return Err(EvalError::InvalidArgument(format!(
                "--shard-index {index} must be below --shards {count} (and --shards at least 1)"
            )));
        }
        Ok(Shard { count, index })
    }

    fn owns(&self, position: usize) -> bool {
        position % self.count == self.index
    }
}

/// How to run inference over one dataset.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// `<work-dir>/<model>/` receives every output file.
    pub output_dir: PathBuf,
    pub model_name: String,
    pub prompt: PromptOptions,
    pub settings: GenerationSettings,
    /// Apply Keye's answer post-processing before storing the prediction.
    pub post_process: bool,
    pub concurrency: usize,
    pub shard: Option<Shard>,
    /// Keep rows recorded as failed instead of retrying them (VLMEvalKit's `--ignore`).
    pub keep_failed: bool,
    /// Only the first `limit` rows of the dataset (by position), for smoke tests.
    pub limit: Option<usize>,
    pub show_progress: bool,
    pub compat: Compat,
}

/// One line of the checkpoint: a finished row.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CheckpointEntry {
    pub index: String,
    /// The stored prediction (post-processed unless disabled).
    pub prediction: String,
    pub raw_output: String,
    /// Why the row failed, when `prediction` is VLMEvalKit's failure marker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub think: ThinkMode,
    pub seconds: f64,
}

impl CheckpointEntry {
    pub fn is_failure(&self) -> bool {
        self.prediction.contains(FAIL_MSG)
    }
}

/// What a run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunOutcome {
    pub dataset: String,
    /// Rows this run (or shard) is responsible for.
    pub assigned: usize,
    /// Rows already in a checkpoint and skipped.
    pub resumed: usize,
    pub generated: usize,
    /// Rows whose stored prediction is a failure marker, after this run.
    pub failed: usize,
    /// Every row of the dataset has a prediction (from any shard's checkpoint).
    pub complete: bool,
    /// The merged predictions file, written once complete.
    pub predictions_file: Option<PathBuf>,
    pub seconds: f64,
}

/// The checkpoint file of a run: one per shard, so shards never write the same file.
pub fn checkpoint_path(
    output_dir: &Path,
    model: &str,
    dataset: &str,
    shard: Option<Shard>,
) -> PathBuf {
    match shard {
        Some(s) if s.count > 1 => output_dir.join(format!(
            "{model}_{dataset}.shard{}of{}.jsonl",
            s.index, s.count
        )),
        _ => output_dir.join(format!("{model}_{dataset}.jsonl")),
    }
}

/// Reads every checkpoint of `<model>_<dataset>` in `output_dir` (the unsharded one and all
/// shard files); later lines win, so a retried row replaces its failure.
pub fn read_checkpoints(
    output_dir: &Path,
    model: &str,
    dataset: &str,
) -> Result<HashMap<String, CheckpointEntry>, EvalError> {
    let stem = format!("{model}_{dataset}.");
    let mut files: Vec<PathBuf> = match std::fs::read_dir(output_dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                name.strip_prefix(&stem).is_some_and(|rest| {
                    rest == "jsonl" || (rest.starts_with("shard") && rest.ends_with(".jsonl"))
                })
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    let mut entries = HashMap::new();
    for file in files {
        for entry in read_checkpoint_file(&file)? {
            entries.insert(entry.index.clone(), entry);
        }
    }
    Ok(entries)
}

/// The entries of one checkpoint file in file order. A torn last line from an interrupted run
/// is skipped: that row is simply redone.
pub fn read_checkpoint_file(path: &Path) -> Result<Vec<CheckpointEntry>, EvalError> {
    let reader = BufReader::new(File::open(path).map_err(EvalError::io(path))?);
    let mut entries = Vec::new();
    for line in reader.lines() {
        let line = line.map_err(EvalError::io(path))?;
        if let Ok(entry) = serde_json::from_str::<CheckpointEntry>(&line) {
            entries.push(entry);
        }
    }
    Ok(entries)
}

/// Generates predictions for the rows of `dataset` this run owns, skipping finished ones.
pub fn run_dataset(
    dataset: &Dataset,
    backend: &dyn Backend,
    options: &RunOptions,
) -> Result<RunOutcome, EvalError> {
    let started = Instant::now();
    std::fs::create_dir_all(&options.output_dir).map_err(EvalError::io(&options.output_dir))?;
    let existing = read_checkpoints(&options.output_dir, &options.model_name, dataset.name())?;
    let last_row = options.limit.unwrap_or(usize::MAX).min(dataset.len());
    let assigned: Vec<usize> = (0..last_row)
        .filter(|&p| options.shard.is_none_or(|s| s.owns(p)))
        .collect();
    let is_done = |row: usize| {
        existing
            .get(dataset.row_index(row))
            .is_some_and(|e| options.keep_failed || !e.is_failure())
    };
    let todo: Vec<usize> = assigned
        .iter()
        .copied()
        .filter(|&row| !is_done(row))
        .collect();
    let resumed = assigned.len() - todo.len();

    let checkpoint = checkpoint_path(
        &options.output_dir,
        &options.model_name,
        dataset.name(),
        options.shard,
    );
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&checkpoint)
        .map_err(EvalError::io(&checkpoint))?;
    let mut writer = BufWriter::new(file);
    let progress = progress_bar(todo.len(), dataset.name(), options.show_progress);
    let mut fresh: HashMap<String, CheckpointEntry> = HashMap::new();
    let (mut hits, mut judged, mut failed_now) = (0.0, 0usize, 0usize);

    let next = AtomicUsize::new(0);
    let (sender, receiver) = mpsc::channel::<(usize, CheckpointEntry)>();
    let threads = options.concurrency.clamp(1, todo.len().max(1));
    std::thread::scope(|scope| -> Result<(), EvalError> {
        for _ in 0..threads {
            let sender = sender.clone();
            let (todo, next) = (&todo, &next);
            scope.spawn(move || {
                while let Some(&row) = todo.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let entry = answer_row(dataset, row, backend, options);
                    if sender.send((row, entry)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(sender);
        for (row, entry) in receiver {
            let line = serde_json::to_string(&entry).expect("checkpoint entries serialise");
            writeln!(writer, "{line}")
                .and_then(|_| writer.flush())
                .map_err(EvalError::io(&checkpoint))?;
            if entry.is_failure() {
                failed_now += 1;
            } else if let Some(hit) = quick_hit(dataset, row, &entry.prediction, options.compat) {
                hits += hit;
                judged += 1;
            }
            progress.set_message(running_message(hits, judged, failed_now));
            progress.inc(1);
            fresh.insert(entry.index.clone(), entry);
        }
        Ok(())
    })?;
    progress.finish();

    let mut all = existing;
    all.extend(fresh);
    let failed = assigned
        .iter()
        .filter(|&&row| {
            all.get(dataset.row_index(row))
                .is_some_and(CheckpointEntry::is_failure)
        })
        .count();
    let complete = (0..last_row).all(|row| all.contains_key(dataset.row_index(row)));
    let predictions_file = if complete {
        let path =
            options
                .output_dir
                .join(format!("{}_{}.tsv", options.model_name, dataset.name()));
        write_predictions_tsv(dataset, last_row, &all, &path)?;
        Some(path)
    } else {
        None
    };
    Ok(RunOutcome {
        dataset: dataset.name().to_string(),
        assigned: assigned.len(),
        resumed,
        generated: todo.len(),
        failed,
        complete,
        predictions_file,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The predictions of the first `rows` dataset rows, from merged checkpoints, in dataset order.
pub fn predictions_from_checkpoints(
    dataset: &Dataset,
    rows: usize,
    entries: &HashMap<String, CheckpointEntry>,
) -> Vec<Prediction> {
    (0..rows.min(dataset.len()))
        .filter_map(|row| {
            entries.get(dataset.row_index(row)).map(|e| Prediction {
                row,
                text: e.prediction.clone(),
            })
        })
        .collect()
}

fn answer_row(
    dataset: &Dataset,
    row: usize,
    backend: &dyn Backend,
    options: &RunOptions,
) -> CheckpointEntry {
    let started = Instant::now();
    let index = dataset.row_index(row).to_string();
    let failure = |error: String| CheckpointEntry {
        index: index.clone(),
        prediction: FAIL_MSG.to_string(),
        raw_output: String::new(),
        error: Some(error),
        think: options.settings.think,
        seconds: started.elapsed().as_secs_f64(),
    };
    let messages = match build_messages(dataset, row, &options.prompt) {
        Ok(messages) => messages,
        Err(error) => return failure(format!("cannot build the prompt: {error}")),
    };
    let request = EvalRequest {
        messages,
        settings: options.settings.clone(),
        dataset: dataset.name().to_string(),
        index: index.clone(),
    };
    match backend.generate(&request) {
        Ok(raw) => CheckpointEntry {
            index: index.clone(),
            prediction: if options.post_process {
                keye_post_process(&raw)
            } else {
                raw.clone()
            },
            raw_output: raw,
            error: None,
            think: options.settings.think,
            seconds: started.elapsed().as_secs_f64(),
        },
        Err(error) => failure(error.to_string()),
    }
}

fn progress_bar(length: usize, dataset: &str, visible: bool) -> ProgressBar {
    let bar = ProgressBar::new(length as u64);
    if !visible {
        bar.set_draw_target(ProgressDrawTarget::hidden());
        return bar;
    }
    let style = ProgressStyle::with_template(
        "{prefix:>18} [{bar:30}] {pos}/{len} {per_sec} ETA {eta} {msg}",
    )
    .expect("valid template")
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(dataset.to_string());
    bar
}

fn running_message(hits: f64, judged: usize, failed: usize) -> String {
    let accuracy = if judged == 0 {
        "-".to_string()
    } else {
        format!("{:.1}%", hits / judged as f64 * 100.0)
    };
    if failed == 0 {
        format!("acc {accuracy}")
    } else {
        format!("acc {accuracy}, {failed} failed")
    }
}

/// VLMEvalKit's prediction file: every dataset column except `image`, plus `prediction`.
fn write_predictions_tsv(
    dataset: &Dataset,
    rows: usize,
    entries: &HashMap<String, CheckpointEntry>,
    path: &Path,
) -> Result<(), EvalError> {
    let columns: Vec<&String> = dataset
        .table
        .columns()
        .iter()
        .filter(|c| *c != "image" && *c != "prediction")
        .collect();
    let mut writer = csv::WriterBuilder::new()
        .delimiter(b'\t')
        .from_path(path)
        .map_err(|e| EvalError::Io {
            path: path.to_path_buf(),
            source: e.into(),
        })?;
    let csv_error = |e: csv::Error| EvalError::Io {
        path: path.to_path_buf(),
        source: e.into(),
    };
    let mut header: Vec<&str> = columns.iter().map(|c| c.as_str()).collect();
    header.push("prediction");
    writer.write_record(&header).map_err(csv_error)?;
    for row in 0..rows.min(dataset.len()) {
        let Some(entry) = entries.get(dataset.row_index(row)) else {
            continue;
        };
        let mut record: Vec<&str> = columns
            .iter()
            .map(|c| dataset.get(row, c).unwrap_or(""))
            .collect();
        record.push(&entry.prediction);
        writer.write_record(&record).map_err(csv_error)?;
    }
    writer.flush().map_err(EvalError::io(path))
}
