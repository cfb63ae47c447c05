//! The default `fields` adapter: one example per record, following the
//! suite's `[fields]` mapping and its task kind.

use super::{label_index, missing, req, row_id, words, Res};
use crate::data::path::{get, to_list, to_text};
use crate::data::read::Row;
use crate::data::suite_file;
use crate::data::{DataError, Example, Gold};
use crate::metrics::numbers::Scale;
use crate::suite::spec::{SuiteSpec, TaskKind};
use crate::suite::{filters, placeholders};
use serde_json::Value;
use std::collections::BTreeMap;

fn join(spec: &SuiteSpec) -> &str {
    spec.fields.join.as_deref().unwrap_or("\n")
}

/// The template variables of `row`: each `[fields.inputs]` value as text,
/// and each filtered placeholder of the template (`{name|table}`,
/// `{name|map:<map>}`) under its own text, which `render` replaces.
fn vars(spec: &SuiteSpec, row: &Row) -> Res<BTreeMap<String, String>> {
    let mut vars = BTreeMap::new();
    for (name, path) in &spec.fields.inputs {
        let v = req(spec, row, path, &format!("fields.inputs.{name}"))?;
        vars.insert(name.clone(), to_text(&v, join(spec)));
        for p in placeholders(&spec.prompt.template) {
            let (base, fs) = filters(&p);
            if base != name || fs.is_empty() || vars.contains_key(&p) {
                continue;
            }
            let text = filtered(spec, row, &v, path, &p, &fs)?;
            vars.insert(p, text);
        }
    }
    Ok(vars)
}

/// Applies the filters `fs` of placeholder `p` to the value `v` read at `path`.
fn filtered(
    spec: &SuiteSpec,
    row: &Row,
    v: &Value,
    path: &str,
    p: &str,
    fs: &[&str],
) -> Res<String> {
    let mut text = to_text(v, join(spec));
    for f in fs {
        if *f == "table" {
            text = table(v).ok_or_else(|| {
                row.error(format!(
                    "field `{path}` (`{{{p}}}` of suite `{}` in {}) is not a list of rows",
                    spec.id,
                    suite_file(spec)
                ))
            })?;
        } else if let Some(m) = f.strip_prefix("map:") {
            let map = spec.maps.get(m);
            text = map
                .and_then(|map| map.get(text.trim()))
                .cloned()
                .ok_or_else(|| {
                    row.error(format!(
                        "field `{path}` holds `{text}`, which [maps.{m}] of {} does not list (`{{{p}}}` of suite `{}`); add it",
                        suite_file(spec),
                        spec.id
                    ))
                })?;
        }
    }
    Ok(text)
}

