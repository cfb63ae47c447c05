//! Per-example records and the run directory: `reports/runs/<run-id>/` holds
//! `run.json` (the manifest) and `records/<suite>.jsonl`, appended one line per
//! example and flushed, so an interrupted run resumes without repeating or
//! losing an example.

use crate::data::Gold;
use crate::fit::Truncation;
use crate::request::{Call, Reply, Strategy};
use edgebench_runtime::model::ModelInfo;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Errors reading or writing a run directory.
#[derive(Debug, Error)]
pub enum RecordError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: malformed record: {message}")]
    Malformed {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// A `run.json` or `plan.json` that cannot be used.
    #[error("{path}: {message}")]
    Manifest { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
    /// Another process holds the run's writer lock.
    #[error("{0}")]
    Busy(String),
}

impl RecordError {
    /// Whether the error is bad input (a malformed or misused run folder,
    /// exit 2) rather than a failure to read or write (exit 1).
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, RecordError::Io { .. })
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Folder inside a run holding the suite files it was run with.
pub const SUITE_SNAPSHOT: &str = "suites";

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RecordError + '_ {
    move |source| RecordError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One evaluated example: what was asked, what the model answered, the gold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Suite id.
    pub suite: String,
    /// Example id (unique within the suite).
    pub example_id: String,
    /// sha256 of the serialised calls (detects a changed prompt on resume).
    pub prompt_hash: String,
    /// How the example was served.
    pub strategy: Strategy,
    /// The calls sent to the model.
    pub calls: Vec<Call>,
    /// The model's replies, one per call.
    pub replies: Vec<Reply>,
    /// Choices / label words the replies refer to.
    pub choices: Vec<String>,
    /// Gold answer.
    pub gold: Gold,
    /// Per-example scores (filled by the metrics stage; recomputed by `rescore`).
    #[serde(default)]
    pub scores: BTreeMap<String, f64>,
    /// Prompt tokens (sum over calls).
    pub prompt_tokens: usize,
    /// Generated or scored continuation tokens.
    pub output_tokens: usize,
    /// Wall time of the example (fitting its calls to the context, the
    /// model's answers, counting tokens), milliseconds.
    pub latency_ms: f64,
    /// Bytes cut from the example's texts before prompting (`data::MAX_TEXT_BYTES`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub truncated_bytes: usize,
    /// Tokens cut from the end of the example's document to fit the model's
    /// context ([`crate::fit`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub truncated_tokens: usize,
    /// Time inside the model's forward passes, milliseconds (the rest of
    /// `latency_ms` is the harness: tokenising, scoring, bookkeeping);
    /// `None` when the model does not measure it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_ms: Option<f64>,
    /// GEM's per-token routing decisions, one string of pathway ids (`0`-`7`
    /// the domains in `gem::config::DOMAINS` order, `8` general) per forward pass.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<String>,
    /// The example's group (the suite's `group_by`), scored apart beside the whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

impl Record {
    /// A record for `example` with its calls and replies; scores are filled by the metrics stage.
    pub fn new(
        suite: &str,
        example: &crate::data::Example,
        strategy: Strategy,
        calls: Vec<Call>,
        replies: Vec<Reply>,
    ) -> Self {
        Record {
            suite: suite.to_string(),
            example_id: example.id.clone(),
            prompt_hash: crate::request::prompt_hash(&calls),
            strategy,
            calls,
            replies,
            choices: example.choices.clone(),
            gold: example.gold.clone(),
            scores: BTreeMap::new(),
            prompt_tokens: 0,
            output_tokens: 0,
            latency_ms: 0.0,
            truncated_bytes: example.truncated_bytes,
            truncated_tokens: 0,
            model_ms: None,
            routes: Vec::new(),
            group: example.group.clone(),
        }
    }
}

impl Record {
    /// Checks what scoring relies on: one reply per call answering it with
    /// finite numbers, and a gold answer inside the choices. The message
    /// names the field.
    pub fn check(&self) -> Result<(), String> {
        if crate::request::prompt_hash(&self.calls) != self.prompt_hash {
            return Err("field `prompt_hash` does not match the record's calls".into());
        }
        if self.replies.len() != self.calls.len() {
            return Err(format!(
                "field `replies`: {} replies for {} calls",
                self.replies.len(),
                self.calls.len()
            ));
        }
        for (i, (c, r)) in self.calls.iter().zip(&self.replies).enumerate() {
            r.check(c)
                .map_err(|e| format!("field `replies[{i}]`: {e}"))?;
        }
        let n = self.choices.len();
        let out_of_range = |i: usize| {
            Err(format!(
                "field `gold`: index {i} is outside the {n} choices"
            ))
        };
        match &self.gold {
            // a `MaybeIndex` counts candidates, which may outnumber the choices
            Gold::Index { index } if *index >= n => out_of_range(*index),
            Gold::Indices { indices } => match indices.iter().find(|i| **i >= n) {
                Some(i) => out_of_range(*i),
                None => Ok(()),
            },
            Gold::Number { value } if !value.is_finite() => Err(format!(
                "field `gold`: the number is {value}, not a finite number"
            )),
            _ => Ok(()),
        }
    }
}

/// Status of one suite inside a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum SuiteStatus {
    /// Every selected example has a record.
    Complete { examples: usize },
    /// Started but not finished (interrupted); resume with `--resume`.
    Partial { done: usize, total: usize },
    /// The model lacks a needed capability.
    Unsupported { reason: String },
    /// No data under the data root.
    Missing { reason: String },
    /// The data failed to load.
    Failed { reason: String },
}

