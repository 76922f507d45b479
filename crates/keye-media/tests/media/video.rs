//! Video preprocessing on synthetic frames: the research note's slow/fast (§11.5) and
//! frame-list (§11.8) vectors, frame-list rules, environment overrides.

use std::path::Path;

use keye_media::{
    FrameKind, Generation, GridThw, ImageSize, MediaError, ProcessorConfig, RgbImage, UtilsLimits,
    VideoInfo, VideoInput, VideoOptions, VideoSettings, VideoSizing, load_video, plan_video,
    preprocess_video, sample_decoded,
};

use crate::common::{f32_le_bytes, fixtures_dir, sha256_hex};

/// The 1.5 fixture model's processor config: mean = std = 0.5, the normalisation the research
/// note's vectors use.
fn v1_5_config() -> ProcessorConfig {
    ProcessorConfig::from_file(
        &fixtures_dir().join("models/keye-1.5-tiny/preprocessor_config.json"),
        Generation::V1_5,
    )
    .unwrap()
}

fn options(json: &str) -> VideoOptions {
    serde_json::from_str(json).unwrap()
}

/// §11.5's `grad(H, W, φ)`.
fn grad(height: u32, width: u32, phase: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        [
            ((7 * x + phase) % 256) as u8,
            ((5 * y + 2 * phase) % 256) as u8,
            ((3 * (x + y) + phase) % 256) as u8,
        ]
    })
    .unwrap()
}

fn solid(height: u32, width: u32, rgb: [u8; 3]) -> RgbImage {
    RgbImage::from_fn(width, height, |_, _| rgb).unwrap()
}

/// Gray 128 with the first `blocks` 28×28 blocks (row-major) black.
fn gray_with_black_blocks(height: u32, width: u32, blocks: u32) -> RgbImage {
    let per_row = width / 28;
    RgbImage::from_fn(width, height, |x, y| {
        let block = (y / 28) * per_row + x / 28;
        if block < blocks { [0; 3] } else { [128; 3] }
    })
    .unwrap()
}

/// Frame types keye-vl-utils 1.5 gives `frames` (all sampled: 2 fps source, 2 fps sampling).
fn frame_types(frames: Vec<RgbImage>, json: &str) -> Vec<u8> {
    let info = VideoInfo {
        stream_index: 0,
        codec: "synthetic".into(),
        width: frames[0].width(),
        height: frames[0].height(),
        frame_count: frames.len() as u64,
        avg_fps: 2.0,
        duration: None,
    };
    let settings = VideoSettings::new(Generation::V1_5);
    let video = sample_decoded(info, frames, &options(json), &settings).unwrap();
    let plan = plan_video(&video, &v1_5_config()).unwrap();
    plan.frames
        .iter()
        .map(|f| match f.kind {
            Some(FrameKind::Slow) => 0,
            Some(FrameKind::Fast) => 1,
            None => panic!("Keye-VL-1.5 frames have a kind"),
        })
        .collect()
}

