//! The run loop: suites -> examples -> requests -> model -> records.
//!
//! A run is fixed when it starts: `run.json` records its settings, the suite
//! files are copied into the run and `plan.json` lists the example ids each
//! suite evaluates. A resume continues exactly that run: the settings come
//! from `run.json`, the data and suite files must hash as they did, and every
//! existing record must be of a planned example with the prompt the run would
//! build for it. Scoring and reporting happen afterwards, from the folder alone.

use crate::data::{self, DataStatus, Example};
use crate::fit::{Fitted, Truncation};
use crate::record::{
    sha256_file, FileHash, HostInfo, Leg, Plan, Record, RecordError, RunDir, RunLock, RunManifest,
    SuiteStatus, MAX_BOOTSTRAP, SUITE_SNAPSHOT,
};
use crate::request::{self, Reply, Strategy};
use crate::shard::{self, Shard, ShardInfo, ShardPlan};
use crate::suite::spec::SuiteSpec;
use crate::suite::{Registry, SuiteError};
use edgebench_runtime::model::{Model, ModelError};
use edgebench_runtime::RuntimeOptions;
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;
use thiserror::Error;

/// Largest `--limit` (examples per suite).
pub const MAX_LIMIT: usize = 10_000_000;

/// Errors of a run.
#[derive(Debug, Error)]
pub enum RunError {
    /// Data that does not load.
    #[error(transparent)]
    Data(#[from] data::DataError),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(transparent)]
    Suite(#[from] SuiteError),
    /// Settings that cannot run, or a resume that does not match its run.
    #[error("{0}")]
    Mismatch(String),
    /// The model named by the run cannot be loaded.
    #[error("model `{spec}`: {source}")]
    LoadModel {
        spec: String,
        #[source]
        source: ModelError,
    },
    #[error("model failed on suite `{suite}`, example `{example}`: {source}")]
    Model {
        suite: String,
        example: String,
        #[source]
        source: ModelError,
    },
}

impl RunError {
    /// Whether the error is bad input (exit 2) rather than a failure of the run (exit 1).
    pub fn is_bad_input(&self) -> bool {
        match self {
            RunError::Data(_)
            | RunError::Suite(_)
            | RunError::Mismatch(_)
            | RunError::LoadModel { .. } => true,
            RunError::Record(e) => e.is_bad_input(),
            RunError::Model { .. } => false,
        }
    }
}

/// What a run evaluates: fixed when it starts, recorded in `run.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `--model` as given (`builtin:tiny`, a model directory, `hf:...`).
    pub model: String,
    /// Suite ids, in run order.
    pub suites: Vec<String>,
    /// Data root.
    pub data_dir: PathBuf,
    /// Examples per suite (`None`: each suite's default; 0 = all).
    pub limit: Option<usize>,
    /// Seed of the example sample, the few-shot draws and the bootstrap.
    pub seed: u64,
    /// Bootstrap resamples of the intervals.
    pub bootstrap: usize,
    /// How calls longer than the model's context are cut.
    pub truncation: Truncation,
    /// The shard of a split run this run evaluates (`None`: all of it).
    pub shard: Option<Shard>,
    /// A run folder whose unit times balance the split (`None`: estimated tokens).
    pub costs_from: Option<PathBuf>,
}

impl Settings {
    /// Checks the bounds of the numeric settings.
    pub fn check(&self) -> Result<(), RunError> {
        if self.bootstrap > MAX_BOOTSTRAP {
            return Err(RunError::Mismatch(format!(
                "--bootstrap {} is above the largest allowed ({MAX_BOOTSTRAP})",
                self.bootstrap
            )));
        }
        if let Some(l) = self.limit.filter(|l| *l > MAX_LIMIT) {
            return Err(RunError::Mismatch(format!(
                "--limit {l} is above the largest allowed ({MAX_LIMIT}); 0 means every example"
            )));
        }
        if !self.data_dir.is_dir() {
            return Err(RunError::Mismatch(format!(
                "data directory {} does not exist (--data-dir or $EDGEBENCH_DATA)",
                self.data_dir.display()
            )));
        }
        Ok(())
    }

