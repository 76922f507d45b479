//! End-to-end synthetic images (§11.7: keye-vl-utils 1.5.2 `fetch_image`, the LUT and raster
//! patches, references computed with Pillow 11.3).

use keye_media::{
    Generation, GridThw, ImageOptions, ProcessorConfig, ResampleFilter, preprocess_image, resize,
};

use crate::common::{f32_le_bytes, sha256_hex, synth};

#[test]
fn synthetic_images_match_pillow_11_3() {
    // (H, W) → resized (H, W), grid, Σ of the resized u8 image, sha256[:16] of pixel_values.
    let cases = [
        (
            (37, 53),
            (56, 84),
            [1, 4, 6],
            1_627_900u64,
            "69bf3965078a2e42",
        ),
        (
            (480, 640),
            (476, 644),
            [1, 34, 46],
            116_566_673,
            "f424b2905d6c044e",
        ),
        (
            (1000, 750),
            (1008, 756),
            [1, 72, 54],
            289_862_600,
            "4ecbf0624b990ac2",
        ),
    ];
    let mut cfg = ProcessorConfig::defaults(Generation::V1_5);
    cfg.image_mean = [0.5; 3];
    cfg.image_std = [0.5; 3];
    for ((h, w), (rh, rw), grid, sum, digest) in cases {
        let image = synth(w, h);
        let processed =
            preprocess_image(&image, &ImageOptions::default(), &cfg, Generation::V1_5).unwrap();
        let plan = processed.plan;
        assert_eq!((plan.utils_size.height, plan.utils_size.width), (rh, rw));
        assert_eq!(
            plan.resized_size, plan.utils_size,
            "stage B keeps in-bounds sizes"
        );
        assert_eq!(plan.grid, GridThw::new(grid[0], grid[1], grid[2]));
        assert_eq!(plan.tokens, (rh * rw / 784) as usize);

        let resized = resize(&image, rw, rh, ResampleFilter::Bicubic).unwrap();
        let total: u64 = resized.as_raw().iter().map(|&v| u64::from(v)).sum();
        assert_eq!(total, sum, "{h}x{w}: sum of resized bytes");

        let got = sha256_hex(&f32_le_bytes(&processed.pixel_values));
        assert!(
            got.starts_with(digest),
            "{h}x{w}: pixel_values sha256 {got}"
        );
    }
}
