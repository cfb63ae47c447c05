//! The AArch64 NEON path of the activations, 4 values at a time (the same
//! method as the x86-64 path).

use super::{Activation, ERF_A, ERF_P};

/// [`Activation::apply`] 4 values at a time.
///
/// # Safety
/// The CPU has NEON.
#[target_feature(enable = "neon")]
pub(super) unsafe fn apply_neon(act: Activation, x: &mut [f32]) {
    use crate::softmax::exp4;
    use std::arch::aarch64::*;
    let one = vdupq_n_f32(1.0);
    let sign = vreinterpretq_u32_f32(vdupq_n_f32(-0.0));
    let mut chunks = x.chunks_exact_mut(4);
    for c in &mut chunks {
        // SAFETY: c holds 4 values.
        let v = unsafe { vld1q_f32(c.as_ptr()) };
        let y = match act {
            Activation::Gelu => {
                let z = vmulq_n_f32(v, std::f32::consts::FRAC_1_SQRT_2);
                let a = vabsq_f32(z);
                let t = vdivq_f32(one, vfmaq_f32(one, vdupq_n_f32(ERF_P), a));
                let mut poly = vdupq_n_f32(ERF_A[4]);
                for &c in ERF_A[..4].iter().rev() {
                    poly = vfmaq_f32(vdupq_n_f32(c), poly, t);
                }
                poly = vmulq_f32(poly, t);
                let e = exp4(vnegq_f32(vmulq_f32(a, a)));
                // erf(|z|), then z's sign
                let erf = vfmsq_f32(one, poly, e);
                let zs = vandq_u32(sign, vreinterpretq_u32_f32(z));
                let erf = vreinterpretq_f32_u32(vorrq_u32(vreinterpretq_u32_f32(erf), zs));
                vmulq_f32(vmulq_n_f32(v, 0.5), vaddq_f32(one, erf))
            }
            Activation::Silu => {
                // σ(v) from e^-|v| (never overflows): 1/(1+e) for v >= 0, e/(1+e) below
                let e = exp4(vreinterpretq_f32_u32(vorrq_u32(
                    vreinterpretq_u32_f32(v),
                    sign,
                )));
                let inv = vdivq_f32(one, vaddq_f32(one, e));
                let neg = vcltq_f32(v, vdupq_n_f32(0.0));
                let s = vbslq_f32(neg, vmulq_f32(e, inv), inv);
                vmulq_f32(v, s)
            }
        };
        // SAFETY: as above.
        unsafe { vst1q_f32(c.as_mut_ptr(), y) };
    }
    for v in chunks.into_remainder() {
        *v = act.one(*v);
    }
}
