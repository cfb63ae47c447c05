//! MobileBERT checkpoints (and a sentence-transformers BERT folder) imported
//! by `edgebench import` and run by tract, against transformers' outputs;
//! bad checkpoints refused; a run with an imported MobileBERT filling the
//! paper's MobileBERT row.
//!
//! The tiny random checkpoints and their `reference.json` under
//! `tests/fixtures/reference-models/encoders/` come from
//!     python3 tools/make-reference-encoders.py
//! (transformers 5.25, torch 2.15 on CPU, sentence-transformers 6.3): each
//! sentence encoded alone, `last_hidden_state` and the mean-pooled and CLS
//! vectors. Tolerance: 3e-5 absolute on every value (hidden states of
//! magnitude up to 17 for the NoNorm model; the largest difference measured
//! is 9e-6, with portable kernels), through the graph as written and as
//! loaded with EdgeBench's rewrites, alone and in a padded batch.

mod common;

use edgebench::model::{self, bert, manifest::ModelManifest, mobilebert, tokenizer::Tok, Rewrites};
use serde_json::Value;
use std::path::{Path, PathBuf};
use tract_onnx::prelude::*;

/// Largest absolute difference allowed against transformers.
const TOL: f32 = 3e-5;

fn fixture(name: &str) -> PathBuf {
    common::repo()
        .join("tests/fixtures/reference-models/encoders")
        .join(name)
}

struct Sentence {
    text: String,
    ids: Vec<u32>,
    /// `[seq][hidden]`
    hidden: Vec<Vec<f32>>,
    /// The pooled vector the folder asks for, L2-normalised.
    pooled: Vec<f32>,
    /// SentenceTransformer.encode's vector, L2-normalised, where there is one.
    st: Option<Vec<f32>>,
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn normalised(v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / n).collect()
}

fn reference(dir: &Path) -> (String, Vec<Sentence>) {
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    let pooling = r["pooling"].as_str().unwrap().to_string();
    let rows = r["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| Sentence {
            text: s["text"].as_str().unwrap().into(),
            ids: s["input_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect(),
            hidden: s["last_hidden_state"]
                .as_array()
                .unwrap()
                .iter()
                .map(floats)
                .collect(),
            pooled: normalised(floats(&s[pooling.as_str()])),
            st: s
                .get("sentence_transformers")
                .map(|v| normalised(floats(v))),
        })
        .collect();
    (pooling, rows)
}

fn diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, common::worse)
}

