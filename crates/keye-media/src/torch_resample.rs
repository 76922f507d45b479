//! The two torch resizes the video paths use, reproduced bit for bit.
//!
//! * [`resize_torch_bilinear_aa`]: `torch.nn.functional.interpolate(uint8, mode="bilinear",
//!   antialias=True)`, used by keye-vl-utils 1.5 for the similarity copies and by the
//!   Keye-VL-1.5 processor for slow and fast frames. torch's uint8 kernel is Pillow's separable
//!   convolution with `int16` weights whose fraction precision depends on the axis, so it shares
//!   [`crate::resample`]'s passes and differs only in its coefficient tables.
//! * [`resize_torchvision_bicubic_aa`]: torchvision's `resize(uint8, BICUBIC, antialias=True)`,
//!   used by keye-vl-utils 1.0.0 (Keye-VL-8B-Preview). torchvision converts to `f32`, runs
//!   torch's float antialiased bicubic kernel, clamps to 0..=255 and rounds half to even. The
//!   float kernel is reproduced with its exact mix of `f32` and `f64` steps.

use rayon::prelude::*;

use crate::error::{MediaError, Result};
use crate::image::RgbImage;
use crate::resample::{Coefficients, ResampleFilter, resize_separable};

/// Resizes like torch's uint8 `interpolate(..., mode="bilinear", antialias=True,
/// align_corners=False)` with an explicit output size.
pub fn resize_torch_bilinear_aa(image: &RgbImage, width: u32, height: u32) -> Result<RgbImage> {
    check_target(image, width, height)?;
    let (in_width, in_height) = (image.width() as usize, image.height() as usize);
    let (out_width, out_height) = (width as usize, height as usize);
    let horizontal = (out_width != in_width)
        .then(|| Coefficients::torch_int16(in_width, out_width, ResampleFilter::Bilinear));
    let vertical = (out_height != in_height)
        .then(|| Coefficients::torch_int16(in_height, out_height, ResampleFilter::Bilinear));
    resize_separable(image, horizontal.as_ref(), vertical.as_ref())
}

/// Resizes like torchvision's `resize(uint8 tensor, [height, width], BICUBIC,
/// antialias=True)`.
pub fn resize_torchvision_bicubic_aa(
    image: &RgbImage,
    width: u32,
    height: u32,
) -> Result<RgbImage> {
    check_target(image, width, height)?;
    let (in_width, in_height) = (image.width() as usize, image.height() as usize);
    let (out_width, out_height) = (width as usize, height as usize);
    if (out_width, out_height) == (in_width, in_height) {
        return Ok(image.clone());
    }
    let samples: Vec<f32> = image.as_raw().iter().map(|&v| f32::from(v)).collect();
    let after_horizontal = if out_width != in_width {
        let axis = FloatAxis::bicubic(in_width, out_width);
        float_horizontal_pass(&samples, in_width, in_height, &axis)
    } else {
        samples
    };
    let resized = if out_height != in_height {
        let axis = FloatAxis::bicubic(in_height, out_height);
        float_vertical_pass(&after_horizontal, out_width, &axis)
    } else {
        after_horizontal
    };
    let data = resized
        .iter()
        .map(|&v| v.clamp(0.0, 255.0).round_ties_even() as u8)
        .collect();
    RgbImage::new(width, height, data)
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

/// torch's `aa_filter` for bicubic (Keys, a = −0.5), evaluated in `f32` in the same operation
/// order as the C++ (`cubic_convolution1` / `cubic_convolution2`).
fn bicubic_f32(x: f32) -> f32 {
    const A: f32 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0).mul_add(x, -(A + 3.0)) * x).mul_add(x, 1.0)
    } else if x < 2.0 {
        (A.mul_add(x, -5.0 * A))
            .mul_add(x, 8.0 * A)
            .mul_add(x, -4.0 * A)
    } else {
        0.0
    }
}

/// One axis of torch's float antialiased tables (`_compute_indices_min_size_weights_aa` with
/// `scalar_t = float`).
struct FloatAxis {
    start: Vec<usize>,
    len: Vec<usize>,
    stride: usize,
    weights: Vec<f32>,
}

