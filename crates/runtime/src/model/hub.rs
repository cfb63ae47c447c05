//! `--model hf:<repo>[@revision][:file.gguf]`: resolve a Hugging Face
//! repository through `hf-hub`, from the local cache when offline
//! (`HF_HUB_OFFLINE=1`) and by download otherwise. What the repository holds
//! decides, in this order:
//! - an EdgeBench model directory or an `optimum` ONNX export (`model.onnx` +
//!   `tokenizer.json`): used as it is;
//! - a checkpoint folder (`config.json`, `tokenizer.json`, `model.safetensors`
//!   or `model.safetensors.index.json` and its shards): imported on first use
//!   by [`super::hf::import_hf`], the class chosen by `config.json`;
//! - with `:file.gguf`, that GGUF file: imported on first use.
//!
//! Imports are written under `<work>/hf/<owner>--<name>/<revision>`.

use super::ModelError;
use hf_hub::{Cache, Repo, RepoType};
use std::path::{Path, PathBuf};

/// Files looked up in a repository, in order of preference.
const EDGEBENCH_FILES: [&str; 3] = ["edgebench-model.toml", "model.onnx", "tokenizer.json"];
/// An `optimum` export (its `config.json` is fetched when present).
const OPTIMUM_FILES: [&str; 2] = ["model.onnx", "tokenizer.json"];

fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// Parses `hf:<repo>[@revision]`.
pub fn parse(spec: &str) -> Option<(String, Option<String>)> {
    let rest = spec.strip_prefix("hf:")?;
    Some(match rest.split_once('@') {
        Some((r, rev)) => (r.to_string(), Some(rev.to_string())),
        None => (rest.to_string(), None),
    })
}

fn repo(id: &str, rev: &Option<String>) -> Repo {
    match rev {
        Some(r) => Repo::with_revision(id.to_string(), RepoType::Model, r.clone()),
        None => Repo::new(id.to_string(), RepoType::Model),
    }
}

/// Fetches `files` (all or nothing) from the cache, or from the hub when online.
fn fetch(
    cache: &Cache,
    id: &str,
    rev: &Option<String>,
    files: &[&str],
) -> Result<Vec<PathBuf>, String> {
    // hf-hub resolves branch/tag refs; a commit hash names its snapshot folder directly.
    let by_commit = |f: &str| {
        let r = rev.as_ref()?;
        let p = cache
            .path()
            .join(repo(id, rev).folder_name())
            .join("snapshots")
            .join(r)
            .join(f);
        p.is_file().then_some(p)
    };
    let cached: Option<Vec<PathBuf>> = files
        .iter()
        .map(|f| cache.repo(repo(id, rev)).get(f).or_else(|| by_commit(f)))
        .collect();
    if let Some(found) = cached {
        return Ok(found);
    }
    if offline() {
        return Err(format!(
            "not in the Hugging Face cache at {} and HF_HUB_OFFLINE is set",
            cache.path().display()
        ));
    }
    let api = hf_hub::api::sync::ApiBuilder::from_cache(cache.clone())
        .with_progress(false)
        .build()
        .map_err(|e| e.to_string())?;
    let r = api.repo(repo(id, rev));
    files
        .iter()
        .map(|f| r.get(f).map_err(|e| format!("{f}: {e}")))
        .collect()
}

/// Fetches one file, or `None` when the repository (or the cache, offline) lacks it.
fn fetch_one(cache: &Cache, id: &str, rev: &Option<String>, file: &str) -> Option<PathBuf> {
    fetch(cache, id, rev, &[file]).ok().map(|mut v| v.remove(0))
}

/// Optional files a checkpoint import reads when present (tokenizer settings and a
/// sentence-transformers pooling module).
const CHECKPOINT_EXTRAS: [&str; 4] = [
    "tokenizer_config.json",
    "generation_config.json",
    "modules.json",
    "1_Pooling/config.json",
];

/// Fetches a checkpoint folder: config, tokenizer, weights (one file or the index and every
/// shard it names) and the optional extras; returns the snapshot folder.
fn fetch_checkpoint(cache: &Cache, id: &str, rev: &Option<String>) -> Result<PathBuf, String> {
    let base = fetch(cache, id, rev, &["config.json", "tokenizer.json"])?;
    let dir = base[0].parent().expect("snapshot dir").to_path_buf();
    if fetch_one(cache, id, rev, "model.safetensors").is_none() {
        let index = fetch(cache, id, rev, &["model.safetensors.index.json"])
            .map_err(|e| format!("neither model.safetensors nor {e}"))?;
        let text = std::fs::read_to_string(&index[0]).map_err(|e| e.to_string())?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("model.safetensors.index.json: {e}"))?;
        let mut shards: Vec<&str> = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or("model.safetensors.index.json: no `weight_map`")?
            .values()
            .filter_map(|f| f.as_str())
            .collect();
        shards.sort_unstable();
        shards.dedup();
        fetch(cache, id, rev, &shards)?;
    }
    for extra in CHECKPOINT_EXTRAS {
        fetch_one(cache, id, rev, extra);
    }
    Ok(dir)
}

