//! The `keye eval` command line: `run`, `score` and `report`, as a clap subcommand the `keye`
//! binary embeds, and [`execute`] which carries one out.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::backend::{Backend, GenerationSettings, LocalBackendFactory};
use crate::dataset::{DataRoots, Dataset, DatasetSpec, DatasetType, ImageEncoding};
use crate::error::EvalError;
use crate::extract::Compat;
use crate::judge::{Judge, JudgeSpec, cache_path};
use crate::openai::{EndpointConfig, OpenAiBackend};
use crate::output::{RunSettings, Summary, read_predictions, render, write_scores};
use crate::prompt::{PromptOptions, PromptStyle, ThinkMode};
use crate::report::{ReportFiles, collect, write_report};
use crate::runner::{
    RunOptions, Shard, predictions_from_checkpoints, read_checkpoints, run_dataset,
};
use crate::score::{ScoreContext, score};

#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Generate answers for benchmarks and score them (resumable, shardable).
    Run(RunArgs),
    /// Re-score an existing predictions file without generating.
    Score(ScoreArgs),
    /// Summarise a work dir into report.html, report.json and report.csv.
    Report(ReportArgs),
}

/// Where the dataset files are.
#[derive(Debug, Args, Clone)]
pub struct DataArgs {
    /// VLMEvalKit's data folder holding `<DATASET>.tsv` and `images/` [default: $LMUData, else ~/LMUData].
    #[arg(long, value_name = "DIR")]
    pub data_root: Option<PathBuf>,
    /// KC-MMBench folder with `subsets/*.tsv` and `images/` [default: <data-root>/KC-MMbench].
    #[arg(long, value_name = "DIR")]
    pub kc_root: Option<PathBuf>,
    /// Video-MME folder with `Video-MME.tsv` and `video/` [default: <data-root>/Video-MME].
    #[arg(long, value_name = "DIR")]
    pub video_root: Option<PathBuf>,
    /// Family of a dataset keye does not know by name (required for custom TSVs).
    #[arg(long = "type", value_enum, value_name = "TYPE")]
    pub dataset_type: Option<DatasetType>,
}

impl DataArgs {
    fn roots(&self) -> DataRoots {
        DataRoots::new(
            self.data_root.clone(),
            self.kc_root.clone(),
            self.video_root.clone(),
        )
    }
}

