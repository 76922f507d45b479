//! Small building blocks shared by the vision tower, the projector and the LLM.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Shape, Tensor};

use crate::checkpoint::Checkpoint;
use crate::error::Result;
use crate::format::MatmulPrecision;
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
    weight: Vec<f32>,
    bias: Vec<f32>,
    eps: f32,
}

impl LayerNorm {
    pub fn load(ckpt: &Checkpoint, prefix: &str, size: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: ckpt
                .get(&format!("{prefix}.weight"), &[size])?
                .to_f32_vec()?,
            bias: ckpt.get(&format!("{prefix}.bias"), &[size])?.to_f32_vec()?,
            eps: eps as f32,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.contiguous()?.apply_op1_no_bwd(self)?)
    }
}

impl CustomOp1 for LayerNorm {
    fn name(&self) -> &'static str {
        "keye-layer-norm"
    }

    fn cpu_fwd(&self, x: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(x, layout)?;
        let mut out = vec![0f32; x.len()];
        keye_kernels::layer_norm(x, &self.weight, &self.bias, self.eps, &mut out)
            .map_err(candle_core::Error::wrap)?;
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// RMSNorm `w ⊙ x·rsqrt(mean(x²) + eps)` over the last dimension.
pub struct RmsNorm {
    weight: Vec<f32>,
    eps: f32,
}

impl RmsNorm {
    pub fn load(ckpt: &Checkpoint, name: &str, size: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: ckpt.get(name, &[size])?.to_f32_vec()?,
            eps: eps as f32,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.contiguous()?.apply_op1_no_bwd(self)?)
    }
}

impl CustomOp1 for RmsNorm {
    fn name(&self) -> &'static str {
        "keye-rms-norm"
    }

    fn cpu_fwd(&self, x: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(x, layout)?;
        let mut out = vec![0f32; x.len()];
        keye_kernels::rms_norm(x, &self.weight, self.eps, &mut out)
            .map_err(candle_core::Error::wrap)?;
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// Non-causal attention restricted to segments of consecutive tokens (FlashAttention varlen
/// semantics): q, k, v are `[tokens, heads, head_dim]`.
pub struct SegmentAttention {
    pub heads: usize,
    pub head_dim: usize,
    pub cu_seqlens: Vec<usize>,
    pub scale: f32,
    /// `Bf16` rounds q, k, v and the softmax weights to bf16 before their products.
    pub precision: MatmulPrecision,
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
        let attention = match self.precision {
            MatmulPrecision::F32 => keye_kernels::attention_segments,
            MatmulPrecision::Bf16 => keye_kernels::attention_segments_bf16_products,
        };
        attention(
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

/// Element-wise activations on `keye-kernels`' vectorised, parallel kernels (candle's CPU GELU
/// calls libm's `tanhf` per element on one thread).
#[derive(Clone, Copy)]
pub enum Activation {
    /// SigLIP's `gelu_pytorch_tanh`.
    GeluTanh,
    /// The projector's exact `nn.GELU()`.
    GeluErf,
}

impl Activation {
    pub fn forward(self, x: &Tensor) -> Result<Tensor> {
        Ok(x.contiguous()?.apply_op1_no_bwd(&self)?)
    }
}

impl CustomOp1 for Activation {
    fn name(&self) -> &'static str {
        match self {
            Activation::GeluTanh => "keye-gelu-tanh",
            Activation::GeluErf => "keye-gelu-erf",
        }
    }

    fn cpu_fwd(&self, x: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let mut out = contiguous_f32(x, layout)?.to_vec();
        match self {
            Activation::GeluTanh => keye_kernels::gelu_tanh(&mut out),
            Activation::GeluErf => keye_kernels::gelu_erf(&mut out),
        }
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// Qwen3's MLP gate `silu(gate) ⊙ up` in one pass.
pub fn silu_mul(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    Ok(gate
        .contiguous()?
        .apply_op2_no_bwd(&up.contiguous()?, &SiluMul)?)
}

struct SiluMul;

impl CustomOp2 for SiluMul {
    fn name(&self) -> &'static str {
        "keye-silu-mul"
    }

    fn cpu_fwd(
        &self,
        gate: &CpuStorage,
        gate_layout: &Layout,
        up: &CpuStorage,
        up_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        if gate_layout.shape() != up_layout.shape() {
            candle_core::bail!(
                "keye-silu-mul: gate {:?} and up {:?} differ in shape",
                gate_layout.shape(),
                up_layout.shape()
            );
        }
        let mut out = contiguous_f32(gate, gate_layout)?.to_vec();
        keye_kernels::silu_mul(&mut out, contiguous_f32(up, up_layout)?)
            .map_err(candle_core::Error::wrap)?;
        Ok((CpuStorage::F32(out), gate_layout.shape().clone()))
    }
}
