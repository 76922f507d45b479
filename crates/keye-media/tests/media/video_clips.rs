//! Videos made with FFmpeg at test time (lavfi sources, tiny sizes): odd frame rates, scene
//! cuts, one-frame, empty, truncated, corrupt and unsupported files, limits and timeouts.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use keye_media::{
    FfmpegTools, FrameKind, Generation, GridThw, MediaError, MediaPolicy, ProcessorConfig,
    SampledVideo, VideoInput, VideoOptions, VideoOrigin, VideoSettings, VideoSizing, load_video,
    plan_video, preprocess_video,
};

use crate::common::fixtures_dir;
use crate::fetch::{http_response, serve};

/// Runs `ffmpeg` with `args` (inputs, filters, encoder) writing `dir/name`.
fn make_clip(dir: &Path, name: &str, args: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y"])
        .args(args)
        .arg(&path)
        .status()
        .expect("these tests need FFmpeg's `ffmpeg` program on the PATH");
    assert!(status.success(), "ffmpeg failed making {name}");
    path
}

fn options(json: &str) -> VideoOptions {
    serde_json::from_str(json).unwrap()
}

fn config(generation: Generation) -> ProcessorConfig {
    ProcessorConfig::defaults(generation)
}

fn open(path: &Path, json: &str, settings: &VideoSettings) -> keye_media::Result<SampledVideo> {
    load_video(
        VideoInput::File(path.to_str().unwrap()),
        None,
        &options(json),
        settings,
    )
}

fn info(video: &SampledVideo) -> &keye_media::VideoInfo {
    match &video.origin {
        VideoOrigin::File(info) => info,
        other => panic!("expected a video file, got {other:?}"),
    }
}

/// One second each of red, black and the test pattern at NTSC film rate.
fn scene_cut_clip(dir: &Path) -> PathBuf {
    make_clip(
        dir,
        "cuts.mp4",
        &[
            "-filter_complex",
            "color=c=red:s=96x64:r=24000/1001:d=1[a];\
             color=c=black:s=96x64:r=24000/1001:d=1[b];\
             testsrc=s=96x64:r=24000/1001:d=1[c];[a][b][c]concat=n=3:v=1[v]",
            "-map",
            "[v]",
            "-c:v",
            "mpeg4",
            "-q:v",
            "2",
        ],
    )
}

#[test]
fn scene_cuts_at_ntsc_film_rate() {
    let dir = tempfile::tempdir().unwrap();
    let clip = scene_cut_clip(dir.path());
    let settings = VideoSettings::new(Generation::V1_5);
    let video = open(&clip, "{}", &settings).unwrap();
    let probed = info(&video);
    assert_eq!(probed.frame_count, 72);
    assert_eq!(probed.avg_fps, 24000.0 / 1001.0);
    assert_eq!((probed.width, probed.height), (96, 64));
    assert_eq!(probed.codec, "mpeg4");
    // int(72 / 23.976 · 2) = 6 frames; linspace(0, 71, 6) = 0, 14.2, 28.4, 42.6, 56.8, 71.
    assert_eq!(video.frame_indices, [0, 14, 28, 43, 57, 71]);

    let cfg = config(Generation::V1_5);
    let plan = plan_video(&video, &cfg).unwrap();
    let kinds: Vec<_> = plan.frames.iter().map(|f| f.kind.unwrap()).collect();
    use FrameKind::{Fast, Slow};
    // red, red | black, black (all-black pairs are skipped: NaN counts as similar) | pattern.
    assert_eq!(kinds, [Slow, Fast, Slow, Fast, Slow, Fast]);
    let texts: Vec<_> = plan
        .frames
        .iter()
        .map(|f| f.timestamp_text().unwrap())
        .collect();
    assert_eq!(texts, ["0.0", "0.6", "1.2", "1.8", "2.4", "3.0"]);
    // 64×96 is raised to 48 tokens (168×252) for slow and fast frames alike, so the six
    // per-frame rows merge into one.
    assert_eq!(plan.grid_rows, [GridThw::new(6, 12, 18)]);
    let processed = preprocess_video(&video, &plan, &cfg).unwrap();
    assert_eq!(processed.pixel_values.len(), 6 * 216 * 588);
}

