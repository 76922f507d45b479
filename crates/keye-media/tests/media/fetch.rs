//! Sources and policy: paths, `file://`, `data:`, `http://` against a local test server.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::thread::JoinHandle;
use std::time::Duration;

use keye_media::{
    Generation, MediaError, MediaPolicy, MediaSource, fetch_bytes, is_public, load_image,
};

use crate::common::data_dir;

fn png_bytes() -> Vec<u8> {
    std::fs::read(data_dir().join("png_rgba.png")).unwrap()
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn parses_sources_like_keye_vl_utils() {
    assert_eq!(
        MediaSource::parse("a/b.png").unwrap(),
        MediaSource::Path("a/b.png")
    );
    assert_eq!(
        MediaSource::parse("file:///a/b.png").unwrap(),
        MediaSource::Path("/a/b.png")
    );
    assert_eq!(
        MediaSource::parse("file://rel.png").unwrap(),
        MediaSource::Path("rel.png")
    );
    assert_eq!(
        MediaSource::parse("HTTPS://example.com/x").unwrap(),
        MediaSource::Remote("HTTPS://example.com/x")
    );
    assert_eq!(
        MediaSource::parse("data:image/png;base64,AAAA").unwrap(),
        MediaSource::Data("AAAA")
    );
    assert!(matches!(
        MediaSource::parse("ftp://host/x.png"),
        Err(MediaError::UnsupportedScheme { scheme, .. }) if scheme == "ftp"
    ));
    assert!(matches!(
        MediaSource::parse("data:image/png,rawbytes"),
        Err(MediaError::InvalidDataUrl { .. })
    ));
}

#[test]
fn local_paths_resolve_against_the_base_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("inputs")).unwrap();
    let file = dir.path().join("inputs/img.png");
    std::fs::write(&file, png_bytes()).unwrap();
    let policy = MediaPolicy::default();

    assert_eq!(
        fetch_bytes("inputs/img.png", Some(dir.path()), &policy).unwrap(),
        png_bytes()
    );
    assert_eq!(
        fetch_bytes("file://inputs/img.png", Some(dir.path()), &policy).unwrap(),
        png_bytes()
    );
    let absolute = format!("file://{}", file.display());
    assert!(absolute.starts_with("file:///"));
    assert_eq!(fetch_bytes(&absolute, None, &policy).unwrap(), png_bytes());
    // An absolute path ignores the base directory.
    let elsewhere = tempfile::tempdir().unwrap();
    assert_eq!(
        fetch_bytes(file.to_str().unwrap(), Some(elsewhere.path()), &policy).unwrap(),
        png_bytes()
    );

    let image = load_image(
        "inputs/img.png",
        Some(dir.path()),
        &policy,
        Generation::V1_5,
    )
    .unwrap();
    assert_eq!((image.width(), image.height()), (17, 13));
}

#[test]
fn missing_files_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let err = fetch_bytes("nope.png", Some(dir.path()), &MediaPolicy::default()).unwrap_err();
    match &err {
        MediaError::Io { path, error } => {
            assert_eq!(path, &dir.path().join("nope.png"));
            assert_eq!(error.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected Io, got {other:?}"),
    }
    assert!(err.to_string().contains("nope.png"), "{err}");
}

#[test]
fn data_urls_are_decoded_leniently() {
    let encoded = base64(&png_bytes());
    // Line breaks and spaces inside the payload, as pasted from a terminal.
    let wrapped: String = encoded
        .as_bytes()
        .chunks(20)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join("\n ");
    let url = format!("data:image/png;base64,{wrapped}");
    assert_eq!(
        fetch_bytes(&url, None, &MediaPolicy::default()).unwrap(),
        png_bytes()
    );
    // keye-vl-utils' own example prefix.
    let url = format!("data:image;base64,{}", encoded.trim_end_matches('='));
    let image = load_image(&url, None, &MediaPolicy::default(), Generation::Preview).unwrap();
    assert_eq!(image.width(), 17);

    for empty in [
        "data:image/png;base64,",
        "data:image/png;base64,  \n",
        "data:image/png;base64,==",
    ] {
        assert!(matches!(
            fetch_bytes(empty, None, &MediaPolicy::default()),
            Err(MediaError::InvalidDataUrl { .. })
        ));
    }
    let small = MediaPolicy {
        max_bytes: 100,
        ..MediaPolicy::default()
    };
    assert!(matches!(
        fetch_bytes(&format!("data:image/png;base64,{encoded}"), None, &small),
        Err(MediaError::SourceTooLarge {
            limit_bytes: 100,
            ..
        })
    ));
}

#[test]
fn policy_refuses_local_files_outside_the_root() {
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("ok.png"), png_bytes()).unwrap();
    std::fs::write(outside.path().join("secret.png"), png_bytes()).unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("secret.png"),
        root.path().join("link.png"),
    )
    .unwrap();
    let policy = MediaPolicy {
        local_root: Some(root.path().to_owned()),
        ..MediaPolicy::default()
    };

    assert_eq!(
        fetch_bytes("ok.png", Some(root.path()), &policy).unwrap(),
        png_bytes()
    );
    let escape = format!(
        "../{}/secret.png",
        outside.path().file_name().unwrap().to_str().unwrap()
    );
    for source in [escape.as_str(), "link.png"] {
        let err = fetch_bytes(source, Some(root.path()), &policy).unwrap_err();
        assert!(
            matches!(&err, MediaError::PolicyRefused { reason, .. } if reason.contains("outside")),
            "{source}: {err:?}"
        );
    }
    let absolute = outside.path().join("secret.png");
    assert!(matches!(
        fetch_bytes(absolute.to_str().unwrap(), None, &policy),
        Err(MediaError::PolicyRefused { .. })
    ));

    let no_files = MediaPolicy::strict();
    assert!(matches!(
        fetch_bytes("ok.png", Some(root.path()), &no_files),
        Err(MediaError::PolicyRefused { .. })
    ));
    let tiny = MediaPolicy {
        max_bytes: 10,
        ..MediaPolicy::default()
    };
    assert!(matches!(
        fetch_bytes("ok.png", Some(root.path()), &tiny),
        Err(MediaError::SourceTooLarge { .. })
    ));
}

