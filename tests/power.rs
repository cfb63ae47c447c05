//! Power and energy measurement against the hand-written fake sysfs trees, meter logs and
//! powermetrics output in `fixtures/power` (issue #5, section 3).

use edgebench::device::power::{
    detect, Battery, Hwmon, HwmonAttr, Meter, MeterLog, Method, PowerError, PowerSource,
    Powermetrics, Rapl, Reading,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/power")
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

/// Copies a fixture tree into `dst` (std only).
fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for entry in std::fs::read_dir(src).unwrap() {
        let entry = entry.unwrap();
        let to = dst.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), to).unwrap();
        }
    }
}

/// Replaces a sysfs file atomically, so a concurrent sampler never reads a half-written value.
fn write_sysfs(path: &Path, value: &str) {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, format!("{value}\n")).unwrap();
    std::fs::rename(tmp, path).unwrap();
}

fn at(unix_s: f64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs_f64(unix_s)
}

// ------------------------------------------------------------------------------------ RAPL

#[test]
fn rapl_uses_package_domains_only() {
    let mut rapl = Rapl::discover(&fixtures().join("rapl")).unwrap();
    // the core subzone, psys and the mmio duplicate of package-0 would double-count
    assert_eq!(rapl.domains(), vec!["package-0", "package-1"]);
    assert_eq!(rapl.method(), Method::Rapl);
    assert_eq!(rapl.read().unwrap(), Reading::Energy { joules: 0.0 });
}

#[test]
fn rapl_meter_differences_counters_across_a_wrap() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixtures().join("rapl"), dir.path());
    let rapl = Rapl::discover(dir.path()).unwrap();
    let mut meter = Meter::new(Box::new(rapl)).with_sample_rate(50.0).unwrap();
    meter.start().unwrap();
    std::thread::sleep(Duration::from_millis(40));
    // package-0: +2 J; package-1 wraps: 1 J up to max_energy_range_uj, then 0.5 J past 0
    write_sysfs(&dir.path().join("intel-rapl:0/energy_uj"), "125456789");
    write_sysfs(&dir.path().join("intel-rapl:1/energy_uj"), "500000");
    // ignored zones move a lot
    write_sysfs(&dir.path().join("intel-rapl:0:0/energy_uj"), "99999999999");
    write_sysfs(&dir.path().join("intel-rapl:2/energy_uj"), "99999999999");
    write_sysfs(
        &dir.path().join("intel-rapl-mmio:0/energy_uj"),
        "99999999999",
    );
    std::thread::sleep(Duration::from_millis(40));
    let e = meter.stop().unwrap();
    assert!(close(e.joules, 3.5, 1e-9), "{e:?}");
    assert_eq!(e.method, Method::Rapl);
    assert!(e.samples >= 2 && e.window_s > 0.07, "{e:?}");
    assert!(close(e.mean_watts, 3.5 / e.window_s, 1e-9));
    assert!(e.sample_rate_hz.is_some());
    assert_eq!(e.joules_above_idle, None);
}

#[test]
fn rapl_unreadable_counter_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixtures().join("rapl"), dir.path());
    std::fs::remove_file(dir.path().join("intel-rapl:1/energy_uj")).unwrap();
    let err = Rapl::discover(dir.path()).unwrap_err().to_string();
    assert!(err.contains("intel-rapl:1/energy_uj"), "{err}");
}

#[test]
fn rapl_without_packages_or_with_garbage() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(
        &fixtures().join("rapl/intel-rapl:0:0"),
        &dir.path().join("intel-rapl:0:0"),
    );
    let err = Rapl::discover(dir.path()).unwrap_err().to_string();
    assert!(err.contains("no RAPL package domain"), "{err}");
    assert!(err.contains("intel-rapl:0:0"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixtures().join("rapl"), dir.path());
    write_sysfs(&dir.path().join("intel-rapl:0/energy_uj"), "n/a");
    let err = Rapl::discover(dir.path()).unwrap_err();
    assert!(matches!(err, PowerError::BadValue { .. }), "{err}");
    assert!(err.to_string().contains("\"n/a\""), "{err}");

    let missing = Rapl::discover(&dir.path().join("nope")).unwrap_err();
    assert!(
        missing.to_string().contains("no such directory"),
        "{missing}"
    );
}

