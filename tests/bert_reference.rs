//! A synthetic BERT checkpoint (safetensors + config.json + tokenizer.json)
//! imported to ONNX and run by tract, against a plain Rust forward pass.

mod common;

use edgebench::model::bert;
use std::collections::BTreeMap;

use common::synth_bert::*;

fn layer_norm(x: &[f64], g: &[f32], b: &[f32]) -> Vec<f64> {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    x.iter()
        .enumerate()
        .map(|(i, v)| (v - mean) / (var + 1e-12).sqrt() * g[i] as f64 + b[i] as f64)
        .collect()
}

fn dense(t: &BTreeMap<String, (Vec<usize>, Vec<f32>)>, name: &str, x: &[f64]) -> Vec<f64> {
    let (s, w) = &t[&format!("{name}.weight")];
    let b = &t[&format!("{name}.bias")].1;
    (0..s[0])
        .map(|o| {
            b[o] as f64
                + (0..s[1])
                    .map(|i| w[o * s[1] + i] as f64 * x[i])
                    .sum::<f64>()
        })
        .collect()
}

fn erf(x: f64) -> f64 {
    // Abramowitz-Stegun 7.1.26 is too coarse; integrate the series instead (|x| is small here)
    let mut sum = 0.0;
    let mut term = x;
    let mut n = 0.0;
    while term.abs() > 1e-17 && n < 200.0 {
        sum += term / (2.0 * n + 1.0);
        n += 1.0;
        term *= -x * x / n;
    }
    2.0 / std::f64::consts::PI.sqrt() * sum
}

fn reference(t: &BTreeMap<String, (Vec<usize>, Vec<f32>)>, ids: &[usize]) -> Vec<f32> {
    let g = |n: &str| &t[n].1;
    let mut xs: Vec<Vec<f64>> = ids
        .iter()
        .enumerate()
        .map(|(p, &i)| {
            let e: Vec<f64> = (0..D)
                .map(|d| {
                    g("embeddings.word_embeddings.weight")[i * D + d] as f64
                        + g("embeddings.position_embeddings.weight")[p * D + d] as f64
                        + g("embeddings.token_type_embeddings.weight")[d] as f64
                })
                .collect();
            layer_norm(
                &e,
                g("embeddings.LayerNorm.weight"),
                g("embeddings.LayerNorm.bias"),
            )
        })
        .collect();
    let hd = D / H;
    for l in 0..LAYERS {
        let p = |s: &str| format!("encoder.layer.{l}.{s}");
        let q: Vec<Vec<f64>> = xs
            .iter()
            .map(|x| dense(t, &p("attention.self.query"), x))
            .collect();
        let k: Vec<Vec<f64>> = xs
            .iter()
            .map(|x| dense(t, &p("attention.self.key"), x))
            .collect();
        let v: Vec<Vec<f64>> = xs
            .iter()
            .map(|x| dense(t, &p("attention.self.value"), x))
            .collect();
        let mut next = Vec::new();
        for i in 0..xs.len() {
            let mut ctx = vec![0f64; D];
            for h in 0..H {
                let s: Vec<f64> = (0..xs.len())
                    .map(|j| {
                        (0..hd)
                            .map(|d| q[i][h * hd + d] * k[j][h * hd + d])
                            .sum::<f64>()
                            / (hd as f64).sqrt()
                    })
                    .collect();
                let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = s.iter().map(|x| (x - m).exp()).sum();
                for j in 0..xs.len() {
                    for d in 0..hd {
                        ctx[h * hd + d] += (s[j] - m).exp() / z * v[j][h * hd + d];
                    }
                }
            }
            let o = dense(t, &p("attention.output.dense"), &ctx);
            let r: Vec<f64> = xs[i].iter().zip(&o).map(|(a, b)| a + b).collect();
            let x1 = layer_norm(
                &r,
                g(&p("attention.output.LayerNorm.weight")),
                g(&p("attention.output.LayerNorm.bias")),
            );
            let f: Vec<f64> = dense(t, &p("intermediate.dense"), &x1)
                .iter()
                .map(|v| 0.5 * v * (1.0 + erf(v / 2f64.sqrt())))
                .collect();
            let f = dense(t, &p("output.dense"), &f);
            let r: Vec<f64> = x1.iter().zip(&f).map(|(a, b)| a + b).collect();
            next.push(layer_norm(
                &r,
                g(&p("output.LayerNorm.weight")),
                g(&p("output.LayerNorm.bias")),
            ));
        }
        xs = next;
    }
    let mean: Vec<f64> = (0..D)
        .map(|d| xs.iter().map(|x| x[d]).sum::<f64>() / xs.len() as f64)
        .collect();
    let norm = mean.iter().map(|v| v * v).sum::<f64>().sqrt();
    mean.iter().map(|v| (v / norm) as f32).collect()
}

