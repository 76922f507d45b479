use serde::{Deserialize, Deserializer};

/// Per-image options of a message part, named like keye-vl-utils' element keys.
///
/// Counts accept JSON integers and whole-valued floats (`94080.0`, as Python scripts often
/// write `28 * 28 * 120.0`); a fractional count is refused.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ImageOptions {
    #[serde(deserialize_with = "whole_number")]
    pub min_pixels: Option<u64>,
    #[serde(deserialize_with = "whole_number")]
    pub max_pixels: Option<u64>,
    #[serde(deserialize_with = "whole_number")]
    pub resized_height: Option<u32>,
    #[serde(deserialize_with = "whole_number")]
    pub resized_width: Option<u32>,
}

/// Per-video options of a message part, named like keye-vl-utils' element keys.
///
/// Which keys take effect depends on the model generation, as in the reference:
///
/// * Keye-VL-1.5 (keye-vl-utils 1.5.2): `fps`, `max_frames`, `min_pixels`, `max_pixels`,
///   `video_total_pixels`, `min_frame_similarity`; for frame lists also `resized_height` /
///   `resized_width`. `video_start` / `video_end` (which the reference refuses) select a time
///   window as the Preview does. `nframes`, `min_frames` and `total_pixels` are ignored, and so
///   are `resized_height` / `resized_width` for video files.
/// * Keye-VL-8B-Preview (keye-vl-utils 1.0.0): `fps` or `nframes`, `min_frames`,
///   `max_frames`, `min_pixels`, `max_pixels`, `total_pixels`, `video_start`, `video_end`,
///   `resized_height` / `resized_width`.
///
/// Counts accept whole-valued floats like [`ImageOptions`].
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct VideoOptions {
    pub fps: Option<f64>,
    #[serde(deserialize_with = "whole_number")]
    pub nframes: Option<u32>,
    #[serde(deserialize_with = "whole_number")]
    pub min_frames: Option<u32>,
    #[serde(deserialize_with = "whole_number")]
    pub max_frames: Option<u32>,
    #[serde(deserialize_with = "whole_number")]
    pub min_pixels: Option<u64>,
    #[serde(deserialize_with = "whole_number")]
    pub max_pixels: Option<u64>,
    #[serde(deserialize_with = "whole_number")]
    pub total_pixels: Option<u64>,
    #[serde(deserialize_with = "whole_number")]
    pub video_total_pixels: Option<u64>,
    pub video_start: Option<f64>,
    pub video_end: Option<f64>,
    #[serde(deserialize_with = "whole_number")]
    pub resized_height: Option<u32>,
    #[serde(deserialize_with = "whole_number")]
    pub resized_width: Option<u32>,
    pub min_frame_similarity: Option<f64>,
}

impl VideoOptions {
    /// The keys keye-vl-utils passes on to each frame of a frame-list video.
    pub(crate) fn frame_options(&self) -> ImageOptions {
        ImageOptions {
            min_pixels: self.min_pixels,
            max_pixels: self.max_pixels,
            resized_height: self.resized_height,
            resized_width: self.resized_width,
        }
    }
}

/// A non-negative whole number given as a JSON integer or a whole-valued float.
fn whole_number<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    use serde::de::Error;
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    let whole = number.as_u64().or_else(|| {
        number
            .as_f64()
            .filter(|f| f.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(f))
            .map(|f| f as u64)
    });
    let whole = whole.ok_or_else(|| {
        D::Error::custom(format!(
            "expected a non-negative whole number, got {number}"
        ))
    })?;
    T::try_from(whole)
        .map(Some)
        .map_err(|_| D::Error::custom(format!("{whole} is out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_accept_whole_floats_and_refuse_fractions() {
        let opts: VideoOptions =
            serde_json::from_str(r#"{"max_pixels": 94080.0, "nframes": 8, "fps": 2}"#).unwrap();
        assert_eq!(opts.max_pixels, Some(94080));
        assert_eq!(opts.nframes, Some(8));
        assert_eq!(opts.fps, Some(2.0));
        let image: ImageOptions = serde_json::from_str(r#"{"min_pixels": 3136.0}"#).unwrap();
        assert_eq!(image.min_pixels, Some(3136));
        assert!(serde_json::from_str::<ImageOptions>(r#"{"max_pixels": 100.5}"#).is_err());
        assert!(serde_json::from_str::<ImageOptions>(r#"{"max_pixels": -1}"#).is_err());
        assert!(serde_json::from_str::<VideoOptions>(r#"{"nframes": 5000000000}"#).is_err());
        let empty: VideoOptions = serde_json::from_str(r#"{"fps": null}"#).unwrap();
        assert_eq!(empty, VideoOptions::default());
    }
}
