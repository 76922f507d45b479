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

/// Largest fraction precision torch's uint8 kernels use for their `int16` weights.
const TORCH_MAX_PRECISION_BITS: u32 = 22;

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
    resize_separable(image, horizontal.as_ref(), vertical.as_ref())
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
                    after_horizontal[(y * out_width + x) * 3 + c] =
                        clamp_to_u8(acc, PRECISION_BITS);
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
                    out[(y * out_width + x) * 3 + c] = clamp_to_u8(acc, PRECISION_BITS);
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
    let inv_scale = 1.0 / filter_scale;
    let raw: Vec<f64> = (first..end)
        .map(|x| filter.weight((x as f64 - center + 0.5) * inv_scale))
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

/// Pillow's `clip8` (and torch's shift-and-saturate): drop the `precision` fraction bits and
/// saturate to `u8`.
fn clamp_to_u8(acc: i32, precision: u32) -> u8 {
    (acc >> precision).clamp(0, 255) as u8
}

/// All windows of one axis, weights padded to a common stride so the hot loops index a flat
/// table, quantised to `precision` fraction bits.
pub(crate) struct Coefficients {
    start: Vec<usize>,
    len: Vec<usize>,
    stride: usize,
    weights: Vec<i32>,
    precision: u32,
}

impl Coefficients {
    /// Pillow's tables: 22 fraction bits whatever the weights.
    fn new(in_size: usize, out_size: usize, filter: ResampleFilter) -> Self {
        let normalised = NormalisedWindows::new(in_size, out_size, filter);
        normalised.quantise(PRECISION_BITS)
    }

    /// torch's uint8 antialiased tables (`_compute_index_ranges_int16_weights`): the same
    /// normalised windows, stored as `int16` with the most fraction bits (at most 22) for which
    /// the axis's largest weight, doubled, still fits in 15 bits.
    pub(crate) fn torch_int16(in_size: usize, out_size: usize, filter: ResampleFilter) -> Self {
        let normalised = NormalisedWindows::new(in_size, out_size, filter);
        let largest = normalised.weights.iter().copied().fold(0.0, f64::max);
        let mut precision = 0;
        while precision < TORCH_MAX_PRECISION_BITS
            && ((0.5 + largest * f64::from(1u32 << (precision + 1))) as i64) < (1 << 15)
        {
            precision += 1;
        }
        normalised.quantise(precision)
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

    fn rounding_offset(&self) -> i32 {
        if self.precision == 0 {
            0
        } else {
            1 << (self.precision - 1)
        }
    }
}

/// Windows and normalised double weights of one axis, shared by Pillow's and torch's tables.
struct NormalisedWindows {
    start: Vec<usize>,
    len: Vec<usize>,
    stride: usize,
    weights: Vec<f64>,
}

impl NormalisedWindows {
    fn new(in_size: usize, out_size: usize, filter: ResampleFilter) -> Self {
        let scale = in_size as f64 / out_size as f64;
        let filter_scale = scale.max(1.0);
        let inv_scale = 1.0 / filter_scale;
        let support = filter.support() * filter_scale;
        let stride = support.ceil() as usize * 2 + 1;
        let mut start = Vec::with_capacity(out_size);
        let mut len = Vec::with_capacity(out_size);
        let mut weights = vec![0.0; out_size * stride];
        for (index, row) in weights.chunks_exact_mut(stride).enumerate() {
            let center = (index as f64 + 0.5) * scale;
            let first = ((center - support + 0.5) as i64).max(0) as usize;
            let end = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            // Rounding can make a window one sample wider than the table; torch clips it.
            let count = (end - first).min(stride);
            let mut total = 0.0;
            for (k, slot) in row[..count].iter_mut().enumerate() {
                *slot = filter.weight(((first + k) as f64 - center + 0.5) * inv_scale);
                total += *slot;
            }
            if total != 0.0 {
                row[..count].iter_mut().for_each(|w| *w /= total);
            }
            start.push(first);
            len.push(count);
        }
        Self {
            start,
            len,
            stride,
            weights,
        }
    }

    /// Converts to fixed point, rounding half away from zero like both C implementations.
    fn quantise(self, precision: u32) -> Coefficients {
        let scale = f64::from(1u32 << precision);
        let weights = self
            .weights
            .iter()
            .map(|&w| {
                let scaled = w * scale;
                if w < 0.0 {
                    (scaled - 0.5) as i32
                } else {
                    (scaled + 0.5) as i32
                }
            })
            .collect();
        Coefficients {
            start: self.start,
            len: self.len,
            stride: self.stride,
            weights,
            precision,
        }
    }
}

/// Runs the separable passes of `horizontal` (if any) then `vertical` (if any) on `image`.
pub(crate) fn resize_separable(
    image: &RgbImage,
    horizontal: Option<&Coefficients>,
    vertical: Option<&Coefficients>,
) -> Result<RgbImage> {
    let (in_width, in_height) = (image.width() as usize, image.height() as usize);
    let out_width = horizontal.map_or(in_width, Coefficients::out_size);
    let out_height = vertical.map_or(in_height, Coefficients::out_size);
    let data = match (horizontal, vertical) {
        (None, None) => return Ok(image.clone()),
        (Some(h), None) => horizontal_pass(image.as_raw(), in_width, 0..in_height, h),
        (None, Some(v)) => vertical_pass(image.as_raw(), in_width, 0, v),
        (Some(h), Some(v)) => {
            // Only the input rows that some output row reads need the horizontal pass.
            let first_row = v.start[0];
            let last_row = v.start[out_height - 1] + v.len[out_height - 1];
            let rows = horizontal_pass(image.as_raw(), in_width, first_row..last_row, h);
            vertical_pass(&rows, out_width, first_row, v)
        }
    };
    RgbImage::new(out_width as u32, out_height as u32, data)
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
    let (offset, precision) = (coeffs.rounding_offset(), coeffs.precision);
    let resample_row = |(row, out_row): (usize, &mut [u8])| {
        let src_row = &src[(first_row + row) * in_stride..][..in_stride];
        for (x, out_px) in out_row.chunks_exact_mut(3).enumerate() {
            let (first, weights) = coeffs.taps(x);
            let window = &src_row[first * 3..(first + weights.len()) * 3];
            let (mut r, mut g, mut b) = (offset, offset, offset);
            for (px, &w) in window.chunks_exact(3).zip(weights) {
                r += i32::from(px[0]) * w;
                g += i32::from(px[1]) * w;
                b += i32::from(px[2]) * w;
            }
            out_px[0] = clamp_to_u8(r, precision);
            out_px[1] = clamp_to_u8(g, precision);
            out_px[2] = clamp_to_u8(b, precision);
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
    let (offset, precision) = (coeffs.rounding_offset(), coeffs.precision);
    // Accumulating whole input rows keeps memory access sequential; the accumulator row is
    // reused across the output rows a worker handles.
    let resample_row = |acc: &mut Vec<i32>, (y, out_row): (usize, &mut [u8])| {
        let (first, weights) = coeffs.taps(y);
        acc.clear();
        acc.resize(stride, offset);
        for (k, &w) in weights.iter().enumerate() {
            let src_row = &src[(first + k - first_row) * stride..][..stride];
            for (a, &v) in acc.iter_mut().zip(src_row) {
                *a += i32::from(v) * w;
            }
        }
        for (o, &a) in out_row.iter_mut().zip(acc.iter()) {
            *o = clamp_to_u8(a, precision);
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
