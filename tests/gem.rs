//! GEM graphs built by `edgebench gem build`: every variant loads in tract and
//! gives the same numbers before and after optimisation, the ablations differ
//! as they should, routing decisions reach the records and reports, the
//! router head can be fitted, and bad configs name the field at fault.

mod common;
use common::{edgebench, repo, text};
use edgebench::gem::{self, GemConfig, Variant};
use edgebench::model::Model;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::DimLike;

/// Runs a GEM graph on `ids` from an empty cache (every `past_*` input
/// with its `past` axis at 0).
fn outputs(model: TypedModel, ids: &[i64]) -> TVec<TValue> {
    let mut inputs = tvec!(Tensor::from_shape(&[1, ids.len()], ids)
        .unwrap()
        .into_tvalue());
    for ix in 1..model.inputs.len() {
        let fact = model.input_fact(ix).unwrap();
        let shape: Vec<usize> = fact
            .shape
            .iter()
            .map(|d| d.to_usize().unwrap_or(0))
            .collect();
        inputs.push(
            Tensor::zero_dt(fact.datum_type, &shape)
                .unwrap()
                .into_tvalue(),
        );
    }
    model.into_runnable().unwrap().run(inputs).unwrap()
}

fn floats(v: &TValue) -> Vec<f32> {
    v.to_plain_array_view::<f32>()
        .unwrap()
        .iter()
        .copied()
        .collect()
}

#[test]
fn every_variant_loads_and_optimisation_keeps_its_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = gem::tiny_config();
    let ids: Vec<i64> = b"The court held that the contract was void. "
        .iter()
        .map(|&b| b as i64)
        .collect();
    let mut logits = Vec::new();
    for v in Variant::ALL {
        let dir = tmp.path().join(format!("gem{}", v.suffix()));
        let r = gem::materialize_seeded(&cfg, v, &dir).unwrap();
        assert!(r.weight_bytes > 0);
        let m = edgebench::ops::onnx()
            .model_for_path(dir.join("model.onnx"))
            .unwrap();
        let plain = outputs(m.clone().into_typed().unwrap(), &ids);
        let opt = outputs(m.into_optimized().unwrap(), &ids);
        let (a, b) = (floats(&plain[0]), floats(&opt[0]));
        assert_eq!(a.len(), ids.len() * gem::VOCAB);
        for (x, y) in a.iter().zip(&b) {
            assert!(
                (x - y).abs() < 1e-3 * (1.0 + x.abs()),
                "{v:?}: {x} vs {y} after optimisation"
            );
        }
        let route: Vec<i64> = opt[2]
            .to_plain_array_view::<i64>()
            .unwrap()
            .iter()
            .copied()
            .collect();
        assert_eq!(route.len(), ids.len());
        if v == Variant::NoRouter {
            assert!(
                route.iter().all(|&r| r == 8),
                "no router: every token is general"
            );
        } else {
            assert!(route.iter().all(|&r| (0..=8).contains(&r)));
        }
        logits.push((v, a, r.weight_bytes));
    }
    let full = &logits[0];
    for (v, l, bytes) in &logits[1..] {
        assert_ne!(&full.1, l, "{v:?} must change the model's output");
        if *v == Variant::NoQuant {
            assert!(
                *bytes > 3 * full.2,
                "f32 weights are several times the quantized ones"
            );
        }
    }
}

#[test]
fn router_is_causal_so_prefix_routes_do_not_change() {
    let tmp = tempfile::tempdir().unwrap();
    gem::materialize_seeded(&gem::tiny_config(), Variant::Full, tmp.path()).unwrap();
    let m = edgebench::ops::onnx()
        .model_for_path(tmp.path().join("model.onnx"))
        .unwrap()
        .into_optimized()
        .unwrap();
    let ids: Vec<i64> = b"patients with chronic kidney disease"
        .iter()
        .map(|&b| b as i64)
        .collect();
    let all = outputs(m.clone(), &ids);
    let head = outputs(m, &ids[..12]);
    let r_all: Vec<i64> = all[2]
        .to_plain_array_view::<i64>()
        .unwrap()
        .iter()
        .copied()
        .collect();
    let r_head: Vec<i64> = head[2]
        .to_plain_array_view::<i64>()
        .unwrap()
        .iter()
        .copied()
        .collect();
    assert_eq!(&r_all[..12], &r_head[..]);
}

