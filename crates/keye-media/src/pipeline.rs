//! The image path of the official pipeline: keye-vl-utils `fetch_image` (stage A), then the
//! Hugging Face image processor (stage B), then normalisation and patches.

use std::borrow::Cow;
use std::path::Path;

use crate::config::{Generation, ProcessorConfig};
use crate::decode::decode_labelled;
use crate::error::{MediaError, Result};
use crate::fetch::{MediaPolicy, describe_source, fetch_bytes};
use crate::grid::GridThw;
use crate::image::RgbImage;
use crate::limits::UtilsLimits;
use crate::normalize::{NormalizeLut, patchify};
use crate::options::ImageOptions;
use crate::resample::{ResampleFilter, resize};
use crate::smart_resize::{ResizeBounds, smart_resize};

/// Width and height of an image in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ImageSize {
    pub width: u32,
    pub height: u32,
}

/// The sizes an image goes through and what it costs the model, computed without pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ImagePlan {
    /// Size after keye-vl-utils' resize (stage A).
    pub utils_size: ImageSize,
    /// Size after the processor's resize (stage B): what is cut into patches.
    pub resized_size: ImageSize,
    /// `[1, h/patch, w/patch]`: this image's row of `image_grid_thw`.
    pub grid: GridThw,
    /// Number of `<|image_pad|>` placeholders (patches / merge²).
    pub tokens: usize,
}

/// One image ready for the vision tower.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessedImage {
    /// `[grid.patches(), 3, patch, patch]` row-major, patches in raster order.
    pub pixel_values: Vec<f32>,
    pub plan: ImagePlan,
}

/// Loads and decodes the image `source` refers to (path, `file://`, `http(s)://`, `data:`),
/// converting to RGB with the colour rules of `generation`'s keye-vl-utils.
pub fn load_image(
    source: &str,
    base_dir: Option<&Path>,
    policy: &MediaPolicy,
    generation: Generation,
) -> Result<RgbImage> {
    let bytes = fetch_bytes(source, base_dir, policy)?;
    decode_labelled(
        &bytes,
        generation.alpha_mode(),
        policy.max_image_pixels,
        &describe_source(source),
    )
}

/// Computes every size of the pipeline for a decoded `width`×`height` image, without pixels
/// (for token budgeting). Fails like the reference on degenerate sizes and aspect ratios over
/// 200.
pub fn plan_image(
    width: u32,
    height: u32,
    opts: &ImageOptions,
    cfg: &ProcessorConfig,
    generation: Generation,
) -> Result<ImagePlan> {
    plan_image_with_limits(
        width,
        height,
        opts,
        cfg,
        generation,
        &UtilsLimits::defaults(generation),
    )
}

/// [`plan_image`] with keye-vl-utils constants other than the released ones (see
/// [`UtilsLimits::from_env`]).
pub fn plan_image_with_limits(
    width: u32,
    height: u32,
    opts: &ImageOptions,
    cfg: &ProcessorConfig,
    generation: Generation,
    limits: &UtilsLimits,
) -> Result<ImagePlan> {
    let bounds = limits.image_bounds();
    let utils_size = utils_target(width, height, opts, bounds, bounds, generation)?;
    let resized_size = check_target_area(processor_target(utils_size, cfg, generation)?)?;
    let patch = cfg.patch_size;
    if resized_size.width % patch != 0 || resized_size.height % patch != 0 {
        return Err(MediaError::InvalidSize {
            width: resized_size.width.into(),
            height: resized_size.height.into(),
            reason: format!("not a multiple of the {patch}-pixel patch size"),
        });
    }
    let grid = GridThw::new(
        1,
        (resized_size.height / patch) as usize,
        (resized_size.width / patch) as usize,
    );
    let merge = cfg.merge_size as usize;
    Ok(ImagePlan {
        utils_size,
        resized_size,
        grid,
        tokens: grid.tokens(merge),
    })
}

/// Runs stage A (keye-vl-utils resize), stage B (processor resize, only if the size changes),
/// normalisation and patchification on a decoded image.
pub fn preprocess_image(
    image: &RgbImage,
    opts: &ImageOptions,
    cfg: &ProcessorConfig,
    generation: Generation,
) -> Result<ProcessedImage> {
    preprocess_image_with_limits(
        image,
        opts,
        cfg,
        generation,
        &UtilsLimits::defaults(generation),
    )
}

