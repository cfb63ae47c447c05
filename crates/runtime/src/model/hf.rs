//! Hugging Face checkpoint folders: `config.json` (dispatched on `architectures[0]`),
//! safetensors weights (one `model.safetensors` or `model.safetensors.index.json` and its
//! shards; F32, F16 or BF16) and `tokenizer.json`, imported as the Llama-family decoder graph
//! (`LlamaForCausalLM`, `Qwen2ForCausalLM`) or the encoders (`BertModel`, MobileBERT); the
//! weights are read by [`super::checkpoint::Checkpoint`].

use super::checkpoint::Checkpoint;
use super::gguf::{quantize_as, requant, GgmlType, Gguf, GgufWriter};
use super::llama::{self, DecoderArch, LlamaConfig, RopeScaling, Weight};
use super::manifest::ModelManifest;
use super::tokenizer::Tok;
use super::{bad, io};
use super::{Capabilities, ModelError};
use crate::ops::quant::QuantMatrix;
use serde_json::Value;
use std::path::Path;

/// The `architectures[0]` classes `edgebench import hf` takes.
pub const SUPPORTED: [&str; 5] = [
    "LlamaForCausalLM",
    "Qwen2ForCausalLM",
    "BertModel",
    "MobileBertModel",
    "MobileBertForMaskedLM",
];

/// Block quantization of the decoder's matrices at import (`--quantize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantize {
    /// llama.cpp's Q4_0: 4-bit codes, one f16 scale per block of 32.
    Q4_0,
    /// llama.cpp's Q4_K: super-blocks of 256 with 6-bit sub-block scales and minimums.
    Q4K,
    /// llama.cpp's Q8_0: 8-bit codes, one f16 scale per block of 32.
    Q8_0,
}

impl Quantize {
    /// Every value, as `--quantize` spells it.
    pub const ALL: [Quantize; 3] = [Quantize::Q4_0, Quantize::Q4K, Quantize::Q8_0];

    /// The `--quantize` spelling.
    pub fn name(self) -> &'static str {
        match self {
            Quantize::Q4_0 => "q4_0",
            Quantize::Q4K => "q4_k",
            Quantize::Q8_0 => "q8_0",
        }
    }

    /// Parses a `--quantize` value.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|q| q.name() == s)
    }
}

/// How [`import_hf`] writes the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HfOptions {
    /// Context window of a decoder (RoPE tables are built for it), at most the config's own.
    pub max_context: usize,
    /// Block-quantize a decoder's matrices; `None` keeps them f32.
    pub quantize: Option<Quantize>,
}

/// Imports the checkpoint folder `dir` into the model directory `out` (written whole or not
/// at all), by the class `config.json` names in `architectures[0]`.
pub fn import_hf(dir: &Path, out: &Path, opts: HfOptions) -> Result<ModelManifest, ModelError> {
    let cfg_path = dir.join("config.json");
    let config = read_config(&cfg_path)?;
    let class = config
        .get("architectures")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .ok_or_else(|| {
            bad(
                &cfg_path,
                format!(
                    "`architectures` is missing or not a list of class names; supported: {}",
                    SUPPORTED.join(", ")
                ),
            )
        })?;
    match class {
        "LlamaForCausalLM" | "Qwen2ForCausalLM" => {
            let arch = match class {
                "LlamaForCausalLM" => DecoderArch::Llama,
                _ => DecoderArch::Qwen2,
            };
            import_decoder(dir, out, &config, arch, opts)
        }
        "BertModel" => {
            if let Some(q) = opts.quantize {
                return Err(bad(
                    &cfg_path,
                    format!(
                        "`architectures` = [\"BertModel\"]: --quantize {} is for decoders; BERT \
                         encoders are imported in f32",
                        q.name()
                    ),
                ));
            }
            let mut manifest = None;
            super::write_dir_atomically(out, |tmp| {
                manifest = Some(super::bert::import_bert(dir, tmp)?);
                Ok(())
            })?;
            Ok(manifest.expect("written"))
        }
        "MobileBertModel" | "MobileBertForMaskedLM" => {
            if let Some(q) = opts.quantize {
                return Err(bad(
                    &cfg_path,
                    format!(
                        "`architectures` = [\"{class}\"]: --quantize {} is for decoders; \
                         MobileBERT encoders are imported in f32",
                        q.name()
                    ),
                ));
            }
            super::mobilebert::import_mobilebert(dir, out)
        }
        other => Err(bad(
            &cfg_path,
            format!(
                "`architectures` = [\"{other}\"] is not supported; supported: {}",
                SUPPORTED.join(", ")
            ),
        )),
    }
}