#[test]
fn slow_fast_classification_vectors() {
    let (h, w) = (168, 280);
    let gray = [128u8; 3];
    assert_eq!(
        frame_types(vec![grad(h, w, 0); 6], "{}"),
        [0, 1, 1, 1, 1, 1],
        "A"
    );
    let alternating = (0..6)
        .map(|i| {
            if i % 2 == 0 {
                grad(h, w, 0)
            } else {
                solid(h, w, gray)
            }
        })
        .collect();
    assert_eq!(frame_types(alternating, "{}"), [0; 6], "B");
    assert_eq!(
        frame_types(vec![solid(h, w, [0; 3]); 5], "{}"),
        [0, 1, 1, 1, 1],
        "C: NaN"
    );
    // 54 of 60 patches similar: f32(54/60) = 0.89999998 < 0.9.
    let d = vec![solid(h, w, gray), gray_with_black_blocks(h, w, 6)];
    assert_eq!(frame_types(d, "{}"), [0, 0], "D");
    let e = vec![solid(h, w, gray), gray_with_black_blocks(h, w, 5)];
    assert_eq!(frame_types(e, "{}"), [0, 1], "E");
    let f = (0..8).map(|k| grad(h, w, 20 * k)).collect();
    assert_eq!(frame_types(f, "{}"), [0, 1, 1, 1, 1, 1, 1, 1], "F");
    let g = (0..10).map(|k| grad(360, 640, 3 * k)).collect();
    assert_eq!(frame_types(g, "{}"), [0, 1, 1, 1, 1, 1, 1, 1, 1, 1], "G");
    let blocks = (0..8)
        .map(|i| gray_with_black_blocks(h, w, 4 * i))
        .collect();
    assert_eq!(frame_types(blocks, "{}"), [0, 1, 0, 1, 0, 1, 0, 0], "H");
    let corners = || -> Vec<RgbImage> {
        (0..8)
            .map(|i| {
                RgbImage::from_fn(640, 360, |x, y| {
                    if y < 40 * i && x < 64 * i {
                        [0; 3]
                    } else {
                        gray
                    }
                })
                .unwrap()
            })
            .collect()
    };
    assert_eq!(frame_types(corners(), "{}"), [0, 1, 1, 1, 0, 0, 0, 0], "I");
    assert_eq!(
        frame_types(corners(), r#"{"min_frame_similarity": 0.5}"#),
        [0, 1, 1, 1, 1, 1, 1, 0],
        "I at 0.5"
    );
    assert_eq!(
        frame_types(corners(), r#"{"min_frame_similarity": 0.99}"#),
        [0, 1, 0, 0, 0, 0, 0, 0],
        "I at 0.99"
    );
    let solids = [
        [255, 0, 0],
        [255, 0, 0],
        [250, 10, 10],
        [0, 0, 255],
        [0, 255, 0],
        [255, 255, 255],
        gray,
        [0, 0, 0],
    ];
    let k = solids.iter().map(|&c| solid(h, w, c)).collect();
    assert_eq!(frame_types(k, "{}"), [0, 1, 1, 1, 1, 1, 1, 0], "K");
}

/// §11.7's pattern with §11.8's frame offset `k`.
fn synth(height: u32, width: u32, k: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        [
            ((7 * x + 3 * y + 11 * k) % 256) as u8,
            ((x * x + y + 5 * k) % 256) as u8,
            ((x * y + 3 * k) % 256) as u8,
        ]
    })
    .unwrap()
}

fn write_frames(dir: &Path, frames: &[RgbImage]) -> Vec<String> {
    frames
        .iter()
        .enumerate()
        .map(|(i, frame)| {
            let name = format!("frame{i}.png");
            std::fs::write(dir.join(&name), frame.to_png().unwrap()).unwrap();
            name
        })
        .collect()
}

#[test]
fn frame_list_end_to_end_vector() {
    let dir = tempfile::tempdir().unwrap();
    let black = solid(100, 160, [0; 3]);
    let frames = [
        synth(100, 160, 0),
        synth(100, 160, 0),
        synth(100, 160, 1),
        black.clone(),
        black,
        synth(100, 160, 0),
    ];
    let sources = write_frames(dir.path(), &frames);
    let settings = VideoSettings::new(Generation::V1_5);
    let video = load_video(
        VideoInput::Frames(&sources),
        Some(dir.path()),
        &options(r#"{"fps": 2.0}"#),
        &settings,
    )
    .unwrap();
    assert_eq!(
        video.frame_size,
        ImageSize {
            width: 252,
            height: 168
        }
    );
    assert_eq!(
        video.timestamps.as_deref(),
        Some(&[0.0, 0.5, 1.0, 1.5, 2.0, 2.5][..])
    );
    let cfg = v1_5_config();
    let plan = plan_video(&video, &cfg).unwrap();
    let kinds: Vec<_> = plan.frames.iter().map(|f| f.kind.unwrap()).collect();
    use FrameKind::{Fast, Slow};
    assert_eq!(kinds, [Slow, Fast, Fast, Slow, Fast, Slow]);
    assert_eq!(
        plan.sizing,
        VideoSizing::SlowFast {
            slow_size: ImageSize {
                width: 252,
                height: 168
            },
            fast_size: ImageSize {
                width: 224,
                height: 140
            },
        }
    );
    assert_eq!(
        plan.grid_rows,
        [
            GridThw::new(1, 12, 18),
            GridThw::new(2, 10, 16),
            GridThw::new(1, 12, 18),
            GridThw::new(1, 10, 16),
            GridThw::new(1, 12, 18),
        ]
    );
    assert_eq!(plan.tokens, 3 * 54 + 3 * 40);
    let processed = preprocess_video(&video, &plan, &cfg).unwrap();
    assert_eq!(processed.pixel_values.len(), 1128 * 3 * 14 * 14);
    let hash = sha256_hex(&f32_le_bytes(&processed.pixel_values));
    assert_eq!(&hash[..16], "7e49e525339974ed");
}

#[test]
fn frame_lists_without_fps_have_no_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let sources = write_frames(
        dir.path(),
        &[synth(56, 56, 0), synth(56, 56, 1), synth(56, 56, 2)],
    );
    let settings = VideoSettings::new(Generation::V1_5);
    let video = load_video(
        VideoInput::Frames(&sources),
        Some(dir.path()),
        &options("{}"),
        &settings,
    )
    .unwrap();
    assert_eq!(video.frame_indices, [0, 1, 2]);
    assert_eq!(video.timestamps, None);
    // Frames are fetched with the video bounds: 56×56 is raised to at least 48 tokens.
    assert_eq!(
        video.frame_size,
        ImageSize {
            width: 196,
            height: 196
        }
    );
    let plan = plan_video(&video, &v1_5_config()).unwrap();
    assert!(plan.frames.iter().all(|f| f.timestamp_text().is_none()));
}

