//! Compares two scored runs under the gate rules: per suite metric, per
//! domain, and GG / DSI / CDTR, always on the same examples and the same
//! bootstrap draws, so every test is paired.

use super::identity::{check_identities, MismatchRefused, RunIdentity};
use super::report::{GateReport, Row};
use super::rules::{CheckKey, GateRules};
use super::verdict::{check_quality, Evidence, QualityInput};
use crate::metrics::{paired_replicates, robustness, score, Bootstrap, DomainScore};
use crate::record::RunManifest;
use crate::report::RunScores;
use crate::suite::spec::Metric;

/// The suite and data identity of a run, as the gate compares them.
pub fn identity(m: &RunManifest) -> RunIdentity {
    RunIdentity {
        suite_hashes: m.suite_hashes.clone(),
        data_hashes: m
            .data_hashes
            .iter()
            .map(|(k, files)| {
                let joined: Vec<&str> = files.iter().map(|f| f.sha256.as_str()).collect();
                (k.clone(), joined.join(","))
            })
            .collect(),
    }
}

/// Metrics whose per-example statistic is a single 0/1 correctness: McNemar.
fn is_correctness(m: Metric) -> bool {
    matches!(
        m,
        Metric::Acc
            | Metric::AccNorm
            | Metric::ExactMatch
            | Metric::NumericAcc
            | Metric::RetrievalAcc
    )
}

/// How strictly two runs must cover the same ground.
#[derive(Debug, Clone, Copy, Default)]
pub struct Coverage {
    /// Compare runs over different suite files or data (only shared,
    /// identical suites are compared) and a candidate with examples the
    /// baseline lacks.
    pub allow_mismatch: bool,
    /// Gate an incomplete candidate on what it has: its missing suites and
    /// examples are reported as notes instead of failures.
    pub allow_partial: bool,
}

/// What the two runs do not share, as gate failures (or notes where the
/// coverage policy allows it).
fn coverage_failures(
    baseline: &RunScores,
    candidate: &RunScores,
    policy: Coverage,
    skip: impl Fn(&str) -> bool,
    report: &mut GateReport,
) {
    let (mut failures, mut notes) = (Vec::new(), Vec::new());
    let mut fail = |allowed: bool, what: String| {
        if allowed {
            notes.push(format!("allowed: {what}"));
        } else {
            failures.push(what);
        }
    };
    let mut torn = Vec::new();
    for (side, run, partial_ok) in [
        ("baseline", baseline, false),
        ("candidate", candidate, policy.allow_partial),
    ] {
        let id = &run.manifest.run_id;
        if let Some(sh) = &run.manifest.shard {
            fail(
                partial_ok,
                format!(
                    "{side} {id} is shard {}/{} of a split run, not the whole run; gate the run `edgebench merge` makes of its shards",
                    sh.index, sh.count
                ),
            );
        }
        if run.manifest.state != "complete" {
            fail(
                partial_ok,
                format!(
                    "{side} {id} is incomplete (state: {}); finish it with `edgebench run --resume {id}`",
                    run.manifest.state
                ),
            );
        }
        for i in &run.integrity {
            for p in i.problems() {
                fail(false, format!("{side} {id}, suite `{}`: {p}", i.suite));
            }
            if i.missing > 0 {
                fail(
                    partial_ok,
                    format!(
                        "{side} {id}, suite `{}`: {} of {} planned example(s) have no record",
                        i.suite,
                        i.missing,
                        i.planned.unwrap_or(0)
                    ),
                );
            }
            if let Some(line) = i.torn_line {
                torn.push(format!(
                    "{side} {id}, suite `{}`: torn last line {line} of the records ignored",
                    i.suite
                ));
            }
        }
    }
    for b in baseline.suites.iter().filter(|b| !skip(&b.suite)) {
        let Some(c) = candidate.suites.iter().find(|c| c.suite == b.suite) else {
            fail(
                policy.allow_partial,
                format!(
                    "suite `{}`: {} example(s) scored in the baseline, none in the candidate",
                    b.suite, b.n
                ),
            );
            continue;
        };
        let ids = |s: &crate::metrics::SuiteScores| -> std::collections::HashSet<String> {
            s.example_ids.iter().cloned().collect()
        };
        let (bi, ci) = (ids(b), ids(c));
        let lost = bi.difference(&ci).count();
        let extra = ci.difference(&bi).count();
        if lost > 0 {
            fail(
                policy.allow_partial,
                format!(
                    "suite `{}`: {lost} example(s) of the baseline are missing from the candidate",
                    b.suite
                ),
            );
        }
        if extra > 0 {
            fail(
                policy.allow_mismatch,
                format!(
                    "suite `{}`: {extra} example(s) of the candidate are not in the baseline",
                    b.suite
                ),
            );
        }
    }
    for c in candidate.suites.iter().filter(|c| !skip(&c.suite)) {
        if !baseline.suites.iter().any(|b| b.suite == c.suite) {
            fail(
                policy.allow_mismatch,
                format!(
                    "suite `{}`: scored in the candidate, not in the baseline",
                    c.suite
                ),
            );
        }
    }
    report.failures.extend(failures);
    report.notes.extend(notes);
    report.notes.extend(torn);
}

