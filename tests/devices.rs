//! Device profiles, host detection, roofline projection and latency statistics
//! (issue #5, sections 1, 4 and 5).

use edgebench::device::profile::{
    self, load, load_dir, project, project_on, read_thermal, Bound, ComputeKind, DeviceProfile,
    Host, HostMeasurements, HostRoots, ProfileError, Reading, Spec, Workload,
};
use edgebench::device::stats::{self, DecodeTiming, PercentileResult, PerfSettings};
use std::path::{Path, PathBuf};
use std::time::Duration;

const GIB: u64 = 1 << 30;

fn devices_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("devices")
}

fn host_fixture(name: &str) -> HostRoots {
    HostRoots::at(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/host")
            .join(name),
    )
}

fn paper_devices() -> Vec<DeviceProfile> {
    load_dir(devices_dir()).expect("devices/ loads")
}

fn by_id<'a>(all: &'a [DeviceProfile], id: &str) -> &'a DeviceProfile {
    all.iter()
        .find(|p| p.id == id)
        .unwrap_or_else(|| panic!("no profile {id}"))
}

fn npu_peak(p: &DeviceProfile) -> Option<f64> {
    p.unit(ComputeKind::Npu).and_then(|u| u.peak_flops.get())
}

#[test]
fn the_four_paper_devices_load_in_paper_order() {
    let all = paper_devices();
    let ids: Vec<&str> = all.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, profile::PAPER_DEVICE_IDS);
}

#[test]
fn spec_section_6_numbers() {
    let all = paper_devices();
    // Raspberry Pi 4: 4 GB, 12 GFLOP/s on the CPU, no NPU, ~5 W.
    let pi = by_id(&all, "raspberry-pi-4");
    assert_eq!(pi.ram_bytes.get(), Some(4 * GIB));
    assert_eq!(pi.cores.get(), Some(4));
    assert_eq!(
        pi.unit(ComputeKind::Cpu).unwrap().peak_flops.get(),
        Some(12e9)
    );
    assert!(pi.unit(ComputeKind::Npu).is_none());
    assert_eq!(pi.power_envelope_w.get(), Some(5.0));
    assert_eq!(pi.arch.as_deref(), Some("aarch64-unknown-linux-gnu"));
    // Pixel 6: 8 GB, NPU 20 TFLOP/s.
    let px = by_id(&all, "pixel-6");
    assert_eq!(px.ram_bytes.get(), Some(8 * GIB));
    assert_eq!(npu_peak(px), Some(20e12));
    assert_eq!(px.arch.as_deref(), Some("aarch64-linux-android"));
    // iPhone 13: 6 GB, NPU 15.8 TFLOP/s.
    let ip = by_id(&all, "iphone-13");
    assert_eq!(ip.ram_bytes.get(), Some(6 * GIB));
    assert!((npu_peak(ip).unwrap() - 15.8e12).abs() < 1.0);
    assert_eq!(ip.arch.as_deref(), Some("aarch64-apple-ios"));
    // Custom NPU: 8 GB, 20 TFLOP/s, nothing else known.
    let npu = by_id(&all, "custom-npu");
    assert_eq!(npu.ram_bytes.get(), Some(8 * GIB));
    assert_eq!(npu_peak(npu), Some(20e12));
    assert!(matches!(
        npu.memory_bandwidth_bytes_per_s,
        Spec::Unknown { .. }
    ));
    assert!(matches!(npu.power_envelope_w, Spec::Unknown { .. }));
    assert_eq!(npu.arch, None);
}

