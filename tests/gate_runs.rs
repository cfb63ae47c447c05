//! The gate over real runs of the real binary: a rerun of the same model
//! passes, a degraded twin (perturbed weights) fails with exit 1 and a JUnit
//! failure, mismatched suites are refused with exit 2, and
//! --update-baseline makes the candidate the new reference.

mod common;
use common::{edgebench, repo, text};
use std::path::Path;

const SUITES: &str = "commonsenseqa,personachat-ppl,dapt-lm-news,dapt-lm-cs";

fn run(out: &Path, model: &str, id: &str, suites: &str) {
    let o = edgebench(
        &repo(),
        &[
            "run",
            "--quiet",
            "--model",
            model,
            "--suites",
            suites,
            "--run-id",
            id,
            "--out",
            out.to_str().unwrap(),
            "--bootstrap",
            "300",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
}

fn gate(out: &Path, base: &str, cand: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "gate",
        "--baseline",
        base,
        "--candidate",
        cand,
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    edgebench(&repo(), &args)
}

#[test]
fn rerun_passes_degraded_twin_fails_and_mismatch_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path();
    let degraded = out.join("tiny-perturbed");
    edgebench::model::tiny::materialize_perturbed(&degraded, 4.0, 9).unwrap();
    run(out, "builtin:tiny", "base", SUITES);
    run(out, "builtin:tiny", "again", SUITES);
    run(out, degraded.to_str().unwrap(), "worse", SUITES);

    let o = gate(out, "base", "again", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("gate: PASS"));

    let o = gate(out, "base", "worse", &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("REGRESSION"));
    let junit = std::fs::read_to_string(out.join("gate/worse/junit.xml")).unwrap();
    assert!(junit.contains("<failure"), "{junit}");
    assert!(junit.contains("perplexity"));
    let md = std::fs::read_to_string(out.join("gate/worse/gate.md")).unwrap();
    assert!(md.contains("FAIL"));

    // a run over other suites is refused unless --allow-mismatch
    run(out, "builtin:tiny", "other", "commonsenseqa");
    let o = gate(out, "base", "other", &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--allow-mismatch"));
    let o = gate(out, "base", "other", &["--allow-mismatch"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // deliberately accepting the degraded model as the new baseline
    let baseline = out.join("baselines/default");
    let b = baseline.to_str().unwrap();
    assert!(gate(out, b, "worse", &["--update-baseline"])
        .status
        .success());
    let o = gate(out, b, "worse", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn repository_baseline_is_a_complete_run_of_the_default_model() {
    let b = repo().join("reports/baselines/default");
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(b.join("run.json")).unwrap()).unwrap();
    assert_eq!(m["model"]["source"], "builtin:tiny");
    assert_eq!(m["state"], "complete");
    assert_eq!(m["suites"].as_array().unwrap().len(), 47);
    assert!(repo().join("reports/baselines/gate.toml").is_file());
}
