//! End to end: run, interrupt, resume, rescore, replay.

mod common;

use edgebench::record::{Record, RunDir};
use std::collections::BTreeMap;
use std::path::Path;

const SUITES: &str = "commonsenseqa,xtreme-panx,xtreme-tatoeba,dapt-lm-reviews,xtreme-xquad";

fn records(dir: &Path) -> BTreeMap<(String, String), Record> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir.join("records")).unwrap() {
        let p = e.unwrap().path();
        for line in std::fs::read_to_string(&p).unwrap().lines() {
            let mut r: Record = serde_json::from_str(line).unwrap();
            // timings differ between runs; everything else must not
            r.latency_ms = 0.0;
            r.model_ms = r.model_ms.map(|_| 0.0);
            let key = (r.suite.clone(), r.example_id.clone());
            assert!(
                out.insert(key, r).is_none(),
                "an example was recorded twice"
            );
        }
    }
    out
}

#[test]
fn interrupted_run_resumes_without_repeating_or_losing_examples() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().to_str().unwrap();
    let repo = common::repo();
    let full = common::edgebench(
        &repo,
        &[
            "run",
            "--suites",
            SUITES,
            "--quiet",
            "--out",
            out,
            "--run-id",
            "full",
            "--bootstrap",
            "50",
        ],
    );
    assert!(full.status.success(), "{}", common::text(&full));
    let part = common::edgebench(
        &repo,
        &[
            "run",
            "--suites",
            SUITES,
            "--quiet",
            "--out",
            out,
            "--run-id",
            "cut",
            "--stop-after",
            "7",
            "--bootstrap",
            "50",
        ],
    );
    assert_eq!(
        part.status.code(),
        Some(1),
        "an interrupted run is not a success: {}",
        common::text(&part)
    );
    let cut_dir = tmp.path().join("runs/cut");
    assert_eq!(records(&cut_dir).len(), 7);
    let summary = std::fs::read_to_string(cut_dir.join("summary.md")).unwrap();
    assert!(
        summary.contains("INCOMPLETE RUN"),
        "a partial report must say so"
    );
    let resumed = common::edgebench(
        &repo,
        &[
            "run",
            "--suites",
            SUITES,
            "--quiet",
            "--out",
            out,
            "--resume",
            "cut",
            "--bootstrap",
            "50",
        ],
    );
    assert!(resumed.status.success(), "{}", common::text(&resumed));
    let a = records(&tmp.path().join("runs/full"));
    let mut b = records(&cut_dir);
    for r in b.values_mut() {
        r.scores.clear();
    }
    let mut a2 = a.clone();
    for r in a2.values_mut() {
        r.scores.clear();
    }
    assert_eq!(a2, b, "resumed records equal an uninterrupted run's");
}

#[test]
fn killed_process_resumes_from_its_records() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().to_str().unwrap();
    let repo = common::repo();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_edgebench"))
        .args([
            "run",
            "--suites",
            "all",
            "--quiet",
            "--out",
            out,
            "--run-id",
            "killed",
            "--throttle-ms",
            "40",
            "--bootstrap",
            "20",
        ])
        .current_dir(&repo)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let dir = tmp.path().join("runs/killed");
    let t0 = std::time::Instant::now();
    loop {
        if common::record_lines(&dir) >= 10 {
            break;
        }
        assert!(t0.elapsed().as_secs() < 120, "run never produced records");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = records(&dir).len();
    let m = RunDir::open(tmp.path(), "killed")
        .unwrap()
        .load_manifest()
        .unwrap();
    assert_eq!(m.state, "running", "the process was killed mid-run");
    let resumed = common::edgebench(
        &repo,
        &[
            "run",
            "--suites",
            "all",
            "--quiet",
            "--out",
            out,
            "--resume",
            "killed",
            "--bootstrap",
            "20",
        ],
    );
    assert!(resumed.status.success(), "{}", common::text(&resumed));
    let after = records(&dir);
    assert!(after.len() > before);
    let m = RunDir::open(tmp.path(), "killed")
        .unwrap()
        .load_manifest()
        .unwrap();
    assert_eq!(m.state, "complete");
}

#[test]
fn rescore_reproduces_the_metrics_and_replay_scores_gold_outputs_perfectly() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().to_str().unwrap();
    let repo = common::repo();
    let r = common::edgebench(
        &repo,
        &[
            "run",
            "--suites",
            "xtreme-xquad,commonsenseqa",
            "--quiet",
            "--out",
            out,
            "--run-id",
            "r",
            "--bootstrap",
            "100",
        ],
    );
    assert!(r.status.success(), "{}", common::text(&r));
    let dir = tmp.path().join("runs/r");
    let before = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    let rs = common::edgebench(&repo, &["rescore", "r", "--out", out]);
    assert!(rs.status.success(), "{}", common::text(&rs));
    assert_eq!(
        before,
        std::fs::read_to_string(dir.join("metrics.csv")).unwrap()
    );
    for f in [
        "summary.md",
        "results.json",
        "metrics.parquet",
        "plots/domain_scores.png",
        "plots/domain_scores.svg",
        "plots/in_vs_out_of_domain.png",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("results.json")).unwrap()).unwrap();
    assert!(results["results"]["xtreme-xquad"]["squad_f1,none"].is_number());
    assert!(
        results["n-samples"]["commonsenseqa"]["effective"]
            .as_u64()
            .unwrap()
            > 0
    );

    // replay: the gold answers as predictions score 1.0
    let recs = records(&dir);
    let mut lines = String::new();
    for ((suite, id), rec) in &recs {
        if suite == "xtreme-xquad" {
            if let edgebench::data::Gold::Texts { texts } = &rec.gold {
                lines.push_str(&serde_json::json!({"id": id, "text": texts[0]}).to_string());
                lines.push('\n');
            }
        }
    }
    let preds = tmp.path().join("preds.jsonl");
    std::fs::write(&preds, lines).unwrap();
    let s = common::edgebench(
        &repo,
        &[
            "score",
            "--suite",
            "xtreme-xquad",
            "--predictions",
            preds.to_str().unwrap(),
            "--out",
            out,
            "--run-id",
            "replay",
        ],
    );
    let t = common::text(&s);
    assert!(s.status.success(), "{t}");
    assert!(t.contains("squad_f1         1.0000"), "{t}");
}
