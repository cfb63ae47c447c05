//! Llama-architecture import from GGUF: configuration, tokenizer and an ONNX
//! decoder graph with an explicit KV cache (`past_key_<i>` / `past_value_<i>`
//! inputs, `present_key_<i>` / `present_value_<i>` outputs), so the same file
//! runs in tract and in onnxruntime.
//!
//! GGUF stores Q and K rows in llama.cpp's permuted order; we undo the
//! permutation at import and use Hugging Face's `rotate_half` RoPE.

use super::gguf::{GgmlType, Gguf, GgufError, GgufValue, LinearBlocks, TensorInfo};
use super::manifest::ModelManifest;
use super::{Capabilities, ModelError};
use crate::onnx::layers::{self, i64s, HalfSplit};
use crate::onnx::{encode, Attr, Dim, Elem, GraphBuilder};
use crate::ops::quant::{pack_codes, QuantFormat, QuantMatrix};
use std::collections::HashMap;
use std::path::Path;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, Tokenizer};

/// Hyper-parameters of a Llama decoder.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    pub n_layers: usize,
    pub d_model: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub ffn: usize,
    pub rope_base: f64,
    pub eps: f64,
    pub vocab: usize,
    pub context: usize,
}

fn bad(path: &Path, m: impl Into<String>) -> ModelError {
    ModelError::BadModelDir {
        path: path.to_path_buf(),
        message: m.into(),
    }
}

impl LlamaConfig {
    /// Reads the `llama.*` metadata of a GGUF file, checked by [`LlamaConfig::read`].
    pub fn from_gguf(g: &Gguf, path: &Path) -> Result<Self, ModelError> {
        Self::read(g).map_err(|e| bad(path, e.what))
    }

