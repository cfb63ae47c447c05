//! Power and energy measurement: the shared types every source speaks ([`PowerSource`],
//! [`Reading`], [`Method`], [`PowerError`]) and the backends behind them.
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
//! This module depends only on std, serde, serde_json, thiserror, csv and edgebench-util's
//! calendar.

mod battery;
mod detection;
mod hwmon;
mod integrate;
mod meter;
mod meter_log;
mod powermetrics;
mod rapl;
mod sysfs;
mod timestamp;

pub use battery::Battery;
pub use detection::{detect, Unavailable};
pub use hwmon::{Hwmon, HwmonAttr};
pub use integrate::{integrate_window, trapezoid};
pub use meter::{Energy, Meter, PerUnit};
pub use meter_log::MeterLog;
pub use powermetrics::{Powermetrics, PowermetricsProcess, PowermetricsSample};
pub use rapl::Rapl;
pub use sysfs::counter_delta;
pub use timestamp::unix_seconds;

use serde::Serialize;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
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

/// Relative comparison for the unit tests' floating-point results.
#[cfg(test)]
fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()))
}