#[test]
fn non_public_addresses() {
    for ip in [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "0.0.0.0",
        "100.64.0.1",
        "::1",
        "fe80::1",
        "fd00::1",
        "::ffff:192.168.0.1",
    ] {
        assert!(!is_public(ip.parse::<IpAddr>().unwrap()), "{ip}");
    }
    for ip in ["8.8.8.8", "1.1.1.1", "2606:4700::1111"] {
        assert!(is_public(ip.parse::<IpAddr>().unwrap()), "{ip}");
    }
}

#[test]
fn strict_policy_refuses_private_urls_before_connecting() {
    // Refused while resolving, so nothing is sent to these addresses.
    for url in [
        "http://10.0.0.1/x.png",
        "http://192.168.0.10:8080/x.png",
        "http://127.0.0.1:9/x.png",
        "http://[::1]:9/x.png",
    ] {
        let err = fetch_bytes(url, None, &MediaPolicy::strict()).unwrap_err();
        assert!(
            matches!(&err, MediaError::PolicyRefused { reason, .. } if reason.contains("non-public")),
            "{url}: {err:?}"
        );
    }
    let no_remote = MediaPolicy {
        allow_remote: false,
        ..MediaPolicy::default()
    };
    assert!(matches!(
        fetch_bytes("http://10.0.0.1/x.png", None, &no_remote),
        Err(MediaError::PolicyRefused { .. })
    ));
}

/// Serves one canned response per connection on 127.0.0.1, for `responses.len()` connections.
/// `hold` keeps each connection open (silently) that long before answering.
pub(crate) fn serve(responses: Vec<Vec<u8>>, hold: Duration) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        for response in responses {
            let (mut stream, _) = listener.accept().unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            std::thread::sleep(hold);
            let _ = stream.write_all(&response);
        }
    });
    (address, handle)
}

pub(crate) fn http_response(status: &str, body: &[u8]) -> Vec<u8> {
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: image/png\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(body);
    response
}

#[test]
fn http_sources_are_fetched() {
    let (address, server) = serve(
        vec![
            http_response("200 OK", &png_bytes()),
            http_response("200 OK", &png_bytes()),
            http_response("404 Not Found", b"missing"),
            http_response("200 OK", &png_bytes()),
        ],
        Duration::ZERO,
    );
    let url = format!("http://{address}/img.png");
    let policy = MediaPolicy::default();
    assert_eq!(fetch_bytes(&url, None, &policy).unwrap(), png_bytes());
    let image = load_image(&url, None, &policy, Generation::V1_5).unwrap();
    assert_eq!((image.width(), image.height()), (17, 13));

    let err = fetch_bytes(&url, None, &policy).unwrap_err();
    assert!(
        matches!(&err, MediaError::Http { reason, .. } if reason.contains("404")),
        "{err:?}"
    );
    let small = MediaPolicy {
        max_bytes: 50,
        ..MediaPolicy::default()
    };
    assert!(matches!(
        fetch_bytes(&url, None, &small),
        Err(MediaError::SourceTooLarge {
            limit_bytes: 50,
            ..
        })
    ));
    server.join().unwrap();
}

#[test]
fn hanging_servers_time_out() {
    let (address, server) = serve(
        vec![http_response("200 OK", &png_bytes())],
        Duration::from_secs(2),
    );
    let policy = MediaPolicy {
        read_timeout: Duration::from_millis(300),
        ..MediaPolicy::default()
    };
    let started = std::time::Instant::now();
    let err = fetch_bytes(&format!("http://{address}/slow.png"), None, &policy).unwrap_err();
    assert!(matches!(err, MediaError::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_millis(1900));
    server.join().unwrap();
}

#[test]
fn error_messages_name_the_source() {
    let err = fetch_bytes("gopher://old.example/x", None, &MediaPolicy::default()).unwrap_err();
    assert!(err.to_string().contains("gopher://old.example/x"), "{err}");
    let long = format!("data:image/png;base64,{}", "A".repeat(10_000));
    let err = load_image(&long, None, &MediaPolicy::default(), Generation::V1_5).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("data:image/png;base64,AAA") && message.len() < 400,
        "{message}"
    );
}

#[test]
fn trickling_servers_hit_the_total_limit() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut buf = [0u8; 1024];
        let _ = stream.read(&mut buf);
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n");
        // One byte every 50 ms: never idle long enough for the read timeout.
        for _ in 0..30 {
            if stream.write_all(b"x").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let policy = MediaPolicy {
        read_timeout: Duration::from_secs(1),
        total_timeout: Duration::from_millis(400),
        ..MediaPolicy::default()
    };
    let err = fetch_bytes(&format!("http://{address}/trickle"), None, &policy).unwrap_err();
    assert!(matches!(err, MediaError::Timeout { .. }), "{err:?}");
    server.join().unwrap();
}
