//! `gem.toml`: every dimension of a GEM graph (paper section 3).

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// A bad GEM configuration.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: field `{field}`: {message}")]
    Field {
        path: PathBuf,
        field: String,
        message: String,
    },
}

/// The domains GEM routes between (paper section 3.1): 8 domain pathways.
pub const DOMAINS: [&str; 8] = [
    "healthcare",
    "legal",
    "finance",
    "stem",
    "commonsense",
    "conversational",
    "multilingual",
    "domain_adaptive",
];

/// A GEM configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GemConfig {
    /// Model name written into the manifest.
    pub name: String,
    /// Seed of the weights (seeded builds).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Context window in tokens.
    #[serde(default = "default_context")]
    pub max_context: usize,
    /// How tokens reach their pathway: `sparse` (each token runs through its
    /// own pathway only, with a KV cache) or `dense` (every pathway on every
    /// token, masked; the reference).
    #[serde(default)]
    pub dispatch: Dispatch,
    /// Router (a small causal transformer over the same tokens).
    pub router: RouterConfig,
    /// Domain pathways and the general pathway.
    pub pathways: PathwayConfig,
    /// Sparse cluster attention in the pathways.
    pub scar: ScarConfig,
    /// Output head.
    #[serde(default)]
    pub output: OutputConfig,
}

/// How a GEM graph sends tokens through pathways.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dispatch {
    /// `EbRoutedLinear` layers: every token is multiplied by its own
    /// pathway's weights only; the graph has a KV cache.
    #[default]
    Sparse,
    /// Every pathway runs on every token with attention masked by route and
    /// the outputs merged by route; no cache. The reference for `sparse`.
    Dense,
}

impl Dispatch {
    /// Parses `sparse` or `dense`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "sparse" => Some(Dispatch::Sparse),
            "dense" => Some(Dispatch::Dense),
            _ => None,
        }
    }
}

/// Router dimensions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterConfig {
    pub layers: usize,
    pub hidden: usize,
    /// Attention heads; `hidden` must split evenly (the paper's 12 heads do not
    /// split 256, so the paper config uses 8 heads of 32).
    pub heads: usize,
    pub ffn: usize,
    /// Weight precision of the router's linear layers.
    pub bits: usize,
    /// Confidence threshold of a domain route.
    #[serde(default = "default_tau")]
    pub tau: f32,
}

/// Pathway dimensions (all 9 pathways share them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathwayConfig {
    /// Number of pathways (optional; must be the router's 8 domains plus
    /// the general pathway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
    pub layers: usize,
    pub hidden: usize,
    pub heads: usize,
    /// Key/value heads (grouped-query attention, as in Llama checkpoints);
    /// default: `heads`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_heads: Option<usize>,
    pub ffn: usize,
    /// Precision of the 8 domain pathways.
    pub domain_bits: usize,
    /// Precision of the general pathway.
    pub general_bits: usize,
    /// Quantization block size (weights along the input dimension).
    #[serde(default = "default_block")]
    pub block_size: usize,
    /// RoPE base.
    #[serde(default = "default_rope")]
    pub rope_base: f64,
}

/// SCAR settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScarConfig {
    pub enabled: bool,
    pub k: usize,
    #[serde(default = "default_iterations")]
    pub iterations: usize,
    /// The first `sinks` tokens of a pathway are visible to all its tokens
    /// (0: the paper's SCAR).
    #[serde(default)]
    pub sinks: i64,
    /// Each token also sees the last `window` tokens of its pathway up to
    /// itself (0: none, the paper's SCAR).
    #[serde(default)]
    pub window: i64,
    /// What is clustered: the normed hidden state (`hidden`, the paper's
    /// choice) or the layer's key projection (`keys`).
    #[serde(default)]
    pub cluster_on: ClusterOn,
    /// Cached decoding: re-cluster a pathway's tokens every this many tokens
    /// (1: every step; 0, the default: never, new tokens join the nearest
    /// frozen centroid, which measured closest to one pass in docs/scar.md).
    #[serde(default = "default_recluster")]
    pub recluster_every: i64,
}

/// The representation SCAR clusters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterOn {
    /// The layer's normed hidden state.
    #[default]
    Hidden,
    /// The layer's key projection (before RoPE).
    Keys,
}

impl ScarConfig {
    /// The op's parameters (validated config: the casts are in range).
    pub fn params(&self) -> crate::ops::scar::ScarParams {
        crate::ops::scar::ScarParams {
            k: self.k,
            iterations: self.iterations,
            causal: true,
            scale: None,
            sinks: self.sinks as usize,
            window: self.window as usize,
            recluster_every: self.recluster_every as usize,
        }
    }
}

/// LM head settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// Precision of the LM head (the paper's "quantized output").
    pub bits: usize,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig { bits: 8 }
    }
}

impl PathwayConfig {
    /// Key/value heads (`kv_heads`, else `heads`).
    pub fn kv_heads(&self) -> usize {
        self.kv_heads.unwrap_or(self.heads)
    }
}