// ------------------------------------------------------------------------------------ hwmon

#[test]
fn hwmon_skips_temperature_only_chips() {
    let mut hw = Hwmon::discover(&fixtures().join("hwmon")).unwrap();
    assert!(hw.name().contains("ina219"), "{}", hw.name());
    assert_eq!(hw.attr(), HwmonAttr::PowerInput);
    assert!(hw.path().ends_with("hwmon1/power1_input"));
    assert_eq!(hw.read().unwrap(), Reading::Power { watts: 4.2 });

    let err = Hwmon::discover_named(&fixtures().join("hwmon"), "coretemp")
        .unwrap_err()
        .to_string();
    assert!(err.contains("hwmon0 (coretemp): no power"), "{err}");
    let err = Hwmon::discover_named(&fixtures().join("hwmon"), "amdgpu")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("\"amdgpu\"") && err.contains("hwmon1 (ina219)"),
        "{err}"
    );
    assert!(Hwmon::discover_named(&fixtures().join("hwmon"), "ina219").is_ok());
}

#[test]
fn hwmon_power_sampled_at_rate_is_exact_for_constant_power() {
    let hw = Hwmon::discover(&fixtures().join("hwmon")).unwrap();
    let mut meter = Meter::new(Box::new(hw)).with_sample_rate(100.0).unwrap();
    meter.start().unwrap();
    std::thread::sleep(Duration::from_millis(150));
    let e = meter.stop().unwrap();
    assert_eq!(e.method, Method::Hwmon);
    assert!(close(e.mean_watts, 4.2, 1e-9), "{e:?}");
    assert!(close(e.joules, 4.2 * e.window_s, 1e-9), "{e:?}");
    assert!(e.samples >= 5, "{e:?}");
    assert_eq!(e.sample_rate_hz, Some(100.0));
}

#[test]
fn hwmon_energy_counter_is_preferred_and_must_not_go_backwards() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixtures().join("hwmon"), dir.path());
    let chip = dir.path().join("hwmon1");
    write_sysfs(&chip.join("energy1_input"), "1000000000");
    let hw = Hwmon::discover(dir.path()).unwrap();
    assert_eq!(hw.attr(), HwmonAttr::Energy);
    let mut meter = Meter::new(Box::new(hw));
    meter.start().unwrap();
    write_sysfs(&chip.join("energy1_input"), "1005000000");
    let e = meter.stop().unwrap();
    assert!(close(e.joules, 5.0, 1e-9), "{e:?}");

    meter.start().unwrap();
    write_sysfs(&chip.join("energy1_input"), "7");
    let err = meter.stop().unwrap_err();
    assert!(matches!(err, PowerError::CounterBackwards { .. }), "{err}");
    assert!(err.to_string().contains("energy1_input"), "{err}");
}

// ------------------------------------------------------------------------------------ battery

#[test]
fn battery_discharging_uses_current_times_voltage_magnitude() {
    let mut bat = Battery::discover(&fixtures().join("battery")).unwrap();
    assert_eq!(bat.name(), "battery:BAT0");
    assert_eq!(bat.status().as_deref(), Some("Discharging"));
    // current_now is -1.25 A (negative while discharging, per the ABI) at 11.4 V
    let Reading::Power { watts } = bat.read().unwrap() else {
        panic!("battery gives power readings")
    };
    assert!(close(watts, 14.25, 1e-9), "{watts}");
}

#[test]
fn battery_power_now_is_preferred() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixtures().join("battery"), dir.path());
    write_sysfs(&dir.path().join("BAT0/power_now"), "9000000");
    let mut bat = Battery::discover(dir.path()).unwrap();
    assert_eq!(bat.read().unwrap(), Reading::Power { watts: 9.0 });
}

