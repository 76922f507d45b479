//! The normalisation table (§4.4 check values) and the patch layout (§6).

use keye_media::{
    Generation, NormalizeLut, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, ProcessorConfig, RgbImage,
    patchify,
};

use crate::common::{f32_le_bytes, sha256_hex};

fn half_mean_std_config() -> ProcessorConfig {
    let mut cfg = ProcessorConfig::defaults(Generation::V1_5);
    cfg.image_mean = [0.5; 3];
    cfg.image_std = [0.5; 3];
    cfg
}

#[test]
fn lut_matches_reference_bits() {
    let lut = NormalizeLut::new(&half_mean_std_config());
    let expected_bits: [(u8, u32); 7] = [
        (0, 0xBF80_0000),
        (1, 0xBF7D_FDFE),
        (64, 0xBEFE_FEFE),
        (127, 0xBB80_8080),
        (128, 0x3B80_8100),
        (191, 0x3EFE_FF00),
        (255, 0x3F80_0000),
    ];
    for channel in 0..3 {
        for (k, bits) in expected_bits {
            assert_eq!(
                lut.get(channel, k).to_bits(),
                bits,
                "LUT[{k}] channel {channel}"
            );
        }
    }
    let digest = sha256_hex(&f32_le_bytes(lut.channel(0)));
    assert!(
        digest.starts_with("d15e8ce722844464"),
        "LUT sha256 {digest}"
    );
}

#[test]
fn lut_follows_config_flags_per_channel() {
    let mut cfg = ProcessorConfig::defaults(Generation::Preview);
    // CLIP mean/std: the same two-step arithmetic per channel, with numpy's float32 mean/std.
    let lut = NormalizeLut::new(&cfg);
    let expected = ((200.0f64 * (1.0 / 255.0)) as f32 - OPENAI_CLIP_MEAN[1] as f32)
        / OPENAI_CLIP_STD[1] as f32;
    assert_eq!(lut.get(1, 200), expected);

    cfg.do_normalize = false;
    assert_eq!(NormalizeLut::new(&cfg).get(2, 51), (51.0f64 / 255.0) as f32);
    cfg.do_rescale = false;
    assert_eq!(NormalizeLut::new(&cfg).get(0, 77), 77.0);
}

#[test]
fn patches_are_raster_ordered_channel_major() {
    let mut cfg = half_mean_std_config();
    cfg.do_rescale = false;
    cfg.do_normalize = false;
    let lut = NormalizeLut::new(&cfg);
    let (width, height) = (42, 28);
    let image = RgbImage::from_fn(width, height, |x, y| {
        [
            (x + 3 * y) as u8,
            (2 * x + y + 100) as u8,
            (x * y % 251) as u8,
        ]
    })
    .unwrap();
    let (values, grid_h, grid_w) = patchify(&image, &lut, 14).unwrap();
    assert_eq!((grid_h, grid_w), (2, 3));
    assert_eq!(values.len(), 6 * 3 * 14 * 14);
    for patch_row in 0..2 {
        for patch_col in 0..3 {
            let patch = patch_row * 3 + patch_col;
            for c in 0..3 {
                for y in 0..14 {
                    for x in 0..14 {
                        let px = image
                            .pixel((patch_col * 14 + x) as u32, (patch_row * 14 + y) as u32)
                            .unwrap();
                        let got = values[patch * 588 + c * 196 + y * 14 + x];
                        assert_eq!(got, f32::from(px[c]), "patch {patch} c {c} y {y} x {x}");
                    }
                }
            }
        }
    }
    assert!(
        patchify(&image, &lut, 28).is_err(),
        "42 is not a multiple of 28"
    );
}
