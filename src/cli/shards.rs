//! `edgebench merge` (shards back into one run) and `edgebench plan` (the
//! split of a run into shards, with estimated time per shard).

use super::{bad_input, failed, record_failure, run_failure, Failure, Paths};
use clap::Args;
use edgebench::fit::Truncation;
use edgebench::merge::{self, MergeError};
use edgebench::metrics::Bootstrap;
use edgebench::model;
use edgebench::record::RunDir;
use edgebench::report;
use edgebench::runner::{self, Settings};
use edgebench::runtime::RuntimeOptions;
use edgebench::shard::{self, CostSource, ShardPlan};
use edgebench::suite::spec::TaskKind;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Shard runs: run ids under <out>/runs, run folders, or glob patterns
    /// in their last component (`reports/runs/eval-shard-*`).
    #[arg(required = true)]
    pub shards: Vec<String>,
    /// Id of the merged run (under <out>/runs).
    #[arg(long)]
    pub run_id: String,
    /// Write the merged run even when units of the split have no records;
    /// it is marked incomplete.
    #[arg(long)]
    pub allow_partial: bool,
    /// No per-suite table.
    #[arg(long)]
    pub quiet: bool,
    /// Print results.json to stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub paths: Paths,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Number of shards.
    #[arg(long, value_parser = super::bounded(1..=shard::MAX_SHARDS))]
    pub shards: usize,
    /// `builtin:tiny` (the default) or a model directory, as for `run`.
    #[arg(long)]
    pub model: Option<String>,
    /// Comma-separated suite ids, domain names, or `all` (the default).
    #[arg(long)]
    pub suites: Option<String>,
    /// Examples per suite, as for `run`.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Seed, as for `run` (default: `run`'s).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Truncation, as for `run`.
    #[arg(long, default_value = "document", value_parser = ["document", "left"])]
    pub truncation: String,
    /// A previous run (id under <out>/runs or folder) whose records give
    /// the time of each unit: measured where it ran the same example,
    /// else its time per token for the suite's task kind.
    #[arg(long)]
    pub from: Option<String>,
    /// Balance the split by a previous run's unit times, as `run --shard
    /// --costs-from` does (and time the shards by them).
    #[arg(long)]
    pub costs_from: Option<String>,
    #[command(flatten)]
    pub paths: Paths,
}

/// Expands run arguments: patterns match folder names in their directory
/// (a bare pattern or id is looked up under `<out>/runs`).
fn expand(args: &[String], out: &Path) -> Result<Vec<RunDir>, Failure> {
    let mut dirs = Vec::new();
    for a in args {
        let path = Path::new(a);
        let name = path.file_name().map(|n| n.to_string_lossy().to_string());
        let wild = name.as_deref().is_some_and(|n| n.contains(['*', '?']));
        if !wild {
            dirs.push(RunDir::open(out, a).map_err(record_failure)?);
            continue;
        }
        let pattern = glob::Pattern::new(&name.expect("checked"))
            .map_err(|e| bad_input(anyhow::anyhow!("{a}: {e}")))?;
        let parent = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(p) => p.to_path_buf(),
            None => out.join("runs"),
        };
        let mut found: Vec<PathBuf> = std::fs::read_dir(&parent)
            .map_err(|e| bad_input(anyhow::anyhow!("{}: {e}", parent.display())))?
            .filter_map(|e| e.ok())
            .filter(|e| pattern.matches(&e.file_name().to_string_lossy()))
            .map(|e| e.path())
            .filter(|p| p.join("run.json").is_file())
            .collect();
        if found.is_empty() {
            return Err(bad_input(anyhow::anyhow!(
                "{a}: no run folder matches in {}",
                parent.display()
            )));
        }
        found.sort();
        dirs.extend(found.into_iter().map(|root| RunDir { root }));
    }
    Ok(dirs)
}

pub fn merge(a: MergeArgs) -> Result<(), Failure> {
    edgebench::record::check_run_id(&a.run_id).map_err(bad_input)?;
    let dirs = expand(&a.shards, &a.paths.out)?;
    let merged =
        merge::merge(&dirs, &a.paths.out, &a.run_id, a.allow_partial).map_err(|e| match e {
            MergeError::Missing(_) => failed(e),
            e if e.is_bad_input() => bad_input(e),
            e => failed(e),
        })?;
    let manifest = merged.dir.load_manifest().map_err(record_failure)?;
    let boot = Bootstrap {
        resamples: manifest.bootstrap,
        seed: manifest.seed,
    };
    let scores = report::score_run(&merged.dir, &boot).map_err(bad_input)?;
    let written = report::write_reports(&merged.dir, &scores).map_err(failed)?;
    super::run::print_outcome(&merged.dir, &scores, &written, a.quiet, a.json);
    if merged.missing_units > 0 {
        eprintln!(
            "warning: run {} is incomplete: {} unit(s) of the split have no records:\n  - {}",
            a.run_id,
            merged.missing_units,
            merged.missing.join("\n  - ")
        );
    }
    Ok(())
}