#[test]
fn battery_charging_is_refused_with_the_reason() {
    let err = Battery::discover(&fixtures().join("battery-charging")).unwrap_err();
    assert!(matches!(err, PowerError::NotDischarging { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("\"Charging\"") && msg.contains("meaningless"),
        "{msg}"
    );
    assert!(msg.contains("BAT0/status"), "{msg}");
}

#[test]
fn battery_plugged_in_mid_window_fails_the_window() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixtures().join("battery"), dir.path());
    let bat = Battery::discover(dir.path()).unwrap();
    let mut meter = Meter::new(Box::new(bat)).with_sample_rate(200.0).unwrap();
    meter.start().unwrap();
    write_sysfs(&dir.path().join("BAT0/status"), "Charging");
    std::thread::sleep(Duration::from_millis(30));
    let err = meter.stop().unwrap_err();
    assert!(matches!(err, PowerError::NotDischarging { .. }), "{err}");
}

// ------------------------------------------------------------------------------------ detect

#[test]
fn detect_without_sensors_is_unavailable_with_one_reason_per_backend() {
    let dir = tempfile::tempdir().unwrap();
    let err = detect(dir.path()).unwrap_err();
    assert!(err.reasons.len() >= 3, "{err}");
    assert!(err.reasons[0].starts_with("powercap: "), "{err}");
    assert!(err.reasons[1].starts_with("hwmon: "), "{err}");
    assert!(err.reasons[2].starts_with("battery: "), "{err}");
    assert!(
        err.to_string().starts_with("no usable power source"),
        "{err}"
    );
    let json = serde_json::to_value(&err).unwrap();
    assert_eq!(json["reasons"].as_array().unwrap().len(), err.reasons.len());
}

#[test]
fn detect_falls_through_unreadable_rapl_to_hwmon() {
    let dir = tempfile::tempdir().unwrap();
    let class = dir.path().join("class");
    copy_dir(&fixtures().join("rapl"), &class.join("powercap"));
    std::fs::remove_file(class.join("powercap/intel-rapl:0/energy_uj")).unwrap();
    copy_dir(
        &fixtures().join("battery-charging"),
        &class.join("power_supply"),
    );
    let err = detect(dir.path()).unwrap_err();
    assert!(err.reasons[0].contains("intel-rapl:0/energy_uj"), "{err}");
    assert!(err.reasons[2].contains("Charging"), "{err}");

    copy_dir(&fixtures().join("hwmon"), &class.join("hwmon"));
    let src = detect(dir.path()).unwrap();
    assert_eq!(src.method(), Method::Hwmon);
}

#[test]
fn detect_on_this_machine_is_clean() {
    match detect(Path::new("/sys")) {
        Ok(src) => assert!(!src.name().is_empty()),
        Err(u) => {
            assert!(u.reasons.len() >= 3, "{u}");
            assert!(
                u.reasons[..3].iter().all(|r| r.contains("/sys/class/")),
                "{u}"
            );
        }
    }
}

// ------------------------------------------------------------------------------------ meter CSV

const W0: f64 = 1_736_935_200.0; // meter-watts.csv starts here
const VA0: f64 = 1_736_935_300.0; // meter-volts-amps.csv starts here

#[test]
fn meter_log_watts_clipped_to_the_window() {
    let log = MeterLog::open(&fixtures().join("meter-watts.csv")).unwrap();
    assert_eq!(log.samples().len(), 11);
    assert!(close(log.sample_rate_hz(), 2.0, 1e-9));
    // 2 W for 1.5 s, edges interpolated between samples
    let w = log.energy_between(W0 + 0.25, W0 + 1.75).unwrap();
    assert!(close(w.joules, 3.0, 1e-9), "{w:?}");
    assert_eq!(w.samples, 3);
    // on the 2 W → 6 W step: P(2.25) = 4 W, then 6 W at 2.5 s
    let w = log.energy_between(W0 + 2.25, W0 + 2.5).unwrap();
    assert!(close(w.joules, 1.25, 1e-9), "{w:?}");

    // idle from the first 2 s, load from the last 2 s
    let mut meter = Meter::new(Box::new(log));
    let idle = meter.measure_window(at(W0), at(W0 + 2.0)).unwrap();
    assert!(close(idle.mean_watts, 2.0, 1e-9));
    meter.set_idle_watts(Some(idle.mean_watts));
    let e = meter.measure_window(at(W0 + 3.0), at(W0 + 5.0)).unwrap();
    assert!(close(e.joules, 12.0, 1e-6), "{e:?}");
    assert!(close(e.joules_above_idle.unwrap(), 8.0, 1e-6), "{e:?}");
    assert_eq!(e.method, Method::MeterCsv);
    assert_eq!(e.sample_rate_hz, Some(2.0));
    let per = e.per(4).unwrap();
    assert!(close(per.joules, 3.0, 1e-6) && close(per.joules_above_idle.unwrap(), 2.0, 1e-6));
    let json = serde_json::to_value(&e).unwrap();
    assert_eq!(json["method"], "meter_csv");
    assert_eq!(json["sample_rate_hz"], 2.0);
}

