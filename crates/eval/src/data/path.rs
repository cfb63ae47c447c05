//! Dotted field paths over JSON records: `a.b`, `answers[].text`, `list.0`.

use serde_json::Value;

/// Resolves `path` in `v`. `name[]` maps the rest of the path over an array.
pub fn get(v: &Value, path: &str) -> Option<Value> {
    if path.is_empty() {
        return Some(v.clone());
    }
    let (head, rest) = match path.find('.') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (path, ""),
    };
    if let Some(name) = head.strip_suffix("[]") {
        let arr = if name.is_empty() { v } else { v.get(name)? };
        let items = arr.as_array()?;
        return Some(Value::Array(
            items.iter().filter_map(|x| get(x, rest)).collect(),
        ));
    }
    let next = match v {
        Value::Object(m) => m.get(head)?,
        Value::Array(a) => a.get(head.parse::<usize>().ok()?)?,
        _ => return None,
    };
    get(next, rest)
}

/// Renders a scalar or an array of scalars as text (arrays joined with `join`).
pub fn to_text(v: &Value, join: &str) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => a
            .iter()
            .map(|x| to_text(x, join))
            .collect::<Vec<_>>()
            .join(join),
        Value::Object(_) => v.to_string(),
    }
}

/// Renders an array as a list of strings (a scalar becomes a one-item list, null none).
pub fn to_list(v: &Value) -> Vec<String> {
    match v {
        Value::Null => vec![],
        Value::Array(a) => a.iter().map(|x| to_text(x, " ")).collect(),
        other => vec![to_text(other, " ")],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn resolves_nested_and_mapped_paths() {
        let v = json!({"choices": {"text": ["a", "b"]}, "answers": [{"text": "x"}, {"text": "y"}], "n": 3});
        assert_eq!(get(&v, "choices.text"), Some(json!(["a", "b"])));
        assert_eq!(get(&v, "answers[].text"), Some(json!(["x", "y"])));
        assert_eq!(get(&v, "choices.text.1"), Some(json!("b")));
        assert_eq!(to_text(&get(&v, "n").unwrap(), ""), "3");
        assert_eq!(get(&v, "missing"), None);
    }
}