    fn of(m: &RunManifest) -> Settings {
        Settings {
            model: m.model.source.clone(),
            suites: m.suites.clone(),
            data_dir: PathBuf::from(&m.data_dir),
            limit: m.limit,
            seed: m.seed,
            bootstrap: m.bootstrap,
            truncation: m.truncation,
            shard: m.shard.as_ref().map(|s| Shard {
                index: s.index,
                count: s.count,
            }),
            costs_from: None,
        }
    }
}

/// The settings a resuming command gave explicitly (`None`: not given).
#[derive(Debug, Clone, Default)]
pub struct Requested {
    pub model: Option<String>,
    /// Suite ids resolved from `--suites`.
    pub suites: Option<Vec<String>>,
    pub data_dir: Option<PathBuf>,
    pub limit: Option<usize>,
    pub seed: Option<u64>,
    pub bootstrap: Option<usize>,
    /// Suites given on the command line (`--suites-dir`, `--suite-file`):
    /// taken instead of the run's snapshot, and must hash as the run's do.
    pub sources: Option<Registry>,
}

/// How a run executes (nothing here changes what it evaluates).
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Hide progress bars.
    pub quiet: bool,
    /// Stop after this many new examples (for tests of interruption).
    pub stop_after: Option<usize>,
    /// Sleep this long after each example (for tests that kill a run mid-way).
    pub throttle_ms: u64,
    /// The git commit of the build that runs, recorded in `run.json`.
    pub git_hash: Option<String>,
    /// How a resumed run's model is loaded and run (a new run's model
    /// arrives loaded).
    pub runtime: RuntimeOptions,
}

/// A suite with its examples, ready to run.
pub struct Prepared<'a> {
    pub spec: &'a SuiteSpec,
    /// Set when the suite is not evaluated (missing data, unsupported task).
    pub status: Option<SuiteStatus>,
    /// The planned examples, in file order.
    pub examples: Vec<Example>,
    pub pool: Vec<Example>,
    pub files: Vec<FileHash>,
    /// How the model serves it (`None` when not evaluated).
    pub strategy: Option<Strategy>,
}

impl Prepared<'_> {
    /// The requests of `ex`, as this run builds them, fitted to `model`'s context.
    pub(crate) fn calls(
        &self,
        ex: &Example,
        model: &dyn Model,
        truncation: Truncation,
    ) -> Result<Fitted, ModelError> {
        let strategy = self.strategy.expect("only evaluated suites build calls");
        crate::fit::fit(self.spec, strategy, ex, &self.pool, model, truncation)
    }
}

/// Loads the data of every suite up front, so bad input fails before any
/// model call. A suite whose data does not load is marked failed (with the
/// file and line) and the others go on; only when no suite can run and one
/// failed is its error returned.
pub fn prepare<'a>(
    suites: &[&'a SuiteSpec],
    settings: &Settings,
    model: &dyn Model,
) -> Result<Vec<Prepared<'a>>, RunError> {
    let mut out = Vec::new();
    let mut failures = Vec::new();
    for &spec in suites {
        let mut p = Prepared {
            spec,
            status: None,
            examples: vec![],
            pool: vec![],
            files: vec![],
            strategy: None,
        };
        match prepare_one(&mut p, settings, model) {
            Ok(()) => {}
            Err(RunError::Data(e)) => {
                p.status = Some(SuiteStatus::Failed {
                    reason: e.to_string(),
                });
                (p.examples, p.pool, p.strategy) = (vec![], vec![], None);
                failures.push(e);
            }
            Err(e) => return Err(e),
        }
        out.push(p);
    }
    let runnable = out.iter().any(|p| {
        !matches!(
            p.status,
            Some(SuiteStatus::Missing { .. } | SuiteStatus::Failed { .. })
        )
    });
    if !out.is_empty() && !runnable {
        if let Some(e) = failures.into_iter().next() {
            return Err(RunError::Data(e));
        }
        return Err(RunError::Mismatch(format!(
            "none of the {} selected suite(s) has data under {} (first: {}); pass --data-dir",
            out.len(),
            settings.data_dir.display(),
            match &out[0].status {
                Some(SuiteStatus::Missing { reason }) => format!("{}: {reason}", out[0].spec.id),
                _ => String::new(),
            }
        )));
    }
    Ok(out)
}

