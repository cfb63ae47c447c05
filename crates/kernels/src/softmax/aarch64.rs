//! The AArch64 NEON path of the row softmax: `e^x` of 4 values at a time
//! (also used by the activations), the same method and constants as the
//! x86-64 path.

use super::EXP_MIN;
use std::arch::aarch64::*;

/// `x = e^(x - max)` in place, 4 values at a time, returning the sum.
///
/// # Safety
/// The CPU has NEON.
#[target_feature(enable = "neon")]
pub(super) unsafe fn exp_sub_sum_neon(row: &mut [f32], max: f32) -> f32 {
    let mut chunks = row.chunks_exact_mut(4);
    let mut acc = vdupq_n_f32(0.0);
    let max4 = vdupq_n_f32(max);
    for c in &mut chunks {
        // SAFETY: c holds 4 values.
        let x = unsafe { vld1q_f32(c.as_ptr()) };
        let e = exp4(vsubq_f32(x, max4));
        // SAFETY: as above.
        unsafe { vst1q_f32(c.as_mut_ptr(), e) };
        acc = vaddq_f32(acc, e);
    }
    let mut sum = vaddvq_f32(acc);
    for x in chunks.into_remainder() {
        *x = (*x - max).exp();
        sum += *x;
    }
    sum
}

/// `e^x` of 4 values at most 0.34 (0 below [`EXP_MIN`], and for NaN):
/// `2^n · e^r` with `n = round(x · log2 e)`, `r = x - n · ln 2` in two
/// parts, `e^r` by the degree-6 Taylor polynomial, `2^n` built in the
/// exponent bits (as `x86_64::exp8`).
#[target_feature(enable = "neon")]
pub(crate) fn exp4(x: float32x4_t) -> float32x4_t {
    // ln 2 split so that n · LN2_HI is exact for |n| <= 2^8
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let keep = vcgeq_f32(x, vdupq_n_f32(EXP_MIN));
    let x = vmaxnmq_f32(x, vdupq_n_f32(EXP_MIN));
    let n = vrndnq_f32(vmulq_n_f32(x, std::f32::consts::LOG2_E));
    let r = vfmsq_f32(x, n, vdupq_n_f32(LN2_HI));
    let r = vfmsq_f32(r, n, vdupq_n_f32(LN2_LO));
    // 1 + r + r²/2! + ... + r⁶/6!
    let mut p = vdupq_n_f32(1.0 / 720.0);
    for c in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = vfmaq_f32(vdupq_n_f32(c), p, r);
    }
    // 2^n for n in [-126, 0]: the biased exponent n + 127 in bits 23..31
    let bits = vshlq_n_s32::<23>(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)));
    let e = vmulq_f32(p, vreinterpretq_f32_s32(bits));
    vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(e), keep))
}
