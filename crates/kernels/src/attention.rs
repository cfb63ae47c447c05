//! Scaled-dot-product attention over grouped-query heads with an additive
//! mask: the arithmetic of `EbAttention`. Decode steps (few query rows) run
//! direct loops; longer inputs run both products per head on the packed f32
//! kernel ([`crate::gemm`]), through each head's row stride. [`reference`]
//! is the plain f64 version the fused path is tested against.

use crate::gemm::{OutPtr, PackedF32};
use crate::softmax::{exp_row, softmax};
use crate::{Exec, Isa};
use rayon::prelude::*;

/// Query rows from which the scores and the weighted sum run on the packed kernel.
const PACKED_MIN_ROWS: usize = 8;

/// Query rows per block of the packed path (a multiple of the kernel's 6 rows).
const ROW_BLOCK: usize = 48;

/// Sizes of one attention call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    /// Batch.
    pub b: usize,
    /// Query heads.
    pub h: usize,
    /// Key/value heads (divides `h`).
    pub kv: usize,
    /// Query rows.
    pub s: usize,
    /// Key rows.
    pub t: usize,
    /// Query/key width.
    pub d: usize,
    /// Value width.
    pub dv: usize,
}

/// An additive mask broadcast over `[b, h, s, t]`: `shape` is
/// `[mb, mh, ms, t]`, each of `mb`, `mh`, `ms` either 1 or the full size.
#[derive(Debug, Clone, Copy)]
pub struct Mask<'a> {
    /// Values, row-major in `shape`.
    pub data: &'a [f32],
    /// Its shape, padded to rank 4 with leading 1s.
    pub shape: [usize; 4],
}

impl<'a> Mask<'a> {
    /// The rows of batch `b`, query head `i` (`ms` rows of `t`), and the
    /// stride between query rows (0 when every row shares one).
    fn head(&self, b: usize, i: usize) -> (&'a [f32], usize) {
        let [mb, mh, ms, t] = self.shape;
        let at = ((if mb == 1 { 0 } else { b }) * mh + if mh == 1 { 0 } else { i }) * ms * t;
        (&self.data[at..at + ms * t], if ms == 1 { 0 } else { t })
    }
}

impl Dims {
    fn check(
        &self,
        q: usize,
        k: usize,
        v: usize,
        mask: Option<&Mask>,
        out: usize,
    ) -> Result<(), String> {
        let Dims {
            b,
            h,
            kv,
            s,
            t,
            d,
            dv,
        } = *self;
        if kv == 0 || h % kv != 0 {
            return Err(format!(
                "{h} query heads are not a multiple of {kv} key/value heads"
            ));
        }
        let want = [
            ("q", q, b * h * s * d),
            ("k", k, b * kv * t * d),
            ("v", v, b * kv * t * dv),
            ("out", out, b * h * s * dv),
        ];
        for (name, got, want) in want {
            if got != want {
                return Err(format!("{name} has {got} values, expected {want}"));
            }
        }
        let Some(m) = mask else { return Ok(()) };
        let [mb, mh, ms, mt] = m.shape;
        let fits = |d: usize, full: usize| d == 1 || d == full;
        if mt != t || !fits(mb, b) || !fits(mh, h) || !fits(ms, s) {
            return Err(format!(
                "mask shape {:?} does not broadcast to [{b}, {h}, {s}, {t}]",
                m.shape
            ));
        }
        if m.data.len() != mb * mh * ms * mt {
            return Err(format!(
                "mask has {} values, expected {:?}",
                m.data.len(),
                m.shape
            ));
        }
        Ok(())
    }
}

/// How `q`, `k`, `v` and the output order their axes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// `[b, heads, rows, width]`, each head's rows contiguous (the default).
    #[default]
    Heads,
    /// `[b, rows, heads, width]`, each row's heads side by side: what a
    /// projection reshaped to heads gives before any transpose (attribute
    /// `layout = "bshd"`).
    Tokens,
}

