//! Performance mode (MLPerf LoadGen's single-stream scenario): the model is
//! loaded and optimised before the clock starts, warmed up, then queried
//! until both a minimum query count and a minimum duration are met. Every raw
//! sample is kept; percentiles are printed only when enough samples back them;
//! memory, energy and a roofline projection for each device profile go beside
//! them, the projection always labelled `estimated`. Given prompt sets per
//! domain, each domain is measured in its own timed window, one after another.

use crate::power::{self, Energy, Meter, MeterLog};
use crate::profile::{self, Host, HostRoots, PowerEstimate, Projection, Workload};
use crate::stats::{self, DecodeTiming, DecoderSummary, LatencySummary, PerfSettings, Validity};
use edgebench_runtime::model::{Model, ModelError, ModelInfo, QueryTiming};
use prost::Message;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};
use thiserror::Error;

/// Errors of a performance run.
#[derive(Debug, Error)]
pub enum PerfError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("{path}: {message}")]
    Graph { path: PathBuf, message: String },
    #[error("invalid settings: {0}")]
    Settings(String),
    #[error("{0}")]
    Power(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
}

/// Where power comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum PowerChoice {
    /// The first usable sysfs source under this root (RAPL, hwmon, battery).
    Auto { sysfs_root: PathBuf, idle: Duration },
    /// An external meter's CSV log covering the timed window.
    MeterLog(PathBuf),
    /// Do not measure power.
    Off,
}

/// What a performance run does.
#[derive(Debug, Clone)]
pub struct PerfConfig {
    /// Query counts and durations.
    pub settings: PerfSettings,
    /// Prompt length in tokens.
    pub prompt_tokens: usize,
    /// Output tokens per decoder query.
    pub gen_tokens: usize,
    /// Power source.
    pub power: PowerChoice,
    /// Device profiles to project onto.
    pub devices_dir: Option<PathBuf>,
    /// The git commit of the build that measures, recorded in `perf.json`.
    pub git_hash: Option<String>,
}

/// Weight bytes and work per token, counted from the ONNX graph.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GraphCount {
    /// Bytes of weights by stored precision (`f32`, `4-bit`, ...), quantization scales included.
    pub weight_bytes_by_precision: BTreeMap<String, u64>,
    /// Multiply-adds x 2 of the weight matrices per token.
    pub flops_per_token: f64,
    /// Weight bytes read per token (every matrix once, one embedding row).
    pub weight_bytes_per_token: f64,
    /// The part of `weight_bytes_per_token` stored in `EbQuantLinear` nodes.
    pub quant_bytes_per_token: f64,
    /// What the count leaves out.
    pub note: String,
}

