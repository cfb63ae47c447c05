//! `edgebench perf --suites`: per-domain timed windows over prompts drawn from
//! the suites' real examples, recorded in `perf.json` and read by
//! `edgebench paper`, whose per-domain cells read "not measured" without them.

mod common;
use common::{edgebench, repo, runtime, shared_data, text};
use edgebench::data::{self, DataStatus};
use edgebench::request;
use edgebench::suite::{self, spec::Domain};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

fn perf_json(out: &Path, id: &str) -> Value {
    let p = out.join("runs").join(id).join("perf.json");
    serde_json::from_str(&std::fs::read_to_string(&p).expect("perf.json written")).unwrap()
}

/// Common flags of a quick per-domain perf run: 11 queries per domain (the
/// fewest that back a p50), one warm-up query, no power source.
fn perf_args<'a>(out: &'a str, id: &'a str, suites: &'a str, data: &'a str) -> Vec<&'a str> {
    vec![
        "perf",
        "--model",
        "builtin:tiny",
        "--suites",
        suites,
        "--data-dir",
        data,
        "--out",
        out,
        "--run-id",
        id,
        "--min-queries",
        "11",
        "--max-queries",
        "11",
        "--min-duration",
        "0",
        "--warmup",
        "1",
        "--gen-tokens",
        "4",
        "--prompt-tokens",
        "64",
        "--power",
        "off",
    ]
}

