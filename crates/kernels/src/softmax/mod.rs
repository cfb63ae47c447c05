//! Attention's row softmax in two passes over a row: the mask is added
//! while the maximum is found, then `e^(x - max)` and its sum are taken
//! together by a vectorised `e^x` (AVX2+FMA on x86-64, NEON on AArch64,
//! chosen at run time; `f32::exp` elsewhere). Normalising is left to the caller, which can scale the
//! `dv` outputs of a row instead of its `t` weights.
//!
//! (tract-linalg's `softmax2` spends a third of its time per 128-wide row
//! on its call and alignment wrapper.)

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "aarch64")]
pub(crate) use aarch64::exp4;
#[cfg(target_arch = "x86_64")]
pub(crate) use x86_64::exp8;

/// Below this, the vector paths take `e^x` as 0 (`e^-87.34` is the
/// smallest normal f32).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const EXP_MIN: f32 = -87.336_55;

/// `row[j] = e^(row[j] + mask[j] - max)`, `max` over the masked row;
/// returns the sum of the new row. A row whose every value is `-inf` (or
/// NaN) becomes zeros and returns 0. `mask`, when given, is as long as `row`.
/// Uses instructions up to `isa`.
pub fn exp_row(row: &mut [f32], mask: Option<&[f32]>, isa: super::Isa) -> f32 {
    let max = match mask {
        Some(m) => {
            assert_eq!(m.len(), row.len(), "mask and row lengths differ");
            add_max(row, m)
        }
        None => row_max(row),
    };
    if max == f32::NEG_INFINITY || max.is_nan() {
        row.fill(0.0);
        return 0.0;
    }
    #[cfg(target_arch = "x86_64")]
    if isa >= super::Isa::Avx2 {
        // SAFETY: AVX2 and FMA are present (`isa` is at most what the CPU has).
        return unsafe { x86_64::exp_sub_sum_avx2(row, max) };
    }
    #[cfg(target_arch = "aarch64")]
    if isa == super::Isa::Neon {
        // SAFETY: NEON is present (`isa` is at most what the CPU has).
        return unsafe { aarch64::exp_sub_sum_neon(row, max) };
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let _ = isa;
    exp_sub_sum_plain(row, max)
}

/// In-place softmax of one row after adding `mask`; a row whose every
/// value is `-inf` becomes zeros.
pub fn softmax(row: &mut [f32], mask: Option<&[f32]>, isa: super::Isa) {
    let sum = exp_row(row, mask, isa);
    if sum > 0.0 {
        let inv = 1.0 / sum;
        for x in row.iter_mut() {
            *x *= inv;
        }
    }
}

/// Largest value of a row, in 8 lanes so it vectorises (NaN is not propagated).
fn row_max(row: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 8];
    let chunks = row.chunks_exact(8);
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
    for c in chunks {
        for i in 0..8 {
            acc[i] = if c[i] > acc[i] { c[i] } else { acc[i] };
        }
    }
    acc.iter().fold(tail, |m, &x| if x > m { x } else { m })
}

/// `row += mask` and the largest value of the result, in one pass (8
/// lanes, so it vectorises; NaN is not propagated).
fn add_max(row: &mut [f32], mask: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 8];
    let mut rows = row.chunks_exact_mut(8);
    let mut masks = mask.chunks_exact(8);
    for (r, m) in (&mut rows).zip(&mut masks) {
        for i in 0..8 {
            r[i] += m[i];
            acc[i] = if r[i] > acc[i] { r[i] } else { acc[i] };
        }
    }
    let mut max = f32::NEG_INFINITY;
    for (x, &m) in rows.into_remainder().iter_mut().zip(masks.remainder()) {
        *x += m;
        max = if *x > max { *x } else { max };
    }
    acc.iter().fold(max, |m, &x| if x > m { x } else { m })
}

