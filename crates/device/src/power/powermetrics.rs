//! The macOS `powermetrics` source: parsing its text output, and running it as a live source.

use super::{Method, PowerError, PowerSource, Reading};
use serde::Serialize;
use std::io::{self, BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

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

#[cfg(test)]
mod tests {
    use super::super::close;
    use super::*;

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
}
