//! `EbNorm`: layer normalisation and RMS normalisation over the last axis,
//! one pass per row, rows spread over `--threads`.
//!
//! BERT graphs use ONNX's `LayerNormalization`, which tract runs as five
//! ops (two reductions, a subtraction, a scaled sum and a multiply-add
//! chain); our Llama graphs write RMSNorm as `Pow`, `ReduceMean`, `Add`,
//! `Sqrt`, `Div` and the gain's `Mul`, which tract runs as its `RmsNorm`
//! (a generic, not vectorised kernel) and a `Mul`. All on one thread: 4 %
//! of a MiniLM batch, 2 % of a SmolLM2 prefill. [`fuse_graph`] puts one
//! `EbNorm` node in place of each at load, under the attention fusion's
//! switch (`RuntimeOptions::fuse_attention`); the file is unchanged.

use super::rewrite::{float_attr, replace_all, string_attr, Fused, GraphView};
use tract_onnx::model::ParsingContext;
use tract_onnx::pb;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

/// Op type in the ONNX graph (domain `ai.edgebench`).
pub const OP_NAME: &str = "EbNorm";

pub use edgebench_kernels::norm::{normalize, Kind};

/// Replaces normalisations of `graph` with `EbNorm` nodes and returns how
/// many it replaced:
/// - `LayerNormalization` over the last axis (`axis = -1`, only `Y` used);
/// - the RMSNorm chain `model::llama` and `gem::build` write (each
///   intermediate used once and not a graph output):
///   `Mul(Div(x, Sqrt(Add(ReduceMean(Pow(x, 2), axes = [-1], keepdims = 1), eps))), w)`.
pub fn fuse_graph(graph: &mut pb::GraphProto) -> usize {
    let matches: Vec<Match> = {
        let view = GraphView::new(graph);
        (0..graph.node.len())
            .filter_map(|i| match graph.node[i].op_type.as_str() {
                "LayerNormalization" => view.layer_norm_at(i),
                "Mul" => view.rms_at(i),
                _ => None,
            })
            .collect()
    };
    let fused = matches
        .into_iter()
        .map(|f| Fused {
            nodes: f.nodes,
            last: f.last,
            named_after: f.last,
            inputs: f.inputs,
            attributes: vec![
                string_attr(
                    "kind",
                    match f.kind {
                        Kind::Layer => "layer",
                        Kind::Rms => "rms",
                    },
                ),
                float_attr("epsilon", f.eps),
            ],
        })
        .collect();
    replace_all(graph, OP_NAME, "eb_norm", fused)
}

/// One recognised normalisation: the nodes it replaces (`last` produces
/// its output) and the fused node's inputs (`x`, `scale`, optional `bias`).
struct Match {
    nodes: Vec<usize>,
    last: usize,
    kind: Kind,
    eps: f32,
    inputs: Vec<String>,
}

impl GraphView<'_> {
    fn layer_norm_at(&self, i: usize) -> Option<Match> {
        let n = &self.g.node[i];
        let axis = self.int_attr(i, "axis").unwrap_or(vec![-1]);
        let extra_outputs = n.output.iter().skip(1).any(|o| !o.is_empty());
        if axis != [-1] || extra_outputs || !(2..=3).contains(&n.input.len()) {
            return None;
        }
        let eps = match n.attribute.iter().find(|a| a.name == "epsilon") {
            Some(a) => a.f,
            None => 1e-5,
        };
        Some(Match {
            nodes: vec![i],
            last: i,
            kind: Kind::Layer,
            eps,
            inputs: n.input.iter().filter(|x| !x.is_empty()).cloned().collect(),
        })
    }

    fn rms_at(&self, mul: usize) -> Option<Match> {
        let m = &self.g.node[mul];
        if m.input.len() != 2 || m.output.len() != 1 {
            return None;
        }
        [(0, 1), (1, 0)].into_iter().find_map(|(i, j)| {
            let div = self.only_use(&m.input[i], "Div", 2)?;
            let x = &self.g.node[div].input[0];
            let sqrt = self.only_use(&self.g.node[div].input[1], "Sqrt", 1)?;
            let add = self.only_use(&self.g.node[sqrt].input[0], "Add", 2)?;
            let a = &self.g.node[add];
            let (mean, eps) = [(0, 1), (1, 0)].into_iter().find_map(|(p, q)| {
                Some((
                    self.only_use(&a.input[p], "ReduceMean", 1)?,
                    self.scalar_f32(&a.input[q])?,
                ))
            })?;
            let reduce_ok = self.int_attr(mean, "axes")? == [-1]
                && self.int_attr(mean, "keepdims").unwrap_or(vec![1]) == [1];
            let pow = self.only_use(&self.g.node[mean].input[0], "Pow", 2)?;
            let p = &self.g.node[pow];
            let fits = reduce_ok && p.input[0] == *x && self.scalar_f32(&p.input[1]) == Some(2.0);
            fits.then(|| Match {
                nodes: vec![pow, mean, add, sqrt, div, mul],
                last: mul,
                kind: Kind::Rms,
                eps,
                inputs: vec![x.clone(), m.input[j].clone()],
            })
        })
    }
}

