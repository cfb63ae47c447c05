//! `edgebench merge` (shards back into one run) and `edgebench plan` (the
//! split of a run into shards, with estimated time per shard).

use super::{bad_input, failed, record_failure, run_failure, Failure, Paths};
use clap::Args;
use edgebench::fit::Truncation;
use edgebench::merge::{self, MergeError};
use edgebench::metrics::Bootstrap;
use edgebench::model;
use edgebench::record::{Record, RunDir};
use edgebench::report;
use edgebench::runner::{self, Settings};
use edgebench::runtime::RuntimeOptions;
use edgebench::shard::{self, ShardPlan, DECODE_WEIGHT};
use edgebench::suite::spec::TaskKind;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Shard runs: run ids under <out>/runs, run folders, or patterns with
    /// `*` and `?` in their last component (`reports/runs/eval-shard-*`).
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
        let pattern = name.expect("checked");
        let parent = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(p) => p.to_path_buf(),
            None => out.join("runs"),
        };
        let mut found: Vec<PathBuf> = std::fs::read_dir(&parent)
            .map_err(|e| bad_input(anyhow::anyhow!("{}: {e}", parent.display())))?
            .filter_map(|e| e.ok())
            .filter(|e| wildcard(&pattern, &e.file_name().to_string_lossy()))
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

