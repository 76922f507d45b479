//! Load test and concurrency figures, loopback only; stops by itself.
//!
//! `cargo bench -p keye-server --bench load` on the tiny fixture model:
//! 1. 64 concurrent streaming clients send 1000 requests, a quarter of them malformed or
//!    cancelled mid-stream; every valid request must get exactly one complete answer equal to
//!    the reference's, no 5xx, and the process's RSS must come back to its baseline;
//! 2. requests/s, p50/p99 time to first token and tokens/s at concurrency 1, 4, 16 and 64.
//!
//! With `KEYE_BENCH_MODEL=<checkpoint folder>` only the figures at concurrency 1 and 4 are
//! measured, on that model. For the full-size random-weight model, link `keye bench`'s
//! checkpoint files and `tests/fixtures/keye-vl-8b-preview/*` (tokenizer, chat template,
//! generation and preprocessor configs) into one folder.

// The test helpers are shared with the integration tests; this program uses a subset.
#[allow(dead_code)]
#[path = "../tests/server/common.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use keye::Keye;
use keye_server::{ServerConfig, ServerHandle};
use serde_json::{Value, json};

use common::*;

fn main() {
    match std::env::var_os("KEYE_BENCH_MODEL") {
        Some(dir) => {
            let keye = Arc::new(Keye::from_dir(std::path::Path::new(&dir)).unwrap());
            let server = ServerHandle::spawn(keye, bench_config(4)).unwrap();
            println!("model: {}", dir.to_string_lossy());
            sweep(&server.base_url(), &[(1, 2), (4, 8)], 32);
        }
        None => {
            load_test();
            let server = start_server(bench_config(64));
            println!("model: tiny fixture (keye-preview-tiny)");
            sweep(
                &server.base_url(),
                &[(1, 64), (4, 128), (16, 256), (64, 512)],
                64,
            );
        }
    }
}

fn bench_config(max_running: usize) -> ServerConfig {
    ServerConfig {
        max_running,
        max_queue: 256,
        request_timeout: Duration::from_secs(3600),
        ..test_config()
    }
}

/// Resident memory once the allocator has handed its free pages back: glibc keeps freed memory
/// of busy threads' arenas mapped, which would hide whether the server's own memory came back.
fn settled_rss_bytes() -> u64 {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: glibc's malloc_trim only releases free heap pages; it is thread-safe.
        unsafe {
            malloc_trim(0);
        }
    }
    rss_bytes()
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// What one simulated client does with one request.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Valid,
    Malformed,
    Cancelled,
}

fn kind_of(index: usize) -> Kind {
    match index % 8 {
        0 => Kind::Malformed,
        4 => Kind::Cancelled,
        _ => Kind::Valid,
    }
}

fn malformed_body(index: usize) -> String {
    match index / 8 % 5 {
        0 => "{\"messages\": [".to_owned(),
        1 => json!({"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"})
            .to_string(),
        2 => {
            json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}).to_string()
        }
        3 => json!({"messages": []}).to_string(),
        _ => json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,!!!"}},
        ]}]})
        .to_string(),
    }
}

fn load_test() {
    const CLIENTS: usize = 64;
    const REQUESTS: usize = 1000;
    let cases: Vec<(Value, String)> = ["text_only", "image_224x168", "no_think", "two_images"]
        .iter()
        .map(|name| {
            let case = case(name);
            let mut body = greedy_request(&case);
            body["stream"] = json!(true);
            body["stream_options"] = json!({"include_usage": true});
            (body, case.expected_text)
        })
        .collect();

    let server = start_server(bench_config(64));
    let base = server.base_url();
    let url = format!("{base}/v1/chat/completions");
    // A smaller round of the same mix first: the baseline is the idle server after every code
    // path (and the runtime's worker and blocking threads) has run once.
    load_round(&url, &base, &cases, CLIENTS, 256);
    std::thread::sleep(Duration::from_millis(500));
    let baseline = settled_rss_bytes();

    // Two rounds: RSS must come back to the baseline after each, and not creep between them.
    let mut previous = baseline;
    for round in 1..=2 {
        let after = load_round(&url, &base, &cases, CLIENTS, REQUESTS);
        println!(
            "  round {round}: settled RSS {:.1} MiB before the load, {:.1} MiB after",
            baseline as f64 / 1048576.0,
            after as f64 / 1048576.0,
        );
        let allowed = baseline + baseline / 20 + (4 << 20);
        assert!(
            after <= allowed,
            "RSS did not return to its baseline: {baseline} -> {after} bytes"
        );
        assert!(
            round == 1 || after <= previous + (2 << 20),
            "RSS creeps between rounds: {previous} -> {after} bytes"
        );
        previous = after;
    }
    server.shutdown().unwrap();
}

