//! f32 matrix product with constant weights: `Y [m, n] = X [m, k] · W [k, n] (+ bias)`.
//!
//! [`PackedF32`] repacks `W` once, at load, into panels of [`NR`] columns
//! (`k` rows of `NR` values each, 64-byte aligned, the last panel padded
//! with zeros), so a micro-kernel reads its slice of `W` as one sequential
//! stream. The product is blocked as BLIS and MLAS do: columns in chunks
//! of [`NCP`] panels (their weight slice stays in the last-level cache),
//! `k` in equal blocks of at most [`KC`] (a panel's slice stays in L1 or L2
//! while the rows of `X` pass over it; the kernel reads 64 bytes of it per
//! 12 FMAs), rows in blocks of [`MC`] (their `X` slice stays in L2), and an
//! [`MR`] x [`NR`] micro-kernel that keeps its 12 accumulators in
//! registers and broadcasts `X` straight from its rows. The bias is the
//! accumulators' starting value. With several threads, the threads claim
//! contiguous ranges of panels that shrink towards the end
//! (`ops::parallel::guided`), or of rows when `X` has more rows than `W`
//! has columns (an encoder batch). Either way each output is summed in the
//! same order as on one thread.
//!
//! This file holds the packing, the blocking, the dispatch by [`Isa`] and
//! the portable micro-kernel; the x86-64 AVX2+FMA and AVX-512 kernels are
//! in `x86_64` and the AArch64 NEON kernels in `aarch64`, chosen at run
//! time. Every kernel runs the same blocking. Results equal the plain definition up to f32 summation order.

use super::activation::Epilogue;
use super::{Exec, Isa};
use std::ops::Range;

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "x86_64")]
mod x86_64;

/// Columns per packed panel (two AVX registers).
pub const NR: usize = 16;
/// Rows of `X` per micro-kernel call (AVX2, NEON and portable kernels).
pub const MR: usize = 6;
/// Rows of `X` per call of the AVX-512 kernel, which covers two panels
/// (32 columns): 24 of its 32 registers hold sums.
pub const MR_AVX512: usize = 12;
/// Depth of a `k` block, at most.
pub const KC: usize = 640;
/// Rows of `X` per row block (a multiple of [`MR`] and [`MR_AVX512`]); a prompt of 128
/// tokens is one block, so each weight is read from memory once.
pub const MC: usize = 144;
/// Panels per column chunk: its weight slice (at most 2.5 MiB) stays in
/// the last-level cache while every row block passes over it.
pub const NCP: usize = 64;

/// Packed slices up to this size run rows-outside ([`PackedF32::run_small`]).
const SMALL_BYTES: usize = 64 << 10;

/// Outputs above this size are written with non-temporal stores.
const STREAM_BYTES: usize = 8 << 20;

/// One `k` row of a panel, aligned so each is one cache line.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Lane([f32; NR]);

/// Constant weights packed for [`PackedF32::matmul`].
pub struct PackedF32 {
    k: usize,
    n: usize,
    /// Panel after panel, `k` lanes each.
    lanes: Vec<Lane>,
    /// Bias padded to whole panels.
    bias: Option<Vec<Lane>>,
}

impl std::fmt::Debug for PackedF32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PackedF32 {{ k: {}, n: {}, bias: {} }}",
            self.k,
            self.n,
            self.bias.is_some()
        )
    }
}

impl PackedF32 {
    /// Packs `w` (`[k, n]`, row-major) and an optional `bias` (`[n]`).
    ///
    /// # Errors
    /// When a length does not match `k` and `n`, or either is zero.
    pub fn new(w: &[f32], k: usize, n: usize, bias: Option<&[f32]>) -> Result<Self, String> {
        if k == 0 || n == 0 {
            return Err(format!("empty weight matrix [{k}, {n}]"));
        }
        if w.len() != k * n {
            return Err(format!(
                "weights have {} values, expected {k} x {n}",
                w.len()
            ));
        }
        if let Some(b) = bias {
            if b.len() != n {
                return Err(format!("bias has {} values, expected {n}", b.len()));
            }
        }
        let panels = n.div_ceil(NR);
        let mut lanes: Vec<Lane> = Vec::with_capacity(panels * k);
        // before the first write, so the kernel backs it with 2 MiB pages
        super::huge_pages(
            lanes.as_ptr().cast(),
            panels * k * std::mem::size_of::<Lane>(),
        );
        lanes.resize(panels * k, Lane([0.0; NR]));
        for (p, panel) in lanes.chunks_exact_mut(k).enumerate() {
            let (c0, cols) = (p * NR, NR.min(n - p * NR));
            for (row, lane) in panel.iter_mut().enumerate() {
                lane.0[..cols].copy_from_slice(&w[row * n + c0..][..cols]);
            }
        }
        let bias = bias.map(|b| {
            let mut v = vec![Lane([0.0; NR]); panels];
            for (p, lane) in v.iter_mut().enumerate() {
                let cols = NR.min(n - p * NR);
                lane.0[..cols].copy_from_slice(&b[p * NR..][..cols]);
            }
            v
        });
        Ok(PackedF32 { k, n, lanes, bias })
    }