fn read_config(path: &Path) -> Result<Value, ModelError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| bad(path, format!("not a valid config.json: {e}")))?;
    if !v.is_object() {
        return Err(bad(path, "not a valid config.json: not a JSON object"));
    }
    Ok(v)
}

/// Typed reads of `config.json` fields; errors name the file and the field.
struct Fields<'a> {
    v: &'a Value,
    path: &'a Path,
}

impl Fields<'_> {
    fn present(&self, k: &str) -> Option<&Value> {
        self.v.get(k).filter(|x| !x.is_null())
    }

    fn usize_opt(&self, k: &str) -> Result<Option<usize>, ModelError> {
        match self.present(k) {
            None => Ok(None),
            Some(x) => x
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| {
                    bad(
                        self.path,
                        format!("`{k}` = {x}: expected a non-negative integer"),
                    )
                }),
        }
    }

    fn usize(&self, k: &str, min: usize) -> Result<usize, ModelError> {
        let v = self
            .usize_opt(k)?
            .ok_or_else(|| bad(self.path, format!("`{k}` is missing")))?;
        at_least(self.path, k, v, min)
    }

    fn f64_in(&self, obj: &Value, k: &str, name: &str) -> Result<Option<f64>, ModelError> {
        match obj.get(k).filter(|x| !x.is_null()) {
            None => Ok(None),
            Some(x) => match x.as_f64() {
                Some(f) if f.is_finite() && f > 0.0 => Ok(Some(f)),
                _ => Err(bad(
                    self.path,
                    format!("`{name}` = {x}: expected a finite number above 0"),
                )),
            },
        }
    }

    fn f64(&self, k: &str) -> Result<Option<f64>, ModelError> {
        self.f64_in(self.v, k, k)
    }

    fn bool(&self, k: &str) -> Result<Option<bool>, ModelError> {
        match self.present(k) {
            None => Ok(None),
            Some(x) => x
                .as_bool()
                .map(Some)
                .ok_or_else(|| bad(self.path, format!("`{k}` = {x}: expected true or false"))),
        }
    }

    /// A token id: an integer, or the first of a list (Llama 3's several end tokens).
    fn token(&self, k: &str, vocab: usize) -> Result<Option<u32>, ModelError> {
        let x = match self.present(k) {
            None => return Ok(None),
            Some(Value::Array(a)) if a.is_empty() => return Ok(None),
            Some(Value::Array(a)) => &a[0],
            Some(x) => x,
        };
        match x.as_u64() {
            Some(id) if (id as usize) < vocab => Ok(Some(id as u32)),
            _ => Err(bad(
                self.path,
                format!("`{k}` = {x} is not a token id of the vocabulary of {vocab}"),
            )),
        }
    }
}

fn at_least(path: &Path, k: &str, v: usize, min: usize) -> Result<usize, ModelError> {
    if v < min {
        return Err(bad(path, format!("`{k}` = {v}: must be at least {min}")));
    }
    Ok(v)
}

