//! The x86-64 kernels of the f32 product: AVX2+FMA and AVX-512F
//! micro-kernels and the one-row (decoding) kernels. Each needs its CPU
//! features, which [`Tile::run`] and [`PackedF32::run_panels`] check
//! through the [`Isa`](crate::Isa) they are given.

use super::{PackedF32, Strided, Tile, GEMV_PANELS, NR};
use std::ops::Range;

/// How far ahead the one-row kernel prefetches its weights, in lanes.
const PREFETCH_LANES: usize = 128;

impl PackedF32 {
    /// The leading whole panels of `range`, [`GEMV_PANELS`] at a time, for
    /// one row of `X`; returns the panels left for the tile kernels.
    ///
    /// # Safety
    /// As [`PackedF32::run_panels`], with one row, on a CPU with AVX2 and FMA.
    pub(super) unsafe fn gemv_avx2_panels(
        &self,
        io: Strided,
        mut range: Range<usize>,
    ) -> Range<usize> {
        let Strided { x, y, k, n, .. } = io;
        let stride = self.k;
        while range.start + GEMV_PANELS <= range.end && (range.start + GEMV_PANELS) * NR <= n {
            let p = range.start;
            let mut sums = [[0f32; NR]; GEMV_PANELS];
            gemv_avx2(k, x, self.lanes[p * stride..].as_ptr().cast(), &mut sums);
            for (j, s) in sums.iter().enumerate() {
                let bias = self.bias.as_ref().map(|b| &b[p + j].0);
                for (c, v) in s.iter().enumerate() {
                    *y.get().add((p + j) * NR + c) = v + bias.map_or(0.0, |b| b[c]);
                }
            }
            range.start += GEMV_PANELS;
        }
        range
    }
}

/// AVX2+FMA micro-kernel: `2 R` accumulators, two `W` loads and `R`
/// broadcasts per step of `k`.
///
/// # Safety
/// As [`Tile::run`], on a CPU with AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn kernel_avx2<const R: usize>(tile: &Tile) {
    use std::arch::x86_64::*;
    let mut a = [std::ptr::null::<f32>(); R];
    for (i, a) in a.iter_mut().enumerate() {
        *a = tile.a.add(i * tile.lda);
    }
    for j in 0..=tile.more {
        let t = &tile.panel(j);
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        for p in 0..t.kc {
            let w0 = _mm256_load_ps(t.w.add(p * NR));
            let w1 = _mm256_load_ps(t.w.add(p * NR + 8));
            for i in 0..R {
                let x = _mm256_broadcast_ss(&*a[i].add(p));
                acc[i][0] = _mm256_fmadd_ps(x, w0, acc[i][0]);
                acc[i][1] = _mm256_fmadd_ps(x, w1, acc[i][1]);
            }
        }
        if t.cols == NR {
            for (i, acc) in acc.iter().enumerate() {
                let c = t.c.add(i * t.ldc);
                let (mut v0, mut v1) = (acc[0], acc[1]);
                if t.accumulate {
                    v0 = _mm256_add_ps(v0, _mm256_loadu_ps(c));
                    v1 = _mm256_add_ps(v1, _mm256_loadu_ps(c.add(8)));
                } else if !t.bias.is_null() {
                    v0 = _mm256_add_ps(v0, _mm256_loadu_ps(t.bias));
                    v1 = _mm256_add_ps(v1, _mm256_loadu_ps(t.bias.add(8)));
                }
                if t.stream {
                    _mm256_stream_ps(c, v0);
                    _mm256_stream_ps(c.add(8), v1);
                } else {
                    _mm256_storeu_ps(c, v0);
                    _mm256_storeu_ps(c.add(8), v1);
                }
            }
        } else {
            let mut sums = [[0f32; NR]; R];
            for (s, acc) in sums.iter_mut().zip(&acc) {
                _mm256_storeu_ps(s.as_mut_ptr(), acc[0]);
                _mm256_storeu_ps(s.as_mut_ptr().add(8), acc[1]);
            }
            t.store(&sums);
        }
    }
}

/// AVX-512 micro-kernel: two panels (32 columns) at a time while the
/// tile has two left, `2 R` accumulators, two `W` loads and `R` broadcasts
/// per step of `k`; then one panel (`R` accumulators). Each output is
/// summed in the same order as by [`kernel_avx2`], so both give the same
/// bits.
///
/// # Safety
/// As [`Tile::run`], on a CPU with AVX-512F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn kernel_avx512<const R: usize>(tile: &Tile) {
    use std::arch::x86_64::*;
    let mut a = [std::ptr::null::<f32>(); R];
    for (i, a) in a.iter_mut().enumerate() {
        *a = tile.a.add(i * tile.lda);
    }
    let mut j = 0;
    while j < tile.more {
        let (t0, t1) = (tile.panel(j), tile.panel(j + 1));
        let mut acc = [[_mm512_setzero_ps(); 2]; R];
        for p in 0..tile.kc {
            let w0 = _mm512_load_ps(t0.w.add(p * NR));
            let w1 = _mm512_load_ps(t1.w.add(p * NR));
            for i in 0..R {
                let x = _mm512_set1_ps(*a[i].add(p));
                acc[i][0] = _mm512_fmadd_ps(x, w0, acc[i][0]);
                acc[i][1] = _mm512_fmadd_ps(x, w1, acc[i][1]);
            }
        }
        for (i, acc) in acc.iter().enumerate() {
            store_avx512(&t0, i, acc[0]);
            store_avx512(&t1, i, acc[1]);
        }
        j += 2;
    }
    if j == tile.more {
        let t = tile.panel(j);
        let mut acc = [_mm512_setzero_ps(); R];
        for p in 0..t.kc {
            let w = _mm512_load_ps(t.w.add(p * NR));
            for i in 0..R {
                acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(*a[i].add(p)), w, acc[i]);
            }
        }
        for (i, &acc) in acc.iter().enumerate() {
            store_avx512(&t, i, acc);
        }
    }
}