#[test]
fn preview_sample_fps_need_not_be_whole() {
    let dir = tempfile::tempdir().unwrap();
    let clip = make_clip(
        dir.path(),
        "seven.mkv",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc=s=64x48:r=7",
            "-frames:v",
            "20",
            "-c:v",
            "ffv1",
        ],
    );
    let settings = VideoSettings::new(Generation::Preview);
    let video = open(&clip, "{}", &settings).unwrap();
    assert_eq!(info(&video).frame_count, 20);
    // 20 / 7 · 2 = 5.7 frames, floored to an even 4: 4 / 20 · 7 = 1.4 frames per second.
    assert_eq!(video.frame_indices, [0, 6, 13, 19]);
    assert!((video.sample_fps.unwrap() - 1.4).abs() < 1e-12);
    let cfg = config(Generation::Preview);
    let plan = plan_video(&video, &cfg).unwrap();
    let VideoSizing::Uniform {
        utils_size,
        second_per_grid,
    } = plan.sizing
    else {
        panic!("the Preview plans one size")
    };
    assert_eq!(second_per_grid, (1.0 / 1.4f64) as f32);
    // 48×64 raised to the Preview's 128-token minimum: 280×392.
    assert_eq!((utils_size.height, utils_size.width), (280, 392));
    assert_eq!(plan.grid_rows, [GridThw::new(4, 20, 28)]);
    assert_eq!(plan.tokens, 560);
    let processed = preprocess_video(&video, &plan, &cfg).unwrap();
    // 560 tokens of 2×2 patches of 3·14·14 values.
    assert_eq!(processed.pixel_values.len(), 560 * 4 * 588);
}

#[test]
fn one_frame_videos_give_what_the_model_needs() {
    let dir = tempfile::tempdir().unwrap();
    let clip = make_clip(
        dir.path(),
        "one.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc=s=64x48:r=25",
            "-frames:v",
            "1",
            "-c:v",
            "mpeg4",
        ],
    );
    let v1_5 = open(&clip, "{}", &VideoSettings::new(Generation::V1_5)).unwrap();
    assert_eq!(v1_5.frame_indices, [0]);
    assert_eq!(v1_5.timestamps.as_deref(), Some(&[0.0f32][..]));
    let cfg = config(Generation::V1_5);
    let plan = plan_video(&v1_5, &cfg).unwrap();
    preprocess_video(&v1_5, &plan, &cfg).unwrap();

    let preview = open(&clip, "{}", &VideoSettings::new(Generation::Preview)).unwrap();
    assert_eq!(preview.frame_indices, [0, 0]);
    let cfg = config(Generation::Preview);
    let plan = plan_video(&preview, &cfg).unwrap();
    let processed = preprocess_video(&preview, &plan, &cfg).unwrap();
    let half = processed.pixel_values.len() / 2;
    assert_eq!(
        processed.pixel_values[..half],
        processed.pixel_values[half..]
    );
}

#[test]
fn containers_and_codecs() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("x.webm", "libvpx-vp9", "vp9"),
        ("x.mkv", "libx264", "h264"),
        ("x.mov", "mjpeg", "mjpeg"),
        ("x.avi", "mpeg4", "mpeg4"),
    ];
    for (name, encoder, codec) in cases {
        let clip = make_clip(
            dir.path(),
            name,
            &[
                "-f",
                "lavfi",
                "-i",
                "testsrc=s=64x48:r=10:d=2",
                "-c:v",
                encoder,
            ],
        );
        let video = open(&clip, "{}", &VideoSettings::new(Generation::V1_5))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(info(&video).codec, codec, "{name}");
        assert_eq!(info(&video).frame_count, 20, "{name}");
        assert_eq!(video.frame_indices, [0, 6, 13, 19], "{name}");
        let mut seen = 0;
        video
            .for_each_frame(|_, frame| {
                assert_eq!((frame.width(), frame.height()), (64, 48));
                seen += 1;
                Ok(())
            })
            .unwrap();
        assert_eq!(seen, 4, "{name}");
    }
}