#[test]
fn runs_log_routes_and_reports_show_their_distribution() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().to_str().unwrap();
    let o = edgebench(
        &repo(),
        &[
            "run",
            "--quiet",
            "--model",
            "builtin:gem-tiny",
            "--suites",
            "commonsenseqa,dailydialog-act",
            "--limit",
            "3",
            "--run-id",
            "g",
            "--out",
            out,
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let run = tmp.path().join("runs/g");
    let rec = std::fs::read_to_string(run.join("records/commonsenseqa.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(rec.lines().next().unwrap()).unwrap();
    let routes = first["routes"].as_array().expect("routes logged");
    assert!(!routes.is_empty());
    assert!(routes[0]
        .as_str()
        .unwrap()
        .bytes()
        .all(|b| (b'0'..=b'8').contains(&b)));
    let csv = std::fs::read_to_string(run.join("routes.csv")).unwrap();
    assert!(csv.starts_with("suite,domain,healthcare"));
    assert_eq!(csv.lines().count(), 3);
    let summary = std::fs::read_to_string(run.join("summary.md")).unwrap();
    assert!(summary.contains("GEM routing"));
    let manifest = std::fs::read_to_string(run.join("run.json")).unwrap();
    assert!(manifest.contains("NOT the paper's trained GEM"));
}

#[test]
fn fitted_router_head_reports_held_out_accuracy() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("gem");
    let o = edgebench(
        &repo(),
        &[
            "gem",
            "build",
            "--fit-router",
            "--variants",
            "full,no-scar",
            "--out",
            dir.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("held-out"));
    for d in [dir.clone(), tmp.path().join("gem-no-scar")] {
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.join("router-fit.json")).unwrap())
                .unwrap();
        let acc = r["sentence_accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc));
        assert!(r["heldout_sentences"].as_u64().unwrap() > 0);
        assert!(r["train_tokens"].as_u64().unwrap() > r["train_sentences"].as_u64().unwrap());
    }
    let manifest = std::fs::read_to_string(dir.join("edgebench-model.toml")).unwrap();
    assert!(manifest.contains("fitted by logistic regression"));
}

#[test]
fn bad_configs_name_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let good = std::fs::read_to_string(repo().join("fixtures/gem/gem-tiny.toml")).unwrap();
    for (from, to, field) in [
        ("bits = 6", "bits = 7", "router.bits"),
        ("k = 4", "k = 0", "scar.k"),
        (
            "heads = 2\nffn = 64\nbits = 6",
            "heads = 3\nffn = 64\nbits = 6",
            "router.heads",
        ),
        ("domain_bits = 4", "domain_bits = 1", "pathways.domain_bits"),
        (
            "iterations = 5",
            "iterations = 5\nwindow = 513",
            "scar.window",
        ),
        ("iterations = 5", "iterations = 5\nsinks = -1", "scar.sinks"),
        (
            "iterations = 5",
            "iterations = 5\nrecluster_every = -2",
            "scar.recluster_every",
        ),
        ("[pathways]\n", "[pathways]\ncount = 8\n", "pathways.count"),
    ] {
        assert!(good.contains(from), "fixture changed: {from}");
        let path = tmp.path().join("bad.toml");
        std::fs::write(&path, good.replacen(from, to, 1)).unwrap();
        let err = GemConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains(field), "{err} should name {field}");
        let o = edgebench(
            &repo(),
            &[
                "gem",
                "build",
                "--config",
                path.to_str().unwrap(),
                "--out",
                tmp.path().join("x").to_str().unwrap(),
            ],
        );
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    }
}

/// The tiny GEM with `dispatch` and `scar` settings.
fn tiny(dispatch: gem::config::Dispatch, sinks: i64, window: i64) -> GemConfig {
    let mut cfg = gem::tiny_config();
    cfg.dispatch = dispatch;
    cfg.scar.sinks = sinks;
    cfg.scar.window = window;
    cfg
}

fn decoder(dir: &std::path::Path) -> edgebench::model::decoder::TractDecoder {
    let manifest = edgebench::model::manifest::ModelManifest::load(dir).unwrap();
    edgebench::model::decoder::TractDecoder::load(dir, &manifest, "test", &common::runtime())
        .unwrap()
}

