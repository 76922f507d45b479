//! Which frames a video contributes: frame counts, indices and timestamps, in both
//! keye-vl-utils generations.
//!
//! The arithmetic follows Python's exactly: ratios are doubles evaluated left to right, `int()`
//! truncates, `round()` is half to even, and the indices come from torch's `float32` linspace.

use crate::error::{MediaError, Result};
use crate::limits::UtilsLimits;
use crate::options::VideoOptions;

/// keye-vl-utils' default sampling rate, both generations.
pub(crate) const DEFAULT_FPS: f64 = 2.0;

/// keye-vl-utils 1.0.0's `FRAME_FACTOR`: the Preview samples even frame counts.
const PREVIEW_FRAME_FACTOR: u64 = 2;
/// keye-vl-utils 1.0.0's `FPS_MIN_FRAMES` / `FPS_MAX_FRAMES`.
const PREVIEW_MIN_FRAMES: u64 = 4;
const PREVIEW_MAX_FRAMES: u64 = 768;

/// `torch.linspace(start, end, n).round().long()` for the default `float32` dtype.
///
/// torch computes `step = (end − start) / (n − 1)` in `f32`, fills the first half as
/// `start + step·i` and the second half as `end − step·(n−1−i)`, each with a single rounding
/// (fused multiply-add), then `round` ties to even. An exact rational linspace disagrees in
/// about 1 % of cases (e.g. 48 frames, 23 samples, sample 11: 23.499998 → 23, not 24).
pub(crate) fn linspace_indices(start: u64, end: u64, n: usize) -> Vec<u64> {
    match n {
        0 => Vec::new(),
        1 => vec![start],
        _ => {
            let (start, end) = (start as f32, end as f32);
            let step = (end - start) / (n - 1) as f32;
            let halfway = n / 2;
            (0..n)
                .map(|i| {
                    let value = if i < halfway {
                        step.mul_add(i as f32, start)
                    } else {
                        (-step).mul_add((n - 1 - i) as f32, end)
                    };
                    value.round_ties_even() as u64
                })
                .collect()
        }
    }
}

/// keye-vl-utils 1.5.2's `smart_nframes`: the frame rate is capped at the video's, the count at
/// what the pixel budget allows at the smallest frame size (and `max_frames`, if lower).
///
/// The reference samples 0 frames from clips shorter than half a sample period and then
/// crashes; here such clips give 1 frame, the least a Keye-VL-1.5 video can have.
pub(crate) fn v1_5_frame_count(
    total_frames: u64,
    video_fps: f64,
    opts: &VideoOptions,
    limits: &UtilsLimits,
) -> Result<usize> {
    let fps = positive(opts.fps.unwrap_or(DEFAULT_FPS), "fps")?.min(video_fps);
    let total_pixels = opts.video_total_pixels.unwrap_or(limits.video_total_pixels) as f64;
    let min_pixels = opts.min_pixels.unwrap_or(limits.video_min_pixels) as f64;
    if min_pixels == 0.0 {
        return Err(option_error("min_pixels must be positive for a video"));
    }
    let pixel_cap = python_int(total_pixels / min_pixels);
    let cap = opts
        .max_frames
        .map_or(pixel_cap, |max| pixel_cap.min(max.into()));
    let by_rate = python_int(total_frames as f64 / video_fps * fps);
    Ok(by_rate.min(cap).max(1) as usize)
}

