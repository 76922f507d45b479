//! Image decoding to RGB exactly as Pillow's `Image.open(...)` followed by the reference's
//! colour conversion.
//!
//! Each format goes through the decoder that reproduces Pillow's pixels:
//! * JPEG: libjpeg-turbo's decompressor (through `mozjpeg`, the same code Pillow links),
//!   `JDCT_ISLOW` and fancy upsampling; pure-Rust decoders differ by a few levels on chroma
//!   subsampled files.
//! * PNG and GIF: `png` / `gif` directly, so that the source colour type is known (Pillow keeps
//!   palette and `tRNS` images in non-alpha modes, and 16-bit samples follow Pillow's unpackers).
//! * WebP and BMP: the `image` crate.
//!
//! The header's dimensions are checked against the pixel limit before any pixel buffer exists,
//! and the decoders get allocation limits too, so a small file claiming a huge image is refused
//! cheaply.

use std::io::{BufRead, Cursor, Read};
use std::num::NonZeroU64;

use crate::error::{MediaError, Result};
use crate::image::RgbImage;

/// How an alpha channel turns into RGB.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AlphaMode {
    /// Keep the colour channels as stored (Pillow's `convert("RGB")`, keye-vl-utils 1.5).
    Drop,
    /// Blend true RGBA images over white (keye-vl-utils 1.0.0's `to_rgb`). Only images Pillow
    /// opens in mode `RGBA` are blended; `LA`, palette and `tRNS` transparency are dropped as in
    /// the reference.
    CompositeOnWhite,
}

/// Container formats this crate decodes, recognised by their magic bytes (like Pillow, the
/// file name plays no part).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ImageFormat {
    Jpeg,
    Png,
    Gif,
    WebP,
    Bmp,
}

impl ImageFormat {
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(Self::Jpeg)
        } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(Self::Png)
        } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
            Some(Self::Gif)
        } else if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP" {
            Some(Self::WebP)
        } else if bytes.starts_with(b"BM") {
            Some(Self::Bmp)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Jpeg => "JPEG",
            Self::Png => "PNG",
            Self::Gif => "GIF",
            Self::WebP => "WebP",
            Self::Bmp => "BMP",
        }
    }
}

/// Decodes an in-memory image file to RGB, refusing images with more than `max_pixels` pixels.
pub fn decode_image(bytes: &[u8], alpha: AlphaMode, max_pixels: u64) -> Result<RgbImage> {
    decode_labelled(bytes, alpha, max_pixels, "image data")
}

/// [`decode_image`] with `source_desc` naming the input in errors.
pub(crate) fn decode_labelled(
    bytes: &[u8],
    alpha: AlphaMode,
    max_pixels: u64,
    source_desc: &str,
) -> Result<RgbImage> {
    let format = ImageFormat::sniff(bytes).ok_or_else(|| MediaError::UnknownFormat {
        source_desc: source_desc.to_owned(),
    })?;
    let ctx = Context {
        format,
        max_pixels,
        source_desc,
    };
    match format {
        ImageFormat::Jpeg => decode_jpeg(bytes, &ctx),
        ImageFormat::Png => decode_png(bytes, alpha, &ctx),
        ImageFormat::Gif => decode_gif(bytes, &ctx),
        ImageFormat::WebP => decode_with_image_crate(bytes, image::ImageFormat::WebP, alpha, &ctx),
        ImageFormat::Bmp => decode_with_image_crate(bytes, image::ImageFormat::Bmp, alpha, &ctx),
    }
}

struct Context<'a> {
    format: ImageFormat,
    max_pixels: u64,
    source_desc: &'a str,
}

impl Context<'_> {
    fn error(&self, reason: impl std::fmt::Display) -> MediaError {
        MediaError::Decode {
            source_desc: self.source_desc.to_owned(),
            format: self.format.name(),
            reason: reason.to_string(),
        }
    }

    /// Refuses header dimensions above the pixel limit, before anything is allocated for them.
    fn check_dimensions(&self, width: u32, height: u32) -> Result<()> {
        if width == 0 || height == 0 {
            return Err(self.error(format!("image has an empty side ({width}x{height})")));
        }
        if u64::from(width) * u64::from(height) > self.max_pixels {
            return Err(MediaError::ImageTooLarge {
                source_desc: self.source_desc.to_owned(),
                width,
                height,
                max_pixels: self.max_pixels,
            });
        }
        Ok(())
    }

    /// Allocation budget handed to the decoders: the largest decoded buffer an allowed image can
    /// need (16-bit RGBA) plus room for metadata.
    fn alloc_limit(&self) -> u64 {
        self.max_pixels.saturating_mul(8).saturating_add(16 << 20)
    }

    fn finish(&self, width: u32, height: u32, rgb: Vec<u8>) -> Result<RgbImage> {
        RgbImage::new(width, height, rgb).map_err(|e| self.error(e))
    }
}

/// Pillow's `MULDIV255`: `a·b/255` rounded, in integers.
fn mul_div_255(a: u8, b: u8) -> u8 {
    let t = u32::from(a) * u32::from(b) + 128;
    ((t + (t >> 8)) >> 8) as u8
}

