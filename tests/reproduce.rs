//! `edgebench reproduce` end to end on the bundled fixtures with the tiny
//! models (and MiniLM from ../shared/models, so it skips without it): every
//! role of the paper's tables gets a run and a per-domain performance run,
//! no table cell reads "no run", and a second invocation finds every step
//! done.

mod common;

use std::path::Path;

fn reproduce(repo: &Path, out: &Path, models: &Path) -> std::process::Output {
    reproduce_with(repo, out, models, &[])
}

fn reproduce_with(repo: &Path, out: &Path, models: &Path, extra: &[&str]) -> std::process::Output {
    let fixtures = repo.join("fixtures");
    let mut args = vec![
        "reproduce",
        "--tiny",
        "--data-dir",
        fixtures.to_str().unwrap(),
        "--models",
        models.to_str().unwrap(),
        "--limit",
        "2",
        "--perf-min-queries",
        "64",
        "--perf-min-duration",
        "0",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(extra);
    common::edgebench(repo, &args)
}

/// `reproduce --shard I/N` runs one shard of every evaluation and nothing
/// else; `reproduce` without it then merges the shards, measures
/// performance and renders the tables.
#[test]
fn reproduce_in_shards_merges_them_before_the_tables() {
    let Some(minilm) = common::shared_model("all-minilm-l6-v2") else {
        return;
    };
    let models = minilm.parent().unwrap();
    let repo = common::repo();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("reports");
    for s in ["1/2", "2/2"] {
        let o = reproduce_with(&repo, &out, models, &["--shard", s]);
        assert!(o.status.success(), "{}", common::text(&o));
        assert!(!out.join("paper").exists(), "a shard renders no tables");
    }
    let runs = out.join("runs");
    assert!(runs.join("repro-gem-shard-2-of-2/run.json").is_file());
    assert!(!runs.join("repro-gem").exists());
    let last = reproduce(&repo, &out, models);
    let text = common::text(&last);
    assert!(last.status.success(), "{text}");
    assert!(
        text.contains("step: edgebench merge repro-gem-shard-*"),
        "{text}"
    );
    for id in ["repro-gem", "repro-tiny", "repro-minilm"] {
        let m = edgebench::record::RunDir::open(&out, id)
            .unwrap()
            .load_manifest()
            .unwrap();
        assert_eq!(m.state, "complete", "{id}");
        assert_eq!(m.merged_from.len(), 2, "{id}");
        assert!(runs.join(id).join("perf.json").is_file(), "{id}");
    }
    let header = std::fs::read_to_string(out.join("paper/reproduction/README.md")).unwrap();
    assert!(
        header.contains("complete, merged from 2 shards"),
        "{header}"
    );
    let t2 = std::fs::read_to_string(out.join("paper/reproduction/tables/table2.md")).unwrap();
    assert!(!t2.contains("no run"), "{t2}");
}

#[test]
fn reproduce_fills_every_role_and_resumes_as_done() {
    let Some(minilm) = common::shared_model("all-minilm-l6-v2") else {
        return;
    };
    let models = minilm.parent().unwrap();
    let repo = common::repo();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("reports");
    let first = reproduce(&repo, &out, models);
    assert!(first.status.success(), "{}", common::text(&first));

    let ids = [
        "repro-gem",
        "repro-gem-no-scar",
        "repro-gem-no-quant",
        "repro-gem-no-router",
        "repro-tiny",
        "repro-minilm",
    ];
    for id in ids {
        let dir = out.join("runs").join(id);
        let run: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
        assert_eq!(run["state"], "complete", "{id}");
        assert_eq!(run["limit"], 2, "{id}");
        assert!(
            dir.join("perf.json").is_file(),
            "{id} has its performance run"
        );
    }
    let tables = out.join("paper/reproduction/tables");
    for t in 1..=5 {
        let md = std::fs::read_to_string(tables.join(format!("table{t}.md"))).unwrap();
        assert!(
            !md.contains("no run"),
            "table {t}: every role has a run:\n{md}"
        );
    }
    // Table 3's latency of the three models comes from their perf runs
    let t3 = std::fs::read_to_string(tables.join("table3.md")).unwrap();
    let latency: Vec<&str> = t3.lines().filter(|l| l.contains("| Latency")).collect();
    assert_eq!(latency.len(), 3, "{t3}");
    for l in latency {
        assert!(!l.contains("not measured"), "measured on the host: {l}");
    }

    // Table 1's per-domain latency comes from the GEM run's per-domain perf
    let t1 = std::fs::read_to_string(tables.join("table1.md")).unwrap();
    let rows: Vec<&str> = t1.lines().filter(|l| l.starts_with("| Latency")).collect();
    assert_eq!(rows.len(), 4, "{t1}");
    for l in rows {
        assert!(
            l.contains("per domain") && !l.contains("not measured"),
            "{l}"
        );
    }

    // the report publishes its runs and says how it was made
    let report = out.join("paper/reproduction");
    let header = std::fs::read_to_string(report.join("README.md")).unwrap();
    for id in ids {
        assert!(header.contains(&format!("| `{id}` |")), "{id}:\n{header}");
    }
    assert!(header.contains("--limit 2"), "{header}");
    assert!(header.contains("## Not reproducible"), "{header}");
    for id in ids {
        for f in ["run.json", "metrics.csv", "perf.json", "paper-inputs.json"] {
            assert!(report.join("runs").join(id).join(f).is_file(), "{id}/{f}");
        }
    }
    // and renders again from them alone, byte for byte
    let rendered = tmp.path().join("rendered");
    let o = common::edgebench(
        &repo,
        &[
            "paper",
            "--from",
            report.to_str().unwrap(),
            "--out",
            rendered.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", common::text(&o));
    for t in 1..=5 {
        for ext in ["md", "csv", "tex"] {
            let name = format!("tables/table{t}.{ext}");
            assert_eq!(
                std::fs::read_to_string(report.join(&name)).unwrap(),
                std::fs::read_to_string(rendered.join(&name)).unwrap(),
                "{name}"
            );
        }
    }
    assert_eq!(
        std::fs::read_to_string(report.join("report.md")).unwrap(),
        std::fs::read_to_string(rendered.join("report.md")).unwrap()
    );

    let again = reproduce(&repo, &out, models);
    assert!(again.status.success(), "{}", common::text(&again));
    let text = String::from_utf8_lossy(&again.stdout);
    let steps: Vec<&str> = text.lines().filter(|l| l.starts_with("step: ")).collect();
    assert_eq!(
        steps.len(),
        1,
        "only the tables are rendered again: {steps:?}"
    );
    assert!(steps[0].starts_with("step: edgebench paper "), "{steps:?}");
    for id in ids {
        assert!(text.contains(&format!("done: run {id}\n")), "{id}: {text}");
    }
}

#[test]
fn reproduce_without_its_data_is_bad_input() {
    let repo = common::repo();
    let tmp = tempfile::tempdir().unwrap();
    let o = common::edgebench(
        &repo,
        &[
            "reproduce",
            "--tiny",
            "--data-dir",
            tmp.path().join("absent").to_str().unwrap(),
            "--out",
            tmp.path().to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", common::text(&o));
    assert!(common::text(&o).contains("absent"), "{}", common::text(&o));
}
