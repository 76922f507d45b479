//! Client mistakes get OpenAI-style error JSON with the right 4xx status, never a 500.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keye::{Keye, LoadOptions};
use keye_server::{ServerConfig, ServerHandle};
use serde_json::{Value, json};

use crate::common::*;

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

fn image_request(url: &str) -> Value {
    json!({
        "model": MODEL_NAME,
        "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": url}},
            {"type": "text", "text": "What is this?"},
        ]}],
        "max_tokens": 2,
    })
}

#[test]
fn bad_requests_get_400s_with_the_parameter() {
    let server = start_server(test_config());
    let url = format!("{}/v1/chat/completions", server.base_url());
    let raw = |body: &str| {
        let (status, _, text) = call_raw("POST", &url, Some(body.to_owned()), None);
        (status, serde_json::from_str::<Value>(&text).unwrap())
    };
    assert_error(&raw("{\"messages\": ["), 400, "invalid_request_error", None);
    assert_error(&raw(""), 400, "invalid_request_error", None);
    assert_error(&raw("[1, 2]"), 400, "invalid_request_error", None);

    let cases: Vec<(Value, u16, Option<&str>)> = vec![
        (json!({"messages": []}), 400, Some("messages")),
        (json!({"model": MODEL_NAME}), 400, Some("messages")),
        (
            json!({"messages": user("hi"), "temperature": "hot"}),
            400,
            Some("temperature"),
        ),
        (
            json!({"messages": user("hi"), "max_tokens": "ten"}),
            400,
            Some("max_tokens"),
        ),
        (
            json!({"messages": user("hi"), "top_p": 2}),
            400,
            Some("top_p"),
        ),
        (
            json!({"messages": user("hi"), "stream": 1}),
            400,
            Some("stream"),
        ),
        (json!({"messages": user("hi"), "n": 3}), 400, Some("n")),
        (
            json!({"messages": user("hi"), "stop": {"a": 1}}),
            400,
            Some("stop"),
        ),
        (
            json!({"messages": user("hi"), "presence_penalty": 3.0}),
            400,
            Some("presence_penalty"),
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]}),
            400,
            Some("messages[0].content[0].type"),
        ),
        (
            json!({"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}),
            400,
            Some("messages[0].content[0]"),
        ),
        (
            json!({"messages": [{"role": 1, "content": "hi"}]}),
            400,
            Some("messages[0].role"),
        ),
        (
            json!({"messages": [{"role": "user", "content": 5}]}),
            400,
            Some("messages[0].content"),
        ),
    ];
    for (body, status, param) in cases {
        let answer = post(&url, &body);
        assert_error(&answer, status, "invalid_request_error", param);
    }

    let unknown = post(&url, &json!({"model": "gpt-4o", "messages": user("hi")}));
    assert_error(&unknown, 404, "invalid_request_error", Some("model"));
    assert_eq!(unknown.1["error"]["code"], "model_not_found");
}

#[test]
fn bad_media_gets_400s() {
    let server = start_server(ServerConfig {
        max_images_per_request: 2,
        ..test_config()
    });
    let url = format!("{}/v1/chat/completions", server.base_url());
    let expect = |body: Value, code: &str| {
        let answer = post(&url, &body);
        assert_error(&answer, 400, "invalid_request_error", None);
        assert_eq!(answer.1["error"]["code"], code, "{}", answer.1);
    };
    expect(
        image_request("data:image/png;base64,!!!not base64!!!"),
        "invalid_media",
    );
    expect(
        image_request("data:image/png;base64,aGVsbG8gd29ybGQ="),
        "invalid_media",
    );
    expect(
        image_request("ftp://example.com/cat.png"),
        "media_not_allowed",
    );
    expect(image_request("/etc/passwd"), "media_not_allowed");
    expect(image_request("file:///etc/passwd"), "media_not_allowed");
    // Loopback, private and link-local hosts are refused before any connection is made.
    expect(
        image_request("http://127.0.0.1:9/cat.png"),
        "media_not_allowed",
    );
    expect(
        image_request("http://169.254.169.254/latest/meta-data"),
        "media_not_allowed",
    );
    expect(image_request("http://[::1]:9/cat.png"), "media_not_allowed");

    let image = data_url(&fixtures().join("cases/keye-preview-tiny/no_think/inputs/img_50x50.png"));
    let part = json!({"type": "image_url", "image_url": {"url": image}});
    let three = json!({
        "messages": [{"role": "user", "content": [part, part, part, {"type": "text", "text": "?"}]}],
    });
    expect(three, "too_many_images");

    let video = json!({
        "messages": [{"role": "user", "content": [
            {"type": "video_url", "video_url": {"url": "data:video/mp4;base64,AAAA"}},
            {"type": "text", "text": "?"},
        ]}],
    });
    let answer = post(&url, &video);
    assert_error(&answer, 400, "invalid_request_error", None);
}