/// Computes attention into `out` (`[b, h, s, dv]`, or `[b, s, h, dv]` in
/// [`Layout::Tokens`], as are `q`, `k` and `v`); heads are spread over
/// `exec.threads` when the work is large enough.
///
/// # Errors
/// When a slice length does not match `dims`.
#[allow(clippy::too_many_arguments)]
pub fn attend(
    layout: Layout,
    dims: Dims,
    scale: f32,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: Option<Mask<'_>>,
    out: &mut [f32],
    exec: Exec,
) -> Result<(), String> {
    let Exec { threads, isa } = exec;
    dims.check(q.len(), k.len(), v.len(), mask.as_ref(), out.len())?;
    let Dims {
        h, kv, s, t, d, dv, ..
    } = dims;
    if out.is_empty() {
        return Ok(());
    }
    let rep = h / kv;
    // (offset of head `i` of batch `b`, stride between its rows), per tensor
    let at = |b: usize, i: usize, heads: usize, rows: usize, width: usize| match layout {
        Layout::Heads => ((b * heads + i) * rows * width, width),
        Layout::Tokens => (b * rows * heads * width + i * width, heads * width),
    };
    let o = OutPtr(out.as_mut_ptr());
    let head = |bh: usize, scratch: &mut Scratch| {
        let (b, i) = (bh / h, bh % h);
        let (qa, qs) = at(b, i, h, s, d);
        let (ka, ks) = at(b, i / rep, kv, t, d);
        let (va, vs) = at(b, i / rep, kv, t, dv);
        let (oa, os) = at(b, i, h, s, dv);
        let m = mask.map(|m| m.head(b, i));
        fn view(x: &[f32], a: usize, stride: usize, rows: usize, width: usize) -> (&[f32], usize) {
            let end = if rows == 0 {
                a
            } else {
                a + (rows - 1) * stride + width
            };
            (&x[a..end], stride)
        }
        // SAFETY: `dims.check` gave `out` b·h·s·dv values; head (b, i)'s
        // rows oa + r·os .. + dv lie inside it, and no other head writes them.
        let oh = unsafe { OutPtr(o.get().add(oa)) };
        let io = HeadIo {
            q: view(q, qa, qs, s, d),
            k: view(k, ka, ks, t, d),
            v: view(v, va, vs, t, dv),
            mask: m,
            o: (oh, os),
        };
        one_head(dims, scale, io, scratch, isa);
    };
    if threads > 1 && s * t * (d + dv) * h >= 1 << 16 {
        (0..dims.b * h)
            .into_par_iter()
            .for_each_init(Scratch::new, |scratch, bh| head(bh, scratch));
    } else {
        let mut scratch = Scratch::new();
        for bh in 0..dims.b * h {
            head(bh, &mut scratch);
        }
    }
    Ok(())
}

/// Per-thread buffers of [`one_head`]: the scores, and `scale · Kᵀ` and `V`
/// packed for the f32 kernel (`edgebench_kernels::gemm`).
struct Scratch {
    p: Vec<f32>,
    /// Each row's sum of unnormalised weights.
    sums: Vec<f32>,
    kt: PackedF32,
    v: PackedF32,
}

impl Scratch {
    fn new() -> Self {
        Scratch {
            p: Vec::new(),
            sums: Vec::new(),
            kt: PackedF32::empty(),
            v: PackedF32::empty(),
        }
    }
}

