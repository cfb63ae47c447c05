//! `edgebench perf` (also `run --mode perf`) and `edgebench devices`.

use super::{bad_input, failed, Failure, Paths};
use clap::{Args, Subcommand};
use edgebench::device::profile::{self, Host, HostMeasurements};
use edgebench::device::stats::PerfSettings;
use edgebench::model;
use edgebench::perf::{self, DataFile, PerfConfig, PowerChoice, PromptSource};
use edgebench::suite::spec::Domain;
use edgebench::{data, request, runner};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Options of a performance run.
#[derive(Debug, Clone, Args)]
pub struct PerfOpts {
    /// Untimed warm-up queries.
    #[arg(long, default_value_t = 5)]
    pub warmup: u64,
    /// Minimum timed queries (LoadGen single-stream default: 100 here).
    #[arg(long, default_value_t = 100)]
    pub min_queries: u64,
    /// Minimum timed duration, seconds.
    #[arg(long, default_value_t = 10.0)]
    pub min_duration: f64,
    /// Stop after this many queries even if the minimum duration is not met (the run is then INVALID).
    #[arg(long)]
    pub max_queries: Option<u64>,
    /// Stop after this many seconds even if a minimum is not met (the run is then INVALID).
    #[arg(long, default_value_t = 600.0)]
    pub max_duration: f64,
    /// Prompt length in tokens (cut to leave room for the output in the model's context).
    #[arg(long, default_value_t = 128, value_parser = super::bounded(1..=*edgebench::model::manifest::CONTEXT.end()))]
    pub prompt_tokens: usize,
    /// Output tokens per decoder query (TTFT + TPOT), at most the room left in the model's context; encoders embed the prompt.
    #[arg(long, default_value_t = 16, value_parser = super::bounded(0..=*edgebench::suite::MAX_TOKENS.end()))]
    pub gen_tokens: usize,
    /// Power: `auto` (RAPL/hwmon/battery under --sysfs-root), `off`, or a meter CSV log covering the run.
    #[arg(long, default_value = "auto")]
    pub power: String,
    /// Root of the sysfs tree power sources are read from.
    #[arg(long, default_value = "/sys")]
    pub sysfs_root: PathBuf,
    /// Seconds of idle power measured before the timed window.
    #[arg(long, default_value_t = 2.0)]
    pub idle_s: f64,
    /// Device profiles to project onto (estimated).
    #[arg(long, default_value = "devices")]
    pub devices_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct PerfArgs {
    /// Model: builtin:tiny, builtin:gem-tiny, hf:<repo> or a model directory.
    #[arg(long, default_value = "builtin:tiny")]
    pub model: String,
    /// Run id (perf.json goes to <out>/runs/<id>/).
    #[arg(long)]
    pub run_id: Option<String>,
    /// Measure each domain in turn on prompts drawn from these suites'
    /// examples: comma-separated suite ids, domain names, or `all` (default:
    /// windows of the tiny model's training text, no per-domain figures).
    #[arg(long)]
    pub suites: Option<String>,
    /// With --suites: examples drawn per suite (seeded sample, 0 = all).
    #[arg(long, value_parser = super::bounded(0..=runner::MAX_LIMIT))]
    pub limit: Option<usize>,
    /// With --suites: seed of the example sample.
    #[arg(long)]
    pub seed: Option<u64>,
    #[command(flatten)]
    pub opts: PerfOpts,
    #[command(flatten)]
    pub paths: Paths,
}

/// Examples drawn per suite when `--limit` is not given.
const DEFAULT_LIMIT: usize = 32;
/// Seed of the example sample when `--seed` is not given (as `run`).
const DEFAULT_SEED: u64 = 1234;

/// Prompts per domain drawn from the suites `selector` names: each suite's
/// examples, a seeded sample of `limit`, rendered as evaluation requests
/// render them (few-shot demonstrations included); within a domain the
/// suites take turns, so the first queries already cover all of them.
/// Returns the sets, the source to record, and the prompts each suite gave.
#[allow(clippy::type_complexity)]
fn suite_prompts(
    paths: &super::Paths,
    selector: &str,
    limit: usize,
    seed: u64,
) -> Result<
    (
        Vec<(String, Vec<String>)>,
        PromptSource,
        BTreeMap<String, BTreeMap<String, usize>>,
    ),
    Failure,
> {
    let registry = paths.registry()?;
    let selected = super::select(&registry, selector, "--suites")?;
    let root = paths.data();
    let mut sets = Vec::new();
    let mut counts = BTreeMap::new();
    let mut hashes = BTreeMap::new();
    let mut skipped = BTreeMap::new();
    for domain in Domain::ALL {
        let mut lists: Vec<Vec<String>> = Vec::new();
        let mut per_suite = BTreeMap::new();
        for spec in selected.iter().filter(|s| s.domain == domain) {
            let mut files = match data::locate(spec, &root).map_err(bad_input)? {
                data::DataStatus::Missing(m) => {
                    eprintln!(
                        "perf: skipping suite `{}` ({domain}): missing: {m}",
                        spec.id
                    );
                    skipped.insert(spec.id.clone(), format!("missing: {m}"));
                    continue;
                }
                data::DataStatus::Found(f) => f,
            };
            files.extend(data::locate_fewshot(spec, &root).map_err(bad_input)?);
            let mut hashed = Vec::new();
            for f in &files {
                hashed.push(DataFile {
                    path: f.display().to_string(),
                    sha256: edgebench::util::hash::sha256_file(f)
                        .map_err(|e| failed(anyhow::anyhow!("{}: {e}", f.display())))?,
                });
            }
            let all = data::load_examples(spec, &root).map_err(bad_input)?;
            let mut pool = data::load_fewshot(spec, &root).map_err(bad_input)?;
            if pool.is_empty() && spec.fewshot.k > 0 {
                pool = all.clone();
            }
            let prompts: Vec<String> = runner::sample(all, limit, seed)
                .iter()
                .map(|ex| request::prompt(spec, ex, &pool))
                .collect();
            hashes.insert(spec.id.clone(), hashed);
            per_suite.insert(spec.id.clone(), prompts.len());
            lists.push(prompts);
        }
        if lists.is_empty() {
            if selected.iter().any(|s| s.domain == domain) {
                eprintln!(
                    "perf: skipping domain `{domain}`: none of its selected suites has data under {}",
                    root.display()
                );
            }
            continue;
        }
        let longest = lists.iter().map(Vec::len).max().unwrap_or(0);
        let mut interleaved = Vec::new();
        for i in 0..longest {
            interleaved.extend(lists.iter().filter_map(|l| l.get(i).cloned()));
        }
        sets.push((domain.as_str().to_string(), interleaved));
        counts.insert(domain.as_str().to_string(), per_suite);
    }
    if sets.is_empty() {
        let (first, why) = skipped
            .iter()
            .next()
            .map_or(("", ""), |(s, w)| (s.as_str(), w.as_str()));
        return Err(bad_input(anyhow::anyhow!(
            "--suites {selector}: none of the {} selected suite(s) has data under {} (first: {first}: {why}); pass --data-dir",
            selected.len(),
            root.display()
        )));
    }
    let source = PromptSource::Suites {
        data_dir: root.display().to_string(),
        selector: selector.to_string(),
        seed,
        limit_per_suite: limit,
        data_hashes: hashes,
        skipped,
    };
    Ok((sets, source, counts))
}

fn secs(s: f64, flag: &str) -> Result<Duration, Failure> {
    Duration::try_from_secs_f64(s).map_err(|_| {
        bad_input(anyhow::anyhow!(
            "{flag}: {s} is not a valid number of seconds"
        ))
    })
}

pub fn perf(a: PerfArgs, runtime: &edgebench::runtime::RuntimeOptions) -> Result<(), Failure> {
    if let Some(id) = &a.run_id {
        edgebench::record::check_run_id(id).map_err(bad_input)?;
    }
    let o = &a.opts;
    let power = match o.power.as_str() {
        "auto" => PowerChoice::Auto {
            sysfs_root: o.sysfs_root.clone(),
            idle: secs(o.idle_s, "--idle-s")?,
        },
        "off" => PowerChoice::Off,
        path => {
            let p = PathBuf::from(path);
            if !p.is_file() {
                return Err(bad_input(anyhow::anyhow!(
                    "--power: {path} is neither auto, off nor a meter CSV log file"
                )));
            }
            PowerChoice::MeterLog(p)
        }
    };
    let devices_dir = super::fallback(&o.devices_dir, "devices");
    let cfg = PerfConfig {
        settings: PerfSettings {
            warmup_queries: o.warmup,
            min_queries: o.min_queries,
            min_duration: secs(o.min_duration, "--min-duration")?,
            max_queries: o.max_queries,
            max_duration: Some(secs(o.max_duration, "--max-duration")?),
        },
        prompt_tokens: o.prompt_tokens,
        gen_tokens: o.gen_tokens,
        power,
        devices_dir: devices_dir.is_dir().then_some(devices_dir),
        git_hash: super::GIT_HASH.map(String::from),
    };
    cfg.settings.validate().map_err(bad_input)?;
    if a.suites.is_none() && (a.limit.is_some() || a.seed.is_some()) {
        return Err(bad_input(anyhow::anyhow!(
            "--limit and --seed choose examples of --suites; pass --suites"
        )));
    }
    let domain_sets = a
        .suites
        .as_deref()
        .map(|sel| {
            suite_prompts(
                &a.paths,
                sel,
                a.limit.unwrap_or(DEFAULT_LIMIT),
                a.seed.unwrap_or(DEFAULT_SEED),
            )
        })
        .transpose()?;
    let cache = a.paths.out.join("models");
    let t = Instant::now();
    let mut m = model::load(&a.model, &cache, runtime).map_err(bad_input)?;
    let ready = t.elapsed();
    let graph = model::graph_path(&a.model, &cache);
    let (report, samples) = match domain_sets {
        None => {
            let prompts = perf::prompts_from(model::tiny::CORPUS, 64, o.prompt_tokens * 8);
            perf::measure(m.as_mut(), graph.as_deref(), ready, &prompts, &cfg).map_err(failed)?
        }
        Some((sets, source, counts)) => {
            let (mut report, samples) =
                perf::measure_domains(m.as_mut(), graph.as_deref(), ready, &sets, source, &cfg)
                    .map_err(failed)?;
            for (domain, suites) in counts {
                if let Some(d) = report.summary.domains.get_mut(&domain) {
                    d.suites = suites;
                }
            }
            (report, samples)
        }
    };
    let id = a.run_id.clone().unwrap_or_else(|| {
        format!(
            "perf-{}-{}",
            report.model.name,
            edgebench::runner::now_utc().1.replace([':', '-'], "")
        )
    });
    let dir = edgebench::record::RunDir::new(&a.paths.out, &id)
        .map_err(bad_input)?
        .root;
    std::fs::create_dir_all(&dir).map_err(failed)?;
    let json = serde_json::to_string_pretty(&report).map_err(failed)?;
    std::fs::write(dir.join("perf.json"), json).map_err(failed)?;
    let lines: Vec<String> = samples
        .iter()
        .map(|s| serde_json::to_string(s).expect("timings serialise"))
        .collect();
    std::fs::write(dir.join("perf-samples.jsonl"), lines.join("\n") + "\n").map_err(failed)?;
    let table = perf::render(&report);
    std::fs::write(dir.join("perf.md"), &table).map_err(failed)?;
    print!("{table}");
    println!("\nwrote {}", dir.join("perf.json").display());
    if !report.validity.valid {
        return Err(failed(anyhow::anyhow!(
            "performance run INVALID: {}",
            report.validity.reasons.join("; ")
        )));
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct DevicesArgs {
    #[command(subcommand)]
    pub command: DevicesCommand,
    /// Folder of device profiles.
    #[arg(long, default_value = "devices", global = true)]
    pub devices_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum DevicesCommand {
    /// The paper's devices and this machine.
    List,
    /// One profile in full (`host` for this machine).
    Show { id: String },
}

pub fn devices(a: DevicesArgs) -> Result<(), Failure> {
    let dir = super::fallback(&a.devices_dir, "devices");
    let host = Host::detect();
    let all = profile::list(&dir, &host, &HostMeasurements::default()).map_err(bad_input)?;
    match a.command {
        DevicesCommand::List => {
            println!("| id | name | RAM | peak compute | memory bandwidth | power envelope |\n|---|---|---|---|---|---|");
            for d in &all {
                let unit = d.fastest_unit();
                println!(
                    "| {} | {} | {} | {} | {} | {} |",
                    d.id,
                    d.name,
                    d.ram_bytes.get().map_or("unknown".into(), |b| format!(
                        "{:.1} GiB",
                        b as f64 / (1u64 << 30) as f64
                    )),
                    unit.and_then(|u| u.peak_flops.get().map(|f| format!(
                        "{:.1} GFLOP/s ({})",
                        f / 1e9,
                        u.name
                    )))
                    .unwrap_or_else(|| "unknown".into()),
                    d.memory_bandwidth_bytes_per_s
                        .get()
                        .map_or("unknown".into(), |b| format!("{:.1} GB/s", b / 1e9)),
                    d.power_envelope_w
                        .get()
                        .map_or("unknown".into(), |w| format!("{w} W")),
                );
            }
            println!("\nPaper devices are profiles (projections from them are estimated); `host` is this machine.");
            Ok(())
        }
        DevicesCommand::Show { id } => {
            let d = all.iter().find(|d| d.id == id).ok_or_else(|| {
                bad_input(anyhow::anyhow!(
                    "unknown device `{id}`; known: {}",
                    all.iter()
                        .map(|d| d.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
            println!("{}", serde_json::to_string_pretty(d).map_err(failed)?);
            Ok(())
        }
    }
}
