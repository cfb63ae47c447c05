//! Question answering over structured sources: TyDi QA's byte-offset
//! passages and annotator votes, FinQA's text-and-table contexts.

use super::{opt_int, opt_str, req, row_id, Res};
use crate::data::path::{get, to_list, to_text};
use crate::data::read::Row;
use crate::data::{Example, Gold};
use crate::suite::spec::SuiteSpec;
use std::collections::BTreeMap;

fn byte_slice(bytes: &[u8], s: i64, e: i64) -> Option<String> {
    let (s, e) = (usize::try_from(s).ok()?, usize::try_from(e).ok()?);
    (s < e && e <= bytes.len()).then(|| String::from_utf8_lossy(&bytes[s..e]).trim().to_string())
}

pub(super) fn tydiqa(spec: &SuiteSpec, rows: &[Row]) -> Res<Vec<Example>> {
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
                    group: None,
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
                    group: None,
                    id,
                    vars,
                    choices: vec![],
                    gold: Gold::Texts { texts },
                });
            }
            other => {
                return Err(row.error(format!("unknown tydiqa view `{other}` (selectp, minspan)")))
            }
        }
    }
    Ok(out)
}

pub(super) fn finqa(spec: &SuiteSpec, row: &Row) -> Res<Example> {
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
    // exe_ans holds a percentage as a fraction (0.05644 for 5.644 %): for a
    // question asking for one, the percentage is an alternative answer
    let percent_question = question.to_lowercase().contains("percent") || question.contains('%');
    let gold = match ans.as_f64() {
        Some(value) if percent_question => Gold::Answers {
            alternatives: vec![
                vec![format!("{value}")],
                vec![format!("{}%", (value * 100.0 * 1e9).round() / 1e9)],
            ],
            scale: None,
        },
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
        group: None,
        id: row_id(spec, row),
        vars,
        choices: vec![],
        gold,
    })
}
