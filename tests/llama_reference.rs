//! A synthetic Llama GGUF (F32, Q8_0 and Q4_1 tensors) imported to ONNX and
//! run by tract, against a plain Rust forward pass written the llama.cpp way:
//! "normal" RoPE rotating adjacent pairs on the permuted Q/K rows as stored.

use edgebench::model::decoder::TractDecoder;
use edgebench::model::gguf::{quantize_q4_1, quantize_q8_0, GgmlType, Gguf, GgufValue, GgufWriter};
use edgebench::model::manifest::ModelManifest;
use edgebench::model::tokenizer::bytes_to_unicode;
use edgebench::model::{llama, Model};

const D: usize = 64;
const H: usize = 4;
const KV: usize = 2;
const HD: usize = D / H;
const FFN: usize = 96;
const LAYERS: usize = 2;
const VOCAB: usize = 257;
const BASE: f64 = 10000.0;
const EPS: f64 = 1e-5;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 % 20001) as f32 / 10000.0 - 1.0) * 0.3
    }
}

/// Writes the GGUF; returns its bytes.
fn synthetic_gguf(quantized: bool) -> Vec<u8> {
    let mut w = GgufWriter::new();
    let s = |v: &str| GgufValue::Str(v.to_string());
    w.kv("general.architecture", s("llama"));
    w.kv("general.name", s("synthetic"));
    w.kv("llama.block_count", GgufValue::U32(LAYERS as u32));
    w.kv("llama.embedding_length", GgufValue::U32(D as u32));
    w.kv("llama.feed_forward_length", GgufValue::U32(FFN as u32));
    w.kv("llama.attention.head_count", GgufValue::U32(H as u32));
    w.kv("llama.attention.head_count_kv", GgufValue::U32(KV as u32));
    w.kv("llama.rope.freq_base", GgufValue::F32(BASE as f32));
    w.kv(
        "llama.attention.layer_norm_rms_epsilon",
        GgufValue::F32(EPS as f32),
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

fn rms(x: &[f32], w: &[f32]) -> Vec<f32> {
    let ms = x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / x.len() as f64;
    let r = 1.0 / (ms + EPS).sqrt();
    x.iter()
        .zip(w)
        .map(|(v, g)| (*v as f64 * r) as f32 * g)
        .collect()
}

/// y = W x for W `[out, in]` row-major.
fn matvec(w: &[f32], x: &[f32], out: usize) -> Vec<f32> {
    let inp = x.len();
    (0..out)
        .map(|o| {
            (0..inp)
                .map(|i| w[o * inp + i] as f64 * x[i] as f64)
                .sum::<f64>() as f32
        })
        .collect()
}

/// llama.cpp "normal" RoPE: rotate pairs (2i, 2i+1) of each head.
fn rope_adjacent(v: &mut [f32], heads: usize, pos: usize) {
    for h in 0..heads {
        for i in 0..HD / 2 {
            let theta = pos as f64 * BASE.powf(-(2.0 * i as f64) / HD as f64);
            let (c, s) = (theta.cos(), theta.sin());
            let (a, b) = (v[h * HD + 2 * i] as f64, v[h * HD + 2 * i + 1] as f64);
            v[h * HD + 2 * i] = (a * c - b * s) as f32;
            v[h * HD + 2 * i + 1] = (a * s + b * c) as f32;
        }
    }
}

fn reference_logits(g: &Gguf, bytes: &[u8], ids: &[u32]) -> Vec<Vec<f32>> {
    let get = |n: &str| g.dequantize(bytes, g.tensor(n).unwrap()).unwrap();
    let emb = get("token_embd.weight");
    let mut xs: Vec<Vec<f32>> = ids
        .iter()
        .map(|&i| emb[i as usize * D..(i as usize + 1) * D].to_vec())
        .collect();
    for l in 0..LAYERS {
        let p = |n: &str| get(&format!("blk.{l}.{n}"));
        let (wq, wk, wv, wo) = (
            p("attn_q.weight"),
            p("attn_k.weight"),
            p("attn_v.weight"),
            p("attn_output.weight"),
        );
        let (an, fnorm) = (p("attn_norm.weight"), p("ffn_norm.weight"));
        let (wg, wu, wd) = (
            p("ffn_gate.weight"),
            p("ffn_up.weight"),
            p("ffn_down.weight"),
        );
        let mut ks = Vec::new();
        let mut vs = Vec::new();
        let mut qs = Vec::new();
        for (pos, x) in xs.iter().enumerate() {
            let n = rms(x, &an);
            let mut q = matvec(&wq, &n, H * HD);
            let mut k = matvec(&wk, &n, KV * HD);
            rope_adjacent(&mut q, H, pos);
            rope_adjacent(&mut k, KV, pos);
            qs.push(q);
            ks.push(k);
            vs.push(matvec(&wv, &n, KV * HD));
        }
        for t in 0..xs.len() {
            let mut att = vec![0f32; H * HD];
            for h in 0..H {
                let kvh = h / (H / KV);
                let scores: Vec<f64> = (0..=t)
                    .map(|j| {
                        (0..HD)
                            .map(|d| qs[t][h * HD + d] as f64 * ks[j][kvh * HD + d] as f64)
                            .sum::<f64>()
                            / (HD as f64).sqrt()
                    })
                    .collect();
                let m = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = scores.iter().map(|s| (s - m).exp()).sum();
                for (j, s) in scores.iter().enumerate() {
                    let w = (s - m).exp() / z;
                    for d in 0..HD {
                        att[h * HD + d] += (w * vs[j][kvh * HD + d] as f64) as f32;
                    }
                }
            }
            let o = matvec(&wo, &att, D);
            for d in 0..D {
                xs[t][d] += o[d];
            }
            let n = rms(&xs[t], &fnorm);
            let gt = matvec(&wg, &n, FFN);
            let up = matvec(&wu, &n, FFN);
            let act: Vec<f32> = gt
                .iter()
                .zip(&up)
                .map(|(a, b)| a / (1.0 + (-a).exp()) * b)
                .collect();
            let down = matvec(&wd, &act, D);
            for d in 0..D {
                xs[t][d] += down[d];
            }
        }
    }
    let on = get("output_norm.weight");
    xs.iter()
        .map(|x| matvec(&emb, &rms(x, &on), VOCAB))
        .collect()
}

fn check(quantized_file: bool, keep_quantized: bool) {
    let bytes = synthetic_gguf(quantized_file);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("synthetic.gguf");
    std::fs::write(&src, &bytes).unwrap();
    let out = tmp.path().join("model");
    llama::import_gguf(&src, &out, 64, !keep_quantized).unwrap();
    let dec = TractDecoder::load(&out, &ModelManifest::load(&out).unwrap(), "test").unwrap();
    let ids: Vec<u32> = b"edge bench!".iter().map(|&b| b as u32).collect();
    let got = dec.logits(&ids).unwrap();
    let g = Gguf::parse(&bytes).unwrap();
    let want = reference_logits(&g, &bytes, &ids);
    let mut max = 0f32;
    for (t, row) in want.iter().enumerate() {
        for (v, w) in row.iter().enumerate() {
            max = max.max((got[t * VOCAB + v] - w).abs());
        }
    }
    assert!(
        max < 2e-3,
        "quantized file {quantized_file}, kept quantized {keep_quantized}: max |diff| {max}"
    );
    // the KV-cache path (context computed once) agrees with recomputing it
    let mut dec = dec;
    let conts = vec![" bench".to_string(), "!!".to_string()];
    let shared = dec.loglikelihood("edge", &conts).unwrap();
    dec.set_share_context(false);
    let full = dec.loglikelihood("edge", &conts).unwrap();
    for (a, b) in shared.iter().zip(&full) {
        assert!(
            (a.logprob - b.logprob).abs() < 1e-3,
            "{} vs {}",
            a.logprob,
            b.logprob
        );
    }
}

#[test]
fn f32_synthetic_llama_matches_the_reference_forward_pass() {
    check(false, false);
}

#[test]
fn quantized_synthetic_llama_matches_the_reference_whether_kept_quantized_or_not() {
    check(true, true);
    check(true, false);
}

#[test]
fn tokenizer_is_rebuilt_from_gguf_metadata() {
    let bytes = synthetic_gguf(false);
    let g = Gguf::parse(&bytes).unwrap();
    let tok = llama::tokenizer_from_gguf(&g, std::path::Path::new("synthetic.gguf")).unwrap();
    let enc = tok.encode("ab c", false).unwrap();
    // one merge ("a b") exists: "ab" is one token, the rest are bytes
    assert_eq!(enc.get_ids().len(), 3, "{:?}", enc.get_tokens());
}

#[test]
fn requantized_import_approaches_the_f32_model_as_bits_grow() {
    let bytes = synthetic_gguf(false);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("synthetic.gguf");
    std::fs::write(&src, &bytes).unwrap();
    let ids: Vec<u32> = b"edge bench!".iter().map(|&b| b as u32).collect();
    let logits = |dir: &std::path::Path| {
        let m = ModelManifest::load(dir).unwrap();
        TractDecoder::load(dir, &m, "test")
            .unwrap()
            .logits(&ids)
            .unwrap()
    };
    let f32_dir = tmp.path().join("f32");
    llama::import_gguf(&src, &f32_dir, 64, true).unwrap();
    let exact = logits(&f32_dir);
    let mut errors = Vec::new();
    for bits in [8, 4, 2] {
        let dir = tmp.path().join(format!("q{bits}"));
        let m = llama::import_gguf_requantized(&src, &dir, 64, bits).unwrap();
        assert!(m.matmul.contains(&format!("{bits} bits")), "{}", m.matmul);
        let got = logits(&dir);
        let err = got
            .iter()
            .zip(&exact)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        errors.push(err);
    }
    assert!(errors[0] < 0.05, "8-bit max |diff| {}", errors[0]);
    assert!(
        errors[0] < errors[1] && errors[1] < errors[2],
        "error must grow as bits shrink: {errors:?}"
    );
    let err = llama::import_gguf_requantized(&src, &tmp.path().join("q7"), 64, 7).unwrap_err();
    assert!(err.to_string().contains("7 bits"), "{err}");
}
