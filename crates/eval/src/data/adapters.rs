//! Adapters: records in a dataset's original layout -> [`Example`]s.
//!
//! The default `fields` adapter follows the suite's `[fields]` mapping; the
//! named adapters handle layouts a mapping cannot express (one example per
//! dialogue turn, byte offsets, joins across files, ...).

use super::path::{get, to_list, to_text};
use super::read::Row;
use super::{DataError, Example, Gold};
use crate::suite::spec::{FileFormat, SuiteSpec, TaskKind};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
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
    DataError::at(
        &row.file,
        row.line,
        format!(
            "missing field `{path}` ({what} of suite `{}`); check the file against suites/{}.toml [fields]",
            spec.id, spec.id
        ),
    )
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
        DataError::at(
            &row.file,
            row.line,
            format!(
                "label `{v}` is not in [labels].values of suite `{}` ({}); add it or fix the data",
                spec.id,
                values.join(", ")
            ),
        )
    })
}

/// Converts `rows` into examples following the suite's adapter.
pub fn adapt(spec: &SuiteSpec, rows: &[Row], root: &Path) -> Res<Vec<Example>> {
    let values = label_values(spec, rows);
    match spec.data.adapter.as_str() {
        "fields" => rows.iter().map(|r| fields(spec, r, &values)).collect(),
        "dailydialog" => dailydialog(spec, rows, &values),
        "personachat" => personachat(spec, rows),
        "personachat_txt" => personachat_txt(spec, rows),
        "scierc" => scierc(spec, rows),
        "tydiqa" => tydiqa(spec, rows),
        "tatoeba" => rows.iter().map(|r| tatoeba(spec, r)).collect(),
        "bucc" => rows.iter().map(|r| bucc(spec, r)).collect(),
        "finqa" => rows.iter().map(|r| finqa(spec, r)).collect(),
        "mimic_diagnosis" => mimic_diagnosis(spec, rows, &values, root),
        other => Err(DataError::at(
            Path::new(&format!("suites/{}.toml", spec.id)),
            0,
            format!("unknown adapter `{other}`"),
        )),
    }
}

fn row_id(spec: &SuiteSpec, row: &Row) -> String {
    let path = spec.fields.id.as_deref().unwrap_or("id");
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

fn join(spec: &SuiteSpec) -> &str {
    spec.fields.join.as_deref().unwrap_or("\n")
}

fn vars(spec: &SuiteSpec, row: &Row) -> Res<BTreeMap<String, String>> {
    spec.fields
        .inputs
        .iter()
        .map(|(name, path)| {
            let v = req(spec, row, path, &format!("fields.inputs.{name}"))?;
            Ok((name.clone(), to_text(&v, join(spec))))
        })
        .collect()
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
    let bad = |m: String| DataError::at(&row.file, row.line, m);
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

fn fields(spec: &SuiteSpec, row: &Row, values: &[String]) -> Res<Example> {
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
                    .ok_or_else(|| {
                        DataError::at(
                            &row.file,
                            row.line,
                            format!("label index `{text}` out of range"),
                        )
                    })?
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
                return Err(DataError::at(
                    &row.file,
                    row.line,
                    format!("{} tokens but {} tags", tokens.len(), tags.len()),
                ));
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
            let gold = match spec.fields.answer_format.as_deref().unwrap_or("texts") {
                "number" => Gold::Number {
                    value: to_text(&a, "")
                        .trim()
                        .replace(',', "")
                        .parse::<f64>()
                        .ok()
                        .filter(|v| v.is_finite())
                        .ok_or_else(|| {
                            DataError::at(
                                &row.file,
                                row.line,
                                format!(
                                    "field `{answer_path}`: answer `{a}` is not a finite number"
                                ),
                            )
                        })?,
                },
                "text" => Gold::Texts {
                    texts: vec![to_text(&a, join(spec))],
                },
                _ => Gold::Texts { texts: to_list(&a) },
            };
            (vec![], gold)
        }
    };
    Ok(Example {
        truncated_bytes: 0,
        id,
        vars,
        choices,
        gold,
    })
}