/// A media server that accepts connections and never answers; and one that is not there.
#[test]
fn unreachable_and_slow_media_urls_time_out_with_400s() {
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}/slow.png", silent.local_addr().unwrap());
    let held = std::thread::spawn(move || {
        let (mut connection, _) = silent.accept().unwrap();
        let mut buffer = [0; 1024];
        // Read the request, then say nothing until the client gives up.
        let _ = connection.read(&mut buffer);
        let _ = connection.set_read_timeout(Some(Duration::from_secs(10)));
        let _ = connection.read(&mut buffer);
    });
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_url = format!("http://{}/gone.png", closed.local_addr().unwrap());
    drop(closed);

    let mut config = test_config();
    config.media_policy.allow_private_network = true;
    config.media_policy.total_timeout = Duration::from_secs(1);
    config.media_policy.read_timeout = Duration::from_secs(1);
    let server = start_server(config);
    let url = format!("{}/v1/chat/completions", server.base_url());

    let started = Instant::now();
    let answer = post(&url, &image_request(&silent_url));
    assert_error(&answer, 400, "invalid_request_error", None);
    assert_eq!(answer.1["error"]["code"], "media_timeout", "{}", answer.1);
    assert!(started.elapsed() < Duration::from_secs(8));
    held.join().unwrap();

    let answer = post(&url, &image_request(&closed_url));
    assert_error(&answer, 400, "invalid_request_error", None);
    assert_eq!(
        answer.1["error"]["code"], "media_unavailable",
        "{}",
        answer.1
    );
}

#[test]
fn oversized_bodies_get_413() {
    let server = start_server(ServerConfig {
        max_body_bytes: 4096,
        ..test_config()
    });
    let url = format!("{}/v1/chat/completions", server.base_url());
    let body = json!({"messages": user(&"x".repeat(5000))}).to_string();
    let (status, _, text) = call_raw("POST", &url, Some(body), None);
    let answer = (status, serde_json::from_str(&text).unwrap());
    assert_error(&answer, 413, "invalid_request_error", None);
    // The server is still fine afterwards.
    let (status, _) = post(&url, &json!({"messages": user("hi"), "max_tokens": 1}));
    assert_eq!(status, 200);
}

#[test]
fn prompts_over_the_context_get_400s() {
    let keye = Keye::load(
        tiny_model_dir().to_str().unwrap(),
        &LoadOptions {
            max_context: Some(64),
            ..LoadOptions::default()
        },
    )
    .unwrap();
    let server = ServerHandle::spawn(Arc::new(keye), test_config()).unwrap();
    let url = format!("{}/v1/chat/completions", server.base_url());

    let long = post(&url, &json!({"messages": user(&"many words ".repeat(100))}));
    assert_error(&long, 400, "invalid_request_error", Some("messages"));
    assert_eq!(long.1["error"]["code"], "context_length_exceeded");

    let greedy = post(&url, &json!({"messages": user("hi"), "max_tokens": 1000}));
    assert_error(&greedy, 400, "invalid_request_error", Some("max_tokens"));
    assert_eq!(greedy.1["error"]["code"], "context_length_exceeded");

    // Without max_tokens the answer is cut to the room left in the context.
    let (status, answer) = post(
        &url,
        &json!({"messages": user("hi"), "temperature": 0, "ignore_eos": true}),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["usage"]["total_tokens"], 64);
    assert_eq!(answer["choices"][0]["finish_reason"], "length");
}

#[test]
fn kv_budget_bounds_a_request() {
    let server = start_server(ServerConfig {
        max_kv_tokens: Some(100),
        ..test_config()
    });
    let url = format!("{}/v1/chat/completions", server.base_url());
    let answer = post(&url, &json!({"messages": user("hi"), "max_tokens": 500}));
    assert_error(&answer, 400, "invalid_request_error", Some("max_tokens"));
    let (status, _) = post(&url, &json!({"messages": user("hi"), "max_tokens": 10}));
    assert_eq!(status, 200);
}

#[test]
fn unknown_routes_and_methods() {
    let server = start_server(test_config());
    let base = server.base_url();
    let missing = call("GET", &format!("{base}/v1/completions/nope"), None, None);
    assert_error(&missing, 404, "invalid_request_error", None);
    let wrong_method = call("GET", &format!("{base}/v1/chat/completions"), None, None);
    assert_error(&wrong_method, 405, "invalid_request_error", None);
}

/// Garbage on the socket is answered or dropped; the server keeps serving.
#[test]
fn malformed_http_does_not_hurt_the_server() {
    let server = start_server(test_config());
    for garbage in [
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..],
        b"GET / HTTP/9.9\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ] {
        let mut connection = std::net::TcpStream::connect(server.local_addr()).unwrap();
        connection
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        connection.write_all(garbage).unwrap();
        let mut reply = Vec::new();
        let _ = connection.read_to_end(&mut reply);
        let reply = String::from_utf8_lossy(&reply);
        assert!(
            reply.is_empty() || reply.starts_with("HTTP/1.1 4"),
            "{reply}"
        );
    }
    let (status, _) = call("GET", &format!("{}/health", server.base_url()), None, None);
    assert_eq!(status, 200);
}