/// How answers are matched to options and scored.
#[derive(Debug, Args, Clone)]
pub struct ScoringArgs {
    /// LLM judge for answers the rules cannot parse: `none`, or an OpenAI-compatible endpoint and
    /// model as `<url>#<model>` (e.g. `http://localhost:8000/v1#gpt-4o-mini`).
    #[arg(long, default_value = "none", value_name = "none|URL#MODEL")]
    pub judge: String,
    /// API key for the judge endpoint [default: the --api-key value].
    #[arg(
        long,
        env = "JUDGE_API_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub judge_api_key: Option<String>,
    /// Scoring rules: the VLMEvalKit fork shipped with Keye-VL, or today's upstream VLMEvalKit.
    #[arg(long, value_enum, default_value_t = Compat::Fork)]
    pub compat: Compat,
    /// Seed of the random option VLMEvalKit picks when the judge gives up three times.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// A local Keye-VL checkpoint folder to evaluate in-process.
    #[arg(
        long,
        value_name = "PATH",
        conflicts_with = "endpoint",
        required_unless_present = "endpoint"
    )]
    pub model: Option<PathBuf>,
    /// An OpenAI-compatible endpoint (keye serve, vLLM, SGLang), e.g. `http://gpu-node:8000/v1`.
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// Model id sent to the endpoint; also names the output folder [default: the checkpoint folder name].
    #[arg(long, value_name = "NAME", required_unless_present = "model")]
    pub model_name: Option<String>,
    /// API key for the endpoint.
    #[arg(
        long,
        env = "OPENAI_API_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub api_key: Option<String>,
    /// Comma-separated VLMEvalKit dataset names, e.g. `MMBench_DEV_EN_V11,MME,POPE`.
    #[arg(long, value_delimiter = ',', required = true, value_name = "NAMES")]
    pub datasets: Vec<String>,
    #[command(flatten)]
    pub data: DataArgs,
    /// Output folder; results go to `<work-dir>/<model-name>/`.
    #[arg(long, default_value = "outputs", value_name = "DIR")]
    pub work_dir: PathBuf,
    /// Keye's thinking switch appended to the prompt: auto (no suffix), think, or no_think.
    #[arg(long, value_enum, default_value_t = ThinkMode::Auto)]
    pub think: ThinkMode,
    /// Prompt templates: the dataset's own (as Keye's numbers are produced) or the model's.
    #[arg(long, value_enum, default_value_t = PromptStyle::Dataset)]
    pub prompt_style: PromptStyle,
    /// A system prompt; without one the chat template's default is used.
    #[arg(long, value_name = "TEXT")]
    pub system_prompt: Option<String>,
    /// How base64 images are written before the model reads them.
    #[arg(long, value_enum, default_value_t = ImageEncoding::Pillow)]
    pub image_encoding: ImageEncoding,
    /// Lower bound on image pixels passed with every image.
    #[arg(long, value_name = "N")]
    pub min_pixels: Option<u64>,
    /// Upper bound on image pixels passed with every image.
    #[arg(long, value_name = "N")]
    pub max_pixels: Option<u64>,
    /// Generation budget [default: 2048 with --compat fork, 8192 with upstream].
    #[arg(long, value_name = "N")]
    pub max_new_tokens: Option<u32>,
    /// Sampling temperature (0 = greedy, as VLMEvalKit evaluates Keye).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Nucleus sampling; 0 leaves the server default.
    #[arg(long, default_value_t = 0.001)]
    pub top_p: f32,
    /// Top-k sampling; 0 does not send `top_k` (for servers that reject it).
    #[arg(long, default_value_t = 1)]
    pub top_k: u32,
    /// Seed sent with every generation request.
    #[arg(long, value_name = "N")]
    pub generation_seed: Option<u64>,
    /// Store raw answers instead of Keye's post-processed ones.
    #[arg(long)]
    pub no_post_process: bool,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub concurrency: usize,
    /// Split the run over N machines; each takes rows i, i+N, i+2N, ….
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub shards: usize,
    /// This machine's shard, from 0.
    #[arg(long, default_value_t = 0, value_name = "I")]
    pub shard_index: usize,
    /// Keep rows recorded as failed instead of retrying them on resume.
    #[arg(long)]
    pub keep_failed: bool,
    /// Only the first N rows of each dataset (smoke tests).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Seconds one endpoint request may take.
    #[arg(long, default_value_t = 600, value_name = "SECS")]
    pub timeout: u64,
    /// Retries of a failed endpoint request (timeouts, 5xx, 429, garbage).
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub retries: u32,
    /// First retry delay in milliseconds; doubles each retry.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    pub retry_backoff_ms: u64,
    /// Hide the progress bars.
    #[arg(long)]
    pub no_progress: bool,
    #[command(flatten)]
    pub scoring: ScoringArgs,
}

#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// The dataset the predictions answer.
    #[arg(long, value_name = "NAME")]
    pub dataset: String,
    #[command(flatten)]
    pub data: DataArgs,
    /// keye's `<model>_<dataset>.jsonl`, or a VLMEvalKit `.xlsx`/`.tsv`/`.csv` result file.
    #[arg(long, value_name = "FILE")]
    pub predictions: PathBuf,
    /// Output folder; results go to `<work-dir>/<model-name>/`.
    #[arg(long, default_value = "outputs", value_name = "DIR")]
    pub work_dir: PathBuf,
    /// Names the outputs [default: from the file name `<model>_<dataset>.<ext>`].
    #[arg(long, value_name = "NAME")]
    pub model_name: Option<String>,
    /// Judge calls in flight at once.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub concurrency: usize,
    /// API key for the judge when --judge-api-key is not given.
    #[arg(
        long,
        env = "OPENAI_API_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub api_key: Option<String>,
    #[command(flatten)]
    pub scoring: ScoringArgs,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The work dir of earlier runs.
    #[arg(long, default_value = "outputs", value_name = "DIR")]
    pub work_dir: PathBuf,
    /// Only these models (comma-separated folder names) [default: all].
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub model: Vec<String>,
    /// Where report.html/json/csv go [default: the work dir].
    #[arg(long, value_name = "DIR")]
    pub output: Option<PathBuf>,
}

