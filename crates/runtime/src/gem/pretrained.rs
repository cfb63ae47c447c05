//! `gem build --from-pretrained`: GEM's architecture assembled from public
//! checkpoints. The router's encoder is a BERT checkpoint (all-MiniLM-L6-v2)
//! run causally; the 8 domain pathways and the general pathway are the layers
//! of a Llama GGUF (SmolLM2-135M), each at its configured precision (a layer
//! stored at that precision is kept bit for bit, others are re-quantized from
//! their dequantized f32 with asymmetric blocks). Pathways at the same
//! precision share one copy of each matrix in the graph. This is GEM's
//! architecture on public weights, not the paper's trained GEM.
//!
//! The two checkpoints tokenize differently (BPE vs WordPiece); the graph
//! takes both token sequences and an alignment (see [`crate::model::align`]).

use super::build::{BertRouter, Variant, WeightSource};
use super::config::GemConfig;
use super::BuildReport;
use crate::model::bert::BertConfig;
use crate::model::gguf::{GgmlType, Gguf};
use crate::model::llama::{self, LlamaConfig};
use crate::model::manifest::ModelManifest;
use crate::model::{Capabilities, ModelError};
use crate::ops::quant::QuantMatrix;
use safetensors::SafeTensors;
use std::path::{Path, PathBuf};

/// The bundled config for SmolLM2-135M pathways and an all-MiniLM-L6-v2 router.
pub const CONFIG: &str = include_str!("../../../../fixtures/gem/gem-smollm2-minilm.toml");

/// File name of the router's tokenizer inside an assembled model directory.
pub const ROUTER_TOKENIZER: &str = "router-tokenizer.json";

/// Weights of an assembled GEM: a Llama GGUF for the pathways and a BERT
/// checkpoint for the router, checked against the config when opened.
pub struct Pretrained {
    gguf_path: PathBuf,
    gguf_bytes: memmap2::Mmap,
    gguf: Gguf,
    llama: LlamaConfig,
    bert_dir: PathBuf,
    st_bytes: memmap2::Mmap,
    bert: BertConfig,
    head: Option<(Vec<f32>, Vec<f32>)>,
    /// Layers of the checkpoint the pathways use (the first `pathways.layers`).
    pub layers_used: usize,
    /// Distinct parameters read from both checkpoints (pathways share them), plus `W_r`.
    pub parameters: u64,
}

fn bad(path: &Path, m: impl Into<String>) -> ModelError {
    ModelError::BadModelDir {
        path: path.to_path_buf(),
        message: m.into(),
    }
}

