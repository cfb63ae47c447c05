//! `data.explode`: a record that holds a list (a paragraph and its questions,
//! a table and its questions, a dialogue and its turns) becomes one row per
//! item of the list, the record's other fields kept beside it.
//!
//! The path is dotted, each step naming a key (`[]` after a name is allowed
//! and changes nothing). A step that holds a list is walked item by item, and
//! in the row made for an item every list on the path is replaced by the
//! item taken from it: exploding a SQuAD article by `paragraphs.qas` gives
//! rows where `title` is the article's, `paragraphs.context` the paragraph's
//! and `paragraphs.qas.question` the question's. Each row also gets
//! `_index` (the item's 0-based position among the record's items) and
//! `_before` (the items that precede it in the last list: the earlier turns
//! of a dialogue).

use super::read::{Child, Row};
use super::DataError;
use serde_json::{Map, Value};

/// The steps of an explode (or field) path, without `[]`.
pub fn steps(path: &str) -> Vec<&str> {
    path.split('.')
        .map(|s| s.trim_end_matches("[]"))
        .filter(|s| !s.is_empty())
        .collect()
}

/// Whether the field `path` points inside the items of the explode path.
pub fn inside(explode: &str, path: &str) -> bool {
    let (e, p) = (steps(explode), steps(path));
    p.len() > e.len() && p[..e.len()] == e[..]
}

/// The items of `v` along `steps`: each the record with the lists on the way
/// replaced by one item, and the items before it in the last list.
fn walk(v: &Value, steps: &[&str]) -> Result<Vec<(Value, Vec<Value>)>, String> {
    let Some((head, rest)) = steps.split_first() else {
        return Ok(vec![]);
    };
    let obj = v
        .as_object()
        .ok_or_else(|| format!("`{head}` is looked up in a value that is not an object"))?;
    let inner = obj.get(*head).ok_or_else(|| format!("no field `{head}`"))?;
    let others: Map<String, Value> = obj
        .iter()
        .filter(|(k, _)| k.as_str() != *head)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let with = |item: Value| {
        let mut o = others.clone();
        o.insert((*head).to_string(), item);
        Value::Object(o)
    };
    let mut out = Vec::new();
    match inner {
        Value::Array(items) if rest.is_empty() => {
            for (k, item) in items.iter().enumerate() {
                out.push((with(item.clone()), items[..k].to_vec()));
            }
        }
        Value::Array(items) => {
            for item in items {
                for (sub, before) in walk(item, rest).map_err(|e| format!("{head}: {e}"))? {
                    out.push((with(sub), before));
                }
            }
        }
        Value::Object(_) if !rest.is_empty() => {
            for (sub, before) in walk(inner, rest).map_err(|e| format!("{head}: {e}"))? {
                out.push((with(sub), before));
            }
        }
        _ => return Err(format!("`{head}` is not a list")),
    }
    Ok(out)
}

/// Splits every row along `path`; `parent_id` names each record.
pub fn explode(
    rows: Vec<Row>,
    path: &str,
    parent_id: impl Fn(&Row) -> String,
) -> Result<Vec<Row>, DataError> {
    let steps = steps(path);
    let mut out = Vec::new();
    for row in rows {
        let items = walk(&row.value, &steps)
            .map_err(|e| row.error(format!("data.explode = \"{path}\": {e}")))?;
        let parent = parent_id(&row);
        for (index, (mut value, before)) in items.into_iter().enumerate() {
            if let Value::Object(o) = &mut value {
                o.insert("_index".into(), index.into());
                o.insert("_before".into(), Value::Array(before));
            }
            out.push(Row {
                value,
                file: row.file.clone(),
                line: row.line,
                record: row.record,
                child: Some(Child {
                    parent_id: parent.clone(),
                    index,
                    path: path.to_string(),
                }),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(v: Value) -> Row {
        Row {
            value: v,
            file: "d.json".into(),
            line: 1,
            record: true,
            child: None,
        }
    }

    #[test]
    fn nested_lists_keep_every_level() {
        let v = json!({"title": "T", "paragraphs": [
            {"context": "c0", "qas": [{"id": "a"}, {"id": "b"}]},
            {"context": "c1", "qas": [{"id": "c"}]}]});
        let rows = explode(vec![row(v)], "paragraphs[].qas[]", |_| "T".into()).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[1].value,
            json!({"title": "T", "paragraphs": {"context": "c0", "qas": {"id": "b"}},
                   "_index": 1, "_before": [{"id": "a"}]})
        );
        assert_eq!(rows[2].value["paragraphs"]["context"], "c1");
        assert_eq!(rows[2].value["_before"], json!([]));
        assert_eq!(rows[2].child.as_ref().unwrap().index, 2);
        assert!(inside("paragraphs.qas", "paragraphs[].qas[].id"));
        assert!(!inside("paragraphs.qas", "id"));
    }

    #[test]
    fn a_missing_list_names_the_step() {
        let e = explode(vec![row(json!({"turns": 3}))], "turns", |_| "x".into()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "d.json: record 1: data.explode = \"turns\": `turns` is not a list"
        );
    }
}