/// Pillow's blend of `color` over white with alpha `a` (`paste` with an `L` mask).
fn over_white(color: u8, alpha: u8) -> u8 {
    let t = 255 * u32::from(255 - alpha) + u32::from(color) * u32::from(alpha) + 128;
    ((t + (t >> 8)) >> 8) as u8
}

fn decode_jpeg(bytes: &[u8], ctx: &Context<'_>) -> Result<RgbImage> {
    use mozjpeg_sys::J_COLOR_SPACE as ColorSpace;

    // libjpeg reports fatal errors through an unwinding callback in `mozjpeg`; catching it here
    // turns every corrupt-file failure into an error value.
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(
        || -> std::io::Result<Result<(u32, u32, Vec<u8>)>> {
            let decompress = mozjpeg::Decompress::new_reader(TruncationIsError(bytes))?;
            let (width, height) = (decompress.width(), decompress.height());
            let (width, height) = match (u32::try_from(width), u32::try_from(height)) {
                (Ok(w), Ok(h)) => (w, h),
                _ => return Ok(Err(ctx.error("dimensions out of range"))),
            };
            if let Err(e) = ctx.check_dimensions(width, height) {
                return Ok(Err(e));
            }
            let rgb = match decompress.color_space() {
                ColorSpace::JCS_GRAYSCALE => {
                    let mut started = decompress.grayscale()?;
                    let gray: Vec<u8> = started.read_scanlines()?;
                    gray.iter().flat_map(|&v| [v, v, v]).collect()
                }
                ColorSpace::JCS_CMYK | ColorSpace::JCS_YCCK => {
                    // Pillow reads 4-channel JPEGs as Adobe-style inverted CMYK ("CMYK;I"), so
                    // the stored samples are (255 − C, …) and RGB = stored · (255 − K)/255.
                    let mut started = decompress.to_colorspace(ColorSpace::JCS_CMYK)?;
                    let cmyk: Vec<[u8; 4]> = started.read_scanlines()?;
                    cmyk.iter()
                        .flat_map(|&[c, m, y, k]| {
                            [mul_div_255(c, k), mul_div_255(m, k), mul_div_255(y, k)]
                        })
                        .collect()
                }
                _ => {
                    let mut started = decompress.rgb()?;
                    started.read_scanlines::<u8>()?
                }
            };
            Ok(Ok((width, height, rgb)))
        },
    ));
    match decoded {
        Ok(Ok(Ok((width, height, rgb)))) => ctx.finish(width, height, rgb),
        Ok(Ok(Err(e))) => Err(e),
        Ok(Err(io)) => Err(ctx.error(io)),
        Err(payload) => Err(ctx.error(panic_message(payload.as_ref()))),
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else {
        "corrupt data".to_owned()
    }
}

/// A byte source that fails instead of reporting end of data. libjpeg pads a truncated stream
/// with a fake end marker and carries on (a gray bottom); Pillow refuses truncated files, and so
/// do we.
struct TruncationIsError<'a>(&'a [u8]);

impl Read for TruncationIsError<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.fill_buf()?.len().min(buf.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for TruncationIsError<'_> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if self.0.is_empty() {
            return Err(std::io::Error::other("file is truncated"));
        }
        Ok(self.0)
    }

    fn consume(&mut self, amount: usize) {
        self.0 = &self.0[amount.min(self.0.len())..];
    }
}

fn decode_png(bytes: &[u8], alpha: AlphaMode, ctx: &Context<'_>) -> Result<RgbImage> {
    let limits = png::Limits {
        bytes: usize::try_from(ctx.alloc_limit()).unwrap_or(usize::MAX),
    };
    let mut decoder = png::Decoder::new_with_limits(Cursor::new(bytes), limits);
    let header = decoder.read_header_info().map_err(|e| ctx.error(e))?;
    let (width, height) = (header.width, header.height);
    ctx.check_dimensions(width, height)?;
    // EXPAND unpacks sub-byte samples (scaled like Pillow's L;1/L;2/L;4 unpackers) and palettes;
    // it also turns tRNS into an alpha channel, which is ignored below because Pillow keeps such
    // images in a non-alpha mode.
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().map_err(|e| ctx.error(e))?;
    let source_type = reader.info().color_type;
    let sixteen_bit = reader.info().bit_depth == png::BitDepth::Sixteen;
    let (output_type, _) = reader.output_color_type();
    let buffer_size = reader
        .output_buffer_size()
        .ok_or_else(|| ctx.error("image too large for this platform"))?;
    let mut samples = vec![0u8; buffer_size];
    let frame = reader.next_frame(&mut samples).map_err(|e| ctx.error(e))?;

    let channels = output_type.samples();
    let bytes_per_sample = if sixteen_bit { 2 } else { 1 };
    let pixel_stride = channels * bytes_per_sample;
    let row_len = width as usize * pixel_stride;
    let mut rgb = Vec::with_capacity(width as usize * height as usize * 3);
    for row in samples.chunks_exact(frame.line_size).take(height as usize) {
        for px in row[..row_len].chunks_exact(pixel_stride) {
            // Pillow keeps the high byte of 16-bit colour samples (RGB;16B, LA;16B, RGBA;16B
            // unpackers), except 16-bit grayscale, which becomes mode I;16 and is clipped.
            let sample = |c: usize| px[c * bytes_per_sample];
            match source_type {
                png::ColorType::Grayscale if sixteen_bit => {
                    let value = u16::from_be_bytes([px[0], px[1]]).min(255) as u8;
                    rgb.extend([value; 3]);
                }
                png::ColorType::Grayscale | png::ColorType::GrayscaleAlpha => {
                    rgb.extend([sample(0); 3]);
                }
                png::ColorType::Rgba if alpha == AlphaMode::CompositeOnWhite => {
                    let a = sample(3);
                    rgb.extend([
                        over_white(sample(0), a),
                        over_white(sample(1), a),
                        over_white(sample(2), a),
                    ]);
                }
                png::ColorType::Rgb | png::ColorType::Indexed | png::ColorType::Rgba => {
                    rgb.extend([sample(0), sample(1), sample(2)]);
                }
            }
        }
    }
    ctx.finish(width, height, rgb)
}