/// Gate of `candidate` against `baseline`; refuses runs over different suites
/// or data unless `policy.allow_mismatch` (then only shared, identical suites
/// are compared). Missing, duplicated or unplanned examples on either side,
/// and an incomplete candidate, fail the gate (see [`Coverage`]).
pub fn compare(
    baseline: &RunScores,
    candidate: &RunScores,
    rules: &GateRules,
    policy: Coverage,
    boot: &Bootstrap,
) -> Result<GateReport, MismatchRefused> {
    let allow_mismatch = policy.allow_mismatch;
    let (bi, ci) = (identity(&baseline.manifest), identity(&candidate.manifest));
    let mismatches = check_identities(&bi, &ci, allow_mismatch)?;
    let differs = |suite: &str| mismatches.iter().any(|m| m.suite == suite);
    let mut report = GateReport::new(
        format!(
            "{} ({})",
            baseline.manifest.run_id, baseline.manifest.model.name
        ),
        format!(
            "{} ({})",
            candidate.manifest.run_id, candidate.manifest.model.name
        ),
    );
    for m in &mismatches {
        report.notes.push(format!("not compared: {m}"));
    }
    coverage_failures(baseline, candidate, policy, differs, &mut report);
    for b in &baseline.suites {
        let Some(c) = candidate.suites.iter().find(|c| c.suite == b.suite) else {
            continue;
        };
        if differs(&b.suite) {
            continue;
        }
        for (metric, _) in &b.metrics {
            let key = CheckKey::suite(&b.suite, b.domain.as_str(), metric.as_str());
            let Some(rule) = rules.quality_rule(&key) else {
                continue;
            };
            let Some(p) = paired_replicates(b, c, *metric, boot) else {
                continue;
            };
            // numeric_acc's statistic is (correct, gold read): the examples
            // whose gold it cannot read (the same in both runs) drop out
            let counted = |v: &[f64]| v.len() == 1 || (v.len() == 2 && v[1] == 1.0);
            let pairs: Vec<&(Vec<f64>, Vec<f64>)> = p
                .per_example
                .iter()
                .filter(|(x, y)| !(score::unreadable(*metric, x) && score::unreadable(*metric, y)))
                .collect();
            let single_binary = pairs.iter().all(|(x, y)| {
                counted(x) && counted(y) && [x[0], y[0]].iter().all(|v| *v == 0.0 || *v == 1.0)
            });
            let evidence = if is_correctness(*metric) && single_binary {
                Evidence::Correctness(
                    pairs
                        .iter()
                        .map(|(x, y)| (x[0] == 1.0, y[0] == 1.0))
                        .collect(),
                )
            } else {
                Evidence::Bootstrap(p.replicates.clone())
            };
            let input = QualityInput {
                baseline: p.a,
                candidate: p.b,
                higher_is_better: metric.higher_is_better(),
                n: p.n,
                evidence,
            };
            report
                .rows
                .push(Row::quality(key.id(), &check_quality(&input, &rule)));
        }
    }
    domain_checks(&baseline.domains, &candidate.domains, rules, &mut report);
    Ok(report)
}

/// Domain scores, GG, DSI and CDTR from the per-domain bootstrap replicates
/// (paired: both runs drew the same examples in replicate `k`).
fn domain_checks(
    base: &[DomainScore],
    cand: &[DomainScore],
    rules: &GateRules,
    report: &mut GateReport,
) {
    let shared: Vec<(&DomainScore, &DomainScore)> = base
        .iter()
        .filter_map(|b| cand.iter().find(|c| c.domain == b.domain).map(|c| (b, c)))
        .collect();
    let reps = shared
        .iter()
        .map(|(b, c)| b.replicates.len().min(c.replicates.len()))
        .min()
        .unwrap_or(0);
    if reps == 0 {
        return;
    }
    // side 0 = baseline, 1 = candidate; replicate None = the point estimate
    let values = |side: usize, k: Option<usize>| -> Vec<f64> {
        shared
            .iter()
            .map(|pair| {
                let d = if side == 0 { pair.0 } else { pair.1 };
                k.map_or(d.score.value, |k| d.replicates[k])
            })
            .collect()
    };
    let (bv, cv) = (values(0, None), values(1, None));
    let brep: Vec<Vec<f64>> = (0..reps).map(|k| values(0, Some(k))).collect();
    let crep: Vec<Vec<f64>> = (0..reps).map(|k| values(1, Some(k))).collect();
    let others = robustness::mean_of_others;
    type Stat<'a> = Box<dyn Fn(&[f64]) -> f64 + 'a>;
    let mut push = |key: CheckKey, f: Stat| {
        let Some(rule) = rules.quality_rule(&key) else {
            return;
        };
        let (b, c) = (f(&bv), f(&cv));
        if !b.is_finite() || !c.is_finite() {
            return;
        }
        let diffs: Vec<f64> = brep
            .iter()
            .zip(&crep)
            .map(|(x, y)| f(y) - f(x))
            .filter(|d| d.is_finite())
            .collect();
        let input = QualityInput {
            baseline: b,
            candidate: c,
            higher_is_better: key.higher_is_better().unwrap_or(true),
            n: diffs.len(),
            evidence: Evidence::Bootstrap(diffs),
        };
        report
            .rows
            .push(Row::quality(key.id(), &check_quality(&input, &rule)));
    };
    for (i, (b, _)) in shared.iter().enumerate() {
        let d = b.domain.as_str();
        push(CheckKey::domain(d), Box::new(move |v: &[f64]| v[i]));
        push(
            CheckKey::gg(d),
            Box::new(move |v: &[f64]| {
                others(v, i)
                    .and_then(|o| robustness::generalization_gap(v[i], o))
                    .unwrap_or(f64::NAN)
            }),
        );
        push(
            CheckKey::dsi(d),
            Box::new(move |v: &[f64]| robustness::dsi(v, i).unwrap_or(f64::NAN)),
        );
        for (j, (t, _)) in shared.iter().enumerate() {
            if i != j {
                push(
                    CheckKey::cdtr(d, t.domain.as_str()),
                    Box::new(move |v: &[f64]| if v[i] > 0.0 { v[j] / v[i] } else { f64::NAN }),
                );
            }
        }
    }
}
