//! `edgebench sweep bits`: one model at several weight precisions, each run
//! over the chosen suites like `edgebench run`, then a table (Markdown, CSV)
//! and a plot of bits against scores, perplexity, GG and DSI.

use super::{bad_input, eval_failure, failed, Failure, Paths};
use clap::{Args, Subcommand};
use edgebench::evaluate::{evaluate, Job};
use edgebench::model;
use edgebench::record::RunDir;
use edgebench::runner::{Options, Requested, Settings};
use edgebench::runtime::RuntimeOptions;
use edgebench::sweep::{self, table, SweepError};

#[derive(Debug, Args)]
pub struct SweepArgs {
    #[command(subcommand)]
    pub what: SweepWhat,
}

#[derive(Debug, Subcommand)]
pub enum SweepWhat {
    /// Evaluate the same model at several weight precisions: GG / DSI / scores against bits.
    Bits(BitsArgs),
}

#[derive(Debug, Args)]
pub struct BitsArgs {
    /// A GEM config (.toml), a Llama GGUF file, a seeded GEM model directory, or builtin:gem-tiny.
    #[arg(long)]
    pub model: String,
    /// Comma-separated bit widths, each one of 2, 3, 4, 5, 6, 8.
    #[arg(long, default_value = "8,6,4,3,2")]
    pub bits: String,
    /// Comma-separated suite ids or domain names (several domains are needed for GG and DSI).
    #[arg(long)]
    pub suites: String,
    /// Examples per suite (overrides each suite's default; 0 = all).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Seed for few-shot draws and the bootstrap.
    #[arg(long, default_value_t = 1234)]
    pub seed: u64,
    /// Bootstrap resamples for confidence intervals.
    #[arg(long, default_value_t = 1000)]
    pub bootstrap: usize,
    /// Name of the sweep (default: bits-<model name>); models, runs and tables are named after it.
    #[arg(long)]
    pub sweep_id: Option<String>,
    /// Context window of GGUF imports.
    #[arg(long, default_value_t = edgebench::model::manifest::DEFAULT_CONTEXT, value_parser = super::bounded(edgebench::model::manifest::CONTEXT))]
    pub ctx: usize,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    pub paths: Paths,
}

fn model_error(e: SweepError) -> Failure {
    match e {
        SweepError::Build(e) => failed(e),
        other => bad_input(anyhow::anyhow!("--model: {other}")),
    }
}