/// A quick accuracy run, so `paper` has a run to attach perf.json to.
fn accuracy_run(out: &str, id: &str) {
    let data = repo().join("fixtures");
    let o = edgebench(
        &repo(),
        &[
            "run",
            "--model",
            "builtin:tiny",
            "--suites",
            "pubmedqa,lexglue-casehold",
            "--limit",
            "3",
            "--bootstrap",
            "20",
            "--run-id",
            id,
            "--quiet",
            "--out",
            out,
            "--data-dir",
            data.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
}

/// Rows of `edgebench paper`'s table `n` (CSV) for the run `id`, as the
/// full GEM (Table 1's and Table 4's model).
fn paper_rows(out: &Path, id: &str, n: u32) -> Vec<BTreeMap<String, String>> {
    let report = out.join(format!("paper-{id}"));
    let o = edgebench(
        &repo(),
        &[
            "paper",
            "--runs",
            &format!("gem={id}"),
            "--runs-root",
            out.to_str().unwrap(),
            "--out",
            report.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let csv = std::fs::read_to_string(report.join(format!("tables/table{n}.csv"))).unwrap();
    let mut rdr = csv::Reader::from_reader(csv.as_bytes());
    let headers = rdr.headers().unwrap().clone();
    rdr.records()
        .map(|r| {
            headers
                .iter()
                .zip(r.unwrap().iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

fn row<'a>(
    rows: &'a [BTreeMap<String, String>],
    first: (&str, &str),
    second: (&str, &str),
) -> &'a BTreeMap<String, String> {
    rows.iter()
        .find(|r| r[first.0] == first.1 && r[second.0] == second.1)
        .unwrap_or_else(|| panic!("no row {first:?} {second:?} in {rows:#?}"))
}

/// The prompts `perf --suites <domain>` queries with, built here from the
/// library (suite files, data loader, seeded sample, request rendering):
/// each suite's sample in turn.
fn expected_prompts(domain: Domain, data_dir: &Path, limit: usize, seed: u64) -> Vec<String> {
    let specs = suite::load_dir(&repo().join("suites")).unwrap();
    let mut lists = Vec::new();
    for spec in specs.iter().filter(|s| s.domain == domain) {
        if let DataStatus::Missing(_) = data::locate(spec, data_dir).unwrap() {
            continue;
        }
        let all = data::load_examples(spec, data_dir).unwrap();
        let mut pool = data::load_fewshot(spec, data_dir).unwrap();
        if pool.is_empty() && spec.fewshot.k > 0 {
            pool = all.clone();
        }
        lists.push(
            edgebench::runner::sample(all, limit, seed)
                .iter()
                .map(|ex| request::prompt(spec, ex, &pool))
                .collect::<Vec<_>>(),
        );
    }
    let longest = lists.iter().map(Vec::len).max().unwrap_or(0);
    (0..longest)
        .flat_map(|i| lists.iter().filter_map(move |l| l.get(i).cloned()))
        .collect()
}

#[test]
fn two_domains_on_fixtures_are_measured_and_fill_the_papers_domain_cells() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().to_str().unwrap();
    let fixtures = repo().join("fixtures");
    accuracy_run(out, "d");
    let o = edgebench(
        &repo(),
        &perf_args(out, "d", "healthcare,legal", fixtures.to_str().unwrap()),
    );
    assert!(o.status.success(), "{}", text(&o));
    let j = perf_json(tmp.path(), "d");
    assert_eq!(j["validity"]["valid"], true, "{j:#}");
    // top level: every query of both domains together
    assert_eq!(j["queries"], 22);
    let doms = j["domains"].as_object().unwrap();
    assert_eq!(
        doms.keys().collect::<Vec<_>>(),
        ["healthcare", "legal"],
        "only the chosen domains"
    );
    // every fixture example (fewer than the default 32 per suite)
    let suites = |d: &str| -> BTreeMap<String, u64> {
        serde_json::from_value(j["domains"][d]["suites"].clone()).unwrap()
    };
    assert_eq!(
        suites("healthcare"),
        BTreeMap::from([
            ("mimic3-diagnosis".into(), 4),
            ("mimic3-notes-ppl".into(), 5),
            ("pubmedqa".into(), 4),
            ("pubmedqa-rf".into(), 4),
        ])
    );
    assert_eq!(suites("legal").len(), 7);
    assert_eq!(suites("legal").values().sum::<u64>(), 27);

    // The prompts are the suites' rendered examples, in turn: the queries
    // fed exactly the token counts of the first 11 of them, cut at 64.
    let model =
        edgebench::model::load("builtin:tiny", &tmp.path().join("models"), &runtime()).unwrap();
    for (name, domain, count) in [
        ("healthcare", Domain::Healthcare, 17),
        ("legal", Domain::Legal, 27),
    ] {
        let d = &j["domains"][name];
        assert_eq!(d["queries"], 11);
        assert_eq!(d["prompts"], count);
        assert_eq!(d["validity"]["valid"], true);
        let p50 = d["latency_ms_per_token"]["p50"].as_f64().unwrap();
        assert!(p50 > 0.0, "{name}: {d:#}");
        assert!(d["ttft_ms"]["p50"].as_f64().unwrap() > 0.0);
        assert!(d["power_w"].is_null());
        assert!(d["power_null_reason"]
            .as_str()
            .unwrap()
            .contains("--power off"));
        let prompts = expected_prompts(domain, &fixtures, 32, 1234);
        assert_eq!(prompts.len(), count as usize);
        let fed: Vec<usize> = prompts[..11]
            .iter()
            .map(|p| model.count_tokens(p).unwrap().clamp(1, 64))
            .collect();
        let mean = fed.iter().sum::<usize>() as f64 / 11.0;
        assert!(
            (d["prompt_tokens_mean"].as_f64().unwrap() - mean).abs() < 1e-9,
            "{name}: {} vs {mean} from {fed:?}",
            d["prompt_tokens_mean"]
        );
    }
    // the data files read, with their hashes
    let src = &j["prompt_source"];
    assert_eq!(src["kind"], "suites");
    assert_eq!(
        (src["seed"].as_u64(), src["limit_per_suite"].as_u64()),
        (Some(1234), Some(32))
    );
    let pubmedqa = &src["data_hashes"]["pubmedqa"][0];
    let file = Path::new(pubmedqa["path"].as_str().unwrap());
    assert_eq!(file.file_name().unwrap(), "test.jsonl");
    assert_eq!(
        pubmedqa["sha256"].as_str().unwrap(),
        edgebench::util::hash::sha256_file(file).unwrap()
    );
    assert_eq!(src["data_hashes"].as_object().unwrap().len(), 11);
    // raw samples name their domain, in the order measured
    let samples = std::fs::read_to_string(tmp.path().join("runs/d/perf-samples.jsonl")).unwrap();
    let domains: Vec<String> = samples
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["domain"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(domains.len(), 22);
    assert!(
        domains[..11].iter().all(|d| d == "healthcare")
            && domains[11..].iter().all(|d| d == "legal")
    );
    assert!(
        text(&o).contains("| healthcare | 11 | 17 ("),
        "{}",
        text(&o)
    );

    // The paper reads the per-domain measurements: Table 1 in-domain
    // (healthcare) and out-of-domain (the mean of the others: legal).
    let t1 = paper_rows(tmp.path(), "d", 1);
    let lat = |column: &str| {
        row(&t1, ("Metric", "Latency (ms/token)"), ("Column", column))["measured"]
            .parse::<f64>()
            .unwrap()
    };
    let p50 = |d: &str| {
        j["domains"][d]["latency_ms_per_token"]["p50"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(lat("In-domain"), p50("healthcare"));
    assert_eq!(lat("Out-of-domain"), p50("legal"));
    let by = &row(
        &t1,
        ("Metric", "Latency (ms/token)"),
        ("Column", "In-domain"),
    )["Measured by"];
    assert!(
        by.contains("per domain (host): healthcare vs legal"),
        "{by}"
    );
    let power = row(&t1, ("Metric", "Power (W)"), ("Column", "In-domain"));
    assert_eq!(power["measured"], "not measured", "--power off");
    // Table 4: the healthcare row is the domain's own p50, finance (no
    // per-domain run) is not measured, not the host-wide p50.
    let t4 = paper_rows(tmp.path(), "d", 4);
    let health = row(
        &t4,
        ("Domain", "Healthcare (Raspberry Pi 4)"),
        ("Quantity", "GEM latency (ms/token)"),
    );
    assert_eq!(
        health["measured"].parse::<f64>().unwrap(),
        p50("healthcare")
    );
    assert_eq!(
        health["Measured by"],
        "edgebench-tiny, host p50 on healthcare"
    );
    let finance = row(
        &t4,
        ("Domain", "Finance (iPhone 13)"),
        ("Quantity", "GEM latency (ms/token)"),
    );
    assert_eq!(finance["measured"], "not measured");
    assert!(
        finance["Measured by"].contains("no perf run on finance"),
        "{finance:?}"
    );
    let general = row(
        &t4,
        ("Domain", "General (Raspberry Pi 4)"),
        ("Quantity", "GEM latency (ms/token)"),
    );
    assert_eq!(
        general["measured"].parse::<f64>().unwrap(),
        j["latency_ms_per_token"]["p50"].as_f64().unwrap(),
        "the general row is the host-wide figure"
    );
}

#[test]
fn a_run_without_domains_leaves_the_papers_domain_cells_not_measured() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().to_str().unwrap();
    accuracy_run(out, "h");
    let o = edgebench(
        &repo(),
        &[
            "perf",
            "--out",
            out,
            "--run-id",
            "h",
            "--min-queries",
            "11",
            "--max-queries",
            "11",
            "--min-duration",
            "0",
            "--warmup",
            "1",
            "--gen-tokens",
            "4",
            "--power",
            "off",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let j = perf_json(tmp.path(), "h");
    assert!(j.get("domains").is_none(), "no per-domain figures: {j:#}");
    assert_eq!(j["prompt_source"]["kind"], "corpus");
    assert!(j["latency_ms_per_token"]["p50"].as_f64().unwrap() > 0.0);
    let t1 = paper_rows(tmp.path(), "h", 1);
    for metric in [
        "Latency (ms/token)",
        "Power (W)",
        "Energy (J/token) = W x s",
    ] {
        for column in ["In-domain", "Out-of-domain"] {
            let r = row(&t1, ("Metric", metric), ("Column", column));
            assert_eq!(r["measured"], "not measured", "{r:?}");
            assert!(r["Measured by"].contains("no per-domain run"), "{r:?}");
        }
    }
    let t4 = paper_rows(tmp.path(), "h", 4);
    let health = row(
        &t4,
        ("Domain", "Healthcare (Raspberry Pi 4)"),
        ("Quantity", "GEM latency (ms/token)"),
    );
    assert_eq!(health["measured"], "not measured", "{health:?}");
    assert!(health["Measured by"].contains("no perf run on healthcare"));
    let general = row(
        &t4,
        ("Domain", "General (Raspberry Pi 4)"),
        ("Quantity", "GEM latency (ms/token)"),
    );
    assert_ne!(general["measured"], "not measured");
}

#[test]
fn bad_suites_and_missing_data_are_bad_input_and_partial_data_skips() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().to_str().unwrap();
    let fixtures = repo().join("fixtures");
    let f = fixtures.to_str().unwrap();
    let o = edgebench(&repo(), &perf_args(out, "x", "healthcare,nosuch", f));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--suites: `nosuch`"), "{}", text(&o));

    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = edgebench(
        &repo(),
        &perf_args(out, "x", "pubmedqa", empty.to_str().unwrap()),
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("first: pubmedqa")
            && t.contains(&empty.join("healthcare-pubmedqa").display().to_string()),
        "{t}"
    );
    assert!(!tmp.path().join("runs/x").exists(), "nothing written");

    let o = edgebench(&repo(), &["perf", "--out", out, "--limit", "3"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("pass --suites"));

    // only PubMedQA's data: finance (FinQA) is skipped with a message
    let some = tmp.path().join("some");
    std::fs::create_dir_all(some.join("healthcare-pubmedqa")).unwrap();
    std::fs::copy(
        fixtures.join("healthcare-pubmedqa/test.jsonl"),
        some.join("healthcare-pubmedqa/test.jsonl"),
    )
    .unwrap();
    let o = edgebench(
        &repo(),
        &perf_args(out, "p", "pubmedqa,finqa", some.to_str().unwrap()),
    );
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("skipping suite `finqa` (finance): missing"),
        "{t}"
    );
    assert!(t.contains("skipping domain `finance`"), "{t}");
    let j = perf_json(tmp.path(), "p");
    assert_eq!(
        j["domains"].as_object().unwrap().keys().collect::<Vec<_>>(),
        ["healthcare"]
    );
    assert_eq!(j["domains"]["healthcare"]["suites"]["pubmedqa"], 4);
    assert!(j["prompt_source"]["skipped"]["finqa"]
        .as_str()
        .unwrap()
        .starts_with("missing: put"));
}

#[test]
fn shared_data_domains_use_their_real_examples() {
    let Some(shared) = shared_data() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().to_str().unwrap();
    let mut args = perf_args(out, "s", "healthcare,legal", shared.to_str().unwrap());
    args.extend(["--limit", "8", "--seed", "7"]);
    let o = edgebench(&repo(), &args);
    assert!(o.status.success(), "{}", text(&o));
    // MIMIC-III is credentialed: not in the shared samples, skipped
    assert!(
        text(&o).contains("skipping suite `mimic3-diagnosis`"),
        "{}",
        text(&o)
    );
    let j = perf_json(tmp.path(), "s");
    let model =
        edgebench::model::load("builtin:tiny", &tmp.path().join("models"), &runtime()).unwrap();
    for (name, domain) in [("healthcare", Domain::Healthcare), ("legal", Domain::Legal)] {
        let d = &j["domains"][name];
        let prompts = expected_prompts(domain, &shared, 8, 7);
        assert_eq!(d["prompts"].as_u64(), Some(prompts.len() as u64), "{name}");
        assert!(d["suites"]
            .as_object()
            .unwrap()
            .values()
            .all(|n| n.as_u64().unwrap() <= 8));
        assert!(d["latency_ms_per_token"]["p50"].as_f64().unwrap() > 0.0);
        let fed: usize = prompts
            .iter()
            .cycle()
            .take(11)
            .map(|p| model.count_tokens(p).unwrap().clamp(1, 64))
            .sum();
        assert!((d["prompt_tokens_mean"].as_f64().unwrap() - fed as f64 / 11.0).abs() < 1e-9);
    }
    assert_eq!(j["domains"]["healthcare"]["suites"]["pubmedqa"], 8);
    assert!(j["prompt_source"]["data_dir"]
        .as_str()
        .unwrap()
        .ends_with("shared/data"));
}
