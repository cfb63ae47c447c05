//! Paired significance tests for the gate: McNemar's exact test on
//! per-example correctness, a one-sided p-value from paired bootstrap
//! replicates, and a sign-flip (paired permutation) test on per-example
//! differences.
//!
//! Every function is deterministic: the sign-flip test draws from its own
//! seeded generator, so the same inputs always give the same p-value.

/// Discordant-pair counts of a paired comparison of correctness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Discordant {
    /// Examples the baseline got right and the candidate got wrong (losses).
    pub b: u64,
    /// Examples the baseline got wrong and the candidate got right (gains).
    pub c: u64,
}

/// Counts the discordant pairs in `(baseline_correct, candidate_correct)` pairs.
pub fn discordant(pairs: &[(bool, bool)]) -> Discordant {
    let mut d = Discordant { b: 0, c: 0 };
    for &(base, cand) in pairs {
        match (base, cand) {
            (true, false) => d.b += 1,
            (false, true) => d.c += 1,
            _ => {}
        }
    }
    d
}

/// `ln C(n, i)` for `i = 0..=k`, built incrementally so that `n` in the
/// millions neither overflows nor loses the small tail terms.
fn ln_binomial_coefficients(n: u64, k: u64) -> Vec<f64> {
    let mut out = Vec::with_capacity(k as usize + 1);
    let mut acc = 0.0f64;
    out.push(acc);
    for i in 0..k {
        acc += ((n - i) as f64).ln() - ((i + 1) as f64).ln();
        out.push(acc);
    }
    out
}

/// `ln(sum(exp(xs)))` without overflow or underflow of the largest term.
fn log_sum_exp(xs: &[f64]) -> f64 {
    let max = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        return max;
    }
    max + xs.iter().map(|x| (x - max).exp()).sum::<f64>().ln()
}

/// `(P(X <= k), P(X = k))` for `X ~ Binomial(n, 1/2)`, computed in log space.
fn binomial_half_tail(k: u64, n: u64) -> (f64, f64) {
    let ln_c = ln_binomial_coefficients(n, k);
    let ln_half_n = n as f64 * std::f64::consts::LN_2;
    let cdf = (log_sum_exp(&ln_c) - ln_half_n).exp();
    let pmf = (ln_c[k as usize] - ln_half_n).exp();
    (cdf.min(1.0), pmf.min(1.0))
}

/// McNemar's exact test, two-sided: the binomial test of `b` successes in
/// `b + c` trials with probability 1/2 (as `scipy.stats.binomtest(b, b + c)`).
///
/// `p = min(1, 2 P(X <= min(b, c)))`; 1 when there is no discordant pair.
pub fn mcnemar_exact(b: u64, c: u64) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let (cdf, _) = binomial_half_tail(b.min(c), n);
    (2.0 * cdf).min(1.0)
}

/// McNemar's mid-p test, two-sided: `2 (P(X <= k) - P(X = k) / 2)` with
/// `k = min(b, c)` (Fagerland, Lydersen and Laake 2013). Less conservative
/// than [`mcnemar_exact`]; 1 when `b == c`.
pub fn mcnemar_mid_p(b: u64, c: u64) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let (cdf, pmf) = binomial_half_tail(b.min(c), n);
    (2.0 * cdf - pmf).clamp(0.0, 1.0)
}

/// One-sided p-value from paired bootstrap replicates of a difference
/// `candidate - baseline`, in the direction of the observed difference:
///
/// * observed < 0 (a drop): `(k + 1) / (B + 1)` with `k` the replicates `>= 0`
///   (the evidence against "no drop");
/// * observed > 0 (a gain): the same with the replicates `<= 0`;
/// * observed == 0: 1.
///
/// Non-finite replicates are ignored; `None` when none is left (or the
/// observed value is not finite).
pub fn bootstrap_p_value(observed: f64, replicates: &[f64]) -> Option<f64> {
    if !observed.is_finite() {
        return None;
    }
    let finite = replicates.iter().copied().filter(|r| r.is_finite());
    let (mut total, mut against) = (0usize, 0usize);
    for r in finite {
        total += 1;
        let contradicts = if observed < 0.0 { r >= 0.0 } else { r <= 0.0 };
        against += usize::from(contradicts);
    }
    if total == 0 {
        return None;
    }
    if observed == 0.0 {
        return Some(1.0);
    }
    Some((against + 1) as f64 / (total + 1) as f64)
}

/// SplitMix64: a small, well-mixed generator, enough for sign flips.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Largest sample whose `2^n` sign patterns [`sign_flip_p_value`] enumerates.
pub const SIGN_FLIP_EXACT_MAX_N: usize = 16;

