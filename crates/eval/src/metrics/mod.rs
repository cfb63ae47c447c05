//! Metrics: pure scoring functions (checked against the field's reference
//! implementations), per-suite estimates with seeded bootstrap confidence
//! intervals, per-domain scores and the paper's GG, CDTR and DSI.

pub mod classification;
pub mod coref;
pub mod frame;
pub mod multispan;
pub mod numbers;
pub mod robustness;
pub mod score;
pub mod spans;
pub mod text;

use crate::record::Record;
use crate::suite::spec::{Domain, Metric, SuiteDomain, SuiteSpec};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A point estimate with a percentile bootstrap confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// Value on all examples.
    #[serde(deserialize_with = "f64_or_nan")]
    pub value: f64,
    /// Lower bound of the 95 % interval.
    #[serde(deserialize_with = "f64_or_nan")]
    pub ci_low: f64,
    /// Upper bound of the 95 % interval.
    #[serde(deserialize_with = "f64_or_nan")]
    pub ci_high: f64,
    /// Bootstrap standard error.
    #[serde(deserialize_with = "f64_or_nan")]
    pub stderr: f64,
}

/// Reads a number, or `null` as NaN: JSON has no NaN, and serde_json writes
/// a non-finite `f64` as `null`, so an undefined estimate survives a round trip.
pub fn f64_or_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Bootstrap settings.
#[derive(Debug, Clone, Copy)]
pub struct Bootstrap {
    /// Number of resamples (0 disables intervals).
    pub resamples: usize,
    /// Seed; the same seed draws the same example indices, so two runs over
    /// the same examples are resampled in pairs.
    pub seed: u64,
}

impl Default for Bootstrap {
    fn default() -> Self {
        Bootstrap {
            resamples: 1000,
            seed: 1234,
        }
    }
}

/// The resampled index vectors of a bootstrap over `n` examples.
pub fn resample_indices(n: usize, b: &Bootstrap) -> Vec<Vec<usize>> {
    (0..b.resamples)
        .map(|k| {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(b.seed.wrapping_add(k as u64));
            (0..n).map(|_| rng.random_range(0..n)).collect()
        })
        .collect()
}

fn sum_stats(stats: &[&Vec<f64>], idx: impl Iterator<Item = usize>) -> Vec<f64> {
    let width = stats.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut sums = vec![0.0; width];
    for i in idx {
        for (a, v) in sums.iter_mut().zip(stats[i].iter()) {
            *a += v;
        }
    }
    sums
}

/// Percentile interval and standard error of bootstrap replicates.
pub fn interval(value: f64, reps: &[f64]) -> Estimate {
    let mut r: Vec<f64> = reps.iter().copied().filter(|x| x.is_finite()).collect();
    if r.len() < 2 {
        return Estimate {
            value,
            ci_low: f64::NAN,
            ci_high: f64::NAN,
            stderr: f64::NAN,
        };
    }
    r.sort_by(f64::total_cmp);
    let q = |p: f64| r[((p * (r.len() - 1) as f64).round() as usize).min(r.len() - 1)];
    let mean = r.iter().sum::<f64>() / r.len() as f64;
    let var = r.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (r.len() - 1) as f64;
    Estimate {
        value,
        ci_low: q(0.025),
        ci_high: q(0.975),
        stderr: var.sqrt(),
    }
}

/// Scores of one suite in one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SuiteScores {
    pub suite: String,
    /// The domain the suite declares (reported as it is).
    pub domain: SuiteDomain,
    /// The paper domain it enters in domain scores, DSI, GG and CDTR.
    pub paper_domain: Option<Domain>,
    pub task: String,
    /// Examples scored.
    pub n: usize,
    /// Estimates in the suite's metric order.
    pub metrics: Vec<(Metric, Estimate)>,
    /// Bootstrap replicates per metric (same resample indices for every suite of the same size).
    #[serde(skip)]
    pub replicates: BTreeMap<Metric, Vec<f64>>,
    /// Example ids in scoring order (sorted), for paired comparisons.
    #[serde(skip)]
    pub example_ids: Vec<String>,
    /// Per-example statistics in that order.
    #[serde(skip)]
    pub stats: Vec<BTreeMap<Metric, Vec<f64>>>,
    /// Per metric, the examples it left out because it cannot read their
    /// gold ([`score::unreadable`]).
    #[serde(skip)]
    pub unread: BTreeMap<Metric, Vec<String>>,
    /// The suite's groups (`group_by`), each scored like a suite of its own:
    /// (`<field>=<value>`, scores), sorted by value.
    #[serde(skip)]
    pub groups: Vec<(String, SuiteScores)>,
}

