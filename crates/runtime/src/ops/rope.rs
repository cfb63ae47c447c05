//! `EbRope`: rotary position embedding in Hugging Face's `rotate_half` form,
//! `y = x · cos + rotate_half(x) · sin`, in one pass.
//!
//! Our Llama graphs write RoPE with standard ops (two `Slice`s, `Neg`,
//! `Concat`, two `Mul`s and an `Add`), so the files also run in onnxruntime.
//! tract cannot prove that the gathered `[seq, d]` tables match the
//! `[b, h, seq, d]` input's rows, so it ran both `Mul`s on its generic
//! broadcasting path: about 5 % of a SmolLM2 prefill, on one thread, and
//! seven ops per query and key in every decode step. [`fuse_graph`] puts one
//! `EbRope` node in place of each chain at load, under the same switch as the
//! attention fusion (`RuntimeOptions::fuse_attention`).

use super::rewrite::{replace_all, string_attr, Fused, GraphView};
use tract_onnx::model::ParsingContext;
use tract_onnx::pb;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

/// Op type in the ONNX graph (domain `ai.edgebench`).
pub const OP_NAME: &str = "EbRope";

pub use edgebench_kernels::rope::{rotate, rotate_to_heads};

/// Replaces every `rotate_half` RoPE chain of `graph` with one `EbRope`
/// node and returns how many it replaced.
///
/// The chain, as `model::llama` writes it (each intermediate used once and
/// not a graph output; either operand order of the `Mul`s and the `Add`):
/// `a = Slice(x, [0], [h], [-1])`, `b = Slice(x, [h], [2h], [-1])`,
/// `y = Add(Mul(x, cos), Mul(Concat(Neg(b), a, axis = -1), sin))`
/// becomes `y = EbRope(x, cos, sin)`. When `x = Transpose(t, [0, 2, 1, 3])`
/// and nothing but the chain reads `x` (a query or key reshaped to heads),
/// the transpose goes too: `y = EbRope(t, cos, sin)` with
/// `layout = "bshd"`.
pub fn fuse_graph(graph: &mut pb::GraphProto) -> usize {
    let matches: Vec<Chain> = {
        let view = GraphView::new(graph);
        (0..graph.node.len())
            .filter(|&i| graph.node[i].op_type == "Add")
            .filter_map(|i| view.rope_at(i))
            .collect()
    };
    let fused = matches
        .into_iter()
        .map(|c| Fused {
            nodes: c.nodes,
            last: c.add,
            named_after: c.add,
            inputs: vec![c.x, c.cos, c.sin],
            attributes: c
                .tokens
                .then(|| string_attr("layout", "bshd"))
                .into_iter()
                .collect(),
        })
        .collect();
    replace_all(graph, OP_NAME, "eb_rope", fused)
}

/// One recognised chain: the nodes it replaces (`add` produces its output)
/// and the fused node's inputs.
struct Chain {
    nodes: Vec<usize>,
    add: usize,
    x: String,
    cos: String,
    sin: String,
    /// `x` is `[b, s, h, d]`, its transpose to heads-first absorbed.
    tokens: bool,
}

