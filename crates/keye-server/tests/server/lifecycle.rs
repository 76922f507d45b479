//! Queueing, disconnects, timeouts and shutdown.

use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use keye_server::ServerConfig;
use serde_json::{Value, json};

use crate::common::*;

/// A request that would run for a long time: thousands of tokens, end-of-sequence ignored.
fn long_request(stream: bool) -> Value {
    json!({
        "messages": [{"role": "user", "content": "Count to a million."}],
        "max_tokens": 30000,
        "ignore_eos": true,
        "stream": stream,
        "stream_options": if stream { json!({"include_usage": true}) } else { Value::Null },
    })
}

fn short_request() -> Value {
    json!({
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 4,
        "temperature": 0,
    })
}

/// Opens a long stream and waits for its first token.
fn start_long_stream(url: &str) -> impl BufRead + use<> {
    let mut reader = open_stream(url, &long_request(true));
    let opening = next_data(&mut reader).expect("opening chunk");
    assert!(opening.contains("\"role\":\"assistant\""), "{opening}");
    reader
}

/// With one batch slot and one queue place, a third request is refused with 503 and
/// Retry-After; a client that disconnects frees its slot for the queued request at once.
#[test]
fn full_queue_answers_503_and_disconnects_free_slots() {
    let server = start_server(ServerConfig {
        max_running: 1,
        max_queue: 1,
        ..test_config()
    });
    let base = server.base_url();
    let url = format!("{base}/v1/chat/completions");

    let long = start_long_stream(&url);
    wait_for_metrics(&base, Duration::from_secs(10), |m| {
        metric(m, "keye_running_sequences") == 1.0
    });
    let queued = {
        let url = url.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let answer = post(&url, &short_request());
            (answer, started.elapsed())
        })
    };
    wait_for_metrics(&base, Duration::from_secs(10), |m| {
        metric(m, "keye_queue_depth") == 1.0
    });

    let (status, headers, text) = call_raw("POST", &url, Some(short_request().to_string()), None);
    let refused = (status, serde_json::from_str::<Value>(&text).unwrap());
    assert_error(&refused, 503, "server_overloaded", None);
    assert!(
        headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("retry-after") && v == "1"),
        "{headers:?}"
    );

    let dropped = Instant::now();
    drop(long);
    let ((status, answer), waited) = queued.join().unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["usage"]["completion_tokens"], 4);
    // The long request had ~30000 tokens to go; the queued one ran as soon as its client left.
    assert!(
        dropped.elapsed() < Duration::from_secs(5),
        "slot freed after {:?} (queued request waited {waited:?})",
        dropped.elapsed()
    );
    wait_for_metrics(&base, Duration::from_secs(5), |m| {
        metric(m, "keye_running_sequences") == 0.0 && metric(m, "keye_queue_depth") == 0.0
    });
    let text = metrics(&base);
    assert_eq!(metric(&text, "keye_requests_total{status=\"503\"}"), 1.0);
    assert_eq!(metric(&text, "keye_kv_tokens_reserved"), 0.0);
}

/// A non-streamed request whose client leaves is dropped from the batch too.
#[test]
fn disconnected_waiting_clients_leave_the_batch() {
    let server = start_server(test_config());
    let base = server.base_url();
    let mut connection = TcpStream::connect(server.local_addr()).unwrap();
    let body = long_request(false).to_string();
    write!(
        connection,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    wait_for_metrics(&base, Duration::from_secs(10), |m| {
        metric(m, "keye_running_sequences") == 1.0
    });
    drop(connection);
    wait_for_metrics(&base, Duration::from_secs(5), |m| {
        metric(m, "keye_running_sequences") == 0.0
    });
}

#[test]
fn requests_time_out_with_408() {
    let server = start_server(ServerConfig {
        request_timeout: Duration::from_millis(500),
        ..test_config()
    });
    let url = format!("{}/v1/chat/completions", server.base_url());
    let started = Instant::now();
    let answer = post(&url, &long_request(false));
    assert_error(&answer, 408, "timeout_error", None);
    assert!(started.elapsed() < Duration::from_secs(5));

    let streamed = stream(&url, &long_request(true));
    assert!(streamed.done);
    let error = streamed.error().expect("an error event ends the stream");
    assert_eq!(error["type"], "timeout_error");
    assert!(streamed.finish_reason().is_none());
}

/// Idle connections are closed; a body that does not arrive gets 408.
#[test]
fn idle_connections_and_slow_bodies_are_cut() {
    let server = start_server(ServerConfig {
        idle_timeout: Duration::from_millis(400),
        ..test_config()
    });
    let read_all = |mut connection: TcpStream| {
        connection
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let started = Instant::now();
        let mut reply = Vec::new();
        connection.read_to_end(&mut reply).unwrap();
        (
            String::from_utf8_lossy(&reply).into_owned(),
            started.elapsed(),
        )
    };

    let silent = TcpStream::connect(server.local_addr()).unwrap();
    let (reply, waited) = read_all(silent);
    assert!(
        reply.is_empty() || reply.starts_with("HTTP/1.1 408"),
        "{reply}"
    );
    assert!(waited < Duration::from_secs(5), "{waited:?}");

    let mut slow = TcpStream::connect(server.local_addr()).unwrap();
    slow.write_all(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\n{\"mess",
    )
    .unwrap();
    let (reply, waited) = read_all(slow);
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.contains("timeout_error"), "{reply}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");

    // A keep-alive connection is closed once it idles after its response.
    let mut kept = TcpStream::connect(server.local_addr()).unwrap();
    kept.write_all(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    let (reply, waited) = read_all(kept);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
}

/// On shutdown running streams finish within the grace period, then the server stops.
#[test]
fn shutdown_lets_running_streams_finish() {
    let server = start_server(ServerConfig {
        shutdown_timeout: Duration::from_secs(60),
        ..test_config()
    });
    let address = server.local_addr();
    let url = format!("{}/v1/chat/completions", server.base_url());
    let mut body = long_request(true);
    body["max_tokens"] = json!(1500);
    let mut reader = open_stream(&url, &body);
    next_data(&mut reader).expect("opening chunk");

    let stopping = std::thread::spawn(move || server.shutdown());
    let streamed = read_stream(reader);
    assert!(streamed.done);
    assert!(streamed.error().is_none(), "{:?}", streamed.error());
    assert_eq!(streamed.finish_reason().as_deref(), Some("length"));
    assert_eq!(streamed.usage().unwrap()["completion_tokens"], 1500);
    stopping.join().unwrap().unwrap();
    assert!(TcpStream::connect(address).is_err(), "still listening");
}

/// Past the grace period, running streams are ended with an error event.
#[test]
fn shutdown_cancels_streams_after_the_grace_period() {
    let server = start_server(ServerConfig {
        shutdown_timeout: Duration::from_millis(200),
        ..test_config()
    });
    let url = format!("{}/v1/chat/completions", server.base_url());
    let reader = start_long_stream(&url);
    let started = Instant::now();
    let stopping = std::thread::spawn(move || server.shutdown());
    let streamed = read_stream(reader);
    assert!(streamed.done);
    assert_eq!(
        streamed.error().expect("an error event")["type"],
        "server_shutting_down"
    );
    stopping.join().unwrap().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
}
