//! `EbAttention`: fused scaled-dot-product attention with grouped-query
//! heads and an additive mask, and [`fuse_graph`], the load-time rewrite that
//! puts it in place of the decomposed attention our Llama graphs are written
//! with.
//!
//! The graph files EdgeBench writes keep attention as standard ONNX ops
//! (`Reshape`, `Unsqueeze`, `Transpose`, `MatMul`, `Mul`, `Add`, `Softmax`,
//! `MatMul`, `Reshape`), so an f32 export also runs in onnxruntime. tract
//! runs that chain as 10 ops per layer, packing `K` and `V` for its matrix
//! multiplier at every decode step (and BERT's scale and mask as
//! broadcasting element-wise ops). Before tract parses a graph,
//! [`fuse_graph`] replaces each chain it recognises (structurally, not by
//! node names) with one `EbAttention` node; the file on disk is unchanged.
//!
//! Semantics, for inputs `q [b, h, s, d]`, `k [b, kv, t, d]`,
//! `v [b, kv, t, dv]` and an optional additive `mask` broadcast to
//! `[b, h, s, t]` (`[s, t]`, `[b, 1, 1, t]`, ...): query head `i` attends
//! with key/value head `i / (h / kv)`, and
//! `out[b, i, r] = softmax_j(scale · q[b, i, r] · k[b, i / (h / kv), j] + mask[b, i, r, j]) · v[..]`,
//! `scale` an attribute (default `1 / sqrt(d)`). A row whose mask hides
//! every key gives zeros. With attribute `layout = "bshd"` ([`Layout`]) the
//! inputs are `[b, s, h, d]`, `[b, t, kv, d]`, `[b, t, kv, dv]` and the output
//! `[b, s, h, dv]`, so BERT's four transposes per layer go into the op.
//! Decode steps (few query rows) run direct loops; longer inputs run both
//! products per head on EdgeBench's packed f32 kernel (`gemm.rs`), through
//! each head's row stride.

use super::gemm::{OutPtr, PackedF32};
use super::rewrite::{float_attr, replace_all, string_attr, Fused, GraphView};
use super::softmax::{exp_row, softmax};
use edgebench_kernels::{Exec, Isa};
use rayon::prelude::*;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

/// Op type in the ONNX graph.
pub const OP_NAME: &str = "EbAttention";

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
/// packed for the f32 kernel (`gemm.rs`).
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
fn dot(a: &[f32], b: &[f32]) -> f32 {
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

/// Parses an `EbAttention` node.
pub fn parse(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let scale = node.get_attr_opt::<f32>("scale")?;
    if scale.is_some_and(|s| !s.is_finite()) {
        bail!(
            "{OP_NAME} node `{}`: attribute scale must be finite",
            node.name
        );
    }
    let layout = match node.get_attr_opt::<&str>("layout")? {
        None | Some("bhsd") => Layout::Heads,
        Some("bshd") => Layout::Tokens,
        Some(other) => bail!(
            "{OP_NAME} node `{}`: attribute layout must be \"bhsd\" or \"bshd\", got {other:?}",
            node.name
        ),
    };
    let has_mask = super::has_input(node, 3);
    let exec = super::exec_of(node)?;
    Ok((
        expand(AttentionExpansion {
            scale,
            layout,
            has_mask,
            exec,
        }),
        vec![],
    ))
}

#[derive(Debug, Clone)]
struct AttentionExpansion {
    scale: Option<f32>,
    layout: Layout,
    has_mask: bool,
    exec: Exec,
}

impl Expansion for AttentionExpansion {
    fn name(&self) -> StaticName {
        OP_NAME.into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 3 + self.has_mask as usize)?;
        check_output_arity(outputs, 1)?;
        for t in &inputs[..3] {
            s.equals(&t.rank, 4)?;
            s.equals(&t.datum_type, f32::datum_type())?;
        }
        s.equals(&outputs[0].datum_type, f32::datum_type())?;
        s.equals(&outputs[0].rank, 4)?;
        for ax in 0..3 {
            s.equals(&outputs[0].shape[ax], &inputs[0].shape[ax])?;
        }
        s.equals(&outputs[0].shape[3], &inputs[2].shape[3])?;
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let op = Attention {
            scale: self.scale,
            layout: self.layout,
            exec: self.exec,
        };
        model.wire_node(prefix, op, inputs)
    }
}

