//! Resolving `--model`: a local checkpoint folder, or a Hugging Face hub id downloaded into (or
//! found in) the standard hub cache.

use std::path::{Path, PathBuf};

use hf_hub::api::Progress;
use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};
use indicatif::{ProgressBar, ProgressStyle};

use crate::error::{Error, Result};

/// Files every checkpoint needs, besides the weights.
const REQUIRED_FILES: [&str; 3] = ["config.json", "tokenizer.json", "tokenizer_config.json"];
/// Files used when present.
const OPTIONAL_FILES: [&str; 4] = [
    "generation_config.json",
    "preprocessor_config.json",
    "video_preprocessor_config.json",
    "chat_template.json",
];
const SHARD_INDEX: &str = "model.safetensors.index.json";
const SINGLE_WEIGHTS: &str = "model.safetensors";

/// How to reach the hub; read from the usual `HF_*` environment variables by default.
#[derive(Clone, Debug, Default)]
pub struct HubOptions {
    /// `HF_ENDPOINT`, default `https://huggingface.co`.
    pub endpoint: Option<String>,
    /// `HF_TOKEN` (falls back to the token file of the cache).
    pub token: Option<String>,
    /// `HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`.
    pub cache_dir: Option<PathBuf>,
    /// `HF_HUB_OFFLINE=1`: never touch the network, use only cached files.
    pub offline: bool,
    pub revision: Option<String>,
    /// Show a progress bar per downloaded file.
    pub progress: bool,
}

impl HubOptions {
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Self {
            endpoint: var("HF_ENDPOINT"),
            token: var("HF_TOKEN"),
            cache_dir: var("HF_HUB_CACHE").map(PathBuf::from),
            offline: var("HF_HUB_OFFLINE")
                .is_some_and(|v| !matches!(v.as_str(), "0" | "false" | "False")),
            revision: None,
            progress: true,
        }
    }
}

