//! `gem build --from-pretrained`: GEM assembled from a Llama GGUF (pathways)
//! and a BERT checkpoint (router). Synthetic checkpoints check the assembly
//! exactly; the real SmolLM2 + MiniLM run when ../shared/models exists.

mod common;

use common::{synth_bert, synth_llama};
use edgebench::gem::build::Variant;
use edgebench::gem::pretrained::{self, Pretrained};
use edgebench::gem::GemConfig;
use edgebench::model::decoder::TractDecoder;
use edgebench::model::manifest::ModelManifest;
use edgebench::model::{llama, Model};
use std::path::{Path, PathBuf};

/// A config whose dimensions fit the synthetic checkpoints.
fn synthetic_config(tau: f32, scar: bool) -> GemConfig {
    let text = format!(
        r#"
name = "gem-synthetic"
max_context = 16
[router]
layers = {rl}
hidden = {rh}
heads = {rheads}
ffn = {rf}
bits = 8
tau = {tau}
[pathways]
layers = {pl}
hidden = {ph}
heads = {pheads}
kv_heads = {kv}
ffn = {pf}
domain_bits = 4
general_bits = 8
block_size = 32
rope_base = {base}
[scar]
enabled = {scar}
k = 3
iterations = 4
[output]
bits = 8
"#,
        rl = synth_bert::LAYERS,
        rh = synth_bert::D,
        rheads = synth_bert::H,
        rf = synth_bert::FF,
        pl = synth_llama::LAYERS,
        ph = synth_llama::D,
        pheads = synth_llama::H,
        kv = synth_llama::KV,
        pf = synth_llama::FFN,
        base = synth_llama::BASE,
    );
    let cfg: GemConfig = toml::from_str(&text).unwrap();
    cfg.validate(Path::new("synthetic.toml")).unwrap();
    cfg
}

/// Synthetic GGUF and BERT checkpoint in a temp dir: (gguf path, bert dir).
fn checkpoints(dir: &Path) -> (PathBuf, PathBuf) {
    let gguf = dir.join("synthetic.gguf");
    std::fs::write(&gguf, synth_llama::synthetic_gguf(true)).unwrap();
    let bert = dir.join("bert");
    synth_bert::write_checkpoint(&bert, &synth_bert::tensors());
    (gguf, bert)
}

fn load(dir: &Path) -> TractDecoder {
    TractDecoder::load(
        dir,
        &ModelManifest::load(dir).unwrap(),
        "test",
        &common::runtime(),
    )
    .unwrap()
}

#[test]
fn with_every_token_general_the_assembled_pathway_is_the_llama_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let (gguf, bert) = checkpoints(tmp.path());
    // tau = 1: no domain probability exceeds it, every token takes the general
    // pathway, whose attention is then plain causal attention; without
    // quantization the graph must compute exactly the imported Llama.
    let cfg = synthetic_config(1.0, false);
    let mut src = Pretrained::open(&cfg, Path::new("synthetic.toml"), &gguf, &bert).unwrap();
    let gem_dir = tmp.path().join("gem-no-quant");
    pretrained::materialize(&cfg, Variant::NoQuant, &gem_dir, &mut src, "synthetic").unwrap();
    let ref_dir = tmp.path().join("llama");
    llama::import_gguf(&gguf, &ref_dir, 16, true).unwrap();
    let gem = load(&gem_dir);
    let reference = load(&ref_dir);
    let ids: Vec<u32> = "the cat sat".bytes().map(u32::from).collect();
    let (a, b) = (gem.logits(&ids).unwrap(), reference.logits(&ids).unwrap());
    assert_eq!(a.len(), b.len());
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, common::worse);
    assert!(worst < 1e-4, "max |GEM - Llama| = {worst}");
    let mut m = gem;
    m.loglikelihood("the cat", &[" sat".to_string()]).unwrap();
    let routes = m.take_routes();
    assert!(
        routes.iter().all(|r| r.chars().all(|c| c == '8')),
        "{routes:?}"
    );
}

