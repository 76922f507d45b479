//! The `keye` binary end to end on the bundled tiny model: answers, JSON output, dumps, and
//! clear errors with a non-zero exit for bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tiny_model() -> PathBuf {
    repo().join("tests/fixtures/models/keye-preview-tiny")
}

fn case(name: &str) -> PathBuf {
    repo()
        .join("tests/fixtures/cases/keye-preview-tiny")
        .join(name)
}

fn keye(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keye"))
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("run keye")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn fixture_ids(case_dir: &Path) -> Vec<u64> {
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(case_dir.join("outputs.json")).unwrap()).unwrap();
    meta["generated_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

const GREEDY: [&str; 5] = [
    "--temperature",
    "0",
    "--max-new-tokens",
    "16",
    "--ignore-eos",
];

#[test]
fn run_with_an_image_prints_the_reference_greedy_answer_as_json() {
    let dir = case("image_224x168");
    let image = dir.join("inputs/img_224x168.png");
    let model = tiny_model();
    let mut args = vec![
        "run",
        "--model",
        model.to_str().unwrap(),
        "--image",
        image.to_str().unwrap(),
    ];
    args.extend(GREEDY);
    args.extend(["--output", "json", "Describe this image in detail."]);
    let out = keye(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let json: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let ids: Vec<u64> = json["token_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(ids, fixture_ids(&dir));
    assert_eq!(json["usage"]["prompt_tokens"], 79);
    assert_eq!(json["usage"]["completion_tokens"], 16);
    assert!(json["timings"]["first_token_ms"].as_f64().unwrap() > 0.0);
}

#[test]
fn messages_file_and_dump_reproduce_the_reference_tensors() {
    let dir = case("two_images");
    let dump = tempfile::NamedTempFile::new().unwrap();
    let model = tiny_model();
    let messages = dir.join("messages.json");
    let mut args = vec![
        "run",
        "--model",
        model.to_str().unwrap(),
        "--messages",
        messages.to_str().unwrap(),
    ];
    args.extend(GREEDY);
    args.extend(["--dump", dump.path().to_str().unwrap()]);
    let out = keye(&args);
    assert!(out.status.success(), "{}", stderr(&out));

    let ours = std::fs::read(dump.path()).unwrap();
    let ours = safetensors::SafeTensors::deserialize(&ours).unwrap();
    let reference = std::fs::read(dir.join("outputs.safetensors")).unwrap();
    let reference = safetensors::SafeTensors::deserialize(&reference).unwrap();
    for name in [
        "input_ids",
        "position_ids",
        "pixel_values",
        "image_grid_thw",
        "image_vision_embeds",
        "image_projector_embeds",
        "inputs_embeds",
        "logits_last",
    ] {
        let (a, b) = (ours.tensor(name).unwrap(), reference.tensor(name).unwrap());
        assert_eq!((a.dtype(), a.shape()), (b.dtype(), b.shape()), "{name}");
    }
    assert_eq!(
        ours.tensor("input_ids").unwrap().data(),
        reference.tensor("input_ids").unwrap().data()
    );
    assert_eq!(
        ours.tensor("position_ids").unwrap().data(),
        reference.tensor("position_ids").unwrap().data()
    );
}

#[test]
fn text_output_streams_the_answer() {
    let model = tiny_model();
    let mut args = vec!["run", "--model", model.to_str().unwrap()];
    args.extend(GREEDY);
    args.push("Hello! Please write a short poem about the sea.");
    let out = keye(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(case("text_only").join("outputs.json")).unwrap())
            .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text.trim_end_matches('\n'),
        meta["generated_text_skip_special"].as_str().unwrap()
    );
}

fn assert_fails(args: &[&str], expected: &[&str]) {
    let out = keye(args);
    assert!(!out.status.success(), "expected failure for {args:?}");
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "panic for {args:?}: {err}");
    for needle in expected {
        assert!(
            err.contains(needle),
            "stderr for {args:?} lacks {needle:?}: {err}"
        );
    }
}

fn png(width: u32, height: u32, claimed: Option<(u32, u32)>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    let mut writer = encoder.write_header().unwrap();
    writer
        .write_image_data(&vec![128u8; (width * height * 3) as usize])
        .unwrap();
    drop(writer);
    if let Some((w, h)) = claimed {
        // Rewrite the IHDR size (bytes 16..24) and its CRC: a header that lies.
        out[16..20].copy_from_slice(&w.to_be_bytes());
        out[20..24].copy_from_slice(&h.to_be_bytes());
        let crc = crc32(&out[12..29]);
        out[29..33].copy_from_slice(&crc.to_be_bytes());
    }
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn bad_images_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model();
    let model = model.to_str().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = tmp.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let real = std::fs::read(case("image_224x168").join("inputs/img_224x168.png")).unwrap();
    let truncated = write("truncated.png", &real[..real.len() / 3]);
    let garbage = write("garbage.jpg", b"this is not an image at all");
    let bomb = write("bomb.png", &png(8, 8, Some((100_000, 100_000))));
    let thin = write("thin.png", &png(402, 2, None));

    assert_fails(
        &["run", "-m", model, "-i", "/no/such/image.png", "hi"],
        &["/no/such/image.png"],
    );
    assert_fails(
        &["run", "-m", model, "-i", &truncated, "hi"],
        &["truncated.png"],
    );
    assert_fails(
        &["run", "-m", model, "-i", &garbage, "hi"],
        &["garbage.jpg"],
    );
    assert_fails(&["run", "-m", model, "-i", &bomb, "hi"], &["100000x100000"]);
    assert_fails(
        &["run", "-m", model, "-i", &thin, "hi"],
        &["aspect ratio", "200"],
    );
    assert_fails(
        &["run", "-m", model, "-i", "data:image/png;base64,", "hi"],
        &["data"],
    );
}

#[test]
fn prompt_longer_than_the_context_is_refused_with_numbers() {
    let model = tiny_model();
    let image = case("image_224x168").join("inputs/img_224x168.png");
    assert_fails(
        &[
            "run",
            "-m",
            model.to_str().unwrap(),
            "--max-context",
            "20",
            "-i",
            image.to_str().unwrap(),
            "hi",
        ],
        &["76 tokens", "20"],
    );
}

#[test]
fn wrong_or_incomplete_checkpoints_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    assert_fails(
        &["run", "-m", tmp.path().to_str().unwrap(), "hi"],
        &["config.json"],
    );

    // A copy of the tiny model without one tensor and with another of the wrong shape.
    let broken = tmp.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    for entry in std::fs::read_dir(tiny_model()).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap() != "model.safetensors" {
            std::fs::copy(&path, broken.join(path.file_name().unwrap())).unwrap();
        }
    }
    let original = std::fs::read(tiny_model().join("model.safetensors")).unwrap();
    let original = safetensors::SafeTensors::deserialize(&original).unwrap();
    let write_without = |skip: &str| {
        let kept: Vec<(String, safetensors::tensor::TensorView<'_>)> = original
            .tensors()
            .into_iter()
            .filter(|(name, _)| name != skip)
            .collect();
        safetensors::serialize_to_file(kept, None, &broken.join("model.safetensors")).unwrap();
    };
    write_without("model.layers.1.mlp.down_proj.weight");
    assert_fails(
        &["run", "-m", broken.to_str().unwrap(), "hi"],
        &["model.layers.1.mlp.down_proj.weight", "[64, 128]"],
    );

    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tiny_model().join("config.json")).unwrap()).unwrap();
    write_without("");
    config["intermediate_size"] = 96.into();
    std::fs::write(broken.join("config.json"), config.to_string()).unwrap();
    assert_fails(
        &["run", "-m", broken.to_str().unwrap(), "hi"],
        &["mlp.gate_proj.weight", "[96, 64]", "[128, 64]"],
    );

    config["model_type"] = "LlavaForSomething".into();
    std::fs::write(broken.join("config.json"), config.to_string()).unwrap();
    assert_fails(
        &["run", "-m", broken.to_str().unwrap(), "hi"],
        &["LlavaForSomething"],
    );
}