    /// Reads the `llama.*` metadata and checks every hyper-parameter the importer uses against
    /// the tensors it describes, before anything is allocated from it: the embedding length,
    /// vocabulary (token count), head counts, head dim (RoPE and key/value lengths), feed-forward
    /// length and block count must give exactly the shapes of `token_embd.weight`, `output.weight`,
    /// `output_norm.weight` and every `blk.<i>.*` tensor, with no block beyond `block_count`.
    /// [`Gguf::parse`] has checked each tensor's bytes against the file size, so a configuration
    /// that passes describes no more weights than the file holds. Errors name the key, its value
    /// and the tensor shape it contradicts.
    pub fn read(g: &Gguf) -> Result<Self, GgufError> {
        let arch = g.get_str("general.architecture")?;
        if arch != "llama" {
            return Err(GgufError::new(format!(
                "unsupported architecture `{arch}`: EdgeBench imports `llama` GGUF files"
            )));
        }
        let optional = |k: &str| g.get(k).map(|_| g.get_u64(k)).transpose();
        let at_least = |k: &str, v: u64, min: u64| {
            if v < min {
                Err(GgufError::new(format!(
                    "`{k}` = {v}: must be at least {min}"
                )))
            } else {
                Ok(v)
            }
        };
        let positive = |k: &str, default: f64| -> Result<f64, GgufError> {
            match g.get(k) {
                None => Ok(default),
                Some(_) => match g.get_f64(k)? {
                    v if v.is_finite() && v > 0.0 => Ok(v),
                    v => Err(GgufError::new(format!(
                        "`{k}` = {v}: must be a finite number above 0"
                    ))),
                },
            }
        };
        let d_model = at_least(
            "llama.embedding_length",
            g.get_u64("llama.embedding_length")?,
            1,
        )?;
        let tokens = g.get("tokenizer.ggml.tokens").and_then(GgufValue::as_array);
        let vocab_size = optional("llama.vocab_size")?;
        let (vocab, vocab_key) = match (tokens, vocab_size) {
            (Some(t), Some(v)) if t.len() as u64 != v => {
                return Err(GgufError::new(format!(
                    "`llama.vocab_size` = {v} but `tokenizer.ggml.tokens` holds {} tokens",
                    t.len()
                )))
            }
            (Some(t), _) => (
                t.len() as u64,
                format!("`tokenizer.ggml.tokens` ({} tokens)", t.len()),
            ),
            (None, Some(v)) => (v, format!("`llama.vocab_size` = {v}")),
            (None, None) => {
                return Err(GgufError::new(
                    "neither `tokenizer.ggml.tokens` nor `llama.vocab_size` is present: the \
                     vocabulary size is unknown",
                ))
            }
        };
        at_least("vocabulary size", vocab, 1)?;
        for k in ["tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"] {
            if let Some(id) = optional(k)? {
                if id >= vocab {
                    return Err(GgufError::new(format!(
                        "`{k}` = {id} is outside the vocabulary of {vocab} tokens"
                    )));
                }
            }
        }

        // every tensor the graph reads, with its dims and the key each dim comes from
        let tensors: HashMap<&str, &TensorInfo> =
            g.tensors.iter().map(|t| (t.name.as_str(), t)).collect();
        let emb = format!("`llama.embedding_length` = {d_model}");
        let emb = emb.as_str();
        let check = |name: &str, want: &[(u64, &str)], missing: &str| {
            let t = tensors.get(name).ok_or_else(|| {
                GgufError::new(format!(
                    "tensor `{name}` not found in the GGUF file{missing}"
                ))
            })?;
            if t.dims.len() != want.len() {
                return Err(GgufError::new(format!(
                    "tensor `{name}` has shape {:?}, expected {} dims ({})",
                    t.dims,
                    want.len(),
                    want.iter().map(|(_, k)| *k).collect::<Vec<_>>().join(", ")
                )));
            }
            if let Some((i, (v, k))) = want.iter().enumerate().find(|(i, (v, _))| t.dims[*i] != *v)
            {
                return Err(GgufError::new(format!(
                    "{k} contradicts tensor `{name}` of shape {:?}: dims[{i}] would be {v}",
                    t.dims
                )));
            }
            if !t.ggml_type.can_dequantize() {
                return Err(GgufError::new(format!(
                    "tensor `{name}` has ggml type {} (id {}), which EdgeBench cannot read \
                     (supported: {})",
                    t.ggml_type.name(),
                    t.ggml_type.id(),
                    GgmlType::supported_names()
                )));
            }
            Ok(())
        };
        check(
            "token_embd.weight",
            &[(d_model, emb), (vocab, vocab_key.as_str())],
            "",
        )?;
        if tensors.contains_key("output.weight") {
            check(
                "output.weight",
                &[(d_model, emb), (vocab, vocab_key.as_str())],
                "",
            )?;
        }
        check("output_norm.weight", &[(d_model, emb)], "")?;
        let n_layers = at_least("llama.block_count", g.get_u64("llama.block_count")?, 1)?;
        let n_heads = at_least(
            "llama.attention.head_count",
            g.get_u64("llama.attention.head_count")?,
            1,
        )?;
        let n_kv_heads = at_least(
            "llama.attention.head_count_kv",
            optional("llama.attention.head_count_kv")?.unwrap_or(n_heads),
            1,
        )?;
        let ffn = at_least(
            "llama.feed_forward_length",
            g.get_u64("llama.feed_forward_length")?,
            1,
        )?;
        let context = at_least(
            "llama.context_length",
            optional("llama.context_length")?.unwrap_or(2048),
            2,
        )?;
        if d_model % n_heads != 0 || n_heads % n_kv_heads != 0 || (d_model / n_heads) % 2 != 0 {
            return Err(GgufError::new(format!(
                "inconsistent heads: `llama.embedding_length` = {d_model}, \
                 `llama.attention.head_count` = {n_heads}, `llama.attention.head_count_kv` = \
                 {n_kv_heads}: the embedding length must be an even number of values per head, \
                 and the head count a multiple of the key/value head count"
            )));
        }
        let head_dim = d_model / n_heads;
        for k in [
            "llama.rope.dimension_count",
            "llama.attention.key_length",
            "llama.attention.value_length",
        ] {
            if let Some(v) = optional(k)? {
                if v != head_dim {
                    return Err(GgufError::new(format!(
                        "`{k}` = {v} but `llama.embedding_length` / `llama.attention.head_count` \
                         = {d_model} / {n_heads} = {head_dim}: EdgeBench needs full-head RoPE and \
                         keys and values of the head dim"
                    )));
                }
            }
        }
        let ffn_key = format!("`llama.feed_forward_length` = {ffn}");
        let kv_key =
            format!("`llama.attention.head_count_kv` = {n_kv_heads} (x head dim {head_dim})");
        let (ffn_key, kv_key) = (ffn_key.as_str(), kv_key.as_str());
        let kv_rows = n_kv_heads * head_dim;
        let missing = format!(" (`llama.block_count` = {n_layers})");
        for l in 0..n_layers {
            let blk = |s: &str| format!("blk.{l}.{s}");
            for (name, want) in [
                ("attn_norm.weight", vec![(d_model, emb)]),
                ("attn_q.weight", vec![(d_model, emb), (d_model, emb)]),
                ("attn_k.weight", vec![(d_model, emb), (kv_rows, kv_key)]),
                ("attn_v.weight", vec![(d_model, emb), (kv_rows, kv_key)]),
                ("attn_output.weight", vec![(d_model, emb), (d_model, emb)]),
                ("ffn_norm.weight", vec![(d_model, emb)]),
                ("ffn_gate.weight", vec![(d_model, emb), (ffn, ffn_key)]),
                ("ffn_up.weight", vec![(d_model, emb), (ffn, ffn_key)]),
                ("ffn_down.weight", vec![(ffn, ffn_key), (d_model, emb)]),
            ] {
                check(&blk(name), &want, &missing)?;
            }
        }
        if let Some(t) = g.tensors.iter().find(|t| {
            t.name
                .strip_prefix("blk.")
                .and_then(|r| r.split('.').next())
                .and_then(|i| i.parse::<u64>().ok())
                .is_some_and(|i| i >= n_layers)
        }) {
            return Err(GgufError::new(format!(
                "`llama.block_count` = {n_layers} but the file has tensor `{}` beyond it",
                t.name
            )));
        }
        // each value now fits in the file (it sizes a tensor found in it), so in a usize
        let us = |v: u64| v as usize;
        Ok(LlamaConfig {
            n_layers: us(n_layers),
            d_model: us(d_model),
            n_heads: us(n_heads),
            n_kv_heads: us(n_kv_heads),
            head_dim: us(head_dim),
            ffn: us(ffn),
            rope_base: positive("llama.rope.freq_base", 10000.0)?,
            eps: positive("llama.attention.layer_norm_rms_epsilon", 1e-5)?,
            vocab: us(vocab),
            context: usize::try_from(context).unwrap_or(usize::MAX),
        })
    }
}

