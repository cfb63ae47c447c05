//! MobileBERT encoders (Hugging Face `MobileBertModel` / `MobileBertForMaskedLM`
//! checkpoints: `config.json`, `model.safetensors`, `tokenizer.json`) written
//! as ONNX sentence encoders that [`super::bert::TractEncoder`] runs: trigram
//! embeddings projected to the hidden size, bottlenecked layers with stacked
//! feed-forward networks, NoNorm or LayerNorm, then the BERT importer's
//! pooling (mean or CLS, as the folder says) and L2 normalisation.

use super::bad;
use super::bert::{self, Pooling};
use super::manifest::ModelManifest;
use super::tokenizer::Tok;
use super::ModelError;
use crate::onnx::layers::{self, i64s};
use crate::onnx::{encode, Attr, Dim, Elem, GraphBuilder};
use safetensors::SafeTensors;
use serde::Deserialize;
use std::path::Path;

/// The fields of a Hugging Face MobileBERT `config.json` the encoder uses.
/// The sizes are required; the switches default as `MobileBertConfig` does.
#[derive(Debug, Clone, Deserialize)]
pub struct MobileBertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub embedding_size: usize,
    /// Required when `use_bottleneck` is on.
    #[serde(default)]
    pub intra_bottleneck_size: Option<usize>,
    /// Derived by `MobileBertConfig`; checked against the others when present.
    #[serde(default)]
    pub true_hidden_size: Option<usize>,
    #[serde(default = "two")]
    pub type_vocab_size: usize,
    #[serde(default = "yes")]
    pub trigram_input: bool,
    #[serde(default = "yes")]
    pub use_bottleneck: bool,
    #[serde(default = "yes")]
    pub key_query_shared_bottleneck: bool,
    #[serde(default)]
    pub use_bottleneck_attention: bool,
    #[serde(default = "four")]
    pub num_feedforward_networks: usize,
    #[serde(default = "no_norm")]
    pub normalization_type: String,
    #[serde(default = "relu")]
    pub hidden_act: String,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub model_type: Option<String>,
}

fn two() -> usize {
    2
}
fn four() -> usize {
    4
}
fn yes() -> bool {
    true
}
fn no_norm() -> String {
    "no_norm".into()
}
fn relu() -> String {
    "relu".into()
}
fn default_eps() -> f64 {
    1e-12
}

/// PyTorch's `LayerNorm` default epsilon, which MobileBERT's embedding norm
/// and each layer's `output.LayerNorm` use whatever `layer_norm_eps` says.
const TORCH_LN_EPS: f32 = 1e-5;