/// The decoder configuration a `LlamaForCausalLM` / `Qwen2ForCausalLM` `config.json`
/// describes, with whether its head is tied to the embedding.
pub fn decoder_config(
    v: &Value,
    path: &Path,
    arch: DecoderArch,
) -> Result<(LlamaConfig, bool), ModelError> {
    let f = Fields { v, path };
    let d_model = f.usize("hidden_size", 1)?;
    let n_heads = f.usize("num_attention_heads", 1)?;
    let n_kv_heads = match f.usize_opt("num_key_value_heads")? {
        Some(n) => at_least(path, "num_key_value_heads", n, 1)?,
        None => n_heads,
    };
    if !n_heads.is_multiple_of(n_kv_heads) {
        return Err(bad(
            path,
            format!(
                "`num_attention_heads` = {n_heads} is not a multiple of `num_key_value_heads` = \
                 {n_kv_heads}"
            ),
        ));
    }
    let head_dim = match f.usize_opt("head_dim")? {
        Some(hd) => hd,
        None if d_model.is_multiple_of(n_heads) => d_model / n_heads,
        None => {
            return Err(bad(
                path,
                format!(
                    "`hidden_size` = {d_model} is not a multiple of `num_attention_heads` = \
                     {n_heads} (and there is no `head_dim`)"
                ),
            ))
        }
    };
    if head_dim < 2 || !head_dim.is_multiple_of(2) {
        return Err(bad(
            path,
            format!("`head_dim` = {head_dim}: RoPE needs an even head dim of at least 2"),
        ));
    }
    let n_layers = f.usize("num_hidden_layers", 1)?;
    let ffn = f.usize("intermediate_size", 1)?;
    let vocab = f.usize("vocab_size", 1)?;
    let default_ctx = match arch {
        DecoderArch::Llama => 2048,
        DecoderArch::Qwen2 => 32768,
    };
    let context = match f.usize_opt("max_position_embeddings")? {
        Some(c) => at_least(path, "max_position_embeddings", c, 2)?,
        None => default_ctx,
    };
    if let Some(act) = f.present("hidden_act") {
        if act.as_str() != Some("silu") {
            return Err(bad(
                path,
                format!("`hidden_act` = {act} is not supported (only \"silu\")"),
            ));
        }
    }
    for k in ["attention_bias", "mlp_bias"] {
        if f.bool(k)? == Some(true) && arch == DecoderArch::Llama {
            return Err(bad(
                path,
                format!("`{k}` = true is not supported (Llama projections without biases only)"),
            ));
        }
    }
    if f.bool("use_sliding_window")? == Some(true) {
        return Err(bad(
            path,
            "`use_sliding_window` = true is not supported (full causal attention only)",
        ));
    }
    // transformers 4 spells RoPE `rope_theta` + `rope_scaling`; 5 nests both in `rope_parameters`
    let params = f.present("rope_parameters");
    let scaling = f
        .present("rope_scaling")
        .map(|s| (s, "rope_scaling"))
        .or(params.map(|p| (p, "rope_parameters")));
    let rope_base = match f.f64("rope_theta")? {
        Some(t) => t,
        None => match params {
            Some(p) => f.f64_in(p, "rope_theta", "rope_parameters.rope_theta")?,
            None => None,
        }
        .unwrap_or(10000.0),
    };
    let rope_scaling = match scaling {
        None => RopeScaling::None,
        Some((s, name)) => {
            let ty = s
                .get("rope_type")
                .or_else(|| s.get("type"))
                .and_then(Value::as_str)
                .unwrap_or("default");
            match ty {
                "default" => RopeScaling::None,
                "llama3" => {
                    let need = |k: &str| -> Result<f64, ModelError> {
                        f.f64_in(s, k, &format!("{name}.{k}"))?
                            .ok_or_else(|| bad(path, format!("`{name}.{k}` is missing")))
                    };
                    let (low, high) = (need("low_freq_factor")?, need("high_freq_factor")?);
                    if high <= low {
                        return Err(bad(
                            path,
                            format!(
                                "`{name}.high_freq_factor` = {high} must be above \
                                 `{name}.low_freq_factor` = {low}"
                            ),
                        ));
                    }
                    RopeScaling::Llama3 {
                        factor: need("factor")?,
                        low_freq_factor: low,
                        high_freq_factor: high,
                        original_max_position_embeddings: need("original_max_position_embeddings")?,
                    }
                }
                other => {
                    return Err(bad(
                        path,
                        format!(
                            "`{name}.rope_type` = \"{other}\" is not supported (\"default\" or \
                             \"llama3\")"
                        ),
                    ))
                }
            }
        }
    };
    let eps = f.f64("rms_norm_eps")?.unwrap_or(1e-6);
    let tied = f.bool("tie_word_embeddings")?.unwrap_or(false);
    let cfg = LlamaConfig {
        arch,
        n_layers,
        d_model,
        n_heads,
        n_kv_heads,
        head_dim,
        ffn,
        rope_base,
        rope_scaling,
        eps,
        vocab,
        context,
        qk_interleaved: false,
    };
    Ok((cfg, tied))
}

/// The Hugging Face name of a graph weight (GGUF naming), `None` for the tied head.
fn hf_name(gguf: &str, tied: bool) -> Option<String> {
    Some(match gguf {
        "token_embd.weight" => "model.embed_tokens.weight".into(),
        "output_norm.weight" => "model.norm.weight".into(),
        "output.weight" if tied => return None,
        "output.weight" => "lm_head.weight".into(),
        _ => {
            let rest = gguf.strip_prefix("blk.")?;
            let (l, rest) = rest.split_once('.')?;
            let (m, kind) = rest.rsplit_once('.')?;
            let m = match m {
                "attn_norm" => "input_layernorm",
                "attn_q" => "self_attn.q_proj",
                "attn_k" => "self_attn.k_proj",
                "attn_v" => "self_attn.v_proj",
                "attn_output" => "self_attn.o_proj",
                "ffn_norm" => "post_attention_layernorm",
                "ffn_gate" => "mlp.gate_proj",
                "ffn_up" => "mlp.up_proj",
                "ffn_down" => "mlp.down_proj",
                _ => return None,
            };
            format!("model.layers.{l}.{m}.{kind}")
        }
    })
}

