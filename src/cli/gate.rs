//! `edgebench gate`: fail CI when a candidate run regresses against a baseline.

use super::{bad_input, failed, record_failure, Failure, Paths};
use clap::Args;
use edgebench::gate::{self, GateRules};
use edgebench::gate::{check_performance, PerfClass, PerfInput, Row};
use edgebench::metrics::Bootstrap;
use edgebench::perf::{PerfSummary, PERF_FILE};
use edgebench::record::{RunDir, SUITE_SNAPSHOT};
use edgebench::report;
use std::path::{Path, PathBuf};

/// One side's figures from a child `edgebench perf` run, by class.
fn perf_once(
    model: &str,
    seconds: f64,
    out: &Path,
    id: &str,
) -> anyhow::Result<Vec<(PerfClass, Option<f64>)>> {
    let exe = std::env::current_exe()?;
    let o = std::process::Command::new(exe)
        .args([
            "perf",
            "--model",
            model,
            "--run-id",
            id,
            "--min-queries",
            "30",
            "--warmup",
            "3",
        ])
        .args([
            "--min-duration",
            &seconds.to_string(),
            "--prompt-tokens",
            "64",
            "--gen-tokens",
            "8",
        ])
        .arg("--out")
        .arg(out)
        .output()?;
    let run = out.join("runs").join(id);
    let perf = PerfSummary::load(&run)?.ok_or_else(|| {
        anyhow::anyhow!(
            "performance run of {model} wrote no {}\n{}",
            run.join(PERF_FILE).display(),
            String::from_utf8_lossy(&o.stderr)
        )
    })?;
    Ok(vec![
        (PerfClass::Latency, perf.latency_p50()),
        (PerfClass::Throughput, perf.output_tokens_per_s),
        (PerfClass::Memory, perf.peak_rss_bytes.map(|b| b as f64)),
        (PerfClass::Energy, perf.joules_per_query),
    ])
}

/// Measures both models `repeats` times, interleaved (so drift hits both sides alike).
type Series = Vec<Vec<(PerfClass, Option<f64>)>>;

fn perf_series(
    models: &[&str],
    repeats: u32,
    seconds: f64,
    out: &Path,
    tag: &str,
) -> anyhow::Result<Vec<Series>> {
    let mut sides = vec![Vec::new(); models.len()];
    for r in 0..repeats {
        for (s, m) in models.iter().enumerate() {
            sides[s].push(perf_once(m, seconds, out, &format!("gate-{tag}-{s}-{r}"))?);
        }
    }
    Ok(sides)
}

fn values(side: &[Vec<(PerfClass, Option<f64>)>], class: PerfClass) -> Vec<f64> {
    side.iter()
        .filter_map(|rep| rep.iter().find(|(c, _)| *c == class).and_then(|(_, v)| *v))
        .collect()
}

/// Adds the performance rows: each class compared with `max(floor, k x noise)`,
/// a would-be failure re-measured once when the rules say so.
fn perf_rows(
    rep: &mut edgebench::gate::GateReport,
    rules: &GateRules,
    models: [&str; 2],
    seconds: f64,
    out: &Path,
) -> anyhow::Result<()> {
    let repeats = rules
        .perf_rule(PerfClass::Latency)
        .map_or(3, |r| r.repeats)
        .max(2);
    let mut sides = perf_series(&models, repeats, seconds, out, "a")?;
    let (base, mut cand) = (sides.remove(0), sides.remove(0));
    let mut retried = false;
    loop {
        let mut retry = false;
        let mut rows = Vec::new();
        for class in PerfClass::ALL {
            let Some(rule) = rules.perf_rule(class) else {
                continue;
            };
            let (b, c) = (values(&base, class), values(&cand, class));
            if b.is_empty() || c.is_empty() {
                rep.notes
                    .push(format!("{}: not measured on this machine", class.as_str()));
                continue;
            }
            let check = check_performance(
                &PerfInput {
                    class,
                    baseline: b,
                    candidate: c,
                    retried,
                },
                &rule,
            );
            retry |= matches!(check.verdict, edgebench::gate::Verdict::Retry);
            rows.push(Row::performance(class.as_str(), &check));
        }
        if retry && !retried {
            retried = true;
            rep.notes
                .push("a performance check would fail: the candidate was re-measured once".into());
            cand = perf_series(&models[1..], repeats, seconds, out, "retry")?.remove(0);
            continue;
        }
        rep.rows.extend(rows);
        return Ok(());
    }
}