/// keye-vl-utils 1.0.0's `smart_nframes` (Qwen2-VL's rules): `nframes` rounded to an even
/// count, or the `fps` rate clamped to `min_frames..=max_frames` and floored to an even count;
/// the result must lie in `2..=total_frames`.
///
/// The reference refuses one-frame videos (no even count fits); here they give the frame
/// twice, the least a Preview video can have.
pub(crate) fn preview_frame_count(
    total_frames: u64,
    video_fps: f64,
    opts: &VideoOptions,
) -> Result<usize> {
    let factor = PREVIEW_FRAME_FACTOR as f64;
    let count = if let Some(nframes) = opts.nframes {
        if opts.fps.is_some() {
            return Err(option_error("set either `fps` or `nframes`, not both"));
        }
        (f64::from(nframes) / factor).round_ties_even() * factor
    } else {
        let fps = positive(opts.fps.unwrap_or(DEFAULT_FPS), "fps")?;
        let min_frames =
            (opts.min_frames.map_or(PREVIEW_MIN_FRAMES, u64::from) as f64 / factor).ceil() * factor;
        let max_frames = (opts
            .max_frames
            .map_or(PREVIEW_MAX_FRAMES.min(total_frames), u64::from)
            as f64
            / factor)
            .floor()
            * factor;
        let by_rate = total_frames as f64 / video_fps * fps;
        let clamped = by_rate
            .max(min_frames)
            .min(max_frames)
            .min(total_frames as f64);
        (clamped / factor).floor() * factor
    };
    if total_frames < PREVIEW_FRAME_FACTOR && opts.nframes.is_none() && opts.max_frames.is_none() {
        return Ok(PREVIEW_FRAME_FACTOR as usize);
    }
    if count < factor || count > total_frames as f64 {
        return Err(option_error(&format!(
            "the frame count must lie in [{PREVIEW_FRAME_FACTOR}, {total_frames}], got {count}"
        )));
    }
    Ok(count as usize)
}

/// keye-vl-utils 1.0.0's `calculate_video_frame_range`: the first and last frame index of the
/// `video_start`..`video_end` window (seconds, clamped to the video), or the whole video.
pub(crate) fn frame_range(
    total_frames: u64,
    video_fps: f64,
    opts: &VideoOptions,
) -> Result<(u64, u64)> {
    let last = total_frames.saturating_sub(1);
    if opts.video_start.is_none() && opts.video_end.is_none() {
        return Ok((0, last));
    }
    let duration = total_frames as f64 / video_fps;
    let clamp_time = |seconds: f64, name: &str| -> Result<f64> {
        if seconds.is_nan() {
            return Err(option_error(&format!("{name} is not a number")));
        }
        Ok(seconds.min(duration).max(0.0))
    };
    let start = match opts.video_start {
        Some(seconds) => (clamp_time(seconds, "video_start")? * video_fps).ceil() as u64,
        None => 0,
    };
    let end = match opts.video_end {
        Some(seconds) => ((clamp_time(seconds, "video_end")? * video_fps).floor() as u64).min(last),
        None => last,
    };
    if start >= end {
        return Err(option_error(&format!(
            "video_start..video_end selects frames {start}..={end} of a {total_frames}-frame \
             video at {video_fps} fps ({duration:.2} s): the start must come before the end"
        )));
    }
    Ok((start, end))
}

/// `torch.FloatTensor([(1 / fps) * j ...])[indices]`: seconds in double, stored as `f32`.
pub(crate) fn timestamps(indices: &[u64], fps: f64) -> Vec<f32> {
    let period = 1.0 / fps;
    indices
        .iter()
        .map(|&j| (period * j as f64) as f32)
        .collect()
}

/// Python's `int(x)` on a non-negative double, saturating where Python would grow.
fn python_int(x: f64) -> u64 {
    x as u64
}

fn positive(value: f64, name: &str) -> Result<f64> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(option_error(&format!(
            "{name} must be a positive number, got {value}"
        )))
    }
}

fn option_error(reason: &str) -> MediaError {
    MediaError::VideoOptions {
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linspace_handles_degenerate_counts() {
        assert!(linspace_indices(0, 9, 0).is_empty());
        assert_eq!(linspace_indices(0, 9, 1), [0]);
        assert_eq!(linspace_indices(5, 5, 2), [5, 5]);
    }

    #[test]
    fn python_int_truncates() {
        assert_eq!(python_int(59.999_999_999), 59);
        assert_eq!(python_int(0.4), 0);
    }
}
