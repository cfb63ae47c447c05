//! Verdicts: quality and robustness checks (paired test plus threshold) and
//! performance checks (median change against a noise-scaled threshold, with
//! one retry).

use super::rules::{PerfClass, PerfRule, QualityRule};
use super::stats;
use serde::Serialize;

/// Outcome of one check.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "verdict", content = "reason", rename_all = "snake_case")]
pub enum Verdict {
    /// No practically relevant, significant change.
    Pass,
    /// Worse by more than the threshold (and, for quality, significantly).
    Regression,
    /// Better by more than the threshold (and, for quality, significantly).
    Improvement,
    /// The data cannot decide (reason given); does not fail the gate.
    Inconclusive(String),
    /// Performance only: a would-be failure on the first attempt; re-measure
    /// the candidate and call [`check_performance`] again with `retried`.
    Retry,
}

impl Verdict {
    /// Whether this verdict fails the gate (a regression, or an unresolved retry).
    pub fn fails(&self) -> bool {
        matches!(self, Verdict::Regression | Verdict::Retry)
    }

    /// Short label for tables.
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Regression => "REGRESSION",
            Verdict::Improvement => "improvement",
            Verdict::Inconclusive(_) => "inconclusive",
            Verdict::Retry => "retry",
        }
    }
}

/// The paired evidence behind a quality comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Evidence {
    /// Per-example correctness `(baseline_correct, candidate_correct)` of an
    /// accuracy-type metric: McNemar's exact (or mid-p) test.
    Correctness(Vec<(bool, bool)>),
    /// Paired bootstrap replicates of `candidate - baseline` in the metric's
    /// own units (both runs resampled with the same example indices).
    Bootstrap(Vec<f64>),
    /// Per-example differences `candidate - baseline` of an additive metric
    /// (mean over examples): sign-flip test, exact up to 16 examples, else
    /// `resamples` seeded draws.
    PerExample {
        /// The differences.
        diffs: Vec<f64>,
        /// Random sign patterns when not exact.
        resamples: usize,
        /// Seed of the sign patterns.
        seed: u64,
    },
}

/// The paired test that produced a p-value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TestKind {
    /// McNemar's exact test (two-sided).
    McNemarExact,
    /// McNemar's mid-p test (two-sided).
    McNemarMidP,
    /// Paired bootstrap (one-sided).
    Bootstrap,
    /// Sign-flip permutation test (one-sided).
    SignFlip,
}

impl TestKind {
    /// Name for reports.
    pub fn as_str(self) -> &'static str {
        match self {
            TestKind::McNemarExact => "McNemar exact",
            TestKind::McNemarMidP => "McNemar mid-p",
            TestKind::Bootstrap => "paired bootstrap",
            TestKind::SignFlip => "sign-flip",
        }
    }
}

/// One quality or robustness comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct QualityInput {
    /// Baseline value of the metric.
    pub baseline: f64,
    /// Candidate value of the metric.
    pub candidate: f64,
    /// Whether larger values are better (false for perplexity and GG).
    pub higher_is_better: bool,
    /// Examples compared (0 makes the check inconclusive).
    pub n: usize,
    /// The paired evidence.
    pub evidence: Evidence,
}

impl QualityInput {
    /// An accuracy comparison from per-example correctness alone: the
    /// values are the two accuracies, `n` the number of pairs.
    pub fn from_correctness(pairs: Vec<(bool, bool)>) -> Self {
        let n = pairs.len();
        let acc = |f: fn(&(bool, bool)) -> bool| {
            if n == 0 {
                f64::NAN
            } else {
                pairs.iter().filter(|p| f(p)).count() as f64 / n as f64
            }
        };
        QualityInput {
            baseline: acc(|p| p.0),
            candidate: acc(|p| p.1),
            higher_is_better: true,
            n,
            evidence: Evidence::Correctness(pairs),
        }
    }
}

