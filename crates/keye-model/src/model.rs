//! The composite Keye-VL model. Checkpoint layout: tower at `visual.vision_model.`, projector
//! at `mlp_AR.`, language model at `model.` plus `lm_head.`.

use std::path::Path;

use candle_core::{Device, Tensor};
use keye_media::GridThw;

use crate::checkpoint::Checkpoint;
use crate::config::{Architecture, KeyeConfig};
use crate::error::{Error, Result};
use crate::format::WeightFormats;
use crate::gguf::{GgufFile, keys};
use crate::kv_cache::{KvCache, KvCacheFormat};
use crate::llm::{SequenceChunk, TextModel};
use crate::positions::{PositionSpec, Positions, VideoBlock, rope_index};
use crate::projector::Projector;
use crate::vision::{Segmentation, VisionTower};

/// Checkpoint tensors that the official code loads but never uses.
const UNUSED_TENSOR_PREFIXES: [&str; 2] = [
    "visual.vision_model.head.",
    "visual.vision_model.embeddings.packing_position_embedding.",
];

/// Vision tower output and its projection into the LLM's embedding space.
pub struct VisualEmbeddings {
    /// `[patches, Dv]` after `post_layernorm`.
    pub vision: Tensor,
    /// `[patches / merge², D]`, the rows that replace placeholder tokens.
    pub projected: Tensor,
}

pub struct KeyeModel {
    config: KeyeConfig,
    architecture: Architecture,
    vision: VisionTower,
    projector: Projector,
    text: TextModel,
    device: Device,
}

