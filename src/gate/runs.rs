//! Compares two scored runs under the gate rules: per suite metric, per
//! domain, and GG / DSI / CDTR, always on the same examples and the same
//! bootstrap draws, so every test is paired.

use super::identity::{check_identities, MismatchRefused, RunIdentity};
use super::report::{GateReport, Row};
use super::rules::{CheckKey, GateRules};
use super::verdict::{check_quality, Evidence, QualityInput};
use crate::metrics::{paired_replicates, robustness, Bootstrap, DomainScore};
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

/// Gate of `candidate` against `baseline`; refuses runs over different suites
/// or data unless `allow_mismatch` (then only shared, identical suites are compared).
pub fn compare(
    baseline: &RunScores,
    candidate: &RunScores,
    rules: &GateRules,
    allow_mismatch: bool,
    boot: &Bootstrap,
) -> Result<GateReport, MismatchRefused> {
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
        report.notes.push(format!("not compared: {m:?}"));
    }
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
            let single_binary = p.per_example.iter().all(|(x, y)| {
                x.len() == 1 && y.len() == 1 && [x[0], y[0]].iter().all(|v| *v == 0.0 || *v == 1.0)
            });
            let evidence = if is_correctness(*metric) && single_binary {
                Evidence::Correctness(
                    p.per_example
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
