//! Suite sources and failure isolation, through the real binary: suites added
//! with `--suite-file`, `--suites-dir` and `$EDGEBENCH_SUITES_PATH` join the
//! 47 built-in ones (compiled in, so no `./suites` is needed), a same-id file
//! overrides with a warning, a broken file outside the selection is only a
//! warning, and a suite whose data fails to load is reported `failed` while
//! the others run, then resumes alone once fixed.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BUILT_IN: usize = 47;

/// A working directory without `./suites`, with `data/` holding the
/// commonsenseqa and socialiqa fixtures.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        let s = Scratch {
            dir: tempfile::tempdir().unwrap(),
        };
        for d in ["commonsense-commonsenseqa", "commonsense-socialiqa"] {
            let to = s.path("data").join(d);
            std::fs::create_dir_all(&to).unwrap();
            std::fs::copy(
                common::repo()
                    .join("fixtures")
                    .join(d)
                    .join("validation.jsonl"),
                to.join("validation.jsonl"),
            )
            .unwrap();
        }
        s
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The built-in `from` suite file saved as `rel` with id `id`.
    fn suite_as(&self, from: &str, rel: &str, id: &str) -> PathBuf {
        let text = std::fs::read_to_string(common::repo().join(format!("suites/{from}.toml")))
            .unwrap()
            .replacen(&format!("id = \"{from}\""), &format!("id = \"{id}\""), 1);
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_edgebench"));
        c.current_dir(self.dir.path())
            .env_remove("EDGEBENCH_DATA")
            .env_remove("EDGEBENCH_SUITES_PATH");
        c
    }

    fn eb(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    fn run(&self, extra: &[&str]) -> Output {
        let mut args = vec![
            "run",
            "--data-dir",
            "data",
            "--out",
            "out",
            "--quiet",
            "--bootstrap",
            "20",
        ];
        args.extend_from_slice(extra);
        self.eb(&args)
    }

    fn list(&self, o: &Output) -> Vec<serde_json::Value> {
        assert_eq!(o.status.code(), Some(0), "{}", common::text(o));
        serde_json::from_slice(&o.stdout).unwrap()
    }
}

fn ids(list: &[serde_json::Value]) -> Vec<&str> {
    list.iter().map(|v| v["id"].as_str().unwrap()).collect()
}

#[test]
fn built_in_suites_are_listed_without_a_suites_folder() {
    let s = Scratch::new();
    assert!(!s.path("suites").exists());
    let list = s.list(&s.eb(&["suites", "list", "--json"]));
    assert_eq!(list.len(), BUILT_IN);
    let csqa = list.iter().find(|v| v["id"] == "commonsenseqa").unwrap();
    assert_eq!(csqa["source"], "built-in suites/commonsenseqa.toml");
}

