//! `smart_resize`: the rule that picks a patch-aligned size for an image, in every variant that
//! runs somewhere in the official pipelines.
//!
//! All variants reproduce Python's arithmetic exactly: integer ratios become doubles before
//! dividing, `round` is round-half-to-even, and the operation order of the reference is kept,
//! because results sit on exact multiples of the factor where a different order flips them.

use crate::error::{MediaError, Result};

/// Longest side over shortest side above which every variant refuses an image.
pub const MAX_ASPECT_RATIO: f64 = 200.0;

/// Which implementation's rules to follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SmartResizeRule {
    /// keye-vl-utils 1.5.x (Keye-VL-1.5 stage A): sides clamped to at least one factor.
    UtilsV1_5,
    /// keye-vl-utils 1.0.0 (Keye-VL-8B-Preview stage A): like 1.5.x but clamps inside the
    /// max-pixels branch instead of at the end.
    UtilsV1_0,
    /// Preview Hugging Face processor (`image_processing_keye.py`, also vLLM's `keye.py`): sides
    /// shorter than the factor are pre-adjusted, no clamping afterwards.
    PreviewProcessor,
    /// Keye-VL-1.5 Hugging Face processor (transformers port): no pre-adjustment, clamping only
    /// in the max-pixels branch.
    V1_5Processor,
}

/// Target constraints of one `smart_resize` call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ResizeBounds {
    /// Both output sides are multiples of this (patch size × merge size, 28 for Keye).
    pub factor: u64,
    pub min_pixels: u64,
    pub max_pixels: u64,
}

/// Returns `(height, width)` for an image of `height`×`width` pixels under `bounds`.
///
/// Fails when a side is zero, when the aspect ratio exceeds [`MAX_ASPECT_RATIO`], or when the
/// rule would produce an empty side (only possible with degenerate bounds).
pub fn smart_resize(
    height: u64,
    width: u64,
    bounds: ResizeBounds,
    rule: SmartResizeRule,
) -> Result<(u64, u64)> {
    // Pixel bounds are far below 2^53, so the conversion is exact.
    smart_resize_with(
        height,
        width,
        bounds.factor,
        bounds.min_pixels as f64,
        bounds.max_pixels as f64,
        rule,
    )
}

/// [`smart_resize`] with pixel bounds that may be fractional, as some call sites of the
/// reference compute them (`total_pixels / nframes * 2`, `tokens * 28 * 28` from a float).
/// Python compares the integer area with the float bound exactly, which `f64` does too for
/// areas below 2^53.
pub(crate) fn smart_resize_with(
    height: u64,
    width: u64,
    factor: u64,
    min_pixels: f64,
    max_pixels: f64,
    rule: SmartResizeRule,
) -> Result<(u64, u64)> {
    if factor == 0 {
        return Err(MediaError::InvalidSize {
            width,
            height,
            reason: "resize factor must be positive".into(),
        });
    }
    let (mut height, mut width) = (height, width);
    if height == 0 || width == 0 {
        return Err(MediaError::InvalidSize {
            width,
            height,
            reason: "image has an empty side".into(),
        });
    }
    if rule == SmartResizeRule::PreviewProcessor {
        if height < factor {
            width = python_round(ratio(width * factor, height));
            height = factor;
        }
        if width < factor {
            height = python_round(ratio(height * factor, width));
            width = factor;
        }
    }
    check_aspect_ratio(height, width)?;

    let f = factor as f64;
    let clamp_rounded = matches!(
        rule,
        SmartResizeRule::UtilsV1_5 | SmartResizeRule::UtilsV1_0
    );
    let round_side = |side: u64| {
        let rounded = python_round(ratio(side, factor)) * factor;
        if clamp_rounded {
            rounded.max(factor)
        } else {
            rounded
        }
    };
    let (mut h_bar, mut w_bar) = (round_side(height), round_side(width));
    let area = height * width;
    if (h_bar * w_bar) as f64 > max_pixels {
        let beta = (area as f64 / max_pixels).sqrt();
        let floor_side = |side: u64| ((side as f64 / beta) / f).floor() as u64 * factor;
        (h_bar, w_bar) = (floor_side(height), floor_side(width));
        if matches!(
            rule,
            SmartResizeRule::UtilsV1_0 | SmartResizeRule::V1_5Processor
        ) {
            (h_bar, w_bar) = (h_bar.max(factor), w_bar.max(factor));
        }
    } else if ((h_bar * w_bar) as f64) < min_pixels {
        let beta = (min_pixels / area as f64).sqrt();
        let ceil_side = |side: u64| ((side as f64 * beta) / f).ceil() as u64 * factor;
        (h_bar, w_bar) = (ceil_side(height), ceil_side(width));
    }
    if rule == SmartResizeRule::UtilsV1_5 {
        (h_bar, w_bar) = (h_bar.max(factor), w_bar.max(factor));
    }
    if h_bar == 0 || w_bar == 0 {
        return Err(MediaError::InvalidSize {
            width,
            height,
            reason: format!(
                "resizing within {min_pixels}..={max_pixels} pixels gives an empty side ({h_bar}x{w_bar})"
            ),
        });
    }
    Ok((h_bar, w_bar))
}

/// Python's `max(h, w) / min(h, w) > 200` check, with the reference's error text.
fn check_aspect_ratio(height: u64, width: u64) -> Result<()> {
    let ratio = ratio(height.max(width), height.min(width));
    if ratio > MAX_ASPECT_RATIO {
        return Err(MediaError::AspectRatio {
            height,
            width,
            ratio,
            max_ratio: MAX_ASPECT_RATIO,
        });
    }
    Ok(())
}

/// Python's true division of two integers (exact for the sizes that pass the pixel limits).
fn ratio(numerator: u64, denominator: u64) -> f64 {
    numerator as f64 / denominator as f64
}

/// Python's `round(x)` for a non-negative double: nearest integer, ties to even.
fn python_round(x: f64) -> u64 {
    x.round_ties_even() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_round_is_half_to_even() {
        assert_eq!(python_round(0.5), 0);
        assert_eq!(python_round(1.5), 2);
        assert_eq!(python_round(2.5), 2);
        assert_eq!(python_round(2.5000001), 3);
    }
}
