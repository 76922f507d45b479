use std::path::PathBuf;

use keye_media::RgbImage;
use sha2::{Digest, Sha256};

/// The repository's copy of the golden fixtures.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// Small test assets that belong to this crate's tests.
pub fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// The synthetic image of the research note's §11.7:
/// `((7x + 3y) mod 256, (x² + y) mod 256, (x·y) mod 256)`.
pub fn synth(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        let (x, y) = (u64::from(x), u64::from(y));
        [
            ((7 * x + 3 * y) % 256) as u8,
            ((x * x + y) % 256) as u8,
            ((x * y) % 256) as u8,
        ]
    })
    .unwrap()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn f32_le_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A small deterministic generator (xorshift64*), enough for test inputs.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u32, hi: u32) -> u32 {
        lo + (self.next_u64() % u64::from(hi - lo + 1)) as u32
    }

    pub fn image(&mut self, width: u32, height: u32) -> RgbImage {
        let data = (0..width as usize * height as usize * 3)
            .map(|_| self.next_u64() as u8)
            .collect();
        RgbImage::new(width, height, data).unwrap()
    }
}
