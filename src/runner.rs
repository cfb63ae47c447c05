//! The run loop: suites -> examples -> requests -> model -> records, with
//! resume. Scoring and reporting happen afterwards, from the records alone.

use crate::data::{self, DataStatus, Example};
use crate::model::Model;
use crate::record::{
    sha256_file, FileHash, HostInfo, Record, RecordError, RunDir, RunManifest, SuiteStatus,
};
use crate::request::{self, Reply};
use crate::suite::spec::SuiteSpec;
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;
use thiserror::Error;

/// Errors of a run.
#[derive(Debug, Error)]
pub enum RunError {
    /// Bad input: data that does not load, a resume that does not match.
    #[error(transparent)]
    Data(#[from] data::DataError),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("{0}")]
    Mismatch(String),
    #[error("model failed on suite `{suite}`, example `{example}`: {source}")]
    Model {
        suite: String,
        example: String,
        #[source]
        source: crate::model::ModelError,
    },
}

/// What to run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Data root.
    pub data_dir: PathBuf,
    /// Output root (`reports/`).
    pub out: PathBuf,
    /// Overrides every suite's default limit (0 = all).
    pub limit: Option<usize>,
    /// Seed recorded in the manifest and used for few-shot draws.
    pub seed: u64,
    /// Continue this run id instead of starting a new one.
    pub resume: Option<String>,
    /// Explicit id for a new run.
    pub run_id: Option<String>,
    /// Hide progress bars.
    pub quiet: bool,
    /// Bootstrap resamples recorded in the manifest.
    pub bootstrap: usize,
    /// Stop after this many new examples (for tests of interruption).
    pub stop_after: Option<usize>,
    /// Sleep this long after each example (for tests that kill a run mid-way).
    pub throttle_ms: u64,
}

/// A suite with its examples, ready to run.
pub struct Prepared<'a> {
    pub spec: &'a SuiteSpec,
    pub status: Option<SuiteStatus>,
    pub examples: Vec<Example>,
    pub pool: Vec<Example>,
    pub files: Vec<FileHash>,
}

/// Loads the data of every suite up front, so bad input fails before any model call.
pub fn prepare<'a>(
    suites: &[&'a SuiteSpec],
    cfg: &RunConfig,
    model: &dyn Model,
) -> Result<Vec<Prepared<'a>>, RunError> {
    let caps = model.info().capabilities;
    let mut out = Vec::new();
    for &spec in suites {
        let mut p = Prepared {
            spec,
            status: None,
            examples: vec![],
            pool: vec![],
            files: vec![],
        };
        match data::locate(spec, &cfg.data_dir) {
            DataStatus::Missing(m) => p.status = Some(SuiteStatus::Missing { reason: m }),
            DataStatus::Found(files) => {
                for f in &files {
                    p.files.push(FileHash {
                        path: f.display().to_string(),
                        sha256: sha256_file(f)?,
                    });
                }
                let all = data::load_examples(spec, &cfg.data_dir)?;
                let ex = all.clone();
                let limit = cfg.limit.unwrap_or(spec.limit);
                // Retrieval files are the candidate pool: never cut them.
                let ex = if spec.task == crate::suite::spec::TaskKind::Retrieval {
                    ex
                } else {
                    sample(ex, limit, cfg.seed)
                };
                p.pool = data::load_fewshot(spec, &cfg.data_dir)?;
                if p.pool.is_empty() && spec.fewshot.k > 0 {
                    // lm-eval: without a few-shot split, draw from the evaluation split (never the item itself)
                    p.pool = all.clone();
                }
                p.examples = ex;
                if let Err(reason) = request::strategy(spec, &caps) {
                    p.status = Some(SuiteStatus::Unsupported {
                        reason: format!("unsupported by {}: {reason}", model.info().name),
                    });
                }
            }
        }
        out.push(p);
    }
    Ok(out)
}