/// The typed, runnable op.
#[derive(Debug, Clone, PartialEq)]
pub struct Attention {
    /// Score multiplier; `None`: `1 / sqrt(d)`.
    pub scale: Option<f32>,
    /// Axis order of the inputs and the output.
    pub layout: Layout,
    /// Threads and instructions of the kernels.
    pub exec: Exec,
}

// `parse` rejects non-finite scales, so equality is total.
impl Eq for Attention {}

impl Op for Attention {
    fn name(&self) -> StaticName {
        OP_NAME.into()
    }

    op_as_typed_op!();
}

impl EvalOp for Attention {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (qs, ks, vs) = (inputs[0].shape(), inputs[1].shape(), inputs[2].shape());
        ensure!(
            qs.len() == 4
                && ks.len() == 4
                && vs.len() == 4
                && qs[0] == ks[0]
                && ks[..3] == vs[..3]
                && qs[3] == ks[3],
            "{OP_NAME}: shapes Q {qs:?}, K {ks:?}, V {vs:?} do not fit {}",
            match self.layout {
                Layout::Heads => "[b, h, s, d], [b, kv, t, d], [b, kv, t, dv]",
                Layout::Tokens => "[b, s, h, d], [b, t, kv, d], [b, t, kv, dv]",
            }
        );
        // axes of heads and rows
        let (ha, ra) = match self.layout {
            Layout::Heads => (1, 2),
            Layout::Tokens => (2, 1),
        };
        let dims = Dims {
            b: qs[0],
            h: qs[ha],
            kv: ks[ha],
            s: qs[ra],
            t: ks[ra],
            d: qs[3],
            dv: vs[3],
        };
        let scale = self.scale.unwrap_or(1.0 / (dims.d as f32).sqrt());
        fn slice(t: &TValue) -> TractResult<&[f32]> {
            t.try_as_plain_ram()?.as_slice::<f32>()
        }
        let mask = match inputs.get(3) {
            Some(m) => {
                let ms = m.shape();
                ensure!(
                    ms.len() <= 4,
                    "{OP_NAME}: mask of rank {} (at most 4)",
                    ms.len()
                );
                let mut shape = [1usize; 4];
                shape[4 - ms.len()..].copy_from_slice(ms);
                Some(Mask {
                    data: slice(m)?,
                    shape,
                })
            }
            None => None,
        };
        let shape = match self.layout {
            Layout::Heads => [dims.b, dims.h, dims.s, dims.dv],
            Layout::Tokens => [dims.b, dims.s, dims.h, dims.dv],
        };
        // SAFETY: `attend` writes every output row (a product with beta 0,
        // or a zeroed row it then adds to) or fails.
        let out = unsafe {
            super::f32_output(&shape, |out| {
                attend(
                    self.layout,
                    dims,
                    scale,
                    slice(&inputs[0])?,
                    slice(&inputs[1])?,
                    slice(&inputs[2])?,
                    mask,
                    out,
                    self.exec,
                )
                .map_err(|e| anyhow!("{OP_NAME}: {e}"))
            })?
        };
        Ok(tvec!(out))
    }
}

impl TypedOp for Attention {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let (q, v) = (&inputs[0].shape, &inputs[2].shape);
        ensure!(
            q.rank() == 4 && v.rank() == 4,
            "{OP_NAME}: Q and V must have rank 4"
        );
        Ok(tvec!(f32::fact([
            q[0].clone(),
            q[1].clone(),
            q[2].clone(),
            v[3].clone()
        ])))
    }

    as_op!();
}

/// Replaces every decomposed grouped-query attention chain of `graph` with
/// one `EbAttention` node and returns how many it replaced.
///
/// The chain, as `model::llama` writes it (each intermediate used once and
/// not a graph output):
/// `q5 = Reshape(q, [1, kv, rep, -1, d])`,
/// `s = MatMul(q5, Transpose(Unsqueeze(k, [2]), [0, 1, 2, 4, 3]))`,
/// `p = Softmax(Add(Mul(s, scale), mask), -1)`,
/// `o = Reshape(MatMul(p, Unsqueeze(v, [2])), [1, kv · rep, -1, dv])`,
/// becomes `o = EbAttention(q, k, v, mask)` with `scale` as an attribute;
/// and the multi-head chain `model::bert` writes (see `heads_chain`).
pub fn fuse_graph(graph: &mut pb::GraphProto) -> usize {
    let matches: Vec<Chain> = {
        let view = GraphView::new(graph);
        (0..graph.node.len())
            .filter(|&i| graph.node[i].op_type == "Softmax")
            .filter_map(|i| view.chain_at(i))
            .collect()
    };
    let fused = matches
        .into_iter()
        .map(|c| Fused {
            nodes: c.nodes,
            last: c.last,
            named_after: c.last,
            inputs: vec![c.q, c.k, c.v, c.mask],
            attributes: std::iter::once(float_attr("scale", c.scale))
                .chain((c.layout == Layout::Tokens).then(|| string_attr("layout", "bshd")))
                .collect(),
        })
        .collect();
    replace_all(graph, OP_NAME, "eb_attention", fused)
}

