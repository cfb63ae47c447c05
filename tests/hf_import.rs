//! Tiny Llama and Qwen2 checkpoints made by transformers (Hugging Face folders, and the same
//! weights as llama.cpp-style GGUF files), imported through the binary and run by tract,
//! against the logits and greedy continuation transformers computed: full recompute and
//! decoding on the KV cache, f32 / f16 / bf16 weights, and Q8_0 / Q4_0 quantized at import.
//!
//! The fixtures in tests/fixtures/reference-models/decoders/ were made by
//! `python3 tools/make-reference-decoders.py` (torch, transformers, tokenizers, gguf).

mod common;

use edgebench::model::decoder::TractDecoder;
use edgebench::model::manifest::ModelManifest;
use edgebench::model::Model;
use edgebench::ops::quant::Lowering;
use edgebench::runtime::RuntimeOptions;
use serde_json::Value;
use std::path::{Path, PathBuf};
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::DimLike;

const MODELS: [&str; 4] = ["llama-gqa", "llama3-tied", "qwen2-tied", "qwen2-untied"];

fn fixtures() -> PathBuf {
    common::repo().join("tests/fixtures/reference-models/decoders")
}

fn reference() -> Value {
    let text = std::fs::read_to_string(fixtures().join("reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn u32s(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// The reference of one model: prompt ids, greedy continuation, logits rows over both.
struct Ref {
    ids: Vec<u32>,
    greedy: Vec<u32>,
    logits: Vec<Vec<f32>>,
}

/// The reference of `name`; `logits` picks its f32 pass (`logits`) or a pass with rounded
/// weights (`logits_q4_0`, `logits_q8_0`).
fn model_ref(name: &str, logits: &str) -> Ref {
    let r = reference();
    let m = &r["models"][name];
    Ref {
        ids: u32s(&r["ids"]),
        greedy: u32s(&m["greedy"]),
        logits: m[logits]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| {
                row.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap() as f32)
                    .collect()
            })
            .collect(),
    }
}

/// `edgebench import <kind> <src> --out <tmp>/model <extra>`; asserts success.
fn import(kind: &str, src: &Path, extra: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("model");
    let mut args = vec![
        "import",
        kind,
        src.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = common::edgebench(&common::repo(), &args);
    assert!(o.status.success(), "{}", common::text(&o));
    (tmp, out)
}

fn hf(name: &str, extra: &[&str]) -> (tempfile::TempDir, PathBuf) {
    import("hf", &fixtures().join(name), extra)
}

fn gguf(name: &str) -> (tempfile::TempDir, PathBuf) {
    import("gguf", &fixtures().join(format!("{name}.gguf")), &[])
}

fn decoder(dir: &Path) -> TractDecoder {
    decoder_with(dir, &common::runtime())
}

fn decoder_with(dir: &Path, options: &RuntimeOptions) -> TractDecoder {
    let m = ModelManifest::load(dir).unwrap();
    TractDecoder::load(dir, &m, "test", options).unwrap()
}

/// Largest |a - b| over the rows.
fn max_diff(got: &[f32], want: &[Vec<f32>]) -> f32 {
    let vocab = want[0].len();
    assert_eq!(got.len(), want.len() * vocab);
    want.iter()
        .enumerate()
        .flat_map(|(t, row)| row.iter().enumerate().map(move |(v, w)| (t, v, *w)))
        .map(|(t, v, w)| (got[t * vocab + v] - w).abs())
        .fold(0f32, common::worse)
}

fn argmax(row: &[f32]) -> (usize, f32) {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
    (idx[0], row[idx[0]] - row[idx[1]])
}

/// The model's logits over prompt + greedy continuation, one full forward pass.
fn full_logits(dir: &Path, r: &Ref, options: &RuntimeOptions) -> Vec<f32> {
    let all: Vec<u32> = r.ids.iter().chain(&r.greedy).copied().collect();
    decoder_with(dir, options).logits(&all).unwrap()
}

/// Prefill of the prompt, then one step per greedy token on the graph's KV cache; returns the
/// logits rows `[prompt + greedy]` as the cached passes produced them.
fn cached_logits(dir: &Path, r: &Ref, options: &RuntimeOptions) -> Vec<f32> {
    let manifest = ModelManifest::load(dir).unwrap();
    let layers = manifest.kv_cache_layers.unwrap();
    let g = edgebench::model::load_graph(dir, &manifest, options).unwrap();
    let fact = g.plan.model().input_fact(1).unwrap().clone();
    let dim = |i: usize| fact.shape[i].to_usize().unwrap();
    let (kv, hd) = (dim(1), dim(3));
    let run = |ids: &[u32], past: Vec<TValue>| {
        let ids: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
        let mut inputs: TVec<TValue> = tvec!(Tensor::from_shape(&[1, ids.len()], &ids)
            .unwrap()
            .into_tvalue());
        inputs.extend(past);
        g.plan.run(inputs).unwrap()
    };
    let empty: Vec<TValue> = (0..2 * layers)
        .map(|_| Tensor::zero::<f32>(&[1, kv, 0, hd]).unwrap().into_tvalue())
        .collect();
    let mut out = run(&r.ids, empty);
    let mut rows: Vec<f32> = out[0]
        .to_plain_array_view::<f32>()
        .unwrap()
        .iter()
        .copied()
        .collect();
    for &t in &r.greedy {
        let past: Vec<TValue> = out.iter().skip(2).cloned().collect();
        out = run(&[t], past);
        rows.extend(out[0].to_plain_array_view::<f32>().unwrap().iter().copied());
    }
    rows
}

/// Checks an imported model against its reference: full-pass logits within `tol`, the
/// KV-cache passes within `tol` of the reference and 1e-4 of the full pass, and the greedy
/// tokens equal wherever the reference's top-2 margin exceeds `2 tol`. Returns the largest
/// full-pass difference.
fn check(dir: &Path, name: &str, tol: f32) -> f32 {
    let r = model_ref(name, "logits");
    for (t, &g) in r.greedy.iter().enumerate() {
        assert_eq!(argmax(&r.logits[r.ids.len() - 1 + t]).0 as u32, g);
    }
    check_against(dir, &r, &common::runtime(), tol)
}

fn check_against(dir: &Path, r: &Ref, options: &RuntimeOptions, tol: f32) -> f32 {
    let name = dir.display();
    let full = full_logits(dir, r, options);
    let err = max_diff(&full, &r.logits);
    assert!(err <= tol, "{name}: max |diff| {err} > {tol}");
    let cached = cached_logits(dir, r, options);
    let vocab = r.logits[0].len();
    let self_err = full
        .iter()
        .zip(&cached)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, common::worse);
    assert!(
        self_err <= 1e-4,
        "{name}: KV cache vs full recompute {self_err}"
    );
    assert!(max_diff(&cached, &r.logits) <= tol, "{name}: KV cache");
    // the reference's choice after the prompt and each greedy token (the f32 passes' choices
    // are the greedy tokens themselves)
    for t in 0..r.greedy.len() {
        let at = r.ids.len() - 1 + t;
        let (want, margin) = argmax(&r.logits[at]);
        let (got, _) = argmax(&cached[at * vocab..(at + 1) * vocab]);
        if margin > 2.0 * tol {
            assert_eq!(got, want, "{name}: greedy token {t} (margin {margin})");
        }
    }
    err
}

#[test]
fn hf_folders_match_transformers_in_f32_f16_and_bf16() {
    for name in MODELS {
        let (_tmp, dir) = hf(name, &[]);
        let err = check(&dir, name, 1e-4);
        eprintln!("{name} (hf): max |diff| {err:.2e}");
        let m = ModelManifest::load(&dir).unwrap();
        assert_eq!(m.kv_cache_layers, Some(2));
        assert!(
            m.provenance.contains("edgebench import hf"),
            "{}",
            m.provenance
        );
        // f16 / bf16 weights are widened at import, and the manifest says so
        let dtype = reference()["models"][name]["dtype"]
            .as_str()
            .unwrap()
            .to_string();
        match dtype.as_str() {
            "float32" => assert_eq!(m.matmul, "f32"),
            "float16" => assert!(m.matmul.contains("F16"), "{}", m.matmul),
            _ => assert!(m.matmul.contains("BF16"), "{}", m.matmul),
        }
    }
}

#[test]
fn gguf_files_match_transformers() {
    // llama files carry llama.cpp's Q/K permutation (and Llama 3's `rope_freqs.weight`),
    // qwen2 files their biases unpermuted
    for name in MODELS {
        let (_tmp, dir) = gguf(name);
        let err = check(&dir, name, 1e-4);
        eprintln!("{name} (gguf): max |diff| {err:.2e}");
    }
}

#[test]
fn tokenizers_from_the_folder_and_the_gguf_give_the_reference_ids() {
    let r = reference();
    let prompt = r["prompt"].as_str().unwrap();
    let ids = u32s(&r["ids"]);
    for (_tmp, dir) in [hf("qwen2-tied", &[]), gguf("qwen2-tied"), gguf("llama-gqa")] {
        assert_eq!(
            decoder(&dir).tokenize(prompt).unwrap(),
            ids,
            "{}",
            dir.display()
        );
    }
}

#[test]
fn generation_on_the_kv_cache_continues_as_transformers_does() {
    // the text Model::generate writes is the reference's greedy tokens, decoded
    let r = reference();
    let prompt = r["prompt"].as_str().unwrap();
    let tok =
        tokenizers::Tokenizer::from_file(fixtures().join("tokenizer.json")).expect("tokenizer");
    for name in ["llama3-tied", "qwen2-untied"] {
        let (_tmp, dir) = hf(name, &[]);
        let greedy = u32s(&r["models"][name]["greedy"]);
        let want = tok.decode(&greedy, false).unwrap();
        let got = decoder(&dir).generate(prompt, &[], greedy.len()).unwrap();
        assert_eq!(
            (got.text.as_str(), got.tokens),
            (want.as_str(), greedy.len())
        );
    }
}

#[test]
fn llama3_rope_frequencies_are_transformers_own() {
    let r = reference();
    let want: Vec<f64> = r["models"]["llama3-tied"]["inv_freq"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    let text = std::fs::read_to_string(fixtures().join("llama3-tied/config.json")).unwrap();
    let (cfg, tied) = edgebench::model::hf::decoder_config(
        &serde_json::from_str(&text).unwrap(),
        Path::new("config.json"),
        edgebench::model::llama::DecoderArch::Llama,
    )
    .unwrap();
    assert!(tied);
    let got = cfg.inv_freq();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        // transformers computes in f32
        assert!((g - w).abs() <= 1e-7 * w, "{got:?} vs {want:?}");
    }
    // the scaling matters: the last three frequencies move
    let plain: Vec<f64> = (0..4)
        .map(|i| 10000f64.powf(-(2.0 * i as f64) / 8.0))
        .collect();
    assert_eq!(got[0], plain[0]);
    assert!(
        got[1] < plain[1] && got[1] > plain[1] / 8.0,
        "smoothed band"
    );
    assert!((got[3] - plain[3] / 8.0).abs() < 1e-15);
}

/// `--quantize` rounds every matrix as llama.cpp's reference quantizer does: with the
/// quantized layers lowered to f32 the model is transformers' own with the same rounded
/// weights (gguf-py's quantizer), to 1e-4; EdgeBench's block kernels (the default lowering)
/// stay within 5e-4 of it (measured: 1e-5).
#[test]
fn quantized_imports_match_transformers_on_the_same_rounded_weights() {
    for (name, q) in [("llama-gqa", "q4_0"), ("qwen2-tied", "q8_0")] {
        let (_tmp, dir) = hf(name, &["--quantize", q]);
        let r = model_ref(name, &format!("logits_{q}"));
        let f32_lowering = RuntimeOptions {
            lowering: Lowering::F32,
            ..common::runtime()
        };
        let exact = check_against(&dir, &r, &f32_lowering, 1e-4);
        let kernels = check_against(&dir, &r, &common::runtime(), 5e-4);
        eprintln!("{name} --quantize {q}: f32 lowering {exact:.2e}, kernels {kernels:.2e}");
    }
}

/// `--quantize q4_k` writes the blocks `edgebench quantize --type Q4_K` writes into a GGUF:
/// both round with the same quantizer (rows of 64 values are shorter than a super-block of
/// 256, so both take llama.cpp's Q5_0 fallback), so the two imports give the same logits.
#[test]
fn quantize_q4_k_at_import_equals_the_requantized_gguf() {
    let name = "llama-gqa";
    let (_a, from_hf) = hf(name, &["--quantize", "q4_k"]);
    let m = ModelManifest::load(&from_hf).unwrap();
    assert!(m.provenance.contains("--quantize q4_k"), "{}", m.provenance);
    let tmp = tempfile::tempdir().unwrap();
    let requantized = tmp.path().join("q4_k.gguf");
    let o = common::edgebench(
        &common::repo(),
        &[
            "quantize",
            fixtures().join(format!("{name}.gguf")).to_str().unwrap(),
            "--type",
            "Q4_K",
            "--out",
            requantized.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", common::text(&o));
    let (_b, from_gguf) = import("gguf", &requantized, &[]);
    let r = model_ref(name, "logits");
    let all: Vec<u32> = r.ids.iter().chain(&r.greedy).copied().collect();
    let a = decoder(&from_hf).logits(&all).unwrap();
    let b = decoder(&from_gguf).logits(&all).unwrap();
    let diff = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, common::worse);
    assert!(
        diff <= 1e-5,
        "import hf --quantize q4_k vs quantize Q4_K: {diff}"
    );
    // and the rounding stays as near the f32 reference as Q4_0's does
    let err = check(&from_hf, name, 6.0);
    eprintln!("{name} --quantize q4_k: max |diff| to f32 {err:.4}");
}

/// What the rounding itself costs against the f32 reference (transformers shows the same on
/// the rounded weights: these random tiny models amplify weight noise). Measured max |logit
/// diff| (logits within about ±6): Q8_0 0.18-0.27, Q4_0 3.2-4.9; the bounds are 1.25x those.
#[test]
fn quantized_imports_stay_near_the_f32_reference() {
    for (q, tol) in [("q8_0", 0.35f32), ("q4_0", 6.0)] {
        for name in MODELS {
            let (_tmp, dir) = hf(name, &["--quantize", q]);
            let m = ModelManifest::load(&dir).unwrap();
            assert!(m.matmul.contains(&q.to_uppercase()), "{}", m.matmul);
            assert!(m.provenance.contains(&format!("--quantize {q}")));
            let err = check(&dir, name, tol);
            eprintln!("{name} --quantize {q}: max |diff| {err:.4}");
        }
    }
}

#[test]
fn bert_folders_import_through_hf_as_through_bert() {
    let tmp = tempfile::tempdir().unwrap();
    let ck = tmp.path().join("bert");
    common::synth_bert::write_checkpoint(&ck, &common::synth_bert::tensors());
    let cfg = ck.join("config.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    v["architectures"] = serde_json::json!(["BertModel"]);
    std::fs::write(&cfg, v.to_string()).unwrap();
    let (_a, via_hf) = import("hf", &ck, &[]);
    let (_b, via_bert) = import("bert", &ck, &[]);
    let graph = |d: &Path| std::fs::read(d.join("model.onnx")).unwrap();
    assert_eq!(graph(&via_hf), graph(&via_bert));
    assert_eq!(
        ModelManifest::load(&via_hf).unwrap().architecture,
        "encoder"
    );
    // an encoder is not quantized at import
    let o = common::edgebench(
        &common::repo(),
        &[
            "import",
            "hf",
            ck.to_str().unwrap(),
            "--out",
            tmp.path().join("q").to_str().unwrap(),
            "--quantize",
            "q8_0",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", common::text(&o));
    assert!(
        common::text(&o).contains("BertModel"),
        "{}",
        common::text(&o)
    );
}

#[test]
fn load_time_rewrites_fuse_every_layer_with_biases_and_scaled_rope() {
    // Qwen2's biased projections and Llama 3's scaled RoPE tables keep the fast paths:
    // attention, RoPE and norms fused, every linear layer (7 a layer and the head) on EbDense
    for name in ["qwen2-untied", "llama3-tied"] {
        let (_tmp, dir) = hf(name, &[]);
        common::written_and_fused(&dir, 2, 4, 5, 15);
    }
}
