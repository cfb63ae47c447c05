//! Reading a dataset's files in their original layout into JSON rows.

use super::DataError;
use crate::suite::spec::{Column, ConllSpec, FileFormat};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// One record of a data file with where it came from.
#[derive(Debug, Clone)]
pub struct Row {
    /// The record, with the dataset's own field names.
    pub value: Value,
    /// The file it was read from.
    pub file: PathBuf,
    /// 1-based line (JSONL, CSV, TXT, CoNLL) or record index (JSON, Parquet).
    pub line: usize,
    /// `line` counts records, not lines.
    pub record: bool,
    /// Set when the row is one item of a record split by `data.explode`.
    pub child: Option<Child>,
}

/// Where an exploded row sits in its record.
#[derive(Debug, Clone)]
pub struct Child {
    /// The record's id.
    pub parent_id: String,
    /// 0-based position among the record's items.
    pub index: usize,
    /// The `data.explode` path.
    pub path: String,
}

impl Row {
    /// Where the row is: `file:line` or `file: record N`, and its item.
    pub fn place(&self) -> String {
        let base = DataError {
            file: self.file.clone(),
            line: self.line,
            record: self.record,
            message: String::new(),
        }
        .place();
        match &self.child {
            Some(c) => format!("{base}, item {} of `{}`", c.index, c.path),
            None => base,
        }
    }

    /// An error located at this row (file, line or record, and item).
    pub fn error(&self, message: impl Into<String>) -> DataError {
        let message = message.into();
        let message = match &self.child {
            Some(c) => format!("item {} of `{}`: {message}", c.index, c.path),
            None => message,
        };
        DataError {
            file: self.file.clone(),
            line: self.line,
            record: self.record,
            message,
        }
    }
}

/// Reads every record of `path` in `format`.
pub fn read_rows(
    path: &Path,
    format: FileFormat,
    records_path: Option<&str>,
) -> Result<Vec<Row>, DataError> {
    let record = matches!(format, FileFormat::Json | FileFormat::Parquet);
    let row = |value, line| Row {
        value,
        file: path.to_path_buf(),
        line,
        record,
        child: None,
    };
    let io_err = |e: std::io::Error| DataError::at(path, 0, format!("cannot read: {e}"));
    match format {
        FileFormat::Jsonl => {
            let text = std::fs::read_to_string(path).map_err(io_err)?;
            let mut rows = Vec::new();
            for (i, l) in text.lines().enumerate() {
                if l.trim().is_empty() {
                    continue;
                }
                let v: Value = serde_json::from_str(l).map_err(|e| {
                    DataError::at(
                        path,
                        i + 1,
                        format!("invalid JSON ({e}); each line must be one JSON object"),
                    )
                })?;
                rows.push(row(v, i + 1));
            }
            Ok(rows)
        }
        FileFormat::Json => {
            let text = std::fs::read_to_string(path).map_err(io_err)?;
            let v: Value = serde_json::from_str(&text)
                .map_err(|e| DataError::at(path, e.line(), format!("invalid JSON: {e}")))?;
            let arr = match records_path {
                Some(p) => super::path::get(&v, p).ok_or_else(|| {
                    DataError::at(path, 0, format!("records_path `{p}` not found in the file"))
                })?,
                None => v,
            };
            match arr {
                Value::Array(items) => Ok(items
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| row(v, i + 1))
                    .collect()),
                _ => Err(DataError::at(
                    path,
                    0,
                    "expected a JSON array of records (set data.records_path if they sit under a key)",
                )),
            }
        }
        FileFormat::Csv | FileFormat::Tsv => {
            let mut rdr = csv::ReaderBuilder::new()
                .delimiter(if format == FileFormat::Tsv {
                    b'\t'
                } else {
                    b','
                })
                .flexible(false)
                .from_path(path)
                .map_err(|e| DataError::at(path, 0, format!("cannot read: {e}")))?;
            let headers = rdr
                .headers()
                .map_err(|e| DataError::at(path, 1, format!("bad header: {e}")))?
                .clone();
            let mut rows = Vec::new();
            for rec in rdr.records() {
                let rec = rec.map_err(|e| {
                    let line = e.position().map(|p| p.line() as usize).unwrap_or(0);
                    DataError::at(path, line, format!("bad row: {e}"))
                })?;
                let line = rec.position().map(|p| p.line() as usize).unwrap_or(0);
                let obj: Map<String, Value> = headers
                    .iter()
                    .zip(rec.iter())
                    .map(|(h, v)| (h.to_string(), Value::String(v.to_string())))
                    .collect();
                rows.push(row(Value::Object(obj), line));
            }
            Ok(rows)
        }
        FileFormat::Txt => {
            let text = std::fs::read_to_string(path).map_err(io_err)?;
            Ok(text
                .lines()
                .enumerate()
                .map(|(i, l)| row(Value::String(l.to_string()), i + 1))
                .collect())
        }
        FileFormat::Parquet => read_parquet(path),
        FileFormat::Conll => read_conll(path, &ConllSpec::default()),
    }
}