/// Hash and location of an input file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileHash {
    pub path: String,
    pub sha256: String,
}

/// Host facts recorded with every run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostInfo {
    pub hostname: String,
    pub os: String,
    pub arch: String,
    pub cpu: String,
    pub cores: usize,
    pub memory_bytes: u64,
}

/// `run.json`: everything needed to reproduce, resume and re-score a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunManifest {
    pub run_id: String,
    pub edgebench_version: String,
    pub git_hash: Option<String>,
    pub created: String,
    pub model: ModelInfo,
    pub data_dir: String,
    pub seed: u64,
    pub limit: Option<usize>,
    pub suites: Vec<String>,
    pub suite_hashes: BTreeMap<String, String>,
    pub data_hashes: BTreeMap<String, Vec<FileHash>>,
    pub status: BTreeMap<String, SuiteStatus>,
    pub host: HostInfo,
    /// `running`, `complete` or `interrupted`.
    pub state: String,
    /// Bootstrap resamples used for confidence intervals.
    pub bootstrap: usize,
    /// How calls longer than the model's context were cut.
    #[serde(default = "Truncation::unrecorded")]
    pub truncation: Truncation,
    /// Device, threads, frequency governor and thermal state of the run.
    #[serde(default)]
    pub provenance: RunProvenance,
    /// sha256 of `plan.json` (the example ids each suite evaluates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_sha256: Option<String>,
    /// Each process that wrote to the run, in order: the start, then every resume.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub legs: Vec<Leg>,
    /// Set when the run is one shard of a split run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<crate::shard::ShardInfo>,
    /// The shard runs a merged run was put together from, in shard order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<String>,
}

/// One process's part of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Leg {
    /// When it started (RFC 3339, UTC).
    pub started: String,
    /// `start`, `resume`, or `new-leg` (a resume with `--force-new-leg`).
    pub kind: String,
    /// Host that ran it.
    pub host: String,
    /// How its model was loaded and run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<edgebench_runtime::RuntimeOptions>,
    /// What a `new-leg` changed against the run as it was (empty otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<String>,
}

/// Where and how a run executed (every figure of a run is tied to it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunProvenance {
    /// Device id: `host` (the machine that ran it).
    pub device: String,
    /// tract matmul threads.
    pub threads: usize,
    /// CPU frequency governor of cpu0, when readable.
    pub governor: Option<String>,
    /// Hottest thermal zone at the start and end of the run, degrees Celsius, when readable.
    pub temperature_start_c: Option<f64>,
    pub temperature_end_c: Option<f64>,
}

impl RunProvenance {
    /// Reads governor and temperature of this machine now, for a run on `threads` threads.
    pub fn now(threads: usize) -> Self {
        use edgebench_device::profile::{read_governor, read_thermal, HostRoots};
        let roots = HostRoots::system();
        RunProvenance {
            device: "host".into(),
            threads,
            governor: read_governor(&roots).value().cloned(),
            temperature_start_c: read_thermal(&roots).value().map(|t| t.max_celsius),
            temperature_end_c: None,
        }
    }

    /// Records the temperature at the end of the run.
    pub fn finish(&mut self) {
        use edgebench_device::profile::{read_thermal, HostRoots};
        self.temperature_end_c = read_thermal(&HostRoots::system())
            .value()
            .map(|t| t.max_celsius);
    }
}

/// Largest number of bootstrap resamples a run may ask for (each resample
/// holds one value per metric and suite; more adds nothing to a 95 % interval).
pub const MAX_BOOTSTRAP: usize = 100_000;

/// Checks that `id` is a run id: one path component of `[A-Za-z0-9._-]`,
/// not `.` or `..`, at most 128 characters.
pub fn check_run_id(id: &str) -> Result<(), RecordError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(RecordError::Invalid(format!(
            "run id `{id}` is not a single name of letters, digits, `.`, `_` and `-` (at most 128 characters)"
        )))
    }
}

