//! `mlp_AR`: merges each 2×2 block of vision features into one LLM token.
//! Preview: LayerNorm per patch, then merge. Keye-VL-1.5: merge, then LayerNorm over the merged
//! vector. Both continue with Linear → exact GELU → Linear.

use candle_core::{Device, Tensor};
use keye_media::GridThw;

use crate::checkpoint::Checkpoint;
use crate::config::{Architecture, KeyeConfig};
use crate::error::Result;
use crate::layers::{Activation, LayerNorm, load_linear};
use crate::linear::Linear;

/// The projector's LayerNorm epsilon (`nn.LayerNorm` default), unlike the tower's 1e-6.
const PRE_NORM_EPS: f64 = 1e-5;

pub struct Projector {
    pre_norm: LayerNorm,
    norm_after_merge: bool,
    linear_1: Linear,
    linear_2: Linear,
    merge: usize,
    device: Device,
}

impl Projector {
    pub fn load(ckpt: &Checkpoint, cfg: &KeyeConfig, device: &Device) -> Result<Self> {
        let dv = cfg.vision_config.hidden_size;
        let merge = cfg.vision_config.spatial_merge_size;
        let merged = dv * merge * merge;
        let norm_after_merge = cfg.architecture()? == Architecture::V1_5;
        let norm_size = if norm_after_merge { merged } else { dv };
        Ok(Self {
            pre_norm: LayerNorm::load(ckpt, "mlp_AR.pre_norm", norm_size, PRE_NORM_EPS)?,
            norm_after_merge,
            linear_1: load_linear(ckpt, "mlp_AR.linear_1", merged, merged, true)?,
            linear_2: load_linear(ckpt, "mlp_AR.linear_2", cfg.hidden_size, merged, true)?,
            merge,
            device: device.clone(),
        })
    }

    /// `features`: `[Σ t·h·w, Dv]` in raster order per item → `[Σ t·h·w / merge², D]`.
    pub fn forward(&self, features: &Tensor, grids: &[GridThw]) -> Result<Tensor> {
        let features = if self.norm_after_merge {
            features.clone()
        } else {
            self.pre_norm.forward(features)?
        };
        let (_, dv) = features.dims2()?;
        let order = Tensor::from_vec(
            self.merge_order(grids),
            grids.iter().map(GridThw::patches).sum::<usize>(),
            &self.device,
        )?;
        let mut x = features
            .index_select(&order, 0)?
            .reshape(((), dv * self.merge * self.merge))?;
        if self.norm_after_merge {
            x = self.pre_norm.forward(&x)?;
        }
        let x = Activation::GeluErf.forward(&self.linear_1.forward(&x)?)?;
        self.linear_2.forward(&x)
    }

    /// Source rows in output order: for each merged token (τ, u, v) its sub-patches top-left,
    /// top-right, bottom-left, bottom-right (generalised to `merge × merge`).
    fn merge_order(&self, grids: &[GridThw]) -> Vec<u32> {
        let m = self.merge;
        let mut order = Vec::with_capacity(grids.iter().map(GridThw::patches).sum());
        let mut base = 0usize;
        for g in grids {
            for tau in 0..g.t {
                let frame = base + tau * g.h * g.w;
                for u in 0..g.h / m {
                    for v in 0..g.w / m {
                        for p1 in 0..m {
                            for p2 in 0..m {
                                order.push((frame + (m * u + p1) * g.w + m * v + p2) as u32);
                            }
                        }
                    }
                }
            }
            base += g.patches();
        }
        order
    }
}
