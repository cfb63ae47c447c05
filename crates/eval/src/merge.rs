//! Puts the shards of a split run back together as one run folder: the
//! shards must be of the same run (model, suites, data, seed, limit and
//! split), every unit of the split must have its records exactly once, and
//! the merged folder holds the whole plan with the records in plan order, so
//! scoring it gives what the same run in one process gives.

use crate::record::{
    Leg, Plan, Record, RecordError, RunDir, RunLock, RunManifest, SuiteStatus, SUITE_SNAPSHOT,
};
use crate::shard::{ShardPlan, SHARD_PLAN_FILE};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use thiserror::Error;

/// Why shards do not merge.
#[derive(Debug, Error)]
pub enum MergeError {
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The folders are not shards of one run, or one is damaged (bad input).
    #[error("{0}")]
    Mismatch(String),
    /// Units of the split have no records (a shard not given or not finished).
    #[error("{0}")]
    Missing(String),
}

impl MergeError {
    /// Whether the error is bad input (exit 2) rather than missing work (exit 1).
    pub fn is_bad_input(&self) -> bool {
        match self {
            MergeError::Record(e) => e.is_bad_input(),
            MergeError::Mismatch(_) => true,
            MergeError::Missing(_) => false,
        }
    }
}

/// A merged run, its folder still locked.
pub struct Merged {
    pub dir: RunDir,
    /// Units of the split without records (only with `allow_partial`).
    pub missing_units: usize,
    /// What is missing, one line per shard.
    pub missing: Vec<String>,
    _lock: RunLock,
}

/// One shard folder, read.
struct ShardRun {
    dir: RunDir,
    manifest: RunManifest,
    index: usize,
    split: ShardPlan,
    /// Records by suite and example id.
    records: HashMap<String, HashMap<String, Record>>,
}

/// Merges `shards` into the new run `id` under `out`. Without
/// `allow_partial`, a unit of the split without records is an error that
/// names it; with it, the merged run is written and marked `incomplete`.
pub fn merge(
    shards: &[RunDir],
    out: &Path,
    id: &str,
    allow_partial: bool,
) -> Result<Merged, MergeError> {
    if shards.is_empty() {
        return Err(MergeError::Mismatch(
            "no shard folders given to merge".into(),
        ));
    }
    let mut runs = shards
        .iter()
        .map(read_shard)
        .collect::<Result<Vec<_>, _>>()?;
    runs.sort_by_key(|r| r.index);
    for w in runs.windows(2) {
        if w[0].index == w[1].index {
            return Err(MergeError::Mismatch(format!(
                "shard {}/{} is given twice: {} and {}",
                w[0].index,
                w[0].manifest.shard.as_ref().map_or(0, |s| s.count),
                w[0].dir.root.display(),
                w[1].dir.root.display()
            )));
        }
    }
    let first = &runs[0];
    for other in &runs[1..] {
        compare(first, other)?;
    }
    let split = &first.split;
    let count = split.count;
    // every unit, from the shard that owns it
    let mut missing: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for u in &split.units {
        let owner = runs.iter().find(|r| r.index == u.shard);
        let has_all = owner.is_some_and(|r| {
            u.examples
                .iter()
                .all(|e| r.records.get(&u.suite).is_some_and(|m| m.contains_key(e)))
        });
        if !has_all {
            missing.entry(u.shard).or_default().push(format!(
                "{}/{}",
                u.suite,
                u.examples.join("+")
            ));
        }
    }
    let lines: Vec<String> = missing
        .iter()
        .map(|(s, units)| {
            let shown: Vec<&str> = units.iter().take(5).map(String::as_str).collect();
            let more = if units.len() > shown.len() {
                ", ..."
            } else {
                ""
            };
            let which = match runs.iter().find(|r| r.index == *s) {
                None => "not given".to_string(),
                Some(r) => format!(
                    "{}, state {}; finish it with `edgebench run --resume {}`",
                    r.dir.root.display(),
                    r.manifest.state,
                    r.manifest.run_id
                ),
            };
            format!(
                "shard {s}/{count} ({which}): {} unit(s) without records: {}{more}",
                units.len(),
                shown.join(", ")
            )
        })
        .collect();
    let missing_units: usize = missing.values().map(Vec::len).sum();
    if missing_units > 0 && !allow_partial {
        return Err(MergeError::Missing(format!(
            "{missing_units} of the split's {} unit(s) have no records:\n  - {}\nmerge again when they do, or pass --allow-partial to write an incomplete run",
            split.units.len(),
            lines.join("\n  - ")
        )));
    }
    let dir = RunDir::create(out, id)?;
    let lock = dir.lock("merge")?;
    let mut manifest = first.manifest.clone();
    for sid in &manifest.suites {
        let from = first
            .dir
            .root
            .join(SUITE_SNAPSHOT)
            .join(format!("{sid}.toml"));
        let text = std::fs::read_to_string(&from)
            .map_err(|e| MergeError::Mismatch(format!("{}: cannot read: {e}", from.display())))?;
        dir.snapshot_suite(sid, &text)?;
    }
    crate::record::write_atomic(
        &dir.root.join(SHARD_PLAN_FILE),
        split.to_json().0.as_bytes(),
    )?;
    let mut status = manifest.status.clone();
    for (sid, ids) in &split.plan {
        let mut lines = String::new();
        let mut done = 0;
        for e in ids {
            if let Some(r) = runs
                .iter()
                .find_map(|r| r.records.get(sid).and_then(|m| m.get(e)))
            {
                lines += &serde_json::to_string(r).expect("record serialises");
                lines.push('\n');
                done += 1;
            }
        }
        crate::record::write_atomic(&dir.records_path(sid), lines.as_bytes())?;
        let s = if done == ids.len() {
            SuiteStatus::Complete { examples: done }
        } else {
            SuiteStatus::Partial {
                done,
                total: ids.len(),
            }
        };
        status.insert(sid.clone(), s);
    }
    let (_, now) = crate::runner::now_utc();
    manifest.run_id = id.to_string();
    manifest.created = runs
        .iter()
        .map(|r| r.manifest.created.clone())
        .min()
        .expect("at least one shard");
    manifest.status = status;
    manifest.state = if missing_units == 0 {
        "complete".into()
    } else {
        "incomplete".into()
    };
    manifest.plan_sha256 = Some(dir.save_plan(&split.plan)?);
    manifest.shard = None;
    manifest.merged_from = runs.iter().map(|r| r.manifest.run_id.clone()).collect();
    manifest.legs = runs
        .iter()
        .flat_map(|r| r.manifest.legs.iter().cloned())
        .chain([Leg {
            started: now,
            kind: "merge".into(),
            host: crate::runner::host_info().hostname,
            runtime: None,
            changes: runs
                .iter()
                .map(|r| format!("shard {}/{count}: run {}", r.index, r.manifest.run_id))
                .collect(),
        }])
        .collect();
    dir.save_manifest(&manifest)?;
    Ok(Merged {
        dir,
        missing_units,
        missing: lines,
        _lock: lock,
    })
}