impl SuiteScores {
    /// The headline (first) metric, if it is a higher-is-better score usable in domain averages.
    pub fn headline(&self) -> Option<(Metric, Estimate)> {
        self.metrics
            .first()
            .copied()
            .filter(|(m, e)| m.higher_is_better() && e.value.is_finite())
    }
}

/// Scores a suite from its records (sorted by example id first, for pairing).
pub fn score_suite(spec: &SuiteSpec, records: &mut [Record], boot: &Bootstrap) -> SuiteScores {
    records.sort_by(|a, b| a.example_id.cmp(&b.example_id));
    let stats = score::suite_stats(spec, records);
    for (r, s) in records.iter_mut().zip(&stats) {
        r.scores = score::per_example_scores(s);
    }
    let n = records.len();
    let draws = resample_indices(n, boot);
    let mut metrics = Vec::new();
    let mut replicates = BTreeMap::new();
    for &m in &spec.metrics {
        let per: Vec<&Vec<f64>> = stats.iter().filter_map(|s| s.get(&m)).collect();
        if per.len() != n || n == 0 {
            continue;
        }
        let value = score::aggregate(m, &sum_stats(&per, 0..n), n);
        let reps: Vec<f64> = draws
            .iter()
            .map(|idx| score::aggregate(m, &sum_stats(&per, idx.iter().copied()), n))
            .collect();
        metrics.push((m, interval(value, &reps)));
        replicates.insert(m, reps);
    }
    let mut unread: BTreeMap<Metric, Vec<String>> = BTreeMap::new();
    for (r, st) in records.iter().zip(&stats) {
        for (m, s) in st {
            if score::unreadable(*m, s) {
                unread.entry(*m).or_default().push(r.example_id.clone());
            }
        }
    }
    SuiteScores {
        suite: spec.id.clone(),
        domain: spec.domain.clone(),
        paper_domain: spec.paper_domain(),
        task: spec.task.as_str().to_string(),
        n,
        metrics,
        replicates,
        example_ids: records.iter().map(|r| r.example_id.clone()).collect(),
        stats,
        unread,
        groups: score_groups(spec, records, boot),
    }
}

/// Scores each group of a suite with `group_by` as a suite of its own.
fn score_groups(
    spec: &SuiteSpec,
    records: &[Record],
    boot: &Bootstrap,
) -> Vec<(String, SuiteScores)> {
    let Some(field) = spec.group_by.as_deref() else {
        return Vec::new();
    };
    let mut by: BTreeMap<&str, Vec<Record>> = BTreeMap::new();
    for r in records {
        by.entry(r.group.as_deref().unwrap_or(""))
            .or_default()
            .push(r.clone());
    }
    let whole = SuiteSpec {
        group_by: None,
        ..spec.clone()
    };
    by.into_iter()
        .map(|(value, mut rs)| {
            (
                format!("{field}={value}"),
                score_suite(&whole, &mut rs, boot),
            )
        })
        .collect()
}

/// Per-domain score (mean of the suites' headline scores) with replicates.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DomainScore {
    pub domain: Domain,
    pub suites: usize,
    pub score: Estimate,
    #[serde(skip)]
    pub replicates: Vec<f64>,
}

/// Averages headline scores per paper domain; suites without a usable
/// headline (perplexity, missing) and suites outside the paper's domains are
/// left out.
pub fn domain_scores(suites: &[SuiteScores]) -> Vec<DomainScore> {
    Domain::ALL
        .into_iter()
        .filter_map(|d| {
            let (score, replicates, n) = mean_headline(suites, |s| s.paper_domain == Some(d))?;
            Some(DomainScore {
                domain: d,
                suites: n,
                score,
                replicates,
            })
        })
        .collect()
}

