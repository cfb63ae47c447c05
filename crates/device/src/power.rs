//! Power and energy measurement.
//!
//! A [`PowerSource`] yields either a cumulative energy counter or an instantaneous power reading.
//! Backends:
//!
//! * [`Rapl`]: Linux powercap / Intel RAPL `energy_uj` counters (µJ), wrap-around at
//!   `max_energy_range_uj`; package domains only, so nothing is double-counted.
//! * [`Hwmon`]: Linux hwmon `energy*_input` (µJ) or `power*_input` / `power*_average` (µW).
//! * [`Battery`]: Linux/Android `power_supply` batteries, `power_now` (µW) or
//!   `current_now` (µA) × `voltage_now` (µV), only while discharging.
//! * [`MeterLog`]: the CSV log of an external (USB) power meter, aligned to the timed window by
//!   wall-clock time.
//! * [`Powermetrics`]: macOS `powermetrics --samplers cpu_power,gpu_power` output.
//!
//! [`detect`] picks the first usable sysfs source or explains why none is usable ([`Unavailable`]).
//! [`Meter`] measures idle power, then integrates energy over exactly a timed window into an
//! [`Energy`] figure that always carries its `method` and sample rate.
//!
//! This module depends only on std, serde, serde_json, thiserror and csv.

use serde::Serialize;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use thiserror::Error;

/// Default sampling rate for instantaneous sources (and polling rate for counters).
pub const DEFAULT_SAMPLE_RATE_HZ: f64 = 10.0;

/// Highest sampling rate [`Meter::with_sample_rate`] accepts.
pub const MAX_SAMPLE_RATE_HZ: f64 = 1000.0;

/// Everything that can go wrong while reading power. Messages name the file, what is wrong and,
/// where there is one, the fix.
#[derive(Debug, Error)]
pub enum PowerError {
    /// A file or directory could not be read.
    #[error("{path}: {source}{hint}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
        /// Advice appended to the message (may be empty).
        hint: String,
    },
    /// A sysfs file did not hold the integer it should.
    #[error("{path}: expected {expected}, found {found:?}; the kernel writes one integer and a newline here, is this the right file?")]
    BadValue {
        /// The file.
        path: PathBuf,
        /// What was expected, with its unit.
        expected: &'static str,
        /// What was found (trimmed).
        found: String,
    },
    /// No device of this kind was found; the message says where it looked.
    #[error("{0}")]
    NotFound(String),
    /// A battery is not discharging, so its current is not the system's draw.
    #[error("{path}: battery status is {status:?}; a discharge reading is meaningless unless the battery is discharging (on the charger it measures charging, not the system's draw): unplug the charger and run again")]
    NotDischarging {
        /// The `status` file.
        path: PathBuf,
        /// Its content.
        status: String,
    },
    /// An energy counter decreased and its range is unknown.
    #[error("{path}: energy counter went backwards ({before} µJ, then {after} µJ) and its wrap range is unknown; the counter was reset or wrapped: measure a shorter window")]
    CounterBackwards {
        /// The counter file.
        path: PathBuf,
        /// Previous raw value.
        before: u64,
        /// New raw value.
        after: u64,
    },
    /// A meter log or powermetrics file is malformed as a whole (header, too few samples).
    #[error("{path}: {message}")]
    Log {
        /// The log file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// One line of a meter log or powermetrics file is malformed.
    #[error("{path}: line {line}: {message}")]
    LogLine {
        /// The log file.
        path: PathBuf,
        /// 1-based line number (the header is line 1).
        line: u64,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A logging source does not cover the requested window (yet).
    #[error("{path}: {message}")]
    NotCovered {
        /// The log file.
        path: PathBuf,
        /// Which end is not covered.
        message: String,
    },
    /// The `powermetrics` process could not be started or stopped producing samples.
    #[error("powermetrics: {0}")]
    Powermetrics(String),
    /// The meter was used wrongly (not started, started twice, bad rate, unsupported window).
    #[error("power meter: {0}")]
    Meter(String),
}

impl PowerError {
    fn io(path: &Path, source: io::Error, hint: &str) -> Self {
        let hint = if hint.is_empty() || source.kind() != io::ErrorKind::PermissionDenied {
            String::new()
        } else {
            format!(" ({hint})")
        };
        PowerError::Io {
            path: path.to_path_buf(),
            source,
            hint,
        }
    }
}

/// Advice for an unreadable RAPL counter.
const RAPL_HINT: &str =
    "RAPL needs root since CVE-2020-8694; run with sudo or `sudo chmod o+r` the energy_uj files";
/// Advice for other unreadable sysfs files.
const SYSFS_HINT: &str = "run as a user that can read it, or `sudo chmod o+r` the file";

/// How a figure was measured; serialises as `"rapl"`, `"hwmon"`, `"battery"`, `"meter_csv"`,
/// `"powermetrics"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Linux powercap / Intel RAPL energy counters.
    Rapl,
    /// Linux hwmon power or energy sensor.
    Hwmon,
    /// Linux/Android battery discharge (`power_supply`).
    Battery,
    /// External power meter CSV log.
    MeterCsv,
    /// macOS `powermetrics`.
    Powermetrics,
}

impl Method {
    /// The serialised name.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Rapl => "rapl",
            Method::Hwmon => "hwmon",
            Method::Battery => "battery",
            Method::MeterCsv => "meter_csv",
            Method::Powermetrics => "powermetrics",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One reading of a [`PowerSource`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reading {
    /// Cumulative energy in joules since the source was opened. Monotonic: the source has
    /// already unwrapped any counter wrap-around.
    Energy {
        /// Joules since the source was opened.
        joules: f64,
    },
    /// Instantaneous (or short-average) power in watts.
    Power {
        /// Watts.
        watts: f64,
    },
}

/// Energy a logging source integrated over a window itself.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct WindowEnergy {
    /// Joules over the window.
    pub joules: f64,
    /// Log samples inside the window.
    pub samples: usize,
    /// The log's mean sample rate.
    pub sample_rate_hz: Option<f64>,
}

/// A source of power or energy readings.
pub trait PowerSource: Send {
    /// Human-readable name, e.g. `rapl:package-0+package-1`.
    fn name(&self) -> &str;
    /// How it measures.
    fn method(&self) -> Method;
    /// Takes one reading now.
    fn read(&mut self) -> Result<Reading, PowerError>;
    /// True for sources that log on their own clock (external meters): [`Meter`] then asks them
    /// for [`PowerSource::window_energy`] instead of sampling.
    fn integrates_window(&self) -> bool {
        false
    }
    /// Energy over the wall-clock window `[t0, t1]` (UNIX seconds), for logging sources.
    fn window_energy(&mut self, t0: f64, t1: f64) -> Result<WindowEnergy, PowerError> {
        let _ = (t0, t1);
        Err(PowerError::Meter(format!(
            "{} does not log on its own; measure it with Meter::start/stop",
            self.name()
        )))
    }
}

impl fmt::Debug for dyn PowerSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PowerSource({}, {})", self.name(), self.method())
    }
}

// ---------------------------------------------------------------------------------------------
// sysfs helpers

fn read_text(path: &Path, hint: &str) -> Result<String, PowerError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| PowerError::io(path, e, hint))
}

fn read_u64(path: &Path, expected: &'static str, hint: &str) -> Result<u64, PowerError> {
    let text = read_text(path, hint)?;
    text.parse().map_err(|_| PowerError::BadValue {
        path: path.to_path_buf(),
        expected,
        found: text,
    })
}

fn read_i64(path: &Path, expected: &'static str, hint: &str) -> Result<i64, PowerError> {
    let text = read_text(path, hint)?;
    text.parse().map_err(|_| PowerError::BadValue {
        path: path.to_path_buf(),
        expected,
        found: text,
    })
}

/// Entries of a directory as (file name, path), sorted with numeric suffixes in numeric order.
fn list_dir(dir: &Path, hint: &str) -> Result<Vec<(String, PathBuf)>, PowerError> {
    let rd = std::fs::read_dir(dir).map_err(|e| PowerError::io(dir, e, hint))?;
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| PowerError::io(dir, e, hint))?;
        if let Some(name) = entry.file_name().to_str() {
            out.push((name.to_string(), entry.path()));
        }
    }
    out.sort_by_key(|a| natural_key(&a.0));
    Ok(out)
}

fn natural_key(name: &str) -> (String, u64) {
    let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (stem, num) = name.split_at(name.len() - digits);
    (stem.to_string(), num.parse().unwrap_or(0))
}

