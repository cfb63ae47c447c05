//! The x86-64 AVX2+FMA path of the activations, 8 values at a time.

use super::{Activation, ERF_A, ERF_P};

/// [`Activation::apply`] 8 values at a time.
///
/// # Safety
/// The CPU has AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn apply_avx2(act: Activation, x: &mut [f32]) {
    use crate::softmax::exp8;
    use std::arch::x86_64::*;
    let one = _mm256_set1_ps(1.0);
    let sign = _mm256_set1_ps(-0.0);
    let mut chunks = x.chunks_exact_mut(8);
    for c in &mut chunks {
        // SAFETY: c holds 8 values (unaligned loads and stores).
        let v = unsafe { _mm256_loadu_ps(c.as_ptr()) };
        let y = match act {
            Activation::Gelu => {
                let z = _mm256_mul_ps(v, _mm256_set1_ps(std::f32::consts::FRAC_1_SQRT_2));
                let a = _mm256_andnot_ps(sign, z);
                let t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(ERF_P), a, one));
                let mut poly = _mm256_set1_ps(ERF_A[4]);
                for &c in ERF_A[..4].iter().rev() {
                    poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(c));
                }
                poly = _mm256_mul_ps(poly, t);
                let e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(a, a)));
                // erf(|z|), then z's sign
                let erf = _mm256_fnmadd_ps(poly, e, one);
                let erf = _mm256_or_ps(erf, _mm256_and_ps(sign, z));
                _mm256_mul_ps(
                    _mm256_mul_ps(_mm256_set1_ps(0.5), v),
                    _mm256_add_ps(one, erf),
                )
            }
            Activation::Silu => {
                // σ(v) from e^-|v| (never overflows): 1/(1+e) for v >= 0, e/(1+e) below
                let e = exp8(_mm256_or_ps(v, sign));
                let inv = _mm256_div_ps(one, _mm256_add_ps(one, e));
                let neg = _mm256_cmp_ps::<_CMP_LT_OQ>(v, _mm256_setzero_ps());
                let s = _mm256_blendv_ps(inv, _mm256_mul_ps(e, inv), neg);
                _mm256_mul_ps(v, s)
            }
        };
        // SAFETY: as above.
        unsafe { _mm256_storeu_ps(c.as_mut_ptr(), y) };
    }
    for v in chunks.into_remainder() {
        *v = act.one(*v);
    }
}