/// Locates, hashes and loads one suite's data into `p`.
fn prepare_one(
    p: &mut Prepared<'_>,
    settings: &Settings,
    model: &dyn Model,
) -> Result<(), RunError> {
    let spec = p.spec;
    let caps = model.info().capabilities;
    {
        match data::locate(spec, &settings.data_dir)? {
            DataStatus::Missing(m) => p.status = Some(SuiteStatus::Missing { reason: m }),
            DataStatus::Found(mut files) => {
                // the few-shot pool shapes prompts too: hash it with the evaluation files
                files.extend(data::locate_fewshot(spec, &settings.data_dir)?);
                for f in &files {
                    p.files.push(FileHash {
                        path: f.display().to_string(),
                        sha256: sha256_file(f)?,
                    });
                }
                let all = data::load_examples(spec, &settings.data_dir)?;
                let limit = settings.limit.unwrap_or(spec.limit);
                // Retrieval files are the candidate pool: never cut them.
                p.examples = if spec.task == crate::suite::spec::TaskKind::Retrieval {
                    all.clone()
                } else {
                    sample(all.clone(), limit, settings.seed)
                };
                p.pool = data::load_fewshot(spec, &settings.data_dir)?;
                if p.pool.is_empty() && spec.fewshot.k > 0 {
                    // lm-eval: without a few-shot split, draw from the evaluation split (never the item itself)
                    p.pool = all;
                }
                match request::strategy(spec, &caps) {
                    Ok(s) => p.strategy = Some(s),
                    Err(reason) => {
                        p.status = Some(SuiteStatus::Unsupported {
                            reason: format!("unsupported by {}: {reason}", model.info().name),
                        })
                    }
                }
            }
        }
    }
    Ok(())
}