#[test]
fn suite_file_and_suites_dir_add_to_the_built_in_suites() {
    let s = Scratch::new();
    let file = s.suite_as("commonsenseqa", "mine/my-csqa.toml", "my-csqa");
    for flags in [
        vec!["--suite-file", file.to_str().unwrap()],
        vec!["--suites-dir", "mine"],
    ] {
        let mut args = vec!["suites", "list", "--json"];
        args.extend_from_slice(&flags);
        let list = s.list(&s.eb(&args));
        assert_eq!(list.len(), BUILT_IN + 1, "{flags:?}");
        assert!(ids(&list).contains(&"my-csqa"));
        assert!(ids(&list).contains(&"commonsenseqa"));

        let mut args = vec!["--suites", "my-csqa", "--run-id"];
        let id = format!("added{}", flags[0]);
        args.push(&id);
        args.extend_from_slice(&flags);
        let o = s.run(&args);
        assert_eq!(o.status.code(), Some(0), "{}", common::text(&o));
        let m: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(s.path(&format!("out/runs/{id}/run.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(m["status"]["my-csqa"]["status"], "complete");
        assert_eq!(m["status"]["my-csqa"]["examples"], 4);
        // the snapshot is the exact text the suite was parsed from
        assert_eq!(
            std::fs::read(s.path(&format!("out/runs/{id}/suites/my-csqa.toml"))).unwrap(),
            std::fs::read(&file).unwrap()
        );
    }
    // $EDGEBENCH_SUITES_PATH: the same folder as a default
    let o = s
        .cmd()
        .args(["suites", "list", "--json"])
        .env(
            "EDGEBENCH_SUITES_PATH",
            format!("/no/such:{}", s.path("mine").display()),
        )
        .output()
        .unwrap();
    // an unreadable folder in the path is bad input naming it
    assert_eq!(o.status.code(), Some(2), "{}", common::text(&o));
    assert!(common::text(&o).contains("/no/such"));
    let o = s
        .cmd()
        .args(["suites", "list", "--json"])
        .env("EDGEBENCH_SUITES_PATH", s.path("mine"))
        .output()
        .unwrap();
    assert_eq!(s.list(&o).len(), BUILT_IN + 1);
}

#[test]
fn a_suite_with_a_built_in_id_overrides_it_with_a_warning() {
    let s = Scratch::new();
    let file = s.suite_as("commonsenseqa", "mine/commonsenseqa.toml", "commonsenseqa");
    let text =
        std::fs::read_to_string(&file)
            .unwrap()
            .replacen("limit = ", "limit = 2\n# was: ", 1);
    assert!(text.contains("limit = 2"));
    std::fs::write(&file, &text).unwrap();
    let list = s.list(&s.eb(&["suites", "list", "--json", "--suites-dir", "mine"]));
    assert_eq!(list.len(), BUILT_IN);
    let o = s.run(&[
        "--suites",
        "commonsenseqa",
        "--suites-dir",
        "mine",
        "--run-id",
        "o",
    ]);
    let t = common::text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(
        t.contains("warning: suite `commonsenseqa` from mine/commonsenseqa.toml overrides the one from built-in suites/commonsenseqa.toml"),
        "{t}"
    );
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(s.path("out/runs/o/run.json")).unwrap())
            .unwrap();
    assert_eq!(
        m["status"]["commonsenseqa"]["examples"], 2,
        "the override's limit"
    );
    // the same text as the built-in one is no override worth a warning
    std::fs::copy(common::repo().join("suites/commonsenseqa.toml"), &file).unwrap();
    let o = s.eb(&["suites", "list", "--suites-dir", "mine"]);
    assert!(
        !common::text(&o).contains("warning"),
        "{}",
        common::text(&o)
    );
}

#[test]
fn a_broken_suite_file_outside_the_selection_is_a_warning() {
    let s = Scratch::new();
    std::fs::create_dir_all(s.path("mine")).unwrap();
    std::fs::write(
        s.path("mine/broken.toml"),
        "id = \"broken\"\ndomain = \"legal\"\n",
    )
    .unwrap();
    let o = s.run(&[
        "--suites",
        "commonsenseqa",
        "--suites-dir",
        "mine",
        "--run-id",
        "a",
    ]);
    let t = common::text(&o);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(
        t.contains("warning: skipped suite file mine/broken.toml"),
        "{t}"
    );
    // selected by id, by `all` or by the domain it names: bad input naming the file and field
    for sel in ["broken", "all", "legal"] {
        let o = s.run(&["--suites", sel, "--suites-dir", "mine"]);
        let t = common::text(&o);
        assert_eq!(o.status.code(), Some(2), "{sel}: {t}");
        assert!(
            t.contains("mine/broken.toml") && t.contains("missing field"),
            "{t}"
        );
    }
    // another domain leaves it out
    let o = s.run(&[
        "--suites",
        "commonsense",
        "--suites-dir",
        "mine",
        "--run-id",
        "b",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", common::text(&o));
}

fn status(dir: &Path, run: &str) -> serde_json::Value {
    let m: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join(format!("out/runs/{run}/run.json"))).unwrap(),
    )
    .unwrap();
    m["status"].clone()
}

#[test]
fn a_suite_whose_data_fails_is_reported_and_resumes_alone() {
    let s = Scratch::new();
    let siqa = s.path("data/commonsense-socialiqa/validation.jsonl");
    let good = std::fs::read_to_string(&siqa).unwrap();
    let lines = good.lines().count();
    std::fs::write(&siqa, format!("{good}{{\"context\": \"cut\n")).unwrap();
    let bad_line = format!("validation.jsonl:{}", lines + 1);
    let o = s.run(&["--suites", "commonsenseqa,socialiqa", "--run-id", "r"]);
    let t = common::text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("suite `socialiqa` failed") && t.contains(&bad_line),
        "{t}"
    );
    let st = status(s.dir.path(), "r");
    assert_eq!(st["commonsenseqa"]["status"], "complete");
    assert_eq!(st["socialiqa"]["status"], "failed");
    assert!(st["socialiqa"]["reason"]
        .as_str()
        .unwrap()
        .contains(&bad_line));
    let summary = std::fs::read_to_string(s.path("out/runs/r/summary.md")).unwrap();
    let row = summary
        .lines()
        .find(|l| l.starts_with("| socialiqa"))
        .unwrap();
    assert!(row.contains("failed: ") && row.contains(&bad_line), "{row}");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(s.path("out/runs/r/results.json")).unwrap())
            .unwrap();
    assert_eq!(
        results["edgebench"]["status"]["socialiqa"]["status"],
        "failed"
    );
    assert!(results["results"]["commonsenseqa"].is_object());
    let csqa_records = std::fs::read(s.path("out/runs/r/records/commonsenseqa.jsonl")).unwrap();

    // fixed: the resume evaluates only socialiqa
    std::fs::write(&siqa, &good).unwrap();
    let o = s.run(&["--resume", "r"]);
    assert_eq!(o.status.code(), Some(0), "{}", common::text(&o));
    let st = status(s.dir.path(), "r");
    assert_eq!(st["socialiqa"]["status"], "complete");
    assert_eq!(st["socialiqa"]["examples"], lines);
    assert_eq!(
        std::fs::read(s.path("out/runs/r/records/commonsenseqa.jsonl")).unwrap(),
        csqa_records,
        "commonsenseqa is not run again"
    );
    let rescored = s.eb(&["rescore", "r", "--out", "out"]);
    assert_eq!(
        rescored.status.code(),
        Some(0),
        "{}",
        common::text(&rescored)
    );
    // a resume given a suite file of the run that does not load: bad input naming it
    std::fs::create_dir_all(s.path("mine")).unwrap();
    std::fs::write(s.path("mine/socialiqa.toml"), "id = \"socialiqa\"\n").unwrap();
    let o = s.run(&["--resume", "r", "--suites-dir", "mine"]);
    let t = common::text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(
        t.contains("mine/socialiqa.toml") && t.contains("missing field"),
        "{t}"
    );

    // nothing could run: bad input, and no run folder
    std::fs::write(&siqa, format!("{good}{{\"context\": \"cut\n")).unwrap();
    let o = s.run(&["--suites", "socialiqa", "--run-id", "none"]);
    let t = common::text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(t.contains(&bad_line), "{t}");
    assert!(!s.path("out/runs/none").exists());
}

/// A sweep whose suite fails to load at every width still writes its table
/// of the other suites, names the failure and exits 1.
#[test]
fn a_sweep_with_a_failed_suite_writes_the_rest_and_exits_1() {
    let s = Scratch::new();
    let siqa = s.path("data/commonsense-socialiqa/validation.jsonl");
    let good = std::fs::read_to_string(&siqa).unwrap();
    std::fs::write(&siqa, format!("{good}{{\"context\": \"cut\n")).unwrap();
    let o = s.eb(&[
        "sweep",
        "bits",
        "--model",
        "builtin:gem-tiny",
        "--bits",
        "8",
        "--suites",
        "commonsenseqa,socialiqa",
        "--limit",
        "2",
        "--bootstrap",
        "20",
        "--data-dir",
        "data",
        "--out",
        "out",
    ]);
    let t = common::text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("8 bits: socialiqa"), "{t}");
    assert!(
        t.contains("wrote ") && t.contains("sweep.md"),
        "the table of the other suites is written: {t}"
    );
}