/// The result of a quality or robustness check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QualityCheck {
    /// Baseline value.
    pub baseline: f64,
    /// Candidate value.
    pub candidate: f64,
    /// `candidate - baseline`.
    pub change: f64,
    /// Worsening in the metric's bad direction (negative for a gain).
    pub drop: f64,
    /// Threshold on `drop`: the rule's `max_drop`, or `max_rel_drop` times
    /// the baseline's magnitude when that is larger.
    pub max_drop: f64,
    /// Significance level.
    pub alpha: f64,
    /// p-value of the paired test, when it could be computed.
    pub p_value: Option<f64>,
    /// The test used.
    pub test: TestKind,
    /// Examples compared.
    pub n: usize,
    /// The outcome.
    pub verdict: Verdict,
    /// One sentence explaining the outcome.
    pub detail: String,
}

/// Decides a quality or robustness check.
///
/// A regression needs both `drop > max_drop` and `p < alpha`: the threshold
/// alone would fail on noise in small suites, significance alone would fail
/// on tiny, practically irrelevant drops in large ones. A drop above the
/// threshold that is not significant is [`Verdict::Inconclusive`]; a
/// significant drop within the threshold passes. Improvements are judged
/// symmetrically.
pub fn check_quality(input: &QualityInput, rule: &QualityRule) -> QualityCheck {
    let sign = if input.higher_is_better { 1.0 } else { -1.0 };
    let change = input.candidate - input.baseline;
    let drop = -sign * change;
    let (test, p_value) = match &input.evidence {
        Evidence::Correctness(pairs) => {
            let d = stats::discordant(pairs);
            if rule.mid_p {
                (TestKind::McNemarMidP, Some(stats::mcnemar_mid_p(d.b, d.c)))
            } else {
                (TestKind::McNemarExact, Some(stats::mcnemar_exact(d.b, d.c)))
            }
        }
        Evidence::Bootstrap(reps) => {
            // Orient replicates so that "gain" is positive for either direction.
            let gains: Vec<f64> = reps.iter().map(|r| sign * r).collect();
            (TestKind::Bootstrap, stats::bootstrap_p_value(-drop, &gains))
        }
        Evidence::PerExample {
            diffs,
            resamples,
            seed,
        } => {
            let gains: Vec<f64> = diffs.iter().map(|d| sign * d).collect();
            (
                TestKind::SignFlip,
                stats::sign_flip_p_value(&gains, *resamples, *seed),
            )
        }
    };
    let threshold = rule.threshold(input.baseline);
    let (verdict, detail) = decide(input, (threshold, rule.alpha), drop, p_value, test);
    QualityCheck {
        baseline: input.baseline,
        candidate: input.candidate,
        change,
        drop,
        max_drop: threshold,
        alpha: rule.alpha,
        p_value,
        test,
        n: input.n,
        verdict,
        detail,
    }
}

/// `x > limit` beyond floating-point rounding at magnitude `scale`, so that
/// a change exactly at the threshold (e.g. 0.70 - 0.68 against 0.02) passes.
fn exceeds(x: f64, limit: f64, scale: f64) -> bool {
    x > limit + 1e-12 * (1.0 + scale.abs())
}

fn decide(
    input: &QualityInput,
    (md, a): (f64, f64),
    drop: f64,
    p: Option<f64>,
    test: TestKind,
) -> (Verdict, String) {
    let inconclusive = |why: String| (Verdict::Inconclusive(why.clone()), why);
    if input.n == 0 {
        return inconclusive("no paired examples".to_owned());
    }
    if !input.baseline.is_finite() || !input.candidate.is_finite() {
        return inconclusive(format!(
            "value not finite (baseline {}, candidate {})",
            input.baseline, input.candidate
        ));
    }
    let Some(p) = p else {
        return inconclusive(format!("{} has no usable data", test.as_str()));
    };
    let t = test.as_str();
    let gain = -drop;
    let scale = input.baseline.abs().max(input.candidate.abs());
    if exceeds(drop, md, scale) {
        if p < a {
            (
                Verdict::Regression,
                format!("drop {drop:.4} > {md:.4} and p = {p:.4} < {a} ({t})"),
            )
        } else {
            inconclusive(format!(
                "drop {drop:.4} > {md:.4} but not significant: p = {p:.4} >= {a} ({t})"
            ))
        }
    } else if exceeds(gain, md, scale) && p < a {
        (
            Verdict::Improvement,
            format!("gain {gain:.4} > {md:.4} and p = {p:.4} < {a} ({t})"),
        )
    } else if drop > 0.0 {
        (
            Verdict::Pass,
            format!("drop {drop:.4} within {md:.4} (p = {p:.4}, {t})"),
        )
    } else {
        (
            Verdict::Pass,
            format!("no drop (gain {gain:.4}, p = {p:.4}, {t})"),
        )
    }
}

