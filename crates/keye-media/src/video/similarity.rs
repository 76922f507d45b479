//! keye-vl-utils 1.5's slow/fast frame classification (`extract_slow_fast_frames`).
//!
//! Every sampled frame is shrunk (torch bilinear antialias) to at most 256 tokens, converted to
//! HSV with OpenCV's 8-bit integer rules, and cut into 28×28 patches. A frame is *slow* (a new
//! key frame) when too few of its patches point the same way as the last key frame's; the
//! first frame is always slow.

use crate::error::{MediaError, Result};
use crate::image::RgbImage;
use crate::limits::UtilsLimits;
use crate::pipeline::{ImageSize, to_size};
use crate::smart_resize::{ResizeBounds, SmartResizeRule, smart_resize};
use crate::torch_resample::resize_torch_bilinear_aa;

/// keye-vl-utils 1.5's default `min_frame_similarity`.
pub(crate) const DEFAULT_MIN_FRAME_SIMILARITY: f64 = 0.9;
/// Upper bound of the comparison copies, in tokens.
const COMPARISON_MAX_TOKENS: u64 = 256;
/// Edge of the patches compared (`get_frame_sim`'s `patch_size`).
const PATCH: usize = 28;
/// A patch pair counts as similar when its cosine exceeds this `f32` constant (0.7 as
/// `float32` is 0.699999988…, and torch compares in `f32`).
const PATCH_COSINE_THRESHOLD: f64 = 0.7f32 as f64;
/// `get_frame_sim`'s epsilon, added to both norms.
const NORM_EPSILON: f64 = 1e-8;
/// Fixed-point shift of OpenCV's HSV tables (`hsv_shift`).
const HSV_SHIFT: u32 = 12;

/// The size frames are compared at: `smart_resize` of the frame into 48..=256 tokens.
pub(crate) fn comparison_size(frame: ImageSize, limits: &UtilsLimits) -> Result<ImageSize> {
    let bounds = ResizeBounds {
        factor: limits.factor,
        min_pixels: limits.video_min_pixels,
        max_pixels: COMPARISON_MAX_TOKENS * limits.factor * limits.factor,
    };
    let (h, w) = smart_resize(
        frame.height.into(),
        frame.width.into(),
        bounds,
        SmartResizeRule::UtilsV1_5,
    )?;
    if !(h as usize).is_multiple_of(PATCH) || !(w as usize).is_multiple_of(PATCH) {
        return Err(MediaError::InvalidSize {
            width: w,
            height: h,
            reason: format!("comparison size is not a multiple of the {PATCH}-pixel patch"),
        });
    }
    to_size(w, h)
}

/// Classifies frames one at a time, in order, remembering only the last key frame.
pub(crate) struct SlowFastClassifier {
    size: ImageSize,
    threshold: f64,
    key: Option<HsvPatches>,
}

impl SlowFastClassifier {
    pub(crate) fn new(size: ImageSize, threshold: f64) -> Self {
        Self {
            size,
            threshold,
            key: None,
        }
    }

    /// Whether `frame` (at the sampled resolution) is slow, i.e. starts a new key frame.
    pub(crate) fn is_slow(&mut self, frame: &RgbImage) -> Result<bool> {
        let small = resize_torch_bilinear_aa(frame, self.size.width, self.size.height)?;
        let patches = HsvPatches::new(&small);
        let slow = match &self.key {
            None => true,
            // NaN (no patch to compare) is not below the threshold: such frames are fast.
            Some(key) => key.similarity(&patches) < self.threshold,
        };
        if slow {
            self.key = Some(patches);
        }
        Ok(slow)
    }
}

/// An image in OpenCV 8-bit HSV, regrouped patch by patch, with each patch's L2 norm.
struct HsvPatches {
    /// Patch `k` occupies `values[k·3·28²..][..3·28²]` as `(channel, row, column)`, the order
    /// `rearrange("c (h p1) (w p2) -> h w (c p1 p2)")` produces.
    values: Vec<u8>,
    norms: Vec<f64>,
}

impl HsvPatches {
    fn new(image: &RgbImage) -> Self {
        let tables = HsvTables::get();
        let width = image.width() as usize;
        let (grid_h, grid_w) = (image.height() as usize / PATCH, width / PATCH);
        let patch_len = 3 * PATCH * PATCH;
        let mut values = vec![0u8; grid_h * grid_w * patch_len];
        for (y, row) in image.as_raw().chunks_exact(width * 3).enumerate() {
            let (patch_row, py) = (y / PATCH, y % PATCH);
            for (x, rgb) in row.chunks_exact(3).enumerate() {
                let (patch_col, px) = (x / PATCH, x % PATCH);
                let base = (patch_row * grid_w + patch_col) * patch_len + py * PATCH + px;
                let hsv = tables.rgb_to_hsv(rgb[0], rgb[1], rgb[2]);
                for (channel, value) in hsv.into_iter().enumerate() {
                    values[base + channel * PATCH * PATCH] = value;
                }
            }
        }
        let norms = values
            .chunks_exact(patch_len)
            .map(|patch| {
                let squares: u64 = patch.iter().map(|&v| u64::from(v) * u64::from(v)).sum();
                (squares as f64).sqrt()
            })
            .collect();
        Self { values, norms }
    }

