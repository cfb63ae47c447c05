//! Fused dequantize-and-multiply kernels for block-quantized weights:
//! `Y = X · Wᵀ`, `X` `[rows, k]` f32, `W` `[n, k]` block-quantized (the
//! `EbQuantLinear` format of `quant.rs`, taken as plain slices).
//!
//! [`PackedMatrix`] repacks the weights once, at construction, into tiles of
//! [`TILE`] output rows. Per tile and per 32-weight block the data is one
//! record, and records follow each other (tile after tile), so a gemv reads
//! the matrix as one sequential stream:
//! - 4-bit codes: 64 bytes, two rows per byte (byte `i` of pair `p` holds
//!   weight `i` of row `2p` in its low nibble and of row `2p + 1` in its high
//!   nibble), so one `vpmovzxbd` feeds two rows;
//! - other widths (2, 3, 5, 6, 8 bits): 128 bytes, one `u8` code per weight
//!   (exact, since `q < 2^bits`), row after row;
//! - then the 4 rows' scales and (asymmetric blocks only) the 4 rows' mins,
//!   each stored as IEEE binary16 when every value of the matrix converts to
//!   it exactly (scales rounded to f16 as `quant.rs` does), else as f32.
//!
//! Blocks of 16 weights (the K-quants' sub-blocks: Q2_K, Q3_K, Q6_K) keep
//! the same code bytes; the record then holds two parameter sets, one per
//! half of the 32 weights: the 4 scales of weights 0..16, the 4 scales of
//! weights 16..32, then the mins in the same order. Blocks of 32, 64, ...
//! have one set per record.
//!
//! Activations stay f32. Paths by number of rows of `x` ([`Options`]):
//! - few rows (decode): fused gemv with
//!   `y[o] = Σ_b (s[o,b] · Σ_i q·x + m[o,b] · Σ_i x)` (symmetric blocks:
//!   `m = -2^(bits-1)·s`; `b` runs over blocks of 32, or of 16 when the
//!   record holds two parameter sets), the per-block sums of `x` computed
//!   once per call;
//! - some rows: each tile is dequantized into an L1-sized f32 buffer and
//!   multiplied with all rows by an f32 micro-kernel;
//! - many rows (prefill): panels of rows are dequantized into an f32 scratch
//!   buffer and handed to `matrixmultiply::sgemm`.
//!
//! The x86-64 AVX2+FMA+F16C kernels (in `x86_64`) and the AArch64 NEON
//! kernels (in `aarch64`) are chosen at run time; a portable path runs
//! everywhere else. Results equal the plain definition up
//! to f32 summation order.

use std::cell::RefCell;
use std::ops::Range;

use super::gemm::OutPtr;

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "x86_64")]
mod x86_64;

/// Output rows per tile of the packed layout.
pub const TILE: usize = 4;
/// Weights per internal block (input blocks of 64, 96, ... are split into 32s).
pub const QB: usize = 32;
/// The smallest input block size: blocks of 16 put two parameter sets in a record.
pub const MIN_BLOCK: usize = 16;
/// Supported input bit widths.
pub const BITS: [usize; 6] = [2, 3, 4, 5, 6, 8];

/// Borrowed block-quantized matrix in the `EbQuantLinear` packing (see the
/// module docs of `quant.rs`): row after row, `block_size` weights per block,
/// `block_size * bits / 8` bytes per block, codes LSB-first; per block an f32
/// scale and optional f32 min (`w = q s + m`, else `w = (q - 2^(bits-1)) s`).
#[derive(Debug, Clone, Copy)]
pub struct BlockQuant<'a> {
    /// Bits per code, one of [`BITS`].
    pub bits: usize,
    /// Weights per block along `k`; a positive multiple of [`MIN_BLOCK`].
    pub block_size: usize,
    /// Output features (rows of `W`).
    pub n: usize,
    /// Input features (columns of `W`).
    pub k: usize,
    /// Packed codes, `n * k * bits / 8` bytes.
    pub packed: &'a [u8],
    /// One scale per block, `n * k / block_size` of them.
    pub scales: &'a [f32],
    /// Optional per-block minimums, same length as `scales`.
    pub mins: Option<&'a [f32]>,
}

impl BlockQuant<'_> {
    /// Checks shapes and lengths; the message names the bad field.
    pub fn validate(&self) -> Result<(), String> {
        if !BITS.contains(&self.bits) {
            return Err(format!("bits = {} is not one of {BITS:?}", self.bits));
        }
        if !supports_block(self.block_size) {
            return Err(format!(
                "block_size = {} must be a positive multiple of {MIN_BLOCK}",
                self.block_size
            ));
        }
        if self.k == 0 || !self.k.is_multiple_of(self.block_size) || !self.k.is_multiple_of(QB) {
            return Err(format!(
                "k = {} must be a positive multiple of block_size {} and of {QB}",
                self.k, self.block_size
            ));
        }
        if self.n == 0 {
            return Err("n must be positive".into());
        }
        let want = self.n * self.k * self.bits / 8;
        if self.packed.len() != want {
            return Err(format!(
                "packed has {} bytes, expected {want}",
                self.packed.len()
            ));
        }
        let blocks = self.n * (self.k / self.block_size);
        if self.scales.len() != blocks {
            return Err(format!(
                "scales has {} values, expected {blocks}",
                self.scales.len()
            ));
        }
        if let Some(m) = self.mins {
            if m.len() != blocks {
                return Err(format!("mins has {} values, expected {blocks}", m.len()));
            }
        }
        Ok(())
    }

    /// Code `i` (`< block_size`) of global block `blk`.
    fn code(&self, blk: usize, i: usize) -> u8 {
        let bb = self.block_size * self.bits / 8;
        let block = &self.packed[blk * bb..(blk + 1) * bb];
        let bit = i * self.bits;
        let lo = block[bit / 8] as u16;
        let hi = block.get(bit / 8 + 1).copied().unwrap_or(0) as u16;
        (((lo | (hi << 8)) >> (bit % 8)) & ((1u16 << self.bits) - 1)) as u8
    }

    /// Dequantized weight `[o, i]`, computed exactly like `QuantMatrix::dequantize`.
    fn weight(&self, o: usize, i: usize) -> f32 {
        let blk = o * (self.k / self.block_size) + i / self.block_size;
        let q = self.code(blk, i % self.block_size) as f32;
        let s = self.scales[blk];
        match self.mins {
            Some(m) => q * s + m[blk],
            None => (q - (1u32 << (self.bits - 1)) as f32) * s,
        }
    }
}

