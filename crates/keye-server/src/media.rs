//! Media of a request, checked and read before the request is queued: counts against the
//! server's limits, sources against the media policy, and every image inlined so that the
//! batching engine never waits on a slow URL or disk.

use base64::Engine as _;
use keye_chat::{Content, Message, Part, VideoSource};
use keye_media::{MediaPolicy, MediaSource};

use crate::config::ServerConfig;
use crate::error::{ApiError, media_error};

/// Refuses requests with more images or videos than the server allows.
pub(crate) fn check_counts(messages: &[Message], config: &ServerConfig) -> Result<(), ApiError> {
    let images: usize = messages.iter().map(|m| m.content.images().count()).sum();
    let videos: usize = messages.iter().map(|m| m.content.videos().count()).sum();
    if images > config.max_images_per_request {
        return Err(ApiError::invalid_param(
            "messages",
            format!(
                "The request has {images} images; this server accepts at most {}.",
                config.max_images_per_request
            ),
        )
        .with_code("too_many_images"));
    }
    if videos > config.max_videos_per_request {
        return Err(ApiError::invalid_param(
            "messages",
            format!(
                "The request has {videos} videos; this server accepts at most {}.",
                config.max_videos_per_request
            ),
        )
        .with_code("too_many_videos"));
    }
    Ok(())
}

/// Reads every image and video frame under `policy` and replaces its source by an inline
/// `data:` URL; local video files are replaced by their confined absolute path. Relative local
/// paths are relative to the allowed media folder. Blocks on disk and network.
pub(crate) fn inline_media(messages: &mut [Message], policy: &MediaPolicy) -> Result<(), ApiError> {
    let base_dir = policy.local_root.as_deref();
    for (m, message) in messages.iter_mut().enumerate() {
        let Content::Parts(parts) = &mut message.content else {
            continue;
        };
        for (p, part) in parts.iter_mut().enumerate() {
            let location = || format!("messages[{m}].content[{p}]");
            match part {
                Part::Text(_) => {}
                Part::Image(image) => {
                    inline_image(&mut image.source, policy, base_dir)
                        .map_err(|error| error.with_param(location()))?;
                }
                Part::Video(video) => match &mut video.source {
                    VideoSource::Frames(frames) => {
                        for frame in frames {
                            inline_image(frame, policy, base_dir)
                                .map_err(|error| error.with_param(location()))?;
                        }
                    }
                    VideoSource::File(source) => {
                        confine_video(source, policy, base_dir)
                            .map_err(|error| error.with_param(location()))?;
                    }
                },
            }
        }
    }
    Ok(())
}

fn inline_image(
    source: &mut String,
    policy: &MediaPolicy,
    base_dir: Option<&std::path::Path>,
) -> Result<(), ApiError> {
    // Inline data is decoded (and size-checked) when the prompt is prepared.
    if matches!(MediaSource::parse(source), Ok(MediaSource::Data(_))) {
        return Ok(());
    }
    let bytes = keye_media::fetch_bytes(source, base_dir, policy).map_err(media_error)?;
    let mut inline = String::with_capacity(40 + bytes.len().div_ceil(3) * 4);
    inline.push_str("data:application/octet-stream;base64,");
    base64::engine::general_purpose::STANDARD.encode_string(&bytes, &mut inline);
    *source = inline;
    Ok(())
}