/// One load round; returns the RSS once the server is idle again.
fn load_round(
    url: &str,
    base: &str,
    cases: &[(Value, String)],
    clients: usize,
    requests: usize,
) -> u64 {
    let complete = AtomicUsize::new(0);
    let refused = AtomicUsize::new(0);
    let cancelled = AtomicUsize::new(0);
    let started = Instant::now();
    run_clients(clients, requests, |i| match kind_of(i) {
        Kind::Valid => {
            let (body, expected) = &cases[i % cases.len()];
            let streamed = stream(url, body);
            assert!(streamed.done, "request {i}: no [DONE]");
            assert!(
                streamed.error().is_none(),
                "request {i}: {:?}",
                streamed.error()
            );
            assert_eq!(&streamed.content(), expected, "request {i}");
            assert_eq!(streamed.finish_reason().as_deref(), Some("length"));
            let finishes = streamed
                .chunks
                .iter()
                .filter(|c| !c["choices"][0]["finish_reason"].is_null())
                .count();
            assert_eq!(finishes, 1, "request {i}: one answer, finished once");
            complete.fetch_add(1, Ordering::Relaxed);
        }
        Kind::Malformed => {
            let (status, _, text) = call_raw("POST", url, Some(malformed_body(i)), None);
            assert!((400..500).contains(&status), "request {i}: {status} {text}");
            let error: Value = serde_json::from_str(&text).unwrap();
            assert!(error["error"]["message"].is_string());
            refused.fetch_add(1, Ordering::Relaxed);
        }
        Kind::Cancelled => {
            let mut body = cases[i % cases.len()].0.clone();
            body["max_tokens"] = json!(5000);
            body["ignore_eos"] = json!(true);
            let mut reader = open_stream(url, &body);
            for _ in 0..3 {
                next_data(&mut reader).expect("a few chunks before cancelling");
            }
            drop(reader);
            cancelled.fetch_add(1, Ordering::Relaxed);
        }
    });
    let elapsed = started.elapsed();
    wait_for_metrics(base, Duration::from_secs(10), |m| {
        metric(m, "keye_running_sequences") == 0.0 && metric(m, "keye_queue_depth") == 0.0
    });
    let text = metrics(base);
    let server_errors: f64 = text
        .lines()
        .filter(|l| l.starts_with("keye_requests_total{status=\"5"))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap())
        .sum();
    assert_eq!(server_errors, 0.0, "5xx answers:\n{text}");
    std::thread::sleep(Duration::from_millis(500));
    let untrimmed = rss_bytes();
    let after = settled_rss_bytes();
    let complete = complete.into_inner();
    let (refused, cancelled) = (refused.into_inner(), cancelled.into_inner());
    assert_eq!(complete + refused + cancelled, requests);
    println!(
        "load test: {requests} requests from {clients} clients in {:.1} s: {complete} complete \
         answers (all equal to the reference), {refused} malformed refused with 4xx, {cancelled} \
         cancelled mid-stream; 0 5xx; RSS {:.1} MiB before the allocator's trim",
        elapsed.as_secs_f64(),
        untrimmed as f64 / 1048576.0,
    );
    after
}

/// Runs `total` jobs on `clients` threads, each taking the next job index.
fn run_clients(clients: usize, total: usize, job: impl Fn(usize) + Sync) {
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..clients {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    job(i);
                }
            });
        }
    });
}

/// For each (concurrency, requests): requests/s, time to first token and tokens/s of greedy
/// streamed answers of `max_tokens` tokens.
fn sweep(base: &str, levels: &[(usize, usize)], max_tokens: usize) {
    let url = format!("{base}/v1/chat/completions");
    let body = json!({
        "messages": [{"role": "user", "content": "Write a long story about the sea."}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": true,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    // One request first, so the first level does not pay for warm-up.
    assert!(stream(&url, &body).done);
    println!("concurrency  requests  requests/s  TTFT p50 (ms)  TTFT p99 (ms)  tokens/s");
    for &(clients, requests) in levels {
        let first_tokens = std::sync::Mutex::new(Vec::with_capacity(requests));
        let tokens = AtomicUsize::new(0);
        let started = Instant::now();
        run_clients(clients, requests, |_| {
            let sent = Instant::now();
            let mut reader = open_stream(&url, &body);
            // The opening chunk is sent once the first token has been sampled.
            next_data(&mut reader).expect("opening chunk");
            let first_token = sent.elapsed();
            let streamed = read_stream(&mut reader);
            assert!(streamed.done && streamed.error().is_none());
            let generated = streamed.usage().unwrap()["completion_tokens"]
                .as_u64()
                .unwrap();
            tokens.fetch_add(generated as usize, Ordering::Relaxed);
            first_tokens.lock().unwrap().push(first_token);
        });
        let elapsed = started.elapsed().as_secs_f64();
        let mut first_tokens = first_tokens.into_inner().unwrap();
        first_tokens.sort();
        let percentile = |p: f64| {
            let index = ((first_tokens.len() - 1) as f64 * p).round() as usize;
            first_tokens[index].as_secs_f64() * 1e3
        };
        println!(
            "{clients:>11}  {requests:>8}  {:>10.2}  {:>13.1}  {:>13.1}  {:>8.1}",
            requests as f64 / elapsed,
            percentile(0.5),
            percentile(0.99),
            tokens.into_inner() as f64 / elapsed,
        );
    }
}