/// A list of rows as text: one line per row, the cells joined by ` | `
/// (a row that is not a list is one cell).
pub fn table(v: &Value) -> Option<String> {
    let rows = v.as_array()?;
    Some(
        rows.iter()
            .map(|r| match r {
                Value::Array(cells) => cells
                    .iter()
                    .map(|c| to_text(c, " "))
                    .collect::<Vec<_>>()
                    .join(" | "),
                other => to_text(other, " "),
            })
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

/// Parses MathQA's lettered option string `a ) 156 , b ) 167 , ...`.
pub fn parse_lettered(s: &str) -> Vec<String> {
    let re = regex::Regex::new(r"(?:^|[\s,\[']) ?([a-eA-E]) ?\) ").expect("valid regex");
    let starts: Vec<(usize, usize)> = re
        .captures_iter(s)
        .map(|c| {
            let m = c.get(0).expect("match");
            (m.start(), m.end())
        })
        .collect();
    starts
        .iter()
        .enumerate()
        .map(|(i, &(_, end))| {
            let stop = starts.get(i + 1).map(|x| x.0).unwrap_or(s.len());
            s[end..stop]
                .trim()
                .trim_end_matches([',', ']', '\''])
                .trim()
                .to_string()
        })
        .collect()
}

fn choices(spec: &SuiteSpec, row: &Row) -> Res<Vec<String>> {
    use crate::suite::spec::PathOrList;
    match &spec.fields.choices {
        Some(PathOrList::One(p)) => {
            let v = req(spec, row, p, "fields.choices")?;
            if spec.fields.choices_format.as_deref() == Some("lettered") {
                Ok(parse_lettered(&to_text(&v, " ")))
            } else {
                Ok(to_list(&v))
            }
        }
        Some(PathOrList::Many(ps)) => ps
            .iter()
            .map(|p| Ok(to_text(&req(spec, row, p, "fields.choices")?, " ")))
            .collect(),
        None => Err(missing(spec, row, "<choices>", "fields.choices")),
    }
}

fn answer_index(spec: &SuiteSpec, row: &Row, answer: &Value, choices: &[String]) -> Res<usize> {
    let text = to_text(answer, " ");
    let fmt = spec.fields.answer_format.as_deref().unwrap_or("index0");
    let bad = |m: String| row.error(m);
    let idx = if let Some(p) = fmt.strip_prefix("label_of:") {
        let labels = to_list(&req(spec, row, p, "answer_format label_of")?);
        labels
            .iter()
            .position(|l| *l == text)
            .ok_or_else(|| bad(format!("answer `{text}` not found in `{p}`")))?
    } else {
        match fmt {
            "index0" | "index1" => {
                let i: usize = text
                    .trim()
                    .parse()
                    .map_err(|_| bad(format!("answer `{text}` is not an integer ({fmt})")))?;
                if fmt == "index1" {
                    i.checked_sub(1)
                        .ok_or_else(|| bad("index1 answer is 0".to_string()))?
                } else {
                    i
                }
            }
            "letter" => {
                let c = text
                    .trim()
                    .chars()
                    .next()
                    .ok_or_else(|| bad("empty letter answer".into()))?;
                (c.to_ascii_lowercase() as usize)
                    .checked_sub('a' as usize)
                    .ok_or_else(|| bad(format!("answer `{text}` is not a letter")))?
            }
            "text" => choices
                .iter()
                .position(|c| c.trim() == text.trim())
                .ok_or_else(|| bad(format!("answer `{text}` is not one of the choices")))?,
            other => return Err(bad(format!("unknown answer_format `{other}`"))),
        }
    };
    if idx >= choices.len() {
        return Err(bad(format!(
            "answer index {idx} is out of range for {} choices",
            choices.len()
        )));
    }
    Ok(idx)
}

/// The record's `[fields].scale`, checked (`None` when the suite names no
/// scale field or the record leaves it empty).
fn record_scale(spec: &SuiteSpec, row: &Row) -> Res<Option<String>> {
    let Some(path) = spec.fields.scale.as_deref() else {
        return Ok(None);
    };
    let text = match get(&row.value, path) {
        None | Some(Value::Null) => return Ok(None),
        Some(v) => to_text(&v, " "),
    };
    match Scale::parse(&text) {
        Ok(None) => Ok(None),
        Ok(Some(_)) => Ok(Some(text.trim().to_string())),
        Err(e) => Err(DataError::at(
            &row.file,
            row.line,
            format!(
                "field `{path}` ([fields].scale of suite `{}`): {e}",
                spec.id
            ),
        )),
    }
}

/// The gold of a QA-like record under `[fields].answer_format`: `number`
/// keeps a text that is not a number as a text (the metrics report what they
/// cannot read), `spans` reads a list as a set of spans (a list of lists as
/// alternatives of sets), `text` joins a list, `texts` (default) takes a list
/// as alternatives. A record `scale` makes every form [`Gold::Answers`].
fn answer_gold(spec: &SuiteSpec, row: &Row, a: &Value) -> Res<Gold> {
    let scale = record_scale(spec, row)?;
    let fmt = spec.fields.answer_format.as_deref().unwrap_or("texts");
    let one = |t: String| Gold::Answers {
        alternatives: vec![vec![t]],
        scale: scale.clone(),
    };
    Ok(match fmt {
        "number" => {
            let number = a.as_f64().or_else(|| {
                a.as_str()
                    .and_then(|t| t.trim().replace(',', "").parse::<f64>().ok())
            });
            match number {
                Some(v) if !v.is_finite() => {
                    return Err(DataError::at(
                        &row.file,
                        row.line,
                        format!(
                            "field `{}`: answer `{a}` is not a finite number",
                            spec.fields.answer.as_deref().unwrap_or("label")
                        ),
                    ))
                }
                Some(value) if scale.is_none() => Gold::Number { value },
                _ => one(to_text(a, join(spec))),
            }
        }
        "spans" => {
            let alternatives = match a {
                Value::Array(items) if items.iter().any(Value::is_array) => {
                    items.iter().map(to_list).collect()
                }
                Value::Array(_) => vec![to_list(a)],
                other => vec![vec![to_text(other, join(spec))]],
            };
            Gold::Answers {
                alternatives,
                scale,
            }
        }
        "text" if scale.is_some() => one(to_text(a, join(spec))),
        "text" => Gold::Texts {
            texts: vec![to_text(a, join(spec))],
        },
        _ if scale.is_some() => Gold::Answers {
            alternatives: to_list(a).into_iter().map(|t| vec![t]).collect(),
            scale,
        },
        _ => Gold::Texts { texts: to_list(a) },
    })
}

pub(super) fn fields(spec: &SuiteSpec, row: &Row, values: &[String]) -> Res<Example> {
    let id = row_id(spec, row);
    let mut vars = vars(spec, row)?;
    let answer_path = spec.fields.answer.as_deref().unwrap_or("label");
    let (choices, gold) = match spec.task {
        TaskKind::MultipleChoice => {
            let ch = choices(spec, row)?;
            let a = req(spec, row, answer_path, "fields.answer")?;
            let i = answer_index(spec, row, &a, &ch)?;
            (ch, Gold::Index { index: i })
        }
        TaskKind::Classification => {
            let a = req(spec, row, answer_path, "fields.answer")?;
            let text = to_text(&a, " ");
            let i = if spec.fields.answer_format.as_deref() == Some("index0") {
                text.trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|i| *i < values.len())
                    .ok_or_else(|| row.error(format!("label index `{text}` out of range")))?
            } else {
                label_index(spec, row, values, &text)?
            };
            (words(spec, values), Gold::Index { index: i })
        }
        TaskKind::MultiLabelClassification => {
            let a = get(&row.value, answer_path).unwrap_or(Value::Array(vec![]));
            // Labels outside the declared set are dropped, as LexGLUE does.
            let indices = to_list(&a)
                .iter()
                .filter_map(|l| values.iter().position(|v| v == l))
                .collect();
            (words(spec, values), Gold::Indices { indices })
        }
        TaskKind::TokenTagging | TaskKind::Ner => {
            let tp = spec.fields.tokens.as_deref().unwrap_or("tokens");
            let gp = spec.fields.tags.as_deref().unwrap_or("tags");
            let tokens = to_list(&req(spec, row, tp, "fields.tokens")?);
            let tags = to_list(&req(spec, row, gp, "fields.tags")?);
            if tokens.len() != tags.len() {
                return Err(row.error(format!("{} tokens but {} tags", tokens.len(), tags.len())));
            }
            vars.entry("tokens".into())
                .or_insert_with(|| tokens.join(" "));
            (values.to_vec(), Gold::Tags { tokens, tags })
        }
        TaskKind::LanguageModeling => {
            let tp = spec.fields.text.as_deref().unwrap_or("text");
            let text = to_text(&req(spec, row, tp, "fields.text")?, join(spec));
            vars.entry("text".into()).or_insert_with(|| text.clone());
            (vec![], Gold::Text { text })
        }
        _ => {
            let a = req(spec, row, answer_path, "fields.answer")?;
            (vec![], answer_gold(spec, row, &a)?)
        }
    };
    Ok(Example {
        truncated_bytes: 0,
        group: None,
        id,
        vars,
        choices,
        gold,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_table_as_pipe_separated_rows() {
        let v = serde_json::json!([["", "2019", "2018"], ["Revenue", 1.5, "2"], "note"]);
        assert_eq!(
            table(&v).unwrap(),
            " | 2019 | 2018\nRevenue | 1.5 | 2\nnote"
        );
        assert_eq!(table(&serde_json::json!("x")), None);
    }

    #[test]
    fn parses_mathqa_lettered_options() {
        let o = parse_lettered("a ) 156 , b ) 167 , c ) 870 , d ) 352 , e ) 380");
        assert_eq!(o, vec!["156", "167", "870", "352", "380"]);
        let o = parse_lettered("a ) rs . 10 , b ) rs . 12.5 , c ) none of these");
        assert_eq!(o, vec!["rs . 10", "rs . 12.5", "none of these"]);
    }
}