/// A tensor's expected shape: each dim with the config key it comes from.
pub type Spec = [(usize, &'static str)];

impl MobileBertConfig {
    /// Width of the attention and feed-forward blocks: `intra_bottleneck_size`
    /// with the bottleneck, else `hidden_size`.
    pub fn true_hidden(&self) -> usize {
        match self.use_bottleneck {
            true => self.intra_bottleneck_size.unwrap_or(0),
            false => self.hidden_size,
        }
    }

    fn true_key(&self) -> &'static str {
        match self.use_bottleneck {
            true => "intra_bottleneck_size",
            false => "hidden_size",
        }
    }

    /// Checks the config's numbers and switches; the message names the key.
    pub fn check(&self) -> Result<(), String> {
        if let Some(t) = self.model_type.as_deref().filter(|t| *t != "mobilebert") {
            return Err(format!("`model_type` = {t:?} is not \"mobilebert\""));
        }
        if self.use_bottleneck && self.intra_bottleneck_size.is_none() {
            return Err("`intra_bottleneck_size` is missing (needed with `use_bottleneck`)".into());
        }
        for (k, v, min) in [
            ("vocab_size", self.vocab_size, 1),
            ("hidden_size", self.hidden_size, 1),
            ("num_hidden_layers", self.num_hidden_layers, 1),
            ("num_attention_heads", self.num_attention_heads, 1),
            ("intermediate_size", self.intermediate_size, 1),
            ("max_position_embeddings", self.max_position_embeddings, 2),
            ("embedding_size", self.embedding_size, 1),
            ("type_vocab_size", self.type_vocab_size, 1),
            ("num_feedforward_networks", self.num_feedforward_networks, 1),
            (self.true_key(), self.true_hidden(), 1),
        ] {
            if v < min {
                return Err(format!("`{k}` = {v}: must be at least {min}"));
            }
        }
        let t = self.true_hidden();
        if let Some(d) = self.true_hidden_size.filter(|&d| d != t) {
            return Err(format!(
                "`true_hidden_size` = {d} contradicts `{}` = {t} (use_bottleneck = {})",
                self.true_key(),
                self.use_bottleneck
            ));
        }
        if !t.is_multiple_of(self.num_attention_heads) {
            return Err(format!(
                "`{}` = {t} must be a multiple of `num_attention_heads` = {}",
                self.true_key(),
                self.num_attention_heads
            ));
        }
        // without bottlenecked or shared key/query inputs, the attention
        // reads the hidden states with `intra_bottleneck_size`-wide weights
        if self.use_bottleneck
            && !self.use_bottleneck_attention
            && !self.key_query_shared_bottleneck
            && t != self.hidden_size
        {
            return Err(format!(
                "`key_query_shared_bottleneck` and `use_bottleneck_attention` are both false, \
                 so `intra_bottleneck_size` = {t} must equal `hidden_size` = {}",
                self.hidden_size
            ));
        }
        if !matches!(self.normalization_type.as_str(), "no_norm" | "layer_norm") {
            return Err(format!(
                "`normalization_type` = {:?} is not supported (only \"no_norm\" and \
                 \"layer_norm\")",
                self.normalization_type
            ));
        }
        if !matches!(self.hidden_act.as_str(), "relu" | "gelu") {
            return Err(format!(
                "`hidden_act` = {:?} is not supported (only \"relu\" and exact \"gelu\")",
                self.hidden_act
            ));
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return Err(format!(
                "`layer_norm_eps` = {}: must be a finite number above 0",
                self.layer_norm_eps
            ));
        }
        Ok(())
    }
}

/// Source of f32 tensors by name (without the `mobilebert.` prefix),
/// checked against the expected shape.
pub type Tensors<'a> = dyn FnMut(&str, &Spec) -> Result<Vec<f32>, ModelError> + 'a;

/// Shared constants of the graph.
struct Consts {
    one: String,
    half: String,
    rsqrt2: String,
    scale: String,
    shape_heads: String,
    shape_model: String,
}

struct Writer<'c, 't, 'a> {
    g: GraphBuilder,
    cfg: &'c MobileBertConfig,
    tensor: &'t mut Tensors<'a>,
    c: Consts,
}