    /// An empty matrix, to be filled by [`PackedF32::repack`].
    pub fn empty() -> Self {
        PackedF32 {
            k: 0,
            n: 0,
            lanes: Vec::new(),
            bias: None,
        }
    }

    /// Packs `scale · W` in place of what `self` held, reusing its storage:
    /// `W [k, n]` element `(i, j)` read at `w[i · rs + j · cs]` (so a
    /// transposed or strided view packs without a copy first). No bias.
    ///
    /// # Panics
    /// When `k` or `n` is zero or `w` is too short for the strides.
    pub fn repack(
        &mut self,
        w: &[f32],
        (k, n): (usize, usize),
        (rs, cs): (usize, usize),
        scale: f32,
    ) {
        assert!(k > 0 && n > 0, "empty weight matrix [{k}, {n}]");
        assert!(
            w.len() > (k - 1) * rs + (n - 1) * cs,
            "w is too short for [{k}, {n}]"
        );
        let panels = n.div_ceil(NR);
        self.lanes.clear();
        self.lanes.resize(panels * k, Lane([0.0; NR]));
        for (p, panel) in self.lanes.chunks_exact_mut(k).enumerate() {
            let (c0, cols) = (p * NR, NR.min(n - p * NR));
            if cs == 1 {
                for (i, lane) in panel.iter_mut().enumerate() {
                    for (l, &v) in lane.0[..cols].iter_mut().zip(&w[i * rs + c0..][..cols]) {
                        *l = scale * v;
                    }
                }
            } else if rs == 1 {
                // a transposed view: column c0 + c is k contiguous values
                for c in 0..cols {
                    let col = &w[(c0 + c) * cs..][..k];
                    for (lane, &v) in panel.iter_mut().zip(col) {
                        lane.0[c] = scale * v;
                    }
                }
            } else {
                for c in 0..cols {
                    let col = (c0 + c) * cs;
                    for (i, lane) in panel.iter_mut().enumerate() {
                        lane.0[c] = scale * w[col + i * rs];
                    }
                }
            }
        }
        (self.k, self.n, self.bias) = (k, n, None);
    }

    /// `y = x · W[..k, ..n]` on this thread (the first `k` rows and `n`
    /// columns of the packed `W`, at most all of them), `x` given as `m`
    /// rows of `k` values `lda` apart and `y` as `m` rows of `n` values
    /// `ldc` apart.
    ///
    /// # Safety
    /// `x` addresses `(m - 1) · lda + k` readable values and `y`
    /// `(m - 1) · ldc + n` writable ones, which nothing else accesses
    /// meanwhile; `lda >= k`, `ldc >= n`.
    ///
    /// # Panics
    /// When `k` or `n` exceeds the packed matrix's.
    pub unsafe fn matmul_strided(
        &self,
        (x, lda): (*const f32, usize),
        (y, ldc): (*mut f32, usize),
        (m, k, n): (usize, usize, usize),
        isa: Isa,
    ) {
        assert!(
            k <= self.k && n <= self.n,
            "[{k}, {n}] is not inside [{}, {}]",
            self.k,
            self.n
        );
        if m == 0 || n == 0 {
            return;
        }
        if k == 0 {
            for r in 0..m {
                // SAFETY: row r of y, n values (the caller's contract).
                unsafe { std::slice::from_raw_parts_mut(y.add(r * ldc), n).fill(0.0) };
            }
            return;
        }
        let io = Strided::new((x, lda), (OutPtr(y), ldc), (m, k, n));
        // SAFETY: the caller's contract.
        unsafe { self.run_panels(io, 0..n.div_ceil(NR), isa) }
    }

    /// Input features.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Output features.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Bytes of the packed weights and bias.
    pub fn bytes(&self) -> usize {
        (self.lanes.len() + self.bias.as_ref().map_or(0, Vec::len)) * std::mem::size_of::<Lane>()
    }

    /// `y [m, n] = x [m, k] · W (+ bias)`, over `exec.threads` threads of
    /// the current rayon pool.
    ///
    /// # Panics
    /// When `x` or `y` do not hold `m` rows.
    pub fn matmul(&self, x: &[f32], m: usize, y: &mut [f32], exec: Exec) {
        self.matmul_then(x, m, y, exec, Epilogue::default())
    }