/// Paired sign-flip (permutation) test of per-example differences
/// `candidate - baseline`, one-sided in the direction of their sum: under
/// H0 each difference is as likely to have either sign, so the p-value is the
/// share of sign patterns whose sum is at least as extreme as the observed.
///
/// Exact (all `2^n` patterns, the identity included) for
/// `n <= SIGN_FLIP_EXACT_MAX_N`; otherwise `resamples` seeded random patterns
/// with the `(k + 1) / (R + 1)` correction. `None` when there is no finite
/// difference; 1 when their sum is 0.
pub fn sign_flip_p_value(diffs: &[f64], resamples: usize, seed: u64) -> Option<f64> {
    let d: Vec<f64> = diffs.iter().copied().filter(|x| x.is_finite()).collect();
    if d.is_empty() {
        return None;
    }
    let observed: f64 = d.iter().sum();
    if observed == 0.0 {
        return Some(1.0);
    }
    // Sums are compared with a relative tolerance so that floating-point
    // reordering does not split ties.
    let scale: f64 = d
        .iter()
        .map(|x| x.abs())
        .sum::<f64>()
        .max(f64::MIN_POSITIVE);
    let tol = 1e-12 * scale;
    let extreme = |s: f64| {
        if observed < 0.0 {
            s <= observed + tol
        } else {
            s >= observed - tol
        }
    };
    if d.len() <= SIGN_FLIP_EXACT_MAX_N {
        let patterns = 1u64 << d.len();
        let hits = (0..patterns)
            .filter(|mask| {
                let s: f64 = d
                    .iter()
                    .enumerate()
                    .map(|(i, x)| if mask >> i & 1 == 1 { -x } else { *x })
                    .sum();
                extreme(s)
            })
            .count();
        return Some(hits as f64 / patterns as f64);
    }
    let mut rng = SplitMix64(seed);
    let mut hits = 0usize;
    for _ in 0..resamples {
        let mut s = 0.0;
        let mut bits = 0u64;
        for (i, x) in d.iter().enumerate() {
            if i % 64 == 0 {
                bits = rng.next_u64();
            }
            s += if bits >> (i % 64) & 1 == 1 { -x } else { *x };
        }
        hits += usize::from(extreme(s));
    }
    Some((hits + 1) as f64 / (resamples + 1) as f64)
}

pub use edgebench_util::stats::median;

/// Scale factor that makes the MAD estimate a normal standard deviation.
pub const MAD_TO_SIGMA: f64 = 1.482_602_218_505_602;