/// `owner/name` with characters the hub allows.
pub fn looks_like_hub_id(spec: &str) -> bool {
    let mut parts = spec.split('/');
    let (Some(owner), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let ok = |s: &str| {
        !s.is_empty()
            && !s.starts_with('.')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    ok(owner) && ok(name)
}

/// Returns the checkpoint: `spec` itself when it is a folder or a `.gguf` file, otherwise the
/// hub snapshot folder after fetching what is missing from the cache.
pub fn resolve_model(spec: &str, options: &HubOptions) -> Result<PathBuf> {
    let path = Path::new(spec);
    if path.is_dir() {
        return Ok(path.to_owned());
    }
    if path.is_file()
        && path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
    {
        return Ok(path.to_owned());
    }
    if path.exists() {
        return Err(Error::ModelNotFound(format!(
            "{spec} is a file but not a .gguf file; --model takes a checkpoint folder, a GGUF file \
             written by `keye quantize` or a hub id such as Kwai-Keye/Keye-VL-8B-Preview"
        )));
    }
    if !looks_like_hub_id(spec) {
        return Err(Error::ModelNotFound(format!(
            "{spec}: no such folder, and not a hub id of the form owner/name"
        )));
    }
    download_snapshot(spec, options)
}

/// Gets one file of a hub repository: from the cache, else (unless offline) from the hub.
/// `Ok(None)` means the hub has no such file.
struct RepoFiles {
    repo_id: String,
    cached: hf_hub::CacheRepo,
    api: Option<hf_hub::api::sync::ApiRepo>,
    progress: bool,
}

impl RepoFiles {
    fn new(repo_id: &str, options: &HubOptions) -> Result<Self> {
        let cache = match &options.cache_dir {
            Some(dir) => Cache::new(dir.clone()),
            None => Cache::from_env(),
        };
        let repo = match &options.revision {
            Some(rev) => Repo::with_revision(repo_id.to_owned(), RepoType::Model, rev.clone()),
            None => Repo::new(repo_id.to_owned(), RepoType::Model),
        };
        let api = if options.offline {
            None
        } else {
            let mut builder = ApiBuilder::from_cache(cache.clone()).with_progress(false);
            if let Some(endpoint) = &options.endpoint {
                builder = builder.with_endpoint(endpoint.clone());
            }
            if options.token.is_some() {
                builder = builder.with_token(options.token.clone());
            }
            Some(
                builder
                    .build()
                    .map_err(|e| hub_error(repo_id, "", e))?
                    .repo(repo.clone()),
            )
        };
        Ok(Self {
            repo_id: repo_id.to_owned(),
            cached: cache.repo(repo),
            api,
            progress: options.progress,
        })
    }

    fn get(&self, file: &str) -> Result<Option<PathBuf>> {
        if let Some(path) = self.cached.get(file) {
            return Ok(Some(path));
        }
        let Some(api) = &self.api else {
            return Ok(None);
        };
        let result = if self.progress {
            api.download_with_progress(file, DownloadBar::default())
        } else {
            api.download(file)
        };
        match result {
            Ok(path) => Ok(Some(path)),
            Err(hf_hub::api::sync::ApiError::RequestError(e))
                if matches!(*e, ureq::Error::Status(404, _)) =>
            {
                Ok(None)
            }
            Err(e) => Err(hub_error(&self.repo_id, file, e)),
        }
    }

    fn require(&self, file: &str) -> Result<PathBuf> {
        self.get(file)?.ok_or_else(|| {
            let how = if self.api.is_none() {
                "it is not in the hub cache and HF_HUB_OFFLINE is set"
            } else {
                "the hub has no such file"
            };
            Error::ModelNotFound(format!("{}: cannot get {file}: {how}", self.repo_id))
        })
    }
}

fn download_snapshot(repo_id: &str, options: &HubOptions) -> Result<PathBuf> {
    let files = RepoFiles::new(repo_id, options)?;
    let config = files.require(REQUIRED_FILES[0])?;
    for file in &REQUIRED_FILES[1..] {
        files.require(file)?;
    }
    for file in OPTIONAL_FILES {
        files.get(file)?;
    }
    match files.get(SHARD_INDEX)? {
        Some(index) => {
            for shard in shard_names(&index)? {
                files.require(&shard)?;
            }
        }
        None => {
            files.require(SINGLE_WEIGHTS)?;
        }
    }
    Ok(config.parent().map(Path::to_owned).unwrap_or_default())
}

fn shard_names(index: &Path) -> Result<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: std::collections::BTreeMap<String, String>,
    }
    let text = std::fs::read_to_string(index).map_err(|e| Error::io(index, e))?;
    let parsed: Index = serde_json::from_str(&text)
        .map_err(|e| Error::ModelNotFound(format!("{}: {e}", index.display())))?;
    let mut shards: Vec<String> = parsed.weight_map.into_values().collect();
    shards.sort();
    shards.dedup();
    Ok(shards)
}

fn hub_error(repo_id: &str, file: &str, error: hf_hub::api::sync::ApiError) -> Error {
    Error::Hub(format!("{repo_id} {file}: {error}"))
}

/// One indicatif bar per downloaded file.
#[derive(Default)]
struct DownloadBar(Option<ProgressBar>);

impl Progress for DownloadBar {
    fn init(&mut self, size: usize, filename: &str) {
        let bar = ProgressBar::new(size as u64).with_message(filename.to_owned());
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:30!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        self.0 = Some(bar);
    }

    fn update(&mut self, size: usize) {
        if let Some(bar) = &self.0 {
            bar.inc(size as u64);
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.0.take() {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_ids_are_owner_slash_name() {
        assert!(looks_like_hub_id("Kwai-Keye/Keye-VL-8B-Preview"));
        assert!(looks_like_hub_id("Kwai-Keye/Keye-VL-1_5-8B"));
        assert!(!looks_like_hub_id("Keye-VL-8B-Preview"));
        assert!(!looks_like_hub_id("./models/x"));
        assert!(!looks_like_hub_id("a/b/c"));
        assert!(!looks_like_hub_id("../x"));
    }
}