/// Counts weights and per-token work of `<path>` (an EdgeBench-written or imported graph).
pub fn count_graph(path: &Path) -> Result<GraphCount, PerfError> {
    let bad = |message: String| PerfError::Graph {
        path: path.to_path_buf(),
        message,
    };
    let io = |source| PerfError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    // SAFETY: only read, and dropped before this returns (as `model::load_graph`)
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
    let model = tract_onnx::pb::ModelProto::decode(&map[..])
        .map_err(|e| bad(format!("not an ONNX protobuf: {e}")))?;
    let graph = model.graph.ok_or_else(|| bad("no graph".into()))?;
    let inits: BTreeMap<&str, &tract_onnx::pb::TensorProto> = graph
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    let size = |name: &str| -> u64 {
        inits.get(name).map_or(0, |t| {
            if !t.raw_data.is_empty() {
                t.raw_data.len() as u64
            } else {
                4 * t.float_data.len() as u64 + 8 * t.int64_data.len() as u64
            }
        })
    };
    let mut c = GraphCount {
        note: "counts weight matrices (f32 includes embedding and position tables) only: attention scores, norms and SCAR's k-means are left out; \
               a GEM graph with sparse dispatch (`EbRoutedLinear`) runs one pathway per token, counted as its largest pathway (the general one); \
               the dense-masked GEM graph evaluates all 9 pathways on every token, and that is what is counted for it"
            .into(),
        ..Default::default()
    };
    let mut counted: std::collections::BTreeSet<&str> = Default::default();
    let attr = |n: &tract_onnx::pb::NodeProto, name: &str| {
        n.attribute.iter().find(|a| a.name == name).map(|a| a.i)
    };
    for n in &graph.node {
        match n.op_type.as_str() {
            "EbQuantLinear" => {
                let (k, out, bits) = (
                    attr(n, "in_features").unwrap_or(0) as f64,
                    attr(n, "out_features").unwrap_or(0) as f64,
                    attr(n, "bits").unwrap_or(0),
                );
                let b: u64 = n.input.iter().skip(1).map(|i| size(i)).sum();
                *c.weight_bytes_by_precision
                    .entry(format!("{bits}-bit"))
                    .or_default() += b;
                c.flops_per_token += 2.0 * k * out;
                c.weight_bytes_per_token += b as f64;
                c.quant_bytes_per_token += b as f64;
                counted.extend(n.input.iter().skip(1).map(String::as_str));
            }
            "EbRoutedLinear" => {
                // a token is multiplied by one set: count the largest
                let ints = |name: &str| {
                    n.attribute
                        .iter()
                        .find(|a| a.name == name)
                        .map_or(vec![], |a| a.ints.clone())
                };
                let (k, out) = (
                    attr(n, "in_features").unwrap_or(0) as f64,
                    attr(n, "out_features").unwrap_or(0) as f64,
                );
                let (bits, asym) = (ints("bits"), ints("asymmetric"));
                let mut inputs = n.input.iter().skip(2);
                let mut largest = (0u64, 0u64);
                for (s, &b) in bits.iter().enumerate() {
                    let count = match b {
                        32 => 1,
                        _ => 2 + asym.get(s).copied().unwrap_or(0) as usize,
                    };
                    let names: Vec<&str> =
                        inputs.by_ref().take(count).map(String::as_str).collect();
                    let bytes: u64 = names.iter().map(|i| size(i)).sum();
                    let fresh: u64 = names
                        .iter()
                        .filter(|i| counted.insert(i))
                        .map(|i| size(i))
                        .sum();
                    let label = if b == 32 {
                        "f32".to_string()
                    } else {
                        format!("{b}-bit")
                    };
                    *c.weight_bytes_by_precision.entry(label).or_default() += fresh;
                    if bytes > largest.0 {
                        largest = (bytes, if b == 32 { 0 } else { bytes });
                    }
                }
                c.flops_per_token += 2.0 * k * out;
                c.weight_bytes_per_token += largest.0 as f64;
                c.quant_bytes_per_token += largest.1 as f64;
            }
            "MatMul" | "Gemm" => {
                if let Some(t) = n.input.get(1).and_then(|i| inits.get(i.as_str())) {
                    let macs: i64 = t.dims.iter().product();
                    c.flops_per_token += 2.0 * macs as f64;
                    c.weight_bytes_per_token += size(&t.name) as f64;
                    *c.weight_bytes_by_precision.entry("f32".into()).or_default() += size(&t.name);
                    counted.insert(t.name.as_str());
                }
            }
            "Gather" => {
                if let Some(t) = n.input.first().and_then(|i| inits.get(i.as_str())) {
                    if t.dims.len() == 2 && !counted.contains(t.name.as_str()) {
                        *c.weight_bytes_by_precision.entry("f32".into()).or_default() +=
                            size(&t.name);
                        c.weight_bytes_per_token += 4.0 * t.dims[1] as f64;
                        counted.insert(t.name.as_str());
                    }
                }
            }
            _ => {}
        }
    }
    Ok(c)
}

/// Resident memory now and at its peak (Linux `/proc/self/status`; `None` elsewhere).
pub fn memory_now() -> (Option<u64>, Option<u64>) {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return (None, None);
    };
    let field = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Memory figures of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    /// Resident set when the model was ready.
    pub rss_ready_bytes: Option<u64>,
    /// Peak resident set of the process (includes loading).
    pub peak_rss_bytes: Option<u64>,
    /// Why a figure is null.
    pub null_reason: Option<String>,
    /// Weight bytes by precision.
    pub weight_bytes_by_precision: BTreeMap<String, u64>,
}

/// Power and energy of the timed window, or why there are none.
#[derive(Debug, Clone, Serialize)]
pub struct PowerReport {
    pub energy: Option<Energy>,
    pub joules_per_query: Option<f64>,
    pub joules_per_token: Option<f64>,
    pub joules_per_query_above_idle: Option<f64>,
    pub null_reason: Option<String>,
}

/// Provenance of every figure.
#[derive(Debug, Clone, Serialize)]
pub struct Provenance {
    pub edgebench_version: String,
    pub git_hash: Option<String>,
    pub host: Host,
    pub threads: usize,
    pub model_sha256: String,
    pub governor: Option<String>,
    pub temperature_start_c: Option<f64>,
    pub temperature_end_c: Option<f64>,
    pub thermal_note: Option<String>,
}

/// A projection of the model's cost onto one device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceProjection {
    /// Device id as in `devices/` (`raspberry-pi-4`, `pixel-6`, ...).
    pub device: String,
    /// Latency per token, milliseconds.
    #[serde(default)]
    pub ms_per_token: Option<f64>,
    /// Power, watts.
    #[serde(default)]
    pub power_w: Option<f64>,
    /// Whether this is an estimate rather than a measurement on the device
    /// (true unless the file says otherwise).
    #[serde(default = "yes")]
    pub estimated: bool,
    /// The inputs behind an estimate (written, not read back).
    #[serde(default, skip_deserializing, skip_serializing_if = "Option::is_none")]
    pub detail: Option<ProjectionDetail>,
}

/// The inputs of an estimated projection: the roofline behind `ms_per_token`
/// and the power estimate behind `power_w`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProjectionDetail {
    #[serde(flatten)]
    pub roofline: Projection,
    pub power: PowerEstimate,
}

fn yes() -> bool {
    true
}

/// Latency quantiles, milliseconds per token.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Quantiles {
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub mean: Option<f64>,
}