    /// [`PackedF32::matmul`], then `epi` on each output, applied by the
    /// thread that wrote it, right after, while it is in cache.
    ///
    /// # Panics
    /// When `x` or `y` do not hold `m` rows, or `epi`'s other operand is
    /// not `[m, n]`.
    pub fn matmul_then(&self, x: &[f32], m: usize, y: &mut [f32], exec: Exec, epi: Epilogue<'_>) {
        let Exec { threads, isa } = exec;
        let (k, n) = (self.k, self.n);
        assert_eq!(x.len(), m * k, "x must be [m, k]");
        assert_eq!(y.len(), m * n, "y must be [m, n]");
        if let Some((op, other)) = epi.then {
            assert_eq!(
                other.len(),
                m * n,
                "the operand of {} must be [m, n]",
                op.name()
            );
        }
        if m == 0 {
            return;
        }
        let panels = n.div_ceil(NR);
        let out = OutPtr(y.as_mut_ptr());
        // at least ~64 k FMAs per task, so small products stay on one thread
        let min_panels = (1usize << 16).div_ceil(m * k * NR).max(1);
        let io = Strided::new((x.as_ptr(), k), (out, n), (m, k, n));
        if m > n.max(MC) {
            // many rows (an encoder batch): threads take row ranges, as
            // MLAS does when M > N, so each reads its own rows of `X` once
            // and all of the (smaller) `W`, instead of all of `X` per claim
            let min_rows = (1usize << 16).div_ceil(k * n).max(MR);
            super::parallel::guided(m, threads, min_rows, MR, |r| {
                // SAFETY: as below; rows `r` lie inside `x` and `y`, and
                // each claim writes only its own rows
                unsafe {
                    let first = r.start;
                    let rows = io.rows(r);
                    self.run_panels(rows, 0..panels, isa);
                    rows.finish(first, 0..n, epi, isa);
                }
            });
            return;
        }
        // one-row products run four panels at a time, AVX-512 tiles two
        let unit = match (m, isa) {
            (1, _) => GEMV_PANELS,
            (_, Isa::Avx512) => 2,
            _ => 1,
        };
        // SAFETY: `x` holds `m * k` values, `y` `m * n` (asserted above);
        // each claim writes (and finishes) only the columns of its panels.
        super::parallel::guided(panels, threads, min_panels, unit, |r| unsafe {
            let cols = r.start * NR..(r.end * NR).min(n);
            self.run_panels(io, r, isa);
            io.finish(0, cols, epi, isa);
        });
    }

    /// The blocked product over panels `range`.
    ///
    /// # Safety
    /// `io` addresses `m` readable rows of `k` values and `m` writable rows
    /// of `n` values, and no other thread accesses the columns of `range`
    /// meanwhile.
    unsafe fn run_panels(&self, io: Strided, range: Range<usize>, isa: Isa) {
        // depth and width of this product (at most the packed ones); panels
        // stay `self.k` lanes apart
        let Strided {
            x,
            lda,
            m,
            y,
            ldc,
            k,
            n,
            kc: kc_max,
        } = io;
        let stride = self.k;
        // decoding is bound by memory, not arithmetic: one row runs the
        // AVX2 kernels, which keep four weight streams in flight
        let isa = if m == 1 { isa.min(Isa::Avx2) } else { isa };
        #[cfg(target_arch = "x86_64")]
        let range = if m == 1 && isa == Isa::Avx2 {
            // decoding: four panels at a time, four weight streams in flight
            self.gemv_avx2_panels(io, range)
        } else {
            range
        };
        if m > 1 && kc_max == k && range.len() * k * std::mem::size_of::<Lane>() <= SMALL_BYTES {
            // SAFETY: the caller's contract
            unsafe { self.run_small(io, range, isa) };
            return;
        }
        let mc_max = if m <= MR { MR } else { MC };
        // AVX-512 tiles are two whole panels wide where two are left
        let pairs = isa == Isa::Avx512;
        // An output far beyond the caches (an LM head's logits, a large
        // batch's activations) is written around them: non-temporal stores
        // skip reading each line before writing it and leave `X` and the
        // weights in cache (3-6 % on SmolLM2's LM head, timed in turns).
        // Only with one `k` block (each value written once) and aligned rows.
        let stream = m * n * std::mem::size_of::<f32>() > STREAM_BYTES
            && kc_max == k
            && ldc == n
            && n % NR == 0
            && (y.get() as usize).is_multiple_of(64);
        let mut c0 = range.start;
        while c0 < range.end {
            let chunk = c0..(c0 + NCP).min(range.end);
            let mut k0 = 0;
            while k0 < k {
                let kc = kc_max.min(k - k0);
                let first = k0 == 0;
                let mut m0 = 0;
                while m0 < m {
                    let mc = mc_max.min(m - m0);
                    let tiles = mc.div_ceil(if pairs { MR_AVX512 } else { MR });
                    let mut p = chunk.start;
                    while p < chunk.end {
                        let width = if pairs && p + 1 < chunk.end && (p + 2) * NR <= n {
                            2
                        } else {
                            1
                        };
                        let w = self.lanes[p * stride + k0..][..kc].as_ptr().cast::<f32>();
                        // the next tile's panels' slices, asked into L2 a
                        // share per tile, so its first tile does not wait on memory
                        let next = p + width..(p + 2 * width).min(range.end);
                        let per_tile = (next.len() * kc).div_ceil(tiles);
                        let mut fetched = 0;
                        let cols = NR.min(n - p * NR);
                        let bias = match (&self.bias, first) {
                            (Some(b), true) => b[p].0.as_ptr(),
                            _ => std::ptr::null(),
                        };
                        let mut r = m0;
                        while r < m0 + mc {
                            let rows = tile_rows(m0 + mc - r, isa);
                            let tile = Tile {
                                kc,
                                a: x.add(r * lda + k0),
                                lda,
                                w,
                                c: y.get().add(r * ldc + p * NR),
                                ldc,
                                cols,
                                accumulate: !first,
                                stream: stream && cols == NR,
                                bias,
                                more: width - 1,
                                w_step: stride,
                            };
                            let end = (fetched + per_tile).min(next.len() * kc);
                            for i in fetched..end {
                                let lane = (next.start + i / kc) * stride + k0 + i % kc;
                                prefetch_l2(self.lanes[lane..].as_ptr());
                            }
                            fetched = end;
                            tile.run(rows, isa);
                            r += rows;
                        }
                        p += width;
                    }
                    m0 += mc;
                }
                k0 += kc;
            }
            c0 = chunk.end;
        }
        #[cfg(target_arch = "x86_64")]
        if stream {
            // order the non-temporal stores before whatever follows (the
            // join that hands `y` to the next op)
            std::arch::x86_64::_mm_sfence();
        }
    }

