//! GEM (the paper's Generalized Edge Model) built as an ONNX graph that tract
//! runs with EdgeBench's custom ops: `EbTokenRouter` -> 9 pathways with
//! `EbScar` attention and `EbQuantLinear` layers at per-pathway precision.
//!
//! GEM's trained weights are not public: a seeded build has the paper's
//! architecture on random weights. Every manifest and report says so.

pub mod build;
pub mod config;
pub mod pretrained;
pub mod router_fit;
pub mod sparse;

pub use build::{Variant, WeightSource};
pub use config::GemConfig;

use crate::model::{manifest::ModelManifest, Capabilities, ModelError};
use std::path::{Path, PathBuf};

/// The small GEM bundled with EdgeBench (every op, tiny dimensions).
pub const TINY_CONFIG: &str = include_str!("../../../../fixtures/gem/gem-tiny.toml");

/// Byte-level vocabulary of seeded builds (256 bytes + end of text).
pub const VOCAB: usize = crate::model::tiny::VOCAB;

/// What `gem build` wrote for one variant.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BuildReport {
    pub variant: String,
    pub dir: PathBuf,
    pub parameters: u64,
    pub weight_bytes: u64,
}

/// Writes a seeded GEM variant to `dir` (`model.onnx`, byte-level
/// `tokenizer.json`, `edgebench-model.toml`, a copy of the config as
/// `gem.toml`). Rewrites nothing when the graph is unchanged.
pub fn materialize_seeded(
    cfg: &GemConfig,
    variant: Variant,
    dir: &Path,
) -> Result<BuildReport, ModelError> {
    materialize_with(
        cfg,
        variant,
        dir,
        &mut build::Seeded::new(cfg.seed),
        "seeded random weights",
    )
}

/// Writes a GEM variant from `weights`, described in the manifest as `origin`.
pub fn materialize_with(
    cfg: &GemConfig,
    variant: Variant,
    dir: &Path,
    weights: &mut dyn WeightSource,
    origin: &str,
) -> Result<BuildReport, ModelError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ModelError::Io { path, source }
    };
    let built = build::build(cfg, VOCAB, variant, weights);
    let text = toml::to_string_pretty(cfg).map_err(|e| ModelError::Runtime(e.to_string()))?;
    let parameters = cfg.parameters(VOCAB);
    let p = &cfg.pathways;
    let quant = if variant == Variant::NoQuant {
        "f32 (no quantization)".to_string()
    } else {
        format!(
            "EbQuantLinear: router {}-bit, domain pathways {}-bit, general {}-bit, head {}-bit",
            cfg.router.bits, p.domain_bits, p.general_bits, cfg.output.bits
        )
    };
    let manifest = ModelManifest {
        name: format!("{}{}", cfg.name, variant.suffix()),
        architecture: "decoder".into(),
        graph: "model.onnx".into(),
        tokenizer: "tokenizer.json".into(),
        router_tokenizer: None,
        router_max_tokens: None,
        capabilities: Capabilities::all(),
        max_context: cfg.max_context,
        vocab_size: VOCAB,
        bos_token_id: Some(crate::model::tiny::EOT),
        eos_token_id: Some(crate::model::tiny::EOT),
        add_bos: Some(true),
        parameters: Some(parameters),
        kv_cache_layers: None,
        matmul: quant,
        provenance: format!(
            "GEM's architecture on {origin} (seed {}), built by `edgebench gem build`, variant {variant:?}: NOT the paper's trained GEM, whose weights are not public",
            cfg.seed
        ),
    };
    let fresh = std::fs::read(dir.join("model.onnx")).ok().as_deref()
        == Some(built.onnx.as_slice())
        && std::fs::read_to_string(dir.join("gem.toml"))
            .ok()
            .as_deref()
            == Some(text.as_str())
        && ModelManifest::load(dir).is_ok_and(|m| m.name == manifest.name)
        && dir.join("tokenizer.json").is_file();
    if !fresh {
        crate::model::write_dir_atomically(dir, |tmp| {
            let graph = tmp.join("model.onnx");
            std::fs::write(&graph, &built.onnx).map_err(io(&graph))?;
            crate::model::tokenizer::write_byte_tokenizer(&tmp.join("tokenizer.json"))?;
            let cfg_path = tmp.join("gem.toml");
            std::fs::write(&cfg_path, &text).map_err(io(&cfg_path))?;
            manifest.save(tmp)
        })?;
    }
    Ok(BuildReport {
        variant: format!("{variant:?}"),
        dir: dir.to_path_buf(),
        parameters,
        weight_bytes: built.weight_bytes,
    })
}

/// The bundled tiny GEM's config.
pub fn tiny_config() -> GemConfig {
    let cfg: GemConfig = toml::from_str(TINY_CONFIG).expect("bundled gem-tiny.toml parses");
    cfg.validate(Path::new("fixtures/gem/gem-tiny.toml"))
        .expect("bundled gem-tiny.toml is valid");
    cfg
}
