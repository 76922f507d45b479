//! `config.json` and `generation_config.json`, keyed exactly like the checkpoint files.

use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};

/// Which member of the Keye-VL family a checkpoint is; decides the projector layout, how videos
/// are split into vision blocks and which preprocessing rules apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Architecture {
    /// `KeyeForConditionalGeneration` (Keye-VL-8B-Preview).
    Preview,
    /// `KeyeVL1_5ForConditionalGeneration` (Keye-VL-1.5-8B).
    V1_5,
}

/// The top-level `config.json`. Text-model fields are flat, vision fields live in `vision_config`.
#[derive(Clone, Debug, Deserialize)]
pub struct KeyeConfig {
    #[serde(default)]
    pub architectures: Vec<String>,
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: Option<usize>,
    pub hidden_act: String,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: Option<RopeScaling>,
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub use_sliding_window: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<TokenIds>,
    pub vision_start_token_id: u32,
    pub vision_end_token_id: u32,
    pub image_token_id: u32,
    pub video_token_id: u32,
    pub frame_token_id: Option<u32>,
    pub fast_start_token_id: Option<u32>,
    pub fast_end_token_id: Option<u32>,
    pub vision_config: VisionConfig,
}

/// `rope_scaling`: Keye uses `{"type": "mrope", "mrope_section": [t, h, w]}` (no scaling).
#[derive(Clone, Debug, Deserialize)]
pub struct RopeScaling {
    #[serde(rename = "type", alias = "rope_type")]
    pub kind: Option<String>,
    pub mrope_section: Option<Vec<usize>>,
}

/// An id or a list of ids (`eos_token_id` is either in the wild).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum TokenIds {
    One(u32),
    Many(Vec<u32>),
}

impl TokenIds {
    pub fn to_vec(&self) -> Vec<u32> {
        match self {
            TokenIds::One(id) => vec![*id],
            TokenIds::Many(ids) => ids.clone(),
        }
    }
}

/// `vision_config`: the SigLIP-derived tower. Absent keys take `KeyeVisionConfig`'s defaults.
#[derive(Clone, Debug, Deserialize)]
pub struct VisionConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub image_size: usize,
    pub patch_size: usize,
    #[serde(default = "VisionConfig::default_num_channels")]
    pub num_channels: usize,
    #[serde(default = "VisionConfig::default_spatial_merge_size")]
    pub spatial_merge_size: usize,
    #[serde(default = "VisionConfig::default_tokens_per_second")]
    pub tokens_per_second: usize,
    #[serde(default = "VisionConfig::default_hidden_act")]
    pub hidden_act: String,
    #[serde(default = "VisionConfig::default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "VisionConfig::default_rope_theta")]
    pub rope_theta: f64,
}

impl VisionConfig {
    fn default_num_channels() -> usize {
        3
    }
    fn default_spatial_merge_size() -> usize {
        2
    }
    fn default_tokens_per_second() -> usize {
        2
    }
    fn default_hidden_act() -> String {
        "gelu_pytorch_tanh".into()
    }
    fn default_layer_norm_eps() -> f64 {
        1e-6
    }
    fn default_rope_theta() -> f64 {
        10000.0
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Side of the learned square position table (`image_size / patch_size`).
    pub fn position_grid_side(&self) -> usize {
        self.image_size / self.patch_size
    }
}

impl KeyeConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_json(&text, path)
    }

    /// Parses `config.json` text; `origin` names where it came from in errors.
    pub fn from_json(text: &str, origin: &Path) -> Result<Self> {
        let config: KeyeConfig =
            serde_json::from_str(text).map_err(|e| Error::invalid_file(origin, e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    pub fn architecture(&self) -> Result<Architecture> {
        match self.model_type.as_str() {
            "Keye" => Ok(Architecture::Preview),
            "KeyeVL1_5" => Ok(Architecture::V1_5),
            other => Err(Error::Unsupported(format!(
                "model_type `{other}` (supported: `Keye` for Keye-VL-8B-Preview, `KeyeVL1_5` for Keye-VL-1.5-8B)"
            ))),
        }
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads)
    }

    /// `[t, h, w]` rotary sections in units of frequency pairs.
    pub fn mrope_section(&self) -> Result<[usize; 3]> {
        let section = self
            .rope_scaling
            .as_ref()
            .and_then(|s| s.mrope_section.clone())
            .ok_or_else(|| Error::Unsupported("rope_scaling.mrope_section is missing".into()))?;
        match section.as_slice() {
            &[t, h, w] if t + h + w == self.head_dim() / 2 => Ok([t, h, w]),
            _ => Err(Error::Unsupported(format!(
                "mrope_section {section:?} must have three entries summing to head_dim/2 = {}",
                self.head_dim() / 2
            ))),
        }
    }

    /// Rejects settings that the official Keye code never uses, so that no inner code has to
    /// branch on them.
    fn validate(&self) -> Result<()> {
        self.architecture()?;
        if self.hidden_act != "silu" {
            return Err(Error::Unsupported(format!(
                "hidden_act `{}` (Keye's Qwen3 uses `silu`)",
                self.hidden_act
            )));
        }
        if self.attention_bias {
            return Err(Error::Unsupported("attention_bias = true".into()));
        }
        if self.use_sliding_window {
            return Err(Error::Unsupported("use_sliding_window = true".into()));
        }
        if let Some(kind) = self.rope_scaling.as_ref().and_then(|s| s.kind.as_deref())
            && !matches!(kind, "mrope" | "default")
        {
            return Err(Error::Unsupported(format!("rope_scaling type `{kind}`")));
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return Err(Error::Unsupported(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_attention_heads, self.num_key_value_heads
            )));
        }
        self.mrope_section()?;
        let vision = &self.vision_config;
        if vision.hidden_act != "gelu_pytorch_tanh" {
            return Err(Error::Unsupported(format!(
                "vision hidden_act `{}` (Keye's tower uses `gelu_pytorch_tanh`)",
                vision.hidden_act
            )));
        }
        if !vision
            .hidden_size
            .is_multiple_of(vision.num_attention_heads)
            || !vision.head_dim().is_multiple_of(4)
        {
            return Err(Error::Unsupported(format!(
                "vision hidden_size {} with {} heads: the 2-D rotary needs head_dim divisible by 4",
                vision.hidden_size, vision.num_attention_heads
            )));
        }
        if vision.num_channels != 3 {
            return Err(Error::Unsupported(format!(
                "vision num_channels {}",
                vision.num_channels
            )));
        }
        Ok(())
    }
}

/// `generation_config.json`: the sampling defaults the checkpoint ships with.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct GenerationConfig {
    #[serde(default)]
    pub do_sample: bool,
    pub temperature: Option<f32>,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub eos_token_id: Option<TokenIds>,
    pub bos_token_id: Option<u32>,
    pub pad_token_id: Option<u32>,
    pub max_new_tokens: Option<usize>,
}

impl GenerationConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_json(&text, path)
    }

    /// Parses `generation_config.json` text; `origin` names where it came from in errors.
    pub fn from_json(text: &str, origin: &Path) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| Error::invalid_file(origin, e.to_string()))
    }
}