/// Repeated measurements of one performance quantity.
#[derive(Debug, Clone, PartialEq)]
pub struct PerfInput {
    /// The class (fixes the direction).
    pub class: PerfClass,
    /// Baseline repeats.
    pub baseline: Vec<f64>,
    /// Candidate repeats (the re-measured ones on the retry).
    pub candidate: Vec<f64>,
    /// Whether the candidate was already re-measured after a [`Verdict::Retry`].
    pub retried: bool,
}

/// The result of a performance check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PerfCheck {
    /// The class.
    pub class: PerfClass,
    /// Median of the baseline repeats.
    pub baseline: f64,
    /// Median of the candidate repeats.
    pub candidate: f64,
    /// Relative change of medians `(candidate - baseline) / baseline`.
    pub change: f64,
    /// Relative worsening: `change` for lower-is-better classes, `-change`
    /// for throughput.
    pub worsening: f64,
    /// Pooled relative noise of the repeats (normal-consistent MAD / median).
    pub noise: f64,
    /// `max(floor, k x noise)`.
    pub threshold: f64,
    /// Whether this was the retry.
    pub retried: bool,
    /// The outcome.
    pub verdict: Verdict,
    /// One sentence explaining the outcome.
    pub detail: String,
}

/// Pooled relative noise of two sets of repeats: the relative MADs
/// (`1.4826 MAD / median`) pooled like variances, weighted by degrees of
/// freedom `n - 1`. Sides with fewer than two repeats add nothing; 0 when
/// neither has two.
pub fn pooled_noise(baseline: &[f64], candidate: &[f64]) -> f64 {
    let mut num = 0.0;
    let mut df = 0.0;
    for side in [baseline, candidate] {
        if let Some(s) = stats::relative_mad(side) {
            let d = (side.iter().filter(|x| x.is_finite()).count() - 1) as f64;
            num += d * s * s;
            df += d;
        }
    }
    if df > 0.0 {
        (num / df).sqrt()
    } else {
        0.0
    }
}