#[test]
fn routes_come_from_the_bert_router_and_never_look_ahead() {
    let tmp = tempfile::tempdir().unwrap();
    let (gguf, bert) = checkpoints(tmp.path());
    let cfg = synthetic_config(0.0, true);
    let mut src = Pretrained::open(&cfg, Path::new("synthetic.toml"), &gguf, &bert).unwrap();
    // a domain head that spreads the router's rows over the domains
    let d = synth_bert::D;
    let mut rng = synth_llama::Rng(0x243f6a8885a308d3);
    let w: Vec<f32> = (0..8 * d).map(|_| rng.next() * 10.0).collect();
    src.set_router_head((w, vec![0.0; 8]));
    let dir = tmp.path().join("gem");
    pretrained::materialize(&cfg, Variant::Full, &dir, &mut src, "synthetic").unwrap();
    let manifest = ModelManifest::load(&dir).unwrap();
    assert_eq!(
        manifest.router_tokenizer.as_deref(),
        Some(pretrained::ROUTER_TOKENIZER)
    );
    assert!(manifest.provenance.contains("NOT the paper's trained GEM"));
    let mut m = load(&dir);
    let short = "the cat sat on";
    let long = "the cat sat on the mat";
    m.rolling_loglikelihood(short).unwrap();
    let a = m.take_routes().concat();
    m.rolling_loglikelihood(long).unwrap();
    let b = m.take_routes().concat();
    assert!(b.starts_with(&a), "routes of a prefix changed: {a} vs {b}");
    let distinct: std::collections::BTreeSet<char> = b.chars().collect();
    assert!(distinct.len() >= 2, "one route only: {b}");
    assert!(b.chars().all(|c| c.is_ascii_digit() && c != '9'), "{b}");
    let ll = m.loglikelihood("the cat", &[" sat".into()]).unwrap();
    assert!(ll[0].logprob.is_finite() && ll[0].logprob < 0.0);
}

#[test]
fn checkpoints_that_do_not_fit_the_config_name_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let (gguf, bert) = checkpoints(tmp.path());
    let mut cfg = synthetic_config(0.7, true);
    cfg.pathways.hidden = 32;
    let e = Pretrained::open(&cfg, Path::new("my.toml"), &gguf, &bert)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("my.toml") && e.contains("pathways.hidden") && e.contains("64"),
        "{e}"
    );
    let mut cfg = synthetic_config(0.7, true);
    cfg.router.heads = 2;
    let e = Pretrained::open(&cfg, Path::new("my.toml"), &gguf, &bert)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("router.heads"), "{e}");
    let mut cfg = synthetic_config(0.7, true);
    cfg.pathways.layers = synth_llama::LAYERS + 1;
    let e = Pretrained::open(&cfg, Path::new("my.toml"), &gguf, &bert)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("pathways.layers"), "{e}");
    // a truncated GGUF is refused with its path
    let bytes = std::fs::read(&gguf).unwrap();
    let cut = tmp.path().join("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let cfg = synthetic_config(0.7, true);
    let e = Pretrained::open(&cfg, Path::new("my.toml"), &cut, &bert)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("cut.gguf"), "{e}");
}

fn shared_models() -> Option<PathBuf> {
    let p = common::repo().join("../shared/models");
    if p.join("smollm2-135m-instruct").is_dir() && p.join("all-minilm-l6-v2").is_dir() {
        Some(p)
    } else {
        eprintln!("skipping: ../shared/models not found (SmolLM2 and MiniLM live there)");
        None
    }
}