impl GraphView<'_> {
    fn rope_at(&self, add: usize) -> Option<Chain> {
        let node = &self.g.node[add];
        if node.input.len() != 2 || node.output.len() != 1 {
            return None;
        }
        [(0, 1), (1, 0)].into_iter().find_map(|(i, j)| {
            let plain = self.only_use(&node.input[i], "Mul", 2)?;
            let rotated = self.only_use(&node.input[j], "Mul", 2)?;
            let (x, half_nodes, sin) = self.rotated_half(rotated)?;
            let pm = &self.g.node[plain];
            let cos = match (pm.input[0] == x, pm.input[1] == x) {
                (true, false) => pm.input[1].clone(),
                (false, true) => pm.input[0].clone(),
                _ => return None,
            };
            let mut nodes = half_nodes;
            nodes.extend([plain, rotated, add]);
            // x = Transpose(t, [0, 2, 1, 3]) read only by this chain's
            // two slices and plain product: rotate from t directly
            let readers = self.consumers.get(x.as_str()).map_or(0, Vec::len);
            let transpose = self.producer.get(x.as_str()).copied().filter(|&tr| {
                let n = &self.g.node[tr];
                n.op_type == "Transpose"
                    && n.input.len() == 1
                    && self.int_attr(tr, "perm").as_deref() == Some(&[0, 2, 1, 3])
                    && readers == 3
                    && !self.outputs.contains(x.as_str())
            });
            let (x, tokens) = match transpose {
                Some(tr) => {
                    nodes.push(tr);
                    (self.g.node[tr].input[0].clone(), true)
                }
                None => (x, false),
            };
            Some(Chain {
                nodes,
                add,
                x,
                cos,
                sin,
                tokens,
            })
        })
    }

    /// `Mul(Concat(Neg(Slice(x, h..2h)), Slice(x, 0..h)), sin)` in either
    /// operand order: `x`, the four nodes below the `Mul`, and `sin`.
    fn rotated_half(&self, mul: usize) -> Option<(String, Vec<usize>, String)> {
        let m = &self.g.node[mul];
        [(0, 1), (1, 0)].into_iter().find_map(|(i, j)| {
            let concat = self.only_use(&m.input[i], "Concat", 2)?;
            if self.int_attr(concat, "axis")? != [-1] {
                return None;
            }
            let c = &self.g.node[concat];
            let neg = self.only_use(&c.input[0], "Neg", 1)?;
            let hi = self.last_axis_slice(&self.g.node[neg].input[0])?;
            let lo = self.last_axis_slice(&c.input[1])?;
            let h = lo.end;
            let fits = lo.x == hi.x && lo.start == 0 && h > 0 && (hi.start, hi.end) == (h, 2 * h);
            fits.then(|| {
                (
                    lo.x.to_string(),
                    vec![lo.node, hi.node, neg, concat],
                    m.input[j].clone(),
                )
            })
        })
    }

    /// `name = Slice(x, [start], [end], [-1])` (steps absent or `[1]`), used once.
    fn last_axis_slice(&self, name: &str) -> Option<LastAxisSlice<'_>> {
        let i = *self.producer.get(name)?;
        let n = &self.g.node[i];
        let n_in = n.input.len();
        if !(4..=5).contains(&n_in) || self.only_use(name, "Slice", n_in) != Some(i) {
            return None;
        }
        let one = |k: usize| match self.ints(&n.input[k])?.as_slice() {
            [v] => Some(*v),
            _ => None,
        };
        if one(3)? != -1 || (n_in == 5 && one(4)? != 1) {
            return None;
        }
        Some(LastAxisSlice {
            x: n.input[0].as_str(),
            node: i,
            start: one(1)?,
            end: one(2)?,
        })
    }
}

/// A `Slice` of the last axis: its input, node and bounds.
struct LastAxisSlice<'a> {
    x: &'a str,
    node: usize,
    start: i64,
    end: i64,
}

/// Parses an `EbRope` node: inputs `x`, `cos`, `sin`; attribute `layout`
/// (`"bhsd"`, the default: the output has `x`'s shape; `"bshd"`: `x` is
/// `[b, s, h, d]` and the output `[b, h, s, d]`).
pub fn parse(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let tokens = match node.get_attr_opt::<&str>("layout")? {
        None | Some("bhsd") => false,
        Some("bshd") => true,
        Some(other) => bail!(
            "{OP_NAME} node `{}`: attribute layout must be \"bhsd\" or \"bshd\", got {other:?}",
            node.name
        ),
    };
    Ok((expand(RopeExpansion(Rope { tokens })), vec![]))
}

#[derive(Debug, Clone)]
struct RopeExpansion(Rope);

impl Expansion for RopeExpansion {
    fn name(&self) -> StaticName {
        OP_NAME.into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 3)?;
        check_output_arity(outputs, 1)?;
        for t in inputs {
            s.equals(&t.datum_type, f32::datum_type())?;
        }
        s.equals(&outputs[0].datum_type, f32::datum_type())?;
        if !self.0.tokens {
            return s.equals(&outputs[0].shape, &inputs[0].shape);
        }
        s.equals(&inputs[0].rank, 4)?;
        s.equals(&outputs[0].rank, 4)?;
        for (o, i) in [(0, 0), (1, 2), (2, 1), (3, 3)] {
            s.equals(&outputs[0].shape[o], &inputs[0].shape[i])?;
        }
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        model.wire_node(prefix, self.0.clone(), inputs)
    }
}

/// The typed, runnable op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rope {
    /// `x` is `[b, s, h, d]` and the output `[b, h, s, d]`.
    pub tokens: bool,
}

impl Op for Rope {
    fn name(&self) -> StaticName {
        OP_NAME.into()
    }

    op_as_typed_op!();
}