impl Writer<'_, '_, '_> {
    fn init(&mut self, name: &str, spec: &Spec) -> Result<String, ModelError> {
        let data = (self.tensor)(name, spec)?;
        let dims: Vec<i64> = spec.iter().map(|&(x, _)| x as i64).collect();
        Ok(self.g.init_f32(name, &dims, &data))
    }

    /// `x · Wᵀ + b` for the linear layer `name`.
    fn linear(
        &mut self,
        x: &str,
        name: &str,
        out: (usize, &'static str),
        inp: (usize, &'static str),
    ) -> Result<String, ModelError> {
        let w = (self.tensor)(&format!("{name}.weight"), &[out, inp])?;
        let y = layers::linear_f32(
            &mut self.g,
            &format!("{name}.weight"),
            x,
            &w,
            (out.0, inp.0),
        );
        let b = self.init(&format!("{name}.bias"), &[out])?;
        Ok(self.g.op("Add", &[&y, &b], &[]))
    }

    /// The norm `name` of width `d`: NoNorm (`x * weight + bias`) or
    /// LayerNorm with epsilon `eps`.
    fn norm(
        &mut self,
        x: &str,
        name: &str,
        d: (usize, &'static str),
        eps: f32,
    ) -> Result<String, ModelError> {
        let w = self.init(&format!("{name}.weight"), &[d])?;
        let b = self.init(&format!("{name}.bias"), &[d])?;
        Ok(match self.cfg.normalization_type.as_str() {
            "layer_norm" => self.g.op(
                "LayerNormalization",
                &[x, &w, &b],
                &[("axis", Attr::Int(-1)), ("epsilon", Attr::Float(eps))],
            ),
            _ => {
                let y = self.g.op("Mul", &[x, &w], &[]);
                self.g.op("Add", &[&y, &b], &[])
            }
        })
    }

    fn act(&mut self, x: &str) -> String {
        match self.cfg.hidden_act.as_str() {
            "gelu" => {
                // exact GELU, in the order tract fuses
                let c = &self.c;
                let (rsqrt2, one, half) = (c.rsqrt2.clone(), c.one.clone(), c.half.clone());
                let e = self.g.op("Mul", &[x, &rsqrt2], &[]);
                let e = self.g.op("Erf", &[&e], &[]);
                let e = self.g.op("Add", &[&e, &one], &[]);
                let y = self.g.op("Mul", &[x, &e], &[]);
                self.g.op("Mul", &[&y, &half], &[])
            }
            _ => self.g.op("Relu", &[x], &[]),
        }
    }

    /// Word embeddings (zeroed where the mask pads, so a padded batch sees
    /// what each sentence alone sees), the trigram concatenation
    /// `[next, token, previous]`, the projection to `hidden_size`, position
    /// and token-type (0) embeddings, and the embedding norm.
    fn embeddings(&mut self, ids: &str, maskf: &str) -> Result<String, ModelError> {
        let cfg = self.cfg;
        let h = (cfg.hidden_size, "hidden_size");
        let e = (cfg.embedding_size, "embedding_size");
        let we = self.init(
            "embeddings.word_embeddings.weight",
            &[(cfg.vocab_size, "vocab_size"), e],
        )?;
        let pe = self.init(
            "embeddings.position_embeddings.weight",
            &[(cfg.max_position_embeddings, "max_position_embeddings"), h],
        )?;
        let te = self.init(
            "embeddings.token_type_embeddings.weight",
            &[(cfg.type_vocab_size, "type_vocab_size"), h],
        )?;
        let g = &mut self.g;
        let s0 = g.init_i64("c_s0", &[], &[0]);
        let s1 = g.init_i64("c_s1", &[], &[1]);
        let mut x = layers::gather_rows(g, &we, ids);
        if cfg.trigram_input {
            let ax_last = i64s(g, "c_axl_emb", &[-1]);
            let ax1 = i64s(g, "c_ax1_emb", &[1]);
            let start0 = i64s(g, "c_start0", &[0]);
            let start1 = i64s(g, "c_start1", &[1]);
            let end_all = i64s(g, "c_end_all", &[i64::MAX]);
            let end_last = i64s(g, "c_end_last", &[-1]);
            let pad_end = i64s(g, "c_pad_end", &[0, 0, 0, 0, 1, 0]);
            let pad_begin = i64s(g, "c_pad_begin", &[0, 1, 0, 0, 0, 0]);
            let m3 = g.op("Unsqueeze", &[maskf, &ax_last], &[]);
            let xm = g.op("Mul", &[&x, &m3], &[]);
            let next = g.op("Slice", &[&xm, &start1, &end_all, &ax1], &[]);
            let next = g.op("Pad", &[&next, &pad_end], &[]);
            let prev = g.op("Slice", &[&xm, &start0, &end_last, &ax1], &[]);
            let prev = g.op("Pad", &[&prev, &pad_begin], &[]);
            x = g.op("Concat", &[&next, &xm, &prev], &[("axis", Attr::Int(2))]);
        }
        if cfg.trigram_input || cfg.embedding_size != cfg.hidden_size {
            let k = if cfg.trigram_input { 3 } else { 1 };
            let inp = match k {
                3 => (3 * cfg.embedding_size, "3 x embedding_size (trigram_input)"),
                _ => e,
            };
            x = self.linear(&x, "embeddings.embedding_transformation", h, inp)?;
        }
        let g = &mut self.g;
        let pos = layers::positions(g, ids, &s0, &s1);
        let p = layers::gather_rows(g, &pe, &pos);
        let t = layers::gather_rows(g, &te, &s0);
        let x = g.op("Add", &[&x, &p], &[]);
        let x = g.op("Add", &[&x, &t], &[]);
        self.norm(&x, "embeddings.LayerNorm", h, TORCH_LN_EPS)
    }

    /// One encoder layer, as `MobileBertLayer` computes it.
    fn layer(&mut self, l: usize, x: &str, add_mask: &str) -> Result<String, ModelError> {
        let cfg = self.cfg;
        let eps = cfg.layer_norm_eps as f32;
        let h = (cfg.hidden_size, "hidden_size");
        let t = (cfg.true_hidden(), cfg.true_key());
        let f = (cfg.intermediate_size, "intermediate_size");
        let p = |s: &str| format!("encoder.layer.{l}.{s}");
        // inputs of the query, key and value products and of the residual
        let (q_in, k_in, v_in, residual) = if cfg.use_bottleneck {
            let b = self.linear(x, &p("bottleneck.input.dense"), t, h)?;
            let b = self.norm(&b, &p("bottleneck.input.LayerNorm"), t, eps)?;
            if cfg.use_bottleneck_attention {
                (b.clone(), b.clone(), b.clone(), b)
            } else if cfg.key_query_shared_bottleneck {
                let s = self.linear(x, &p("bottleneck.attention.dense"), t, h)?;
                let s = self.norm(&s, &p("bottleneck.attention.LayerNorm"), t, eps)?;
                (s.clone(), s, x.to_string(), b)
            } else {
                (x.to_string(), x.to_string(), x.to_string(), b)
            }
        } else {
            (x.to_string(), x.to_string(), x.to_string(), x.to_string())
        };
        let v_width = match cfg.use_bottleneck_attention {
            true => t,
            false => h,
        };
        let q = self.linear(&q_in, &p("attention.self.query"), t, t)?;
        let k = self.linear(&k_in, &p("attention.self.key"), t, t)?;
        let v = self.linear(&v_in, &p("attention.self.value"), t, v_width)?;
        let g = &mut self.g;
        let c = &self.c;
        let q = layers::split_heads(g, &q, &c.shape_heads);
        let k = layers::split_heads(g, &k, &c.shape_heads);
        let v = layers::split_heads(g, &v, &c.shape_heads);
        let sc = layers::scaled_scores(g, &q, &k, 4, &c.scale);
        let pr = layers::masked_softmax(g, &sc, add_mask);
        let o = g.op("MatMul", &[&pr, &v], &[]);
        let o = layers::merge_heads(g, &o, &c.shape_model);
        let o = self.linear(&o, &p("attention.output.dense"), t, t)?;
        let r = self.g.op("Add", &[&o, &residual], &[]);
        let mut a = self.norm(&r, &p("attention.output.LayerNorm"), t, eps)?;
        for i in 0..cfg.num_feedforward_networks - 1 {
            let y = self.linear(&a, &p(&format!("ffn.{i}.intermediate.dense")), f, t)?;
            let y = self.act(&y);
            let y = self.linear(&y, &p(&format!("ffn.{i}.output.dense")), t, f)?;
            let r = self.g.op("Add", &[&y, &a], &[]);
            a = self.norm(&r, &p(&format!("ffn.{i}.output.LayerNorm")), t, eps)?;
        }
        let y = self.linear(&a, &p("intermediate.dense"), f, t)?;
        let y = self.act(&y);
        let y = self.linear(&y, &p("output.dense"), t, f)?;
        let r = self.g.op("Add", &[&y, &a], &[]);
        let y = self.norm(&r, &p("output.LayerNorm"), t, TORCH_LN_EPS)?;
        if !cfg.use_bottleneck {
            return Ok(y);
        }
        let y = self.linear(&y, &p("output.bottleneck.dense"), h, t)?;
        let r = self.g.op("Add", &[&y, x], &[]);
        self.norm(&r, &p("output.bottleneck.LayerNorm"), h, eps)
    }
}

/// Builds the encoder graph (inputs `input_ids`, `attention_mask`; outputs
/// `sentence_embedding`, `last_hidden_state`) from named f32 tensors.
pub fn build_graph(
    cfg: &MobileBertConfig,
    tensor: &mut Tensors<'_>,
    pooling: Pooling,
) -> Result<Vec<u8>, ModelError> {
    let t = cfg.true_hidden() as i64;
    let heads = cfg.num_attention_heads as i64;
    let hd = t / heads;
    let mut g = GraphBuilder::new("mobilebert");
    let batch_seq = [Dim::from("batch"), Dim::from("seq")];
    let ids = g.input("input_ids", Elem::I64, &batch_seq);
    let mask = g.input("attention_mask", Elem::I64, &batch_seq);
    let (maskf, add_mask) = bert::encoder_masks(&mut g, &mask);
    let c = Consts {
        one: g.init_f32("c_one", &[], &[1.0]),
        half: g.init_f32("c_half", &[], &[0.5]),
        rsqrt2: g.init_f32("c_rsqrt2", &[], &[std::f32::consts::FRAC_1_SQRT_2]),
        scale: g.init_f32("c_scale", &[], &[1.0 / (hd as f32).sqrt()]),
        shape_heads: i64s(&mut g, "c_sh", &[0, 0, heads, hd]),
        shape_model: i64s(&mut g, "c_sm", &[0, 0, t]),
    };
    let mut w = Writer { g, cfg, tensor, c };
    let mut x = w.embeddings(&ids, &maskf)?;
    for l in 0..cfg.num_hidden_layers {
        x = w.layer(l, &x, &add_mask)?;
    }
    let mut g = w.g;
    bert::write_sentence_outputs(&mut g, &x, &maskf, pooling, cfg.hidden_size as i64);
    let model = g.finish(
        "MobileBERT sentence encoder imported by EdgeBench",
        &[
            ("edgebench.architecture", "mobilebert".into()),
            ("edgebench.pooling", pooling.as_str().into()),
        ],
    );
    Ok(encode(&model))
}

/// The checkpoint's tensor `name`, bare or under the `mobilebert.` prefix of
/// `MobileBertForMaskedLM`.
fn find<'a>(st: &SafeTensors<'a>, name: &str) -> Option<safetensors::tensor::TensorView<'a>> {
    st.tensor(name)
        .or_else(|_| st.tensor(&format!("mobilebert.{name}")))
        .ok()
}