fn dailydialog(spec: &SuiteSpec, rows: &[Row], values: &[String]) -> Res<Vec<Example>> {
    let field = opt_str(spec, "label_field").unwrap_or("act");
    let history = opt_int(spec, "history", 3);
    let mut out = Vec::new();
    for row in rows {
        let id = row_id(spec, row);
        let dialog = to_list(&req(spec, row, "dialog", "dialogue turns")?);
        let labels = to_list(&req(spec, row, field, "options.label_field")?);
        if dialog.len() != labels.len() {
            return Err(DataError::at(
                &row.file,
                row.line,
                format!(
                    "{} utterances but {} `{field}` labels",
                    dialog.len(),
                    labels.len()
                ),
            ));
        }
        for (i, (utt, lab)) in dialog.iter().zip(&labels).enumerate() {
            let start = i.saturating_sub(history);
            let mut vars = BTreeMap::new();
            vars.insert("history".into(), dialog[start..i].join("\n"));
            vars.insert("utterance".into(), utt.clone());
            out.push(Example {
                truncated_bytes: 0,
                id: format!("{id}#{i}"),
                vars,
                choices: words(spec, values),
                gold: Gold::Index {
                    index: label_index(spec, row, values, lab)?,
                },
            });
        }
    }
    Ok(out)
}

fn persona_example(
    id: String,
    persona: &[String],
    history: &[String],
    keep: usize,
    message: &str,
    choices: Vec<String>,
    gold: Gold,
) -> Example {
    let start = history.len().saturating_sub(keep);
    let mut vars = BTreeMap::new();
    vars.insert("persona".into(), persona.join("\n"));
    vars.insert("history".into(), history[start..].join("\n"));
    vars.insert("message".into(), message.to_string());
    Example {
        truncated_bytes: 0,
        id,
        vars,
        choices,
        gold,
    }
}

fn personachat(spec: &SuiteSpec, rows: &[Row]) -> Res<Vec<Example>> {
    let keep = opt_int(spec, "history", 4);
    let mut out = Vec::new();
    for row in rows {
        let id = row_id(spec, row);
        let persona = to_list(&req(spec, row, "your_persona", "persona")?);
        let turns = req(spec, row, "dialog", "dialogue turns")?;
        let turns = turns.as_array().cloned().unwrap_or_default();
        let mut history: Vec<String> = Vec::new();
        for (t, turn) in turns.iter().enumerate() {
            let text = get(turn, "text")
                .map(|v| to_text(&v, " "))
                .unwrap_or_default();
            let labels = get(turn, "labels").map(|v| to_list(&v)).unwrap_or_default();
            let Some(gold) = labels.first().cloned() else {
                return Err(DataError::at(
                    &row.file,
                    row.line,
                    format!("turn {t} has no labels"),
                ));
            };
            out.push(persona_example(
                format!("{id}#{t}"),
                &persona,
                &history,
                keep,
                &text,
                vec![],
                Gold::Texts {
                    texts: vec![gold.clone()],
                },
            ));
            history.push(text);
            history.push(gold);
        }
    }
    Ok(out)
}

