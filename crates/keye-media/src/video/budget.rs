//! keye-vl-utils 1.5's token budget: one size for slow frames and a smaller one for fast
//! frames, chosen so that the whole video fits `video_total_pixels`.

use crate::error::Result;
use crate::limits::UtilsLimits;
use crate::options::VideoOptions;
use crate::pipeline::{ImageSize, check_target_area, to_size};
use crate::smart_resize::{SmartResizeRule, smart_resize_with};

/// Fast frames get this share of a slow frame's tokens.
const FAST_TOKEN_RATIO: f64 = 0.3;

/// keye-vl-utils' `height`/`width` and `fast_height`/`fast_width` for a video of `n_slow` slow
/// and `n_fast` fast frames of `frame` size.
///
/// A binary search finds `t*`, the first per-frame token count whose estimated total exceeds
/// the budget (or the per-frame maximum if none does); slow frames are then sized for `t*`
/// tokens and fast frames for 30 % of the slow frames' actual tokens. `t*` overshoots by one,
/// but `smart_resize` floors, so totals land just under the budget, as in the reference.
pub(crate) fn slow_fast_sizes(
    frame: ImageSize,
    n_slow: usize,
    n_fast: usize,
    opts: &VideoOptions,
    limits: &UtilsLimits,
) -> Result<(ImageSize, ImageSize)> {
    let factor = limits.factor;
    let f = factor as f64;
    let min_pixels = opts
        .min_pixels
        .unwrap_or(limits.video_min_pixels)
        .max(limits.video_min_pixels);
    let min_tokens = (min_pixels as f64 / f / f) as i128;
    let budget = i128::from(opts.video_total_pixels.unwrap_or(limits.video_total_pixels));
    let token_pixels = i128::from(factor * factor);
    let estimate = |tokens: i128| {
        let fast_tokens = ((FAST_TOKEN_RATIO * tokens as f64) as i128).max(min_tokens);
        (n_slow as i128 * tokens + n_fast as i128 * fast_tokens) * token_pixels
    };
    // Both ends start as doubles (`min_pixels / 28 / 28`); the midpoints are integers.
    let mut low = min_pixels as f64 / f / f;
    let mut high = opts.max_pixels.unwrap_or(limits.video_max_pixels) as f64 / f / f;
    while low < high {
        let mid = (low + high) as i128 / 2;
        if estimate(mid) > budget {
            high = mid as f64;
        } else {
            low = (mid + 1) as f64;
        }
    }
    let (height, width) = (u64::from(frame.height), u64::from(frame.width));
    let rule = SmartResizeRule::UtilsV1_5;
    let (slow_h, slow_w) =
        smart_resize_with(height, width, factor, min_pixels as f64, low * f * f, rule)?;
    let slow_tokens = (slow_h * slow_w) as f64 / f / f;
    let fast_max_pixels =
        ((slow_tokens * FAST_TOKEN_RATIO) as u64 * factor * factor).max(limits.video_min_pixels);
    let (fast_h, fast_w) = smart_resize_with(
        height,
        width,
        factor,
        min_pixels as f64,
        fast_max_pixels as f64,
        rule,
    )?;
    Ok((
        check_target_area(to_size(slow_w, slow_h)?)?,
        check_target_area(to_size(fast_w, fast_h)?)?,
    ))
}
