//! The [`Meter`]: idle power, then energy over exactly a timed window from one source.

use super::integrate::trapezoid;
use super::timestamp::unix_seconds;
use super::{Method, PowerError, PowerSource, Reading, DEFAULT_SAMPLE_RATE_HZ, MAX_SAMPLE_RATE_HZ};
use serde::Serialize;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

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
/// ([`MeterLog`](super::MeterLog)) integrate their own samples over the wall-clock window.
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

    /// Energy over a past wall-clock window, for logging sources
    /// ([`MeterLog`](super::MeterLog)) only.
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
