//! Decoding to RGB against Pillow 11.3 (`Image.open(f).convert("RGB")` for keye-vl-utils 1.5,
//! its `to_rgb` white compositing for 1.0.0), and refusal of bad input.

use keye_media::{
    AlphaMode, Generation, MediaError, MediaPolicy, PILLOW_MAX_IMAGE_PIXELS, decode_image,
    load_image,
};

use crate::common::{Rng, data_dir, sha256_hex};

/// file, Pillow mode, (width, height), sha256[:16] of the RGB bytes after `convert("RGB")`,
/// and after keye-vl-utils 1.0.0's `to_rgb`. Files and digests were produced with Pillow 11.3.0.
type PillowDecode = (
    &'static str,
    &'static str,
    (u32, u32),
    &'static str,
    &'static str,
);

const PILLOW_DECODES: [PillowDecode; 19] = [
    (
        "bmp_palette.bmp",
        "P",
        (13, 11),
        "ad2930be54e9deaa",
        "ad2930be54e9deaa",
    ),
    (
        "bmp_rgb.bmp",
        "RGB",
        (13, 11),
        "91664cdb2afc6a4b",
        "91664cdb2afc6a4b",
    ),
    (
        "gif_two_frames.gif",
        "P",
        (17, 13),
        "bb47fe6408b9545c",
        "bb47fe6408b9545c",
    ),
    (
        "jpeg_420.jpg",
        "RGB",
        (53, 37),
        "be02e06935fcb7d5",
        "be02e06935fcb7d5",
    ),
    (
        "jpeg_422.jpg",
        "RGB",
        (41, 30),
        "6356a8b4ee796c18",
        "6356a8b4ee796c18",
    ),
    (
        "jpeg_cmyk.jpg",
        "CMYK",
        (18, 24),
        "a661af5d6a63794c",
        "a661af5d6a63794c",
    ),
    (
        "jpeg_gray.jpg",
        "L",
        (30, 20),
        "04c6483b4bf7b2d5",
        "04c6483b4bf7b2d5",
    ),
    (
        "jpeg_progressive.jpg",
        "RGB",
        (33, 45),
        "d1c1f1b2f12efb91",
        "d1c1f1b2f12efb91",
    ),
    (
        "png_bilevel.png",
        "1",
        (17, 13),
        "7846127c8b49d6c2",
        "7846127c8b49d6c2",
    ),
    (
        "png_gray16.png",
        "I;16",
        (17, 13),
        "491ce8f7c8ff17fa",
        "491ce8f7c8ff17fa",
    ),
    (
        "png_la.png",
        "LA",
        (17, 13),
        "53522f61eef9ab81",
        "53522f61eef9ab81",
    ),
    (
        "png_palette_trns.png",
        "P",
        (17, 13),
        "bcc2432642864df2",
        "bcc2432642864df2",
    ),
    (
        "png_rgb_trns.png",
        "RGB",
        (17, 13),
        "25ff6284ce24567a",
        "25ff6284ce24567a",
    ),
    (
        "png_rgba.png",
        "RGBA",
        (17, 13),
        "25ff6284ce24567a",
        "48a396b04397f455",
    ),
    (
        "png_rgb16.png",
        "RGB",
        (11, 9),
        "cddcd8c102ecf1b6",
        "cddcd8c102ecf1b6",
    ),
    (
        "png_rgba16.png",
        "RGBA",
        (11, 9),
        "cddcd8c102ecf1b6",
        "686b43ef95116b3e",
    ),
    (
        "webp_lossless_alpha.webp",
        "RGBA",
        (17, 13),
        "25ff6284ce24567a",
        "48a396b04397f455",
    ),
    (
        "webp_lossy.webp",
        "RGB",
        (34, 21),
        "36f50f7e9735656c",
        "36f50f7e9735656c",
    ),
    // The fixture JPEG of the `two_images` case (4:2:0).
    (
        "../../../../tests/fixtures/cases/keye-1.5-tiny/two_images/inputs/img_b_70x130.jpg",
        "RGB",
        (70, 130),
        "3fe0dd74aa219e72",
        "3fe0dd74aa219e72",
    ),
];

fn read(name: &str) -> Vec<u8> {
    std::fs::read(data_dir().join(name)).unwrap()
}

#[test]
fn decodes_like_pillow() {
    let mut mismatches = Vec::new();
    for (name, mode, (width, height), drop_digest, composite_digest) in PILLOW_DECODES {
        let bytes = read(name);
        for (alpha, digest) in [
            (AlphaMode::Drop, drop_digest),
            (AlphaMode::CompositeOnWhite, composite_digest),
        ] {
            let image = decode_image(&bytes, alpha, PILLOW_MAX_IMAGE_PIXELS)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!((image.width(), image.height()), (width, height), "{name}");
            let got = sha256_hex(image.as_raw());
            if !got.starts_with(digest) {
                mismatches.push(format!(
                    "{name} (Pillow mode {mode}, {alpha:?}): sha256 {got}"
                ));
            }
        }
    }
    assert!(mismatches.is_empty(), "{mismatches:#?}");
}

