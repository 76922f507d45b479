//! The Qwen3 language model (`model.*`, `lm_head`): pre-norm decoder layers with per-head q/k
//! RMSNorm, grouped-query attention, multimodal RoPE and a SiLU-gated MLP.

use candle_core::{CpuStorage, CustomOp1, CustomOp3, Device, Layout, Shape, Tensor};
use keye_kernels::CompactRows;

use crate::checkpoint::Checkpoint;
use crate::config::KeyeConfig;
use crate::error::{Error, Result};
use crate::kv_cache::{CacheLayers, KvCache, KvCacheFormat};
use crate::layers::{RmsNorm, contiguous_f32, load_linear, silu_mul};
use crate::linear::{Linear, MatrixWeight};
use crate::rope::MRope;

struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    q_norm: RmsNorm,
    k_norm: RmsNorm,
}

struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

struct DecoderLayer {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    mlp: Mlp,
}

/// The tokens one sequence contributes to a forward pass, and where they go.
pub struct SequenceChunk<'a> {
    /// Per-token `[t, h, w]` positions of the new tokens.
    pub positions: &'a [[i64; 3]],
    pub cache: &'a mut KvCache,
}

pub struct TextModel {
    embed_tokens: MatrixWeight,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    lm_head: Linear,
    rope: MRope,
    q_heads: usize,
    kv_heads: usize,
    head_dim: usize,
    max_positions: usize,
    device: Device,
}

