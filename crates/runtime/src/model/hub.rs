//! `--model hf:<repo>[@revision]`: resolve a Hugging Face repository through
//! `hf-hub`, from the local cache when offline (`HF_HUB_OFFLINE=1`) and by
//! download otherwise. A repository holding an EdgeBench model directory is
//! used as is; a BERT checkpoint (config.json + model.safetensors +
//! tokenizer.json) is imported on first use.

use super::ModelError;
use hf_hub::{Cache, Repo, RepoType};
use std::path::{Path, PathBuf};

/// Files looked up in a repository, in order of preference.
const EDGEBENCH_FILES: [&str; 3] = ["edgebench-model.toml", "model.onnx", "tokenizer.json"];
const BERT_FILES: [&str; 3] = ["config.json", "model.safetensors", "tokenizer.json"];

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

/// Resolves `hf:<repo>[@rev]` to a local EdgeBench model directory.
/// `cache` is the Hugging Face cache (None: `HF_HOME` / default); `work` is
/// where imported checkpoints are written.
pub fn resolve(spec: &str, cache: Option<&Path>, work: &Path) -> Result<PathBuf, ModelError> {
    let (id, rev) = parse(spec)
        .ok_or_else(|| ModelError::Runtime(format!("`{spec}` is not hf:<repo>[@revision]")))?;
    let cache = match cache {
        Some(p) => Cache::new(p.to_path_buf()),
        None => Cache::from_env(),
    };
    let err = |m: String| ModelError::BadModelDir {
        path: cache.path().join(repo(&id, &rev).folder_name()),
        message: m,
    };
    if let Ok(files) = fetch(&cache, &id, &rev, &EDGEBENCH_FILES) {
        return Ok(files[0].parent().expect("snapshot dir").to_path_buf());
    }
    match fetch(&cache, &id, &rev, &BERT_FILES) {
        Ok(files) => {
            let src = files[0].parent().expect("snapshot dir");
            let out = work
                .join("hf")
                .join(id.replace('/', "--"))
                .join(rev.as_deref().unwrap_or("main"));
            if !out.join(super::manifest::MANIFEST_FILE).is_file() {
                super::bert::import_bert(src, &out)?;
            }
            Ok(out)
        }
        Err(e) => Err(err(format!(
            "{id}: neither an EdgeBench model directory ({}) nor a BERT checkpoint ({}): {e}",
            EDGEBENCH_FILES.join(", "),
            BERT_FILES.join(", ")
        ))),
    }
}
