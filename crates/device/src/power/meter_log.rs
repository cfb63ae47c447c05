//! The external power meter source: a CSV log aligned to the timed window by wall-clock time.

use super::integrate::integrate_window;
use super::sysfs::SYSFS_HINT;
use super::timestamp::parse_rfc3339;
use super::{Method, PowerError, PowerSource, Reading, WindowEnergy};
use std::io::Read;
use std::path::{Path, PathBuf};

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

#[cfg(test)]
mod tests {
    use super::super::close;
    use super::*;

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
}