/// A seeded sample of `limit` examples (0 = all), kept in file order. Many
/// files are sorted by label or language, so the first N would be biased.
pub fn sample(examples: Vec<Example>, limit: usize, seed: u64) -> Vec<Example> {
    use rand::seq::index;
    use rand::SeedableRng;
    if limit == 0 || limit >= examples.len() {
        return examples;
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut keep: Vec<usize> = index::sample(&mut rng, examples.len(), limit).into_vec();
    keep.sort_unstable();
    let mut it = keep.into_iter().peekable();
    examples
        .into_iter()
        .enumerate()
        .filter_map(|(i, e)| {
            (it.peek() == Some(&i)).then(|| {
                it.next();
                e
            })
        })
        .collect()
}

/// Host facts from sysinfo.
pub fn host_info() -> HostInfo {
    let mut sys = sysinfo::System::new();
    sys.refresh_cpu_all();
    sys.refresh_memory();
    HostInfo {
        hostname: sysinfo::System::host_name().unwrap_or_default(),
        os: sysinfo::System::long_os_version().unwrap_or_else(|| std::env::consts::OS.to_string()),
        arch: std::env::consts::ARCH.to_string(),
        cpu: sys
            .cpus()
            .first()
            .map(|c| c.brand().trim().to_string())
            .unwrap_or_default(),
        cores: sys.cpus().len(),
        memory_bytes: sys.total_memory(),
    }
}

/// UTC timestamp `YYYYMMDD-HHMMSS` and RFC 3339 form.
pub fn now_utc() -> (String, String) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // civil-from-days (Howard Hinnant's algorithm)
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    let (hh, mm, ss) = (rem / 3600, rem % 3600 / 60, rem % 60);
    (
        format!("{y:04}{m:02}{d:02}-{hh:02}{mm:02}{ss:02}"),
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z"),
    )
}

fn status_of(done: usize, total: usize) -> SuiteStatus {
    if done >= total {
        SuiteStatus::Complete { examples: total }
    } else {
        SuiteStatus::Partial { done, total }
    }
}