#[test]
fn v1_5_frame_lists_need_one_size_and_the_preview_resizes_to_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let sources = write_frames(
        dir.path(),
        &[synth(112, 112, 0), synth(224, 112, 0), synth(112, 112, 2)],
    );
    let v1_5 = VideoSettings::new(Generation::V1_5);
    let error = load_video(
        VideoInput::Frames(&sources),
        Some(dir.path()),
        &options("{}"),
        &v1_5,
    )
    .unwrap_err();
    assert!(
        matches!(&error, MediaError::InvalidVideo { reason, .. } if reason.contains("frame 1")),
        "{error}"
    );

    let preview = VideoSettings::new(Generation::Preview);
    let cfg = ProcessorConfig::from_file(
        &fixtures_dir().join("models/keye-preview-tiny/preprocessor_config.json"),
        Generation::Preview,
    )
    .unwrap();
    let video = load_video(
        VideoInput::Frames(&sources),
        Some(dir.path()),
        &options(r#"{"fps": 1.5}"#),
        &preview,
    )
    .unwrap();
    // Three frames are padded to four by repeating the last.
    assert_eq!(video.frame_indices, [0, 1, 2, 2]);
    let plan = plan_video(&video, &cfg).unwrap();
    assert_eq!(plan.grid_rows, [GridThw::new(4, 8, 8)]);
    let VideoSizing::Uniform {
        second_per_grid, ..
    } = plan.sizing
    else {
        panic!("the Preview plans one size")
    };
    assert_eq!(second_per_grid, (1.0f64 / 1.5) as f32);
    let processed = preprocess_video(&video, &plan, &cfg).unwrap();
    assert_eq!(processed.pixel_values.len(), 4 * 64 * 588);
    // The padding frame is a copy of the last one.
    let frame_values = 64 * 588;
    assert_eq!(
        processed.pixel_values[2 * frame_values..3 * frame_values],
        processed.pixel_values[3 * frame_values..]
    );
}

#[test]
fn empty_frame_lists_are_refused() {
    let settings = VideoSettings::new(Generation::V1_5);
    let error = load_video(VideoInput::Frames(&[]), None, &options("{}"), &settings).unwrap_err();
    assert!(matches!(error, MediaError::InvalidVideo { .. }), "{error}");
}

