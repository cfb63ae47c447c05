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
//! products per head on EdgeBench's packed f32 kernel (`edgebench_kernels::gemm`), through
//! each head's row stride.

use super::rewrite::{float_attr, replace_all, string_attr, Fused, GraphView};
pub use edgebench_kernels::attention::{attend, reference, Dims, Layout, Mask};
use edgebench_kernels::Exec;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

/// Op type in the ONNX graph.
pub const OP_NAME: &str = "EbAttention";

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
    /// `Softmax`, `MatMul(p, v)`. With a KV cache, `k` and `v` are each
    /// `Concat([past, heads], axis 2)` of such a transpose: the chain fuses
    /// heads-first over the concatenations.
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
        let mut cached = false;
        for (i, x) in [q, k, v].into_iter().enumerate() {
            let mut t = *self.producer.get(x.as_str())?;
            if i > 0 && n(t).op_type == "Concat" {
                // a KV cache: the new heads are the second input, along the token axis
                let c = n(t);
                if c.input.len() != 2 || self.int_attr(t, "axis")? != [2] {
                    return None;
                }
                t = *self.producer.get(c.input[1].as_str())?;
                cached = true;
            }
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
        if let (false, &[Some(tq), Some(tk), Some(tv)], Some(back)) =
            (cached, &transposes[..], back)
        {
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
    use edgebench_kernels::Isa;

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