/// Writes row `i` of an AVX-512 tile's sums into `t.c` (adding `c` or the
/// bias), its first `t.cols` columns.
///
/// # Safety
/// As [`Tile::run`], on a CPU with AVX-512F.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn store_avx512(t: &Tile, i: usize, mut v: std::arch::x86_64::__m512) {
    use std::arch::x86_64::*;
    let c = t.c.add(i * t.ldc);
    let mask: __mmask16 = if t.cols >= NR {
        0xffff
    } else {
        (1 << t.cols) - 1
    };
    if t.accumulate {
        v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, c));
    } else if !t.bias.is_null() {
        // bias lanes are padded to whole panels
        v = _mm512_add_ps(v, _mm512_loadu_ps(t.bias));
    }
    if t.stream {
        _mm512_stream_ps(c, v);
    } else {
        _mm512_mask_storeu_ps(c, mask, v);
    }
}

/// AVX2+FMA kernel for one row (decoding): four independent pairs of
/// accumulators over interleaved steps of `k`, so FMA latency does not bound it.
///
/// # Safety
/// As [`Tile::run`] with one row, on a CPU with AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn kernel_avx2_row(t: &Tile) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm256_setzero_ps(); 2]; 4];
    let steps = t.kc / 4 * 4;
    for p in (0..steps).step_by(4) {
        for j in 0..4 {
            // weights stream from memory: ask for them 2 KiB ahead (a hint, never faults)
            _mm_prefetch::<_MM_HINT_T0>(t.w.wrapping_add((p + j + PREFETCH_LANES) * NR).cast());
        }
        for (j, acc) in acc.iter_mut().enumerate() {
            let x = _mm256_broadcast_ss(&*t.a.add(p + j));
            acc[0] = _mm256_fmadd_ps(x, _mm256_load_ps(t.w.add((p + j) * NR)), acc[0]);
            acc[1] = _mm256_fmadd_ps(x, _mm256_load_ps(t.w.add((p + j) * NR + 8)), acc[1]);
        }
    }
    for p in steps..t.kc {
        let x = _mm256_broadcast_ss(&*t.a.add(p));
        acc[0][0] = _mm256_fmadd_ps(x, _mm256_load_ps(t.w.add(p * NR)), acc[0][0]);
        acc[0][1] = _mm256_fmadd_ps(x, _mm256_load_ps(t.w.add(p * NR + 8)), acc[0][1]);
    }
    let [a0, a1, a2, a3] = acc;
    let mut sums = [[0f32; NR]; 1];
    let lo = _mm256_add_ps(_mm256_add_ps(a0[0], a1[0]), _mm256_add_ps(a2[0], a3[0]));
    let hi = _mm256_add_ps(_mm256_add_ps(a0[1], a1[1]), _mm256_add_ps(a2[1], a3[1]));
    _mm256_storeu_ps(sums[0].as_mut_ptr(), lo);
    _mm256_storeu_ps(sums[0].as_mut_ptr().add(8), hi);
    t.store(&sums);
}

/// One row of `X` (`x`, `k` values) times [`GEMV_PANELS`] consecutive whole
/// panels from `w`: the panels are read as separate streams, which keeps
/// more memory requests in flight than one stream of the same bytes.
///
/// # Safety
/// `x` holds `k` values and `w` `GEMV_PANELS * k` aligned lanes, on a CPU
/// with AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
unsafe fn gemv_avx2(k: usize, x: *const f32, w: *const f32, out: &mut [[f32; NR]; GEMV_PANELS]) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm256_setzero_ps(); 2]; GEMV_PANELS];
    let stride = k * NR;
    for p in 0..k {
        let xv = _mm256_broadcast_ss(&*x.add(p));
        for (j, acc) in acc.iter_mut().enumerate() {
            let wp = w.add(j * stride + p * NR);
            acc[0] = _mm256_fmadd_ps(xv, _mm256_load_ps(wp), acc[0]);
            acc[1] = _mm256_fmadd_ps(xv, _mm256_load_ps(wp.add(8)), acc[1]);
        }
    }
    for (o, acc) in out.iter_mut().zip(&acc) {
        _mm256_storeu_ps(o.as_mut_ptr(), acc[0]);
        _mm256_storeu_ps(o.as_mut_ptr().add(8), acc[1]);
    }
}