fn decode_gif(bytes: &[u8], ctx: &Context<'_>) -> Result<RgbImage> {
    let mut options = gif::DecodeOptions::new();
    options.set_color_output(gif::ColorOutput::Indexed);
    let memory_limit = NonZeroU64::new(ctx.alloc_limit())
        .map_or(gif::MemoryLimit::Unlimited, gif::MemoryLimit::Bytes);
    options.set_memory_limit(memory_limit);
    let mut decoder = options
        .read_info(Cursor::new(bytes))
        .map_err(|e| ctx.error(e))?;
    let (screen_width, screen_height) = (u32::from(decoder.width()), u32::from(decoder.height()));
    let global_palette = decoder.global_palette().map(<[u8]>::to_vec);
    let frame = decoder
        .next_frame_info()
        .map_err(|e| ctx.error(e))?
        .ok_or_else(|| ctx.error("no image in the file"))?;
    let (left, top) = (u32::from(frame.left), u32::from(frame.top));
    let (frame_width, frame_height) = (u32::from(frame.width), u32::from(frame.height));
    let transparent = frame.transparent;
    let palette = frame.palette.clone().or(global_palette).unwrap_or_default();
    // Pillow grows the canvas when the first frame extends past the logical screen.
    let width = screen_width.max(left + frame_width);
    let height = screen_height.max(top + frame_height);
    ctx.check_dimensions(width, height)?;

    let mut indices = vec![0u8; decoder.buffer_size()];
    decoder
        .read_into_buffer(&mut indices)
        .map_err(|e| ctx.error(e))?;
    // Pillow's first frame is a palette image whose uncovered area holds the transparent index
    // (or 0); converting to RGB looks every index up and ignores transparency.
    let mut canvas = vec![transparent.unwrap_or(0); width as usize * height as usize];
    if frame_width > 0 {
        for (row, frame_row) in indices
            .chunks_exact(frame_width as usize)
            .take(frame_height as usize)
            .enumerate()
        {
            let start = (top as usize + row) * width as usize + left as usize;
            canvas[start..start + frame_width as usize].copy_from_slice(frame_row);
        }
    }
    let rgb = canvas
        .iter()
        .flat_map(|&index| {
            let offset = usize::from(index) * 3;
            palette
                .get(offset..offset + 3)
                .map_or([0, 0, 0], |c| [c[0], c[1], c[2]])
        })
        .collect();
    ctx.finish(width, height, rgb)
}

fn decode_with_image_crate(
    bytes: &[u8],
    format: image::ImageFormat,
    alpha: AlphaMode,
    ctx: &Context<'_>,
) -> Result<RgbImage> {
    use image::{DynamicImage, ImageDecoder};

    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(ctx.alloc_limit());
    reader.limits(limits);
    let decoder = reader.into_decoder().map_err(|e| ctx.error(e))?;
    let (width, height) = decoder.dimensions();
    ctx.check_dimensions(width, height)?;
    let decoded = DynamicImage::from_decoder(decoder).map_err(|e| ctx.error(e))?;
    let rgb = match decoded {
        DynamicImage::ImageRgb8(rgb) => rgb.into_raw(),
        DynamicImage::ImageRgba8(rgba) => rgba
            .as_raw()
            .chunks_exact(4)
            .flat_map(|px| match alpha {
                AlphaMode::Drop => [px[0], px[1], px[2]],
                AlphaMode::CompositeOnWhite => [
                    over_white(px[0], px[3]),
                    over_white(px[1], px[3]),
                    over_white(px[2], px[3]),
                ],
            })
            .collect(),
        DynamicImage::ImageLuma8(gray) => gray.as_raw().iter().flat_map(|&v| [v; 3]).collect(),
        DynamicImage::ImageLumaA8(gray) => gray
            .as_raw()
            .chunks_exact(2)
            .flat_map(|px| [px[0]; 3])
            .collect(),
        other => other.to_rgb8().into_raw(),
    };
    ctx.finish(width, height, rgb)
}
