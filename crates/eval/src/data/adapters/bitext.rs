//! Bitext retrieval: Tatoeba's in-record sentence pairs and BUCC's
//! sentences with the key of their gold partner.

use super::{req, row_id, Res};
use crate::data::path::{get, to_text};
use crate::data::read::Row;
use crate::data::{Example, Gold};
use crate::suite::spec::SuiteSpec;
use std::collections::BTreeMap;

pub(super) fn tatoeba(spec: &SuiteSpec, row: &Row) -> Res<Example> {
    let lang = to_text(&req(spec, row, "lang", "language code")?, "");
    let source = to_text(&req(spec, row, &lang, "sentence in `lang`")?, " ");
    let target = to_text(&req(spec, row, "eng", "English sentence")?, " ");
    let mut vars = BTreeMap::new();
    vars.insert("source".into(), source.clone());
    vars.insert("target".into(), target.clone());
    vars.insert("lang".into(), lang);
    Ok(Example {
        truncated_bytes: 0,
        group: None,
        id: row_id(spec, row),
        vars,
        choices: vec![],
        gold: Gold::Pair { source, target },
    })
}

pub(super) fn bucc(spec: &SuiteSpec, row: &Row) -> Res<Example> {
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
        group: None,
        id: key.clone(),
        vars,
        choices: vec![],
        gold: Gold::Bitext { key, lang, partner },
    })
}
