//! The official `openai` Python client against the server (installed by `.ci/run`).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::common::*;

pub fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// Fails the test with instructions when a Python module is missing.
pub fn require_python_module(module: &str, install: &str) {
    let found = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    assert!(
        found,
        "this test needs python3 with the `{module}` package: {install} (.ci/run installs it)"
    );
}

#[test]
fn official_openai_client_works() {
    require_python_module("openai", "pip install openai");
    let server = start_server(test_config());
    let names = ["text_only", "image_224x168", "two_images"];
    let spec = json!({
        "model": MODEL_NAME,
        "cases": names
            .iter()
            .map(|name| json!({"name": name, "messages": case(name).messages}))
            .collect::<Vec<_>>(),
    });
    let mut child = Command::new("python3")
        .arg(clients_dir().join("openai_client.py"))
        .arg(server.base_url())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(spec.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "openai_client.py failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();

    assert_eq!(report["models"], json!([MODEL_NAME]));
    for name in names {
        let case = case(name);
        let usage = json!({
            "prompt_tokens": case.prompt_tokens,
            "completion_tokens": 16,
            "total_tokens": case.prompt_tokens + 16,
        });
        let seen = &report["cases"][name];
        assert_eq!(seen["plain"]["content"], case.expected_text, "{name}");
        assert!(seen["plain"]["reasoning_content"].is_null(), "{name}");
        assert_eq!(seen["plain"]["finish_reason"], "length", "{name}");
        assert_eq!(seen["plain"]["usage"], usage, "{name}");
        assert_eq!(seen["streamed"]["content"], case.expected_text, "{name}");
        assert_eq!(seen["streamed"]["roles"], json!(["assistant"]), "{name}");
        assert_eq!(seen["streamed"]["finish_reason"], "length", "{name}");
        assert_eq!(seen["streamed"]["usage"], usage, "{name}");
    }
    assert_eq!(report["extra_body_tokens"], 3);

    let errors = &report["errors"];
    let expect = |name: &str, status: u16, class: &str, param: Option<&str>| {
        let error = &errors[name];
        assert_eq!(error["status"], status, "{name}: {error}");
        assert_eq!(error["class"], class, "{name}: {error}");
        assert_eq!(error["type"], "invalid_request_error", "{name}: {error}");
        if let Some(param) = param {
            assert_eq!(error["param"], param, "{name}: {error}");
        }
    };
    expect("unknown_model", 404, "NotFoundError", Some("model"));
    expect("empty_messages", 400, "BadRequestError", Some("messages"));
    expect(
        "bad_temperature",
        400,
        "BadRequestError",
        Some("temperature"),
    );
    expect("bad_image", 400, "BadRequestError", None);
    expect("n_two", 400, "BadRequestError", Some("n"));
    assert_eq!(errors["stream_unknown_model"]["status"], 404);
}