/// Rebuilds the byte-level BPE tokenizer stored in GGUF metadata (`gpt2` model).
pub fn tokenizer_from_gguf(g: &Gguf, path: &Path) -> Result<Tokenizer, ModelError> {
    let model = g
        .get_str("tokenizer.ggml.model")
        .map_err(|e| bad(path, e.what))?;
    if model != "gpt2" {
        return Err(bad(
            path,
            format!("tokenizer model `{model}` is not supported (only byte-level BPE `gpt2`)"),
        ));
    }
    let strings = |k: &str| -> Result<Vec<String>, ModelError> {
        g.get(k)
            .and_then(GgufValue::as_array)
            .ok_or_else(|| bad(path, format!("`{k}` is missing or not an array")))?
            .iter()
            .map(|v| {
                v.as_str()
                    .map(String::from)
                    .ok_or_else(|| bad(path, format!("`{k}` holds a non-string")))
            })
            .collect()
    };
    let tokens = strings("tokenizer.ggml.tokens")?;
    for k in ["tokenizer.ggml.token_type", "tokenizer.ggml.scores"] {
        if let Some(v) = g.get(k) {
            let n = v.as_array().map(<[GgufValue]>::len);
            if n != Some(tokens.len()) {
                return Err(bad(
                    path,
                    format!(
                        "`{k}` is {} but `tokenizer.ggml.tokens` holds {} tokens: one entry per \
                         token is needed",
                        n.map_or(format!("a {}", v.type_name()), |n| format!("{n} entries")),
                        tokens.len()
                    ),
                ));
            }
        }
    }
    let merges: Vec<(String, String)> = strings("tokenizer.ggml.merges")?
        .into_iter()
        .map(|m| {
            let (a, b) = m
                .split_once(' ')
                .ok_or_else(|| bad(path, format!("merge `{m}` has no space")))?;
            Ok((a.to_string(), b.to_string()))
        })
        .collect::<Result<_, ModelError>>()?;
    let types: Vec<i64> = g
        .get("tokenizer.ggml.token_type")
        .and_then(GgufValue::as_array)
        .map(|a| a.iter().map(|v| v.as_f64().unwrap_or(1.0) as i64).collect())
        .unwrap_or_default();
    let vocab: tokenizers::models::bpe::Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| bad(path, format!("cannot build BPE: {e}")))?;
    let mut tok = Tokenizer::new(bpe);
    let pre = g.get_str("tokenizer.ggml.pre").unwrap_or("default");
    let byte_level = PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true));
    let pre_tok = if pre == "smollm" || pre == "llama3" || pre == "qwen2" {
        PreTokenizerWrapper::Sequence(Sequence::new(vec![
            PreTokenizerWrapper::Digits(Digits::new(true)),
            byte_level,
        ]))
    } else {
        byte_level
    };
    tok.with_pre_tokenizer(Some(pre_tok));
    tok.with_decoder(Some(ByteLevel::default()));
    // control tokens (type 3) are special: matched whole, skipped on decode
    let specials: Vec<AddedToken> = types
        .iter()
        .enumerate()
        .filter(|(_, t)| **t == 3 || **t == 4)
        .map(|(i, _)| AddedToken::from(tokens[i].clone(), true))
        .collect();
    tok.add_special_tokens(&specials);
    Ok(tok)
}

