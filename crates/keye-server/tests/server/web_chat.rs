//! The chat page end to end in headless Chromium (Debian's `chromium` and `chromium-driver`,
//! driven by the `selenium` Python package; `.ci/run` installs them).

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::common::*;
use crate::openai_client::{clients_dir, require_python_module};

fn require_program(program: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|output| output.status.success());
    assert!(
        found,
        "this test needs `{program}`: apt-get install {package} (.ci/run installs it)"
    );
}

#[test]
fn chat_page_streams_an_answer_about_an_attached_image() {
    require_program("chromium", "chromium");
    require_program("chromedriver", "chromium-driver");
    require_python_module("selenium", "pip install selenium");
    let server = start_server(test_config());
    let base = server.base_url();
    let case_dir = fixtures().join("cases/keye-preview-tiny/image_224x168");
    let output = Command::new("python3")
        .arg(clients_dir().join("web_chat.py"))
        .arg(&base)
        .arg(MODEL_NAME)
        .arg(
            case_dir
                .join("inputs/img_224x168.png")
                .canonicalize()
                .unwrap(),
        )
        .arg("Describe this image in detail.")
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "web_chat.py failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();

    // The page sends the same conversation as the fixture case, so the greedy answer is the
    // reference's.
    assert_eq!(report["state"], "done", "{report}");
    assert_eq!(
        report["answer"],
        case("image_224x168").expected_text,
        "{report}"
    );
    assert!(report["user_has_image"].as_bool().unwrap());
    let stats = report["stats"].as_str().unwrap();
    assert!(
        stats.starts_with("16 tokens · ") && stats.contains("tokens/s"),
        "{stats}"
    );

    assert!(report["streaming_text_seen"].as_u64().unwrap() > 0);
    assert_eq!(report["stop_visible"], true);
    assert_eq!(report["stopped_state"], "done", "{report}");
    assert!(
        report["stopped_stats"]
            .as_str()
            .unwrap()
            .ends_with("· stopped"),
        "{report}"
    );
    assert_eq!(report["console_errors"], serde_json::json!([]), "{report}");
    // Stopping in the page frees the server's batch slot.
    wait_for_metrics(&base, Duration::from_secs(5), |m| {
        metric(m, "keye_running_sequences") == 0.0
    });
}
