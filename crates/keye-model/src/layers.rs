//! Small building blocks shared by the vision tower, the projector and the LLM.

use candle_core::{CpuStorage, CustomOp3, Device, Layout, Shape, Tensor};

use crate::checkpoint::Checkpoint;
use crate::error::Result;
use crate::linear::Linear;

/// Loads `{prefix}.weight` `[out, in]` in the format its role asks for and, when `bias`,
/// `{prefix}.bias` `[out]`.
pub fn load_linear(
    ckpt: &Checkpoint,
    prefix: &str,
    out_features: usize,
    in_features: usize,
    bias: bool,
) -> Result<Linear> {
    let weight = ckpt.matrix(&format!("{prefix}.weight"), &[out_features, in_features])?;
    let bias = if bias {
        Some(
            ckpt.get(&format!("{prefix}.bias"), &[out_features])?
                .to_f32_vec()?,
        )
    } else {
        None
    };
    Ok(Linear::new(weight, bias, ckpt.formats().matmul_precision))
}

/// LayerNorm with affine weight and bias (biased variance).
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f32,
}

impl LayerNorm {
    pub fn load(
        ckpt: &Checkpoint,
        prefix: &str,
        size: usize,
        eps: f64,
        device: &Device,
    ) -> Result<Self> {
        Ok(Self {
            weight: ckpt
                .get(&format!("{prefix}.weight"), &[size])?
                .to_f32_tensor(device)?,
            bias: ckpt
                .get(&format!("{prefix}.bias"), &[size])?
                .to_f32_tensor(device)?,
            eps: eps as f32,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::layer_norm(
            &x.contiguous()?,
            &self.weight,
            &self.bias,
            self.eps,
        )?)
    }
}

/// RMSNorm `w ⊙ x·rsqrt(mean(x²) + eps)` over the last dimension.
pub struct RmsNorm {
    weight: Tensor,
    eps: f32,
}

impl RmsNorm {
    pub fn load(
        ckpt: &Checkpoint,
        name: &str,
        size: usize,
        eps: f64,
        device: &Device,
    ) -> Result<Self> {
        Ok(Self {
            weight: ckpt.get(name, &[size])?.to_f32_tensor(device)?,
            eps: eps as f32,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::rms_norm(
            &x.contiguous()?,
            &self.weight,
            self.eps,
        )?)
    }
}

/// Non-causal attention restricted to segments of consecutive tokens (FlashAttention varlen
/// semantics): q, k, v are `[tokens, heads, head_dim]`.
pub struct SegmentAttention {
    pub heads: usize,
    pub head_dim: usize,
    pub cu_seqlens: Vec<usize>,
    pub scale: f32,
}

impl CustomOp3 for SegmentAttention {
    fn name(&self) -> &'static str {
        "keye-segment-attention"
    }

    fn cpu_fwd(
        &self,
        q: &CpuStorage,
        lq: &Layout,
        k: &CpuStorage,
        lk: &Layout,
        v: &CpuStorage,
        lv: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let q = contiguous_f32(q, lq)?;
        let k = contiguous_f32(k, lk)?;
        let v = contiguous_f32(v, lv)?;
        let mut out = vec![0f32; q.len()];
        keye_kernels::attention_segments(
            q,
            k,
            v,
            self.heads,
            self.head_dim,
            &self.cu_seqlens,
            self.scale,
            &mut out,
        )
        .map_err(candle_core::Error::wrap)?;
        Ok((CpuStorage::F32(out), lq.shape().clone()))
    }
}

pub(crate) fn contiguous_f32<'a>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [f32]> {
    let (start, end) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::RequiresContiguous { op: "keye-kernel" })?;
    Ok(&s.as_slice::<f32>()?[start..end])
}