    /// [`PackedF32::run_panels`] for a product whose packed slice fits in
    /// cache (attention's per-head products): rows outside, panels inside,
    /// one kernel call per row tile for all the whole panels. Blocking
    /// gains nothing here, and the per-tile call and prefetches cost a
    /// fifth of a 48 x 32 x 128 product.
    ///
    /// # Safety
    /// As [`PackedF32::run_panels`], with one `k` block (`io.kc == io.k`).
    unsafe fn run_small(&self, io: Strided, range: Range<usize>, isa: Isa) {
        let Strided {
            x,
            lda,
            m,
            y,
            ldc,
            k,
            n,
            ..
        } = io;
        let stride = self.k;
        // panels with all NR columns inside `n`, then at most one ragged one
        let whole = range.start..range.end.min(n / NR).max(range.start);
        let mut r = 0;
        while r < m {
            let rows = tile_rows(m - r, isa);
            // panel `p` and the `more` whole panels after it, on rows r..
            let tile = |p: usize, more: usize| Tile {
                kc: k,
                a: x.add(r * lda),
                lda,
                w: self.lanes[p * stride..][..k].as_ptr().cast(),
                c: y.get().add(r * ldc + p * NR),
                ldc,
                cols: NR.min(n - p * NR),
                accumulate: false,
                stream: false,
                bias: self
                    .bias
                    .as_ref()
                    .map_or(std::ptr::null(), |b| b[p].0.as_ptr()),
                more,
                w_step: stride,
            };
            if !whole.is_empty() {
                tile(whole.start, whole.len() - 1).run(rows, isa);
            }
            for p in whole.end..range.end {
                tile(p, 0).run(rows, isa);
            }
            r += rows;
        }
    }
}

/// Rows of the next tile when `left` rows of a row block remain.
///
/// AVX2, NEON and portable kernels: [`MR`], except that the last 8 rows run as
/// 4 + 4 and the last 9 as 5 + 4. A tile of 2 or 3 rows keeps only 4 or 6
/// accumulators, too few to cover the FMA latency (8 are needed), so it
/// costs 2/3 of a whole tile; 4 + 4 costs what 6 + 2 rows of work are
/// worth (1.5 % of a 128-row product).
///
/// AVX-512: [`MR_AVX512`], except that 13 to 15 rows leave 8 for the
/// last tile, so no tile but a lone row block's has fewer than 4 rows
/// (8 accumulators over two panels).
fn tile_rows(left: usize, isa: Isa) -> usize {
    match (isa, left) {
        (Isa::Avx512, 13..=15) => left - 8,
        (Isa::Avx512, _) => MR_AVX512.min(left),
        (_, 8) => 4,
        (_, 9) => 5,
        _ => MR.min(left),
    }
}

/// Operands of one product: `m` rows of `k` values of `X` (`lda` apart)
/// and of `n` values of `Y` (`ldc` apart); `k` and `n` at most the packed
/// matrix's (the product uses its first `k` rows and `n` columns).
#[derive(Clone, Copy)]
struct Strided {
    x: *const f32,
    lda: usize,
    m: usize,
    y: OutPtr,
    ldc: usize,
    k: usize,
    n: usize,
    /// Depth of a `k` block, chosen once per product, so that a share of
    /// its rows is summed in the same order as the whole.
    kc: usize,
}

impl Strided {
    fn new(
        (x, lda): (*const f32, usize),
        (y, ldc): (OutPtr, usize),
        (m, k, n): (usize, usize, usize),
    ) -> Strided {
        // one row block: stream each panel once, whole depth;
        // else `k` in equal blocks of at most KC
        let kc = if m <= MR {
            k
        } else {
            k.div_ceil(k.div_ceil(KC).max(1))
        };
        Strided {
            x,
            lda,
            m,
            y,
            ldc,
            k,
            n,
            kc,
        }
    }