/// The mean headline score of each domain outside the paper's eight, over
/// the suites that join no paper domain: (domain, suites, score).
pub fn other_domain_scores(suites: &[SuiteScores]) -> Vec<(SuiteDomain, usize, Estimate)> {
    let names: std::collections::BTreeSet<&SuiteDomain> = suites
        .iter()
        .filter(|s| s.paper_domain.is_none())
        .map(|s| &s.domain)
        .collect();
    names
        .into_iter()
        .filter_map(|d| {
            let (score, _, n) =
                mean_headline(suites, |s| s.paper_domain.is_none() && &s.domain == d)?;
            Some((d.clone(), n, score))
        })
        .collect()
}

/// Mean of the usable headline scores of the suites `take` selects, with its
/// bootstrap replicates and the number of suites averaged.
fn mean_headline(
    suites: &[SuiteScores],
    take: impl Fn(&SuiteScores) -> bool,
) -> Option<(Estimate, Vec<f64>, usize)> {
    let parts: Vec<(&SuiteScores, Estimate)> = suites
        .iter()
        .filter(|s| take(s))
        .filter_map(|s| s.headline().map(|(_, e)| (s, e)))
        .collect();
    if parts.is_empty() {
        return None;
    }
    let value = parts.iter().map(|(_, e)| e.value).sum::<f64>() / parts.len() as f64;
    let reps_len = parts
        .iter()
        .map(|(s, _)| {
            s.headline()
                .and_then(|(m, _)| s.replicates.get(&m))
                .map_or(0, |r| r.len())
        })
        .min()
        .unwrap_or(0);
    let reps: Vec<f64> = (0..reps_len)
        .map(|k| {
            parts
                .iter()
                .map(|(s, _)| s.replicates[&s.headline().expect("filtered").0][k])
                .sum::<f64>()
                / parts.len() as f64
        })
        .collect();
    Some((interval(value, &reps), reps, parts.len()))
}

/// One row of the CDTR matrix: source domain and (target, ratio) cells.
pub type CdtrRow = (Domain, Vec<(Domain, Option<f64>)>);

/// The paper's robustness metrics for one model over its domain scores.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Robustness {
    /// DSI per domain: score(D) / mean of the other domains.
    pub dsi: Vec<(Domain, Estimate)>,
    /// GG per domain, taking D as in-domain and the mean of the others as out-of-domain.
    pub gg: Vec<(Domain, Estimate)>,
    /// CDTR matrix, row = source domain, column = target domain.
    pub cdtr: Vec<CdtrRow>,
}