pub fn sweep(a: SweepArgs, runtime: &RuntimeOptions) -> Result<(), Failure> {
    let SweepWhat::Bits(a) = a.what;
    let bits = sweep::parse_bits(&a.bits).map_err(|e| bad_input(anyhow::anyhow!("--bits: {e}")))?;
    let registry = a.paths.registry()?;
    let selected = super::select(&registry, &a.suites, "--suites")?;
    let settings_suites: Vec<String> = selected.iter().map(|s| s.id.clone()).collect();
    let source = sweep::resolve(&a.model).map_err(model_error)?;
    let id = a
        .sweep_id
        .clone()
        .unwrap_or_else(|| format!("bits-{}", source.name()));
    let out_dir = a.paths.out.join("sweeps").join(&id);
    std::fs::create_dir_all(&out_dir)
        .map_err(|e| failed(anyhow::anyhow!("{}: {e}", out_dir.display())))?;
    let mut rows = Vec::new();
    let mut failed_suites: Vec<String> = Vec::new();
    for &b in &bits {
        let name = format!("{id}-{b}bit");
        let dir = sweep::build_at(&source, b, &a.paths.out.join("models").join(&name), a.ctx)
            .map_err(model_error)?;
        let graph_bytes = std::fs::metadata(dir.join("model.onnx"))
            .map(|m| m.len())
            .unwrap_or(0);
        let spec = dir.display().to_string();
        let opts = Options {
            quiet: a.quiet,
            git_hash: super::GIT_HASH.map(String::from),
            runtime: *runtime,
            ..Options::default()
        };
        let cache = a.paths.out.join("models");
        // a width already run under this sweep is resumed (the runner checks it is the same run)
        let existing = RunDir::new(&a.paths.out, &name)
            .map_err(bad_input)?
            .manifest_path()
            .exists();
        let mut model;
        let job = if existing {
            Job::Resume {
                id: name.clone(),
                requested: Requested {
                    model: Some(spec),
                    suites: Some(settings_suites.clone()),
                    data_dir: Some(a.paths.data()),
                    limit: a.limit,
                    seed: Some(a.seed),
                    bootstrap: Some(a.bootstrap),
                    sources: None,
                },
                force_new_leg: false,
                model_cache: cache,
            }
        } else {
            let settings = Settings {
                model: spec,
                suites: settings_suites.clone(),
                data_dir: a.paths.data(),
                limit: a.limit,
                seed: a.seed,
                bootstrap: a.bootstrap,
                truncation: Default::default(),
                shard: None,
                costs_from: None,
            };
            model = model::load(&settings.model, &cache, runtime).map_err(failed)?;
            Job::New {
                id: Some(name.clone()),
                settings,
                specs: selected.clone(),
                suites: &registry,
                model: model.as_mut(),
            }
        };
        let e = evaluate(&a.paths.out, job, &opts).map_err(eval_failure)?;
        let (run, scores) = (&e.dir, &e.scores);
        eprintln!("{b} bits: run {}", run.root.display());
        for (id, reason) in e.failed_suites() {
            eprintln!("{b} bits: suite `{id}` failed: {reason}");
            failed_suites.push(format!("{b} bits: {id}"));
        }
        rows.push(table::SweepRow::from_scores(b, graph_bytes, scores));
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.bits));
    let md = table::markdown(&rows);
    let answer = table::brittleness_answer(&rows);
    let provenance = match &source {
        sweep::SweepSource::Gem(_) => "GEM's architecture on seeded random weights, not the paper's trained GEM; every precision field (router, domain and general pathways, head) set to the width.",
        sweep::SweepSource::Gguf(_) => "Every matrix of the GGUF model re-quantized from its dequantized f32 at the width (symmetric blocks of 32).",
    };
    let doc = format!(
        "# Compression sweep `{id}`\n\nModel: `{}`. {provenance}\nSuites: {}; limit {}; bootstrap {} resamples, seed {}.\n\n{md}\n{answer}\n\nGG and DSI are per domain; each row shows the domain with the largest GG (its strongest domain) and that domain's DSI (per domain, GG = 1 - 1/DSI). Intervals are 95 % bootstrap intervals over examples. Runs: `{}`.\n",
        a.model,
        selected.iter().map(|s| s.id.as_str()).collect::<Vec<_>>().join(", "),
        a.limit.map_or("suite default".to_string(), |l| l.to_string()),
        a.bootstrap,
        a.seed,
        a.paths.out.join("runs").display(),
    );
    let write = |file: &str, text: &str| {
        let p = out_dir.join(file);
        std::fs::write(&p, text).map_err(|e| failed(anyhow::anyhow!("{}: {e}", p.display())))?;
        Ok::<_, Failure>(p)
    };
    let mut written = vec![write("sweep.md", &doc)?];
    written.push(write("sweep.csv", &table::csv(&rows).map_err(failed)?)?);
    match sweep::plot::write(&out_dir, "sweep", &source.name(), &rows) {
        Ok(p) => written.extend(p),
        Err(e) => eprintln!("warning: plot not written: {e}"),
    }
    println!("{md}\n{answer}");
    for p in written {
        println!("wrote {}", p.display());
    }
    if !failed_suites.is_empty() {
        return Err(failed(anyhow::anyhow!(
            "suites failed to load (the rows leave them out): {}",
            failed_suites.join(", ")
        )));
    }
    Ok(())
}
