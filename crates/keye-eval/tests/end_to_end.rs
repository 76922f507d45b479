//! Tiny hand-made datasets run end to end through `keye eval` against a stub OpenAI endpoint on
//! loopback; every score is checked against a value computed by hand in the comments.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Parser;
use common::{
    Reply, StubServer, base64, image_urls, palette_png, prompt_options, prompt_text, rgb_png,
    rgba_png, write_tsv,
};
use keye_eval::NoLocalEngine;
use keye_eval::cli::{EvalCommand, ExitSummary, execute};

#[derive(Parser)]
struct TestCli {
    #[command(subcommand)]
    command: EvalCommand,
}

fn eval(args: &[&str]) -> ExitSummary {
    let cli = TestCli::try_parse_from(std::iter::once("keye-eval").chain(args.iter().copied()))
        .expect("valid arguments");
    execute(cli.command, &NoLocalEngine).expect("command runs")
}

struct Workspace {
    _dir: tempfile::TempDir,
    data: PathBuf,
    work: PathBuf,
}

impl Workspace {
    fn new() -> Workspace {
        let dir = tempfile::tempdir().unwrap();
        let (data, work) = (dir.path().join("LMUData"), dir.path().join("outputs"));
        std::fs::create_dir_all(&data).unwrap();
        Workspace {
            _dir: dir,
            data,
            work,
        }
    }

    fn run(&self, server: &StubServer, dataset: &str, extra: &[&str]) -> ExitSummary {
        let mut args = vec![
            "run",
            "--endpoint",
            &server.url,
            "--model-name",
            "stub-model",
            "--datasets",
            dataset,
            "--data-root",
            self.data.to_str().unwrap(),
            "--work-dir",
            self.work.to_str().unwrap(),
            "--no-progress",
            "--retries",
            "1",
            "--retry-backoff-ms",
            "1",
        ];
        args.extend_from_slice(extra);
        eval(&args)
    }

    fn output(&self, file: &str) -> String {
        std::fs::read_to_string(self.work.join("stub-model").join(file))
            .unwrap_or_else(|e| panic!("{file}: {e}"))
    }