/// The example ids each evaluated suite plans to run.
pub fn plan_of(prepared: &[Prepared<'_>]) -> Plan {
    prepared
        .iter()
        .filter(|p| p.status.is_none())
        .map(|p| {
            (
                p.spec.id.clone(),
                p.examples.iter().map(|e| e.id.clone()).collect(),
            )
        })
        .collect()
}

/// Starts a new run: claims its folder, writes `run.json`, the suite
/// snapshot and `plan.json`, then evaluates. `specs` come from `suites`,
/// whose texts are snapshotted.
pub fn start(
    out: &Path,
    id: Option<&str>,
    settings: &Settings,
    specs: &[&SuiteSpec],
    suites: &Registry,
    model: &mut dyn Model,
    opts: &Options,
) -> Result<(RunDir, RunLock), RunError> {
    settings.check()?;
    let mut settings = settings.clone();
    settings.data_dir = settings
        .data_dir
        .canonicalize()
        .unwrap_or(settings.data_dir);
    let mut prepared = prepare(specs, &settings, model)?;
    let split = match settings.shard {
        Some(s) => Some(split_for(&mut prepared, model, &settings, s)?),
        None => None,
    };
    let info = model.info().clone();
    let (stamp, created) = now_utc();
    let mut id = id.map_or_else(|| format!("{stamp}-{}", info.name), String::from);
    if let Some(s) = settings.shard {
        id = format!("{id}-{}", s.suffix());
    }
    let dir = RunDir::create(out, &id)?;
    let lock = dir.lock("run")?;
    let shard = match (&split, settings.shard) {
        (Some(plan), Some(s)) => Some(save_split(&dir, plan, s)?),
        _ => None,
    };
    let mut suite_hashes = BTreeMap::new();
    for s in specs {
        let entry = suites.get(&s.id).ok_or_else(|| {
            RunError::Mismatch(format!("suite `{}` is not in the registry given", s.id))
        })?;
        suite_hashes.insert(s.id.clone(), dir.snapshot_suite(&s.id, &entry.text)?);
    }
    let plan = plan_of(&prepared);
    let mut manifest = RunManifest {
        run_id: id,
        edgebench_version: env!("CARGO_PKG_VERSION").into(),
        git_hash: opts.git_hash.clone(),
        created: created.clone(),
        model: info,
        data_dir: settings.data_dir.display().to_string(),
        seed: settings.seed,
        limit: settings.limit,
        suites: settings.suites.clone(),
        suite_hashes,
        data_hashes: prepared
            .iter()
            .map(|p| (p.spec.id.clone(), p.files.clone()))
            .collect(),
        status: BTreeMap::new(),
        host: host_info(),
        state: "running".into(),
        bootstrap: settings.bootstrap,
        truncation: settings.truncation,
        provenance: crate::record::RunProvenance::now(threads_of(model)),
        plan_sha256: Some(dir.save_plan(&plan)?),
        legs: vec![leg(created, "start", model, vec![])],
        shard,
        merged_from: vec![],
    };
    dir.save_manifest(&manifest)?;
    execute(&dir, &mut manifest, &prepared, model, opts)?;
    Ok((dir, lock))
}

/// Splits the run into `shard.count` shards and keeps shard `shard.index`'s
/// examples in `prepared`.
fn split_for(
    prepared: &mut [Prepared<'_>],
    model: &dyn Model,
    settings: &Settings,
    shard: Shard,
) -> Result<ShardPlan, RunError> {
    let measured = match &settings.costs_from {
        Some(p) => Some(shard::Measured::of_run(&RunDir { root: p.clone() })?),
        None => None,
    };
    let plan = shard::split(
        prepared,
        model,
        settings.truncation,
        shard.count,
        measured.as_ref(),
    )?;
    shard::restrict(prepared, &plan, shard.index);
    Ok(plan)
}

/// Writes the split into the shard's folder; returns what `run.json` records.
fn save_split(dir: &RunDir, plan: &ShardPlan, s: Shard) -> Result<ShardInfo, RunError> {
    let (text, hash) = plan.to_json();
    crate::record::write_atomic(&dir.root.join(shard::SHARD_PLAN_FILE), text.as_bytes())?;
    Ok(ShardInfo {
        index: s.index,
        count: s.count,
        plan_sha256: hash,
    })
}

fn leg(started: String, kind: &str, model: &dyn Model, changes: Vec<String>) -> Leg {
    Leg {
        started,
        kind: kind.into(),
        host: host_info().hostname,
        runtime: model.info().runtime,
        changes,
    }
}

/// Threads the model runs with (1 when it does not say).
fn threads_of(model: &dyn Model) -> usize {
    model.info().runtime.map_or(1, |r| r.threads)
}

/// Differences between a run's settings and what a resuming command gave.
fn differences(m: &RunManifest, r: &Requested) -> Vec<String> {
    let mut d = Vec::new();
    let mut flag = |name: &str, run: String, given: Option<String>| {
        if let Some(g) = given.filter(|g| *g != run) {
            d.push(format!("{name}: the run has {run}, this command gives {g}"));
        }
    };
    flag("--model", m.model.source.clone(), r.model.clone());
    flag(
        "--suites",
        m.suites.join(","),
        r.suites.as_ref().map(|s| s.join(",")),
    );
    let show_limit = |l: Option<usize>| l.map_or("the suites' defaults".into(), |l| l.to_string());
    flag(
        "--limit",
        show_limit(m.limit),
        r.limit.map(|l| show_limit(Some(l))),
    );
    flag("--seed", m.seed.to_string(), r.seed.map(|s| s.to_string()));
    flag(
        "--bootstrap",
        m.bootstrap.to_string(),
        r.bootstrap.map(|b| b.to_string()),
    );
    let canon = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    if let Some(g) = &r.data_dir {
        if canon(g) != canon(Path::new(&m.data_dir)) {
            d.push(format!(
                "--data-dir: the run has {}, this command gives {}",
                m.data_dir,
                g.display()
            ));
        }
    }
    d
}

/// Continues the run `id` under `out` with the settings its `run.json`
/// records. Flags that differ from them are refused, naming each difference,
/// unless `force_new_leg`: then the run takes the command's settings from
/// here on, records a new leg with what changed, and keeps only the records
/// the new settings would have produced (the others are moved to
/// `records/superseded/`, not deleted).
pub fn resume(
    out: &Path,
    id: &str,
    requested: &Requested,
    force_new_leg: bool,
    model_cache: &Path,
    opts: &Options,
) -> Result<(RunDir, RunLock), RunError> {
    let dir = RunDir::open(out, id)?;
    let lock = dir.lock("run --resume")?;
    let mut manifest = dir.load_manifest()?;
    let mut changes = differences(&manifest, requested);
    // suite files: the run's snapshot, unless the command gives suites
    let wanted = requested
        .suites
        .clone()
        .filter(|_| force_new_leg)
        .unwrap_or_else(|| manifest.suites.clone());
    let snapshot = dir.root.join(SUITE_SNAPSHOT);
    let mut owned = Vec::new();
    for sid in &wanted {
        let (text, path, label) = match &requested.sources {
            Some(reg) => {
                if let Some(e) = reg.broken_file_of(sid) {
                    return Err(RunError::Suite(e.clone()));
                }
                let e = reg.get(sid).ok_or_else(|| {
                    RunError::Mismatch(format!(
                        "suite `{sid}` is not among the suites this command gives"
                    ))
                })?;
                let path = match &e.source {
                    crate::suite::Source::File(p) => p.clone(),
                    crate::suite::Source::BuiltIn(name) => Path::new("suites").join(name),
                };
                (e.text.clone(), path, e.source.to_string())
            }
            None => {
                let path = snapshot.join(format!("{sid}.toml"));
                if !path.is_file() {
                    return Err(RunError::Mismatch(format!(
                        "suite `{sid}`: {} does not exist (a suite new to the run needs --suites-dir or --suite-file)",
                        path.display(),
                    )));
                }
                let text = std::fs::read_to_string(&path).map_err(|e| SuiteError {
                    path: path.clone(),
                    message: format!("cannot read: {e}"),
                })?;
                let label = path.display().to_string();
                (text, path, label)
            }
        };
        let hash = edgebench_util::hash::sha256_bytes(text.as_bytes());
        if manifest.suite_hashes.get(sid).is_some_and(|h| *h != hash) {
            changes.push(format!(
                "suite file {label}: changed since the run started (sha256 {} -> {})",
                short(&manifest.suite_hashes[sid]),
                short(&hash)
            ));
        }
        owned.push((crate::suite::parse(&text, &path)?, text));
    }
    let refuse = |changes: &[String]| {
        RunError::Mismatch(format!(
            "run {} was started with other settings or inputs:\n  - {}\nresume without these flags to continue the run as it was, start a new run, or pass --force-new-leg to continue with this command's settings (recorded as a new leg)",
            manifest.run_id,
            changes.join("\n  - ")
        ))
    };
    if !changes.is_empty() && !force_new_leg {
        return Err(refuse(&changes));
    }
    let mut settings = Settings::of(&manifest);
    if force_new_leg {
        settings = Settings {
            model: requested.model.clone().unwrap_or(settings.model),
            suites: wanted.clone(),
            data_dir: requested.data_dir.clone().unwrap_or(settings.data_dir),
            limit: requested.limit.or(settings.limit),
            seed: requested.seed.unwrap_or(settings.seed),
            bootstrap: requested.bootstrap.unwrap_or(settings.bootstrap),
            truncation: settings.truncation,
            shard: None,
            costs_from: None,
        };
    }
    settings.check()?;
    let mut model = edgebench_runtime::model::load(&settings.model, model_cache, &opts.runtime)
        .map_err(|source| RunError::LoadModel {
            spec: settings.model.clone(),
            source,
        })?;
    let info = model.info().clone();
    if info.sha256 != manifest.model.sha256 {
        return Err(RunError::Mismatch(format!(
            "run {} was made with model {} (sha256 {}), and `{}` is {} ({}): a run holds one model; start a new run",
            manifest.run_id,
            manifest.model.name,
            short(&manifest.model.sha256),
            settings.model,
            info.name,
            short(&info.sha256)
        )));
    }
    let specs: Vec<&SuiteSpec> = owned.iter().map(|(s, _)| s).collect();
    let mut prepared = prepare(&specs, &settings, model.as_ref())?;
    // a shard continues its stored split, which must still be the run's plan
    if let Some(info) = &manifest.shard {
        if force_new_leg {
            return Err(RunError::Mismatch(format!(
                "run {} is shard {}/{} of a split run: it cannot take a new leg, or its shards would no longer be of one run; start a new split",
                manifest.run_id, info.index, info.count
            )));
        }
        let split = ShardPlan::load(&dir, info)?;
        if split.plan != plan_of(&prepared) {
            changes.push(format!(
                "plan: the examples to evaluate are not the ones the split in {} holds",
                shard::SHARD_PLAN_FILE
            ));
        }
        shard::restrict(&mut prepared, &split, info.index);
    }
    // a suite whose data failed to load may have had it fixed: it joins the plan now
    let failed: HashSet<String> = manifest
        .status
        .iter()
        .filter(|(_, s)| matches!(s, SuiteStatus::Failed { .. }))
        .map(|(id, _)| id.clone())
        .collect();
    let failed_before = |sid: &str| failed.contains(sid);
    for p in &prepared {
        let before = manifest.data_hashes.get(&p.spec.id);
        if !failed_before(&p.spec.id)
            && before.is_some_and(|b| {
                b.iter()
                    .map(|f| &f.sha256)
                    .ne(p.files.iter().map(|f| &f.sha256))
            })
        {
            changes.push(format!(
                "data of suite `{}`: {} changed since the run started",
                p.spec.id,
                p.files
                    .iter()
                    .map(|f| f.path.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    let plan = plan_of(&prepared);
    let stored = dir.load_plan()?;
    if let Some(stored) = &stored {
        for (sid, ids) in &plan {
            if stored.get(sid).is_some_and(|s| s != ids) {
                changes.push(format!(
                    "plan of suite `{sid}`: the examples to evaluate are not the ones the run planned"
                ));
            }
        }
    }
    if !changes.is_empty() && !force_new_leg {
        return Err(refuse(&changes));
    }
    let superseded = check_records(
        &dir,
        &prepared,
        model.as_ref(),
        settings.truncation,
        force_new_leg,
        manifest.legs.len(),
    )?;
    if superseded > 0 {
        changes.push(format!(
            "{superseded} record(s) that the new settings would not produce moved to records/superseded/"
        ));
    }
    let (_, now) = now_utc();
    if force_new_leg {
        let mut suite_hashes = BTreeMap::new();
        for (s, text) in &owned {
            suite_hashes.insert(s.id.clone(), dir.snapshot_suite(&s.id, text)?);
        }
        manifest.suites = settings.suites.clone();
        manifest.suite_hashes = suite_hashes;
        manifest.data_hashes = prepared
            .iter()
            .map(|p| (p.spec.id.clone(), p.files.clone()))
            .collect();
        manifest.data_dir = settings
            .data_dir
            .canonicalize()
            .unwrap_or(settings.data_dir.clone())
            .display()
            .to_string();
        manifest.model = info;
        manifest.limit = settings.limit;
        manifest.seed = settings.seed;
        manifest.bootstrap = settings.bootstrap;
        manifest.status.clear();
        manifest.plan_sha256 = Some(dir.save_plan(&plan)?);
        manifest
            .legs
            .push(leg(now, "new-leg", model.as_ref(), changes));
    } else {
        // a run from before plans were written: its plan is the one computed now
        let mut merged = stored.clone().unwrap_or_else(|| plan.clone());
        let mut grown = stored.is_none();
        for p in prepared.iter().filter(|p| failed_before(&p.spec.id)) {
            manifest
                .data_hashes
                .insert(p.spec.id.clone(), p.files.clone());
            if let Some(ids) = plan.get(&p.spec.id) {
                merged.insert(p.spec.id.clone(), ids.clone());
                grown = true;
            }
        }
        if grown {
            manifest.plan_sha256 = Some(dir.save_plan(&merged)?);
        }
        manifest
            .legs
            .push(leg(now, "resume", model.as_ref(), vec![]));
    }
    execute(&dir, &mut manifest, &prepared, model.as_mut(), opts)?;
    Ok((dir, lock))
}

fn short(h: &str) -> &str {
    &h[..h.len().min(12)]
}

/// Checks a resumed run's records against its plan: every record is of a
/// planned example, once, with the prompt this run builds for it. A torn
/// last line is cut off first (only a writer does that). Without
/// `force_new_leg` any other problem is refused; with it, the records that
/// do not fit are moved to `records/superseded/` and the count returned.
fn check_records(
    dir: &RunDir,
    prepared: &[Prepared<'_>],
    model: &dyn Model,
    truncation: Truncation,
    force_new_leg: bool,
    leg: usize,
) -> Result<usize, RunError> {
    let mut moved = 0;
    for p in prepared.iter().filter(|p| p.status.is_none()) {
        let id = &p.spec.id;
        if let Some(line) = dir.repair_torn_tail(id)? {
            eprintln!(
                "note: {}: line {line} was cut short when the run stopped; it is dropped and the example runs again",
                dir.records_path(id).display()
            );
        }
        let file = dir.read_records(id)?;
        let by_id: HashMap<&str, &Example> =
            p.examples.iter().map(|e| (e.id.as_str(), e)).collect();
        let mut seen = HashSet::new();
        let (mut keep, mut drop) = (Vec::new(), Vec::new());
        for (line, r) in file.records {
            let problem = match by_id.get(r.example_id.as_str()) {
                None => Some("is not in the run's plan".to_string()),
                Some(_) if seen.contains(&r.example_id) => {
                    Some("is recorded a second time".to_string())
                }
                Some(ex) => {
                    let fitted =
                        p.calls(ex, model, truncation)
                            .map_err(|source| RunError::Model {
                                suite: id.clone(),
                                example: ex.id.clone(),
                                source,
                            })?;
                    (request::prompt_hash(&fitted.calls) != r.prompt_hash).then(|| {
                        "has a prompt that differs from the one this run builds".to_string()
                    })
                }
            };
            match problem {
                None => {
                    seen.insert(r.example_id.clone());
                    keep.push(r);
                }
                Some(why) if force_new_leg => {
                    let _ = why;
                    drop.push(r);
                }
                Some(why) => {
                    return Err(RunError::Mismatch(format!(
                        "{}:{line}: example `{}` {why}; the records do not belong to this run",
                        dir.records_path(id).display(),
                        r.example_id
                    )))
                }
            }
        }
        if !drop.is_empty() {
            moved += drop.len();
            dir.supersede_records(id, leg, &keep, &drop)?;
        }
    }
    Ok(moved)
}

/// Evaluates every planned example that has no record yet.
fn execute(
    dir: &RunDir,
    manifest: &mut RunManifest,
    prepared: &[Prepared<'_>],
    model: &mut dyn Model,
    opts: &Options,
) -> Result<(), RunError> {
    manifest.state = "running".into();
    dir.save_manifest(manifest)?;
    let mut budget = opts.stop_after;
    for p in prepared {
        let id = &p.spec.id;
        if let Some(s) = &p.status {
            manifest.status.insert(id.clone(), s.clone());
            continue;
        }
        let mut done: HashSet<String> = dir
            .load_records(id)?
            .into_iter()
            .map(|r| r.example_id)
            .collect();
        let total = p.examples.len();
        let bar = if opts.quiet {
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
                dir.save_manifest(manifest)?;
                bar.abandon();
                return Ok(());
            }
            let model_error = |source| RunError::Model {
                suite: id.clone(),
                example: ex.id.clone(),
                source,
            };
            let start = Instant::now();
            model.take_model_time();
            let Fitted {
                calls,
                cut_tokens,
                context_tokens,
            } = p
                .calls(ex, &*model, manifest.truncation)
                .map_err(model_error)?;
            let replies = request::execute_all(model, &calls).map_err(model_error)?;
            for (c, reply) in calls.iter().zip(&replies) {
                reply.check(c).map_err(|e| {
                    model_error(ModelError::Runtime(format!("invalid output: {e}")))
                })?;
            }
            let (prompt_tokens, output_tokens) =
                token_counts(model, &calls, &replies, &context_tokens);
            let latency_ms = start.elapsed().as_secs_f64() * 1e3;
            let model_ms = model.take_model_time().map(|t| t.as_secs_f64() * 1e3);
            let record = Record {
                prompt_tokens,
                output_tokens,
                latency_ms,
                model_ms,
                routes: model.take_routes(),
                truncated_bytes: ex.truncated_bytes,
                truncated_tokens: cut_tokens,
                ..Record::new(id, ex, p.strategy.expect("evaluated"), calls, replies)
            };
            app.append(&record)?;
            done.insert(ex.id.clone());
            bar.inc(1);
            if let Some(b) = budget.as_mut() {
                *b -= 1;
            }
            if opts.throttle_ms > 0 {
                std::thread::sleep(std::time::Duration::from_millis(opts.throttle_ms));
            }
        }
        bar.finish_and_clear();
        manifest
            .status
            .insert(id.clone(), status_of(done.len(), total));
        dir.save_manifest(manifest)?;
    }
    manifest.state = "complete".into();
    manifest.provenance.finish();
    dir.save_manifest(manifest)?;
    Ok(())
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

pub use edgebench_util::time::now_utc;

fn status_of(done: usize, total: usize) -> SuiteStatus {
    if done >= total {
        SuiteStatus::Complete { examples: total }
    } else {
        SuiteStatus::Partial { done, total }
    }
}

/// Prompt and output tokens of an example's calls; `counted` holds the
/// context counts fitting already made.
fn token_counts(
    model: &dyn Model,
    calls: &[request::Call],
    replies: &[Reply],
    counted: &[Option<usize>],
) -> (usize, usize) {
    let mut prompt = 0;
    let mut output = 0;
    for ((c, r), n) in calls.iter().zip(replies).zip(counted) {
        match (c, r) {
            (request::Call::Loglikelihood { context, .. }, Reply::Loglikelihood { results }) => {
                prompt += n.unwrap_or_else(|| model.count_tokens(context).unwrap_or(0));
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
