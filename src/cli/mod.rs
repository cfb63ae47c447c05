//! Subcommands, one module each.

mod bench;
mod bench_eval;
mod bench_ops;
mod gate;
mod gem;
mod import;
mod llama_cpp;
mod paper;
mod perf;
mod quantize;
mod reproduce;
mod run;
mod score;
mod shards;
mod suites;
mod sweep;

use clap::{Parser, Subcommand};
use edgebench::runtime::RuntimeOptions;
use edgebench::suite::{Registry, SelectError};
use std::path::{Path, PathBuf};

/// EdgeBench: evaluate on-device language models over 47 suites in 8 domains.
#[derive(Debug, Parser)]
#[command(name = "edgebench", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub runtime: RuntimeArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// How models are loaded and run (the environment variables named are
/// defaults, the flags override them).
#[derive(Debug, Clone, clap::Args)]
pub struct RuntimeArgs {
    /// Threads of the matrix products (1 = single-threaded; default: the
    /// machine's physical cores that this process may use).
    #[arg(long, global = true, value_parser = bounded(1..=1024))]
    pub threads: Option<usize>,
    /// Lowering of quantized layers: kernel (EdgeBench's), tract, or f32
    /// (default: $EDGEBENCH_QUANT_LOWERING, else kernel).
    #[arg(long, global = true, value_parser = ["kernel", "tract", "f32"])]
    pub lowering: Option<String>,
    /// Widest instructions of the kernels: avx512, avx2, neon or portable
    /// (default: $EDGEBENCH_MAX_ISA, else the widest this CPU has; a level
    /// of the other architecture caps at its width: avx2 allows NEON).
    #[arg(long, global = true, value_parser = ["avx512", "avx2", "neon", "portable"])]
    pub max_isa: Option<String>,
    /// Leave attention, RoPE and normalisation chains as written instead of
    /// fusing them (default: on unless $EDGEBENCH_FUSE_ATTENTION=0).
    #[arg(long, global = true)]
    pub no_fuse_attention: bool,
    /// Leave f32 linear layers on tract instead of EbDense (default: on
    /// unless $EDGEBENCH_DENSE=0).
    #[arg(long, global = true)]
    pub no_dense: bool,
}

impl RuntimeArgs {
    /// The options, built once: the environment's defaults, then the flags.
    pub fn options(&self) -> Result<RuntimeOptions, Failure> {
        let mut o = RuntimeOptions::from_env().map_err(|e| bad_input(anyhow::anyhow!(e)))?;
        o.threads = self.threads.unwrap_or_else(RuntimeOptions::default_threads);
        if let Some(l) = &self.lowering {
            o.lowering = edgebench::ops::quant::Lowering::parse(l).expect("clap checked it");
        }
        if let Some(i) = &self.max_isa {
            o.max_isa = edgebench::ops::Isa::parse(i).expect("clap checked it");
        }
        o.fuse_attention &= !self.no_fuse_attention;
        o.dense &= !self.no_dense;
        Ok(o)
    }
}

/// The git commit this binary was built from, recorded in runs and reports.
pub const GIT_HASH: Option<&str> = option_env!("EDGEBENCH_GIT_HASH");

/// Options shared by commands that read suites and data.
#[derive(Debug, Clone, clap::Args)]
pub struct Paths {
    /// Folder of suite files added to the built-in suites (repeatable; a
    /// suite with a built-in id replaces it; default:
    /// $EDGEBENCH_SUITES_PATH, folders separated by `:`).
    #[arg(long, global = true)]
    pub suites_dir: Vec<PathBuf>,
    /// A suite file added to the built-in suites (repeatable).
    #[arg(long, global = true)]
    pub suite_file: Vec<PathBuf>,
    /// Data root (default: $EDGEBENCH_DATA, else the bundled fixtures/).
    #[arg(long, env = "EDGEBENCH_DATA", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Output root for runs and built models.
    #[arg(long, default_value = "reports", global = true)]
    pub out: PathBuf,
}

impl Paths {
    /// The built-in suites plus those the flags (or $EDGEBENCH_SUITES_PATH)
    /// add; a folder or file that cannot be read is bad input.
    pub fn registry(&self) -> Result<Registry, Failure> {
        let dirs: Vec<PathBuf> = if self.suites_dir.is_empty() {
            std::env::var_os("EDGEBENCH_SUITES_PATH")
                .map(|v| {
                    std::env::split_paths(&v)
                        .filter(|p| !p.as_os_str().is_empty())
                        .collect()
                })
                .unwrap_or_default()
        } else {
            self.suites_dir.clone()
        };
        Registry::load(&dirs, &self.suite_file).map_err(bad_input)
    }
    /// Whether the command line itself names suite files or folders.
    pub fn gives_suites(&self) -> bool {
        !self.suites_dir.is_empty() || !self.suite_file.is_empty()
    }
    /// Data root.
    pub fn data(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| fallback(Path::new("fixtures"), "fixtures"))
    }
}

/// Prints the registry's warnings (overrides, suite files that did not load) on stderr.
pub fn warn(reg: &Registry) {
    for w in reg.warnings() {
        eprintln!("{w}");
    }
}

