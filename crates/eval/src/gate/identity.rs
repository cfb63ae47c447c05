//! Mismatch policy: a gate compares two runs over the same suites and the
//! same data. Runs whose suite or data hashes differ are refused unless the
//! caller allows mismatches (`--allow-mismatch`).

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// What identifies the inputs of a run, per suite id.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct RunIdentity {
    /// Suite id -> hash of the suite file used.
    pub suite_hashes: BTreeMap<String, String>,
    /// Suite id -> hash of the evaluation data used.
    pub data_hashes: BTreeMap<String, String>,
}

/// How one suite differs between the two runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MismatchKind {
    /// The suite files differ.
    SuiteHash {
        /// Baseline hash.
        baseline: String,
        /// Candidate hash.
        candidate: String,
    },
    /// The data differ.
    DataHash {
        /// Baseline hash.
        baseline: String,
        /// Candidate hash.
        candidate: String,
    },
    /// Only the baseline ran the suite (or has its hash).
    OnlyInBaseline,
    /// Only the candidate ran the suite (or has its hash).
    OnlyInCandidate,
}

/// One suite that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    /// Suite id.
    pub suite: String,
    /// How it differs.
    pub kind: MismatchKind,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // each file's hash cut to 12 digits (a suite's data may be several files)
        let short = |h: &str| {
            h.split(',')
                .map(|f| f.chars().take(12).collect::<String>())
                .collect::<Vec<_>>()
                .join(",")
        };
        match &self.kind {
            MismatchKind::SuiteHash {
                baseline,
                candidate,
            } => write!(
                f,
                "{}: suite hash differs ({} vs {})",
                self.suite,
                short(baseline),
                short(candidate)
            ),
            MismatchKind::DataHash {
                baseline,
                candidate,
            } => write!(
                f,
                "{}: data hash differs ({} vs {})",
                self.suite,
                short(baseline),
                short(candidate)
            ),
            MismatchKind::OnlyInBaseline => write!(f, "{}: only in the baseline", self.suite),
            MismatchKind::OnlyInCandidate => write!(f, "{}: only in the candidate", self.suite),
        }
    }
}

/// The runs are not comparable and mismatches were not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "baseline and candidate differ in {} suite(s) ({}); rerun on the same suites and data, \
     or pass --allow-mismatch",
    suites.len(),
    mismatches.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
)]
pub struct MismatchRefused {
    /// Suites that differ, sorted.
    pub suites: Vec<String>,
    /// Every difference.
    pub mismatches: Vec<Mismatch>,
}

/// Every difference between two identities, sorted by suite (a suite may
/// appear twice: suite and data hash).
pub fn compare_identities(baseline: &RunIdentity, candidate: &RunIdentity) -> Vec<Mismatch> {
    let mut out = Vec::new();
    let mut missing: BTreeMap<&str, MismatchKind> = BTreeMap::new();
    for (map_b, map_c, is_suite) in [
        (&baseline.suite_hashes, &candidate.suite_hashes, true),
        (&baseline.data_hashes, &candidate.data_hashes, false),
    ] {
        let ids: BTreeSet<&String> = map_b.keys().chain(map_c.keys()).collect();
        for id in ids {
            match (map_b.get(id), map_c.get(id)) {
                (Some(b), Some(c)) if b != c => {
                    let (baseline, candidate) = (b.clone(), c.clone());
                    out.push(Mismatch {
                        suite: id.clone(),
                        kind: if is_suite {
                            MismatchKind::SuiteHash {
                                baseline,
                                candidate,
                            }
                        } else {
                            MismatchKind::DataHash {
                                baseline,
                                candidate,
                            }
                        },
                    });
                }
                (Some(_), None) => {
                    missing.entry(id).or_insert(MismatchKind::OnlyInBaseline);
                }
                (None, Some(_)) => {
                    missing.entry(id).or_insert(MismatchKind::OnlyInCandidate);
                }
                _ => {}
            }
        }
    }
    out.extend(missing.into_iter().map(|(suite, kind)| Mismatch {
        suite: suite.to_owned(),
        kind,
    }));
    out.sort_by(|a, b| a.suite.cmp(&b.suite));
    out
}

/// Applies the policy: `Ok` with the differences (empty when identical, to
/// be shown as notes when allowed), or [`MismatchRefused`] when there are
/// differences and `allow_mismatch` is false (the caller exits with 2).
pub fn check_identities(
    baseline: &RunIdentity,
    candidate: &RunIdentity,
    allow_mismatch: bool,
) -> Result<Vec<Mismatch>, MismatchRefused> {
    let mismatches = compare_identities(baseline, candidate);
    if mismatches.is_empty() || allow_mismatch {
        return Ok(mismatches);
    }
    let suites: BTreeSet<String> = mismatches.iter().map(|m| m.suite.clone()).collect();
    Err(MismatchRefused {
        suites: suites.into_iter().collect(),
        mismatches,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(suites: &[(&str, &str)], data: &[(&str, &str)]) -> RunIdentity {
        let m = |v: &[(&str, &str)]| {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        RunIdentity {
            suite_hashes: m(suites),
            data_hashes: m(data),
        }
    }

    #[test]
    fn identical_runs_have_no_mismatch() {
        let a = id(&[("s1", "h1"), ("s2", "h2")], &[("s1", "d1"), ("s2", "d2")]);
        assert_eq!(check_identities(&a, &a.clone(), false), Ok(vec![]));
    }

    #[test]
    fn differences_are_listed_and_refused() {
        let a = id(
            &[("s1", "h1"), ("s2", "h2"), ("s3", "h3")],
            &[("s1", "d1"), ("s2", "d2")],
        );
        let b = id(
            &[("s1", "h1"), ("s2", "hX"), ("s4", "h4")],
            &[("s1", "dY"), ("s2", "d2")],
        );
        let m = compare_identities(&a, &b);
        let shown: Vec<String> = m.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "s1: data hash differs (d1 vs dY)",
                "s2: suite hash differs (h2 vs hX)",
                "s3: only in the baseline",
                "s4: only in the candidate",
            ]
        );
        let err = check_identities(&a, &b, false).unwrap_err();
        assert_eq!(err.suites, ["s1", "s2", "s3", "s4"]);
        assert!(err
            .to_string()
            .starts_with("baseline and candidate differ in 4 suite(s)"));
        assert!(err.to_string().ends_with("or pass --allow-mismatch"));
        assert_eq!(check_identities(&a, &b, true).unwrap().len(), 4);
    }
}
