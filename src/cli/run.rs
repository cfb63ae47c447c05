//! `edgebench run`, `rescore` and `report`.

use super::{bad_input, eval_failure, failed, record_failure, run_failure, Failure, Paths};
use clap::Args;
use edgebench::evaluate::{evaluate, Job};
use edgebench::fit::Truncation;
use edgebench::metrics::Bootstrap;
use edgebench::model;
use edgebench::record::{RunDir, MAX_BOOTSTRAP};
use edgebench::report::{self, RunScores};
use edgebench::runner::{Options, Requested, Settings};
use edgebench::runtime::RuntimeOptions;
use edgebench::shard::Shard;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// `builtin:tiny` (the bundled model, the default) or a model directory.
    #[arg(long)]
    pub model: Option<String>,
    /// Comma-separated suite ids, domain names, or `all` (the default).
    #[arg(long)]
    pub suites: Option<String>,
    /// Examples per suite (overrides each suite's default; 0 = all).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Seed for the example sample, few-shot draws and the bootstrap (default 1234).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Continue an interrupted run with the settings its run.json records.
    #[arg(long)]
    pub resume: Option<String>,
    /// With --resume: continue with this command's settings where they differ
    /// from the run's, recorded in run.json as a new leg.
    #[arg(long, requires = "resume")]
    pub force_new_leg: bool,
    /// Name of a new run (default: timestamp and model name).
    #[arg(long, conflicts_with = "resume")]
    pub run_id: Option<String>,
    /// Bootstrap resamples for confidence intervals (default 1000).
    #[arg(long)]
    pub bootstrap: Option<usize>,
    /// How calls longer than the model's context are cut: `document` (the
    /// end of the example's document, the same for all of its calls) or
    /// `left` (each call keeps its last tokens). Recorded in run.json.
    #[arg(long, default_value = "document", value_parser = ["document", "left"], conflicts_with = "resume")]
    pub truncation: String,
    /// Evaluate one shard of a split run: `I/N` (1 <= I <= N), or `auto`
    /// for a Kubernetes Indexed Job (JOB_COMPLETION_INDEX, EDGEBENCH_SHARDS)
    /// or a Slurm array (SLURM_ARRAY_TASK_ID, _MIN, _COUNT). The run id gets
    /// `-shard-I-of-N`; `edgebench merge` puts the shards together.
    #[arg(long, conflicts_with = "resume")]
    pub shard: Option<String>,
    /// With --shard: balance the split by the time each unit took in this
    /// earlier run (id under <out>/runs or folder) instead of estimated
    /// tokens. Every shard must be given the same run.
    #[arg(long, requires = "shard")]
    pub costs_from: Option<String>,
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
    /// Bootstrap resamples (default: the run's).
    #[arg(long)]
    pub bootstrap: Option<usize>,
    /// Print results.json to stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub paths: Paths,
}

pub(super) const DEFAULT_MODEL: &str = "builtin:tiny";
pub(super) const DEFAULT_SEED: u64 = 1234;
const DEFAULT_BOOTSTRAP: usize = 1000;

/// The shard `--shard` names; `auto` reads the scheduler's environment.
pub(super) fn shard_of(flag: &str) -> Result<Shard, Failure> {
    let shard = if flag == "auto" {
        Shard::from_env(|k| std::env::var(k).ok())
    } else {
        Shard::parse(flag)
    };
    shard.map_err(|e| bad_input(anyhow::anyhow!(e)))
}