/// One recognised chain: the node indices it replaces (`last` produces its
/// output) and the fused node's inputs.
struct Chain {
    nodes: Vec<usize>,
    last: usize,
    q: String,
    k: String,
    v: String,
    mask: String,
    scale: f32,
    layout: Layout,
}

impl GraphView<'_> {
    fn chain_at(&self, softmax: usize) -> Option<Chain> {
        let n = |i: usize| &self.g.node[i];
        let sm = n(softmax);
        if sm.input.len() != 1 || sm.output.len() != 1 {
            return None;
        }
        match self.int_attr(softmax, "axis").as_deref() {
            Some([-1]) | Some([4]) | None => {}
            _ => return None,
        }
        let add = self.only_use(&sm.input[0], "Add", 2)?;
        let mul = self.only_use(&n(add).input[0], "Mul", 2)?;
        let mask = n(add).input[1].clone();
        let scale = self.scalar_f32(&n(mul).input[1])?;
        let mm1 = self.only_use(&n(mul).input[0], "MatMul", 2)?;
        let mm2 = self.single_consumer(&sm.output[0], "MatMul")?;
        if n(mm2).input.len() != 2 || n(mm2).input[0] != sm.output[0] {
            return None;
        }
        let Some(rq) = self.only_use(&n(mm1).input[0], "Reshape", 2) else {
            return self.heads_chain([mm1, mul, add, softmax, mm2], mask, scale);
        };
        let tr = self.only_use(&n(mm1).input[1], "Transpose", 1)?;
        if self.int_attr(tr, "perm")? != [0, 1, 2, 4, 3] {
            return None;
        }
        let uk = self.only_use(&n(tr).input[0], "Unsqueeze", 2)?;
        let uv = self.only_use(&n(mm2).input[1], "Unsqueeze", 2)?;
        let ro = self.single_consumer(&n(mm2).output[0], "Reshape")?;
        if n(ro).input.len() != 2 || n(ro).input[0] != n(mm2).output[0] {
            return None;
        }
        if self.ints(&n(uk).input[1])? != [2] || self.ints(&n(uv).input[1])? != [2] {
            return None;
        }
        let [b, kv, rep, -1, d] = self.ints(&n(rq).input[1])?[..] else {
            return None;
        };
        let [b2, h, -1, dv] = self.ints(&n(ro).input[1])?[..] else {
            return None;
        };
        if b != 1 || b2 != 1 || kv < 1 || rep < 1 || h != kv * rep || d < 1 || dv < 1 {
            return None;
        }
        Some(Chain {
            nodes: vec![rq, tr, uk, mm1, mul, add, softmax, uv, mm2, ro],
            last: ro,
            q: n(rq).input[0].clone(),
            k: n(uk).input[0].clone(),
            v: n(uv).input[0].clone(),
            mask,
            scale,
            layout: Layout::Heads,
        })
    }

    /// The multi-head chain `model::bert` writes, with `q`, `k` and `v` each
    /// `Transpose(Reshape(x, [0, 0, h, d]), [0, 2, 1, 3])`:
    /// `MatMul(q, Transpose(k, [0, 1, 3, 2]))`, `Mul(scale)`, `Add(mask)`,
    /// `Softmax`, `MatMul(p, v)`.
    fn heads_chain(
        &self,
        [mm1, mul, add, softmax, mm2]: [usize; 5],
        mask: String,
        scale: f32,
    ) -> Option<Chain> {
        let n = |i: usize| &self.g.node[i];
        let tr = self.only_use(&n(mm1).input[1], "Transpose", 1)?;
        if self.int_attr(tr, "perm")? != [0, 1, 3, 2] {
            return None;
        }
        let (q, k, v) = (&n(mm1).input[0], &n(tr).input[0], &n(mm2).input[1]);
        let mut heads = None;
        let mut transposes = vec![];
        for x in [q, k, v] {
            let t = *self.producer.get(x.as_str())?;
            if n(t).op_type != "Transpose" || self.int_attr(t, "perm")? != [0, 2, 1, 3] {
                return None;
            }
            let r = *self.producer.get(n(t).input[0].as_str())?;
            if n(r).op_type != "Reshape" || n(r).input.len() != 2 {
                return None;
            }
            let [0, 0, h, d] = self.ints(&n(r).input[1])?[..] else {
                return None;
            };
            if h < 1 || d < 1 || heads.is_some_and(|hd| hd != (h, d)) {
                return None;
            }
            heads = Some((h, d));
            transposes.push(self.only_use(x, "Transpose", 1));
        }
        // The heads back to rows: Transpose(o, [0, 2, 1, 3]).
        let back = self
            .single_consumer(&n(mm2).output[0], "Transpose")
            .filter(|&t| self.int_attr(t, "perm").as_deref() == Some(&[0, 2, 1, 3][..]));
        let mut nodes = vec![tr, mm1, mul, add, softmax, mm2];
        if let (&[Some(tq), Some(tk), Some(tv)], Some(back)) = (&transposes[..], back) {
            // nothing else reads the heads-first copies: attend in rows-first
            // order and drop all four transposes
            nodes.extend([tq, tk, tv, back]);
            let input = |t: usize| n(t).input[0].clone();
            return Some(Chain {
                nodes,
                last: back,
                q: input(tq),
                k: input(tk),
                v: input(tv),
                mask,
                scale,
                layout: Layout::Tokens,
            });
        }
        Some(Chain {
            nodes,
            last: mm2,
            q: q.clone(),
            k: k.clone(),
            v: v.clone(),
            mask,
            scale,
            layout: Layout::Heads,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::data;

    fn check(dims: Dims, causal: bool) {
        let Dims {
            b,
            h,
            kv,
            s,
            t,
            d,
            dv,
        } = dims;
        let (q, k, v) = (
            data(b * h * s * d, 1),
            data(b * kv * t * d, 2),
            data(b * kv * t * dv, 3),
        );
        let past = t - s;
        let mask: Vec<f32> = (0..s * t)
            .map(|x| {
                if causal && x % t > past + x / t {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
            .collect();
        let mask = Mask {
            data: &mask,
            shape: [1, 1, s, t],
        };
        let want = reference(dims, 0.3, &q, &k, &v, Some(mask));
        // [b, heads, rows, width] <-> [b, rows, heads, width]
        let swap = |x: &[f32], heads: usize, rows: usize, width: usize| {
            let mut y = vec![0f32; x.len()];
            for (i, &val) in x.iter().enumerate() {
                let (w, r, hd, bb) = (
                    i % width,
                    i / width % rows,
                    i / (width * rows) % heads,
                    i / (width * rows * heads),
                );
                y[((bb * rows + r) * heads + hd) * width + w] = val;
            }
            y
        };
        let (qt, kt, vt) = (swap(&q, h, s, d), swap(&k, kv, t, d), swap(&v, kv, t, dv));
        for threads in [1, 2] {
            for (layout, [q, k, v]) in [
                (Layout::Heads, [&q, &k, &v]),
                (Layout::Tokens, [&qt, &kt, &vt]),
            ] {
                let mut got = vec![f32::NAN; want.len()];
                attend(
                    layout,
                    dims,
                    0.3,
                    q,
                    k,
                    v,
                    Some(mask),
                    &mut got,
                    Exec::new(threads, Isa::Avx512),
                )
                .unwrap();
                if layout == Layout::Tokens {
                    // back to heads-first: swap with the rows and heads axes exchanged
                    got = swap(&got, s, h, dv);
                }
                let err = got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, crate::ops::test_util::worse);
                assert!(
                    err < 1e-5,
                    "{dims:?} {layout:?} layout, threads {threads}: max error {err}"
                );
            }
        }
    }

    #[test]
    fn matches_the_plain_definition_on_both_paths() {
        // one decode row (direct loops), a prefill block (packed kernel), GQA and MHA
        check(
            Dims {
                b: 1,
                h: 9,
                kv: 3,
                s: 1,
                t: 37,
                d: 64,
                dv: 64,
            },
            true,
        );
        check(
            Dims {
                b: 1,
                h: 4,
                kv: 4,
                s: 3,
                t: 10,
                d: 12,
                dv: 8,
            },
            true,
        );
        check(
            Dims {
                b: 1,
                h: 6,
                kv: 2,
                s: 20,
                t: 29,
                d: 16,
                dv: 16,
            },
            true,
        );
        check(
            Dims {
                b: 2,
                h: 2,
                kv: 1,
                s: 9,
                t: 9,
                d: 8,
                dv: 8,
            },
            false,
        );
        // several row blocks: under a causal mask each multiplies fewer
        // keys than the last; without one, all of them
        for causal in [true, false] {
            check(
                Dims {
                    b: 1,
                    h: 3,
                    kv: 1,
                    s: 100,
                    t: 111,
                    d: 32,
                    dv: 24,
                },
                causal,
            );
        }
    }

    #[test]
    fn a_padding_mask_broadcasts_over_heads_and_rows() {
        // [b, 1, 1, t]: batch 1 hides its last two keys, batch 0 none
        let dims = Dims {
            b: 2,
            h: 3,
            kv: 3,
            s: 9,
            t: 9,
            d: 8,
            dv: 8,
        };
        let (q, k, v) = (
            data(2 * 3 * 9 * 8, 4),
            data(2 * 3 * 9 * 8, 5),
            data(2 * 3 * 9 * 8, 6),
        );
        let pad: Vec<f32> = (0..18)
            .map(|j| if j >= 16 { f32::NEG_INFINITY } else { 0.0 })
            .collect();
        let mask = Mask {
            data: &pad,
            shape: [2, 1, 1, 9],
        };
        let want = reference(dims, 0.5, &q, &k, &v, Some(mask));
        let run = |v: &[f32]| {
            let mut got = vec![0f32; want.len()];
            attend(
                Layout::Heads,
                dims,
                0.5,
                &q,
                &k,
                v,
                Some(mask),
                &mut got,
                Exec::single(),
            )
            .unwrap();
            got
        };
        let mut got = run(&v);
        let err = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, crate::ops::test_util::worse);
        assert!(err < 1e-5, "max error {err}");
        // the padded keys are really hidden: changing their values changes nothing
        let mut v2 = v.clone();
        for h in 0..3 {
            for j in 7..9 {
                for x in 0..8 {
                    v2[((3 + h) * 9 + j) * 8 + x] = 100.0;
                }
            }
        }
        let got2 = run(&v2);
        assert_eq!(got[3 * 9 * 8..], got2[3 * 9 * 8..]);
        let bad = Mask {
            data: &pad[..9],
            shape: [1, 1, 3, 3],
        };
        let err = attend(
            Layout::Heads,
            dims,
            0.5,
            &q,
            &k,
            &v,
            Some(bad),
            &mut got,
            Exec::single(),
        )
        .unwrap_err();
        assert!(err.contains("does not broadcast"), "{err}");
    }

    #[test]
    fn fully_masked_rows_give_zeros_and_bad_sizes_are_named() {
        let dims = Dims {
            b: 1,
            h: 1,
            kv: 1,
            s: 1,
            t: 2,
            d: 2,
            dv: 2,
        };
        let mut out = [9f32; 2];
        let mask = [f32::NEG_INFINITY; 2];
        attend(
            Layout::Heads,
            dims,
            1.0,
            &[1.0; 2],
            &[1.0; 4],
            &[1.0; 4],
            Some(Mask {
                data: &mask,
                shape: [1, 1, 1, 2],
            }),
            &mut out,
            Exec::single(),
        )
        .unwrap();
        assert_eq!(out, [0.0, 0.0]);
        let err = attend(
            Layout::Heads,
            dims,
            1.0,
            &[1.0; 2],
            &[1.0; 3],
            &[1.0; 4],
            None,
            &mut out,
            Exec::single(),
        )
        .unwrap_err();
        assert!(err.contains("k has 3 values"), "{err}");
        let bad = Dims {
            kv: 2,
            h: 3,
            ..dims
        };
        assert!(attend(
            Layout::Heads,
            bad,
            1.0,
            &[],
            &[],
            &[],
            None,
            &mut [],
            Exec::single()
        )
        .unwrap_err()
        .contains("multiple"));
    }
}
