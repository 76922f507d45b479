//! Server settings: [`ServerConfig`] for embedding, [`ServeArgs`] for the command line.

use std::path::PathBuf;
use std::time::Duration;

use keye::{HubOptions, Keye, KvCacheFormat, LoadOptions};
use keye_media::MediaPolicy;

use crate::error::ServerError;

/// KV-cache memory the default token budget is sized for.
const DEFAULT_KV_CACHE_BYTES: u64 = 4 << 30;

/// How the server admits, limits and times requests. [`ServerConfig::default`] suits a local
/// server; [`ServeArgs`] builds one from flags.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The name clients pass as `model` and that `/v1/models` lists.
    pub served_model_name: String,
    /// When set, every endpoint but `/health` and the chat page needs `Authorization: Bearer`.
    pub api_key: Option<String>,
    /// Sequences decoded together; each holds its own KV cache.
    pub max_running: usize,
    /// Accepted requests waiting to run (being prepared or queued); more are answered 503.
    pub max_queue: usize,
    /// KV-cache tokens (prompt plus answer) reserved by running sequences together; `None`
    /// sizes it to 4 GiB of cache for the loaded model.
    pub max_kv_tokens: Option<usize>,
    /// Answer length when the request sets none and `generation_config.json` has no
    /// `max_new_tokens`.
    pub default_max_tokens: usize,
    pub max_body_bytes: usize,
    pub max_images_per_request: usize,
    pub max_videos_per_request: usize,
    /// Which media sources requests may name, and size and time limits on reading them.
    pub media_policy: MediaPolicy,
    /// From arrival to the last token.
    pub request_timeout: Duration,
    /// Longest wait for a client's request headers (also closes idle keep-alive connections)
    /// and for its body.
    pub idle_timeout: Duration,
    /// How long running requests may continue after a shutdown signal before they are cancelled.
    pub shutdown_timeout: Duration,
    /// Requests whose media and prompt are prepared at the same time.
    pub prepare_concurrency: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            served_model_name: "keye".into(),
            api_key: None,
            max_running: 16,
            max_queue: 256,
            max_kv_tokens: None,
            default_max_tokens: 1024,
            max_body_bytes: 50 << 20,
            max_images_per_request: 16,
            max_videos_per_request: 2,
            media_policy: MediaPolicy::strict(),
            request_timeout: Duration::from_secs(600),
            idle_timeout: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(30),
            prepare_concurrency: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

impl ServerConfig {
    /// The KV token budget in effect for `keye`.
    pub(crate) fn kv_token_budget(&self, keye: &Keye) -> usize {
        self.max_kv_tokens.unwrap_or_else(|| {
            let bytes_per_token = keye.cache_bytes_per_token().max(1);
            usize::try_from(DEFAULT_KV_CACHE_BYTES / bytes_per_token as u64).unwrap_or(usize::MAX)
        })
    }

    pub(crate) fn validate(&self) -> Result<(), ServerError> {
        let positive = [
            ("--max-running", self.max_running),
            ("--max-queue", self.max_queue),
            ("--default-max-tokens", self.default_max_tokens),
            ("--max-body-bytes", self.max_body_bytes),
            ("prepare concurrency", self.prepare_concurrency),
        ];
        for (setting, value) in positive {
            if value == 0 {
                return Err(ServerError::Config {
                    setting,
                    reason: "must be at least 1".into(),
                });
            }
        }
        if self.max_kv_tokens == Some(0) {
            return Err(ServerError::Config {
                setting: "--max-kv-tokens",
                reason: "must be at least 1".into(),
            });
        }
        if self.api_key.as_deref() == Some("") {
            return Err(ServerError::Config {
                setting: "--api-key",
                reason: "must not be empty".into(),
            });
        }
        Ok(())
    }
}

