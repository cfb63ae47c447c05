//! The AArch64 NEON kernels of the block-quantized products: fused gemv,
//! parameter unpacking, dequantization and the f32 tile product, with the
//! x86-64 kernels' layout and summation plan at 4 lanes. Codes are widened
//! to f32 (activations stay f32, so there is no integer dot product to
//! take). Every function requires a CPU with NEON.

use super::{ParamLayout, QB, TILE};
use std::arch::aarch64::*;

/// Weights per NEON chunk: one 16-byte load of codes.
const CHUNK: usize = 16;

/// `[Σ a0, Σ a1, Σ a2, Σ a3]`.
#[inline]
#[target_feature(enable = "neon")]
fn hsum4(a: &[float32x4_t; TILE]) -> float32x4_t {
    vpaddq_f32(vpaddq_f32(a[0], a[1]), vpaddq_f32(a[2], a[3]))
}

/// `acc + Σ` of 16 codes (as f32) times the 16 activations `x`, lane-wise.
#[inline]
#[target_feature(enable = "neon")]
fn dot16(q: uint8x16_t, x: &[float32x4_t; 4], acc: float32x4_t) -> float32x4_t {
    let (lo, hi) = (vmovl_u8(vget_low_u8(q)), vmovl_high_u8(q));
    let q = [
        vcvtq_f32_u32(vmovl_u16(vget_low_u16(lo))),
        vcvtq_f32_u32(vmovl_high_u16(lo)),
        vcvtq_f32_u32(vmovl_u16(vget_low_u16(hi))),
        vcvtq_f32_u32(vmovl_high_u16(hi)),
    ];
    let s = vfmaq_f32(vmulq_f32(q[0], x[0]), q[1], x[1]);
    let s = vfmaq_f32(s, q[2], x[2]);
    vaddq_f32(acc, vfmaq_f32(s, q[3], x[3]))
}

/// Checks the slice lengths the tile kernels rely on (`sub` parameter sets
/// per record, unpacked).
fn check(tile: &[u8], stride: usize, code_bytes: usize, params: &[f32], x: &[f32], sub: usize) {
    let nb = x.len() / QB;
    assert!(stride >= code_bytes && tile.len() >= nb * stride);
    assert!(params.len() >= 8 * sub * nb);
}

/// Adds one parameter set's dot products `t` (one vector per row) times
/// the 4 scales at `pb` to `a`, and the 4 offset coefficients at `pb + 4`
/// times the set's activation sum `sm` to `macc`.
///
/// # Safety
/// 8 readable f32 at `pb`.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn fold(
    pb: *const f32,
    t: &[float32x4_t; TILE],
    sm: f32,
    a: &mut [float32x4_t; TILE],
    macc: &mut float32x4_t,
) {
    // SAFETY: the caller's contract.
    let (s, c) = unsafe { (vld1q_f32(pb), vld1q_f32(pb.add(TILE))) };
    a[0] = vfmaq_laneq_f32::<0>(a[0], t[0], s);
    a[1] = vfmaq_laneq_f32::<1>(a[1], t[1], s);
    a[2] = vfmaq_laneq_f32::<2>(a[2], t[2], s);
    a[3] = vfmaq_laneq_f32::<3>(a[3], t[3], s);
    *macc = vfmaq_n_f32(*macc, c, sm);
}

/// The 4 outputs of a tile: each row's accumulator summed, plus the offsets.
#[inline]
#[target_feature(enable = "neon")]
fn finish(a: &[float32x4_t; TILE], macc: float32x4_t) -> [f32; TILE] {
    let mut out = [0f32; TILE];
    // SAFETY: `out` has room for 4 f32.
    unsafe { vst1q_f32(out.as_mut_ptr(), vaddq_f32(hsum4(a), macc)) };
    out
}

/// The 16 activations at `p` as 4 vectors.
///
/// # Safety
/// 16 readable f32 at `p`.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn load16(p: *const f32) -> [float32x4_t; 4] {
    // SAFETY: the caller's contract.
    unsafe { [0, 4, 8, 12].map(|i| vld1q_f32(p.add(i))) }
}