impl FloatAxis {
    fn bicubic(in_size: usize, out_size: usize) -> Self {
        const INTERP_SIZE: f64 = 4.0;
        // `area_pixel_compute_scale<float>`: an `f32` division.
        let scale = in_size as f32 / out_size as f32;
        let support = if scale >= 1.0 {
            ((INTERP_SIZE * 0.5) * f64::from(scale)) as f32
        } else {
            (INTERP_SIZE * 0.5) as f32
        };
        let stride = support.ceil() as usize * 2 + 1;
        let inv_scale = if scale >= 1.0 {
            (1.0 / f64::from(scale)) as f32
        } else {
            1.0
        };
        let mut start = Vec::with_capacity(out_size);
        let mut len = Vec::with_capacity(out_size);
        let mut weights = vec![0f32; out_size * stride];
        for (index, row) in weights.chunks_exact_mut(stride).enumerate() {
            // C++ promotes `scale * (i + 0.5)` to double and stores it back in a float.
            let center = (f64::from(scale) * (index as f64 + 0.5)) as f32;
            let first = ((f64::from(center - support) + 0.5) as i64).max(0);
            let end = ((f64::from(center + support) + 0.5) as i64).min(in_size as i64);
            let count = (end - first).clamp(0, stride as i64) as usize;
            let first = first as usize;
            let mut total = 0f32;
            for (k, slot) in row[..count].iter_mut().enumerate() {
                // `(j + xmin - center + 0.5) * invscale`: an integer minus a float is a float,
                // adding 0.5 promotes to double, and the filter takes a float again.
                let offset = (first + k) as f32 - center;
                let x = ((f64::from(offset) + 0.5) * f64::from(inv_scale)) as f32;
                *slot = bicubic_f32(x);
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

    fn taps(&self, index: usize) -> (usize, &[f32]) {
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

/// Resamples each RGB row of `src` (`in_width` pixels wide, `rows` rows) to
/// `axis.out_size()` pixels. Each sample is torch's sum: the first tap's product, then each
/// further product added in turn, all in `f32`.
fn float_horizontal_pass(src: &[f32], in_width: usize, rows: usize, axis: &FloatAxis) -> Vec<f32> {
    let out_width = axis.out_size();
    let mut out = vec![0f32; rows * out_width * 3];
    out.par_chunks_exact_mut(out_width * 3)
        .zip(src.par_chunks_exact(in_width * 3))
        .for_each(|(out_row, src_row)| {
            for (x, out_px) in out_row.chunks_exact_mut(3).enumerate() {
                let (first, weights) = axis.taps(x);
                let window = &src_row[first * 3..(first + weights.len()) * 3];
                let mut pixels = window.chunks_exact(3).zip(weights);
                let Some((px, &w)) = pixels.next() else {
                    continue;
                };
                let mut sum = [px[0] * w, px[1] * w, px[2] * w];
                for (px, &w) in pixels {
                    for (s, &v) in sum.iter_mut().zip(px) {
                        *s += v * w;
                    }
                }
                out_px.copy_from_slice(&sum);
            }
        });
    out
}

/// Resamples the columns of an RGB image `width` pixels wide to `axis.out_size()` rows, with
/// the same summation order as [`float_horizontal_pass`], a whole row at a time.
fn float_vertical_pass(src: &[f32], width: usize, axis: &FloatAxis) -> Vec<f32> {
    let stride = width * 3;
    let mut out = vec![0f32; axis.out_size() * stride];
    out.par_chunks_exact_mut(stride)
        .enumerate()
        .for_each(|(y, out_row)| {
            let (first, weights) = axis.taps(y);
            let Some((&w0, rest)) = weights.split_first() else {
                return;
            };
            let row = |k: usize| &src[(first + k) * stride..][..stride];
            for (o, &v) in out_row.iter_mut().zip(row(0)) {
                *o = v * w0;
            }
            for (k, &w) in rest.iter().enumerate() {
                for (o, &v) in out_row.iter_mut().zip(row(k + 1)) {
                    *o += v * w;
                }
            }
        });
    out
}