const TEXT: &str = "The court held that the contract was void; the patient took 5 mg daily. ";

#[test]
fn sparse_dispatch_equals_the_dense_masked_graph_in_every_variant() {
    use gem::config::Dispatch;
    let tmp = tempfile::tempdir().unwrap();
    let ids: Vec<u32> = TEXT.bytes().map(u32::from).collect();
    for (sinks, window) in [(0, 0), (2, 4)] {
        for v in Variant::ALL {
            let run = |d: Dispatch| {
                let dir = tmp
                    .path()
                    .join(format!("{d:?}-{sinks}-{window}{}", v.suffix()));
                gem::materialize_seeded(&tiny(d, sinks, window), v, &dir).unwrap();
                let mut m = decoder(&dir);
                let logits = m.logits(&ids).unwrap();
                (logits, m.take_routes())
            };
            let (sparse, routes_s) = run(Dispatch::Sparse);
            let (dense, routes_d) = run(Dispatch::Dense);
            assert_eq!(routes_s, routes_d, "{v:?}: routes");
            let worst = common::max_rel(&dense, &sparse);
            assert!(
                worst < 1e-5,
                "{v:?} s={sinks} w={window}: sparse vs dense {worst}"
            );
            if v == Variant::Full {
                let r = &routes_s[0];
                let distinct: std::collections::BTreeSet<char> = r.chars().collect();
                assert!(
                    distinct.len() >= 3,
                    "routes must spread for the test to mean something: {r}"
                );
            }
        }
    }
}

#[test]
fn cached_decoding_equals_full_recomputation_without_clusters() {
    use gem::config::Dispatch;
    let tmp = tempfile::tempdir().unwrap();
    let ids: Vec<u32> = TEXT.bytes().map(u32::from).collect();
    for v in [Variant::NoScar, Variant::NoRouter] {
        let mut cfg = tiny(Dispatch::Sparse, 0, 0);
        if v == Variant::NoRouter {
            // dense attention inside the general pathway: SCAR with one cluster
            cfg.scar.k = 1;
        }
        let dir = tmp.path().join(format!("gem{}", v.suffix()));
        gem::materialize_seeded(&cfg, v, &dir).unwrap();
        let m = decoder(&dir);
        assert!(m.has_kv_cache());
        let full = m.logits(&ids).unwrap();
        for prefill in [1, 17] {
            let stepwise = m.logits_stepwise(&ids, prefill).unwrap();
            let worst = common::max_rel(&full, &stepwise);
            assert!(
                worst < 1e-5,
                "{v:?} prefill {prefill}: cached vs full {worst}"
            );
        }
    }
}

/// The tiny GEM (one pathway layer) with SCAR re-clustering every
/// `rule` tokens when decoding on its cache.
fn tiny_rule(tmp: &std::path::Path, rule: i64) -> edgebench::model::decoder::TractDecoder {
    let mut cfg = tiny(gem::config::Dispatch::Sparse, 1, 8);
    cfg.scar.recluster_every = rule;
    let dir = tmp.join(format!("gem-r{rule}"));
    gem::materialize_seeded(&cfg, Variant::Full, &dir).unwrap();
    decoder(&dir)
}

#[test]
fn cached_scar_reclustering_every_step_recomputes_each_prefix_exactly() {
    // One pathway layer: what SCAR clusters (the normed embeddings) is the
    // same cached or not, so re-clustering at every step gives each new
    // token exactly what one pass over its prefix gives; clustering the
    // whole window at once (one pass over everything) sees later tokens,
    // which causal decoding cannot. Frozen centroids and re-clustering every
    // 16 tokens differ from the prefix passes.
    let tmp = tempfile::tempdir().unwrap();
    let ids: Vec<u32> = TEXT.repeat(2).bytes().map(u32::from).collect();
    let v = gem::VOCAB;
    let last_rows = |m: &edgebench::model::decoder::TractDecoder| -> Vec<f32> {
        (20..ids.len())
            .flat_map(|i| {
                let l = m.logits(&ids[..=i]).unwrap();
                l[i * v..(i + 1) * v].to_vec()
            })
            .collect()
    };
    for (rule, exact) in [(1, true), (0, false), (16, false)] {
        let m = tiny_rule(tmp.path(), rule);
        let prefixes = last_rows(&m);
        let stepwise = m.logits_stepwise(&ids, 20).unwrap();
        let worst = common::max_rel(&prefixes, &stepwise[20 * v..]);
        if exact {
            assert!(worst < 1e-5, "recluster_every {rule}: {worst}");
        } else {
            assert!(
                worst > 1e-3,
                "recluster_every {rule} should differ: {worst}"
            );
        }
    }
}

