//! Performance mode through the real binary: validity, percentiles only when
//! backed by enough samples, power null with its reason when no source exists
//! and real figures from a meter log, projections always labelled estimated.

mod common;
use common::{edgebench, repo, text};
use serde_json::Value;

fn perf_json(out: &std::path::Path, id: &str) -> Value {
    let p = out.join("runs").join(id).join("perf.json");
    serde_json::from_str(&std::fs::read_to_string(&p).expect("perf.json written")).unwrap()
}

#[test]
fn valid_run_reports_percentiles_memory_and_null_power_with_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().to_str().unwrap();
    let empty_sysfs = tmp.path().join("sys");
    std::fs::create_dir_all(&empty_sysfs).unwrap();
    let o = edgebench(
        &repo(),
        &[
            "run",
            "--mode",
            "perf",
            "--model",
            "builtin:gem-tiny",
            "--out",
            out,
            "--run-id",
            "p",
            // exactly the minimum queries, however fast the model: 140
            // decode gaps, enough for p90 and not for p99
            "--min-queries",
            "70",
            "--min-duration",
            "0",
            "--warmup",
            "2",
            "--gen-tokens",
            "3",
            "--prompt-tokens",
            "32",
            "--sysfs-root",
            empty_sysfs.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let j = perf_json(tmp.path(), "p");
    assert_eq!(j["validity"]["valid"], true);
    assert_eq!(j["scope"], "model-only");
    let q = j["queries"].as_u64().unwrap();
    assert!(q >= 70);
    // p90 needs 64 samples (LoadGen early stopping): present; p99 needs 662: not printed as a number
    let tpot = &j["decoder"]["tpot"]["percentiles"];
    let by = |p: f64| {
        tpot.as_array()
            .unwrap()
            .iter()
            .find(|e| (e["percentile"].as_f64().unwrap() - p).abs() < 1e-9)
            .unwrap()["result"]
            .clone()
    };
    assert_eq!(by(0.9)["status"], "value");
    assert_eq!(by(0.99)["status"], "insufficient");
    assert!(text(&o).contains("insufficient samples"));
    assert!(j["peak_rss_bytes"].as_u64().unwrap() > 1_000_000);
    assert!(
        j["memory"]["weight_bytes_by_precision"]["4-bit"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(j["power_w"].is_null());
    assert!(j["power_null_reason"]
        .as_str()
        .unwrap()
        .contains("no usable power source"));
    let proj = j["projections"].as_array().unwrap();
    assert_eq!(proj.len(), 4);
    for p in proj {
        assert_eq!(p["estimated"], true);
        assert_eq!(p["detail"]["label"], "estimated");
    }
    // the file is one schema: the headline the writer put at the top level
    // is what `paper` and `gate --perf` read back
    let summary = edgebench::perf::PerfSummary::load(&tmp.path().join("runs/p"))
        .unwrap()
        .unwrap();
    assert_eq!(
        summary.latency_p50(),
        j["latency_ms_per_token"]["p50"].as_f64()
    );
    assert!(summary.latency_p50().unwrap() > 0.0);
    assert_eq!(summary.peak_rss_bytes, j["peak_rss_bytes"].as_u64());
    assert_eq!(summary.flops_per_token, j["flops_per_token"].as_f64());
    assert_eq!(summary.projections.len(), 4);
    assert!(summary
        .projections
        .iter()
        .all(|p| p.estimated && p.detail.is_none()));
    assert_eq!(
        summary.projection("raspberry-pi-4").unwrap().ms_per_token,
        proj.iter()
            .find(|p| p["device"] == "raspberry-pi-4")
            .unwrap()["ms_per_token"]
            .as_f64()
    );
    let samples = std::fs::read_to_string(tmp.path().join("runs/p/perf-samples.jsonl")).unwrap();
    assert_eq!(
        samples.lines().count() as u64,
        q,
        "every raw sample is kept"
    );
}

#[test]
fn run_missing_its_minimums_is_invalid_and_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().to_str().unwrap();
    let o = edgebench(
        &repo(),
        &[
            "perf",
            "--out",
            out,
            "--run-id",
            "short",
            "--min-queries",
            "1000000",
            "--min-duration",
            "0.1",
            "--max-duration",
            "0.3",
            "--warmup",
            "0",
            "--power",
            "off",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let j = perf_json(tmp.path(), "short");
    assert_eq!(j["validity"]["valid"], false);
    assert!(j["validity"]["reasons"][0]
        .as_str()
        .unwrap()
        .contains("fewer than the minimum"));
    assert!(text(&o).contains("INVALID"));
}

#[test]
fn meter_log_gives_energy_over_the_timed_window() {
    let tmp = tempfile::tempdir().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    // a USB meter logging a constant 3 W from 5 s ago to 2 min ahead, every 0.1 s
    let mut log = String::from("time_s,power_w\n");
    for i in 0..1250 {
        log += &format!("{:.3},3.0\n", now - 5.0 + i as f64 * 0.1);
    }
    let path = tmp.path().join("meter.csv");
    std::fs::write(&path, log).unwrap();
    let out = tmp.path().to_str().unwrap();
    let o = edgebench(
        &repo(),
        &[
            "perf",
            "--out",
            out,
            "--run-id",
            "m",
            "--min-queries",
            "5",
            "--min-duration",
            "0.5",
            "--warmup",
            "1",
            "--power",
            path.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let j = perf_json(tmp.path(), "m");
    let e = &j["power"]["energy"];
    assert_eq!(e["method"], "meter_csv");
    assert!((j["power_w"].as_f64().unwrap() - 3.0).abs() < 1e-6);
    let window = e["window_s"].as_f64().unwrap();
    assert!((e["joules"].as_f64().unwrap() - 3.0 * window).abs() < 1e-3);
    let per_q = j["power"]["joules_per_query"].as_f64().unwrap();
    assert!((per_q * j["queries"].as_f64().unwrap() - 3.0 * window).abs() < 1e-3);
    assert_eq!(
        j["joules_per_query"].as_f64(),
        Some(per_q),
        "headline = detail"
    );
}

#[test]
fn bad_power_flag_and_unknown_device_are_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let o = edgebench(
        &repo(),
        &[
            "perf",
            "--power",
            "/no/such/log.csv",
            "--out",
            tmp.path().to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("--power"));
    let o = edgebench(&repo(), &["devices", "show", "nokia-3310"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("raspberry-pi-4"),
        "lists the known ids: {}",
        text(&o)
    );
    let o = edgebench(&repo(), &["devices", "list"]);
    assert!(o.status.success());
    for id in [
        "raspberry-pi-4",
        "pixel-6",
        "iphone-13",
        "custom-npu",
        "host",
    ] {
        assert!(text(&o).contains(id));
    }
}