#[test]
fn a_time_window_selects_its_frames() {
    let dir = tempfile::tempdir().unwrap();
    let clip = make_clip(
        dir.path(),
        "ten.mkv",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc=s=64x48:r=10:d=10",
            "-c:v",
            "ffv1",
        ],
    );
    let settings = VideoSettings::new(Generation::V1_5);
    let video = open(
        &clip,
        r#"{"video_start": 2.0, "video_end": 4.0}"#,
        &settings,
    )
    .unwrap();
    // Frames 20..=40: 21 frames at 10 fps, 2 per second → int(4.2) = 4 frames.
    assert_eq!(video.frame_indices, [20, 27, 33, 40]);
    let texts: Vec<String> = video
        .timestamps
        .unwrap()
        .iter()
        .map(|t| format!("{:.1}", f64::from(*t)))
        .collect();
    assert_eq!(texts, ["2.0", "2.7", "3.3", "4.0"]);
}

#[test]
fn empty_and_non_video_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.mp4");
    std::fs::write(&empty, b"").unwrap();
    let text = dir.path().join("notes.mp4");
    std::fs::write(&text, "this is not a video\n".repeat(100)).unwrap();
    let audio = make_clip(dir.path(), "tone.wav", &["-f", "lavfi", "-i", "sine=d=1"]);
    let settings = VideoSettings::new(Generation::V1_5);
    for path in [&empty, &text, &audio] {
        let error = open(path, "{}", &settings).unwrap_err();
        assert!(
            matches!(error, MediaError::InvalidVideo { .. }),
            "{}: {error}",
            path.display()
        );
    }
    let missing = open(&dir.path().join("absent.mp4"), "{}", &settings).unwrap_err();
    assert!(matches!(missing, MediaError::Io { .. }), "{missing}");
}

#[test]
fn truncated_files() {
    let dir = tempfile::tempdir().unwrap();
    let settings = VideoSettings::new(Generation::V1_5);
    // The index (moov) is written last: a cut file has none.
    let clip = make_clip(
        dir.path(),
        "end.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc=s=64x48:r=10:d=3",
            "-c:v",
            "mpeg4",
        ],
    );
    let bytes = std::fs::read(&clip).unwrap();
    let cut = dir.path().join("end_cut.mp4");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let error = open(&cut, "{}", &settings).unwrap_err();
    assert!(matches!(error, MediaError::InvalidVideo { .. }), "{error}");

    // With the index first, the frames present are counted and decoded, like decord does.
    let faststart = make_clip(
        dir.path(),
        "start.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc=s=64x48:r=10:d=3",
            "-c:v",
            "mpeg4",
            "-movflags",
            "+faststart",
        ],
    );
    let bytes = std::fs::read(&faststart).unwrap();
    let cut = dir.path().join("start_cut.mp4");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let video = open(&cut, "{}", &settings).unwrap();
    let frames = info(&video).frame_count;
    assert!((1..30).contains(&frames), "{frames} frames");
    let cfg = config(Generation::V1_5);
    let plan = plan_video(&video, &cfg).unwrap();
    preprocess_video(&video, &plan, &cfg).unwrap();
}

#[test]
fn unsupported_codecs_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let clip = make_clip(
        dir.path(),
        "x.avi",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc=s=64x48:r=10:d=1",
            "-c:v",
            "mpeg4",
        ],
    );
    // Replace the stream's FourCC with one no decoder knows.
    let bytes = std::fs::read(&clip).unwrap();
    let mut patched = bytes.clone();
    for at in 0..bytes.len() - 4 {
        if &bytes[at..at + 4] == b"FMP4" {
            patched[at..at + 4].copy_from_slice(b"ZZZZ");
        }
    }
    assert_ne!(patched, bytes);
    let unknown = dir.path().join("unknown.avi");
    std::fs::write(&unknown, patched).unwrap();
    let error = open(&unknown, "{}", &VideoSettings::new(Generation::V1_5)).unwrap_err();
    assert!(
        matches!(&error, MediaError::InvalidVideo { reason, .. } if reason.contains("codec")),
        "{error}"
    );
}

