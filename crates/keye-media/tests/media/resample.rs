//! The Pillow resampler: fast path against its per-pixel twin, and both against Pillow 11.3.

use keye_media::{ResampleFilter, RgbImage, resize, resize_reference};

use crate::common::{Rng, sha256_hex, synth};

const FILTERS: [ResampleFilter; 5] = [
    ResampleFilter::Bilinear,
    ResampleFilter::Bicubic,
    ResampleFilter::Lanczos,
    ResampleFilter::Box,
    ResampleFilter::Hamming,
];

fn assert_twins_agree(image: &RgbImage, width: u32, height: u32, filter: ResampleFilter) {
    let fast = resize(image, width, height, filter).unwrap();
    let slow = resize_reference(image, width, height, filter).unwrap();
    assert_eq!((fast.width(), fast.height()), (width, height));
    assert!(
        fast.as_raw() == slow.as_raw(),
        "{filter:?} {}x{} → {width}x{height}: fast and reference resizers differ",
        image.width(),
        image.height()
    );
}

#[test]
fn fast_path_equals_reference_on_random_sizes() {
    let mut rng = Rng::new(7);
    for round in 0..60 {
        let (in_w, in_h) = (rng.range(1, 90), rng.range(1, 90));
        // Cover upscaling, downscaling, mixed, unchanged axes and 1-pixel outputs.
        let out_w = match round % 4 {
            0 => rng.range(in_w, 160),
            1 => rng.range(1, in_w),
            2 => in_w,
            _ => 1,
        };
        let out_h = match round % 3 {
            0 => rng.range(1, in_h),
            1 => rng.range(in_h, 160),
            _ => rng.range(1, 160),
        };
        let image = rng.image(in_w, in_h);
        assert_twins_agree(&image, out_w, out_h, FILTERS[round % FILTERS.len()]);
    }
}

#[test]
fn fast_path_equals_reference_on_parallel_sizes() {
    // Large enough that both passes run on rayon's pool.
    let mut rng = Rng::new(11);
    let image = rng.image(700, 400);
    assert_twins_agree(&image, 1036, 588, ResampleFilter::Bicubic);
    assert_twins_agree(&image, 252, 448, ResampleFilter::Bilinear);
}

#[test]
fn matches_pillow_11_3() {
    // sha256[:16] of `Image.resize((w, h), filter).tobytes()` on the §11.7 synthetic image,
    // computed with Pillow 11.3.0.
    let cases = [
        (
            (53, 37),
            (84, 56),
            ResampleFilter::Bilinear,
            "24af9f3d2f289350",
        ),
        (
            (53, 37),
            (84, 56),
            ResampleFilter::Bicubic,
            "aeda102ab4ef2483",
        ),
        (
            (53, 37),
            (84, 56),
            ResampleFilter::Lanczos,
            "0972a160a73413c2",
        ),
        ((53, 37), (84, 56), ResampleFilter::Box, "19a97f859e4ae583"),
        (
            (53, 37),
            (84, 56),
            ResampleFilter::Hamming,
            "d343f2af925fbfd3",
        ),
        (
            (640, 480),
            (644, 476),
            ResampleFilter::Bilinear,
            "095246d867a004a0",
        ),
        (
            (640, 480),
            (644, 476),
            ResampleFilter::Bicubic,
            "dc3b7ff294b38155",
        ),
        (
            (640, 480),
            (644, 476),
            ResampleFilter::Lanczos,
            "8733e6ead9015087",
        ),
        (
            (640, 480),
            (644, 476),
            ResampleFilter::Box,
            "5cffa60398ad1f1d",
        ),
        (
            (640, 480),
            (644, 476),
            ResampleFilter::Hamming,
            "262c56448a68f6a4",
        ),
        (
            (97, 61),
            (30, 200),
            ResampleFilter::Bilinear,
            "027144ac95637545",
        ),
        (
            (97, 61),
            (30, 200),
            ResampleFilter::Bicubic,
            "16f79cf5c30f0a05",
        ),
        (
            (97, 61),
            (30, 200),
            ResampleFilter::Lanczos,
            "e2b1298808a1347c",
        ),
        ((97, 61), (30, 200), ResampleFilter::Box, "cd15c90f70a04284"),
        (
            (97, 61),
            (30, 200),
            ResampleFilter::Hamming,
            "517e75865e396e20",
        ),
        ((1, 1), (5, 3), ResampleFilter::Bicubic, "8a1020634191c27b"),
        (
            (300, 7),
            (28, 28),
            ResampleFilter::Bilinear,
            "9e3d29dd1ba5f4b5",
        ),
        (
            (300, 7),
            (28, 28),
            ResampleFilter::Bicubic,
            "e585f187363a1db3",
        ),
        (
            (300, 7),
            (28, 28),
            ResampleFilter::Lanczos,
            "38c42a53ee525a8f",
        ),
        ((300, 7), (28, 28), ResampleFilter::Box, "3ca20fb2b5835e7d"),
        (
            (300, 7),
            (28, 28),
            ResampleFilter::Hamming,
            "936512331b826191",
        ),
    ];
    for ((w, h), (out_w, out_h), filter, digest) in cases {
        let image = synth(w, h);
        for (name, resized) in [
            ("fast", resize(&image, out_w, out_h, filter).unwrap()),
            (
                "reference",
                resize_reference(&image, out_w, out_h, filter).unwrap(),
            ),
        ] {
            let got = sha256_hex(resized.as_raw());
            assert!(
                got.starts_with(digest),
                "{name} {filter:?} {w}x{h} → {out_w}x{out_h}: sha256 {got}"
            );
        }
    }
}

#[test]
fn unchanged_size_is_a_copy_and_empty_targets_fail() {
    let image = synth(20, 10);
    assert_eq!(
        resize(&image, 20, 10, ResampleFilter::Bicubic).unwrap(),
        image
    );
    assert!(resize(&image, 0, 10, ResampleFilter::Bicubic).is_err());
    assert!(resize_reference(&image, 5, 0, ResampleFilter::Bicubic).is_err());
}
