//! `edgebench gate`: fail CI when a candidate run regresses against a baseline.

use super::{bad_input, failed, Failure, Paths};
use clap::Args;
use edgebench::gate::{self, GateRules};
use edgebench::gate::{check_performance, PerfClass, PerfInput, Row};
use edgebench::metrics::Bootstrap;
use edgebench::record::RunDir;
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
    let path = out.join("runs").join(id).join("perf.json");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        anyhow::anyhow!(
            "performance run of {model} wrote no {}: {e}\n{}",
            path.display(),
            String::from_utf8_lossy(&o.stderr)
        )
    })?;
    let j: serde_json::Value = serde_json::from_str(&text)?;
    Ok(vec![
        (
            PerfClass::Latency,
            j["latency_ms_per_token"]["p50"].as_f64(),
        ),
        (PerfClass::Throughput, j["output_tokens_per_s"].as_f64()),
        (PerfClass::Memory, j["peak_rss_bytes"].as_f64()),
        (PerfClass::Energy, j["power"]["joules_per_query"].as_f64()),
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
                    .push(format!("{}: not measured on this host", class.as_str()));
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

/// Replaces `baseline` with the run's inputs and records (reports are rebuilt from them).
fn update_baseline(candidate: &RunDir, baseline: &Path) -> std::io::Result<()> {
    if baseline.exists() {
        for sub in ["records", report::SUITE_SNAPSHOT] {
            let p = baseline.join(sub);
            if p.exists() {
                std::fs::remove_dir_all(p)?;
            }
        }
    }
    std::fs::create_dir_all(baseline)?;
    std::fs::copy(candidate.manifest_path(), baseline.join("run.json"))?;
    for sub in ["records", report::SUITE_SNAPSHOT] {
        copy_dir(&candidate.root.join(sub), &baseline.join(sub))?;
    }
    Ok(())
}

pub fn gate(a: GateArgs) -> Result<(), Failure> {
    let out = &a.paths.out;
    let cand_dir = RunDir::open(out, &a.candidate).map_err(bad_input)?;
    if a.update_baseline {
        let target = PathBuf::from(&a.baseline);
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
    let base_dir = RunDir::open(out, &a.baseline).map_err(bad_input)?;
    let rules_path = a.rules.clone().or_else(|| {
        let p = base_dir.root.parent()?.join("gate.toml");
        p.is_file().then_some(p)
    });
    let rules = match &rules_path {
        Some(p) => GateRules::load(p).map_err(bad_input)?,
        None => GateRules::default(),
    };
    let base_manifest = base_dir.load_manifest().map_err(bad_input)?;
    let boot = Bootstrap {
        resamples: base_manifest.bootstrap.max(200),
        seed: base_manifest.seed,
    };
    let base = report::score_run_with(&base_dir, &boot, false).map_err(bad_input)?;
    let cand = report::score_run_with(&cand_dir, &boot, false).map_err(bad_input)?;
    let mut rep =
        gate::runs::compare(&base, &cand, &rules, a.allow_mismatch, &boot).map_err(bad_input)?;
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
    let dir = a
        .report_dir
        .clone()
        .unwrap_or_else(|| out.join("gate").join(&cand.manifest.run_id));
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