/// A suite's records as read from disk, without modifying the file.
#[derive(Debug, Default)]
pub struct RecordFile {
    /// Complete records with their 1-based line numbers.
    pub records: Vec<(usize, Record)>,
    /// Line number of a torn last line (the writer died mid-line), ignored.
    pub torn_line: Option<usize>,
}

/// The plan of a run: the example ids each suite evaluates, fixed when the
/// run starts (`plan.json`).
pub type Plan = BTreeMap<String, Vec<String>>;

/// A run directory on disk.
#[derive(Debug, Clone)]
pub struct RunDir {
    pub root: PathBuf,
}

impl RunDir {
    /// The run directory `<out>/runs/<id>`; `id` must pass [`check_run_id`].
    pub fn new(out: &Path, id: &str) -> Result<Self, RecordError> {
        check_run_id(id)?;
        Ok(RunDir {
            root: out.join("runs").join(id),
        })
    }

    /// Claims a new run directory `<out>/runs/<id>`: created atomically, so
    /// two processes can never start the same run id.
    pub fn create(out: &Path, id: &str) -> Result<Self, RecordError> {
        let dir = RunDir::new(out, id)?;
        let parent = out.join("runs");
        std::fs::create_dir_all(&parent).map_err(io(&parent))?;
        match std::fs::create_dir(&dir.root) {
            Ok(()) => Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(RecordError::Invalid(format!(
                    "{} already exists: choose another --run-id, or continue it with --resume {id}",
                    dir.root.display()
                )))
            }
            Err(e) => Err(io(&dir.root)(e)),
        }
    }

    /// Opens an existing run directory: a run id under `<out>/runs`, or the
    /// path of a folder holding `run.json`.
    pub fn open(out: &Path, id_or_path: &str) -> Result<Self, RecordError> {
        let direct = PathBuf::from(id_or_path);
        let root = if direct.join("run.json").is_file() {
            direct
        } else {
            RunDir::new(out, id_or_path)
                .map_err(|_| {
                    RecordError::Invalid(format!(
                        "{id_or_path}: neither a run id under {}/runs nor a folder holding run.json",
                        out.display()
                    ))
                })?
                .root
        };
        if !root.join("run.json").is_file() {
            return Err(RecordError::Invalid(format!(
                "{}: no run.json here; pass a run id from {}/runs or a run directory",
                root.display(),
                out.display()
            )));
        }
        Ok(RunDir { root })
    }

    /// Takes the run's writer lock (`.lock`, an advisory lock the OS drops
    /// when the process ends, however it ends). A second writer gets an error
    /// naming the holder's process id.
    pub fn lock(&self, command: &str) -> Result<RunLock, RecordError> {
        let path = self.root.join(".lock");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                let holder = holder.trim();
                return Err(RecordError::Busy(format!(
                    "{} is in use by another EdgeBench process ({}); wait for it to finish or stop it",
                    self.root.display(),
                    if holder.is_empty() { "pid unknown" } else { holder }
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&path)(e)),
        }
        file.set_len(0).map_err(io(&path))?;
        write!(file, "pid {} ({command})", std::process::id()).map_err(io(&path))?;
        file.flush().map_err(io(&path))?;
        Ok(RunLock { _file: file })
    }

    /// Path of the manifest.
    pub fn manifest_path(&self) -> PathBuf {
        self.root.join("run.json")
    }

    /// Path of the plan.
    pub fn plan_path(&self) -> PathBuf {
        self.root.join("plan.json")
    }

    /// Path of a suite's records.
    pub fn records_path(&self, suite: &str) -> PathBuf {
        self.root.join("records").join(format!("{suite}.jsonl"))
    }

    /// Writes the manifest atomically (temp file + rename).
    pub fn save_manifest(&self, m: &RunManifest) -> Result<(), RecordError> {
        let text = serde_json::to_string_pretty(m).expect("manifest serialises");
        write_atomic(&self.manifest_path(), text.as_bytes())
    }

    /// Reads the manifest and checks the values later commands rely on.
    pub fn load_manifest(&self) -> Result<RunManifest, RecordError> {
        let path = self.manifest_path();
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let m: RunManifest = serde_json::from_str(&text).map_err(|e| RecordError::Manifest {
            path: path.clone(),
            message: e.to_string(),
        })?;
        if m.bootstrap > MAX_BOOTSTRAP {
            return Err(RecordError::Manifest {
                path,
                message: format!(
                    "field `bootstrap` is {}, above the largest allowed ({MAX_BOOTSTRAP})",
                    m.bootstrap
                ),
            });
        }
        Ok(m)
    }

    /// Writes the plan atomically and returns its sha256.
    pub fn save_plan(&self, plan: &Plan) -> Result<String, RecordError> {
        let text = serde_json::to_string_pretty(plan).expect("plan serialises");
        write_atomic(&self.plan_path(), text.as_bytes())?;
        Ok(sha256_str(&text))
    }

    /// Reads the plan (`None` for runs made before plans were written).
    pub fn load_plan(&self) -> Result<Option<Plan>, RecordError> {
        let path = self.plan_path();
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| RecordError::Manifest {
                path,
                message: e.to_string(),
            })
    }

    /// Reads a suite's records without modifying the file. A torn last line
    /// (the writer died mid-write) is reported in [`RecordFile::torn_line`]
    /// and left out; any other unreadable line is an error.
    pub fn read_records(&self, suite: &str) -> Result<RecordFile, RecordError> {
        let path = self.records_path(suite);
        if !path.exists() {
            return Ok(RecordFile::default());
        }
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let mut out = RecordFile::default();
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        for (i, line) in lines.iter().enumerate() {
            let last = i + 1 == lines.len();
            let parsed = serde_json::from_str::<Record>(line.trim_end())
                .map_err(|e| e.to_string())
                .and_then(|r| r.check().map(|()| r));
            match parsed {
                Ok(r) if line.ends_with('\n') => out.records.push((i + 1, r)),
                _ if last && !line.ends_with('\n') => out.torn_line = Some(i + 1),
                Ok(_) => unreachable!("only the last line can lack its newline"),
                Err(message) => {
                    return Err(RecordError::Malformed {
                        path,
                        line: i + 1,
                        message,
                    })
                }
            }
        }
        Ok(out)
    }

    /// A suite's complete records ([`RunDir::read_records`] without line numbers).
    pub fn load_records(&self, suite: &str) -> Result<Vec<Record>, RecordError> {
        Ok(self
            .read_records(suite)?
            .records
            .into_iter()
            .map(|(_, r)| r)
            .collect())
    }

    /// Cuts a torn last line off a suite's records so appends start on a
    /// clean line; returns the line cut. Only a run's writer calls this.
    pub fn repair_torn_tail(&self, suite: &str) -> Result<Option<usize>, RecordError> {
        let file = self.read_records(suite)?;
        let Some(line) = file.torn_line else {
            return Ok(None);
        };
        let path = self.records_path(suite);
        let text = std::fs::read(&path).map_err(io(&path))?;
        let keep = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        f.set_len(keep as u64).map_err(io(&path))?;
        f.sync_data().map_err(io(&path))?;
        Ok(Some(line))
    }

    /// Writes the text a suite was parsed from into the run's snapshot;
    /// returns its sha256.
    pub fn snapshot_suite(&self, id: &str, text: &str) -> Result<String, RecordError> {
        let target = self.root.join(SUITE_SNAPSHOT).join(format!("{id}.toml"));
        write_atomic(&target, text.as_bytes())?;
        Ok(edgebench_util::hash::sha256_bytes(text.as_bytes()))
    }

    /// Moves `drop` to `records/superseded/leg<leg>-<suite>.jsonl` and
    /// leaves `keep` as the suite's records (a new leg of a resumed run).
    pub fn supersede_records(
        &self,
        suite: &str,
        leg: usize,
        keep: &[Record],
        drop: &[Record],
    ) -> Result<(), RecordError> {
        let lines = |rs: &[Record]| {
            rs.iter()
                .map(|r| serde_json::to_string(r).expect("record serialises") + "\n")
                .collect::<String>()
        };
        let aside = self
            .root
            .join("records")
            .join("superseded")
            .join(format!("leg{leg}-{suite}.jsonl"));
        write_atomic(&aside, lines(drop).as_bytes())?;
        write_atomic(&self.records_path(suite), lines(keep).as_bytes())
    }

    /// Opens a suite's record file for appending.
    pub fn appender(&self, suite: &str) -> Result<Appender, RecordError> {
        let path = self.records_path(suite);
        let dir = path.parent().expect("records dir");
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        Ok(Appender { file, path })
    }
}

/// The writer lock of a run directory, held until dropped.
#[derive(Debug)]
pub struct RunLock {
    _file: std::fs::File,
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a
/// reader sees the old or the new content, never a part.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), RecordError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_data().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Appends records, one JSON line each, flushed and synced per record.
pub struct Appender {
    file: std::fs::File,
    path: PathBuf,
}

impl Appender {
    /// Appends one record durably.
    pub fn append(&mut self, r: &Record) -> Result<(), RecordError> {
        let mut line = serde_json::to_string(r).expect("record serialises");
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .map_err(io(&self.path))?;
        self.file.flush().map_err(io(&self.path))?;
        self.file.sync_data().map_err(io(&self.path))
    }
}

/// sha256 of a file's bytes, hex.
pub fn sha256_file(path: &Path) -> Result<String, RecordError> {
    edgebench_util::hash::sha256_file(path).map_err(io(path))
}

pub use edgebench_util::hash::sha256_str;
