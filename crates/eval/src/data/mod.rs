//! Data: resolve a suite's files under a data root, read them in their
//! original layout, and turn records into [`Example`]s.

pub mod adapters;
pub mod explode;
pub mod labelled;
pub mod path;
pub mod read;

use crate::suite::spec::{FileFormat, SuiteSpec};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// A data problem, located in a file and line (or record).
#[derive(Debug, Error)]
#[error("{}: {message}", self.place())]
pub struct DataError {
    /// File at fault.
    pub file: PathBuf,
    /// 1-based line or record (0 = whole file).
    pub line: usize,
    /// `line` counts records (JSON, Parquet), not lines.
    pub record: bool,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl DataError {
    /// An error at `file:line`.
    pub fn at(file: &Path, line: usize, message: impl Into<String>) -> Self {
        DataError {
            file: file.to_path_buf(),
            line,
            record: false,
            message: message.into(),
        }
    }

    /// `file:line`, `file: record N`, or `file` for the whole file.
    pub fn place(&self) -> String {
        match (self.line, self.record) {
            (0, _) => self.file.display().to_string(),
            (n, true) => format!("{}: record {n}", self.file.display()),
            (n, false) => format!("{}:{n}", self.file.display()),
        }
    }
}

/// The suite file of `spec` as data errors name it.
pub fn suite_file(spec: &SuiteSpec) -> String {
    if spec.file.as_os_str().is_empty() {
        format!("suites/{}.toml", spec.id)
    } else {
        spec.file.display().to_string()
    }
}

/// The gold answer of an example, by task kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Gold {
    /// Index into the choices (multiple choice) or labels (classification).
    Index { index: usize },
    /// Optional index into the candidates (TyDi passage selection: `None` =
    /// no passage answers). The choices show the first candidates and then
    /// "none", so a gold candidate past them is a valid gold that no
    /// prediction can match, as in TyDi's own scoring.
    MaybeIndex { index: Option<usize> },
    /// Label indices (multi-label).
    Indices { indices: Vec<usize> },
    /// Acceptable answer texts (QA, summaries, responses).
    Texts { texts: Vec<String> },
    /// A numeric answer.
    Number { value: f64 },
    /// QA answers read per record: any one alternative counts, and each
    /// alternative is one text or a set of spans that must all be given; a
    /// text may be a number, written in the record's `scale`.
    Answers {
        alternatives: Vec<Vec<String>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scale: Option<String>,
    },
    /// One tag per token.
    Tags {
        tokens: Vec<String>,
        tags: Vec<String>,
    },
    /// (head, relation, tail) triples.
    Triples {
        triples: Vec<(String, String, String)>,
    },
    /// Coreference clusters of mention strings.
    Clusters { clusters: Vec<Vec<String>> },
    /// Nothing to compare against: the text itself is scored (perplexity).
    Text { text: String },
    /// Retrieval: this item's key and the key of its gold partner, if any.
    Bitext {
        key: String,
        lang: String,
        partner: Option<String>,
    },
    /// Retrieval with the pair inside the example (Tatoeba).
    Pair { source: String, target: String },
}

/// One evaluation item, ready for prompting.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Example {
    /// Stable id (from the data, or derived from it).
    pub id: String,
    /// Template variables.
    pub vars: BTreeMap<String, String>,
    /// Choices (multiple choice) or candidates.
    pub choices: Vec<String>,
    /// Gold answer.
    pub gold: Gold,
    /// Bytes cut from its texts by [`MAX_TEXT_BYTES`] (0 when nothing was cut).
    #[serde(default)]
    pub truncated_bytes: usize,
    /// Its group under the suite's `group_by` (`None` when the suite has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// Longest text, in bytes, that one field of an example keeps (1 MiB). A
/// longer field is cut at a character boundary before any tokeniser sees it,
/// and the cut is counted in [`Example::truncated_bytes`]; documents this
/// long exceed every supported model's context many times over.
pub const MAX_TEXT_BYTES: usize = 1 << 20;

/// Where a suite's data stands under a data root.
#[derive(Debug, Clone, PartialEq)]
pub enum DataStatus {
    /// Files found.
    Found(Vec<PathBuf>),
    /// Nothing found; the message says which files to put where.
    Missing(String),
}

/// Finds the evaluation files of `spec` under `root`. Every file must be a
/// regular file inside the data root (symbolic links are followed and must
/// stay inside it).
pub fn locate(spec: &SuiteSpec, root: &Path) -> Result<DataStatus, DataError> {
    locate_pattern(spec, root, &spec.data.eval, "data.eval")
}