#[test]
fn every_known_value_has_a_source_and_derived_bandwidths_are_marked() {
    for p in paper_devices() {
        let mut sources: Vec<Option<&str>> = vec![
            p.cpu.source(),
            p.cores.source(),
            p.ram_bytes.source(),
            p.memory_bandwidth_bytes_per_s.source(),
            p.power_envelope_w.source(),
        ];
        sources.extend(p.compute.iter().map(|u| u.peak_flops.source()));
        for s in sources.into_iter().flatten() {
            assert!(s.len() > 8, "{}: thin source `{s}`", p.id);
        }
        // The SPEC figures cite SPEC.md.
        assert!(
            p.ram_bytes.source().unwrap().contains("SPEC.md section 6"),
            "{}",
            p.id
        );
        // Every bandwidth given is computed from transfer rate x bus width.
        if p.memory_bandwidth_bytes_per_s.get().is_some() {
            assert!(p.memory_bandwidth_bytes_per_s.is_derived(), "{}", p.id);
        }
    }
    let all = paper_devices();
    // 3200 MT/s x 4 B, 6400 MT/s x 8 B, 4266 MT/s x 8 B.
    let bw = |id| by_id(&all, id).memory_bandwidth_bytes_per_s.get().unwrap();
    assert_eq!(bw("raspberry-pi-4"), 12.8e9);
    assert_eq!(bw("pixel-6"), 51.2e9);
    assert!((bw("iphone-13") - 34.1e9).abs() < 1e3);
}

