//! Media → `pixel_values` / `image_grid_thw` against the official pipelines' golden outputs.

use std::path::Path;

use keye_media::{
    Generation, ImageOptions, MediaPolicy, ProcessorConfig, load_image, preprocess_image,
};
use safetensors::SafeTensors;
use serde_json::Value;

use crate::common::fixtures_dir;

/// Largest allowed difference in normalised units: float rounding only. One u8 step of a
/// resize error is 2/255 ≈ 7.8e-3.
const PIXEL_TOLERANCE: f32 = 1e-5;

const IMAGE_CASES: [&str; 4] = [
    "image_224x168",
    "image_tiny_30x40",
    "two_images",
    "no_think",
];

fn check_case(model: &str, generation: Generation, case: &str) {
    let root = fixtures_dir();
    let case_dir = root.join("cases").join(model).join(case);
    let cfg = ProcessorConfig::from_file(
        &root
            .join("models")
            .join(model)
            .join("preprocessor_config.json"),
        generation,
    )
    .unwrap();

    let messages: Value = read_json(&case_dir.join("messages.json"));
    let outputs: Value = read_json(&case_dir.join("outputs.json"));
    let tensors_bytes = std::fs::read(case_dir.join("outputs.safetensors")).unwrap();
    let tensors = SafeTensors::deserialize(&tensors_bytes).unwrap();
    let expected_pixels: Vec<f32> = tensors
        .tensor("pixel_values")
        .unwrap()
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let expected_grids: Vec<i64> = tensors
        .tensor("image_grid_thw")
        .unwrap()
        .data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect();

    let items: Vec<&Value> = messages
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["content"].as_array())
        .flatten()
        .filter(|item| item.get("image").is_some())
        .collect();
    let expected_sizes = outputs["images"].as_array().unwrap();
    assert_eq!(items.len(), expected_sizes.len(), "{model}/{case}");

    let mut pixels = Vec::new();
    let mut grids = Vec::new();
    for (item, expected_size) in items.iter().zip(expected_sizes) {
        let source = item["image"].as_str().unwrap();
        let opts: ImageOptions = serde_json::from_value((*item).clone()).unwrap();
        let image = load_image(source, Some(&case_dir), &MediaPolicy::default(), generation)
            .unwrap_or_else(|e| panic!("{model}/{case}: {e}"));
        let processed = preprocess_image(&image, &opts, &cfg, generation).unwrap();
        let utils_wh = &expected_size["resized_size_wh_after_keye_vl_utils"];
        assert_eq!(
            [
                processed.plan.utils_size.width,
                processed.plan.utils_size.height
            ],
            [
                utils_wh[0].as_u64().unwrap() as u32,
                utils_wh[1].as_u64().unwrap() as u32
            ],
            "{model}/{case}: size after keye-vl-utils"
        );
        let grid = processed.plan.grid;
        grids.extend([grid.t as i64, grid.h as i64, grid.w as i64]);
        pixels.extend(processed.pixel_values);
    }

    assert_eq!(grids, expected_grids, "{model}/{case}: image_grid_thw");
    assert_eq!(
        pixels.len(),
        expected_pixels.len(),
        "{model}/{case}: pixel count"
    );
    let (worst_index, worst) = pixels
        .iter()
        .zip(&expected_pixels)
        .map(|(a, b)| (a - b).abs())
        .enumerate()
        .fold(
            (0, 0f32),
            |best, (i, d)| if d > best.1 { (i, d) } else { best },
        );
    assert!(
        worst <= PIXEL_TOLERANCE,
        "{model}/{case}: pixel_values differ by {worst} at flat index {worst_index}"
    );
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn preview_image_cases_match_the_reference() {
    for case in IMAGE_CASES {
        check_case("keye-preview-tiny", Generation::Preview, case);
    }
}

#[test]
fn v1_5_image_cases_match_the_reference() {
    for case in IMAGE_CASES {
        check_case("keye-1.5-tiny", Generation::V1_5, case);
    }
}

#[test]
fn fixture_processor_configs_parse() {
    let root = fixtures_dir();
    let preview = ProcessorConfig::from_file(
        &root.join("models/keye-preview-tiny/preprocessor_config.json"),
        Generation::Preview,
    )
    .unwrap();
    assert_eq!(preview.min_pixels, 3136);
    assert_eq!(preview.max_pixels, 1_003_520);
    assert_eq!(preview.image_mean, [0.5; 3]);
    assert_eq!(preview.resample, keye_media::ResampleFilter::Bicubic);

    let v1_5 = ProcessorConfig::from_file(
        &root.join("models/keye-1.5-tiny/preprocessor_config.json"),
        Generation::V1_5,
    )
    .unwrap();
    assert_eq!(v1_5.rescale_factor, 1.0 / 255.0);
    assert_eq!(v1_5.resample, keye_media::ResampleFilter::Bilinear);
    assert_eq!(v1_5.image_std, [0.5; 3]);

    let real = ProcessorConfig::from_file(
        &root.join("keye-vl-8b-preview/preprocessor_config.json"),
        Generation::Preview,
    )
    .unwrap();
    assert_eq!(real, preview);
}
