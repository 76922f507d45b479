//! The SigLIP-derived vision tower (`visual.vision_model.*`): patch embedding, bilinearly
//! interpolated learned positions, 27 pre-LN encoder layers with 2-D RoPE and block-diagonal
//! attention, post LayerNorm. The SigLIP pooling head and `packing_position_embedding` are in
//! the checkpoint but never run.

use candle_core::{Device, Tensor};
use keye_kernels::QuantType;
use keye_media::GridThw;

use crate::checkpoint::Checkpoint;
use crate::config::VisionConfig;
use crate::error::{Error, Result};
use crate::format::{MatmulPrecision, StoredDtype, WeightFormat};
use crate::layers::{Activation, LayerNorm, SegmentAttention, load_linear};
use crate::linear::Linear;
use crate::rope::VisionRope;

/// How visual items are cut into attention segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Segmentation {
    /// One segment per item: all frames of a video attend to each other (Preview).
    PerItem,
    /// One segment per frame (Keye-VL-1.5).
    PerFrame,
}

struct SelfAttention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
}

struct Mlp {
    fc1: Linear,
    fc2: Linear,
}

impl Mlp {
    /// Loads `fc1` and `fc2`. When they are to be quantized but the hidden width is not whole
    /// blocks (SigLIP's 4304 is 134.5 blocks of 32), `fc2`'s rows could not be blocks and it
    /// would stay bf16: a third of the tower's products, at half the integer products' rate.
    /// The width is then padded with zero units up to whole blocks instead: a zero `fc1` row
    /// and bias give GELU(0) = 0, which the zero `fc2` column adds nothing to, so the function
    /// is unchanged.
    fn load(ckpt: &Checkpoint, prefix: &str, hidden: usize, width: usize) -> Result<Self> {
        let (fc1, fc2) = (format!("{prefix}.fc1"), format!("{prefix}.fc2"));
        let (fc1_weight, fc2_weight) = (format!("{fc1}.weight"), format!("{fc2}.weight"));
        let block = QuantType::Q8_0.block_values();
        let fc2_format = Self::fc2_format(ckpt, &fc1_weight, &fc2_weight);
        if !matches!(fc2_format, WeightFormat::Quantized(_)) || width.is_multiple_of(block) {
            return Ok(Self {
                fc1: load_linear(ckpt, &fc1, width, hidden, true)?,
                fc2: load_linear(ckpt, &fc2, hidden, width, true)?,
            });
        }
        let padded = width.next_multiple_of(block);
        let precision = ckpt.formats().matmul_precision;
        let mut fc1_bias = ckpt.get(&format!("{fc1}.bias"), &[width])?.to_f32_vec()?;
        fc1_bias.resize(padded, 0.0);
        let fc2_bias = ckpt.get(&format!("{fc2}.bias"), &[hidden])?.to_f32_vec()?;
        let fc1_format = ckpt.formats().for_tensor(&fc1_weight);
        Ok(Self {
            fc1: Linear::new(
                ckpt.padded_matrix(&fc1_weight, [width, hidden], [padded, hidden], fc1_format)?,
                Some(fc1_bias),
                precision,
            ),
            fc2: Linear::new(
                ckpt.padded_matrix(&fc2_weight, [hidden, width], [hidden, padded], fc2_format)?,
                Some(fc2_bias),
                precision,
            ),
        })
    }

    /// The format `fc2` is to be loaded in: the requested one, except that a file holding `fc1`
    /// in blocks and `fc2` as floats (a GGUF file from `keye quantize`, where `fc2`'s unpadded
    /// rows cannot be blocks) asks for `fc1`'s block format. `Stored` when `fc2` is missing,
    /// unreadable or already in blocks: loading then goes on as usual.
    fn fc2_format(ckpt: &Checkpoint, fc1: &str, fc2: &str) -> WeightFormat {
        let stored = |name: &str| ckpt.tensor(name).ok().map(|t| t.dtype);
        match (ckpt.formats().for_tensor(fc2), stored(fc1), stored(fc2)) {
            (_, _, None | Some(StoredDtype::Quantized(_))) => WeightFormat::Stored,
            (WeightFormat::Stored, Some(StoredDtype::Quantized(q)), _) => {
                WeightFormat::Quantized(q)
            }
            (requested, _, _) => requested,
        }
    }
}

