//! keye-vl-utils' module-level constants, and the environment variables that override them.

use crate::config::Generation;
use crate::error::{MediaError, Result};
use crate::smart_resize::ResizeBounds;

/// The constants keye-vl-utils sizes media with: the spatial factor and the default pixel
/// bounds that apply when a message part sets none.
///
/// [`UtilsLimits::defaults`] gives the released packages' values; [`UtilsLimits::from_env`]
/// applies the environment overrides of the deployments that read them (see there). Every
/// other constant of the reference (default fps, frame counts, similarity settings) is fixed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UtilsLimits {
    /// `IMAGE_FACTOR`: output sides are multiples of it (28 = 14-pixel patches merged 2×2).
    pub factor: u64,
    /// `MIN_PIXELS` / `MAX_PIXELS`: image bounds.
    pub image_min_pixels: u64,
    pub image_max_pixels: u64,
    /// `VIDEO_MIN_PIXELS` / `VIDEO_MAX_PIXELS`: bounds of one video frame.
    pub video_min_pixels: u64,
    pub video_max_pixels: u64,
    /// `VIDEO_TOTAL_PIXELS`: pixel budget of a whole video.
    pub video_total_pixels: u64,
}

impl UtilsLimits {
    /// keye-vl-utils 1.0.0 (Preview) or 1.5.2 (Keye-VL-1.5) as released.
    pub fn defaults(generation: Generation) -> Self {
        const F2: u64 = 28 * 28;
        match generation {
            Generation::Preview => Self {
                factor: 28,
                image_min_pixels: 4 * F2,
                image_max_pixels: 16_384 * F2,
                video_min_pixels: 128 * F2,
                video_max_pixels: 768 * F2,
                // `int(float(128000 * 28 * 28 * 0.9))`: 90% of a 128k-token context.
                video_total_pixels: 90_316_800,
            },
            Generation::V1_5 => Self {
                factor: 28,
                image_min_pixels: 4 * F2,
                image_max_pixels: 20_480 * F2,
                video_min_pixels: 48 * F2,
                video_max_pixels: 768 * F2,
                video_total_pixels: 65_536 * F2,
            },
        }
    }

    /// `smart_resize` bounds of an image part that sets none.
    pub fn image_bounds(&self) -> ResizeBounds {
        ResizeBounds {
            factor: self.factor,
            min_pixels: self.image_min_pixels,
            max_pixels: self.image_max_pixels,
        }
    }

    /// `smart_resize` bounds of a video frame whose part sets none.
    pub fn video_bounds(&self) -> ResizeBounds {
        ResizeBounds {
            factor: self.factor,
            min_pixels: self.video_min_pixels,
            max_pixels: self.video_max_pixels,
        }
    }

    /// The defaults with the process environment's overrides; see [`UtilsLimits::from_lookup`].
    pub fn from_env(generation: Generation) -> Result<Self> {
        Self::from_lookup(generation, |name| std::env::var(name).ok())
    }

    /// The defaults with the overrides `lookup` returns, by variable name:
    ///
    /// * Preview (keye-vl-utils 1.0.0): `VIDEO_MAX_PIXELS` is the per-video pixel budget (a
    ///   number, possibly with a fraction, truncated like `int(float(value))`).
    /// * Keye-VL-1.5 (the names of Kwai's sglang fork, whose defaults equal 1.5.2's):
    ///   `KEYE_IMAGE_FACTOR`, `IMAGE_MAX_TOKENS` (image upper bound in tokens), `MIN_PIXELS`,
    ///   `MAX_PIXELS` (image bounds in pixels, `MAX_PIXELS` winning over `IMAGE_MAX_TOKENS`),
    ///   `VIDEO_MIN_TOKENS`, `VIDEO_MAX_TOKENS` (frame bounds in tokens),
    ///   `VIDEO_TOTAL_MAX_TOKENS` and `VIDEO_TOTAL_PIXELS` (video budget in tokens or pixels,
    ///   pixels winning). Tokens are `factor²`-pixel squares.
    ///
    /// Empty values count as unset; anything else that is not a non-negative whole number
    /// (or, for `VIDEO_MAX_PIXELS`, a non-negative number) is an error naming the variable.
    pub fn from_lookup(
        generation: Generation,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        let mut limits = Self::defaults(generation);
        let read = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        match generation {
            Generation::Preview => {
                if let Some(value) = read("VIDEO_MAX_PIXELS") {
                    let pixels: f64 = value
                        .trim()
                        .parse()
                        .map_err(|_| invalid("VIDEO_MAX_PIXELS", &value))?;
                    if !pixels.is_finite() || pixels < 0.0 {
                        return Err(invalid("VIDEO_MAX_PIXELS", &value));
                    }
                    limits.video_total_pixels = pixels as u64;
                }
            }
            Generation::V1_5 => {
                let whole = |name: &str| -> Result<Option<u64>> {
                    read(name)
                        .map(|value| {
                            value
                                .trim()
                                .parse::<u64>()
                                .map_err(|_| invalid(name, &value))
                        })
                        .transpose()
                };
                if let Some(factor) = whole("KEYE_IMAGE_FACTOR")? {
                    if factor == 0 {
                        return Err(invalid("KEYE_IMAGE_FACTOR", "0"));
                    }
                    limits.factor = factor;
                }
                let token_pixels = limits.factor * limits.factor;
                let tokens = |name: &str, default_tokens: u64| -> Result<u64> {
                    let tokens = whole(name)?.unwrap_or(default_tokens);
                    tokens
                        .checked_mul(token_pixels)
                        .ok_or_else(|| invalid(name, &tokens.to_string()))
                };
                limits.image_min_pixels = whole("MIN_PIXELS")?.unwrap_or(4 * token_pixels);
                limits.image_max_pixels = match whole("MAX_PIXELS")? {
                    Some(pixels) => pixels,
                    None => tokens("IMAGE_MAX_TOKENS", 20_480)?,
                };
                limits.video_min_pixels = tokens("VIDEO_MIN_TOKENS", 48)?;
                limits.video_max_pixels = tokens("VIDEO_MAX_TOKENS", 768)?;
                limits.video_total_pixels = match whole("VIDEO_TOTAL_PIXELS")? {
                    Some(pixels) => pixels,
                    None => tokens("VIDEO_TOTAL_MAX_TOKENS", 65_536)?,
                };
            }
        }
        Ok(limits)
    }
}

fn invalid(name: &str, value: &str) -> MediaError {
    MediaError::Config {
        reason: format!("environment variable {name}={value:?} is not a valid non-negative number"),
    }
}
