//! `edgebench reproduce`: every run the paper's tables need, then the tables.
//! It imports the baselines and assembles GEM with its three ablations from
//! the public checkpoints, evaluates each model over the suites, measures
//! its performance, and renders `paper` from those runs. Each step is this
//! binary run again with the step's arguments, printed before it runs, so a
//! step can be repeated by hand; a step whose output exists is skipped and an
//! interrupted evaluation is resumed, so rerunning the command after an
//! interruption continues where it stopped.

use super::{bad_input, failed, Failure};
use clap::Args;
use edgebench::record::{RunDir, SuiteStatus};
use edgebench::runtime::RuntimeOptions;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, Args)]
pub struct ReproduceArgs {
    /// Data root of the suites (e.g. ../shared/data).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Examples per suite of every evaluation (default: each suite's own limit).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Folder of the public checkpoints: `smollm2-135m-instruct/*.gguf`
    /// (GEM's pathways and the TinyLlama-class baseline) and
    /// `all-minilm-l6-v2/` (GEM's router and the MobileBERT-class baseline).
    #[arg(long, default_value = "../shared/models")]
    pub models: PathBuf,
    /// A MobileBERT checkpoint directory: the MobileBERT-class baseline
    /// itself (MiniLM then runs as another model).
    #[arg(long)]
    pub mobilebert: Option<PathBuf>,
    /// A TinyLlama GGUF file: the TinyLlama-class baseline itself (SmolLM2
    /// then runs as another model).
    #[arg(long)]
    pub tinyllama: Option<PathBuf>,
    /// Seeded built-in models instead of the checkpoints (the tiny GEM and
    /// its ablations, the tiny decoder as the TinyLlama-class baseline;
    /// MiniLM still comes from --models): a smoke test of the whole flow.
    #[arg(long)]
    pub tiny: bool,
    /// Minimum timed queries of each performance run (per domain: each
    /// model is measured on every domain's prompts in turn).
    #[arg(long, default_value_t = 100)]
    pub perf_min_queries: usize,
    /// Minimum timed seconds of each performance run.
    #[arg(long, default_value_t = 10.0)]
    pub perf_min_duration: f64,
    /// Prefix of the run ids (`<prefix>-gem`, `<prefix>-smollm2`, ...).
    #[arg(long, default_value = "repro")]
    pub prefix: String,
    /// Evaluate only shard I of N of every evaluation (`I/N` or `auto`, as
    /// `run --shard`), then stop. Once every shard has run into the same
    /// output root, `reproduce` without `--shard` merges each evaluation's
    /// shards, measures performance on its own machine and renders the tables.
    #[arg(long)]
    pub shard: Option<String>,
    /// Output root: models under `models/`, runs under `runs/`, the report
    /// under `paper/reproduction/` (tables, figures, each run's `run.json`,
    /// `metrics.csv` and `perf.json`, and a `README.md` saying how it was made).
    #[arg(long, default_value = "reports")]
    pub out: PathBuf,
}

/// One model of the reproduction and the part it plays in the paper.
struct Entry {
    role: &'static str,
    name: String,
    /// `--model` of its runs.
    model: String,
}