#[test]
fn generations_choose_the_alpha_rule() {
    // keye-vl-utils 1.0.0 (Preview) blends RGBA over white, 1.5 drops alpha.
    let policy = MediaPolicy::default();
    let dir = data_dir();
    for (generation, digest) in [
        (Generation::Preview, "48a396b04397f455"),
        (Generation::V1_5, "25ff6284ce24567a"),
    ] {
        let image = load_image("png_rgba.png", Some(&dir), &policy, generation).unwrap();
        let got = sha256_hex(image.as_raw());
        assert!(got.starts_with(digest), "{generation:?}: {got}");
    }
}

#[test]
fn unknown_and_random_bytes_are_refused() {
    let mut rng = Rng::new(3);
    let noise: Vec<u8> = (0..512).map(|_| rng.next_u64() as u8).collect();
    for bytes in [&noise[..], b"", b"GIF8", b"not an image at all"] {
        assert!(matches!(
            decode_image(bytes, AlphaMode::Drop, PILLOW_MAX_IMAGE_PIXELS),
            Err(MediaError::UnknownFormat { .. })
        ));
    }
}

#[test]
fn truncated_files_are_errors() {
    for name in [
        "png_rgba.png",
        "jpeg_420.jpg",
        "jpeg_progressive.jpg",
        "gif_two_frames.gif",
        "webp_lossy.webp",
    ] {
        let bytes = read(name);
        let mut cuts = vec![bytes.len() / 2, bytes.len() / 3, 30];
        if name.ends_with(".jpg") {
            // Only the end-of-image marker missing: Pillow still reports a truncated file.
            cuts.push(bytes.len() - 2);
        }
        for cut in cuts {
            let result = decode_image(&bytes[..cut], AlphaMode::Drop, PILLOW_MAX_IMAGE_PIXELS);
            assert!(
                matches!(result, Err(MediaError::Decode { .. })),
                "{name} cut at {cut}: {result:?}"
            );
        }
    }
}

#[test]
fn corrupted_files_never_panic() {
    let mut rng = Rng::new(5);
    for (name, ..) in PILLOW_DECODES {
        let original = read(name);
        for _ in 0..40 {
            let mut bytes = original.clone();
            for _ in 0..rng.range(1, 8) {
                let at = rng.range(0, bytes.len() as u32 - 1) as usize;
                bytes[at] = rng.next_u64() as u8;
            }
            // Any outcome but a panic is fine: some flips hit only pixel data.
            let _ = decode_image(&bytes, AlphaMode::Drop, PILLOW_MAX_IMAGE_PIXELS);
        }
    }
}

/// CRC-32 (ISO-HDLC) as PNG chunks need it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(width.to_be_bytes());
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]); // 8-bit RGB, no interlace
    png.extend(13u32.to_be_bytes());
    png.extend(&ihdr);
    png.extend(crc32(&ihdr).to_be_bytes());
    // A tiny IDAT that could never hold the claimed pixels.
    let idat = b"IDAT\x78\x9c\x03\x00\x00\x00\x00\x01";
    png.extend(8u32.to_be_bytes());
    png.extend(idat);
    png.extend(crc32(idat).to_be_bytes());
    png
}

#[test]
fn decompression_bombs_are_refused_from_the_header() {
    let bomb = png_claiming(100_000, 100_000);
    match decode_image(&bomb, AlphaMode::Drop, PILLOW_MAX_IMAGE_PIXELS) {
        Err(MediaError::ImageTooLarge {
            width,
            height,
            max_pixels,
            ..
        }) => {
            assert_eq!(
                (width, height, max_pixels),
                (100_000, 100_000, PILLOW_MAX_IMAGE_PIXELS)
            );
        }
        other => panic!("expected ImageTooLarge, got {other:?}"),
    }

    // A JPEG whose frame header claims 60000×60000.
    let mut jpeg = read("jpeg_420.jpg");
    let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    jpeg[sof + 5..sof + 9].copy_from_slice(&[0xEA, 0x60, 0xEA, 0x60]);
    assert!(matches!(
        decode_image(&jpeg, AlphaMode::Drop, PILLOW_MAX_IMAGE_PIXELS),
        Err(MediaError::ImageTooLarge {
            width: 60_000,
            height: 60_000,
            ..
        })
    ));

    // A GIF whose logical screen is 65535×65535.
    let mut gif = read("gif_two_frames.gif");
    gif[6..10].copy_from_slice(&[0xFF; 4]);
    assert!(matches!(
        decode_image(&gif, AlphaMode::Drop, PILLOW_MAX_IMAGE_PIXELS),
        Err(MediaError::ImageTooLarge {
            width: 65_535,
            height: 65_535,
            ..
        })
    ));

    // The limit is the caller's: a 17×13 image against a 100-pixel budget.
    assert!(matches!(
        decode_image(&read("png_rgba.png"), AlphaMode::Drop, 100),
        Err(MediaError::ImageTooLarge { .. })
    ));
}
