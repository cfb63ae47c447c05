//! The x86-64 AVX2+FMA+F16C kernels of the block-quantized products: fused
//! gemv, parameter unpacking, dequantization and the f32 tile product.
//! Every function requires a CPU with all three.

use super::{ParamLayout, Params, QB, TILE};
use std::arch::x86_64::*;

/// `[Σ a0, Σ a1, Σ a2, Σ a3]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn hsum4(a0: __m256, a1: __m256, a2: __m256, a3: __m256) -> __m128 {
    let s = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps::<1>(s))
}

/// 8 codes at `p`, zero-extended to i32 (one `vpmovzxbd ymm, m64`; the
/// register form is much slower on Zen 3).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load8(p: *const u8) -> __m256i {
    // SAFETY: the caller guarantees 8 readable bytes at `p`.
    unsafe { _mm256_cvtepu8_epi32(_mm_loadl_epi64(p.cast())) }
}

/// Bytes ahead of the current record that the gemv kernels prefetch.
/// Prefetching every line of the stream (not one line per record) was
/// worth 15-30% of streamed gemv throughput on Zen 3.
const PREFETCH_AHEAD: usize = 4096;

/// Prefetches `lines` cache lines from `PREFETCH_AHEAD` bytes past `p`:
/// enough to cover one record, so the whole stream is covered.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn prefetch(p: *const u8, lines: usize) {
    for l in 0..lines {
        // A prefetch is only a hint: it never faults and reads nothing
        // architecturally, so the address may lie past the allocation
        // (hence `wrapping_add`).
        _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PREFETCH_AHEAD + 64 * l).cast());
    }
}

/// Checks the slice lengths the tile kernels rely on (`sub` parameter sets
/// per record).
fn check(
    tile: &[u8],
    stride: usize,
    code_bytes: usize,
    params: Params,
    x: &[f32],
    nb: usize,
    sub: usize,
) {
    assert!(stride >= code_bytes && tile.len() >= nb * stride);
    assert!(x.len() >= nb * QB);
    match params {
        Params::Unpacked(p) => assert!(p.len() >= 8 * sub * nb),
        Params::Records(l) => assert!(l.sub == sub && l.at + l.bytes() <= stride),
    }
}

/// Set `h` of record `b`: its 4 scales and 4 offset coefficients as 8 f32,
/// a pointer into the unpacked parameters (`sub` sets per record), or `buf`
/// filled from record `rec`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn block_params(
    params: Params,
    b: usize,
    h: usize,
    sub: usize,
    rec: *const u8,
    buf: &mut [f32; 8],
) -> *const f32 {
    // SAFETY: the caller checked the layout (`check`): the parameters of
    // set h of record `b` lie inside its record, or 8 f32 at 8 (b sub + h)
    // inside `params`.
    unsafe {
        match params {
            Params::Unpacked(p) => p.as_ptr().add(8 * (b * sub + h)),
            Params::Records(l) => {
                record_params(rec, l, h, buf.as_mut_ptr());
                buf.as_ptr()
            }
        }
    }
}

/// Adds one block's dot products `t` (one vector per row) times the 4
/// scales at `pb` to `a`, and the 4 offset coefficients at `pb + 4`
/// times the block's activation sum `sm` to `macc`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn fold_block(
    pb: *const f32,
    t: &[__m256; TILE],
    sm: f32,
    a: &mut [__m256; TILE],
    macc: &mut __m128,
) {
    // SAFETY: the caller guarantees 8 readable f32 at `pb`.
    unsafe {
        let s = broadcast4(pb);
        for r in 0..TILE {
            a[r] = _mm256_fmadd_ps(s[r], t[r], a[r]);
        }
        *macc = _mm_fmadd_ps(_mm_loadu_ps(pb.add(TILE)), _mm_set1_ps(sm), *macc);
    }
}

