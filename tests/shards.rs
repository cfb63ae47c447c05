//! Split runs end to end: shards as concurrent processes of the real binary,
//! `merge` against the same run in one process, a killed shard resumed,
//! merges refused, `--shard auto` from the schedulers' variables, `plan`.

mod common;

use edgebench::record::RunDir;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_edgebench");
/// Suites for the quick checks: a retrieval suite (one unit), generation,
/// multiple choice, language modelling.
const FEW: &str = "commonsenseqa,xtreme-tatoeba,xtreme-xquad,dapt-lm-reviews";

fn cmd(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .current_dir(common::repo())
        .env_remove("EDGEBENCH_DATA")
        .env_remove("EDGEBENCH_SUITES_PATH")
        .env_remove("JOB_COMPLETION_INDEX")
        .env_remove("SLURM_ARRAY_TASK_ID");
    c
}

fn run(args: &[&str]) -> Output {
    cmd(args).output().expect("edgebench runs")
}

fn spawn(args: &[&str]) -> Child {
    cmd(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("edgebench starts")
}

fn ok(o: Output) -> Output {
    assert!(o.status.success(), "{}", common::text(&o));
    o
}

/// The report files of `run`, with the run's start time (the one thing two
/// runs of the same work do not share) replaced by a marker; asserts it
/// occurs exactly once in each file where it is printed.
fn reports(out: &Path, run: &str) -> Vec<(String, String)> {
    let dir = RunDir::open(out, run).unwrap();
    let created = dir.load_manifest().unwrap().created;
    ["metrics.csv", "domains.csv", "results.json", "summary.md"]
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(dir.root.join(f)).unwrap();
            let n = text.matches(created.as_str()).count();
            let expected = usize::from(matches!(f, "results.json" | "summary.md"));
            assert_eq!(n, expected, "{f} of {run} names its start time {n} times");
            (f.to_string(), text.replace(created.as_str(), "<created>"))
        })
        .collect()
}

fn assert_same_reports(a: (&Path, &str), b: (&Path, &str)) {
    for ((f, x), (_, y)) in reports(a.0, a.1).into_iter().zip(reports(b.0, b.1)) {
        assert!(
            x == y,
            "{f} of the merged run differs from the single-process run"
        );
    }
}

/// Three shards of the main job over the bundled fixtures as three
/// concurrent processes; the second is killed mid-way. The merge names its
/// missing units (exit 1); resumed, the shards merge into reports equal to
/// the single-process run's.
#[test]
fn three_concurrent_shards_with_one_killed_and_resumed_merge_into_the_single_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (single, shards) = (tmp.path().join("single"), tmp.path().join("shards"));
    let (single_out, out) = (single.to_str().unwrap(), shards.to_str().unwrap());
    ok(run(&[
        "run", "--quiet", "--out", single_out, "--run-id", "main",
    ]));
    let base = ["run", "--quiet", "--out", out, "--run-id", "main"];
    let mut children: Vec<Child> = ["1/3", "3/3"]
        .iter()
        .map(|s| spawn(&[&base[..], &["--shard", s]].concat()))
        .collect();
    let mut killed = spawn(&[&base[..], &["--shard", "2/3", "--throttle-ms", "40"]].concat());
    let dir = shards.join("runs/main-shard-2-of-3");
    let t0 = std::time::Instant::now();
    while common::record_lines(&dir) < 5 {
        assert!(t0.elapsed().as_secs() < 120, "shard 2 never wrote records");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    killed.kill().unwrap();
    killed.wait().unwrap();
    for c in children.iter_mut() {
        assert!(c.wait().unwrap().success(), "shards 1 and 3 finish");
    }
    let partial = run(&["merge", "main-shard-*", "--run-id", "main", "--out", out]);
    let text = common::text(&partial);
    assert_eq!(partial.status.code(), Some(1), "{text}");
    assert!(
        text.contains("shard 2/3 (") && text.contains("--resume main-shard-2-of-3"),
        "the missing shard is named with how to finish it: {text}"
    );
    assert!(!shards.join("runs/main").exists(), "nothing is written");
    ok(run(&[
        "run",
        "--quiet",
        "--out",
        out,
        "--resume",
        "main-shard-2-of-3",
    ]));
    ok(run(&[
        "merge",
        "main-shard-*",
        "--run-id",
        "main",
        "--out",
        out,
        "--quiet",
    ]));
    assert_same_reports((&single, "main"), (&shards, "main"));
    let m = RunDir::open(&shards, "main")
        .unwrap()
        .load_manifest()
        .unwrap();
    assert_eq!(m.state, "complete");
    assert_eq!(
        m.merged_from,
        [
            "main-shard-1-of-3",
            "main-shard-2-of-3",
            "main-shard-3-of-3"
        ]
    );
    assert!(m.shard.is_none());
    // the gate takes the merged run and refuses a shard
    let gate = |cand: &str| {
        run(&[
            "gate",
            "--baseline",
            "reports/baselines/default",
            "--candidate",
            cand,
            "--out",
            out,
        ])
    };
    ok(gate("main"));
    let refused = gate("main-shard-1-of-3");
    assert_eq!(refused.status.code(), Some(1), "{}", common::text(&refused));
    assert!(common::text(&refused).contains("is shard 1/3 of a split run"));
}

