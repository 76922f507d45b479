//! Answers against the reference: greedy text and token counts equal the fixtures', streamed or
//! not, alone or batched with other requests.

use keye::{Flow, GenerationOptions, Request, TokenEvent};
use keye_chat::{Message, ThinkingMode};
use serde_json::{Value, json};

use crate::common::*;

const CASES: [&str; 6] = [
    "text_only",
    "image_224x168",
    "image_tiny_30x40",
    "two_images",
    "no_think",
    "video_mp4_scenecut",
];

fn check_completion(name: &str, case: &Case, body: &Value) {
    assert_eq!(body["object"], "chat.completion", "{name}: {body}");
    assert_eq!(body["model"], MODEL_NAME);
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    let choice = &body["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(
        choice["message"]["content"], case.expected_text,
        "{name}: greedy text"
    );
    assert!(choice["message"]["reasoning_content"].is_null(), "{name}");
    assert_eq!(choice["finish_reason"], "length", "{name}");
    assert_eq!(body["usage"]["prompt_tokens"], case.prompt_tokens, "{name}");
    assert_eq!(body["usage"]["completion_tokens"], 16, "{name}");
    assert_eq!(
        body["usage"]["total_tokens"],
        case.prompt_tokens + 16,
        "{name}"
    );
}

fn check_stream(name: &str, case: &Case, streamed: &Streamed) {
    assert!(streamed.done, "{name}: no [DONE]");
    assert!(streamed.error().is_none(), "{name}: {:?}", streamed.error());
    let first = &streamed.chunks[0];
    assert_eq!(first["object"], "chat.completion.chunk");
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(
        streamed.content(),
        case.expected_text,
        "{name}: streamed text"
    );
    assert_eq!(streamed.reasoning(), "", "{name}");
    assert_eq!(
        streamed.finish_reason().as_deref(),
        Some("length"),
        "{name}"
    );
    let usage = streamed.usage().expect("usage chunk");
    assert_eq!(usage["prompt_tokens"], case.prompt_tokens, "{name}");
    assert_eq!(usage["completion_tokens"], 16, "{name}");
    // Every chunk before the usage chunk carries `usage: null`.
    let (last, rest) = streamed.chunks.split_last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert!(
        rest.iter()
            .all(|c| c["usage"].is_null() && c.get("usage").is_some())
    );
}

#[test]
fn greedy_answers_match_the_reference() {
    let server = start_server(test_config());
    let url = format!("{}/v1/chat/completions", server.base_url());
    for name in CASES {
        let case = case(name);
        let (status, body) = post(&url, &greedy_request(&case));
        assert_eq!(status, 200, "{name}: {body}");
        check_completion(name, &case, &body);
    }
}

#[test]
fn streamed_answers_match_the_reference() {
    let server = start_server(test_config());
    let url = format!("{}/v1/chat/completions", server.base_url());
    for name in CASES {
        let case = case(name);
        let mut body = greedy_request(&case);
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
        check_stream(name, &case, &stream(&url, &body));
    }
}

/// Every case twice (streamed and not) at the same time: sequences decoded in one batch keep
/// their own answers.
#[test]
fn concurrent_requests_share_the_batch_and_keep_their_answers() {
    let server = start_server(test_config());
    let url = format!("{}/v1/chat/completions", server.base_url());
    std::thread::scope(|scope| {
        for name in CASES {
            for streamed in [false, true] {
                let url = &url;
                scope.spawn(move || {
                    let case = case(name);
                    let mut body = greedy_request(&case);
                    if streamed {
                        body["stream"] = json!(true);
                        body["stream_options"] = json!({"include_usage": true});
                        check_stream(name, &case, &stream(url, &body));
                    } else {
                        let (status, answer) = post(url, &body);
                        assert_eq!(status, 200, "{name}: {answer}");
                        check_completion(name, &case, &answer);
                    }
                });
            }
        }
    });
    let text = metrics(&server.base_url());
    assert_eq!(metric(&text, "keye_requests_total{status=\"200\"}"), 12.0);
    assert_eq!(metric(&text, "keye_completion_tokens_total"), 192.0);
    assert_eq!(metric(&text, "keye_running_sequences"), 0.0);
    assert_eq!(metric(&text, "keye_queue_depth"), 0.0);
    assert_eq!(
        metric(&text, "keye_time_to_first_token_seconds_count"),
        12.0
    );
    // 15 decode steps after each first token.
    assert_eq!(
        metric(&text, "keye_time_per_output_token_seconds_count"),
        180.0
    );
}