    /// Rows `r` of this product.
    ///
    /// # Safety
    /// `r.end <= self.m`.
    unsafe fn rows(self, r: Range<usize>) -> Strided {
        // SAFETY: the caller's bound keeps both inside their rows
        unsafe {
            Strided {
                x: self.x.add(r.start * self.lda),
                y: OutPtr(self.y.get().add(r.start * self.ldc)),
                m: r.len(),
                ..self
            }
        }
    }

    /// Applies `epi` to columns `cols` of each of the `m` rows of `y`;
    /// these are rows `first..` of the whole product, which `epi`'s other
    /// operand (`[rows, n]`, contiguous) is laid out as.
    ///
    /// # Safety
    /// As [`PackedF32::run_panels`] for those columns: `cols.end <= n`.
    unsafe fn finish(self, first: usize, cols: Range<usize>, epi: Epilogue<'_>, isa: Isa) {
        if epi.is_empty() {
            return;
        }
        for row in 0..self.m {
            // SAFETY: row `row`'s columns `cols`, inside `y` (the caller's contract)
            let y = unsafe {
                std::slice::from_raw_parts_mut(
                    self.y.get().add(row * self.ldc + cols.start),
                    cols.len(),
                )
            };
            if let Some(act) = epi.act {
                act.apply(y, isa);
            }
            if let Some((op, other)) = epi.then {
                let at = (first + row) * self.n;
                op.apply(y, &other[at + cols.start..at + cols.end]);
            }
        }
    }
}

// SAFETY: tasks read `x` and write disjoint columns of `y` (see `OutPtr`).
unsafe impl Send for Strided {}
// SAFETY: as above.
unsafe impl Sync for Strided {}

/// Output `y` shared by the parallel tasks of one product (here and in
/// `qkernel`); each task writes only its own output columns.
#[derive(Clone, Copy)]
pub struct OutPtr(pub *mut f32);

// SAFETY: tasks write disjoint columns of `y`, which outlives the parallel
// section that borrows it mutably.
unsafe impl Send for OutPtr {}
// SAFETY: as above; no element is accessed by two tasks.
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// The pointer (a method, so closures capture the whole `Send` wrapper).
    pub fn get(self) -> *mut f32 {
        self.0
    }
}

/// One micro-kernel call: `rows` rows of `X` (from `a`, stride `lda`) times
/// `kc` lanes of a panel (`w`) into `c` (stride `ldc`, `cols` valid columns).
#[derive(Clone, Copy)]
struct Tile {
    kc: usize,
    a: *const f32,
    lda: usize,
    w: *const f32,
    c: *mut f32,
    ldc: usize,
    cols: usize,
    /// Add to `c` (later `k` blocks) instead of overwriting it.
    accumulate: bool,
    /// Write whole rows of `c` with non-temporal stores (32-byte aligned);
    /// only the x86-64 kernels have them.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    stream: bool,
    /// `NR` bias values to start from (first `k` block), or null.
    bias: *const f32,
    /// Whole panels after the first one to run with the same rows (`w`
    /// advances `w_step` lanes per panel, `c` and `bias` `NR` values);
    /// `cols` is then `NR`.
    more: usize,
    /// Lanes from one panel to the next.
    w_step: usize,
}

impl Tile {
    /// # Safety
    /// The pointers address `rows x kc` values of `X`, `kc` lanes and
    /// `rows x cols` values of `Y`, as [`PackedF32::run_panels`] sets them.
    unsafe fn run(&self, rows: usize, isa: Isa) {
        // the vector kernels of several rows loop over panels themselves
        let own_loop = rows > 1
            && (cfg!(target_arch = "x86_64") && isa >= Isa::Avx2
                || cfg!(target_arch = "aarch64") && isa == Isa::Neon);
        if self.more > 0 && !own_loop {
            for j in 0..=self.more {
                Tile {
                    more: 0,
                    ..self.panel(j)
                }
                .run(rows, isa);
            }
            return;
        }
        macro_rules! dispatch {
            ($f:ident, $($r:literal)*) => {
                match rows {
                    $($r => $f::<$r>(self),)*
                    _ => $f::<1>(self),
                }
            };
        }
        #[cfg(target_arch = "x86_64")]
        {
            use x86_64::{kernel_avx2, kernel_avx2_row, kernel_avx512};
            match isa {
                Isa::Avx512 => return dispatch!(kernel_avx512, 12 11 10 9 8 7 6 5 4 3 2),
                Isa::Avx2 if rows == 1 => return kernel_avx2_row(self),
                Isa::Avx2 => return dispatch!(kernel_avx2, 6 5 4 3 2),
                Isa::Portable | Isa::Neon => {}
            }
        }
        #[cfg(target_arch = "aarch64")]
        if isa == Isa::Neon {
            use aarch64::{kernel_neon, kernel_neon_row};
            return match rows {
                1 => kernel_neon_row(self),
                _ => dispatch!(kernel_neon, 6 5 4 3 2),
            };
        }
        dispatch!(kernel_portable, 6 5 4 3 2)
    }

