//! The AArch64 NEON kernels of the f32 product: the micro-kernel of `R`
//! rows and the one-row (decoding) kernel. NEON is part of every AArch64
//! CPU that Linux runs on; [`Tile::run`] takes them when its
//! [`Isa`](crate::Isa) is `Neon`.

use super::{Tile, NR};
use std::arch::aarch64::*;

/// Vectors of 4 lanes per panel row.
const V: usize = NR / 4;

/// NEON micro-kernel: `4 R` accumulators (24 of the 32 vector registers
/// at 6 rows), four `W` loads and `R` broadcasts per step of `k`, over
/// the tile's panel and the `more` whole panels after it.
///
/// # Safety
/// As [`Tile::run`], on a CPU with NEON.
#[target_feature(enable = "neon")]
pub(super) unsafe fn kernel_neon<const R: usize>(tile: &Tile) {
    let mut a = [std::ptr::null::<f32>(); R];
    for (i, a) in a.iter_mut().enumerate() {
        *a = tile.a.add(i * tile.lda);
    }
    for j in 0..=tile.more {
        let t = &tile.panel(j);
        let mut acc = [[vdupq_n_f32(0.0); V]; R];
        for p in 0..t.kc {
            let w = t.w.add(p * NR);
            let w = [
                vld1q_f32(w),
                vld1q_f32(w.add(4)),
                vld1q_f32(w.add(8)),
                vld1q_f32(w.add(12)),
            ];
            for i in 0..R {
                let x = vld1q_dup_f32(a[i].add(p));
                for v in 0..V {
                    acc[i][v] = vfmaq_f32(acc[i][v], x, w[v]);
                }
            }
        }
        store(t, &acc);
    }
}

/// NEON kernel for one row (decoding): two chains of accumulators over
/// alternate steps of `k`, so FMA latency does not bound it.
///
/// # Safety
/// As [`Tile::run`] with one row and no further panels, on a CPU with NEON.
#[target_feature(enable = "neon")]
pub(super) unsafe fn kernel_neon_row(t: &Tile) {
    let mut acc = [[vdupq_n_f32(0.0); V]; 2];
    let steps = t.kc / 2 * 2;
    for p in (0..steps).step_by(2) {
        for (j, acc) in acc.iter_mut().enumerate() {
            let x = vld1q_dup_f32(t.a.add(p + j));
            let w = t.w.add((p + j) * NR);
            for (v, acc) in acc.iter_mut().enumerate() {
                *acc = vfmaq_f32(*acc, x, vld1q_f32(w.add(4 * v)));
            }
        }
    }
    if steps < t.kc {
        let x = vld1q_dup_f32(t.a.add(steps));
        let w = t.w.add(steps * NR);
        for (v, acc) in acc[0].iter_mut().enumerate() {
            *acc = vfmaq_f32(*acc, x, vld1q_f32(w.add(4 * v)));
        }
    }
    let [a0, a1] = acc;
    let sum = [0, 1, 2, 3].map(|v| vaddq_f32(a0[v], a1[v]));
    store(t, &[sum]);
}

/// Writes an `R x NR` block of sums into `t.c`, adding `c` (later `k`
/// blocks) or the bias; a ragged panel goes through [`Tile::store`].
///
/// # Safety
/// As [`Tile::run`], on a CPU with NEON.
#[target_feature(enable = "neon")]
#[inline]
unsafe fn store<const R: usize>(t: &Tile, acc: &[[float32x4_t; V]; R]) {
    if t.cols == NR {
        for (i, acc) in acc.iter().enumerate() {
            let c = t.c.add(i * t.ldc);
            for (v, &s) in acc.iter().enumerate() {
                let s = if t.accumulate {
                    vaddq_f32(s, vld1q_f32(c.add(4 * v)))
                } else if !t.bias.is_null() {
                    vaddq_f32(s, vld1q_f32(t.bias.add(4 * v)))
                } else {
                    s
                };
                vst1q_f32(c.add(4 * v), s);
            }
        }
    } else {
        let mut sums = [[0f32; NR]; R];
        for (s, acc) in sums.iter_mut().zip(acc) {
            for (v, &a) in acc.iter().enumerate() {
                vst1q_f32(s.as_mut_ptr().add(4 * v), a);
            }
        }
        t.store(&sums);
    }
}
