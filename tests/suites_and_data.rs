//! The registry holds 47 valid suites in 8 domains; every adapter loads its
//! fixtures; every real sample in ../shared/data loads when present.

mod common;

use edgebench::data::{self, DataStatus};
use edgebench::suite::{self, spec::Domain};
use std::collections::BTreeMap;

fn specs() -> Vec<edgebench::suite::spec::SuiteSpec> {
    suite::load_dir(&common::repo().join("suites")).expect("all suite files are valid")
}

#[test]
fn registry_has_47_suites_in_8_domains_with_the_issue_counts() {
    let specs = specs();
    assert_eq!(specs.len(), 47);
    let mut per: BTreeMap<Domain, usize> = BTreeMap::new();
    for s in &specs {
        *per.entry(s.domain.paper().unwrap()).or_default() += 1;
    }
    let expected = [
        (Domain::Healthcare, 4),
        (Domain::Legal, 7),
        (Domain::Finance, 2),
        (Domain::Stem, 4),
        (Domain::Commonsense, 2),
        (Domain::Conversational, 5),
        (Domain::Multilingual, 11),
        (Domain::DomainAdaptive, 12),
    ];
    for (d, n) in expected {
        assert_eq!(per.get(&d).copied().unwrap_or(0), n, "domain {d}");
    }
}

#[test]
fn every_suite_loads_its_fixtures() {
    let root = common::repo().join("fixtures");
    for s in specs() {
        match data::locate(&s, &root).unwrap() {
            DataStatus::Found(_) => {}
            DataStatus::Missing(m) => panic!("{}: fixture missing: {m}", s.id),
        }
        let ex = data::load_examples(&s, &root).unwrap_or_else(|e| panic!("{}: {e}", s.id));
        assert!(!ex.is_empty(), "{}: no example from fixtures", s.id);
        for e in &ex {
            match &e.gold {
                data::Gold::Index { index } => {
                    assert!(*index < e.choices.len(), "{}: {}", s.id, e.id)
                }
                data::Gold::Tags { tokens, tags } => assert_eq!(tokens.len(), tags.len()),
                _ => {}
            }
        }
    }
}

#[test]
fn every_real_sample_in_shared_data_loads() {
    let Some(root) = common::shared_data() else {
        return;
    };
    let mut loaded = 0;
    for s in specs() {
        if let DataStatus::Found(_) = data::locate(&s, &root).unwrap() {
            let ex = data::load_examples(&s, &root).unwrap_or_else(|e| panic!("{}: {e}", s.id));
            assert!(!ex.is_empty(), "{}: no example", s.id);
            loaded += 1;
        }
    }
    // MANIFEST.md: 31 datasets with samples cover 41 of the 47 suites
    assert!(
        loaded >= 40,
        "only {loaded} suites found data under {}",
        root.display()
    );
}

#[test]
fn malformed_suite_file_is_reported_with_its_path_and_exit_code_2() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("suites");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("broken.toml"),
        "id = \"broken\"\ndomain = \"nowhere\"\n",
    )
    .unwrap();
    let out = common::edgebench(
        tmp.path(),
        &["suites", "validate", "--suites-dir", dir.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2), "{}", common::text(&out));
    let t = common::text(&out);
    assert!(t.contains("broken.toml"), "{t}");
}

#[test]
fn jsonl_line_with_a_missing_field_names_file_line_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data/commonsense-commonsenseqa");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        data.join("validation.jsonl"),
        "{\"id\": \"q1\", \"question\": \"Where?\", \"choices\": {\"label\": [\"A\", \"B\"], \"text\": [\"here\", \"there\"]}, \"answerKey\": \"A\"}\n{\"id\": \"q2\", \"choices\": {\"label\": [\"A\"], \"text\": [\"x\"]}, \"answerKey\": \"A\"}\n",
    )
    .unwrap();
    let repo = common::repo();
    let out = common::edgebench(
        &repo,
        &[
            "run",
            "--suites",
            "commonsenseqa",
            "--quiet",
            "--data-dir",
            tmp.path().join("data").to_str().unwrap(),
            "--out",
            tmp.path().join("out").to_str().unwrap(),
        ],
    );
    let t = common::text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("validation.jsonl:2"), "{t}");
    assert!(t.contains("question"), "{t}");
    assert!(
        !tmp.path().join("out/runs").exists(),
        "no run may be started on bad input"
    );
}

/// `edgebench suites list | head -1`: a closed pipe ends the process quietly, without a panic.
#[cfg(unix)]
#[test]
fn closed_stdout_pipe_is_not_a_panic() {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_edgebench"))
        .args(["suites", "list"])
        .current_dir(common::repo())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader goes away before anything is read
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        status.success() || status.signal() == Some(13),
        "{status:?}"
    );
}