#[test]
fn projection_is_the_roofline_lower_bound_and_labelled_estimated() {
    let all = paper_devices();
    let pi = by_id(&all, "raspberry-pi-4");
    // A 10.5 M-parameter 4-bit model: 2 x 10.5e6 FLOPs and 5.25e6 weight bytes per token.
    let w = Workload {
        flops_per_token: 21e6,
        weight_bytes_per_token: 5.25e6,
        other_bytes_per_token: 0.0,
    };
    let pr = project(pi, &w).unwrap();
    // 21e6 / 12e9 = 1.75 ms; 5.25e6 / 12.8e9 = 0.41015625 ms.
    assert!((pr.compute_bound_ms.unwrap() - 1.75).abs() < 1e-12);
    assert!((pr.memory_bound_ms.unwrap() - 0.41015625).abs() < 1e-12);
    assert_eq!(pr.ms_per_token_lower_bound, pr.compute_bound_ms);
    assert_eq!(pr.bound, Some(Bound::Compute));
    assert!(pr.is_estimated());

    // The same bytes on the Pixel 6 NPU are memory bound: 20 TFLOP/s makes
    // compute 1.05e-3 ms, 51.2 GB/s makes memory 0.1025390625 ms.
    let px = by_id(&all, "pixel-6");
    let pr = project(px, &w).unwrap();
    assert_eq!(pr.compute_unit.as_deref(), Some("Google Tensor TPU"));
    assert_eq!(pr.bound, Some(Bound::Memory));
    assert!((pr.ms_per_token_lower_bound.unwrap() - 0.1025390625).abs() < 1e-12);
    // On its CPU (peak unknown) only the memory bound remains.
    let cpu = project_on(px, ComputeKind::Cpu, &w).unwrap();
    assert_eq!(cpu.compute_bound_ms, None);
    assert_eq!(cpu.bound, Some(Bound::Memory));
    assert!(cpu
        .caveats
        .iter()
        .any(|c| c.contains("peak FLOP/s unknown")));

    // The custom NPU has no bandwidth: compute only, and it says so.
    let npu = by_id(&all, "custom-npu");
    let pr = project(npu, &w).unwrap();
    assert_eq!(pr.memory_bound_ms, None);
    assert!((pr.ms_per_token_lower_bound.unwrap() - 21e6 / 20e12 * 1e3).abs() < 1e-15);
    assert!(pr
        .caveats
        .iter()
        .any(|c| c.contains("memory bandwidth unknown")));

    let json = serde_json::to_value(&pr).unwrap();
    assert_eq!(json["label"], "estimated");
    assert_eq!(json["estimated"], true);
    assert_eq!(json["bound"], "compute");

    let negative = Workload {
        weight_bytes_per_token: -1.0,
        ..w
    };
    assert!(project(pi, &negative).is_err());
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn pi_text() -> String {
    std::fs::read_to_string(devices_dir().join("raspberry-pi-4.toml")).unwrap()
}

#[test]
fn bad_profiles_are_clear_errors_naming_file_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    let good = pi_text();
    // The pristine copy loads.
    load(write(tmp.path(), "raspberry-pi-4.toml", &good)).unwrap();

    let malformed = write(
        tmp.path(),
        "raspberry-pi-4.toml",
        "id = \"raspberry-pi-4\"\n[ram\n",
    );
    let err = load(&malformed).unwrap_err();
    assert!(matches!(err, ProfileError::Toml { .. }), "{err}");
    assert!(err.to_string().contains("raspberry-pi-4.toml"));

    let cases: [(String, &str, &str); 6] = [
        (
            good.replace(
                "[ram]\nvalue = 4\nunit = \"GiB\"\n",
                "[ram]\nunit = \"GiB\"\n",
            ),
            "missing field",
            "ram.value",
        ),
        (
            good.replace("value = 12.8\n", "value = 0\n"),
            "positive",
            "memory_bandwidth.value",
        ),
        (
            good.replace("value = 12.8\n", "value = -12.8\n"),
            "positive",
            "memory_bandwidth.value",
        ),
        (
            good.replace("unit = \"GB/s\"", "unit = \"gigabytes per second\""),
            "unknown unit",
            "memory_bandwidth.unit",
        ),
        (
            good.replace("unit = \"GFLOP/s\"", "unit = \"GOPS\""),
            "unknown unit",
            "compute[0].peak.unit",
        ),
        (
            good.replace(
                "[power_envelope]\nvalue = 5\nunit = \"W\"\n",
                "[power_envelope]\nvalue = 5\n",
            ),
            "missing field",
            "power_envelope.unit",
        ),
    ];
    for (text, kind, field) in cases {
        assert_ne!(text, good, "replacement for {field} did not apply");
        let path = write(tmp.path(), "raspberry-pi-4.toml", &text);
        let msg = load(&path).unwrap_err().to_string();
        assert!(msg.contains(kind) && msg.contains(field), "{field}: {msg}");
        assert!(msg.contains("raspberry-pi-4.toml"), "{msg}");
    }

    // A whole required table missing, and a typo'd field.
    let no_compute = good.split("[[compute]]").next().unwrap().to_string();
    let msg = load(write(tmp.path(), "raspberry-pi-4.toml", &no_compute))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("missing field `compute`"), "{msg}");
    let typo = good.replace("[memory_bandwidth]", "[memory_bandwith]");
    let msg = load(write(tmp.path(), "raspberry-pi-4.toml", &typo))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("memory_bandwith"), "{msg}");

    // load_dir reports the bad file among good ones; a missing dir is an Io error.
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "raspberry-pi-4.toml", &good);
    write(dir.path(), "broken.toml", "id = \"broken\"\nname = 3\n");
    let msg = load_dir(dir.path()).unwrap_err().to_string();
    assert!(msg.contains("broken.toml"), "{msg}");
    assert!(matches!(
        load_dir(dir.path().join("nope")),
        Err(ProfileError::Io { .. })
    ));
    assert!(matches!(
        load(dir.path().join("nope.toml")),
        Err(ProfileError::Io { .. })
    ));
}

