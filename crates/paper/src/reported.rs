//! The paper's reported numbers as data: a loader for
//! `reports/paper/reported.toml` (layout documented in
//! `reports/paper/README.md`).
//!
//! The file is a list of groups (one per table, figure or part of the text),
//! each holding entries with a stable dotted key (`table4.legal.gem_f1`), a
//! value (a number, a `low`-`high` range or a text label), a unit, the place
//! in the paper it comes from and, where the paper gives one, its own label
//! (`measured` / `calculated`). Loading validates every entry; errors name
//! the file and the key.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Where the file lives, relative to the repository root.
pub const DEFAULT_PATH: &str = "reports/paper/reported.toml";

/// Why the reported numbers could not be loaded or looked up.
#[derive(Debug, Error)]
pub enum ReportedError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not have the expected layout.
    #[error("{}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// An entry or group breaks a rule of the layout.
    #[error("{}: `{key}`: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The offending entry's key (or group name).
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A looked-up key has no entry.
    #[error("{}: no entry `{key}`", path.display())]
    Missing {
        /// The file.
        path: PathBuf,
        /// The key asked for.
        key: String,
    },
    /// A looked-up entry holds another kind of value than the one asked for.
    #[error("{}: `{key}` is a {found}, not a {expected}", path.display())]
    WrongKind {
        /// The file.
        path: PathBuf,
        /// The key asked for.
        key: String,
        /// The kind asked for.
        expected: &'static str,
        /// The kind in the file.
        found: &'static str,
    },
}

/// A printed value: a number, a range (`1.5-2.1`) or a text label.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A single number.
    Number(f64),
    /// A range, `low <= high`.
    Range {
        /// Lower end.
        low: f64,
        /// Upper end.
        high: f64,
    },
    /// A label such as a platform name.
    Text(String),
}

impl Value {
    /// `"number"`, `"range"` or `"text"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Number(_) => "number",
            Value::Range { .. } => "range",
            Value::Text(_) => "text",
        }
    }

    /// The number, if this is one.
    pub fn as_number(&self) -> Option<f64> {
        match self {
            Value::Number(x) => Some(*x),
            _ => None,
        }
    }
}

impl fmt::Display for Value {
    /// Numbers in their shortest exact form (as the paper printed them);
    /// ranges as `low to high`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Number(x) => write!(f, "{x}"),
            Value::Range { low, high } => write!(f, "{low} to {high}"),
            Value::Text(s) => f.write_str(s),
        }
    }
}

/// How the paper labels a number (Table 1's Source column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Label {
    /// Measured on the device.
    Measured,
    /// Calculated from other numbers.
    Calculated,
}

/// One reported value.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Stable dotted key, starting with its group's name.
    pub key: String,
    /// The value as printed.
    pub value: Value,
    /// Unit of the value (empty for text).
    pub unit: String,
    /// Table, row and column, or section, it comes from.
    pub source: String,
    /// The paper's own label, where it gives one.
    pub label: Option<Label>,
    /// Optional remark (formula, convention, ambiguity).
    pub note: Option<String>,
}

impl Entry {
    /// The group (table, figure or text part) the entry belongs to: the
    /// key's first segment.
    pub fn table(&self) -> &str {
        self.key.split('.').next().unwrap_or_default()
    }
}

/// A group of entries: one table, figure or part of the text.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// Short name, the first segment of its entries' keys (`table4`).
    pub name: String,
    /// Caption or description.
    pub title: String,
}

/// Every number the paper reports, in file order, with lookup by key.
#[derive(Debug, Clone)]
pub struct Reported {
    path: PathBuf,
    groups: Vec<Group>,
    entries: Vec<Entry>,
    index: BTreeMap<String, usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    group: Vec<RawGroup>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: String,
    title: String,
    number: Vec<RawEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    key: String,
    value: Option<f64>,
    low: Option<f64>,
    high: Option<f64>,
    text: Option<String>,
    #[serde(default)]
    unit: String,
    source: String,
    label: Option<Label>,
    note: Option<String>,
}