/// Fused dot products of a 4-bit tile (records of `stride` bytes starting
/// with 64 code bytes, `SUB` parameter sets each) with `x`; `params` as
/// unpacked by `PackedMatrix::unpack_params`, `sxm` the offset
/// multipliers of each set.
///
/// # Safety
/// The CPU must support NEON.
#[target_feature(enable = "neon")]
pub(super) unsafe fn dot_q4<const SUB: usize>(
    tile: &[u8],
    stride: usize,
    params: &[f32],
    x: &[f32],
    sxm: &[f32],
) -> [f32; TILE] {
    let nb = sxm.len() / SUB;
    assert!(x.len() >= nb * QB);
    check(tile, stride, 2 * QB, params, &x[..nb * QB], SUB);
    let mask = vdupq_n_u8(0xF);
    let mut a = [vdupq_n_f32(0.0); TILE];
    let mut macc = vdupq_n_f32(0.0);
    for (b, sm) in sxm.chunks_exact(SUB).enumerate() {
        // SAFETY: b < nb, so the record p..p + stride is inside `tile`,
        // x[32b..32b + 32] inside `x` and the parameters inside `params`
        // (checked above).
        unsafe {
            let p = tile.as_ptr().add(b * stride);
            let xb = x.as_ptr().add(b * QB);
            for (h, &smh) in sm.iter().enumerate() {
                let mut t = [vdupq_n_f32(0.0); TILE];
                for c in h * 2 / SUB..(h + 1) * 2 / SUB {
                    let xc = load16(xb.add(CHUNK * c));
                    let d01 = vld1q_u8(p.add(CHUNK * c));
                    t[0] = dot16(vandq_u8(d01, mask), &xc, t[0]);
                    t[1] = dot16(vshrq_n_u8::<4>(d01), &xc, t[1]);
                    let d23 = vld1q_u8(p.add(QB + CHUNK * c));
                    t[2] = dot16(vandq_u8(d23, mask), &xc, t[2]);
                    t[3] = dot16(vshrq_n_u8::<4>(d23), &xc, t[3]);
                }
                fold(
                    params.as_ptr().add(8 * (b * SUB + h)),
                    &t,
                    smh,
                    &mut a,
                    &mut macc,
                );
            }
        }
    }
    finish(&a, macc)
}

/// [`dot_q4`] for byte codes (records start with 128 code bytes, row
/// after row).
///
/// # Safety
/// The CPU must support NEON.
#[target_feature(enable = "neon")]
pub(super) unsafe fn dot_q8<const SUB: usize>(
    tile: &[u8],
    stride: usize,
    params: &[f32],
    x: &[f32],
    sxm: &[f32],
) -> [f32; TILE] {
    let nb = sxm.len() / SUB;
    assert!(x.len() >= nb * QB);
    check(tile, stride, TILE * QB, params, &x[..nb * QB], SUB);
    let mut a = [vdupq_n_f32(0.0); TILE];
    let mut macc = vdupq_n_f32(0.0);
    for (b, sm) in sxm.chunks_exact(SUB).enumerate() {
        // SAFETY: as in `dot_q4`.
        unsafe {
            let p = tile.as_ptr().add(b * stride);
            let xb = x.as_ptr().add(b * QB);
            for (h, &smh) in sm.iter().enumerate() {
                let mut t = [vdupq_n_f32(0.0); TILE];
                for c in h * 2 / SUB..(h + 1) * 2 / SUB {
                    let xc = load16(xb.add(CHUNK * c));
                    for (r, tr) in t.iter_mut().enumerate() {
                        *tr = dot16(vld1q_u8(p.add(r * QB + CHUNK * c)), &xc, *tr);
                    }
                }
                fold(
                    params.as_ptr().add(8 * (b * SUB + h)),
                    &t,
                    smh,
                    &mut a,
                    &mut macc,
                );
            }
        }
    }
    finish(&a, macc)
}

/// 4 binary16 values at `p` as f32, exactly (normal and subnormal; the
/// packer stores only finite values as binary16).
///
/// # Safety
/// 8 readable bytes at `p`, 2-aligned.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn f16x4(p: *const u8) -> float32x4_t {
    // SAFETY: the caller's contract.
    let h = vmovl_u16(unsafe { vld1_u16(p.cast()) });
    let sign = vshlq_n_u32::<16>(vandq_u32(h, vdupq_n_u32(0x8000)));
    // normal: exponent rebiased from 15 to 127, mantissa moved up 13 bits
    let normal = vaddq_u32(
        vshlq_n_u32::<13>(vandq_u32(h, vdupq_n_u32(0x7fff))),
        vdupq_n_u32(112 << 23),
    );
    // subnormal (exponent 0): mantissa · 2^-24, exact in f32
    let sub = vmulq_n_f32(
        vcvtq_f32_u32(vandq_u32(h, vdupq_n_u32(0x3ff))),
        f32::from_bits(0x3380_0000),
    );
    let is_sub = vceqq_u32(vandq_u32(h, vdupq_n_u32(0x7c00)), vdupq_n_u32(0));
    let mag = vbslq_u32(is_sub, vreinterpretq_u32_f32(sub), normal);
    vreinterpretq_f32_u32(vorrq_u32(mag, sign))
}