/// Robust relative spread: `1.4826 * MAD / median` (the normal-consistent
/// MAD as a fraction of the median). `None` for fewer than two finite values
/// or a median that is not positive.
pub fn relative_mad(values: &[f64]) -> Option<f64> {
    let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.len() < 2 {
        return None;
    }
    let med = median(&v)?;
    if med <= 0.0 {
        return None;
    }
    let dev: Vec<f64> = v.iter().map(|x| (x - med).abs()).collect();
    Some(MAD_TO_SIGMA * median(&dev)? / med)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs().max(1e-300)
    }

    #[test]
    fn mcnemar_matches_exact_binomial_sums() {
        // Reference values: exact rational sums with Python's math.comb
        // (identical to scipy.stats.binomtest(b, b + c).pvalue).
        let cases = [
            (10, 2, 0.03857421875, 0.0224609375),
            (2, 10, 0.03857421875, 0.0224609375),
            (14, 2, 0.004180908203125, 0.002349853515625),
            (2, 0, 0.5, 0.25),
            (7, 13, 0.26317596435546875, 0.18924713134765625),
            (0, 5, 0.0625, 0.03125),
            (12, 0, 0.00048828125, 0.000244140625),
            (60, 20, 8.580559867049611e-06, 5.656214894965938e-06),
            (1030, 970, 0.18706188977129684, 0.17980680405950614),
            (3000, 2900, 0.1974390248435765, 0.19298764924082637),
        ];
        for (b, c, exact, mid) in cases {
            let p = mcnemar_exact(b, c);
            let m = mcnemar_mid_p(b, c);
            assert!(close(p, exact, 1e-9), "exact {b} {c}: {p} vs {exact}");
            assert!(close(m, mid, 1e-9), "mid-p {b} {c}: {m} vs {mid}");
        }
    }

    /// Exact integer binomial coefficient (fits u128 for n <= 120).
    fn choose(n: u64, k: u64) -> u128 {
        (0..k).fold(1u128, |acc, i| acc * (n - i) as u128 / (i + 1) as u128)
    }

    #[test]
    fn mcnemar_agrees_with_integer_arithmetic_for_every_small_table() {
        for n in 1..=100u64 {
            for b in 0..=n {
                let c = n - b;
                let k = b.min(c);
                let tail: u128 = (0..=k).map(|i| choose(n, i)).sum();
                let total = 2f64.powi(n as i32);
                let exact = (2.0 * tail as f64 / total).min(1.0);
                let mid = (2.0 * tail as f64 - choose(n, k) as f64) / total;
                assert!(close(mcnemar_exact(b, c), exact, 1e-10), "{b} {c}");
                assert!(close(mcnemar_mid_p(b, c), mid.min(1.0), 1e-10), "{b} {c}");
                assert_eq!(mcnemar_exact(b, c), mcnemar_exact(c, b));
            }
        }
    }

    #[test]
    fn mcnemar_edge_cases() {
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        assert_eq!(mcnemar_mid_p(0, 0), 1.0);
        for k in [1, 5, 40, 2500] {
            assert_eq!(mcnemar_exact(k, k), 1.0);
            assert!(close(mcnemar_mid_p(k, k), 1.0, 1e-12));
        }
        assert_eq!(mcnemar_exact(1, 0), 1.0);
        // Far tails: log space keeps terms far below f64's range of 2^-n.
        assert!(close(mcnemar_exact(600, 10), 8.736482966821186e-163, 1e-8));
        assert!(close(mcnemar_exact(4000, 3800), 0.024238383243788165, 1e-8));
        assert_eq!(mcnemar_exact(3000, 10), 0.0); // e^-2021 underflows to 0, not NaN
    }

    #[test]
    fn discordant_counts() {
        let pairs = [
            (true, false),
            (true, true),
            (false, true),
            (true, false),
            (false, false),
        ];
        assert_eq!(discordant(&pairs), Discordant { b: 2, c: 1 });
    }

    #[test]
    fn bootstrap_p_counts_contradicting_replicates() {
        // 49 of 999 replicates are >= 0: p = 50 / 1000.
        let mut reps = vec![-0.05; 950];
        reps.extend(vec![0.0; 9]);
        reps.extend(vec![0.02; 40]);
        assert_eq!(bootstrap_p_value(-0.05, &reps), Some(0.05));
        // A gain is tested against replicates <= 0 (959 of them).
        assert_eq!(bootstrap_p_value(0.02, &reps), Some(960.0 / 1000.0));
        assert_eq!(bootstrap_p_value(0.0, &reps), Some(1.0));
        // None contradicts: the floor is 1 / (B + 1).
        assert_eq!(
            bootstrap_p_value(-0.1, &[-0.1, -0.2, f64::NAN]),
            Some(1.0 / 3.0)
        );
        assert_eq!(bootstrap_p_value(-0.1, &[f64::NAN]), None);
        assert_eq!(bootstrap_p_value(f64::NAN, &[0.1]), None);
    }

    #[test]
    fn sign_flip_exact_and_sampled() {
        // All five differences negative: only the identity is as extreme.
        assert_eq!(sign_flip_p_value(&[-1.0; 5], 0, 0), Some(1.0 / 32.0));
        // -1, -1, +1: sums <= -1 are the patterns (-,-,+), (-,+,-), (+,-,-),
        // and (-,-,-): 4 of 8.
        assert_eq!(sign_flip_p_value(&[-1.0, -1.0, 1.0], 0, 0), Some(0.5));
        // Zeros carry no sign information and never change the sum.
        assert_eq!(sign_flip_p_value(&[0.0, 0.0], 0, 0), Some(1.0));
        assert_eq!(sign_flip_p_value(&[f64::NAN], 0, 0), None);
        // n = 40 all negative: chance 2^-40, so every sampled pattern misses.
        let p = sign_flip_p_value(&[-0.5; 40], 999, 7).unwrap();
        assert_eq!(p, 1.0 / 1000.0);
        // Balanced signs: about half the patterns are at least as extreme.
        let mut d = vec![-1.0; 21];
        d.extend(vec![1.0; 20]);
        let p = sign_flip_p_value(&d, 4000, 11).unwrap();
        // Exact: P(S <= -1) with S = 2 Binom(41, 1/2) - 41, i.e. P(X <= 20) = 0.5.
        assert!((p - 0.5).abs() < 0.03, "{p}");
        assert_eq!(sign_flip_p_value(&d, 4000, 11), Some(p));
    }

    #[test]
    fn median_and_relative_mad() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        // [100, 101, 130]: median 101, deviations [1, 0, 29] -> MAD 1.
        let r = relative_mad(&[100.0, 101.0, 130.0]).unwrap();
        assert!(close(r, MAD_TO_SIGMA / 101.0, 1e-12));
        assert_eq!(relative_mad(&[5.0]), None);
        assert_eq!(relative_mad(&[0.0, 0.0]), None);
        assert_eq!(relative_mad(&[7.0, 7.0, 7.0]), Some(0.0));
    }
}