/// Parses an `EbNorm` node: inputs `x`, `scale`, optional `bias`;
/// attributes `kind` (`"layer"` or `"rms"`) and `epsilon`.
pub fn parse(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let kind = match node.get_attr_opt::<&str>("kind")? {
        Some("layer") => Kind::Layer,
        Some("rms") => Kind::Rms,
        other => bail!(
            "{OP_NAME} node `{}`: attribute kind must be \"layer\" or \"rms\", got {other:?}",
            node.name
        ),
    };
    let eps = node.get_attr_opt::<f32>("epsilon")?.unwrap_or(1e-5);
    if !(eps.is_finite() && eps >= 0.0) {
        bail!(
            "{OP_NAME} node `{}`: epsilon must be finite and >= 0",
            node.name
        );
    }
    let has_bias = super::has_input(node, 2);
    let threads = super::exec_of(node)?.threads;
    Ok((
        expand(NormExpansion(Norm { kind, eps, threads }, has_bias)),
        vec![],
    ))
}

#[derive(Debug, Clone)]
struct NormExpansion(Norm, bool);

impl Expansion for NormExpansion {
    fn name(&self) -> StaticName {
        OP_NAME.into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 2 + self.1 as usize)?;
        check_output_arity(outputs, 1)?;
        for t in inputs {
            s.equals(&t.datum_type, f32::datum_type())?;
        }
        s.equals(&outputs[0].datum_type, f32::datum_type())?;
        s.equals(&outputs[0].shape, &inputs[0].shape)
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
#[derive(Debug, Clone, PartialEq)]
pub struct Norm {
    /// Layer or RMS normalisation.
    pub kind: Kind,
    /// Added to the variance (or mean square).
    pub eps: f32,
    /// Threads of the row split.
    pub threads: usize,
}

// `parse` rejects non-finite epsilons, so equality is total.
impl Eq for Norm {}

impl Op for Norm {
    fn name(&self) -> StaticName {
        OP_NAME.into()
    }

    op_as_typed_op!();
}

impl EvalOp for Norm {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let shape = inputs[0].shape();
        let d = shape.last().copied().unwrap_or(0);
        fn slice(t: &TValue) -> TractResult<&[f32]> {
            t.try_as_plain_ram()?.as_slice::<f32>()
        }
        let (x, scale) = (slice(&inputs[0])?, slice(&inputs[1])?);
        let bias = inputs.get(2).map(slice).transpose()?;
        ensure!(
            d > 0 && scale.len() == d && bias.is_none_or(|b| b.len() == d),
            "{OP_NAME}: x {shape:?} with scale {:?}{}: the scale (and bias) must hold the last axis' {d} values",
            inputs[1].shape(),
            inputs.get(2).map_or(String::new(), |b| format!(" and bias {:?}", b.shape()))
        );
        // SAFETY: `normalize` writes every row of y (x and y hold the same
        // whole rows of d values).
        let y = unsafe {
            super::f32_output(shape, |y| {
                normalize(self.kind, self.eps, x, scale, bias, y, self.threads);
                Ok(())
            })?
        };
        Ok(tvec!(y))
    }
}