/// The real checkpoints: the general pathway alone (dense attention)
/// reproduces SmolLM2's perplexity; the full GEM (first 4 layers, to keep the test short) runs
/// through `edgebench run` and logs its routes.
#[test]
fn smollm2_and_minilm_assemble_into_a_gem_that_edgebench_runs() {
    let Some(models) = shared_models() else {
        return;
    };
    let Some(data) = common::shared_data() else {
        return;
    };
    let repo = common::repo();
    let tmp = tempfile::tempdir().unwrap();
    let gguf = models.join("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    let bert = models.join("all-minilm-l6-v2");
    // `gem build --from-pretrained` of `variant` from a config edited by `edit`
    let build = |name: &str, edit: (&str, &str), variant: &str| {
        let cfg = tmp.path().join(format!("{name}.toml"));
        std::fs::write(&cfg, pretrained::CONFIG.replace(edit.0, edit.1)).unwrap();
        let out = tmp.path().join(name);
        let o = common::edgebench(
            &repo,
            &[
                "gem",
                "build",
                "--from-pretrained",
                "--config",
                cfg.to_str().unwrap(),
                "--pathways-gguf",
                gguf.to_str().unwrap(),
                "--router-bert",
                bert.to_str().unwrap(),
                "--variants",
                variant,
                "--sentences-per-domain",
                "24",
                "--data-dir",
                data.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
        );
        let text = common::text(&o);
        assert!(o.status.success(), "{text}");
        (out, text)
    };
    // SCAR is not a drop-in for a pretrained model's dense attention (it
    // sends this perplexity into the thousands), so this build turns it off
    let (_, text) = build("gem", ("enabled = true", "enabled = false"), "no-router");
    assert!(
        text.contains("held-out") && text.contains("not the paper's trained GEM"),
        "{text}"
    );
    let fit: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join("gem-no-router/router-fit.json")).unwrap(),
    )
    .unwrap();
    let acc = fit["sentence_accuracy"].as_f64().unwrap();
    let majority = fit["majority_baseline"].as_f64().unwrap();
    assert!(
        acc > majority + 0.2,
        "routing accuracy {acc} vs majority {majority}"
    );
    let mut m = load(&tmp.path().join("gem-no-router"));
    let r = m
        .rolling_loglikelihood("The history of the city begins in the twelfth century, when a small market grew up around a bridge over the river. Merchants came from the surrounding villages to sell grain, wool and livestock.")
        .unwrap();
    let ppl = (-r.logprob / r.tokens as f64).exp();
    eprintln!("assembled GEM, general pathway only: perplexity {ppl:.2}");
    assert!(ppl > 2.0 && ppl < 40.0, "perplexity {ppl}");

    // the full model, on the first 4 layers of SmolLM2
    let (out4, _) = build("gem4", ("layers = 30", "layers = 4"), "full");
    let runs = tmp.path().join("runs");
    let o = common::edgebench(
        &repo,
        &[
            "run",
            "--model",
            out4.to_str().unwrap(),
            "--suites",
            "pubmedqa",
            "--limit",
            "2",
            "--bootstrap",
            "50",
            "--quiet",
            "--run-id",
            "gem4",
            "--data-dir",
            data.to_str().unwrap(),
            "--out",
            runs.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", common::text(&o));
    let summary = std::fs::read_to_string(runs.join("runs/gem4/summary.md")).unwrap();
    assert!(summary.contains("public checkpoints"), "{summary}");
    assert!(summary.to_lowercase().contains("route"), "{summary}");
}

/// The synthetic GEM with a domain head that spreads tokens over pathways.
fn spread(dir: &Path, cfg: &GemConfig, v: Variant, gguf: &Path, bert: &Path) -> TractDecoder {
    let mut src = Pretrained::open(cfg, Path::new("synthetic.toml"), gguf, bert).unwrap();
    let d = synth_bert::D;
    let mut rng = synth_llama::Rng(0x243f6a8885a308d3);
    let w: Vec<f32> = (0..8 * d).map(|_| rng.next() * 10.0).collect();
    src.set_router_head((w, vec![0.0; 8]));
    pretrained::materialize(cfg, v, dir, &mut src, "synthetic").unwrap();
    load(dir)
}

#[test]
fn sparse_dispatch_and_its_cache_match_the_dense_masked_graph() {
    use edgebench::gem::config::Dispatch;
    let tmp = tempfile::tempdir().unwrap();
    let (gguf, bert) = checkpoints(tmp.path());
    // 16 tokens: the synthetic config's whole context
    let ids: Vec<u32> = "the cat sat on a".bytes().map(u32::from).collect();
    for v in Variant::ALL {
        let mut cfg = synthetic_config(0.3, true);
        let mut run = |d: Dispatch| {
            cfg.dispatch = d;
            let dir = tmp.path().join(format!("{d:?}{}", v.suffix()));
            let mut m = spread(&dir, &cfg, v, &gguf, &bert);
            let logits = m.logits(&ids).unwrap();
            let routes = m.take_routes();
            (m, logits, routes)
        };
        let (sparse, ls, rs) = run(Dispatch::Sparse);
        let (_, ld, rd) = run(Dispatch::Dense);
        assert_eq!(rs, rd, "{v:?}: routes");
        if v != Variant::NoRouter {
            // the router's attention over its KV cache runs fused
            let note = &sparse.info().matmul;
            assert!(note.contains("fused into EbAttention"), "{note}");
            let distinct: std::collections::BTreeSet<char> = rs[0].chars().collect();
            assert!(distinct.len() >= 2, "routes must spread: {rs:?}");
        }
        let worst = common::max_rel(&ld, &ls);
        assert!(worst < 1e-5, "{v:?}: sparse vs dense {worst}");
        // the KV cache (router keys, values and states included) gives the
        // full recomputation's logits when attention is not clustered
        if v == Variant::NoScar {
            for prefill in [1, 6] {
                let stepwise = sparse.logits_stepwise(&ids, prefill).unwrap();
                let worst = common::max_rel(&ls, &stepwise);
                assert!(worst < 1e-5, "prefill {prefill}: cached vs full {worst}");
            }
        }
    }
}
