//! Compression sweep: the same model built at several
//! weight precisions, each evaluated like any model, then bits against scores,
//! perplexity and the paper's brittleness metrics (GG, DSI).
//!
//! This module resolves what to sweep and builds it at a width; [`table`]
//! turns the scored runs into rows, Markdown, CSV and the answer the data
//! gives; [`plot`] draws them. The CLI (`edgebench sweep bits`) runs suites.

pub mod plot;
pub mod table;

use edgebench_runtime::gem::{self, build, GemConfig, Variant};
use edgebench_runtime::model::{llama, ModelError};
use edgebench_runtime::ops::quant::BITS;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why a sweep cannot start or a width cannot be built.
#[derive(Debug, Error)]
pub enum SweepError {
    /// A bad bit-width list.
    #[error("{0}")]
    Bits(String),
    /// A model argument that cannot be swept.
    #[error("{path}: {message}")]
    Model { path: PathBuf, message: String },
    /// A GEM config that does not load or validate (the message names the field).
    #[error(transparent)]
    Config(#[from] gem::config::ConfigError),
    /// Building or importing the model at a width failed.
    #[error(transparent)]
    Build(#[from] ModelError),
}

/// Parses a comma list of widths (`8,6,4,3,2`): each one of
/// [`BITS`], none twice, at least one.
pub fn parse_bits(list: &str) -> Result<Vec<usize>, SweepError> {
    let mut out = Vec::new();
    for part in list.split(',').map(str::trim) {
        if part.is_empty() {
            continue;
        }
        let b: usize = part
            .parse()
            .map_err(|_| SweepError::Bits(format!("`{part}` is not a number of bits")))?;
        if !BITS.contains(&b) {
            return Err(SweepError::Bits(format!(
                "{b} bits is not supported; use some of {BITS:?}"
            )));
        }
        if out.contains(&b) {
            return Err(SweepError::Bits(format!("{b} is listed twice")));
        }
        out.push(b);
    }
    if out.is_empty() {
        return Err(SweepError::Bits(format!(
            "no widths given; use some of {BITS:?}"
        )));
    }
    Ok(out)
}

/// What a sweep rebuilds at each width.
#[derive(Debug, Clone)]
pub enum SweepSource {
    /// A seeded GEM: every precision field (router, domain and general
    /// pathways, head) set to the width.
    Gem(Box<GemConfig>),
    /// A Llama GGUF file: every matrix re-quantized at the width.
    Gguf(PathBuf),
}

impl SweepSource {
    /// Name used in sweep, model and run ids.
    pub fn name(&self) -> String {
        match self {
            SweepSource::Gem(cfg) => cfg.name.clone(),
            SweepSource::Gguf(p) => p
                .file_stem()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_else(|| "gguf".into()),
        }
    }
}

/// Resolves a `--model` argument: `builtin:gem-tiny`, a GEM config (`.toml`),
/// a GGUF file (`.gguf`), or a seeded GEM model directory (one `gem build`
/// wrote: its `gem.toml` rebuilds exactly its `model.onnx`).
pub fn resolve(model: &str) -> Result<SweepSource, SweepError> {
    if matches!(model, "builtin:gem-tiny" | "gem-tiny") {
        return Ok(SweepSource::Gem(Box::new(gem::tiny_config())));
    }
    let path = PathBuf::from(model);
    let bad = |message: String| SweepError::Model {
        path: path.clone(),
        message,
    };
    if !path.exists() {
        return Err(bad(
            "no such file or directory (expected a GEM config .toml, a .gguf file, a GEM model directory or builtin:gem-tiny)".into(),
        ));
    }
    if path.is_dir() {
        return resolve_gem_dir(&path);
    }
    match path.extension().and_then(|e| e.to_str()) {
        Some("toml") => Ok(SweepSource::Gem(Box::new(GemConfig::load(&path)?))),
        Some("gguf") => Ok(SweepSource::Gguf(path)),
        _ => Err(bad("not a GEM config (.toml) or a GGUF file (.gguf)".into())),
    }
}

/// A model directory can be swept when it is a seeded full GEM: its
/// `gem.toml` must rebuild its graph byte for byte, so the sweep changes
/// only the precision. Imported models are swept from their GGUF file.
fn resolve_gem_dir(dir: &Path) -> Result<SweepSource, SweepError> {
    let bad = |message: String| SweepError::Model {
        path: dir.to_path_buf(),
        message,
    };
    let cfg_path = dir.join("gem.toml");
    if !cfg_path.exists() {
        return Err(bad(
            "this model directory has no gem.toml, so it cannot be rebuilt at other precisions; pass the GEM config or the .gguf file it was made from".into(),
        ));
    }
    let cfg = GemConfig::load(&cfg_path)?;
    let graph = dir.join("model.onnx");
    let on_disk = std::fs::read(&graph).map_err(|e| SweepError::Model {
        path: graph.clone(),
        message: e.to_string(),
    })?;
    let rebuilt = build::build(
        &cfg,
        gem::VOCAB,
        Variant::Full,
        &mut build::Seeded::new(cfg.seed),
    );
    if rebuilt.onnx != on_disk {
        return Err(bad(
            "model.onnx is not the seeded full GEM of its gem.toml (an ablation or other weights); pass the GEM config instead".into(),
        ));
    }
    Ok(SweepSource::Gem(Box::new(cfg)))
}

/// Writes the model at `bits` into `dir` and returns `dir`; `max_context`
/// applies to GGUF imports.
pub fn build_at(
    source: &SweepSource,
    bits: usize,
    dir: &Path,
    max_context: usize,
) -> Result<PathBuf, SweepError> {
    match source {
        SweepSource::Gem(cfg) => {
            let cfg = at_bits(cfg, bits);
            gem::materialize_seeded(&cfg, Variant::Full, dir)?;
        }
        SweepSource::Gguf(path) => {
            llama::import_gguf_requantized(path, dir, max_context, bits)?;
        }
    }
    Ok(dir.to_path_buf())
}

/// `cfg` with every precision field (router, domain and general pathways,
/// output head) at `bits`, named `<name>-<bits>bit`.
pub fn at_bits(cfg: &GemConfig, bits: usize) -> GemConfig {
    let mut c = cfg.clone();
    c.name = format!("{}-{bits}bit", cfg.name);
    c.router.bits = bits;
    c.pathways.domain_bits = bits;
    c.pathways.general_bits = bits;
    c.output.bits = bits;
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_lists_are_checked() {
        assert_eq!(parse_bits("8, 6,4,3,2").unwrap(), vec![8, 6, 4, 3, 2]);
        for (list, says) in [
            ("8,7", "7 bits is not supported"),
            ("8,x", "`x` is not a number"),
            ("4,4", "listed twice"),
            ("", "no widths"),
            ("1", "1 bits"),
        ] {
            let e = parse_bits(list).unwrap_err().to_string();
            assert!(e.contains(says), "{list}: {e}");
        }
    }

    #[test]
    fn gem_at_bits_sets_every_precision_field() {
        let c = at_bits(&gem::tiny_config(), 3);
        assert_eq!(
            (
                c.router.bits,
                c.pathways.domain_bits,
                c.pathways.general_bits,
                c.output.bits
            ),
            (3, 3, 3, 3)
        );
        assert_eq!(c.name, "gem-tiny-3bit");
        c.validate(Path::new("x")).unwrap();
    }
}