    /// `get_frame_sim`: the share of patch pairs whose cosine exceeds 0.7, ignoring pairs that
    /// are black in both frames; NaN if every pair is.
    ///
    /// HSV samples are integers, so the dot products are exact; torch's `f32` cosines can only
    /// disagree within about 1e-6 of the threshold.
    fn similarity(&self, other: &Self) -> f64 {
        let patch_len = 3 * PATCH * PATCH;
        let mut included = 0u32;
        let mut similar = 0u32;
        for (k, (a, b)) in self
            .values
            .chunks_exact(patch_len)
            .zip(other.values.chunks_exact(patch_len))
            .enumerate()
        {
            let (norm_a, norm_b) = (self.norms[k], other.norms[k]);
            // Norms of integer vectors are 0 or at least 1: "< 0.01" means all black.
            if norm_a == 0.0 && norm_b == 0.0 {
                continue;
            }
            included += 1;
            let dot: u64 = a
                .iter()
                .zip(b)
                .map(|(&p, &q)| u64::from(p) * u64::from(q))
                .sum();
            let cosine = dot as f64 / ((norm_a + NORM_EPSILON) * (norm_b + NORM_EPSILON));
            if cosine > PATCH_COSINE_THRESHOLD {
                similar += 1;
            }
        }
        // torch takes the mean of a float32 tensor of 0/1 values: an f32 division.
        f64::from(similar as f32 / included as f32)
    }
}

/// OpenCV's `RGB2HSV_b` lookup tables (`sdiv_table`, `hdiv_table180`).
struct HsvTables {
    saturation: [i32; 256],
    hue: [i32; 256],
}

impl HsvTables {
    fn get() -> &'static Self {
        static TABLES: std::sync::OnceLock<HsvTables> = std::sync::OnceLock::new();
        TABLES.get_or_init(|| {
            let mut saturation = [0i32; 256];
            let mut hue = [0i32; 256];
            for i in 1..256 {
                let i_f = f64::from(i as u32);
                saturation[i] = ((255u32 << HSV_SHIFT) as f64 / i_f).round_ties_even() as i32;
                hue[i] = ((180u32 << HSV_SHIFT) as f64 / (6.0 * i_f)).round_ties_even() as i32;
            }
            Self { saturation, hue }
        })
    }

    /// OpenCV's integer `COLOR_RGB2HSV` for 8-bit images (hue in 0..180).
    fn rgb_to_hsv(&self, r: u8, g: u8, b: u8) -> [u8; 3] {
        let (r, g, b) = (i32::from(r), i32::from(g), i32::from(b));
        let v = r.max(g).max(b);
        let diff = v - r.min(g).min(b);
        let round = 1 << (HSV_SHIFT - 1);
        let s = (diff * self.saturation[v as usize] + round) >> HSV_SHIFT;
        let h = if v == r {
            g - b
        } else if v == g {
            b - r + 2 * diff
        } else {
            r - g + 4 * diff
        };
        let mut h = (h * self.hue[diff as usize] + round) >> HSV_SHIFT;
        if h < 0 {
            h += 180;
        }
        [h as u8, s as u8, v as u8]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hsv_matches_opencv_reference_values() {
        let tables = HsvTables::get();
        // Worked by hand from OpenCV's formula; the primaries land on OpenCV's documented
        // 8-bit hues (red 0, green 60, blue 120, magenta 150).
        assert_eq!(tables.rgb_to_hsv(255, 0, 0), [0, 255, 255]);
        assert_eq!(tables.rgb_to_hsv(0, 255, 0), [60, 255, 255]);
        assert_eq!(tables.rgb_to_hsv(0, 0, 255), [120, 255, 255]);
        assert_eq!(tables.rgb_to_hsv(255, 0, 255), [150, 255, 255]);
        assert_eq!(tables.rgb_to_hsv(0, 0, 0), [0, 0, 0]);
        assert_eq!(tables.rgb_to_hsv(128, 128, 128), [0, 0, 128]);
        assert_eq!(tables.rgb_to_hsv(250, 10, 10), [0, 245, 250]);
    }
}
