//! `edgebench gem build`: write GEM graphs (the full model and its ablations).

use super::{bad_input, failed, Failure, Paths};
use clap::{Args, Subcommand};
use edgebench::gem::{self, GemConfig, Variant};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct GemArgs {
    #[command(subcommand)]
    pub command: GemCommand,
}

#[derive(Debug, Subcommand)]
pub enum GemCommand {
    /// Build GEM model directories from a config (seeded weights).
    Build {
        /// GEM config (e.g. fixtures/gem/gem-paper.toml); default: the bundled tiny GEM.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Output directory of the full model; ablations go beside it with a suffix (`-no-scar`, ...).
        #[arg(long)]
        out: PathBuf,
        /// Variants to write: `all`, or a comma list of full, no-scar, no-quant, no-router.
        #[arg(long, default_value = "all")]
        variants: String,
        /// Fit the router's domain head W_r by logistic regression on domain-labelled
        /// sentences from the suites' data (--data-dir), and report held-out routing accuracy.
        #[arg(long)]
        fit_router: bool,
        /// Sentences per domain used for the fit (about a quarter are held out).
        #[arg(long, default_value_t = 80)]
        sentences_per_domain: usize,
        /// Folder of suite files added to the built-in suites (for --fit-router; repeatable).
        #[arg(long)]
        suites_dir: Vec<PathBuf>,
        /// A suite file added to the built-in suites (for --fit-router; repeatable).
        #[arg(long)]
        suite_file: Vec<PathBuf>,
        /// Data root for --fit-router (default: $EDGEBENCH_DATA, else the bundled fixtures/).
        #[arg(long, env = "EDGEBENCH_DATA")]
        data_dir: Option<PathBuf>,
        /// Assemble GEM from public checkpoints instead of seeded weights: the
        /// pathways from a Llama GGUF (--pathways-gguf), the router's encoder
        /// from a BERT checkpoint (--router-bert), W_r fitted on the suites' data.
        /// Default config: fixtures/gem/gem-smollm2-minilm.toml.
        #[arg(long)]
        from_pretrained: bool,
        /// Llama GGUF for the pathways (required with --from-pretrained),
        /// e.g. SmolLM2-135M-Instruct.Q4_1.gguf.
        #[arg(long, required_if_eq("from_pretrained", "true"))]
        pathways_gguf: Option<PathBuf>,
        /// BERT checkpoint directory (config.json, model.safetensors,
        /// tokenizer.json) for the router (required with --from-pretrained),
        /// e.g. all-MiniLM-L6-v2.
        #[arg(long, required_if_eq("from_pretrained", "true"))]
        router_bert: Option<PathBuf>,
        /// How tokens reach their pathway: `sparse` (each token through its own
        /// pathway, with a KV cache) or `dense` (every pathway on every token,
        /// masked: the reference). Default: the config's `dispatch` (sparse).
        #[arg(long)]
        dispatch: Option<String>,
    },
}

type Fitted = (gem::router_fit::Head, gem::router_fit::FitReport, String);

/// Builds the seeded GEM once, fits W_r on its router features and prints the held-out accuracy.
fn fit(
    cfg: &GemConfig,
    out: &std::path::Path,
    paths: &Paths,
    per_domain: usize,
) -> Result<Fitted, Failure> {
    use gem::router_fit;
    gem::materialize_seeded(cfg, Variant::Full, out).map_err(failed)?;
    let data = fit_sentences(paths, per_domain, "--fit-router")?;
    let features = router_fit::RouterFeatures::load(out).map_err(failed)?;
    let (head, report) = router_fit::fit(&features, &data, cfg.router.tau, 16).map_err(failed)?;
    print_fit(&report, &paths.data());
    let origin = format!(
        "seeded random weights with the domain head W_r fitted by logistic regression on {} (held-out routing accuracy {:.3})",
        paths.data().display(),
        report.sentence_accuracy
    );
    Ok((head, report, origin))
}

/// Domain-labelled sentences for fitting the router's W_r from the suites'
/// data; bad input naming `flag` when there are none.
fn fit_sentences(
    paths: &Paths,
    per_domain: usize,
    flag: &str,
) -> Result<Vec<gem::router_fit::Labelled>, Failure> {
    let registry = paths.registry()?;
    super::warn(&registry);
    let data = edgebench::data::labelled::domain_sentences(
        registry.specs(),
        &paths.data(),
        per_domain,
        200,
    );
    if data.is_empty() {
        return Err(bad_input(anyhow::anyhow!(
            "{flag} fits the router's W_r, but no sentences were found under {}; pass --data-dir",
            paths.data().display()
        )));
    }
    Ok(data)
}

/// Prints a fit report's headline.
fn print_fit(report: &gem::router_fit::FitReport, data: &std::path::Path) {
    println!(
        "router fit on {} sentences ({} tokens) from {}: held-out token accuracy {:.3}, sentence accuracy {:.3} (majority baseline {:.3}); {:.1} % of tokens above tau = {} ({:.3} of them right)\n",
        report.train_sentences,
        report.train_tokens,
        data.display(),
        report.token_accuracy,
        report.sentence_accuracy,
        report.majority_baseline,
        100.0 * report.routed_share,
        report.tau,
        report.routed_precision
    );
}