/// Difference between two readings of a counter that wraps to 0 after `max` (its
/// `max_energy_range_uj`). `None` if the counter went backwards and `max` cannot explain it.
pub fn counter_delta(before: u64, after: u64, max: u64) -> Option<u64> {
    if after >= before {
        Some(after - before)
    } else if before <= max {
        // wrapped: from `before` up to `max`, then from 0 up to `after`
        Some(max - before + after)
    } else {
        None
    }
}

/// A raw µJ counter unwrapped into a running total.
#[derive(Debug, Clone)]
struct Counter {
    path: PathBuf,
    /// Wrap range, `None` if unknown (hwmon).
    max_uj: Option<u64>,
    last_uj: u64,
}

impl Counter {
    /// Reads the counter and returns the µJ since the last read.
    fn advance(&mut self, hint: &str) -> Result<u64, PowerError> {
        let now = read_u64(&self.path, "an energy counter in µJ", hint)?;
        let delta = counter_delta(self.last_uj, now, self.max_uj.unwrap_or(0)).ok_or(
            PowerError::CounterBackwards {
                path: self.path.clone(),
                before: self.last_uj,
                after: now,
            },
        )?;
        self.last_uj = now;
        Ok(delta)
    }
}

// ---------------------------------------------------------------------------------------------
// RAPL

/// Linux powercap / Intel RAPL: the sum of the package domains' `energy_uj` counters.
///
/// Only top-level `intel-rapl:N` zones named `package-N` are used: subzones (`intel-rapl:N:M`:
/// core, uncore, dram) are inside a package or overlap it, `psys` covers the whole platform
/// including the packages, and `intel-rapl-mmio:N` duplicates package N, so each would
/// double-count. Wrap-around at `max_energy_range_uj` is unwrapped per package; the meter polls
/// often enough (the range is minutes to hours at package power) to see every wrap.
#[derive(Debug)]
pub struct Rapl {
    name: String,
    domains: Vec<(String, Counter)>,
    total_uj: u128,
}

impl Rapl {
    /// Default powercap root.
    pub const DEFAULT_ROOT: &'static str = "/sys/class/powercap";

    /// Finds the package domains under `root` (normally [`Rapl::DEFAULT_ROOT`]) and reads each
    /// counter once, so an unreadable counter fails here.
    pub fn discover(root: &Path) -> Result<Rapl, PowerError> {
        if !root.is_dir() {
            return Err(PowerError::NotFound(format!(
                "{}: no such directory (no powercap support: the kernel needs the intel_rapl_common module, on an Intel or AMD x86 CPU)",
                root.display()
            )));
        }
        let mut domains = Vec::new();
        let mut skipped = Vec::new();
        for (file, dir) in list_dir(root, SYSFS_HINT)? {
            let Some(index) = file.strip_prefix("intel-rapl:") else {
                continue;
            };
            if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
                skipped.push(file); // subzone intel-rapl:N:M
                continue;
            }
            let name = read_text(&dir.join("name"), SYSFS_HINT)?;
            if !name.starts_with("package-") {
                skipped.push(format!("{file} ({name})"));
                continue;
            }
            let energy = dir.join("energy_uj");
            let max = read_u64(
                &dir.join("max_energy_range_uj"),
                "the counter range in µJ",
                RAPL_HINT,
            )?;
            let last = read_u64(&energy, "an energy counter in µJ", RAPL_HINT)?;
            domains.push((
                name,
                Counter {
                    path: energy,
                    max_uj: Some(max),
                    last_uj: last,
                },
            ));
        }
        if domains.is_empty() {
            return Err(PowerError::NotFound(format!(
                "{}: no RAPL package domain (intel-rapl:N with name package-N){}",
                root.display(),
                if skipped.is_empty() {
                    String::new()
                } else {
                    format!("; skipped {}", skipped.join(", "))
                }
            )));
        }
        let labels: Vec<&str> = domains.iter().map(|(n, _)| n.as_str()).collect();
        Ok(Rapl {
            name: format!("rapl:{}", labels.join("+")),
            domains,
            total_uj: 0,
        })
    }

    /// The `name` of each package domain summed, e.g. `["package-0", "package-1"]`.
    pub fn domains(&self) -> Vec<&str> {
        self.domains.iter().map(|(n, _)| n.as_str()).collect()
    }
}