pub fn reproduce(a: ReproduceArgs, runtime: &RuntimeOptions) -> Result<(), Failure> {
    if !a.data_dir.is_dir() {
        return Err(bad_input(anyhow::anyhow!(
            "--data-dir {}: no such directory",
            a.data_dir.display()
        )));
    }
    edgebench::record::check_run_id(&format!("{}-gem", a.prefix)).map_err(bad_input)?;
    for (flag, p) in [
        ("--data-dir", &a.data_dir),
        ("--models", &a.models),
        ("--out", &a.out),
    ] {
        if p.to_str().is_none() {
            return Err(bad_input(anyhow::anyhow!(
                "{flag} {}: the steps take paths as UTF-8 text",
                p.display()
            )));
        }
    }
    let shard = a.shard.as_deref().map(super::run::shard_of).transpose()?;
    let exe = std::env::current_exe().map_err(failed)?;
    let step = Step { exe: &exe, runtime };
    let models = a.out.join("models");
    let out = a.out.to_string_lossy().to_string();
    let minilm_src = a.models.join("all-minilm-l6-v2");
    let gguf = find_gguf(&a.models.join("smollm2-135m-instruct"))?;
    let mut entries = Vec::new();

    // the models
    let minilm = models.join("minilm");
    if is_model(&minilm) {
        println!("done: {}", minilm.display());
    } else {
        need(&minilm_src, "the MiniLM checkpoint (--models)")?;
        step.run(&["import", "bert", s(&minilm_src), "--out", s(&minilm)])?;
    }
    let gem = if a.tiny {
        models.join("gem-tiny")
    } else {
        models.join("gem-smollm2")
    };
    let variants = ["", "-no-scar", "-no-quant", "-no-router"];
    if variants
        .iter()
        .all(|v| is_model(&PathBuf::from(format!("{}{v}", gem.display()))))
    {
        println!("done: {} and its ablations", gem.display());
    } else if a.tiny {
        step.run(&["gem", "build", "--variants", "all", "--out", s(&gem)])?;
    } else {
        let gguf = gguf.as_ref().ok_or_else(|| {
            bad_input(anyhow::anyhow!(
                "{}: no .gguf file for GEM's pathways (--models)",
                a.models.join("smollm2-135m-instruct").display()
            ))
        })?;
        step.run(&[
            "gem",
            "build",
            "--from-pretrained",
            "--variants",
            "all",
            "--data-dir",
            s(&a.data_dir),
            "--pathways-gguf",
            s(gguf),
            "--router-bert",
            s(&minilm_src),
            "--out",
            s(&gem),
        ])?;
    }
    for (v, role) in variants
        .iter()
        .zip(["gem", "gem-no-scar", "gem-no-quant", "gem-no-router"])
    {
        entries.push(Entry {
            role,
            name: format!("gem{v}"),
            model: format!("{}{v}", gem.display()),
        });
    }
    let decoder = if a.tiny {
        "builtin:tiny".to_string()
    } else {
        let dir = models.join("smollm2");
        if is_model(&dir) {
            println!("done: {}", dir.display());
        } else {
            let gguf = gguf.as_ref().ok_or_else(|| {
                bad_input(anyhow::anyhow!(
                    "{}: no .gguf file for the TinyLlama-class baseline (--models)",
                    a.models.join("smollm2-135m-instruct").display()
                ))
            })?;
            step.run(&["import", "gguf", s(gguf), "--ctx", "2048", "--out", s(&dir)])?;
        }
        dir.display().to_string()
    };
    let tinyllama = match &a.tinyllama {
        Some(file) => {
            let dir = models.join("tinyllama");
            if !is_model(&dir) {
                step.run(&["import", "gguf", s(file), "--ctx", "2048", "--out", s(&dir)])?;
            }
            Some(dir.display().to_string())
        }
        None => None,
    };
    let mobilebert = match &a.mobilebert {
        Some(src) => {
            let dir = models.join("mobilebert");
            if !is_model(&dir) {
                step.run(&["import", "mobilebert", s(src), "--out", s(&dir)])?;
            }
            Some(dir.display().to_string())
        }
        None => None,
    };
    let decoder_name = if a.tiny { "tiny" } else { "smollm2" };
    entries.push(Entry {
        role: if tinyllama.is_some() {
            "other"
        } else {
            "tinyllama"
        },
        name: decoder_name.into(),
        model: decoder,
    });
    entries.push(Entry {
        role: if mobilebert.is_some() {
            "other"
        } else {
            "mobilebert"
        },
        name: "minilm".into(),
        model: minilm.display().to_string(),
    });
    if let Some(m) = tinyllama {
        entries.push(Entry {
            role: "tinyllama",
            name: "tinyllama".into(),
            model: m,
        });
    }
    if let Some(m) = mobilebert {
        entries.push(Entry {
            role: "mobilebert",
            name: "mobilebert".into(),
            model: m,
        });
    }

    // the evaluations and performance runs
    let limit = a.limit.map(|l| l.to_string());
    let (queries, duration) = (
        a.perf_min_queries.to_string(),
        a.perf_min_duration.to_string(),
    );
    for e in &entries {
        let base = format!("{}-{}", a.prefix, e.name);
        let id = match shard {
            Some(sh) => format!("{base}-{}", sh.suffix()),
            None => base.clone(),
        };
        let run_dir = a.out.join("runs").join(&id);
        let shard_flag = shard.map(|sh| sh.to_string());
        let shards = format!("{base}-shard-*");
        match RunDir::open(&a.out, &id).and_then(|d| d.load_manifest()) {
            Ok(m) if m.state == "complete" => println!("done: run {id}"),
            Ok(_) => step.run(&["run", "--resume", &id, "--quiet", "--out", &out])?,
            Err(_) if shard.is_none() && has_shards(&a.out, &base) => {
                step.run(&["merge", &shards, "--run-id", &id, "--out", &out, "--quiet"])?
            }
            Err(_) if run_dir.exists() => {
                return Err(bad_input(anyhow::anyhow!(
                    "{}: exists but is not a run (no readable run.json); move it away",
                    run_dir.display()
                )))
            }
            Err(_) => {
                let mut args = vec![
                    "run",
                    "--model",
                    &e.model,
                    "--run-id",
                    &base,
                    "--data-dir",
                    s(&a.data_dir),
                    "--quiet",
                    "--out",
                    &out,
                ];
                if let Some(l) = &limit {
                    args.extend(["--limit", l]);
                }
                if let Some(sh) = &shard_flag {
                    args.extend(["--shard", sh]);
                }
                step.run(&args)?;
            }
        }
        if shard.is_some() {
            continue;
        }
        if run_dir.join(edgebench::perf::PERF_FILE).is_file() {
            println!("done: perf of {id}");
        } else {
            step.run(&[
                "perf",
                "--model",
                &e.model,
                "--run-id",
                &id,
                "--min-queries",
                &queries,
                "--min-duration",
                &duration,
                "--suites",
                "all",
                "--data-dir",
                s(&a.data_dir),
                "--out",
                &out,
            ])?;
        }
    }

    if let Some(sh) = shard {
        println!(
            "shard {sh} of every evaluation is done; once all {} shards have run into {out}, run `edgebench reproduce` with the same arguments and no --shard: it merges them, measures performance and renders the tables",
            sh.count
        );
        return Ok(());
    }

    // the tables
    let mut args: Vec<String> = vec!["paper".into(), "--runs".into()];
    for e in &entries {
        args.push(format!("{}={}-{}", e.role, a.prefix, e.name));
    }
    let report = a.out.join("paper").join("reproduction");
    args.extend([
        "--runs-root".into(),
        out.clone(),
        "--out".into(),
        report.display().to_string(),
    ]);
    step.run(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
    let ids: Vec<String> = entries
        .iter()
        .map(|e| format!("{}-{}", a.prefix, e.name))
        .collect();
    let header = header_markdown(&a, &ids).map_err(failed)?;
    std::fs::write(report.join("README.md"), header).map_err(failed)?;
    println!("reproduction: {}", report.display());
    Ok(())
}

/// What is not reproduced, and why.
const NOT_REPRODUCIBLE: &str = "\
- **The paper's trained GEM**: its weights are not public. GEM here is the paper's architecture assembled from public checkpoints (SmolLM2 pathways, MiniLM router with a domain head fitted on the suites' data), so its scores measure that model, not the paper's.
- **MobileBERT and TinyLlama themselves** unless `--mobilebert`/`--tinyllama` name their files: MiniLM and SmolLM2 stand in as the MobileBERT-class and TinyLlama-class baselines.
- **Power and energy**: a host without a meter reads `null` with the reason; device projections from a profile's power envelope are marked estimated. `perf --power meter.csv` takes a USB meter's log.
- **Latency on the paper's devices** (Raspberry Pi 4, phones, Jetson): the host's measurements are projected by each device's roofline and marked estimated.
- **MIMIC-III**: credentialed data; its suites read `missing` unless a licensed copy is under the data root.
- **Training-only ablations** (Table 5's \"w/o knowledge preservation\").
- **Datasets absent from the data root**: the suites marked `missing` below.
";

/// `README.md` of the reproduction: when, where and how it was made, the
/// data each run used, and what is not reproducible.
fn header_markdown(a: &ReproduceArgs, ids: &[String]) -> anyhow::Result<String> {
    use std::fmt::Write as _;
    let mut runs = Vec::new();
    for id in ids {
        runs.push(RunDir::open(&a.out, id)?.load_manifest()?);
    }
    let first = runs
        .first()
        .ok_or_else(|| anyhow::anyhow!("no runs to describe"))?;
    let command: Vec<String> = std::env::args().skip(1).collect();
    let mut s = String::from("# Reproduction of the paper's tables on public checkpoints\n\n");
    let _ = writeln!(
        s,
        "Made by `edgebench {}` with EdgeBench {}{}; `report.md` has the tables and figures, `audit.md` the paper's own arithmetic, `runs/<id>/` each run's `run.json`, `metrics.csv`, `perf.json` and the scores the tables are computed from (`paper-inputs.json`). `edgebench paper --from <this folder> --out <dir>` renders the tables again from those files.\n",
        command.join(" "),
        first.edgebench_version,
        first
            .git_hash
            .as_deref()
            .map(|h| format!(" (git {h})"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        s,
        "- **Machine**: {}, {} cores, {} GiB memory, {} {}",
        first.host.cpu,
        first.host.cores,
        first.host.memory_bytes >> 30,
        first.host.os,
        first.host.arch
    );
    let _ = writeln!(
        s,
        "- **Threads**: {}; **limit**: {} examples per suite; **seed**: {}; **bootstrap**: {} resamples",
        first.provenance.threads,
        first
            .limit
            .map_or("each suite's own".to_string(), |l| l.to_string()),
        first.seed,
        first.bootstrap
    );
    let _ = writeln!(s, "- **Data root**: `{}`\n", first.data_dir);
    s.push_str("## Runs\n\n| run | model | started | state | threads | examples |\n|---|---|---|---|---:|---:|\n");
    for m in &runs {
        let n: usize = m
            .status
            .values()
            .map(|st| match st {
                SuiteStatus::Complete { examples } => *examples,
                SuiteStatus::Partial { done, .. } => *done,
                _ => 0,
            })
            .sum();
        let _ = writeln!(
            s,
            "| `{}` | {} (`{}`) | {} | {} | {} | {} |",
            m.run_id,
            m.model.name,
            m.model.source,
            m.created,
            if m.merged_from.is_empty() {
                m.state.clone()
            } else {
                format!("{}, merged from {} shards", m.state, m.merged_from.len())
            },
            m.provenance.threads,
            n
        );
    }
    s.push_str("\n## Data used\n\nExamples each run scored per suite (or why none), and the suite's data files under the data root.\n\n| suite | data |");
    for m in &runs {
        let _ = write!(s, " `{}` |", m.run_id);
    }
    s.push_str("\n|---|---|");
    s.push_str(&"---:|".repeat(runs.len()));
    s.push('\n');
    let root = Path::new(&first.data_dir);
    for suite in &first.suites {
        let files: Vec<String> = first
            .data_hashes
            .get(suite)
            .map(|f| {
                f.iter()
                    .map(|h| {
                        let p = Path::new(&h.path);
                        p.strip_prefix(root).unwrap_or(p).display().to_string()
                    })
                    .collect()
            })
            .unwrap_or_default();
        let _ = write!(
            s,
            "| {suite} | {} |",
            if files.is_empty() {
                "none".into()
            } else {
                files.join(", ")
            }
        );
        for m in &runs {
            let cell = match m.status.get(suite) {
                Some(SuiteStatus::Complete { examples }) => examples.to_string(),
                Some(SuiteStatus::Partial { done, total }) => format!("{done} of {total}"),
                Some(SuiteStatus::Unsupported { .. }) => "unsupported".into(),
                Some(SuiteStatus::Missing { .. }) => "missing".into(),
                Some(SuiteStatus::Failed { .. }) => "failed".into(),
                None => "not run".into(),
            };
            let _ = write!(s, " {cell} |");
        }
        s.push('\n');
    }
    let _ = writeln!(s, "\n## Not reproducible\n\n{NOT_REPRODUCIBLE}");
    Ok(s)
}

/// How the steps run: this binary with the runtime options of the command.
struct Step<'a> {
    exe: &'a Path,
    runtime: &'a RuntimeOptions,
}

impl Step<'_> {
    fn run(&self, args: &[&str]) -> Result<(), Failure> {
        let threads = self.runtime.threads.to_string();
        let mut all: Vec<&str> = args.to_vec();
        all.extend([
            "--threads",
            &threads,
            "--lowering",
            self.runtime.lowering.name(),
            "--max-isa",
            self.runtime.max_isa.name(),
        ]);
        if !self.runtime.fuse_attention {
            all.push("--no-fuse-attention");
        }
        if !self.runtime.dense {
            all.push("--no-dense");
        }
        println!("step: edgebench {}", all.join(" "));
        let status = Command::new(self.exe).args(&all).status().map_err(failed)?;
        match status.code() {
            Some(0) => Ok(()),
            Some(code) => Err(Failure {
                code: if code == 2 { 2 } else { 1 },
                error: anyhow::anyhow!(
                    "step `edgebench {}` exited with {code}; fix it and run reproduce again (finished steps are kept)",
                    args.join(" ")
                ),
            }),
            None => Err(failed(anyhow::anyhow!(
                "step `edgebench {}` was killed; run reproduce again to continue",
                args.join(" ")
            ))),
        }
    }
}

/// Whether `dir` holds an imported or built model.
fn is_model(dir: &Path) -> bool {
    dir.join(edgebench::model::manifest::MANIFEST_FILE)
        .is_file()
}

fn need(path: &Path, what: &str) -> Result<(), Failure> {
    if path.exists() {
        Ok(())
    } else {
        Err(bad_input(anyhow::anyhow!(
            "{}: {what} is not there",
            path.display()
        )))
    }
}

/// The one `.gguf` file of `dir` (`None` when the folder is absent).
fn find_gguf(dir: &Path) -> Result<Option<PathBuf>, Failure> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Ok(None);
    };
    let mut found: Vec<PathBuf> = read
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
        .collect();
    found.sort();
    match found.len() {
        0 | 1 => Ok(found.pop()),
        _ => Err(bad_input(anyhow::anyhow!(
            "{}: {} .gguf files; keep one (the pathways' checkpoint)",
            dir.display(),
            found.len()
        ))),
    }
}

/// A path as a step's argument (checked to be UTF-8 at the start).
fn s(p: &Path) -> &str {
    p.to_str().expect("paths checked at the start")
}

/// Whether shard runs of `base` (`<base>-shard-I-of-N`) exist under `out`.
fn has_shards(out: &Path, base: &str) -> bool {
    let prefix = format!("{base}-shard-");
    std::fs::read_dir(out.join("runs")).is_ok_and(|d| {
        d.filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().starts_with(&prefix))
    })
}