/// Whether `s` is a non-empty run of `[a-z0-9_]`.
fn is_segment(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl RawEntry {
    fn into_entry(self, path: &Path, group: &str) -> Result<Entry, ReportedError> {
        let invalid = |message: String| ReportedError::Invalid {
            path: path.to_path_buf(),
            key: self.key.clone(),
            message,
        };
        let segments: Vec<&str> = self.key.split('.').collect();
        if segments.len() < 2 || !segments.iter().all(|s| is_segment(s)) {
            return Err(invalid(
                "key must be two or more dot-separated [a-z0-9_] segments".into(),
            ));
        }
        if segments[0] != group {
            return Err(invalid(format!("key must start with its group `{group}.`")));
        }
        if self.source.trim().is_empty() {
            return Err(invalid("empty `source`".into()));
        }
        let value = match (self.value, self.low, self.high, &self.text) {
            (Some(v), None, None, None) => Value::Number(v),
            (None, Some(low), Some(high), None) => {
                if low > high {
                    return Err(invalid(format!("range {low} to {high} has low > high")));
                }
                Value::Range { low, high }
            }
            (None, None, None, Some(t)) if !t.trim().is_empty() => Value::Text(t.clone()),
            _ => {
                return Err(invalid(
                    "needs exactly one of `value`, `low` + `high`, or a non-empty `text`".into(),
                ))
            }
        };
        let finite = match value {
            Value::Number(v) => v.is_finite(),
            Value::Range { low, high } => low.is_finite() && high.is_finite(),
            Value::Text(_) => true,
        };
        if !finite {
            return Err(invalid("value is not finite".into()));
        }
        match value {
            Value::Text(_) if !self.unit.is_empty() => {
                return Err(invalid("a text entry has no `unit`".into()))
            }
            Value::Number(_) | Value::Range { .. } if self.unit.trim().is_empty() => {
                return Err(invalid("a number needs a `unit`".into()))
            }
            _ => {}
        }
        Ok(Entry {
            key: self.key,
            value,
            unit: self.unit,
            source: self.source,
            label: self.label,
            note: self.note,
        })
    }
}

impl Reported {
    /// Reads and validates the file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ReportedError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ReportedError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates `text`; `path` is only used to name the file in
    /// errors.
    pub fn parse(text: &str, path: impl Into<PathBuf>) -> Result<Self, ReportedError> {
        let path = path.into();
        let raw: RawFile = toml::from_str(text).map_err(|e| ReportedError::Parse {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let mut groups = Vec::new();
        let mut entries = Vec::new();
        let mut index = BTreeMap::new();
        for g in raw.group {
            let invalid = |message: &str| ReportedError::Invalid {
                path: path.clone(),
                key: g.name.clone(),
                message: message.to_owned(),
            };
            if !is_segment(&g.name) {
                return Err(invalid("group name must be a non-empty run of [a-z0-9_]"));
            }
            if groups.iter().any(|x: &Group| x.name == g.name) {
                return Err(invalid("duplicate group"));
            }
            if g.number.is_empty() {
                return Err(invalid("group has no entries"));
            }
            for raw_entry in g.number {
                let entry = raw_entry.into_entry(&path, &g.name)?;
                if index.insert(entry.key.clone(), entries.len()).is_some() {
                    return Err(ReportedError::Invalid {
                        path,
                        key: entry.key,
                        message: "duplicate key".into(),
                    });
                }
                entries.push(entry);
            }
            groups.push(Group {
                name: g.name,
                title: g.title,
            });
        }
        Ok(Reported {
            path,
            groups,
            entries,
            index,
        })
    }

    /// The file the numbers were read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every entry, in file order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The groups (tables, figures, text parts), in file order.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// The entries of one group (`"table4"`), in file order; empty for an
    /// unknown group.
    pub fn table<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        self.entries.iter().filter(move |e| e.table() == name)
    }

    /// The entry for `key`, if any.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.index.get(key).map(|&i| &self.entries[i])
    }

    /// The entry for `key`, or an error naming the file and the key.
    pub fn entry(&self, key: &str) -> Result<&Entry, ReportedError> {
        self.get(key).ok_or_else(|| ReportedError::Missing {
            path: self.path.clone(),
            key: key.to_owned(),
        })
    }

    fn wrong_kind(&self, e: &Entry, expected: &'static str) -> ReportedError {
        ReportedError::WrongKind {
            path: self.path.clone(),
            key: e.key.clone(),
            expected,
            found: e.value.kind(),
        }
    }

    /// The number stored under `key`.
    pub fn number(&self, key: &str) -> Result<f64, ReportedError> {
        let e = self.entry(key)?;
        e.value
            .as_number()
            .ok_or_else(|| self.wrong_kind(e, "number"))
    }

    /// The `(low, high)` range stored under `key`.
    pub fn range(&self, key: &str) -> Result<(f64, f64), ReportedError> {
        let e = self.entry(key)?;
        match e.value {
            Value::Range { low, high } => Ok((low, high)),
            _ => Err(self.wrong_kind(e, "range")),
        }
    }

    /// The text stored under `key`.
    pub fn text(&self, key: &str) -> Result<&str, ReportedError> {
        let e = self.entry(key)?;
        match &e.value {
            Value::Text(t) => Ok(t),
            _ => Err(self.wrong_kind(e, "text")),
        }
    }
}

/// Digits after the decimal point in the shortest exact form of `x`
/// (`0.5789` -> 4, `82.4` -> 1, `1800` -> 0): how precisely the paper
/// printed a number, as far as a float can tell.
pub fn printed_decimals(x: f64) -> usize {
    let s = format!("{x}");
    s.split_once('.').map_or(0, |(_, frac)| frac.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<Reported, ReportedError> {
        Reported::parse(body, "mem.toml")
    }

    const OK: &str = r#"
[[group]]
name = "t1"
title = "Table 1"
number = [
  { key = "t1.a.x", value = 1800, unit = "MB", source = "Table 1, row a, column x", label = "measured" },
  { key = "t1.a.r", low = 0.2, high = 0.55, unit = "ratio", source = "Section 5" },
  { key = "t1.a.p", text = "Pixel 6", source = "Table 1, row a, column platform" },
]
[[group]]
name = "t2"
title = "Table 2"
number = [{ key = "t2.b.y", value = 0.5789, unit = "ratio", source = "Table 2", note = "n" }]
"#;

    #[test]
    fn parses_all_kinds_and_looks_up() {
        let r = parse(OK).unwrap();
        assert_eq!(r.entries().len(), 4);
        assert_eq!(r.number("t1.a.x").unwrap(), 1800.0); // integer accepted
        assert_eq!(r.range("t1.a.r").unwrap(), (0.2, 0.55));
        assert_eq!(r.text("t1.a.p").unwrap(), "Pixel 6");
        assert_eq!(r.entry("t1.a.x").unwrap().label, Some(Label::Measured));
        assert_eq!(r.get("t2.b.y").unwrap().note.as_deref(), Some("n"));
        let names: Vec<&str> = r.groups().iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["t1", "t2"]);
        let keys: Vec<&str> = r.table("t1").map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["t1.a.x", "t1.a.r", "t1.a.p"]);
        assert_eq!(r.table("t9").count(), 0);
        assert_eq!(r.get("t2.b.y").unwrap().table(), "t2");
    }

    #[test]
    fn lookup_errors_name_file_and_key() {
        let r = parse(OK).unwrap();
        let e = r.number("t1.nope").unwrap_err().to_string();
        assert_eq!(e, "mem.toml: no entry `t1.nope`");
        let e = r.number("t1.a.p").unwrap_err().to_string();
        assert_eq!(e, "mem.toml: `t1.a.p` is a text, not a number");
        assert!(r.range("t1.a.x").is_err() && r.text("t1.a.r").is_err());
    }

    fn invalid(body: &str) -> String {
        parse(&format!(
            "[[group]]\nname = \"g\"\ntitle = \"G\"\nnumber = [{body}]\n"
        ))
        .unwrap_err()
        .to_string()
    }

    #[test]
    fn rejects_malformed_entries() {
        let src = "source = \"S\"";
        assert!(invalid(&format!(
            "{{ key = \"g.a\", value = 1, low = 0, high = 2, unit = \"u\", {src} }}"
        ))
        .contains("`g.a`: needs exactly one of"));
        assert!(invalid(&format!("{{ key = \"g.a\", unit = \"u\", {src} }}")).contains("`g.a`"));
        assert!(invalid(&format!(
            "{{ key = \"g.a\", low = 3, high = 2, unit = \"u\", {src} }}"
        ))
        .contains("low > high"));
        assert!(
            invalid(&format!("{{ key = \"g.a\", value = 1, {src} }}")).contains("needs a `unit`")
        );
        assert!(invalid(&format!(
            "{{ key = \"g.a\", text = \"x\", unit = \"u\", {src} }}"
        ))
        .contains("has no `unit`"));
        assert!(invalid(&format!(
            "{{ key = \"h.a\", value = 1, unit = \"u\", {src} }}"
        ))
        .contains("`h.a`: key must start with its group `g.`"));
        assert!(invalid(&format!(
            "{{ key = \"g.A\", value = 1, unit = \"u\", {src} }}"
        ))
        .contains("segments"));
        assert!(invalid(&format!(
            "{{ key = \"g\", value = 1, unit = \"u\", {src} }}"
        ))
        .contains("segments"));
        assert!(
            invalid("{ key = \"g.a\", value = 1, unit = \"u\", source = \" \" }")
                .contains("empty `source`")
        );
        assert!(invalid(&format!(
            "{{ key = \"g.a\", value = nan, unit = \"u\", {src} }}"
        ))
        .contains("not finite"));
        let dup = format!(
            "{{ key = \"g.a\", value = 1, unit = \"u\", {src} }}, {{ key = \"g.a\", value = 2, unit = \"u\", {src} }}"
        );
        assert_eq!(invalid(&dup), "mem.toml: `g.a`: duplicate key");
        // Unknown fields and labels are parse errors naming the file.
        let e = invalid(&format!(
            "{{ key = \"g.a\", value = 1, unit = \"u\", {src}, colour = 1 }}"
        ));
        assert!(e.starts_with("mem.toml: ") && e.contains("colour"), "{e}");
        let e = invalid(&format!(
            "{{ key = \"g.a\", value = 1, unit = \"u\", {src}, label = \"guessed\" }}"
        ));
        assert!(e.starts_with("mem.toml: ") && e.contains("guessed"), "{e}");
    }

    #[test]
    fn missing_file_is_an_io_error_naming_it() {
        let e = Reported::load("/nonexistent/reported.toml").unwrap_err();
        assert!(matches!(e, ReportedError::Io { .. }));
        assert!(e.to_string().starts_with("/nonexistent/reported.toml: "));
    }

    #[test]
    fn printed_decimals_follow_the_shortest_form() {
        assert_eq!(printed_decimals(0.5789), 4);
        assert_eq!(printed_decimals(82.4), 1);
        assert_eq!(printed_decimals(1800.0), 0);
        assert_eq!(printed_decimals(0.10), 1);
        assert_eq!(printed_decimals(0.578947368), 9);
        assert_eq!(printed_decimals(5e-5), 5);
        assert_eq!(
            Value::Range {
                low: 0.2,
                high: 0.55
            }
            .to_string(),
            "0.2 to 0.55"
        );
    }
}