/// Measurements of one domain's suites (the paper's in- vs out-of-domain
/// rows): a timed window of its own over prompts drawn from its suites.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DomainPerf {
    /// Latency per token on the host: TPOT (decoders) or per-query latency (encoders).
    pub latency_ms_per_token: Option<Quantiles>,
    /// Time to first token (decoders).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<Quantiles>,
    /// Per-query latency (prefill + every output token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_latency_ms: Option<Quantiles>,
    /// Mean power on the host over the domain's window, watts.
    pub power_w: Option<f64>,
    /// Why `power_w` is `null`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub power_null_reason: Option<String>,
    /// Energy per query, joules.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub joules_per_query: Option<f64>,
    /// Energy per output token, joules.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub joules_per_token: Option<f64>,
    /// Timed queries.
    pub queries: usize,
    /// Length of the timed window, seconds.
    pub duration_s: f64,
    /// Output tokens per second over the window (decoders).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_tokens_per_s: Option<f64>,
    /// Mean prompt tokens fed per query (after the cut to `prompt_tokens`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_mean: Option<f64>,
    /// Distinct prompts the queries cycled through.
    pub prompts: usize,
    /// Prompts drawn from each suite, by suite id.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub suites: BTreeMap<String, usize>,
    /// Whether this domain's window met the minima.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validity: Option<Validity>,
}

/// The headline figures of `perf.json`: what `edgebench paper` and
/// `edgebench gate --perf` read, and what a hand-written `perf.json` holds.
/// Every field is optional and unknown fields are ignored, so files with
/// more detail (a [`PerfReport`]) or less (hand-written) read alike.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PerfSummary {
    /// TPOT (decoders) or per-query latency (encoders): the paper's "ms/token".
    pub latency_ms_per_token: Option<Quantiles>,
    /// Output tokens per second over the timed window.
    pub output_tokens_per_s: Option<f64>,
    /// Peak resident set of the process, bytes.
    pub peak_rss_bytes: Option<u64>,
    /// Mean power over the timed window, watts; `null` when not measured.
    pub power_w: Option<f64>,
    /// Why `power_w` is `null`.
    pub power_null_reason: Option<String>,
    /// Energy per query, joules.
    pub joules_per_query: Option<f64>,
    /// FLOPs per token counted from the graph.
    pub flops_per_token: Option<f64>,
    /// Per-domain host measurements, keyed by domain name (`healthcare`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub domains: BTreeMap<String, DomainPerf>,
    /// Projections for device profiles.
    pub projections: Vec<DeviceProjection>,
}

impl PerfSummary {
    /// Reads `<run>/perf.json`; `Ok(None)` when there is none.
    pub fn load(run_root: &Path) -> Result<Option<PerfSummary>, PerfError> {
        let path = run_root.join(PERF_FILE);
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(|source| PerfError::Io {
            path: path.clone(),
            source,
        })?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| PerfError::Parse {
                path,
                message: e.to_string(),
            })
    }

    /// The projection for `device`, if any.
    pub fn projection(&self, device: &str) -> Option<&DeviceProjection> {
        self.projections.iter().find(|p| p.device == device)
    }

    /// Median host latency per token.
    pub fn latency_p50(&self) -> Option<f64> {
        self.latency_ms_per_token.as_ref()?.p50
    }

    /// Median host latency per token on one domain's suites.
    pub fn domain_latency_p50(&self, domain: &str) -> Option<f64> {
        self.domains.get(domain)?.latency_ms_per_token.as_ref()?.p50
    }

    /// Host power on one domain's suites.
    pub fn domain_power(&self, domain: &str) -> Option<f64> {
        self.domains.get(domain)?.power_w
    }

    /// The measurements on one domain's suites, if a run measured it.
    pub fn domain(&self, domain: &str) -> Option<&DomainPerf> {
        self.domains.get(domain)
    }
}

/// A data file a performance run drew prompts from, with its hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataFile {
    pub path: String,
    pub sha256: String,
}

/// Where the prompts of a performance run came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PromptSource {
    /// Windows of the bundled tiny model's training text.
    Corpus,
    /// Examples of suites, rendered as evaluation requests render them.
    Suites {
        /// The data root.
        data_dir: String,
        /// `--suites` as given.
        selector: String,
        /// Seed of the example sample.
        seed: u64,
        /// Examples drawn per suite.
        limit_per_suite: usize,
        /// The files read, by suite id (evaluation and few-shot files).
        data_hashes: BTreeMap<String, Vec<DataFile>>,
        /// Suites selected but not used, with the reason.
        skipped: BTreeMap<String, String>,
    },
}

/// One timed query as written to `perf-samples.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// The domain whose prompts it ran (runs with prompt sets per domain).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(flatten)]
    pub timing: QueryTiming,
}

/// File name of a performance run's report inside its run folder.
pub const PERF_FILE: &str = "perf.json";

