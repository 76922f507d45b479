//! Chat template rendering: the real Qwen3 text template of Keye-VL-8B-Preview's
//! `tokenizer_config.json` with expected strings written from the template's logic, and the
//! jinja2 behaviours transformers relies on.

use keye_chat::{ChatError, ChatTemplate, Message, RenderOptions};
use serde_json::json;

use crate::{fixtures, real_model_dir};

fn qwen3() -> ChatTemplate {
    ChatTemplate::from_tokenizer_config(real_model_dir().join("tokenizer_config.json"), None)
        .unwrap()
}

fn options(add_generation_prompt: bool, kwargs: serde_json::Value) -> RenderOptions {
    RenderOptions {
        add_generation_prompt,
        add_vision_id: false,
        kwargs: kwargs.as_object().cloned().unwrap_or_default(),
    }
}

#[test]
fn qwen3_single_turn() {
    let messages = [Message::user("Hi")];
    assert_eq!(
        qwen3()
            .render(&messages, &options(true, json!({})))
            .unwrap(),
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn qwen3_enable_thinking_false_closes_an_empty_think_block() {
    let messages = [Message::user("Hi")];
    assert_eq!(
        qwen3()
            .render(&messages, &options(true, json!({"enable_thinking": false})))
            .unwrap(),
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    );
    // Only `false` itself switches thinking off.
    assert_eq!(
        qwen3()
            .render(&messages, &options(true, json!({"enable_thinking": true})))
            .unwrap(),
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn qwen3_multi_turn_drops_old_reasoning() {
    let messages = [
        Message::system("Be brief."),
        Message::user("2+2?"),
        Message::assistant("<think>\nadd\n</think>\n\n4"),
        Message::user("3+3?"),
    ];
    assert_eq!(
        qwen3()
            .render(&messages, &options(true, json!({})))
            .unwrap(),
        "<|im_start|>system\nBe brief.<|im_end|>\n\
         <|im_start|>user\n2+2?<|im_end|>\n\
         <|im_start|>assistant\n4<|im_end|>\n\
         <|im_start|>user\n3+3?<|im_end|>\n\
         <|im_start|>assistant\n"
    );
}

#[test]
fn qwen3_keeps_reasoning_after_the_last_query() {
    let mut with_field = Message::assistant("7");
    with_field
        .extra
        .insert("reasoning_content".into(), json!("\nthree plus four\n"));
    let cases = [
        (
            Message::assistant("<think>\nR\n</think>\n\nA"),
            "<|im_start|>assistant\n<think>\nR\n</think>\n\nA<|im_end|>\n",
        ),
        (
            with_field,
            "<|im_start|>assistant\n<think>\nthree plus four\n</think>\n\n7<|im_end|>\n",
        ),
    ];
    for (assistant, rendered_turn) in cases {
        let messages = [Message::user("Q"), assistant];
        assert_eq!(
            qwen3()
                .render(&messages, &options(false, json!({})))
                .unwrap(),
            format!("<|im_start|>user\nQ<|im_end|>\n{rendered_turn}")
        );
    }
}

#[test]
fn qwen3_tools_and_tool_calls() {
    let tool = json!({
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Météo <now> & 'later'",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                "required": ["city"]
            }
        }
    });
    let mut call = Message::assistant("");
    call.extra.insert(
        "tool_calls".into(),
        json!([{"type": "function", "function": {"name": "get_weather",
                "arguments": {"city": "Zürich", "days": 2, "scale": 1.5}}}]),
    );
    let messages = [
        Message::system("SYS"),
        Message::user("Weather?"),
        call,
        Message::new("tool", "{\"temp\": 21}".into()),
    ];
    let rendered = qwen3()
        .render(&messages, &options(true, json!({"tools": [tool]})))
        .unwrap();
    let expected = concat!(
        "<|im_start|>system\nSYS\n\n# Tools\n\nYou may call one or more functions to assist ",
        "with the user query.\n\nYou are provided with function signatures within ",
        "<tools></tools> XML tags:\n<tools>\n",
        r#"{"type": "function", "function": {"name": "get_weather", "description": "#,
        r#""Météo <now> & 'later'", "parameters": {"type": "object", "properties": "#,
        r#"{"city": {"type": "string"}, "days": {"type": "integer"}}, "required": ["city"]}}}"#,
        "\n</tools>\n\nFor each function call, return a json object with function name and ",
        "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n",
        r#"{"name": <function-name>, "arguments": <args-json-object>}"#,
        "\n</tool_call><|im_end|>\n",
        "<|im_start|>user\nWeather?<|im_end|>\n",
        "<|im_start|>assistant\n<tool_call>\n",
        r#"{"name": "get_weather", "arguments": {"city": "Zürich", "days": 2, "scale": 1.5}}"#,
        "\n</tool_call><|im_end|>\n",
        "<|im_start|>user\n<tool_response>\n{\"temp\": 21}\n</tool_response><|im_end|>\n",
        "<|im_start|>assistant\n",
    );
    assert_eq!(rendered, expected);
}

#[test]
fn processor_template_prefers_chat_template_json_and_numbers_visuals() {
    let template = ChatTemplate::from_model_dir(real_model_dir()).unwrap();
    let messages = keye_chat::parse_messages(
        r#"[{"role": "system", "content": "S"},
            {"role": "user", "content": [
              {"type": "image", "image": "a.png"},
              {"type": "video", "video": "v.mp4"},
              {"type": "image_url", "image_url": {"url": "b.png"}},
              {"type": "text", "text": "Compare."}]}]"#,
    )
    .unwrap();
    let rendered = template
        .render(
            &messages,
            &RenderOptions {
                add_generation_prompt: true,
                add_vision_id: true,
                ..RenderOptions::default()
            },
        )
        .unwrap();
    assert_eq!(
        rendered,
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\n\
         Picture 1: <|vision_start|><|image_pad|><|vision_end|>\
         Video 1: <|vision_start|><|video_pad|><|vision_end|>\
         Picture 2: <|vision_start|><|image_pad|><|vision_end|>Compare.<|im_end|>\n\
         <|im_start|>assistant\n"
    );
}

#[test]
fn tokenizer_config_only_folder_uses_its_template_and_special_tokens() {
    let dir = std::env::temp_dir().join(format!("keye-chat-template-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("tokenizer_config.json"),
        r#"{"eos_token": {"content": "</s>"}, "bos_token": "<s>", "pad_token": null,
            "chat_template": [
              {"name": "default", "template": "{{ bos_token }}{{ messages[0].content }}{{ eos_token }}|{{ pad_token is defined }}"},
              {"name": "tool_use", "template": "tools"}]}"#,
    )
    .unwrap();
    let template = ChatTemplate::from_model_dir(&dir).unwrap();
    let rendered = template
        .render(&[Message::user("x")], &RenderOptions::default())
        .unwrap();
    assert_eq!(rendered, "<s>x</s>|False");
    let tool_use =
        ChatTemplate::from_tokenizer_config(dir.join("tokenizer_config.json"), Some("tool_use"))
            .unwrap();
    assert_eq!(
        tool_use.render(&[], &RenderOptions::default()).unwrap(),
        "tools"
    );
    assert!(matches!(
        ChatTemplate::from_tokenizer_config(dir.join("tokenizer_config.json"), Some("nope")),
        Err(ChatError::InvalidTemplateConfig { .. })
    ));

    std::fs::write(dir.join("tokenizer_config.json"), "{}").unwrap();
    assert!(matches!(
        ChatTemplate::from_model_dir(&dir),
        Err(ChatError::NoChatTemplate { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

fn render(source: &str, kwargs: serde_json::Value) -> Result<String, ChatError> {
    ChatTemplate::new(source)?.render(&[], &options(false, kwargs))
}

#[test]
fn jinja2_whitespace_control() {
    // trim_blocks removes the newline after a block tag, lstrip_blocks the indentation before
    // it; the single trailing newline of the source is dropped.
    let source = "<ul>\n  {% for x in items %}\n  <li>{{ x }}</li>\n  {% endfor %}\n</ul>\n";
    assert_eq!(
        render(source, json!({"items": [1, 2]})).unwrap(),
        "<ul>\n  <li>1</li>\n  <li>2</li>\n</ul>"
    );
    assert_eq!(
        render("a\n  {%- if true %}b{% endif %}", json!({})).unwrap(),
        "ab"
    );
}

#[test]
fn python_printing_of_values() {
    assert_eq!(
        render(
            "{{ none }}|{{ true }}|{{ 1.0 }}|{{ 1e20 }}|{{ 3 }}|{{ [1, 'a', none] }}|{{ x }}|{{ undefined_name }}|",
            json!({"x": {"k": [true, 0.5], "q": "it's"}})
        )
        .unwrap(),
        "None|True|1.0|1e+20|3|[1, 'a', None]|{'k': [True, 0.5], 'q': \"it's\"}||"
    );
}

#[test]
fn tojson_is_pythons_json_dumps() {
    let value = json!({"b": [1, 2.5, "é<&>'\"\n\u{1}"], "a": {}, "c": [], "d": null, "e": true});
    assert_eq!(
        render("{{ v | tojson }}", json!({"v": value})).unwrap(),
        r#"{"b": [1, 2.5, "é<&>'\"\n\u0001"], "a": {}, "c": [], "d": null, "e": true}"#
    );
    assert_eq!(
        render(
            "{{ v | tojson(indent=2) }}",
            json!({"v": {"a": [1, {"b": null}], "c": {}}})
        )
        .unwrap(),
        "{\n  \"a\": [\n    1,\n    {\n      \"b\": null\n    }\n  ],\n  \"c\": {}\n}"
    );
    assert_eq!(
        render(
            "{{ v | tojson(sort_keys=true, separators=[',', ':']) }}",
            json!({"v": {"b": 1, "a": [1, 2]}})
        )
        .unwrap(),
        r#"{"a":[1,2],"b":1}"#
    );
    assert_eq!(
        render("{{ v | tojson(ensure_ascii=true) }}", json!({"v": "é😀"})).unwrap(),
        r#""\u00e9\ud83d\ude00""#
    );
    assert_eq!(
        render("{{ 1e16 | tojson }} {{ 0.1 | tojson }}", json!({})).unwrap(),
        "1e+16 0.1"
    );
}

#[test]
fn python_string_methods_and_loop_controls() {
    assert_eq!(
        render(
            "{% for i in range(10) %}{% if i == 1 %}{% continue %}{% endif %}\
             {% if i == 4 %}{% break %}{% endif %}{{ i }}{% endfor %}|\
             {{ s.startswith('ab') }}|{{ s.split('b')[-1] }}|{{ '\n x \n'.strip('\n') }}|\
             {{ messages | length }}",
            json!({"s": "abcbd"})
        )
        .unwrap(),
        "023|True|d| x |0"
    );
}

#[test]
fn raise_exception_and_strftime_now() {
    let error = render(
        "{{ raise_exception('Only user and assistant roles!') }}",
        json!({}),
    )
    .unwrap_err();
    assert!(matches!(error, ChatError::Template { .. }));
    assert!(
        error.to_string().contains("Only user and assistant roles!"),
        "{error}"
    );

    let year = render("{{ strftime_now('%Y') }}", json!({})).unwrap();
    assert_eq!(year.len(), 4);
    assert!(year.starts_with('2'), "{year}");
    assert!(render("{{ strftime_now('%Q') }}", json!({})).is_err());
}

#[test]
fn syntax_errors_are_reported() {
    assert!(matches!(
        ChatTemplate::new("{% for %}"),
        Err(ChatError::Template { .. })
    ));
}

#[test]
fn tiny_model_folders_load_the_processor_template() {
    for model in ["keye-preview-tiny", "keye-1.5-tiny"] {
        let template = ChatTemplate::from_model_dir(fixtures().join("models").join(model));
        assert!(template.is_ok(), "{model}");
    }
}