/// Undoes llama.cpp's Q/K row permutation for one weight `[rows, cols]`.
pub fn unpermute_rows(w: &[f32], rows: usize, cols: usize, n_head: usize) -> Vec<f32> {
    let hd = rows / n_head;
    let half = hd / 2;
    let mut out = vec![0f32; w.len()];
    for h in 0..n_head {
        for j in 0..half {
            for t in 0..2 {
                let src = h * hd + 2 * j + t;
                let dst = h * hd + t * half + j;
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&w[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

/// [`unpermute_rows`] for a block-quantized matrix (whole rows move).
pub fn unpermute_quant(q: &QuantMatrix, n_head: usize) -> QuantMatrix {
    let hd = q.format.n / n_head;
    let half = hd / 2;
    // row h*hd + t*half + j comes from GGUF row h*hd + 2j + t
    q.permute_rows(|r| {
        let (h, rem) = (r / hd, r % hd);
        let (t, j) = (rem / half, rem % half);
        h * hd + 2 * j + t
    })
}

pub use crate::onnx::layers::transpose;

/// A weight as imported: plain f32, or kept block-quantized.
pub enum Weight {
    F32(Vec<f32>),
    Quant(QuantMatrix),
}

impl Weight {
    /// The weight as row-major f32.
    pub fn into_f32(self) -> Vec<f32> {
        match self {
            Weight::F32(w) => w,
            Weight::Quant(q) => q.dequantize(),
        }
    }
}

/// Source of weights by GGUF tensor name, row-major `[out, in]`.
pub type Weights<'a> = dyn FnMut(&str) -> Result<Weight, ModelError> + 'a;

/// Converts a quantized GGUF matrix (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K,
/// Q6_K) into an `EbQuantLinear` matrix without changing a single weight: codes are repacked,
/// K-quant scales become the f32 products `d·sc` and mins `-(dmin·m)`, one per sub-block of 32
/// (Q4_K, Q5_K) or 16 (Q2_K, Q3_K, Q6_K) weights, so `QuantMatrix::dequantize` equals
/// [`Gguf::dequantize`] bit for bit. `Ok(None)` for float types and tensors that are not 2-D.
pub fn gguf_to_quant(
    g: &Gguf,
    bytes: &[u8],
    t: &TensorInfo,
) -> Result<Option<QuantMatrix>, String> {
    let (k, n) = match t.dims[..] {
        [k, n] => (k as usize, n as usize),
        _ => return Ok(None),
    };
    if super::gguf::linear_format(t.ggml_type).is_none() {
        return Ok(None);
    }
    let data = g.tensor_bytes(bytes, t).map_err(|e| e.what)?;
    let lb = super::gguf::linear_blocks(t.ggml_type, data, n * k)
        .map_err(|e| e.what)?
        .expect("a quantized type");
    Ok(Some(linear_to_quant(lb, n, k)?))
}

/// [`LinearBlocks`] of an `[n, k]` matrix as an `EbQuantLinear` matrix (codes packed LSB-first).
pub fn linear_to_quant(lb: LinearBlocks, n: usize, k: usize) -> Result<QuantMatrix, String> {
    let format = QuantFormat {
        bits: lb.bits,
        block_size: lb.block_size,
        k,
        n,
    };
    format.validate()?;
    if lb.codes.len() != n * k {
        return Err(format!("{} codes for a {n} x {k} matrix", lb.codes.len()));
    }
    let mut packed = vec![0u8; format.packed_len()];
    let bb = format.block_bytes();
    for (codes, out) in lb
        .codes
        .chunks_exact(lb.block_size)
        .zip(packed.chunks_exact_mut(bb))
    {
        pack_codes(codes, lb.bits, out);
    }
    Ok(QuantMatrix {
        format,
        packed,
        scales: lb.scales,
        mins: lb.mins,
    })
}

/// Adds `x · Wᵀ` for the GGUF weight `name` (`[out, in]`), un-permuting Q/K rows when asked.
fn linear(
    g: &mut GraphBuilder,
    weights: &mut Weights<'_>,
    x: &str,
    name: &str,
    (out, inp): (usize, usize),
    unpermute: Option<usize>,
) -> Result<String, ModelError> {
    match weights(name)? {
        Weight::Quant(q) => {
            if (q.format.n, q.format.k) != (out, inp) {
                return Err(ModelError::Runtime(format!(
                    "tensor `{name}` is {} x {}, expected {out} x {inp}",
                    q.format.n, q.format.k
                )));
            }
            let q = match unpermute {
                Some(nh) => unpermute_quant(&q, nh),
                None => q,
            };
            Ok(crate::ops::quant::write_node(g, name, x, &q))
        }
        Weight::F32(mut w) => {
            if w.len() != out * inp {
                return Err(ModelError::Runtime(format!(
                    "tensor `{name}` has {} values, expected {out} x {inp}",
                    w.len()
                )));
            }
            if let Some(nh) = unpermute {
                w = unpermute_rows(&w, out, inp, nh);
            }
            Ok(layers::linear_f32(g, name, x, &w, (out, inp)))
        }
    }
}

/// Builds the ONNX decoder graph.
pub fn build_graph(cfg: &LlamaConfig, weights: &mut Weights<'_>) -> Result<Vec<u8>, ModelError> {
    let (d, h, kv, hd) = (
        cfg.d_model as i64,
        cfg.n_heads as i64,
        cfg.n_kv_heads as i64,
        cfg.head_dim as i64,
    );
    let rep = h / kv;
    let mut g = GraphBuilder::new("llama");
    let ids = g.input("input_ids", Elem::I64, &[Dim::Fixed(1), Dim::from("seq")]);
    let s0 = g.init_i64("c_s0", &[], &[0]);
    let s1 = g.init_i64("c_s1", &[], &[1]);
    let s2 = g.init_i64("c_s2", &[], &[2]);
    let ax0 = i64s(&mut g, "c_ax0", &[0]);
    let ax1 = i64s(&mut g, "c_ax1", &[1]);
    let ax2 = i64s(&mut g, "c_ax2", &[2]);
    let eps = g.init_f32("c_eps", &[], &[cfg.eps as f32]);
    let two = g.init_f32("c_two", &[], &[2.0]);
    let scale = g.init_f32("c_scale", &[], &[1.0 / (cfg.head_dim as f32).sqrt()]);
    let neg = g.init_f32("c_neg", &[], &[f32::NEG_INFINITY]);
    let fzero = g.init_f32("c_fzero", &[], &[0.0]);
    let shape_q = i64s(&mut g, "c_shape_q", &[0, 0, h, hd]);
    let shape_kv = i64s(&mut g, "c_shape_kv", &[0, 0, kv, hd]);
    let shape_grp = i64s(&mut g, "c_shape_grp", &[1, kv, rep, -1, hd]);
    let shape_heads = i64s(&mut g, "c_shape_heads", &[1, h, -1, hd]);
    let shape_model = i64s(&mut g, "c_shape_model", &[0, 0, d]);
    let half_a = i64s(&mut g, "c_half_a", &[0]);
    let half_b = i64s(&mut g, "c_half_b", &[hd / 2]);
    let half_c = i64s(&mut g, "c_half_c", &[hd]);
    let last = i64s(&mut g, "c_last", &[-1]);

    let (cos_t, sin_t) = layers::rope_tables(
        &mut g,
        ("rope_cos", "rope_sin"),
        cfg.context.max(1),
        cfg.head_dim,
        cfg.rope_base,
    );

    // positions = past .. past + seq
    let past_inputs: Vec<(String, String)> = (0..cfg.n_layers)
        .map(|l| {
            let dims = [
                Dim::Fixed(1),
                Dim::Fixed(kv),
                Dim::from("past"),
                Dim::Fixed(hd),
            ];
            (
                g.input(&format!("past_key_{l}"), Elem::F32, &dims),
                g.input(&format!("past_value_{l}"), Elem::F32, &dims),
            )
        })
        .collect();
    let ids_shape = g.op("Shape", &[&ids], &[]);
    let seq = g.op("Gather", &[&ids_shape, &s1], &[("axis", Attr::Int(0))]);
    let past_shape = g.op("Shape", &[&past_inputs[0].0], &[]);
    let past = g.op("Gather", &[&past_shape, &s2], &[("axis", Attr::Int(0))]);
    let total = g.op("Add", &[&past, &seq], &[]);
    let pos = g.op("Range", &[&past, &total, &s1], &[]);
    let cos_p = layers::gather_rows(&mut g, &cos_t, &pos);
    let sin_p = layers::gather_rows(&mut g, &sin_t, &pos);
    // causal mask [seq, total]: key j is hidden from query i when j > past + i
    let rows = g.op("Unsqueeze", &[&pos, &ax1], &[]);
    let all = g.op("Range", &[&s0, &total, &s1], &[]);
    let cols = g.op("Unsqueeze", &[&all, &ax0], &[]);
    let future = g.op("Greater", &[&cols, &rows], &[]);
    let mask = layers::additive_mask(&mut g, &future, &neg, &fzero);

    let rms = |g: &mut GraphBuilder, x: &str, w: &str| layers::rms_norm(g, x, w, &two, &eps);
    let split = HalfSplit {
        start: &half_a,
        mid: &half_b,
        end: &half_c,
        axis: &last,
    };
    let rope = |g: &mut GraphBuilder, x: &str| layers::rope(g, x, &split, &cos_p, &sin_p);
    let emb_w = weights("token_embd.weight")?;
    let emb_q = match &emb_w {
        Weight::Quant(q) => Some(q.clone()),
        Weight::F32(_) => None,
    };
    let emb = emb_w.into_f32();
    if emb.len() != cfg.vocab * cfg.d_model {
        return Err(ModelError::Runtime(format!(
            "token_embd.weight has {} values, expected vocab {} x d_model {}",
            emb.len(),
            cfg.vocab,
            cfg.d_model
        )));
    }
    let emb_t = g.init_f32("token_embd.weight", &[cfg.vocab as i64, d], &emb);
    let mut hcur = layers::gather_rows(&mut g, &emb_t, &ids);
    let (du, hu, kvu, hdu) = (cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim);
    for (l, (pk, pv)) in past_inputs.iter().enumerate() {
        let p = |s: &str| format!("blk.{l}.{s}");
        let wn = g.init_f32(
            &p("attn_norm.weight"),
            &[d],
            &weights(&p("attn_norm.weight"))?.into_f32(),
        );
        let x = rms(&mut g, &hcur, &wn);
        let q = linear(
            &mut g,
            weights,
            &x,
            &p("attn_q.weight"),
            (hu * hdu, du),
            Some(hu),
        )?;
        let k = linear(
            &mut g,
            weights,
            &x,
            &p("attn_k.weight"),
            (kvu * hdu, du),
            Some(kvu),
        )?;
        let v = linear(
            &mut g,
            weights,
            &x,
            &p("attn_v.weight"),
            (kvu * hdu, du),
            None,
        )?;
        let q = layers::split_heads(&mut g, &q, &shape_q);
        let k = layers::split_heads(&mut g, &k, &shape_kv);
        let v = layers::split_heads(&mut g, &v, &shape_kv);
        let q = rope(&mut g, &q);
        let k = rope(&mut g, &k);
        g.node_in_domain(
            "",
            "Concat",
            &[pk, &k],
            &[&format!("present_key_{l}")],
            &[("axis", Attr::Int(2))],
        );
        g.node_in_domain(
            "",
            "Concat",
            &[pv, &v],
            &[&format!("present_value_{l}")],
            &[("axis", Attr::Int(2))],
        );
        let (kall, vall) = (format!("present_key_{l}"), format!("present_value_{l}"));
        let q5 = g.op("Reshape", &[&q, &shape_grp], &[]);
        let k5 = g.op("Unsqueeze", &[&kall, &ax2], &[]);
        let sc = layers::scaled_scores(&mut g, &q5, &k5, 5, &scale);
        let pr = layers::masked_softmax(&mut g, &sc, &mask);
        let v5 = g.op("Unsqueeze", &[&vall, &ax2], &[]);
        let o = g.op("MatMul", &[&pr, &v5], &[]);
        let o = g.op("Reshape", &[&o, &shape_heads], &[]);
        let o = layers::merge_heads(&mut g, &o, &shape_model);
        let o = linear(
            &mut g,
            weights,
            &o,
            &p("attn_output.weight"),
            (du, hu * hdu),
            None,
        )?;
        hcur = g.op("Add", &[&hcur, &o], &[]);
        let wf = g.init_f32(
            &p("ffn_norm.weight"),
            &[d],
            &weights(&p("ffn_norm.weight"))?.into_f32(),
        );
        let x = rms(&mut g, &hcur, &wf);
        let gate = linear(
            &mut g,
            weights,
            &x,
            &p("ffn_gate.weight"),
            (cfg.ffn, du),
            None,
        )?;
        let up = linear(
            &mut g,
            weights,
            &x,
            &p("ffn_up.weight"),
            (cfg.ffn, du),
            None,
        )?;
        let act = layers::swiglu(&mut g, &gate, &up);
        let down = linear(
            &mut g,
            weights,
            &act,
            &p("ffn_down.weight"),
            (du, cfg.ffn),
            None,
        )?;
        hcur = g.op("Add", &[&hcur, &down], &[]);
    }
    let wo = g.init_f32(
        "output_norm.weight",
        &[d],
        &weights("output_norm.weight")?.into_f32(),
    );
    let hn = rms(&mut g, &hcur, &wo);
    // tied embeddings unless the file has its own output matrix
    let head = match weights("output.weight") {
        Ok(w) => w,
        Err(_) => match emb_q {
            Some(q) => Weight::Quant(q),
            None => Weight::F32(emb),
        },
    };
    match head {
        Weight::Quant(q) => {
            let y = crate::ops::quant::write_node(&mut g, "lm_head", &hn, &q);
            g.op("Identity", &[&y], &[]);
        }
        Weight::F32(head) => {
            layers::linear_f32(&mut g, "lm_head", &hn, &head, (cfg.vocab, cfg.d_model));
        }
    }
    g.name_last_output("logits");
    g.op("Identity", &[&hn], &[]);
    g.name_last_output("hidden_states");
    let seqd = || Dim::from("seq");
    g.output(
        "logits",
        Elem::F32,
        &[Dim::Fixed(1), seqd(), Dim::Fixed(cfg.vocab as i64)],
    );
    g.output(
        "hidden_states",
        Elem::F32,
        &[Dim::Fixed(1), seqd(), Dim::Fixed(d)],
    );
    for l in 0..cfg.n_layers {
        let dims = [
            Dim::Fixed(1),
            Dim::Fixed(kv),
            Dim::from("total"),
            Dim::Fixed(hd),
        ];
        g.output(&format!("present_key_{l}"), Elem::F32, &dims);
        g.output(&format!("present_value_{l}"), Elem::F32, &dims);
    }
    let model = g.finish(
        "Llama decoder imported from GGUF by EdgeBench",
        &[("edgebench.architecture", "llama".into())],
    );
    Ok(encode(&model))
}

/// How [`import_gguf_with`] treats the file's weight matrices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightMode {
    /// Quantized matrices (every type of [`gguf_to_quant`]) stay quantized as stored; the
    /// rest is f32.
    Keep,
    /// Every weight becomes f32.
    Dequantize,
    /// Every matrix (linear layers, token embedding, head) is dequantized to
    /// f32 and quantized again with [`QuantMatrix::quantize`] at `bits`,
    /// symmetric blocks of 32: the same model at another precision.
    Requantize { bits: usize },
}

/// Imports a Llama GGUF file into `out` (model.onnx, tokenizer.json,
/// edgebench-model.toml); `dequantize` writes f32 weights instead of keeping
/// quantized matrices (Q4_0 .. Q8_0, Q2_K .. Q6_K) quantized.
pub fn import_gguf(
    path: &Path,
    out: &Path,
    max_context: usize,
    dequantize: bool,
) -> Result<ModelManifest, ModelError> {
    let mode = if dequantize {
        WeightMode::Dequantize
    } else {
        WeightMode::Keep
    };
    import_gguf_with(path, out, max_context, mode)
}

/// [`import_gguf`] with every matrix re-quantized at `bits` (one of
/// [`crate::ops::quant::BITS`]) from its dequantized f32, for compression sweeps.
pub fn import_gguf_requantized(
    path: &Path,
    out: &Path,
    max_context: usize,
    bits: usize,
) -> Result<ModelManifest, ModelError> {
    import_gguf_with(path, out, max_context, WeightMode::Requantize { bits })
}

/// Imports a Llama GGUF file into `out`, treating its matrices as `mode` says.
pub fn import_gguf_with(
    path: &Path,
    out: &Path,
    max_context: usize,
    mode: WeightMode,
) -> Result<ModelManifest, ModelError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| ModelError::Io { path: p, source }
    };
    if let WeightMode::Requantize { bits } = mode {
        if !crate::ops::quant::BITS.contains(&bits) {
            return Err(ModelError::Runtime(format!(
                "cannot re-quantize at {bits} bits; supported widths are {:?}",
                crate::ops::quant::BITS
            )));
        }
    }
    if !super::manifest::CONTEXT.contains(&max_context) {
        return Err(ModelError::Runtime(format!(
            "context {max_context} is outside {:?} tokens",
            super::manifest::CONTEXT
        )));
    }
    let file = std::fs::File::open(path).map_err(io(path))?;
    // SAFETY: the file is opened read-only and not modified while mapped.
    let bytes = unsafe { memmap2::Mmap::map(&file) }.map_err(io(path))?;
    let g =
        Gguf::parse(&bytes).map_err(|e| bad(path, format!("not a valid GGUF file: {}", e.what)))?;
    let mut cfg = LlamaConfig::from_gguf(&g, path)?;
    cfg.context = cfg.context.min(max_context);
    let tok = tokenizer_from_gguf(&g, path)?;
    if tok.get_vocab_size(true) != cfg.vocab {
        return Err(bad(
            path,
            format!(
                "tokenizer has {} tokens, model vocabulary {}",
                tok.get_vocab_size(true),
                cfg.vocab
            ),
        ));
    }
    let by_name: HashMap<&str, &TensorInfo> =
        g.tensors.iter().map(|t| (t.name.as_str(), t)).collect();
    let mut weights = |name: &str| -> Result<Weight, ModelError> {
        let t = *by_name
            .get(name)
            .ok_or_else(|| bad(path, format!("tensor `{name}` not found in the GGUF file")))?;
        if mode == WeightMode::Keep {
            if let Some(q) = gguf_to_quant(&g, &bytes, t)
                .map_err(|e| bad(path, format!("tensor `{name}`: {e}")))?
            {
                return Ok(Weight::Quant(q));
            }
        }
        let w = g.dequantize(&bytes, t).map_err(|e| bad(path, e.what))?;
        match (mode, &t.dims[..]) {
            (WeightMode::Requantize { bits }, &[k, n]) => {
                let format = QuantFormat {
                    bits,
                    block_size: 32,
                    k: k as usize,
                    n: n as usize,
                };
                QuantMatrix::quantize(&w, format, false)
                    .map(Weight::Quant)
                    .map_err(|e| bad(path, format!("tensor `{name}`: {e}")))
            }
            _ => Ok(Weight::F32(w)),
        }
    };
    let graph = build_graph(&cfg, &mut weights)?;
    std::fs::create_dir_all(out).map_err(io(out))?;
    std::fs::write(out.join("model.onnx"), graph).map_err(io(&out.join("model.onnx")))?;
    tok.save(out.join("tokenizer.json"), false)
        .map_err(|e| bad(&out.join("tokenizer.json"), e.to_string()))?;
    let id = |k: &str| g.get_u64(k).ok().map(|v| v as u32);
    let params: u64 = g.tensors.iter().map(|t| t.n_elements()).sum();
    let source_hash =
        edgebench_util::hash::sha256_file(path).map_err(|e| bad(path, e.to_string()))?;
    let (matmul, how) = match mode {
        WeightMode::Dequantize => (
            "f32 (dequantized at import)".to_string(),
            " --dequantize".to_string(),
        ),
        WeightMode::Keep => (
            "EbQuantLinear: quantized blocks kept as stored".to_string(),
            String::new(),
        ),
        WeightMode::Requantize { bits } => (
            format!(
                "EbQuantLinear: every matrix re-quantized at {bits} bits (symmetric blocks of 32)"
            ),
            format!(", every matrix re-quantized at {bits} bits from its dequantized f32"),
        ),
    };
    let manifest = ModelManifest {
        name: g
            .get_str("general.name")
            .map(|s| s.to_string())
            .unwrap_or_else(|_| {
                path.file_stem()
                    .map(|s| s.to_string_lossy().to_string())
                    .unwrap_or_default()
            }),
        architecture: "decoder".into(),
        graph: "model.onnx".into(),
        tokenizer: "tokenizer.json".into(),
        router_tokenizer: None,
        capabilities: Capabilities::all(),
        max_context: cfg.context,
        vocab_size: cfg.vocab,
        bos_token_id: id("tokenizer.ggml.bos_token_id"),
        eos_token_id: id("tokenizer.ggml.eos_token_id"),
        add_bos: g.get("tokenizer.ggml.add_bos_token").and_then(|v| match v {
            GgufValue::Bool(b) => Some(*b),
            _ => None,
        }),
        parameters: Some(params),
        matmul,
        kv_cache_layers: Some(cfg.n_layers),
        provenance: format!(
            "imported from {} (sha256 {source_hash}) by edgebench import gguf{how}",
            path.display()
        ),
    };
    manifest.save(out)?;
    Ok(manifest)
}