/// Whether [`PackedMatrix`] takes blocks of `block_size` weights (a positive
/// multiple of [`MIN_BLOCK`]; rows must also be a multiple of [`QB`] long).
pub fn supports_block(block_size: usize) -> bool {
    block_size > 0 && block_size.is_multiple_of(MIN_BLOCK)
}

/// Tuning knobs of [`PackedMatrix::matmul_with`]; `Default` is what
/// [`PackedMatrix::matmul`] uses (thresholds measured on a 2-core Zen 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Use the SIMD kernels when the CPU has them (else the portable path).
    pub simd: bool,
    /// Inputs with at most this many rows run the fused gemv (codes decoded
    /// once per row of `x`).
    pub gemv_max_rows: usize,
    /// Inputs with more rows than `gemv_max_rows` and at most this many
    /// dequantize one tile at a time into a small f32 buffer and run an f32
    /// micro-kernel over all rows of `x`; more rows run dequantize-panel +
    /// `matrixmultiply::sgemm`.
    pub tile_max_rows: usize,
    /// Output rows dequantized per sgemm call (rounded up to [`TILE`]).
    pub panel_rows: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            simd: true,
            gemv_max_rows: 3,
            tile_max_rows: 64,
            panel_rows: 256,
        }
    }
}

/// Code storage of a [`PackedMatrix`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Two rows' 4-bit codes per byte.
    Nibbles,
    /// One byte per code.
    Bytes,
}

/// One 64-byte, 64-aligned line of packed data.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// Where the gemv kernels find each block's 4 scales and 4 offset coefficients.
#[derive(Clone, Copy)]
enum Params<'a> {
    /// As unpacked by `PackedMatrix::unpack_params` (8 f32 per parameter set).
    Unpacked(&'a [f32]),
    /// In the records themselves, converted as each block is reached (by
    /// the x86-64 kernels only).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Records(ParamLayout),
}

/// Where a record keeps its scales and mins, and in which width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ParamLayout {
    /// Offset of the scales (after the codes).
    at: usize,
    /// Parameter sets per record: 1 (blocks of 32 or more) or 2 (blocks of 16).
    sub: usize,
    /// Bytes per scale: 2 (binary16) or 4 (f32).
    scale_bytes: usize,
    /// Bytes per min: 0 (symmetric), 2 or 4; the mins follow the scales.
    min_bytes: usize,
}

impl ParamLayout {
    /// Offset of set `h`'s 4 scales.
    fn scales_at(&self, h: usize) -> usize {
        self.at + h * TILE * self.scale_bytes
    }
    /// Offset of set `h`'s 4 mins.
    fn mins_at(&self, h: usize) -> usize {
        self.at + self.sub * TILE * self.scale_bytes + h * TILE * self.min_bytes
    }
    /// Bytes of all parameters of a record.
    fn bytes(&self) -> usize {
        self.sub * TILE * (self.scale_bytes + self.min_bytes)
    }
}

/// A block-quantized `[n, k]` weight matrix repacked for the fused kernels
/// (layout in the module docs).
#[derive(Clone)]
pub struct PackedMatrix {
    n: usize,
    k: usize,
    bits: usize,
    kind: Kind,
    /// `2^(bits-1)`, the symmetric zero point.
    half: f32,
    /// Blocks of [`QB`] per row.
    nb: usize,
    /// Bytes per (tile, block) record.
    stride: usize,
    params: ParamLayout,
    /// Packed records, tile after tile, block after block.
    data: Vec<Line>,
    /// Whether the vector kernels (AVX2+FMA+F16C, NEON) may run.
    simd: bool,
}

impl std::fmt::Debug for PackedMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedMatrix")
            .field("n", &self.n)
            .field("k", &self.k)
            .field("bits", &self.bits)
            .field("params", &self.params)
            .field("bytes", &self.bytes())
            .field("simd", &self.simd)
            .finish()
    }
}

impl OutPtr {
    /// Writes tile `o0 / TILE`'s `valid` outputs for each row of `dots`
    /// (`TILE` values per row) into `y` (`n` columns).
    ///
    /// # Safety
    /// `y` must hold `rows * n` values, `o0 + valid <= n`, and no other task
    /// may access columns `o0..o0 + valid`.
    unsafe fn put(self, dots: &[f32], n: usize, o0: usize, valid: usize) {
        for (r, d) in dots.chunks_exact(TILE).enumerate() {
            for (j, v) in d[..valid].iter().enumerate() {
                // SAFETY: inside `y` and owned by this task (caller's contract).
                unsafe { *self.0.add(r * n + o0 + j) = *v };
            }
        }
    }
}

