//! BERT encoders (sentence-transformers style) from `config.json` +
//! `model.safetensors` + `tokenizer.json`, written as ONNX and run by tract:
//! mean or CLS pooling (as the folder's sentence-transformers pooling module
//! says; mean without one), then L2 normalisation.

use super::bad;
use super::manifest::ModelManifest;
use super::tokenizer::Tok;
use super::{Capabilities, Generation, LogLikelihood, Model, ModelError, ModelInfo, Rolling};
use crate::onnx::layers::{self, i64s};
use crate::onnx::{encode, Attr, Dim, Elem, GraphBuilder};
use crate::options::RuntimeOptions;
use safetensors::SafeTensors;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use tract_onnx::prelude::*;

/// The fields of a Hugging Face BERT `config.json` we use.
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub hidden_act: Option<String>,
    #[serde(default)]
    pub model_type: Option<String>,
}

fn default_eps() -> f64 {
    1e-12
}

/// A tensor's expected shape: each dim with the config key it comes from.
pub type ShapeSpec = Vec<(usize, &'static str)>;

impl BertConfig {
    /// Every tensor the encoder reads (names without the optional `bert.` prefix), with its shape.
    pub fn tensor_shapes(&self) -> Vec<(String, ShapeSpec)> {
        let mut v = self.embedding_shapes();
        for l in 0..self.num_hidden_layers {
            v.extend(self.layer_shapes(l));
        }
        v
    }

    fn embedding_shapes(&self) -> Vec<(String, ShapeSpec)> {
        let h = (self.hidden_size, "hidden_size");
        vec![
            (
                "embeddings.word_embeddings.weight".into(),
                vec![(self.vocab_size, "vocab_size"), h],
            ),
            (
                "embeddings.position_embeddings.weight".into(),
                vec![(self.max_position_embeddings, "max_position_embeddings"), h],
            ),
            (
                "embeddings.token_type_embeddings.weight".into(),
                vec![(2, "type_vocab_size"), h],
            ),
            ("embeddings.LayerNorm.weight".into(), vec![h]),
            ("embeddings.LayerNorm.bias".into(), vec![h]),
        ]
    }

    fn layer_shapes(&self, l: usize) -> Vec<(String, ShapeSpec)> {
        let h = (self.hidden_size, "hidden_size");
        let f = (self.intermediate_size, "intermediate_size");
        let p = |s: &str| format!("encoder.layer.{l}.{s}");
        let mut v: Vec<(String, ShapeSpec)> = Vec::new();
        for m in [
            "attention.self.query",
            "attention.self.key",
            "attention.self.value",
            "attention.output.dense",
        ] {
            v.push((p(&format!("{m}.weight")), vec![h, h]));
            v.push((p(&format!("{m}.bias")), vec![h]));
        }
        v.push((p("intermediate.dense.weight"), vec![f, h]));
        v.push((p("intermediate.dense.bias"), vec![f]));
        v.push((p("output.dense.weight"), vec![h, f]));
        v.push((p("output.dense.bias"), vec![h]));
        for n in ["attention.output.LayerNorm", "output.LayerNorm"] {
            v.push((p(&format!("{n}.weight")), vec![h]));
            v.push((p(&format!("{n}.bias")), vec![h]));
        }
        v
    }

    /// Checks the config's numbers, then every tensor of the checkpoint against them (present,
    /// F32, of the shape the config implies; no layer beyond `num_hidden_layers`), before
    /// anything is allocated from the config. Errors name the key, its value and the tensor shape
    /// it contradicts.
    pub fn check(&self, st: &SafeTensors) -> Result<(), String> {
        for (k, v, min) in [
            ("hidden_size", self.hidden_size, 1),
            ("num_hidden_layers", self.num_hidden_layers, 1),
            ("num_attention_heads", self.num_attention_heads, 1),
            ("intermediate_size", self.intermediate_size, 1),
            ("max_position_embeddings", self.max_position_embeddings, 2),
            ("vocab_size", self.vocab_size, 1),
        ] {
            if v < min {
                return Err(format!("`{k}` = {v}: must be at least {min}"));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(format!(
                "`hidden_size` = {} must be a multiple of `num_attention_heads` = {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return Err(format!(
                "`layer_norm_eps` = {}: must be a finite number above 0",
                self.layer_norm_eps
            ));
        }
        // the layers the checkpoint has, before listing the ones the config asks for
        if let Some(n) = super::checkpoint::tensor_beyond(
            st.names(),
            "bert.",
            "encoder.layer.",
            self.num_hidden_layers,
        ) {
            return Err(format!(
                "`num_hidden_layers` = {} but the checkpoint has tensor `{n}` beyond it",
                self.num_hidden_layers
            ));
        }
        // layer by layer: a huge `num_hidden_layers` stops at the first missing tensor
        let layers = (0..self.num_hidden_layers).flat_map(|l| self.layer_shapes(l));
        for (name, want) in self.embedding_shapes().into_iter().chain(layers) {
            let t = st
                .tensor(&name)
                .or_else(|_| st.tensor(&format!("bert.{name}")))
                .map_err(|_| {
                    let why = match name.starts_with("encoder.layer.") {
                        true => format!(" (`num_hidden_layers` = {})", self.num_hidden_layers),
                        false => String::new(),
                    };
                    format!("tensor `{name}` is missing{why}")
                })?;
            let shape = t.shape();
            if shape.len() != want.len() {
                return Err(format!(
                    "tensor `{name}` has shape {shape:?}, expected {} dims ({})",
                    want.len(),
                    want.iter()
                        .map(|(_, k)| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if let Some((i, (v, k))) = want.iter().enumerate().find(|(i, (v, _))| shape[*i] != *v) {
                return Err(format!(
                    "`{k}` = {v} contradicts tensor `{name}` of shape {shape:?}: dims[{i}] would \
                     be {v}"
                ));
            }
            if t.dtype() != safetensors::Dtype::F32 {
                return Err(format!(
                    "tensor `{name}` is {:?}; only F32 is supported",
                    t.dtype()
                ));
            }
        }
        Ok(())
    }
}

/// Source of f32 tensors by name, checked against the expected shape.
pub type Tensors<'a> = dyn FnMut(&str, &[usize]) -> Result<Vec<f32>, ModelError> + 'a;

fn init(
    g: &mut GraphBuilder,
    tensor: &mut Tensors<'_>,
    prefix: &str,
    name: &str,
    shape: &[usize],
) -> Result<String, ModelError> {
    let data = tensor(name, shape)?;
    let dims: Vec<i64> = shape.iter().map(|&x| x as i64).collect();
    Ok(g.init_f32(&format!("{prefix}{name}"), &dims, &data))
}

/// `x · Wᵀ + b` for the dense layer `name` (`[out, in]` weight), in f32 or,
/// with `bits`, as an `EbQuantLinear` (asymmetric blocks of 32).
fn dense(
    g: &mut GraphBuilder,
    tensor: &mut Tensors<'_>,
    x: &str,
    (prefix, name): (&str, &str),
    (out, inp): (usize, usize),
    bits: Option<usize>,
) -> Result<String, ModelError> {
    let w = tensor(&format!("{name}.weight"), &[out, inp])?;
    let y = match bits {
        Some(bits) => {
            let f = crate::ops::quant::QuantFormat {
                bits,
                block_size: 32,
                k: inp,
                n: out,
            };
            let q = crate::ops::quant::QuantMatrix::quantize(&w, f, true)
                .map_err(|e| ModelError::Runtime(format!("dense layer `{name}`: {e}")))?;
            crate::ops::quant::write_node(g, &format!("{prefix}{name}"), x, &q)
        }
        None => layers::linear_f32(g, &format!("{prefix}{name}.weight"), x, &w, (out, inp)),
    };
    let b = tensor(&format!("{name}.bias"), &[out])?;
    let b = g.init_f32(&format!("{prefix}{name}.bias"), &[out as i64], &b);
    Ok(g.op("Add", &[&y, &b], &[]))
}

/// Where [`write_encoder`] reads and writes inside a larger graph.
pub struct EncoderIo<'a> {
    /// Token ids `[batch, seq]` (i64).
    pub ids: &'a str,
    /// Additive attention mask broadcastable to `[batch, heads, seq, seq]`
    /// (0 where attention is allowed, a large negative value elsewhere).
    pub add_mask: &'a str,
    /// Prefix of every initializer name written.
    pub prefix: &'a str,
    /// Precision of the dense layers (`None`: f32).
    pub bits: Option<usize>,
    /// Position ids `[seq]` (i64; default `0 .. seq`).
    pub positions: Option<&'a str>,
    /// A key/value cache, one entry per layer: attention then runs over the
    /// cached tokens followed by `ids`, and `add_mask` must cover them all.
    pub cache: Option<&'a [LayerCache]>,
}

/// One encoder layer's cached keys and values (`[batch, heads, past, head_dim]`)
/// and the names to give the extended ones.
#[derive(Debug, Clone)]
pub struct LayerCache {
    pub past_key: String,
    pub past_value: String,
    pub present_key: String,
    pub present_value: String,
}

/// Writes BERT's embeddings and encoder layers; returns the last hidden
/// states `[batch, seq, hidden]` (token type 0 everywhere).
pub fn write_encoder(
    g: &mut GraphBuilder,
    cfg: &BertConfig,
    tensor: &mut Tensors<'_>,
    io: &EncoderIo<'_>,
) -> Result<String, ModelError> {
    let (d, h) = (cfg.hidden_size as i64, cfg.num_attention_heads as i64);
    let hd = d / h;
    let pre = io.prefix;
    let c = |n: &str| format!("{pre}{n}");
    let s1 = g.init_i64(&c("c_s1"), &[], &[1]);
    let s0 = g.init_i64(&c("c_s0"), &[], &[0]);
    let shape_heads = i64s(g, &c("c_sh"), &[0, 0, h, hd]);
    let shape_model = i64s(g, &c("c_sm"), &[0, 0, d]);
    let scale = g.init_f32(&c("c_scale"), &[], &[1.0 / (hd as f32).sqrt()]);
    let one = g.init_f32(&c("c_one"), &[], &[1.0]);
    let half = g.init_f32(&c("c_half"), &[], &[0.5]);
    let rsqrt2 = g.init_f32(&c("c_rsqrt2"), &[], &[std::f32::consts::FRAC_1_SQRT_2]);
    let h_us = cfg.hidden_size;
    let eps = Attr::Float(cfg.layer_norm_eps as f32);
    let ids = io.ids;
    // embeddings (token type 0 everywhere, as for single sentences)
    let we = init(
        g,
        tensor,
        pre,
        "embeddings.word_embeddings.weight",
        &[cfg.vocab_size, h_us],
    )?;
    let pe = init(
        g,
        tensor,
        pre,
        "embeddings.position_embeddings.weight",
        &[cfg.max_position_embeddings, h_us],
    )?;
    let te = init(
        g,
        tensor,
        pre,
        "embeddings.token_type_embeddings.weight",
        &[2, h_us],
    )?;
    let ln_w = init(g, tensor, pre, "embeddings.LayerNorm.weight", &[h_us])?;
    let ln_b = init(g, tensor, pre, "embeddings.LayerNorm.bias", &[h_us])?;
    let pos = match io.positions {
        Some(p) => p.to_string(),
        None => layers::positions(g, ids, &s0, &s1),
    };
    let x = layers::gather_rows(g, &we, ids);
    let p = layers::gather_rows(g, &pe, &pos);
    let t = layers::gather_rows(g, &te, &s0);
    let x = g.op("Add", &[&x, &p], &[]);
    let x = g.op("Add", &[&x, &t], &[]);
    let mut x = g.op(
        "LayerNormalization",
        &[&x, &ln_w, &ln_b],
        &[("axis", Attr::Int(-1)), ("epsilon", eps.clone())],
    );
    for l in 0..cfg.num_hidden_layers {
        let p = |s: &str| format!("encoder.layer.{l}.{s}");
        let heads = |g: &mut GraphBuilder, y: &str| layers::split_heads(g, y, &shape_heads);
        let sq = (h_us, h_us);
        let q = dense(
            g,
            tensor,
            &x,
            (pre, &p("attention.self.query")),
            sq,
            io.bits,
        )?;
        let k = dense(g, tensor, &x, (pre, &p("attention.self.key")), sq, io.bits)?;
        let v = dense(
            g,
            tensor,
            &x,
            (pre, &p("attention.self.value")),
            sq,
            io.bits,
        )?;
        let (q, mut k, mut v) = (heads(g, &q), heads(g, &k), heads(g, &v));
        if let Some(c) = io.cache.map(|c| &c[l]) {
            let cat = |g: &mut GraphBuilder, past: &str, new: &str, out: &str| {
                g.node_in_domain(
                    "",
                    "Concat",
                    &[past, new],
                    &[out],
                    &[("axis", Attr::Int(2))],
                );
                out.to_string()
            };
            k = cat(g, &c.past_key, &k, &c.present_key);
            v = cat(g, &c.past_value, &v, &c.present_value);
        }
        let sc = layers::scaled_scores(g, &q, &k, 4, &scale);
        let pr = layers::masked_softmax(g, &sc, io.add_mask);
        let o = g.op("MatMul", &[&pr, &v], &[]);
        let o = layers::merge_heads(g, &o, &shape_model);
        let o = dense(
            g,
            tensor,
            &o,
            (pre, &p("attention.output.dense")),
            sq,
            io.bits,
        )?;
        let r = g.op("Add", &[&x, &o], &[]);
        let w = init(
            g,
            tensor,
            pre,
            &p("attention.output.LayerNorm.weight"),
            &[h_us],
        )?;
        let b = init(
            g,
            tensor,
            pre,
            &p("attention.output.LayerNorm.bias"),
            &[h_us],
        )?;
        x = g.op(
            "LayerNormalization",
            &[&r, &w, &b],
            &[("axis", Attr::Int(-1)), ("epsilon", eps.clone())],
        );
        let f = dense(
            g,
            tensor,
            &x,
            (pre, &p("intermediate.dense")),
            (cfg.intermediate_size, h_us),
            io.bits,
        )?;
        // exact GELU: (x (1 + erf(x / sqrt 2))) 0.5, in the order tract's
        // `detect_gelu_exact` fuses into one vectorised op
        let e = g.op("Mul", &[&f, &rsqrt2], &[]);
        let e = g.op("Erf", &[&e], &[]);
        let e = g.op("Add", &[&e, &one], &[]);
        let f = g.op("Mul", &[&f, &e], &[]);
        let f = g.op("Mul", &[&f, &half], &[]);
        let f = dense(
            g,
            tensor,
            &f,
            (pre, &p("output.dense")),
            (h_us, cfg.intermediate_size),
            io.bits,
        )?;
        let r = g.op("Add", &[&x, &f], &[]);
        let w = init(g, tensor, pre, &p("output.LayerNorm.weight"), &[h_us])?;
        let b = init(g, tensor, pre, &p("output.LayerNorm.bias"), &[h_us])?;
        x = g.op(
            "LayerNormalization",
            &[&r, &w, &b],
            &[("axis", Attr::Int(-1)), ("epsilon", eps.clone())],
        );
    }
    Ok(x)
}

/// Builds the encoder graph from named f32 tensors, pooled as `pooling` says.
pub fn build_graph(
    cfg: &BertConfig,
    tensor: &mut Tensors<'_>,
    pooling: Pooling,
) -> Result<Vec<u8>, ModelError> {
    let d = cfg.hidden_size as i64;
    let mut g = GraphBuilder::new("bert");
    let ids = g.input(
        "input_ids",
        Elem::I64,
        &[Dim::from("batch"), Dim::from("seq")],
    );
    let mask = g.input(
        "attention_mask",
        Elem::I64,
        &[Dim::from("batch"), Dim::from("seq")],
    );
    let (maskf, add) = encoder_masks(&mut g, &mask);
    let io = EncoderIo {
        ids: &ids,
        add_mask: &add,
        prefix: "",
        bits: None,
        positions: None,
        cache: None,
    };
    let x = write_encoder(&mut g, cfg, tensor, &io)?;
    write_sentence_outputs(&mut g, &x, &maskf, pooling, d);
    let model = g.finish(
        "BERT sentence encoder imported by EdgeBench",
        &[
            ("edgebench.architecture", "bert".into()),
            ("edgebench.pooling", pooling.as_str().into()),
        ],
    );
    Ok(encode(&model))
}

/// The attention mask `[batch, seq]` (i64) as f32, and as the additive mask
/// `[batch, 1, 1, seq]` of the encoder layers (0 where allowed, -1e4 where
/// padded).
pub fn encoder_masks(g: &mut GraphBuilder, mask: &str) -> (String, String) {
    let ax12 = i64s(g, "c_ax12", &[1, 2]);
    let one = g.init_f32("c_pool_one", &[], &[1.0]);
    let big = g.init_f32("c_big", &[], &[-1e4]);
    let maskf = g.op("Cast", &[mask], &[("to", Attr::Int(1))]);
    let inv = g.op("Sub", &[&one, &maskf], &[]);
    let add = g.op("Mul", &[&inv, &big], &[]);
    let add = g.op("Unsqueeze", &[&add, &ax12], &[]);
    (maskf, add)
}

/// How an encoder turns its token states into one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Mean over the tokens the attention mask keeps.
    Mean,
    /// The first token's (`[CLS]`) state.
    Cls,
}

impl Pooling {
    /// `mean` or `cls`.
    pub fn as_str(self) -> &'static str {
        match self {
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
        }
    }
}

/// The graph outputs of a sentence encoder, from its last hidden states `x`
/// `[batch, seq, d]` and the f32 attention mask `maskf` `[batch, seq]`:
/// `sentence_embedding` `[batch, d]` (pooled, then L2-normalised; the output
/// [`TractEncoder`] reads) and `last_hidden_state` `[batch, seq, d]`.
pub fn write_sentence_outputs(
    g: &mut GraphBuilder,
    x: &str,
    maskf: &str,
    pooling: Pooling,
    d: i64,
) {
    let ax1 = i64s(g, "c_ax1", &[1]);
    let ax_last = i64s(g, "c_axl", &[-1]);
    let tiny = g.init_f32("c_tiny", &[], &[1e-9]);
    let pooled = match pooling {
        Pooling::Mean => {
            let m3 = g.op("Unsqueeze", &[maskf, &ax_last], &[]);
            let xm = g.op("Mul", &[x, &m3], &[]);
            let sum = g.op("ReduceSum", &[&xm, &ax1], &[("keepdims", Attr::Int(0))]);
            let cnt = g.op("ReduceSum", &[&m3, &ax1], &[("keepdims", Attr::Int(0))]);
            let cnt = g.op("Max", &[&cnt, &tiny], &[]);
            g.op("Div", &[&sum, &cnt], &[])
        }
        Pooling::Cls => {
            let first = g.init_i64("c_first", &[], &[0]);
            g.op("Gather", &[x, &first], &[("axis", Attr::Int(1))])
        }
    };
    let sq = g.op("Mul", &[&pooled, &pooled], &[]);
    let ss = g.op("ReduceSum", &[&sq, &ax_last], &[("keepdims", Attr::Int(1))]);
    let nrm = g.op("Sqrt", &[&ss], &[]);
    let nrm = g.op("Max", &[&nrm, &tiny], &[]);
    g.op("Div", &[&pooled, &nrm], &[]);
    g.name_last_output("sentence_embedding");
    g.op("Identity", &[x], &[]);
    g.name_last_output("last_hidden_state");
    g.output(
        "sentence_embedding",
        Elem::F32,
        &[Dim::from("batch"), Dim::Fixed(d)],
    );
    g.output(
        "last_hidden_state",
        Elem::F32,
        &[Dim::from("batch"), Dim::from("seq"), Dim::Fixed(d)],
    );
}

/// The pooling a checkpoint folder asks for: its sentence-transformers
/// pooling module (the `Pooling` entry of `modules.json`, else
/// `1_Pooling/config.json`), in either file format (`pooling_mode` or the
/// `pooling_mode_*_tokens` flags); mean pooling when it has none. Modes
/// other than mean and CLS, several modes at once, and modules.json modules
/// other than the transformer, pooling and normalisation are refused,
/// naming the file and field.
pub fn read_pooling(dir: &Path) -> Result<Pooling, ModelError> {
    let read_json = |p: &Path| -> Result<serde_json::Value, ModelError> {
        let text = std::fs::read_to_string(p).map_err(|source| ModelError::Io {
            path: p.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|e| bad(p, format!("not valid JSON: {e}")))
    };
    let modules_path = dir.join("modules.json");
    let mut pool_dir = dir.join("1_Pooling");
    if modules_path.is_file() {
        let modules = read_json(&modules_path)?;
        let list = modules
            .as_array()
            .ok_or_else(|| bad(&modules_path, "not a list of modules"))?;
        for (i, m) in list.iter().enumerate() {
            let kind = m["type"].as_str().ok_or_else(|| {
                bad(
                    &modules_path,
                    format!("module {i}: `type` is missing or not a string"),
                )
            })?;
            let last = kind.rsplit('.').next().unwrap_or(kind);
            match last {
                "Transformer" | "Normalize" => {}
                "Pooling" => {
                    let sub = m["path"].as_str().ok_or_else(|| {
                        bad(
                            &modules_path,
                            format!("module {i}: `path` is missing or not a string"),
                        )
                    })?;
                    pool_dir = dir.join(sub);
                }
                _ => {
                    return Err(bad(
                        &modules_path,
                        format!(
                            "module {i}: `type` = {kind:?} is not supported (only Transformer, \
                             Pooling and Normalize)"
                        ),
                    ))
                }
            }
        }
    }
    let cfg_path = pool_dir.join("config.json");
    if !cfg_path.is_file() {
        return Ok(Pooling::Mean);
    }
    let cfg = read_json(&cfg_path)?;
    let mode = |m: &str| match m {
        "mean" => Ok(Pooling::Mean),
        "cls" => Ok(Pooling::Cls),
        other => Err(bad(
            &cfg_path,
            format!("`pooling_mode` = {other:?} is not supported (only \"mean\" and \"cls\")"),
        )),
    };
    if let Some(m) = cfg.get("pooling_mode") {
        let m = m
            .as_str()
            .ok_or_else(|| bad(&cfg_path, "`pooling_mode` is not a string"))?;
        return mode(m);
    }
    let flags = [
        ("pooling_mode_mean_tokens", Some(Pooling::Mean)),
        ("pooling_mode_cls_token", Some(Pooling::Cls)),
        ("pooling_mode_max_tokens", None),
        ("pooling_mode_mean_sqrt_len_tokens", None),
        ("pooling_mode_weightedmean_tokens", None),
        ("pooling_mode_lasttoken", None),
    ];
    let on: Vec<_> = flags
        .iter()
        .filter(|(k, _)| cfg.get(*k).and_then(|v| v.as_bool()) == Some(true))
        .collect();
    match on.as_slice() {
        [(_, Some(p))] => Ok(*p),
        [(k, None)] => Err(bad(
            &cfg_path,
            format!("`{k}` is true: only mean and CLS pooling are supported"),
        )),
        [] => Err(bad(
            &cfg_path,
            "no pooling mode: neither `pooling_mode` nor a true `pooling_mode_*` flag",
        )),
        many => Err(bad(
            &cfg_path,
            format!(
                "{} pooling modes at once ({}): only one of mean or CLS is supported",
                many.len(),
                many.iter()
                    .map(|(k, _)| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// Imports a BERT checkpoint directory (config.json, model.safetensors, tokenizer.json) into `out`.
pub fn import_bert(dir: &Path, out: &Path) -> Result<ModelManifest, ModelError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| ModelError::Io { path: p, source }
    };
    let cfg_path = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(io(&cfg_path))?;
    let cfg: BertConfig = serde_json::from_str(&text)
        .map_err(|e| bad(&cfg_path, format!("not a BERT config: {e}")))?;
    if cfg.model_type.as_deref().is_some_and(|t| t != "bert") {
        return Err(bad(
            &cfg_path,
            format!("model_type {:?} is not `bert`", cfg.model_type),
        ));
    }
    if cfg.hidden_act.as_deref().is_some_and(|a| a != "gelu") {
        return Err(bad(
            &cfg_path,
            format!(
                "hidden_act {:?} is not supported (only exact `gelu`)",
                cfg.hidden_act
            ),
        ));
    }
    let st_path = dir.join("model.safetensors");
    let file = std::fs::File::open(&st_path).map_err(io(&st_path))?;
    // SAFETY: read-only mapping of a file we do not modify.
    let bytes = unsafe { memmap2::Mmap::map(&file) }.map_err(io(&st_path))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(&st_path, format!("not a valid safetensors file: {e}")))?;
    cfg.check(&st).map_err(|e| {
        bad(
            &cfg_path,
            format!("does not fit {}: {e}", st_path.display()),
        )
    })?;
    let tok_src = dir.join("tokenizer.json");
    let tok = Tok::load(&tok_src)?;
    if tok.vocab_size() != cfg.vocab_size {
        return Err(bad(
            &tok_src,
            format!(
                "tokenizer has {} tokens, the model {}: wrong tokenizer",
                tok.vocab_size(),
                cfg.vocab_size
            ),
        ));
    }
    let mut tensor = |name: &str, shape: &[usize]| -> Result<Vec<f32>, ModelError> {
        let t = st
            .tensor(name)
            .or_else(|_| st.tensor(&format!("bert.{name}")))
            .map_err(|_| bad(&st_path, format!("tensor `{name}` is missing")))?;
        if t.shape() != shape {
            return Err(bad(
                &st_path,
                format!(
                    "tensor `{name}` has shape {:?}, the config implies {shape:?}",
                    t.shape()
                ),
            ));
        }
        if t.dtype() != safetensors::Dtype::F32 {
            return Err(bad(
                &st_path,
                format!("tensor `{name}` is {:?}; only F32 is supported", t.dtype()),
            ));
        }
        Ok(t.data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    };
    let pooling = read_pooling(dir)?;
    let graph = build_graph(&cfg, &mut tensor, pooling)?;
    std::fs::create_dir_all(out).map_err(io(out))?;
    std::fs::write(out.join("model.onnx"), graph).map_err(io(&out.join("model.onnx")))?;
    std::fs::copy(&tok_src, out.join("tokenizer.json")).map_err(io(&tok_src))?;
    let params: u64 = st
        .tensors()
        .iter()
        .filter(|(n, _)| !n.contains("position_ids"))
        .map(|(_, t)| t.shape().iter().product::<usize>() as u64)
        .sum();
    let hash =
        edgebench_util::hash::sha256_file(&st_path).map_err(|e| bad(&st_path, e.to_string()))?;
    let manifest = ModelManifest::encoder(
        dir.file_name()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "bert".into()),
        cfg.max_position_embeddings.min(256),
        cfg.vocab_size,
        params,
        format!(
            "imported from {} (model.safetensors sha256 {hash}) by edgebench import bert; \
             {} pooling, L2-normalised",
            dir.display(),
            pooling.as_str()
        ),
    );
    manifest.save(out)?;
    Ok(manifest)
}

/// A sentence encoder run by tract; serves embeddings only.
pub struct TractEncoder {
    plan: Arc<TypedRunnableModel>,
    runner: super::Runner,
    tok: Tok,
    info: ModelInfo,
    max_len: usize,
    graph_path: PathBuf,
    /// The inputs and output of an optimum export (`None`: EdgeBench's own names).
    io: Option<super::optimum::EncoderIo>,
}

impl TractEncoder {
    /// Loads an `architecture = "encoder"` model directory, to run as
    /// `options` say.
    pub fn load(
        dir: &Path,
        manifest: &ModelManifest,
        source: &str,
        options: &RuntimeOptions,
    ) -> Result<Self, ModelError> {
        let (graph, tok) = super::load_graph_and_tokenizer(dir, manifest, options)?;
        let note = graph.rewrites_note();
        let io = super::optimum::EncoderIo::of(graph.plan.model(), dir, &graph.path)?;
        let super::LoadedGraph {
            plan,
            sha256,
            path: graph_path,
            runner,
            ..
        } = graph;
        let tok = tok?;
        Ok(TractEncoder {
            plan,
            runner,
            tok,
            info: ModelInfo {
                name: manifest.name.clone(),
                source: source.to_string(),
                sha256,
                capabilities: Capabilities {
                    embed: true,
                    ..Default::default()
                },
                max_context: manifest.max_context,
                matmul: format!(
                    "{}; {note}; f32 kernels: {}; {} thread(s)",
                    manifest.matmul,
                    options.isa().name(),
                    options.threads
                ),
                parameters: manifest.parameters,
                provenance: manifest.provenance.clone(),
                runtime: Some(*options),
            },
            max_len: manifest.max_context,
            graph_path,
            io,
        })
    }

    /// Per-node times (see [`super::profile`]) of `passes` embeddings of
    /// `texts`, summed over the passes.
    pub fn profile_embed(
        &mut self,
        texts: &[String],
        passes: usize,
    ) -> Result<Vec<super::profile::NodeTime>, ModelError> {
        self.runner.profiler().set(true);
        let r = (0..passes).try_for_each(|_| self.embed(texts).map(drop));
        self.runner.profiler().set(false);
        r?;
        Ok(self.runner.profiler().take())
    }

    fn unsupported(&self, what: &str) -> ModelError {
        ModelError::Runtime(format!(
            "{} is an encoder: it cannot do {what}",
            self.info.name
        ))
    }
}

/// Largest batch sent to the encoder at once.
const BATCH: usize = 32;

impl TractEncoder {
    /// Token ids of `text` with the special tokens, cut to the model's
    /// context (keeping the final `[SEP]`).
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        let mut ids = self.tok.encode_with_specials(text)?;
        if ids.len() > self.max_len {
            let last = *ids.last().expect("non-empty");
            ids.truncate(self.max_len - 1);
            ids.push(last); // keep [SEP]
        }
        Ok(ids)
    }

    /// Embeddings of one batch of token ids, padded to its longest sequence
    /// (the model alone: no tokenisation).
    pub fn embed_ids(&self, encoded: &[&[u32]]) -> Result<Vec<Vec<f32>>, ModelError> {
        let seq = encoded.iter().map(|e| e.len()).max().unwrap_or(1).max(1);
        let b = encoded.len();
        let mut ids = vec![0i64; b * seq];
        let mut mask = vec![0i64; b * seq];
        for (i, e) in encoded.iter().enumerate() {
            for (j, &t) in e.iter().enumerate() {
                ids[i * seq + j] = t as i64;
                mask[i * seq + j] = 1;
            }
        }
        let terr = |e: anyhow::Error| ModelError::Tract {
            path: self.graph_path.clone(),
            source: e,
        };
        if let Some(io) = &self.io {
            use super::optimum::EncoderInput;
            let inputs = io
                .inputs
                .iter()
                .map(|k| {
                    let data = match k {
                        EncoderInput::Ids => &ids,
                        EncoderInput::Mask => &mask,
                        EncoderInput::TokenTypes => &vec![0i64; b * seq],
                    };
                    Ok(Tensor::from_shape(&[b, seq], data)?.into_tvalue())
                })
                .collect::<TractResult<TVec<TValue>>>()
                .map_err(terr)?;
            let out = self.runner.run(&self.plan, inputs).map_err(terr)?;
            let v = out[io.output].to_plain_array_view::<f32>().map_err(terr)?;
            let want: &[usize] = match io.pooling {
                super::optimum::Pooling::Pooled => &[b],
                _ => &[b, seq],
            };
            if v.ndim() != want.len() + 1 || &v.shape()[..want.len()] != want {
                return Err(ModelError::Runtime(format!(
                    "{}: output {} has shape {:?}, expected {want:?} then the embedding size",
                    self.graph_path.display(),
                    io.output,
                    v.shape()
                )));
            }
            return Ok(super::optimum::pool(&v, &mask, seq, io.pooling));
        }
        let ids = Tensor::from_shape(&[b, seq], &ids).map_err(terr)?;
        let mask = Tensor::from_shape(&[b, seq], &mask).map_err(terr)?;
        let out = self
            .runner
            .run(&self.plan, tvec!(ids.into_tvalue(), mask.into_tvalue()))
            .map_err(terr)?;
        let v = out[0].to_plain_array_view::<f32>().map_err(terr)?;
        let d = v.shape()[1];
        let flat: Vec<f32> = v.iter().copied().collect();
        Ok(flat.chunks(d).map(|c| c.to_vec()).collect())
    }
}

impl Model for TractEncoder {
    fn info(&self) -> &ModelInfo {
        &self.info
    }
    fn loglikelihood_requests(
        &mut self,
        _: &[super::LoglikelihoodRequest<'_>],
    ) -> Result<Vec<Vec<LogLikelihood>>, ModelError> {
        Err(self.unsupported("loglikelihood"))
    }
    fn generate(&mut self, _: &str, _: &[String], _: usize) -> Result<Generation, ModelError> {
        Err(self.unsupported("generation"))
    }
    fn rolling_loglikelihood(&mut self, _: &str) -> Result<Rolling, ModelError> {
        Err(self.unsupported("rolling loglikelihood"))
    }
    fn take_model_time(&mut self) -> Option<std::time::Duration> {
        Some(self.runner.take_busy())
    }

    /// Embeds texts in length-sorted batches, each padded to its longest
    /// member (never to a fixed length): padding does not change an
    /// embedding, only the cost.
    fn embed(&mut self, texts: &[String]) -> Result<Vec<Vec<f32>>, ModelError> {
        let encoded: Vec<Vec<u32>> = texts
            .iter()
            .map(|t| self.tokenize(t))
            .collect::<Result<_, ModelError>>()?;
        let mut order: Vec<usize> = (0..encoded.len()).collect();
        order.sort_by_key(|&i| encoded[i].len());
        let mut out = vec![Vec::new(); encoded.len()];
        for chunk in order.chunks(BATCH) {
            let batch: Vec<&[u32]> = chunk.iter().map(|&i| encoded[i].as_slice()).collect();
            for (&i, e) in chunk.iter().zip(self.embed_ids(&batch)?) {
                out[i] = e;
            }
        }
        Ok(out)
    }

    fn perf_query(
        &mut self,
        prompt: &str,
        prompt_tokens: usize,
        _gen_tokens: usize,
    ) -> Result<super::QueryTiming, ModelError> {
        let mut ids = self.tok.encode_with_specials(prompt)?;
        let keep = prompt_tokens.clamp(2, self.max_len);
        if ids.len() > keep {
            let last = *ids.last().expect("non-empty");
            ids.truncate(keep - 1);
            ids.push(last);
        }
        let t = std::time::Instant::now();
        self.embed_ids(&[ids.as_slice()])?;
        Ok(super::QueryTiming {
            ttft_ms: t.elapsed().as_secs_f64() * 1e3,
            token_gaps_ms: vec![],
            prompt_tokens: ids.len(),
            model_only: true,
        })
    }

    fn count_tokens(&self, text: &str) -> Result<usize, ModelError> {
        Ok(self.tok.encode_with_specials(text)?.len())
    }
}