/// The 4 outputs of a tile: each row's accumulator summed, plus the offsets.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn finish(a: &[__m256; TILE], macc: __m128) -> [f32; TILE] {
    let mut out = [0f32; TILE];
    // SAFETY: `out` has room for 4 f32.
    unsafe {
        _mm_storeu_ps(
            out.as_mut_ptr(),
            _mm_add_ps(hsum4(a[0], a[1], a[2], a[3]), macc),
        )
    };
    out
}

/// The 4 f32 at `p`, each broadcast to a vector.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn broadcast4(p: *const f32) -> [__m256; TILE] {
    // SAFETY: the caller guarantees 4 readable, aligned f32 at `p`.
    unsafe {
        [
            _mm256_broadcast_ss(&*p),
            _mm256_broadcast_ss(&*p.add(1)),
            _mm256_broadcast_ss(&*p.add(2)),
            _mm256_broadcast_ss(&*p.add(3)),
        ]
    }
}

/// 4 parameters at `p`, stored as binary16 (`width` 2) or f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load4(p: *const u8, width: usize) -> __m128 {
    // SAFETY: the caller guarantees 4 * width readable bytes at `p`.
    unsafe {
        if width == 2 {
            _mm_cvtph_ps(_mm_loadl_epi64(p.cast()))
        } else {
            _mm_loadu_ps(p.cast())
        }
    }
}

/// Fused dot products of a 4-bit tile (records of `stride` bytes starting
/// with 64 code bytes, `SUB` parameter sets each) with `x`; `params` as
/// unpacked by `PackedMatrix::unpack_params`, `sxm` the offset multipliers
/// of each set.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_q4<const SUB: usize>(
    tile: &[u8],
    stride: usize,
    params: Params,
    x: &[f32],
    sxm: &[f32],
) -> [f32; TILE] {
    let nb = sxm.len() / SUB;
    check(tile, stride, 2 * QB, params, x, nb, SUB);
    let mask = _mm256_set1_epi32(0xF);
    let mut a = [_mm256_setzero_ps(); TILE];
    let mut macc = _mm_setzero_ps();
    let mut buf = [0f32; 8];
    for (b, sm) in sxm.chunks_exact(SUB).enumerate() {
        // SAFETY: b < nb, so the record p..p + stride is inside `tile`,
        // x[32b..32b + 32] inside `x` and the parameters inside `params`
        // (checked above); all loads are unaligned loads.
        unsafe {
            let p = tile.as_ptr().add(b * stride);
            prefetch(p, 2);
            let xb = x.as_ptr().add(b * QB);
            for (h, &smh) in sm.iter().enumerate() {
                let mut t = [_mm256_setzero_ps(); TILE];
                for g in h * 4 / SUB..(h + 1) * 4 / SUB {
                    let xg = _mm256_loadu_ps(xb.add(8 * g));
                    let d = load8(p.add(8 * g));
                    let q0 = _mm256_cvtepi32_ps(_mm256_and_si256(d, mask));
                    let q1 = _mm256_cvtepi32_ps(_mm256_srli_epi32::<4>(d));
                    t[0] = _mm256_fmadd_ps(q0, xg, t[0]);
                    t[1] = _mm256_fmadd_ps(q1, xg, t[1]);
                    let d = load8(p.add(QB + 8 * g));
                    let q2 = _mm256_cvtepi32_ps(_mm256_and_si256(d, mask));
                    let q3 = _mm256_cvtepi32_ps(_mm256_srli_epi32::<4>(d));
                    t[2] = _mm256_fmadd_ps(q2, xg, t[2]);
                    t[3] = _mm256_fmadd_ps(q3, xg, t[3]);
                }
                let pb = block_params(params, b, h, SUB, p, &mut buf);
                fold_block(pb, &t, smh, &mut a, &mut macc);
            }
        }
    }
    // SAFETY: the caller of the kernel guarantees AVX2, FMA and F16C.
    unsafe { finish(&a, macc) }
}

