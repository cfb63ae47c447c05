//! Per-example records and the run directory: `reports/runs/<run-id>/` holds
//! `run.json` (the manifest) and `records/<suite>.jsonl`, appended one line per
//! example and flushed, so an interrupted run resumes without repeating or
//! losing an example.

use crate::data::Gold;
use crate::model::ModelInfo;
use crate::request::{Call, Reply, Strategy};
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
    #[error("{0}")]
    Invalid(String),
}

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
    /// Wall time of the model calls, milliseconds.
    pub latency_ms: f64,
    /// GEM's per-token routing decisions, one string of pathway ids (`0`-`7`
    /// the domains in `gem::config::DOMAINS` order, `8` general) per forward pass.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<String>,
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
            prompt_hash: sha256_str(&serde_json::to_string(&calls).expect("calls serialise")),
            strategy,
            calls,
            replies,
            choices: example.choices.clone(),
            gold: example.gold.clone(),
            scores: BTreeMap::new(),
            prompt_tokens: 0,
            output_tokens: 0,
            latency_ms: 0.0,
            routes: Vec::new(),
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
    /// Device, threads, frequency governor and thermal state of the run.
    #[serde(default)]
    pub provenance: RunProvenance,
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
    /// Reads governor and temperature of this machine now.
    pub fn now() -> Self {
        use crate::device::profile::{read_governor, read_thermal, HostRoots};
        let roots = HostRoots::system();
        RunProvenance {
            device: "host".into(),
            threads: crate::model::threads(),
            governor: read_governor(&roots).value().cloned(),
            temperature_start_c: read_thermal(&roots).value().map(|t| t.max_celsius),
            temperature_end_c: None,
        }
    }

    /// Records the temperature at the end of the run.
    pub fn finish(&mut self) {
        use crate::device::profile::{read_thermal, HostRoots};
        self.temperature_end_c = read_thermal(&HostRoots::system())
            .value()
            .map(|t| t.max_celsius);
    }
}

/// A run directory on disk.
#[derive(Debug, Clone)]
pub struct RunDir {
    pub root: PathBuf,
}

impl RunDir {
    /// The run directory `<out>/runs/<id>`.
    pub fn new(out: &Path, id: &str) -> Self {
        RunDir {
            root: out.join("runs").join(id),
        }
    }

    /// Opens an existing run directory (a path or `<out>/runs/<id>`).
    pub fn open(out: &Path, id_or_path: &str) -> Result<Self, RecordError> {
        let direct = PathBuf::from(id_or_path);
        let root = if direct.join("run.json").is_file() {
            direct
        } else {
            out.join("runs").join(id_or_path)
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

    /// Path of the manifest.
    pub fn manifest_path(&self) -> PathBuf {
        self.root.join("run.json")
    }

    /// Path of a suite's records.
    pub fn records_path(&self, suite: &str) -> PathBuf {
        self.root.join("records").join(format!("{suite}.jsonl"))
    }

    /// Writes the manifest atomically (temp file + rename).
    pub fn save_manifest(&self, m: &RunManifest) -> Result<(), RecordError> {
        std::fs::create_dir_all(&self.root).map_err(io(&self.root))?;
        let path = self.manifest_path();
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(m).expect("manifest serialises");
        std::fs::write(&tmp, text).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))
    }

    /// Reads the manifest.
    pub fn load_manifest(&self) -> Result<RunManifest, RecordError> {
        let path = self.manifest_path();
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        serde_json::from_str(&text).map_err(|e| RecordError::Malformed {
            path,
            line: e.line(),
            message: e.to_string(),
        })
    }

    /// Reads a suite's records. A torn last line (the process died mid-write)
    /// is dropped and the file truncated to the last complete record.
    pub fn load_records(&self, suite: &str) -> Result<Vec<Record>, RecordError> {
        let path = self.records_path(suite);
        if !path.exists() {
            return Ok(vec![]);
        }
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let mut out = Vec::new();
        let mut good_bytes = 0usize;
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        for (i, line) in lines.iter().enumerate() {
            let complete = line.ends_with('\n');
            match serde_json::from_str::<Record>(line.trim_end()) {
                Ok(r) if complete => {
                    out.push(r);
                    good_bytes += line.len();
                }
                _ if i + 1 == lines.len() => {
                    // torn tail: cut it off so appends start on a clean line
                    let f = std::fs::OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(io(&path))?;
                    f.set_len(good_bytes as u64).map_err(io(&path))?;
                    break;
                }
                Err(e) => {
                    return Err(RecordError::Malformed {
                        path,
                        line: i + 1,
                        message: e.to_string(),
                    })
                }
                Ok(_) => unreachable!("complete is false only on the last line"),
            }
        }
        Ok(out)
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

    /// Rewrites a suite's records (used by `rescore` to refresh per-example scores).
    pub fn rewrite_records(&self, suite: &str, records: &[Record]) -> Result<(), RecordError> {
        let path = self.records_path(suite);
        let tmp = path.with_extension("jsonl.tmp");
        let mut text = String::new();
        for r in records {
            text.push_str(&serde_json::to_string(r).expect("record serialises"));
            text.push('\n');
        }
        std::fs::write(&tmp, text).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))
    }
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
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).map_err(io(path))?;
    Ok(hex::encode(Sha256::digest(bytes)))
}

/// sha256 of a string, hex.
pub fn sha256_str(s: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(s.as_bytes()))
}