#[test]
fn cached_perplexity_equals_one_pass_without_clusters() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("gem-no-scar");
    gem::materialize_seeded(
        &tiny(gem::config::Dispatch::Sparse, 0, 0),
        Variant::NoScar,
        &dir,
    )
    .unwrap();
    let m = decoder(&dir);
    let text = TEXT.repeat(4);
    let p = m.perplexity_chunks(&text, 64, Some(3), true).unwrap();
    assert_eq!(p.tokens, 3 * 31);
    assert!(
        (p.perplexity - p.one_pass).abs() < 1e-4 * p.one_pass,
        "{p:?}"
    );
    let d = p.max_logit_difference.unwrap();
    assert!(d < 1e-4, "{d}");
}

/// One `embedding` graph over `table` (`[rows, cols]`), run on `ids`.
fn embedding_rows(table: &[f32], cols: usize, ids: &[i64]) -> (Vec<f32>, usize) {
    use edgebench::onnx::{encode, Dim, Elem, GraphBuilder};
    let mut g = GraphBuilder::new("embedding");
    g.input("ids", Elem::I64, &[Dim::Fixed(1), Dim::Sym("seq".into())]);
    let out = gem::build::embedding(&mut g, "embed", table, cols, "ids");
    g.output(
        &out,
        Elem::F32,
        &[
            Dim::Fixed(1),
            Dim::Sym("seq".into()),
            Dim::Fixed(cols as i64),
        ],
    );
    let bytes = encode(&g.finish("test", &[]));
    let model = edgebench::ops::onnx()
        .model_for_read(&mut bytes.as_slice())
        .unwrap()
        .into_optimized()
        .unwrap();
    let out = outputs(model, ids);
    // the encoded size: a table stored at 8 bits is about a quarter
    (floats(&out[0]), bytes.len())
}

#[test]
fn q8_exact_embedding_tables_are_stored_as_codes_and_gather_the_same_rows() {
    // a table dequantized from Q8_0 blocks: q * d with d an f16 value
    // (11 significant bits) and max |q| = 127
    let (rows, cols) = (50, 64);
    let mut table = vec![0f32; rows * cols];
    for (b, block) in table.chunks_mut(32).enumerate() {
        let d = (1024 + (b * 37) % 1024) as f32 / (1 << 20) as f32;
        for (i, v) in block.iter_mut().enumerate() {
            let q = ((b * 31 + i * 17) % 255) as i32 - 127;
            *v = q as f32 * d;
        }
        block[b % 32] = 127.0 * d * if b % 2 == 0 { 1.0 } else { -1.0 };
    }
    let (codes, scales) = gem::build::exact_q8(&table, cols).expect("exact");
    assert_eq!((codes.len(), scales.len()), (rows * cols, rows * cols / 32));
    let ids = [3i64, 0, 49, 3, 17];
    let (got, bytes) = embedding_rows(&table, cols, &ids);
    let want: Vec<f32> = ids
        .iter()
        .flat_map(|&i| table[i as usize * cols..(i as usize + 1) * cols].to_vec())
        .collect();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&got), bits(&want), "gathered rows equal to the bit");
    // one value off the grid keeps the f32 table (same rows, four times the bytes)
    let mut off = table.clone();
    off[70] += 1e-4;
    assert!(gem::build::exact_q8(&off, cols).is_none());
    let (got, f32_bytes) = embedding_rows(&off, cols, &ids);
    let want: Vec<f32> = ids
        .iter()
        .flat_map(|&i| off[i as usize * cols..(i as usize + 1) * cols].to_vec())
        .collect();
    assert_eq!(bits(&got), bits(&want));
    assert!(bytes * 3 < f32_bytes, "{bytes} vs {f32_bytes}");
}