fn map(path: &Path) -> Result<memmap2::Mmap, ModelError> {
    let file = std::fs::File::open(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    // SAFETY: read-only mapping of a checkpoint we do not modify.
    unsafe { memmap2::Mmap::map(&file) }.map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The GGUF tensor behind a GEM weight name, and the heads to un-permute (Q/K).
fn gguf_name(name: &str, l: &LlamaConfig, tied: bool) -> Option<(String, Option<usize>)> {
    match name {
        "pathway.embed" => return Some(("token_embd.weight".into(), None)),
        "output.norm" => return Some(("output_norm.weight".into(), None)),
        "output.head" if tied => return Some(("token_embd.weight".into(), None)),
        "output.head" => return Some(("output.weight".into(), None)),
        _ => {}
    }
    // pathway.<name>.blk<l>.<matrix>
    let rest = name.strip_prefix("pathway.")?;
    let (_, rest) = rest.split_once(".blk")?;
    let (layer, matrix) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let unpermute = match matrix {
        "attn_q" => Some(l.n_heads),
        "attn_k" => Some(l.n_kv_heads),
        _ => None,
    };
    Some((format!("blk.{layer}.{matrix}.weight"), unpermute))
}

impl Pretrained {
    /// Opens both checkpoints and checks that they fit `cfg` (read from
    /// `cfg_path`): every mismatch names the config field and the checkpoint.
    pub fn open(
        cfg: &GemConfig,
        cfg_path: &Path,
        gguf_path: &Path,
        bert_dir: &Path,
    ) -> Result<Self, ModelError> {
        let gguf_bytes = map(gguf_path)?;
        let gguf = Gguf::parse(&gguf_bytes)
            .map_err(|e| bad(gguf_path, format!("not a valid GGUF file: {}", e.what)))?;
        let llama = LlamaConfig::from_gguf(&gguf, gguf_path)?;
        if llama.arch != llama::DecoderArch::Llama {
            return Err(bad(
                gguf_path,
                format!(
                    "`general.architecture` = `{}`: GEM's pathways come from a `llama` GGUF file",
                    llama.arch.gguf_name()
                ),
            ));
        }
        let cfg_json = bert_dir.join("config.json");
        let text = std::fs::read_to_string(&cfg_json).map_err(|source| ModelError::Io {
            path: cfg_json.clone(),
            source,
        })?;
        let bert: BertConfig = serde_json::from_str(&text)
            .map_err(|e| bad(&cfg_json, format!("not a BERT config: {e}")))?;
        let st_path = bert_dir.join("model.safetensors");
        let st_bytes = map(&st_path)?;
        let field = |f: &str, want: String, have: String, source: &Path| {
            bad(
                cfg_path,
                format!(
                    "field `{f}` is {want} but {} has {have}; set it to the checkpoint's value",
                    source.display()
                ),
            )
        };
        let p = &cfg.pathways;
        for (f, want, have) in [
            ("pathways.hidden", p.hidden, llama.d_model),
            ("pathways.heads", p.heads, llama.n_heads),
            ("pathways.kv_heads", p.kv_heads(), llama.n_kv_heads),
            ("pathways.ffn", p.ffn, llama.ffn),
        ] {
            if want != have {
                return Err(field(f, want.to_string(), have.to_string(), gguf_path));
            }
        }
        if p.layers > llama.n_layers {
            return Err(field(
                "pathways.layers",
                p.layers.to_string(),
                format!("only {} layers", llama.n_layers),
                gguf_path,
            ));
        }
        if (p.rope_base - llama.rope_base).abs() > 1e-6 * llama.rope_base.abs() {
            return Err(field(
                "pathways.rope_base",
                p.rope_base.to_string(),
                llama.rope_base.to_string(),
                gguf_path,
            ));
        }
        let r = &cfg.router;
        for (f, want, have) in [
            ("router.hidden", r.hidden, bert.hidden_size),
            ("router.heads", r.heads, bert.num_attention_heads),
            ("router.ffn", r.ffn, bert.intermediate_size),
            ("router.layers", r.layers, bert.num_hidden_layers),
        ] {
            if want != have {
                return Err(field(f, want.to_string(), have.to_string(), &cfg_json));
            }
        }
        if bert.hidden_act.as_deref().is_some_and(|a| a != "gelu") {
            return Err(bad(
                &cfg_json,
                format!(
                    "hidden_act {:?} is not supported (only exact `gelu`)",
                    bert.hidden_act
                ),
            ));
        }
        let src = Pretrained {
            gguf_path: gguf_path.to_path_buf(),
            gguf_bytes,
            gguf,
            llama,
            bert_dir: bert_dir.to_path_buf(),
            st_bytes,
            bert,
            head: None,
            layers_used: p.layers,
            parameters: 0,
        };
        let mut src = src;
        src.check_tensors(cfg)?;
        Ok(src)
    }

    fn tied(&self) -> bool {
        self.gguf.tensor("output.weight").is_err()
    }

    /// Checks that every tensor the graph reads exists, has its shape and
    /// lies inside the file, so that building cannot fail half-way.
    fn check_tensors(&mut self, cfg: &GemConfig) -> Result<(), ModelError> {
        let l = &self.llama;
        let hd = l.d_model / l.n_heads;
        let mut want: Vec<(String, Vec<u64>)> = vec![
            (
                "token_embd.weight".into(),
                vec![l.d_model as u64, l.vocab as u64],
            ),
            ("output_norm.weight".into(), vec![l.d_model as u64]),
        ];
        if !self.tied() {
            want.push((
                "output.weight".into(),
                vec![l.d_model as u64, l.vocab as u64],
            ));
        }
        let (d, f, kv) = (l.d_model as u64, l.ffn as u64, (l.n_kv_heads * hd) as u64);
        for b in 0..cfg.pathways.layers {
            for (m, dims) in [
                ("attn_norm", vec![d]),
                ("ffn_norm", vec![d]),
                ("attn_q", vec![d, d]),
                ("attn_k", vec![d, kv]),
                ("attn_v", vec![d, kv]),
                ("attn_output", vec![d, d]),
                ("ffn_gate", vec![d, f]),
                ("ffn_up", vec![d, f]),
                ("ffn_down", vec![f, d]),
            ] {
                want.push((format!("blk.{b}.{m}.weight"), dims));
            }
        }
        let mut params = 0u64;
        for (name, dims) in want {
            params += dims.iter().product::<u64>();
            let t = self
                .gguf
                .tensor(&name)
                .map_err(|e| bad(&self.gguf_path, e.what))?;
            if t.dims != dims {
                return Err(bad(
                    &self.gguf_path,
                    format!("tensor `{name}` has dims {:?}, expected {dims:?}", t.dims),
                ));
            }
            if !t.ggml_type.can_dequantize() {
                return Err(bad(
                    &self.gguf_path,
                    format!(
                        "tensor `{name}` has unsupported type {}",
                        t.ggml_type.name()
                    ),
                ));
            }
            self.gguf
                .tensor_bytes(&self.gguf_bytes, t)
                .map_err(|e| bad(&self.gguf_path, e.what))?;
        }
        let st_path = self.bert_dir.join("model.safetensors");
        let st = SafeTensors::deserialize(&self.st_bytes)
            .map_err(|e| bad(&st_path, format!("not a valid safetensors file: {e}")))?;
        for (name, shape) in bert_tensors(&self.bert) {
            params += shape.iter().product::<usize>() as u64;
            let t = st
                .tensor(&name)
                .or_else(|_| st.tensor(&format!("bert.{name}")))
                .map_err(|_| bad(&st_path, format!("tensor `{name}` is missing")))?;
            if t.shape() != shape.as_slice() || t.dtype() != safetensors::Dtype::F32 {
                return Err(bad(
                    &st_path,
                    format!(
                        "tensor `{name}` is {:?} {:?}, expected F32 {shape:?}",
                        t.dtype(),
                        t.shape()
                    ),
                ));
            }
        }
        self.parameters =
            params + (cfg.router.hidden as u64 + 1) * super::config::DOMAINS.len() as u64;
        Ok(())
    }

    /// Uses a fitted domain head.
    pub fn set_router_head(&mut self, head: (Vec<f32>, Vec<f32>)) {
        self.head = Some(head);
    }

    /// The Llama configuration of the pathway checkpoint.
    pub fn llama(&self) -> &LlamaConfig {
        &self.llama
    }

    fn gguf_f32(&self, name: &str) -> Vec<f32> {
        let t = self.gguf.tensor(name).expect("checked when opened");
        self.gguf
            .dequantize(&self.gguf_bytes, t)
            .expect("checked when opened")
    }

    /// Human-readable origin of the weights, for manifests and reports.
    pub fn origin(&self) -> String {
        let hash = |p: &Path| edgebench_util::hash::sha256_file(p).unwrap_or_else(|_| "?".into());
        format!(
            "public checkpoints: pathways from {} (sha256 {}, first {} of {} layers), router encoder from {} (model.safetensors sha256 {})",
            self.gguf_path.display(),
            hash(&self.gguf_path),
            self.layers_used,
            self.llama.n_layers,
            self.bert_dir.display(),
            hash(&self.bert_dir.join("model.safetensors")),
        )
    }
}

/// Every tensor of a BERT encoder with its shape.
fn bert_tensors(c: &BertConfig) -> Vec<(String, Vec<usize>)> {
    let (h, f) = (c.hidden_size, c.intermediate_size);
    let mut v = vec![
        (
            "embeddings.word_embeddings.weight".to_string(),
            vec![c.vocab_size, h],
        ),
        (
            "embeddings.position_embeddings.weight".into(),
            vec![c.max_position_embeddings, h],
        ),
        ("embeddings.token_type_embeddings.weight".into(), vec![2, h]),
        ("embeddings.LayerNorm.weight".into(), vec![h]),
        ("embeddings.LayerNorm.bias".into(), vec![h]),
    ];
    for l in 0..c.num_hidden_layers {
        let p = |s: &str| format!("encoder.layer.{l}.{s}");
        for m in [
            "attention.self.query",
            "attention.self.key",
            "attention.self.value",
            "attention.output.dense",
        ] {
            v.push((p(&format!("{m}.weight")), vec![h, h]));
            v.push((p(&format!("{m}.bias")), vec![h]));
        }
        for n in ["attention.output.LayerNorm", "output.LayerNorm"] {
            v.push((p(&format!("{n}.weight")), vec![h]));
            v.push((p(&format!("{n}.bias")), vec![h]));
        }
        v.push((p("intermediate.dense.weight"), vec![f, h]));
        v.push((p("intermediate.dense.bias"), vec![f]));
        v.push((p("output.dense.weight"), vec![h, f]));
        v.push((p("output.dense.bias"), vec![h]));
    }
    v
}

impl WeightSource for Pretrained {
    fn matrix(&mut self, name: &str, rows: usize, cols: usize) -> Vec<f32> {
        if name == "router.w_r" {
            // no fitted head yet: uniform probabilities, every token general
            return vec![0.0; rows * cols];
        }
        let (t, unpermute) = gguf_name(name, &self.llama, self.tied())
            .unwrap_or_else(|| panic!("no checkpoint tensor for `{name}`"));
        let w = self.gguf_f32(&t);
        assert_eq!(w.len(), rows * cols, "`{t}` for `{name}`");
        match unpermute {
            Some(nh) => llama::unpermute_rows(&w, rows, cols, nh),
            None => w,
        }
    }

    fn vector(&mut self, name: &str, len: usize) -> Vec<f32> {
        let t = match name {
            "output.norm" => "output_norm.weight".to_string(),
            _ => {
                let (_, rest) = name
                    .split_once(".blk")
                    .unwrap_or_else(|| panic!("no checkpoint vector for `{name}`"));
                let (layer, norm) = rest.split_once('.').expect("blk<l>.<norm>");
                format!("blk.{layer}.{norm}.weight")
            }
        };
        let v = self.gguf_f32(&t);
        assert_eq!(v.len(), len, "`{t}` for `{name}`");
        v
    }

    fn quantized(
        &mut self,
        name: &str,
        rows: usize,
        cols: usize,
        bits: usize,
        block_size: usize,
    ) -> Option<QuantMatrix> {
        let (t, unpermute) = gguf_name(name, &self.llama, self.tied())?;
        let info = self.gguf.tensor(&t).ok()?;
        let stored_bits = match info.ggml_type {
            GgmlType::Q4_0 | GgmlType::Q4_1 => 4,
            GgmlType::Q8_0 => 8,
            _ => return None,
        };
        if stored_bits != bits || block_size != 32 {
            return None;
        }
        let q = llama::gguf_to_quant(&self.gguf, &self.gguf_bytes, info).ok()??;
        if (q.format.n, q.format.k) != (rows, cols) {
            return None;
        }
        Some(match unpermute {
            Some(nh) => llama::unpermute_quant(&q, nh),
            None => q,
        })
    }

    fn asymmetric(&self) -> bool {
        true
    }

    fn shared_key(&self, name: &str) -> Option<String> {
        gguf_name(name, &self.llama, self.tied()).map(|(t, _)| t)
    }

    fn router_head(&self) -> Option<(Vec<f32>, Vec<f32>)> {
        self.head.clone()
    }

    fn bert_router(&mut self) -> Option<&mut dyn BertRouter> {
        Some(self)
    }
}

impl BertRouter for Pretrained {
    fn config(&self) -> &BertConfig {
        &self.bert
    }

    fn tensor(&mut self, name: &str, shape: &[usize]) -> Vec<f32> {
        let st = SafeTensors::deserialize(&self.st_bytes).expect("checked when opened");
        let t = st
            .tensor(name)
            .or_else(|_| st.tensor(&format!("bert.{name}")))
            .expect("checked when opened");
        assert_eq!(t.shape(), shape, "`{name}`");
        t.data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }
}

/// Writes an assembled GEM variant to `dir`: `model.onnx`, the pathway
/// tokenizer (rebuilt from the GGUF) as `tokenizer.json`, the router's
/// tokenizer as `router-tokenizer.json`, `gem.toml` and the manifest.
pub fn materialize(
    cfg: &GemConfig,
    variant: Variant,
    dir: &Path,
    src: &mut Pretrained,
    origin: &str,
) -> Result<BuildReport, ModelError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ModelError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let tok = llama::tokenizer_from_gguf(&src.gguf, &src.gguf_path)?;
    let vocab = src.llama.vocab;
    let built = super::build::build(cfg, vocab, variant, src);
    let graph = dir.join("model.onnx");
    std::fs::write(&graph, &built.onnx).map_err(io(&graph))?;
    tok.save(dir.join("tokenizer.json"), false)
        .map_err(|e| bad(&dir.join("tokenizer.json"), e.to_string()))?;
    let router_tok = (variant != Variant::NoRouter).then(|| ROUTER_TOKENIZER.to_string());
    if router_tok.is_some() {
        let from = src.bert_dir.join("tokenizer.json");
        std::fs::copy(&from, dir.join(ROUTER_TOKENIZER)).map_err(io(&from))?;
    }
    let cfg_path = dir.join("gem.toml");
    let text = toml::to_string_pretty(cfg).map_err(|e| ModelError::Runtime(e.to_string()))?;
    std::fs::write(&cfg_path, text).map_err(io(&cfg_path))?;
    let id = |k: &str| src.gguf.get_u64(k).ok().map(|v| v as u32);
    let p = &cfg.pathways;
    let manifest = ModelManifest {
        name: format!("{}{}", cfg.name, variant.suffix()),
        architecture: "decoder".into(),
        graph: "model.onnx".into(),
        tokenizer: "tokenizer.json".into(),
        router_tokenizer: router_tok,
        router_max_tokens: Some(src.bert.max_position_embeddings),
        capabilities: Capabilities::all(),
        // the router reads at most its position table; later tokens keep the last route
        max_context: cfg.max_context.min(src.llama.context),
        vocab_size: vocab,
        bos_token_id: id("tokenizer.ggml.bos_token_id"),
        eos_token_id: id("tokenizer.ggml.eos_token_id"),
        add_bos: Some(false),
        parameters: Some(src.parameters),
        kv_cache_layers: None,
        matmul: if variant == Variant::NoQuant {
            "f32 (no quantization)".into()
        } else {
            format!(
                "EbQuantLinear: router {}-bit, domain pathways {}-bit, general {}-bit, head {}-bit",
                cfg.router.bits, p.domain_bits, p.general_bits, cfg.output.bits
            )
        },
        provenance: format!(
            "GEM's architecture on {origin}, built by `edgebench gem build --from-pretrained`, variant {variant:?}: NOT the paper's trained GEM, whose weights are not public"
        ),
    };
    manifest.save(dir)?;
    Ok(BuildReport {
        variant: format!("{variant:?}"),
        dir: dir.to_path_buf(),
        parameters: src.parameters,
        weight_bytes: built.weight_bytes,
    })
}

/// Writes the router alone (for fitting `W_r`) to `path`.
pub fn write_router_features(
    cfg: &GemConfig,
    src: &mut Pretrained,
    path: &Path,
) -> Result<(), ModelError> {
    let bytes = super::build::build_router_features(cfg, src).expect("a BERT router");
    std::fs::write(path, bytes).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })
}
