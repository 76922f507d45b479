//! The messages.json format.

use keye_chat::{
    ChatError, Content, ImagePart, Message, MessagesFile, Part, VideoPart, VideoSource,
    parse_messages,
};
use keye_media::{ImageOptions, VideoOptions};
use serde_json::json;

use crate::fixtures;

#[test]
fn fixture_file_with_video_options() {
    let path = fixtures().join("cases/keye-preview-tiny/video_mp4_scenecut/messages.json");
    let file = MessagesFile::load(&path).unwrap();
    assert_eq!(
        file.messages,
        vec![Message::user(vec![
            Part::Video(VideoPart {
                source: VideoSource::File("inputs/scenecut_320x240_8fps_16f.mp4".into()),
                options: VideoOptions {
                    min_pixels: Some(12544),
                    max_pixels: Some(25088),
                    ..VideoOptions::default()
                },
            }),
            Part::Text("Describe the video. Is there a scene change?".into()),
        ])]
    );
    assert_eq!(
        file.resolve("inputs/a.png"),
        path.parent()
            .unwrap()
            .join("inputs/a.png")
            .to_string_lossy()
    );
    assert_eq!(file.resolve("/abs/a.png"), "/abs/a.png");
    assert_eq!(file.resolve("https://x/a.png"), "https://x/a.png");
    assert_eq!(
        file.resolve("data:image/png;base64,AAAA"),
        "data:image/png;base64,AAAA"
    );
}

#[test]
fn all_part_spellings() {
    let messages = parse_messages(
        r#"[
          {"role": "system", "content": "Be brief."},
          {"role": "user", "content": [
            {"type": "image", "image": "a.png", "min_pixels": 3136, "max_pixels": 94080.0},
            {"type": "image_url", "image_url": {"url": "https://x/b.jpg"}},
            {"type": "image_url", "image_url": "c.png"},
            {"image": "d.png"},
            {"type": "video", "video": ["f0.png", "f1.png"], "fps": 1.5},
            {"type": "video_url", "video_url": {"url": "https://x/v.mp4"}},
            {"text": "untyped text"},
            {"type": "text", "text": "What is this?"}
          ]},
          {"role": "assistant", "content": null,
           "tool_calls": [{"function": {"name": "f", "arguments": {}}}]}
        ]"#,
    )
    .unwrap();
    let image = |source: &str, options| {
        Part::Image(ImagePart {
            source: source.into(),
            options,
        })
    };
    let mut assistant = Message::assistant("");
    assistant.extra.insert(
        "tool_calls".into(),
        json!([{"function": {"name": "f", "arguments": {}}}]),
    );
    assert_eq!(
        messages,
        vec![
            Message::system("Be brief."),
            Message::user(vec![
                image(
                    "a.png",
                    ImageOptions {
                        min_pixels: Some(3136),
                        max_pixels: Some(94080),
                        ..ImageOptions::default()
                    }
                ),
                image("https://x/b.jpg", ImageOptions::default()),
                image("c.png", ImageOptions::default()),
                image("d.png", ImageOptions::default()),
                Part::Video(VideoPart {
                    source: VideoSource::Frames(vec!["f0.png".into(), "f1.png".into()]),
                    options: VideoOptions {
                        fps: Some(1.5),
                        ..VideoOptions::default()
                    },
                }),
                Part::Video(VideoPart {
                    source: VideoSource::File("https://x/v.mp4".into()),
                    options: VideoOptions::default(),
                }),
                Part::Text("untyped text".into()),
                Part::Text("What is this?".into()),
            ]),
            assistant,
        ]
    );
}

