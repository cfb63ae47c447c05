//! Llama-family decoders (`llama`, `qwen2`): configuration, the GGUF importer
//! (tokenizer, weights) and an ONNX decoder graph with an explicit KV cache (`past_key_<i>` / `past_value_<i>`
//! inputs, `present_key_<i>` / `present_value_<i>` outputs), so the same file
//! runs in tract and in onnxruntime.
//!
//! llama GGUF files store Q and K rows in llama.cpp's permuted order (qwen2
//! files and Hugging Face checkpoints do not); we undo the permutation at
//! import and use Hugging Face's `rotate_half` RoPE.

use super::bad;
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

/// The decoder families that share the Llama graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecoderArch {
    /// Llama 1-3 (TinyLlama, SmolLM, Llama 3.x): no biases.
    Llama,
    /// Qwen2 / Qwen2.5: biases on the query, key and value projections.
    Qwen2,
}

impl DecoderArch {
    /// Every family, with its GGUF `general.architecture` name.
    pub const ALL: [DecoderArch; 2] = [DecoderArch::Llama, DecoderArch::Qwen2];

    /// The GGUF `general.architecture` value (and metadata key prefix).
    pub fn gguf_name(self) -> &'static str {
        match self {
            DecoderArch::Llama => "llama",
            DecoderArch::Qwen2 => "qwen2",
        }
    }

    /// The family of a GGUF `general.architecture` value.
    pub fn from_gguf_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.gguf_name() == name)
    }

    /// Whether the query, key and value projections carry biases.
    pub fn qkv_bias(self) -> bool {
        self == DecoderArch::Qwen2
    }
}

/// How RoPE frequencies are rescaled for long contexts.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// `base^(-2i/d)` as is.
    None,
    /// Hugging Face's `rope_type: llama3` (Llama 3.1 / 3.2): long wavelengths divided by
    /// `factor`, short ones kept, the band between interpolated.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: f64,
    },
    /// llama.cpp's `rope_freqs.weight`: frequency `i` divided by factor `i`.
    FreqFactors(Vec<f64>),
}

/// Hyper-parameters of a Llama-family decoder.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    pub arch: DecoderArch,
    pub n_layers: usize,
    pub d_model: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub ffn: usize,
    pub rope_base: f64,
    pub rope_scaling: RopeScaling,
    pub eps: f64,
    pub vocab: usize,
    pub context: usize,
    /// Q and K rows are in llama.cpp's interleaved order (llama GGUF files), undone at import.
    pub qk_interleaved: bool,
}

impl LlamaConfig {
    /// Reads the `<architecture>.*` metadata of a GGUF file, checked by [`LlamaConfig::read`].
    pub fn from_gguf(g: &Gguf, path: &Path) -> Result<Self, ModelError> {
        Self::read(g).map_err(|e| bad(path, e.what))
    }

