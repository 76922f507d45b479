//! Hub ids resolve through a real `hf-hub` download from a local server that speaks the hub's
//! file protocol, then load offline from the cache.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use keye::{HubOptions, Keye, LoadOptions};

fn tiny_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/models/keye-preview-tiny")
}

/// Serves `dir` as `/{repo}/resolve/main/{file}` with ranges, ETag and X-Repo-Commit headers.
fn serve(dir: PathBuf, repo: &'static str) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let mut range: Option<(usize, Option<usize>)> = None;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line.trim().is_empty() {
                    break;
                }
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                    let (first, last) = value.trim().split_once('-').unwrap();
                    range = Some((first.parse().unwrap(), last.parse().ok()));
                }
            }
            let path = request_line.split_whitespace().nth(1).unwrap_or("");
            let file = path
                .strip_prefix(&format!("/{repo}/resolve/main/"))
                .map(|f| dir.join(f))
                .filter(|f| f.is_file());
            let response = match file.map(|f| std::fs::read(f).unwrap()) {
                None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_vec(),
                Some(body) => {
                    let (first, last) = range.unwrap_or((0, None));
                    let last = last.unwrap_or(body.len() - 1).min(body.len() - 1);
                    let part = &body[first..=last];
                    let mut out = format!(
                        "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {first}-{last}/{}\r\nETag: \"{:x}\"\r\nX-Repo-Commit: 0123456789abcdef0123456789abcdef01234567\r\nConnection: close\r\n\r\n",
                        part.len(),
                        body.len(),
                        fnv(&body)
                    )
                    .into_bytes();
                    out.extend_from_slice(part);
                    out
                }
            };
            let _ = stream.write_all(&response);
        }
    });
    (url, requests)
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

fn options(endpoint: Option<String>, cache: &Path, offline: bool) -> LoadOptions {
    LoadOptions {
        hub: HubOptions {
            endpoint,
            token: None,
            cache_dir: Some(cache.to_owned()),
            offline,
            revision: None,
            progress: false,
        },
        ..LoadOptions::default()
    }
}

#[test]
fn hub_id_downloads_once_then_loads_offline() {
    let cache = tempfile::tempdir().unwrap();
    let (url, requests) = serve(tiny_model(), "test-org/keye-tiny");

    let keye = Keye::load(
        "test-org/keye-tiny",
        &options(Some(url.clone()), cache.path(), false),
    )
    .unwrap();
    assert_eq!(keye.model().config().model_type, "Keye");
    assert!(
        keye.model_dir().starts_with(cache.path()),
        "{}",
        keye.model_dir().display()
    );
    let after_download = requests.load(Ordering::SeqCst);
    assert!(after_download > 0);

    // Everything needed is cached now: offline loading works and asks the server nothing.
    Keye::load(
        "test-org/keye-tiny",
        &options(Some(url), cache.path(), true),
    )
    .unwrap();
    assert_eq!(requests.load(Ordering::SeqCst), after_download);
}

#[test]
fn offline_without_cache_names_the_missing_file() {
    let cache = tempfile::tempdir().unwrap();
    let error = Keye::load("test-org/absent", &options(None, cache.path(), true))
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("config.json") && error.contains("HF_HUB_OFFLINE"),
        "{error}"
    );
}

#[test]
fn unknown_repository_is_a_clear_error() {
    let cache = tempfile::tempdir().unwrap();
    let (url, _) = serve(tiny_model(), "test-org/keye-tiny");
    let error = Keye::load("test-org/other", &options(Some(url), cache.path(), false))
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("test-org/other") && error.contains("config.json"),
        "{error}"
    );
}

#[test]
fn a_path_that_is_neither_folder_nor_hub_id_is_reported() {
    let error = Keye::load("./no/such/model/folder", &LoadOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("no such folder"), "{error}");
}