#[test]
fn meter_log_volts_and_milliamps_with_ms_timestamps() {
    let log = MeterLog::open(&fixtures().join("meter-volts-amps.csv")).unwrap();
    assert!(close(log.span().0, VA0, 1e-6) && close(log.span().1, VA0 + 1.0, 1e-6));
    assert!(close(log.samples()[0].1, 2.0, 1e-9)); // 5.00 V × 400 mA
                                                   // 2 W rising linearly to 3 W over 1 s
    let w = log.energy_between(VA0, VA0 + 1.0).unwrap();
    assert!(close(w.joules, 2.5, 1e-6), "{w:?}");
    assert_eq!(w.samples, 9);
    assert!(close(w.sample_rate_hz.unwrap(), 10.0, 1e-6));
}

#[test]
fn meter_log_window_must_be_covered() {
    let log = MeterLog::open(&fixtures().join("meter-watts.csv")).unwrap();
    let err = log.energy_between(W0 - 1.0, W0 + 1.0).unwrap_err();
    assert!(matches!(err, PowerError::NotCovered { .. }), "{err}");
    assert!(err.to_string().contains("starts at"), "{err}");
    let err = log.energy_between(W0 + 4.0, W0 + 6.0).unwrap_err();
    assert!(err.to_string().contains("ends at"), "{err}");
    assert!(err.to_string().contains("meter-watts.csv"), "{err}");
}

