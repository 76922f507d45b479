use crate::error::{MediaError, Result};

/// An 8-bit RGB image, rows top to bottom, pixels interleaved `R G B`.
#[derive(Clone, PartialEq, Eq)]
pub struct RgbImage {
    width: u32,
    height: u32,
    data: Vec<u8>,
}

impl RgbImage {
    /// Wraps interleaved RGB bytes; fails unless `data` holds exactly `width × height` pixels
    /// and both sides are non-zero.
    pub fn new(width: u32, height: u32, data: Vec<u8>) -> Result<Self> {
        let expected = u64::from(width) * u64::from(height) * 3;
        if width == 0 || height == 0 || data.len() as u64 != expected {
            return Err(MediaError::InvalidSize {
                width: width.into(),
                height: height.into(),
                reason: format!(
                    "expected {expected} bytes of non-empty RGB data, got {}",
                    data.len()
                ),
            });
        }
        Ok(Self {
            width,
            height,
            data,
        })
    }

    /// Builds an image from a function of `(x, y)`, handy for synthetic inputs.
    pub fn from_fn(width: u32, height: u32, pixel: impl Fn(u32, u32) -> [u8; 3]) -> Result<Self> {
        let data = (0..height)
            .flat_map(|y| (0..width).map(move |x| (x, y)))
            .flat_map(|(x, y)| pixel(x, y))
            .collect();
        Self::new(width, height, data)
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    /// The interleaved RGB bytes.
    pub fn as_raw(&self) -> &[u8] {
        &self.data
    }

    pub fn into_raw(self) -> Vec<u8> {
        self.data
    }

    /// Encodes the image as an 8-bit RGB PNG (to save sampled video frames, for instance).
    pub fn to_png(&self) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        let mut encoder = png::Encoder::new(&mut bytes, self.width, self.height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder
            .write_header()
            .and_then(|mut writer| writer.write_image_data(&self.data))
            .map_err(|e| MediaError::Encode {
                reason: format!("PNG: {e}"),
            })?;
        Ok(bytes)
    }

    /// The pixel at column `x`, row `y`, or `None` outside the image.
    pub fn pixel(&self, x: u32, y: u32) -> Option<[u8; 3]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let offset = (y as usize * self.width as usize + x as usize) * 3;
        Some([
            self.data[offset],
            self.data[offset + 1],
            self.data[offset + 2],
        ])
    }
}

impl std::fmt::Debug for RgbImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RgbImage")
            .field("width", &self.width)
            .field("height", &self.height)
            .finish_non_exhaustive()
    }
}
