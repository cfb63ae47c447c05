//! MLPerf LoadGen-style latency statistics for performance mode.
//!
//! * [`PerfSettings`] says how long a timed run lasts (warm-up, minimum and
//!   maximum query count and duration); [`PerfSettings::validity`] marks a run
//!   that missed a minimum INVALID, with the reason, as LoadGen's
//!   `MinDurationMet` / `MinQueriesMet` do.
//! * [`summarize`] reports mean, min, max and the p50/p90/p95/p99 latencies of
//!   raw samples. A percentile is the sorted sample at index `floor(p * n)`,
//!   the definition of LoadGen's `PerformanceSummary::ProcessLatencies`
//!   (`loadgen/results.cc`: `sample_latencies[sample_count * percentile]`
//!   after `std::sort`). No interpolation.
//! * A percentile is only reported when LoadGen's early-stopping rule says the
//!   samples back it ([`min_queries_for_percentile`]: 64 queries for p90, 662
//!   for p99); otherwise it is [`PercentileResult::Insufficient`].
//! * [`summarize_decoder`] gives time-to-first-token and time-per-output-token
//!   percentiles, TPOT per query being `(total - ttft) / (output_tokens - 1)` as
//!   in LoadGen's `AsyncLog::RecordSampleCompletion` (`loadgen/logging.cc`).
//!
//! Self-contained: std and serde only.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// Confidence LoadGen's early stopping uses (`results.cc`, `EarlyStopping`).
pub const EARLY_STOPPING_CONFIDENCE: f64 = 0.99;
/// Tolerance LoadGen's early stopping uses (`results.cc`, `EarlyStopping`).
pub const EARLY_STOPPING_TOLERANCE: f64 = 0.0;
/// The percentiles EdgeBench reports.
pub const REPORTED_PERCENTILES: [f64; 4] = [0.50, 0.90, 0.95, 0.99];

/// Largest `h` the early-stopping search tries before giving up.
const MAX_SEARCH_H: u64 = 1 << 40;

/// Errors from bad samples or settings. Never a panic.
#[derive(Debug, Clone, PartialEq)]
pub enum StatsError {
    /// A latency sample is negative, NaN or infinite.
    InvalidSample {
        /// Index of the sample in the input.
        index: usize,
        /// The offending value.
        value: f64,
    },
    /// A decoder timing is inconsistent (e.g. total shorter than TTFT).
    InvalidTiming {
        /// Index of the query in the input.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A percentile outside the open interval (0, 1).
    InvalidPercentile(f64),
    /// Inconsistent [`PerfSettings`].
    InvalidSettings(String),
}

impl fmt::Display for StatsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatsError::InvalidSample { index, value } => write!(
                f,
                "latency sample {index} is {value}: samples must be finite and non-negative"
            ),
            StatsError::InvalidTiming { index, reason } => {
                write!(f, "decoder timing of query {index}: {reason}")
            }
            StatsError::InvalidPercentile(p) => {
                write!(f, "percentile {p} is outside (0, 1)")
            }
            StatsError::InvalidSettings(why) => write!(f, "invalid perf settings: {why}"),
        }
    }
}

impl std::error::Error for StatsError {}

/// Serialises a [`Duration`] as seconds (f64).
mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = f64::deserialize(d)?;
        Duration::try_from_secs_f64(v).map_err(serde::de::Error::custom)
    }
}

/// Serialises an `Option<Duration>` as seconds (f64) or null.
mod opt_secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match Option::<f64>::deserialize(d)? {
            Some(v) => Duration::try_from_secs_f64(v)
                .map(Some)
                .map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

/// How long a timed performance run lasts. Durations serialise as seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerfSettings {
    /// Untimed queries issued before the clock starts.
    pub warmup_queries: u64,
    /// The run must complete at least this many timed queries.
    pub min_queries: u64,
    /// The timed window must last at least this long.
    #[serde(with = "secs")]
    pub min_duration: Duration,
    /// Stop after this many timed queries, even if `min_duration` is not met.
    pub max_queries: Option<u64>,
    /// Stop once the timed window lasts this long, even if a minimum is not met.
    #[serde(with = "opt_secs")]
    pub max_duration: Option<Duration>,
}