thread_local! {
    /// Per-thread f32 buffer of the dequantizing paths.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Tile-blocks (4 rows x 32 weights) of work per parallel task, at least
/// (gemv and tile paths).
const MIN_TASK: usize = 1024;
/// Tiles per parallel task of the sgemm path, at least.
const MIN_GEMM_TASK: usize = 8;

impl PackedMatrix {
    /// Repacks a block-quantized matrix (see [`BlockQuant`] for the format).
    /// 4-bit codes use the nibble kernel; every other width is stored as one
    /// `u8` code per weight and runs the byte kernel.
    pub fn from_blocks(
        bits: usize,
        block_size: usize,
        n: usize,
        k: usize,
        packed: &[u8],
        scales: &[f32],
        mins: Option<&[f32]>,
    ) -> Result<Self, String> {
        Self::new(&BlockQuant {
            bits,
            block_size,
            n,
            k,
            packed,
            scales,
            mins,
        })
    }

    /// Repacks `q`; errors name the bad field.
    pub fn new(q: &BlockQuant) -> Result<Self, String> {
        q.validate()?;
        let (n, k) = (q.n, q.k);
        let kind = if q.bits == 4 {
            Kind::Nibbles
        } else {
            Kind::Bytes
        };
        let code_bytes = match kind {
            Kind::Nibbles => TILE * QB / 2,
            Kind::Bytes => TILE * QB,
        };
        let width = |v: &[f32]| {
            if v.iter().all(|&x| f16_exact(x).is_some()) {
                2
            } else {
                4
            }
        };
        let sub = if q.block_size.is_multiple_of(QB) {
            1
        } else {
            2
        };
        let params = ParamLayout {
            at: code_bytes,
            sub,
            scale_bytes: width(q.scales),
            min_bytes: q.mins.map_or(0, width),
        };
        let stride = code_bytes + params.bytes();
        let nb = k / QB;
        let total = n.div_ceil(TILE) * nb * stride;
        let mut data = vec![Line([0; 64]); total.div_ceil(64)];
        let bytes = lines_as_bytes_mut(&mut data);
        let in_blocks = k / q.block_size;
        let bs = q.block_size;
        let put = |dst: &mut [u8], v: f32, width: usize| match f16_exact(v) {
            Some(h) if width == 2 => dst[..2].copy_from_slice(&h.to_ne_bytes()),
            _ => dst[..4].copy_from_slice(&v.to_ne_bytes()),
        };
        for o in 0..n {
            let (t, r) = (o / TILE, o % TILE);
            for b in 0..nb {
                let rec = &mut bytes[(t * nb + b) * stride..][..stride];
                for i in 0..QB {
                    let col = b * QB + i;
                    let c = q.code(o * in_blocks + col / bs, col % bs);
                    match kind {
                        Kind::Nibbles => rec[(r / 2) * QB + i] |= c << (4 * (r % 2)),
                        Kind::Bytes => rec[r * QB + i] = c,
                    }
                }
                for h in 0..sub {
                    let blk = o * in_blocks + (b * QB + h * QB / sub) / bs;
                    let (sb, mb) = (params.scale_bytes, params.min_bytes);
                    put(&mut rec[params.scales_at(h) + r * sb..], q.scales[blk], sb);
                    if let Some(mins) = q.mins {
                        put(&mut rec[params.mins_at(h) + r * mb..], mins[blk], mb);
                    }
                }
            }
        }
        Ok(PackedMatrix {
            n,
            k,
            bits: q.bits,
            kind,
            half: (1u32 << (q.bits - 1)) as f32,
            nb,
            stride,
            params,
            data,
            simd: simd_available(),
        })
    }

    /// Output features.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Input features.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Bit width of the source codes.
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// Resident bytes (packed data plus this struct).
    pub fn bytes(&self) -> usize {
        self.data.len() * std::mem::size_of::<Line>() + std::mem::size_of::<Self>()
    }

    /// Whether scales (and mins, if any) are stored as binary16.
    pub fn half_params(&self) -> (bool, bool) {
        (self.params.scale_bytes == 2, self.params.min_bytes == 2)
    }

    /// Parameter sets per 32-weight record: 2 for blocks of 16, else 1.
    pub fn sets_per_record(&self) -> usize {
        self.params.sub
    }

    /// Unpacked parameters of one tile (8 f32 per set).
    fn params_len(&self) -> usize {
        8 * self.params.sub * self.nb
    }

    /// Whether [`PackedMatrix::matmul`] runs the vector kernels here
    /// (AVX2+FMA+F16C on x86-64, NEON on AArch64).
    pub fn uses_simd(&self) -> bool {
        self.simd
    }

    /// The dequantized matrix, row-major `[n, k]`, bit-identical to
    /// `QuantMatrix::dequantize`.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.n.div_ceil(TILE) * TILE * self.k];
        let mut params = vec![0f32; self.params_len()];
        for (t, dst) in out.chunks_mut(TILE * self.k).enumerate() {
            self.dequant_tile(t, &mut params, dst, false);
        }
        out.truncate(self.n * self.k);
        out
    }

    /// `y[r*n + o] = Σ_i x[r*k + i] · w[o, i]` for `rows = x.len() / k`.
    /// `exec.threads > 1` spreads the output rows over rayon's current pool
    /// ([`crate::parallel::guided`]; small matrices stay on the calling
    /// thread); the vector paths run when `exec.isa` allows them.
    ///
    /// # Panics
    /// If `x.len()` is not a multiple of `k` or `y.len() != rows * n`.
    pub fn matmul(&self, x: &[f32], y: &mut [f32], exec: crate::Exec) {
        let opts = Options {
            simd: exec.simd(),
            ..Options::default()
        };
        self.matmul_with(x, y, exec.threads, opts);
    }

    /// [`PackedMatrix::matmul`] on the portable (non-SIMD) kernels, for tests
    /// and comparisons.
    pub fn matmul_portable(&self, x: &[f32], y: &mut [f32], threads: usize) {
        let opts = Options {
            simd: false,
            ..Options::default()
        };
        self.matmul_with(x, y, threads, opts);
    }

    /// [`PackedMatrix::matmul`] with explicit [`Options`].
    pub fn matmul_with(&self, x: &[f32], y: &mut [f32], threads: usize, opts: Options) {
        let (n, k, nb) = (self.n, self.k, self.nb);
        assert!(
            x.len().is_multiple_of(k),
            "x has {} values, not a multiple of k = {k}",
            x.len()
        );
        let rows = x.len() / k;
        assert_eq!(
            y.len(),
            rows * n,
            "y must have rows * n = {} values",
            rows * n
        );
        if rows == 0 {
            return;
        }
        let simd = opts.simd && self.simd;
        let tiles = n.div_ceil(TILE);
        let out = OutPtr(y.as_mut_ptr());
        let per_task = MIN_TASK.div_ceil(nb * rows).max(1);
        if rows <= opts.gemv_max_rows {
            // Per-block multipliers of the offset term: Σx (mins) or -half·Σx (symmetric).
            let mul = if self.params.min_bytes > 0 {
                1.0
            } else {
                -self.half
            };
            let sxm: Vec<f32> = x
                .chunks_exact(QB / self.params.sub)
                .map(|c| mul * c.iter().sum::<f32>())
                .collect();
            super::parallel::guided(tiles, threads, per_task, 1, |r| {
                self.gemv_tiles(r, x, &sxm, out, simd)
            });
        } else if rows <= opts.tile_max_rows {
            super::parallel::guided(tiles, threads, per_task, 1, |r| {
                self.tile_rows(r, x, out, simd)
            });
        } else {
            let panel = opts.panel_rows.div_ceil(TILE).max(1);
            super::parallel::guided(tiles, threads, MIN_GEMM_TASK, 1, |r| {
                self.gemm_tiles(r, x, out, simd, panel)
            });
        }
    }

    /// Records of tile `t`.
    fn tile(&self, t: usize) -> &[u8] {
        let tb = self.nb * self.stride;
        &lines_as_bytes(&self.data)[t * tb..(t + 1) * tb]
    }

    /// Unpacks tile `tile`'s per-block parameters as f32, 8 per set (set `h`
    /// of record `b` at `8 (b sub + h)`): the 4 rows' scales, then their
    /// offset coefficients (mins, or the scales again when symmetric).
    fn unpack_params(&self, tile: &[u8], out: &mut [f32], simd: bool) {
        #[cfg(target_arch = "x86_64")]
        if simd {
            // SAFETY: `simd` is only true when AVX2, FMA and F16C were
            // detected; the kernel checks its slice lengths.
            unsafe { x86_64::unpack_params(tile, self.stride, self.params, out) };
            return;
        }
        #[cfg(target_arch = "aarch64")]
        if simd {
            // SAFETY: `simd` is only true when NEON was detected; the
            // kernel checks its slice lengths.
            unsafe { aarch64::unpack_params(tile, self.stride, self.params, out) };
            return;
        }
        let _ = simd;
        let p = self.params;
        let read = |b: &[u8], width: usize| -> f32 {
            if width == 2 {
                f16_to_f32(u16::from_ne_bytes([b[0], b[1]]))
            } else {
                f32::from_ne_bytes([b[0], b[1], b[2], b[3]])
            }
        };
        let sets = tile
            .chunks_exact(self.stride)
            .flat_map(|rec| (0..p.sub).map(move |h| (rec, h)));
        for ((rec, h), o) in sets.zip(out.chunks_exact_mut(8)) {
            let (sb, mb) = (p.scale_bytes, p.min_bytes);
            for r in 0..TILE {
                o[r] = read(&rec[p.scales_at(h) + r * sb..], sb);
                o[TILE + r] = if mb == 0 {
                    o[r]
                } else {
                    read(&rec[p.mins_at(h) + r * mb..], mb)
                };
            }
        }
    }

    /// Fused gemv over `tiles` for every row of `x`; writes `y` columns of those tiles.
    fn gemv_tiles(&self, tiles: Range<usize>, x: &[f32], sxm: &[f32], y: OutPtr, simd: bool) {
        let (n, k, nb) = (self.n, self.k, self.nb);
        let rows = x.len() / k;
        let mut params = vec![0f32; self.params_len()];
        let mut dots = vec![0f32; TILE * rows];
        // one row: the SIMD kernels read each block's parameters from its
        // record as they go, without a separate unpacking pass
        let in_place = rows == 1 && simd && cfg!(target_arch = "x86_64");
        for t in tiles {
            let tile = self.tile(t);
            let src = if in_place {
                Params::Records(self.params)
            } else {
                self.unpack_params(tile, &mut params, simd);
                Params::Unpacked(&params)
            };
            for ((xr, sr), d) in x
                .chunks_exact(k)
                .zip(sxm.chunks_exact(nb * self.params.sub))
                .zip(dots.chunks_exact_mut(TILE))
            {
                d.copy_from_slice(&self.tile_dot(tile, src, xr, sr, simd));
            }
            let o0 = t * TILE;
            // SAFETY: y has rows * n values, o0 + valid <= n, and this task
            // owns the columns of its tiles.
            unsafe { y.put(&dots, n, o0, (n - o0).min(TILE)) };
        }
    }

    /// Dot products of one tile's 4 rows with one activation row.
    fn tile_dot(
        &self,
        tile: &[u8],
        params: Params,
        x: &[f32],
        sxm: &[f32],
        simd: bool,
    ) -> [f32; TILE] {
        #[cfg(target_arch = "x86_64")]
        if simd {
            // SAFETY: `simd` is only true when AVX2, FMA and F16C were
            // detected; the kernels check their slice lengths.
            return unsafe {
                match (self.kind, self.params.sub) {
                    (Kind::Nibbles, 1) => x86_64::dot_q4::<1>(tile, self.stride, params, x, sxm),
                    (Kind::Nibbles, _) => x86_64::dot_q4::<2>(tile, self.stride, params, x, sxm),
                    (Kind::Bytes, 1) => x86_64::dot_q8::<1>(tile, self.stride, params, x, sxm),
                    (Kind::Bytes, _) => x86_64::dot_q8::<2>(tile, self.stride, params, x, sxm),
                }
            };
        }
        #[cfg(target_arch = "aarch64")]
        if simd {
            let Params::Unpacked(p) = params else {
                unreachable!("parameters are read in place only on x86-64")
            };
            let st = self.stride;
            // SAFETY: `simd` is only true when NEON was detected; the
            // kernels check their slice lengths.
            return unsafe {
                match (self.kind, self.params.sub) {
                    (Kind::Nibbles, 1) => aarch64::dot_q4::<1>(tile, st, p, x, sxm),
                    (Kind::Nibbles, _) => aarch64::dot_q4::<2>(tile, st, p, x, sxm),
                    (Kind::Bytes, 1) => aarch64::dot_q8::<1>(tile, st, p, x, sxm),
                    (Kind::Bytes, _) => aarch64::dot_q8::<2>(tile, st, p, x, sxm),
                }
            };
        }
        let _ = simd;
        let Params::Unpacked(params) = params else {
            unreachable!("parameters are read in place only by the SIMD kernels")
        };
        let sub = self.params.sub;
        let sl = QB / sub;
        let mut acc = [0f32; TILE];
        let mut codes = [0f32; QB];
        for (((rec, xb), sm), p) in tile
            .chunks_exact(self.stride)
            .zip(x.chunks_exact(QB))
            .zip(sxm.chunks_exact(sub))
            .zip(params.chunks_exact(8 * sub))
        {
            for (r, a) in acc.iter_mut().enumerate() {
                self.codes_portable(rec, r, &mut codes);
                for (h, &smh) in sm.iter().enumerate() {
                    let d = dot(&codes[h * sl..][..sl], &xb[h * sl..][..sl]);
                    *a += p[8 * h + r] * d + p[8 * h + TILE + r] * smh;
                }
            }
        }
        acc
    }

    /// Row `r`'s 32 codes of record `rec`, as f32.
    fn codes_portable(&self, rec: &[u8], r: usize, out: &mut [f32; QB]) {
        match self.kind {
            Kind::Nibbles => {
                let shift = 4 * (r % 2);
                let src = &rec[(r / 2) * QB..][..QB];
                for (o, &c) in out.iter_mut().zip(src) {
                    *o = ((c >> shift) & 15) as f32;
                }
            }
            Kind::Bytes => {
                for (o, &c) in out.iter_mut().zip(&rec[r * QB..][..QB]) {
                    *o = c as f32;
                }
            }
        }
    }

    /// Dequantizes tile `t` into `dst` (`TILE` rows of `k`, padding rows
    /// zero), using `params` ([`PackedMatrix::params_len`] values) as scratch.
    fn dequant_tile(&self, t: usize, params: &mut [f32], dst: &mut [f32], simd: bool) {
        let tile = self.tile(t);
        self.unpack_params(tile, params, simd);
        let sym = self.params.min_bytes == 0;
        #[cfg(target_arch = "x86_64")]
        if simd {
            // SAFETY: `simd` is only true when AVX2, FMA and F16C were
            // detected; the kernels check their slice lengths.
            unsafe {
                let (st, half) = (self.stride, self.half);
                match (self.kind, self.params.sub) {
                    (Kind::Nibbles, 1) => x86_64::dequant_q4::<1>(tile, st, params, sym, half, dst),
                    (Kind::Nibbles, _) => x86_64::dequant_q4::<2>(tile, st, params, sym, half, dst),
                    (Kind::Bytes, 1) => x86_64::dequant_q8::<1>(tile, st, params, sym, half, dst),
                    (Kind::Bytes, _) => x86_64::dequant_q8::<2>(tile, st, params, sym, half, dst),
                }
            }
            return;
        }
        #[cfg(target_arch = "aarch64")]
        if simd {
            // SAFETY: `simd` is only true when NEON was detected; the
            // kernels check their slice lengths.
            unsafe {
                let (st, half) = (self.stride, self.half);
                match (self.kind, self.params.sub) {
                    (Kind::Nibbles, 1) => {
                        aarch64::dequant_q4::<1>(tile, st, params, sym, half, dst)
                    }
                    (Kind::Nibbles, _) => {
                        aarch64::dequant_q4::<2>(tile, st, params, sym, half, dst)
                    }
                    (Kind::Bytes, 1) => aarch64::dequant_q8::<1>(tile, st, params, sym, half, dst),
                    (Kind::Bytes, _) => aarch64::dequant_q8::<2>(tile, st, params, sym, half, dst),
                }
            }
            return;
        }
        let k = self.k;
        let sub = self.params.sub;
        let sl = QB / sub;
        let mut codes = [0f32; QB];
        for (b, (rec, p)) in tile
            .chunks_exact(self.stride)
            .zip(params.chunks_exact(8 * sub))
            .enumerate()
        {
            for r in 0..TILE {
                self.codes_portable(rec, r, &mut codes);
                for h in 0..sub {
                    let out = &mut dst[r * k + b * QB + h * sl..][..sl];
                    let (s, m) = (p[8 * h + r], p[8 * h + TILE + r]);
                    for (o, q) in out.iter_mut().zip(&codes[h * sl..]) {
                        *o = if sym { (q - self.half) * s } else { q * s + m };
                    }
                }
            }
        }
    }

    /// Dequantizes each tile of `tiles` into a per-thread f32 buffer and
    /// multiplies it with every row of `x`.
    fn tile_rows(&self, tiles: Range<usize>, x: &[f32], y: OutPtr, simd: bool) {
        let (n, k) = (self.n, self.k);
        let mut params = vec![0f32; self.params_len()];
        let mut dots = vec![0f32; TILE * (x.len() / k)];
        with_scratch(TILE * k, |w| {
            for t in tiles {
                self.dequant_tile(t, &mut params, w, simd);
                tile_f32(w, x, &mut dots, simd);
                let o0 = t * TILE;
                // SAFETY: y has rows * n values, o0 + valid <= n, and this
                // task owns the columns of its tiles.
                unsafe { y.put(&dots, n, o0, (n - o0).min(TILE)) };
            }
        });
    }

    /// Dequantize-panel + sgemm over `tiles`, `panel` tiles per sgemm call.
    fn gemm_tiles(&self, tiles: Range<usize>, x: &[f32], y: OutPtr, simd: bool, panel: usize) {
        let (n, k) = (self.n, self.k);
        let rows = x.len() / k;
        let mut params = vec![0f32; self.params_len()];
        with_scratch(panel * TILE * k, |buf| {
            let mut t = tiles.start;
            while t < tiles.end {
                let te = (t + panel).min(tiles.end);
                for (tt, dst) in (t..te).zip(buf.chunks_mut(TILE * k)) {
                    self.dequant_tile(tt, &mut params, dst, simd);
                }
                let o0 = t * TILE;
                let np = (te * TILE).min(n) - o0;
                // SAFETY: A = x is rows x k (row stride k), B = panelᵀ is k x np
                // read from `buf` (np rows of k, so column stride k), C is the
                // rows x np block of `y` at column o0 with row stride n: all in
                // bounds, and columns o0..o0+np belong to this task only.
                unsafe {
                    matrixmultiply::sgemm(
                        rows,
                        k,
                        np,
                        1.0,
                        x.as_ptr(),
                        k as isize,
                        1,
                        buf.as_ptr(),
                        1,
                        k as isize,
                        0.0,
                        y.get().add(o0),
                        n as isize,
                        1,
                    );
                }
                t = te;
            }
        });
    }
}

