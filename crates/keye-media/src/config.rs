//! The Hugging Face image processor settings (`preprocessor_config.json`) and the model
//! generation that selects the keye-vl-utils rules.

use std::path::Path;

use serde::Deserialize;

use crate::decode::AlphaMode;
use crate::error::{MediaError, Result};
use crate::resample::ResampleFilter;
use crate::smart_resize::SmartResizeRule;

/// Which Keye-VL release the inputs are prepared for. It decides the stage-A rules
/// (keye-vl-utils version) and the processor's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Generation {
    /// Keye-VL-8B-Preview: keye-vl-utils 1.0.0 + `SiglipImageProcessor`.
    Preview,
    /// Keye-VL-1.5: keye-vl-utils 1.5.x + `KeyeVL1_5ImageProcessor`.
    V1_5,
}

impl Generation {
    /// Maps a `config.json` `model_type` (`"Keye"`, `"KeyeVL1_5"`).
    pub fn from_model_type(model_type: &str) -> Option<Self> {
        match model_type {
            "Keye" => Some(Self::Preview),
            "KeyeVL1_5" => Some(Self::V1_5),
            _ => None,
        }
    }

    /// The `smart_resize` of keye-vl-utils (stage A).
    pub fn utils_rule(self) -> SmartResizeRule {
        match self {
            Self::Preview => SmartResizeRule::UtilsV1_0,
            Self::V1_5 => SmartResizeRule::UtilsV1_5,
        }
    }

    /// The `smart_resize` of the Hugging Face processor (stage B).
    pub fn processor_rule(self) -> SmartResizeRule {
        match self {
            Self::Preview => SmartResizeRule::PreviewProcessor,
            Self::V1_5 => SmartResizeRule::V1_5Processor,
        }
    }

    /// How keye-vl-utils turns transparency into RGB.
    pub fn alpha_mode(self) -> AlphaMode {
        match self {
            Self::Preview => AlphaMode::CompositeOnWhite,
            Self::V1_5 => AlphaMode::Drop,
        }
    }
}

/// OpenAI CLIP normalisation, the processors' default when the config has no mean/std.
pub const OPENAI_CLIP_MEAN: [f64; 3] = [0.48145466, 0.4578275, 0.40821073];
pub const OPENAI_CLIP_STD: [f64; 3] = [0.26862954, 0.26130258, 0.27577711];

/// Image processor settings, with the Python classes' defaults for absent keys.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessorConfig {
    pub do_resize: bool,
    pub resample: ResampleFilter,
    pub do_rescale: bool,
    pub rescale_factor: f64,
    pub do_normalize: bool,
    pub image_mean: [f64; 3],
    pub image_std: [f64; 3],
    pub min_pixels: u64,
    pub max_pixels: u64,
    pub patch_size: u32,
    pub temporal_patch_size: u32,
    pub merge_size: u32,
}

impl ProcessorConfig {
    /// The processor class defaults of `generation` (`SiglipImageProcessor` for Preview,
    /// `KeyeVL1_5ImageProcessor` for 1.5); they differ only in the resampling filter.
    pub fn defaults(generation: Generation) -> Self {
        Self {
            do_resize: true,
            resample: match generation {
                Generation::Preview => ResampleFilter::Bicubic,
                Generation::V1_5 => ResampleFilter::Bilinear,
            },
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: OPENAI_CLIP_MEAN,
            image_std: OPENAI_CLIP_STD,
            min_pixels: 56 * 56,
            max_pixels: 28 * 28 * 1280,
            patch_size: 14,
            temporal_patch_size: 1,
            merge_size: 2,
        }
    }

    /// Parses the contents of a `preprocessor_config.json`. Unknown keys are ignored, absent
    /// ones take the class defaults; unsupported values are refused.
    pub fn from_json(json: &str, generation: Generation) -> Result<Self> {
        let raw: RawConfig = serde_json::from_str(json).map_err(|e| MediaError::Config {
            reason: format!("preprocessor_config.json: {e}"),
        })?;
        raw.resolve(generation)
    }

    /// Reads and parses a `preprocessor_config.json` file.
    pub fn from_file(path: &Path, generation: Generation) -> Result<Self> {
        let json = std::fs::read_to_string(path).map_err(|error| MediaError::Io {
            path: path.to_owned(),
            error,
        })?;
        Self::from_json(&json, generation)
    }

