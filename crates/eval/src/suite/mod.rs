//! Suite files: parsed and validated one by one ([`load_file`], [`parse`]),
//! and gathered with their sources in a [`Registry`].

pub mod registry;
pub mod spec;

pub use registry::{Registry, SelectError, Source};

use crate::data::adapters::ADAPTERS;
use spec::{Metric, SuiteSpec, TaskKind};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// A suite file that cannot be used, with the reason and the fix.
#[derive(Debug, Clone, Error)]
#[error("{}: {message}", path.display())]
pub struct SuiteError {
    /// The suite file.
    pub path: PathBuf,
    /// What is wrong (serde's messages carry line and column).
    pub message: String,
}

/// Metrics each task kind can compute.
pub fn allowed_metrics(task: TaskKind) -> &'static [Metric] {
    use Metric::*;
    match task {
        TaskKind::MultipleChoice => &[Acc, AccNorm, F1Macro, F1Micro, PassageF1],
        TaskKind::Classification => &[Acc, AccNorm, F1Macro, F1Micro],
        TaskKind::MultiLabelClassification => &[F1Micro, F1Macro, Acc],
        TaskKind::ExtractiveQa => &[SquadF1, ExactMatch],
        TaskKind::GenerativeQa => &[NumericAcc, ExactMatch, SquadF1],
        TaskKind::TokenTagging => &[TokenAcc, F1Macro, F1Micro],
        TaskKind::Ner => &[SpanF1, TokenAcc],
        TaskKind::RelationExtraction => &[RelationF1],
        TaskKind::Coreference => &[MucF1, B3F1],
        TaskKind::Summarization => &[Rouge1, Rouge2, RougeL],
        TaskKind::LanguageModeling => &[Perplexity, WordPerplexity, BitsPerByte],
        TaskKind::Retrieval => &[RetrievalAcc, MiningF1],
        TaskKind::ResponseGeneration => &[UnigramF1, RougeL, SquadF1],
        TaskKind::ConditionalPerplexity => &[Perplexity, BitsPerByte],
    }
}

/// Placeholders used by a template: `{name}`, or `{name|filter|...}` with
/// the filters `table` and `map:<map>` (see [`filters`]).
pub fn placeholders(template: &str) -> Vec<String> {
    let word = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_');
    let filter = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | ':'))
    };
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        let after = &rest[i + 1..];
        match after.find('}') {
            Some(j)
                if {
                    let mut parts = after[..j].split('|');
                    parts.next().is_some_and(word) && parts.all(filter)
                } =>
            {
                out.push(after[..j].to_string());
                rest = &after[j + 1..];
            }
            _ => rest = after,
        }
    }
    out
}

/// A placeholder's variable and its filters, in order: `table` renders a
/// list of rows as one line per row with the cells joined by ` | `;
/// `map:<map>` replaces the value by its entry in `[maps.<map>]`.
pub fn filters(placeholder: &str) -> (&str, Vec<&str>) {
    let mut parts = placeholder.split('|');
    let name = parts.next().unwrap_or_default();
    (name, parts.collect())
}

/// Checks the filters of a template's placeholders against the suite.
fn check_filters(s: &SuiteSpec, p: &str) -> Result<(), String> {
    let (name, fs) = filters(p);
    if fs.is_empty() {
        return Ok(());
    }
    if s.data.adapter != "fields" || !s.fields.inputs.contains_key(name) {
        return Err(format!(
            "prompt.template: `{{{p}}}` filters `{name}`, but filters apply only to [fields.inputs] variables of the `fields` adapter"
        ));
    }
    for (i, f) in fs.iter().enumerate() {
        match f.strip_prefix("map:") {
            Some(m) if s.maps.contains_key(m) => {}
            Some(m) => {
                return Err(format!(
                    "prompt.template: `{{{p}}}` uses map `{m}` but there is no [maps.{m}] table (maps: {})",
                    s.maps.keys().cloned().collect::<Vec<_>>().join(", ")
                ))
            }
            None if *f == "table" && i == 0 => {}
            None if *f == "table" => {
                return Err(format!(
                    "prompt.template: `{{{p}}}`: `table` must be the first filter (it reads the list of rows)"
                ))
            }
            None => {
                return Err(format!(
                    "prompt.template: `{{{p}}}`: unknown filter `{f}` (filters: table, map:<map>)"
                ))
            }
        }
    }
    Ok(())
}