fn locate_pattern(
    spec: &SuiteSpec,
    root: &Path,
    pattern: &str,
    field: &str,
) -> Result<DataStatus, DataError> {
    let dir = root.join(&spec.data.dir);
    let pat = dir.join(pattern);
    let mut files: Vec<PathBuf> = glob::glob(&pat.to_string_lossy())
        .map(|g| g.filter_map(Result::ok).collect())
        .unwrap_or_default();
    files.sort();
    if files.is_empty() {
        let how = match spec.data.access {
            crate::suite::spec::Access::Credentialed => {
                " (credentialed data: obtain it from its provider and bring your own copy)"
            }
            crate::suite::spec::Access::Public => "",
        };
        return Ok(DataStatus::Missing(format!(
            "put {pattern} under {}{how}",
            dir.display()
        )));
    }
    let canonical_root = root
        .canonicalize()
        .map_err(|e| DataError::at(root, 0, format!("cannot resolve the data directory: {e}")))?;
    for f in &files {
        let real = f.canonicalize().map_err(|e| {
            DataError::at(
                f,
                0,
                format!("cannot resolve (a broken symbolic link?): {e}"),
            )
        })?;
        if !real.starts_with(&canonical_root) {
            return Err(DataError::at(
                f,
                0,
                format!(
                    "suite `{}` field `{field}` reaches {} outside the data directory {}",
                    spec.id,
                    real.display(),
                    canonical_root.display()
                ),
            ));
        }
        if !real.is_file() {
            return Err(DataError::at(
                f,
                0,
                format!(
                    "suite `{}` field `{field}` matches {}, which is not a regular file",
                    spec.id,
                    real.display()
                ),
            ));
        }
    }
    Ok(DataStatus::Found(files))
}

/// The few-shot files of `spec` under `root` (none when it names no pool or
/// the pool is absent), checked like [`locate`]'s.
pub fn locate_fewshot(spec: &SuiteSpec, root: &Path) -> Result<Vec<PathBuf>, DataError> {
    match &spec.data.fewshot {
        Some(p) => match locate_pattern(spec, root, p, "data.fewshot")? {
            DataStatus::Found(files) => Ok(files),
            DataStatus::Missing(_) => Ok(vec![]),
        },
        None => Ok(vec![]),
    }
}

/// Loads the evaluation examples of `spec` from `root`.
pub fn load_examples(spec: &SuiteSpec, root: &Path) -> Result<Vec<Example>, DataError> {
    load_split(spec, root, &spec.data.eval, "data.eval")
}

/// Loads the few-shot pool of `spec` (empty when the suite names none or it is absent).
pub fn load_fewshot(spec: &SuiteSpec, root: &Path) -> Result<Vec<Example>, DataError> {
    match &spec.data.fewshot {
        Some(p) => match locate_pattern(spec, root, p, "data.fewshot")? {
            DataStatus::Found(_) => load_split(spec, root, p, "data.fewshot"),
            DataStatus::Missing(_) => Ok(vec![]),
        },
        None => Ok(vec![]),
    }
}

fn load_split(
    spec: &SuiteSpec,
    root: &Path,
    pattern: &str,
    field: &str,
) -> Result<Vec<Example>, DataError> {
    let files = match locate_pattern(spec, root, pattern, field)? {
        DataStatus::Found(f) => f,
        DataStatus::Missing(m) => {
            return Err(DataError::at(
                &root.join(&spec.data.dir),
                0,
                format!("missing data: {m}"),
            ))
        }
    };
    let mut rows = Vec::new();
    for f in &files {
        let read = match spec.data.format {
            FileFormat::Conll => read::read_conll(f, &spec.data.conll)?,
            format => read::read_rows(f, format, spec.data.records_path.as_deref())?,
        };
        if read.is_empty() {
            return Err(DataError::at(
                f,
                0,
                format!(
                    "no record in this file (suite `{}` in {}, field `{field}`)",
                    spec.id,
                    suite_file(spec)
                ),
            ));
        }
        rows.extend(read);
    }
    if let Some(path) = &spec.data.explode {
        rows = explode::explode(rows, path, |r| adapters::record_id(spec, r))?;
    }
    let mut examples = adapters::adapt(spec, &rows, root)?;
    if examples.is_empty() {
        return Err(DataError::at(
            &files[0],
            0,
            format!(
                "{} record(s) read but no example made of them: check the file against [fields] of suite `{}` in {}",
                rows.len(),
                spec.id,
                suite_file(spec)
            ),
        ));
    }
    // the `fields` adapter makes one example per row, so each id has a place
    let one_per_row = spec.data.adapter == "fields" && examples.len() == rows.len();
    let mut seen = std::collections::HashMap::new();
    for (i, e) in examples.iter().enumerate() {
        if let Some(first) = seen.insert(e.id.as_str(), i) {
            let why =
                "ids must be unique across the suite's files (records and --resume key on them)";
            return Err(if one_per_row {
                rows[i].error(format!(
                    "duplicate example id `{}`, first made at {}; {why}",
                    e.id,
                    rows[first].place()
                ))
            } else {
                DataError::at(
                    &files[0],
                    0,
                    format!(
                        "duplicate example id `{}` (examples {} and {} of suite `{}`); {why}",
                        e.id,
                        first + 1,
                        i + 1,
                        spec.id
                    ),
                )
            });
        }
    }
    for e in &mut examples {
        cap_texts(e);
    }
    Ok(examples)
}

/// Cuts each text of `e` to [`MAX_TEXT_BYTES`] and counts what was cut.
fn cap_texts(e: &mut Example) {
    let mut cut = 0;
    for t in e.vars.values_mut().chain(e.choices.iter_mut()) {
        if t.len() > MAX_TEXT_BYTES {
            let mut end = MAX_TEXT_BYTES;
            while !t.is_char_boundary(end) {
                end -= 1;
            }
            cut += t.len() - end;
            t.truncate(end);
        }
    }
    e.truncated_bytes += cut;
}
