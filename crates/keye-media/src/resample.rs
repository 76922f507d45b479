//! Pillow-exact 8-bit image resizing (`Image.resize` on an RGB image, Pillow ≤ 11.x).
//!
//! Pillow resizes with a separable convolution: per axis it precomputes, for every output
//! sample, a window of input samples and double-precision filter weights, normalises them,
//! quantises them to 22-bit fixed point, and accumulates `u8 × i32` products with a rounding
//! offset. The horizontal pass runs first and its result is stored as `u8` before the vertical
//! pass. Matching this exactly (weights, window bounds, rounding, pass order, intermediate
//! clamping) is what makes the outputs bit-identical to the reference; no general-purpose resize
//! crate does.
//!
//! [`resize`] is the fast path (coefficient tables, rayon over rows, no per-pixel allocation);
//! [`resize_reference`] is a plain per-pixel transcription of the same arithmetic, kept to test
//! the fast path against.

use rayon::prelude::*;

use crate::error::{MediaError, Result};
use crate::image::RgbImage;

/// Pillow resampling filters that are separable convolutions, with their `PIL.Image.Resampling`
/// codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResampleFilter {
    /// `LANCZOS` (1): windowed sinc, support 3.
    Lanczos,
    /// `BILINEAR` (2): triangle, support 1.
    Bilinear,
    /// `BICUBIC` (3): Keys cubic with a = −0.5, support 2.
    Bicubic,
    /// `BOX` (4): support 0.5.
    Box,
    /// `HAMMING` (5): Hamming-windowed sinc, support 1.
    Hamming,
}

impl ResampleFilter {
    /// Maps a `PIL.Image.Resampling` code; `NEAREST` (0) is not a convolution and is refused.
    pub fn from_pil_code(code: i64) -> Option<Self> {
        match code {
            1 => Some(Self::Lanczos),
            2 => Some(Self::Bilinear),
            3 => Some(Self::Bicubic),
            4 => Some(Self::Box),
            5 => Some(Self::Hamming),
            _ => None,
        }
    }