/// The outcome of one dataset in a command.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DatasetResult {
    pub dataset: String,
    /// Predictions cover every row and scores were written.
    pub scored: bool,
    /// Rows whose answer could not be obtained.
    pub failed_rows: usize,
    pub summary: Option<Summary>,
    /// Why the dataset stopped early (missing file, unknown name…).
    pub error: Option<String>,
}

/// What a command did, for the caller's exit code and messages.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ExitSummary {
    pub datasets: Vec<DatasetResult>,
    pub report: Option<PathBuf>,
}

impl ExitSummary {
    /// Every dataset was processed without a dataset-level error (failed rows are allowed: they
    /// are recorded and retried on the next run).
    pub fn is_success(&self) -> bool {
        self.datasets.iter().all(|d| d.error.is_none())
    }

    pub fn failed_rows(&self) -> usize {
        self.datasets.iter().map(|d| d.failed_rows).sum()
    }
}

/// Carries out `keye eval <command>`. `local` builds the in-process engine for `run --model`.
pub fn execute(
    command: EvalCommand,
    local: &dyn LocalBackendFactory,
) -> Result<ExitSummary, EvalError> {
    match command {
        EvalCommand::Run(args) => run(args, local),
        EvalCommand::Score(args) => score_command(args),
        EvalCommand::Report(args) => report_command(args),
    }
}

