//! A synthetic Llama GGUF (F32, Q8_0 and Q4_1 tensors) shared by tests.

use edgebench::model::gguf::{quantize_q4_1, quantize_q8_0, GgmlType, GgufValue, GgufWriter};
use edgebench::model::tokenizer::bytes_to_unicode;

pub const D: usize = 64;
pub const H: usize = 4;
pub const KV: usize = 2;
pub const HD: usize = D / H;
pub const FFN: usize = 96;
pub const LAYERS: usize = 2;
pub const VOCAB: usize = 257;
pub const BASE: f64 = 10000.0;
pub const EPS: f64 = 1e-5;

pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 % 20001) as f32 / 10000.0 - 1.0) * 0.3
    }
}

/// A llama's dimensions.
pub struct Dims {
    pub layers: usize,
    pub d: usize,
    pub ffn: usize,
    pub heads: usize,
    pub kv: usize,
}

/// The metadata of a synthetic llama GGUF named `name` (RoPE base and RMS
/// epsilon as given, context 64) and its byte-level tokenizer: the 256
/// bytes, then `ab` from one merge; BOS is token 0.
pub fn llama_header(w: &mut GgufWriter, name: &str, dims: Dims, (base, eps): (f64, f64)) {
    let s = |v: &str| GgufValue::Str(v.to_string());
    w.kv("general.architecture", s("llama"));
    w.kv("general.name", s(name));
    w.kv("llama.block_count", GgufValue::U32(dims.layers as u32));
    w.kv("llama.embedding_length", GgufValue::U32(dims.d as u32));
    w.kv("llama.feed_forward_length", GgufValue::U32(dims.ffn as u32));
    w.kv(
        "llama.attention.head_count",
        GgufValue::U32(dims.heads as u32),
    );
    w.kv(
        "llama.attention.head_count_kv",
        GgufValue::U32(dims.kv as u32),
    );
    w.kv("llama.rope.freq_base", GgufValue::F32(base as f32));
    w.kv(
        "llama.attention.layer_norm_rms_epsilon",
        GgufValue::F32(eps as f32),
    );
    w.kv("llama.context_length", GgufValue::U32(64));
    w.kv("tokenizer.ggml.model", s("gpt2"));
    let table = bytes_to_unicode();
    let mut tokens: Vec<GgufValue> = table
        .iter()
        .map(|c| GgufValue::Str(c.to_string()))
        .collect();
    tokens.push(GgufValue::Str("ab".into()));
    w.kv("tokenizer.ggml.tokens", GgufValue::Array(tokens));
    w.kv(
        "tokenizer.ggml.merges",
        GgufValue::Array(vec![GgufValue::Str(format!(
            "{} {}",
            table[b'a' as usize], table[b'b' as usize]
        ))]),
    );
    w.kv("tokenizer.ggml.bos_token_id", GgufValue::U32(0));
}

/// Writes the GGUF; returns its bytes.
pub fn synthetic_gguf(quantized: bool) -> Vec<u8> {
    let mut w = GgufWriter::new();
    llama_header(
        &mut w,
        "synthetic",
        Dims {
            layers: LAYERS,
            d: D,
            ffn: FFN,
            heads: H,
            kv: KV,
        },
        (BASE, EPS),
    );
    let mut rng = Rng(0x9e3779b97f4a7c15);
    let mut t = |w: &mut GgufWriter, name: &str, rows: usize, cols: usize, ty: GgmlType| {
        let v: Vec<f32> = (0..rows * cols).map(|_| rng.next()).collect();
        let (ty, data) = match (quantized, ty) {
            (true, GgmlType::Q4_1) => (ty, quantize_q4_1(&v)),
            (true, GgmlType::Q8_0) => (ty, quantize_q8_0(&v)),
            _ => (
                GgmlType::F32,
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
        };
        let dims: Vec<u64> = if rows == 1 {
            vec![cols as u64]
        } else {
            vec![cols as u64, rows as u64]
        };
        w.tensor(name, &dims, ty, data);
    };
    t(&mut w, "token_embd.weight", VOCAB, D, GgmlType::Q8_0);
    for l in 0..LAYERS {
        let p = |n: &str| format!("blk.{l}.{n}");
        t(&mut w, &p("attn_norm.weight"), 1, D, GgmlType::F32);
        t(&mut w, &p("attn_q.weight"), H * HD, D, GgmlType::Q4_1);
        t(&mut w, &p("attn_k.weight"), KV * HD, D, GgmlType::Q4_1);
        t(&mut w, &p("attn_v.weight"), KV * HD, D, GgmlType::Q8_0);
        t(&mut w, &p("attn_output.weight"), D, H * HD, GgmlType::Q4_1);
        t(&mut w, &p("ffn_norm.weight"), 1, D, GgmlType::F32);
        t(&mut w, &p("ffn_gate.weight"), FFN, D, GgmlType::Q4_1);
        t(&mut w, &p("ffn_up.weight"), FFN, D, GgmlType::Q4_1);
        t(&mut w, &p("ffn_down.weight"), D, FFN, GgmlType::Q8_0);
    }
    t(&mut w, "output_norm.weight", 1, D, GgmlType::F32);
    w.finish()
}
