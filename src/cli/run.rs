//! `edgebench run`, `rescore` and `report`.

use super::{bad_input, failed, Failure, Paths};
use clap::Args;
use edgebench::metrics::Bootstrap;
use edgebench::model;
use edgebench::record::RunDir;
use edgebench::report::{self, RunScores};
use edgebench::runner::{self, RunConfig, RunError};
use edgebench::suite;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// `builtin:tiny` (the bundled model) or a model directory.
    #[arg(long, default_value = "builtin:tiny")]
    pub model: String,
    /// Comma-separated suite ids, domain names, or `all`.
    #[arg(long, default_value = "all")]
    pub suites: String,
    /// Examples per suite (overrides each suite's default; 0 = all).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Seed for few-shot draws and the bootstrap.
    #[arg(long, default_value_t = 1234)]
    pub seed: u64,
    /// Continue an interrupted run instead of starting a new one.
    #[arg(long)]
    pub resume: Option<String>,
    /// Name of a new run (default: timestamp and model name).
    #[arg(long)]
    pub run_id: Option<String>,
    /// Bootstrap resamples for confidence intervals.
    #[arg(long, default_value_t = 1000)]
    pub bootstrap: usize,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
    /// Print results.json to stdout.
    #[arg(long)]
    pub json: bool,
    /// `accuracy` (score suites) or `perf` (latency, memory, power; see `edgebench perf`).
    #[arg(long, default_value = "accuracy", value_parser = ["accuracy", "perf"])]
    pub mode: String,
    #[command(flatten)]
    pub perf: super::perf::PerfOpts,
    /// Stop after this many new examples, leaving a resumable run (for testing interruption).
    #[arg(long, hide = true)]
    pub stop_after: Option<usize>,
    /// Sleep after each example, in milliseconds (for testing interruption).
    #[arg(long, hide = true, default_value_t = 0)]
    pub throttle_ms: u64,
    #[command(flatten)]
    pub paths: Paths,
}

#[derive(Debug, Args)]
pub struct RescoreArgs {
    /// Run id (under <out>/runs) or run directory.
    pub run: String,
    /// Bootstrap resamples.
    #[arg(long)]
    pub bootstrap: Option<usize>,
    /// Print results.json to stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub paths: Paths,
}

fn classify(e: RunError) -> Failure {
    match e {
        RunError::Model { .. } | RunError::Record(_) => failed(e),
        RunError::Data(_) | RunError::Mismatch(_) => bad_input(e),
    }
}

pub fn run(a: RunArgs) -> Result<(), Failure> {
    if a.mode == "perf" {
        return super::perf::perf(super::perf::PerfArgs {
            model: a.model,
            run_id: a.run_id,
            opts: a.perf,
            paths: a.paths,
        });
    }
    let suites_dir = a.paths.suites();
    let specs = suite::load_dir(&suites_dir).map_err(bad_input)?;
    let selected = suite::select(&specs, &a.suites).map_err(|e| bad_input(anyhow::anyhow!(e)))?;
    let mut m = model::load(&a.model, &a.paths.out.join("models")).map_err(bad_input)?;
    let cfg = RunConfig {
        data_dir: a.paths.data(),
        out: a.paths.out.clone(),
        limit: a.limit,
        seed: a.seed,
        resume: a.resume.clone(),
        run_id: a.run_id.clone(),
        quiet: a.quiet,
        bootstrap: a.bootstrap,
        stop_after: a.stop_after,
        throttle_ms: a.throttle_ms,
    };
    let prepared = runner::prepare(&selected, &cfg, m.as_ref()).map_err(classify)?;
    let dir = runner::run(&prepared, &cfg, m.as_mut(), &suites_dir).map_err(classify)?;
    report::snapshot_suites(&dir, &selected, &suites_dir).map_err(failed)?;
    let boot = Bootstrap {
        resamples: a.bootstrap,
        seed: a.seed,
    };
    let scores = report::score_run(&dir, &boot).map_err(failed)?;
    let written = report::write_reports(&dir, &scores).map_err(failed)?;
    print_outcome(&dir, &scores, &written, a.quiet, a.json);
    if scores.manifest.state != "complete" {
        return Err(failed(anyhow::anyhow!(
            "run {} is incomplete; continue it with --resume {}",
            scores.manifest.run_id,
            scores.manifest.run_id
        )));
    }
    Ok(())
}

pub fn rescore(a: RescoreArgs) -> Result<(), Failure> {
    let dir = RunDir::open(&a.paths.out, &a.run).map_err(bad_input)?;
    let manifest = dir.load_manifest().map_err(bad_input)?;
    let boot = Bootstrap {
        resamples: a.bootstrap.unwrap_or(manifest.bootstrap),
        seed: manifest.seed,
    };
    let scores = report::score_run(&dir, &boot).map_err(bad_input)?;
    let written = report::write_reports(&dir, &scores).map_err(failed)?;
    print_outcome(&dir, &scores, &written, false, a.json);
    Ok(())
}

fn print_outcome(
    dir: &RunDir,
    s: &RunScores,
    written: &[std::path::PathBuf],
    quiet: bool,
    json: bool,
) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report::results_json(s)).expect("json")
        );
        return;
    }
    if !quiet {
        println!(
            "{:<28} {:<16} {:>10} {:>22}",
            "suite", "metric", "value", "95% CI"
        );
        for sc in &s.suites {
            for (m, e) in &sc.metrics {
                println!(
                    "{:<28} {:<16} {:>10.4} {:>22}",
                    sc.suite,
                    m.as_str(),
                    e.value,
                    format!("[{:.4}, {:.4}]", e.ci_low, e.ci_high)
                );
            }
        }
        let skipped = s.specs.len() - s.suites.len();
        println!(
            "{} suites scored, {} not scored (see summary.md for why)",
            s.suites.len(),
            skipped
        );
    }
    println!("run: {}", dir.root.display());
    if !quiet {
        for w in written {
            println!("  wrote {}", w.display());
        }
    }
}