pub fn plan(a: PlanArgs, runtime: &RuntimeOptions) -> Result<(), Failure> {
    let registry = a.paths.registry()?;
    let selected = super::select(&registry, a.suites.as_deref().unwrap_or("all"), "--suites")?;
    let open = |run: &str| RunDir::open(&a.paths.out, run).map_err(record_failure);
    let costs_from = a.costs_from.as_deref().map(open).transpose()?;
    let settings = Settings {
        model: a
            .model
            .clone()
            .unwrap_or_else(|| super::run::DEFAULT_MODEL.into()),
        suites: selected.iter().map(|s| s.id.clone()).collect(),
        data_dir: a.paths.data(),
        limit: a.limit,
        seed: a.seed.unwrap_or(super::run::DEFAULT_SEED),
        bootstrap: 0,
        truncation: Truncation::parse(&a.truncation).expect("clap checked it"),
        shard: None,
        costs_from: costs_from.as_ref().map(|d| d.root.clone()),
    };
    settings.check().map_err(run_failure)?;
    let model =
        model::load(&settings.model, &a.paths.out.join("models"), runtime).map_err(bad_input)?;
    let prepared = runner::prepare(&selected, &settings, model.as_ref()).map_err(run_failure)?;
    let measure = |d: &RunDir| shard::Measured::of_run(d).map_err(record_failure);
    let balance = costs_from.as_ref().map(measure).transpose()?;
    let split = shard::split(
        &prepared,
        model.as_ref(),
        settings.truncation,
        a.shards,
        balance.as_ref(),
    )
    .map_err(run_failure)?;
    let timing = match (&a.from, costs_from) {
        (Some(run), _) => Some((run.clone(), measure(&open(run)?)?)),
        (None, Some(d)) => Some((d.root.display().to_string(), balance.expect("read above"))),
        (None, None) => None,
    };
    let kinds: HashMap<String, TaskKind> =
        selected.iter().map(|s| (s.id.clone(), s.task)).collect();
    print_plan(&split, &kinds, timing.as_ref());
    Ok(())
}

/// One shard's line of the plan.
#[derive(Clone, Default)]
struct ShardRow {
    units: usize,
    examples: usize,
    tokens: u64,
    /// Estimated milliseconds, and how many of its units were measured.
    ms: f64,
    measured: usize,
}

fn print_plan(
    split: &ShardPlan,
    kinds: &HashMap<String, TaskKind>,
    timing: Option<&(String, shard::Measured)>,
) {
    let mut rows = vec![ShardRow::default(); split.count];
    for u in &split.units {
        let r = &mut rows[u.shard - 1];
        r.units += 1;
        r.examples += u.examples.len();
        r.tokens += u.tokens;
        if let Some((_, t)) = timing {
            let (ms, exact) = t.unit_ms(&u.suite, kinds[&u.suite], &u.examples, u.tokens);
            r.ms += ms;
            r.measured += exact as usize;
        }
    }
    let (_, hash) = split.to_json();
    let by = match &split.costs {
        CostSource::Tokens => "estimated tokens".to_string(),
        CostSource::Measured { run_id, .. } => format!("the unit times of run {run_id}"),
    };
    println!(
        "split into {} shard(s) by {by}: {} unit(s) over {} suite(s); plan sha256 {}",
        split.count,
        split.units.len(),
        split.plan.len(),
        &hash[..16]
    );
    let head = format!(
        "{:>7} {:>7} {:>9} {:>14}",
        "shard", "units", "examples", "est. tokens"
    );
    if timing.is_some() {
        println!("{head} {:>12} {:>10}", "est. time s", "measured");
    } else {
        println!("{head}");
    }
    for (i, r) in rows.iter().enumerate() {
        let row = format!(
            "{:>7} {:>7} {:>9} {:>14}",
            format!("{}/{}", i + 1, split.count),
            r.units,
            r.examples,
            r.tokens
        );
        if timing.is_some() {
            let measured = (100 * r.measured).checked_div(r.units).unwrap_or(0);
            println!("{row} {:>12.1} {measured:>9}%", r.ms / 1e3);
        } else {
            println!("{row}");
        }
    }
    let largest = split.units.iter().map(|u| u.tokens).max().unwrap_or(0);
    let total: u64 = rows.iter().map(|r| r.tokens).sum();
    let busiest = rows.iter().map(|r| r.tokens).max().unwrap_or(0);
    println!(
        "tokens: {total} in all, {busiest} on the busiest shard, {largest} in the largest unit (no split runs faster than it)"
    );
    if let Some((from, _)) = timing {
        let total_s: f64 = rows.iter().map(|r| r.ms).sum::<f64>() / 1e3;
        let wall = rows.iter().map(|r| r.ms).fold(0.0, f64::max) / 1e3;
        println!(
            "time from run {from}: {total_s:.1} s in one process; wall time with {} shard(s) = the busiest shard, {wall:.1} s",
            split.count
        );
    }
}