#[derive(Debug, Args)]
pub struct GateArgs {
    /// Baseline: a run id under <out>/runs or a run directory (e.g. reports/baselines/default).
    #[arg(long)]
    pub baseline: String,
    /// Candidate: a run id under <out>/runs or a run directory.
    #[arg(long)]
    pub candidate: String,
    /// Rules file (default: gate.toml beside the baseline directory when present, else built-in defaults).
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// Compare runs over different suite files or data (only identical suites are compared).
    #[arg(long)]
    pub allow_mismatch: bool,
    /// Gate an incomplete candidate on the examples it has (its missing
    /// suites and examples become notes instead of failures).
    #[arg(long)]
    pub allow_partial: bool,
    /// Where to write gate.md and junit.xml (default: <out>/gate/<candidate>).
    #[arg(long)]
    pub report_dir: Option<PathBuf>,
    /// Also gate speed, memory and energy: rerun a short performance run of
    /// each side's model `repeats` times (gate.toml), interleaved, in child processes.
    #[arg(long)]
    pub perf: bool,
    /// Minimum timed seconds of each performance repeat.
    #[arg(long, default_value_t = 2.0)]
    pub perf_seconds: f64,
    /// Replace the baseline directory with the candidate run (deliberate update; exits 0).
    #[arg(long)]
    pub update_baseline: bool,
    #[command(flatten)]
    pub paths: Paths,
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &target)?;
        } else {
            std::fs::copy(e.path(), target)?;
        }
    }
    Ok(())
}

/// What a baseline folder holds: the run's inputs and records (reports are
/// rebuilt from them), plus the writer lock.
const BASELINE_ENTRIES: [&str; 5] = ["run.json", "plan.json", "records", SUITE_SNAPSHOT, ".lock"];

/// Checks that `target` may be replaced by a baseline: absent, empty, or a
/// baseline folder (a `run.json` and nothing but [`BASELINE_ENTRIES`]).
fn check_baseline_target(target: &Path) -> Result<(), String> {
    if !target.exists() {
        return Ok(());
    }
    let entries: Vec<String> = std::fs::read_dir(target)
        .map_err(|e| format!("{}: {e}", target.display()))?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    if entries.is_empty() {
        return Ok(());
    }
    let foreign: Vec<&String> = entries
        .iter()
        .filter(|e| !BASELINE_ENTRIES.contains(&e.as_str()))
        .collect();
    if !entries.iter().any(|e| e == "run.json") || !foreign.is_empty() {
        return Err(format!(
            "--baseline {} is neither empty nor a baseline folder (it holds {}); a baseline folder holds only {}",
            target.display(),
            foreign
                .iter()
                .take(5)
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            BASELINE_ENTRIES[..4].join(", ")
        ));
    }
    Ok(())
}

/// Replaces `baseline` with the run's inputs and records (reports are rebuilt from them).
fn update_baseline(candidate: &RunDir, baseline: &Path) -> std::io::Result<()> {
    for sub in ["records", SUITE_SNAPSHOT, "plan.json"] {
        let p = baseline.join(sub);
        if p.is_dir() {
            std::fs::remove_dir_all(p)?;
        } else if p.exists() {
            std::fs::remove_file(p)?;
        }
    }
    std::fs::create_dir_all(baseline)?;
    std::fs::copy(candidate.manifest_path(), baseline.join("run.json"))?;
    if candidate.plan_path().exists() {
        std::fs::copy(candidate.plan_path(), baseline.join("plan.json"))?;
    }
    for sub in ["records", SUITE_SNAPSHOT] {
        copy_dir(&candidate.root.join(sub), &baseline.join(sub))?;
    }
    Ok(())
}

