//! Shared fixtures: a stub OpenAI-compatible server on loopback and tiny VLMEvalKit datasets.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

/// What the stub answers to one request.
pub enum Reply {
    Answer(String),
    Status(u16),
    Garbage,
    /// Sleep this long, then answer (longer than the client timeout: a timeout).
    Hang(Duration),
}

type Handler = dyn Fn(&Value) -> Reply + Send + Sync;

/// A chat-completions server on 127.0.0.1 that records every request body.
pub struct StubServer {
    pub url: String,
    pub requests: Arc<Mutex<Vec<Value>>>,
    stop: Arc<AtomicBool>,
    address: String,
    thread: Option<JoinHandle<()>>,
}

impl StubServer {
    pub fn start(handler: impl Fn(&Value) -> Reply + Send + Sync + 'static) -> StubServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let address = listener.local_addr().unwrap().to_string();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let thread = {
            let (requests, stop) = (requests.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (requests, handler) = (requests.clone(), handler.clone());
                    std::thread::spawn(move || serve(stream, &requests, handler.as_ref()));
                }
            })
        };
        StubServer {
            url: format!("http://{address}/v1"),
            requests,
            stop,
            address,
            thread: Some(thread),
        }
    }

    pub fn request_count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

impl Drop for StubServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.address);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(stream: TcpStream, requests: &Mutex<Vec<Value>>, handler: &Handler) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut content_length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            content_length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; content_length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    requests.lock().unwrap().push(request.clone());
    let (status, body) = match handler(&request) {
        Reply::Answer(text) => (200, completion(&text)),
        Reply::Status(code) => (code, "{\"error\":\"stub failure\"}".to_string()),
        Reply::Garbage => (200, "<html>definitely not JSON".to_string()),
        Reply::Hang(duration) => {
            std::thread::sleep(duration);
            (200, completion("too late"))
        }
    };
    let mut stream = stream;
    let response = format!(
        "HTTP/1.1 {status} Stub\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes());
}

fn completion(text: &str) -> String {
    json!({"id": "stub", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]})
        .to_string()
}

/// All text parts of the last message of a chat request, concatenated.
pub fn prompt_text(request: &Value) -> String {
    let Some(last) = request["messages"].as_array().and_then(|m| m.last()) else {
        return String::new();
    };
    match &last["content"] {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// The `image_url` URLs of the last message.
pub fn image_urls(request: &Value) -> Vec<String> {
    request["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_array())
        .map(|parts| {
            parts
                .iter()
                .filter_map(|p| p["image_url"]["url"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The `Options:` block of an MCQ prompt as (letter, text) pairs.
pub fn prompt_options(prompt: &str) -> Vec<(char, String)> {
    let Some(block) = prompt.split("Options:\n").nth(1) else {
        return Vec::new();
    };
    block
        .lines()
        .filter_map(|line| {
            let (letter, text) = line.split_once(". ")?;
            let letter = letter
                .chars()
                .next()
                .filter(|c| c.is_ascii_uppercase() && letter.len() == 1)?;
            Some((letter, text.to_string()))
        })
        .collect()
}

pub fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A 4×3 RGBA PNG whose every pixel is (10, 200, 30) with alpha 0: VLMEvalKit drops alpha, so the
/// materialised image must be green, not white.
pub fn rgba_png() -> Vec<u8> {
    let image = image::RgbaImage::from_pixel(4, 3, image::Rgba([10, 200, 30, 0]));
    let mut out = Vec::new();
    image::DynamicImage::ImageRgba8(image)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// A 2×2 palette PNG (red, blue, red, blue) with a transparent palette entry.
pub fn palette_png() -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, 2, 2);
        encoder.set_color(png::ColorType::Indexed);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_palette(vec![255u8, 0, 0, 0, 0, 255]);
        encoder.set_trns(vec![0u8, 255]);
        let mut writer = encoder.write_header().unwrap();
        writer.write_image_data(&[0, 1, 0, 1]).unwrap();
    }
    out
}

/// A plain RGB PNG of one colour.
pub fn rgb_png(colour: [u8; 3]) -> Vec<u8> {
    let image = image::RgbImage::from_pixel(8, 8, image::Rgb(colour));
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(image)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// Writes a TSV from a header and rows (cells are written as given: tests quote where needed).
pub fn write_tsv(path: &Path, header: &[&str], rows: &[Vec<String>]) {
    let mut text = header.join("\t");
    text.push('\n');
    for row in rows {
        text.push_str(&row.join("\t"));
        text.push('\n');
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}