/// Computes DSI, GG and CDTR (docs/metrics.md) with bootstrap intervals.
pub fn robustness(domains: &[DomainScore]) -> Robustness {
    let vals: Vec<f64> = domains.iter().map(|d| d.score.value).collect();
    let k = domains
        .iter()
        .map(|d| d.replicates.len())
        .min()
        .unwrap_or(0);
    let rep = |b: usize| -> Vec<f64> { domains.iter().map(|d| d.replicates[b]).collect() };
    let mut dsi = Vec::new();
    let mut gg = Vec::new();
    for (i, d) in domains.iter().enumerate() {
        let others = |v: &[f64]| robustness::mean_of_others(v, i);
        let dsi_of = |v: &[f64]| robustness::dsi(v, i).unwrap_or(f64::NAN);
        let gg_of = |v: &[f64]| {
            others(v)
                .and_then(|o| robustness::generalization_gap(v[i], o))
                .unwrap_or(f64::NAN)
        };
        let reps: Vec<Vec<f64>> = (0..k).map(rep).collect();
        dsi.push((
            d.domain,
            interval(
                dsi_of(&vals),
                &reps.iter().map(|r| dsi_of(r)).collect::<Vec<_>>(),
            ),
        ));
        gg.push((
            d.domain,
            interval(
                gg_of(&vals),
                &reps.iter().map(|r| gg_of(r)).collect::<Vec<_>>(),
            ),
        ));
    }
    let m = robustness::cdtr_matrix(&vals);
    let cdtr = domains
        .iter()
        .zip(m)
        .map(|(src, row)| {
            (
                src.domain,
                domains
                    .iter()
                    .map(|d| d.domain)
                    .zip(row)
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    Robustness { dsi, gg, cdtr }
}

/// Paired bootstrap of `b - a` for one metric over the examples both runs
/// scored (matched by id): each resample draws the same examples for both, so
/// example difficulty cancels out. `None` when they share no example.
pub fn paired_difference(
    a: &SuiteScores,
    b: &SuiteScores,
    metric: Metric,
    boot: &Bootstrap,
) -> Option<Estimate> {
    let p = paired_replicates(a, b, metric, boot)?;
    Some(interval(p.value, &p.replicates))
}

/// The paired comparison of one metric between two runs.
#[derive(Debug, Clone)]
pub struct Paired {
    /// Metric of `a` and of `b` over the shared examples.
    pub a: f64,
    pub b: f64,
    /// `b - a`.
    pub value: f64,
    /// Bootstrap replicates of `b - a` (same example draws for both runs).
    pub replicates: Vec<f64>,
    /// Shared examples.
    pub n: usize,
    /// Per-example statistics `(a, b)` of the shared examples, in `a`'s order.
    pub per_example: Vec<(Vec<f64>, Vec<f64>)>,
}

/// Matches the examples of two runs by id and bootstraps `b - a` in pairs.
pub fn paired_replicates(
    a: &SuiteScores,
    b: &SuiteScores,
    metric: Metric,
    boot: &Bootstrap,
) -> Option<Paired> {
    let index_b: BTreeMap<&str, usize> = b
        .example_ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let pairs: Vec<(&Vec<f64>, &Vec<f64>)> = a
        .example_ids
        .iter()
        .enumerate()
        .filter_map(|(i, id)| {
            let j = *index_b.get(id.as_str())?;
            Some((a.stats[i].get(&metric)?, b.stats[j].get(&metric)?))
        })
        .collect();
    let n = pairs.len();
    if n == 0 {
        return None;
    }
    let sa: Vec<&Vec<f64>> = pairs.iter().map(|p| p.0).collect();
    let sb: Vec<&Vec<f64>> = pairs.iter().map(|p| p.1).collect();
    let agg = |s: &[&Vec<f64>], idx: &[usize]| {
        score::aggregate(metric, &sum_stats(s, idx.iter().copied()), n)
    };
    let all: Vec<usize> = (0..n).collect();
    let (va, vb) = (agg(&sa, &all), agg(&sb, &all));
    let replicates: Vec<f64> = resample_indices(n, boot)
        .iter()
        .map(|idx| agg(&sb, idx) - agg(&sa, idx))
        .collect();
    Some(Paired {
        a: va,
        b: vb,
        value: vb - va,
        replicates,
        n,
        per_example: pairs
            .iter()
            .map(|(x, y)| ((*x).clone(), (*y).clone()))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(ids: &[&str], correct: &[f64]) -> SuiteScores {
        SuiteScores {
            suite: "s".into(),
            domain: Domain::Stem.into(),
            paper_domain: Some(Domain::Stem),
            task: "multiple_choice".into(),
            n: ids.len(),
            metrics: vec![],
            replicates: BTreeMap::new(),
            example_ids: ids.iter().map(|s| s.to_string()).collect(),
            stats: correct
                .iter()
                .map(|c| BTreeMap::from([(Metric::Acc, vec![*c])]))
                .collect(),
            unread: BTreeMap::new(),
            groups: Vec::new(),
        }
    }

    #[test]
    fn paired_difference_matches_by_id_and_cancels_shared_difficulty() {
        // b fixes exactly one of a's errors (example "c"); ids come in different orders.
        let a = scores(&["a", "b", "c", "d"], &[1.0, 0.0, 0.0, 1.0]);
        let b = scores(&["d", "c", "b", "a"], &[1.0, 1.0, 0.0, 1.0]);
        let boot = Bootstrap {
            resamples: 400,
            seed: 3,
        };
        let e = paired_difference(&a, &b, Metric::Acc, &boot).unwrap();
        assert!((e.value - 0.25).abs() < 1e-12);
        // every paired resample can only gain: the difference is never negative
        assert!(e.ci_low >= 0.0 && e.ci_high <= 1.0);
        let none = scores(&["x"], &[1.0]);
        assert!(paired_difference(&a, &none, Metric::Acc, &boot).is_none());
    }

    #[test]
    fn bootstrap_is_seeded_and_paired() {
        let b = Bootstrap {
            resamples: 5,
            seed: 7,
        };
        assert_eq!(resample_indices(10, &b), resample_indices(10, &b));
        let e = interval(0.5, &[0.4, 0.5, 0.6, 0.45, 0.55]);
        assert!(e.ci_low <= 0.5 && e.ci_high >= 0.5 && e.stderr > 0.0);
    }
}
