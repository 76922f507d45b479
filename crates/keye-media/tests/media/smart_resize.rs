//! `smart_resize` against the golden tables of the research note (§11.1, §11.2), which were
//! produced by running keye-vl-utils 1.5.2 / 1.0.0 and the Preview processor code.

use keye_media::{
    Generation, ImageOptions, MediaError, ProcessorConfig, ResizeBounds, SmartResizeRule,
    plan_image, smart_resize,
};

const F: u64 = 28;
const UTILS_V1_5_MAX: u64 = 16_056_320;
const UTILS_V1_0_MAX: u64 = 12_845_056;
const PREVIEW_PROCESSOR_MAX: u64 = 1_003_520;

fn bounds(min_pixels: u64, max_pixels: u64) -> ResizeBounds {
    ResizeBounds {
        factor: F,
        min_pixels,
        max_pixels,
    }
}

#[test]
fn utils_v1_5_golden_table() {
    // (h, w, min, max) → (h, w)  [§11.1]
    type Case = ((u64, u64, u64, u64), (u64, u64));
    let table: &[Case] = &[
        ((1080, 1920, 3136, 16056320), (1092, 1932)),
        ((480, 640, 3136, 16056320), (476, 644)),
        ((224, 224, 3136, 16056320), (224, 224)),
        ((28, 28, 3136, 16056320), (56, 56)),
        ((42, 42, 3136, 16056320), (56, 56)),
        ((70, 70, 3136, 16056320), (56, 56)),
        ((98, 98, 3136, 16056320), (112, 112)),
        ((10, 10, 3136, 16056320), (56, 56)),
        ((1, 1, 3136, 16056320), (56, 56)),
        ((5, 1000, 3136, 16056320), (28, 1008)),
        ((100, 20000, 3136, 16056320), (112, 19992)),
        ((4000, 3000, 3136, 16056320), (4004, 2996)),
        ((8000, 6000, 3136, 16056320), (4620, 3444)),
        ((20000, 20000, 3136, 16056320), (4004, 4004)),
        ((33, 3000, 3136, 16056320), (28, 2996)),
        ((1080, 1920, 37632, 602112), (560, 1008)),
        ((1080, 1920, 37632, 200704), (336, 588)),
        ((720, 1280, 37632, 200704), (336, 588)),
        ((1080, 1920, 200704, 1003520), (728, 1316)),
        ((500, 375, 3136, 1003520), (504, 364)),
        ((2160, 3840, 3136, 1003520), (728, 1316)),
        ((1000, 1000, 3136, 1003520), (980, 980)),
    ];
    for &((h, w, min, max), expected) in table {
        let got = smart_resize(h, w, bounds(min, max), SmartResizeRule::UtilsV1_5).unwrap();
        assert_eq!(got, expected, "{h}x{w} within {min}..={max}");
    }
}

#[test]
fn utils_v1_5_explicit_sizes_use_default_bounds() {
    // `resized_height`/`resized_width` 280×420 → 280×420 and 100×100 → 112×112 [§11.1].
    let cfg = ProcessorConfig::defaults(Generation::V1_5);
    for ((h, w), expected) in [((280, 420), (280, 420)), ((100, 100), (112, 112))] {
        let opts = ImageOptions {
            resized_height: Some(h),
            resized_width: Some(w),
            // Ignored when explicit sizes are given, as in keye-vl-utils.
            min_pixels: Some(1_000_000),
            ..ImageOptions::default()
        };
        let plan = plan_image(640, 480, &opts, &cfg, Generation::V1_5).unwrap();
        assert_eq!(
            (plan.utils_size.height, plan.utils_size.width),
            expected,
            "resized {h}x{w}"
        );
    }
}

#[test]
fn aspect_ratio_limit() {
    // Exactly 200 is allowed; 100×20001 is refused with the ratio and the limit in the message.
    for rule in [
        SmartResizeRule::UtilsV1_5,
        SmartResizeRule::UtilsV1_0,
        SmartResizeRule::PreviewProcessor,
        SmartResizeRule::V1_5Processor,
    ] {
        smart_resize(5, 1000, bounds(3136, UTILS_V1_5_MAX), rule).unwrap();
        let err = smart_resize(100, 20001, bounds(3136, UTILS_V1_5_MAX), rule).unwrap_err();
        match &err {
            MediaError::AspectRatio {
                ratio, max_ratio, ..
            } => {
                assert_eq!(*ratio, 200.01);
                assert_eq!(*max_ratio, 200.0);
            }
            other => panic!("{rule:?}: expected an aspect-ratio error, got {other:?}"),
        }
        let message = err.to_string();
        assert!(
            message.contains("200.01") && message.contains("200"),
            "{message}"
        );
    }
    // 1:201 through the whole pipeline.
    let cfg = ProcessorConfig::defaults(Generation::V1_5);
    let err = plan_image(201, 1, &ImageOptions::default(), &cfg, Generation::V1_5).unwrap_err();
    assert!(
        matches!(err, MediaError::AspectRatio { ratio, .. } if ratio == 201.0),
        "{err}"
    );
    assert!(err.to_string().contains("201"), "{err}");
}

#[test]
fn empty_sides_are_errors_not_panics() {
    for rule in [
        SmartResizeRule::UtilsV1_5,
        SmartResizeRule::UtilsV1_0,
        SmartResizeRule::PreviewProcessor,
        SmartResizeRule::V1_5Processor,
    ] {
        assert!(matches!(
            smart_resize(0, 10, bounds(3136, UTILS_V1_5_MAX), rule),
            Err(MediaError::InvalidSize { .. })
        ));
    }
    // The 1.5 processor rounds a 10-pixel side to 0 and, with no lower bound, keeps it.
    assert!(matches!(
        smart_resize(10, 10, bounds(0, 1_003_520), SmartResizeRule::V1_5Processor),
        Err(MediaError::InvalidSize { .. })
    ));
}