struct EncoderLayer {
    layer_norm1: LayerNorm,
    self_attn: SelfAttention,
    layer_norm2: LayerNorm,
    mlp: Mlp,
}

pub struct VisionTower {
    patch_embedding: Linear,
    /// `[side·side, hidden]` learned table, row = r·side + c.
    position_table: Vec<f32>,
    position_side: usize,
    layers: Vec<EncoderLayer>,
    post_layernorm: LayerNorm,
    rope: VisionRope,
    hidden: usize,
    heads: usize,
    head_dim: usize,
    /// Also decides whether attention rounds q, k, v and its weights to bf16.
    precision: MatmulPrecision,
    device: Device,
}

impl VisionTower {
    pub fn load(ckpt: &Checkpoint, cfg: &VisionConfig, device: &Device) -> Result<Self> {
        let p = "visual.vision_model";
        let d = cfg.hidden_size;
        let patch = cfg.patch_size;
        let channels = cfg.num_channels;
        let patch_embedding = {
            let weight = crate::linear::MatrixWeight::from_stored(ckpt.get(
                &format!("{p}.embeddings.patch_embedding.weight"),
                &[d, channels, patch, patch],
            )?)?;
            let bias = ckpt
                .get(&format!("{p}.embeddings.patch_embedding.bias"), &[d])?
                .to_f32_vec()?;
            Linear::new(weight, Some(bias), ckpt.formats().matmul_precision)
        };
        let side = cfg.position_grid_side();
        let position_table = ckpt
            .get(
                &format!("{p}.embeddings.position_embedding.weight"),
                &[side * side, d],
            )?
            .to_f32_vec()?;
        let eps = cfg.layer_norm_eps;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let l = format!("{p}.encoder.layers.{i}");
                Ok(EncoderLayer {
                    layer_norm1: LayerNorm::load(ckpt, &format!("{l}.layer_norm1"), d, eps)?,
                    self_attn: SelfAttention {
                        q_proj: load_linear(ckpt, &format!("{l}.self_attn.q_proj"), d, d, true)?,
                        k_proj: load_linear(ckpt, &format!("{l}.self_attn.k_proj"), d, d, true)?,
                        v_proj: load_linear(ckpt, &format!("{l}.self_attn.v_proj"), d, d, true)?,
                        out_proj: load_linear(
                            ckpt,
                            &format!("{l}.self_attn.out_proj"),
                            d,
                            d,
                            true,
                        )?,
                    },
                    layer_norm2: LayerNorm::load(ckpt, &format!("{l}.layer_norm2"), d, eps)?,
                    mlp: Mlp::load(ckpt, &format!("{l}.mlp"), d, cfg.intermediate_size)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let post_layernorm = LayerNorm::load(ckpt, &format!("{p}.post_layernorm"), d, eps)?;
        Ok(Self {
            patch_embedding,
            position_table,
            position_side: side,
            layers,
            post_layernorm,
            rope: VisionRope::new(cfg.rope_theta, cfg.head_dim()),
            hidden: d,
            heads: cfg.num_attention_heads,
            head_dim: cfg.head_dim(),
            precision: ckpt.formats().matmul_precision,
            device: device.clone(),
        })
    }

    /// `pixels`: `[Σ t·h·w, C·P·P]` patches of all items in raster order; returns the
    /// post-LayerNorm features `[Σ t·h·w, hidden]`.
    pub fn forward(
        &self,
        pixels: &Tensor,
        grids: &[GridThw],
        segmentation: Segmentation,
    ) -> Result<Tensor> {
        let total: usize = grids.iter().map(GridThw::patches).sum();
        let (rows, _) = pixels.dims2()?;
        if rows != total {
            return Err(Error::InvalidInput(format!(
                "{rows} pixel patches for grids totalling {total} patches"
            )));
        }
        let mut x = self.patch_embedding.forward(pixels)?;
        x = (x + self.position_embeddings(grids)?)?;

        let rows_cols: Vec<(usize, usize)> = grids
            .iter()
            .flat_map(|g| {
                (0..g.t)
                    .flat_map(move |_| (0..g.h).flat_map(move |r| (0..g.w).map(move |c| (r, c))))
            })
            .collect();
        let (cos, sin) = self.rope.tables(&rows_cols, &self.device)?;
        let attention = SegmentAttention {
            heads: self.heads,
            head_dim: self.head_dim,
            cu_seqlens: cu_seqlens(grids, segmentation),
            scale: (self.head_dim as f64).powf(-0.5) as f32,
            precision: self.precision,
        };
        let split = (1, total, self.heads, self.head_dim);
        for layer in &self.layers {
            let h = layer.layer_norm1.forward(&x)?;
            let attn = &layer.self_attn;
            let q = candle_nn::rotary_emb::rope_thd(
                &attn.q_proj.forward(&h)?.reshape(split)?,
                &cos,
                &sin,
            )?;
            let k = candle_nn::rotary_emb::rope_thd(
                &attn.k_proj.forward(&h)?.reshape(split)?,
                &cos,
                &sin,
            )?;
            let v = attn.v_proj.forward(&h)?.reshape(split)?;
            let o = q
                .apply_op3_no_bwd(&k, &v, &attention)?
                .reshape((total, self.hidden))?;
            x = (x + attn.out_proj.forward(&o)?)?;
            let h = layer.layer_norm2.forward(&x)?;
            let h = Activation::GeluTanh.forward(&layer.mlp.fc1.forward(&h)?)?;
            x = (x + layer.mlp.fc2.forward(&h)?)?;
        }
        self.post_layernorm.forward(&x)
    }

    /// The learned table resized to each item's grid (bilinear, `align_corners=False`, no
    /// antialias, in f32 as PyTorch computes it) and repeated for every frame.
    fn position_embeddings(&self, grids: &[GridThw]) -> Result<Tensor> {
        let d = self.hidden;
        let total: usize = grids.iter().map(GridThw::patches).sum();
        let mut out = Vec::with_capacity(total * d);
        for grid in grids {
            let table = self.interpolated_table(grid.h, grid.w);
            for _ in 0..grid.t {
                out.extend_from_slice(&table);
            }
        }
        Ok(Tensor::from_vec(out, (total, d), &self.device)?)
    }

    fn interpolated_table(&self, out_h: usize, out_w: usize) -> Vec<f32> {
        let side = self.position_side;
        let d = self.hidden;
        let taps = |out: usize| -> Vec<(usize, usize, f32, f32)> {
            let scale = side as f32 / out as f32;
            (0..out)
                .map(|o| {
                    let src = (scale * (o as f32 + 0.5) - 0.5).max(0.0);
                    let i0 = src as usize;
                    let i1 = (i0 + 1).min(side - 1);
                    let lambda1 = src - i0 as f32;
                    (i0, i1, 1.0 - lambda1, lambda1)
                })
                .collect()
        };
        let (ys, xs) = (taps(out_h), taps(out_w));
        let table = &self.position_table;
        let row = |r: usize, c: usize| &table[(r * side + c) * d..(r * side + c + 1) * d];
        let mut out = Vec::with_capacity(out_h * out_w * d);
        for &(y0, y1, wy0, wy1) in &ys {
            for &(x0, x1, wx0, wx1) in &xs {
                let (p00, p01, p10, p11) = (row(y0, x0), row(y0, x1), row(y1, x0), row(y1, x1));
                for j in 0..d {
                    out.push(
                        wy0 * (wx0 * p00[j] + wx1 * p01[j]) + wy1 * (wx0 * p10[j] + wx1 * p11[j]),
                    );
                }
            }
        }
        out
    }
}

fn cu_seqlens(grids: &[GridThw], segmentation: Segmentation) -> Vec<usize> {
    let mut bounds = vec![0];
    let mut end = 0;
    for grid in grids {
        match segmentation {
            Segmentation::PerItem => {
                end += grid.patches();
                bounds.push(end);
            }
            Segmentation::PerFrame => {
                for _ in 0..grid.t {
                    end += grid.h * grid.w;
                    bounds.push(end);
                }
            }
        }
    }
    bounds
}
