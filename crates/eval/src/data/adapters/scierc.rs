//! SciERC: document-level token spans -> per-sentence NER tags, relation
//! triples, or coreference clusters (the `view` option).

use super::{opt_str, req, row_id, Res};
use crate::data::path::to_list;
use crate::data::read::Row;
use crate::data::{Example, Gold};
use crate::suite::spec::SuiteSpec;
use serde_json::Value;
use std::collections::BTreeMap;

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

pub(super) fn scierc(spec: &SuiteSpec, rows: &[Row]) -> Res<Vec<Example>> {
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
        let bad = |m: String| row.error(m);
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
                        group: None,
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
                    group: None,
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