#[test]
fn invalid_options_are_clear_errors() {
    let frames = vec![grad(56, 56, 0); 2];
    let info = VideoInfo {
        stream_index: 0,
        codec: "synthetic".into(),
        width: 56,
        height: 56,
        frame_count: 2,
        avg_fps: 2.0,
        duration: None,
    };
    for (generation, json) in [
        (Generation::V1_5, r#"{"fps": 0}"#),
        (Generation::V1_5, r#"{"fps": -1}"#),
        (Generation::V1_5, r#"{"min_pixels": 0}"#),
        (Generation::Preview, r#"{"fps": 2, "nframes": 2}"#),
        (
            Generation::Preview,
            r#"{"video_start": 0.9, "video_end": 0.1}"#,
        ),
    ] {
        let error = sample_decoded(
            info.clone(),
            frames.clone(),
            &options(json),
            &VideoSettings::new(generation),
        )
        .unwrap_err();
        assert!(
            matches!(error, MediaError::VideoOptions { .. }),
            "{json}: {error}"
        );
    }
}

#[test]
fn environment_overrides() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        }
    };
    let preview = UtilsLimits::from_lookup(
        Generation::Preview,
        env(&[("VIDEO_MAX_PIXELS", "22579200.7")]),
    )
    .unwrap();
    assert_eq!(preview.video_total_pixels, 22_579_200);
    assert_eq!(
        preview,
        UtilsLimits {
            video_total_pixels: 22_579_200,
            ..UtilsLimits::defaults(Generation::Preview)
        }
    );

    let v1_5 = UtilsLimits::from_lookup(
        Generation::V1_5,
        env(&[
            ("IMAGE_MAX_TOKENS", "1024"),
            ("MIN_PIXELS", "6272"),
            ("VIDEO_MIN_TOKENS", "64"),
            ("VIDEO_MAX_TOKENS", "256"),
            ("VIDEO_TOTAL_MAX_TOKENS", "16384"),
        ]),
    )
    .unwrap();
    assert_eq!(
        v1_5,
        UtilsLimits {
            factor: 28,
            image_min_pixels: 6272,
            image_max_pixels: 1024 * 784,
            video_min_pixels: 64 * 784,
            video_max_pixels: 256 * 784,
            video_total_pixels: 16384 * 784,
        }
    );
    // Pixel counts win over token counts; empty values are unset.
    let pixels = UtilsLimits::from_lookup(
        Generation::V1_5,
        env(&[
            ("IMAGE_MAX_TOKENS", "1024"),
            ("MAX_PIXELS", "100000"),
            ("VIDEO_TOTAL_PIXELS", "5000000"),
            ("VIDEO_TOTAL_MAX_TOKENS", "1"),
            ("VIDEO_MIN_TOKENS", " "),
        ]),
    )
    .unwrap();
    assert_eq!(pixels.image_max_pixels, 100_000);
    assert_eq!(pixels.video_total_pixels, 5_000_000);
    assert_eq!(pixels.video_min_pixels, 48 * 784);
    // The Preview ignores the 1.5 names and vice versa.
    assert_eq!(
        UtilsLimits::from_lookup(Generation::V1_5, env(&[("VIDEO_MAX_PIXELS", "5")])).unwrap(),
        UtilsLimits::defaults(Generation::V1_5)
    );
    for (generation, bad) in [
        (Generation::V1_5, &[("VIDEO_MAX_TOKENS", "many")][..]),
        (Generation::V1_5, &[("KEYE_IMAGE_FACTOR", "0")][..]),
        (Generation::V1_5, &[("MIN_PIXELS", "-5")][..]),
        (Generation::Preview, &[("VIDEO_MAX_PIXELS", "inf")][..]),
    ] {
        let pairs: &'static [(&'static str, &'static str)] = bad;
        let error = UtilsLimits::from_lookup(generation, env(pairs)).unwrap_err();
        assert!(error.to_string().contains(pairs[0].0), "{error}");
    }
}

#[test]
fn video_limits_change_the_sampling() {
    // A 1080p, 30 fps, 10-minute video with the budget of VIDEO_TOTAL_MAX_TOKENS=4096: at most
    // 4096 / 48 = 85 frames instead of 1200.
    let limits = UtilsLimits {
        video_total_pixels: 4096 * 784,
        ..UtilsLimits::defaults(Generation::V1_5)
    };
    let settings = VideoSettings {
        limits,
        ..VideoSettings::new(Generation::V1_5)
    };
    let info = VideoInfo {
        stream_index: 0,
        codec: "synthetic".into(),
        width: 64,
        height: 36,
        frame_count: 18_000,
        avg_fps: 30.0,
        duration: None,
    };
    let frames = vec![solid(36, 64, [9; 3]); 85];
    let video = sample_decoded(info, frames, &options("{}"), &settings).unwrap();
    assert_eq!(video.len(), 85);
}
