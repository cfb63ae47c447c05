//! Domain-labelled sentences from the suites' data, for fitting GEM's
//! router (`edgebench_runtime::gem::router_fit`).

use super::load_examples;
use crate::suite::spec::{Domain, SuiteSpec};
use edgebench_runtime::gem::router_fit::Labelled;
use std::path::Path;

/// Up to `per_domain` sentences per domain: the longest field of each
/// example, cut to `max_chars`, from every suite whose data is found.
pub fn domain_sentences(
    specs: &[SuiteSpec],
    data_root: &Path,
    per_domain: usize,
    max_chars: usize,
) -> Vec<Labelled> {
    let mut out: Vec<Labelled> = Vec::new();
    for (d, domain) in Domain::ALL.iter().enumerate() {
        let suites: Vec<&SuiteSpec> = specs
            .iter()
            .filter(|s| s.paper_domain() == Some(*domain))
            .collect();
        let mut per_suite: Vec<Vec<Labelled>> = suites
            .iter()
            .map(|s| {
                load_examples(s, data_root)
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|ex| {
                        let text = ex.vars.values().max_by_key(|v| v.len())?.clone();
                        (text.len() >= 16).then(|| Labelled {
                            id: format!("{}/{}", s.id, ex.id),
                            text: text.chars().take(max_chars).collect(),
                            domain: d,
                        })
                    })
                    .collect()
            })
            .collect();
        // round-robin over the domain's suites so no suite dominates
        let mut taken = 0;
        let mut round = 0;
        while taken < per_domain && per_suite.iter().any(|v| v.len() > round) {
            for v in per_suite.iter_mut() {
                if let Some(x) = v.get(round) {
                    if taken < per_domain {
                        out.push(x.clone());
                        taken += 1;
                    }
                }
            }
            round += 1;
        }
    }
    out
}