/// Every tensor the decoder graph reads, with its shape (dims named by config field).
fn decoder_tensors(cfg: &LlamaConfig, tied: bool) -> Vec<(String, Vec<(usize, &'static str)>)> {
    let h = (cfg.d_model, "hidden_size");
    let v = (cfg.vocab, "vocab_size");
    let f = (cfg.ffn, "intermediate_size");
    let q = (cfg.n_heads * cfg.head_dim, "num_attention_heads x head_dim");
    let kv = (
        cfg.n_kv_heads * cfg.head_dim,
        "num_key_value_heads x head_dim",
    );
    let mut out = vec![
        ("model.embed_tokens.weight".to_string(), vec![v, h]),
        ("model.norm.weight".to_string(), vec![h]),
    ];
    if !tied {
        out.push(("lm_head.weight".into(), vec![v, h]));
    }
    for l in 0..cfg.n_layers {
        let p = |s: &str| format!("model.layers.{l}.{s}");
        out.push((p("input_layernorm.weight"), vec![h]));
        out.push((p("self_attn.q_proj.weight"), vec![q, h]));
        out.push((p("self_attn.k_proj.weight"), vec![kv, h]));
        out.push((p("self_attn.v_proj.weight"), vec![kv, h]));
        if cfg.arch.qkv_bias() {
            out.push((p("self_attn.q_proj.bias"), vec![q]));
            out.push((p("self_attn.k_proj.bias"), vec![kv]));
            out.push((p("self_attn.v_proj.bias"), vec![kv]));
        }
        out.push((p("self_attn.o_proj.weight"), vec![h, q]));
        out.push((p("post_attention_layernorm.weight"), vec![h]));
        out.push((p("mlp.gate_proj.weight"), vec![f, h]));
        out.push((p("mlp.up_proj.weight"), vec![f, h]));
        out.push((p("mlp.down_proj.weight"), vec![h, f]));
    }
    out
}

/// A matrix `[rows, cols]` quantized exactly as llama.cpp's reference quantizer does, then
/// repacked for `EbQuantLinear` by [`llama::gguf_to_quant`].
fn quantize_matrix(
    w: &[f32],
    (rows, cols): (usize, usize),
    q: Quantize,
) -> Result<QuantMatrix, String> {
    let want = match q {
        Quantize::Q4_0 => GgmlType::Q4_0,
        Quantize::Q8_0 => GgmlType::Q8_0,
        Quantize::Q4K => GgmlType::Q4_K,
    };
    // K-quants need rows of whole super-blocks of 256; shorter rows take llama.cpp's fallback
    let ty = requant::fallback(want, cols).ok_or_else(|| {
        format!(
            "rows of {cols} values are not whole blocks of {}: cannot quantize to {}",
            want.block_size().unwrap_or(32),
            q.name()
        )
    })?;
    let data = quantize_as(ty, w).ok_or_else(|| format!("no quantizer for {ty}"))?;
    let mut gw = GgufWriter::new();
    gw.tensor("w", &[cols as u64, rows as u64], ty, data);
    let bytes = gw.finish();
    let g = Gguf::parse(&bytes).map_err(|e| e.what)?;
    let t = g.tensor("w").map_err(|e| e.what)?;
    llama::gguf_to_quant(&g, &bytes, t)?.ok_or_else(|| format!("{} is not a block type", q.name()))
}

fn import_decoder(
    dir: &Path,
    out: &Path,
    config: &Value,
    arch: DecoderArch,
    opts: HfOptions,
) -> Result<ModelManifest, ModelError> {
    let cfg_path = dir.join("config.json");
    if !super::manifest::CONTEXT.contains(&opts.max_context) {
        return Err(ModelError::Runtime(format!(
            "context {} is outside {:?} tokens",
            opts.max_context,
            super::manifest::CONTEXT
        )));
    }
    let (mut cfg, tied) = decoder_config(config, &cfg_path, arch)?;
    cfg.context = cfg.context.min(opts.max_context);
    let ck = Checkpoint::open(dir)?;
    // the layers the checkpoint has, before the ones the config asks for
    let layer = |n: &str| super::checkpoint::layer_of(n, "", "model.layers.");
    if let Some(n) = super::checkpoint::tensor_beyond(ck.names(), "", "model.layers.", cfg.n_layers)
    {
        return Err(bad(
            &cfg_path,
            format!(
                "`num_hidden_layers` = {} but {} has tensor `{n}` beyond it",
                cfg.n_layers,
                ck.file_of(n).display()
            ),
        ));
    }
    for (name, want) in decoder_tensors(&cfg, tied) {
        let why = match layer(&name) {
            Some(_) => format!(" (`num_hidden_layers` = {})", cfg.n_layers),
            None if name == "lm_head.weight" => " (`tie_word_embeddings` is false)".into(),
            None => String::new(),
        };
        ck.check(&name, &want, &why)?;
    }
    let tok_path = dir.join("tokenizer.json");
    let tok = Tok::load(&tok_path)?;
    if tok.vocab_size() > cfg.vocab {
        return Err(bad(
            &tok_path,
            format!(
                "tokenizer has {} tokens, more than `vocab_size` = {} in config.json: wrong \
                 tokenizer",
                tok.vocab_size(),
                cfg.vocab
            ),
        ));
    }
    let f = Fields {
        v: config,
        path: &cfg_path,
    };
    let bos = f.token("bos_token_id", cfg.vocab)?;
    let eos = f.token("eos_token_id", cfg.vocab)?;
    let add_bos = std::fs::read_to_string(dir.join("tokenizer_config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v.get("add_bos_token").and_then(Value::as_bool));
    let mut weights = |name: &str| -> Result<Weight, ModelError> {
        let hf = hf_name(name, tied)
            .ok_or_else(|| ModelError::Runtime(format!("no checkpoint tensor for `{name}`")))?;
        let w = ck.f32(&hf)?;
        match (opts.quantize, ck.shape(&hf)) {
            (Some(q), Some(&[rows, cols])) => quantize_matrix(&w, (rows, cols), q)
                .map(Weight::Quant)
                .map_err(|e| bad(ck.file_of(&hf), format!("tensor `{hf}`: {e}"))),
            _ => Ok(Weight::F32(w)),
        }
    };
    let graph = llama::build_graph(&cfg, &mut weights)?;
    let class = match arch {
        DecoderArch::Llama => "LlamaForCausalLM",
        DecoderArch::Qwen2 => "Qwen2ForCausalLM",
    };
    let dtypes = ck.dtypes().join("/");
    let matmul = match opts.quantize {
        None if dtypes == "F32" => "f32".to_string(),
        None => format!("f32 (converted at import from {dtypes})"),
        Some(q) => format!(
            "EbQuantLinear: every matrix quantized at import to {} (llama.cpp's rounding)",
            q.name().to_uppercase()
        ),
    };
    let how = opts
        .quantize
        .map(|q| format!(" --quantize {}", q.name()))
        .unwrap_or_default();
    let manifest = ModelManifest {
        name: dir
            .file_name()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| arch.gguf_name().into()),
        architecture: "decoder".into(),
        graph: "model.onnx".into(),
        tokenizer: "tokenizer.json".into(),
        router_tokenizer: None,
        router_max_tokens: None,
        capabilities: Capabilities::all(),
        max_context: cfg.context,
        vocab_size: cfg.vocab,
        bos_token_id: bos,
        eos_token_id: eos,
        add_bos,
        parameters: Some(ck.parameters()),
        matmul,
        kv_cache_layers: Some(cfg.n_layers),
        provenance: format!(
            "imported from {} ({class}; {}) by edgebench import hf{how}",
            dir.display(),
            ck.hashes()?
        ),
    };
    super::write_dir_atomically(out, |tmp| {
        let graph_path = tmp.join("model.onnx");
        std::fs::write(&graph_path, &graph).map_err(io(&graph_path))?;
        std::fs::copy(&tok_path, tmp.join("tokenizer.json")).map_err(io(&tok_path))?;
        manifest.save(tmp)
    })?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(v: Value, arch: DecoderArch) -> Result<(LlamaConfig, bool), ModelError> {
        decoder_config(&v, Path::new("config.json"), arch)
    }

    #[test]
    fn tinyllama_config_reads_with_grouped_query_attention() {
        // TinyLlama-1.1B's config.json, as published
        let (cfg, tied) = read(
            json!({
                "architectures": ["LlamaForCausalLM"], "bos_token_id": 1, "eos_token_id": 2,
                "hidden_act": "silu", "hidden_size": 2048, "initializer_range": 0.02,
                "intermediate_size": 5632, "max_position_embeddings": 2048,
                "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 22,
                "num_key_value_heads": 4, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
                "rope_scaling": null, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
                "use_cache": true, "vocab_size": 32000
            }),
            DecoderArch::Llama,
        )
        .unwrap();
        assert!(!tied);
        assert_eq!(
            (
                cfg.n_layers,
                cfg.d_model,
                cfg.n_heads,
                cfg.n_kv_heads,
                cfg.head_dim
            ),
            (22, 2048, 32, 4, 64)
        );
        assert_eq!((cfg.ffn, cfg.vocab, cfg.context), (5632, 32000, 2048));
        assert_eq!(cfg.rope_scaling, RopeScaling::None);
        assert_eq!((cfg.rope_base, cfg.eps), (10000.0, 1e-5));
    }

    #[test]
    fn llama_3_2_config_reads_tied_with_llama3_scaling() {
        // Llama-3.2-1B's config.json, as published (fields EdgeBench reads)
        let (cfg, tied) = read(
            json!({
                "architectures": ["LlamaForCausalLM"], "attention_bias": false,
                "bos_token_id": 128000, "eos_token_id": 128001, "head_dim": 64,
                "hidden_act": "silu", "hidden_size": 2048, "intermediate_size": 8192,
                "max_position_embeddings": 131072, "mlp_bias": false, "num_attention_heads": 32,
                "num_hidden_layers": 16, "num_key_value_heads": 8, "rms_norm_eps": 1e-05,
                "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                    "original_max_position_embeddings": 8192, "rope_type": "llama3"},
                "rope_theta": 500000.0, "tie_word_embeddings": true, "vocab_size": 128256
            }),
            DecoderArch::Llama,
        )
        .unwrap();
        assert!(tied);
        assert_eq!(
            (cfg.n_kv_heads, cfg.head_dim, cfg.rope_base),
            (8, 64, 500000.0)
        );
        let inv = cfg.inv_freq();
        // short wavelengths kept, long ones divided by 32, the band between interpolated
        assert_eq!(inv[0], 1.0);
        let plain = 500000f64.powf(-2.0 * 31.0 / 64.0);
        assert!((inv[31] - plain / 32.0).abs() < 1e-18, "{}", inv[31]);
        let mid = inv
            .iter()
            .enumerate()
            .filter(|(i, f)| {
                let p = 500000f64.powf(-2.0 * *i as f64 / 64.0);
                **f < p && **f > p / 32.0
            })
            .count();
        assert!(mid > 0, "no interpolated frequency: {inv:?}");
    }

    #[test]
    fn unsupported_settings_name_their_field() {
        let base = json!({"hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 1,
            "intermediate_size": 64, "vocab_size": 10});
        let with = |k: &str, v: Value| {
            let mut c = base.clone();
            c[k] = v;
            read(c, DecoderArch::Llama).unwrap_err().to_string()
        };
        assert!(
            with("rope_scaling", json!({"rope_type": "yarn", "factor": 4.0}))
                .contains("`rope_scaling.rope_type` = \"yarn\"")
        );
        assert!(with(
            "rope_scaling",
            json!({"rope_type": "llama3", "factor": 8.0})
        )
        .contains("`rope_scaling.low_freq_factor` is missing"));
        assert!(with("num_key_value_heads", json!(3)).contains("`num_key_value_heads` = 3"));
        assert!(with("hidden_act", json!("gelu")).contains("`hidden_act`"));
        assert!(with("attention_bias", json!(true)).contains("`attention_bias` = true"));
        assert!(with("hidden_size", json!("big")).contains("`hidden_size` = \"big\""));
        assert!(with("use_sliding_window", json!(true)).contains("`use_sliding_window`"));
        let mut c = base.clone();
        c.as_object_mut().unwrap().remove("vocab_size");
        let e = read(c, DecoderArch::Qwen2).unwrap_err().to_string();
        assert!(
            e.contains("config.json") && e.contains("`vocab_size` is missing"),
            "{e}"
        );
    }

    #[test]
    fn quantize_flag_values_round_trip() {
        for q in Quantize::ALL {
            assert_eq!(Quantize::parse(q.name()), Some(q));
        }
        assert_eq!(Quantize::parse("q5_0"), None);
    }
}
