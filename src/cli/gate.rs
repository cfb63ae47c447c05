//! `edgebench gate`: fail CI when a candidate run regresses against a baseline.

use super::{bad_input, failed, Failure, Paths};
use clap::Args;
use edgebench::gate::{self, GateRules};
use edgebench::metrics::Bootstrap;
use edgebench::record::RunDir;
use edgebench::report;
use std::path::{Path, PathBuf};

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