/// `x = e^(x - max)` in place, returning the sum.
fn exp_sub_sum_plain(row: &mut [f32], max: f32) -> f32 {
    let mut sum = 0f32;
    for x in row.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Relative error of `exp_row`'s values against f64, over `xs` (max 0).
    fn worst_error(xs: &[f32]) -> f64 {
        let mut row = xs.to_vec();
        let sum = exp_row(&mut row, None, crate::detected_isa());
        let max = xs.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let want: Vec<f64> = xs.iter().map(|&x| (x as f64 - max).exp()).collect();
        let sum_err = (sum as f64 - want.iter().sum::<f64>()).abs() / want.iter().sum::<f64>();
        row.iter()
            .zip(&want)
            .map(|(&g, &w)| {
                if w < 1e-37 {
                    (g as f64 - w).abs() / 1e-37
                } else {
                    (g as f64 - w).abs() / w
                }
            })
            // NaN-aware: f64::max would drop a NaN value
            .fold(sum_err, |m, e| if e > m || e.is_nan() { e } else { m })
    }

    #[test]
    fn exponentials_are_accurate_over_the_whole_range() {
        // 0 first, so the max is 0 and each value is e^x itself; 8-wide
        // chunks and a scalar tail
        let mut xs = vec![0.0f32];
        xs.extend((0..8700).map(|i| -(i as f32) * 0.01 - 0.003));
        xs.extend([-1e-7, -0.346, -0.347, -0.3466, -87.0, -87.33, -5.5]);
        let err = worst_error(&xs);
        assert!(err < 1e-6, "relative error {err}");
    }

    #[test]
    fn masked_and_underflowing_values_are_exact_zeros() {
        let mut row = vec![1.0, 2.0, 3.0, -200.0, 0.5, 4.0, -90.0, 2.5, 1.0, 7.0];
        let mask = [
            0.0,
            f32::NEG_INFINITY,
            0.0,
            0.0,
            0.0,
            0.0,
            0.0,
            0.0,
            f32::NEG_INFINITY,
            0.0,
        ];
        let sum = exp_row(&mut row, Some(&mask), crate::detected_isa());
        assert_eq!(row[1], 0.0);
        assert_eq!(row[8], 0.0);
        assert_eq!(row[3], 0.0, "e^-207 underflows to 0");
        assert_eq!(row[6], 0.0, "e^-97 underflows to 0");
        assert!((row[9] - 1.0).abs() < 1e-7, "the max weighs e^0");
        assert!((row[0] - (-6f32).exp()).abs() < 1e-8);
        assert!((sum - row.iter().sum::<f32>()).abs() < 1e-6);
    }

    #[test]
    fn softmax_matches_the_definition_and_hidden_rows_become_zeros() {
        // hand-checked: softmax(ln 1, ln 2, ln 5) = (1/8, 2/8, 5/8)
        let mut row = [1f32.ln(), 2f32.ln(), 5f32.ln()];
        softmax(&mut row, None, crate::detected_isa());
        for (g, w) in row.iter().zip([0.125, 0.25, 0.625]) {
            assert!((g - w).abs() < 1e-7, "{row:?}");
        }
        // long rows through both paths; every value shifted by 30, which
        // the max removes
        let xs: Vec<f32> = (0..37)
            .map(|i| 30.0 + ((i * 7) % 11) as f32 * 0.3)
            .collect();
        let mut row = xs.clone();
        softmax(&mut row, None, crate::detected_isa());
        let m = xs.iter().cloned().fold(f32::MIN, f32::max) as f64;
        let z: f64 = xs.iter().map(|&x| (x as f64 - m).exp()).sum();
        for (g, &x) in row.iter().zip(&xs) {
            assert!((*g as f64 - (x as f64 - m).exp() / z).abs() < 1e-7);
        }
        let mut hidden = [f32::NEG_INFINITY; 11];
        softmax(&mut hidden, None, crate::detected_isa());
        assert_eq!(hidden, [0.0; 11]);
        assert_eq!(
            exp_row(&mut [f32::NAN; 3], None, crate::detected_isa()),
            0.0
        );
    }
}
