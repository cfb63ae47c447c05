//! `edgebench paper`'s output folder: Tables 1-5 (Markdown, CSV, LaTeX),
//! Figures 1-5 (PNG, SVG), `audit.md`, `report.md`, the self-contained
//! `report.html`, and the runs it was built from (`runs/<id>/` with
//! `run.json`, `metrics.csv`, `perf.json` and `paper-inputs.json`, listed
//! with their roles in `runs.json`), from which it renders again.

use super::arch::{self, Architecture};
use super::figures::{self, Density, DsiGg, InVsOut, ModelSize};
use super::indomain::focus_domain;
use super::reported::Reported;
use super::runs::{PaperRun, SNAPSHOT_FILE};
use super::tables::Inputs;
use super::{audit, html, PaperError};
use edgebench_eval::suite::spec::Domain;
use edgebench_runtime::gem::{GemConfig, Variant};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The sentence every report carries about GEM's weights.
pub const GEM_DISCLAIMER: &str =
    "GEM here is the paper's architecture on seeded/public weights, not the paper's trained GEM";

/// How to build the report.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Output folder.
    pub out: PathBuf,
    /// Focus domain of Table 1 and of Figures 2-3 for models without
    /// routing (default: see [`focus_domain`]).
    pub focus: Option<Domain>,
    /// GEM configuration for Figure 4 (default: the full GEM run's model
    /// directory).
    pub gem: Option<GemConfig>,
}

/// What was written.
#[derive(Debug, Clone, Default)]
pub struct Written {
    /// Every file, in writing order.
    pub files: Vec<PathBuf>,
    /// Problems that did not stop the report.
    pub warnings: Vec<String>,
}