/// Reads a CoNLL column file: one token per line with its columns separated
/// by whitespace (or `spec.delimiter`), blank lines between sentences, lines
/// whose token is `spec.docstart` between documents. Nothing is quoted. Each
/// sentence becomes a row `{"tokens", "tags", "document", "sentence"}` (document
/// and sentence 0-based, the sentence counted within its document) located at
/// its first line.
pub fn read_conll(path: &Path, spec: &ConllSpec) -> Result<Vec<Row>, DataError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| DataError::at(path, 0, format!("cannot read: {e}")))?;
    let split = |l: &str| -> Vec<String> {
        match spec.delimiter.as_deref() {
            Some(d) if !d.is_empty() => l.split(d).map(|c| c.trim().to_string()).collect(),
            _ => l.split_whitespace().map(String::from).collect(),
        }
    };
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    let mut names: Vec<String> = Vec::new();
    if spec.header {
        for (_, l) in lines.by_ref() {
            if !l.trim().is_empty() {
                names = split(l);
                break;
            }
        }
    }
    let resolve =
        |c: &Column, field: &str, width: usize, line: usize| -> Result<usize, DataError> {
            let found = match c {
                Column::Index(i) if *i >= 0 => usize::try_from(*i).ok().filter(|i| *i < width),
                Column::Index(i) => usize::try_from(i.unsigned_abs())
                    .ok()
                    .and_then(|back| width.checked_sub(back)),
                Column::Name(n) => names.iter().position(|x| x == n),
            };
            found.ok_or_else(|| {
                let what = match c {
                    Column::Index(i) => format!("column {i}"),
                    Column::Name(n) if names.is_empty() => {
                        format!("column `{n}` (a name needs `header = true`)")
                    }
                    Column::Name(n) => format!("column `{n}` (header: {})", names.join(" ")),
                };
                DataError::at(
                    path,
                    line,
                    format!("data.conll.{field}: {what} is not among this line's {width} columns"),
                )
            })
        };
    let mut rows = Vec::new();
    let mut doc = ConllDoc::default();
    let mut width: Option<usize> = None;
    for (n, l) in lines {
        if l.trim().is_empty() {
            doc.flush(path, &mut rows);
            continue;
        }
        let cols = split(l);
        if let Some(w) = width.filter(|w| *w != cols.len()) {
            return Err(DataError::at(
                path,
                n,
                format!(
                    "{} columns where the file's first token line has {w}; every token line needs the same columns",
                    cols.len()
                ),
            ));
        }
        width = Some(cols.len());
        let tok_i = resolve(&spec.token_column, "token_column", cols.len(), n)?;
        let tag_i = resolve(&spec.tag_column, "tag_column", cols.len(), n)?;
        if cols[tok_i] == spec.docstart {
            doc.flush(path, &mut rows);
            if doc.started || !rows.is_empty() {
                doc.document += 1;
            }
            doc.started = true;
            doc.sentence = 0;
            continue;
        }
        let c = doc.cur.get_or_insert_with(|| (n, Vec::new(), Vec::new()));
        c.1.push(cols[tok_i].clone());
        c.2.push(cols[tag_i].clone());
    }
    doc.flush(path, &mut rows);
    Ok(rows)
}

/// Reading state of [`read_conll`]: the current document, the sentence being
/// gathered (first line, tokens, tags) and its index in the document.
#[derive(Default)]
struct ConllDoc {
    document: usize,
    sentence: usize,
    started: bool,
    cur: Option<(usize, Vec<String>, Vec<String>)>,
}