/// Parses and validates one suite file.
pub fn load_file(path: &Path) -> Result<SuiteSpec, SuiteError> {
    let err = |message: String| SuiteError {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
    parse(&text, path)
}

/// Parses and validates the text of the suite file `path` (named in errors;
/// its stem must be the suite's id).
pub fn parse(text: &str, path: &Path) -> Result<SuiteSpec, SuiteError> {
    let err = |message: String| SuiteError {
        path: path.to_path_buf(),
        message,
    };
    let mut spec: SuiteSpec =
        toml::from_str(text).map_err(|e| err(format!("malformed suite file: {e}")))?;
    spec.file = path.to_path_buf();
    validate(&spec).map_err(err)?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    if stem != spec.id {
        return Err(err(format!(
            "id `{}` must equal the file name `{stem}`",
            spec.id
        )));
    }
    Ok(spec)
}

/// Values `prompt.max_tokens` may take (generation also stops at the end of
/// the model's context window).
pub const MAX_TOKENS: std::ops::RangeInclusive<usize> = 1..=8192;

/// Checks a parsed suite for consistency; the message names the field.
pub fn validate(s: &SuiteSpec) -> Result<(), String> {
    inside_data_root("data.dir", &s.data.dir)?;
    inside_data_root("data.eval", &s.data.eval)?;
    if let Some(f) = &s.data.fewshot {
        inside_data_root("data.fewshot", f)?;
    }
    check_byod(s)?;
    if !MAX_TOKENS.contains(&s.prompt.max_tokens) {
        return Err(format!(
            "prompt.max_tokens = {} is outside the allowed {MAX_TOKENS:?}",
            s.prompt.max_tokens
        ));
    }
    if s.metrics.is_empty() {
        return Err("`metrics` is empty: name at least one".into());
    }
    let allowed = allowed_metrics(s.task);
    for m in &s.metrics {
        if !allowed.contains(m) {
            return Err(format!(
                "metric `{}` does not apply to task `{}` (allowed: {})",
                m.as_str(),
                s.task.as_str(),
                allowed
                    .iter()
                    .map(|m| m.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    let Some((_, adapter_vars)) = ADAPTERS.iter().find(|(n, _)| *n == s.data.adapter) else {
        return Err(format!(
            "data.adapter `{}` is unknown (known: {})",
            s.data.adapter,
            ADAPTERS
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    };
    let l = &s.labels;
    if !l.words.is_empty() && l.words.len() != l.values.len() {
        return Err(format!(
            "[labels] has {} values but {} words: give one word per value",
            l.values.len(),
            l.words.len()
        ));
    }
    let needs_labels = matches!(
        s.task,
        TaskKind::Classification
            | TaskKind::MultiLabelClassification
            | TaskKind::TokenTagging
            | TaskKind::Ner
    ) && s.data.adapter != "scierc";
    if needs_labels && l.values.is_empty() && !l.from_data {
        return Err(
            "[labels].values is empty: list the label values (or set from_data = true)".into(),
        );
    }
    if s.task == TaskKind::MultiLabelClassification && s.prompt.label_question.is_none() {
        return Err("prompt.label_question is required for multi_label_classification".into());
    }
    if s.data.adapter == "fields" {
        let f = &s.fields;
        let need = |ok: bool, what: &str| {
            if ok {
                Ok(())
            } else {
                Err(format!(
                    "[fields].{what} is required for task `{}`",
                    s.task.as_str()
                ))
            }
        };
        match s.task {
            TaskKind::MultipleChoice => {
                need(f.choices.is_some(), "choices")?;
                need(f.answer.is_some(), "answer")?;
            }
            TaskKind::Classification | TaskKind::MultiLabelClassification => {
                need(f.answer.is_some(), "answer")?
            }
            TaskKind::TokenTagging | TaskKind::Ner => {
                need(f.tokens.is_some(), "tokens")?;
                need(f.tags.is_some(), "tags")?;
            }
            TaskKind::LanguageModeling => need(f.text.is_some(), "text")?,
            TaskKind::Retrieval => {
                return Err("retrieval needs a named adapter (tatoeba, bucc)".into())
            }
            _ => need(f.answer.is_some(), "answer")?,
        }
        if let Some(fmt) = &f.answer_format {
            let ok = fmt.starts_with("label_of:")
                || [
                    "index0", "index1", "letter", "text", "texts", "number", "label", "spans",
                ]
                .contains(&fmt.as_str());
            if !ok {
                return Err(format!("[fields].answer_format `{fmt}` is unknown"));
            }
        }
    }
    let mut known: Vec<String> = s.fields.inputs.keys().cloned().collect();
    known.extend(adapter_vars.iter().map(|v| v.to_string()));
    known.extend(["choices", "labels", "tokens", "text"].map(String::from));
    for p in placeholders(&s.prompt.template) {
        let (name, _) = filters(&p);
        if !known.iter().any(|k| k == name) {
            return Err(format!(
                "prompt.template uses `{{{p}}}` but no such variable exists (known: {})",
                known.join(", ")
            ));
        }
        check_filters(s, &p)?;
    }
    if let Some(e) = &s.data.explode {
        if crate::data::explode::steps(e).is_empty() {
            return Err("data.explode is empty: name the list to split records by".into());
        }
    }
    if s.task != TaskKind::LanguageModeling
        && s.task != TaskKind::Retrieval
        && s.prompt.template.trim().is_empty()
    {
        return Err("prompt.template is empty".into());
    }
    Ok(())
}

/// Adapters that make one example of each record, so a record field can
/// name the example's group.
pub const GROUPABLE_ADAPTERS: [&str; 4] = ["fields", "finqa", "tatoeba", "bucc"];

/// Checks `domain`, `paper_domain` and `group_by`.
fn check_byod(s: &SuiteSpec) -> Result<(), String> {
    let d = s.domain.as_str();
    let kebab = !d.is_empty()
        && !d.starts_with('-')
        && !d.ends_with('-')
        && d.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !kebab || d == "all" {
        return Err(format!(
            "domain `{d}` must be a lower-case kebab-case name other than `all` (e.g. `biomed`)"
        ));
    }
    if let (Some(own), Some(p)) = (s.domain.paper(), s.paper_domain) {
        if own != p {
            return Err(format!(
                "paper_domain `{p}` differs from domain `{d}`, which is itself one of the paper's domains: leave paper_domain out"
            ));
        }
    }
    if let Some(g) = &s.group_by {
        if g.trim().is_empty() {
            return Err("group_by is empty: name a record field or `file`".into());
        }
        if !GROUPABLE_ADAPTERS.contains(&s.data.adapter.as_str()) {
            return Err(format!(
                "group_by needs an adapter that makes one example per record ({}), not `{}`",
                GROUPABLE_ADAPTERS.join(", "),
                s.data.adapter
            ));
        }
    }
    Ok(())
}

/// Checks that a data path of a suite is relative and stays below the data
/// root: no absolute path, drive or `..` component.
fn inside_data_root(field: &str, value: &str) -> Result<(), String> {
    use std::path::Component;
    let p = Path::new(value);
    if value.is_empty() && field != "data.dir" {
        return Err(format!("`{field}` is empty: name a file or glob"));
    }
    if p.components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!(
            "`{field}` = \"{value}\" leaves the data directory: use a relative path without `..`"
        ));
    }
    Ok(())
}

/// Loads every `*.toml` in `dir`, sorted by id; fails on the first bad file.
pub fn load_dir(dir: &Path) -> Result<Vec<SuiteSpec>, SuiteError> {
    let (ok, mut errs) = load_dir_all(dir);
    if let Some(e) = errs.drain(..).next() {
        return Err(e);
    }
    Ok(ok)
}

/// Loads every suite file, collecting all errors (for `suites validate`).
pub fn load_dir_all(dir: &Path) -> (Vec<SuiteSpec>, Vec<SuiteError>) {
    let mut ok = Vec::new();
    let mut errs = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            errs.push(SuiteError {
                path: dir.to_path_buf(),
                message: format!("cannot read the suites directory: {e} (pass --suites-dir)"),
            });
            return (ok, errs);
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    for p in paths {
        match load_file(&p) {
            Ok(s) => ok.push(s),
            Err(e) => errs.push(e),
        }
    }
    let mut ids = std::collections::HashSet::new();
    for s in &ok {
        if !ids.insert(s.id.clone()) {
            errs.push(SuiteError {
                path: dir.join(format!("{}.toml", s.id)),
                message: "duplicate suite id".into(),
            });
        }
    }
    (ok, errs)
}

/// Selects suites by a comma-separated list of ids, domain names or `all`.
pub fn select<'a>(all: &'a [SuiteSpec], selector: &str) -> Result<Vec<&'a SuiteSpec>, String> {
    let mut out: Vec<&SuiteSpec> = Vec::new();
    for part in selector.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let matched: Vec<&SuiteSpec> = if part == "all" {
            all.iter().collect()
        } else if spec::Domain::parse(part).is_some()
            || all.iter().any(|s| s.domain.as_str() == part)
        {
            all.iter().filter(|s| s.domain.as_str() == part).collect()
        } else {
            all.iter().filter(|s| s.id == part).collect()
        };
        if matched.is_empty() {
            return Err(format!(
                "`{part}` is neither a suite id, a domain ({}) nor `all`; see `edgebench suites list`",
                spec::Domain::ALL.map(|d| d.as_str()).join(", ")
            ));
        }
        for m in matched {
            if !out.iter().any(|s| s.id == m.id) {
                out.push(m);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_placeholders() {
        assert_eq!(
            placeholders("Q: {question}\n{choices} {x-y} {}"),
            vec!["question", "choices"]
        );
        assert_eq!(
            placeholders("{t|table} {a|map:rel-words|map:x} {b|} {|map:x}"),
            vec!["t|table", "a|map:rel-words|map:x"]
        );
        assert_eq!(filters("a|map:m"), ("a", vec!["map:m"]));
    }
}