/// Runs `f` on this thread's scratch buffer, grown to at least `len` values.
fn with_scratch(len: usize, f: impl FnOnce(&mut [f32])) {
    SCRATCH.with(|buf| {
        let mut buf = buf.borrow_mut();
        if buf.len() < len {
            buf.resize(len, 0.0);
        }
        f(&mut buf[..len]);
    });
}

/// Whether the vector kernels can run on this CPU: AVX2+FMA+F16C on
/// x86-64, NEON on AArch64.
fn simd_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("neon")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

fn lines_as_bytes(lines: &[Line]) -> &[u8] {
    // SAFETY: `Line` is `repr(C)` around `[u8; 64]` (no padding), so the
    // slice is `64 * len` initialised bytes with the same lifetime.
    unsafe { std::slice::from_raw_parts(lines.as_ptr().cast::<u8>(), lines.len() * 64) }
}

fn lines_as_bytes_mut(lines: &mut [Line]) -> &mut [u8] {
    // SAFETY: as in `lines_as_bytes`; the borrow is exclusive.
    unsafe { std::slice::from_raw_parts_mut(lines.as_mut_ptr().cast::<u8>(), lines.len() * 64) }
}

/// IEEE binary16 bits to f32 (exact).
fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h & 0x8000) as u32) << 16;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = match exp {
        // zero or subnormal: man * 2^-24, exact in f32
        0 => (man as f32 * f32::from_bits(0x3380_0000)).to_bits(),
        31 => 0x7f80_0000 | (man << 13),
        _ => ((exp + 112) << 23) | (man << 13),
    };
    f32::from_bits(sign | bits)
}