impl Default for PerfSettings {
    /// 10 warm-up queries, at least 100 queries and 10 s, no query cap, and a
    /// 600 s duration cap.
    fn default() -> Self {
        PerfSettings {
            warmup_queries: 10,
            min_queries: 100,
            min_duration: Duration::from_secs(10),
            max_queries: None,
            max_duration: Some(Duration::from_secs(600)),
        }
    }
}

impl PerfSettings {
    /// Checks that the maxima do not undercut the minima.
    pub fn validate(&self) -> Result<(), StatsError> {
        if let Some(max) = self.max_queries {
            if max < self.min_queries {
                return Err(StatsError::InvalidSettings(format!(
                    "max_queries {max} is below min_queries {}",
                    self.min_queries
                )));
            }
            if max == 0 {
                return Err(StatsError::InvalidSettings("max_queries is 0".into()));
            }
        }
        if let Some(max) = self.max_duration {
            if max < self.min_duration {
                return Err(StatsError::InvalidSettings(format!(
                    "max_duration {:.3} s is below min_duration {:.3} s",
                    max.as_secs_f64(),
                    self.min_duration.as_secs_f64()
                )));
            }
            if max.is_zero() {
                return Err(StatsError::InvalidSettings("max_duration is 0 s".into()));
            }
        }
        Ok(())
    }

    /// Whether the timed loop should stop after `completed` queries in
    /// `elapsed`: both minima met, or either maximum reached.
    pub fn should_stop(&self, completed: u64, elapsed: Duration) -> bool {
        let minima_met = completed >= self.min_queries && elapsed >= self.min_duration;
        let max_queries_hit = self.max_queries.is_some_and(|m| completed >= m);
        let max_duration_hit = self.max_duration.is_some_and(|m| elapsed >= m);
        minima_met || max_queries_hit || max_duration_hit
    }

    /// VALID when the run completed at least `min_queries` queries and its
    /// timed window lasted at least `min_duration`; otherwise INVALID with
    /// one reason per missed minimum.
    pub fn validity(&self, completed: u64, elapsed: Duration) -> Validity {
        let mut reasons = Vec::new();
        if completed == 0 {
            reasons.push("no timed query completed".to_string());
        }
        if completed < self.min_queries {
            reasons.push(format!(
                "completed {completed} queries, fewer than the minimum {}",
                self.min_queries
            ));
        }
        if elapsed < self.min_duration {
            reasons.push(format!(
                "timed window lasted {:.3} s, shorter than the minimum {:.3} s",
                elapsed.as_secs_f64(),
                self.min_duration.as_secs_f64()
            ));
        }
        Validity {
            valid: reasons.is_empty(),
            reasons,
        }
    }
}

/// Whether a timed run met its minima, and why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validity {
    /// True when every minimum was met.
    pub valid: bool,
    /// One sentence per missed minimum; empty when valid.
    pub reasons: Vec<String>,
}

impl fmt::Display for Validity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.valid {
            write!(f, "VALID")
        } else {
            write!(f, "INVALID: {}", self.reasons.join("; "))
        }
    }
}

pub use edgebench_util::stats::{
    percentile_index as loadgen_percentile_index, percentile_of_sorted,
};

/// `ln(e^a + e^b)` without overflow.
fn ln_add_exp(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
    if lo == f64::NEG_INFINITY {
        return hi;
    }
    hi + (lo - hi).exp().ln_1p()
}

/// Natural logs of the binomial terms `C(n, x) q^(n - x) (1 - q)^x` for
/// `x = 0, 1, ...`, computed by the ratio of consecutive terms.
fn ln_binomial_terms(n: u64, q: f64) -> impl Iterator<Item = f64> {
    let nf = n as f64;
    let ln_q = q.ln();
    let ln_ratio = (1.0 - q).ln() - ln_q;
    let mut ln_term = nf * ln_q;
    let mut x = 0u64;
    std::iter::from_fn(move || {
        if x > n {
            return None;
        }
        let current = ln_term;
        let xf = x as f64;
        ln_term += ((nf - xf) / (xf + 1.0)).ln() + ln_ratio;
        x += 1;
        Some(current)
    })
}

