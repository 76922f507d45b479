//! Rows/s scored (rules only), and end-to-end rows/s at concurrency 1 and 8 against a stub
//! OpenAI endpoint on loopback that answers after a fixed delay and through the in-process
//! engine on the bundled tiny model.
//!
//! Run with `cargo bench -p keye-eval`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Reply, StubServer, base64, rgb_png, write_tsv};
use keye_eval::backend::{Backend, GenerationSettings, LocalBackendFactory};
use keye_eval::dataset::{DataRoots, Dataset, DatasetSpec};
use keye_eval::extract::Compat;
use keye_eval::openai::{EndpointConfig, OpenAiBackend};
use keye_eval::prompt::{PromptOptions, ThinkMode};
use keye_eval::runner::{RunOptions, run_dataset};
use keye_eval::score::{Prediction, ScoreContext, score};

const SCORED_ROWS: usize = 20_000;
const GENERATED_ROWS: usize = 64;
/// Simulated model latency per request.
const STUB_LATENCY: Duration = Duration::from_millis(20);

fn mcq_dataset(root: &Path, rows: usize) -> Dataset {
    let image = base64(&rgb_png([9, 9, 9]));
    let header = [
        "index",
        "question",
        "A",
        "B",
        "C",
        "D",
        "answer",
        "category",
        "l2-category",
        "image",
    ];
    let table: Vec<Vec<String>> = (0..rows)
        .map(|i| {
            let image = if i == 0 {
                image.clone()
            } else {
                "0".to_string()
            };
            [
                i.to_string(),
                format!("Question {i}?"),
                "cat".into(),
                "dog".into(),
                "teddy bear".into(),
                "rabbit".into(),
                ["A", "B", "C", "D"][i % 4].into(),
                format!("c{}", i % 7),
                "coarse_perception".into(),
                image,
            ]
            .into()
        })
        .collect();
    write_tsv(&root.join("MMStar.tsv"), &header, &table);
    let spec = DatasetSpec::resolve("MMStar", None).expect("known dataset");
    Dataset::load(spec, &DataRoots::new(Some(root.to_path_buf()), None, None))
        .expect("dataset loads")
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");

    let dataset = mcq_dataset(&dir.path().join("scoring"), SCORED_ROWS);
    let answers = [
        "The answer is B.",
        "A",
        "I think it's a teddy bear",
        "<answer>C</answer>",
        "(D) rabbit",
    ];
    let predictions: Vec<Prediction> = (0..SCORED_ROWS)
        .map(|row| Prediction {
            row,
            text: answers[row % answers.len()].to_string(),
        })
        .collect();
    let context = ScoreContext {
        compat: Compat::Fork,
        judge: None,
        concurrency: 1,
    };
    let started = Instant::now();
    let scores = score(&dataset, &predictions, &context).expect("scores");
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "scoring (MCQ rules, {} rows): {:.0} rows/s",
        scores.scored,
        SCORED_ROWS as f64 / elapsed
    );

    let server = StubServer::start(|_| {
        std::thread::sleep(STUB_LATENCY);
        Reply::Answer("B".into())
    });
    let mut config = EndpointConfig::new(&server.url, "stub");
    config.backoff = Duration::from_millis(1);
    let stub = OpenAiBackend::new(config);
    let tiny_model =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models/keye-preview-tiny");
    let local = keye_eval::LocalEngine
        .create(&tiny_model)
        .expect("the tiny model loads");
    let backends: [(&str, &dyn Backend); 2] = [
        (
            &format!("stub endpoint, {} ms latency", STUB_LATENCY.as_millis()),
            &stub,
        ),
        ("tiny model, in-process engine", local.as_ref()),
    ];
    for ((label, backend), concurrency) in backends
        .iter()
        .flat_map(|b| [1, 8].map(|concurrency| (b, concurrency)))
    {
        let root = dir
            .path()
            .join(format!("e2e-{}-{concurrency}", backend.name()));
        let dataset = mcq_dataset(&root, GENERATED_ROWS);
        let options = RunOptions {
            output_dir: root.join("out"),
            model_name: backend.name().into(),
            prompt: PromptOptions::default(),
            settings: GenerationSettings::greedy(16, ThinkMode::Auto),
            post_process: true,
            concurrency,
            shard: None,
            keep_failed: false,
            limit: None,
            show_progress: false,
            compat: Compat::Fork,
        };
        let started = Instant::now();
        let outcome = run_dataset(&dataset, *backend, &options).expect("run");
        let elapsed = started.elapsed().as_secs_f64();
        println!(
            "end to end ({label}, concurrency {concurrency}): {:.1} rows/s over {} rows",
            outcome.generated as f64 / elapsed,
            outcome.generated
        );
    }
}
