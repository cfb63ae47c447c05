//! `edgebench-model.toml`: what a model directory contains and can do.

use super::{Capabilities, ModelError};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// File name of the model manifest inside a model directory.
pub const MANIFEST_FILE: &str = "edgebench-model.toml";

/// The manifest of a model directory (`model.onnx`, `tokenizer.json`, this file).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelManifest {
    /// Human-readable name.
    pub name: String,
    /// `decoder` (causal LM) for now.
    pub architecture: String,
    /// Graph file, relative to the directory.
    #[serde(default = "default_graph")]
    pub graph: String,
    /// Tokenizer file, relative to the directory.
    #[serde(default = "default_tokenizer")]
    pub tokenizer: String,
    /// Tokenizer of a second token stream the graph takes (`router_ids` and
    /// `router_align` inputs: GEM assembled with a BERT router), relative to
    /// the directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router_tokenizer: Option<String>,
    /// Declared capabilities.
    pub capabilities: Capabilities,
    /// Maximum context length in tokens.
    pub max_context: usize,
    /// Vocabulary size of the graph's logits.
    pub vocab_size: usize,
    /// Token prepended for rolling loglikelihood (lm-eval's prefix token).
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    /// End-of-sequence token that stops generation.
    #[serde(default)]
    pub eos_token_id: Option<u32>,
    /// Whether the tokenizer's convention is to prepend BOS (llama.cpp `add_bos_token`).
    #[serde(default)]
    pub add_bos: Option<bool>,
    /// Parameter count.
    #[serde(default)]
    pub parameters: Option<u64>,
    /// Number of layers with explicit `past_key_<i>`/`past_value_<i>` cache inputs.
    #[serde(default)]
    pub kv_cache_layers: Option<usize>,
    /// How matrix products are lowered.
    #[serde(default = "default_matmul")]
    pub matmul: String,
    /// Where the weights came from and how they were made.
    #[serde(default)]
    pub provenance: String,
}

fn default_graph() -> String {
    "model.onnx".into()
}
fn default_tokenizer() -> String {
    "tokenizer.json".into()
}
fn default_matmul() -> String {
    "f32".into()
}

impl ModelManifest {
    /// Reads and validates `<dir>/edgebench-model.toml`.
    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| ModelError::BadModelDir {
            path: path.clone(),
            message: format!(
                "cannot read the model manifest ({e}); a model directory needs {MANIFEST_FILE}, model.onnx and tokenizer.json (create one with `edgebench import` or use `--model builtin:tiny`)"
            ),
        })?;
        let m: ModelManifest = toml::from_str(&text).map_err(|e| ModelError::BadModelDir {
            path: path.clone(),
            message: format!("malformed manifest: {e}"),
        })?;
        if m.max_context < 2 {
            return Err(ModelError::BadModelDir {
                path,
                message: "max_context must be at least 2".into(),
            });
        }
        Ok(m)
    }

    /// Writes the manifest into `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), ModelError> {
        let path = dir.join(MANIFEST_FILE);
        let text = toml::to_string_pretty(self).expect("manifest serialises");
        std::fs::write(&path, text).map_err(|source| ModelError::Io { path, source })
    }
}