/// `perf.json`: everything a performance run measured, the headline figures
/// ([`PerfSummary`]) at the top level.
#[derive(Debug, Clone, Serialize)]
pub struct PerfReport {
    pub model: ModelInfo,
    pub settings: PerfSettings,
    pub validity: Validity,
    /// `model-only` (graph execution) or `end-to-end`.
    pub scope: String,
    pub time_to_ready_ms: f64,
    pub prompt_tokens: usize,
    pub gen_tokens: usize,
    pub queries: usize,
    pub duration_s: f64,
    /// Per-query latency (prefill + every output token).
    pub query_latency_ms: LatencySummary,
    /// TTFT and TPOT (decoders).
    pub decoder: Option<DecoderSummary>,
    #[serde(flatten)]
    pub summary: PerfSummary,
    pub memory: Memory,
    /// Power and energy; with prompt sets per domain, summed over the
    /// domains' windows (the time between windows left out).
    pub power: PowerReport,
    pub workload: GraphCount,
    /// Where the prompts came from.
    pub prompt_source: PromptSource,
    pub provenance: Provenance,
}

/// Prompts for the queries: windows of `text` at different offsets.
pub fn prompts_from(text: &str, count: usize, chars: usize) -> Vec<String> {
    let chars_v: Vec<char> = text.chars().collect();
    if chars_v.is_empty() {
        return vec!["Edge devices".to_string(); count.max(1)];
    }
    (0..count.max(1))
        .map(|i| {
            let start = (i * 977) % chars_v.len();
            chars_v
                .iter()
                .cycle()
                .skip(start)
                .take(chars.max(1))
                .collect()
        })
        .collect()
}

fn temperature(roots: &HostRoots) -> (Option<f64>, Option<String>) {
    match profile::read_thermal(roots) {
        profile::Reading::Read { value, .. } => (Some(value.max_celsius), None),
        other => (None, Some(format!("{other:?}"))),
    }
}

enum Power {
    Sampled(Meter),
    Log(Meter),
    None(String),
}

fn start_power(choice: &PowerChoice) -> Power {
    match choice {
        PowerChoice::Off => Power::None("power measurement turned off (--power off)".into()),
        PowerChoice::Auto { sysfs_root, idle } => match power::detect(sysfs_root) {
            Err(u) => Power::None(u.to_string()),
            Ok(src) => {
                let mut m = Meter::new(src);
                match m.measure_idle(*idle).and_then(|_| m.start()) {
                    Ok(()) => Power::Sampled(m),
                    Err(e) => Power::None(format!("power source failed: {e}")),
                }
            }
        },
        PowerChoice::MeterLog(path) => match MeterLog::open(path) {
            Ok(log) => Power::Log(Meter::new(Box::new(log))),
            Err(e) => Power::None(e.to_string()),
        },
    }
}

/// One timed window: warm-up, then queries until the settings say stop,
/// with power over exactly the timed part.
struct Window {
    samples: Vec<QueryTiming>,
    elapsed: Duration,
    energy: Option<Energy>,
    power_reason: Option<String>,
    validity: Validity,
}

fn timed_window(
    model: &mut dyn Model,
    prompts: &[String],
    cfg: &PerfConfig,
) -> Result<Window, PerfError> {
    if prompts.is_empty() {
        return Err(PerfError::Settings("no prompt to query".into()));
    }
    for i in 0..cfg.settings.warmup_queries as usize {
        model.perf_query(
            &prompts[i % prompts.len()],
            cfg.prompt_tokens,
            cfg.gen_tokens,
        )?;
    }
    let mut power = start_power(&cfg.power);
    let wall0 = SystemTime::now();
    let clock = Instant::now();
    let mut samples = Vec::new();
    while !cfg
        .settings
        .should_stop(samples.len() as u64, clock.elapsed())
    {
        let p = &prompts[samples.len() % prompts.len()];
        samples.push(model.perf_query(p, cfg.prompt_tokens, cfg.gen_tokens)?);
    }
    let elapsed = clock.elapsed();
    let wall1 = SystemTime::now();
    let (energy, power_reason) = match &mut power {
        Power::Sampled(m) => match m.stop() {
            Ok(e) => (Some(e), None),
            Err(e) => (None, Some(format!("power source failed: {e}"))),
        },
        Power::Log(m) => match m.measure_window(wall0, wall1) {
            Ok(e) => (Some(e), None),
            Err(e) => (None, Some(e.to_string())),
        },
        Power::None(r) => (None, Some(r.clone())),
    };
    Ok(Window {
        validity: cfg.settings.validity(samples.len() as u64, elapsed),
        samples,
        elapsed,
        energy,
        power_reason,
    })
}

/// Latency figures of a set of timed queries.
struct Figures {
    query_latency: LatencySummary,
    decoder: Option<DecoderSummary>,
    latency_ms_per_token: Quantiles,
    output_tokens: usize,
}

fn quantiles(s: &LatencySummary) -> Quantiles {
    let q = |p: f64| s.percentile(p).and_then(|r| r.value());
    Quantiles {
        p50: q(0.5),
        p90: q(0.9),
        p95: q(0.95),
        p99: q(0.99),
        mean: s.mean,
    }
}