pub fn run(a: RunArgs, runtime: &RuntimeOptions) -> Result<(), Failure> {
    if a.mode == "perf" && a.shard.is_some() {
        return Err(bad_input(anyhow::anyhow!(
            "--shard splits accuracy runs; perf mode measures one device and is not split"
        )));
    }
    let shard = a.shard.as_deref().map(shard_of).transpose()?;
    if a.mode == "perf" {
        return super::perf::perf(
            super::perf::PerfArgs {
                model: a.model.unwrap_or_else(|| DEFAULT_MODEL.into()),
                run_id: a.run_id,
                suites: a.suites,
                limit: a.limit,
                seed: a.seed,
                opts: a.perf,
                paths: a.paths,
            },
            runtime,
        );
    }
    let opts = Options {
        quiet: a.quiet,
        stop_after: a.stop_after,
        throttle_ms: a.throttle_ms,
        git_hash: super::GIT_HASH.map(String::from),
        runtime: *runtime,
    };
    let cache = a.paths.out.join("models");
    let registry = a.paths.registry()?;
    let suite_ids = |selector: &str| -> Result<Vec<String>, Failure> {
        let selected = super::select(&registry, selector, "--suites")?;
        Ok(selected.iter().map(|s| s.id.clone()).collect())
    };
    let mut model;
    let job = match &a.resume {
        Some(id) => Job::Resume {
            id: id.clone(),
            requested: Requested {
                model: a.model.clone(),
                suites: a.suites.as_deref().map(suite_ids).transpose()?,
                data_dir: a.paths.data_dir.clone(),
                limit: a.limit,
                seed: a.seed,
                bootstrap: a.bootstrap,
                sources: a.paths.gives_suites().then(|| registry.clone()),
            },
            force_new_leg: a.force_new_leg,
            model_cache: cache,
        },
        None => {
            if let Some(id) = &a.run_id {
                edgebench::record::check_run_id(id).map_err(bad_input)?;
            }
            let selected =
                super::select(&registry, a.suites.as_deref().unwrap_or("all"), "--suites")?;
            let settings = Settings {
                model: a.model.clone().unwrap_or_else(|| DEFAULT_MODEL.into()),
                suites: selected.iter().map(|s| s.id.clone()).collect(),
                data_dir: a.paths.data(),
                limit: a.limit,
                seed: a.seed.unwrap_or(DEFAULT_SEED),
                bootstrap: a.bootstrap.unwrap_or(DEFAULT_BOOTSTRAP),
                truncation: Truncation::parse(&a.truncation).expect("clap checked it"),
                shard,
                costs_from: match &a.costs_from {
                    Some(r) => Some(RunDir::open(&a.paths.out, r).map_err(record_failure)?.root),
                    None => None,
                },
            };
            settings.check().map_err(run_failure)?;
            model = model::load(&settings.model, &cache, runtime).map_err(bad_input)?;
            Job::New {
                id: a.run_id.clone(),
                settings,
                specs: selected,
                suites: &registry,
                model: model.as_mut(),
            }
        }
    };
    let e = evaluate(&a.paths.out, job, &opts).map_err(eval_failure)?;
    let (dir, scores, written) = (&e.dir, &e.scores, &e.reports);
    print_outcome(dir, scores, written, a.quiet, a.json);
    let failures = e.failed_suites();
    if !failures.is_empty() {
        for (id, reason) in &failures {
            eprintln!("suite `{id}` failed: {reason}");
        }
        return Err(failed(anyhow::anyhow!(
            "run {}: {} suite(s) failed to load and were not evaluated (the others were); fix the data and continue with --resume {}",
            scores.manifest.run_id,
            failures.len(),
            scores.manifest.run_id
        )));
    }
    if !e.is_complete() {
        return Err(failed(anyhow::anyhow!(
            "run {} is incomplete; continue it with --resume {}",
            scores.manifest.run_id,
            scores.manifest.run_id
        )));
    }
    Ok(())
}

pub fn rescore(a: RescoreArgs) -> Result<(), Failure> {
    let dir = RunDir::open(&a.paths.out, &a.run).map_err(record_failure)?;
    let _lock = dir.lock("rescore").map_err(record_failure)?;
    let manifest = dir.load_manifest().map_err(record_failure)?;
    let resamples = a.bootstrap.unwrap_or(manifest.bootstrap);
    if resamples > MAX_BOOTSTRAP {
        return Err(bad_input(anyhow::anyhow!(
            "--bootstrap {resamples} is above the largest allowed ({MAX_BOOTSTRAP})"
        )));
    }
    let boot = Bootstrap {
        resamples,
        seed: manifest.seed,
    };
    let scores = report::score_run(&dir, &boot).map_err(bad_input)?;
    let problems = scores.integrity_problems();
    if !problems.is_empty() {
        return Err(bad_input(anyhow::anyhow!(
            "{}: the records do not match the run's plan ({}); only `run --resume {}` can settle that",
            dir.root.display(),
            problems.join("; "),
            manifest.run_id
        )));
    }
    let written = report::write_reports(&dir, &scores).map_err(failed)?;
    print_outcome(&dir, &scores, &written, false, a.json);
    Ok(())
}

pub(super) fn print_outcome(
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