/// 4 parameters at `p`, stored as binary16 (`width` 2) or f32.
///
/// # Safety
/// `4 * width` readable bytes at `p`, aligned to `width`.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn load4(p: *const u8, width: usize) -> float32x4_t {
    // SAFETY: the caller's contract.
    unsafe {
        if width == 2 {
            f16x4(p)
        } else {
            vld1q_f32(p.cast())
        }
    }
}

/// `PackedMatrix::unpack_params`: per parameter set of each record, 4
/// scales then 4 offset coefficients (mins, or the scales again when
/// symmetric) as f32.
///
/// # Safety
/// The CPU must support NEON.
#[target_feature(enable = "neon")]
pub(super) unsafe fn unpack_params(tile: &[u8], stride: usize, l: ParamLayout, out: &mut [f32]) {
    let nb = tile.len() / stride;
    assert!(out.len() >= 8 * l.sub * nb && l.at + l.bytes() <= stride);
    for b in 0..nb {
        for h in 0..l.sub {
            // SAFETY: b < nb and h < sub: the record and the 8 f32 at
            // 8 (b sub + h) are in bounds (checked above); records are
            // 64-aligned lines and parameters follow the codes at their width.
            unsafe {
                let rec = tile.as_ptr().add(b * stride);
                let o = out.as_mut_ptr().add(8 * (b * l.sub + h));
                let s = load4(rec.add(l.scales_at(h)), l.scale_bytes);
                let c = if l.min_bytes == 0 {
                    s
                } else {
                    load4(rec.add(l.mins_at(h)), l.min_bytes)
                };
                vst1q_f32(o, s);
                vst1q_f32(o.add(TILE), c);
            }
        }
    }
}

/// [`super::tile_f32`]: rows of `x` in pairs against the 4 tile rows.
///
/// # Safety
/// The CPU must support NEON.
#[target_feature(enable = "neon")]
pub(super) unsafe fn tile_f32(w: &[f32], x: &[f32], out: &mut [f32]) {
    let k = w.len() / TILE;
    let rows = x.len() / k.max(1);
    assert!(k.is_multiple_of(8) && w.len() == TILE * k && x.len() == rows * k);
    assert!(out.len() >= rows * TILE);
    let wp = w.as_ptr();
    let mut r = 0;
    while r + 2 <= rows {
        let mut a = [vdupq_n_f32(0.0); 2 * TILE];
        // SAFETY: i + 4 <= k, so w[j*k + i..][..4] and rows r, r + 1 of
        // x at i are in bounds, as is out[4r..4r + 8] (checked above).
        unsafe {
            let x0p = x.as_ptr().add(r * k);
            let x1p = x0p.add(k);
            for i in (0..k).step_by(4) {
                let x0 = vld1q_f32(x0p.add(i));
                let x1 = vld1q_f32(x1p.add(i));
                for j in 0..TILE {
                    let wj = vld1q_f32(wp.add(j * k + i));
                    a[j] = vfmaq_f32(a[j], wj, x0);
                    a[TILE + j] = vfmaq_f32(a[TILE + j], wj, x1);
                }
            }
            let o = out.as_mut_ptr().add(r * TILE);
            vst1q_f32(o, hsum4(&[a[0], a[1], a[2], a[3]]));
            vst1q_f32(o.add(TILE), hsum4(&[a[4], a[5], a[6], a[7]]));
        }
        r += 2;
    }
    if r < rows {
        let mut a = [vdupq_n_f32(0.0); TILE];
        // SAFETY: as above, for the last row.
        unsafe {
            let x0p = x.as_ptr().add(r * k);
            for i in (0..k).step_by(4) {
                let x0 = vld1q_f32(x0p.add(i));
                for (j, aj) in a.iter_mut().enumerate() {
                    *aj = vfmaq_f32(*aj, vld1q_f32(wp.add(j * k + i)), x0);
                }
            }
            vst1q_f32(out.as_mut_ptr().add(r * TILE), hsum4(&a));
        }
    }
}