#[test]
fn frame_size_limit() {
    let dir = tempfile::tempdir().unwrap();
    let clip = make_clip(
        dir.path(),
        "x.mkv",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc=s=64x48:r=10:d=1",
            "-c:v",
            "ffv1",
        ],
    );
    let settings = VideoSettings {
        policy: MediaPolicy {
            max_image_pixels: 1000,
            ..MediaPolicy::default()
        },
        ..VideoSettings::new(Generation::V1_5)
    };
    let error = open(&clip, "{}", &settings).unwrap_err();
    assert!(
        matches!(
            error,
            MediaError::FrameTooLarge {
                width: 64,
                height: 48,
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn token_limit_bounds_pixel_memory() {
    let dir = tempfile::tempdir().unwrap();
    let clip = make_clip(
        dir.path(),
        "x.mkv",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc=s=64x48:r=10:d=2",
            "-c:v",
            "ffv1",
        ],
    );
    let settings = VideoSettings {
        policy: MediaPolicy {
            max_video_tokens: 100,
            ..MediaPolicy::default()
        },
        ..VideoSettings::new(Generation::V1_5)
    };
    let video = open(&clip, "{}", &settings).unwrap();
    let cfg = config(Generation::V1_5);
    let plan = plan_video(&video, &cfg).unwrap();
    let error = preprocess_video(&video, &plan, &cfg).unwrap_err();
    assert!(
        matches!(error, MediaError::TooManyVideoTokens { limit: 100, .. }),
        "{error}"
    );
}

#[test]
fn a_missing_ffmpeg_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let clip = make_clip(
        dir.path(),
        "x.mkv",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc=s=64x48:r=10:d=1",
            "-c:v",
            "ffv1",
        ],
    );
    let settings = VideoSettings {
        tools: FfmpegTools {
            ffmpeg: "/nonexistent/keye-ffmpeg".into(),
            ffprobe: "/nonexistent/keye-ffprobe".into(),
        },
        ..VideoSettings::new(Generation::V1_5)
    };
    let error = open(&clip, "{}", &settings).unwrap_err();
    assert!(
        matches!(&error, MediaError::ToolMissing { program, .. } if program.contains("keye-ffprobe")),
        "{error}"
    );
    assert!(error.to_string().contains("ffmpeg"), "{error}");
}