#[test]
fn stage_a_and_processor_variants_golden_table() {
    // input (h, w) → utils 1.5.2, utils 1.0.0, Preview-HF direct (min 3136 / max 1003520),
    // Preview pipeline (1.0.0 then HF) with processor min 3136 and with min 102400  [§11.2]
    type Hw = (u64, u64);
    let table: &[(Hw, Hw, Hw, Hw, Hw, Hw)] = &[
        (
            (1080, 1920),
            (1092, 1932),
            (1092, 1932),
            (728, 1316),
            (728, 1316),
            (728, 1316),
        ),
        (
            (480, 640),
            (476, 644),
            (476, 644),
            (476, 644),
            (476, 644),
            (476, 644),
        ),
        (
            (4000, 3000),
            (4004, 2996),
            (4004, 2996),
            (1148, 840),
            (1148, 840),
            (1148, 840),
        ),
        ((10, 10), (56, 56), (56, 56), (56, 56), (56, 56), (336, 336)),
        (
            (10, 500),
            (28, 504),
            (28, 504),
            (28, 1400),
            (28, 504),
            (84, 1372),
        ),
        (
            (5, 1000),
            (28, 1008),
            (28, 1008),
            (28, 5600),
            (28, 1008),
            (56, 1932),
        ),
        ((70, 70), (56, 56), (56, 56), (56, 56), (56, 56), (336, 336)),
        (
            (2160, 3840),
            (2156, 3836),
            (2156, 3836),
            (728, 1316),
            (728, 1316),
            (728, 1316),
        ),
        (
            (300, 20000),
            (308, 19992),
            (308, 19992),
            (112, 8176),
            (112, 8064),
            (112, 8064),
        ),
    ];
    let utils_v1_5 = bounds(3136, UTILS_V1_5_MAX);
    let utils_v1_0 = bounds(3136, UTILS_V1_0_MAX);
    for &((h, w), v1_5, v1_0, hf_direct, pipeline_3136, pipeline_102400) in table {
        assert_eq!(
            smart_resize(h, w, utils_v1_5, SmartResizeRule::UtilsV1_5).unwrap(),
            v1_5
        );
        let stage_a = smart_resize(h, w, utils_v1_0, SmartResizeRule::UtilsV1_0).unwrap();
        assert_eq!(stage_a, v1_0, "{h}x{w} utils 1.0.0");
        let hf = |(h, w): Hw, min| {
            smart_resize(
                h,
                w,
                bounds(min, PREVIEW_PROCESSOR_MAX),
                SmartResizeRule::PreviewProcessor,
            )
            .unwrap()
        };
        assert_eq!(hf((h, w), 3136), hf_direct, "{h}x{w} Preview HF direct");
        assert_eq!(
            hf(stage_a, 3136),
            pipeline_3136,
            "{h}x{w} Preview pipeline, min 3136"
        );
        assert_eq!(
            hf(stage_a, 102_400),
            pipeline_102400,
            "{h}x{w} Preview pipeline, min 102400"
        );

        // The same through the public planner (decoded width/height order).
        let mut cfg = ProcessorConfig::defaults(Generation::Preview);
        cfg.min_pixels = 102_400;
        let plan = plan_image(
            w as u32,
            h as u32,
            &ImageOptions::default(),
            &cfg,
            Generation::Preview,
        )
        .unwrap();
        assert_eq!(
            (
                u64::from(plan.resized_size.height),
                u64::from(plan.resized_size.width)
            ),
            pipeline_102400
        );
        assert_eq!(
            plan.tokens as u64,
            pipeline_102400.0 * pipeline_102400.1 / 784
        );
    }
}

#[test]
fn transformers_port_variant() {
    // Hand-derived from the port's rules: no pre-adjustment, rounding without a clamp, max
    // branch clamped to one factor, min branch by ceil.
    let rule = SmartResizeRule::V1_5Processor;
    let b = bounds(3136, PREVIEW_PROCESSOR_MAX);
    // Already aligned and in bounds: unchanged.
    assert_eq!(smart_resize(476, 644, b, rule).unwrap(), (476, 644));
    // 10×500: round → 0×504, area 0 < min → beta = sqrt(3136/5000); ceil(10β/28)=1, ceil(500β/28)=15.
    assert_eq!(smart_resize(10, 500, b, rule).unwrap(), (28, 420));
    // 1080×1920 → 1092×1932 is over max: beta = sqrt(2073600/1003520); floors 26 and 47.
    assert_eq!(smart_resize(1080, 1920, b, rule).unwrap(), (728, 1316));
    // 20×1000 with max 28·28·4: round gives 28×1008, over max; beta = sqrt(20000/3136), the
    // short side floors to 0 and is clamped to 28, the long side floors to 14 factors.
    assert_eq!(
        smart_resize(20, 1000, bounds(0, 3136), rule).unwrap(),
        (28, 392)
    );
    // 5×1000 rounds to 0×1008, which is in bounds when min is 0: Python returns the empty side,
    // we refuse it.
    assert!(matches!(
        smart_resize(5, 1000, bounds(0, 3136), rule),
        Err(MediaError::InvalidSize { .. })
    ));
}