impl ConllDoc {
    fn flush(&mut self, path: &Path, rows: &mut Vec<Row>) {
        if let Some((line, tokens, tags)) = self.cur.take() {
            let mut obj = Map::new();
            obj.insert("tokens".into(), tokens.into());
            obj.insert("tags".into(), tags.into());
            obj.insert("document".into(), self.document.into());
            obj.insert("sentence".into(), self.sentence.into());
            rows.push(Row {
                value: Value::Object(obj),
                file: path.to_path_buf(),
                line,
                record: false,
                child: None,
            });
            self.sentence += 1;
        }
    }
}

fn read_parquet(path: &Path) -> Result<Vec<Row>, DataError> {
    use polars::prelude::*;
    let file = std::fs::File::open(path)
        .map_err(|e| DataError::at(path, 0, format!("cannot read: {e}")))?;
    let df = ParquetReader::new(file)
        .finish()
        .map_err(|e| DataError::at(path, 0, format!("not a readable Parquet file: {e}")))?;
    let cols = df.get_columns();
    let mut rows = Vec::with_capacity(df.height());
    for i in 0..df.height() {
        let mut obj = Map::new();
        for c in cols {
            let v = c
                .get(i)
                .map_err(|e| DataError::at(path, i + 1, e.to_string()))?;
            obj.insert(c.name().to_string(), any_to_json(&v));
        }
        rows.push(Row {
            value: Value::Object(obj),
            file: path.to_path_buf(),
            line: i + 1,
            record: true,
            child: None,
        });
    }
    Ok(rows)
}

fn any_to_json(v: &polars::prelude::AnyValue) -> Value {
    use polars::prelude::AnyValue as A;
    match v {
        A::Null => Value::Null,
        A::Boolean(b) => Value::Bool(*b),
        A::String(s) => Value::String(s.to_string()),
        A::StringOwned(s) => Value::String(s.to_string()),
        A::Int8(x) => (*x).into(),
        A::Int16(x) => (*x).into(),
        A::Int32(x) => (*x).into(),
        A::Int64(x) => (*x).into(),
        A::UInt8(x) => (*x).into(),
        A::UInt16(x) => (*x).into(),
        A::UInt32(x) => (*x).into(),
        A::UInt64(x) => (*x).into(),
        A::Float32(x) => serde_json::Number::from_f64(*x as f64).map_or(Value::Null, Value::Number),
        A::Float64(x) => serde_json::Number::from_f64(*x).map_or(Value::Null, Value::Number),
        A::List(s) => Value::Array(s.iter().map(|x| any_to_json(&x)).collect()),
        other => Value::String(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conll(text: &str, spec: &ConllSpec) -> Result<Vec<Row>, DataError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.conll");
        std::fs::write(&p, text).unwrap();
        read_conll(&p, spec)
    }

    #[test]
    fn conll_sentences_documents_and_named_columns() {
        let text = "word\tpos\tner\n-DOCSTART-\t-X-\tO\n\nNew York\tNNP\tB-LOC\n\"\t\"\tO\n\n\n\
                    -DOCSTART-\t-X-\tO\nHi\tUH\tO\n";
        let spec = ConllSpec {
            token_column: Column::Name("word".into()),
            tag_column: Column::Name("ner".into()),
            header: true,
            delimiter: Some("\t".into()),
            ..ConllSpec::default()
        };
        let rows = conll(text, &spec).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].line, 4);
        assert_eq!(
            rows[0].value,
            serde_json::json!({"tokens": ["New York", "\""], "tags": ["B-LOC", "O"], "document": 0, "sentence": 0})
        );
        assert_eq!(rows[1].value["document"], 1);
        assert_eq!(rows[1].value["sentence"], 0);
        // whitespace columns by default: a token with a space is two columns
        let e = conll(text, &ConllSpec::default()).unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        let e = conll(
            "a B\n",
            &ConllSpec {
                tag_column: Column::Index(2),
                ..ConllSpec::default()
            },
        )
        .unwrap_err();
        assert!(
            e.to_string().ends_with(
                ":1: data.conll.tag_column: column 2 is not among this line's 2 columns"
            ),
            "{e}"
        );
    }
}
