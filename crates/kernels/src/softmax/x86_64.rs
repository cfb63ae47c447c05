//! The x86-64 AVX2+FMA path of the row softmax: `e^x` of 8 values at a
//! time (also used by the activations).

use super::EXP_MIN;

/// `x = e^(x - max)` in place, 8 values at a time, returning the sum.
///
/// `e^x = 2^n · e^r` with `n = round(x · log2 e)` and `r = x - n · ln 2`
/// (in two parts, so `r` is exact), `|r| <= ln 2 / 2`, and `e^r` by the
/// degree-6 Taylor polynomial in Horner form (its remainder is below
/// `0.347⁷ / 7! = 1.2e-7` there); `2^n` is built in the exponent bits.
///
/// # Safety
/// The CPU has AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn exp_sub_sum_avx2(row: &mut [f32], max: f32) -> f32 {
    use std::arch::x86_64::*;
    let mut chunks = row.chunks_exact_mut(8);
    let mut acc = _mm256_setzero_ps();
    let max8 = _mm256_set1_ps(max);
    for c in &mut chunks {
        // SAFETY: c holds 8 values (unaligned loads and stores).
        let x = unsafe { _mm256_loadu_ps(c.as_ptr()) };
        let e = exp8(_mm256_sub_ps(x, max8));
        // SAFETY: as above.
        unsafe { _mm256_storeu_ps(c.as_mut_ptr(), e) };
        acc = _mm256_add_ps(acc, e);
    }
    let mut lanes = [0f32; 8];
    // SAFETY: lanes holds 8 values.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
    let mut sum = lanes.iter().sum::<f32>();
    for x in chunks.into_remainder() {
        *x = (*x - max).exp();
        sum += *x;
    }
    sum
}

/// `e^x` of 8 values at most 0.34 (0 below [`EXP_MIN`], and for NaN).
#[target_feature(enable = "avx2,fma")]
pub(crate) fn exp8(x: std::arch::x86_64::__m256) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    // ln 2 split so that n · LN2_HI is exact for |n| <= 2^8
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let keep = _mm256_cmp_ps::<_CMP_GE_OQ>(x, _mm256_set1_ps(EXP_MIN));
    let x = _mm256_max_ps(x, _mm256_set1_ps(EXP_MIN));
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        x,
        _mm256_set1_ps(std::f32::consts::LOG2_E),
    ));
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
    // 1 + r + r²/2! + ... + r⁶/6!
    let mut p = _mm256_set1_ps(1.0 / 720.0);
    for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    }
    // 2^n for n in [-126, 0]: the biased exponent n + 127 in bits 23..31
    let bits = _mm256_slli_epi32::<23>(_mm256_add_epi32(
        _mm256_cvtps_epi32(n),
        _mm256_set1_epi32(127),
    ));
    let e = _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
    _mm256_and_ps(e, keep)
}
