//! API key and local media confinement.

use serde_json::json;

use keye_server::ServerConfig;

use crate::common::*;

#[test]
fn api_key_guards_everything_but_health_and_the_page() {
    let server = start_server(ServerConfig {
        api_key: Some("s3cret".into()),
        ..test_config()
    });
    let base = server.base_url();
    let chat = json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1});
    for key in [None, Some("wrong"), Some("s3cret2"), Some("")] {
        for (method, path, body) in [
            ("GET", "/v1/models", None),
            ("GET", "/metrics", None),
            ("POST", "/v1/chat/completions", Some(&chat)),
        ] {
            let answer = call(method, &format!("{base}{path}"), body, key);
            assert_error(&answer, 401, "invalid_request_error", None);
            assert_eq!(answer.1["error"]["code"], "invalid_api_key");
        }
    }
    let key = Some("s3cret");
    assert_eq!(call("GET", &format!("{base}/v1/models"), None, key).0, 200);
    assert_eq!(call("GET", &format!("{base}/metrics"), None, key).0, 200);
    let (status, answer) = call(
        "POST",
        &format!("{base}/v1/chat/completions"),
        Some(&chat),
        key,
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(call("GET", &format!("{base}/health"), None, None).0, 200);
    assert_eq!(call_raw("GET", &format!("{base}/"), None, None).0, 200);
}

/// Local media is read only inside `--allowed-local-media-path`: relative, absolute and
/// `file://` sources inside work and give the reference answer; `..` and symlinks that leave
/// the folder are refused.
#[test]
fn local_media_is_confined_to_the_allowed_folder() {
    let case_dir = fixtures().join("cases/keye-preview-tiny/image_224x168");
    let root = tempfile::tempdir().unwrap();
    let allowed = root.path().join("allowed");
    std::fs::create_dir(&allowed).unwrap();
    std::fs::copy(
        case_dir.join("inputs/img_224x168.png"),
        allowed.join("img.png"),
    )
    .unwrap();
    std::fs::copy(
        case_dir.join("inputs/img_224x168.png"),
        root.path().join("outside.png"),
    )
    .unwrap();
    std::os::unix::fs::symlink(root.path().join("outside.png"), allowed.join("link.png")).unwrap();

    let mut config = test_config();
    config.media_policy.allow_local_files = true;
    config.media_policy.local_root = Some(allowed.canonicalize().unwrap());
    let server = start_server(config);
    let url = format!("{}/v1/chat/completions", server.base_url());

    let reference = case("image_224x168");
    let request = |source: &str| {
        json!({
            "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": source}},
                {"type": "text", "text": "Describe this image in detail."},
            ]}],
            "max_tokens": 16,
            "temperature": 0,
        })
    };
    let absolute = allowed.join("img.png").display().to_string();
    for source in [
        "img.png".to_owned(),
        absolute.clone(),
        format!("file://{absolute}"),
    ] {
        let (status, answer) = post(&url, &request(&source));
        assert_eq!(status, 200, "{source}: {answer}");
        assert_eq!(
            answer["choices"][0]["message"]["content"],
            reference.expected_text
        );
    }
    let outside = root.path().join("outside.png").display().to_string();
    for source in [
        "../outside.png".to_owned(),
        "link.png".to_owned(),
        outside.clone(),
        format!("file://{outside}"),
        "/etc/passwd".to_owned(),
    ] {
        let answer = post(&url, &request(&source));
        assert_error(
            &answer,
            400,
            "invalid_request_error",
            Some("messages[0].content[0]"),
        );
        assert_eq!(answer.1["error"]["code"], "media_not_allowed", "{source}");
    }
    let missing = post(&url, &request("nope.png"));
    assert_error(&missing, 400, "invalid_request_error", None);
    assert!(
        !missing.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains(root.path().to_str().unwrap()),
        "the server's folders stay private: {}",
        missing.1
    );
}