/// Decides a performance check: `worsening > max(floor, k x noise)` is a
/// failure, which is a [`Verdict::Retry`] on the first attempt when
/// `rule.retry_once`, and a [`Verdict::Regression`] otherwise; a gain beyond
/// the same threshold is an [`Verdict::Improvement`].
pub fn check_performance(input: &PerfInput, rule: &PerfRule) -> PerfCheck {
    let class = input.class;
    let mb = stats::median(&input.baseline);
    let mc = stats::median(&input.candidate);
    let noise = pooled_noise(&input.baseline, &input.candidate);
    let threshold = rule.floor.max(rule.k * noise);
    let mut out = PerfCheck {
        class,
        baseline: mb.unwrap_or(f64::NAN),
        candidate: mc.unwrap_or(f64::NAN),
        change: f64::NAN,
        worsening: f64::NAN,
        noise,
        threshold,
        retried: input.retried,
        verdict: Verdict::Pass,
        detail: String::new(),
    };
    let bad_input = input
        .baseline
        .iter()
        .chain(&input.candidate)
        .any(|x| !x.is_finite());
    let why = match (mb, mc) {
        _ if bad_input => Some("a measurement is not finite".to_owned()),
        (None, _) | (_, None) => Some("no measurements".to_owned()),
        (Some(b), _) if b <= 0.0 => Some(format!("baseline median {b} is not positive")),
        _ => None,
    };
    if let Some(why) = why {
        out.verdict = Verdict::Inconclusive(why.clone());
        out.detail = why;
        return out;
    }
    let (b, c) = (out.baseline, out.candidate);
    out.change = (c - b) / b;
    out.worsening = if class.higher_is_better() {
        -out.change
    } else {
        out.change
    };
    let w = out.worsening;
    let limit = format!(
        "max(floor {:.1}%, {} x noise {:.1}%) = {:.1}%",
        100.0 * rule.floor,
        rule.k,
        100.0 * noise,
        100.0 * threshold
    );
    if exceeds(w, threshold, 1.0) {
        if rule.retry_once && !input.retried {
            out.verdict = Verdict::Retry;
            out.detail = format!(
                "worse by {:.1}% > {limit}; re-measure once before failing",
                100.0 * w
            );
        } else {
            out.verdict = Verdict::Regression;
            let again = if input.retried {
                " (after a retry)"
            } else {
                ""
            };
            out.detail = format!("worse by {:.1}% > {limit}{again}", 100.0 * w);
        }
    } else if exceeds(-w, threshold, 1.0) {
        out.verdict = Verdict::Improvement;
        out.detail = format!("better by {:.1}% > {limit}", -100.0 * w);
    } else {
        out.detail = format!("change {:+.1}% within {limit}", 100.0 * out.change);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: QualityRule = QualityRule {
        max_drop: 0.01,
        max_rel_drop: 0.0,
        alpha: 0.05,
        mid_p: false,
    };

    fn pairs(both: usize, b: usize, c: usize, neither: usize) -> Vec<(bool, bool)> {
        let mut v = vec![(true, true); both];
        v.extend(vec![(true, false); b]);
        v.extend(vec![(false, true); c]);
        v.extend(vec![(false, false); neither]);
        v
    }

    #[test]
    fn mcnemar_regression_needs_drop_and_significance() {
        // b = 10, c = 2 of 100: drop 0.08, p = 0.03857.
        let chk = check_quality(&QualityInput::from_correctness(pairs(60, 10, 2, 28)), &RULE);
        assert_eq!(chk.verdict, Verdict::Regression);
        assert!((chk.drop - 0.08).abs() < 1e-12);
        assert!((chk.p_value.unwrap() - 0.03857421875).abs() < 1e-12);
        assert_eq!(chk.test, TestKind::McNemarExact);
        // Same counts at alpha 0.01: not significant -> inconclusive.
        let strict = QualityRule {
            alpha: 0.01,
            ..RULE
        };
        let chk = check_quality(
            &QualityInput::from_correctness(pairs(60, 10, 2, 28)),
            &strict,
        );
        assert!(
            matches!(chk.verdict, Verdict::Inconclusive(ref r) if r.contains("not significant"))
        );
        // Mid-p (0.02246) is significant at 0.025; exact (0.03857) is not.
        let mid = QualityRule {
            alpha: 0.025,
            mid_p: true,
            ..RULE
        };
        let chk = check_quality(&QualityInput::from_correctness(pairs(60, 10, 2, 28)), &mid);
        assert_eq!(
            (chk.verdict, chk.test),
            (Verdict::Regression, TestKind::McNemarMidP)
        );
        // Reversed: an improvement.
        let chk = check_quality(&QualityInput::from_correctness(pairs(60, 2, 10, 28)), &RULE);
        assert_eq!(chk.verdict, Verdict::Improvement);
    }

    #[test]
    fn bootstrap_direction_follows_the_metric() {
        // Perplexity rose by 0.5 (worse); replicates of cand - base all > 0.
        let input = QualityInput {
            baseline: 10.0,
            candidate: 10.5,
            higher_is_better: false,
            n: 200,
            evidence: Evidence::Bootstrap(vec![
                0.4, 0.5, 0.6, 0.55, 0.45, 0.5, 0.52, 0.48, 0.5, 0.51, 0.49, 0.5, 0.5, 0.47, 0.53,
                0.5, 0.5, 0.5, 0.5, 0.5,
            ]),
        };
        let chk = check_quality(&input, &RULE);
        assert!((chk.drop - 0.5).abs() < 1e-12);
        // No replicate contradicts: p = 1 / 21.
        assert_eq!(chk.p_value, Some(1.0 / 21.0));
        assert_eq!(chk.verdict, Verdict::Regression);
        // Same numbers for a higher-is-better metric: a significant gain.
        let up = QualityInput {
            higher_is_better: true,
            ..input
        };
        assert_eq!(check_quality(&up, &RULE).verdict, Verdict::Improvement);
    }

    #[test]
    fn a_relative_threshold_scales_with_the_baseline() {
        // The bundled tiny model's word perplexity (4.4e11) moved by 1.6e-8
        // relative between two CPUs, with every example's log-probability
        // moving the same way: significant, and far above an absolute 0.5.
        let rise = |baseline: f64, candidate: f64| QualityInput {
            baseline,
            candidate,
            higher_is_better: false,
            n: 50,
            evidence: Evidence::Bootstrap(vec![candidate - baseline; 99]),
        };
        let absolute = QualityRule {
            max_drop: 0.5,
            ..RULE
        };
        let tiny = rise(437_376_322_309.0, 437_376_329_303.0);
        assert_eq!(check_quality(&tiny, &absolute).verdict, Verdict::Regression);
        let relative = QualityRule {
            max_rel_drop: 0.01,
            ..absolute
        };
        let chk = check_quality(&tiny, &relative);
        assert_eq!(chk.verdict, Verdict::Pass);
        assert!(
            (chk.max_drop - 4_373_763_223.09).abs() < 1e-3,
            "{}",
            chk.max_drop
        );
        // 2 % worse is still a regression at 1 %.
        let worse = rise(437_376_322_309.0, 1.02 * 437_376_322_309.0);
        assert_eq!(
            check_quality(&worse, &relative).verdict,
            Verdict::Regression
        );
        // Below 50 the absolute 0.5 is the larger: 45.57 -> 46.0 passes,
        // 45.57 -> 46.2 fails.
        assert_eq!(check_quality(&rise(45.57, 46.0), &relative).max_drop, 0.5);
        assert_eq!(
            check_quality(&rise(45.57, 46.0), &relative).verdict,
            Verdict::Pass
        );
        assert_eq!(
            check_quality(&rise(45.57, 46.2), &relative).verdict,
            Verdict::Regression
        );
    }

    #[test]
    fn a_change_exactly_at_the_threshold_passes() {
        let at = QualityInput {
            baseline: 0.70,
            candidate: 0.68,
            higher_is_better: true,
            n: 100,
            evidence: Evidence::Bootstrap(vec![-0.02; 99]),
        };
        let rule = QualityRule {
            max_drop: 0.02,
            ..RULE
        };
        assert_eq!(check_quality(&at, &rule).verdict, Verdict::Pass);
        let past = QualityInput {
            candidate: 0.6799,
            ..at
        };
        assert_eq!(check_quality(&past, &rule).verdict, Verdict::Regression);
        // 10 % over 100 is exactly a 10 % floor: pass.
        let p = check_performance(
            &PerfInput {
                class: PerfClass::Latency,
                baseline: vec![100.0],
                candidate: vec![110.0],
                retried: true,
            },
            &PerfRule {
                floor: 0.10,
                k: 3.0,
                repeats: 1,
                retry_once: true,
            },
        );
        assert_eq!(p.verdict, Verdict::Pass);
    }

    #[test]
    fn inconclusive_inputs() {
        let empty = QualityInput::from_correctness(vec![]);
        assert!(matches!(
            check_quality(&empty, &RULE).verdict,
            Verdict::Inconclusive(_)
        ));
        let no_reps = QualityInput {
            baseline: 0.5,
            candidate: 0.4,
            higher_is_better: true,
            n: 10,
            evidence: Evidence::Bootstrap(vec![]),
        };
        let chk = check_quality(&no_reps, &RULE);
        assert_eq!(
            chk.verdict,
            Verdict::Inconclusive("paired bootstrap has no usable data".into())
        );
    }

    #[test]
    fn sign_flip_evidence() {
        // Five examples each 0.2 worse: exact p = 1/32 < 0.05, drop 0.2.
        let input = QualityInput {
            baseline: 0.6,
            candidate: 0.4,
            higher_is_better: true,
            n: 5,
            evidence: Evidence::PerExample {
                diffs: vec![-0.2; 5],
                resamples: 0,
                seed: 0,
            },
        };
        let chk = check_quality(&input, &RULE);
        assert_eq!(chk.p_value, Some(1.0 / 32.0));
        assert_eq!(chk.verdict, Verdict::Regression);
    }

    fn perf(class: PerfClass, b: &[f64], c: &[f64], retried: bool) -> PerfCheck {
        let rule = PerfRule {
            floor: class.default_floor(),
            k: 3.0,
            repeats: 3,
            retry_once: true,
        };
        check_performance(
            &PerfInput {
                class,
                baseline: b.to_vec(),
                candidate: c.to_vec(),
                retried,
            },
            &rule,
        )
    }

    #[test]
    fn perf_thresholds_and_directions() {
        // Clean 10 % latency rise: noise ~1.5 %, threshold 5 % -> retry, then regression.
        let p = perf(
            PerfClass::Latency,
            &[100.0, 101.0, 99.0],
            &[110.0, 111.0, 109.0],
            false,
        );
        assert_eq!(p.verdict, Verdict::Retry);
        assert!((p.change - 0.10).abs() < 1e-12);
        assert_eq!(p.threshold, 0.05);
        let p = perf(
            PerfClass::Latency,
            &[100.0, 101.0, 99.0],
            &[110.0, 111.0, 109.0],
            true,
        );
        assert_eq!(p.verdict, Verdict::Regression);
        // Throughput falling 10 % is the worsening; rising 10 % an improvement.
        let p = perf(
            PerfClass::Throughput,
            &[50.0, 50.0, 50.0],
            &[45.0, 45.0, 45.0],
            true,
        );
        assert!((p.worsening - 0.10).abs() < 1e-12);
        assert_eq!(p.verdict, Verdict::Regression);
        let p = perf(
            PerfClass::Throughput,
            &[50.0, 50.0, 50.0],
            &[55.0, 55.0, 55.0],
            true,
        );
        assert_eq!(p.verdict, Verdict::Improvement);
        // Memory +1.5 % is within the 2 % floor.
        let p = perf(PerfClass::Memory, &[1000.0; 3], &[1015.0; 3], false);
        assert_eq!((p.verdict, p.noise), (Verdict::Pass, 0.0));
        // Bad input.
        let p = perf(PerfClass::Energy, &[0.0, 0.0], &[1.0], false);
        assert!(matches!(p.verdict, Verdict::Inconclusive(_)));
        let p = perf(PerfClass::Energy, &[1.0, f64::NAN], &[1.0], false);
        assert!(matches!(p.verdict, Verdict::Inconclusive(_)));
    }

    #[test]
    fn pooled_noise_weights_by_degrees_of_freedom() {
        // Baseline rel. MAD 1.4826 * 1/100, candidate 0: pooled over df 2 + 2.
        let n = pooled_noise(&[99.0, 100.0, 101.0], &[100.0, 100.0, 100.0]);
        let s = stats::MAD_TO_SIGMA / 100.0;
        assert!((n - (2.0 * s * s / 4.0).sqrt()).abs() < 1e-15);
        assert_eq!(pooled_noise(&[1.0], &[2.0]), 0.0);
    }
}