#[test]
fn hanging_tools_are_killed_at_the_time_limit() {
    let dir = tempfile::tempdir().unwrap();
    let clip = make_clip(
        dir.path(),
        "x.mkv",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc=s=64x48:r=10:d=1",
            "-c:v",
            "ffv1",
        ],
    );
    let script = dir.path().join("hang.sh");
    std::fs::write(&script, "#!/bin/sh\nexec sleep 30\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Long enough for the real ffprobe on a loaded machine, far below the script's 30 s.
    let timeout = Duration::from_secs(3);
    let policy = MediaPolicy {
        video_timeout: timeout,
        ..MediaPolicy::default()
    };
    let hanging_probe = VideoSettings {
        tools: FfmpegTools {
            ffprobe: script.clone(),
            ..FfmpegTools::default()
        },
        policy: policy.clone(),
        ..VideoSettings::new(Generation::V1_5)
    };
    let started = Instant::now();
    let error = open(&clip, "{}", &hanging_probe).unwrap_err();
    assert!(matches!(error, MediaError::ToolTimeout { .. }), "{error}");
    assert!(started.elapsed() < Duration::from_secs(15));

    let hanging_decoder = VideoSettings {
        tools: FfmpegTools {
            ffmpeg: script,
            ..FfmpegTools::default()
        },
        policy,
        ..VideoSettings::new(Generation::V1_5)
    };
    let video = open(&clip, "{}", &hanging_decoder).unwrap();
    let started = Instant::now();
    let error = video.for_each_frame(|_, _| Ok(())).unwrap_err();
    assert!(matches!(error, MediaError::ToolTimeout { .. }), "{error}");
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[test]
fn remote_and_data_url_videos() {
    let mp4_path = fixtures_dir()
        .join("cases/keye-1.5-tiny/video_mp4_scenecut/inputs/scenecut_320x240_8fps_16f.mp4");
    let mp4 = std::fs::read(&mp4_path).unwrap();
    let local = open(&mp4_path, "{}", &VideoSettings::new(Generation::V1_5)).unwrap();
    let mut expected = Vec::new();
    local
        .for_each_frame(|_, frame| {
            expected.push(frame.clone());
            Ok(())
        })
        .unwrap();

    let (address, server) = serve(vec![http_response("200 OK", &mp4)], Duration::ZERO);
    let url = format!("http://{address}/clip.mp4");
    let settings = VideoSettings::new(Generation::V1_5);
    let remote = load_video(VideoInput::File(&url), None, &options("{}"), &settings).unwrap();
    server.join().unwrap();
    assert_eq!(remote.frame_indices, local.frame_indices);
    let mut position = 0;
    remote
        .for_each_frame(|i, frame| {
            assert_eq!(frame, &expected[i]);
            position += 1;
            Ok(())
        })
        .unwrap();
    assert_eq!(position, expected.len());

    let file_url = format!("file://{}", mp4_path.display());
    let by_url = load_video(VideoInput::File(&file_url), None, &options("{}"), &settings).unwrap();
    assert_eq!(by_url.frame_indices, local.frame_indices);

    use base64::Engine as _;
    let data_url = format!(
        "data:video/mp4;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&mp4)
    );
    let inline = load_video(VideoInput::File(&data_url), None, &options("{}"), &settings).unwrap();
    assert_eq!(inline.frame_indices, local.frame_indices);

    // A strict server refuses private addresses before connecting, and large downloads.
    let strict = VideoSettings {
        policy: MediaPolicy::strict(),
        ..VideoSettings::new(Generation::V1_5)
    };
    let error = load_video(VideoInput::File(&url), None, &options("{}"), &strict).unwrap_err();
    assert!(matches!(error, MediaError::PolicyRefused { .. }), "{error}");
    let (address, server) = serve(vec![http_response("200 OK", &mp4)], Duration::ZERO);
    let small = VideoSettings {
        policy: MediaPolicy {
            max_video_bytes: 1000,
            ..MediaPolicy::default()
        },
        ..VideoSettings::new(Generation::V1_5)
    };
    let url = format!("http://{address}/clip.mp4");
    let error = load_video(VideoInput::File(&url), None, &options("{}"), &small).unwrap_err();
    server.join().unwrap();
    assert!(
        matches!(
            error,
            MediaError::SourceTooLarge {
                limit_bytes: 1000,
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn progress_is_reported_per_frame() {
    let dir = tempfile::tempdir().unwrap();
    let clip = scene_cut_clip(dir.path());
    let mut video = open(&clip, "{}", &VideoSettings::new(Generation::V1_5)).unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&seen);
    video.set_progress(move |p| sink.lock().unwrap().push((p.done, p.total)));
    video.for_each_frame(|_, _| Ok(())).unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen, (1..=6).map(|d| (d, 6)).collect::<Vec<_>>());
}

/// Decode + preprocessing time of a 60 s 720p H.264 clip (the issue's benchmark), both model
/// generations. `cargo test -p keye-media --release --test media -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark"]
fn bench_sixty_seconds_of_720p() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let clip = make_clip(
        dir.path(),
        "720p.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=1280x720:r=30:d=60",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-pix_fmt",
            "yuv420p",
        ],
    );
    eprintln!("made the clip in {:.2?}", started.elapsed());
    for generation in [Generation::V1_5, Generation::Preview] {
        let started = Instant::now();
        let video = open(&clip, "{}", &VideoSettings::new(generation)).unwrap();
        let probed = started.elapsed();
        let cfg = config(generation);
        let plan = plan_video(&video, &cfg).unwrap();
        let planned = started.elapsed();
        let processed = preprocess_video(&video, &plan, &cfg).unwrap();
        let done = started.elapsed();
        let slow = plan
            .frames
            .iter()
            .filter(|f| f.kind == Some(FrameKind::Slow))
            .count();
        eprintln!(
            "{generation:?}: {} frames ({slow} slow), {} tokens, {} values; probe {probed:.2?}, \
             plan {:.2?}, pixels {:.2?}, total {done:.2?}",
            plan.frames.len(),
            plan.tokens,
            processed.pixel_values.len(),
            planned - probed,
            done - planned,
        );
    }
}

#[test]
fn thousands_of_sampled_frames() {
    let dir = tempfile::tempdir().unwrap();
    let clip = make_clip(
        dir.path(),
        "fast.mkv",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc=s=32x32:r=1000:d=10",
            "-c:v",
            "ffv1",
        ],
    );
    // 500 of every 1000 frames per second, with a budget that lets them all through: the
    // selection is too long for one command-line argument.
    let json = r#"{"fps": 500, "video_total_pixels": 1000000000}"#;
    let video = open(&clip, json, &VideoSettings::new(Generation::V1_5)).unwrap();
    assert_eq!(video.len(), 5000);
    let mut count = 0;
    video
        .for_each_frame(|position, _| {
            assert_eq!(position, count);
            count += 1;
            Ok(())
        })
        .unwrap();
    assert_eq!(count, 5000);
}
