//! Adapters: records in a dataset's original layout -> [`Example`]s.
//!
//! The default `fields` adapter follows the suite's `[fields]` mapping; the
//! named adapters handle layouts a mapping cannot express (one example per
//! dialogue turn, byte offsets, joins across files, ...). This module holds
//! the dispatch and the helpers the adapters share; each dataset family has
//! its own file.

mod bitext;
mod clinical;
mod dialogue;
mod fields;
mod qa;
mod scierc;

pub use fields::parse_lettered;

use super::path::{get, to_list, to_text};
use super::read::Row;
use super::{explode, suite_file, DataError, Example};
use crate::suite::spec::SuiteSpec;
use serde_json::Value;
use std::path::Path;

/// Named adapters and the template variables each provides.
pub const ADAPTERS: &[(&str, &[&str])] = &[
    ("fields", &[]),
    ("dailydialog", &["history", "utterance"]),
    ("personachat", &["persona", "history", "message"]),
    ("personachat_txt", &["persona", "history", "message"]),
    ("scierc", &["tokens", "sentence", "document"]),
    ("tydiqa", &["question", "passages", "context", "language"]),
    ("tatoeba", &["source", "target", "lang"]),
    ("bucc", &["sentence", "lang"]),
    ("finqa", &["context", "question"]),
    ("mimic_diagnosis", &["text"]),
];

type Res<T> = Result<T, DataError>;

fn missing(spec: &SuiteSpec, row: &Row, path: &str, what: &str) -> DataError {
    row.error(format!(
        "missing field `{path}` ({what} of suite `{}`); check the file against [fields] of {}",
        spec.id,
        suite_file(spec)
    ))
}

fn req(spec: &SuiteSpec, row: &Row, path: &str, what: &str) -> Res<Value> {
    match get(&row.value, path) {
        Some(Value::Null) | None => Err(missing(spec, row, path, what)),
        Some(v) => Ok(v),
    }
}

fn opt_str<'a>(spec: &'a SuiteSpec, key: &str) -> Option<&'a str> {
    spec.fields.options.get(key).and_then(|v| v.as_str())
}

fn opt_int(spec: &SuiteSpec, key: &str, default: usize) -> usize {
    spec.fields
        .options
        .get(key)
        .and_then(|v| v.as_integer())
        .map(|v| v.max(0) as usize)
        .unwrap_or(default)
}

/// The label words a classification-like example is scored over.
fn words(spec: &SuiteSpec, values: &[String]) -> Vec<String> {
    if spec.labels.words.is_empty() {
        values.to_vec()
    } else {
        spec.labels.words.clone()
    }
}

/// Effective label values: declared, or collected from the gold labels of `rows`.
fn label_values(spec: &SuiteSpec, rows: &[Row]) -> Vec<String> {
    if !spec.labels.from_data {
        return spec.labels.values.clone();
    }
    let path = spec.fields.answer.as_deref().unwrap_or("label");
    let mut set = std::collections::BTreeSet::new();
    for r in rows {
        if let Some(v) = get(&r.value, path) {
            for l in to_list(&v) {
                set.insert(l);
            }
        }
    }
    set.into_iter().collect()
}

fn label_index(spec: &SuiteSpec, row: &Row, values: &[String], v: &str) -> Res<usize> {
    values.iter().position(|x| x == v).ok_or_else(|| {
        row.error(format!(
            "label `{v}` is not in [labels].values of suite `{}` ({}); add it or fix the data",
            spec.id,
            values.join(", ")
        ))
    })
}

/// Converts `rows` into examples following the suite's adapter.
pub fn adapt(spec: &SuiteSpec, rows: &[Row], root: &Path) -> Res<Vec<Example>> {
    let values = label_values(spec, rows);
    match spec.data.adapter.as_str() {
        "fields" => rows
            .iter()
            .map(|r| grouped(spec, r, fields::fields(spec, r, &values)?))
            .collect(),
        "dailydialog" => dialogue::dailydialog(spec, rows, &values),
        "personachat" => dialogue::personachat(spec, rows),
        "personachat_txt" => dialogue::personachat_txt(spec, rows),
        "scierc" => scierc::scierc(spec, rows),
        "tydiqa" => qa::tydiqa(spec, rows),
        "tatoeba" => rows
            .iter()
            .map(|r| grouped(spec, r, bitext::tatoeba(spec, r)?))
            .collect(),
        "bucc" => rows
            .iter()
            .map(|r| grouped(spec, r, bitext::bucc(spec, r)?))
            .collect(),
        "finqa" => rows
            .iter()
            .map(|r| grouped(spec, r, qa::finqa(spec, r)?))
            .collect(),
        "mimic_diagnosis" => clinical::mimic_diagnosis(spec, rows, &values, root),
        other => Err(DataError::at(
            Path::new(&suite_file(spec)),
            0,
            format!("unknown adapter `{other}`"),
        )),
    }
}

/// Sets the group of the example made of `row` from the suite's `group_by`:
/// the source file's name for `file`, else the value of that record field.
fn grouped(spec: &SuiteSpec, row: &Row, mut ex: Example) -> Res<Example> {
    ex.group = match spec.group_by.as_deref() {
        None => None,
        Some("file") => Some(
            row.file
                .file_name()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_default(),
        ),
        Some(path) => Some(to_text(&req(spec, row, path, "group_by")?, " ")),
    };
    Ok(ex)
}

/// The id of a record as read (before `data.explode`): `fields.id` (default
/// `id`; `id` too when `fields.id` points inside the exploded items), or
/// `<file stem>-<line>` when the record has none.
pub(crate) fn record_id(spec: &SuiteSpec, row: &Row) -> String {
    let path = match (spec.fields.id.as_deref(), spec.data.explode.as_deref()) {
        (Some(p), Some(e)) if explode::inside(e, p) => "id",
        (Some(p), _) => p,
        (None, _) => "id",
    };
    match get(&row.value, path) {
        Some(v) if !v.is_null() => to_text(&v, "-"),
        _ => format!(
            "{}-{}",
            row.file
                .file_stem()
                .map(|s| s.to_string_lossy())
                .unwrap_or_default(),
            row.line
        ),
    }
}

/// The id of an example's row. An exploded item takes its own id when
/// `fields.id` points inside the items and the item has it, and
/// `<record id>#<index>` otherwise.
fn row_id(spec: &SuiteSpec, row: &Row) -> String {
    let Some(child) = &row.child else {
        return record_id(spec, row);
    };
    let own = match (spec.fields.id.as_deref(), spec.data.explode.as_deref()) {
        (Some(p), Some(e)) if explode::inside(e, p) => get(&row.value, p),
        _ => None,
    };
    match own {
        Some(v) if !v.is_null() => to_text(&v, "-"),
        _ => format!("{}#{}", child.parent_id, child.index),
    }
}
