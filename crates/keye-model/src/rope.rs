//! Rotary tables. Both references build them in f32: `inv_freq = 1 / θ^(f32(2j)/dim)`, angles as
//! a single f32 product `position · inv_freq`, then f32 cos/sin.

use candle_core::{Device, Tensor};

use crate::error::Result;

/// `dim/2` inverse frequencies for a rotary over `dim` dimensions.
pub fn inv_freq(theta: f64, dim: usize) -> Vec<f32> {
    let base = theta as f32;
    (0..dim / 2)
        .map(|j| 1.0f32 / base.powf((2 * j) as f32 / dim as f32))
        .collect()
}

/// Multimodal RoPE of the LLM: frequency pair `j` rotates by the temporal, height or width
/// position depending on which of the three `sections` it falls in.
pub struct MRope {
    inv_freq: Vec<f32>,
    axis_of_pair: Vec<usize>,
}

impl MRope {
    pub fn new(theta: f64, head_dim: usize, sections: [usize; 3]) -> Self {
        let axis_of_pair = sections
            .iter()
            .enumerate()
            .flat_map(|(axis, &len)| std::iter::repeat_n(axis, len))
            .collect();
        Self {
            inv_freq: inv_freq(theta, head_dim),
            axis_of_pair,
        }
    }

    /// `(cos, sin)`, each `[tokens, head_dim/2]`, for per-token `[t, h, w]` positions.
    pub fn tables(&self, positions: &[[i64; 3]], device: &Device) -> Result<(Tensor, Tensor)> {
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(positions.len() * half);
        let mut sin = Vec::with_capacity(positions.len() * half);
        for pos in positions {
            for (freq, &axis) in self.inv_freq.iter().zip(&self.axis_of_pair) {
                let angle = pos[axis] as f32 * freq;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        Ok((
            Tensor::from_vec(cos, (positions.len(), half), device)?,
            Tensor::from_vec(sin, (positions.len(), half), device)?,
        ))
    }
}

/// 2-D RoPE of the vision tower: the first half of the angles follow the patch row, the second
/// half the patch column, each with `head_dim/4` frequencies.
pub struct VisionRope {
    inv_freq: Vec<f32>,
}

impl VisionRope {
    pub fn new(theta: f64, head_dim: usize) -> Self {
        Self {
            inv_freq: inv_freq(theta, head_dim / 2),
        }
    }

    /// `(cos, sin)`, each `[patches, head_dim/2]`, for patches given as `(row, col)`.
    pub fn tables(
        &self,
        rows_cols: &[(usize, usize)],
        device: &Device,
    ) -> Result<(Tensor, Tensor)> {
        let half = 2 * self.inv_freq.len();
        let mut cos = Vec::with_capacity(rows_cols.len() * half);
        let mut sin = Vec::with_capacity(rows_cols.len() * half);
        for &(row, col) in rows_cols {
            for coordinate in [row, col] {
                for freq in &self.inv_freq {
                    let angle = coordinate as f32 * freq;
                    cos.push(angle.cos());
                    sin.push(angle.sin());
                }
            }
        }
        Ok((
            Tensor::from_vec(cos, (rows_cols.len(), half), device)?,
            Tensor::from_vec(sin, (rows_cols.len(), half), device)?,
        ))
    }
}