impl PowerSource for Rapl {
    fn name(&self) -> &str {
        &self.name
    }
    fn method(&self) -> Method {
        Method::Rapl
    }
    fn read(&mut self) -> Result<Reading, PowerError> {
        for (_, counter) in &mut self.domains {
            self.total_uj += u128::from(counter.advance(RAPL_HINT)?);
        }
        Ok(Reading::Energy {
            joules: self.total_uj as f64 / 1e6,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// hwmon

/// Which hwmon attribute a [`Hwmon`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum HwmonAttr {
    /// `energyN_input`, cumulative µJ.
    Energy,
    /// `powerN_input`, instantaneous µW.
    PowerInput,
    /// `powerN_average`, averaged µW.
    PowerAverage,
}

/// Linux hwmon power or energy sensor.
///
/// Within one chip the channel is chosen as: a channel whose `label` says package, socket,
/// total or system first; then energy counters before `power*_input` before `power*_average`;
/// then the lowest channel number. One channel is read (chips that expose several rails or
/// per-core counters would double-count if summed).
#[derive(Debug)]
pub struct Hwmon {
    name: String,
    path: PathBuf,
    attr: HwmonAttr,
    counter: Option<Counter>,
    total_uj: u128,
}

impl Hwmon {
    /// Default hwmon root.
    pub const DEFAULT_ROOT: &'static str = "/sys/class/hwmon";

    /// The first `hwmon*` under `root` with a power or energy file.
    pub fn discover(root: &Path) -> Result<Hwmon, PowerError> {
        Self::find(root, None)
    }

    /// The first `hwmon*` under `root` whose `name` file is `chip`.
    pub fn discover_named(root: &Path, chip: &str) -> Result<Hwmon, PowerError> {
        Self::find(root, Some(chip))
    }

    fn find(root: &Path, chip: Option<&str>) -> Result<Hwmon, PowerError> {
        if !root.is_dir() {
            return Err(PowerError::NotFound(format!(
                "{}: no such directory (no hwmon drivers loaded)",
                root.display()
            )));
        }
        let mut seen = Vec::new();
        for (file, dir) in list_dir(root, SYSFS_HINT)? {
            if !file.starts_with("hwmon") {
                continue;
            }
            let name = read_text(&dir.join("name"), SYSFS_HINT).unwrap_or_default();
            if chip.is_some_and(|c| c != name) {
                seen.push(format!("{file} ({name})"));
                continue;
            }
            match Self::open_chip(&dir, &file, &name) {
                Ok(Some(h)) => return Ok(h),
                Ok(None) => seen.push(format!("{file} ({name}): no power*/energy* file")),
                Err(e) => seen.push(format!("{file} ({name}): {e}")),
            }
        }
        let what = match chip {
            Some(c) => format!("no hwmon chip named {c:?}"),
            None => "no hwmon chip with a power*_input, power*_average or energy*_input file"
                .to_string(),
        };
        Err(PowerError::NotFound(format!(
            "{}: {what}{}",
            root.display(),
            if seen.is_empty() {
                String::new()
            } else {
                format!("; found {}", seen.join(", "))
            }
        )))
    }

    fn open_chip(dir: &Path, file: &str, name: &str) -> Result<Option<Hwmon>, PowerError> {
        // attributes live in the hwmon directory, or in device/ on old kernels
        let mut candidates = Vec::new();
        for d in [dir.to_path_buf(), dir.join("device")] {
            let Ok(entries) = list_dir(&d, SYSFS_HINT) else {
                continue;
            };
            for (f, p) in entries {
                let parsed = [
                    ("energy", "_input", HwmonAttr::Energy),
                    ("power", "_input", HwmonAttr::PowerInput),
                    ("power", "_average", HwmonAttr::PowerAverage),
                ]
                .into_iter()
                .find_map(|(pre, suf, attr)| {
                    let n = f.strip_prefix(pre)?.strip_suffix(suf)?;
                    let n: u32 = n.parse().ok()?;
                    Some((attr, n))
                });
                if let Some((attr, n)) = parsed {
                    let prefix = if attr == HwmonAttr::Energy {
                        "energy"
                    } else {
                        "power"
                    };
                    let label = std::fs::read_to_string(d.join(format!("{prefix}{n}_label")))
                        .map(|s| s.trim().to_string())
                        .unwrap_or_default();
                    let l = label.to_ascii_lowercase();
                    let preferred = ["package", "socket", "total", "sys"]
                        .iter()
                        .any(|k| l.contains(k));
                    candidates.push((!preferred, attr, n, p, label));
                }
            }
            if !candidates.is_empty() {
                break;
            }
        }
        candidates.sort_by_key(|a| (a.0, a.1, a.2));
        let Some((_, attr, _, path, label)) = candidates.into_iter().next() else {
            return Ok(None);
        };
        let channel = path
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or_default()
            .to_string();
        let label = if label.is_empty() {
            String::new()
        } else {
            format!(" {label:?}")
        };
        let mut hw = Hwmon {
            name: format!("hwmon:{name}/{channel}{label} ({file})"),
            counter: None,
            path,
            attr,
            total_uj: 0,
        };
        if attr == HwmonAttr::Energy {
            let last = read_u64(&hw.path, "an energy counter in µJ", SYSFS_HINT)?;
            hw.counter = Some(Counter {
                path: hw.path.clone(),
                max_uj: None,
                last_uj: last,
            });
        } else {
            hw.read()?;
        }
        Ok(Some(hw))
    }

    /// The file read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The attribute kind read.
    pub fn attr(&self) -> HwmonAttr {
        self.attr
    }
}

impl PowerSource for Hwmon {
    fn name(&self) -> &str {
        &self.name
    }
    fn method(&self) -> Method {
        Method::Hwmon
    }
    fn read(&mut self) -> Result<Reading, PowerError> {
        if let Some(counter) = &mut self.counter {
            self.total_uj += u128::from(counter.advance(SYSFS_HINT)?);
            return Ok(Reading::Energy {
                joules: self.total_uj as f64 / 1e6,
            });
        }
        let uw = read_u64(&self.path, "a power in µW", SYSFS_HINT)?;
        Ok(Reading::Power {
            watts: uw as f64 / 1e6,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Battery

/// Linux/Android battery (`/sys/class/power_supply/*` with `type` = `Battery`), read as the
/// system's draw while discharging.
///
/// Uses `power_now` (µW) when present, else `current_now` (µA) × `voltage_now` (µV). The sign of
/// `power_now`/`current_now` differs between drivers (the ABI says negative while discharging;
/// ACPI laptops and many phones report a positive discharge current), so the magnitude is used,
/// and the direction is taken from `status`: every read fails unless `status` is `Discharging`
/// (a reading while charging measures the charger, not the system). A battery without a
/// `status` file is trusted. Some Android kernels report `current_now` in mA instead of µA;
/// such a battery reads 1000 times too low.
#[derive(Debug)]
pub struct Battery {
    name: String,
    dir: PathBuf,
    use_power_now: bool,
}

impl Battery {
    /// Default power_supply root.
    pub const DEFAULT_ROOT: &'static str = "/sys/class/power_supply";

    /// The first battery under `root` (normally [`Battery::DEFAULT_ROOT`]) that can be read now;
    /// fails if it is not discharging.
    pub fn discover(root: &Path) -> Result<Battery, PowerError> {
        if !root.is_dir() {
            return Err(PowerError::NotFound(format!(
                "{}: no such directory (no power_supply class)",
                root.display()
            )));
        }
        let mut seen = Vec::new();
        let mut first_err = None;
        for (file, dir) in list_dir(root, SYSFS_HINT)? {
            let kind = read_text(&dir.join("type"), SYSFS_HINT).unwrap_or_default();
            if kind != "Battery" {
                seen.push(format!("{file} ({kind})"));
                continue;
            }
            let mut bat = Battery {
                name: format!("battery:{file}"),
                use_power_now: dir.join("power_now").exists(),
                dir,
            };
            match bat.read() {
                Ok(_) => return Ok(bat),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        Err(PowerError::NotFound(format!(
            "{}: no supply of type Battery{}",
            root.display(),
            if seen.is_empty() {
                String::new()
            } else {
                format!("; found {}", seen.join(", "))
            }
        )))
    }

    /// The battery's `status` (`Discharging`, `Charging`, `Full`, `Not charging`, ...), if it
    /// has one.
    pub fn status(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.join("status"))
            .ok()
            .map(|s| s.trim().to_string())
    }
}

impl PowerSource for Battery {
    fn name(&self) -> &str {
        &self.name
    }
    fn method(&self) -> Method {
        Method::Battery
    }
    fn read(&mut self) -> Result<Reading, PowerError> {
        let status_path = self.dir.join("status");
        if status_path.exists() {
            let status = read_text(&status_path, SYSFS_HINT)?;
            if status != "Discharging" {
                return Err(PowerError::NotDischarging {
                    path: status_path,
                    status,
                });
            }
        }
        let watts = if self.use_power_now {
            let uw = read_i64(&self.dir.join("power_now"), "a power in µW", SYSFS_HINT)?;
            uw.unsigned_abs() as f64 / 1e6
        } else {
            let ua = read_i64(&self.dir.join("current_now"), "a current in µA", SYSFS_HINT)?;
            let uv = read_i64(&self.dir.join("voltage_now"), "a voltage in µV", SYSFS_HINT)?;
            (ua.unsigned_abs() as f64 / 1e6) * (uv.unsigned_abs() as f64 / 1e6)
        };
        Ok(Reading::Power { watts })
    }
}

// ---------------------------------------------------------------------------------------------
// Integration math

/// Trapezoid-rule integral of `(t seconds, watts)` samples, in joules. Samples must be in time
/// order; fewer than two give 0.
pub fn trapezoid(samples: &[(f64, f64)]) -> f64 {
    samples
        .windows(2)
        .map(|w| (w[1].0 - w[0].0) * (w[0].1 + w[1].1) / 2.0)
        .sum()
}

/// Linear interpolation of the sample series at `t` (which must lie within it).
fn interpolate(samples: &[(f64, f64)], t: f64) -> f64 {
    let i = samples.partition_point(|s| s.0 < t);
    if i == 0 {
        return samples[0].1;
    }
    if i >= samples.len() {
        return samples[samples.len() - 1].1;
    }
    let (t_a, w_a) = samples[i - 1];
    let (t_b, w_b) = samples[i];
    if t_b <= t_a {
        return w_b;
    }
    w_a + (w_b - w_a) * (t - t_a) / (t_b - t_a)
}

/// Integral of time-ordered `(t, watts)` samples over `[t0, t1]`, interpolating linearly at both
/// edges: `Some((joules, samples strictly inside the window))`, or `None` when the samples do
/// not cover the window or `t1 <= t0`.
pub fn integrate_window(samples: &[(f64, f64)], t0: f64, t1: f64) -> Option<(f64, usize)> {
    let (first, last) = (samples.first()?, samples.last()?);
    if t0.is_nan() || t1.is_nan() || t1 <= t0 || samples.len() < 2 || first.0 > t0 || last.0 < t1 {
        return None;
    }
    let mut points = vec![(t0, interpolate(samples, t0))];
    let inside: Vec<(f64, f64)> = samples
        .iter()
        .copied()
        .filter(|s| s.0 > t0 && s.0 < t1)
        .collect();
    let n = inside.len();
    points.extend(inside);
    points.push((t1, interpolate(samples, t1)));
    Some((trapezoid(&points), n))
}

/// Seconds since the UNIX epoch (negative before it).
pub fn unix_seconds(t: SystemTime) -> f64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

// ---------------------------------------------------------------------------------------------
// External meter CSV log

const TIME_NAMES: &str = "time_s or timestamp_s (UNIX seconds), time_ms or timestamp_ms (UNIX milliseconds), timestamp (RFC 3339)";
const POWER_NAMES: &str =
    "power_w or watts (W), power_mw (mW), or voltage_v/volts/voltage_mv with current_a/amps/current_ma";
/// Column names that name a quantity but not its unit.
const UNITLESS: &[&str] = &[
    "time", "t", "power", "p", "voltage", "v", "current", "i", "energy",
];

#[derive(Debug, Clone, Copy)]
enum TimeCol {
    Seconds(usize),
    Millis(usize),
    Rfc3339(usize),
}

#[derive(Debug, Clone, Copy)]
enum PowerCols {
    Watts(usize, f64),
    VoltsAmps {
        v: usize,
        v_scale: f64,
        i: usize,
        i_scale: f64,
    },
}

/// The CSV log of an external power meter (USB power meters and the like), aligned to the
/// timed window by wall-clock time.
///
/// A header is required. Time: `time_s`/`timestamp_s` (UNIX seconds), `time_ms`/`timestamp_ms`
/// (UNIX milliseconds) or `timestamp` (RFC 3339, e.g. `2025-01-15T10:00:00.250Z`). Power:
/// `power_w`/`watts`, `power_mw`, or a voltage (`voltage_v`/`volts`/`voltage_mv`) and a current
/// (`current_a`/`amps`/`current_ma`) column. Names are case-insensitive; other columns are
/// ignored; lines starting with `#` are comments. Timestamps must strictly increase; power must
/// be finite and not negative. The meter's clock must be the host's (UNIX time).
#[derive(Debug, Clone)]
pub struct MeterLog {
    path: PathBuf,
    name: String,
    samples: Vec<(f64, f64)>,
    live: bool,
}

impl MeterLog {
    /// Reads and checks the log at `path`. As a [`PowerSource`] the file is re-read on every
    /// read and window, so a log the meter is still writing can be used live.
    pub fn open(path: &Path) -> Result<MeterLog, PowerError> {
        let file = std::fs::File::open(path).map_err(|e| PowerError::io(path, e, SYSFS_HINT))?;
        let mut log = Self::from_reader(path, file)?;
        log.live = true;
        Ok(log)
    }

    /// Parses log `text`; `path` is only used in messages.
    pub fn parse(path: &Path, text: &str) -> Result<MeterLog, PowerError> {
        Self::from_reader(path, text.as_bytes())
    }

    fn from_reader<R: Read>(path: &Path, reader: R) -> Result<MeterLog, PowerError> {
        let log_err = |message: String| PowerError::Log {
            path: path.to_path_buf(),
            message,
        };
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(true)
            .trim(csv::Trim::All)
            .comment(Some(b'#'))
            .from_reader(reader);
        let header: Vec<String> = rdr
            .headers()
            .map_err(|e| csv_error(path, &e))?
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect();
        if header.iter().all(|h| h.is_empty()) {
            return Err(log_err(format!(
                "empty log: the first line must be a header naming a time column ({TIME_NAMES}) and power ({POWER_NAMES})"
            )));
        }
        if header.iter().all(|h| h.parse::<f64>().is_ok()) {
            return Err(log_err(format!(
                "no header: the first line ({}) holds numbers; add a header naming a time column ({TIME_NAMES}) and power ({POWER_NAMES})",
                header.join(",")
            )));
        }
        let col = |names: &[&str]| header.iter().position(|h| names.contains(&h.as_str()));
        let unitless = |names: &[&str]| -> Option<String> {
            header.iter().find(|h| names.contains(&h.as_str())).cloned()
        };
        let found = header.join(", ");

        let time = if let Some(i) = col(&["time_s", "timestamp_s"]) {
            TimeCol::Seconds(i)
        } else if let Some(i) = col(&["time_ms", "timestamp_ms"]) {
            TimeCol::Millis(i)
        } else if let Some(i) = col(&["timestamp"]) {
            TimeCol::Rfc3339(i)
        } else if let Some(h) = unitless(&["time", "t"]) {
            return Err(log_err(format!(
                "column `{h}` does not say its unit; rename it to one of: {TIME_NAMES}"
            )));
        } else {
            return Err(log_err(format!(
                "missing time column: found [{found}], need one of: {TIME_NAMES}"
            )));
        };

        let volts = [("voltage_v", 1.0), ("volts", 1.0), ("voltage_mv", 1e-3)]
            .into_iter()
            .find_map(|(n, s)| col(&[n]).map(|i| (i, s)));
        let amps = [("current_a", 1.0), ("amps", 1.0), ("current_ma", 1e-3)]
            .into_iter()
            .find_map(|(n, s)| col(&[n]).map(|i| (i, s)));
        let power = if let Some(i) = col(&["power_w", "watts"]) {
            PowerCols::Watts(i, 1.0)
        } else if let Some(i) = col(&["power_mw"]) {
            PowerCols::Watts(i, 1e-3)
        } else {
            match (volts, amps) {
                (Some((v, v_scale)), Some((i, i_scale))) => PowerCols::VoltsAmps {
                    v,
                    v_scale,
                    i,
                    i_scale,
                },
                (Some(_), None) => {
                    return Err(log_err(format!(
                        "missing current column: found [{found}]; a voltage column needs a current column (current_a, amps or current_ma), or log power_w/watts/power_mw instead"
                    )))
                }
                (None, Some(_)) => {
                    return Err(log_err(format!(
                        "missing voltage column: found [{found}]; a current column needs a voltage column (voltage_v, volts or voltage_mv), or log power_w/watts/power_mw instead"
                    )))
                }
                (None, None) => {
                    if let Some(h) = unitless(UNITLESS) {
                        return Err(log_err(format!(
                            "column `{h}` does not say its unit; rename it to one of: {POWER_NAMES}"
                        )));
                    }
                    return Err(log_err(format!(
                        "missing power column: found [{found}], need {POWER_NAMES}"
                    )));
                }
            }
        };

        let mut samples: Vec<(f64, f64)> = Vec::new();
        let mut record = csv::StringRecord::new();
        loop {
            match rdr.read_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => return Err(csv_error(path, &e)),
            }
            let line = record.position().map_or(0, |p| p.line());
            let line_err = |message: String| PowerError::LogLine {
                path: path.to_path_buf(),
                line,
                message,
            };
            let field = |i: usize| -> Result<&str, PowerError> {
                record
                    .get(i)
                    .ok_or_else(|| line_err(format!("missing field `{}`", header[i])))
            };
            let number = |i: usize| -> Result<f64, PowerError> {
                let s = field(i)?;
                match s.parse::<f64>() {
                    Ok(x) if x.is_finite() => Ok(x),
                    _ => Err(line_err(format!(
                        "`{}` is {s:?}, not a finite number",
                        header[i]
                    ))),
                }
            };
            let t = match time {
                TimeCol::Seconds(i) => number(i)?,
                TimeCol::Millis(i) => number(i)? / 1e3,
                TimeCol::Rfc3339(i) => {
                    let s = field(i)?;
                    parse_rfc3339(s).ok_or_else(|| {
                        line_err(format!(
                            "`timestamp` is {s:?}, not an RFC 3339 time like 2025-01-15T10:00:00.250Z"
                        ))
                    })?
                }
            };
            let watts = match power {
                PowerCols::Watts(i, scale) => number(i)? * scale,
                PowerCols::VoltsAmps {
                    v,
                    v_scale,
                    i,
                    i_scale,
                } => number(v)? * v_scale * number(i)? * i_scale,
            };
            if watts < 0.0 {
                return Err(line_err(format!(
                    "negative power ({watts} W); is the meter connected the wrong way round?"
                )));
            }
            if let Some(&(prev, _)) = samples.last() {
                if t <= prev {
                    return Err(line_err(format!(
                        "timestamp {t} s is not after the previous one ({prev} s); timestamps must strictly increase"
                    )));
                }
            }
            samples.push((t, watts));
        }
        if samples.len() < 2 {
            return Err(log_err(format!(
                "{} sample(s); at least 2 are needed to integrate energy",
                samples.len()
            )));
        }
        Ok(MeterLog {
            name: format!("meter_csv:{}", path.display()),
            path: path.to_path_buf(),
            samples,
            live: false,
        })
    }

    /// The `(UNIX seconds, watts)` samples.
    pub fn samples(&self) -> &[(f64, f64)] {
        &self.samples
    }

    /// First and last timestamp (UNIX seconds).
    pub fn span(&self) -> (f64, f64) {
        (self.samples[0].0, self.samples[self.samples.len() - 1].0)
    }

    /// Mean sample rate over the whole log.
    pub fn sample_rate_hz(&self) -> f64 {
        let (a, b) = self.span();
        (self.samples.len() - 1) as f64 / (b - a)
    }

    /// Energy over `[t0, t1]` (UNIX seconds): the samples clipped to the window, interpolated at
    /// its edges, trapezoid rule. Fails if the log does not cover the window.
    pub fn energy_between(&self, t0: f64, t1: f64) -> Result<WindowEnergy, PowerError> {
        let (a, b) = self.span();
        let not_covered = |message: String| PowerError::NotCovered {
            path: self.path.clone(),
            message,
        };
        if t0.is_nan() || t1.is_nan() || t1 <= t0 {
            return Err(PowerError::Meter(format!(
                "empty window [{t0}, {t1}]: the end must be after the start"
            )));
        }
        if a > t0 {
            return Err(not_covered(format!(
                "log starts at {a} s (UNIX), after the window start {t0} s: start the meter's logging earlier, and check its clock matches this machine's"
            )));
        }
        if b < t1 {
            return Err(not_covered(format!(
                "log ends at {b} s (UNIX), before the window end {t1} s: keep the meter logging until after the run (or let it flush), and check its clock matches this machine's"
            )));
        }
        let (joules, samples) =
            integrate_window(&self.samples, t0, t1).ok_or_else(|| not_covered(String::new()))?;
        Ok(WindowEnergy {
            joules,
            samples,
            sample_rate_hz: Some(self.sample_rate_hz()),
        })
    }

    fn reload(&mut self) -> Result<(), PowerError> {
        if self.live {
            *self = MeterLog::open(&self.path)?;
        }
        Ok(())
    }
}

fn csv_error(path: &Path, e: &csv::Error) -> PowerError {
    match e.position() {
        Some(p) => PowerError::LogLine {
            path: path.to_path_buf(),
            line: p.line(),
            message: format!("{e}"),
        },
        None => PowerError::Log {
            path: path.to_path_buf(),
            message: format!("{e}"),
        },
    }
}

impl PowerSource for MeterLog {
    fn name(&self) -> &str {
        &self.name
    }
    fn method(&self) -> Method {
        Method::MeterCsv
    }
    /// The last logged power (the file is re-read first when opened with [`MeterLog::open`]).
    fn read(&mut self) -> Result<Reading, PowerError> {
        self.reload()?;
        Ok(Reading::Power {
            watts: self.samples[self.samples.len() - 1].1,
        })
    }
    fn integrates_window(&self) -> bool {
        true
    }
    fn window_energy(&mut self, t0: f64, t1: f64) -> Result<WindowEnergy, PowerError> {
        self.reload()?;
        self.energy_between(t0, t1)
    }
}

fn parse_rfc3339(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    if b.len() < 20 || !s.is_ascii() {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = &s[r];
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&mo) || d < 1 || d > month_days[(mo - 1) as usize] {
        return None;
    }
    if h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut frac = 0.0;
    if let Some(r) = rest.strip_prefix('.') {
        let digits = r.bytes().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        frac = format!("0.{}", &r[..digits]).parse().ok()?;
        rest = &r[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && rest.as_bytes()[3] == b':' => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let digits = |t: &str| -> Option<i64> {
                if t.bytes().all(|c| c.is_ascii_digit()) {
                    t.parse().ok()
                } else {
                    None
                }
            };
            let (oh, om) = (digits(&rest[1..3])?, digits(&rest[4..6])?);
            if oh > 23 || om > 59 {
                return None;
            }
            sign * (oh * 3600 + om * 60)
        }
        _ => return None,
    };
    let days = edgebench_util::time::days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset;
    Some(secs as f64 + frac)
}

// ---------------------------------------------------------------------------------------------
// macOS powermetrics

/// One `*** Sampled system activity ***` block of `powermetrics` output.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PowermetricsSample {
    /// The block's `(... ms elapsed)`, in seconds.
    pub elapsed_s: f64,
    /// Power over the block: `Combined Power` when present, else CPU + GPU + ANE.
    pub watts: f64,
    /// Whether `watts` came from a `Combined Power` line.
    pub combined: bool,
    /// `CPU Power`.
    pub cpu_watts: Option<f64>,
    /// `GPU Power` (its first occurrence in the block).
    pub gpu_watts: Option<f64>,
    /// `ANE Power`.
    pub ane_watts: Option<f64>,
}

/// Parsed `powermetrics --samplers cpu_power,gpu_power -i <ms>` output. Each block reports the
/// mean power over its elapsed interval, so energy is Σ watts × elapsed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Powermetrics {
    /// The blocks, in order.
    pub samples: Vec<PowermetricsSample>,
}

#[derive(Debug, Default)]
struct PmBlock {
    line: u64,
    elapsed_s: f64,
    cpu: Option<f64>,
    gpu: Option<f64>,
    ane: Option<f64>,
    emitted: bool,
}

/// Incremental powermetrics parser: emits a sample as soon as its `Combined Power` line is
/// read, else when the block ends.
#[derive(Debug, Default)]
struct PmParser {
    line: u64,
    block: Option<PmBlock>,
}

/// `1234 mW`, `1.23 W`, `3.45W` into watts.
fn pm_value(text: &str) -> Option<f64> {
    let t = text.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("mW") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix('W') {
        (n, 1.0)
    } else {
        return None;
    };
    let v: f64 = num.trim().parse().ok()?;
    (v.is_finite() && v >= 0.0).then_some(v * scale)
}

impl PmParser {
    fn err(&self, line: u64, message: String) -> PowerError {
        PowerError::LogLine {
            path: PathBuf::from("powermetrics output"),
            line,
            message,
        }
    }

    /// Closes the current block; `Some` if it yields a sample not yet emitted.
    fn close(&mut self, at_end: bool) -> Result<Option<PowermetricsSample>, PowerError> {
        let Some(b) = self.block.take() else {
            return Ok(None);
        };
        if b.emitted {
            return Ok(None);
        }
        if b.cpu.is_none() && b.gpu.is_none() && b.ane.is_none() {
            if at_end {
                return Ok(None); // output cut off inside the last block
            }
            return Err(self.err(
                b.line,
                "sample has no `CPU Power` or `Combined Power` line: run powermetrics with --samplers cpu_power,gpu_power".into(),
            ));
        }
        let watts = b.cpu.unwrap_or(0.0) + b.gpu.unwrap_or(0.0) + b.ane.unwrap_or(0.0);
        Ok(Some(PowermetricsSample {
            elapsed_s: b.elapsed_s,
            watts,
            combined: false,
            cpu_watts: b.cpu,
            gpu_watts: b.gpu,
            ane_watts: b.ane,
        }))
    }

    fn feed(&mut self, raw: &str) -> Result<Option<PowermetricsSample>, PowerError> {
        self.line += 1;
        let line = raw.trim();
        if line.starts_with("*** Sampled system activity") {
            let out = self.close(false)?;
            let elapsed = line
                .find("ms elapsed)")
                .and_then(|end| {
                    let start = line[..end].rfind('(')? + 1;
                    line[start..end].trim().parse::<f64>().ok()
                })
                .filter(|ms| ms.is_finite() && *ms > 0.0)
                .ok_or_else(|| {
                    self.err(
                        self.line,
                        format!("cannot read `(<n>ms elapsed)` in {line:?}"),
                    )
                })?;
            self.block = Some(PmBlock {
                line: self.line,
                elapsed_s: elapsed / 1e3,
                ..PmBlock::default()
            });
            return Ok(out);
        }
        if self.block.is_none() {
            return Ok(None); // preamble (machine model, boot time)
        }
        let (Some(colon), Some(last_colon)) = (line.find(':'), line.rfind(':')) else {
            return Ok(None);
        };
        let key = line[..colon].trim();
        let value = &line[last_colon + 1..];
        #[derive(PartialEq)]
        enum Field {
            Cpu,
            Gpu,
            Ane,
            Combined,
        }
        let field = match key {
            "CPU Power" => Field::Cpu,
            "GPU Power" => Field::Gpu,
            "ANE Power" => Field::Ane,
            k if k.starts_with("Combined Power")
                || k.starts_with("Intel energy model derived package power") =>
            {
                Field::Combined
            }
            _ => return Ok(None),
        };
        let watts = pm_value(value).ok_or_else(|| {
            self.err(
                self.line,
                format!("cannot read a power like `1234 mW` in {line:?}"),
            )
        })?;
        let Some(block) = self.block.as_mut() else {
            return Ok(None);
        };
        let slot = match field {
            Field::Cpu => &mut block.cpu,
            Field::Gpu => &mut block.gpu,
            Field::Ane => &mut block.ane,
            Field::Combined => {
                if block.emitted {
                    return Ok(None);
                }
                block.emitted = true;
                return Ok(Some(PowermetricsSample {
                    elapsed_s: block.elapsed_s,
                    watts,
                    combined: true,
                    cpu_watts: block.cpu,
                    gpu_watts: block.gpu,
                    ane_watts: block.ane,
                }));
            }
        };
        // the GPU section repeats `GPU Power`; keep the first
        slot.get_or_insert(watts);
        Ok(None)
    }
}

impl Powermetrics {
    /// Parses captured `powermetrics` text output. A final block cut off before its power lines
    /// is ignored; any other block without power lines is an error.
    pub fn parse(text: &str) -> Result<Powermetrics, PowerError> {
        let mut parser = PmParser::default();
        let mut samples = Vec::new();
        for line in text.lines() {
            samples.extend(parser.feed(line)?);
        }
        samples.extend(parser.close(true)?);
        if samples.is_empty() {
            return Err(PowerError::Log {
                path: PathBuf::from("powermetrics output"),
                message: "no `*** Sampled system activity ***` block with power lines: capture it with `sudo powermetrics --samplers cpu_power,gpu_power -i 100`".into(),
            });
        }
        Ok(Powermetrics { samples })
    }

    /// Σ watts × elapsed over all blocks.
    pub fn energy_joules(&self) -> f64 {
        self.samples.iter().map(|s| s.watts * s.elapsed_s).sum()
    }

    /// Σ elapsed.
    pub fn duration_s(&self) -> f64 {
        self.samples.iter().map(|s| s.elapsed_s).sum()
    }

    /// Energy / duration.
    pub fn mean_watts(&self) -> f64 {
        self.energy_joules() / self.duration_s()
    }

    /// Starts `powermetrics --samplers cpu_power,gpu_power -i <interval>` (macOS, needs root)
    /// and waits for its first sample.
    pub fn spawn(interval: Duration) -> Result<PowermetricsProcess, PowerError> {
        let ms = interval.as_millis().max(10);
        let mut cmd = Command::new("powermetrics");
        cmd.args(["--samplers", "cpu_power,gpu_power", "-i", &ms.to_string()]);
        PowermetricsProcess::spawn_command(cmd, interval * 3 + Duration::from_secs(2))
    }
}

#[derive(Debug, Default)]
struct PmShared {
    watts: Option<f64>,
    samples: usize,
    finished: bool,
    error: Option<String>,
    stderr: String,
}

fn lock(m: &Mutex<PmShared>) -> MutexGuard<'_, PmShared> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running `powermetrics` process; [`PowerSource::read`] returns the power of its latest
/// sample (mean over the last interval). The process is killed on drop.
#[derive(Debug)]
pub struct PowermetricsProcess {
    child: Child,
    shared: Arc<Mutex<PmShared>>,
    name: String,
}

impl PowermetricsProcess {
    /// Runs `cmd` (which must print powermetrics output to stdout) and waits up to `timeout`
    /// for its first sample.
    pub fn spawn_command(mut cmd: Command, timeout: Duration) -> Result<Self, PowerError> {
        let program = cmd.get_program().to_string_lossy().into_owned();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                PowerError::Powermetrics(if e.kind() == io::ErrorKind::NotFound {
                    format!(
                        "cannot start `{program}`: not found (powermetrics ships with macOS only)"
                    )
                } else {
                    format!("cannot start `{program}`: {e}")
                })
            })?;
        let shared = Arc::new(Mutex::new(PmShared::default()));
        if let Some(stdout) = child.stdout.take() {
            let shared = Arc::clone(&shared);
            thread::spawn(move || {
                let mut parser = PmParser::default();
                let emit = |r: Result<Option<PowermetricsSample>, PowerError>| match r {
                    Ok(Some(s)) => {
                        let mut g = lock(&shared);
                        g.watts = Some(s.watts);
                        g.samples += 1;
                        true
                    }
                    Ok(None) => true,
                    Err(e) => {
                        lock(&shared).error = Some(e.to_string());
                        false
                    }
                };
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if !emit(parser.feed(&line)) {
                        break;
                    }
                }
                emit(parser.close(true));
                lock(&shared).finished = true;
            });
        }
        if let Some(mut stderr) = child.stderr.take() {
            let shared = Arc::clone(&shared);
            thread::spawn(move || {
                let mut text = String::new();
                let _ = stderr.read_to_string(&mut text);
                lock(&shared).stderr = text.trim().to_string();
            });
        }
        let mut process = PowermetricsProcess {
            child,
            shared,
            name: format!("powermetrics ({program})"),
        };
        let deadline = Instant::now() + timeout;
        loop {
            {
                let g = lock(&process.shared);
                if g.samples > 0 {
                    break;
                }
                if g.finished || g.error.is_some() {
                    drop(g);
                    thread::sleep(Duration::from_millis(50)); // let stderr arrive
                    return Err(process.failure("exited before its first sample"));
                }
            }
            if Instant::now() >= deadline {
                return Err(process.failure(&format!("no sample within {timeout:?}")));
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(process)
    }

    fn failure(&mut self, what: &str) -> PowerError {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let g = lock(&self.shared);
        let mut msg = what.to_string();
        if let Some(e) = &g.error {
            msg.push_str(&format!("; {e}"));
        }
        if !g.stderr.is_empty() {
            msg.push_str(&format!("; it said: {}", g.stderr));
        }
        if g.stderr.contains("superuser") {
            msg.push_str(" (run EdgeBench with sudo)");
        }
        PowerError::Powermetrics(msg)
    }

    /// Samples received so far.
    pub fn samples(&self) -> usize {
        lock(&self.shared).samples
    }
}

impl PowerSource for PowermetricsProcess {
    fn name(&self) -> &str {
        &self.name
    }
    fn method(&self) -> Method {
        Method::Powermetrics
    }
    fn read(&mut self) -> Result<Reading, PowerError> {
        let g = lock(&self.shared);
        if let Some(e) = &g.error {
            return Err(PowerError::Powermetrics(e.clone()));
        }
        if g.finished {
            return Err(PowerError::Powermetrics(format!(
                "the process exited; it said: {}",
                g.stderr
            )));
        }
        match g.watts {
            Some(watts) => Ok(Reading::Power { watts }),
            None => Err(PowerError::Powermetrics("no sample yet".into())),
        }
    }
}

impl Drop for PowermetricsProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Detection

/// Why no power source is usable: one reason per backend tried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Error)]
#[error("no usable power source: {}", .reasons.join("; "))]
pub struct Unavailable {
    /// `backend: reason` for each backend tried.
    pub reasons: Vec<String>,
}

/// The first usable source under `sysfs_root` (normally `/sys`): RAPL (`class/powercap`), then
/// hwmon (`class/hwmon`), then a discharging battery (`class/power_supply`); on macOS then
/// `powermetrics`. Each candidate is read once, so an unreadable file is a reason, not a later
/// failure.
pub fn detect(sysfs_root: &Path) -> Result<Box<dyn PowerSource>, Unavailable> {
    let class = sysfs_root.join("class");
    let mut reasons = Vec::new();
    match Rapl::discover(&class.join("powercap")) {
        Ok(s) => return Ok(Box::new(s)),
        Err(e) => reasons.push(format!("powercap: {e}")),
    }
    match Hwmon::discover(&class.join("hwmon")) {
        Ok(s) => return Ok(Box::new(s)),
        Err(e) => reasons.push(format!("hwmon: {e}")),
    }
    match Battery::discover(&class.join("power_supply")) {
        Ok(s) => return Ok(Box::new(s)),
        Err(e) => reasons.push(format!("battery: {e}")),
    }
    if cfg!(target_os = "macos") {
        match Powermetrics::spawn(Duration::from_millis(100)) {
            Ok(s) => return Ok(Box::new(s)),
            Err(e) => reasons.push(e.to_string()),
        }
    }
    Err(Unavailable { reasons })
}

// ---------------------------------------------------------------------------------------------
// Meter

/// Energy over one timed window. Every figure carries its `method` and sample rate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Energy {
    /// Total joules over the window.
    pub joules: f64,
    /// `joules - idle_watts × window_s` when idle power was measured (can be slightly negative
    /// when the load is indistinguishable from idle).
    pub joules_above_idle: Option<f64>,
    /// Idle power measured before the window.
    pub idle_watts: Option<f64>,
    /// `joules / window_s`.
    pub mean_watts: f64,
    /// Window length in seconds.
    pub window_s: f64,
    /// Window start, UNIX seconds.
    pub start_unix_s: f64,
    /// Readings taken in the window (for logs: log samples inside it).
    pub samples: usize,
    /// Sampling rate: the meter's configured rate for sampled sources (a read slower than the
    /// period skips ticks, which `samples` shows), the polling rate that catches wrap-around
    /// for counters, the log's mean rate for meter logs.
    pub sample_rate_hz: Option<f64>,
    /// How it was measured.
    pub method: Method,
    /// The source's name.
    pub source: String,
}

/// Energy per unit of work (token, query).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PerUnit {
    /// Joules per unit.
    pub joules: f64,
    /// Joules above idle per unit, when idle was measured.
    pub joules_above_idle: Option<f64>,
}

impl Energy {
    /// Joules per unit for `count` units (tokens, queries); `None` for 0.
    pub fn per(&self, count: u64) -> Option<PerUnit> {
        (count > 0).then(|| PerUnit {
            joules: self.joules / count as f64,
            joules_above_idle: self.joules_above_idle.map(|j| j / count as f64),
        })
    }
}

type SamplerResult = (Box<dyn PowerSource>, Result<Series, PowerError>);

enum Running {
    Sampler {
        stop: Arc<AtomicBool>,
        handle: JoinHandle<SamplerResult>,
        start_unix_s: f64,
    },
    Log {
        start_unix_s: f64,
    },
}

/// Readings collected by the sampler thread; times in seconds since the window start.
#[derive(Debug)]
enum Series {
    Power(Vec<(f64, f64)>),
    Energy {
        first: (f64, f64),
        last: (f64, f64),
        count: usize,
    },
}

impl Series {
    fn new(t: f64, r: Reading) -> Series {
        match r {
            Reading::Power { watts } => Series::Power(vec![(t, watts)]),
            Reading::Energy { joules } => Series::Energy {
                first: (t, joules),
                last: (t, joules),
                count: 1,
            },
        }
    }

    fn push(&mut self, t: f64, r: Reading, name: &str) -> Result<(), PowerError> {
        match (self, r) {
            (Series::Power(v), Reading::Power { watts }) => v.push((t, watts)),
            (Series::Energy { last, count, .. }, Reading::Energy { joules }) => {
                *last = (t, joules);
                *count += 1;
            }
            _ => {
                return Err(PowerError::Meter(format!(
                    "{name} switched between energy and power readings"
                )))
            }
        }
        Ok(())
    }
}

/// Reads `source` and stamps the reading with the midpoint of the read, in seconds since
/// `origin`.
fn timed_read(source: &mut dyn PowerSource, origin: Instant) -> Result<(f64, Reading), PowerError> {
    let before = origin.elapsed().as_secs_f64();
    let r = source.read()?;
    let after = origin.elapsed().as_secs_f64();
    Ok(((before + after) / 2.0, r))
}

fn sample_loop(
    mut source: Box<dyn PowerSource>,
    mut series: Series,
    origin: Instant,
    rate_hz: f64,
    stop: Arc<AtomicBool>,
) -> SamplerResult {
    let period = 1.0 / rate_hz;
    let mut tick: u64 = 1;
    loop {
        let due = origin + Duration::from_secs_f64(period * tick as f64);
        loop {
            if stop.load(Ordering::Acquire) {
                // final reading closes the window
                let result = timed_read(source.as_mut(), origin)
                    .and_then(|(t, r)| series.push(t, r, source.name()))
                    .map(|()| series);
                return (source, result);
            }
            let now = Instant::now();
            if now >= due {
                break;
            }
            thread::park_timeout(due - now);
        }
        if let Err(e) =
            timed_read(source.as_mut(), origin).and_then(|(t, r)| series.push(t, r, source.name()))
        {
            return (source, Err(e));
        }
        // if a read overran one or more periods, skip the missed ticks
        let elapsed = origin.elapsed().as_secs_f64();
        tick = (tick + 1).max((elapsed / period).ceil() as u64);
    }
}

/// Measures energy over timed windows from one [`PowerSource`].
///
/// Counters are differenced between the window's first and last reading (polled meanwhile at the
/// sample rate so wrap-around is seen); instantaneous sources are sampled on a background thread
/// at the sample rate (default 10 Hz) and integrated by the trapezoid rule; logging sources
/// ([`MeterLog`]) integrate their own samples over the wall-clock window.
pub struct Meter {
    source: Option<Box<dyn PowerSource>>,
    name: String,
    method: Method,
    sample_rate_hz: f64,
    idle_watts: Option<f64>,
    log_grace: Duration,
    running: Option<Running>,
}

impl fmt::Debug for Meter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Meter")
            .field("source", &self.name)
            .field("method", &self.method)
            .field("sample_rate_hz", &self.sample_rate_hz)
            .field("idle_watts", &self.idle_watts)
            .field("running", &self.running.is_some())
            .finish()
    }
}

