//! Summary statistics over `f64` samples.

/// Mean of the finite values, `None` when there are none.
pub fn mean(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values
        .into_iter()
        .filter(|v| v.is_finite())
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

/// Median of the finite values (the mean of the middle two for an even
/// count), `None` when there are none.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

/// Sample standard deviation (n - 1) of the finite values, `None` for fewer than two.
pub fn std_dev(values: &[f64]) -> Option<f64> {
    let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.len() < 2 {
        return None;
    }
    let m = v.iter().sum::<f64>() / v.len() as f64;
    Some((v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt())
}

/// Index of percentile `p` in `n` sorted samples, as MLPerf LoadGen
/// computes it: `floor(n * p)` (a C++ double-to-integer conversion),
/// clamped to `n - 1`.
pub fn percentile_index(n: usize, p: f64) -> usize {
    let i = (n as f64 * p) as usize; // `as` truncates toward zero, like C++
    i.min(n.saturating_sub(1))
}

/// Percentile `p` of already sorted samples ([`percentile_index`]); `None`
/// for no samples.
pub fn percentile_of_sorted(sorted: &[f64], p: f64) -> Option<f64> {
    (!sorted.is_empty()).then(|| sorted[percentile_index(sorted.len(), p)])
}

/// Percentile `p` of samples in any order ([`percentile_index`]).
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    percentile_of_sorted(&v, p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries() {
        // python3 -c "import statistics as s; print(s.mean([1,2,4]), s.median([4,1,3,2]), s.stdev([1,2,4]))"
        assert_eq!(mean([1.0, 2.0, 4.0, f64::NAN]), Some(7.0 / 3.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN]), None);
        assert!((std_dev(&[1.0, 2.0, 4.0]).unwrap() - 1.527_525_231_651_947).abs() < 1e-15);
        assert_eq!(percentile_index(100, 0.9), 90);
        assert_eq!(percentile_index(3, 1.0), 2);
        assert_eq!(percentile(&[3.0, 1.0, 2.0], 0.5), Some(2.0));
    }
}
