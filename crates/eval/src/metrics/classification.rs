//! scikit-learn's F1 arithmetic (`f1_score`, scikit-learn >= 1.3) on
//! per-class counts; `score` decides which classes are averaged.
//!
//! * Per-class F1 is computed from counts, `2·tp / (2·tp + fp + fn)`, which is
//!   what scikit-learn does since 1.3 (older releases combined the rounded
//!   precision and recall and can differ in the last bit).
//! * `zero_division="warn"` (the default): a class with `tp + fp + fn = 0`
//!   scores 0.0.
//! * Macro averages use NumPy's pairwise summation ([`numpy_mean`]) so that
//!   results agree bit for bit with `np.mean`.

/// F1 of one class (or of summed counts, for micro F1) from its true
/// positives, false positives and false negatives; 0.0 when all are zero.
pub fn f1(tp: f64, fp: f64, fn_: f64) -> f64 {
    let den = 2.0 * tp + fp + fn_;
    if den == 0.0 {
        0.0
    } else {
        2.0 * tp / den
    }
}

/// NumPy's `pairwise_sum` for contiguous `float64` data (blocks of 128,
/// eight-way unrolled accumulation), as used by `np.sum` / `np.mean`.
fn numpy_pairwise_sum(a: &[f64]) -> f64 {
    let n = a.len();
    if n < 8 {
        a.iter().fold(0.0, |acc, &x| acc + x)
    } else if n <= 128 {
        let body = n - n % 8;
        let mut r = [0.0f64; 8];
        r.copy_from_slice(&a[..8]);
        for chunk in a[8..body].chunks_exact(8) {
            for (acc, &x) in r.iter_mut().zip(chunk) {
                *acc += x;
            }
        }
        let head = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        a[body..].iter().fold(head, |acc, &x| acc + x)
    } else {
        let half = n / 2;
        let split = half - half % 8;
        numpy_pairwise_sum(&a[..split]) + numpy_pairwise_sum(&a[split..])
    }
}

/// `np.mean` of a `float64` vector; NaN when empty.
pub fn numpy_mean(a: &[f64]) -> f64 {
    if a.is_empty() {
        return f64::NAN;
    }
    numpy_pairwise_sum(a) / a.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairwise_sum_blocks() {
        // Small sizes are plain left-to-right sums.
        assert_eq!(numpy_pairwise_sum(&[0.1, 0.2, 0.3]), 0.1 + 0.2 + 0.3);
        // 0.1 added 10 times: numpy gives 1.0 (pairwise), a naive loop
        // gives 0.9999999999999999.
        assert_eq!(numpy_pairwise_sum(&[0.1; 10]), 1.0);
        let v: Vec<f64> = (1..=1000).map(f64::from).collect();
        assert_eq!(numpy_pairwise_sum(&v), 500_500.0);
        assert!(numpy_mean(&[]).is_nan());
    }
}