impl TypedOp for Norm {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs[0].rank() >= 1, "{OP_NAME}: x must have rank >= 1");
        Ok(tvec!(f32::fact(inputs[0].shape.clone())))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::{Attr, Dim, Elem, GraphBuilder};
    use crate::ops::test_util::{data, run_optimized};

    /// `x [rows, d]` -> the normalisation as our writers spell it.
    fn graph(kind: Kind, d: i64) -> pb::ModelProto {
        let mut g = GraphBuilder::new("norm");
        let x = g.input("x", Elem::F32, &[Dim::from("rows"), Dim::Fixed(d)]);
        let w = g.init_f32("w", &[d], &data(d as usize, 7));
        match kind {
            Kind::Layer => {
                let b = g.init_f32("b", &[d], &data(d as usize, 8));
                g.op(
                    "LayerNormalization",
                    &[&x, &w, &b],
                    &[("axis", Attr::Int(-1)), ("epsilon", Attr::Float(1e-3))],
                );
            }
            Kind::Rms => {
                let two = g.init_f32("two", &[], &[2.0]);
                let eps = g.init_f32("eps", &[], &[1e-3]);
                let sq = g.op("Pow", &[&x, &two], &[]);
                let mean = g.op(
                    "ReduceMean",
                    &[&sq],
                    &[("axes", Attr::Ints(vec![-1])), ("keepdims", Attr::Int(1))],
                );
                let var = g.op("Add", &[&mean, &eps], &[]);
                let sd = g.op("Sqrt", &[&var], &[]);
                let n = g.op("Div", &[&x, &sd], &[]);
                g.op("Mul", &[&w, &n], &[]);
            }
        }
        let y = g.name_last_output("y");
        g.output(&y, Elem::F32, &[Dim::from("rows"), Dim::Fixed(d)]);
        g.finish("norm", &[])
    }

    #[test]
    fn the_fused_op_equals_tract_on_the_written_graph() {
        let d = 37;
        for kind in [Kind::Layer, Kind::Rms] {
            let plain = graph(kind, d);
            let mut fused = plain.clone();
            assert_eq!(fuse_graph(fused.graph.as_mut().unwrap()), 1, "{kind:?}");
            let ops: Vec<_> = fused
                .graph
                .as_ref()
                .unwrap()
                .node
                .iter()
                .map(|n| n.op_type.as_str())
                .collect();
            assert_eq!(ops, [OP_NAME], "{kind:?}: only the fused node is left");
            for rows in [3usize, 1000] {
                // an offset far from zero: a one-pass variance would lose digits
                let xs: Vec<f32> = data(rows * d as usize, 1)
                    .iter()
                    .map(|v| 30.0 + v)
                    .collect();
                let x = Tensor::from_shape(&[rows, d as usize], &xs).unwrap();
                let x = [x];
                let (want, got) = (run_optimized(&plain, &x), run_optimized(&fused, &x));
                let err = want
                    .iter()
                    .zip(&got)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, crate::ops::test_util::worse);
                assert!(err < 1e-3, "{kind:?} rows {rows}: error {err}");
            }
        }
    }

    #[test]
    fn rows_split_over_threads_give_the_same_values() {
        let (rows, d) = (1000, 64);
        let x = data(rows * d, 3);
        let (g, b) = (data(d, 4), data(d, 5));
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        for kind in [Kind::Layer, Kind::Rms] {
            let (mut one, mut two) = (vec![0f32; rows * d], vec![f32::NAN; rows * d]);
            normalize(kind, 1e-5, &x, &g, Some(&b), &mut one, 1);
            pool.install(|| normalize(kind, 1e-5, &x, &g, Some(&b), &mut two, 2));
            assert_eq!(one, two, "{kind:?}");
        }
    }

    #[test]
    fn normalize_matches_hand_checked_values() {
        // x = [1, 2, 3, 4]: mean 2.5, var 1.25; mean square 7.5
        let x = [1.0, 2.0, 3.0, 4.0];
        let (g, b) = ([1.0, 1.0, 2.0, 1.0], [0.0, 0.5, 0.0, 0.0]);
        let mut y = [0f32; 4];
        normalize(Kind::Layer, 0.0, &x, &g, Some(&b), &mut y, 1);
        let s = 1.25f32.sqrt();
        let want = [-1.5 / s, -0.5 / s + 0.5, 2.0 * 0.5 / s, 1.5 / s];
        assert!(
            y.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6),
            "{y:?}"
        );
        normalize(Kind::Rms, 0.0, &x, &g, None, &mut y, 1);
        let r = 7.5f32.sqrt();
        let want = [1.0 / r, 2.0 / r, 6.0 / r, 4.0 / r];
        assert!(
            y.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6),
            "{y:?}"
        );
    }

    #[test]
    fn other_normalisations_are_left_alone_and_bad_scales_are_named() {
        // layer norm over two axes, and an RMS chain of cubes
        let mut m = graph(Kind::Layer, 8);
        let g = m.graph.as_mut().unwrap();
        g.node[0].attribute.retain(|a| a.name != "axis");
        g.node[0].attribute.push(pb::AttributeProto {
            name: "axis".into(),
            r#type: pb::attribute_proto::AttributeType::Int as i32,
            i: 0,
            ..Default::default()
        });
        assert_eq!(fuse_graph(g), 0);
        let mut m = graph(Kind::Rms, 8);
        let g = m.graph.as_mut().unwrap();
        let two = g.initializer.iter_mut().find(|t| t.name == "two").unwrap();
        two.raw_data = 3f32.to_le_bytes().to_vec();
        assert_eq!(fuse_graph(g), 0);
        // a scale of the wrong width, caught when the graph runs
        let mut m = graph(Kind::Rms, 8);
        let g = m.graph.as_mut().unwrap();
        fuse_graph(g);
        let w = g.initializer.iter_mut().find(|t| t.name == "w").unwrap();
        w.dims = vec![4];
        w.raw_data.truncate(16);
        let plan = crate::ops::onnx()
            .model_for_proto_model(&m)
            .and_then(|m| m.into_optimized());
        let err = match plan {
            Err(e) => format!("{e:?}"),
            Ok(p) => {
                let x = Tensor::from_shape(&[2, 8], &data(16, 1)).unwrap();
                format!(
                    "{:?}",
                    p.into_runnable()
                        .unwrap()
                        .run(tvec!(x.into_tvalue()))
                        .unwrap_err()
                )
            }
        };
        assert!(err.contains("the scale (and bias) must hold"), "{err}");
    }
}