#[test]
fn stop_strings_cut_the_answer() {
    let server = start_server(test_config());
    let url = format!("{}/v1/chat/completions", server.base_url());
    let case = case("image_224x168");
    let stop = " eles";
    let cut = case
        .expected_text
        .find(stop)
        .expect("stop occurs in the reference");
    let mut body = greedy_request(&case);
    body["stop"] = json!([stop, "never appears"]);
    let (status, answer) = post(&url, &body);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["choices"][0]["message"]["content"],
        case.expected_text[..cut]
    );
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");

    body["stream"] = json!(true);
    let streamed = stream(&url, &body);
    assert_eq!(streamed.content(), case.expected_text[..cut]);
    assert_eq!(streamed.finish_reason().as_deref(), Some("stop"));
}

/// A sampled answer with a seed equals the library's own answer for the same request (what
/// `keye run` prints).
#[test]
fn seeded_sampling_matches_the_library() {
    let keye = tiny_model();
    let mut request = Request::new(vec![Message::user("Tell me a story about a boat.")]);
    request.generation = GenerationOptions {
        max_new_tokens: Some(24),
        temperature: Some(0.9),
        top_p: Some(0.9),
        top_k: Some(50),
        seed: Some(1234),
        repetition_penalty: Some(1.1),
        frequency_penalty: Some(0.4),
        presence_penalty: Some(0.3),
        ..GenerationOptions::default()
    };
    let mut streamed = String::new();
    let expected = keye
        .generate(&request, &mut |event: &TokenEvent| {
            streamed.push_str(&event.text);
            Flow::Continue
        })
        .unwrap();
    let split = keye_chat::split_reasoning(&expected.text);

    let server = start_server(test_config());
    let url = format!("{}/v1/chat/completions", server.base_url());
    let (status, answer) = post(
        &url,
        &json!({
            "messages": [{"role": "user", "content": "Tell me a story about a boat."}],
            "max_tokens": 24,
            "temperature": 0.9,
            "top_p": 0.9,
            "top_k": 50,
            "seed": 1234,
            "repetition_penalty": 1.1,
            "frequency_penalty": 0.4,
            "presence_penalty": 0.3,
        }),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["choices"][0]["message"]["content"], split.answer);
    assert_eq!(
        answer["usage"]["completion_tokens"],
        expected.usage.completion_tokens
    );
    assert_eq!(
        answer["choices"][0]["finish_reason"],
        expected.finish_reason.as_str()
    );
}

/// `enable_thinking` appends Keye's in-band switch to the last user turn.
#[test]
fn thinking_switches_change_the_prompt() {
    let keye = tiny_model();
    let prompt_tokens = |thinking| {
        let mut request = Request::new(vec![Message::user("Is the sky blue?")]);
        request.thinking = thinking;
        keye.prepare(&request).unwrap().input_ids.len() as u64
    };
    let server = start_server(test_config());
    let url = format!("{}/v1/chat/completions", server.base_url());
    let ask = |extra: Value| {
        let mut body = json!({
            "messages": [{"role": "user", "content": "Is the sky blue?"}],
            "max_tokens": 2,
            "temperature": 0,
        });
        for (key, value) in extra.as_object().unwrap() {
            body[key] = value.clone();
        }
        let (status, answer) = post(&url, &body);
        assert_eq!(status, 200, "{answer}");
        answer["usage"]["prompt_tokens"].as_u64().unwrap()
    };
    let auto = prompt_tokens(ThinkingMode::Auto);
    let no_think = prompt_tokens(ThinkingMode::NoThink);
    let think = prompt_tokens(ThinkingMode::Think);
    assert_ne!(auto, no_think);
    assert_eq!(ask(json!({})), auto);
    assert_eq!(
        ask(json!({"chat_template_kwargs": {"enable_thinking": false}})),
        no_think
    );
    assert_eq!(ask(json!({"enable_thinking": true})), think);
}

#[test]
fn models_health_and_page() {
    let server = start_server(test_config());
    let base = server.base_url();
    let (status, models) = call("GET", &format!("{base}/v1/models"), None, None);
    assert_eq!(status, 200);
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], MODEL_NAME);
    assert_eq!(models["data"][0]["object"], "model");
    let (status, model) = call("GET", &format!("{base}/v1/models/{MODEL_NAME}"), None, None);
    assert_eq!(status, 200);
    assert_eq!(model["id"], MODEL_NAME);
    let missing = call("GET", &format!("{base}/v1/models/other"), None, None);
    assert_error(&missing, 404, "invalid_request_error", Some("model"));

    let (status, health) = call("GET", &format!("{base}/health"), None, None);
    assert_eq!((status, health), (200, json!({"status": "ok"})));

    let (status, headers, page) = call_raw("GET", &format!("{base}/"), None, None);
    assert_eq!(status, 200);
    assert!(
        headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("content-type") && v.starts_with("text/html"))
    );
    assert!(page.contains("id=\"composer\"") && page.contains("/v1/chat/completions"));
}
