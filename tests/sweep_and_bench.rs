//! `edgebench sweep bits` and `edgebench bench ops --quick` through the real
//! binary: the sweep writes its table, CSV and plot with one row per width;
//! bad widths and models are refused naming the flag; the bench prints SCAR
//! and dense rows; `bench eval` times its suites in turns with the baseline.
//! Nothing here asserts a timing.

mod common;

use std::path::Path;

fn sweep(cwd: &Path, out: &Path, model: &str, bits: &str) -> std::process::Output {
    common::edgebench(
        cwd,
        &[
            "sweep",
            "bits",
            "--model",
            model,
            "--bits",
            bits,
            "--suites",
            "mathqa,dailydialog-act",
            "--limit",
            "3",
            "--bootstrap",
            "50",
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ],
    )
}

#[test]
fn sweep_bits_on_the_tiny_gem_writes_table_csv_and_plot() {
    let tmp = tempfile::tempdir().unwrap();
    let o = sweep(
        &common::repo(),
        tmp.path(),
        "fixtures/gem/gem-tiny.toml",
        "8,4,2",
    );
    assert!(o.status.success(), "{}", common::text(&o));
    let dir = tmp.path().join("sweeps/bits-gem-tiny");
    let md = std::fs::read_to_string(dir.join("sweep.md")).unwrap();
    let rows: Vec<&str> = md
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| bits"))
        .collect();
    assert_eq!(rows.len(), 3, "{md}");
    for (row, bits) in rows.iter().zip(["8", "4", "2"]) {
        assert!(row.starts_with(&format!("| {bits} |")), "{row}");
    }
    assert!(md.contains("mathqa (acc)") && md.contains("GG, strongest domain"));
    assert!(
        md.contains("Does brittleness grow with compression?") || md.contains("Cannot answer"),
        "{md}"
    );
    let csv = std::fs::read_to_string(dir.join("sweep.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 4, "{csv}");
    assert!(lines[0].starts_with("bits,graph_bytes,run_id"));
    assert!(lines[0].contains("gg_max") && lines[0].contains("dsi"));
    // a narrower width stores fewer bytes
    let bytes: Vec<u64> = lines[1..]
        .iter()
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    assert!(bytes[0] > bytes[1] && bytes[1] > bytes[2], "{bytes:?}");
    for f in ["sweep.png", "sweep.svg"] {
        assert!(std::fs::metadata(dir.join(f)).unwrap().len() > 1000, "{f}");
    }
    // each width is an ordinary run that rescore can read
    for b in [8, 4, 2] {
        assert!(tmp
            .path()
            .join(format!("runs/bits-gem-tiny-{b}bit/summary.md"))
            .exists());
    }
    // running the same sweep again resumes its runs instead of failing
    let again = sweep(
        &common::repo(),
        tmp.path(),
        "fixtures/gem/gem-tiny.toml",
        "8,4,2",
    );
    assert!(again.status.success(), "{}", common::text(&again));
}

#[test]
fn sweep_refuses_bad_bits_and_models_naming_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = common::repo();
    for (bits, says) in [
        ("8,7", "--bits: 7 bits is not supported"),
        ("4,x", "--bits: `x` is not a number"),
        ("4,4", "--bits: 4 is listed twice"),
    ] {
        let o = sweep(&repo, tmp.path(), "builtin:gem-tiny", bits);
        assert_eq!(o.status.code(), Some(2), "{}", common::text(&o));
        assert!(common::text(&o).contains(says), "{}", common::text(&o));
    }
    let o = sweep(&repo, tmp.path(), "no/such/model.gguf", "8");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        common::text(&o).contains("--model: no/such/model.gguf: no such file"),
        "{}",
        common::text(&o)
    );
    // a model directory that is not a GEM build cannot be re-quantized
    let o = sweep(&repo, tmp.path(), tmp.path().to_str().unwrap(), "8");
    assert_eq!(o.status.code(), Some(2));
    assert!(common::text(&o).contains("has no gem.toml"));
    // a GEM config with a bad field names the field
    let bad = tmp.path().join("bad.toml");
    let cfg = std::fs::read_to_string(repo.join("fixtures/gem/gem-tiny.toml"))
        .unwrap()
        .replace("k = 4", "k = 0");
    std::fs::write(&bad, cfg).unwrap();
    let o = sweep(&repo, tmp.path(), bad.to_str().unwrap(), "8");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        common::text(&o).contains("--model") && common::text(&o).contains("scar.k"),
        "{}",
        common::text(&o)
    );
    // --model is required
    let o = common::edgebench(&repo, &["sweep", "bits", "--suites", "mathqa"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(common::text(&o).contains("--model"));
}

#[test]
fn bench_ops_quick_prints_scar_and_dense_rows() {
    let o = common::edgebench(&common::repo(), &["bench", "ops", "--quick"]);
    assert!(o.status.success(), "{}", common::text(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("SCAR vs dense causal attention"), "{text}");
    assert!(text.contains("| n | k | sinks, window | SCAR ms"), "{text}");
    // n = 32 and 64, k = 1 and 16, (sinks, window) = (0, 0) and (4, 16): eight SCAR rows
    let rows = text
        .lines()
        .filter(|l| l.starts_with("| 32 |") || l.starts_with("| 64 |"))
        .count();
    assert_eq!(rows, 8, "{text}");
    assert!(
        text.contains("Q4_0 block-quant matmul")
            && text.contains("f32 (tract's MatMul)")
            && text.contains("f32-dense (EbDense")
    );
    assert!(text.contains("EdgeBench kernel"));
    let json = common::edgebench(&common::repo(), &["bench", "ops", "--quick", "--json"]);
    assert!(json.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&json.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    for m in [
        "dense_n32_ms",
        "ebattention_n32_ms",
        "scar_n64_k16_ms",
        "scar_n64_k1_s4_w16_speedup_vs_ebattention",
        "linear_4-bit_batch1_bytes_vs_f32",
    ] {
        assert!(lines.iter().any(|v| v["metric"] == m), "{m} missing");
    }
}

#[test]
fn bench_model_compares_quantized_lowerings_in_one_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("gem");
    edgebench::gem::materialize_seeded(
        &edgebench::gem::tiny_config(),
        edgebench::gem::Variant::Full,
        &dir,
    )
    .unwrap();
    let args = |lowering: &str| {
        common::edgebench(
            &common::repo(),
            &[
                "bench",
                "model",
                "--model",
                dir.to_str().unwrap(),
                "--prompt-tokens",
                "8",
                "--decode-tokens",
                "2",
                "--repeats",
                "1",
                "--json",
                "--compare-lowering",
                lowering,
            ],
        )
    };
    let o = args("tract");
    assert!(o.status.success(), "{}", common::text(&o));
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let value = |m: &str| {
        rows.iter()
            .find(|v| v["metric"] == m)
            .unwrap_or_else(|| panic!("{m} missing"))["value"]
            .as_f64()
            .unwrap()
    };
    assert!(value("decode_speedup_vs_tract") > 0.0);
    assert!(value("prefill_speedup_vs_tract") > 0.0);
    // bytes read per token leave out the embedding table, so they are below the file size
    assert!(value("weight_bytes_per_token") < value("graph_bytes"));
    let o = args("fast");
    assert_eq!(o.status.code(), Some(2));
    assert!(common::text(&o).contains("--compare-lowering"));
}

#[test]
fn bench_eval_splits_model_and_harness_time_and_times_the_baseline_in_turns() {
    let repo = common::repo();
    let tmp = tempfile::tempdir().unwrap();
    let o = common::edgebench(
        &repo,
        &[
            "bench",
            "eval",
            "--suites",
            "commonsenseqa,lexglue-ecthr-a",
            "--limit",
            "2",
            "--baseline-truncation",
            "left",
            "--json",
            "--out",
            tmp.path().to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", common::text(&o));
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let order: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["suite"].as_str().unwrap(),
                r["truncation"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        order,
        [
            ("commonsenseqa", "document"),
            ("commonsenseqa", "left"),
            ("lexglue-ecthr-a", "document"),
            ("lexglue-ecthr-a", "left"),
        ],
        "each suite in turns with its baseline"
    );
    for r in &rows {
        assert_eq!(r["examples"], 2, "{r}");
        let (wall, model) = (
            r["wall_s"].as_f64().unwrap(),
            r["model_s"].as_f64().unwrap(),
        );
        assert!(
            model > 0.0 && model <= wall,
            "model time within wall time: {r}"
        );
    }
    // the fixtures' ECtHR cases exceed the tiny model's context: cut once
    // under `document`, left to the model under `left`
    assert!(rows[2]["cut_tokens"].as_u64().unwrap() > 0, "{}", rows[2]);
    assert_eq!(rows[3]["cut_tokens"], 0);
    assert!(rows[2]["prefill_s"].as_f64().unwrap() > 0.0);
    assert!(rows[0]["prefill_s"].is_null(), "only multi-label suites");
    // every run is an ordinary run folder, and the rows are kept beside them
    let bench = std::fs::read_dir(tmp.path().join("bench"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert!(bench.join("bench-eval.json").is_file());
    assert!(bench.join("runs/lexglue-ecthr-a-left/run.json").is_file());
}
