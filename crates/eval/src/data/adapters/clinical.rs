//! MIMIC-III discharge diagnosis: notes joined with the diagnoses file on
//! `HADM_ID`, gold = the ICD-9 codes among the suite's labels.

use super::{opt_str, req, words, Res};
use crate::data::path::{get, to_text};
use crate::data::read::{read_rows, Row};
use crate::data::{DataError, Example, Gold};
use crate::suite::spec::{FileFormat, SuiteSpec};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

pub(super) fn mimic_diagnosis(
    spec: &SuiteSpec,
    rows: &[Row],
    values: &[String],
    root: &Path,
) -> Res<Vec<Example>> {
    let diag_name = opt_str(spec, "diagnoses_file").unwrap_or("DIAGNOSES_ICD.csv");
    let diag_path = root.join(&spec.data.dir).join(diag_name);
    let diag_rows = read_rows(&diag_path, FileFormat::Csv, None).map_err(|e| {
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
            group: None,
            id,
            vars,
            choices: words(spec, values),
            gold: Gold::Indices { indices },
        });
    }
    Ok(out)
}
