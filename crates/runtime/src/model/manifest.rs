//! `edgebench-model.toml`: what a model directory contains and can do.

use super::{Capabilities, ModelError};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// File name of the model manifest inside a model directory.
pub const MANIFEST_FILE: &str = "edgebench-model.toml";

/// Context windows a model may declare (`max_context`), and `--ctx` may ask an importer for,
/// in tokens.
pub const CONTEXT: std::ops::RangeInclusive<usize> = 2..=131_072;
/// Context window an import builds when none is asked for (capped at the checkpoint's own).
pub const DEFAULT_CONTEXT: usize = 2048;
/// Vocabulary sizes a model may declare (`vocab_size`).
pub const VOCAB: std::ops::RangeInclusive<usize> = 1..=1 << 24;
/// Most KV-cached layers a model may declare (`kv_cache_layers`).
pub const MAX_CACHED_LAYERS: usize = 4096;

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
    /// Most router tokens the router reads (its position table), when it is
    /// not `max_context`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router_max_tokens: Option<usize>,
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
    /// The manifest of an imported f32 sentence encoder (`model.onnx`, `tokenizer.json`,
    /// embeddings only).
    pub fn encoder(
        name: String,
        max_context: usize,
        vocab_size: usize,
        parameters: u64,
        provenance: String,
    ) -> Self {
        ModelManifest {
            name,
            architecture: "encoder".into(),
            graph: "model.onnx".into(),
            tokenizer: "tokenizer.json".into(),
            router_tokenizer: None,
            router_max_tokens: None,
            capabilities: super::Capabilities {
                embed: true,
                ..Default::default()
            },
            max_context,
            vocab_size,
            bos_token_id: None,
            eos_token_id: None,
            add_bos: None,
            parameters: Some(parameters),
            kv_cache_layers: None,
            matmul: "f32".into(),
            provenance,
        }
    }

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
        m.check()
            .map_err(|message| ModelError::BadModelDir { path, message })?;
        Ok(m)
    }

    /// Checks the numbers and file names against what a model directory can hold; the message
    /// names the field and the allowed values.
    pub fn check(&self) -> Result<(), String> {
        if !CONTEXT.contains(&self.max_context) {
            return Err(format!(
                "max_context = {} is outside the allowed {CONTEXT:?} tokens",
                self.max_context
            ));
        }
        if !VOCAB.contains(&self.vocab_size) {
            return Err(format!(
                "vocab_size = {} is outside the allowed {VOCAB:?}",
                self.vocab_size
            ));
        }
        for (field, id) in [
            ("bos_token_id", self.bos_token_id),
            ("eos_token_id", self.eos_token_id),
        ] {
            if let Some(id) = id.filter(|&id| id as usize >= self.vocab_size) {
                return Err(format!(
                    "{field} = {id} is outside the vocabulary (vocab_size = {})",
                    self.vocab_size
                ));
            }
        }
        if let Some(n) = self.kv_cache_layers.filter(|&n| n > MAX_CACHED_LAYERS) {
            return Err(format!(
                "kv_cache_layers = {n} is above the allowed {MAX_CACHED_LAYERS}"
            ));
        }
        let files = [
            ("graph", Some(&self.graph)),
            ("tokenizer", Some(&self.tokenizer)),
            ("router_tokenizer", self.router_tokenizer.as_ref()),
        ];
        for (field, file) in files {
            let Some(file) = file else { continue };
            let p = Path::new(file);
            let inside = p
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
            if file.is_empty() || !inside {
                return Err(format!(
                    "{field} = {file:?} must name a file inside the model directory (a relative \
                     path without `..`)"
                ));
            }
        }
        Ok(())
    }

    /// Writes the manifest into `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), ModelError> {
        let path = dir.join(MANIFEST_FILE);
        let text = toml::to_string_pretty(self).expect("manifest serialises");
        std::fs::write(&path, text).map_err(|source| ModelError::Io { path, source })
    }
}