    fn records(&self, dataset: &str) -> Vec<serde_json::Value> {
        self.output(&format!("{dataset}_records.jsonl"))
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

fn s(text: &str) -> String {
    text.to_string()
}

fn mean_rgb(path: &Path) -> [f64; 3] {
    let image = image::open(path).unwrap().to_rgb8();
    let mut sum = [0.0; 3];
    for pixel in image.pixels() {
        for (channel, value) in sum.iter_mut().zip(pixel.0) {
            *channel += f64::from(value);
        }
    }
    let count = f64::from(image.width() * image.height());
    sum.map(|v| v / count)
}

/// MMBench-style circular group (RGBA image, 4 rotated copies), a palette image with a `None`
/// option, and a two-image row.
#[test]
fn mcq_circular_group_end_to_end() {
    let ws = Workspace::new();
    let header = [
        "index",
        "question",
        "hint",
        "A",
        "B",
        "C",
        "D",
        "answer",
        "category",
        "l2-category",
        "split",
        "g_index",
        "image",
    ];
    let rgba = base64(&rgba_png());
    let options = ["cat", "dog", "teddy bear", "rabbit"];
    let mut rows = vec![];
    // Copy i stores original option L[j] under rot_i[j], L rotated right i times; the answer
    // (cat, originally A) moves with it: copy 1 → D, copy 2 → C, copy 3 → B.
    for (copy, answer) in [(0usize, "A"), (1, "D"), (2, "C"), (3, "B")] {
        let mut letters = [String::new(), String::new(), String::new(), String::new()];
        for (j, text) in options.iter().enumerate() {
            letters[(j + 4 - copy) % 4] = s(text);
        }
        let index = 1 + copy * 1_000_000;
        let image = if copy == 0 { rgba.clone() } else { s("1") };
        let [a, b, c, d] = letters;
        rows.push(vec![
            index.to_string(),
            s("What animal is shown?"),
            s("A pet."),
            a,
            b,
            c,
            d,
            s(answer),
            s("c1"),
            s("coarse_perception"),
            s("dev"),
            s("1"),
            image,
        ]);
    }
    rows.push(vec![
        s("2"),
        s("Which colour dominates?"),
        s("N/A"),
        s("red"),
        s("blue"),
        s("None"),
        s("green"),
        s("A"),
        s("c2"),
        s("logic_reasoning"),
        s("dev"),
        s("2"),
        base64(&palette_png()),
    ]);
    let pair = format!(
        "['{}', '{}']",
        base64(&rgb_png([250, 0, 0])),
        base64(&rgb_png([0, 0, 250]))
    );
    rows.push(vec![
        s("3"),
        s("Compare the two images."),
        s(""),
        s("same"),
        s("different"),
        s(""),
        s(""),
        s("B"),
        s("c1"),
        s("coarse_perception"),
        s("dev"),
        s("3"),
        pair,
    ]);
    write_tsv(&ws.data.join("MMBench_DEV_EN.tsv"), &header, &rows);

    let server = StubServer::start(|request| {
        let prompt = prompt_text(request);
        if prompt.contains("What animal") {
            let letter = prompt_options(&prompt)
                .into_iter()
                .find(|(_, t)| t == "cat")
                .map(|(l, _)| l)
                .unwrap();
            Reply::Answer(letter.to_string())
        } else if prompt.contains("Which colour") {
            Reply::Answer("The answer is D".into())
        } else {
            Reply::Answer("B".into())
        }
    });
    let summary = ws.run(&server, "MMBench_DEV_EN", &["--concurrency", "4"]);
    assert!(summary.is_success(), "{summary:?}");
    assert_eq!(server.request_count(), 6);

    // Main rows 1 (all four copies right), 2 (D ≠ A), 3 (B): hits 1, 0, 1.
    // Overall 2/3; CP (rows 1, 3) 1.0; LR (row 2) 0.0; c1 1.0; c2 0.0 — fractions, as VLMEvalKit.
    assert_eq!(
        ws.output("stub-model_MMBench_DEV_EN_acc.csv"),
        "\"split\",\"Overall\",\"CP\",\"LR\",\"c1\",\"c2\"\n\"dev\",\"0.6666666666666666\",\"1.0\",\"0.0\",\"1.0\",\"0.0\"\n"
    );
    let records = ws.records("MMBench_DEV_EN");
    assert_eq!(records.len(), 6);
    let record = |index: &str| {
        records
            .iter()
            .find(|r| r["index"] == index)
            .unwrap()
            .clone()
    };
    assert_eq!(record("2000001")["extracted"], "C");
    assert_eq!(record("2000001")["hit"], 1.0);
    assert_eq!(record("2")["extracted"], "D");
    assert_eq!(record("2")["hit"], 0.0);

    let requests = server.requests.lock().unwrap().clone();
    let prompt_of = |needle: &str| {
        requests
            .iter()
            .map(prompt_text)
            .find(|p| p.contains(needle))
            .unwrap()
    };
    assert_eq!(
        prompt_of("A. cat\nB. dog"),
        "Hint: A pet.\nQuestion: What animal is shown?\nOptions:\nA. cat\nB. dog\nC. teddy bear\nD. rabbit\nPlease select the correct answer from the options above. \n"
    );
    // `None` is a pandas NA token: the option vanishes; `N/A` as hint means no hint.
    assert_eq!(
        prompt_of("Which colour"),
        "Question: Which colour dominates?\nOptions:\nA. red\nB. blue\nD. green\nPlease select the correct answer from the options above. \n"
    );
    let two_images = requests
        .iter()
        .find(|r| prompt_text(r).contains("Compare"))
        .unwrap();
    let urls = image_urls(two_images);
    assert_eq!(urls.len(), 2);
    assert!(urls.iter().all(|u| u.starts_with("data:image/png;base64,")));
    assert!(
        image_urls(
            requests
                .iter()
                .find(|r| prompt_text(r).contains("What animal"))
                .unwrap()
        )[0]
        .starts_with("data:image/jpeg;base64,")
    );

    // Images land where VLMEvalKit puts them: alpha dropped (not composited on white), q75 JPEG.
    let images = ws.data.join("images").join("MMBench");
    let [r, g, b] = mean_rgb(&images.join("1.jpg"));
    assert!(
        (r - 10.0).abs() < 8.0 && (g - 200.0).abs() < 8.0 && (b - 30.0).abs() < 8.0,
        "{r} {g} {b}"
    );
    assert!(images.join("1000001.jpg").is_file());
    let [r, _, b] = mean_rgb(&images.join("2.jpg"));
    assert!(
        r > 90.0 && b > 90.0,
        "palette image keeps its colours: {r} {b}"
    );
    assert!(images.join("3_0.png").is_file() && images.join("3_1.png").is_file());
}

/// MME image pair: 2 images × 2 questions; acc and acc+ per category.
#[test]
fn mme_pairs_end_to_end() {
    let ws = Workspace::new();
    let header = [
        "index",
        "image",
        "image_path",
        "question",
        "answer",
        "category",
    ];
    let suffix = " Please answer yes or no.";
    let rows = vec![
        vec![
            s("0"),
            base64(&rgb_png([1, 2, 3])),
            s("a.jpg"),
            format!("Is there a cat?{suffix}"),
            s("Yes"),
            s("existence"),
        ],
        vec![
            s("1"),
            s("0"),
            s("a.jpg"),
            format!("Is there a dog?{suffix}"),
            s("No"),
            s("existence"),
        ],
        vec![
            s("2"),
            base64(&rgb_png([4, 5, 6])),
            s("b.jpg"),
            format!("Are there two apples?{suffix}"),
            s("Yes"),
            s("count"),
        ],
        vec![
            s("3"),
            s("2"),
            s("b.jpg"),
            format!("Are there three apples?{suffix}"),
            s("No"),
            s("count"),
        ],
    ];
    write_tsv(&ws.data.join("MME.tsv"), &header, &rows);
    let server = StubServer::start(|request| {
        let prompt = prompt_text(request);
        Reply::Answer(
            if prompt.contains("cat") {
                "Yes"
            } else if prompt.contains("dog") {
                "No, there is no dog"
            } else if prompt.contains("two") {
                "Yes."
            } else {
                "yes"
            }
            .into(),
        )
    });
    let summary = ws.run(&server, "MME", &["--think", "no_think"]);
    assert!(summary.is_success(), "{summary:?}");
    // existence: acc 100 + acc+ 100 = 200; count: acc 50 + acc+ 0 = 50; perception 250.
    assert_eq!(
        ws.output("stub-model_MME_score.csv"),
        "\"perception\",\"reasoning\",\"existence\",\"count\"\n\"250.0\",\"0.0\",\"200.0\",\"50.0\"\n"
    );
    let headline = &summary.datasets[0].summary.as_ref().unwrap().headline;
    assert_eq!(headline["MME"], 250.0);
    let requests = server.requests.lock().unwrap().clone();
    assert!(
        requests
            .iter()
            .all(|r| prompt_text(r).ends_with("Please answer yes or no./no_think"))
    );
    assert_eq!(ws.records("MME")[1]["extracted"], "No");
    assert!(ws.data.join("images/MME/a.jpg").is_file());
}

fn write_textvqa(ws: &Workspace) {
    let header = ["index", "image", "question", "answer"];
    let image = base64(&rgb_png([9, 9, 9]));
    let ten = |word: &str| format!("[{}]", vec![format!("'{word}'"); 10].join(", "));
    let rows = vec![
        vec![
            s("0"),
            image.clone(),
            s("How many cats?"),
            s("['2', '2', '2', '3', '3', '3', '3', '3', '3', '3']"),
        ],
        vec![s("1"), image.clone(), s("What colour?"), ten("red")],
        vec![s("2"), image, s("What is written?"), ten("stop")],
    ];
    write_tsv(&ws.data.join("TextVQA_VAL.tsv"), &header, &rows);
}

fn textvqa_server(healthy: Arc<AtomicBool>) -> StubServer {
    StubServer::start(move |request| {
        let prompt = prompt_text(request);
        assert!(
            prompt.ends_with("\nAnswer the question using a single word or phrase."),
            "{prompt}"
        );
        if prompt.contains("How many") {
            Reply::Answer("Two".into())
        } else if prompt.contains("colour") {
            Reply::Answer("blue".into())
        } else if healthy.load(Ordering::SeqCst) {
            Reply::Answer("Stop.".into())
        } else {
            Reply::Status(500)
        }
    })
}

/// A 10-answer VQA row, a row whose endpoint keeps failing, then a resumed run that only retries
/// the failed row.
#[test]
fn vqa_failures_are_recorded_and_retried_on_resume() {
    let ws = Workspace::new();
    write_textvqa(&ws);
    let healthy = Arc::new(AtomicBool::new(false));
    let server = textvqa_server(healthy.clone());
    let first = ws.run(&server, "TextVQA_VAL", &[]);
    assert_eq!(first.failed_rows(), 1);
    // 2 attempts for the failing row (1 retry), 1 for each other row.
    assert_eq!(server.request_count(), 4);
    // "Two" → "2" matches 3 others' "2"? No: for a "2" answer the 2 other "2"s give 2/3, for a
    // "3" answer the 3 "2"s give 1: (3·2/3 + 7·1)/10 = 0.9; "blue" 0; the failure 0.
    // Overall = (0.9 + 0 + 0) / 3 × 100 = 30.
    let overall = first.datasets[0].summary.as_ref().unwrap().headline["Overall"];
    assert!((overall - 30.0).abs() < 1e-9, "{overall}");
    let records = ws.records("TextVQA_VAL");
    assert_eq!(records[2]["prediction"], "Failed to obtain answer via API.");
    let checkpoint = ws.output("stub-model_TextVQA_VAL.jsonl");
    assert_eq!(checkpoint.lines().count(), 3);
    assert!(checkpoint.contains("HTTP 500"));

    healthy.store(true, Ordering::SeqCst);
    let second = ws.run(&server, "TextVQA_VAL", &[]);
    assert_eq!(second.failed_rows(), 0);
    assert_eq!(
        server.request_count(),
        5,
        "only the failed row is asked again"
    );
    // "Stop." → "stop" equals all 10 answers: 1.0. Overall = 1.9 / 3 × 100.
    let overall = second.datasets[0].summary.as_ref().unwrap().headline["Overall"];
    assert!((overall - 190.0 / 3.0).abs() < 1e-9, "{overall}");
    assert_eq!(ws.output("stub-model_TextVQA_VAL.jsonl").lines().count(), 4);
    let predictions = ws.output("stub-model_TextVQA_VAL.tsv");
    assert!(
        predictions.starts_with("index\tquestion\tanswer\tprediction\n"),
        "{predictions}"
    );
    assert!(
        !predictions.contains("iVBOR"),
        "the image column is not copied"
    );
}

/// Two shards write separate checkpoints; the second completes the set and scores everything.
#[test]
fn shards_split_rows_and_merge() {
    let ws = Workspace::new();
    write_textvqa(&ws);
    let server = textvqa_server(Arc::new(AtomicBool::new(true)));
    let first = ws.run(
        &server,
        "TextVQA_VAL",
        &["--shards", "2", "--shard-index", "0"],
    );
    assert!(!first.datasets[0].scored);
    assert_eq!(server.request_count(), 2, "rows 0 and 2");
    assert_eq!(
        ws.output("stub-model_TextVQA_VAL.shard0of2.jsonl")
            .lines()
            .count(),
        2
    );
    let second = ws.run(
        &server,
        "TextVQA_VAL",
        &["--shards", "2", "--shard-index", "1"],
    );
    assert!(second.datasets[0].scored);
    assert_eq!(server.request_count(), 3);
    let overall = second.datasets[0].summary.as_ref().unwrap().headline["Overall"];
    assert!((overall - 190.0 / 3.0).abs() < 1e-9, "{overall}");
}

/// Garbage JSON and a hanging endpoint are per-row failures; the run finishes and counts them.
#[test]
fn garbage_and_timeouts_do_not_stop_the_run() {
    let ws = Workspace::new();
    let header = ["index", "image", "question", "A", "B", "answer", "category"];
    let image = base64(&rgb_png([7, 7, 7]));
    let rows = (0..3)
        .map(|i| {
            vec![
                i.to_string(),
                image.clone(),
                format!("Question {i}?"),
                s("yes"),
                s("no"),
                s("A"),
                s("c"),
            ]
        })
        .collect::<Vec<_>>();
    write_tsv(&ws.data.join("MMStar.tsv"), &header, &rows);
    let server = StubServer::start(|request| {
        let prompt = prompt_text(request);
        if prompt.contains("Question 0") {
            Reply::Garbage
        } else if prompt.contains("Question 1") {
            Reply::Hang(Duration::from_millis(2500))
        } else {
            Reply::Answer("A".into())
        }
    });
    let summary = ws.run(&server, "MMStar", &["--timeout", "1", "--concurrency", "3"]);
    assert_eq!(summary.failed_rows(), 2);
    // Only row 2 is answered (A = gold): 1/3 as a fraction.
    assert_eq!(
        ws.output("stub-model_MMStar_acc.csv"),
        "\"split\",\"Overall\",\"c\"\n\"none\",\"0.3333333333333333\",\"0.3333333333333333\"\n"
    );
    let checkpoint = ws.output("stub-model_MMStar.jsonl");
    assert!(checkpoint.contains("not a chat completion"), "{checkpoint}");
}

/// A 2-frame Video-MME item from extracted frames, and the per-duration rating.
#[test]
fn video_mme_frames_end_to_end() {
    let ws = Workspace::new();
    let video_root = ws.data.join("Video-MME");
    let header = [
        "index",
        "video",
        "video_path",
        "duration",
        "domain",
        "candidates",
        "sub_category",
        "task_type",
        "question",
        "answer",
    ];
    let candidates = s("['A. one', 'B. two', 'C. three', 'D. four']");
    let rows = vec![
        vec![
            s("0"),
            s("v1"),
            s("./video/v1.mp4"),
            s("short"),
            s("Knowledge"),
            candidates.clone(),
            s("Astronomy"),
            s("Counting Problem"),
            s("How many moons?"),
            s("B"),
        ],
        vec![
            s("1"),
            s("v1"),
            s("./video/v1.mp4"),
            s("short"),
            s("Knowledge"),
            candidates,
            s("Astronomy"),
            s("Counting Problem"),
            s("How many stars?"),
            s("C"),
        ],
    ];
    write_tsv(&video_root.join("Video-MME.tsv"), &header, &rows);
    let frames = ws.data.join("images/Video-MME/v1");
    std::fs::create_dir_all(&frames).unwrap();
    for i in 1..=2 {
        image::RgbImage::from_pixel(6, 4, image::Rgb([i * 50, 0, 0]))
            .save(frames.join(format!("frame-{i}-of-2.jpg")))
            .unwrap();
    }
    let server = StubServer::start(|request| {
        let prompt = prompt_text(request);
        Reply::Answer(
            if prompt.contains("moons") {
                "(B) two"
            } else {
                "The answer is A."
            }
            .into(),
        )
    });
    let summary = ws.run(&server, "Video-MME_2frame", &[]);
    assert!(summary.is_success(), "{summary:?}");
    let requests = server.requests.lock().unwrap().clone();
    assert_eq!(image_urls(&requests[0]).len(), 2);
    let text = prompt_text(&requests[0]);
    assert!(
        text.starts_with("\nThese are the frames of a video. Select the best answer"),
        "{text}"
    );
    assert!(
        text.contains("Question: How many")
            && text.ends_with("\nA. one\nB. two\nC. three\nD. four\nAnswer: "),
        "{text}"
    );
    // One right of two: 0.500 for short and overall, nan for the empty durations.
    let rating: serde_json::Value =
        serde_json::from_str(&ws.output("stub-model_Video-MME_2frame_rating.json")).unwrap();
    assert_eq!(rating["overall"]["overall"], "0.500");
    assert_eq!(rating["short"]["overall"], "0.500");
    assert_eq!(rating["long"]["overall"], "nan");
    assert_eq!(rating["short"]["task_type"]["Counting Problem"], "0.500");
}

/// KC-MMBench Y/N task from its own folder, Chinese gold answers, think blocks removed.
#[test]
fn kc_yes_no_task() {
    let ws = Workspace::new();
    let kc = ws.data.join("KC-MMbench");
    std::fs::create_dir_all(kc.join("images/spu")).unwrap();
    for name in ["a.jpg", "b.jpg"] {
        image::RgbImage::from_pixel(4, 4, image::Rgb([1, 1, 1]))
            .save(kc.join("images/spu").join(name))
            .unwrap();
    }
    let header = ["index", "image_path", "question", "answer"];
    let rows = vec![
        vec![
            s("0"),
            s("['spu/a.jpg', 'spu/b.jpg']"),
            s("同一商品吗？"),
            s("是"),
        ],
        vec![s("1"), s("spu/a.jpg"), s("是同款吗？"), s("否")],
        vec![s("2"), s("spu/b.jpg"), s("一样吗？"), s("否")],
    ];
    write_tsv(&kc.join("subsets/SPU.tsv"), &header, &rows);
    let server = StubServer::start(|request| {
        let prompt = prompt_text(request);
        Reply::Answer(
            if prompt.contains("同一") {
                "<think>看看</think>是"
            } else if prompt.contains("同款") {
                "否"
            } else {
                "是的"
            }
            .into(),
        )
    });
    let summary = ws.run(&server, "SPU", &[]);
    assert!(summary.is_success(), "{summary:?}");
    assert!(
        prompt_text(&server.requests.lock().unwrap()[0])
            .ends_with("\n请直接给出结论，回答是或者否，不需要做额外分析，并且不许回答不确定")
    );
    // 是 ✓, 否 ✓, 是的 → Unknown ✗: 2/3 × 100.
    let overall = summary.datasets[0].summary.as_ref().unwrap().headline["Overall"];
    assert!((overall - 200.0 / 3.0).abs() < 1e-9, "{overall}");
}

/// Bad input: unknown names, missing files and broken base64 are reported, never a panic.
#[test]
fn bad_input_is_reported_per_dataset_and_row() {
    let ws = Workspace::new();
    let header = ["index", "image", "question", "A", "B", "answer"];
    let rows = vec![
        vec![
            s("0"),
            s("!!!!not base64 at all, but long enough to not be a reference!!!!!!!!!!!!!"),
            s("Broken?"),
            s("x"),
            s("y"),
            s("A"),
        ],
        vec![
            s("1"),
            s("42"),
            s("Dangling reference?"),
            s("x"),
            s("y"),
            s("A"),
        ],
        vec![
            s("2"),
            base64(&rgb_png([3, 3, 3])),
            s("Fine?"),
            s("x"),
            s("y"),
            s("A"),
        ],
    ];
    write_tsv(&ws.data.join("MyBench.tsv"), &header, &rows);
    let server = StubServer::start(|_| Reply::Answer("A".into()));
    let summary = ws.run(
        &server,
        "MyBench,Nonexistent_Bench,AI2D_TEST",
        &["--type", "mcq"],
    );
    assert_eq!(summary.datasets.len(), 3);
    assert_eq!(summary.datasets[0].failed_rows, 2);
    assert_eq!(
        server.request_count(),
        1,
        "broken rows never reach the endpoint"
    );
    let checkpoint = ws.output("stub-model_MyBench.jsonl");
    assert!(
        checkpoint.contains("broken base64") || checkpoint.contains("not a decodable image"),
        "{checkpoint}"
    );
    assert!(checkpoint.contains("refers to index 42"), "{checkpoint}");
    // With --type the unknown name is a custom MCQ whose file is missing; AI2D_TEST is missing too.
    let missing = summary.datasets[2].error.as_deref().unwrap();
    assert!(
        missing.contains("AI2D_TEST.tsv") && missing.contains("never downloads"),
        "{missing}"
    );
    assert!(
        summary.datasets[1]
            .error
            .as_deref()
            .unwrap()
            .contains("Nonexistent_Bench.tsv")
    );

    let cli = TestCli::try_parse_from([
        "keye-eval",
        "score",
        "--dataset",
        "MyBench",
        "--predictions",
        "x.tsv",
        "--data-root",
        ws.data.to_str().unwrap(),
    ])
    .unwrap();
    let error = execute(cli.command, &NoLocalEngine).unwrap_err();
    assert!(error.to_string().contains("--type"), "{error}");
}

/// `score` re-scores a VLMEvalKit-style predictions file; `report` summarises the work dir.
#[test]
fn rescoring_a_predictions_file_and_reporting() {
    let ws = Workspace::new();
    let header = [
        "index", "image", "question", "A", "B", "C", "answer", "category",
    ];
    let image = base64(&rgb_png([5, 5, 5]));
    let rows = (1..=4)
        .map(|i| {
            vec![
                i.to_string(),
                image.clone(),
                format!("Q{i}"),
                s("cat"),
                s("dog"),
                s("fish"),
                s(["A", "B", "C", "A"][i - 1]),
                s(if i < 3 { "x" } else { "y" }),
            ]
        })
        .collect::<Vec<_>>();
    write_tsv(&ws.data.join("MMStar.tsv"), &header, &rows);
    // VLMEvalKit's result file: dataset columns plus `prediction` (NA tokens read as missing).
    let predictions = ws.data.join("Keye-VL_MMStar.tsv");
    write_tsv(
        &predictions,
        &["index", "question", "prediction"],
        &[
            vec![s("1"), s("Q1"), s("A")],
            vec![s("2"), s("Q2"), s("I think it is a dog")],
            vec![s("3"), s("Q3"), s("None")],
            vec![s("4"), s("Q4"), s("\\boxed{B}")],
        ],
    );
    let summary = eval(&[
        "score",
        "--dataset",
        "MMStar",
        "--data-root",
        ws.data.to_str().unwrap(),
        "--predictions",
        predictions.to_str().unwrap(),
        "--work-dir",
        ws.work.to_str().unwrap(),
    ]);
    assert!(summary.is_success());
    // Row 1 A ✓; row 2 "dog" → B ✓; row 3 `None` → NaN → "nan" → Z ✗; row 4 "\\boxed{B}" → B ✗ (gold A).
    // Overall 2/4; x (rows 1, 2) 1.0; y (rows 3, 4) 0.0.
    let csv = std::fs::read_to_string(ws.work.join("Keye-VL/Keye-VL_MMStar_acc.csv")).unwrap();
    assert_eq!(
        csv,
        "\"split\",\"Overall\",\"x\",\"y\"\n\"none\",\"0.5\",\"1.0\",\"0.0\"\n"
    );

    let report = eval(&["report", "--work-dir", ws.work.to_str().unwrap()]);
    let html = std::fs::read_to_string(report.report.unwrap()).unwrap();
    assert!(html.contains("MMStar") && html.contains("<svg") && html.contains("Keye-VL"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "self-contained"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ws.work.join("report.json")).unwrap())
            .unwrap();
    assert_eq!(
        json["models"]["Keye-VL"]["MMStar"]["headline"]["Overall"],
        50.0
    );
    let csv = std::fs::read_to_string(ws.work.join("report.csv")).unwrap();
    assert!(
        csv.contains("\"Keye-VL\",\"MMStar\",\"Overall\",\"50.0\""),
        "{csv}"
    );
}

/// The LLM judge: exact prompts, the Y/N temperature schedule, the seeded random fallback after
/// three useless replies, and the reply cache that makes re-scoring free.
#[test]
fn judge_fallbacks_and_cache() {
    let ws = Workspace::new();
    let image = base64(&rgb_png([5, 5, 5]));
    write_tsv(
        &ws.data.join("PetQuiz.tsv"),
        &["index", "image", "question", "A", "B", "C", "answer"],
        &[
            vec![
                s("1"),
                image.clone(),
                s("Which pet?"),
                s("cat"),
                s("dog"),
                s("fish"),
                s("B"),
            ],
            vec![
                s("2"),
                image.clone(),
                s("Which pet again?"),
                s("cat"),
                s("dog"),
                s("fish"),
                s("A"),
            ],
            vec![
                s("3"),
                image.clone(),
                s("Obvious pet?"),
                s("cat"),
                s("dog"),
                s("fish"),
                s("C"),
            ],
        ],
    );
    write_tsv(
        &ws.data.join("PetYesNo.tsv"),
        &["index", "image", "question", "answer"],
        &[vec![s("1"), image, s("Is it a dog?"), s("Yes")]],
    );
    let predictions = ws.data.join("m_PetQuiz.tsv");
    write_tsv(
        &predictions,
        &["index", "prediction"],
        &[
            vec![s("1"), s("a small puppy")],
            vec![s("2"), s("something else entirely")],
            vec![s("3"), s("C")],
        ],
    );
    let yes_no_predictions = ws.data.join("m_PetYesNo.tsv");
    write_tsv(
        &yes_no_predictions,
        &["index", "prediction"],
        &[vec![s("1"), s("Probably")]],
    );
    let judge = StubServer::start(|request| {
        let prompt = prompt_text(request);
        let temperature = request["temperature"].as_f64().unwrap_or(-1.0);
        if prompt == "Hello!" {
            Reply::Answer("Hi".into())
        } else if prompt.contains("Answer: a small puppy\nYour output: ") {
            Reply::Answer("B".into())
        } else if prompt.contains("options are only Yes / No") {
            Reply::Answer(if temperature < 0.25 { "Unknown" } else { "Yes" }.into())
        } else {
            Reply::Answer("I cannot decide".into())
        }
    });
    let judge_arg = format!("{}#judge-model", judge.url);
    let score = |dataset: &str, file: &Path| {
        eval(&[
            "score",
            "--dataset",
            dataset,
            "--type",
            if dataset == "PetQuiz" { "mcq" } else { "yorn" },
            "--data-root",
            ws.data.to_str().unwrap(),
            "--predictions",
            file.to_str().unwrap(),
            "--work-dir",
            ws.work.to_str().unwrap(),
            "--judge",
            &judge_arg,
            "--seed",
            "7",
        ])
    };
    let first = score("PetQuiz", &predictions);
    let summary = first.datasets[0].summary.clone().unwrap();
    assert_eq!(summary.settings.judge, "judge-model");
    assert_eq!(summary.random_fallbacks, 1);
    // Health check + 1 judge call for row 1 + 3 for row 2; row 3 is matched by rules.
    assert_eq!(judge.request_count(), 5);
    let requests = judge.requests.lock().unwrap().clone();
    let row_one = prompt_text(
        &requests[1..]
            .iter()
            .find(|r| prompt_text(r).contains("puppy"))
            .unwrap()
            .clone(),
    );
    assert!(row_one.contains(
        "Example 3: \nQuestion: Which pet??\nOptions: There are several options: \nA. cat\nB. dog\nC. fish\n\nAnswer: a small puppy\nYour output: "
    ));
    let records: Vec<serde_json::Value> =
        std::fs::read_to_string(ws.work.join("m/PetQuiz_records.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    assert_eq!(records[0]["extracted"], "B");
    assert_eq!(records[0]["hit"], 1.0);
    assert_eq!(records[1]["random_fallback"], true);
    let guess = records[1]["extracted"].clone();

    let second = score("PetQuiz", &predictions);
    assert_eq!(
        judge.request_count(),
        6,
        "only the health check: every reply comes from the cache"
    );
    let again: Vec<serde_json::Value> =
        std::fs::read_to_string(ws.work.join("m/PetQuiz_records.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    assert_eq!(again[1]["extracted"], guess, "the fallback is seeded");
    assert_eq!(
        second.datasets[0].summary.as_ref().unwrap().headline,
        summary.headline
    );
    assert!(
        ws.work
            .join("m/m_PetQuiz_judge-model_judge_cache.jsonl")
            .is_file()
    );

    // Y/N: "Probably" is Unknown; the judge says Unknown at temperature 0 and Yes at 0.5.
    let yes_no = score("PetYesNo", &yes_no_predictions);
    assert_eq!(
        yes_no.datasets[0].summary.as_ref().unwrap().headline["Overall"],
        100.0
    );
    let temperatures: Vec<f64> = judge.requests.lock().unwrap()[7..]
        .iter()
        .map(|r| r["temperature"].as_f64().unwrap())
        .collect();
    assert_eq!(temperatures, [0.0, 0.5]);
}

/// A minimal `.xlsx` (what VLMEvalKit writes predictions as) with inline strings and numbers.
fn write_xlsx(path: &Path, rows: &[Vec<XlsxCell>]) {
    use std::io::Write;
    let relationships = "http://schemas.openxmlformats.org/officeDocument/2006/relationships";
    let package = "http://schemas.openxmlformats.org/package/2006/relationships";
    let main = "http://schemas.openxmlformats.org/spreadsheetml/2006/main";
    let mut sheet = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><worksheet xmlns=\"{main}\"><sheetData>"
    );
    for (r, row) in rows.iter().enumerate() {
        sheet.push_str(&format!("<row r=\"{}\">", r + 1));
        for (c, cell) in row.iter().enumerate() {
            let reference = format!("{}{}", (b'A' + c as u8) as char, r + 1);
            match cell {
                XlsxCell::Text(t) => sheet.push_str(&format!(
                    "<c r=\"{reference}\" t=\"inlineStr\"><is><t>{t}</t></is></c>"
                )),
                XlsxCell::Number(n) => {
                    sheet.push_str(&format!("<c r=\"{reference}\"><v>{n}</v></c>"))
                }
            }
        }
        sheet.push_str("</row>");
    }
    sheet.push_str("</sheetData></worksheet>");
    let files = [
        (
            "[Content_Types].xml",
            String::from(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Types xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\"><Default Extension=\"rels\" ContentType=\"application/vnd.openxmlformats-package.relationships+xml\"/><Default Extension=\"xml\" ContentType=\"application/xml\"/><Override PartName=\"/xl/workbook.xml\" ContentType=\"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml\"/><Override PartName=\"/xl/worksheets/sheet1.xml\" ContentType=\"application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml\"/></Types>",
            ),
        ),
        (
            "_rels/.rels",
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Relationships xmlns=\"{package}\"><Relationship Id=\"rId1\" Type=\"{relationships}/officeDocument\" Target=\"xl/workbook.xml\"/></Relationships>"
            ),
        ),
        (
            "xl/workbook.xml",
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><workbook xmlns=\"{main}\" xmlns:r=\"{relationships}\"><sheets><sheet name=\"Sheet1\" sheetId=\"1\" r:id=\"rId1\"/></sheets></workbook>"
            ),
        ),
        (
            "xl/_rels/workbook.xml.rels",
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Relationships xmlns=\"{package}\"><Relationship Id=\"rId1\" Type=\"{relationships}/worksheet\" Target=\"worksheets/sheet1.xml\"/></Relationships>"
            ),
        ),
        ("xl/worksheets/sheet1.xml", sheet),
    ];
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, content) in files {
        zip.start_file(name, options).unwrap();
        zip.write_all(content.as_bytes()).unwrap();
    }
    zip.finish().unwrap();
}

enum XlsxCell {
    Text(&'static str),
    Number(f64),
}

/// VLMEvalKit `.xlsx` predictions: numeric cells and NA strings read the way pandas reads them.
#[test]
fn xlsx_predictions_are_read_like_pandas() {
    let ws = Workspace::new();
    let image = base64(&rgb_png([5, 5, 5]));
    let rows = (1..=4)
        .map(|i| {
            vec![
                i.to_string(),
                image.clone(),
                format!("Q{i}"),
                s("1"),
                s("3"),
                s("fish"),
                s(["A", "B", "B", "C"][i - 1]),
            ]
        })
        .collect::<Vec<_>>();
    write_tsv(
        &ws.data.join("AI2D_TEST.tsv"),
        &["index", "image", "question", "A", "B", "C", "answer"],
        &rows,
    );
    let predictions = ws.data.join("Keye_AI2D_TEST.xlsx");
    use XlsxCell::{Number, Text};
    write_xlsx(
        &predictions,
        &[
            vec![Text("index"), Text("prediction")],
            vec![Number(1.0), Text("A")],
            vec![Number(2.0), Text("B")],
            vec![Number(3.0), Number(3.0)],
            vec![Number(4.0), Text("NA")],
        ],
    );
    eval(&[
        "score",
        "--dataset",
        "AI2D_TEST",
        "--data-root",
        ws.data.to_str().unwrap(),
        "--predictions",
        predictions.to_str().unwrap(),
        "--work-dir",
        ws.work.to_str().unwrap(),
    ]);
    // Rows 1, 2 right; row 3's numeric 3 reads as "3", which matches option B's text ("3"): right;
    // row 4's "NA" is missing → "nan" → Z: wrong. Overall 3/4.
    let csv = std::fs::read_to_string(ws.work.join("Keye/Keye_AI2D_TEST_acc.csv")).unwrap();
    assert_eq!(csv, "\"split\",\"Overall\"\n\"none\",\"0.75\"\n");
    let records = std::fs::read_to_string(ws.work.join("Keye/AI2D_TEST_records.jsonl")).unwrap();
    assert!(
        records.contains("\"prediction\":\"3\"") && records.contains("\"prediction\":\"nan\""),
        "{records}"
    );
}
