//! Reading a dataset's files in their original layout into JSON rows.

use super::DataError;
use crate::suite::spec::FileFormat;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// One record of a data file with where it came from.
#[derive(Debug, Clone)]
pub struct Row {
    /// The record, with the dataset's own field names.
    pub value: Value,
    /// The file it was read from.
    pub file: PathBuf,
    /// 1-based line (JSONL, CSV, TXT) or record index (JSON, Parquet).
    pub line: usize,
}

/// Reads every record of `path` in `format`.
pub fn read_rows(
    path: &Path,
    format: FileFormat,
    records_path: Option<&str>,
) -> Result<Vec<Row>, DataError> {
    let row = |value, line| Row {
        value,
        file: path.to_path_buf(),
        line,
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