fn figures<'a>(
    samples: impl Iterator<Item = &'a QueryTiming> + Clone,
    gen_tokens: usize,
) -> Result<Figures, PerfError> {
    let settings = |e: stats::StatsError| PerfError::Settings(e.to_string());
    let totals: Vec<f64> = samples
        .clone()
        .map(|q| q.ttft_ms + q.token_gaps_ms.iter().sum::<f64>())
        .collect();
    let query_latency = stats::summarize(&totals).map_err(settings)?;
    let decoder = if gen_tokens > 0 && samples.clone().any(|q| !q.token_gaps_ms.is_empty()) {
        let t: Vec<DecodeTiming> = samples
            .clone()
            .map(|q| DecodeTiming::from_token_gaps(q.ttft_ms, &q.token_gaps_ms))
            .collect();
        Some(stats::summarize_decoder(&t).map_err(settings)?)
    } else {
        None
    };
    let per_token_summary = decoder.as_ref().map_or(&query_latency, |d| &d.tpot);
    Ok(Figures {
        latency_ms_per_token: quantiles(per_token_summary),
        output_tokens: samples.map(|q| 1 + q.token_gaps_ms.len()).sum(),
        query_latency,
        decoder,
    })
}

/// The energy of several windows together: joules and window lengths
/// summed; `None` unless every window has one.
fn combine(energies: &[Option<Energy>]) -> Option<Energy> {
    let all: Vec<&Energy> = energies.iter().map(Option::as_ref).collect::<Option<_>>()?;
    let first = *all.first()?;
    if all.len() == 1 {
        return Some(first.clone());
    }
    let joules: f64 = all.iter().map(|e| e.joules).sum();
    let window_s: f64 = all.iter().map(|e| e.window_s).sum();
    let above: Option<f64> = all.iter().map(|e| e.joules_above_idle).sum();
    let idle: Option<f64> = all
        .iter()
        .map(|e| e.idle_watts.map(|w| w * e.window_s))
        .sum::<Option<f64>>()
        .map(|j| j / window_s);
    let samples: usize = all.iter().map(|e| e.samples).sum();
    Some(Energy {
        joules,
        joules_above_idle: above,
        idle_watts: idle,
        mean_watts: if window_s > 0.0 {
            joules / window_s
        } else {
            0.0
        },
        window_s,
        start_unix_s: first.start_unix_s,
        samples,
        sample_rate_hz: first.sample_rate_hz,
        method: first.method,
        source: first.source.clone(),
    })
}

fn power_report(
    energy: Option<Energy>,
    reason: Option<String>,
    queries: u64,
    tokens: u64,
) -> PowerReport {
    let per = |n: u64| energy.as_ref().and_then(|e| e.per(n));
    PowerReport {
        joules_per_query: per(queries).map(|u| u.joules),
        joules_per_query_above_idle: per(queries).and_then(|u| u.joules_above_idle),
        joules_per_token: per(tokens).map(|u| u.joules),
        null_reason: if energy.is_some() { None } else { reason },
        energy,
    }
}

/// Runs the timed queries on a loaded model, cycling through `prompts`.
pub fn measure(
    model: &mut dyn Model,
    graph: Option<&Path>,
    time_to_ready: Duration,
    prompts: &[String],
    cfg: &PerfConfig,
) -> Result<(PerfReport, Vec<Sample>), PerfError> {
    measure_sets(
        model,
        graph,
        time_to_ready,
        &[(None, prompts)],
        PromptSource::Corpus,
        cfg,
    )
}

/// Runs the timed queries one domain after another, each in its own timed
/// window (warm-up included) over its own prompts: `sets` holds
/// `(domain, prompts)`. The top-level figures cover every query together;
/// `domains` holds each domain's own.
pub fn measure_domains(
    model: &mut dyn Model,
    graph: Option<&Path>,
    time_to_ready: Duration,
    sets: &[(String, Vec<String>)],
    source: PromptSource,
    cfg: &PerfConfig,
) -> Result<(PerfReport, Vec<Sample>), PerfError> {
    if sets.is_empty() {
        return Err(PerfError::Settings("no domain to measure".into()));
    }
    let sets: Vec<(Option<&str>, &[String])> = sets
        .iter()
        .map(|(d, p)| (Some(d.as_str()), p.as_slice()))
        .collect();
    measure_sets(model, graph, time_to_ready, &sets, source, cfg)
}