/// The snapshot folder of checkpoint `hf:<repo>[@rev]` (config, tokenizer, weights and the
/// optional extras fetched), for [`super::hf::import_hf`]. `cache` as in [`resolve`].
pub fn checkpoint_dir(spec: &str, cache: Option<&Path>) -> Result<PathBuf, ModelError> {
    let (id, rev) = parse(spec)
        .ok_or_else(|| ModelError::Runtime(format!("`{spec}` is not hf:<repo>[@revision]")))?;
    let cache = match cache {
        Some(p) => Cache::new(p.to_path_buf()),
        None => Cache::from_env(),
    };
    fetch_checkpoint(&cache, &id, &rev).map_err(|e| ModelError::BadModelDir {
        path: cache.path().join(repo(&id, &rev).folder_name()),
        message: format!("{id}: not a checkpoint folder: {e}"),
    })
}

/// Parses `hf:<repo>[@rev][:file.gguf]` into the repository spec and the GGUF file.
fn split_file(spec: &str) -> (&str, Option<&str>) {
    match spec.rsplit_once(':') {
        Some((head, file)) if head.starts_with("hf:") && file.ends_with(".gguf") => {
            (head, Some(file))
        }
        _ => (spec, None),
    }
}

/// Resolves `hf:<repo>[@rev][:file.gguf]` to a local model directory (EdgeBench's or an
/// optimum export). `cache` is the Hugging Face cache (None: `HF_HOME` / default); `work` is
/// where imported checkpoints are written.
pub fn resolve(spec: &str, cache: Option<&Path>, work: &Path) -> Result<PathBuf, ModelError> {
    let (repo_spec, gguf) = split_file(spec);
    let (id, rev) = parse(repo_spec).ok_or_else(|| {
        ModelError::Runtime(format!("`{spec}` is not hf:<repo>[@revision][:file.gguf]"))
    })?;
    let cache = match cache {
        Some(p) => Cache::new(p.to_path_buf()),
        None => Cache::from_env(),
    };
    let err = |m: String| ModelError::BadModelDir {
        path: cache.path().join(repo(&id, &rev).folder_name()),
        message: m,
    };
    let imported = work
        .join("hf")
        .join(id.replace('/', "--"))
        .join(rev.as_deref().unwrap_or("main"));
    if let Some(file) = gguf {
        let out = imported.join(file.trim_end_matches(".gguf"));
        if !out.join(super::manifest::MANIFEST_FILE).is_file() {
            let path = fetch(&cache, &id, &rev, &[file]).map_err(|e| err(format!("{id}: {e}")))?;
            super::llama::import_gguf(&path[0], &out, super::manifest::DEFAULT_CONTEXT, false)?;
        }
        return Ok(out);
    }
    if let Ok(files) = fetch(&cache, &id, &rev, &EDGEBENCH_FILES) {
        return Ok(files[0].parent().expect("snapshot dir").to_path_buf());
    }
    if let Ok(files) = fetch(&cache, &id, &rev, &OPTIMUM_FILES) {
        for extra in [
            "config.json",
            "tokenizer_config.json",
            "generation_config.json",
        ]
        .into_iter()
        .chain(CHECKPOINT_EXTRAS)
        {
            fetch_one(&cache, &id, &rev, extra);
        }
        return Ok(files[0].parent().expect("snapshot dir").to_path_buf());
    }
    match fetch_checkpoint(&cache, &id, &rev) {
        Ok(src) => {
            if !imported.join(super::manifest::MANIFEST_FILE).is_file() {
                let opts = super::hf::HfOptions {
                    max_context: super::manifest::DEFAULT_CONTEXT,
                    quantize: None,
                };
                super::hf::import_hf(&src, &imported, opts)?;
            }
            Ok(imported)
        }
        Err(e) => Err(err(format!(
            "{id}: neither an EdgeBench model directory ({}), an optimum ONNX export ({}) nor a \
             checkpoint folder (config.json, tokenizer.json, model.safetensors or \
             model.safetensors.index.json): {e}",
            EDGEBENCH_FILES.join(", "),
            OPTIMUM_FILES.join(", "),
        ))),
    }
}