#[test]
fn raspberry_pi_host_tree() {
    let h = Host::detect_from(&host_fixture("rpi4"));
    assert_eq!(
        h.cpu_model.value().map(String::as_str),
        Some("4x Cortex-A72")
    );
    assert_eq!(
        h.board.value().map(String::as_str),
        Some("Raspberry Pi 4 Model B Rev 1.4")
    );
    assert_eq!(h.logical_cores.value(), Some(&4));
    assert_eq!(h.ram_bytes.value(), Some(&(3884360 * 1024)));
    assert_eq!(
        h.kernel.value().map(String::as_str),
        Some("6.6.51+rpt-rpi-v8")
    );
    assert_eq!(
        h.os.value().map(String::as_str),
        Some("Debian GNU/Linux 12 (bookworm)")
    );
    assert_eq!(h.governor.value().map(String::as_str), Some("ondemand"));
    assert_eq!(h.cpu_max_mhz.value(), Some(&1500.0));
    let t = h.thermal.value().expect("thermal zone");
    assert_eq!(t.max_celsius, 48.686);
    assert_eq!(t.zones[0].kind.as_deref(), Some("cpu-thermal"));
    match &h.cpu_model {
        Reading::Read { source, .. } => assert!(source.ends_with("proc/cpuinfo")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn x86_host_tree_takes_max_over_plausible_zones() {
    let h = Host::detect_from(&host_fixture("x86"));
    assert_eq!(
        h.cpu_model.value().map(String::as_str),
        Some("Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz")
    );
    assert_eq!(h.logical_cores.value(), Some(&2));
    assert_eq!(h.ram_bytes.value(), Some(&(16303012 * 1024)));
    assert!(matches!(h.board, Reading::Unreadable { .. }));
    assert_eq!(h.governor.value().map(String::as_str), Some("performance"));
    let t = h.thermal.value().unwrap();
    // zone0 52.0, zone1 27.8; zone2 has no temp file, zone10 reads -274 C.
    assert_eq!(t.max_celsius, 52.0);
    assert_eq!(t.zones.len(), 2);
    assert_eq!(t.skipped.len(), 2);
    assert!(t.skipped.iter().any(|s| s.starts_with("thermal_zone2:")));
    assert!(t.skipped.iter().any(|s| s.contains("implausible -274000")));
    // read_thermal alone gives the same (for start/end snapshots).
    assert_eq!(read_thermal(&host_fixture("x86")), h.thermal);
}

#[test]
fn unreadable_items_keep_path_and_reason() {
    let broken = Host::detect_from(&host_fixture("broken"));
    for (what, reading) in [
        ("cpu", broken.cpu_model.clone()),
        ("os", broken.os.clone()),
        ("governor", broken.governor.clone()),
    ] {
        match reading {
            Reading::Unreadable {
                path: Some(p),
                reason,
            } => {
                assert!(p.starts_with(host_fixture("broken").root), "{what}: {p:?}");
                assert!(!reason.is_empty(), "{what}");
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    assert!(
        matches!(&broken.ram_bytes, Reading::Unreadable { reason, .. } if reason.contains("MemTotal: lots kB"))
    );
    assert!(
        matches!(&broken.governor, Reading::Unreadable { reason, .. } if reason == "file is empty")
    );
    assert!(
        matches!(&broken.cpu_max_mhz, Reading::Unreadable { reason, .. } if reason.contains("warm"))
    );
    assert!(
        matches!(&broken.thermal, Reading::Unreadable { reason, .. } if reason.contains("n/a"))
    );
    assert!(broken.logical_cores.value().is_none());

    // A tree with nothing at all: every item unreadable, no panic, and it
    // serialises with the reasons.
    let empty = tempfile::tempdir().unwrap();
    let h = Host::detect_from(&HostRoots::at(empty.path()));
    let json = serde_json::to_value(&h).unwrap();
    for key in [
        "cpu_model",
        "board",
        "logical_cores",
        "ram_bytes",
        "os",
        "kernel",
        "governor",
        "thermal",
    ] {
        assert_eq!(json[key]["status"], "unreadable", "{key}");
        assert!(json[key]["reason"].as_str().unwrap().len() > 3, "{key}");
    }
}

#[test]
fn host_profile_and_list() {
    let host = Host::detect_from(&host_fixture("rpi4"));
    let none = HostMeasurements::default();
    let all = profile::list(devices_dir(), &host, &none).unwrap();
    let ids: Vec<&str> = all.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "raspberry-pi-4",
            "pixel-6",
            "iphone-13",
            "custom-npu",
            "host"
        ]
    );
    let hp = all.last().unwrap();
    assert_eq!(hp.cores.get(), Some(4));
    assert_eq!(hp.ram_bytes.get(), Some(3884360 * 1024));
    assert!(matches!(
        hp.memory_bandwidth_bytes_per_s,
        Spec::Unknown { .. }
    ));
    assert!(hp.compute[0].peak_flops.get().is_none());
    // Nothing measured: nothing to project on.
    let w = Workload {
        flops_per_token: 1e9,
        weight_bytes_per_token: 1e9,
        other_bytes_per_token: 0.0,
    };
    let pr = project(hp, &w).unwrap();
    assert_eq!(pr.ms_per_token_lower_bound, None);
    assert_eq!(pr.bound, None);
    assert!(
        pr.caveats
            .iter()
            .any(|c| c.contains("peak FLOP/s not measured")),
        "{:?}",
        pr.caveats
    );

    // Measured bandwidth only: memory bound; a bogus peak stays unknown.
    let measured = HostMeasurements {
        memory_bandwidth_bytes_per_s: Some(4e9),
        peak_flops: Some(-1.0),
        precision: None,
        method: "stream-like copy, 256 MiB".into(),
    };
    let hp = DeviceProfile::host(&host, &measured);
    assert!(hp
        .memory_bandwidth_bytes_per_s
        .source()
        .unwrap()
        .contains("stream-like copy"));
    assert!(matches!(&hp.compute[0].peak_flops, Spec::Unknown { reason } if reason.contains("-1")));
    let pr = project(&hp, &w).unwrap();
    assert_eq!(pr.ms_per_token_lower_bound, Some(250.0));
    assert_eq!(pr.bound, Some(Bound::Memory));
}

#[test]
fn real_host_detection_never_panics() {
    let h = Host::detect();
    assert!(!h.target.is_empty());
    // On this Linux CI machine the core count is readable one way or another.
    if cfg!(target_os = "linux") {
        assert!(h.logical_cores.value().is_some_and(|n| *n >= 1));
        assert!(h.ram_bytes.value().is_some_and(|b| *b > 0));
    }
    serde_json::to_string(&h).unwrap();
}

#[test]
fn latency_statistics_follow_loadgen() {
    assert_eq!(stats::min_queries_for_percentile(0.90), Some(64));
    assert_eq!(stats::min_queries_for_percentile(0.99), Some(662));

    // 200 samples 0.5, 1.0, ..., 100.0 ms.
    let samples: Vec<f64> = (1..=200).map(|i| i as f64 * 0.5).collect();
    let s = stats::summarize(&samples).unwrap();
    assert_eq!(s.count, 200);
    assert_eq!(s.mean, Some(50.25));
    // floor(200 * 0.5) = 100 -> 50.5; floor(200 * 0.9) = 180 -> 90.5;
    // floor(200 * 0.95) = 190 -> 95.5.
    assert_eq!(s.percentile(0.5).unwrap().value(), Some(50.5));
    assert_eq!(s.percentile(0.9).unwrap().value(), Some(90.5));
    assert_eq!(s.percentile(0.95).unwrap().value(), Some(95.5));
    assert_eq!(
        s.percentile(0.99).unwrap(),
        &PercentileResult::Insufficient {
            needed: 662,
            have: 200
        }
    );
    assert_eq!(
        s.percentile(0.99).unwrap().to_string(),
        "insufficient samples (200/662)"
    );

    let settings = PerfSettings::default();
    let v = settings.validity(200, Duration::from_secs(4));
    assert!(!v.valid);
    assert!(
        v.to_string().contains("shorter than the minimum 10.000 s"),
        "{v}"
    );

    let d = stats::summarize_decoder(&[
        DecodeTiming::from_token_gaps(120.0, &[30.0, 30.0, 60.0]),
        DecodeTiming::from_token_gaps(100.0, &[20.0]),
    ])
    .unwrap();
    assert_eq!(d.tpot.mean, Some(30.0)); // (40 + 20) / 2
    assert_eq!(d.ttft.mean, Some(110.0));
    assert_eq!(d.output_tokens, 6);
}