    /// Reads the `<architecture>.*` metadata (`llama` or `qwen2`) and checks every hyper-parameter the importer uses against
    /// the tensors it describes, before anything is allocated from it: the embedding length,
    /// vocabulary (token count), head counts, head dim (RoPE and key/value lengths), feed-forward
    /// length and block count must give exactly the shapes of `token_embd.weight`, `output.weight`,
    /// `output_norm.weight` and every `blk.<i>.*` tensor, with no block beyond `block_count`.
    /// [`Gguf::parse`] has checked each tensor's bytes against the file size, so a configuration
    /// that passes describes no more weights than the file holds. Errors name the key, its value
    /// and the tensor shape it contradicts.
    pub fn read(g: &Gguf) -> Result<Self, GgufError> {
        let name = g.get_str("general.architecture")?;
        let arch = DecoderArch::from_gguf_name(name).ok_or_else(|| {
            GgufError::new(format!(
                "`general.architecture` = `{name}` is not supported: EdgeBench imports {} GGUF \
                 files",
                supported_gguf()
            ))
        })?;
        let p = arch.gguf_name();
        let key = |s: &str| format!("{p}.{s}");
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
            &key("embedding_length"),
            g.get_u64(&key("embedding_length"))?,
            1,
        )?;
        let tokens = g.get("tokenizer.ggml.tokens").and_then(GgufValue::as_array);
        let vocab_size = optional(&key("vocab_size"))?;
        let (vocab, vocab_key) = match (tokens, vocab_size) {
            (Some(t), Some(v)) if t.len() as u64 != v => {
                return Err(GgufError::new(format!(
                    "`{p}.vocab_size` = {v} but `tokenizer.ggml.tokens` holds {} tokens",
                    t.len()
                )))
            }
            (Some(t), _) => (
                t.len() as u64,
                format!("`tokenizer.ggml.tokens` ({} tokens)", t.len()),
            ),
            (None, Some(v)) => (v, format!("`{p}.vocab_size` = {v}")),
            (None, None) => {
                return Err(GgufError::new(format!(
                    "neither `tokenizer.ggml.tokens` nor `{p}.vocab_size` is present: the \
                     vocabulary size is unknown"
                )))
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
        let emb = format!("`{p}.embedding_length` = {d_model}");
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
        let n_layers = at_least(&key("block_count"), g.get_u64(&key("block_count"))?, 1)?;
        let n_heads = at_least(
            &key("attention.head_count"),
            g.get_u64(&key("attention.head_count"))?,
            1,
        )?;
        let n_kv_heads = at_least(
            &key("attention.head_count_kv"),
            optional(&key("attention.head_count_kv"))?.unwrap_or(n_heads),
            1,
        )?;
        let ffn = at_least(
            &key("feed_forward_length"),
            g.get_u64(&key("feed_forward_length"))?,
            1,
        )?;
        let context = at_least(
            &key("context_length"),
            optional(&key("context_length"))?.unwrap_or(2048),
            2,
        )?;
        if d_model % n_heads != 0 || n_heads % n_kv_heads != 0 || (d_model / n_heads) % 2 != 0 {
            return Err(GgufError::new(format!(
                "inconsistent heads: `{p}.embedding_length` = {d_model}, \
                 `{p}.attention.head_count` = {n_heads}, `{p}.attention.head_count_kv` = \
                 {n_kv_heads}: the embedding length must be an even number of values per head, \
                 and the head count a multiple of the key/value head count"
            )));
        }
        let head_dim = d_model / n_heads;
        for k in [
            key("rope.dimension_count"),
            key("attention.key_length"),
            key("attention.value_length"),
        ] {
            if let Some(v) = optional(&k)? {
                if v != head_dim {
                    return Err(GgufError::new(format!(
                        "`{k}` = {v} but `{p}.embedding_length` / `{p}.attention.head_count` \
                         = {d_model} / {n_heads} = {head_dim}: EdgeBench needs full-head RoPE and \
                         keys and values of the head dim"
                    )));
                }
            }
        }
        let ffn_key = format!("`{p}.feed_forward_length` = {ffn}");
        let kv_key =
            format!("`{p}.attention.head_count_kv` = {n_kv_heads} (x head dim {head_dim})");
        let (ffn_key, kv_key) = (ffn_key.as_str(), kv_key.as_str());
        let kv_rows = n_kv_heads * head_dim;
        let missing = format!(" (`{p}.block_count` = {n_layers})");
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
            if arch.qkv_bias() {
                for (name, rows) in [
                    ("attn_q.bias", (d_model, emb)),
                    ("attn_k.bias", (kv_rows, kv_key)),
                    ("attn_v.bias", (kv_rows, kv_key)),
                ] {
                    check(&blk(name), &[rows], &missing)?;
                }
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
                "`{p}.block_count` = {n_layers} but the file has tensor `{}` beyond it",
                t.name
            )));
        }
        // each value now fits in the file (it sizes a tensor found in it), so in a usize
        let us = |v: u64| v as usize;
        Ok(LlamaConfig {
            arch,
            n_layers: us(n_layers),
            d_model: us(d_model),
            n_heads: us(n_heads),
            n_kv_heads: us(n_kv_heads),
            head_dim: us(head_dim),
            ffn: us(ffn),
            rope_base: positive(&key("rope.freq_base"), 10000.0)?,
            rope_scaling: RopeScaling::None,
            eps: positive(&key("attention.layer_norm_rms_epsilon"), 1e-5)?,
            vocab: us(vocab),
            context: usize::try_from(context).unwrap_or(usize::MAX),
            qk_interleaved: arch == DecoderArch::Llama,
        })
    }

    /// The RoPE frequency of each rotated pair, `head_dim / 2` of them, scaled as configured
    /// (for `llama3`, exactly as transformers' `_compute_llama3_parameters`).
    pub fn inv_freq(&self) -> Vec<f64> {
        let d = self.head_dim as f64;
        let base = (0..self.head_dim / 2).map(|i| self.rope_base.powf(-(2.0 * i as f64) / d));
        match &self.rope_scaling {
            RopeScaling::None => base.collect(),
            RopeScaling::FreqFactors(f) => base.zip(f).map(|(b, f)| b / f).collect(),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor: low,
                high_freq_factor: high,
                original_max_position_embeddings: orig,
            } => base
                .map(|f| {
                    let wavelen = 2.0 * std::f64::consts::PI / f;
                    if wavelen < orig / high {
                        f
                    } else if wavelen > orig / low {
                        f / factor
                    } else {
                        let smooth = (orig / wavelen - low) / (high - low);
                        (1.0 - smooth) * f / factor + smooth * f
                    }
                })
                .collect(),
        }
    }
}