    fn support(self) -> f64 {
        match self {
            Self::Box => 0.5,
            Self::Bilinear | Self::Hamming => 1.0,
            Self::Bicubic => 2.0,
            Self::Lanczos => 3.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        match self {
            Self::Box => {
                if x > -0.5 && x <= 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
            Self::Bilinear => {
                let x = x.abs();
                if x < 1.0 { 1.0 - x } else { 0.0 }
            }
            Self::Bicubic => {
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Self::Hamming => {
                let x = x.abs();
                if x == 0.0 {
                    1.0
                } else if x >= 1.0 {
                    0.0
                } else {
                    let x = x * std::f64::consts::PI;
                    x.sin() / x * (0.54 + 0.46 * x.cos())
                }
            }
            Self::Lanczos => {
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let x = x * std::f64::consts::PI;
        x.sin() / x
    }
}

/// Fixed-point fraction bits of the quantised weights (Pillow's `PRECISION_BITS` for 8-bit).
const PRECISION_BITS: u32 = 32 - 8 - 2;
const ROUNDING_OFFSET: i32 = 1 << (PRECISION_BITS - 1);

/// Above this many output bytes a pass is split over rayon's pool; below it the scheduling costs
/// more than it saves.
const PARALLEL_MIN_BYTES: usize = 64 * 1024;

/// Resizes `image` to `width`×`height` exactly like Pillow 11.3's `Image.resize(size, filter)`.
///
/// Returns a copy when the size is unchanged (Pillow does the same).
pub fn resize(
    image: &RgbImage,
    width: u32,
    height: u32,
    filter: ResampleFilter,
) -> Result<RgbImage> {
    check_target(image, width, height)?;
    let (in_width, in_height) = (image.width() as usize, image.height() as usize);
    let (out_width, out_height) = (width as usize, height as usize);
    let horizontal =
        (out_width != in_width).then(|| Coefficients::new(in_width, out_width, filter));
    let vertical =
        (out_height != in_height).then(|| Coefficients::new(in_height, out_height, filter));

    match (horizontal, vertical) {
        (None, None) => Ok(image.clone()),
        (Some(h), None) => {
            let data = horizontal_pass(image.as_raw(), in_width, 0..in_height, &h);
            RgbImage::new(width, height, data)
        }
        (None, Some(v)) => {
            let data = vertical_pass(image.as_raw(), in_width, 0, &v);
            RgbImage::new(width, height, data)
        }
        (Some(h), Some(v)) => {
            // Only the input rows that some output row reads need the horizontal pass.
            let first_row = v.start[0];
            let last_row = v.start[out_height - 1] + v.len[out_height - 1];
            let rows = horizontal_pass(image.as_raw(), in_width, first_row..last_row, &h);
            let data = vertical_pass(&rows, out_width, first_row, &v);
            RgbImage::new(width, height, data)
        }
    }
}

/// Straightforward per-pixel twin of [`resize`]: recomputes every window and weight where it
/// is used. Slow; for tests.
pub fn resize_reference(
    image: &RgbImage,
    width: u32,
    height: u32,
    filter: ResampleFilter,
) -> Result<RgbImage> {
    check_target(image, width, height)?;
    let (in_width, in_height) = (image.width() as usize, image.height() as usize);
    let (out_width, out_height) = (width as usize, height as usize);
    let src = image.as_raw();

    let mut after_horizontal = src.to_vec();
    if out_width != in_width {
        after_horizontal = vec![0; out_width * in_height * 3];
        for y in 0..in_height {
            for x in 0..out_width {
                let (first, weights) = window(in_width, out_width, x, filter);
                for c in 0..3 {
                    let mut acc = ROUNDING_OFFSET;
                    for (k, &w) in weights.iter().enumerate() {
                        acc += i32::from(src[(y * in_width + first + k) * 3 + c]) * w;
                    }
                    after_horizontal[(y * out_width + x) * 3 + c] = clamp_to_u8(acc);
                }
            }
        }
    }

    let mut out = after_horizontal.clone();
    if out_height != in_height {
        out = vec![0; out_width * out_height * 3];
        for y in 0..out_height {
            let (first, weights) = window(in_height, out_height, y, filter);
            for x in 0..out_width {
                for c in 0..3 {
                    let mut acc = ROUNDING_OFFSET;
                    for (k, &w) in weights.iter().enumerate() {
                        acc +=
                            i32::from(after_horizontal[((first + k) * out_width + x) * 3 + c]) * w;
                    }
                    out[(y * out_width + x) * 3 + c] = clamp_to_u8(acc);
                }
            }
        }
    }
    RgbImage::new(width, height, out)
}

fn check_target(image: &RgbImage, width: u32, height: u32) -> Result<()> {
    if width == 0 || height == 0 {
        return Err(MediaError::InvalidSize {
            width: width.into(),
            height: height.into(),
            reason: format!(
                "cannot resize {}x{} to an empty image",
                image.width(),
                image.height()
            ),
        });
    }
    Ok(())
}

/// Input window and quantised weights of output sample `index` along one axis.
fn window(
    in_size: usize,
    out_size: usize,
    index: usize,
    filter: ResampleFilter,
) -> (usize, Vec<i32>) {
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = filter.support() * filter_scale;
    let center = (index as f64 + 0.5) * scale;
    // C's `(int)` conversion truncates toward zero; negative starts are clamped to 0 anyway.
    let first = ((center - support + 0.5) as i64).max(0) as usize;
    let end = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
    let raw: Vec<f64> = (first..end)
        .map(|x| filter.weight((x as f64 - center + 0.5) / filter_scale))
        .collect();
    let total: f64 = raw.iter().sum();
    let weights = raw
        .iter()
        .map(|&w| quantise(if total != 0.0 { w / total } else { w }))
        .collect();
    (first, weights)
}

/// Pillow's conversion of a normalised weight to fixed point: round half away from zero.
fn quantise(weight: f64) -> i32 {
    let scaled = weight * f64::from(1u32 << PRECISION_BITS);
    if weight < 0.0 {
        (scaled - 0.5) as i32
    } else {
        (scaled + 0.5) as i32
    }
}

/// Pillow's `clip8`: drop the fraction bits and saturate to `u8`.
fn clamp_to_u8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// All windows of one axis, weights padded to a common stride so the hot loops index a flat
/// table.
struct Coefficients {
    start: Vec<usize>,
    len: Vec<usize>,
    stride: usize,
    weights: Vec<i32>,
}

impl Coefficients {
    fn new(in_size: usize, out_size: usize, filter: ResampleFilter) -> Self {
        let scale = in_size as f64 / out_size as f64;
        let support = filter.support() * scale.max(1.0);
        let stride = support.ceil() as usize * 2 + 1;
        let mut start = Vec::with_capacity(out_size);
        let mut len = Vec::with_capacity(out_size);
        let mut weights = vec![0; out_size * stride];
        let mut raw = Vec::with_capacity(stride);
        let filter_scale = scale.max(1.0);
        for (index, row) in weights.chunks_exact_mut(stride).enumerate() {
            let center = (index as f64 + 0.5) * scale;
            let first = ((center - support + 0.5) as i64).max(0) as usize;
            let end = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            raw.clear();
            raw.extend(
                (first..end).map(|x| filter.weight((x as f64 - center + 0.5) / filter_scale)),
            );
            let total: f64 = raw.iter().sum();
            for (slot, &w) in row.iter_mut().zip(&raw) {
                *slot = quantise(if total != 0.0 { w / total } else { w });
            }
            start.push(first);
            len.push(end - first);
        }
        Self {
            start,
            len,
            stride,
            weights,
        }
    }

    fn taps(&self, index: usize) -> (usize, &[i32]) {
        let offset = index * self.stride;
        (
            self.start[index],
            &self.weights[offset..offset + self.len[index]],
        )
    }

    fn out_size(&self) -> usize {
        self.start.len()
    }
}

/// Resamples each row in `rows` of an RGB image `in_width` pixels wide to `coeffs.out_size()`
/// pixels; returns only those rows.
fn horizontal_pass(
    src: &[u8],
    in_width: usize,
    rows: std::ops::Range<usize>,
    coeffs: &Coefficients,
) -> Vec<u8> {
    let out_width = coeffs.out_size();
    let mut out = vec![0u8; rows.len() * out_width * 3];
    let in_stride = in_width * 3;
    let first_row = rows.start;
    let resample_row = |(row, out_row): (usize, &mut [u8])| {
        let src_row = &src[(first_row + row) * in_stride..][..in_stride];
        for (x, out_px) in out_row.chunks_exact_mut(3).enumerate() {
            let (first, weights) = coeffs.taps(x);
            let window = &src_row[first * 3..(first + weights.len()) * 3];
            let (mut r, mut g, mut b) = (ROUNDING_OFFSET, ROUNDING_OFFSET, ROUNDING_OFFSET);
            for (px, &w) in window.chunks_exact(3).zip(weights) {
                r += i32::from(px[0]) * w;
                g += i32::from(px[1]) * w;
                b += i32::from(px[2]) * w;
            }
            out_px[0] = clamp_to_u8(r);
            out_px[1] = clamp_to_u8(g);
            out_px[2] = clamp_to_u8(b);
        }
    };
    let out_stride = out_width * 3;
    if out.len() >= PARALLEL_MIN_BYTES {
        out.par_chunks_exact_mut(out_stride)
            .enumerate()
            .for_each(resample_row);
    } else {
        out.chunks_exact_mut(out_stride)
            .enumerate()
            .for_each(resample_row);
    }
    out
}

/// Resamples the columns of an RGB image `width` pixels wide whose first stored row is input
/// row `first_row`, producing `coeffs.out_size()` rows.
fn vertical_pass(src: &[u8], width: usize, first_row: usize, coeffs: &Coefficients) -> Vec<u8> {
    let stride = width * 3;
    let mut out = vec![0u8; coeffs.out_size() * stride];
    // Accumulating whole input rows keeps memory access sequential; the accumulator row is
    // reused across the output rows a worker handles.
    let resample_row = |acc: &mut Vec<i32>, (y, out_row): (usize, &mut [u8])| {
        let (first, weights) = coeffs.taps(y);
        acc.clear();
        acc.resize(stride, ROUNDING_OFFSET);
        for (k, &w) in weights.iter().enumerate() {
            let src_row = &src[(first + k - first_row) * stride..][..stride];
            for (a, &v) in acc.iter_mut().zip(src_row) {
                *a += i32::from(v) * w;
            }
        }
        for (o, &a) in out_row.iter_mut().zip(acc.iter()) {
            *o = clamp_to_u8(a);
        }
    };
    if out.len() >= PARALLEL_MIN_BYTES {
        out.par_chunks_exact_mut(stride)
            .enumerate()
            .for_each_init(|| Vec::with_capacity(stride), resample_row);
    } else {
        let mut acc = Vec::with_capacity(stride);
        out.chunks_exact_mut(stride)
            .enumerate()
            .for_each(|item| resample_row(&mut acc, item));
    }
    out
}