impl TextModel {
    pub fn load(ckpt: &Checkpoint, cfg: &KeyeConfig, device: &Device) -> Result<Self> {
        let d = cfg.hidden_size;
        let hd = cfg.head_dim();
        let (hq, hkv) = (cfg.num_attention_heads, cfg.num_key_value_heads);
        let eps = cfg.rms_norm_eps;
        let ffn = cfg.intermediate_size;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let l = format!("model.layers.{i}");
                Ok(DecoderLayer {
                    input_layernorm: RmsNorm::load(
                        ckpt,
                        &format!("{l}.input_layernorm.weight"),
                        d,
                        eps,
                    )?,
                    self_attn: Attention {
                        q_proj: load_linear(
                            ckpt,
                            &format!("{l}.self_attn.q_proj"),
                            hq * hd,
                            d,
                            false,
                        )?,
                        k_proj: load_linear(
                            ckpt,
                            &format!("{l}.self_attn.k_proj"),
                            hkv * hd,
                            d,
                            false,
                        )?,
                        v_proj: load_linear(
                            ckpt,
                            &format!("{l}.self_attn.v_proj"),
                            hkv * hd,
                            d,
                            false,
                        )?,
                        o_proj: load_linear(
                            ckpt,
                            &format!("{l}.self_attn.o_proj"),
                            d,
                            hq * hd,
                            false,
                        )?,
                        q_norm: RmsNorm::load(
                            ckpt,
                            &format!("{l}.self_attn.q_norm.weight"),
                            hd,
                            eps,
                        )?,
                        k_norm: RmsNorm::load(
                            ckpt,
                            &format!("{l}.self_attn.k_norm.weight"),
                            hd,
                            eps,
                        )?,
                    },
                    post_attention_layernorm: RmsNorm::load(
                        ckpt,
                        &format!("{l}.post_attention_layernorm.weight"),
                        d,
                        eps,
                    )?,
                    mlp: Mlp {
                        gate_proj: load_linear(ckpt, &format!("{l}.mlp.gate_proj"), ffn, d, false)?,
                        up_proj: load_linear(ckpt, &format!("{l}.mlp.up_proj"), ffn, d, false)?,
                        down_proj: load_linear(ckpt, &format!("{l}.mlp.down_proj"), d, ffn, false)?,
                    },
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let embed_tokens = MatrixWeight::from_stored(
            ckpt.get("model.embed_tokens.weight", &[cfg.vocab_size, d])?,
        )?;
        let lm_head = if cfg.tie_word_embeddings {
            Linear::new(
                ckpt.matrix_as(
                    "model.embed_tokens.weight",
                    &[cfg.vocab_size, d],
                    ckpt.formats().text,
                )?,
                None,
                ckpt.formats().matmul_precision,
            )
        } else {
            load_linear(ckpt, "lm_head", cfg.vocab_size, d, false)?
        };
        Ok(Self {
            embed_tokens,
            layers,
            norm: RmsNorm::load(ckpt, "model.norm.weight", d, eps)?,
            lm_head,
            rope: MRope::new(cfg.rope_theta, hd, cfg.mrope_section()?),
            q_heads: hq,
            kv_heads: hkv,
            head_dim: hd,
            max_positions: cfg.max_position_embeddings,
            device: device.clone(),
        })
    }

    pub fn max_positions(&self) -> usize {
        self.max_positions
    }

    pub fn vocab_size(&self) -> usize {
        self.lm_head.out_features()
    }

    /// Token embeddings `[n, D]`.
    pub fn embed(&self, ids: &[u32]) -> Result<Tensor> {
        self.embed_tokens.gather_rows(ids, &self.device)
    }

    /// Bytes of keys and values of every layer for one token in a cache of `format`.
    pub fn cache_bytes_per_token(&self, format: KvCacheFormat) -> usize {
        2 * self.layers.len() * self.kv_heads * format.row_bytes(self.head_dim)
    }

    pub fn new_cache(&self, capacity: usize, format: KvCacheFormat) -> Result<KvCache> {
        KvCache::new(
            self.layers.len(),
            self.kv_heads,
            self.head_dim,
            capacity,
            format,
            &self.device,
        )
    }

    /// Bytes of weights read per decoded token (the embedding table is only gathered from).
    pub fn streamed_weight_bytes(&self) -> usize {
        let per_layer = |l: &DecoderLayer| {
            [
                &l.self_attn.q_proj,
                &l.self_attn.k_proj,
                &l.self_attn.v_proj,
                &l.self_attn.o_proj,
                &l.mlp.gate_proj,
                &l.mlp.up_proj,
                &l.mlp.down_proj,
            ]
            .iter()
            .map(|lin| lin.weight().stored_bytes())
            .sum::<usize>()
        };
        self.layers.iter().map(per_layer).sum::<usize>() + self.lm_head.weight().stored_bytes()
    }

    /// Runs the new tokens of several sequences through the decoder, appending their keys and
    /// values to each sequence's cache; returns the logits `[chunks, vocab]` of the last token
    /// of every chunk. `embeds` holds the chunks' rows back to back.
    pub fn forward(&self, embeds: &Tensor, chunks: &mut [SequenceChunk<'_>]) -> Result<Tensor> {
        let lens = self.check_chunks(embeds, chunks)?;
        let hidden = self.decode(embeds, chunks, &lens, AttentionRows::Together)?;
        let last_rows: Vec<u32> = lens
            .iter()
            .scan(0usize, |end, &n| {
                *end += n;
                Some((*end - 1) as u32)
            })
            .collect();
        let last = hidden.index_select(&Tensor::new(last_rows.as_slice(), &self.device)?, 0)?;
        self.lm_head.forward(&self.norm.forward(&last)?)
    }

    /// Like [`forward`](Self::forward), but returns the logits `[rows, vocab]` of every row: the
    /// verification pass of speculative decoding. With at most [`MAX_EXACT_VERIFY_ROWS`] rows in
    /// all, each row's logits are bit-identical to those of a one-token `forward` of that token
    /// at that point, so accepting drafted tokens cannot change greedy output.
    pub fn forward_every_row(
        &self,
        embeds: &Tensor,
        chunks: &mut [SequenceChunk<'_>],
    ) -> Result<Tensor> {
        let lens = self.check_chunks(embeds, chunks)?;
        let hidden = self.decode(embeds, chunks, &lens, AttentionRows::OneByOne)?;
        self.lm_head.forward(&self.norm.forward(&hidden)?)
    }

    /// Checks that `embeds` holds the chunks' rows and that every cache has room for them;
    /// returns each chunk's token count.
    fn check_chunks(&self, embeds: &Tensor, chunks: &[SequenceChunk<'_>]) -> Result<Vec<usize>> {
        let (rows, _) = embeds.dims2()?;
        let lens: Vec<usize> = chunks.iter().map(|c| c.positions.len()).collect();
        if lens.iter().sum::<usize>() != rows || lens.contains(&0) {
            return Err(Error::InvalidInput(format!(
                "{rows} embedding rows for chunks of {lens:?} tokens"
            )));
        }
        for (chunk, &n) in chunks.iter().zip(&lens) {
            let needed = chunk.cache.len() + n;
            if needed > chunk.cache.capacity() {
                return Err(Error::ContextOverflow {
                    needed,
                    available: chunk.cache.capacity(),
                    model_max: self.max_positions,
                });
            }
        }
        Ok(lens)
    }

    /// The decoder layers over checked chunks: the final hidden states `[rows, D]` before the
    /// last norm, with every chunk's cache advanced past its tokens.
    fn decode(
        &self,
        embeds: &Tensor,
        chunks: &mut [SequenceChunk<'_>],
        lens: &[usize],
        attention_rows: AttentionRows,
    ) -> Result<Tensor> {
        let rows = embeds.dim(0)?;
        let positions: Vec<[i64; 3]> = chunks
            .iter()
            .flat_map(|c| c.positions.iter().copied())
            .collect();
        let (cos, sin) = self.rope.tables(&positions, &self.device)?;
        let (hq, hkv, hd) = (self.q_heads, self.kv_heads, self.head_dim);

        let mut x = embeds.clone();
        for (layer_index, layer) in self.layers.iter().enumerate() {
            let h = layer.input_layernorm.forward(&x)?;
            let attn = &layer.self_attn;
            let q = attn
                .q_norm
                .forward(&attn.q_proj.forward(&h)?.reshape((1, rows, hq, hd))?)?;
            let k = attn
                .k_norm
                .forward(&attn.k_proj.forward(&h)?.reshape((1, rows, hkv, hd))?)?;
            let q = candle_nn::rotary_emb::rope_thd(&q, &cos, &sin)?.squeeze(0)?;
            let k = candle_nn::rotary_emb::rope_thd(&k, &cos, &sin)?.squeeze(0)?;
            let v = attn.v_proj.forward(&h)?.reshape((rows, hkv, hd))?;

            let mut outputs = Vec::with_capacity(chunks.len());
            let mut start = 0;
            for (chunk, &n) in chunks.iter_mut().zip(lens) {
                let past = chunk.cache.len();
                chunk.cache.store(
                    layer_index,
                    &k.narrow(0, start, n)?.transpose(0, 1)?.contiguous()?,
                    &v.narrow(0, start, n)?.transpose(0, 1)?.contiguous()?,
                    past,
                )?;
                let cache = &*chunk.cache;
                let attend = |first: usize, count: usize| -> Result<Tensor> {
                    let shape = AttentionShape {
                        n_new: count,
                        q_heads: hq,
                        kv_heads: hkv,
                        head_dim: hd,
                        capacity: cache.capacity(),
                        past: past + first,
                    };
                    let q = q.narrow(0, start + first, count)?.contiguous()?;
                    Ok(match &cache.layers {
                        CacheLayers::F32 { keys, values } => q.apply_op3_no_bwd(
                            &keys[layer_index],
                            &values[layer_index],
                            &CachedAttention(shape),
                        )?,
                        CacheLayers::Compact { keys, values } => {
                            q.apply_op1_no_bwd(&CompactCachedAttention {
                                shape,
                                keys: keys[layer_index].rows(),
                                values: values[layer_index].rows(),
                            })?
                        }
                    })
                };
                match attention_rows {
                    AttentionRows::Together => outputs.push(attend(0, n)?),
                    // The attention kernel picks its layout and key split from the number of
                    // query rows, so only one-row calls sum in the order a decode step does.
                    AttentionRows::OneByOne => {
                        for i in 0..n {
                            outputs.push(attend(i, 1)?);
                        }
                    }
                }
                start += n;
            }
            let o = Tensor::cat(&outputs, 0)?.reshape((rows, hq * hd))?;
            x = (x + attn.o_proj.forward(&o)?)?;

            let h = layer.post_attention_layernorm.forward(&x)?;
            let gate = layer.mlp.gate_proj.forward(&h)?;
            let up = layer.mlp.up_proj.forward(&h)?;
            x = (x + layer.mlp.down_proj.forward(&silu_mul(&gate, &up)?)?)?;
        }
        for (chunk, &n) in chunks.iter_mut().zip(lens) {
            chunk.cache.advance(n);
        }
        Ok(x)
    }
}

/// Most rows a [`TextModel::forward_every_row`] pass may hold for each row's logits to equal a
/// one-token step's bit for bit: above it the matrix products switch from weight streaming to
/// blocked GEMM, which orders its sums differently.
pub const MAX_EXACT_VERIFY_ROWS: usize = keye_kernels::STREAMING_MAX_ROWS;

/// How the new query rows of a chunk meet the attention kernel.
#[derive(Clone, Copy)]
enum AttentionRows {
    /// One call per chunk: fastest.
    Together,
    /// One call per row, each exactly as a one-token decode step makes it.
    OneByOne,
}

/// Sizes of one attention call: `n_new` query rows against cache rows `0..past + n_new`.
#[derive(Clone, Copy)]
struct AttentionShape {
    n_new: usize,
    q_heads: usize,
    kv_heads: usize,
    head_dim: usize,
    capacity: usize,
    past: usize,
}

impl AttentionShape {
    fn scale(&self) -> f32 {
        1.0 / (self.head_dim as f32).sqrt()
    }
}

/// Causal attention of a chunk's new queries against its sequence's f32 cache.
struct CachedAttention(AttentionShape);

impl CustomOp3 for CachedAttention {
    fn name(&self) -> &'static str {
        "keye-cached-attention"
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
        let s = self.0;
        let q = contiguous_f32(q, lq)?;
        let k = contiguous_f32(k, lk)?;
        let v = contiguous_f32(v, lv)?;
        let mut out = vec![0f32; q.len()];
        keye_kernels::attention_causal(
            q,
            s.n_new,
            s.q_heads,
            k,
            v,
            s.kv_heads,
            s.capacity,
            s.past,
            s.head_dim,
            s.scale(),
            &mut out,
        )
        .map_err(candle_core::Error::wrap)?;
        Ok((CpuStorage::F32(out), lq.shape().clone()))
    }
}

/// Causal attention of a chunk's new queries against its sequence's bf16 or 8-bit cache.
struct CompactCachedAttention<'a> {
    shape: AttentionShape,
    keys: CompactRows<'a>,
    values: CompactRows<'a>,
}

impl CustomOp1 for CompactCachedAttention<'_> {
    fn name(&self) -> &'static str {
        "keye-cached-attention-compact"
    }

    fn cpu_fwd(&self, q: &CpuStorage, lq: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let s = self.shape;
        let q = contiguous_f32(q, lq)?;
        let mut out = vec![0f32; q.len()];
        keye_kernels::attention_causal_compact(
            q,
            s.n_new,
            s.q_heads,
            self.keys,
            self.values,
            s.kv_heads,
            s.capacity,
            s.past,
            s.head_dim,
            s.scale(),
            &mut out,
        )
        .map_err(candle_core::Error::wrap)?;
        Ok((CpuStorage::F32(out), lq.shape().clone()))
    }
}