#[test]
fn synthetic_bert_matches_the_reference_forward_pass_batched_or_not() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tensors();
    let ckpt = tmp.path().join("ckpt");
    write_checkpoint(&ckpt, &t);
    let out = tmp.path().join("model");
    bert::import_bert(&ckpt, &out).unwrap();
    let mut m =
        edgebench::model::load(out.to_str().unwrap(), tmp.path(), &common::runtime()).unwrap();
    let texts = vec![
        "The cat sat on the mat".to_string(),
        "a dog".to_string(),
        "cats".to_string(),
    ];
    let got = m.embed(&texts).unwrap();
    // [CLS]=2 ... [SEP]=3; "cats" = cat ##s
    let ids = [
        vec![2, 4, 5, 6, 7, 4, 8, 3],
        vec![2, 9, 10, 3],
        vec![2, 5, 11, 3],
    ];
    for (g, ids) in got.iter().zip(&ids) {
        let want = reference(&t, ids);
        let max = g
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, common::worse);
        assert!(max < 1e-4, "embedding differs from the reference by {max}");
    }
    let alone = m.embed(&texts[1..2]).unwrap();
    let max = alone[0]
        .iter()
        .zip(&got[1])
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, common::worse);
    assert!(max < 1e-5);
}

#[test]
fn a_checkpoint_whose_shapes_do_not_fit_its_config_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut t = tensors();
    t.insert(
        "encoder.layer.1.intermediate.dense.weight".into(),
        (vec![FF, D + 1], vec![0.0; FF * (D + 1)]),
    );
    let ckpt = tmp.path().join("ckpt");
    write_checkpoint(&ckpt, &t);
    let err = bert::import_bert(&ckpt, &tmp.path().join("m")).expect_err("must refuse");
    assert!(
        err.to_string()
            .contains("encoder.layer.1.intermediate.dense.weight"),
        "{err}"
    );
}

/// The synthetic checkpoint written and imported under `tmp`; the model directory.
fn imported(tmp: &tempfile::TempDir) -> std::path::PathBuf {
    let ckpt = tmp.path().join("ckpt");
    write_checkpoint(&ckpt, &tensors());
    let out = tmp.path().join("model");
    bert::import_bert(&ckpt, &out).unwrap();
    out
}

#[test]
fn attention_fusion_replaces_every_layer_and_keeps_padded_batches_exact() {
    use tract_onnx::prelude::*;
    let tmp = tempfile::tempdir().unwrap();
    let out = imported(&tmp);
    let (plain, fast) = common::written_and_fused(&out, LAYERS, 0, 2 * LAYERS + 1, 6 * LAYERS);
    // the heads' transposes went into EbAttention (it reads and writes rows-first)
    let moves = |p: &TypedRunnableModel| {
        p.model()
            .nodes
            .iter()
            .filter(|n| n.op().name() == "MoveAxis")
            .count()
    };
    // q, k, v, k transposed, and the output back to rows
    assert_eq!(moves(&plain), 5 * LAYERS, "the written graph's transposes");
    assert_eq!(moves(&fast), 0, "transposes left after the fusion");
    // GELU went into the intermediate products' EbDense, once per layer
    let ops = |p: &TypedRunnableModel, name: &str| {
        p.model()
            .nodes
            .iter()
            .filter(|n| n.op().name() == name)
            .count()
    };
    let gelu = |p: &TypedRunnableModel| ops(p, "GeluExact") + ops(p, "Erf");
    assert_eq!(
        gelu(&plain),
        LAYERS,
        "GELU as written (tract's fused op or Erf)"
    );
    assert_eq!(gelu(&fast), 0, "GELU left after the fusion");
    // both residual connections of each layer went into the products before them
    assert_eq!(
        common::dense_then(&fast, "Add"),
        2 * LAYERS,
        "residuals fused"
    );
    // two rows, the second padded after 3 tokens: the [b, 1, 1, t] mask must hide its padding
    let ids: Vec<i64> = vec![2, 4, 5, 6, 7, 4, 8, 3, 2, 9, 3, 0, 0, 0, 0, 0];
    let mask: Vec<i64> = vec![1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0];
    let inputs = || -> TVec<TValue> {
        tvec!(
            Tensor::from_shape(&[2, 8], &ids).unwrap().into_tvalue(),
            Tensor::from_shape(&[2, 8], &mask).unwrap().into_tvalue()
        )
    };
    let (a, b) = (plain.run(inputs()).unwrap(), fast.run(inputs()).unwrap());
    for (x, y) in a.iter().zip(b.iter()) {
        let err = common::max_diff(x, y);
        assert!(err < 1e-5, "fused and written graphs differ by {err}");
    }
}

#[test]
fn bench_model_times_an_encoder_alone_and_with_tokenisation() {
    let tmp = tempfile::tempdir().unwrap();
    let out = imported(&tmp);
    let o = common::edgebench(
        &common::repo(),
        &[
            "bench",
            "model",
            "--model",
            out.to_str().unwrap(),
            "--repeats",
            "1",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", common::text(&o));
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    for batch in [1, 32] {
        let model_only = rows
            .iter()
            .find(|r| {
                r["metric"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(&format!("batch_{batch}_x_")))
            })
            .unwrap_or_else(|| panic!("no model-only row for batch {batch}: {rows:?}"));
        assert_eq!(model_only["unit"], "sentences/s (p50, model only)");
        let end_to_end = rows
            .iter()
            .find(|r| r["metric"] == format!("batch_{batch}_end_to_end"))
            .unwrap_or_else(|| panic!("no end-to-end row for batch {batch}: {rows:?}"));
        for r in [model_only, end_to_end] {
            assert!(r["value"].as_f64().unwrap() > 0.0, "{r}");
        }
    }
}