fn write_file(path: &Path, text: &str) -> Result<PathBuf, PaperError> {
    std::fs::write(path, text).map_err(|source| PaperError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(path.to_path_buf())
}

fn create_dir(path: &Path) -> Result<(), PaperError> {
    std::fs::create_dir_all(path).map_err(|source| PaperError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn figure_error(figure: &str) -> impl FnOnce(String) -> PaperError + '_ {
    move |message| PaperError::Figure {
        figure: figure.into(),
        message,
    }
}

/// A figure for `report.md`: its PNG (relative path) and caption.
struct Figure {
    png: String,
    caption: String,
}

/// Writes the whole report into `opts.out`.
pub fn write(
    reported: &Reported,
    runs: &[PaperRun],
    opts: &Options,
) -> Result<Written, PaperError> {
    if runs.is_empty() {
        return Err(PaperError::NoRuns);
    }
    let out = &opts.out;
    let (tables_dir, figures_dir) = (out.join("tables"), out.join("figures"));
    create_dir(&tables_dir)?;
    create_dir(&figures_dir)?;
    let mut written = Written::default();
    for r in runs {
        for w in &r.warnings {
            written.warnings.push(format!("{}: {w}", r.label()));
        }
    }
    let focus = focus_domain(runs, opts.focus);

    let tables = Inputs {
        reported,
        runs,
        focus,
    }
    .all()?;
    for (stem, t) in &tables {
        for (ext, text) in [
            ("md", t.to_markdown()),
            ("csv", t.to_csv()),
            ("tex", t.to_latex()),
        ] {
            written.files.push(write_file(
                &tables_dir.join(format!("{stem}.{ext}")),
                &text,
            )?);
        }
    }

    let audit_md = audit::audit_markdown(reported)?;
    written
        .files
        .push(write_file(&out.join("audit.md"), &audit_md)?);

    let mut figs = Vec::new();
    let mut add = |stem: &str, caption: String, files: Vec<PathBuf>| {
        figs.push(Figure {
            png: format!("figures/{stem}.png"),
            caption,
        });
        files
    };
    let f1 = figures::write_both(
        &figures_dir,
        "figure1_model_size",
        (1200, 650),
        &ModelSize::new(reported, runs)?,
    )
    .map_err(figure_error("1"))?;
    written.files.extend(add(
        "figure1_model_size",
        "Figure 1: parameters by year, log scale: the paper's milestones (Section 1.1) and the models measured here (parameters from each run's manifest, year of the run)".into(),
        f1,
    ));
    let density = Density::new(runs, focus);
    let rows = runs.len().div_ceil(2) as u32;
    let f2 = figures::write_both(
        &figures_dir,
        "figure2_score_density",
        (1200, 60 + 330 * rows),
        &density,
    )
    .map_err(figure_error("2"))?;
    written.files.extend(add(
        "figure2_score_density",
        format!("Figure 2: density of per-example scores, in-domain vs out-of-domain (GEM: routed to its own domain's pathway or not; other models: {focus} vs the other domains)"),
        f2,
    ));
    let f3 = figures::write_both(
        &figures_dir,
        "figure3_in_vs_out",
        (1200, 560),
        &InVsOut::new(runs, focus),
    )
    .map_err(figure_error("3"))?;
    written.files.extend(add(
        "figure3_in_vs_out",
        "Figure 3: mean per-example score of Figure 2's in-domain and out-of-domain examples, per model".into(),
        f3,
    ));
    let gem_config = opts.gem.as_ref().or_else(|| {
        runs.iter()
            .filter(|r| r.role == super::runs::Role::Gem(Variant::Full))
            .find_map(|r| r.gem.as_ref())
    });
    match gem_config {
        Some(cfg) => {
            let f4 = figures::write_both(
                &figures_dir,
                "figure4_gem_architecture",
                arch::SIZE,
                &Architecture { config: cfg },
            )
            .map_err(figure_error("4"))?;
            written.files.extend(add(
                "figure4_gem_architecture",
                format!("Figure 4: GEM's architecture as built ({}): router -> 9 pathways -> SCAR -> quantized head, numbers read from its gem.toml", cfg.name),
                f4,
            ));
        }
        None => written.warnings.push(
            "Figure 4 not drawn: no full-GEM run whose model directory (gem.toml) is still there; pass --gem-dir".into(),
        ),
    }
    let f5 = figures::write_both(
        &figures_dir,
        "figure5_dsi_vs_gg",
        (1200, 700),
        &DsiGg::new(reported, runs)?,
    )
    .map_err(figure_error("5"))?;
    written.files.extend(add(
        "figure5_dsi_vs_gg",
        "Figure 5: DSI vs GG per domain for each model (each domain against the mean of the others), with the regions the paper claims for GEM and MobileBERT".into(),
        f5,
    ));

    let md = report_markdown(
        reported,
        runs,
        focus,
        &tables,
        &figs,
        &audit_md,
        &written.warnings,
    );
    written.files.push(write_file(&out.join("report.md"), &md)?);
    let page = html::to_html(&md, "EdgeBench: reproducing Fragile Mastery (GEM)", out)?;
    written
        .files
        .push(write_file(&out.join("report.html"), &page)?);
    written.files.extend(publish_runs(runs, out)?);
    Ok(written)
}

/// File listing a report's runs in order, with their roles.
pub const RUNS_FILE: &str = "runs.json";

/// One entry of `runs.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PublishedRun {
    /// Run id: the folder `runs/<run>/`.
    pub run: String,
    /// [`super::runs::Role::name`].
    pub role: String,
}

/// Writes `runs/<id>/` for every run (its `run.json`, `metrics.csv` and
/// `perf.json` as they are, and its [`super::runs::RunSnapshot`]) and
/// `runs.json`.
fn publish_runs(runs: &[PaperRun], out: &Path) -> Result<Vec<PathBuf>, PaperError> {
    let mut files = Vec::new();
    let mut index = Vec::new();
    for r in runs {
        let id = &r.manifest().run_id;
        let dir = out.join("runs").join(id);
        create_dir(&dir)?;
        for name in ["run.json", "metrics.csv", edgebench_device::perf::PERF_FILE] {
            let from = r.dir.root.join(name);
            let to = dir.join(name);
            if from.is_file() && from != to {
                std::fs::copy(&from, &to).map_err(|source| PaperError::Io {
                    path: to.clone(),
                    source,
                })?;
                files.push(to);
            }
        }
        let snap = serde_json::to_string_pretty(&r.snapshot()).expect("json");
        files.push(write_file(&dir.join(SNAPSHOT_FILE), &(snap + "\n"))?);
        index.push(PublishedRun {
            run: id.clone(),
            role: r.role.name(),
        });
    }
    let text = serde_json::to_string_pretty(&index).expect("json");
    files.push(write_file(&out.join(RUNS_FILE), &(text + "\n"))?);
    Ok(files)
}

/// The runs of a published report folder (`runs.json`), in order.
pub fn published_runs(folder: &Path) -> Result<Vec<PaperRun>, PaperError> {
    let path = folder.join(RUNS_FILE);
    let invalid = |e: String| {
        PaperError::Record(edgebench_eval::record::RecordError::Invalid(format!(
            "{}: {e}",
            path.display()
        )))
    };
    let text = std::fs::read_to_string(&path).map_err(|e| invalid(e.to_string()))?;
    let index: Vec<PublishedRun> =
        serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    index
        .iter()
        .map(|p| {
            let role = super::runs::Role::parse(&p.role)
                .ok_or_else(|| invalid(format!("run {}: unknown role `{}`", p.run, p.role)))?;
            let dir = edgebench_eval::record::RunDir::new(folder, &p.run)?;
            PaperRun::load_published(dir, Some(role))
        })
        .collect()
}

/// The definitions every report states.
fn definitions(focus: Domain) -> String {
    format!(
        "- **Score**: each suite's headline metric (the first higher-is-better metric; the paper's \"F1\" column), averaged over suites per domain. Per-example views (Figures 2 and 3, GEM's Table 2 rows) use each suite's first higher-is-better metric that has a per-example value (accuracy where the headline is macro/micro F1); suites without one are left out of them.\n\
         - **In-domain, GEM** (records with routing decisions): the router sends most of an example's tokens to one pathway. An example is in-domain for domain D when its suite's domain is D and that pathway is D's. In Table 2, GEM's domain-D model is D's pathway: in-domain = D's examples routed to D, out-of-domain = the mean over the other domains D' of the D'-examples routed to D (examples routed to the general pathway belong to no domain model).\n\
         - **In-domain, other models** (no declared training domain here): the paper's definition over domains: in-domain = the suite's domain D, out-of-domain = the mean of the other domains' scores (GG per domain as `metrics::robustness` computes it). Figures 2 and 3 use {focus} as their in-domain domain.\n\
         - **Table 1** measures the full GEM (else the first run) on {focus} data against the mean of the other domains, for every model (the case study's in-domain data vs other data; perplexity likewise). CDTR's \"general\" target is the out-of-domain mean. \"General\" F1 (Tables 3-5) is the mean over the domains a run scored; Table 5's GG is the mean over domains of GG per domain. Figure 5 uses each domain against the mean of the others for every model.\n\
         - **Latency, memory, power** come only from a run's `perf.json`: host measurements, or projections for the paper's devices marked `(estimated)`. Without `perf.json` they read \"not measured\". A per-domain cell (Table 1, Table 4's domain rows) reads the domain's own measurement (`edgebench perf --suites`), else \"not measured\", never the host-wide figure. Energy = power x latency.\n\
         - **Difference** = measured - reported. Intervals are 95 % bootstrap intervals over examples. A measured cell never copies a reported value."
    )
}

fn report_markdown(
    reported: &Reported,
    runs: &[PaperRun],
    focus: Domain,
    tables: &[(&str, super::table::Table)],
    figs: &[Figure],
    audit_md: &str,
    warnings: &[String],
) -> String {
    let mut s = String::from("# EdgeBench: reproducing \"Fragile Mastery\" (GEM)\n\n");
    let _ = writeln!(
        s,
        "> **{GEM_DISCLAIMER}.** The paper's trained weights are not public: a seeded GEM's scores test the pipeline and the architecture's cost, not the paper's model. Reported values are the paper's (`{}`); measured values come only from the runs below.\n",
        reported.path().display()
    );
    let _ = writeln!(
        s,
        "## Runs\n\n| run | model | role | parameters | domains scored | examples | perf.json |\n|---|---|---|---:|---|---:|---|"
    );
    for r in runs {
        let n: usize = r.scores.suites.iter().map(|x| x.n).sum();
        let domains: Vec<&str> = r.domains().iter().map(|d| d.as_str()).collect();
        let _ = writeln!(
            s,
            "| `{}` | {} | {} | {} | {} | {} | {} |",
            r.manifest().run_id,
            r.model(),
            r.role.label(),
            r.parameters()
                .map_or("unknown".into(), |p| figures::human(p as f64)),
            domains.join(", "),
            n,
            if r.perf.is_some() { "yes" } else { "no" }
        );
    }
    if !warnings.is_empty() {
        s.push_str("\n## Warnings\n\n");
        for w in warnings {
            let _ = writeln!(s, "- {w}");
        }
    }
    let _ = writeln!(s, "\n## Definitions\n\n{}\n", definitions(focus));
    s.push_str("## Tables\n\nAlso in `tables/` as Markdown, CSV and LaTeX.\n\n");
    for (_, t) in tables {
        s.push_str(&t.to_markdown());
        s.push('\n');
    }
    s.push_str("## Figures\n\nPNG and SVG in `figures/`.\n\n");
    for f in figs {
        let _ = writeln!(s, "![{}]({})\n", f.caption, f.png);
    }
    s.push_str("## Audit of the paper's arithmetic\n\nAlso in `audit.md`.\n\n");
    // The audit's own title is replaced by this section's; its sections
    // move one level down.
    for line in audit_md.lines().skip_while(|l| l.starts_with("# ")) {
        if line.starts_with('#') {
            s.push('#');
        }
        s.push_str(line);
        s.push('\n');
    }
    s
}