impl Meter {
    /// A meter over `source`, 10 Hz, no idle figure yet.
    pub fn new(source: Box<dyn PowerSource>) -> Meter {
        Meter {
            name: source.name().to_string(),
            method: source.method(),
            source: Some(source),
            sample_rate_hz: DEFAULT_SAMPLE_RATE_HZ,
            idle_watts: None,
            log_grace: Duration::from_secs(2),
            running: None,
        }
    }

    /// A meter over `source` that first measures idle power for `duration`.
    pub fn idle(source: Box<dyn PowerSource>, duration: Duration) -> Result<Meter, PowerError> {
        let mut meter = Meter::new(source);
        meter.measure_idle(duration)?;
        Ok(meter)
    }

    /// Sets the sampling rate (0 < hz ≤ 1000).
    pub fn with_sample_rate(mut self, hz: f64) -> Result<Meter, PowerError> {
        if hz.is_nan() || hz <= 0.0 || hz > MAX_SAMPLE_RATE_HZ {
            return Err(PowerError::Meter(format!(
                "sample rate {hz} Hz is out of range; use a rate in (0, {MAX_SAMPLE_RATE_HZ}] Hz"
            )));
        }
        self.sample_rate_hz = hz;
        Ok(self)
    }

    /// How long [`Meter::stop`] waits for a logging source to cover the window's end.
    pub fn with_log_grace(mut self, grace: Duration) -> Meter {
        self.log_grace = grace;
        self
    }