fn measure_sets(
    model: &mut dyn Model,
    graph: Option<&Path>,
    time_to_ready: Duration,
    sets: &[(Option<&str>, &[String])],
    source: PromptSource,
    cfg: &PerfConfig,
) -> Result<(PerfReport, Vec<Sample>), PerfError> {
    cfg.settings
        .validate()
        .map_err(|e| PerfError::Settings(e.to_string()))?;
    let (rss_ready, _) = memory_now();
    let roots = HostRoots::system();
    let (t_start, thermal_note) = temperature(&roots);
    let mut windows = Vec::with_capacity(sets.len());
    for (_, prompts) in sets {
        windows.push(timed_window(model, prompts, cfg)?);
    }
    let (t_end, _) = temperature(&roots);
    let (_, peak) = memory_now();

    let mut domains = BTreeMap::new();
    let mut reasons = Vec::new();
    for ((domain, prompts), w) in sets.iter().zip(&windows) {
        let Some(domain) = domain else {
            reasons.extend(w.validity.reasons.iter().cloned());
            continue;
        };
        reasons.extend(w.validity.reasons.iter().map(|r| format!("{domain}: {r}")));
        let f = figures(w.samples.iter(), cfg.gen_tokens)?;
        let p = power_report(
            w.energy.clone(),
            w.power_reason.clone(),
            w.samples.len() as u64,
            f.output_tokens as u64,
        );
        let n = w.samples.len();
        domains.insert(
            domain.to_string(),
            DomainPerf {
                latency_ms_per_token: Some(f.latency_ms_per_token),
                ttft_ms: f.decoder.as_ref().map(|d| quantiles(&d.ttft)),
                query_latency_ms: Some(quantiles(&f.query_latency)),
                power_w: w.energy.as_ref().map(|e| e.mean_watts),
                power_null_reason: p.null_reason,
                joules_per_query: p.joules_per_query,
                joules_per_token: p.joules_per_token,
                queries: n,
                duration_s: w.elapsed.as_secs_f64(),
                output_tokens_per_s: (cfg.gen_tokens > 0)
                    .then(|| f.output_tokens as f64 / w.elapsed.as_secs_f64()),
                prompt_tokens_mean: (n > 0).then(|| {
                    w.samples.iter().map(|q| q.prompt_tokens).sum::<usize>() as f64 / n as f64
                }),
                prompts: prompts.len(),
                suites: BTreeMap::new(),
                validity: Some(w.validity.clone()),
            },
        );
    }
    let validity = Validity {
        valid: reasons.is_empty(),
        reasons,
    };
    let samples: Vec<Sample> = sets
        .iter()
        .zip(&windows)
        .flat_map(|((d, _), w)| {
            w.samples.iter().map(|t| Sample {
                domain: d.map(String::from),
                timing: t.clone(),
            })
        })
        .collect();
    let elapsed: Duration = windows.iter().map(|w| w.elapsed).sum();
    let all = figures(samples.iter().map(|s| &s.timing), cfg.gen_tokens)?;
    let energy = combine(&windows.iter().map(|w| w.energy.clone()).collect::<Vec<_>>());
    let power_reason = windows.iter().find_map(|w| w.power_reason.clone());
    let workload = match graph {
        Some(g) => count_graph(g)?,
        None => GraphCount::default(),
    };
    let projections = match &cfg.devices_dir {
        Some(dir) if workload.flops_per_token > 0.0 => profile::load_dir(dir)
            .map_err(|e| PerfError::Settings(e.to_string()))?
            .iter()
            .filter_map(|d| {
                let w = Workload {
                    flops_per_token: workload.flops_per_token,
                    weight_bytes_per_token: workload.weight_bytes_per_token,
                    other_bytes_per_token: 0.0,
                };
                let p = profile::project(d, &w).ok()?;
                let power = profile::estimate_power(d);
                Some(DeviceProjection {
                    device: d.id.clone(),
                    ms_per_token: p.ms_per_token_lower_bound,
                    power_w: power.watts,
                    estimated: true,
                    detail: Some(ProjectionDetail { roofline: p, power }),
                })
            })
            .collect(),
        _ => vec![],
    };
    let power = power_report(
        energy.clone(),
        power_reason.clone(),
        samples.len() as u64,
        all.output_tokens as u64,
    );
    let info = model.info().clone();
    let mem_reason = (rss_ready.is_none() || peak.is_none()).then(|| {
        "resident memory is read from /proc/self/status, which this OS does not have".to_string()
    });
    let report = PerfReport {
        settings: cfg.settings.clone(),
        validity,
        scope: if samples.iter().all(|q| q.timing.model_only) {
            "model-only".into()
        } else {
            "end-to-end".into()
        },
        time_to_ready_ms: time_to_ready.as_secs_f64() * 1e3,
        prompt_tokens: samples.first().map_or(0, |q| q.timing.prompt_tokens),
        gen_tokens: cfg.gen_tokens,
        queries: samples.len(),
        duration_s: elapsed.as_secs_f64(),
        query_latency_ms: all.query_latency,
        decoder: all.decoder,
        summary: PerfSummary {
            latency_ms_per_token: Some(all.latency_ms_per_token),
            output_tokens_per_s: (cfg.gen_tokens > 0)
                .then(|| all.output_tokens as f64 / elapsed.as_secs_f64()),
            peak_rss_bytes: peak,
            power_w: energy.as_ref().map(|e| e.mean_watts),
            power_null_reason: power.null_reason.clone(),
            joules_per_query: power.joules_per_query,
            flops_per_token: Some(workload.flops_per_token),
            domains,
            projections,
        },
        memory: Memory {
            rss_ready_bytes: rss_ready,
            peak_rss_bytes: peak,
            null_reason: mem_reason,
            weight_bytes_by_precision: workload.weight_bytes_by_precision.clone(),
        },
        power,
        workload,
        prompt_source: source,
        provenance: Provenance {
            edgebench_version: env!("CARGO_PKG_VERSION").into(),
            git_hash: cfg.git_hash.clone(),
            host: Host::detect(),
            threads: info.runtime.map_or(1, |r| r.threads),
            model_sha256: info.sha256.clone(),
            governor: profile::read_governor(&roots).value().cloned(),
            temperature_start_c: t_start,
            temperature_end_c: t_end,
            thermal_note,
        },
        model: info,
    };
    Ok((report, samples))
}