/// `gem build --from-pretrained`: opens both checkpoints, fits W_r on the
/// router's features, then writes each variant.
fn build_pretrained(
    cfg: &GemConfig,
    cfg_label: &std::path::Path,
    gguf: &std::path::Path,
    bert: &std::path::Path,
    variants: &[Variant],
    paths: &Paths,
    per_domain: usize,
) -> Result<(), Failure> {
    use gem::pretrained;
    use gem::router_fit;
    let mut src = pretrained::Pretrained::open(cfg, cfg_label, gguf, bert).map_err(bad_input)?;
    let data = fit_sentences(paths, per_domain, "--from-pretrained")?;
    std::fs::create_dir_all(&paths.out).map_err(failed)?;
    let graph = paths.out.join("router-features.onnx");
    pretrained::write_router_features(cfg, &mut src, &graph).map_err(failed)?;
    let features =
        router_fit::RouterFeatures::load_graph(&graph, &bert.join("tokenizer.json"), Some("[CLS]"))
            .map_err(failed)?;
    let (head, report) = router_fit::fit(&features, &data, cfg.router.tau, 16).map_err(failed)?;
    drop(features);
    std::fs::remove_file(&graph).map_err(failed)?;
    print_fit(&report, &paths.data());
    src.set_router_head(head);
    let origin = format!(
        "{}; domain head W_r fitted by logistic regression on {} (held-out sentence routing accuracy {:.3})",
        src.origin(),
        paths.data().display(),
        report.sentence_accuracy
    );
    println!("| variant | directory | distinct parameters | weight bytes |\n|---|---|---|---|");
    for &v in variants {
        let dir = PathBuf::from(format!("{}{}", paths.out.display(), v.suffix()));
        let r = pretrained::materialize(cfg, v, &dir, &mut src, &origin).map_err(failed)?;
        let json = serde_json::to_string_pretty(&report).map_err(failed)?;
        std::fs::write(dir.join("router-fit.json"), json).map_err(failed)?;
        println!(
            "| {:?} | {} | {} | {} |",
            v,
            r.dir.display(),
            r.parameters,
            r.weight_bytes
        );
    }
    println!("\nGEM's architecture on public weights ({origin}), not the paper's trained GEM.");
    Ok(())
}

pub fn gem(a: GemArgs) -> Result<(), Failure> {
    match a.command {
        GemCommand::Build {
            config,
            out,
            variants,
            fit_router,
            sentences_per_domain,
            suites_dir,
            suite_file,
            data_dir,
            from_pretrained,
            pathways_gguf,
            router_bert,
            dispatch,
        } => {
            let paths = Paths {
                suites_dir,
                suite_file,
                data_dir,
                out: out.clone(),
            };
            let mut cfg = match (&config, from_pretrained) {
                (Some(p), _) => GemConfig::load(p).map_err(bad_input)?,
                (None, true) => {
                    let label = std::path::Path::new("fixtures/gem/gem-smollm2-minilm.toml");
                    let cfg: GemConfig = toml::from_str(gem::pretrained::CONFIG).map_err(failed)?;
                    cfg.validate(label).map_err(bad_input)?;
                    cfg
                }
                (None, false) => gem::tiny_config(),
            };
            if let Some(d) = dispatch {
                cfg.dispatch = gem::config::Dispatch::parse(&d).ok_or_else(|| {
                    bad_input(anyhow::anyhow!(
                        "--dispatch: unknown dispatch `{d}`; use sparse or dense"
                    ))
                })?;
            }
            let variants: Vec<Variant> = if variants == "all" {
                Variant::ALL.to_vec()
            } else {
                variants
                    .split(',')
                    .map(|v| {
                        Variant::parse(v.trim()).ok_or_else(|| {
                            bad_input(anyhow::anyhow!(
                                "--variants: unknown variant `{v}`; use all, full, no-scar, no-quant or no-router"
                            ))
                        })
                    })
                    .collect::<Result<_, _>>()?
            };
            if let (true, Some(pathways_gguf), Some(router_bert)) =
                (from_pretrained, &pathways_gguf, &router_bert)
            {
                let label = config
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("fixtures/gem/gem-smollm2-minilm.toml"));
                return build_pretrained(
                    &cfg,
                    &label,
                    pathways_gguf,
                    router_bert,
                    &variants,
                    &paths,
                    sentences_per_domain,
                );
            }
            let fitted = if fit_router {
                Some(fit(&cfg, &out, &paths, sentences_per_domain)?)
            } else {
                None
            };
            println!("| variant | directory | parameters | weight bytes |\n|---|---|---|---|");
            for v in variants {
                let dir = PathBuf::from(format!("{}{}", out.display(), v.suffix()));
                let r = match &fitted {
                    Some((head, report, origin)) => {
                        let mut w = gem::build::Seeded::with_router_head(cfg.seed, head.clone());
                        let r =
                            gem::materialize_with(&cfg, v, &dir, &mut w, origin).map_err(failed)?;
                        let json = serde_json::to_string_pretty(report).map_err(failed)?;
                        std::fs::write(dir.join("router-fit.json"), json).map_err(failed)?;
                        r
                    }
                    None => gem::materialize_seeded(&cfg, v, &dir).map_err(failed)?,
                };
                println!(
                    "| {:?} | {} | {} | {} |",
                    v,
                    r.dir.display(),
                    r.parameters,
                    r.weight_bytes
                );
            }
            println!("\nGEM's architecture on seeded weights, not the paper's trained GEM.");
            Ok(())
        }
    }
}