#[test]
fn meter_log_bad_files_say_what_is_wrong() {
    let f = fixtures();
    let err = MeterLog::open(&f.join("meter-no-units.csv"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("meter-no-units.csv") && err.contains("`power`"),
        "{err}"
    );
    assert!(err.contains("power_w") && err.contains("power_mw"), "{err}");

    let err = MeterLog::open(&f.join("meter-nonmonotonic.csv")).unwrap_err();
    assert!(matches!(err, PowerError::LogLine { line: 5, .. }), "{err}");
    assert!(err.to_string().contains("strictly increase"), "{err}");

    let err = MeterLog::open(&f.join("meter-missing-column.csv"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("missing current column") && err.contains("current_ma"),
        "{err}"
    );

    let err = MeterLog::open(&f.join("does-not-exist.csv"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("does-not-exist.csv"), "{err}");
}

/// A log the meter is still writing: the window is taken by start/stop on the wall clock.
#[test]
fn live_meter_log_integrates_the_start_stop_window() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.csv");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let mut text = String::from("timestamp_s,watts\n");
    for k in -10..=30 {
        text.push_str(&format!("{:.3},3.0\n", now + k as f64 * 0.1));
    }
    std::fs::write(&path, text).unwrap();
    let log = MeterLog::open(&path).unwrap();
    let mut meter = Meter::new(Box::new(log));
    meter.start().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let e = meter.stop().unwrap();
    assert!(close(e.mean_watts, 3.0, 1e-9), "{e:?}");
    assert!(e.window_s >= 0.2 && e.window_s < 2.0, "{e:?}");
}

// ------------------------------------------------------------------------------------ powermetrics

#[test]
fn powermetrics_fixture_prefers_combined_power() {
    let text = std::fs::read_to_string(fixtures().join("powermetrics.txt")).unwrap();
    let pm = Powermetrics::parse(&text).unwrap();
    assert_eq!(pm.samples.len(), 3);
    assert!(pm.samples.iter().all(|s| s.combined));
    assert!(close(pm.samples[0].watts, 1.290, 1e-12));
    assert_eq!(pm.samples[1].cpu_watts, Some(2.48));
    assert_eq!(pm.samples[1].gpu_watts, Some(0.12));
    assert!(close(pm.samples[2].elapsed_s, 1.00187, 1e-12));
    let expected = 1.290 * 1.00234 + 2.600 * 1.00012 + 0.941 * 1.00187;
    assert!(close(pm.energy_joules(), expected, 1e-9));
    assert!(close(pm.duration_s(), 3.00433, 1e-9));
}

#[cfg(unix)]
#[test]
fn powermetrics_process_streams_samples() {
    use edgebench::device::power::PowermetricsProcess;
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c").arg(format!(
        "cat '{}'; exec sleep 30",
        fixtures().join("powermetrics.txt").display()
    ));
    let proc = PowermetricsProcess::spawn_command(cmd, Duration::from_secs(10)).unwrap();
    // the third sample is emitted as soon as its Combined Power line arrives
    for _ in 0..100 {
        if proc.samples() == 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut meter = Meter::new(Box::new(proc)).with_sample_rate(100.0).unwrap();
    meter.start().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let e = meter.stop().unwrap();
    assert_eq!(e.method, Method::Powermetrics);
    assert!(close(e.mean_watts, 0.941, 1e-9), "{e:?}");
}

#[cfg(not(target_os = "macos"))]
#[test]
fn powermetrics_is_missing_off_macos() {
    let err = Powermetrics::spawn(Duration::from_millis(100))
        .unwrap_err()
        .to_string();
    assert!(err.contains("macOS"), "{err}");
}

// ------------------------------------------------------------------------------------ Meter

/// Test-only instantaneous source whose power the test sets.
struct Dial(Arc<AtomicU64>);

impl PowerSource for Dial {
    fn name(&self) -> &str {
        "dial"
    }
    fn method(&self) -> Method {
        Method::Hwmon
    }
    fn read(&mut self) -> Result<Reading, PowerError> {
        Ok(Reading::Power {
            watts: f64::from_bits(self.0.load(Ordering::SeqCst)),
        })
    }
}

#[test]
fn meter_measures_idle_then_energy_above_idle() {
    let dial = Arc::new(AtomicU64::new(2.0f64.to_bits()));
    let mut meter = Meter::idle(Box::new(Dial(dial.clone())), Duration::from_millis(100)).unwrap();
    assert_eq!(meter.idle_watts(), Some(2.0));
    dial.store(7.0f64.to_bits(), Ordering::SeqCst);
    meter.start().unwrap();
    std::thread::sleep(Duration::from_millis(150));
    let e = meter.stop().unwrap();
    assert!(close(e.joules, 7.0 * e.window_s, 1e-9), "{e:?}");
    assert!(
        close(e.joules_above_idle.unwrap(), 5.0 * e.window_s, 1e-9),
        "{e:?}"
    );
    assert_eq!(e.idle_watts, Some(2.0));
    let per = e.per(10).unwrap();
    assert!(close(per.joules, e.joules / 10.0, 1e-12));
    assert_eq!(e.per(0), None);
    // 10 Hz by default: t = 0, 0.1 s, then the closing read at about 0.15 s
    assert_eq!(e.sample_rate_hz, Some(10.0));
    assert!((2..=4).contains(&e.samples), "{e:?}");
}

#[test]
fn meter_misuse_is_an_error_not_a_panic() {
    let dial = Arc::new(AtomicU64::new(1.0f64.to_bits()));
    let mut meter = Meter::new(Box::new(Dial(dial)));
    assert!(meter.stop().is_err());
    meter.start().unwrap();
    assert!(meter.start().is_err());
    assert!(meter.measure_window(at(0.0), at(1.0)).is_err());
    meter.stop().unwrap();
    let err = meter.measure_window(at(0.0), at(1.0)).unwrap_err();
    assert!(err.to_string().contains("logging"), "{err}");
    assert!(meter.with_sample_rate(0.0).is_err());
    let dial = Arc::new(AtomicU64::new(1.0f64.to_bits()));
    assert!(Meter::new(Box::new(Dial(dial)))
        .with_sample_rate(f64::NAN)
        .is_err());
}
