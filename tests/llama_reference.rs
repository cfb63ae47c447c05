//! A synthetic Llama GGUF (F32, Q8_0 and Q4_1 tensors) imported to ONNX and
//! run by tract, against a plain Rust forward pass written the llama.cpp way:
//! "normal" RoPE rotating adjacent pairs on the permuted Q/K rows as stored.

mod common;

use edgebench::model::decoder::TractDecoder;
use edgebench::model::gguf::Gguf;
use edgebench::model::manifest::ModelManifest;
use edgebench::model::{llama, Model};

use common::synth_llama::*;

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

/// The synthetic GGUF (`quantized_file`: Q4/Q8 tensors, else f32) written
/// to a temporary directory and imported (`dequantize`: as f32): the
/// directory, the GGUF's path and the model directory.
fn imported(
    quantized_file: bool,
    dequantize: bool,
) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("synthetic.gguf");
    std::fs::write(&src, synthetic_gguf(quantized_file)).unwrap();
    let out = tmp.path().join("model");
    llama::import_gguf(&src, &out, 64, dequantize).unwrap();
    (tmp, src, out)
}

fn check(quantized_file: bool, keep_quantized: bool) {
    let (_tmp, src, out) = imported(quantized_file, !keep_quantized);
    let bytes = std::fs::read(&src).unwrap();
    let dec = TractDecoder::load(
        &out,
        &ModelManifest::load(&out).unwrap(),
        "test",
        &common::runtime(),
    )
    .unwrap();
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
        TractDecoder::load(dir, &m, "test", &common::runtime())
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
            .fold(0f32, common::worse);
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

#[test]
fn attention_fusion_replaces_every_layer_and_keeps_the_logits() {
    use edgebench::ops::attention::fuse_graph;
    use tract_onnx::prelude::*;
    let (_tmp, _, out) = imported(false, true);
    let onnx = edgebench::ops::onnx();
    let proto = onnx.proto_model_for_path(out.join("model.onnx")).unwrap();
    let mut fused = proto.clone();
    assert_eq!(fuse_graph(fused.graph.as_mut().unwrap()), LAYERS);
    // nothing left to fuse, and the fused graph has 10 nodes fewer per layer minus the new one
    assert_eq!(fuse_graph(fused.graph.as_mut().unwrap()), 0);
    let nodes = |p: &tract_onnx::pb::ModelProto| p.graph.as_ref().unwrap().node.len();
    assert_eq!(nodes(&proto) - nodes(&fused), 9 * LAYERS);
    // the written graph, not optimised, against the fused one after tract's optimisation;
    // a prefill of 11 tokens (sgemm path), then one decode step on its cache (direct loops)
    let (plain, fast) =
        common::written_and_fused(&out, LAYERS, 2 * LAYERS, 2 * LAYERS + 1, 7 * LAYERS + 1);
    // SiLU (Sigmoid and Mul as written) went into the gate products' EbDense
    let sigmoids = |p: &TypedRunnableModel| {
        p.model()
            .nodes
            .iter()
            .filter(|n| ["Sigmoid", "Silu"].contains(&n.op().name().as_ref()))
            .count()
    };
    assert_eq!(sigmoids(&plain), LAYERS, "SiLU as written");
    assert_eq!(sigmoids(&fast), 0, "SiLU left after the fusion");
    // each layer's two residual connections and SwiGLU's product went into products
    assert_eq!(
        common::dense_then(&fast, "Add"),
        2 * LAYERS,
        "residuals fused"
    );
    assert_eq!(
        common::dense_then(&fast, "Mul"),
        LAYERS,
        "SwiGLU products fused"
    );
    let run = |plan: &std::sync::Arc<TypedRunnableModel>, ids: &[i64], past: Vec<TValue>| {
        let mut inputs: TVec<TValue> = tvec!(Tensor::from_shape(&[1, ids.len()], ids)
            .unwrap()
            .into_tvalue());
        inputs.extend(past);
        plan.run(inputs).unwrap()
    };
    let empty: Vec<TValue> = (0..2 * LAYERS)
        .map(|_| Tensor::zero::<f32>(&[1, KV, 0, HD]).unwrap().into_tvalue())
        .collect();
    let ids: Vec<i64> = b"edge bench!".iter().map(|&b| b as i64).collect();
    let (a, b) = (run(&plain, &ids, empty.clone()), run(&fast, &ids, empty));
    let step = |o: &TVec<TValue>| o.iter().skip(2).cloned().collect::<Vec<_>>();
    let (a2, b2) = (run(&plain, &[33], step(&a)), run(&fast, &[33], step(&b)));
    for (x, y) in a.iter().zip(b.iter()).chain(a2.iter().zip(b2.iter())) {
        let err = common::max_diff(x, y);
        assert!(err < 1e-4, "fused and written graphs differ by {err}");
    }
}

#[test]
fn bench_model_times_the_fused_and_unfused_attention_in_one_run() {
    let (tmp, src, out) = imported(true, false);
    let bench = |extra: &[&str]| {
        let mut args = vec!["bench", "model", "--model", out.to_str().unwrap()];
        args.extend([
            "--prompt-tokens",
            "8",
            "--decode-tokens",
            "2",
            "--repeats",
            "1",
        ]);
        args.extend(extra);
        common::edgebench(&common::repo(), &args)
    };
    let o = bench(&["--compare-unfused"]);
    assert!(o.status.success(), "{}", common::text(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table.contains(&format!(
            "attention: {LAYERS} layers fused into EbAttention"
        )),
        "{table}"
    );
    let value = |m: &str| {
        table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(m))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{m} missing from\n{table}"))
    };
    assert!(value("decode_speedup_vs_unfused") > 0.0);
    assert!(value("prefill_speedup_vs_unfused") > 0.0);
    // the kernels' packed copies are what a decode step reads
    assert!(value("weight_bytes_read_per_token") > 0.0);
    // --profile: time per op for the prefill and the decode steps, every node counted once per pass
    let o = bench(&["--profile"]);
    assert!(o.status.success(), "{}", common::text(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    for phase in ["prefill of 8 tokens", "decode step after 8 tokens"] {
        let section = text
            .split("\nprofile: ")
            .find(|s| s.starts_with(phase))
            .unwrap_or_else(|| panic!("profile: {phase} missing from\n{text}"));
        let calls = |op: &str| -> f64 {
            section
                .lines()
                .find(|l| l.split_whitespace().next() == Some(op))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{op} missing from\n{section}"))
        };
        assert_eq!(calls("EbAttention"), LAYERS as f64, "{section}");
        // the query's and the key's RoPE in every layer, their transposes
        // to heads-first inside it: only the value's and the output's are left
        assert_eq!(calls("EbRope"), 2.0 * LAYERS as f64, "{section}");
        assert_eq!(calls("MoveAxis"), 2.0 * LAYERS as f64, "{section}");
        assert!(section.contains("slowest nodes:"), "{section}");
    }
    // llama.cpp comparisons name what is wrong
    let o = bench(&[
        "--llama-bench",
        "/nonexistent/llama-bench",
        "--gguf",
        src.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        common::text(&o).contains("/nonexistent/llama-bench"),
        "{}",
        common::text(&o)
    );
    let other = tmp.path().join("other.gguf");
    std::fs::write(&other, b"GGUF").unwrap();
    let o = bench(&[
        "--llama-bench",
        "/nonexistent/llama-bench",
        "--gguf",
        other.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", common::text(&o));
    assert!(common::text(&o).contains("not the file this model was imported from"));
}

#[test]
fn two_threads_score_a_text_as_one_does() {
    // the same perplexity through every multithreaded path a pass takes
    // (quantized and f32 kernels, attention, norms, the spinning worker)
    let (tmp, _, out) = imported(true, false);
    let text = tmp.path().join("text.txt");
    std::fs::write(
        &text,
        "edge bench measures small models on small devices. ".repeat(8),
    )
    .unwrap();
    let ppl = |threads: &str| -> f64 {
        let o = common::edgebench(
            &common::repo(),
            &[
                "perplexity",
                "--model",
                out.to_str().unwrap(),
                "--text",
                text.to_str().unwrap(),
                "--ctx",
                "48",
                "--threads",
                threads,
            ],
        );
        assert!(o.status.success(), "{}", common::text(&o));
        let s = String::from_utf8_lossy(&o.stdout);
        s.split_whitespace()
            .skip_while(|w| *w != "perplexity")
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no perplexity in {s}"))
    };
    let (one, two) = (ppl("1"), ppl("2"));
    assert!(one.is_finite() && one > 1.0, "{one}");
    assert!(
        (one - two).abs() <= 1e-4 * one,
        "1 thread {one}, 2 threads {two}"
    );
}