fn personachat_txt(spec: &SuiteSpec, rows: &[Row]) -> Res<Vec<Example>> {
    let keep = opt_int(spec, "history", 4);
    let mut out = Vec::new();
    let mut persona: Vec<String> = Vec::new();
    let mut history: Vec<String> = Vec::new();
    let mut dialog = 0usize;
    let mut turn = 0usize;
    let mut last_n = 0usize;
    for row in rows {
        let line = to_text(&row.value, "");
        if line.trim().is_empty() {
            continue;
        }
        let (num, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        let n: usize = num.parse().map_err(|_| {
            DataError::at(&row.file, row.line, "expected a ParlAI line `<n> <text>`")
        })?;
        if n <= last_n {
            dialog += 1;
            turn = 0;
            persona.clear();
            history.clear();
        }
        last_n = n;
        if let Some(p) = rest.strip_prefix("your persona:") {
            persona.push(p.trim().to_string());
            continue;
        }
        let parts: Vec<&str> = rest.split('\t').collect();
        if parts.len() < 4 {
            return Err(DataError::at(
                &row.file,
                row.line,
                "expected `<text>\\t<label>\\t\\t<cand1>|<cand2>|...` (ParlAI format with candidates)",
            ));
        }
        let (text, label) = (parts[0].to_string(), parts[1].to_string());
        let mut cands: Vec<String> = parts[3].split('|').map(str::to_string).collect();
        let index = match cands.iter().position(|c| *c == label) {
            Some(i) => i,
            None => {
                cands.push(label.clone());
                cands.len() - 1
            }
        };
        let stem = row
            .file
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        out.push(persona_example(
            format!("{stem}-d{dialog}#t{turn}"),
            &persona,
            &history,
            keep,
            &text,
            cands,
            Gold::Index { index },
        ));
        history.push(text);
        history.push(label);
        turn += 1;
    }
    let _ = spec;
    Ok(out)
}

fn spans_of(v: &Value) -> Vec<Vec<i64>> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|x| {
                    x.as_array()
                        .map(|y| y.iter().filter_map(|z| z.as_i64()).collect())
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default()
}

fn scierc(spec: &SuiteSpec, rows: &[Row]) -> Res<Vec<Example>> {
    let view = opt_str(spec, "view").unwrap_or("ner");
    let mut out = Vec::new();
    for row in rows {
        let id = row_id(spec, row);
        let sentences: Vec<Vec<String>> = req(spec, row, "sentences", "sentences")?
            .as_array()
            .map(|a| a.iter().map(to_list).collect())
            .unwrap_or_default();
        let doc: Vec<String> = sentences.concat();
        let span_text = |s: i64, e: i64| -> Option<String> {
            let (s, e) = (usize::try_from(s).ok()?, usize::try_from(e).ok()?);
            (s <= e && e < doc.len()).then(|| doc[s..=e].join(" "))
        };
        let bad = |m: String| DataError::at(&row.file, row.line, m);
        match view {
            "ner" | "rel" => {
                let key = if view == "ner" { "ner" } else { "relations" };
                let per_sent = req(spec, row, key, key)?;
                let per_sent = per_sent.as_array().cloned().unwrap_or_default();
                let mut offset = 0usize;
                for (k, sent) in sentences.iter().enumerate() {
                    let items = per_sent.get(k).map(spans_of_labeled).unwrap_or_default();
                    let mut vars = BTreeMap::new();
                    vars.insert("tokens".into(), sent.join(" "));
                    vars.insert("sentence".into(), sent.join(" "));
                    let gold = if view == "ner" {
                        let mut tags = vec!["O".to_string(); sent.len()];
                        for (nums, label) in &items {
                            let [s, e] = nums[..] else {
                                return Err(bad(format!(
                                    "sentence {k}: NER span needs [start, end, label]"
                                )));
                            };
                            // document-level token offsets -> this sentence's positions
                            let local = |x: i64| {
                                usize::try_from(x)
                                    .ok()
                                    .and_then(|x| x.checked_sub(offset))
                                    .filter(|x| *x < sent.len())
                            };
                            let Some((s, e)) = local(s).zip(local(e)).filter(|(s, e)| s <= e)
                            else {
                                return Err(bad(format!(
                                    "field `{key}`, sentence {k}: span [{s}, {e}] is outside the sentence (document tokens {offset}..{})",
                                    offset + sent.len()
                                )));
                            };
                            if tags[s..=e].iter().any(|t| t != "O") {
                                continue; // nested span: keep the first, as BIO cannot nest
                            }
                            tags[s] = format!("B-{label}");
                            for t in tags.iter_mut().take(e + 1).skip(s + 1) {
                                *t = format!("I-{label}");
                            }
                        }
                        Gold::Tags {
                            tokens: sent.clone(),
                            tags,
                        }
                    } else {
                        let mut triples = Vec::new();
                        for (nums, label) in &items {
                            let [s1, e1, s2, e2] = nums[..] else {
                                return Err(bad(format!(
                                    "sentence {k}: relation needs [s1, e1, s2, e2, label]"
                                )));
                            };
                            let (Some(h), Some(t)) = (span_text(s1, e1), span_text(s2, e2)) else {
                                return Err(bad(format!(
                                    "sentence {k}: relation span outside the document"
                                )));
                            };
                            triples.push((h, label.clone(), t));
                        }
                        Gold::Triples { triples }
                    };
                    out.push(Example {
                        truncated_bytes: 0,
                        id: format!("{id}#{k}"),
                        vars,
                        choices: spec.labels.values.clone(),
                        gold,
                    });
                    offset += sent.len();
                }
            }
            "coref" => {
                let clusters = req(spec, row, "clusters", "clusters")?;
                let clusters: Vec<Vec<String>> = clusters
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|c| {
                        spans_of(c)
                            .iter()
                            .map(|m| match m[..] {
                                [s, e] => span_text(s, e).ok_or_else(|| {
                                    bad(format!("mention [{s}, {e}] outside the document"))
                                }),
                                _ => Err(bad("a mention must be [start, end]".into())),
                            })
                            .collect::<Res<Vec<String>>>()
                    })
                    .collect::<Res<_>>()?;
                let mut vars = BTreeMap::new();
                vars.insert("document".into(), doc.join(" "));
                out.push(Example {
                    truncated_bytes: 0,
                    id,
                    vars,
                    choices: vec![],
                    gold: Gold::Clusters { clusters },
                });
            }
            other => {
                return Err(bad(format!(
                    "unknown scierc view `{other}` (ner, rel, coref)"
                )))
            }
        }
    }
    Ok(out)
}

