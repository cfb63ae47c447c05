//! Integrating `(t seconds, watts)` sample series into joules.

/// Trapezoid-rule integral of `(t seconds, watts)` samples, in joules. Samples must be in time
/// order; fewer than two give 0.
pub fn trapezoid(samples: &[(f64, f64)]) -> f64 {
    samples
        .windows(2)
        .map(|w| (w[1].0 - w[0].0) * (w[0].1 + w[1].1) / 2.0)
        .sum()
}

/// Linear interpolation of the sample series at `t` (which must lie within it).
fn interpolate(samples: &[(f64, f64)], t: f64) -> f64 {
    let i = samples.partition_point(|s| s.0 < t);
    if i == 0 {
        return samples[0].1;
    }
    if i >= samples.len() {
        return samples[samples.len() - 1].1;
    }
    let (t_a, w_a) = samples[i - 1];
    let (t_b, w_b) = samples[i];
    if t_b <= t_a {
        return w_b;
    }
    w_a + (w_b - w_a) * (t - t_a) / (t_b - t_a)
}

/// Integral of time-ordered `(t, watts)` samples over `[t0, t1]`, interpolating linearly at both
/// edges: `Some((joules, samples strictly inside the window))`, or `None` when the samples do
/// not cover the window or `t1 <= t0`.
pub fn integrate_window(samples: &[(f64, f64)], t0: f64, t1: f64) -> Option<(f64, usize)> {
    let (first, last) = (samples.first()?, samples.last()?);
    if t0.is_nan() || t1.is_nan() || t1 <= t0 || samples.len() < 2 || first.0 > t0 || last.0 < t1 {
        return None;
    }
    let mut points = vec![(t0, interpolate(samples, t0))];
    let inside: Vec<(f64, f64)> = samples
        .iter()
        .copied()
        .filter(|s| s.0 > t0 && s.0 < t1)
        .collect();
    let n = inside.len();
    points.extend(inside);
    points.push((t1, interpolate(samples, t1)));
    Some((trapezoid(&points), n))
}

#[cfg(test)]
mod tests {
    use super::super::close;
    use super::*;

    #[test]
    fn constant_power_integrates_exactly() {
        let s: Vec<(f64, f64)> = (0..=20).map(|k| (k as f64 * 0.1, 3.5)).collect();
        assert!(close(trapezoid(&s), 7.0), "{}", trapezoid(&s));
    }

    #[test]
    fn linear_ramp_is_exact_with_trapezoid_even_unevenly_sampled() {
        // P(t) = 2 + 4t on [0, 3]: ∫ = 2·3 + 2·9 = 24 J
        let ts = [0.0, 0.1, 0.35, 1.0, 1.7, 2.2, 3.0];
        let s: Vec<(f64, f64)> = ts.iter().map(|&t| (t, 2.0 + 4.0 * t)).collect();
        assert!(close(trapezoid(&s), 24.0), "{}", trapezoid(&s));
        // clipped to [0.5, 2.5] with interpolated edges: 2·2 + 2·(6.25 − 0.25) = 16 J
        let (j, inside) = integrate_window(&s, 0.5, 2.5).unwrap();
        assert!(close(j, 16.0), "{j}");
        assert_eq!(inside, 3); // 1.0, 1.7, 2.2
    }

    #[test]
    fn window_outside_samples_is_none() {
        let s = [(0.0, 1.0), (1.0, 1.0)];
        assert!(integrate_window(&s, -0.1, 0.5).is_none());
        assert!(integrate_window(&s, 0.5, 1.1).is_none());
        assert!(integrate_window(&s, 0.5, 0.5).is_none());
        assert!(close(integrate_window(&s, 0.0, 1.0).unwrap().0, 1.0));
    }
}
