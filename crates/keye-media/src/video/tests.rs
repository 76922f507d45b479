//! Golden tables of the research note (§11.3, §11.4, §11.6, §11.9), computed by running
//! keye-vl-utils 1.5.2 and 1.0.0.

use super::budget::slow_fast_sizes;
use super::sampling::{
    frame_range, linspace_indices, preview_frame_count, timestamps, v1_5_frame_count,
};
use super::*;

fn opts(json: &str) -> VideoOptions {
    serde_json::from_str(json).unwrap()
}

fn size(height: u32, width: u32) -> ImageSize {
    ImageSize { width, height }
}

/// Checks the first and last entries of an index list the note abbreviates with "…".
fn check_ends(indices: &[u64], head: &[u64], tail: &[u64], note: &str) {
    assert_eq!(&indices[..head.len()], head, "{note}: first indices");
    assert_eq!(
        &indices[indices.len() - tail.len()..],
        tail,
        "{note}: last indices"
    );
}

#[test]
fn v1_5_frame_counts_and_indices() {
    let limits = UtilsLimits::defaults(Generation::V1_5);
    let sample = |total: u64, fps: f64, json: &str| {
        let n = v1_5_frame_count(total, fps, &opts(json), &limits).unwrap();
        linspace_indices(0, total - 1, n)
    };
    assert_eq!(
        sample(300, 30.0, "{}"),
        [
            0, 16, 31, 47, 63, 79, 94, 110, 126, 142, 157, 173, 189, 205, 220, 236, 252, 268, 283,
            299
        ]
    );
    assert_eq!(sample(100, 25.0, "{}"), [0, 14, 28, 42, 57, 71, 85, 99]);
    assert_eq!(sample(45, 29.97, "{}"), [0, 22, 44]);
    // The reference samples no frame (then crashes); one frame is the least a video needs.
    assert_eq!(sample(10, 30.0, "{}"), [0]);
    assert_eq!(sample(16, 30.0, "{}"), [0]);
    assert_eq!(sample(60, 1.0, "{}"), (0..60).collect::<Vec<_>>());

    let capped = sample(108_000, 30.0, "{}");
    assert_eq!(capped.len(), 1365);
    check_ends(
        &capped,
        &[0, 79, 158, 238, 317, 396, 475, 554, 633, 713],
        &[107_682, 107_761, 107_841, 107_920, 107_999],
        "cap",
    );
    let slow = sample(3000, 30.0, r#"{"fps": 1.0}"#);
    assert_eq!(slow.len(), 100);
    check_ends(
        &slow,
        &[0, 30, 61, 91, 121, 151, 182, 212, 242, 273],
        &[2878, 2908, 2938, 2969, 2999],
        "fps 1",
    );
    let limited = sample(3000, 30.0, r#"{"fps": 4.0, "max_frames": 64}"#);
    assert_eq!(limited.len(), 64);
    check_ends(
        &limited,
        &[0, 48, 95, 143, 190, 238, 286, 333, 381, 428],
        &[2809, 2856, 2904, 2951, 2999],
        "max_frames",
    );
    let min_pixels = sample(3000, 30.0, r#"{"min_pixels": 100352}"#);
    assert_eq!(min_pixels.len(), 200);
    check_ends(
        &min_pixels,
        &[0, 15, 30, 45, 60, 75, 90, 105, 121, 136],
        &[2939, 2954, 2969, 2984, 2999],
        "min_pixels",
    );
    let budget = sample(7200, 24.0, r#"{"video_total_pixels": 12845056}"#);
    assert_eq!(budget.len(), 341);
    check_ends(
        &budget,
        &[0, 21, 42, 64, 85, 106, 127, 148, 169, 191],
        &[7114, 7135, 7157, 7178, 7199],
        "budget cap",
    );
    let ntsc = sample(1001, 23.976, "{}");
    assert_eq!(ntsc.len(), 83);
    check_ends(
        &ntsc,
        &[0, 12, 24, 37, 49, 61, 73, 85, 98, 110],
        &[951, 963, 976, 988, 1000],
        "23.976 fps",
    );

    // Frame lists: the declared fps is also the video's rate.
    assert_eq!(
        sample(7, 2.0, r#"{"fps": 2.0}"#),
        (0..7).collect::<Vec<_>>()
    );
    let skips_30: Vec<u64> = (0..30).chain(31..61).collect();
    assert_eq!(sample(61, 7.0, r#"{"fps": 7.0}"#), skips_30);
    let skips_14: Vec<u64> = (0..14).chain(15..29).collect();
    assert_eq!(sample(29, 23.976, r#"{"fps": 23.976}"#), skips_14);
    assert_eq!(sample(3, 0.7, r#"{"fps": 0.7}"#), [0, 2]);
    assert_eq!(sample(29, 1.1, "{}"), skips_14);
}

#[test]
fn linspace_ties_follow_torch_float32() {
    assert_eq!(linspace_indices(0, 9, 3), [0, 4, 9]);
    assert_eq!(linspace_indices(0, 5, 5), [0, 1, 2, 4, 5]);
    assert_eq!(
        linspace_indices(0, 47, 23),
        [
            0, 2, 4, 6, 9, 11, 13, 15, 17, 19, 21, 23, 26, 28, 30, 32, 34, 36, 38, 41, 43, 45, 47
        ]
    );
    assert_eq!(
        linspace_indices(0, 53, 27),
        [
            0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 27, 29, 31, 33, 35, 37, 39, 41, 43, 45,
            47, 49, 51, 53
        ]
    );
    assert_eq!(
        linspace_indices(0, 58, 45),
        [
            0, 1, 3, 4, 5, 7, 8, 9, 11, 12, 13, 15, 16, 17, 18, 20, 21, 22, 24, 25, 26, 28, 29, 30,
            32, 33, 34, 36, 37, 38, 40, 41, 42, 44, 45, 46, 47, 49, 50, 51, 53, 54, 55, 57, 58
        ]
    );
}

#[test]
fn v1_5_budget_sizes() {
    let limits = UtilsLimits::defaults(Generation::V1_5);
    // (n_slow, n_fast, H, W, options, slow H×W, fast H×W, total visual tokens)
    type Row<'a> = (
        usize,
        usize,
        u32,
        u32,
        &'a str,
        (u32, u32),
        (u32, u32),
        usize,
    );
    let table: [Row; 16] = [
        (1, 0, 1080, 1920, "{}", (560, 1008), (308, 532), 720),
        (20, 0, 1080, 1920, "{}", (560, 1008), (308, 532), 14400),
        (1, 19, 1080, 1920, "{}", (560, 1008), (308, 532), 4691),
        (5, 15, 1080, 1920, "{}", (560, 1008), (308, 532), 6735),
        (30, 90, 1080, 1920, "{}", (560, 1008), (308, 532), 40410),
        (120, 0, 1080, 1920, "{}", (476, 868), (252, 448), 63240),
        (200, 0, 1080, 1920, "{}", (364, 672), (196, 336), 62400),
        (100, 100, 1080, 1920, "{}", (448, 812), (224, 420), 58400),
        (1365, 0, 1080, 1920, "{}", (140, 252), (140, 252), 61425),
        (1, 1364, 720, 1280, "{}", (168, 280), (140, 252), 61440),
        (40, 160, 480, 640, "{}", (476, 644), (252, 336), 32920),
        (8, 0, 360, 640, "{}", (364, 644), (196, 336), 2392),
        (4, 4, 100, 100, "{}", (196, 196), (196, 196), 392),
        (
            20,
            0,
            1080,
            1920,
            r#"{"max_pixels": 200704}"#,
            (336, 588),
            (168, 308),
            5040,
        ),
        (
            20,
            0,
            1080,
            1920,
            r#"{"min_pixels": 100352}"#,
            (560, 1008),
            (308, 532),
            14400,
        ),
        (
            30,
            60,
            1920,
            1080,
            r#"{"video_total_pixels": 12845056}"#,
            (672, 364),
            (336, 196),
            14400,
        ),
    ];
    for (n_slow, n_fast, h, w, json, slow, fast, total) in table {
        let (slow_size, fast_size) =
            slow_fast_sizes(size(h, w), n_slow, n_fast, &opts(json), &limits).unwrap();
        let note = format!("{n_slow}+{n_fast} frames of {h}x{w} {json}");
        assert_eq!(slow_size, size(slow.0, slow.1), "{note}: slow");
        assert_eq!(fast_size, size(fast.0, fast.1), "{note}: fast");
        let tokens = |s: ImageSize| (s.width * s.height / 784) as usize;
        assert_eq!(
            n_slow * tokens(slow_size) + n_fast * tokens(fast_size),
            total,
            "{note}: total"
        );
    }
}

#[test]
fn timestamp_strings() {
    let table: [(f64, &[u64], &[&str]); 7] = [
        (
            30.0,
            &[0, 16, 31, 47, 63, 79, 94, 110],
            &["0.0", "0.5", "1.0", "1.6", "2.1", "2.6", "3.1", "3.7"],
        ),
        (
            25.0,
            &[0, 14, 28, 42, 57, 71, 85, 99],
            &["0.0", "0.6", "1.1", "1.7", "2.3", "2.8", "3.4", "4.0"],
        ),
        (29.97, &[0, 22, 44], &["0.0", "0.7", "1.5"]),
        (
            4.0,
            &[0, 1, 2, 3, 4, 5, 6, 7],
            &["0.0", "0.2", "0.5", "0.8", "1.0", "1.2", "1.5", "1.8"],
        ),
        (
            20.0,
            &[5, 15, 25, 35, 45],
            &["0.2", "0.8", "1.2", "1.8", "2.2"],
        ),
        (
            24.0,
            &[3, 9, 15, 21, 27, 33],
            &["0.1", "0.4", "0.6", "0.9", "1.1", "1.4"],
        ),
        (
            8.0,
            &[2, 6, 10, 14, 18, 22],
            &["0.2", "0.8", "1.2", "1.8", "2.2", "2.8"],
        ),
    ];
    for (fps, indices, expected) in table {
        let texts: Vec<String> = timestamps(indices, fps)
            .into_iter()
            .map(|ts| {
                FramePlan {
                    source_index: 0,
                    timestamp: Some(ts),
                    kind: None,
                    size: size(28, 28),
                    grid: GridThw::new(1, 2, 2),
                    tokens: 1,
                }
                .timestamp_text()
                .unwrap()
            })
            .collect();
        assert_eq!(texts, expected, "{fps} fps");
    }
}

#[test]
fn preview_decord_sampling_and_sizes() {
    let limits = UtilsLimits::defaults(Generation::Preview);
    // (frames, fps, H, W, options, n, first indices, last indices, frame H×W, sample fps)
    type Row<'a> = (
        u64,
        f64,
        u32,
        u32,
        &'a str,
        usize,
        &'a [u64],
        &'a [u64],
        (u32, u32),
        f64,
    );
    let table: [Row; 8] = [
        (
            300,
            30.0,
            1080,
            1920,
            "{}",
            20,
            &[0, 16, 31, 47, 63, 79],
            &[268, 283, 299],
            (560, 1008),
            2.0,
        ),
        (
            100,
            25.0,
            480,
            640,
            "{}",
            8,
            &[0, 14, 28, 42, 57, 71, 85, 99],
            &[],
            (476, 644),
            2.0,
        ),
        (
            45,
            29.97,
            720,
            1280,
            "{}",
            4,
            &[0, 15, 29, 44],
            &[],
            (560, 1008),
            2.664,
        ),
        (
            10,
            30.0,
            360,
            640,
            "{}",
            4,
            &[0, 3, 6, 9],
            &[],
            (364, 644),
            12.0,
        ),
        (
            108_000,
            30.0,
            1080,
            1920,
            "{}",
            768,
            &[0, 141, 282, 422, 563, 704],
            &[107_717, 107_858, 107_999],
            (336, 644),
            0.213_333,
        ),
        (
            3000,
            30.0,
            1080,
            1920,
            r#"{"nframes": 33}"#,
            32,
            &[0, 97, 193, 290, 387, 484],
            &[2806, 2902, 2999],
            (560, 1008),
            0.32,
        ),
        (
            3000,
            30.0,
            1080,
            1920,
            r#"{"video_start": 10, "video_end": 20}"#,
            20,
            &[300, 316, 332, 347, 363, 379],
            &[568, 584, 600],
            (560, 1008),
            1.993_36,
        ),
        (
            3000,
            30.0,
            1080,
            1920,
            r#"{"resized_height": 280, "resized_width": 280}"#,
            200,
            &[0, 15, 30, 45, 60, 75],
            &[2969, 2984, 2999],
            (280, 280),
            2.0,
        ),
    ];
    for (total, fps, h, w, json, n, head, tail, frame, sample_fps) in table {
        let note = format!("{total} frames at {fps} fps {json}");
        let options = opts(json);
        let (start, end) = frame_range(total, fps, &options).unwrap();
        let window = end - start + 1;
        let count = preview_frame_count(window, fps, &options).unwrap();
        assert_eq!(count, n, "{note}: frame count");
        let indices = linspace_indices(start, end, count);
        check_ends(&indices, head, tail, &note);
        let utils = preview_utils_size(size(h, w), count, &options, &limits).unwrap();
        assert_eq!(utils, size(frame.0, frame.1), "{note}: frame size");
        let fps_out = count as f64 / window as f64 * fps;
        assert!(
            (fps_out - sample_fps).abs() < 5e-6,
            "{note}: sample fps {fps_out}"
        );
    }
}

#[test]
fn preview_rejects_what_the_reference_rejects() {
    assert!(preview_frame_count(300, 30.0, &opts(r#"{"fps": 2, "nframes": 8}"#)).is_err());
    assert!(preview_frame_count(10, 30.0, &opts(r#"{"nframes": 12}"#)).is_err());
    assert!(frame_range(300, 30.0, &opts(r#"{"video_start": 5, "video_end": 5}"#)).is_err());
    // A one-frame video: the reference finds no even count; keye samples the frame twice.
    assert_eq!(preview_frame_count(1, 30.0, &opts("{}")).unwrap(), 2);
    assert_eq!(linspace_indices(0, 0, 2), [0, 0]);
}