/// The same on the real samples: three concurrent shards at two examples
/// per suite merge into the single-process run's reports.
#[test]
fn shards_over_the_real_samples_merge_into_the_single_run() {
    let Some(data) = common::shared_data() else {
        return;
    };
    let data = data.to_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (single, shards) = (tmp.path().join("single"), tmp.path().join("shards"));
    let common_args = ["run", "--quiet", "--data-dir", data, "--limit", "2"];
    ok(run(&[
        &common_args[..],
        &["--out", single.to_str().unwrap(), "--run-id", "real"],
    ]
    .concat()));
    let out = shards.to_str().unwrap();
    let children: Vec<Child> = (1..=3)
        .map(|i| {
            let s = format!("{i}/3");
            spawn(
                &[
                    &common_args[..],
                    &["--out", out, "--run-id", "real", "--shard", &s],
                ]
                .concat(),
            )
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let dirs: Vec<String> = (1..=3)
        .map(|i| format!("{out}/runs/real-shard-{i}-of-3"))
        .collect();
    let mut args = vec!["merge", "--run-id", "real", "--out", out, "--quiet"];
    args.extend(dirs.iter().map(String::as_str));
    ok(run(&args));
    assert_same_reports((&single, "real"), (&shards, "real"));
}

/// Shards of different runs are refused with exit 2 naming the field of
/// `run.json` that differs; a missing shard is named (exit 1), and
/// `--allow-partial` writes an incomplete run that says so.
#[test]
fn merge_refuses_shards_of_different_runs_and_names_missing_shards() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().to_str().unwrap();
    let shard = |id: &str, s: &str, extra: &[&str]| {
        ok(run(&[
            &[
                "run",
                "--quiet",
                "--out",
                out,
                "--suites",
                FEW,
                "--bootstrap",
                "50",
            ][..],
            &["--run-id", id, "--shard", s],
            extra,
        ]
        .concat()));
    };
    shard("a", "1/3", &[]);
    shard("a", "2/3", &[]);
    shard("a", "3/3", &[]);
    shard("seed", "2/3", &["--seed", "7"]);
    shard("split", "2/2", &[]);
    let suite = tmp.path().join("commonsenseqa.toml");
    let text = std::fs::read_to_string(common::repo().join("suites/commonsenseqa.toml")).unwrap();
    std::fs::write(&suite, text.replace("limit = ", "# changed\nlimit = ")).unwrap();
    shard("suite", "2/3", &["--suite-file", suite.to_str().unwrap()]);
    let runs = |name: &str| format!("{out}/runs/{name}");
    let merge = |parts: &[String], extra: &[&str]| {
        let mut args = vec!["merge", "--out", out, "--run-id", "m", "--quiet"];
        args.extend(parts.iter().map(String::as_str));
        args.extend(extra);
        run(&args)
    };
    let refused = |parts: &[String], field: &str| {
        let o = merge(parts, &[]);
        let t = common::text(&o);
        assert_eq!(o.status.code(), Some(2), "{t}");
        assert!(t.contains(field), "names {field}: {t}");
        assert!(!tmp.path().join("runs/m").exists(), "nothing is written");
    };
    let a1 = runs("a-shard-1-of-3");
    let a3 = runs("a-shard-3-of-3");
    refused(
        &[a1.clone(), runs("seed-shard-2-of-3"), a3.clone()],
        "`seed`",
    );
    refused(
        &[a1.clone(), runs("suite-shard-2-of-3"), a3.clone()],
        "`suite_hashes`",
    );
    refused(
        &[a1.clone(), runs("split-shard-2-of-2")],
        "`shard.plan_sha256`",
    );
    refused(&[a1.clone(), a1.clone()], "shard 1/3 is given twice");
    // a shard whose model is not the others'
    let other = tmp.path().join("other-model");
    copy_dir(Path::new(&runs("a-shard-2-of-3")), &other);
    let manifest = other.join("run.json");
    let m = std::fs::read_to_string(&manifest).unwrap();
    let sha = RunDir {
        root: other.clone(),
    }
    .load_manifest()
    .unwrap()
    .model
    .sha256;
    std::fs::write(&manifest, m.replace(&sha, &"0".repeat(64))).unwrap();
    refused(
        &[a1.clone(), other.display().to_string(), a3.clone()],
        "`model.sha256`",
    );
    // a run that is not a shard
    ok(run(&[
        "run", "--quiet", "--out", out, "--suites", FEW, "--run-id", "whole",
    ]));
    refused(&[a1.clone(), runs("whole")], "not a shard of a split run");
    // shard 2 missing: named, exit 1; --allow-partial writes it marked incomplete
    let o = merge(&[a1.clone(), a3.clone()], &[]);
    let t = common::text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("shard 2/3 (not given)"), "{t}");
    let o = ok(merge(&[a1, a3], &["--allow-partial"]));
    assert!(common::text(&o).contains("is incomplete"));
    let dir = RunDir::open(tmp.path(), "m").unwrap();
    assert_eq!(dir.load_manifest().unwrap().state, "incomplete");
    let summary = std::fs::read_to_string(dir.root.join("summary.md")).unwrap();
    assert!(summary.contains("**INCOMPLETE RUN** (state: incomplete)"));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// `--shard auto` takes the shard from a Kubernetes Indexed Job or a Slurm
/// array; an incomplete set of variables is exit 2 naming the missing one.
#[test]
fn shard_auto_reads_the_schedulers_variables() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().to_str().unwrap();
    let args = [
        "run", "--quiet", "--out", out, "--suites", FEW, "--run-id", "auto", "--shard", "auto",
    ];
    let with = |vars: &[(&str, &str)]| {
        let mut c = cmd(&args);
        for (k, v) in vars {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    ok(with(&[
        ("JOB_COMPLETION_INDEX", "1"),
        ("EDGEBENCH_SHARDS", "3"),
    ]));
    assert!(tmp.path().join("runs/auto-shard-2-of-3/run.json").is_file());
    ok(with(&[
        ("SLURM_ARRAY_TASK_ID", "5"),
        ("SLURM_ARRAY_TASK_MIN", "3"),
        ("SLURM_ARRAY_TASK_COUNT", "3"),
    ]));
    let m = RunDir::open(tmp.path(), "auto-shard-3-of-3")
        .unwrap()
        .load_manifest()
        .unwrap();
    let s = m.shard.expect("run.json records the shard");
    assert_eq!((s.index, s.count), (3, 3));
    let half = with(&[("JOB_COMPLETION_INDEX", "0")]);
    assert_eq!(half.status.code(), Some(2));
    assert!(common::text(&half).contains("EDGEBENCH_SHARDS"));
    let none = with(&[]);
    assert_eq!(none.status.code(), Some(2));
    assert!(common::text(&none).contains("pass --shard I/N"));
}

/// `plan` prints each shard's units and tokens, and with `--from` the time
/// each shard takes by a previous run's records; the units it prints are
/// the ones the shards run.
#[test]
fn plan_prints_the_split_the_shards_run() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().to_str().unwrap();
    ok(run(&[
        "run", "--quiet", "--out", out, "--suites", FEW, "--run-id", "prev",
    ]));
    let o = ok(run(&[
        "plan", "--out", out, "--suites", FEW, "--shards", "2", "--from", "prev",
    ]));
    let t = common::text(&o);
    let rows: Vec<Vec<String>> = t
        .lines()
        .filter(|l| l.trim_start().starts_with(['1', '2']) && l.contains("/2"))
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect();
    assert_eq!(rows.len(), 2, "{t}");
    assert!(t.contains("wall time with 2 shard(s)"), "{t}");
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(
            row[5], "100%",
            "every unit was measured by the previous run: {t}"
        );
        ok(run(&[
            "run",
            "--quiet",
            "--out",
            out,
            "--suites",
            FEW,
            "--run-id",
            "p",
            "--shard",
            &format!("{}/2", i + 1),
        ]));
        let plan = RunDir::open(tmp.path(), &format!("p-shard-{}-of-2", i + 1))
            .unwrap()
            .load_plan()
            .unwrap()
            .unwrap();
        let examples: usize = plan.values().map(Vec::len).sum();
        assert_eq!(
            row[2],
            examples.to_string(),
            "examples of shard {}: {t}",
            i + 1
        );
    }
}