/// [`dot_q4`] for byte codes (records start with 128 code bytes, row
/// after row).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_q8<const SUB: usize>(
    tile: &[u8],
    stride: usize,
    params: Params,
    x: &[f32],
    sxm: &[f32],
) -> [f32; TILE] {
    let nb = sxm.len() / SUB;
    check(tile, stride, TILE * QB, params, x, nb, SUB);
    let mut a = [_mm256_setzero_ps(); TILE];
    let mut macc = _mm_setzero_ps();
    let mut buf = [0f32; 8];
    for (b, sm) in sxm.chunks_exact(SUB).enumerate() {
        // SAFETY: as in `dot_q4`.
        unsafe {
            let p = tile.as_ptr().add(b * stride);
            prefetch(p, 3);
            let xb = x.as_ptr().add(b * QB);
            for (h, &smh) in sm.iter().enumerate() {
                let mut t = [_mm256_setzero_ps(); TILE];
                for g in h * 4 / SUB..(h + 1) * 4 / SUB {
                    let xg = _mm256_loadu_ps(xb.add(8 * g));
                    for (r, tr) in t.iter_mut().enumerate() {
                        let q = _mm256_cvtepi32_ps(load8(p.add(r * QB + 8 * g)));
                        *tr = _mm256_fmadd_ps(q, xg, *tr);
                    }
                }
                let pb = block_params(params, b, h, SUB, p, &mut buf);
                fold_block(pb, &t, smh, &mut a, &mut macc);
            }
        }
    }
    // SAFETY: the caller of the kernel guarantees AVX2, FMA and F16C.
    unsafe { finish(&a, macc) }
}

/// `PackedMatrix::unpack_params`: per parameter set of each record, 4
/// scales then 4 offset coefficients as f32 (binary16 values converted
/// with `vcvtph2ps`).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn unpack_params(tile: &[u8], stride: usize, l: ParamLayout, out: &mut [f32]) {
    let nb = tile.len() / stride;
    assert!(out.len() >= 8 * l.sub * nb && l.at + l.bytes() <= stride);
    for b in 0..nb {
        for h in 0..l.sub {
            // SAFETY: b < nb and h < sub: the record and the 8 f32 at
            // 8 (b sub + h) are in bounds (checked above).
            unsafe {
                record_params(
                    tile.as_ptr().add(b * stride),
                    l,
                    h,
                    out.as_mut_ptr().add(8 * (b * l.sub + h)),
                )
            };
        }
    }
}

/// Set `h` of one record: its 4 scales, then its 4 offset coefficients
/// (mins, or the scales again when symmetric), as 8 f32 at `out`.
///
/// # Safety
/// The record at `rec` holds the parameters where `l` says, `h < l.sub`,
/// `out` has room for 8 f32, and the CPU supports AVX2, FMA and F16C.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn record_params(rec: *const u8, l: ParamLayout, h: usize, out: *mut f32) {
    // SAFETY: as the caller guarantees; 8 bytes of binary16 or 16 of f32
    // per vector.
    unsafe {
        let s = load4(rec.add(l.scales_at(h)), l.scale_bytes);
        let c = if l.min_bytes == 0 {
            s
        } else {
            load4(rec.add(l.mins_at(h)), l.min_bytes)
        };
        _mm_storeu_ps(out, s);
        _mm_storeu_ps(out.add(TILE), c);
    }
}