impl KeyeModel {
    /// Loads a checkpoint folder (`config.json` and safetensors) or a keye GGUF file, with the
    /// weights as stored.
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_with_formats(path, WeightFormats::default())
    }

    /// Loads a checkpoint folder or GGUF file, converting weight matrices to `formats`.
    pub fn load_with_formats(path: &Path, formats: WeightFormats) -> Result<Self> {
        if path.is_file() {
            return Self::from_gguf(&GgufFile::open_keye(path)?, formats);
        }
        let config = KeyeConfig::from_file(&path.join("config.json"))?;
        let ckpt = Checkpoint::open(path)?.with_formats(formats);
        Self::from_checkpoint(config, &ckpt)
    }

    /// The model of a keye GGUF file; its tensors are used in place.
    pub fn from_gguf(file: &GgufFile, formats: WeightFormats) -> Result<Self> {
        let config = KeyeConfig::from_json(file.string(keys::CONFIG)?, file.path())?;
        Self::from_checkpoint(config, &Checkpoint::from_gguf(file).with_formats(formats))
    }

    /// Tensors of the official checkpoints that the model never reads.
    pub fn is_unused_tensor(name: &str) -> bool {
        UNUSED_TENSOR_PREFIXES.iter().any(|p| name.starts_with(p))
    }

    pub fn from_checkpoint(config: KeyeConfig, ckpt: &Checkpoint) -> Result<Self> {
        let device = Device::Cpu;
        let architecture = config.architecture()?;
        let vision = VisionTower::load(ckpt, &config.vision_config, &device)?;
        let projector = Projector::load(ckpt, &config, &device)?;
        let text = TextModel::load(ckpt, &config, &device)?;
        ckpt.report_fallbacks();
        let unexpected: Vec<String> = ckpt
            .unconsumed()
            .into_iter()
            .filter(|name| !Self::is_unused_tensor(name))
            .collect();
        if !unexpected.is_empty() {
            tracing::warn!(
                count = unexpected.len(),
                first = %unexpected[0],
                "checkpoint holds tensors this model does not use"
            );
        }
        Ok(Self {
            config,
            architecture,
            vision,
            projector,
            text,
            device,
        })
    }

    pub fn config(&self) -> &KeyeConfig {
        &self.config
    }

    pub fn architecture(&self) -> Architecture {
        self.architecture
    }

    pub fn text(&self) -> &TextModel {
        &self.text
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Runs the tower and the projector over all items of one modality. `pixels` is the
    /// `[patches, 3·P·P]` (or `[patches, 3, P, P]`) `pixel_values`. Keye-VL-1.5 callers pass
    /// video grids already split into single frames.
    pub fn encode_visual(&self, pixels: &Tensor, grids: &[GridThw]) -> Result<VisualEmbeddings> {
        let merge = self.config.vision_config.spatial_merge_size;
        if let Some(g) = grids.iter().find(|g| g.h % merge != 0 || g.w % merge != 0) {
            return Err(Error::InvalidInput(format!(
                "grid {}x{}x{} is not divisible by the {merge}x{merge} merge",
                g.t, g.h, g.w
            )));
        }
        let patches = pixels.dim(0)?;
        let pixels = pixels.reshape((patches, ()))?;
        let segmentation = match self.architecture {
            Architecture::Preview => Segmentation::PerItem,
            Architecture::V1_5 => Segmentation::PerFrame,
        };
        let vision = self.vision.forward(&pixels, grids, segmentation)?;
        let projected = self.projector.forward(&vision, grids)?;
        Ok(VisualEmbeddings { vision, projected })
    }

    /// `embed_tokens(input_ids)` with the image and video placeholder rows replaced, in order,
    /// by the projected visual features.
    pub fn embed_prompt(
        &self,
        input_ids: &[u32],
        images: Option<&Tensor>,
        videos: Option<&Tensor>,
    ) -> Result<Tensor> {
        let embeds = self.text.embed(input_ids)?;
        let d = self.config.hidden_size;
        let mut rows = embeds.flatten_all()?.to_vec1::<f32>()?;
        for (token, features, what) in [
            (self.config.image_token_id, images, "image"),
            (self.config.video_token_id, videos, "video"),
        ] {
            let slots: Vec<usize> = input_ids
                .iter()
                .enumerate()
                .filter(|&(_, &id)| id == token)
                .map(|(i, _)| i)
                .collect();
            let features = match features {
                Some(f) => f.flatten_all()?.to_vec1::<f32>()?,
                None => Vec::new(),
            };
            if features.len() != slots.len() * d {
                return Err(Error::InvalidInput(format!(
                    "{} {what} placeholder tokens but {} {what} feature rows",
                    slots.len(),
                    features.len() / d
                )));
            }
            for (slot, row) in slots.iter().zip(features.chunks_exact(d)) {
                rows[slot * d..(slot + 1) * d].copy_from_slice(row);
            }
        }
        Ok(Tensor::from_vec(rows, (input_ids.len(), d), &self.device)?)
    }

    /// 3-D positions of a prompt. `videos` are vision blocks in prompt order (Keye-VL-1.5: one
    /// per frame).
    pub fn positions(
        &self,
        input_ids: &[u32],
        images: &[GridThw],
        videos: &[VideoBlock],
    ) -> Result<Positions> {
        let spec = PositionSpec {
            image_token_id: self.config.image_token_id,
            video_token_id: self.config.video_token_id,
            spatial_merge_size: self.config.vision_config.spatial_merge_size,
            tokens_per_second: self.config.vision_config.tokens_per_second,
        };
        rope_index(input_ids, &spec, images, videos)
    }

    /// A cache for a sequence of up to `capacity` tokens (prompt plus generated), bounded by
    /// the model's context.
    pub fn new_cache(&self, capacity: usize, format: KvCacheFormat) -> Result<KvCache> {
        let max = self.text.max_positions();
        if capacity > max {
            return Err(Error::ContextOverflow {
                needed: capacity,
                available: max,
                model_max: max,
            });
        }
        self.text.new_cache(capacity, format)
    }

    /// See [`TextModel::forward`].
    pub fn forward(&self, embeds: &Tensor, chunks: &mut [SequenceChunk<'_>]) -> Result<Tensor> {
        self.text.forward(embeds, chunks)
    }

    /// See [`TextModel::forward_every_row`].
    pub fn forward_every_row(
        &self,
        embeds: &Tensor,
        chunks: &mut [SequenceChunk<'_>],
    ) -> Result<Tensor> {
        self.text.forward_every_row(embeds, chunks)
    }
}