    /// Side length of the square every output size is a multiple of (28 for Keye).
    pub fn spatial_factor(&self) -> u64 {
        u64::from(self.patch_size) * u64::from(self.merge_size)
    }

    fn validate(self) -> Result<Self> {
        let fail = |reason: String| Err(MediaError::Config { reason });
        if self.patch_size == 0 || self.merge_size == 0 {
            return fail(format!(
                "patch_size ({}) and merge_size ({}) must be positive",
                self.patch_size, self.merge_size
            ));
        }
        if self.temporal_patch_size != 1 {
            return fail(format!(
                "temporal_patch_size {} is not supported (Keye uses 1)",
                self.temporal_patch_size
            ));
        }
        if !self.rescale_factor.is_finite() {
            return fail(format!(
                "rescale_factor {} is not finite",
                self.rescale_factor
            ));
        }
        if self.do_normalize
            && (self.image_mean.iter().any(|m| !m.is_finite())
                || self.image_std.iter().any(|s| !s.is_finite() || *s == 0.0))
        {
            return fail(format!(
                "image_mean {:?} / image_std {:?} must be finite with non-zero std",
                self.image_mean, self.image_std
            ));
        }
        Ok(self)
    }
}

/// A mean/std entry: Python accepts one float for all channels or one per channel.
#[derive(Deserialize)]
#[serde(untagged)]
enum PerChannel {
    Same(f64),
    Each(Vec<f64>),
}

impl PerChannel {
    fn resolve(self, key: &str) -> Result<[f64; 3]> {
        match self {
            Self::Same(v) => Ok([v; 3]),
            Self::Each(values) => {
                values
                    .try_into()
                    .map_err(|values: Vec<f64>| MediaError::Config {
                        reason: format!(
                            "{key} needs 3 values (one per RGB channel), got {}",
                            values.len()
                        ),
                    })
            }
        }
    }
}

/// The `size` dict that newer saves carry next to (or instead of) the top-level pixel bounds.
#[derive(Deserialize, Default)]
struct RawSize {
    min_pixels: Option<u64>,
    max_pixels: Option<u64>,
}

#[derive(Deserialize)]
struct RawConfig {
    do_resize: Option<bool>,
    resample: Option<i64>,
    do_rescale: Option<bool>,
    rescale_factor: Option<f64>,
    do_normalize: Option<bool>,
    image_mean: Option<PerChannel>,
    image_std: Option<PerChannel>,
    min_pixels: Option<u64>,
    max_pixels: Option<u64>,
    size: Option<RawSize>,
    patch_size: Option<u32>,
    temporal_patch_size: Option<u32>,
    merge_size: Option<u32>,
}

impl RawConfig {
    fn resolve(self, generation: Generation) -> Result<ProcessorConfig> {
        let defaults = ProcessorConfig::defaults(generation);
        let size = self.size.unwrap_or_default();
        let resample = match self.resample {
            None => defaults.resample,
            Some(code) => ResampleFilter::from_pil_code(code).ok_or_else(|| MediaError::Config {
                reason: format!(
                    "resample {code} is not supported (expected a PIL convolution filter: 1 LANCZOS, 2 BILINEAR, 3 BICUBIC, 4 BOX, 5 HAMMING)"
                ),
            })?,
        };
        ProcessorConfig {
            do_resize: self.do_resize.unwrap_or(defaults.do_resize),
            resample,
            do_rescale: self.do_rescale.unwrap_or(defaults.do_rescale),
            rescale_factor: self.rescale_factor.unwrap_or(defaults.rescale_factor),
            do_normalize: self.do_normalize.unwrap_or(defaults.do_normalize),
            image_mean: match self.image_mean {
                Some(mean) => mean.resolve("image_mean")?,
                None => defaults.image_mean,
            },
            image_std: match self.image_std {
                Some(std) => std.resolve("image_std")?,
                None => defaults.image_std,
            },
            min_pixels: self
                .min_pixels
                .or(size.min_pixels)
                .unwrap_or(defaults.min_pixels),
            max_pixels: self
                .max_pixels
                .or(size.max_pixels)
                .unwrap_or(defaults.max_pixels),
            patch_size: self.patch_size.unwrap_or(defaults.patch_size),
            temporal_patch_size: self
                .temporal_patch_size
                .unwrap_or(defaults.temporal_patch_size),
            merge_size: self.merge_size.unwrap_or(defaults.merge_size),
        }
        .validate()
    }
}