/// The suites `selector` (of `flag`) takes; a selected suite file that does
/// not load, or a selector that matches nothing, is bad input. Prints the
/// registry's warnings first.
pub fn select<'a>(
    reg: &'a Registry,
    selector: &str,
    flag: &str,
) -> Result<Vec<&'a edgebench::suite::spec::SuiteSpec>, Failure> {
    let selected = reg.select(selector).map_err(|e| match e {
        SelectError::Broken(e) => bad_input(e),
        SelectError::Unknown(m) => bad_input(anyhow::anyhow!("{flag}: {m}")),
    })?;
    warn(reg);
    Ok(selected)
}

fn fallback(p: &Path, name: &str) -> PathBuf {
    if p.exists() || p != Path::new(name) {
        p.to_path_buf()
    } else {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(name)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Evaluate a model over suites and write records and reports.
    Run(run::RunArgs),
    /// Put the shards of a split run (`run --shard`) back together as one run.
    Merge(shards::MergeArgs),
    /// The split of a run into shards, with the estimated time of each.
    Plan(shards::PlanArgs),
    /// List or validate the suite registry.
    Suites(suites::SuitesArgs),
    /// Recompute every metric of a run from its records (no model needed) and rewrite its reports.
    Rescore(run::RescoreArgs),
    /// Rewrite the reports of a run (same as rescore).
    Report(run::RescoreArgs),
    /// Score predictions produced elsewhere (another engine, a phone) with the same metrics.
    Score(score::ScoreArgs),
    /// One model at several precisions over chosen suites: scores, perplexity, GG and DSI against bits.
    Sweep(sweep::SweepArgs),
    /// Import a model file into an EdgeBench model directory.
    Import(import::ImportArgs),
    /// Perplexity of a text file, llama.cpp's convention.
    Perplexity(import::PerplexityArgs),
    /// Rewrite a llama GGUF file at another quantization (Q4_0 .. Q8_0, Q2_K .. Q6_K, Q4_K_M, Q5_K_M).
    Quantize(quantize::QuantizeArgs),
    /// Performance mode: latency percentiles, TTFT/TPOT, memory, power and device projections.
    Perf(perf::PerfArgs),
    /// The paper's device profiles and this machine.
    Devices(perf::DevicesArgs),
    /// Compare a candidate run with a baseline and fail (exit 1) on a significant regression.
    Gate(gate::GateArgs),
    /// Build GEM graphs (custom ops: router, SCAR, quantized linear) and their ablations.
    Gem(gem::GemArgs),
    /// Benchmarks that print a table (speed and memory are measured here, never in tests).
    Bench(bench::BenchArgs),
    /// The paper's Tables 1-5 and Figures 1-5, reported beside measured, with the audit and an HTML report.
    Paper(paper::PaperArgs),
    /// Every run the paper's tables need (models built or imported, evaluations, performance), then the tables; resumable.
    Reproduce(reproduce::ReproduceArgs),
}

/// A clap parser of a whole number within `range`; anything else is a usage
/// error (exit 2) naming the allowed range.
pub fn bounded(
    range: std::ops::RangeInclusive<usize>,
) -> impl Fn(&str) -> Result<usize, String> + Clone + Send + Sync + 'static {
    move |s| {
        let outside = || format!("{s} is outside the allowed {range:?}");
        match s.parse::<usize>() {
            Ok(v) if range.contains(&v) => Ok(v),
            Ok(_) => Err(outside()),
            Err(_) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => Err(outside()),
            Err(e) => Err(format!(
                "{s} is not a whole number ({e}); allowed {range:?}"
            )),
        }
    }
}

/// An error with its exit code.
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

/// Bad input: exit code 2.
pub fn bad_input(e: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: 2,
        error: e.into(),
    }
}

/// Failure of what was asked: exit code 1.
pub fn failed(e: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: 1,
        error: e.into(),
    }
}

/// A run error with its exit code: 2 for bad input, 1 otherwise.
pub fn run_failure(e: edgebench::runner::RunError) -> Failure {
    if e.is_bad_input() {
        bad_input(e)
    } else {
        failed(e)
    }
}

/// An evaluation error with its exit code: 2 for bad input, 1 otherwise.
pub fn eval_failure(e: edgebench::evaluate::EvalError) -> Failure {
    if e.is_bad_input() {
        bad_input(e)
    } else {
        failed(e)
    }
}

/// A record error with its exit code: 2 for a malformed or misused run folder, 1 for I/O.
pub fn record_failure(e: edgebench::record::RecordError) -> Failure {
    if e.is_bad_input() {
        bad_input(e)
    } else {
        failed(e)
    }
}

/// Runs a parsed command.
pub fn dispatch(cli: Cli) -> Result<(), Failure> {
    let runtime = cli.runtime.options()?;
    match cli.command {
        Command::Run(a) => run::run(a, &runtime),
        Command::Merge(a) => shards::merge(a),
        Command::Plan(a) => shards::plan(a, &runtime),
        Command::Suites(a) => suites::suites(a),
        Command::Rescore(a) | Command::Report(a) => run::rescore(a),
        Command::Score(a) => score::score(a),
        Command::Sweep(a) => sweep::sweep(a, &runtime),
        Command::Import(a) => import::import(a),
        Command::Perplexity(a) => import::perplexity(a, &runtime),
        Command::Quantize(a) => quantize::quantize(a),
        Command::Bench(a) => bench::bench(a, &runtime),
        Command::Gem(a) => gem::gem(a),
        Command::Gate(a) => gate::gate(a),
        Command::Perf(a) => perf::perf(a, &runtime),
        Command::Devices(a) => perf::devices(a),
        Command::Paper(a) => paper::paper(a),
        Command::Reproduce(a) => reproduce::reproduce(a, &runtime),
    }
}