    /// This tile moved to its `j`-th panel.
    ///
    /// # Safety
    /// `j <= self.more`.
    #[inline(always)]
    unsafe fn panel(&self, j: usize) -> Tile {
        Tile {
            w: self.w.add(j * self.w_step * NR),
            c: self.c.add(j * NR),
            bias: if self.bias.is_null() {
                self.bias
            } else {
                self.bias.add(j * NR)
            },
            ..*self
        }
    }

    /// Writes an `R x NR` block of sums into `c` (adding `c` or the bias).
    ///
    /// # Safety
    /// As [`Tile::run`].
    #[inline(always)]
    unsafe fn store<const R: usize>(&self, acc: &[[f32; NR]; R]) {
        for (i, row) in acc.iter().enumerate() {
            let c = self.c.add(i * self.ldc);
            for (j, &v) in row[..self.cols].iter().enumerate() {
                let base = if self.accumulate {
                    *c.add(j)
                } else if self.bias.is_null() {
                    0.0
                } else {
                    *self.bias.add(j)
                };
                *c.add(j) = base + v;
            }
        }
    }
}

/// Portable micro-kernel (the compiler vectorises the `NR` lanes).
///
/// # Safety
/// As [`Tile::run`].
unsafe fn kernel_portable<const R: usize>(t: &Tile) {
    let mut acc = [[0f32; NR]; R];
    for p in 0..t.kc {
        let w = &*t.w.add(p * NR).cast::<[f32; NR]>();
        for (i, row) in acc.iter_mut().enumerate() {
            let a = *t.a.add(i * t.lda + p);
            for (s, &b) in row.iter_mut().zip(w) {
                *s += a * b;
            }
        }
    }
    t.store(&acc);
}

/// Panels per call of the one-row AVX2 kernel (`x86_64::gemv_avx2`), and
/// per claim of a one-row product's threads.
const GEMV_PANELS: usize = 4;

/// Asks for the cache line at `lane` in L2 (a hint: never faults, no-op off x86-64).
#[inline(always)]
fn prefetch_l2(lane: *const Lane) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
        // SAFETY: prefetching is a hint that never faults, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T1>(lane.cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = lane;
}