/// Reads a shard folder: its manifest, split and records, checked against
/// its own plan.
fn read_shard(dir: &RunDir) -> Result<ShardRun, MergeError> {
    let manifest = dir.load_manifest()?;
    let root = dir.root.display();
    let info = manifest.shard.clone().ok_or_else(|| {
        MergeError::Mismatch(format!(
            "{root}: not a shard of a split run (its run.json has no `shard`; start shards with `edgebench run --shard I/N`)"
        ))
    })?;
    let split = ShardPlan::load(dir, &info)?;
    let own: Plan = dir.load_plan()?.unwrap_or_default();
    if own != split.plan_of(info.index) {
        return Err(MergeError::Mismatch(format!(
            "{}: the shard's examples are not the ones its {SHARD_PLAN_FILE} gives shard {}",
            dir.plan_path().display(),
            info.index
        )));
    }
    let mut records = HashMap::new();
    for (sid, ids) in &own {
        let planned: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
        let mut by_id: HashMap<String, Record> = HashMap::new();
        let path = dir.records_path(sid);
        for (line, r) in dir.read_records(sid)?.records {
            if !planned.contains(r.example_id.as_str()) {
                return Err(MergeError::Mismatch(format!(
                    "{}:{line}: example `{}` is not in the shard's plan",
                    path.display(),
                    r.example_id
                )));
            }
            if by_id.contains_key(&r.example_id) {
                return Err(MergeError::Mismatch(format!(
                    "{}:{line}: example `{}` is recorded a second time",
                    path.display(),
                    r.example_id
                )));
            }
            by_id.insert(r.example_id.clone(), r);
        }
        records.insert(sid.clone(), by_id);
    }
    Ok(ShardRun {
        dir: dir.clone(),
        manifest,
        index: info.index,
        split,
        records,
    })
}

/// Refuses two shards that are not of the same run, naming the field.
fn compare(a: &ShardRun, b: &ShardRun) -> Result<(), MergeError> {
    type Field = fn(&RunManifest) -> String;
    let fields: [(&str, Field); 10] = [
        ("model.sha256", |m| m.model.sha256.clone()),
        ("edgebench_version", |m| m.edgebench_version.clone()),
        ("suites", |m| m.suites.join(",")),
        ("suite_hashes", |m| format!("{:?}", m.suite_hashes)),
        ("data_hashes", |m| {
            // the files' bytes, wherever each shard mounted them
            let h: BTreeMap<_, Vec<&str>> = m
                .data_hashes
                .iter()
                .map(|(s, f)| (s, f.iter().map(|f| f.sha256.as_str()).collect()))
                .collect();
            format!("{h:?}")
        }),
        ("seed", |m| m.seed.to_string()),
        ("limit", |m| format!("{:?}", m.limit)),
        ("bootstrap", |m| m.bootstrap.to_string()),
        ("truncation", |m| m.truncation.as_str().to_string()),
        ("shard.plan_sha256", |m| {
            m.shard
                .as_ref()
                .map(|s| format!("{} ({} shards)", s.plan_sha256, s.count))
                .unwrap_or_default()
        }),
    ];
    for (name, get) in fields {
        let (x, y) = (get(&a.manifest), get(&b.manifest));
        if x != y {
            let cut = |s: &str| -> String {
                if s.chars().count() > 80 {
                    format!("{}...", s.chars().take(80).collect::<String>())
                } else {
                    s.to_string()
                }
            };
            return Err(MergeError::Mismatch(format!(
                "the shards are not of one run: field `{name}` of run.json is `{}` in {} and `{}` in {}",
                cut(&x),
                a.dir.manifest_path().display(),
                cut(&y),
                b.dir.manifest_path().display()
            )));
        }
    }
    Ok(())
}