fn fmt_ms(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v != 0.0 && v.abs() < 0.1 => format!("{v:.3e}"),
        Some(v) => format!("{v:.2}"),
    }
}

fn summary_row(name: &str, s: &LatencySummary) -> String {
    let pct = |p: f64| {
        s.percentile(p)
            .map_or("-".to_string(), |r| format!("{r:.2}"))
    };
    format!(
        "| {name} | {} | {} | {} | {} | {} | {} |\n",
        s.count,
        fmt_ms(s.mean),
        pct(0.5),
        pct(0.9),
        pct(0.95),
        pct(0.99)
    )
}

/// The Markdown table printed after a performance run.
pub fn render(r: &PerfReport) -> String {
    let mut out = format!(
        "# Performance: {} ({} thread(s), {})\n\n",
        r.model.name, r.provenance.threads, r.scope
    );
    out += &format!(
        "- run: **{}**{}\n- time to model ready: {:.1} ms (not in the timed window)\n- {} queries in {:.2} s; {}, {} output tokens per query\n\n",
        if r.validity.valid { "VALID" } else { "INVALID" },
        if r.validity.valid {
            String::new()
        } else {
            format!(" ({})", r.validity.reasons.join("; "))
        },
        r.time_to_ready_ms,
        r.queries,
        r.duration_s,
        if r.summary.domains.is_empty() {
            format!("prompt {} tokens", r.prompt_tokens)
        } else {
            format!(
                "{} domain(s) measured in turn (prompt lengths per domain below)",
                r.summary.domains.len()
            )
        },
        r.gen_tokens
    );
    out += "| latency (ms, model-only) | n | mean | p50 | p90 | p95 | p99 |\n|---|---|---|---|---|---|---|\n";
    out += &summary_row("per query", &r.query_latency_ms);
    if let Some(d) = &r.decoder {
        out += &summary_row("time to first token", &d.ttft);
        out += &summary_row("time per output token", &d.tpot);
    }
    out += "\n";
    let mb = |b: Option<u64>| b.map_or("null".to_string(), |b| format!("{:.1} MB", b as f64 / 1e6));
    out += &format!(
        "- memory: resident when ready {}, peak {}{}\n- weights: {}\n",
        mb(r.memory.rss_ready_bytes),
        mb(r.memory.peak_rss_bytes),
        r.memory
            .null_reason
            .as_ref()
            .map_or(String::new(), |n| format!(" ({n})")),
        r.memory
            .weight_bytes_by_precision
            .iter()
            .map(|(k, v)| format!("{k} {:.2} MB", *v as f64 / 1e6))
            .collect::<Vec<_>>()
            .join(", ")
    );
    match &r.power.energy {
        Some(e) => {
            out +=
                &format!(
                "- power: {:.2} W mean over {:.2} s ({}, {} samples{}); {} J/query, {} J/token{}\n",
                e.mean_watts,
                e.window_s,
                e.method.as_str(),
                e.samples,
                e.sample_rate_hz.map_or(String::new(), |h| format!(" at {h:.1} Hz")),
                r.power.joules_per_query.map_or("-".into(), |j| format!("{j:.4}")),
                r.power.joules_per_token.map_or("-".into(), |j| format!("{j:.5}")),
                e.idle_watts.map_or(String::new(), |w| format!("; idle {w:.2} W"))
            )
        }
        None => {
            out += &format!(
                "- power: null ({})\n",
                r.power.null_reason.as_deref().unwrap_or("not measured")
            )
        }
    }
    if !r.summary.domains.is_empty() {
        out += "\n| domain | queries | prompts (suites) | prompt tokens (mean) | ms/token p50 | p90 | TTFT p50 (ms) | power (W) | J/query |\n|---|---|---|---|---|---|---|---|---|\n";
        for (name, d) in &r.summary.domains {
            let lat = d.latency_ms_per_token.as_ref();
            out += &format!(
                "| {name}{} | {} | {} ({}) | {} | {} | {} | {} | {} | {} |\n",
                match &d.validity {
                    Some(v) if !v.valid => " (INVALID)",
                    _ => "",
                },
                d.queries,
                d.prompts,
                d.suites
                    .iter()
                    .map(|(s, n)| format!("{s} {n}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                d.prompt_tokens_mean
                    .map_or("-".into(), |t| format!("{t:.1}")),
                fmt_ms(lat.and_then(|q| q.p50)),
                fmt_ms(lat.and_then(|q| q.p90)),
                fmt_ms(d.ttft_ms.as_ref().and_then(|q| q.p50)),
                d.power_w.map_or("null".into(), |w| format!("{w:.2}")),
                d.joules_per_query.map_or("-".into(), |j| format!("{j:.4}")),
            );
        }
    }
    if !r.summary.projections.is_empty() {
        out += &format!(
            "\n| device | ms/token lower bound (ESTIMATED, roofline) | bound | power (W, ESTIMATED, envelope) |\n|---|---|---|---|\n| host (measured above) | {} | measured | {} |\n",
            fmt_ms(r.summary.latency_p50()),
            r.summary
                .power_w
                .map_or("null".into(), |w| format!("{w:.2} (measured)"))
        );
        for p in &r.summary.projections {
            out += &format!(
                "| {} | {} (estimated) | {} | {} |\n",
                p.device,
                fmt_ms(p.ms_per_token),
                p.detail
                    .as_ref()
                    .and_then(|d| d.roofline.bound)
                    .map_or("unknown".into(), |b| format!("{b:?}").to_lowercase()),
                p.power_w
                    .map_or("unknown".into(), |w| format!("{w} (estimated)"))
            );
        }
        out += &format!(
            "\nProjections count {:.3} MFLOP and {:.2} MB of weights per token from the graph; {}. \
             Projected power is the profile's power envelope, an upper bound while the model runs at its roofline.\n",
            r.workload.flops_per_token / 1e6,
            r.workload.weight_bytes_per_token / 1e6,
            r.workload.note
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_documented_example_and_ignores_unknown_fields() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(PERF_FILE),
            r#"{"model": "gem-paper", "latency_ms_per_token": {"p50": 12.5, "p90": 14},
                "peak_rss_bytes": 123000000, "power_w": null,
                "power_null_reason": "no power sensor", "future_field": [1, 2],
                "domains": {"healthcare": {"latency_ms_per_token": {"p50": 11}}},
                "projections": [{"device": "raspberry-pi-4", "ms_per_token": 80.5},
                                {"device": "pixel-6", "ms_per_token": 3, "estimated": false}]}"#,
        )
        .unwrap();
        let p = PerfSummary::load(dir.path()).unwrap().unwrap();
        assert_eq!(p.latency_p50(), Some(12.5));
        assert_eq!(p.peak_rss_bytes, Some(123_000_000));
        assert_eq!(p.power_w, None);
        assert_eq!(p.domain_latency_p50("healthcare"), Some(11.0));
        assert_eq!(p.domain_latency_p50("legal"), None);
        let rpi = p.projection("raspberry-pi-4").unwrap();
        assert_eq!((rpi.ms_per_token, rpi.estimated), (Some(80.5), true));
        assert!(!p.projection("pixel-6").unwrap().estimated);
        assert!(p.projection("iphone-13").is_none());
    }

    fn energy(joules: f64, window_s: f64, idle: Option<f64>) -> Energy {
        Energy {
            joules,
            joules_above_idle: idle.map(|w| joules - w * window_s),
            idle_watts: idle,
            mean_watts: joules / window_s,
            window_s,
            start_unix_s: 100.0 + window_s,
            samples: 10,
            sample_rate_hz: Some(10.0),
            method: power::Method::MeterCsv,
            source: "meter.csv".into(),
        }
    }

    #[test]
    fn windows_combine_by_summing_joules_and_time() {
        // 2 J over 1 s at 1 W idle, 9 J over 3 s at 2 W idle
        let e = combine(&[
            Some(energy(2.0, 1.0, Some(1.0))),
            Some(energy(9.0, 3.0, Some(2.0))),
        ])
        .unwrap();
        assert_eq!((e.joules, e.window_s, e.samples), (11.0, 4.0, 20));
        assert!((e.mean_watts - 2.75).abs() < 1e-12);
        // idle: (1 x 1 + 2 x 3) / 4 = 1.75 W; above idle: 1 + 3 = 4 J
        assert!((e.idle_watts.unwrap() - 1.75).abs() < 1e-12);
        assert!((e.joules_above_idle.unwrap() - 4.0).abs() < 1e-12);
        assert_eq!(e.start_unix_s, 101.0, "the first window's start");
        let no_idle = combine(&[
            Some(energy(2.0, 1.0, None)),
            Some(energy(9.0, 3.0, Some(2.0))),
        ])
        .unwrap();
        assert_eq!(
            (no_idle.idle_watts, no_idle.joules_above_idle),
            (None, None)
        );
        assert_eq!(combine(&[Some(energy(2.0, 1.0, None)), None]), None);
        assert_eq!(combine(&[]), None);
    }

    #[test]
    fn absent_is_none_and_malformed_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(PerfSummary::load(dir.path()).unwrap(), None);
        std::fs::write(dir.path().join(PERF_FILE), r#"{"peak_rss_bytes": "lots"}"#).unwrap();
        let e = PerfSummary::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("perf.json"), "{e}");
    }
}
