//! Fixtures, a shared tiny model and small HTTP helpers for the server tests.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use keye::Keye;
use keye_server::{ServerConfig, ServerHandle};
use serde_json::{Value, json};

pub const MODEL_NAME: &str = "keye-tiny";

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

pub fn tiny_model_dir() -> PathBuf {
    fixtures().join("models/keye-preview-tiny")
}

/// The tiny Preview fixture model, loaded once per test binary.
pub fn tiny_model() -> Arc<Keye> {
    static MODEL: OnceLock<Arc<Keye>> = OnceLock::new();
    Arc::clone(MODEL.get_or_init(|| Arc::new(Keye::from_dir(&tiny_model_dir()).unwrap())))
}

pub fn test_config() -> ServerConfig {
    ServerConfig {
        served_model_name: MODEL_NAME.into(),
        max_running: 8,
        max_queue: 64,
        request_timeout: Duration::from_secs(120),
        ..ServerConfig::default()
    }
}

pub fn start_server(config: ServerConfig) -> ServerHandle {
    ServerHandle::spawn(tiny_model(), config).unwrap()
}

/// A fixture case as an OpenAI request: media inlined as `data:` URLs, and what the reference
/// produced for it.
pub struct Case {
    pub messages: Value,
    /// The reference's greedy 16-token continuation, special tokens skipped.
    pub expected_text: String,
    pub prompt_tokens: u64,
}

pub fn case(name: &str) -> Case {
    let dir = fixtures().join("cases/keye-preview-tiny").join(name);
    let read_json = |file: &str| -> Value {
        serde_json::from_slice(&std::fs::read(dir.join(file)).unwrap()).unwrap()
    };
    let mut messages = read_json("messages.json");
    for message in messages.as_array_mut().unwrap() {
        let Some(parts) = message["content"].as_array_mut() else {
            continue;
        };
        for part in parts {
            if part["type"] == "image" {
                let path = dir.join(part["image"].as_str().unwrap());
                *part = json!({"type": "image_url", "image_url": {"url": data_url(&path)}});
            } else if part["type"] == "video" {
                // vLLM's spelling, with keye-vl-utils' options beside the URL.
                let path = dir.join(part["video"].as_str().unwrap());
                let object = part.as_object_mut().unwrap();
                object.remove("video");
                object.insert("type".into(), json!("video_url"));
                object.insert("video_url".into(), json!({"url": data_url(&path)}));
            }
        }
    }
    let outputs = read_json("outputs.json");
    Case {
        messages,
        expected_text: outputs["generated_text_skip_special"]
            .as_str()
            .unwrap()
            .to_owned(),
        prompt_tokens: outputs["num_input_tokens"].as_u64().unwrap(),
    }
}

pub fn data_url(path: &Path) -> String {
    let mime = match path.extension().and_then(|e| e.to_str()) {
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("mp4") => "video/mp4",
        _ => "image/png",
    };
    let bytes = std::fs::read(path).unwrap();
    format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// The request that reproduces the reference's greedy continuation of a case.
pub fn greedy_request(case: &Case) -> Value {
    json!({
        "model": MODEL_NAME,
        "messages": case.messages,
        "max_tokens": 16,
        "temperature": 0,
    })
}

pub fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(120))
        .build()
}