/// Whether `name` matches `pattern` (`*`: any run of characters, `?`: one).
fn wildcard(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < n.len() {
        if i < p.len() && (p[i] == '?' || p[i] == n[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(s) = star {
            i = s + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|c| *c == '*')
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
    };
    settings.check().map_err(run_failure)?;
    let model =
        model::load(&settings.model, &a.paths.out.join("models"), runtime).map_err(bad_input)?;
    let prepared = runner::prepare(&selected, &settings, model.as_ref()).map_err(run_failure)?;
    let split = shard::split(&prepared, model.as_ref(), settings.truncation, a.shards)
        .map_err(run_failure)?;
    let kinds: HashMap<String, TaskKind> =
        selected.iter().map(|s| (s.id.clone(), s.task)).collect();
    let timing = match &a.from {
        Some(run) => Some(Timing::of_run(
            &RunDir::open(&a.paths.out, run).map_err(record_failure)?,
            &kinds,
        )?),
        None => None,
    };
    print_plan(&split, &kinds, timing.as_ref(), a.from.as_deref());
    Ok(())
}

/// Per-unit times from a previous run's records.
struct Timing {
    /// Measured milliseconds of (suite, example).
    measured: HashMap<(String, String), f64>,
    /// Milliseconds per cost token, by task kind and over all records.
    per_kind: HashMap<TaskKind, f64>,
    overall: Option<f64>,
}

impl Timing {
    fn of_run(dir: &RunDir, kinds: &HashMap<String, TaskKind>) -> Result<Timing, Failure> {
        let m = dir.load_manifest().map_err(record_failure)?;
        let mut measured = HashMap::new();
        let mut sums: HashMap<TaskKind, (f64, f64)> = HashMap::new();
        for sid in &m.suites {
            let records: Vec<Record> = dir.load_records(sid).map_err(record_failure)?;
            for r in records {
                let cost = (r.prompt_tokens as u64 + DECODE_WEIGHT * r.output_tokens as u64) as f64;
                if let Some(k) = kinds.get(sid) {
                    let s = sums.entry(*k).or_default();
                    s.0 += r.latency_ms;
                    s.1 += cost;
                }
                measured.insert((sid.clone(), r.example_id.clone()), r.latency_ms);
            }
        }
        if measured.is_empty() {
            return Err(bad_input(anyhow::anyhow!(
                "{}: the run has no records to take times from",
                dir.root.display()
            )));
        }
        let (ms, cost) = sums
            .values()
            .fold((0.0, 0.0), |a, s| (a.0 + s.0, a.1 + s.1));
        Ok(Timing {
            measured,
            per_kind: sums
                .into_iter()
                .filter(|(_, s)| s.1 > 0.0)
                .map(|(k, s)| (k, s.0 / s.1))
                .collect(),
            overall: (cost > 0.0).then(|| ms / cost),
        })
    }

    /// Estimated milliseconds of a unit, and whether all of it was measured.
    fn unit_ms(&self, u: &shard::Unit, kind: Option<TaskKind>) -> (f64, bool) {
        let measured: Option<f64> = u
            .examples
            .iter()
            .map(|e| self.measured.get(&(u.suite.clone(), e.clone())).copied())
            .sum();
        match measured {
            Some(ms) => (ms, true),
            None => {
                let rate = kind
                    .and_then(|k| self.per_kind.get(&k).copied())
                    .or(self.overall)
                    .unwrap_or(0.0);
                (rate * u.cost as f64, false)
            }
        }
    }
}

fn print_plan(
    split: &ShardPlan,
    kinds: &HashMap<String, TaskKind>,
    timing: Option<&Timing>,
    from: Option<&str>,
) {
    let mut rows = vec![(0usize, 0usize, 0u64, 0f64, 0usize); split.count];
    for u in &split.units {
        let r = &mut rows[u.shard - 1];
        r.0 += 1;
        r.1 += u.examples.len();
        r.2 += u.cost;
        if let Some(t) = timing {
            let (ms, exact) = t.unit_ms(u, kinds.get(&u.suite).copied());
            r.3 += ms;
            r.4 += exact as usize;
        }
    }
    let (_, hash) = split.to_json();
    println!(
        "split into {} shard(s): {} unit(s) over {} suite(s); plan sha256 {}",
        split.count,
        split.units.len(),
        split.plan.len(),
        &hash[..16]
    );
    if timing.is_some() {
        println!(
            "{:>7} {:>7} {:>9} {:>14} {:>12} {:>10}",
            "shard", "units", "examples", "est. tokens", "est. time s", "measured"
        );
    } else {
        println!(
            "{:>7} {:>7} {:>9} {:>14}",
            "shard", "units", "examples", "est. tokens"
        );
    }
    for (i, r) in rows.iter().enumerate() {
        if timing.is_some() {
            println!(
                "{:>7} {:>7} {:>9} {:>14} {:>12.1} {:>9}%",
                format!("{}/{}", i + 1, split.count),
                r.0,
                r.1,
                r.2,
                r.3 / 1e3,
                (100 * r.4).checked_div(r.0).unwrap_or(0)
            );
        } else {
            println!(
                "{:>7} {:>7} {:>9} {:>14}",
                format!("{}/{}", i + 1, split.count),
                r.0,
                r.1,
                r.2
            );
        }
    }
    let largest = split.units.iter().map(|u| u.cost).max().unwrap_or(0);
    let total: u64 = rows.iter().map(|r| r.2).sum();
    let busiest = rows.iter().map(|r| r.2).max().unwrap_or(0);
    println!(
        "tokens: {total} in all, {busiest} on the busiest shard, {largest} in the largest unit (no split runs faster than it)"
    );
    if let (Some(_), Some(from)) = (timing, from) {
        let total_s: f64 = rows.iter().map(|r| r.3).sum::<f64>() / 1e3;
        let wall = rows.iter().map(|r| r.3).fold(0.0, f64::max) / 1e3;
        println!(
            "time from run {from}: {total_s:.1} s in one process; wall time with {} shard(s) = the busiest shard, {wall:.1} s",
            split.count
        );
    }
}

#[cfg(test)]
mod tests {
    use super::wildcard;

    #[test]
    fn wildcards_match_whole_names() {
        assert!(wildcard("eval-shard-*", "eval-shard-1-of-3"));
        assert!(wildcard("eval-shard-?-of-3", "eval-shard-2-of-3"));
        assert!(wildcard("*", "x"));
        assert!(!wildcard("eval-shard-*", "eval-2"));
        assert!(!wildcard("eval-shard-?-of-3", "eval-shard-10-of-3"));
        assert!(wildcard("a*b*c", "aXbYbc"));
        assert!(!wildcard("a*b", "ab-"));
    }
}
