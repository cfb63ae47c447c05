//! `edgebench paper`: the paper's Tables 1-5 and Figures 1-5 with measured
//! values beside the reported ones, the audit, and one HTML report.

use super::{bad_input, failed, fallback, Failure};
use clap::Args;
use edgebench::gem::GemConfig;
use edgebench::paper::output::{self, Options, GEM_DISCLAIMER};
use edgebench::paper::reported::{Reported, DEFAULT_PATH};
use edgebench::paper::runs::{PaperRun, Role};
use edgebench::record::RunDir;
use edgebench::suite::spec::Domain;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct PaperArgs {
    /// Runs: ids under <runs-root>/runs or run directories. Prefix `ROLE=` to
    /// set a run's role instead of inferring it from the model name (gem,
    /// gem-no-scar, gem-no-quant, gem-no-router, mobilebert, tinyllama, other).
    /// A run folder without records but with `paper-inputs.json` is a run
    /// published by an earlier report.
    #[arg(long, num_args = 1.., required_unless_present = "from", conflicts_with = "from")]
    pub runs: Vec<String>,
    /// Render again from a report folder's own published runs (`runs.json`
    /// and `runs/<id>/`), e.g. a committed reproduction.
    #[arg(long)]
    pub from: Option<PathBuf>,
    /// Output folder.
    #[arg(long, default_value = "reports/paper-out")]
    pub out: PathBuf,
    /// The paper's reported numbers.
    #[arg(long, default_value = DEFAULT_PATH)]
    pub reported: PathBuf,
    /// Folder whose `runs/` holds the runs named by id.
    #[arg(long, default_value = "reports")]
    pub runs_root: PathBuf,
    /// In-domain domain of Table 1, and of Figures 2-3 for models without
    /// routing (default: healthcare when a run scored it).
    #[arg(long)]
    pub domain: Option<String>,
    /// GEM model directory (with gem.toml) for Figure 4 (default: the full
    /// GEM run's model directory).
    #[arg(long)]
    pub gem_dir: Option<PathBuf>,
}

/// `ROLE=RUN` or `RUN`.
fn split_role(arg: &str) -> Result<(Option<Role>, &str), Failure> {
    match arg.split_once('=') {
        Some((role, run)) => match Role::parse(role) {
            Some(r) => Ok((Some(r), run)),
            None => Err(bad_input(anyhow::anyhow!(
                "--runs {arg}: unknown role `{role}`; use one of {}",
                Role::NAMES.join(", ")
            ))),
        },
        None => Ok((None, arg)),
    }
}

pub fn paper(a: PaperArgs) -> Result<(), Failure> {
    let reported_path = fallback(&a.reported, DEFAULT_PATH);
    let reported = Reported::load(&reported_path).map_err(bad_input)?;
    let focus = a
        .domain
        .as_deref()
        .map(|d| {
            Domain::parse(d).ok_or_else(|| {
                let names: Vec<&str> = Domain::ALL.iter().map(|d| d.as_str()).collect();
                bad_input(anyhow::anyhow!(
                    "--domain {d}: unknown domain; use one of {}",
                    names.join(", ")
                ))
            })
        })
        .transpose()?;
    let gem = a
        .gem_dir
        .as_ref()
        .map(|dir| GemConfig::load(&dir.join("gem.toml")).map_err(bad_input))
        .transpose()?;
    let mut runs = Vec::new();
    if let Some(folder) = &a.from {
        runs = output::published_runs(folder).map_err(bad_input)?;
    }
    for arg in &a.runs {
        let (role, run) = split_role(arg)?;
        let dir = RunDir::open(&a.runs_root, run).map_err(bad_input)?;
        runs.push(PaperRun::open(dir, role).map_err(bad_input)?);
    }
    let opts = Options {
        out: a.out.clone(),
        focus,
        gem,
    };
    let written = output::write(&reported, &runs, &opts).map_err(failed)?;
    for r in &runs {
        println!(
            "{:<24} {:<22} {}",
            r.model(),
            r.role.label(),
            r.dir.root.display()
        );
    }
    for w in &written.warnings {
        eprintln!("warning: {w}");
    }
    for f in &written.files {
        println!("  wrote {}", f.display());
    }
    println!("report: {}", a.out.join("report.html").display());
    println!("{GEM_DISCLAIMER}.");
    Ok(())
}