/// `keye serve`: an OpenAI-compatible server (`/v1/chat/completions`, `/v1/models`, `/health`,
/// `/metrics`) with a web chat page at `/`.
#[derive(clap::Args, Clone, Debug)]
pub struct ServeArgs {
    /// Checkpoint folder, GGUF file written by `keye quantize`, or a Hugging Face hub id
    /// (downloaded into the hub cache on first use; honours HF_TOKEN, HF_ENDPOINT, HF_HOME,
    /// HF_HUB_CACHE and HF_HUB_OFFLINE).
    #[arg(short, long, env = "KEYE_MODEL")]
    pub model: String,
    /// Hub revision (branch, tag or commit) for hub ids.
    #[arg(long)]
    pub revision: Option<String>,
    /// Worker threads for the model (default: all cores).
    #[arg(long, env = "KEYE_THREADS")]
    pub threads: Option<usize>,
    /// Largest context (prompt + answer) in tokens. Default: the model's.
    #[arg(long)]
    pub max_context: Option<usize>,
    /// Format of the language model's linear weights: stored (as the checkpoint holds them),
    /// bf16, q8_0, q4_0 or q4_k (quantized at load).
    #[arg(long, default_value = "stored")]
    pub quant: keye::WeightFormat,
    /// Format of the vision tower's and projector's linear weights (same choices).
    #[arg(long, default_value = "stored")]
    pub quant_vision: keye::WeightFormat,
    /// Products with bf16 weights: f32 (activations kept exact; matches the f32 reference) or
    /// bf16 (activations rounded to bf16 as in PyTorch's bf16 inference; prompts and images about
    /// 3× faster on CPUs with AVX-512 BF16). With bf16, quantized weights also run prompts and
    /// images on AMX tiles where the CPU has them (decoded to bf16 a block at a time).
    #[arg(long, default_value = "f32", value_name = "PRECISION")]
    pub matmul_precision: keye::MatmulPrecision,
    /// KV cache storage: f32 (exact), bf16 (values rounded to bf16: half the memory, so
    /// --max-kv-tokens defaults to twice as many tokens) or q8 (about a quarter of the memory and
    /// four times the tokens, at a small attention error).
    #[arg(long, default_value = "f32", value_name = "FORMAT")]
    pub kv_cache: KvCacheFormat,

    /// Address to listen on. Use 0.0.0.0 to accept other machines (then set --api-key).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Model name clients use. Default: the hub id, or the checkpoint folder's name.
    #[arg(long)]
    pub served_model_name: Option<String>,
    /// Require `Authorization: Bearer KEY` on every endpoint but /health and the chat page.
    #[arg(long, env = "KEYE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// Requests decoded together in one batch; each holds a KV cache of its prompt plus
    /// max_tokens.
    #[arg(long, default_value_t = 16)]
    pub max_running: usize,
    /// Requests waiting for a batch slot; beyond this the server answers 503 with Retry-After.
    #[arg(long, default_value_t = 256)]
    pub max_queue: usize,
    /// KV-cache tokens reserved by all running requests together (f32 cache). Default: what
    /// fits in 4 GiB for the loaded model.
    #[arg(long)]
    pub max_kv_tokens: Option<usize>,
    /// Answer length when a request gives no max_tokens and the checkpoint's
    /// generation_config.json has no max_new_tokens.
    #[arg(long, default_value_t = 1024)]
    pub default_max_tokens: usize,
    /// Largest request body in bytes (inline base64 images count).
    #[arg(long, default_value_t = 50 << 20)]
    pub max_body_bytes: usize,
    #[arg(long, default_value_t = 16)]
    pub max_images_per_request: usize,
    #[arg(long, default_value_t = 2)]
    pub max_videos_per_request: usize,

    /// Let requests read local media (plain paths and file:// URLs) inside this folder only;
    /// `..` and symlinks may not leave it. Without it local media is refused.
    #[arg(long, value_name = "DIR")]
    pub allowed_local_media_path: Option<PathBuf>,
    /// Refuse http(s) media URLs (inline data: URLs still work).
    #[arg(long)]
    pub disable_remote_media: bool,
    /// Let media URLs reach loopback, private, link-local and other non-public addresses.
    #[arg(long)]
    pub allow_private_media_urls: bool,
    /// Largest image file, download or inline data in bytes.
    #[arg(long, default_value_t = 32 << 20)]
    pub max_media_bytes: u64,
    /// Largest video download or inline video in bytes.
    #[arg(long, default_value_t = 256 << 20)]
    pub max_video_bytes: u64,
    /// Seconds a media download may take in total.
    #[arg(long, default_value_t = 30)]
    pub media_timeout: u64,
    /// Largest decoded image in pixels.
    #[arg(long, default_value_t = 50_000_000)]
    pub max_image_pixels: u64,

    /// Seconds a request may take from arrival to its last token.
    #[arg(long, default_value_t = 600)]
    pub request_timeout: u64,
    /// Seconds a connection may wait idle for its next request headers, and the longest a
    /// client may take to send a request body.
    #[arg(long, default_value_t = 60)]
    pub idle_timeout: u64,
    /// On SIGTERM or Ctrl-C, seconds running answers may continue before they are cancelled.
    #[arg(long, default_value_t = 30)]
    pub shutdown_timeout: u64,
}