fn run(args: RunArgs, local: &dyn LocalBackendFactory) -> Result<ExitSummary, EvalError> {
    let shard = Shard::new(args.shards, args.shard_index)?;
    let shard = (shard.count > 1).then_some(shard);
    let backend: Box<dyn Backend> = match (&args.model, &args.endpoint) {
        (Some(path), _) => local.create(path)?,
        (None, Some(url)) => {
            let model = args.model_name.clone().ok_or_else(|| {
                EvalError::InvalidArgument("--endpoint needs --model-name".into())
            })?;
            let mut config = EndpointConfig::new(url, &model);
            config.api_key = args.api_key.clone();
            config.timeout = Duration::from_secs(args.timeout);
            config.retries = args.retries;
            config.backoff = Duration::from_millis(args.retry_backoff_ms);
            Box::new(OpenAiBackend::new(config))
        }
        (None, None) => {
            return Err(EvalError::InvalidArgument(
                "pass --model PATH or --endpoint URL".into(),
            ));
        }
    };
    let model_name = args
        .model_name
        .clone()
        .or_else(|| {
            args.model
                .as_ref()
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| backend.name().to_string());
    let output_dir = args.work_dir.join(&model_name);
    let max_tokens = args.max_new_tokens.unwrap_or(match args.scoring.compat {
        Compat::Fork => 2048,
        Compat::Upstream => 8192,
    });
    let mut settings = GenerationSettings::greedy(max_tokens, args.think);
    settings.temperature = args.temperature;
    settings.top_p = (args.top_p > 0.0).then_some(args.top_p);
    settings.top_k = (args.top_k > 0).then_some(args.top_k);
    settings.seed = args.generation_seed;
    let options = RunOptions {
        output_dir: output_dir.clone(),
        model_name: model_name.clone(),
        prompt: PromptOptions {
            style: args.prompt_style,
            think: args.think,
            system_prompt: args.system_prompt.clone(),
            image_encoding: args.image_encoding,
            min_pixels: args.min_pixels,
            max_pixels: args.max_pixels,
        },
        settings,
        post_process: !args.no_post_process,
        concurrency: args.concurrency.max(1),
        shard,
        keep_failed: args.keep_failed,
        limit: args.limit,
        show_progress: !args.no_progress,
        compat: args.scoring.compat,
    };
    let judge_spec = JudgeSpec::parse(&args.scoring.judge)?;
    let run_settings = RunSettings {
        model: backend.name().to_string(),
        compat: value_name(args.scoring.compat),
        judge: judge_spec.tag(),
        prompt_style: value_name(args.prompt_style),
        think: value_name(args.think),
        image_encoding: value_name(args.image_encoding),
        max_tokens,
        post_process: !args.no_post_process,
    };
    let roots = args.data.roots();
    let mut summary = ExitSummary::default();
    for name in &args.datasets {
        let result = run_one(
            name,
            &args,
            &roots,
            backend.as_ref(),
            &options,
            &judge_spec,
            &run_settings,
        );
        summary
            .datasets
            .push(result.unwrap_or_else(|error| DatasetResult {
                dataset: name.clone(),
                scored: false,
                failed_rows: 0,
                summary: None,
                error: Some(error.to_string()),
            }));
    }
    Ok(summary)
}

/// The command-line spelling of an option value.
fn value_name(value: impl clap::ValueEnum) -> String {
    value
        .to_possible_value()
        .map_or_else(String::new, |v| v.get_name().to_string())
}

fn run_one(
    name: &str,
    args: &RunArgs,
    roots: &DataRoots,
    backend: &dyn Backend,
    options: &RunOptions,
    judge_spec: &JudgeSpec,
    settings: &RunSettings,
) -> Result<DatasetResult, EvalError> {
    let spec = DatasetSpec::resolve(name, args.data.dataset_type)?;
    let dataset = Dataset::load(spec, roots)?;
    let outcome = run_dataset(&dataset, backend, options)?;
    if outcome.failed > 0 {
        eprintln!(
            "{}: {} rows failed ({}); rerun to retry them",
            dataset.name(),
            outcome.failed,
            crate::extract::FAIL_MSG
        );
    }
    if !outcome.complete {
        eprintln!(
            "{}: shard done; scores are written once every shard's checkpoint is in {}",
            dataset.name(),
            options.output_dir.display()
        );
        return Ok(DatasetResult {
            dataset: name.into(),
            scored: false,
            failed_rows: outcome.failed,
            summary: None,
            error: None,
        });
    }
    let entries = read_checkpoints(&options.output_dir, &options.model_name, dataset.name())?;
    let rows = options.limit.unwrap_or(usize::MAX);
    let predictions = predictions_from_checkpoints(&dataset, rows, &entries);
    let judge_key = args
        .scoring
        .judge_api_key
        .clone()
        .or_else(|| args.api_key.clone());
    let stem = format!("{}_{}", options.model_name, dataset.name());
    let scoring = Scoring {
        args: &args.scoring,
        judge_spec,
        judge_key,
        output_dir: &options.output_dir,
        concurrency: options.concurrency,
        settings: settings.clone(),
    };
    let summary = scoring.score_and_write(&dataset, &predictions, &stem)?;
    Ok(DatasetResult {
        dataset: name.into(),
        scored: true,
        failed_rows: outcome.failed,
        summary: Some(summary),
        error: None,
    })
}

/// Everything needed to score a dataset's predictions and write the outputs.
struct Scoring<'a> {
    args: &'a ScoringArgs,
    judge_spec: &'a JudgeSpec,
    judge_key: Option<String>,
    output_dir: &'a Path,
    concurrency: usize,
    settings: RunSettings,
}