/// `v` as binary16 bits, when that conversion is exact (finite values only).
fn f16_exact(v: f32) -> Option<u16> {
    if !v.is_finite() {
        return None;
    }
    let bits = v.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32 - 127;
    let man = bits & 0x7f_ffff;
    let h = if v == 0.0 {
        sign
    } else if (-14..=15).contains(&exp) {
        sign | (((exp + 15) as u16) << 10) | (man >> 13) as u16
    } else if (-24..-14).contains(&exp) {
        // subnormal binary16: (2^23 + man) * 2^(exp - 23) = f * 2^-24
        sign | ((man | 0x80_0000) >> (-exp - 1)) as u16
    } else {
        return None;
    };
    (f16_to_f32(h).to_bits() == bits).then_some(h)
}

/// `out[r*4 + j] = Σ_i w[j*k + i] · x[r*k + i]`: a dequantized tile (4 rows of
/// `k`) times every row of `x`.
fn tile_f32(w: &[f32], x: &[f32], out: &mut [f32], simd: bool) {
    #[cfg(target_arch = "x86_64")]
    if simd {
        // SAFETY: `simd` is only true when AVX2, FMA and F16C were detected;
        // the kernel checks its slice lengths.
        unsafe { x86_64::tile_f32(w, x, out) };
        return;
    }
    #[cfg(target_arch = "aarch64")]
    if simd {
        // SAFETY: `simd` is only true when NEON was detected; the kernel
        // checks its slice lengths.
        unsafe { aarch64::tile_f32(w, x, out) };
        return;
    }
    let _ = simd;
    let k = w.len() / TILE;
    for (xr, o) in x.chunks_exact(k).zip(out.chunks_exact_mut(TILE)) {
        for (wr, v) in w.chunks_exact(k).zip(o.iter_mut()) {
            let mut acc = [0f32; 8];
            for (a, b) in wr.chunks_exact(8).zip(xr.chunks_exact(8)) {
                for ((s, p), q) in acc.iter_mut().zip(a).zip(b) {
                    *s += p * q;
                }
            }
            *v = acc.iter().sum();
        }
    }
}