/// [`preprocess_image`] with keye-vl-utils constants other than the released ones.
pub fn preprocess_image_with_limits(
    image: &RgbImage,
    opts: &ImageOptions,
    cfg: &ProcessorConfig,
    generation: Generation,
    limits: &UtilsLimits,
) -> Result<ProcessedImage> {
    let plan =
        plan_image_with_limits(image.width(), image.height(), opts, cfg, generation, limits)?;
    // keye-vl-utils calls PIL's `resize` with its default filter, bicubic.
    let stage_a = resize_if_needed(
        Cow::Borrowed(image),
        plan.utils_size,
        ResampleFilter::Bicubic,
    )?;
    let stage_b = resize_if_needed(stage_a, plan.resized_size, cfg.resample)?;
    let (pixel_values, _, _) = patchify(&stage_b, &NormalizeLut::new(cfg), cfg.patch_size)?;
    Ok(ProcessedImage { pixel_values, plan })
}

pub(crate) fn resize_if_needed<'a>(
    image: Cow<'a, RgbImage>,
    size: ImageSize,
    filter: ResampleFilter,
) -> Result<Cow<'a, RgbImage>> {
    if image.width() == size.width && image.height() == size.height {
        return Ok(image);
    }
    resize(&image, size.width, size.height, filter).map(Cow::Owned)
}

/// keye-vl-utils' `fetch_image` size: explicit `resized_height`/`resized_width` (both needed)
/// go through `smart_resize` with `explicit_bounds` (always the image defaults), otherwise the
/// decoded size with the element's bounds, `default_bounds` filling the unset ones.
pub(crate) fn utils_target(
    width: u32,
    height: u32,
    opts: &ImageOptions,
    default_bounds: ResizeBounds,
    explicit_bounds: ResizeBounds,
    generation: Generation,
) -> Result<ImageSize> {
    let (height, width, bounds) = match (opts.resized_height, opts.resized_width) {
        (Some(h), Some(w)) => (u64::from(h), u64::from(w), explicit_bounds),
        _ => (
            u64::from(height),
            u64::from(width),
            ResizeBounds {
                min_pixels: opts.min_pixels.unwrap_or(default_bounds.min_pixels),
                max_pixels: opts.max_pixels.unwrap_or(default_bounds.max_pixels),
                ..default_bounds
            },
        ),
    };
    let (h, w) = smart_resize(height, width, bounds, generation.utils_rule())?;
    check_target_area(to_size(w, h)?)
}

/// The processor's `smart_resize` with its own bounds, applied to the stage-A output.
pub(crate) fn processor_target(
    size: ImageSize,
    cfg: &ProcessorConfig,
    generation: Generation,
) -> Result<ImageSize> {
    if !cfg.do_resize {
        return Ok(size);
    }
    let bounds = ResizeBounds {
        factor: cfg.spatial_factor(),
        min_pixels: cfg.min_pixels,
        max_pixels: cfg.max_pixels,
    };
    let (h, w) = smart_resize(
        size.height.into(),
        size.width.into(),
        bounds,
        generation.processor_rule(),
    )?;
    to_size(w, h)
}

/// Largest resize target accepted, whatever the options ask for: Pillow's decompression-bomb
/// limit, far above any size the models use (20,480 tokens = 16 megapixels), and a bound on
/// the memory a request can make us allocate.
pub const MAX_TARGET_PIXELS: u64 = crate::fetch::PILLOW_MAX_IMAGE_PIXELS;

pub(crate) fn check_target_area(size: ImageSize) -> Result<ImageSize> {
    let pixels = u64::from(size.width) * u64::from(size.height);
    if pixels > MAX_TARGET_PIXELS {
        return Err(MediaError::InvalidSize {
            width: size.width.into(),
            height: size.height.into(),
            reason: format!(
                "resize target has {pixels} pixels, above the limit of {MAX_TARGET_PIXELS}"
            ),
        });
    }
    Ok(size)
}

pub(crate) fn to_size(width: u64, height: u64) -> Result<ImageSize> {
    match (u32::try_from(width), u32::try_from(height)) {
        (Ok(width), Ok(height)) => Ok(ImageSize { width, height }),
        _ => Err(MediaError::InvalidSize {
            width,
            height,
            reason: "resize target does not fit in 32 bits".into(),
        }),
    }
}