impl EvalOp for Rope {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (xs, cs, ss) = (inputs[0].shape(), inputs[1].shape(), inputs[2].shape());
        let d = xs.last().copied().unwrap_or(0);
        // the axis of positions: the rows of each head
        let rows = match (self.tokens, xs.len()) {
            (true, 4) => Some(xs[1]),
            (true, _) => None,
            (false, r) => r.checked_sub(2).map(|a| xs[a]),
        };
        // the tables: [positions, d] after any leading 1s, positions = rows or 1
        let table = |t: &[usize]| -> Option<usize> {
            let (lead, tail) = t.split_at(t.len().checked_sub(2)?);
            (lead.iter().all(|&a| a == 1) && tail[1] == d).then_some(tail[0])
        };
        let positions = match (table(cs), table(ss), rows) {
            (Some(p), Some(q), Some(r)) if p == q && (p == r || p == 1) => p,
            _ => bail!(
                "{OP_NAME}: x {xs:?} with cos {cs:?} and sin {ss:?}: expected x {} \
                 and tables [rows or 1, d]",
                if self.tokens {
                    "[b, rows, h, d]"
                } else {
                    "[.., rows, d]"
                }
            ),
        };
        ensure!(
            d % 2 == 0 && d > 0,
            "{OP_NAME}: rows of width {d} cannot be rotated in halves"
        );
        fn slice(t: &TValue) -> TractResult<&[f32]> {
            t.try_as_plain_ram()?.as_slice::<f32>()
        }
        let (x, cos, sin) = (slice(&inputs[0])?, slice(&inputs[1])?, slice(&inputs[2])?);
        let out: TVec<usize> = if self.tokens {
            tvec![xs[0], xs[2], xs[1], xs[3]]
        } else {
            xs.into()
        };
        // SAFETY: both rotations write every row of `y`: x and y hold the
        // same number of whole rows of d values.
        let y = unsafe {
            super::f32_output(&out, |y| {
                match self.tokens {
                    true => rotate_to_heads(x, cos, sin, [xs[0], xs[1], xs[2], d], positions, y),
                    false => rotate(x, cos, sin, d, positions, y),
                }
                Ok(())
            })?
        };
        Ok(tvec!(y))
    }
}

impl TypedOp for Rope {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let x = &inputs[0].shape;
        if self.tokens {
            ensure!(x.rank() == 4, "{OP_NAME}: x must be [b, rows, h, d]");
            return Ok(tvec!(f32::fact([
                x[0].clone(),
                x[2].clone(),
                x[1].clone(),
                x[3].clone()
            ])));
        }
        ensure!(
            x.rank() >= 2,
            "{OP_NAME}: x must have rank >= 2 ([.., rows, d])"
        );
        Ok(tvec!(f32::fact(x.clone())))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::{Attr, Dim, Elem, GraphBuilder};
    use crate::ops::test_util::{data, run_optimized};

    /// x [1, 2, seq, d] and tables [pos, d] as graph inputs (as in
    /// `model::llama`, tract cannot tell that pos = seq); the chain in
    /// `model::llama`'s form (`swap`: the other operand orders;
    /// `transposed`: x is `Transpose([1, seq, 2, d] input, [0, 2, 1, 3])`).
    fn chain_graph(d: i64, swap: bool, transposed: bool) -> pb::ModelProto {
        let mut g = GraphBuilder::new("rope");
        let (two, seq) = (Dim::Fixed(2), Dim::from("seq"));
        let dims = if transposed { [seq, two] } else { [two, seq] };
        let x = g.input(
            "x",
            Elem::F32,
            &[
                Dim::Fixed(1),
                dims[0].clone(),
                dims[1].clone(),
                Dim::Fixed(d),
            ],
        );
        let x = if transposed {
            g.op(
                "Transpose",
                &[&x],
                &[("perm", Attr::Ints(vec![0, 2, 1, 3]))],
            )
        } else {
            x
        };
        let cos = g.input("cos", Elem::F32, &[Dim::from("pos"), Dim::Fixed(d)]);
        let sin = g.input("sin", Elem::F32, &[Dim::from("pos"), Dim::Fixed(d)]);
        let c = |g: &mut GraphBuilder, name: &str, v: i64| g.init_i64(name, &[1], &[v]);
        let (z, h, e, last) = (
            c(&mut g, "z", 0),
            c(&mut g, "h", d / 2),
            c(&mut g, "e", d),
            c(&mut g, "l", -1),
        );
        let a = g.op("Slice", &[&x, &z, &h, &last], &[]);
        let b = g.op("Slice", &[&x, &h, &e, &last], &[]);
        let nb = g.op("Neg", &[&b], &[]);
        let rot = g.op("Concat", &[&nb, &a], &[("axis", Attr::Int(-1))]);
        let (xc, rs) = if swap {
            (
                g.op("Mul", &[&cos, &x], &[]),
                g.op("Mul", &[&sin, &rot], &[]),
            )
        } else {
            (
                g.op("Mul", &[&x, &cos], &[]),
                g.op("Mul", &[&rot, &sin], &[]),
            )
        };
        if swap {
            g.op("Add", &[&rs, &xc], &[])
        } else {
            g.op("Add", &[&xc, &rs], &[])
        };
        let y = g.name_last_output("y");
        g.output(
            &y,
            Elem::F32,
            &[
                Dim::Fixed(1),
                Dim::Fixed(2),
                Dim::from("seq"),
                Dim::Fixed(d),
            ],
        );
        g.finish("rope chain", &[])
    }