fn confine_video(
    source: &mut String,
    policy: &MediaPolicy,
    base_dir: Option<&std::path::Path>,
) -> Result<(), ApiError> {
    match MediaSource::parse(source).map_err(media_error)? {
        MediaSource::Path(path) => {
            let resolved =
                keye_media::resolve_local_path(path, base_dir, policy).map_err(media_error)?;
            let resolved = resolved.to_str().ok_or_else(|| {
                ApiError::invalid("The video path does not resolve to a UTF-8 path.")
            })?;
            *source = resolved.to_owned();
        }
        MediaSource::Remote(_) if !policy.allow_remote => {
            return Err(media_error(keye_media::MediaError::PolicyRefused {
                source_desc: keye_media::describe_source(source),
                reason: "remote media URLs are disabled on this server".into(),
            }));
        }
        MediaSource::Remote(_) | MediaSource::Data(_) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use keye_chat::ImagePart;

    use super::*;

    fn image_message(source: &str) -> Vec<Message> {
        vec![Message::user(vec![
            Part::Text("look".into()),
            Part::Image(ImagePart {
                source: source.into(),
                options: Default::default(),
            }),
        ])]
    }

    fn source_of(messages: &[Message]) -> &str {
        let Content::Parts(parts) = &messages[0].content else {
            unreachable!()
        };
        let Part::Image(image) = &parts[1] else {
            unreachable!()
        };
        &image.source
    }

    fn confined_policy(root: &std::path::Path) -> MediaPolicy {
        MediaPolicy {
            allow_local_files: true,
            local_root: Some(root.canonicalize().unwrap()),
            ..MediaPolicy::strict()
        }
    }

    #[test]
    fn local_images_are_refused_by_default() {
        let mut messages = image_message("/etc/hostname");
        let error = inline_media(&mut messages, &MediaPolicy::strict()).unwrap_err();
        assert_eq!(error.code.as_deref(), Some("media_not_allowed"));
        assert_eq!(error.param.as_deref(), Some("messages[0].content[1]"));
        let mut messages = image_message("file:///etc/hostname");
        assert!(inline_media(&mut messages, &MediaPolicy::strict()).is_err());
    }

    #[test]
    fn confined_images_are_inlined_and_escapes_refused() {
        let root = tempfile::tempdir().unwrap();
        let inside = root.path().join("inside");
        std::fs::create_dir(&inside).unwrap();
        std::fs::write(inside.join("a.bin"), b"hello").unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.bin"), b"secret").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.bin"), inside.join("link.bin"))
            .unwrap();
        let policy = confined_policy(&inside);

        let mut messages = image_message("a.bin");
        inline_media(&mut messages, &policy).unwrap();
        assert_eq!(
            source_of(&messages),
            "data:application/octet-stream;base64,aGVsbG8="
        );
        let absolute = format!("file://{}", inside.join("a.bin").display());
        let mut messages = image_message(&absolute);
        inline_media(&mut messages, &policy).unwrap();

        for escape in [
            "../inside/../../etc/hostname".to_owned(),
            "link.bin".to_owned(),
            outside.path().join("secret.bin").display().to_string(),
        ] {
            let mut messages = image_message(&escape);
            let error = inline_media(&mut messages, &policy).unwrap_err();
            assert_eq!(
                error.status,
                axum::http::StatusCode::BAD_REQUEST,
                "{escape}"
            );
            assert!(
                error.code.as_deref() == Some("media_not_allowed")
                    || error.code.as_deref() == Some("media_unavailable"),
                "{escape}: {error:?}"
            );
        }
    }

    #[test]
    fn local_videos_resolve_inside_the_allowed_folder_only() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("clip.mp4"), b"not really a video").unwrap();
        let policy = confined_policy(root.path());
        let video = |source: &str| {
            vec![Message::user(vec![Part::Video(keye_chat::VideoPart {
                source: VideoSource::File(source.into()),
                options: Default::default(),
            })])]
        };
        let mut messages = video("clip.mp4");
        inline_media(&mut messages, &policy).unwrap();
        let Content::Parts(parts) = &messages[0].content else {
            unreachable!()
        };
        let Part::Video(inside) = &parts[0] else {
            unreachable!()
        };
        let expected = root.path().canonicalize().unwrap().join("clip.mp4");
        assert_eq!(
            inside.source,
            VideoSource::File(expected.to_str().unwrap().into())
        );

        for escape in ["../clip.mp4", "/etc/hostname"] {
            let error = inline_media(&mut video(escape), &policy).unwrap_err();
            assert_eq!(error.param.as_deref(), Some("messages[0].content[0]"));
        }
        let error = inline_media(&mut video("clip.mp4"), &MediaPolicy::strict()).unwrap_err();
        assert_eq!(error.code.as_deref(), Some("media_not_allowed"));
        let no_remote = MediaPolicy {
            allow_remote: false,
            ..MediaPolicy::strict()
        };
        let error = inline_media(&mut video("https://example.com/a.mp4"), &no_remote).unwrap_err();
        assert_eq!(error.code.as_deref(), Some("media_not_allowed"));
    }

    #[test]
    fn data_urls_stay_and_remote_can_be_disabled() {
        let mut messages = image_message("data:image/png;base64,AAAA");
        inline_media(&mut messages, &MediaPolicy::strict()).unwrap();
        assert_eq!(source_of(&messages), "data:image/png;base64,AAAA");

        let policy = MediaPolicy {
            allow_remote: false,
            ..MediaPolicy::strict()
        };
        let mut messages = image_message("https://example.com/cat.png");
        let error = inline_media(&mut messages, &policy).unwrap_err();
        assert_eq!(error.code.as_deref(), Some("media_not_allowed"));
    }

    #[test]
    fn private_addresses_are_refused() {
        let mut messages = image_message("http://127.0.0.1:9/cat.png");
        let error = inline_media(&mut messages, &MediaPolicy::strict()).unwrap_err();
        assert_eq!(error.code.as_deref(), Some("media_not_allowed"));
    }

    #[test]
    fn counts_are_limited() {
        let config = ServerConfig {
            max_images_per_request: 1,
            ..ServerConfig::default()
        };
        let mut messages = image_message("a.png");
        check_counts(&messages, &config).unwrap();
        messages.extend(image_message("b.png"));
        let error = check_counts(&messages, &config).unwrap_err();
        assert_eq!(error.code.as_deref(), Some("too_many_images"));
    }
}