/// Dot product of 16 or 32 terms with 8 partial sums (vectorizes on any target).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    for (ca, cb) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        for ((s, p), q) in acc.iter_mut().zip(ca).zip(cb) {
            *s += p * q;
        }
    }
    acc.iter().sum()
}

/// Plain reference: `x` `[rows, k]` times the dequantized `W` transposed,
/// accumulated in f64 -> `[rows, n]`.
pub fn reference_matmul(q: &BlockQuant, x: &[f32]) -> Vec<f32> {
    let (n, k) = (q.n, q.k);
    let w: Vec<f32> = (0..n * k).map(|j| q.weight(j / k, j % k)).collect();
    x.chunks_exact(k)
        .flat_map(|xr| {
            w.chunks_exact(k).map(move |wr| {
                wr.iter()
                    .zip(xr)
                    .map(|(a, b)| *a as f64 * *b as f64)
                    .sum::<f64>() as f32
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64* in [0, 1).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn unit(&mut self) -> f32 {
            (self.next() >> 40) as f32 / (1u64 << 24) as f32
        }
        /// In [lo, lo + span), rounded to binary16 when `half`.
        fn param(&mut self, lo: f32, span: f32, half: bool) -> f32 {
            let v = lo + span * self.unit();
            if half {
                // truncate to 10 mantissa bits: exactly representable in binary16 here
                f32::from_bits(v.to_bits() & !0x1fff)
            } else {
                v
            }
        }
    }

    struct Owned {
        bits: usize,
        block_size: usize,
        n: usize,
        k: usize,
        packed: Vec<u8>,
        scales: Vec<f32>,
        mins: Option<Vec<f32>>,
    }

    impl Owned {
        /// Random codes; scales (and mins) binary16-exact when `half`.
        fn random(
            rng: &mut Rng,
            bits: usize,
            bs: usize,
            n: usize,
            k: usize,
            mins: bool,
            half: bool,
        ) -> Self {
            let blocks = n * k / bs;
            Owned {
                bits,
                block_size: bs,
                n,
                k,
                packed: (0..n * k * bits / 8).map(|_| rng.next() as u8).collect(),
                scales: (0..blocks).map(|_| rng.param(0.01, 0.05, half)).collect(),
                mins: mins.then(|| (0..blocks).map(|_| rng.param(-0.3, 0.25, half)).collect()),
            }
        }
        fn view(&self) -> BlockQuant<'_> {
            BlockQuant {
                bits: self.bits,
                block_size: self.block_size,
                n: self.n,
                k: self.k,
                packed: &self.packed,
                scales: &self.scales,
                mins: self.mins.as_deref(),
            }
        }
    }

    fn close(got: &[f32], want: &[f32], what: &str) {
        assert_eq!(got.len(), want.len());
        let scale = want.iter().fold(1e-3f32, |a, v| a.max(v.abs()));
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-4 * scale,
                "{what}: y[{i}] = {g}, want {w}"
            );
        }
    }

    fn pool() -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap()
    }

    #[test]
    fn matches_reference_for_every_width_shape_and_path() {
        let pool = pool();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let shapes = [(1, 32), (5, 32), (8, 64), (13, 96), (36, 160), (130, 256)];
        for &bits in &BITS {
            for (si, &(n, k)) in shapes.iter().enumerate() {
                for mins in [false, true] {
                    let half = (si + mins as usize).is_multiple_of(2);
                    let q = Owned::random(&mut rng, bits, 32, n, k, mins, half);
                    let m = PackedMatrix::new(&q.view()).unwrap();
                    assert_eq!(m.half_params(), (half, mins && half));
                    let exact: Vec<f32> =
                        (0..n * k).map(|j| q.view().weight(j / k, j % k)).collect();
                    assert_eq!(m.dequantize(), exact);
                    for rows in [1, 2, 3, 7, 64] {
                        let x: Vec<f32> = (0..rows * k).map(|_| 2.0 * rng.unit() - 1.0).collect();
                        let want = reference_matmul(&q.view(), &x);
                        for (threads, portable) in [(1, false), (2, false), (1, true), (2, true)] {
                            let mut y = vec![f32::NAN; rows * n];
                            pool.install(|| {
                                if portable {
                                    m.matmul_portable(&x, &mut y, threads)
                                } else {
                                    m.matmul(
                                        &x,
                                        &mut y,
                                        crate::Exec::new(threads, crate::Isa::Avx512),
                                    )
                                }
                            });
                            let what = format!(
                                "bits {bits} n {n} k {k} mins {mins} half {half} rows {rows} \
                                 threads {threads} portable {portable}"
                            );
                            close(&y, &want, &what);
                        }
                    }
                }
            }
        }
    }

    /// Every path, SIMD and portable, split over 2 tasks (n = 1030 is large
    /// enough to split and not a multiple of the tile).
    #[test]
    fn forced_paths_agree_when_split() {
        let pool = pool();
        let mut rng = Rng(7);
        let (n, k) = (1030, 576);
        for (bits, mins, half) in [
            (4, true, false),
            (4, false, true),
            (8, false, false),
            (5, true, true),
            (5, false, true),
            (6, false, false),
            (6, true, true),
        ] {
            let q = Owned::random(&mut rng, bits, 32, n, k, mins, half);
            let m = PackedMatrix::new(&q.view()).unwrap();
            for rows in [1, 4, 9] {
                let x: Vec<f32> = (0..rows * k).map(|_| rng.unit() - 0.5).collect();
                let want = reference_matmul(&q.view(), &x);
                let paths = [
                    (usize::MAX, 0, 128),
                    (0, usize::MAX, 128),
                    (0, 0, 4),
                    (0, 0, 36),
                ];
                for ((gemv_max_rows, tile_max_rows, panel_rows), simd) in
                    paths.into_iter().flat_map(|p| [(p, true), (p, false)])
                {
                    let opts = Options {
                        simd,
                        gemv_max_rows,
                        tile_max_rows,
                        panel_rows,
                    };
                    let mut y = vec![f32::NAN; rows * n];
                    pool.install(|| m.matmul_with(&x, &mut y, 2, opts));
                    close(&y, &want, &format!("bits {bits} rows {rows} {opts:?}"));
                }
            }
        }
    }

    #[test]
    fn large_blocks_are_split_exactly() {
        let mut rng = Rng(11);
        for (bits, bs) in [(4, 64), (8, 128), (3, 64), (5, 64), (6, 128)] {
            let q = Owned::random(&mut rng, bits, bs, 6, 256, bits != 8, bits == 4);
            let m = PackedMatrix::new(&q.view()).unwrap();
            let x: Vec<f32> = (0..2 * 256).map(|_| rng.unit() - 0.5).collect();
            let mut y = vec![0f32; 2 * 6];
            m.matmul(&x, &mut y, crate::Exec::single());
            close(
                &y,
                &reference_matmul(&q.view(), &x),
                &format!("bits {bits} block {bs}"),
            );
        }
    }

    /// Blocks of 16 (two parameter sets per record) and of 48 (records
    /// straddling blocks): every width, symmetric and with mins, binary16
    /// and f32 parameters, every path, SIMD and portable, against the plain
    /// definition; dequantization is exact.
    #[test]
    fn sixteen_weight_blocks_match_reference_for_every_width_and_path() {
        let pool = pool();
        let mut rng = Rng(0x5EED_0016);
        let shapes = [
            (1, 32, 16),
            (5, 64, 16),
            (13, 96, 16),
            (36, 256, 16),
            (7, 96, 48),
        ];
        for &bits in &BITS {
            for (si, &(n, k, bs)) in shapes.iter().enumerate() {
                for mins in [false, true] {
                    let half = (si + mins as usize).is_multiple_of(2);
                    let q = Owned::random(&mut rng, bits, bs, n, k, mins, half);
                    let m = PackedMatrix::new(&q.view()).unwrap();
                    assert_eq!(m.sets_per_record(), 2);
                    assert_eq!(m.half_params(), (half, mins && half));
                    let exact: Vec<f32> =
                        (0..n * k).map(|j| q.view().weight(j / k, j % k)).collect();
                    assert_eq!(m.dequantize(), exact, "bits {bits} n {n} k {k} bs {bs}");
                    for rows in [1, 2, 5, 9] {
                        let x: Vec<f32> = (0..rows * k).map(|_| 2.0 * rng.unit() - 1.0).collect();
                        let want = reference_matmul(&q.view(), &x);
                        let paths = [(usize::MAX, 0, 128), (0, usize::MAX, 128), (0, 0, 4)];
                        for ((gemv_max_rows, tile_max_rows, panel_rows), simd) in
                            paths.into_iter().flat_map(|p| [(p, true), (p, false)])
                        {
                            let opts = Options {
                                simd,
                                gemv_max_rows,
                                tile_max_rows,
                                panel_rows,
                            };
                            let mut y = vec![f32::NAN; rows * n];
                            pool.install(|| m.matmul_with(&x, &mut y, 2, opts));
                            let what = format!(
                                "bits {bits} bs {bs} n {n} k {k} mins {mins} half {half} \
                                 rows {rows} {opts:?}"
                            );
                            close(&y, &want, &what);
                        }
                        let mut y = vec![f32::NAN; rows * n];
                        m.matmul(&x, &mut y, crate::Exec::single());
                        close(&y, &want, &format!("bits {bits} bs {bs} default path"));
                    }
                }
            }
        }
    }

    /// Blocks of 16 on a matrix large enough to split over tasks, with
    /// parameters read in place by the one-row SIMD gemv.
    #[test]
    fn sixteen_weight_blocks_split_over_tasks() {
        let pool = pool();
        let mut rng = Rng(23);
        let (n, k) = (1030, 512);
        for (bits, mins, half) in [
            (6, false, false),
            (6, true, true),
            (5, false, true),
            (3, false, true),
            (2, true, false),
            (4, true, false),
        ] {
            let q = Owned::random(&mut rng, bits, 16, n, k, mins, half);
            let m = PackedMatrix::new(&q.view()).unwrap();
            for rows in [1, 3, 70] {
                let x: Vec<f32> = (0..rows * k).map(|_| rng.unit() - 0.5).collect();
                let want = reference_matmul(&q.view(), &x);
                for portable in [false, true] {
                    let mut y = vec![f32::NAN; rows * n];
                    pool.install(|| {
                        if portable {
                            m.matmul_portable(&x, &mut y, 2)
                        } else {
                            m.matmul(&x, &mut y, crate::Exec::new(2, crate::Isa::Avx512))
                        }
                    });
                    close(
                        &y,
                        &want,
                        &format!("bits {bits} rows {rows} portable {portable}"),
                    );
                }
            }
        }
    }

    #[test]
    fn four_bit_codes_are_low_nibble_first() {
        // one row, one block: weight 0 = 3, weight 1 = 10, the rest 8 (zero); symmetric
        let mut packed = vec![0x88u8; 16];
        packed[0] = 0xA3;
        let m = PackedMatrix::from_blocks(4, 32, 1, 32, &packed, &[1.0], None).unwrap();
        let mut x = vec![0f32; 32];
        x[0] = 1.0;
        x[1] = 100.0;
        let mut y = [0f32; 1];
        m.matmul(&x, &mut y, crate::Exec::single());
        assert_eq!(y[0], (3.0 - 8.0) + 100.0 * (10.0 - 8.0));
    }

    #[test]
    fn binary16_conversions_are_exact() {
        for h in 0..=u16::MAX {
            let v = f16_to_f32(h);
            if v.is_finite() {
                assert_eq!(f16_exact(v), Some(h), "{h:#06x} -> {v}");
            } else {
                assert_eq!(f16_exact(v), None);
            }
        }
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        for v in [1.0 + 2f32.powi(-11), 65520.0, 2f32.powi(-25), 0.1, f32::NAN] {
            assert_eq!(f16_exact(v), None, "{v}");
        }
    }

    #[test]
    fn bad_inputs_name_the_field() {
        let err = |bits, bs, n, k, len, sc| {
            PackedMatrix::from_blocks(bits, bs, n, k, &vec![0; len], &vec![1.0; sc], None)
                .unwrap_err()
        };
        assert!(err(7, 32, 1, 32, 28, 1).contains("bits"));
        assert!(err(4, 8, 1, 32, 16, 4).contains("block_size"));
        assert!(err(4, 32, 1, 48, 24, 1).contains("k ="));
        // blocks of 16 still need rows of whole 32-weight records
        assert!(err(6, 16, 1, 48, 36, 3).contains("k ="));
        assert!(err(4, 32, 0, 32, 0, 0).contains("n must"));
        assert!(err(4, 32, 1, 32, 15, 1).contains("packed"));
        assert!(err(4, 32, 1, 32, 16, 2).contains("scales"));
    }
}