/// Natural log of `P(X <= t)` for `X ~ Binomial(h + t, 1 - q)`: the odds of
/// `t` or fewer queries above the `q`-th percentile latency among `h + t`.
/// LoadGen's `odds(h, t, p, d)` computes the same quantity as
/// `BetaRegularized[p - d, h, 1 + t]`; this sums the binomial terms in log
/// space instead, which needs no special functions.
fn ln_odds(h: u64, t: u64, q: f64) -> f64 {
    ln_binomial_terms(h + t, q)
        .take(t as usize + 1)
        .fold(f64::NEG_INFINITY, ln_add_exp)
}

/// LoadGen's `MinPassingQueriesFinder` (`loadgen/early_stopping.cc`): the
/// smallest `h >= 1` such that, with `t` queries over the latency bound,
/// `P(Binomial(h + t, 1 - (p - d)) <= t) < 1 - c`. `None` when `p - d` or `c`
/// is outside (0, 1).
pub fn min_passing_queries(t: u64, p: f64, d: f64, c: f64) -> Option<u64> {
    let q = p - d;
    if !(q > 0.0 && q < 1.0 && c > 0.0 && c < 1.0) {
        return None;
    }
    let target = (1.0 - c).ln();
    let passes = |h: u64| ln_odds(h, t, q) < target;
    let mut lo = 1;
    if passes(lo) {
        return Some(lo);
    }
    // Odds fall as h grows: double until passing, then bisect.
    let mut hi = lo.saturating_mul(2);
    while !passes(hi) {
        if hi >= MAX_SEARCH_H {
            return None;
        }
        lo = hi;
        hi = hi.saturating_mul(2).min(MAX_SEARCH_H);
    }
    // Invariant: !passes(lo), passes(hi).
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if passes(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(hi)
}

/// Queries needed before percentile `p` may be reported: LoadGen's
/// single-stream early-stopping minimum, `h_min + 1` with
/// `h_min = MinPassingQueriesFinder(t = 1, p, d = 0, c = 0.99)`
/// (`results.cc`, `EarlyStopping`, "Need to process at least h_min + 1
/// queries"). 11 for p50, 64 for p90, 130 for p95, 662 for p99. `None` for a
/// `p` outside (0, 1).
pub fn min_queries_for_percentile(p: f64) -> Option<u64> {
    min_passing_queries(1, p, EARLY_STOPPING_TOLERANCE, EARLY_STOPPING_CONFIDENCE).map(|h| h + 1)
}

/// LoadGen's early-stopping estimate of percentile `p` from sorted samples:
/// the sample at index `n - t`, where `t` is the largest count of discarded
/// high-latency queries that `n` samples still justify at 99 % confidence
/// (`results.cc`, single-stream branch of `EarlyStopping`). It is a
/// conservative (upper) estimate. `None` when fewer than
/// [`min_queries_for_percentile`] samples are given.
///
/// LoadGen finds `t` by looping `i = 2, 3, ...` until `n < h(i) + i`, with
/// `h(i)` from [`min_passing_queries`]. Because the odds fall as `h` grows,
/// `n >= h(i) + i` holds exactly when `P(Binomial(n, 1 - p) <= i) < 1 - c`,
/// so `t` is the largest `i` for which the binomial CDF stays below
/// `1 - c`: one pass over the CDF instead of a search per `i`.
pub fn early_stopping_estimate(sorted: &[f64], p: f64) -> Option<f64> {
    let n = sorted.len() as u64;
    let needed = min_queries_for_percentile(p)?;
    if n < needed {
        return None;
    }
    let q = p - EARLY_STOPPING_TOLERANCE;
    let target = (1.0 - EARLY_STOPPING_CONFIDENCE).ln();
    let mut ln_cdf = f64::NEG_INFINITY;
    let mut t = 0u64;
    for (x, ln_term) in ln_binomial_terms(n, q).enumerate() {
        let next = ln_add_exp(ln_cdf, ln_term);
        if next >= target {
            break;
        }
        ln_cdf = next;
        t = x as u64;
    }
    // n >= needed guarantees the CDF at 1 is below 1 - c, so t >= 1.
    let t = t.max(1);
    Some(sorted[(n - t) as usize])
}

/// One reported percentile: a value, or too few samples to back it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum PercentileResult {
    /// Enough samples: the LoadGen percentile and its early-stopping estimate.
    Value {
        /// Sorted sample at index `floor(p * n)`.
        value: f64,
        /// Conservative estimate from [`early_stopping_estimate`].
        early_stopping_estimate: f64,
    },
    /// Fewer samples than early stopping needs.
    Insufficient {
        /// Samples needed ([`min_queries_for_percentile`]).
        needed: u64,
        /// Samples available.
        have: u64,
    },
}