/// Plain definition in f64, for tests: `x [m, k] · w [k, n] + bias`.
pub fn reference(
    x: &[f32],
    m: usize,
    w: &[f32],
    k: usize,
    n: usize,
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let mut y = vec![0f32; m * n];
    for r in 0..m {
        for c in 0..n {
            let mut s = bias.map_or(0.0, |b| b[c] as f64);
            for i in 0..k {
                s += x[r * k + i] as f64 * w[i * n + c] as f64;
            }
            y[r * n + c] = s as f32;
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{data, rel_err};

    fn check(m: usize, k: usize, n: usize, bias: bool, threads: usize, isa: Option<Isa>) {
        let x = data(m * k, 1);
        let w = data(k * n, 2);
        let b = bias.then(|| data(n, 3));
        let p = PackedF32::new(&w, k, n, b.as_deref()).unwrap();
        let y = match isa {
            Some(isa) => forced(&p, &x, m, isa),
            None => {
                let mut y = vec![f32::NAN; m * n];
                p.matmul(&x, m, &mut y, Exec::new(threads, Isa::Avx512));
                y
            }
        };
        let want = reference(&x, m, &w, k, n, b.as_deref());
        let err = rel_err(&y, &want);
        // f32 summation error grows with the depth (about 1.6e-5 at k = 700)
        let tol = 1e-5f32.max(k as f32 * 3e-8);
        assert!(
            err < tol,
            "m {m} k {k} n {n} bias {bias} threads {threads} isa {isa:?}: error {err}"
        );
    }

    /// `x [m, k] · p` on one thread with the kernels of `isa`.
    fn forced(p: &PackedF32, x: &[f32], m: usize, isa: Isa) -> Vec<f32> {
        let (k, n) = (p.k(), p.n());
        assert_eq!(x.len(), m * k);
        let mut y = vec![f32::NAN; m * n];
        let io = Strided::new((x.as_ptr(), k), (OutPtr(y.as_mut_ptr()), n), (m, k, n));
        // SAFETY: x holds m rows of k values, y m rows of n; one thread.
        unsafe { p.run_panels(io, 0..n.div_ceil(NR), isa) };
        y
    }

    #[test]
    fn repacked_strided_views_match_the_definition() {
        // W read transposed (rs 1, cs ld), X and Y with row strides wider
        // than their rows, one matrix repacked over a larger one, and
        // products over only the first rows and columns of W
        let mut p = PackedF32::new(&data(40 * 70, 9), 40, 70, None).unwrap();
        for (m, k, n) in [(13, 32, 37), (7, 5, 16), (150, 64, 9)] {
            let ld = k + 3;
            let wt = data(n * ld, 4); // W = wtᵀ: element (i, j) at wt[j · ld + i]
            let (lda, ldc) = (k + 5, n + 2);
            let x = data(m * lda, 5);
            p.repack(&wt, (k, n), (1, ld), 0.5);
            for (ku, nu) in [(k, n), (k - 2, n - 3), (0, n)] {
                let mut y = vec![f32::NAN; m * ldc];
                // SAFETY: x holds m rows lda apart, y m rows ldc apart.
                unsafe {
                    p.matmul_strided(
                        (x.as_ptr(), lda),
                        (y.as_mut_ptr(), ldc),
                        (m, ku, nu),
                        crate::detected_isa(),
                    )
                };
                for r in 0..m {
                    for j in 0..nu {
                        let want: f32 =
                            (0..ku).map(|i| x[r * lda + i] * 0.5 * wt[j * ld + i]).sum();
                        let got = y[r * ldc + j];
                        assert!(
                            (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                            "m {m} k {ku} of {k} n {nu} of {n} ({r}, {j}): {got} vs {want}"
                        );
                    }
                    // the rest of each row is left alone
                    assert!(y[r * ldc + nu..(r + 1) * ldc].iter().all(|v| v.is_nan()));
                }
            }
        }
    }

    #[test]
    fn matches_the_definition_on_ragged_shapes() {
        // rows below, at and above MR and MC (and ending in 8 or 9, split
        // 4 + 4 and 5 + 4); k below and above KC; n off the panel width
        for &(m, k, n) in &[
            (1, 1, 1),
            (1, 576, 1536),
            (1, 40, 100),
            (5, 33, 17),
            (6, 256, 16),
            (7, 257, 31),
            (8, 20, 33),
            (9, 20, 33),
            (128, 64, 48),
            (73, 300, 40),
            (150, 520, 48),
        ] {
            for bias in [false, true] {
                check(m, k, n, bias, 1, None);
                check(m, k, n, bias, 1, Some(Isa::Portable));
            }
        }
    }

    #[test]
    fn avx2_kernel_matches_when_present() {
        if crate::detected_isa() < Isa::Avx2 {
            eprintln!("skipping: this CPU has no AVX2+FMA");
            return;
        }
        for &(m, k, n) in &[
            (1, 40, 16),
            (1, 7, 130),
            (9, 30, 20),
            (13, 700, 50),
            (80, 256, 64),
            (145, 700, 50),
        ] {
            check(m, k, n, true, 1, Some(Isa::Avx2));
        }
    }

    #[test]
    fn avx512_kernel_matches_and_gives_the_avx2_bits() {
        if crate::detected_isa() < Isa::Avx512 {
            eprintln!("skipping: this CPU has no AVX-512F (or EDGEBENCH_MAX_ISA caps it)");
            return;
        }
        // tails of 13-15 rows (5-7 + 8), a lone 1-row block (145 = 144 + 1),
        // odd panel counts and a ragged last panel, two `k` blocks, and
        // small products (one kernel call over all panels)
        for &(m, k, n) in &[
            (2, 40, 32),
            (13, 30, 48),
            (14, 30, 50),
            (15, 300, 20),
            (25, 64, 96),
            (145, 700, 50),
            (48, 32, 128),
            (20, 16, 40),
            (20, 16, 48),
        ] {
            check(m, k, n, true, 1, Some(Isa::Avx512));
            check(m, k, n, false, 1, Some(Isa::Avx512));
            let p = PackedF32::new(&data(k * n, 2), k, n, Some(&data(n, 3))).unwrap();
            let x = data(m * k, 1);
            // each output summed in the same order: equal, not just close
            // (unless AVX2 has a one-row tile, which sums in four chains)
            if m % MR != 1 {
                assert_eq!(
                    forced(&p, &x, m, Isa::Avx2),
                    forced(&p, &x, m, Isa::Avx512),
                    "m {m} k {k} n {n}"
                );
            }
        }
    }

    /// The NEON kernels over the shape lists of the AVX2 and AVX-512
    /// tests, with the same tolerance; on AArch64 NEON must be what this
    /// CPU is detected to have (no silent fallback to portable code).
    #[test]
    fn neon_kernel_matches_when_present() {
        if cfg!(target_arch = "aarch64") {
            assert_eq!(crate::detected_isa(), Isa::Neon);
        } else {
            eprintln!("skipping: NEON runs on AArch64 only");
            return;
        }
        for &(m, k, n) in &[
            (1, 40, 16),
            (1, 7, 130),
            (9, 30, 20),
            (13, 700, 50),
            (80, 256, 64),
            (145, 700, 50),
            (2, 40, 32),
            (13, 30, 48),
            (14, 30, 50),
            (15, 300, 20),
            (25, 64, 96),
            (48, 32, 128),
            (20, 16, 40),
            (20, 16, 48),
        ] {
            check(m, k, n, true, 1, Some(Isa::Neon));
            check(m, k, n, false, 1, Some(Isa::Neon));
        }
        // the default (widest) choice is NEON, and it is not the portable
        // kernel: NEON's fused multiply-adds round once per step
        let (m, k, n) = (7, 257, 31);
        let p = PackedF32::new(&data(k * n, 2), k, n, Some(&data(n, 3))).unwrap();
        let x = data(m * k, 1);
        let mut y = vec![f32::NAN; m * n];
        p.matmul(&x, m, &mut y, Exec::single());
        assert_eq!(Exec::single().isa, Isa::Neon);
        assert_eq!(y, forced(&p, &x, m, Isa::Neon));
        assert_ne!(y, forced(&p, &x, m, Isa::Portable));
    }

    #[test]
    fn epilogues_cover_every_output_on_both_splits() {
        use crate::activation::{Activation, Binary};
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        // columns split (ragged last panel), rows split, one row
        for (m, k, n) in [(130, 40, 70), (1000, 40, 70), (1, 64, 200)] {
            let (x, w) = (data(m * k, 1), data(k * n, 2));
            let other = data(m * n, 4);
            let p = PackedF32::new(&w, k, n, None).unwrap();
            let acts = [None, Some(Activation::Gelu), Some(Activation::Silu)];
            let thens = [None, Some(Binary::Add), Some(Binary::Mul)];
            for (act, then) in acts.into_iter().flat_map(|a| thens.map(|t| (a, t))) {
                let mut want = reference(&x, m, &w, k, n, None);
                if let Some(act) = act {
                    act.apply(&mut want, crate::detected_isa());
                }
                for (v, o) in want.iter_mut().zip(&other) {
                    match then {
                        Some(Binary::Add) => *v += o,
                        Some(Binary::Mul) => *v *= o,
                        None => {}
                    }
                }
                let epi = Epilogue {
                    act,
                    then: then.map(|t| (t, other.as_slice())),
                };
                let mut y = vec![f32::NAN; m * n];
                pool.install(|| p.matmul_then(&x, m, &mut y, Exec::new(3, Isa::Avx512), epi));
                let err = rel_err(&y, &want);
                assert!(
                    err < 1e-5,
                    "{act:?} then {then:?}, m {m} k {k} n {n}: error {err}"
                );
            }
        }
    }

    #[test]
    fn threads_split_products_without_changing_results() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        pool.install(|| {
            // columns split (prefill, decoding), rows split (an encoder batch)
            check(130, 384, 1000, true, 3, None);
            check(1, 576, 1536, false, 3, None);
            check(1000, 40, 70, true, 3, None);
            // bit for bit: each output is summed in the same order either way
            for (m, k, n) in [(130, 384, 1000), (1000, 700, 70), (1, 576, 1536)] {
                let p = PackedF32::new(&data(k * n, 2), k, n, None).unwrap();
                let x = data(m * k, 1);
                let (mut one, mut three) = (vec![0.0; m * n], vec![0.0; m * n]);
                p.matmul(&x, m, &mut one, Exec::single());
                p.matmul(&x, m, &mut three, Exec::new(3, Isa::Avx512));
                assert!(one
                    .iter()
                    .zip(&three)
                    .all(|(a, b)| a.to_bits() == b.to_bits()));
            }
        });
    }

    #[test]
    fn outputs_beyond_the_caches_are_streamed_and_still_exact() {
        // 130 x 16 400 f32 is above STREAM_BYTES; the last panel is partial
        let (m, k, n) = (130, 24, 16_400);
        assert!(m * n * 4 > STREAM_BYTES);
        let (x, w, b) = (data(m * k, 1), data(k * n, 2), data(n, 3));
        let p = PackedF32::new(&w, k, n, Some(&b)).unwrap();
        let want = reference(&x, m, &w, k, n, Some(&b));
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        for threads in [1, 2] {
            // 64-byte aligned, as tract's tensors are, so the rows stream
            let mut lanes = vec![Lane([f32::NAN; NR]); m * n / NR];
            // SAFETY: `lanes` holds m * n contiguous f32.
            let y =
                unsafe { std::slice::from_raw_parts_mut(lanes.as_mut_ptr().cast::<f32>(), m * n) };
            pool.install(|| p.matmul(&x, m, y, Exec::new(threads, Isa::Avx512)));
            let err = rel_err(y, &want);
            assert!(err < 1e-5, "threads {threads}: error {err}");
        }
    }

    #[test]
    fn bad_shapes_are_errors() {
        assert!(PackedF32::new(&[1.0; 6], 2, 4, None)
            .unwrap_err()
            .contains("expected 2 x 4"));
        assert!(PackedF32::new(&[1.0; 8], 2, 4, Some(&[0.0; 3]))
            .unwrap_err()
            .contains("bias"));
        assert!(PackedF32::new(&[], 0, 4, None).is_err());
    }
}