/// Imports `fixture` with `edgebench import <kind>` into `tmp/<out>`.
fn import(tmp: &Path, kind: &str, src: &Path, out: &str) -> PathBuf {
    let out = tmp.join(out);
    let o = common::edgebench(
        tmp,
        &[
            "import",
            kind,
            src.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", common::text(&o));
    out
}

/// Runs `plan` on sentences padded into one batch; returns both outputs as
/// (`sentence_embedding` rows, `last_hidden_state` `[batch][seq][hidden]`).
#[allow(clippy::type_complexity)]
fn run_batch(
    plan: &Arc<TypedRunnableModel>,
    seqs: &[&[u32]],
) -> (Vec<Vec<f32>>, Vec<Vec<Vec<f32>>>) {
    let (b, s) = (seqs.len(), seqs.iter().map(|x| x.len()).max().unwrap());
    let mut ids = vec![0i64; b * s];
    let mut mask = vec![0i64; b * s];
    for (i, q) in seqs.iter().enumerate() {
        for (j, &t) in q.iter().enumerate() {
            ids[i * s + j] = t as i64;
            mask[i * s + j] = 1;
        }
    }
    let out = plan
        .run(tvec!(
            Tensor::from_shape(&[b, s], &ids).unwrap().into_tvalue(),
            Tensor::from_shape(&[b, s], &mask).unwrap().into_tvalue()
        ))
        .unwrap();
    let emb = out[0].to_plain_array_view::<f32>().unwrap();
    let hid = out[1].to_plain_array_view::<f32>().unwrap();
    let d = emb.shape()[1];
    assert_eq!(hid.shape(), &[b, s, d]);
    let emb: Vec<f32> = emb.iter().copied().collect();
    let hid: Vec<f32> = hid.iter().copied().collect();
    (
        emb.chunks(d).map(|c| c.to_vec()).collect(),
        hid.chunks(s * d)
            .map(|r| r.chunks(d).map(|c| c.to_vec()).collect())
            .collect(),
    )
}

/// Imports one reference folder and checks tokens, hidden states and
/// sentence embeddings against transformers, alone and in a padded batch,
/// through the written graph, the loaded one (with the load-time rewrites
/// `fused`) and `Model::embed`; returns the largest error seen.
fn check_reference(kind: &str, name: &str, want_name: &str, fused: Rewrites) -> f32 {
    let src = fixture(name);
    let (pooling, refs) = reference(&src);
    let tmp = tempfile::tempdir().unwrap();
    let out = import(tmp.path(), kind, &src, "model");
    let manifest = ModelManifest::load(&out).unwrap();
    assert_eq!(manifest.name, want_name);
    assert_eq!(manifest.architecture, "encoder");
    assert!(manifest.capabilities.embed && !manifest.capabilities.generate);
    assert!(
        manifest
            .provenance
            .contains(&format!("{pooling} pooling, L2-normalised")),
        "{}",
        manifest.provenance
    );
    let tok = Tok::load(&out.join("tokenizer.json")).unwrap();
    for r in &refs {
        assert_eq!(
            tok.encode_with_specials(&r.text).unwrap(),
            r.ids,
            "{}",
            r.text
        );
    }
    let plain = edgebench::ops::onnx()
        .model_for_path(out.join("model.onnx"))
        .unwrap()
        .into_typed()
        .unwrap()
        .into_runnable()
        .unwrap();
    let loaded = model::load_graph(&out, &manifest, &common::runtime()).unwrap();
    // every attention, LayerNorm and linear layer on EdgeBench's ops
    assert_eq!(loaded.rewrites, fused, "{name}");
    let mut worst = 0f32;
    for plan in [&plain, &loaded.plan] {
        // alone
        for r in &refs {
            let (emb, hid) = run_batch(plan, &[&r.ids]);
            for (p, want) in hid[0].iter().zip(&r.hidden) {
                worst = common::worse(worst, diff(p, want));
            }
            worst = common::worse(worst, diff(&emb[0], &r.pooled));
        }
        // padded together: the padding changes no real position
        let seqs: Vec<&[u32]> = refs.iter().map(|r| r.ids.as_slice()).collect();
        let (emb, hid) = run_batch(plan, &seqs);
        for (i, r) in refs.iter().enumerate() {
            for (p, want) in hid[i].iter().zip(&r.hidden) {
                worst = common::worse(worst, diff(p, want));
            }
            worst = common::worse(worst, diff(&emb[i], &r.pooled));
        }
    }
    let mut enc = model::load(out.to_str().unwrap(), tmp.path(), &common::runtime()).unwrap();
    let texts: Vec<String> = refs.iter().map(|r| r.text.clone()).collect();
    for (e, r) in enc.embed(&texts).unwrap().iter().zip(&refs) {
        worst = common::worse(worst, diff(e, &r.pooled));
        if let Some(st) = &r.st {
            worst = common::worse(worst, diff(e, st));
        }
    }
    eprintln!("{name}: largest difference from transformers {worst:.2e}");
    assert!(worst < TOL, "{name}: differs from transformers by {worst}");
    worst
}

fn rewrites(attention: usize, norm: usize, dense: usize) -> Rewrites {
    Rewrites {
        attention,
        rope: 0,
        norm,
        dense,
    }
}

#[test]
fn mobilebert_nonorm_maskedlm_matches_transformers() {
    // MobileBertForMaskedLM (`mobilebert.` prefix, MLM head ignored), NoNorm,
    // ReLU, trigram input, shared key/query bottleneck, 4 FFNs, mean pooling
    // linear layers: per layer 2 bottlenecks, q, k, v, output, 3 x 2 FFN
    // products, the last FFN's 2 and the output bottleneck; plus the
    // embedding projection. NoNorm is no normalisation to fuse.
    let fused = rewrites(2, 0, 2 * 15 + 1);
    check_reference(
        "mobilebert",
        "mobilebert-nonorm",
        "mobilebert-nonorm",
        fused,
    );
}

#[test]
fn mobilebert_layernorm_sentence_transformers_cls_matches() {
    // LayerNorm with layer_norm_eps = 0.05 beside PyTorch's default 1e-5 in
    // the embedding and output norms, GELU, bottlenecked attention inputs,
    // 2 FFNs, CLS pooling from 1_Pooling/config.json
    // norms: per layer the bottleneck's, attention output's, FFN's, output's
    // and output bottleneck's, plus the embeddings'
    let fused = rewrites(2, 2 * 5 + 1, 2 * 10 + 1);
    check_reference(
        "mobilebert",
        "mobilebert-layernorm",
        "mobilebert-layernorm",
        fused,
    );
}

#[test]
fn mobilebert_without_bottleneck_or_trigram_matches() {
    let fused = rewrites(2, 2 * 2 + 1, 2 * 6 + 1);
    check_reference("mobilebert", "mobilebert-plain", "mobilebert-plain", fused);
}

#[test]
fn bert_sentence_transformers_folder_keeps_its_cls_pooling() {
    check_reference(
        "bert",
        "bert-cls",
        "bert-cls",
        rewrites(2, 2 * 2 + 1, 2 * 6),
    );
}

#[test]
fn import_hf_dispatches_mobilebert_classes_to_the_same_graph() {
    // `import hf` reads `architectures` and writes what `import mobilebert` writes
    let tmp = tempfile::tempdir().unwrap();
    for name in ["mobilebert-nonorm", "mobilebert-layernorm"] {
        let src = fixture(name);
        let a = import(tmp.path(), "mobilebert", &src, &format!("{name}-a"));
        let b = import(tmp.path(), "hf", &src, &format!("{name}-b"));
        for f in ["model.onnx", "tokenizer.json"] {
            assert!(
                std::fs::read(a.join(f)).unwrap() == std::fs::read(b.join(f)).unwrap(),
                "{name}: {f} differs between import mobilebert and import hf"
            );
        }
    }
}

/// A copy of the reference folder `name` under `tmp/<to>`.
fn copy_fixture(name: &str, tmp: &Path, to: &str) -> PathBuf {
    let src = fixture(name);
    let dst = tmp.join(to);
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
        }
    }
    dst
}