fn default_seed() -> u64 {
    7
}
fn default_context() -> usize {
    512
}
fn default_tau() -> f32 {
    crate::ops::router::DEFAULT_TAU
}
fn default_block() -> usize {
    32
}
fn default_rope() -> f64 {
    10_000.0
}
fn default_iterations() -> usize {
    10
}
fn default_recluster() -> i64 {
    0
}

impl GemConfig {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let cfg: GemConfig = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// Checks every dimension; errors name the field.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |field: &str, message: String| ConfigError::Field {
            path: path.to_path_buf(),
            field: field.into(),
            message,
        };
        let bits_ok = |field: &str, b: usize| {
            if crate::ops::quant::BITS.contains(&b) {
                Ok(())
            } else {
                Err(bad(
                    field,
                    format!(
                        "{b} bits is not supported; use one of {:?}",
                        crate::ops::quant::BITS
                    ),
                ))
            }
        };
        bits_ok("router.bits", self.router.bits)?;
        bits_ok("pathways.domain_bits", self.pathways.domain_bits)?;
        bits_ok("pathways.general_bits", self.pathways.general_bits)?;
        bits_ok("output.bits", self.output.bits)?;
        let bs = self.pathways.block_size;
        if bs == 0 || !bs.is_multiple_of(8) {
            return Err(bad(
                "pathways.block_size",
                format!("{bs} must be a positive multiple of 8"),
            ));
        }
        for (field, v) in [
            ("router.layers", self.router.layers),
            ("pathways.layers", self.pathways.layers),
        ] {
            if v == 0 {
                return Err(bad(field, "must be at least 1".into()));
            }
        }
        for (prefix, hidden, heads, ffn) in [
            (
                "router",
                self.router.hidden,
                self.router.heads,
                self.router.ffn,
            ),
            (
                "pathways",
                self.pathways.hidden,
                self.pathways.heads,
                self.pathways.ffn,
            ),
        ] {
            if heads == 0 || hidden % heads != 0 || (hidden / heads) % 2 != 0 {
                return Err(bad(
                    &format!("{prefix}.heads"),
                    format!("{hidden} hidden does not split into {heads} heads of an even size"),
                ));
            }
            for (name, v) in [("hidden", hidden), ("ffn", ffn)] {
                if v == 0 || v % bs != 0 {
                    return Err(bad(
                        &format!("{prefix}.{name}"),
                        format!("{v} must be a positive multiple of the block size {bs}"),
                    ));
                }
            }
        }
        let kv = self.pathways.kv_heads();
        if kv == 0 || !self.pathways.heads.is_multiple_of(kv) {
            return Err(bad(
                "pathways.kv_heads",
                format!(
                    "{kv} key/value heads do not divide {} query heads",
                    self.pathways.heads
                ),
            ));
        }
        if self.scar.k == 0 {
            return Err(bad("scar.k", "k must be at least 1".into()));
        }
        for (field, v) in [
            ("scar.sinks", self.scar.sinks),
            ("scar.window", self.scar.window),
            ("scar.recluster_every", self.scar.recluster_every),
        ] {
            if v < 0 {
                return Err(bad(field, format!("{v} must be 0 or more")));
            }
        }
        if self.scar.window as u64 > self.max_context as u64 {
            return Err(bad(
                "scar.window",
                format!(
                    "{} is larger than the context of {} tokens (max_context)",
                    self.scar.window, self.max_context
                ),
            ));
        }
        if self.scar.sinks as u64 > self.max_context as u64 {
            return Err(bad(
                "scar.sinks",
                format!(
                    "{} is larger than the context of {} tokens (max_context)",
                    self.scar.sinks, self.max_context
                ),
            ));
        }
        if let Some(n) = self.pathways.count {
            if n != DOMAINS.len() as i64 + 1 {
                return Err(bad(
                    "pathways.count",
                    format!(
                        "{n} pathways do not match the router's {} domains plus the general pathway ({})",
                        DOMAINS.len(),
                        DOMAINS.len() + 1
                    ),
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.router.tau) {
            return Err(bad(
                "router.tau",
                format!(
                    "{} must be in [0, 1] (1 sends every token to the general pathway)",
                    self.router.tau
                ),
            ));
        }
        if self.max_context == 0 {
            return Err(bad("max_context", "must be at least 1".into()));
        }
        Ok(())
    }

    /// Parameter count of the built graph (embeddings, router, 9 pathways, head).
    pub fn parameters(&self, vocab: usize) -> u64 {
        let block = |d: usize, f: usize| 4 * d * d + 3 * d * f + 2 * d;
        let r = &self.router;
        let p = &self.pathways;
        let kv_dim = p.hidden / p.heads * p.kv_heads();
        let pblock = |d: usize, f: usize| block(d, f) - 2 * d * (d - kv_dim);
        let router = vocab * r.hidden
            + r.layers * block(r.hidden, r.ffn)
            + r.hidden
            + DOMAINS.len() * (r.hidden + 1);
        let pathways = (DOMAINS.len() + 1) * p.layers * pblock(p.hidden, p.ffn);
        (router + vocab * p.hidden + pathways + p.hidden + vocab * p.hidden) as u64
    }
}