#[test]
fn openai_request_object_is_accepted() {
    let messages =
        parse_messages(r#"{"model": "keye", "messages": [{"role": "user", "content": "hi"}]}"#)
            .unwrap();
    assert_eq!(messages, vec![Message::user("hi")]);
}

#[test]
fn template_shape_is_the_hugging_face_shape() {
    let mut message = Message::user(vec![
        Part::Image(ImagePart {
            source: "a.png".into(),
            options: ImageOptions {
                max_pixels: Some(100),
                ..ImageOptions::default()
            },
        }),
        Part::Video(VideoPart {
            source: VideoSource::Frames(vec!["f.png".into()]),
            options: VideoOptions {
                fps: Some(2.0),
                ..VideoOptions::default()
            },
        }),
        Part::Text("hi".into()),
    ]);
    message.extra.insert("name".into(), json!("bob"));
    assert_eq!(
        message.to_template_value(),
        json!({
            "role": "user",
            "content": [
                {"type": "image", "image": "a.png", "max_pixels": 100},
                {"type": "video", "video": ["f.png"], "fps": 2.0},
                {"type": "text", "text": "hi"}
            ],
            "name": "bob"
        })
    );
    assert_eq!(
        Message::assistant("ok").to_template_value(),
        json!({"role": "assistant", "content": "ok"})
    );
}

fn error_of(json: &str) -> (String, String) {
    match parse_messages(json).unwrap_err() {
        ChatError::InvalidMessages {
            location, reason, ..
        } => (location, reason),
        other => panic!("unexpected error {other}"),
    }
}

#[test]
fn invalid_messages_name_the_location() {
    let (location, reason) = error_of(r#"[{"role": "user", "content": [{"type": "audio"}]}]"#);
    assert_eq!(location, "$[0].content[0].type");
    assert!(
        reason.contains("unknown content part type \"audio\""),
        "{reason}"
    );

    let (location, _) = error_of(r#"[{"role": "user", "content": "a"}, {"content": "b"}]"#);
    assert_eq!(location, "$[1]");

    let (location, _) = error_of(r#"[{"role": "user", "content": [{"type": "image"}]}]"#);
    assert_eq!(location, "$[0].content[0]");

    let (location, _) =
        error_of(r#"[{"role": "user", "content": [{"type": "video", "video": [1]}]}]"#);
    assert_eq!(location, "$[0].content[0].video[0]");

    let (location, reason) = error_of(
        r#"[{"role": "user", "content": [{"type": "image", "image": "a", "max_pixels": -1}]}]"#,
    );
    assert_eq!(location, "$[0].content[0]");
    assert!(reason.contains("invalid option"), "{reason}");

    let (location, _) = error_of(r#"[{"role": "user", "content": 3}]"#);
    assert_eq!(location, "$[0].content");

    let (location, _) = error_of(r#"{"role": "user"}"#);
    assert_eq!(location, "$");

    assert!(matches!(
        parse_messages("[{\"role\": "),
        Err(ChatError::Json { file: None, .. })
    ));
}

#[test]
fn file_errors_carry_the_file_path() {
    let dir = std::env::temp_dir().join(format!("keye-chat-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("messages.json");

    std::fs::write(
        &path,
        r#"[{"role": "user", "content": [{"type": "audio"}]}]"#,
    )
    .unwrap();
    let error = MessagesFile::load(&path).unwrap_err();
    assert!(matches!(&error, ChatError::InvalidMessages { file: Some(file), .. } if *file == path));
    assert!(error.to_string().contains("messages.json"), "{error}");

    std::fs::write(&path, "not json").unwrap();
    let error = MessagesFile::load(&path).unwrap_err();
    assert!(matches!(&error, ChatError::Json { file: Some(file), .. } if *file == path));

    let missing = dir.join("missing.json");
    assert!(matches!(
        MessagesFile::load(&missing),
        Err(ChatError::Io { path, .. }) if path == missing
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn content_helpers() {
    let content = Content::Parts(vec![
        Part::Text("a".into()),
        Part::Image(ImagePart {
            source: "x.png".into(),
            options: ImageOptions::default(),
        }),
    ]);
    assert_eq!(content.images().count(), 1);
    assert_eq!(content.videos().count(), 0);
    assert_eq!(Content::from("t").images().count(), 0);
}