impl PercentileResult {
    /// The value, when there were enough samples.
    pub fn value(&self) -> Option<f64> {
        match self {
            PercentileResult::Value { value, .. } => Some(*value),
            PercentileResult::Insufficient { .. } => None,
        }
    }
}

impl fmt::Display for PercentileResult {
    /// The value with three decimals (precision is honoured), or
    /// `insufficient samples (have/needed)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PercentileResult::Value { value, .. } => {
                write!(f, "{:.*}", f.precision().unwrap_or(3), value)
            }
            PercentileResult::Insufficient { needed, have } => {
                write!(f, "insufficient samples ({have}/{needed})")
            }
        }
    }
}

/// A percentile and its result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PercentileEntry {
    /// The percentile as a fraction, e.g. 0.9 for p90.
    pub percentile: f64,
    /// Value or insufficiency.
    pub result: PercentileResult,
}

impl PercentileEntry {
    /// A label such as `p90` or `p99.9`.
    pub fn label(&self) -> String {
        let pct = self.percentile * 100.0;
        if (pct - pct.round()).abs() < 1e-9 {
            format!("p{}", pct.round() as u64)
        } else {
            format!("p{pct}")
        }
    }
}

/// Summary of raw latency samples (any unit; EdgeBench uses milliseconds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Number of samples.
    pub count: u64,
    /// Arithmetic mean; `None` without samples.
    pub mean: Option<f64>,
    /// Smallest sample; `None` without samples.
    pub min: Option<f64>,
    /// Largest sample; `None` without samples.
    pub max: Option<f64>,
    /// One entry per requested percentile, in the order requested.
    pub percentiles: Vec<PercentileEntry>,
}

impl LatencySummary {
    /// The entry for percentile `p` (compared to 1e-9), if it was requested.
    pub fn percentile(&self, p: f64) -> Option<&PercentileResult> {
        self.percentiles
            .iter()
            .find(|e| (e.percentile - p).abs() < 1e-9)
            .map(|e| &e.result)
    }
}

/// Summarises samples at [`REPORTED_PERCENTILES`] (p50, p90, p95, p99).
pub fn summarize(samples: &[f64]) -> Result<LatencySummary, StatsError> {
    summarize_at(samples, &REPORTED_PERCENTILES)
}

/// Summarises samples at the given percentiles (each in (0, 1)). Samples must
/// be finite and non-negative; they need not be sorted.
pub fn summarize_at(samples: &[f64], percentiles: &[f64]) -> Result<LatencySummary, StatsError> {
    if let Some((index, &value)) = samples
        .iter()
        .enumerate()
        .find(|(_, v)| !v.is_finite() || **v < 0.0)
    {
        return Err(StatsError::InvalidSample { index, value });
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let have = sorted.len() as u64;
    let mut entries = Vec::with_capacity(percentiles.len());
    for &p in percentiles {
        let needed = min_queries_for_percentile(p).ok_or(StatsError::InvalidPercentile(p))?;
        let result = if have < needed {
            PercentileResult::Insufficient { needed, have }
        } else {
            match (
                percentile_of_sorted(&sorted, p),
                early_stopping_estimate(&sorted, p),
            ) {
                (Some(value), Some(early_stopping_estimate)) => PercentileResult::Value {
                    value,
                    early_stopping_estimate,
                },
                _ => PercentileResult::Insufficient { needed, have },
            }
        };
        entries.push(PercentileEntry {
            percentile: p,
            result,
        });
    }
    let mean = if sorted.is_empty() {
        None
    } else {
        Some(sorted.iter().sum::<f64>() / sorted.len() as f64)
    };
    Ok(LatencySummary {
        count: have,
        mean,
        min: sorted.first().copied(),
        max: sorted.last().copied(),
        percentiles: entries,
    })
}

/// Timing of one decoder query, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DecodeTiming {
    /// Time from issuing the query to the first output token.
    pub ttft_ms: f64,
    /// Time from issuing the query to the last output token.
    pub total_ms: f64,
    /// Number of output tokens, the first included.
    pub output_tokens: u64,
}