impl ServeArgs {
    pub(crate) fn load_options(&self) -> LoadOptions {
        let mut hub = HubOptions::from_env();
        hub.revision = self.revision.clone();
        hub.progress = true;
        LoadOptions {
            hub,
            max_context: self.max_context,
            quant: self.quant,
            quant_vision: self.quant_vision,
            matmul_precision: self.matmul_precision,
            kv_cache: self.kv_cache,
        }
    }

    pub(crate) fn address(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The name `/v1/models` reports: a hub id as given, a folder by its name.
    fn default_model_name(&self) -> String {
        if keye::looks_like_hub_id(&self.model) {
            return self.model.clone();
        }
        let path = std::path::Path::new(&self.model);
        path.file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.model.clone())
    }

    pub fn server_config(&self) -> Result<ServerConfig, ServerError> {
        let mut policy = MediaPolicy::strict();
        if let Some(root) = &self.allowed_local_media_path {
            let root = root
                .canonicalize()
                .and_then(|root| {
                    std::fs::read_dir(&root)?;
                    Ok(root)
                })
                .map_err(|source| ServerError::MediaRoot {
                    path: root.clone(),
                    source,
                })?;
            policy.allow_local_files = true;
            policy.local_root = Some(root);
        }
        policy.allow_remote = !self.disable_remote_media;
        policy.allow_private_network = self.allow_private_media_urls;
        policy.max_bytes = self.max_media_bytes;
        policy.max_video_bytes = self.max_video_bytes;
        policy.total_timeout = Duration::from_secs(self.media_timeout);
        policy.read_timeout = policy.read_timeout.min(policy.total_timeout);
        policy.connect_timeout = policy.connect_timeout.min(policy.total_timeout);
        policy.max_image_pixels = self.max_image_pixels;
        let config = ServerConfig {
            served_model_name: self
                .served_model_name
                .clone()
                .unwrap_or_else(|| self.default_model_name()),
            api_key: self.api_key.clone(),
            max_running: self.max_running,
            max_queue: self.max_queue,
            max_kv_tokens: self.max_kv_tokens,
            default_max_tokens: self.default_max_tokens,
            max_body_bytes: self.max_body_bytes,
            max_images_per_request: self.max_images_per_request,
            max_videos_per_request: self.max_videos_per_request,
            media_policy: policy,
            request_timeout: Duration::from_secs(self.request_timeout),
            idle_timeout: Duration::from_secs(self.idle_timeout),
            shutdown_timeout: Duration::from_secs(self.shutdown_timeout),
            ..ServerConfig::default()
        };
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn parse(args: &[&str]) -> ServeArgs {
        Cli::try_parse_from(std::iter::once("keye").chain(args.iter().copied()))
            .unwrap()
            .serve
    }

    #[test]
    fn defaults_refuse_local_and_private_media() {
        let args = parse(&["--model", "./models/Keye-VL-1_5-8B/"]);
        let config = args.server_config().unwrap();
        assert_eq!(config.served_model_name, "Keye-VL-1_5-8B");
        assert!(!config.media_policy.allow_local_files);
        assert!(config.media_policy.allow_remote);
        assert!(!config.media_policy.allow_private_network);
        assert_eq!(args.address(), "127.0.0.1:8000");
    }

    #[test]
    fn media_flags_shape_the_policy() {
        let dir = std::env::temp_dir();
        let args = parse(&[
            "--model",
            "Kwai-Keye/Keye-VL-8B-Preview",
            "--allowed-local-media-path",
            dir.to_str().unwrap(),
            "--disable-remote-media",
            "--allow-private-media-urls",
            "--host",
            "::1",
            "--port",
            "9000",
        ]);
        let config = args.server_config().unwrap();
        assert_eq!(config.served_model_name, "Kwai-Keye/Keye-VL-8B-Preview");
        assert!(config.media_policy.allow_local_files);
        assert_eq!(
            config.media_policy.local_root,
            Some(dir.canonicalize().unwrap())
        );
        assert!(!config.media_policy.allow_remote);
        assert!(config.media_policy.allow_private_network);
        assert_eq!(args.address(), "[::1]:9000");
    }

    #[test]
    fn missing_media_root_and_zero_limits_are_refused() {
        let args = parse(&[
            "--model",
            "m",
            "--allowed-local-media-path",
            "/definitely/not/here",
        ]);
        assert!(matches!(
            args.server_config(),
            Err(ServerError::MediaRoot { .. })
        ));
        let args = parse(&["--model", "m", "--max-running", "0"]);
        assert!(matches!(
            args.server_config(),
            Err(ServerError::Config {
                setting: "--max-running",
                ..
            })
        ));
    }
}