    /// The configured sampling rate.
    pub fn sample_rate_hz(&self) -> f64 {
        self.sample_rate_hz
    }

    /// The idle power measured (or set), if any.
    pub fn idle_watts(&self) -> Option<f64> {
        self.idle_watts
    }

    /// Sets the idle power by hand (e.g. from an earlier [`Meter::measure_window`]).
    pub fn set_idle_watts(&mut self, watts: Option<f64>) {
        self.idle_watts = watts;
    }

    /// The source's method.
    pub fn method(&self) -> Method {
        self.method
    }

    /// The source's name.
    pub fn source_name(&self) -> &str {
        &self.name
    }

    /// Measures idle power over `duration` (nothing else should run) and keeps it for
    /// `joules_above_idle`. Returns the idle window's energy.
    pub fn measure_idle(&mut self, duration: Duration) -> Result<Energy, PowerError> {
        self.start()?;
        thread::sleep(duration);
        let idle = self.stop()?;
        self.idle_watts = Some(idle.mean_watts);
        Ok(idle)
    }

    /// Opens the window: takes the first reading now and, for non-logging sources, starts the
    /// sampling thread.
    pub fn start(&mut self) -> Result<(), PowerError> {
        if self.running.is_some() {
            return Err(PowerError::Meter(
                "start called while a window is open; call stop first".into(),
            ));
        }
        let mut source = self.source.take().ok_or_else(|| {
            PowerError::Meter(
                "the source was lost when a sampling thread panicked; open it again".into(),
            )
        })?;
        if source.integrates_window() {
            self.source = Some(source);
            self.running = Some(Running::Log {
                start_unix_s: unix_seconds(SystemTime::now()),
            });
            return Ok(());
        }
        let start_unix_s = unix_seconds(SystemTime::now());
        let origin = Instant::now();
        let (t, first) = match timed_read(source.as_mut(), origin) {
            Ok(x) => x,
            Err(e) => {
                self.source = Some(source);
                return Err(e);
            }
        };
        let series = Series::new(t, first);
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let rate = self.sample_rate_hz;
        let handle = thread::Builder::new()
            .name("edgebench-power".into())
            .spawn(move || sample_loop(source, series, origin, rate, stop2))
            .map_err(|e| PowerError::Meter(format!("cannot start the sampling thread: {e}")))?;
        self.running = Some(Running::Sampler {
            stop,
            handle,
            start_unix_s,
        });
        Ok(())
    }