/// Stores `(q - m) s` (`sym`, `m` = zero point) or `q s + m` for the 16
/// codes `q`, rounded as the portable path rounds (no fused multiply-add),
/// so the dequantized weights are the same bits.
///
/// # Safety
/// 16 writable f32 at `dst`.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn deq16(q: uint8x16_t, s: float32x4_t, m: float32x4_t, sym: bool, dst: *mut f32) {
    let (lo, hi) = (vmovl_u8(vget_low_u8(q)), vmovl_high_u8(q));
    let q = [
        vmovl_u16(vget_low_u16(lo)),
        vmovl_high_u16(lo),
        vmovl_u16(vget_low_u16(hi)),
        vmovl_high_u16(hi),
    ];
    for (i, q) in q.into_iter().enumerate() {
        let q = vcvtq_f32_u32(q);
        let w = if sym {
            vmulq_f32(vsubq_f32(q, m), s)
        } else {
            vaddq_f32(vmulq_f32(q, s), m)
        };
        // SAFETY: the caller's contract.
        unsafe { vst1q_f32(dst.add(4 * i), w) };
    }
}

/// Row `r`'s scale and offset (the zero point `half` when `sym`, else the
/// min) in the parameter set at `pb`, broadcast.
///
/// # Safety
/// 8 readable f32 at `pb`.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn row_params(pb: *const f32, r: usize, sym: bool, half: f32) -> (float32x4_t, float32x4_t) {
    // SAFETY: the caller's contract.
    unsafe {
        let s = vdupq_n_f32(*pb.add(r));
        let m = vdupq_n_f32(if sym { half } else { *pb.add(TILE + r) });
        (s, m)
    }
}

/// Dequantizes a 4-bit tile (`SUB` parameter sets per record) into `dst`,
/// 4 rows of `k = 32 * blocks`.
///
/// # Safety
/// The CPU must support NEON.
#[target_feature(enable = "neon")]
pub(super) unsafe fn dequant_q4<const SUB: usize>(
    tile: &[u8],
    stride: usize,
    params: &[f32],
    sym: bool,
    half: f32,
    dst: &mut [f32],
) {
    let nb = tile.len() / stride;
    let k = nb * QB;
    assert!(stride >= 2 * QB && params.len() >= 8 * SUB * nb && dst.len() >= TILE * k);
    let mask = vdupq_n_u8(0xF);
    for b in 0..nb {
        // SAFETY: b < nb: the record, params[8 SUB b..][..8 SUB] and each
        // row's dst[r*k + 32b..][..32] are in bounds (checked above).
        unsafe {
            let p = tile.as_ptr().add(b * stride);
            let out = dst.as_mut_ptr().add(b * QB);
            for h in 0..SUB {
                let pb = params.as_ptr().add(8 * (SUB * b + h));
                for pair in 0..2 {
                    let (r0, r1) = (2 * pair, 2 * pair + 1);
                    let (s0, m0) = row_params(pb, r0, sym, half);
                    let (s1, m1) = row_params(pb, r1, sym, half);
                    for c in h * 2 / SUB..(h + 1) * 2 / SUB {
                        let d = vld1q_u8(p.add(pair * QB + CHUNK * c));
                        let (o0, o1) = (out.add(r0 * k + CHUNK * c), out.add(r1 * k + CHUNK * c));
                        deq16(vandq_u8(d, mask), s0, m0, sym, o0);
                        deq16(vshrq_n_u8::<4>(d), s1, m1, sym, o1);
                    }
                }
            }
        }
    }
}

/// Dequantizes a byte-code tile (`SUB` parameter sets per record) into
/// `dst`, 4 rows of `k = 32 * blocks`.
///
/// # Safety
/// The CPU must support NEON.
#[target_feature(enable = "neon")]
pub(super) unsafe fn dequant_q8<const SUB: usize>(
    tile: &[u8],
    stride: usize,
    params: &[f32],
    sym: bool,
    half: f32,
    dst: &mut [f32],
) {
    let nb = tile.len() / stride;
    let k = nb * QB;
    assert!(stride >= TILE * QB && params.len() >= 8 * SUB * nb && dst.len() >= TILE * k);
    for b in 0..nb {
        // SAFETY: as in `dequant_q4`.
        unsafe {
            let p = tile.as_ptr().add(b * stride);
            let out = dst.as_mut_ptr().add(b * QB);
            for r in 0..TILE {
                for h in 0..SUB {
                    let pb = params.as_ptr().add(8 * (SUB * b + h));
                    let (s, m) = row_params(pb, r, sym, half);
                    for c in h * 2 / SUB..(h + 1) * 2 / SUB {
                        let q = vld1q_u8(p.add(r * QB + CHUNK * c));
                        deq16(q, s, m, sym, out.add(r * k + CHUNK * c));
                    }
                }
            }
        }
    }
}