#[test]
fn the_model_name_says_mobilebert() {
    let tmp = tempfile::tempdir().unwrap();
    // a folder named like a hub snapshot gets the family in front
    let ckpt = copy_fixture("mobilebert-plain", tmp.path(), "3f1c2a");
    let m = mobilebert::import_mobilebert(&ckpt, &tmp.path().join("out")).unwrap();
    assert_eq!(m.name, "mobilebert-3f1c2a");
    assert_eq!(
        mobilebert::model_name(Path::new("/m/google--MobileBERT-uncased")),
        "google--MobileBERT-uncased"
    );
}

fn edit_json(path: &Path, f: impl FnOnce(&mut serde_json::Map<String, Value>)) {
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    f(v.as_object_mut().unwrap());
    std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

/// Rewrites `model.safetensors` in `dir` through `f` (name, shape, data).
fn edit_tensors(
    dir: &Path,
    f: impl Fn(&str, Vec<usize>, Vec<u8>) -> Option<(Vec<usize>, Vec<u8>)>,
) {
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let kept: Vec<(String, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .filter_map(|(n, t)| {
            let (s, d) = f(&n, t.shape().to_vec(), t.data().to_vec())?;
            Some((n, s, d))
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = kept
        .iter()
        .map(|(n, s, d)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d)
                    .unwrap(),
            )
        })
        .collect();
    std::fs::write(&path, safetensors::tensor::serialize(views, None).unwrap()).unwrap();
}

#[test]
fn bad_checkpoints_exit_2_naming_file_and_field_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let refuse = |ckpt: &Path, want: &[&str]| {
        let out = tmp.path().join("out");
        let o = common::edgebench(
            tmp.path(),
            &[
                "import",
                "mobilebert",
                ckpt.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
        );
        let text = common::text(&o);
        assert_eq!(o.status.code(), Some(2), "{text}");
        for w in want {
            assert!(text.contains(w), "`{w}` not in: {text}");
        }
        assert!(!out.exists(), "{} written: {text}", out.display());
        let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    };
    let fresh = |to: &str| copy_fixture("mobilebert-nonorm", tmp.path(), to);

    let c = fresh("no-key");
    edit_json(&c.join("config.json"), |m| {
        m.remove("embedding_size");
    });
    refuse(&c, &["config.json", "missing field `embedding_size`"]);

    let c = fresh("no-bottleneck-size");
    edit_json(&c.join("config.json"), |m| {
        m.remove("intra_bottleneck_size");
    });
    refuse(&c, &["config.json", "`intra_bottleneck_size` is missing"]);

    let c = fresh("bad-norm");
    edit_json(&c.join("config.json"), |m| {
        m.insert("normalization_type".into(), "batch_norm".into());
    });
    refuse(
        &c,
        &["config.json", "`normalization_type` = \"batch_norm\""],
    );

    let c = fresh("bad-act");
    edit_json(&c.join("config.json"), |m| {
        m.insert("hidden_act".into(), "swish".into());
    });
    refuse(&c, &["config.json", "`hidden_act` = \"swish\""]);

    let c = fresh("wrong-size");
    edit_json(&c.join("config.json"), |m| {
        m.insert("intermediate_size".into(), 40.into());
    });
    refuse(
        &c,
        &[
            "config.json",
            "tensor `encoder.layer.0.ffn.0.intermediate.dense.weight`",
            "[24, 16]",
            "`intermediate_size` = 40",
        ],
    );

    let c = fresh("trigram-off");
    edit_json(&c.join("config.json"), |m| {
        m.insert("trigram_input".into(), false.into());
    });
    refuse(
        &c,
        &[
            "embeddings.embedding_transformation.weight",
            "`embedding_size` = 16",
        ],
    );

    let c = fresh("fewer-layers");
    edit_json(&c.join("config.json"), |m| {
        m.insert("num_hidden_layers".into(), 1.into());
    });
    refuse(
        &c,
        &[
            "config.json",
            "`num_hidden_layers` = 1",
            "mobilebert.encoder.layer.1.",
        ],
    );

    let c = fresh("missing-tensor");
    edit_tensors(&c, |n, s, d| {
        (n != "mobilebert.encoder.layer.1.ffn.2.output.dense.bias").then_some((s, d))
    });
    refuse(
        &c,
        &[
            "model.safetensors",
            "tensor `encoder.layer.1.ffn.2.output.dense.bias` is missing",
        ],
    );

    let c = fresh("wrong-shape");
    edit_tensors(&c, |n, s, d| match n {
        "mobilebert.embeddings.position_embeddings.weight" => Some((vec![32, 64], d)),
        _ => Some((s, d)),
    });
    refuse(
        &c,
        &[
            "embeddings.position_embeddings.weight",
            "[32, 64]",
            "`max_position_embeddings` = 64, `hidden_size` = 32",
        ],
    );

    let c = fresh("wrong-tokenizer");
    edit_json(&c.join("config.json"), |m| {
        m.insert("vocab_size".into(), 300.into());
    });
    refuse(&c, &["tokenizer.json", "127 tokens"]);

    // a failed import leaves an earlier model directory as it was
    let good = fixture("mobilebert-nonorm");
    let out = import(tmp.path(), "mobilebert", &good, "kept");
    let before = std::fs::read(out.join("model.onnx")).unwrap();
    let c = fresh("bad-again");
    edit_json(&c.join("config.json"), |m| {
        m.insert("num_feedforward_networks".into(), 0.into());
    });
    let o = common::edgebench(
        tmp.path(),
        &[
            "import",
            "mobilebert",
            c.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    let text = common::text(&o);
    assert_eq!(o.status.code(), Some(2), "{text}");
    assert!(text.contains("`num_feedforward_networks` = 0"), "{text}");
    assert_eq!(std::fs::read(out.join("model.onnx")).unwrap(), before);
}

fn pooling_of(files: &[(&str, &str)]) -> Result<bert::Pooling, String> {
    let tmp = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let p = tmp.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    bert::read_pooling(tmp.path()).map_err(|e| e.to_string())
}

#[test]
fn pooling_follows_the_sentence_transformers_module_in_both_formats() {
    use bert::Pooling::{Cls, Mean};
    assert_eq!(pooling_of(&[]), Ok(Mean));
    // the pre-6 flags, as all-MiniLM-L6-v2 ships them
    let flags = |cls: bool, mean: bool, max: bool| {
        format!(
            r#"{{"word_embedding_dimension": 32, "pooling_mode_cls_token": {cls},
                "pooling_mode_mean_tokens": {mean}, "pooling_mode_max_tokens": {max},
                "pooling_mode_mean_sqrt_len_tokens": false}}"#
        )
    };
    let cfg = "1_Pooling/config.json";
    assert_eq!(pooling_of(&[(cfg, &flags(false, true, false))]), Ok(Mean));
    assert_eq!(pooling_of(&[(cfg, &flags(true, false, false))]), Ok(Cls));
    let e = pooling_of(&[(cfg, &flags(false, false, true))]).unwrap_err();
    assert!(
        e.contains("1_Pooling/config.json") && e.contains("`pooling_mode_max_tokens` is true"),
        "{e}"
    );
    let e = pooling_of(&[(cfg, &flags(true, true, false))]).unwrap_err();
    assert!(e.contains("2 pooling modes at once"), "{e}");
    let e = pooling_of(&[(cfg, r#"{"pooling_mode": "lasttoken"}"#)]).unwrap_err();
    assert!(e.contains("`pooling_mode` = \"lasttoken\""), "{e}");
    // modules.json says where the pooling module lives
    let modules = r#"[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "pool", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]"#;
    assert_eq!(
        pooling_of(&[
            ("modules.json", modules),
            ("pool/config.json", r#"{"pooling_mode": "cls"}"#),
            (cfg, r#"{"pooling_mode": "mean"}"#),
        ]),
        Ok(Cls)
    );
    // a projection after pooling would change the embedding: refused
    let dense = r#"[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}]"#;
    let e = pooling_of(&[("modules.json", dense)]).unwrap_err();
    assert!(
        e.contains("modules.json") && e.contains("sentence_transformers.models.Dense"),
        "{e}"
    );
}

#[test]
fn a_run_of_an_imported_mobilebert_fills_the_papers_mobilebert_row() {
    let tmp = tempfile::tempdir().unwrap();
    let model = import(
        tmp.path(),
        "mobilebert",
        &fixture("mobilebert-nonorm"),
        "model",
    );
    let reports = tmp.path().join("reports");
    let root = common::repo();
    let ok = |args: &[&str]| {
        let o = common::edgebench(tmp.path(), args);
        let text = common::text(&o);
        assert!(o.status.success(), "edgebench {args:?}:\n{text}");
        text
    };
    ok(&[
        "run",
        "--model",
        model.to_str().unwrap(),
        "--suites",
        "xtreme-tatoeba",
        "--bootstrap",
        "100",
        "--run-id",
        "mb",
        "--quiet",
        "--out",
        reports.to_str().unwrap(),
        "--suites-dir",
        root.join("suites").to_str().unwrap(),
        "--data-dir",
        root.join("fixtures").to_str().unwrap(),
    ]);
    let paper = tmp.path().join("paper");
    let printed = ok(&[
        "paper",
        "--runs",
        "mb",
        "--runs-root",
        reports.to_str().unwrap(),
        "--out",
        paper.to_str().unwrap(),
        "--reported",
        root.join("reports/paper/reported.toml").to_str().unwrap(),
    ]);
    eprintln!("{printed}");
    let t3 = std::fs::read_to_string(paper.join("tables/table3.md")).unwrap();
    eprintln!("{t3}");
    let row = t3
        .lines()
        .find(|l| l.starts_with("| MobileBERT | Parameters (M) |"))
        .unwrap_or_else(|| panic!("no MobileBERT parameters row:\n{t3}"));
    assert!(row.contains("mobilebert-nonorm"), "{row}");
    assert!(!row.contains("not measured"), "{row}");
}