    /// Closes the window and returns its energy.
    pub fn stop(&mut self) -> Result<Energy, PowerError> {
        match self.running.take() {
            None => Err(PowerError::Meter(
                "stop called without start; call start first".into(),
            )),
            Some(Running::Log { start_unix_s }) => {
                let end = unix_seconds(SystemTime::now());
                self.log_window(start_unix_s, end, true)
            }
            Some(Running::Sampler {
                stop,
                handle,
                start_unix_s,
            }) => {
                stop.store(true, Ordering::Release);
                handle.thread().unpark();
                let (source, series) = handle.join().map_err(|_| {
                    PowerError::Meter("the sampling thread panicked; the source is lost".into())
                })?;
                self.source = Some(source);
                self.finish(series?, start_unix_s)
            }
        }
    }

    /// Energy over a past wall-clock window, for logging sources ([`MeterLog`]) only.
    pub fn measure_window(&mut self, t0: SystemTime, t1: SystemTime) -> Result<Energy, PowerError> {
        if self.running.is_some() {
            return Err(PowerError::Meter(
                "measure_window called while a window is open; call stop first".into(),
            ));
        }
        self.log_window(unix_seconds(t0), unix_seconds(t1), false)
    }

    fn log_window(&mut self, t0: f64, t1: f64, wait: bool) -> Result<Energy, PowerError> {
        let source = self
            .source
            .as_mut()
            .ok_or_else(|| PowerError::Meter("the source was lost".into()))?;
        if !source.integrates_window() {
            return Err(PowerError::Meter(format!(
                "{} cannot measure a past window; only logging sources (meter CSV) can",
                self.name
            )));
        }
        let deadline = Instant::now() + self.log_grace;
        let w = loop {
            match source.window_energy(t0, t1) {
                Err(PowerError::NotCovered { .. }) if wait && Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(100));
                }
                other => break other?,
            }
        };
        let window_s = t1 - t0;
        Ok(self.energy(w.joules, window_s, t0, w.samples, w.sample_rate_hz))
    }

    fn finish(&self, series: Series, start_unix_s: f64) -> Result<Energy, PowerError> {
        let (joules, window_s, samples) = match &series {
            Series::Power(v) => {
                let window = v[v.len() - 1].0 - v[0].0;
                (trapezoid(v), window, v.len())
            }
            Series::Energy { first, last, count } => {
                let joules = last.1 - first.1;
                if joules < 0.0 {
                    return Err(PowerError::Meter(format!(
                        "{}: energy went backwards ({} J to {} J)",
                        self.name, first.1, last.1
                    )));
                }
                (joules, last.0 - first.0, *count)
            }
        };
        if window_s.is_nan() || window_s <= 0.0 {
            return Err(PowerError::Meter(
                "the window is too short to measure (start and stop at the same instant)".into(),
            ));
        }
        let rate = Some(self.sample_rate_hz);
        Ok(self.energy(joules, window_s, start_unix_s, samples, rate))
    }

    fn energy(
        &self,
        joules: f64,
        window_s: f64,
        start_unix_s: f64,
        samples: usize,
        sample_rate_hz: Option<f64>,
    ) -> Energy {
        Energy {
            joules,
            joules_above_idle: self.idle_watts.map(|w| joules - w * window_s),
            idle_watts: self.idle_watts,
            mean_watts: joules / window_s,
            window_s,
            start_unix_s,
            samples,
            sample_rate_hz,
            method: self.method,
            source: self.name.clone(),
        }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        if let Some(Running::Sampler { stop, handle, .. }) = self.running.take() {
            stop.store(true, Ordering::Release);
            handle.thread().unpark();
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()))
    }

    #[test]
    fn constant_power_integrates_exactly() {
        let s: Vec<(f64, f64)> = (0..=20).map(|k| (k as f64 * 0.1, 3.5)).collect();
        assert!(close(trapezoid(&s), 7.0), "{}", trapezoid(&s));
    }

    #[test]
    fn linear_ramp_is_exact_with_trapezoid_even_unevenly_sampled() {
        // P(t) = 2 + 4t on [0, 3]: ∫ = 2·3 + 2·9 = 24 J
        let ts = [0.0, 0.1, 0.35, 1.0, 1.7, 2.2, 3.0];
        let s: Vec<(f64, f64)> = ts.iter().map(|&t| (t, 2.0 + 4.0 * t)).collect();
        assert!(close(trapezoid(&s), 24.0), "{}", trapezoid(&s));
        // clipped to [0.5, 2.5] with interpolated edges: 2·2 + 2·(6.25 − 0.25) = 16 J
        let (j, inside) = integrate_window(&s, 0.5, 2.5).unwrap();
        assert!(close(j, 16.0), "{j}");
        assert_eq!(inside, 3); // 1.0, 1.7, 2.2
    }

    #[test]
    fn window_outside_samples_is_none() {
        let s = [(0.0, 1.0), (1.0, 1.0)];
        assert!(integrate_window(&s, -0.1, 0.5).is_none());
        assert!(integrate_window(&s, 0.5, 1.1).is_none());
        assert!(integrate_window(&s, 0.5, 0.5).is_none());
        assert!(close(integrate_window(&s, 0.0, 1.0).unwrap().0, 1.0));
    }

    #[test]
    fn counter_wraps_at_its_range() {
        let max = 262_143_328_850;
        assert_eq!(counter_delta(100, 250, max), Some(150));
        assert_eq!(
            counter_delta(max - 1_000_000, 500_000, max),
            Some(1_500_000)
        );
        // unknown range (hwmon): a decrease is an error
        assert_eq!(counter_delta(10, 5, 0), None);
    }

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(parse_rfc3339("2025-01-15T10:00:00Z"), Some(1_736_935_200.0));
        assert_eq!(
            parse_rfc3339("2025-01-15T11:00:00.25+01:00"),
            Some(1_736_935_200.25)
        );
        assert_eq!(parse_rfc3339("2024-02-29T00:00:00Z"), Some(1_709_164_800.0));
        assert_eq!(parse_rfc3339("2023-02-29T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("2025-01-15 10:00:00"), None); // no offset
        assert_eq!(parse_rfc3339("1736935200"), None);
    }

    #[test]
    fn meter_log_units_and_rfc3339() {
        let log = MeterLog::parse(
            Path::new("x.csv"),
            "timestamp,Power_mW\n2025-01-15T10:00:00Z,1500\n2025-01-15T10:00:02Z,2500\n",
        )
        .unwrap();
        assert_eq!(
            log.samples(),
            &[(1_736_935_200.0, 1.5), (1_736_935_202.0, 2.5)]
        );
        let w = log
            .energy_between(1_736_935_200.0, 1_736_935_202.0)
            .unwrap();
        assert!(close(w.joules, 4.0));
    }

    #[test]
    fn meter_log_rejects_headerless_and_negative() {
        let e = MeterLog::parse(Path::new("x.csv"), "1.0,2.0\n2.0,2.0\n").unwrap_err();
        assert!(e.to_string().contains("no header"), "{e}");
        let e = MeterLog::parse(Path::new("x.csv"), "time_s,watts\n1,2\n2,-1\n").unwrap_err();
        assert!(
            e.to_string().contains("line 3") && e.to_string().contains("negative"),
            "{e}"
        );
        let e = MeterLog::parse(Path::new("x.csv"), "time_s,watts\n1,2\n2,abc\n").unwrap_err();
        assert!(
            e.to_string().contains("line 3") && e.to_string().contains("abc"),
            "{e}"
        );
        let e = MeterLog::parse(Path::new("x.csv"), "time_s,watts\n1,2\n").unwrap_err();
        assert!(e.to_string().contains("at least 2"), "{e}");
    }

    #[test]
    fn powermetrics_without_combined_sums_cpu_gpu_ane() {
        let text = "*** Sampled system activity (Wed Jan 15 10:00:00 2025 -0800) (500.0ms elapsed) ***\n\
                    CPU Power: 1000 mW\nGPU Power: 200 mW\nANE Power: 50 mW\n\n**** GPU usage ****\nGPU Power: 200 mW\n\
                    *** Sampled system activity (Wed Jan 15 10:00:00 2025 -0800) (500.0ms elapsed) ***\n\
                    CPU Power: 2.5 W\n";
        let pm = Powermetrics::parse(text).unwrap();
        assert_eq!(pm.samples.len(), 2);
        assert!(close(pm.samples[0].watts, 1.25) && !pm.samples[0].combined);
        assert!(close(pm.samples[1].watts, 2.5));
        assert!(close(pm.energy_joules(), 0.5 * 1.25 + 0.5 * 2.5));
    }

    #[test]
    fn powermetrics_errors() {
        assert!(Powermetrics::parse("Machine model: Mac14,2\n").is_err());
        let bad = "*** Sampled system activity (x) (1000ms elapsed) ***\nCPU Power: lots\n";
        let e = Powermetrics::parse(bad).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("lots"), "{e}");
        let no_power = "*** Sampled system activity (x) (1000ms elapsed) ***\nfoo\n\
                        *** Sampled system activity (x) (1000ms elapsed) ***\nCPU Power: 1 W\n";
        let e = Powermetrics::parse(no_power).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("cpu_power"), "{e}");
    }

    #[test]
    fn permission_hint_only_for_permission_errors() {
        let denied = PowerError::io(
            Path::new("/sys/class/powercap/intel-rapl:0/energy_uj"),
            io::Error::from(io::ErrorKind::PermissionDenied),
            RAPL_HINT,
        );
        assert!(denied.to_string().contains("CVE-2020-8694"), "{denied}");
        let missing = PowerError::io(
            Path::new("/x"),
            io::Error::from(io::ErrorKind::NotFound),
            RAPL_HINT,
        );
        assert!(!missing.to_string().contains("CVE"), "{missing}");
    }

    #[test]
    fn energy_per_unit() {
        let e = Energy {
            joules: 10.0,
            joules_above_idle: Some(4.0),
            idle_watts: Some(3.0),
            mean_watts: 5.0,
            window_s: 2.0,
            start_unix_s: 0.0,
            samples: 21,
            sample_rate_hz: Some(10.0),
            method: Method::Rapl,
            source: "x".into(),
        };
        assert_eq!(
            e.per(4),
            Some(PerUnit {
                joules: 2.5,
                joules_above_idle: Some(1.0)
            })
        );
        assert_eq!(e.per(0), None);
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["method"], "rapl");
        assert_eq!(serde_json::to_value(Method::MeterCsv).unwrap(), "meter_csv");
    }
}