impl DecodeTiming {
    /// Builds a timing from the TTFT and the durations of the later tokens,
    /// each measured from the previous token: `later_token_ms[i]` is the time
    /// between output tokens `i + 1` and `i + 2` (1-based).
    pub fn from_token_gaps(ttft_ms: f64, later_token_ms: &[f64]) -> Self {
        DecodeTiming {
            ttft_ms,
            total_ms: ttft_ms + later_token_ms.iter().sum::<f64>(),
            output_tokens: 1 + later_token_ms.len() as u64,
        }
    }

    /// LoadGen's time per output token, `(total - ttft) / (output_tokens - 1)`;
    /// `None` for fewer than two output tokens (LoadGen rejects those too).
    pub fn tpot_ms(&self) -> Option<f64> {
        if self.output_tokens < 2 {
            return None;
        }
        Some((self.total_ms - self.ttft_ms) / (self.output_tokens - 1) as f64)
    }

    fn check(&self, index: usize) -> Result<(), StatsError> {
        let bad = |reason: String| Err(StatsError::InvalidTiming { index, reason });
        if !self.ttft_ms.is_finite() || self.ttft_ms < 0.0 {
            return bad(format!("ttft_ms is {}", self.ttft_ms));
        }
        if !self.total_ms.is_finite() || self.total_ms < self.ttft_ms {
            return bad(format!(
                "total_ms {} is not a finite value at least ttft_ms {}",
                self.total_ms, self.ttft_ms
            ));
        }
        if self.output_tokens == 0 {
            return bad("no output token".into());
        }
        Ok(())
    }
}

/// TTFT and TPOT statistics over decoder queries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecoderSummary {
    /// Number of queries.
    pub queries: u64,
    /// Output tokens over all queries.
    pub output_tokens: u64,
    /// Time to first token, one sample per query.
    pub ttft: LatencySummary,
    /// Time per output token, one sample per query with at least two tokens.
    pub tpot: LatencySummary,
    /// Queries left out of TPOT because they produced a single token.
    pub tpot_excluded_queries: u64,
}