    #[test]
    fn the_fused_op_equals_the_chain_it_replaces() {
        let (seq, d) = (5usize, 8usize);
        let cos = Tensor::from_shape(&[seq, d], &data(seq * d, 2)).unwrap();
        let sin = Tensor::from_shape(&[seq, d], &data(seq * d, 3)).unwrap();
        for (swap, transposed) in [(false, false), (true, false), (false, true), (true, true)] {
            let shape = if transposed {
                [1, seq, 2, d]
            } else {
                [1, 2, seq, d]
            };
            let x = Tensor::from_shape(&shape, &data(2 * seq * d, 1)).unwrap();
            let inputs = [x, cos.clone(), sin.clone()];
            let plain = chain_graph(d as i64, swap, transposed);
            let mut fused = plain.clone();
            assert_eq!(fuse_graph(fused.graph.as_mut().unwrap()), 1, "swap {swap}");
            let layout = &fused.graph.as_ref().unwrap().node[0].attribute;
            assert_eq!(layout.len(), transposed as usize, "layout attribute");
            let ops: Vec<_> = fused
                .graph
                .as_ref()
                .unwrap()
                .node
                .iter()
                .map(|n| n.op_type.as_str())
                .collect();
            assert_eq!(
                ops,
                [OP_NAME],
                "only the fused node is left, transpose included"
            );
            let (want, got) = (
                run_optimized(&plain, &inputs),
                run_optimized(&fused, &inputs),
            );
            assert_eq!(want.len(), got.len());
            for (w, g) in want.iter().zip(&got) {
                assert!((w - g).abs() <= 1e-6, "{w} vs {g}");
            }
        }
    }

    #[test]
    fn rotate_matches_the_definition_and_broadcasts_one_table_row() {
        let d = 4;
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        let cos = [0.5, 0.25, 2.0, 1.0];
        let sin = [1.0, -1.0, 0.5, 3.0];
        let mut y = [0f32; 8];
        rotate(&x, &cos, &sin, d, 1, &mut y);
        // rotate_half([1, 2, 3, 4]) = [-3, -4, 1, 2]
        assert_eq!(
            y[..4],
            [
                1.0 * 0.5 - 3.0,
                2.0 * 0.25 + 4.0,
                3.0 * 2.0 + 0.5,
                4.0 + 2.0 * 3.0
            ]
        );
        // rotate_half([5, 6, 7, 8]) = [-7, -8, 5, 6]
        assert_eq!(
            y[4..],
            [
                5.0 * 0.5 - 7.0,
                6.0 * 0.25 + 8.0,
                7.0 * 2.0 + 2.5,
                8.0 + 18.0
            ]
        );
    }

    #[test]
    fn chains_that_differ_are_left_alone() {
        // halves that do not meet (a slice of [1, h) instead of [0, h))
        let mut m = chain_graph(8, false, false);
        let g = m.graph.as_mut().unwrap();
        let z = g.initializer.iter_mut().find(|t| t.name == "z").unwrap();
        z.raw_data.clear();
        z.int64_data = vec![1];
        assert_eq!(fuse_graph(g), 0);
        // an intermediate that is also a graph output
        let mut m = chain_graph(8, false, false);
        let g = m.graph.as_mut().unwrap();
        let neg = g.node.iter().find(|n| n.op_type == "Neg").unwrap().output[0].clone();
        g.output.push(pb::ValueInfoProto {
            name: neg,
            ..Default::default()
        });
        assert_eq!(fuse_graph(g), 0);
        // a transposed input that something else also reads keeps its transpose
        let mut m = chain_graph(8, false, true);
        let g = m.graph.as_mut().unwrap();
        let x = g.node[0].output[0].clone();
        g.output.push(pb::ValueInfoProto {
            name: x,
            ..Default::default()
        });
        assert_eq!(fuse_graph(g), 1);
        let ops: Vec<_> = g.node.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, ["Transpose", OP_NAME]);
        assert!(g.node[1].attribute.is_empty(), "heads-first input");
    }

    #[test]
    fn tables_that_do_not_fit_are_named() {
        let model = {
            let mut m = chain_graph(8, false, false);
            fuse_graph(m.graph.as_mut().unwrap());
            m
        };
        let onnx = crate::ops::onnx();
        let plan = onnx
            .model_for_proto_model(&model)
            .unwrap()
            .into_optimized()
            .unwrap()
            .into_runnable()
            .unwrap();
        let x = Tensor::from_shape(&[1, 2, 3, 8], &data(48, 1)).unwrap();
        let t = Tensor::from_shape(&[2, 8], &data(16, 2)).unwrap();
        let err = plan
            .run(tvec!(x.into(), t.clone().into(), t.into()))
            .unwrap_err();
        assert!(
            format!("{err:?}").contains("expected x [.., rows, d]"),
            "{err:?}"
        );
    }
}