/// The name of an imported model: the checkpoint folder's, with `mobilebert-`
/// in front unless it says MobileBERT already (so a run with it is the
/// paper's MobileBERT row: see `edgebench_paper::runs::Role::infer`).
pub fn model_name(dir: &Path) -> String {
    let base = dir
        .file_name()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    if base.to_ascii_lowercase().contains("mobilebert") {
        base
    } else if base.is_empty() {
        "mobilebert".into()
    } else {
        format!("mobilebert-{base}")
    }
}

/// Imports a MobileBERT checkpoint directory (config.json, model.safetensors,
/// tokenizer.json; tensors with or without the `mobilebert.` prefix, heads
/// ignored) into the model directory `out`, written whole or not at all.
/// Bad input is a [`ModelError::BadModelDir`] naming the file and the field
/// or tensor.
pub fn import_mobilebert(dir: &Path, out: &Path) -> Result<ModelManifest, ModelError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| ModelError::Io { path: p, source }
    };
    let cfg_path = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(io(&cfg_path))?;
    let cfg: MobileBertConfig = serde_json::from_str(&text)
        .map_err(|e| bad(&cfg_path, format!("not a MobileBERT config: {e}")))?;
    cfg.check().map_err(|e| bad(&cfg_path, e))?;
    let st_path = dir.join("model.safetensors");
    let file = std::fs::File::open(&st_path).map_err(io(&st_path))?;
    // SAFETY: read-only mapping of a file we do not modify.
    let bytes = unsafe { memmap2::Mmap::map(&file) }.map_err(io(&st_path))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| bad(&st_path, format!("not a valid safetensors file: {e}")))?;
    // no encoder layer beyond the config's
    if let Some(n) = super::checkpoint::tensor_beyond(
        st.names(),
        "mobilebert.",
        "encoder.layer.",
        cfg.num_hidden_layers,
    ) {
        return Err(bad(
            &cfg_path,
            format!(
                "`num_hidden_layers` = {} but {} has tensor `{n}` beyond it",
                cfg.num_hidden_layers,
                st_path.display()
            ),
        ));
    }
    let tok_src = dir.join("tokenizer.json");
    let tok = Tok::load(&tok_src)?;
    if tok.vocab_size() != cfg.vocab_size {
        return Err(bad(
            &tok_src,
            format!(
                "tokenizer has {} tokens, the model (`vocab_size` in config.json) {}: wrong \
                 tokenizer",
                tok.vocab_size(),
                cfg.vocab_size
            ),
        ));
    }
    let pooling = bert::read_pooling(dir)?;
    let mut params = 0u64;
    let mut tensor = |name: &str, spec: &Spec| -> Result<Vec<f32>, ModelError> {
        let t = find(&st, name).ok_or_else(|| {
            let why = match name.starts_with("encoder.layer.") {
                true => format!(" (`num_hidden_layers` = {})", cfg.num_hidden_layers),
                false => String::new(),
            };
            bad(&st_path, format!("tensor `{name}` is missing{why}"))
        })?;
        let shape = t.shape();
        let want: Vec<usize> = spec.iter().map(|&(v, _)| v).collect();
        if shape != want.as_slice() {
            let keys = spec
                .iter()
                .map(|(v, k)| format!("`{k}` = {v}"))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(bad(
                &cfg_path,
                format!(
                    "tensor `{name}` of {} has shape {shape:?}, the config implies {want:?} \
                     ({keys})",
                    st_path.display()
                ),
            ));
        }
        if t.dtype() != safetensors::Dtype::F32 {
            return Err(bad(
                &st_path,
                format!("tensor `{name}` is {:?}; only F32 is supported", t.dtype()),
            ));
        }
        params += want.iter().product::<usize>() as u64;
        Ok(t.data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    };
    let graph = build_graph(&cfg, &mut tensor, pooling)?;
    let hash =
        edgebench_util::hash::sha256_file(&st_path).map_err(|e| bad(&st_path, e.to_string()))?;
    let manifest = ModelManifest::encoder(
        model_name(dir),
        cfg.max_position_embeddings.min(256),
        cfg.vocab_size,
        params,
        format!(
            "imported from {} (model.safetensors sha256 {hash}) by edgebench import mobilebert; \
             {} layers, {}, {} pooling, L2-normalised",
            dir.display(),
            cfg.num_hidden_layers,
            cfg.normalization_type,
            pooling.as_str()
        ),
    );
    manifest.check().map_err(|e| bad(&cfg_path, e))?;
    super::write_dir_atomically(out, |tmp| {
        let g = tmp.join("model.onnx");
        std::fs::write(&g, &graph).map_err(io(&g))?;
        std::fs::copy(&tok_src, tmp.join("tokenizer.json")).map_err(io(&tok_src))?;
        manifest.save(tmp)
    })?;
    Ok(manifest)
}
