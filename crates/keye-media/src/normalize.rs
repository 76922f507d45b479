//! `u8` → normalised `f32` and the cut into 14×14 patches.

use rayon::prelude::*;

use crate::config::ProcessorConfig;
use crate::error::{MediaError, Result};
use crate::image::RgbImage;

/// Per-channel lookup table from a `u8` sample to the processor's normalised `f32`.
///
/// transformers rescales in `f64` (`x.astype(float64) * factor`), stores `f32`, then
/// normalises in `f32` (`(x - f32(mean)) / f32(std)`). Any single-step formula (`k/127.5 - 1`,
/// an all-`f32` rescale) disagrees with that in over a hundred of the 256 entries, so the
/// table is built with exactly those two steps.
#[derive(Clone, Debug, PartialEq)]
pub struct NormalizeLut {
    table: [[f32; 256]; 3],
}

impl NormalizeLut {
    pub fn new(cfg: &ProcessorConfig) -> Self {
        let mut table = [[0f32; 256]; 3];
        for (channel, entries) in table.iter_mut().enumerate() {
            let mean = cfg.image_mean[channel] as f32;
            let std = cfg.image_std[channel] as f32;
            for (k, entry) in entries.iter_mut().enumerate() {
                let value = if cfg.do_rescale {
                    (k as f64 * cfg.rescale_factor) as f32
                } else {
                    k as f32
                };
                *entry = if cfg.do_normalize {
                    (value - mean) / std
                } else {
                    value
                };
            }
        }
        Self { table }
    }

    /// The normalised value of sample `value` in `channel` (0 = R, 1 = G, 2 = B).
    pub fn get(&self, channel: usize, value: u8) -> f32 {
        self.table[channel][usize::from(value)]
    }

    /// The 256 entries of one channel.
    pub fn channel(&self, channel: usize) -> &[f32; 256] {
        &self.table[channel]
    }
}

/// Normalises `image` and lays it out as `pixel_values` rows: `[gh·gw, 3, patch, patch]` with
/// patches in raster order (row of patches by row of patches) and, inside a patch, index
/// `c·patch² + y·patch + x`. Returns the values and `(gh, gw)`.
pub fn patchify(
    image: &RgbImage,
    lut: &NormalizeLut,
    patch_size: u32,
) -> Result<(Vec<f32>, usize, usize)> {
    let (grid_h, grid_w) = patch_grid(image, patch_size)?;
    let mut values = vec![0f32; grid_h * grid_w * 3 * (patch_size as usize).pow(2)];
    patchify_into(image, lut, patch_size, &mut values)?;
    Ok((values, grid_h, grid_w))
}

/// `(gh, gw)`: the patch grid of `image`, which must be a whole number of patches.
pub(crate) fn patch_grid(image: &RgbImage, patch_size: u32) -> Result<(usize, usize)> {
    let (width, height) = (image.width(), image.height());
    if patch_size == 0 || width % patch_size != 0 || height % patch_size != 0 {
        return Err(MediaError::InvalidSize {
            width: width.into(),
            height: height.into(),
            reason: format!("not a multiple of the {patch_size}-pixel patch size"),
        });
    }
    Ok((
        (height / patch_size) as usize,
        (width / patch_size) as usize,
    ))
}

/// [`patchify`] into `out`, which must hold exactly the image's patches.
pub(crate) fn patchify_into(
    image: &RgbImage,
    lut: &NormalizeLut,
    patch_size: u32,
    out: &mut [f32],
) -> Result<()> {
    let (grid_h, grid_w) = patch_grid(image, patch_size)?;
    let patch = patch_size as usize;
    let patch_len = 3 * patch * patch;
    let band_len = grid_w * patch_len;
    if out.len() != grid_h * band_len {
        return Err(MediaError::InvalidSize {
            width: image.width().into(),
            height: image.height().into(),
            reason: format!(
                "the output holds {} values, the image has {}",
                out.len(),
                grid_h * band_len
            ),
        });
    }
    let row_bytes = image.width() as usize * 3;
    let src = image.as_raw();
    // One band = one row of patches = `patch` image rows; bands are independent.
    let fill_band = |(band, out): (usize, &mut [f32])| {
        for y in 0..patch {
            let row = &src[(band * patch + y) * row_bytes..][..row_bytes];
            for (patch_x, patch_pixels) in row.chunks_exact(patch * 3).enumerate() {
                let base = patch_x * patch_len + y * patch;
                for (channel, lut_channel) in lut.table.iter().enumerate() {
                    let dst = &mut out[base + channel * patch * patch..][..patch];
                    for (d, px) in dst.iter_mut().zip(patch_pixels.chunks_exact(3)) {
                        *d = lut_channel[usize::from(px[channel])];
                    }
                }
            }
        }
    };
    if out.len() >= 1 << 16 {
        out.par_chunks_exact_mut(band_len)
            .enumerate()
            .for_each(fill_band);
    } else {
        out.chunks_exact_mut(band_len)
            .enumerate()
            .for_each(fill_band);
    }
    Ok(())
}