#[test]
fn help_lists_the_subcommands() {
    let out = keye(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for command in ["run", "chat", "media", "serve", "eval", "bench"] {
        assert!(text.contains(command), "{text}");
    }
}

#[test]
fn chat_keeps_the_conversation_and_handles_commands() {
    use std::io::Write;
    let image = case("image_224x168").join("inputs/img_224x168.png");
    let model = tiny_model();
    let mut child = Command::new(env!("CARGO_BIN_EXE_keye"))
        .args([
            "chat",
            "--model",
            model.to_str().unwrap(),
            "-t",
            "0",
            "-n",
            "4",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let script = format!(
        "/image {}\nDescribe this image in detail.\nAnd now?\n/image /no/such/file.png\nbroken turn\n/reset\nHello\n/exit\nnever read\n",
        image.display()
    );
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    // Three answered turns (the failing one is reported and dropped, the session goes on).
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    let err = stderr(&out);
    assert!(err.contains("/no/such/file.png"), "{err}");
    assert!(err.contains("conversation cleared"), "{err}");
}

fn model_1_5() -> PathBuf {
    repo().join("tests/fixtures/models/keye-1.5-tiny")
}

fn case_1_5(name: &str) -> PathBuf {
    repo().join("tests/fixtures/cases/keye-1.5-tiny").join(name)
}

#[test]
fn run_with_a_video_matches_the_reference() {
    let dir = case_1_5("video_mp4_scenecut");
    let video = dir.join("inputs/scenecut_320x240_8fps_16f.mp4");
    let model = model_1_5();
    let mut args = vec![
        "run",
        "-m",
        model.to_str().unwrap(),
        "--video",
        video.to_str().unwrap(),
        "--video-max-pixels",
        "94080",
    ];
    args.extend(GREEDY);
    args.extend([
        "--output",
        "json",
        "Describe the video. Is there a scene change?",
    ]);
    let out = keye(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<u64> = json["token_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(ids, fixture_ids(&dir));
}

#[test]
fn media_inspector_reports_frames_like_keye_vl_utils() {
    let dir = case_1_5("video_mp4_scenecut");
    let video = dir.join("inputs/scenecut_320x240_8fps_16f.mp4");
    let frames_dir = tempfile::tempdir().unwrap();
    let model = model_1_5();
    let out = keye(&[
        "media",
        video.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--video-max-pixels",
        "94080",
        "--output",
        "json",
        "--save-frames",
        frames_dir.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("outputs.json")).unwrap()).unwrap();
    let frames = json["frames"].as_array().unwrap();
    let indices: Vec<&serde_json::Value> = frames.iter().map(|f| &f["source_index"]).collect();
    let want: Vec<&serde_json::Value> = meta["decord_calls"][0]["indices"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(indices, want);
    let types: Vec<&str> = frames.iter().map(|f| f["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["slow", "fast", "slow", "fast"]);
    let stamps: Vec<&str> = frames
        .iter()
        .map(|f| f["timestamp_text"].as_str().unwrap())
        .collect();
    assert_eq!(stamps, ["0.0", "0.6", "1.2", "1.9"]);
    assert_eq!(json["video_grid_thw"], meta["video_grid_thw"]);
    assert_eq!(std::fs::read_dir(frames_dir.path()).unwrap().count(), 4);
}

#[test]
fn bad_videos_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let model = model_1_5();
    let model = model.to_str().unwrap();
    let real =
        std::fs::read(case_1_5("video_mp4_scenecut").join("inputs/scenecut_320x240_8fps_16f.mp4"))
            .unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = tmp.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let empty = write("empty.mp4", b"");
    let text = write("notes.mp4", b"this is a text file, not a video");
    let truncated = write("truncated.mp4", &real[..real.len() / 4]);
    for (path, needle) in [
        (&empty, "empty.mp4"),
        (&text, "notes.mp4"),
        (&truncated, "truncated.mp4"),
    ] {
        assert_fails(&["run", "-m", model, "--video", path, "hi"], &[needle]);
    }
    assert_fails(
        &["run", "-m", model, "--video", "/no/such/clip.mp4", "hi"],
        &["/no/such/clip.mp4"],
    );
}

#[test]
fn eval_runs_a_dataset_through_the_local_engine() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("LMUData");
    std::fs::create_dir_all(&data).unwrap();
    let image = std::fs::read(case("image_224x168").join("inputs/img_224x168.png")).unwrap();
    use base64::Engine as _;
    let image = base64::engine::general_purpose::STANDARD.encode(image);
    let tsv = format!(
        "index\tquestion\tA\tB\tanswer\timage\n0\tWhat color?\tred\tblue\tA\t{image}\n1\tIs it red?\tyes\tno\tB\t{image}\n"
    );
    std::fs::write(data.join("Tiny_MCQ.tsv"), tsv).unwrap();
    let work = dir.path().join("out");
    let model = tiny_model();
    let output = keye(&[
        "eval",
        "run",
        "--model",
        model.to_str().unwrap(),
        "--datasets",
        "Tiny_MCQ",
        "--type",
        "mcq",
        "--data-root",
        data.to_str().unwrap(),
        "--work-dir",
        work.to_str().unwrap(),
        "--no-progress",
        "--max-new-tokens",
        "8",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let checkpoint =
        std::fs::read_to_string(work.join("keye-preview-tiny/keye-preview-tiny_Tiny_MCQ.jsonl"))
            .unwrap();
    let rows: Vec<serde_json::Value> = checkpoint
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    for row in &rows {
        assert!(row.get("error").is_none(), "{row}");
        assert!(!row["raw_output"].as_str().unwrap().is_empty(), "{row}");
    }
    let summary: serde_json::Value = serde_json::from_slice(
        &std::fs::read(work.join("keye-preview-tiny/Tiny_MCQ_summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(summary["scored"], 2);
    assert_eq!(summary["failed"], 0);

    let missing = keye(&[
        "eval",
        "run",
        "--model",
        "/nonexistent/model",
        "--datasets",
        "Tiny_MCQ",
        "--type",
        "mcq",
        "--data-root",
        data.to_str().unwrap(),
        "--work-dir",
        work.to_str().unwrap(),
        "--no-progress",
    ]);
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("/nonexistent/model"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn serve_answers_over_http_until_killed() {
    use std::io::{BufRead, BufReader, Read, Write};
    let model = tiny_model();
    let mut child = Command::new(env!("CARGO_BIN_EXE_keye"))
        .args(["serve", "--model", model.to_str().unwrap(), "--port", "0"])
        .env("HF_HUB_OFFLINE", "1")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run keye serve");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let banner = lines.next().expect("a banner line").unwrap();
    let address = banner
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {banner:?}"))
        .to_owned();
    let body = r#"{"messages":[{"role":"user","content":"Hello"}],"max_tokens":4,"temperature":0}"#;
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    write!(
        stream,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let json = &response[response.find("\r\n\r\n").unwrap() + 4..];
    let answer: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(answer["usage"]["completion_tokens"], 4, "{answer}");
    assert_eq!(answer["choices"][0]["finish_reason"], "length", "{answer}");
}

fn json_ids(output: &Output) -> Vec<u64> {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let json: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    json["token_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

#[test]
fn quantize_writes_a_gguf_file_that_answers_like_quantizing_at_load() {
    let help = keye(&["quantize", "--help"]);
    assert!(help.status.success(), "{}", stderr(&help));
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in ["--to", "--vision-to", "--output"] {
        assert!(help.contains(flag), "quantize --help lacks {flag}:\n{help}");
    }

    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("tiny-q8_0.gguf");
    let model = tiny_model();
    let out = keye(&[
        "quantize",
        model.to_str().unwrap(),
        "--to",
        "q8_0",
        "--vision-to",
        "q8_0",
        "-o",
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("q8_0"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let image = case("image_224x168").join("inputs/img_224x168.png");
    let ask = |model: &str, extra: &[&str]| {
        let mut args = vec!["run", "--model", model, "--image", image.to_str().unwrap()];
        args.extend(extra);
        args.extend(GREEDY);
        args.extend(["--output", "json", "Describe this image in detail."]);
        let out = keye(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        json_ids(&out)
    };
    let from_file = ask(file.to_str().unwrap(), &[]);
    let at_load = ask(
        model.to_str().unwrap(),
        &["--quant", "q8_0", "--quant-vision", "q8_0"],
    );
    assert_eq!(from_file, at_load);
    assert_eq!(from_file.len(), 16);

    // The media inspector reads the same settings and tokenizer from the file as from the folder.
    let inspect = |model: &str| {
        let out = keye(&[
            "media",
            image.to_str().unwrap(),
            "--model",
            model,
            "--output",
            "json",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        out.stdout
    };
    assert_eq!(
        inspect(file.to_str().unwrap()),
        inspect(model.to_str().unwrap())
    );
}

#[test]
fn compact_kv_caches_are_a_flag() {
    let model = tiny_model();
    let image = case("image_224x168").join("inputs/img_224x168.png");
    for format in ["bf16", "q8"] {
        let mut args = vec![
            "run",
            "--model",
            model.to_str().unwrap(),
            "--kv-cache",
            format,
            "--image",
            image.to_str().unwrap(),
        ];
        args.extend(GREEDY);
        args.extend(["--output", "json", "Describe this image in detail."]);
        let out = keye(&args);
        assert!(out.status.success(), "{format}: {}", stderr(&out));
        assert_eq!(json_ids(&out).len(), 16, "{format}");
    }
}

#[test]
fn unknown_weight_and_cache_formats_and_foreign_files_are_clear_errors() {
    let model = tiny_model();
    for (flag, value, message) in [
        ("--quant", "q6_k", "unknown weight format `q6_k`"),
        ("--kv-cache", "q4", "unknown KV cache format `q4`"),
    ] {
        let out = keye(&["run", "--model", model.to_str().unwrap(), flag, value, "hi"]);
        assert!(!out.status.success());
        assert!(stderr(&out).contains(message), "{}", stderr(&out));
    }

    let tmp = tempfile::tempdir().unwrap();
    let not_gguf = tmp.path().join("model.gguf");
    std::fs::write(&not_gguf, b"definitely not a model").unwrap();
    let out = keye(&["run", "--model", not_gguf.to_str().unwrap(), "hi"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not a GGUF file"), "{}", stderr(&out));
}
