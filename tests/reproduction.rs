//! The committed reproduction (`reports/paper/reproduction/`): its tables and
//! report render again, byte for byte, from the runs it publishes
//! (`edgebench paper --from`), and the per-suite scores those tables are
//! computed from are the ones in each run's own `metrics.csv`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn committed_reproduction_renders_again_from_its_own_runs() {
    let repo = common::repo();
    let folder = repo.join("reports/paper/reproduction");
    let tmp = tempfile::tempdir().unwrap();
    let again = tmp.path().join("again");
    let o = common::edgebench(
        &repo,
        &[
            "paper",
            "--from",
            folder.to_str().unwrap(),
            "--out",
            again.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", common::text(&o));

    let tables = files(&folder.join("tables"));
    assert_eq!(
        tables.len(),
        15,
        "Tables 1-5 as md, csv and tex: {tables:?}"
    );
    assert_eq!(tables, files(&again.join("tables")));
    for name in &tables {
        let committed = std::fs::read_to_string(folder.join("tables").join(name)).unwrap();
        let rendered = std::fs::read_to_string(again.join("tables").join(name)).unwrap();
        assert_eq!(committed, rendered, "tables/{name} differs from its runs");
    }
    for name in ["report.md", "audit.md", "runs.json"] {
        let committed = std::fs::read_to_string(folder.join(name)).unwrap();
        let rendered = std::fs::read_to_string(again.join(name)).unwrap();
        assert_eq!(committed, rendered, "{name} differs from its runs");
    }
}

#[test]
fn committed_scores_are_the_runs_metrics() {
    let folder = common::repo().join("reports/paper/reproduction");
    let index: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(folder.join("runs.json")).unwrap()).unwrap();
    assert!(
        index.len() >= 6,
        "GEM, its three ablations and two baselines"
    );
    for entry in index {
        let run = folder.join("runs").join(entry["run"].as_str().unwrap());
        let snap: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run.join("paper-inputs.json")).unwrap())
                .unwrap();
        let mut csv = csv::Reader::from_path(run.join("metrics.csv")).unwrap();
        let header = csv.headers().unwrap().clone();
        let col = |name: &str| header.iter().position(|h| h == name).unwrap();
        let (suite, metric, value) = (col("suite"), col("metric"), col("value"));
        let mut from_csv = BTreeMap::new();
        for row in csv.records() {
            let row = row.unwrap();
            let v: f64 = row[value].parse().unwrap_or(f64::NAN);
            from_csv.insert((row[suite].to_string(), row[metric].to_string()), v);
        }
        let mut from_snapshot = BTreeMap::new();
        for s in snap["suites"].as_array().unwrap() {
            for m in s["metrics"].as_array().unwrap() {
                let v = m[1]["value"].as_f64().unwrap_or(f64::NAN);
                from_snapshot.insert(
                    (
                        s["suite"].as_str().unwrap().to_string(),
                        m[0].as_str().unwrap().to_string(),
                    ),
                    v,
                );
            }
        }
        assert_eq!(
            from_csv.keys().collect::<Vec<_>>(),
            from_snapshot.keys().collect::<Vec<_>>(),
            "{}",
            run.display()
        );
        for (k, v) in &from_csv {
            let w = from_snapshot[k];
            assert!(
                (v.is_nan() && w.is_nan()) || (v - w).abs() <= 1e-12 * v.abs().max(1.0),
                "{}: {k:?} metrics.csv {v} vs paper-inputs.json {w}",
                run.display()
            );
        }
        assert!(run.join("run.json").is_file() && run.join("perf.json").is_file());
    }
}