/// `--costs-from` balances the split by an earlier run's unit times: `plan`
/// shows that split, the shards run it and merge into the single run; a
/// shard split the other way is not of the same run, and a shard takes no
/// new leg.
#[test]
fn a_split_balanced_by_measured_times_merges_into_the_single_run() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().to_str().unwrap();
    let base = [
        "run",
        "--quiet",
        "--out",
        out,
        "--suites",
        FEW,
        "--bootstrap",
        "50",
    ];
    ok(run(&[&base[..], &["--run-id", "prev"]].concat()));
    ok(run(&[&base[..], &["--run-id", "whole"]].concat()));
    let p = ok(run(&[
        "plan",
        "--out",
        out,
        "--suites",
        FEW,
        "--shards",
        "2",
        "--costs-from",
        "prev",
    ]));
    assert!(
        common::text(&p).contains("by the unit times of run prev"),
        "{}",
        common::text(&p)
    );
    for s in ["1/2", "2/2"] {
        ok(run(&[
            &base[..],
            &["--run-id", "t", "--shard", s, "--costs-from", "prev"],
        ]
        .concat()));
    }
    let m = RunDir::open(tmp.path(), "t-shard-1-of-2").unwrap();
    let split: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(m.root.join("shard-plan.json")).unwrap())
            .unwrap();
    assert_eq!(split["costs"]["kind"], "measured");
    assert_eq!(split["costs"]["run_id"], "prev");
    let merged = tmp.path().join("merged");
    let pattern = format!("{out}/runs/t-shard-*");
    ok(run(&[
        "merge",
        &pattern,
        "--run-id",
        "whole",
        "--out",
        merged.to_str().unwrap(),
        "--quiet",
    ]));
    assert_same_reports((tmp.path(), "whole"), (&merged, "whole"));
    ok(run(
        &[&base[..], &["--run-id", "tok", "--shard", "2/2"]].concat()
    ));
    let o = run(&[
        "merge",
        "t-shard-1-of-2",
        "tok-shard-2-of-2",
        "--run-id",
        "mixed",
        "--out",
        out,
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", common::text(&o));
    assert!(common::text(&o).contains("`shard.plan_sha256`"));
    let o = run(&[
        "run",
        "--quiet",
        "--out",
        out,
        "--resume",
        "t-shard-1-of-2",
        "--force-new-leg",
        "--seed",
        "9",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", common::text(&o));
    assert!(common::text(&o).contains("cannot take a new leg"));
}