/// [`super::tile_f32`]: rows of `x` in pairs against the 4 tile rows.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn tile_f32(w: &[f32], x: &[f32], out: &mut [f32]) {
    let k = w.len() / TILE;
    let rows = x.len() / k.max(1);
    assert!(k.is_multiple_of(8) && w.len() == TILE * k && x.len() == rows * k);
    assert!(out.len() >= rows * TILE);
    let wp = w.as_ptr();
    let mut r = 0;
    while r + 2 <= rows {
        let mut a = [_mm256_setzero_ps(); 2 * TILE];
        // SAFETY: i + 8 <= k, so w[j*k + i..][..8] and rows r, r + 1 of
        // x at i are in bounds, as is out[4r..4r + 8] (checked above).
        unsafe {
            let x0p = x.as_ptr().add(r * k);
            let x1p = x0p.add(k);
            for i in (0..k).step_by(8) {
                let x0 = _mm256_loadu_ps(x0p.add(i));
                let x1 = _mm256_loadu_ps(x1p.add(i));
                for j in 0..TILE {
                    let wj = _mm256_loadu_ps(wp.add(j * k + i));
                    a[j] = _mm256_fmadd_ps(wj, x0, a[j]);
                    a[TILE + j] = _mm256_fmadd_ps(wj, x1, a[TILE + j]);
                }
            }
            let o = out.as_mut_ptr().add(r * TILE);
            _mm_storeu_ps(o, hsum4(a[0], a[1], a[2], a[3]));
            _mm_storeu_ps(o.add(TILE), hsum4(a[4], a[5], a[6], a[7]));
        }
        r += 2;
    }
    if r < rows {
        let mut a = [_mm256_setzero_ps(); TILE];
        // SAFETY: as above, for the last row.
        unsafe {
            let x0p = x.as_ptr().add(r * k);
            for i in (0..k).step_by(8) {
                let x0 = _mm256_loadu_ps(x0p.add(i));
                for (j, aj) in a.iter_mut().enumerate() {
                    *aj = _mm256_fmadd_ps(_mm256_loadu_ps(wp.add(j * k + i)), x0, *aj);
                }
            }
            let o = out.as_mut_ptr().add(r * TILE);
            _mm_storeu_ps(o, hsum4(a[0], a[1], a[2], a[3]));
        }
    }
}

/// Stores `(q - m) s` (`sym`, `m` = zero point) or `q s + m` for 8 codes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn deq8(q: __m256i, s: __m256, m: __m256, sym: bool, dst: *mut f32) {
    let q = _mm256_cvtepi32_ps(q);
    let w = if sym {
        _mm256_mul_ps(_mm256_sub_ps(q, m), s)
    } else {
        _mm256_add_ps(_mm256_mul_ps(q, s), m)
    };
    // SAFETY: the caller guarantees 8 writable f32 at `dst`.
    unsafe { _mm256_storeu_ps(dst, w) }
}

/// Per-row scale and offset (the zero point `half` when `sym`, else the
/// min) of block `b`, broadcast.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn row_params(pb: *const f32, r: usize, sym: bool, half: f32) -> (__m256, __m256) {
    // SAFETY: the caller guarantees 8 readable f32 at `pb`.
    unsafe {
        let s = _mm256_set1_ps(*pb.add(r));
        let m = _mm256_set1_ps(if sym { half } else { *pb.add(TILE + r) });
        (s, m)
    }
}

/// Dequantizes a 4-bit tile (`SUB` parameter sets per record) into `dst`,
/// 4 rows of `k = 32 * blocks`.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
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
    let mask = _mm256_set1_epi32(0xF);
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
                    for g in h * 4 / SUB..(h + 1) * 4 / SUB {
                        let d = load8(p.add(pair * QB + 8 * g));
                        let (o0, o1) = (out.add(r0 * k + 8 * g), out.add(r1 * k + 8 * g));
                        deq8(_mm256_and_si256(d, mask), s0, m0, sym, o0);
                        deq8(_mm256_srli_epi32::<4>(d), s1, m1, sym, o1);
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
/// The CPU must support AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
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
                    for g in h * 4 / SUB..(h + 1) * 4 / SUB {
                        let q = load8(p.add(r * QB + 8 * g));
                        deq8(q, s, m, sym, out.add(r * k + 8 * g));
                    }
                }
            }
        }
    }
}