/// Status and JSON body of a request; error statuses are answers too.
pub fn call(method: &str, url: &str, body: Option<&Value>, key: Option<&str>) -> (u16, Value) {
    let (status, _, text) = call_raw(method, url, body.map(|b| b.to_string()), key);
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// Status, headers and body text.
pub fn call_raw(
    method: &str,
    url: &str,
    body: Option<String>,
    key: Option<&str>,
) -> (u16, Vec<(String, String)>, String) {
    let mut request = agent()
        .request(method, url)
        .set("Content-Type", "application/json");
    if let Some(key) = key {
        request = request.set("Authorization", &format!("Bearer {key}"));
    }
    let result = match body {
        Some(body) => request.send_string(&body),
        None => request.call(),
    };
    let response = match result {
        Ok(response) => response,
        Err(ureq::Error::Status(_, response)) => response,
        Err(error) => panic!("{method} {url}: {error}"),
    };
    let status = response.status();
    let headers = response
        .headers_names()
        .into_iter()
        .map(|name| {
            let value = response.header(&name).unwrap_or_default().to_owned();
            (name, value)
        })
        .collect();
    let mut text = String::new();
    response.into_reader().read_to_string(&mut text).unwrap();
    (status, headers, text)
}

pub fn post(url: &str, body: &Value) -> (u16, Value) {
    call("POST", url, Some(body), None)
}

/// A streamed answer as the client saw it.
#[derive(Debug, Default)]
pub struct Streamed {
    pub chunks: Vec<Value>,
    pub done: bool,
}

impl Streamed {
    pub fn content(&self) -> String {
        self.deltas("content")
    }

    pub fn reasoning(&self) -> String {
        self.deltas("reasoning_content")
    }

    fn deltas(&self, field: &str) -> String {
        self.chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"][field].as_str())
            .collect()
    }

    pub fn finish_reason(&self) -> Option<String> {
        self.chunks
            .iter()
            .find_map(|c| c["choices"][0]["finish_reason"].as_str())
            .map(str::to_owned)
    }

    pub fn usage(&self) -> Option<&Value> {
        self.chunks.iter().rev().find_map(|c| {
            c.get("usage")
                .filter(|u| !u.is_null())
                .filter(|_| c["choices"] == json!([]))
        })
    }

    pub fn error(&self) -> Option<&Value> {
        self.chunks.iter().find_map(|c| c.get("error"))
    }
}

/// Opens a streamed chat completion and returns its line reader (after checking for 200).
pub fn open_stream(url: &str, body: &Value) -> impl BufRead + use<> {
    let response = agent()
        .post(url)
        .send_json(body.clone())
        .unwrap_or_else(|error| panic!("stream request failed: {error}"));
    assert_eq!(response.status(), 200);
    assert!(
        response
            .header("content-type")
            .unwrap_or_default()
            .starts_with("text/event-stream")
    );
    BufReader::new(response.into_reader())
}

/// Reads the next `data:` payload, or `None` at the end of the stream.
pub fn next_data(reader: &mut impl BufRead) -> Option<String> {
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return None;
        }
        if let Some(data) = line.trim_end().strip_prefix("data: ") {
            return Some(data.to_owned());
        }
    }
}

pub fn read_stream(mut reader: impl BufRead) -> Streamed {
    let mut streamed = Streamed::default();
    while let Some(data) = next_data(&mut reader) {
        assert!(!streamed.done, "data after [DONE]: {data}");
        if data == "[DONE]" {
            streamed.done = true;
        } else {
            streamed.chunks.push(serde_json::from_str(&data).unwrap());
        }
    }
    streamed
}

pub fn stream(url: &str, body: &Value) -> Streamed {
    read_stream(open_stream(url, body))
}

/// A Prometheus sample's value, e.g. `metric(&text, "keye_running_sequences")`.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            (key == name).then(|| value.parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no sample {name} in\n{text}"))
}

pub fn metrics(base: &str) -> String {
    let (status, _, text) = call_raw("GET", &format!("{base}/metrics"), None, None);
    assert_eq!(status, 200);
    text
}

/// Polls until `condition` holds on `/metrics`, for at most `limit`.
pub fn wait_for_metrics(base: &str, limit: Duration, condition: impl Fn(&str) -> bool) {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let text = metrics(base);
        if condition(&text) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "condition not reached within {limit:?}; metrics:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Checks an OpenAI error answer: status, `type`, and `param` when given.
#[track_caller]
pub fn assert_error(answer: &(u16, Value), status: u16, kind: &str, param: Option<&str>) {
    let (got, body) = answer;
    assert_eq!(*got, status, "{body}");
    let error = &body["error"];
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(error["type"], kind, "{body}");
    assert!(
        error.get("param").is_some() && error.get("code").is_some(),
        "{body}"
    );
    if let Some(param) = param {
        assert_eq!(error["param"], param, "{body}");
    }
}