impl Scoring<'_> {
    /// `stem` (`<model>_<dataset>`) names the judge cache.
    fn score_and_write(
        &self,
        dataset: &Dataset,
        predictions: &[crate::score::Prediction],
        stem: &str,
    ) -> Result<Summary, EvalError> {
        let judge = connect_judge(
            self.judge_spec,
            self.judge_key.clone(),
            self.output_dir,
            stem,
            self.args.seed,
        )?;
        let context = ScoreContext {
            compat: self.args.compat,
            judge: judge.as_ref(),
            concurrency: self.concurrency,
        };
        let scores = score(dataset, predictions, &context)?;
        let settings = RunSettings {
            judge: judge
                .as_ref()
                .map_or_else(|| "exact_matching".to_string(), |j| j.tag().to_string()),
            ..self.settings.clone()
        };
        let summary = write_scores(self.output_dir, dataset, &scores, settings)?;
        println!(
            "== {} ({} rows scored, {} failed) ==\n{}\n",
            dataset.name(),
            scores.scored,
            scores.failed,
            render(&scores.output)
        );
        Ok(summary)
    }
}

fn connect_judge(
    spec: &JudgeSpec,
    key: Option<String>,
    output_dir: &Path,
    stem: &str,
    seed: u64,
) -> Result<Option<Judge>, EvalError> {
    let JudgeSpec::Endpoint { url, model } = spec else {
        return Ok(None);
    };
    let mut config = EndpointConfig::new(url, model);
    config.api_key = key;
    config.timeout = Duration::from_secs(120);
    let cache = cache_path(output_dir, stem, &spec.tag());
    Judge::connect(spec, config, Some(&cache), seed)
}

fn score_command(args: ScoreArgs) -> Result<ExitSummary, EvalError> {
    let spec = DatasetSpec::resolve(&args.dataset, args.data.dataset_type)?;
    let dataset = Dataset::load(spec, &args.data.roots())?;
    let predictions = read_predictions(&args.predictions, &dataset)?;
    let model_name = args
        .model_name
        .clone()
        .unwrap_or_else(|| model_from_file_name(&args.predictions, dataset.name()));
    let output_dir = args.work_dir.join(&model_name);
    let judge_spec = JudgeSpec::parse(&args.scoring.judge)?;
    let settings = RunSettings {
        model: model_name.clone(),
        compat: value_name(args.scoring.compat),
        judge: judge_spec.tag(),
        prompt_style: "unknown (re-scored)".into(),
        think: "unknown (re-scored)".into(),
        image_encoding: "unknown (re-scored)".into(),
        max_tokens: 0,
        post_process: true,
    };
    let judge_key = args.scoring.judge_api_key.clone().or(args.api_key.clone());
    let stem = format!("{model_name}_{}", dataset.name());
    let failed = predictions
        .iter()
        .filter(|p| p.text.contains("Failed to obtain answer"))
        .count();
    let scoring = Scoring {
        args: &args.scoring,
        judge_spec: &judge_spec,
        judge_key,
        output_dir: &output_dir,
        concurrency: args.concurrency.max(1),
        settings,
    };
    let summary = scoring.score_and_write(&dataset, &predictions, &stem)?;
    Ok(ExitSummary {
        datasets: vec![DatasetResult {
            dataset: dataset.name().into(),
            scored: true,
            failed_rows: failed,
            summary: Some(summary),
            error: None,
        }],
        report: None,
    })
}

/// VLMEvalKit names prediction files `<model>_<dataset>.<ext>`.
fn model_from_file_name(path: &Path, dataset: &str) -> String {
    let stem = path
        .file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    stem.strip_suffix(&format!("_{dataset}"))
        .filter(|m| !m.is_empty())
        .unwrap_or(&stem)
        .to_string()
}

fn report_command(args: ReportArgs) -> Result<ExitSummary, EvalError> {
    let by_model = collect(&args.work_dir, &args.model)?;
    if by_model.is_empty() {
        return Err(EvalError::InvalidArgument(format!(
            "no scored datasets under {}",
            args.work_dir.display()
        )));
    }
    let output = args.output.clone().unwrap_or_else(|| args.work_dir.clone());
    let ReportFiles { html, json, csv } = write_report(&by_model, &output)?;
    println!(
        "wrote {}\n      {}\n      {}",
        html.display(),
        json.display(),
        csv.display()
    );
    Ok(ExitSummary {
        datasets: Vec::new(),
        report: Some(html),
    })
}