pub fn gate(a: GateArgs) -> Result<(), Failure> {
    let out = &a.paths.out;
    let cand_dir = RunDir::open(out, &a.candidate).map_err(record_failure)?;
    if a.update_baseline {
        let target = PathBuf::from(&a.baseline);
        check_baseline_target(&target).map_err(|e| bad_input(anyhow::anyhow!(e)))?;
        std::fs::create_dir_all(&target).map_err(failed)?;
        let _lock = RunDir {
            root: target.clone(),
        }
        .lock("gate --update-baseline")
        .map_err(record_failure)?;
        let no_intervals = Bootstrap {
            resamples: 0,
            seed: 0,
        };
        let cand = report::score_run(&cand_dir, &no_intervals).map_err(bad_input)?;
        if let Some(sh) = &cand.manifest.shard {
            return Err(bad_input(anyhow::anyhow!(
                "run {} cannot become a baseline: it is shard {}/{} of a split run; merge the shards with `edgebench merge` first",
                cand.manifest.run_id,
                sh.index,
                sh.count
            )));
        }
        let problems = cand.integrity_problems();
        if cand.manifest.state != "complete" || !problems.is_empty() {
            return Err(bad_input(anyhow::anyhow!(
                "run {} cannot become a baseline: state {}{}",
                cand.manifest.run_id,
                cand.manifest.state,
                if problems.is_empty() {
                    String::new()
                } else {
                    format!("; {}", problems.join("; "))
                }
            )));
        }
        update_baseline(&cand_dir, &target).map_err(|e| {
            failed(anyhow::anyhow!(
                "updating baseline {}: {e}",
                target.display()
            ))
        })?;
        println!(
            "baseline {} now holds run {} (commit it to make it the reference)",
            target.display(),
            cand_dir.root.display()
        );
        return Ok(());
    }
    let base_dir = RunDir::open(out, &a.baseline).map_err(record_failure)?;
    let rules_path = a.rules.clone().or_else(|| {
        let p = base_dir.root.parent()?.join("gate.toml");
        p.is_file().then_some(p)
    });
    let rules = match &rules_path {
        Some(p) => GateRules::load(p).map_err(bad_input)?,
        None => GateRules::default(),
    };
    let base_manifest = base_dir.load_manifest().map_err(record_failure)?;
    let boot = Bootstrap {
        resamples: base_manifest.bootstrap.max(200),
        seed: base_manifest.seed,
    };
    let base = report::score_run(&base_dir, &boot).map_err(bad_input)?;
    let cand = report::score_run(&cand_dir, &boot).map_err(bad_input)?;
    let policy = gate::runs::Coverage {
        allow_mismatch: a.allow_mismatch,
        allow_partial: a.allow_partial,
    };
    let mut rep = gate::runs::compare(&base, &cand, &rules, policy, &boot).map_err(bad_input)?;
    if a.perf {
        let tmp = out.join("gate").join("perf-runs");
        let models = [
            base.manifest.model.source.as_str(),
            cand.manifest.model.source.as_str(),
        ];
        perf_rows(&mut rep, &rules, models, a.perf_seconds, &tmp).map_err(failed)?;
    }
    rep.notes.push(format!(
        "rules: {}",
        rules_path.map_or("built-in defaults".to_string(), |p| p.display().to_string())
    ));
    print!("{}", rep.render_table());
    for n in &rep.notes {
        println!("note: {n}");
    }
    let dir = a.report_dir.clone().unwrap_or_else(|| {
        let id = &cand.manifest.run_id;
        let name = if edgebench::record::check_run_id(id).is_ok() {
            id.as_str()
        } else {
            "candidate"
        };
        out.join("gate").join(name)
    });
    std::fs::create_dir_all(&dir).map_err(failed)?;
    let md = dir.join("gate.md");
    let junit = dir.join("junit.xml");
    std::fs::write(&md, rep.render_markdown()).map_err(failed)?;
    std::fs::write(&junit, gate::to_junit_xml(&rep, "edgebench-gate")).map_err(failed)?;
    println!("wrote {} and {}", md.display(), junit.display());
    match rep.exit_code() {
        0 => Ok(()),
        _ => Err(Failure {
            code: 1,
            error: anyhow::anyhow!(
                "regression against {}: {}",
                base_dir.root.display(),
                rep.summary_line()
            ),
        }),
    }
}