/// One (batch, head)'s operands, each with the stride between its rows:
/// `q [s, d]`, `k [t, d]`, `v [t, dv]`, the mask's rows (stride 0: one row
/// shared) and the output `o [s, dv]`.
#[derive(Clone, Copy)]
struct HeadIo<'a> {
    q: (&'a [f32], usize),
    k: (&'a [f32], usize),
    v: (&'a [f32], usize),
    mask: Option<(&'a [f32], usize)>,
    o: (OutPtr, usize),
}

/// One (batch, head): `o` from `q`, `k`, `v` and the mask ([`HeadIo`]).
///
/// From [`PACKED_MIN_ROWS`] query rows on, both products run on the packed
/// f32 kernel: `scale · Kᵀ` and `V` are packed from their strided views
/// (`t · (d + dv)` values, against `2 · s · t · (d + dv)` FLOPs), and the
/// kernel reads `q` and writes `o` through their row strides.
fn one_head(dims: Dims, scale: f32, io: HeadIo<'_>, scratch: &mut Scratch, isa: Isa) {
    let Dims { s, t, d, dv, .. } = dims;
    if s >= PACKED_MIN_ROWS && t > 0 && d > 0 && dv > 0 {
        packed_head(dims, scale, io, scratch, isa);
        return;
    }
    let HeadIo {
        q: (q, qs),
        k: (k, ks),
        v: (v, vs),
        mask,
        o: (o, os),
    } = io;
    let p = &mut scratch.p;
    p.clear();
    p.resize(s * t, 0.0);
    for (r, pr) in p.chunks_exact_mut(t).enumerate() {
        let qr = &q[r * qs..][..d];
        for (j, pj) in pr.iter_mut().enumerate() {
            *pj = scale * dot(qr, &k[j * ks..][..d]);
        }
        softmax(pr, mask.map(|(m, stride)| &m[r * stride..][..t]), isa);
    }
    for (r, pr) in p.chunks_exact(t).enumerate() {
        // SAFETY: row r of this head's output: dv values at o + r·os,
        // inside `out` and written by this head only (see `attend`).
        let or = unsafe { std::slice::from_raw_parts_mut(o.get().add(r * os), dv) };
        or.fill(0.0);
        for (j, &w) in pr.iter().enumerate() {
            if w != 0.0 {
                for (a, &b) in or.iter_mut().zip(&v[j * vs..][..dv]) {
                    *a += w * b;
                }
            }
        }
    }
}

/// [`one_head`] on the packed f32 kernel, [`ROW_BLOCK`] query rows at a
/// time. A block multiplies only the keys up to the last one its mask
/// leaves visible (not `-inf`): exact, since hidden keys weigh `e^-inf = 0`,
/// and under a causal mask it skips about a third of both products.
fn packed_head(dims: Dims, scale: f32, io: HeadIo<'_>, scratch: &mut Scratch, isa: Isa) {
    let Dims { s, t, d, dv, .. } = dims;
    let HeadIo {
        q: (q, qs),
        k: (k, ks),
        v: (v, vs),
        mask,
        o: (o, os),
    } = io;
    // W [d, t] = scale · kᵀ: element (i, j) is k[j · ks + i]
    scratch.kt.repack(k, (d, t), (1, ks), scale);
    scratch.v.repack(v, (t, dv), (vs, 1), 1.0);
    let visible = |r: usize| match mask {
        Some((m, stride)) => m[r * stride..][..t]
            .iter()
            .rposition(|&x| x != f32::NEG_INFINITY)
            .map_or(0, |j| j + 1),
        None => t,
    };
    // one mask row shared by every query row (BERT's padding): one scan
    let shared = matches!(mask, None | Some((_, 0))).then(|| visible(0));
    for r0 in (0..s).step_by(ROW_BLOCK) {
        let rows = ROW_BLOCK.min(s - r0);
        let te = shared.unwrap_or_else(|| (r0..r0 + rows).map(visible).max().unwrap_or(0));
        // every score is written by the product below: grow, never clear
        if scratch.p.len() < rows * te {
            scratch.p.resize(rows * te, 0.0);
        }
        let p = &mut scratch.p[..rows * te];
        // SAFETY: q holds s rows of d values qs apart (`view` in `attend`),
        // p rows x te; te <= t keys and d are inside the packed kᵀ.
        unsafe {
            scratch.kt.matmul_strided(
                (q[r0 * qs..].as_ptr(), qs),
                (p.as_mut_ptr(), te),
                (rows, d, te),
                isa,
            )
        };
        // unnormalised weights; each output row is scaled once it is summed
        // (dv values instead of te)
        let sums = &mut scratch.sums;
        sums.clear();
        if te > 0 {
            for (r, pr) in p.chunks_exact_mut(te).enumerate() {
                let m = mask.map(|(m, stride)| &m[(r0 + r) * stride..][..te]);
                sums.push(exp_row(pr, m, isa));
            }
        }
        // SAFETY: p holds rows x te values; this head's output rows r0.. are
        // dv values os apart, inside `out` and written by this head only
        // (te = 0, every key hidden: the product writes zeros).
        unsafe {
            scratch.v.matmul_strided(
                (p.as_ptr(), te),
                (o.get().add(r0 * os), os),
                (rows, te, dv),
                isa,
            )
        };
        for (r, &sum) in sums.iter().enumerate() {
            // a row with every key hidden has weights and output 0
            let inv = if sum > 0.0 { 1.0 / sum } else { 0.0 };
            // SAFETY: output row r0 + r, as above
            let or = unsafe { std::slice::from_raw_parts_mut(o.get().add((r0 + r) * os), dv) };
            for x in or {
                *x *= inv;
            }
        }
    }
}

/// Dot product with 8 independent partial sums (so it vectorises).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Plain definition, for tests: every score, then softmax, then the sum.
pub fn reference(
    dims: Dims,
    scale: f32,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: Option<Mask<'_>>,
) -> Vec<f32> {
    let Dims {
        b,
        h,
        kv,
        s,
        t,
        d,
        dv,
    } = dims;
    let mut out = vec![0f32; b * h * s * dv];
    for bi in 0..b {
        for i in 0..h {
            let kvh = bi * kv + i / (h / kv);
            for r in 0..s {
                let qr = &q[((bi * h + i) * s + r) * d..][..d];
                let sc: Vec<f64> = (0..t)
                    .map(|j| {
                        let kr = &k[(kvh * t + j) * d..][..d];
                        let dot: f64 = qr.iter().zip(kr).map(|(&x, &y)| x as f64 * y as f64).sum();
                        let m = mask.map_or(0.0, |m| {
                            let (rows, stride) = m.head(bi, i);
                            rows[r * stride + j] as f64
                        });
                        scale as f64 * dot + m
                    })
                    .collect();
                let max = sc.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                if max == f64::NEG_INFINITY {
                    continue;
                }
                let e: Vec<f64> = sc.iter().map(|x| (x - max).exp()).collect();
                let z: f64 = e.iter().sum();
                let o = &mut out[((bi * h + i) * s + r) * dv..][..dv];
                for (j, w) in e.iter().enumerate() {
                    let vr = &v[(kvh * t + j) * dv..][..dv];
                    for (a, &x) in o.iter_mut().zip(vr) {
                        *a += (w / z * x as f64) as f32;
                    }
                }
            }
        }
    }
    out
}
