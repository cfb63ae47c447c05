//! `edgebench gem build`: write GEM graphs (the full model and its ablations).

use super::{bad_input, failed, Failure};
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
    },
}

pub fn gem(a: GemArgs) -> Result<(), Failure> {
    match a.command {
        GemCommand::Build {
            config,
            out,
            variants,
        } => {
            let cfg = match &config {
                Some(p) => GemConfig::load(p).map_err(bad_input)?,
                None => gem::tiny_config(),
            };
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
            println!("| variant | directory | parameters | weight bytes |\n|---|---|---|---|");
            for v in variants {
                let dir = PathBuf::from(format!("{}{}", out.display(), v.suffix()));
                let r = gem::materialize_seeded(&cfg, v, &dir).map_err(failed)?;
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
