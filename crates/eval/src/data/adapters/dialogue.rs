//! Dialogue adapters: one example per turn, with the preceding turns as
//! history (DailyDialog acts, PersonaChat in JSON and ParlAI text).

use super::{label_index, opt_int, opt_str, req, row_id, words, Res};
use crate::data::path::{get, to_list, to_text};
use crate::data::read::Row;
use crate::data::{Example, Gold};
use crate::suite::spec::SuiteSpec;
use std::collections::BTreeMap;

pub(super) fn dailydialog(spec: &SuiteSpec, rows: &[Row], values: &[String]) -> Res<Vec<Example>> {
    let field = opt_str(spec, "label_field").unwrap_or("act");
    let history = opt_int(spec, "history", 3);
    let mut out = Vec::new();
    for row in rows {
        let id = row_id(spec, row);
        let dialog = to_list(&req(spec, row, "dialog", "dialogue turns")?);
        let labels = to_list(&req(spec, row, field, "options.label_field")?);
        if dialog.len() != labels.len() {
            return Err(row.error(format!(
                "{} utterances but {} `{field}` labels",
                dialog.len(),
                labels.len()
            )));
        }
        for (i, (utt, lab)) in dialog.iter().zip(&labels).enumerate() {
            let start = i.saturating_sub(history);
            let mut vars = BTreeMap::new();
            vars.insert("history".into(), dialog[start..i].join("\n"));
            vars.insert("utterance".into(), utt.clone());
            out.push(Example {
                truncated_bytes: 0,
                group: None,
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
        group: None,
        id,
        vars,
        choices,
        gold,
    }
}

pub(super) fn personachat(spec: &SuiteSpec, rows: &[Row]) -> Res<Vec<Example>> {
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
                return Err(row.error(format!("turn {t} has no labels")));
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

pub(super) fn personachat_txt(spec: &SuiteSpec, rows: &[Row]) -> Res<Vec<Example>> {
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
        let n: usize = num
            .parse()
            .map_err(|_| row.error("expected a ParlAI line `<n> <text>`"))?;
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
            return Err(row.error("expected `<text>\\t<label>\\t\\t<cand1>|<cand2>|...` (ParlAI format with candidates)",
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