/// Runs (or resumes) an evaluation and returns its directory.
pub fn run(
    prepared: &[Prepared<'_>],
    cfg: &RunConfig,
    model: &mut dyn Model,
    suites_dir: &Path,
) -> Result<RunDir, RunError> {
    let (stamp, created) = now_utc();
    let info = model.info().clone();
    let (dir, mut manifest) = match &cfg.resume {
        Some(id) => {
            let dir = RunDir::open(&cfg.out, id)?;
            let m = dir.load_manifest()?;
            if m.model.sha256 != info.sha256 {
                return Err(RunError::Mismatch(format!(
                    "run {} was made with model {} (sha256 {}), not {} ({}): resume with the same model",
                    m.run_id, m.model.name, m.model.sha256, info.name, info.sha256
                )));
            }
            (dir, m)
        }
        None => {
            let id = cfg
                .run_id
                .clone()
                .unwrap_or_else(|| format!("{stamp}-{}", info.name));
            let dir = RunDir::new(&cfg.out, &id);
            if dir.manifest_path().exists() {
                return Err(RunError::Mismatch(format!(
                    "{} already exists: choose another --run-id or pass --resume {id}",
                    dir.root.display()
                )));
            }
            let m = RunManifest {
                run_id: id,
                edgebench_version: env!("CARGO_PKG_VERSION").into(),
                git_hash: option_env!("EDGEBENCH_GIT_HASH").map(String::from),
                created,
                model: info.clone(),
                data_dir: cfg.data_dir.display().to_string(),
                seed: cfg.seed,
                limit: cfg.limit,
                suites: vec![],
                suite_hashes: BTreeMap::new(),
                data_hashes: BTreeMap::new(),
                status: BTreeMap::new(),
                host: host_info(),
                state: "running".into(),
                bootstrap: cfg.bootstrap,
                provenance: crate::record::RunProvenance::now(),
            };
            (dir, m)
        }
    };
    for p in prepared {
        let id = &p.spec.id;
        let suite_hash = sha256_file(&suites_dir.join(format!("{id}.toml"))).unwrap_or_default();
        if let Some(old) = manifest.suite_hashes.get(id) {
            if cfg.resume.is_some() && *old != suite_hash {
                return Err(RunError::Mismatch(format!(
                    "suites/{id}.toml changed since run {} started: start a new run",
                    manifest.run_id
                )));
            }
        }
        if !manifest.suites.contains(id) {
            manifest.suites.push(id.clone());
        }
        manifest.suite_hashes.insert(id.clone(), suite_hash);
        manifest.data_hashes.insert(id.clone(), p.files.clone());
    }
    manifest.state = "running".into();
    dir.save_manifest(&manifest)?;

    let mut budget = cfg.stop_after;
    for p in prepared {
        let id = &p.spec.id;
        if let Some(s) = &p.status {
            manifest.status.insert(id.clone(), s.clone());
            continue;
        }
        let strategy =
            request::strategy(p.spec, &model.info().capabilities).expect("checked in prepare");
        let existing = dir.load_records(id)?;
        let wanted: HashSet<&str> = p.examples.iter().map(|e| e.id.as_str()).collect();
        let mut done: HashSet<String> = HashSet::new();
        for r in &existing {
            if wanted.contains(r.example_id.as_str()) {
                done.insert(r.example_id.clone());
            }
        }
        let total = p.examples.len();
        let bar = if cfg.quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(total as u64)
        };
        bar.set_style(
            ProgressStyle::with_template("{prefix:>28} [{bar:30}] {pos}/{len} eta {eta}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(id.clone());
        bar.set_position(done.len() as u64);
        let mut app = dir.appender(id)?;
        for ex in &p.examples {
            if done.contains(&ex.id) {
                continue;
            }
            if budget == Some(0) {
                manifest
                    .status
                    .insert(id.clone(), status_of(done.len(), total));
                manifest.state = "interrupted".into();
                dir.save_manifest(&manifest)?;
                bar.abandon();
                return Ok(dir);
            }
            let calls = request::build(p.spec, strategy, ex, &p.pool);
            let start = Instant::now();
            let mut replies = Vec::with_capacity(calls.len());
            for c in &calls {
                replies.push(
                    request::execute(model, c).map_err(|source| RunError::Model {
                        suite: id.clone(),
                        example: ex.id.clone(),
                        source,
                    })?,
                );
            }
            let latency_ms = start.elapsed().as_secs_f64() * 1e3;
            let (prompt_tokens, output_tokens) = token_counts(model, &calls, &replies);
            let record = Record {
                prompt_tokens,
                output_tokens,
                latency_ms,
                routes: model.take_routes(),
                ..Record::new(id, ex, strategy, calls, replies)
            };
            app.append(&record)?;
            done.insert(ex.id.clone());
            bar.inc(1);
            if let Some(b) = budget.as_mut() {
                *b -= 1;
            }
            if cfg.throttle_ms > 0 {
                std::thread::sleep(std::time::Duration::from_millis(cfg.throttle_ms));
            }
        }
        bar.finish_and_clear();
        manifest
            .status
            .insert(id.clone(), status_of(done.len(), total));
        dir.save_manifest(&manifest)?;
    }
    manifest.state = "complete".into();
    manifest.provenance.finish();
    dir.save_manifest(&manifest)?;
    Ok(dir)
}

fn token_counts(model: &dyn Model, calls: &[request::Call], replies: &[Reply]) -> (usize, usize) {
    let mut prompt = 0;
    let mut output = 0;
    for (c, r) in calls.iter().zip(replies) {
        match (c, r) {
            (request::Call::Loglikelihood { context, .. }, Reply::Loglikelihood { results }) => {
                prompt += model.count_tokens(context).unwrap_or(0);
                output += results.iter().map(|x| x.tokens).sum::<usize>();
            }
            (_, Reply::Generate { generation }) => {
                prompt += generation.prompt_tokens;
                output += generation.tokens;
            }
            (_, Reply::Rolling { rolling }) => prompt += rolling.tokens,
            (request::Call::Embed { texts }, _) => {
                prompt += texts
                    .iter()
                    .map(|t| model.count_tokens(t).unwrap_or(0))
                    .sum::<usize>()
            }
            _ => {}
        }
    }
    (prompt, output)
}