/// Summarises decoder timings: TTFT over every query, TPOT over the queries
/// with at least two output tokens.
pub fn summarize_decoder(queries: &[DecodeTiming]) -> Result<DecoderSummary, StatsError> {
    for (i, q) in queries.iter().enumerate() {
        q.check(i)?;
    }
    let ttft: Vec<f64> = queries.iter().map(|q| q.ttft_ms).collect();
    let tpot: Vec<f64> = queries.iter().filter_map(DecodeTiming::tpot_ms).collect();
    Ok(DecoderSummary {
        queries: queries.len() as u64,
        output_tokens: queries.iter().map(|q| q.output_tokens).sum(),
        ttft: summarize(&ttft)?,
        tpot_excluded_queries: (queries.len() - tpot.len()) as u64,
        tpot: summarize(&tpot)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_to(n: u32) -> Vec<f64> {
        (1..=n).map(f64::from).collect()
    }

    #[test]
    fn early_stopping_minimums_match_loadgen() {
        // Values LoadGen's hypergeometric implementation gives for t = 1,
        // d = 0, c = 0.99 (h_min + 1), checked by hand for p90:
        // n = 64: 0.9^64 + 64 * 0.1 * 0.9^63 = 0.00966 < 0.01,
        // n = 63: 0.9^63 + 63 * 0.1 * 0.9^62 = 0.01050 >= 0.01.
        assert_eq!(min_queries_for_percentile(0.50), Some(11));
        assert_eq!(min_queries_for_percentile(0.90), Some(64));
        assert_eq!(min_queries_for_percentile(0.95), Some(130));
        assert_eq!(min_queries_for_percentile(0.99), Some(662));
        assert_eq!(min_queries_for_percentile(0.999), Some(6636));
    }

    #[test]
    fn zero_overlatency_queries_is_the_geometric_bound() {
        // t = 0: smallest h with p^h < 0.01, i.e. ceil(ln 0.01 / ln p).
        assert_eq!(min_passing_queries(0, 0.90, 0.0, 0.99), Some(44));
        assert_eq!(min_passing_queries(0, 0.99, 0.0, 0.99), Some(459));
        assert_eq!(min_passing_queries(0, 0.50, 0.0, 0.99), Some(7));
    }

    #[test]
    fn min_passing_matches_loadgen_beyond_t_1() {
        // Reference values from LoadGen's own formulation (lbeta, the a = 1
        // hypergeometric series and BetaRegularized of early_stopping.cc)
        // evaluated independently for these arguments.
        let p90: Vec<u64> = (0..8)
            .map(|t| min_passing_queries(t, 0.9, 0.0, 0.99).unwrap())
            .collect();
        assert_eq!(p90, [44, 63, 79, 94, 109, 122, 136, 149]);
        assert_eq!(min_passing_queries(2, 0.99, 0.0, 0.99), Some(836));
        assert_eq!(min_passing_queries(5, 0.99, 0.0, 0.99), Some(1302));
    }

    #[test]
    fn min_passing_rejects_bad_arguments() {
        assert_eq!(min_passing_queries(1, 1.0, 0.0, 0.99), None);
        assert_eq!(min_passing_queries(1, 0.0, 0.0, 0.99), None);
        assert_eq!(min_passing_queries(1, 0.9, 0.0, 1.0), None);
        assert_eq!(min_queries_for_percentile(f64::NAN), None);
    }

    #[test]
    fn min_passing_grows_with_t() {
        let mut prev = 0;
        for t in 0..20 {
            let h = min_passing_queries(t, 0.9, 0.0, 0.99).unwrap();
            assert!(h > prev, "t={t}: {h} <= {prev}");
            prev = h;
        }
    }

    #[test]
    fn percentile_index_is_floor_of_n_times_p() {
        assert_eq!(loadgen_percentile_index(100, 0.9), 90);
        assert_eq!(loadgen_percentile_index(10, 0.5), 5);
        assert_eq!(loadgen_percentile_index(7, 0.5), 3);
        assert_eq!(loadgen_percentile_index(7, 0.99), 6);
        assert_eq!(loadgen_percentile_index(1, 0.99), 0);
        assert_eq!(loadgen_percentile_index(0, 0.5), 0);
        // No interpolation: 1..=10 at p50 is the 6th value, 6 (not 5.5).
        assert_eq!(percentile_of_sorted(&one_to(10), 0.5), Some(6.0));
        assert_eq!(percentile_of_sorted(&[], 0.5), None);
    }

    #[test]
    fn summary_of_one_to_hundred() {
        // Unsorted input 100, 99, ..., 1.
        let mut s = one_to(100);
        s.reverse();
        let sum = summarize(&s).unwrap();
        assert_eq!(sum.count, 100);
        assert_eq!(sum.mean, Some(50.5));
        assert_eq!(sum.min, Some(1.0));
        assert_eq!(sum.max, Some(100.0));
        assert_eq!(sum.percentile(0.5).unwrap().value(), Some(51.0));
        assert_eq!(sum.percentile(0.9).unwrap().value(), Some(91.0));
        // p95 needs 130, p99 needs 662.
        assert_eq!(
            sum.percentile(0.95),
            Some(&PercentileResult::Insufficient {
                needed: 130,
                have: 100
            })
        );
        assert_eq!(
            sum.percentile(0.99).unwrap().to_string(),
            "insufficient samples (100/662)"
        );
        assert_eq!(sum.percentiles[1].label(), "p90");
    }

    #[test]
    fn early_stopping_estimate_is_conservative() {
        // n = 64 for p90: only t = 1 is justified, so the estimate is the max.
        let s = one_to(64);
        assert_eq!(early_stopping_estimate(&s, 0.9), Some(64.0));
        assert_eq!(early_stopping_estimate(&one_to(63), 0.9), None);
        // n = 100 for p90: t = 3 (h(3) = 94, 94 + 3 <= 100; h(4) = 105),
        // estimate = sorted[100 - 3] = 98.
        assert_eq!(min_passing_queries(3, 0.9, 0.0, 0.99), Some(94));
        assert!(min_passing_queries(4, 0.9, 0.0, 0.99).unwrap() + 4 > 100);
        assert_eq!(early_stopping_estimate(&one_to(100), 0.9), Some(98.0));
        // The estimate never undercuts the plain percentile.
        for n in [64u32, 100, 500, 2000] {
            let s = one_to(n);
            let est = early_stopping_estimate(&s, 0.9).unwrap();
            assert!(est >= percentile_of_sorted(&s, 0.9).unwrap());
        }
    }

    /// LoadGen's loop, literally: `t = i - 1` for the first `i >= 2` with
    /// `n < h(i) + i`.
    fn loadgen_loop_t(n: u64, p: f64) -> u64 {
        for i in 2..=n {
            let h = min_passing_queries(i, p, 0.0, 0.99).unwrap();
            if n < h + i {
                return i - 1;
            }
        }
        1
    }

    #[test]
    fn one_pass_estimate_matches_loadgen_loop() {
        for (p, ns) in [
            (0.5, vec![11u64, 12, 30, 101, 400]),
            (0.9, vec![64, 65, 100, 137, 500, 1000]),
            (0.95, vec![130, 131, 300, 999]),
            (0.99, vec![662, 663, 1000, 2500]),
        ] {
            for n in ns {
                let s = one_to(n as u32);
                let t = loadgen_loop_t(n, p);
                assert_eq!(
                    early_stopping_estimate(&s, p),
                    Some((n - t + 1) as f64), // sorted[n - t] of 1..=n
                    "p={p} n={n} t={t}"
                );
            }
        }
    }

    #[test]
    fn large_runs_are_fast_and_sane() {
        // 200k samples at p50 would take O(t^2) searches with the literal loop.
        let s = one_to(200_000);
        let start = std::time::Instant::now();
        let sum = summarize(&s).unwrap();
        assert!(start.elapsed() < Duration::from_secs(5));
        for e in &sum.percentiles {
            match e.result {
                PercentileResult::Value {
                    value,
                    early_stopping_estimate,
                } => {
                    assert!(early_stopping_estimate >= value, "{}", e.label());
                    // Within 1 % of n of the plain percentile at this size.
                    assert!(early_stopping_estimate - value < 2000.0, "{}", e.label());
                }
                PercentileResult::Insufficient { .. } => panic!("{}", e.label()),
            }
        }
    }

    #[test]
    fn exactly_the_minimum_is_reported() {
        let s = one_to(662);
        let sum = summarize(&s).unwrap();
        // floor(662 * 0.99) = 655 -> value 656.
        assert_eq!(sum.percentile(0.99).unwrap().value(), Some(656.0));
        let sum = summarize(&s[..661]).unwrap();
        assert_eq!(sum.percentile(0.99).unwrap().value(), None);
    }

    #[test]
    fn empty_and_bad_samples() {
        let sum = summarize(&[]).unwrap();
        assert_eq!(sum.count, 0);
        assert_eq!(sum.mean, None);
        assert_eq!(
            sum.percentile(0.5).unwrap().to_string(),
            "insufficient samples (0/11)"
        );
        assert!(matches!(
            summarize(&[1.0, f64::NAN]),
            Err(StatsError::InvalidSample { index: 1, value }) if value.is_nan()
        ));
        assert!(matches!(
            summarize(&[2.0, f64::INFINITY]),
            Err(StatsError::InvalidSample { index: 1, .. })
        ));
        assert!(matches!(
            summarize(&[-1.0]),
            Err(StatsError::InvalidSample { index: 0, .. })
        ));
        assert!(matches!(
            summarize_at(&[1.0], &[1.0]),
            Err(StatsError::InvalidPercentile(_))
        ));
    }

    #[test]
    fn validity_reasons() {
        let s = PerfSettings::default();
        assert_eq!(s.min_queries, 100);
        assert_eq!(s.min_duration, Duration::from_secs(10));
        let ok = s.validity(100, Duration::from_secs(10));
        assert!(ok.valid);
        assert_eq!(ok.to_string(), "VALID");
        let bad = s.validity(50, Duration::from_millis(3200));
        assert!(!bad.valid);
        assert_eq!(bad.reasons.len(), 2);
        assert!(bad.reasons[0].contains("50") && bad.reasons[0].contains("100"));
        assert!(bad.reasons[1].contains("3.200 s"));
        assert!(bad.to_string().starts_with("INVALID: "));
        let short = s.validity(500, Duration::from_secs(9));
        assert_eq!(short.reasons.len(), 1);
        assert!(!s.validity(0, Duration::from_secs(20)).valid);
    }

    #[test]
    fn stopping_rule() {
        let s = PerfSettings {
            warmup_queries: 0,
            min_queries: 10,
            min_duration: Duration::from_secs(1),
            max_queries: Some(20),
            max_duration: Some(Duration::from_secs(5)),
        };
        s.validate().unwrap();
        assert!(!s.should_stop(10, Duration::from_millis(999)));
        assert!(!s.should_stop(9, Duration::from_secs(2)));
        assert!(s.should_stop(10, Duration::from_secs(1)));
        assert!(s.should_stop(20, Duration::ZERO));
        assert!(s.should_stop(3, Duration::from_secs(5)));
        let bad = PerfSettings {
            max_queries: Some(5),
            ..s.clone()
        };
        assert!(bad.validate().is_err());
        let bad = PerfSettings {
            max_duration: Some(Duration::from_millis(10)),
            ..s
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn settings_serialise_durations_as_seconds() {
        let s = PerfSettings::default();
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["min_duration"], 10.0);
        assert_eq!(v["max_queries"], serde_json::Value::Null);
        let back: PerfSettings = serde_json::from_value(v).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn decoder_ttft_and_tpot() {
        // ttft 100 ms then 3 tokens at 10, 20, 30 ms: total 160, TPOT 60 / 3 = 20.
        let q = DecodeTiming::from_token_gaps(100.0, &[10.0, 20.0, 30.0]);
        assert_eq!(q.output_tokens, 4);
        assert_eq!(q.total_ms, 160.0);
        assert_eq!(q.tpot_ms(), Some(20.0));
        let single = DecodeTiming::from_token_gaps(80.0, &[]);
        assert_eq!(single.tpot_ms(), None);

        // 20 queries: ttft = 10 * i, TPOT = i ms (i = 1..=20), plus one single-token query.
        let mut qs: Vec<DecodeTiming> = (1..=20)
            .map(|i| DecodeTiming {
                ttft_ms: 10.0 * i as f64,
                total_ms: 10.0 * i as f64 + 4.0 * i as f64,
                output_tokens: 5,
            })
            .collect();
        qs.push(single);
        let d = summarize_decoder(&qs).unwrap();
        assert_eq!(d.queries, 21);
        assert_eq!(d.output_tokens, 101);
        assert_eq!(d.tpot_excluded_queries, 1);
        assert_eq!(d.tpot.count, 20);
        assert_eq!(d.tpot.mean, Some(10.5));
        // TPOT p50: sorted 1..=20, index floor(20 * 0.5) = 10 -> 11.
        assert_eq!(d.tpot.percentile(0.5).unwrap().value(), Some(11.0));
        // TTFT over 21 queries: 10, 20, ..., 200 and 80; index 10 of sorted.
        let mut t: Vec<f64> = qs.iter().map(|q| q.ttft_ms).collect();
        t.sort_by(f64::total_cmp);
        assert_eq!(d.ttft.percentile(0.5).unwrap().value(), Some(t[10]));
        assert_eq!(t[10], 100.0);
        assert_eq!(
            d.ttft.percentile(0.9).unwrap().to_string(),
            "insufficient samples (21/64)"
        );
    }

    #[test]
    fn decoder_rejects_inconsistent_timing() {
        let bad = DecodeTiming {
            ttft_ms: 50.0,
            total_ms: 40.0,
            output_tokens: 3,
        };
        assert!(matches!(
            summarize_decoder(&[bad]),
            Err(StatsError::InvalidTiming { index: 0, .. })
        ));
        let none = DecodeTiming {
            ttft_ms: 5.0,
            total_ms: 5.0,
            output_tokens: 0,
        };
        assert!(summarize_decoder(&[none]).is_err());
    }

    #[test]
    fn percentile_result_serialises_with_status() {
        let v = serde_json::to_value(PercentileResult::Insufficient {
            needed: 64,
            have: 3,
        })
        .unwrap();
        assert_eq!(v["status"], "insufficient");
        assert_eq!(v["needed"], 64);
        let sum = summarize(&one_to(64)).unwrap();
        let json = serde_json::to_string(&sum).unwrap();
        let back: LatencySummary = serde_json::from_str(&json).unwrap();
        assert_eq!(back, sum);
        assert_eq!(format!("{:.1}", sum.percentiles[1].result), "58.0");
    }
}