/// The GGUF architectures EdgeBench imports, for messages: "`llama` and `qwen2`".
pub fn supported_gguf() -> String {
    let names: Vec<String> = DecoderArch::ALL
        .iter()
        .map(|a| format!("`{}`", a.gguf_name()))
        .collect();
    names.join(" and ")
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

/// RoPE cos / sin tables `[context, head_dim]` in rotate-half layout, from
/// [`LlamaConfig::inv_freq`].
fn rope_tables(g: &mut GraphBuilder, cfg: &LlamaConfig) -> (String, String) {
    let (ctx, hd) = (cfg.context.max(1), cfg.head_dim);
    let half = hd / 2;
    let inv = cfg.inv_freq();
    let mut cos = vec![0f32; ctx * hd];
    let mut sin = vec![0f32; ctx * hd];
    for p in 0..ctx {
        for (i, f) in inv.iter().enumerate() {
            let a = p as f64 * f;
            for j in [i, i + half] {
                cos[p * hd + j] = a.cos() as f32;
                sin[p * hd + j] = a.sin() as f32;
            }
        }
    }
    let dims = [ctx as i64, hd as i64];
    (
        g.init_f32("rope_cos", &dims, &cos),
        g.init_f32("rope_sin", &dims, &sin),
    )
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
    let shape_model = i64s(&mut g, "c_shape_model", &[0, 0, h * hd]);
    let half_a = i64s(&mut g, "c_half_a", &[0]);
    let half_b = i64s(&mut g, "c_half_b", &[hd / 2]);
    let half_c = i64s(&mut g, "c_half_c", &[hd]);
    let last = i64s(&mut g, "c_last", &[-1]);

    let (cos_t, sin_t) = rope_tables(&mut g, cfg);

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
        let interleaved = |heads: usize| cfg.qk_interleaved.then_some(heads);
        let mut qkv = Vec::with_capacity(3);
        for (m, rows, unpermute) in [
            ("attn_q", hu * hdu, interleaved(hu)),
            ("attn_k", kvu * hdu, interleaved(kvu)),
            ("attn_v", kvu * hdu, None),
        ] {
            let y = linear(
                &mut g,
                weights,
                &x,
                &p(&format!("{m}.weight")),
                (rows, du),
                unpermute,
            )?;
            qkv.push(match cfg.arch.qkv_bias() {
                true => {
                    let name = p(&format!("{m}.bias"));
                    let b = weights(&name)?.into_f32();
                    if b.len() != rows {
                        return Err(ModelError::Runtime(format!(
                            "tensor `{name}` has {} values, expected {rows}",
                            b.len()
                        )));
                    }
                    let b = g.init_f32(&name, &[rows as i64], &b);
                    g.op("Add", &[&y, &b], &[])
                }
                false => y,
            });
        }
        let [q, k, v]: [String; 3] = qkv.try_into().expect("three projections");
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
        &format!("{} decoder imported by EdgeBench", cfg.arch.gguf_name()),
        &[("edgebench.architecture", cfg.arch.gguf_name().into())],
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
    // llama.cpp's converter writes Llama 3's RoPE scaling as per-frequency factors
    if let Ok(t) = g.tensor("rope_freqs.weight") {
        let f = g.dequantize(&bytes, t).map_err(|e| bad(path, e.what))?;
        if f.len() != cfg.head_dim / 2 || f.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
            return Err(bad(
                path,
                format!(
                    "tensor `rope_freqs.weight` must hold head dim / 2 = {} finite factors above \
                     0, not {} values",
                    cfg.head_dim / 2,
                    f.len()
                ),
            ));
        }
        cfg.rope_scaling = RopeScaling::FreqFactors(f.iter().map(|&v| v as f64).collect());
    }
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
        router_max_tokens: None,
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
    super::write_dir_atomically(out, |tmp| {
        std::fs::write(tmp.join("model.onnx"), &graph).map_err(io(&tmp.join("model.onnx")))?;
        tok.save(tmp.join("tokenizer.json"), false)
            .map_err(|e| bad(&tmp.join("tokenizer.json"), e.to_string()))?;
        manifest.save(tmp)
    })?;
    Ok(manifest)
}