/// `[[s, e, "Label"], ...]` or `[[s1, e1, s2, e2, "Label"], ...]` -> (numbers, label).
fn spans_of_labeled(v: &Value) -> Vec<(Vec<i64>, String)> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| {
                    let arr = x.as_array()?;
                    let label = arr.last()?.as_str()?.to_string();
                    let nums = arr[..arr.len() - 1]
                        .iter()
                        .filter_map(|n| n.as_i64())
                        .collect();
                    Some((nums, label))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn byte_slice(bytes: &[u8], s: i64, e: i64) -> Option<String> {
    let (s, e) = (usize::try_from(s).ok()?, usize::try_from(e).ok()?);
    (s < e && e <= bytes.len()).then(|| String::from_utf8_lossy(&bytes[s..e]).trim().to_string())
}

fn tydiqa(spec: &SuiteSpec, rows: &[Row]) -> Res<Vec<Example>> {
    let view = opt_str(spec, "view").unwrap_or("selectp");
    let max_passages = opt_int(spec, "max_passages", 8).max(1);
    let max_chars = opt_int(spec, "max_passage_chars", 400);
    let mut out = Vec::new();
    for row in rows {
        let id = row_id(spec, row);
        let doc = to_text(&req(spec, row, "document_plaintext", "document")?, "");
        let bytes = doc.as_bytes();
        let cands = req(spec, row, "passage_answer_candidates", "passage candidates")?;
        let cands = cands.as_array().cloned().unwrap_or_default();
        let passages: Vec<String> = cands
            .iter()
            .take(max_passages)
            .map(|c| {
                let s = get(c, "plaintext_start_byte")
                    .and_then(|v| v.as_i64())
                    .unwrap_or(-1);
                let e = get(c, "plaintext_end_byte")
                    .and_then(|v| v.as_i64())
                    .unwrap_or(-1);
                let p = byte_slice(bytes, s, e).unwrap_or_default();
                p.chars().take(max_chars).collect()
            })
            .collect();
        let anns = req(spec, row, "annotations", "annotations")?;
        let anns = anns.as_array().cloned().unwrap_or_default();
        // TyDi's rule: with several annotators, a non-null gold needs at least two non-null votes.
        let votes: Vec<i64> = anns
            .iter()
            .filter_map(|a| get(a, "passage_answer.candidate_index").and_then(|v| v.as_i64()))
            .filter(|i| *i >= 0)
            .collect();
        let needed = if anns.len() >= 2 { 2 } else { 1 };
        let passage_gold = if votes.len() >= needed {
            let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
            for v in &votes {
                *counts.entry(*v).or_default() += 1;
            }
            counts
                .into_iter()
                .max_by_key(|(i, c)| (*c, -i))
                .map(|(i, _)| i as usize)
        } else {
            None
        };
        let mut vars = BTreeMap::new();
        vars.insert(
            "question".into(),
            to_text(&req(spec, row, "question_text", "question")?, " "),
        );
        vars.insert(
            "language".into(),
            get(&row.value, "language")
                .map(|v| to_text(&v, ""))
                .unwrap_or_default(),
        );
        vars.insert(
            "passages".into(),
            passages
                .iter()
                .enumerate()
                .map(|(i, p)| format!("[{}] {p}", i + 1))
                .collect::<Vec<_>>()
                .join("\n"),
        );
        vars.insert("context".into(), passages.join("\n"));
        match view {
            "selectp" => {
                let mut choices: Vec<String> =
                    (1..=passages.len()).map(|i| i.to_string()).collect();
                choices.push("none".into());
                out.push(Example {
                    truncated_bytes: 0,
                    id,
                    vars,
                    choices,
                    gold: Gold::MaybeIndex {
                        index: passage_gold,
                    },
                });
            }
            "minspan" => {
                let mut texts: Vec<String> = anns
                    .iter()
                    .filter_map(|a| {
                        // a YES/NO annotation answers "yes"/"no" instead of a span
                        match get(a, "yes_no_answer").map(|v| to_text(&v, "")).as_deref() {
                            Some("YES") => return Some("yes".to_string()),
                            Some("NO") => return Some("no".to_string()),
                            _ => {}
                        }
                        let s = get(a, "minimal_answer.plaintext_start_byte")?.as_i64()?;
                        let e = get(a, "minimal_answer.plaintext_end_byte")?.as_i64()?;
                        byte_slice(bytes, s, e)
                    })
                    .collect();
                texts.dedup();
                out.push(Example {
                    truncated_bytes: 0,
                    id,
                    vars,
                    choices: vec![],
                    gold: Gold::Texts { texts },
                });
            }
            other => {
                return Err(DataError::at(
                    &row.file,
                    row.line,
                    format!("unknown tydiqa view `{other}` (selectp, minspan)"),
                ))
            }
        }
    }
    Ok(out)
}

fn tatoeba(spec: &SuiteSpec, row: &Row) -> Res<Example> {
    let lang = to_text(&req(spec, row, "lang", "language code")?, "");
    let source = to_text(&req(spec, row, &lang, "sentence in `lang`")?, " ");
    let target = to_text(&req(spec, row, "eng", "English sentence")?, " ");
    let mut vars = BTreeMap::new();
    vars.insert("source".into(), source.clone());
    vars.insert("target".into(), target.clone());
    vars.insert("lang".into(), lang);
    Ok(Example {
        truncated_bytes: 0,
        id: row_id(spec, row),
        vars,
        choices: vec![],
        gold: Gold::Pair { source, target },
    })
}

fn bucc(spec: &SuiteSpec, row: &Row) -> Res<Example> {
    let key = row_id(spec, row);
    let lang = to_text(&req(spec, row, "lang", "language")?, "");
    let sentence = to_text(&req(spec, row, "sentence", "sentence")?, " ");
    let partner = get(&row.value, "gold")
        .filter(|v| !v.is_null())
        .map(|v| to_text(&v, ""));
    let mut vars = BTreeMap::new();
    vars.insert("sentence".into(), sentence);
    vars.insert("lang".into(), lang.clone());
    Ok(Example {
        truncated_bytes: 0,
        id: key.clone(),
        vars,
        choices: vec![],
        gold: Gold::Bitext { key, lang, partner },
    })
}

fn finqa(spec: &SuiteSpec, row: &Row) -> Res<Example> {
    let pre = to_text(&req(spec, row, "pre_text", "pre_text")?, " ");
    let post = to_text(&req(spec, row, "post_text", "post_text")?, " ");
    let table = req(spec, row, "table", "table")?;
    let table = table
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| to_list(r).join(" | "))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    let question = to_text(&req(spec, row, "qa.question", "qa.question")?, " ");
    let ans = req(spec, row, "qa.exe_ans", "qa.exe_ans")?;
    let gold = match ans.as_f64() {
        Some(value) => Gold::Number { value },
        None => Gold::Texts {
            texts: vec![to_text(&ans, "")],
        },
    };
    let mut vars = BTreeMap::new();
    vars.insert("context".into(), format!("{pre}\n{table}\n{post}"));
    vars.insert("question".into(), question);
    Ok(Example {
        truncated_bytes: 0,
        id: row_id(spec, row),
        vars,
        choices: vec![],
        gold,
    })
}

fn mimic_diagnosis(
    spec: &SuiteSpec,
    rows: &[Row],
    values: &[String],
    root: &Path,
) -> Res<Vec<Example>> {
    let diag_name = opt_str(spec, "diagnoses_file").unwrap_or("DIAGNOSES_ICD.csv");
    let diag_path = root.join(&spec.data.dir).join(diag_name);
    let diag_rows = super::read::read_rows(&diag_path, FileFormat::Csv, None).map_err(|e| {
        DataError::at(
            &diag_path,
            0,
            format!("{} (MIMIC-III diagnoses are joined on HADM_ID)", e.message),
        )
    })?;
    let mut codes: HashMap<String, Vec<String>> = HashMap::new();
    for r in &diag_rows {
        let h = get(&r.value, "HADM_ID")
            .map(|v| to_text(&v, ""))
            .unwrap_or_default();
        let c = get(&r.value, "ICD9_CODE")
            .map(|v| to_text(&v, ""))
            .unwrap_or_default();
        codes.entry(h).or_default().push(c);
    }
    let category = opt_str(spec, "category");
    let mut out = Vec::new();
    for row in rows {
        if let Some(cat) = category {
            let c = get(&row.value, "CATEGORY")
                .map(|v| to_text(&v, ""))
                .unwrap_or_default();
            if c.trim() != cat {
                continue;
            }
        }
        let hadm = to_text(&req(spec, row, "HADM_ID", "HADM_ID")?, "");
        let text = to_text(&req(spec, row, "TEXT", "TEXT")?, "");
        let id = get(&row.value, "ROW_ID")
            .map(|v| to_text(&v, ""))
            .unwrap_or_else(|| row.line.to_string());
        let have = codes.get(&hadm).cloned().unwrap_or_default();
        let indices = values
            .iter()
            .enumerate()
            .filter(|(_, v)| have.contains(v))
            .map(|(i, _)| i)
            .collect();
        let mut vars = BTreeMap::new();
        vars.insert("text".into(), text);
        out.push(Example {
            truncated_bytes: 0,
            id,
            vars,
            choices: words(spec, values),
            gold: Gold::Indices { indices },
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mathqa_lettered_options() {
        let o = parse_lettered("a ) 156 , b ) 167 , c ) 870 , d ) 352 , e ) 380");
        assert_eq!(o, vec!["156", "167", "870", "352", "380"]);
        let o = parse_lettered("a ) rs . 10 , b ) rs . 12.5 , c ) none of these");
        assert_eq!(o, vec!["rs . 10", "rs . 12.5", "none of these"]);
    }
}
