//! `EbDense`: `Y = X · W (+ bias)` with `W` `[k, n]` a constant f32
//! initializer, run by EdgeBench's packed f32 kernel (`gemm.rs`).
//!
//! Our graph files keep linear layers as standard `MatMul` (+ `Add` of a
//! bias), so f32 exports also run in onnxruntime. [`fuse_graph`] rewrites
//! them at load, before tract parses the graph. tract's own f32 matrix
//! product reached about 60 % of this host's FMA peak on MiniLM and
//! SmolLM2 prefill; the packed kernel blocks `k` so its weight slice stays
//! in L1, as MLAS does. Off with `EDGEBENCH_DENSE=0` or [`set_dense`].

use super::activation::Activation;
use super::gemm::PackedF32;
use super::rewrite::{replace_all, Fused, GraphView};
use tract_onnx::model::ParsingContext;
use tract_onnx::pb;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

/// Op type in the ONNX graph (domain `ai.edgebench`).
pub const OP_NAME: &str = "EbDense";

/// Whether [`fuse_graph`] runs at load: [`set_dense`]'s choice, else
/// `EDGEBENCH_DENSE` (`0` turns it off; on by default).
pub fn dense_enabled() -> bool {
    DENSE.enabled()
}

/// Turns the load-time `EbDense` rewrite on or off for graphs loaded from
/// now on (overrides the environment).
pub fn set_dense(on: bool) {
    DENSE.set(on);
}

static DENSE: super::rewrite::Switch = super::rewrite::Switch::new("EDGEBENCH_DENSE");

/// Replaces every `MatMul(x, W)` whose `W` is a rank-2 f32 initializer
/// (and the `Add` of an f32 initializer `[n]` that alone consumes it, as a
/// bias, and an activation chain that alone consumes the result: BERT's
/// exact GELU or Llama's SiLU, see [`activation_after`]) with one `EbDense`
/// node; returns how many it replaced.
pub fn fuse_graph(graph: &mut pb::GraphProto) -> usize {
    let inputs: std::collections::HashSet<&str> =
        graph.input.iter().map(|i| i.name.as_str()).collect();
    let view = GraphView::new(graph);
    let float = pb::tensor_proto::DataType::Float as i32;
    // an initializer that is also a graph input can be overridden: not constant
    let konst = |name: &str| {
        view.inits
            .get(name)
            .filter(|t| t.data_type == float && !inputs.contains(name))
    };
    let mut fused = Vec::new();
    for (i, node) in graph.node.iter().enumerate() {
        if node.op_type != "MatMul" || node.input.len() != 2 || node.output.len() != 1 {
            continue;
        }
        let Some(w) = konst(&node.input[1]).filter(|w| w.dims.len() == 2) else {
            continue;
        };
        if view.inits.contains_key(node.input[0].as_str()) {
            continue;
        }
        let n = w.dims[1];
        let bias = view
            .single_consumer(&node.output[0], "Add")
            .filter(|&a| graph.node[a].input.len() == 2)
            .and_then(|a| {
                let add = &graph.node[a];
                let other = add.input.iter().find(|x| **x != node.output[0])?;
                konst(other)
                    .filter(|b| b.dims == [n])
                    .map(|_| (a, other.clone()))
            });
        let mut inputs = node.input.clone();
        let (mut nodes, mut last) = match bias {
            Some((a, b)) => {
                inputs.push(b);
                (vec![i, a], a)
            }
            None => (vec![i], i),
        };
        let mut attributes = vec![];
        if let Some((act, chain)) = activation_after(&view, &graph.node[last].output[0]) {
            last = *chain.last().expect("a chain has nodes");
            nodes.extend(chain);
            attributes.push(super::rewrite::string_attr("activation", act.name()));
        }
        fused.push(Fused {
            nodes,
            last,
            named_after: i,
            inputs,
            attributes,
        });
    }
    drop(view);
    replace_all(graph, OP_NAME, "eb_dense", fused)
}

/// The activation chain that alone consumes `y`, as written by our BERT
/// and Llama/GEM graphs, and its nodes in order:
/// - GELU: `Mul(y, 1/√2)`, `Erf`, `Add(·, 1)`, `Mul(y, ·)`, `Mul(·, 0.5)`;
/// - SiLU: `Sigmoid(y)`, `Mul(y, ·)`.
///
/// Operands of `Add` and `Mul` may come in either order; constants must be
/// scalar f32 initializers of those values.
fn activation_after(view: &GraphView<'_>, y: &str) -> Option<(Activation, Vec<usize>)> {
    let g = view.g;
    let uses = view.consumers.get(y)?;
    if uses.len() != 2 || view.outputs.contains(y) {
        return None;
    }
    let other = |n: usize, x: &str| -> Option<&str> {
        let node = &g.node[n];
        (node.input.len() == 2 && node.output.len() == 1).then_some(())?;
        match (node.input[0] == x, node.input[1] == x) {
            (true, false) => Some(node.input[1].as_str()),
            (false, true) => Some(node.input[0].as_str()),
            _ => None,
        }
    };
    let is_const = |name: &str, v: f32| view.scalar_f32(name).is_some_and(|c| (c - v).abs() < 1e-6);
    let out = |n: usize| g.node[n].output[0].as_str();
    let (a, b) = (uses[0], uses[1]);
    for (first, second) in [(a, b), (b, a)] {
        match (
            g.node[first].op_type.as_str(),
            g.node[second].op_type.as_str(),
        ) {
            ("Sigmoid", "Mul") => {
                let sig = &g.node[first];
                if sig.input.len() == 1
                    && sig.output.len() == 1
                    && view.single_consumer(out(first), "Mul") == Some(second)
                    && other(second, y) == Some(out(first))
                {
                    return Some((Activation::Silu, vec![first, second]));
                }
            }
            ("Mul", "Mul") => {
                // first: y / √2; second: y · (1 + erf(..))
                if !other(first, y).is_some_and(|c| is_const(c, std::f32::consts::FRAC_1_SQRT_2)) {
                    continue;
                }
                let erf = view.single_consumer(out(first), "Erf")?;
                let add = view.single_consumer(out(erf), "Add")?;
                if !other(add, out(erf)).is_some_and(|c| is_const(c, 1.0))
                    || view.single_consumer(out(add), "Mul") != Some(second)
                    || other(second, y) != Some(out(add))
                {
                    return None;
                }
                let half = view.single_consumer(out(second), "Mul")?;
                if !other(half, out(second)).is_some_and(|c| is_const(c, 0.5)) {
                    return None;
                }
                return Some((Activation::Gelu, vec![first, erf, add, second, half]));
            }
            _ => {}
        }
    }
    None
}

/// Builds the op of an `EbDense` node: inputs `x`, `W [k, n]`, optional
/// `bias [n]`; optional attribute `activation` (`gelu` or `silu`).
pub fn parse(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let has_bias = super::has_input(node, 2);
    let act = match node.get_attr_opt::<String>("activation")? {
        None => None,
        Some(name) => Some(Activation::parse(&name).with_context(|| {
            format!(
                "{OP_NAME} `{}`: unknown activation {name:?} (gelu or silu)",
                node.name
            )
        })?),
    };
    Ok((expand(DenseExpansion { has_bias, act }), vec![]))
}

#[derive(Debug, Clone)]
struct DenseExpansion {
    has_bias: bool,
    act: Option<Activation>,
}

impl Expansion for DenseExpansion {
    fn name(&self) -> StaticName {
        OP_NAME.into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 2 + self.has_bias as usize)?;
        check_output_arity(outputs, 1)?;
        for t in inputs {
            s.equals(&t.datum_type, f32::datum_type())?;
        }
        s.equals(&inputs[1].rank, 2)?;
        s.equals(&outputs[0].datum_type, f32::datum_type())?;
        s.equals(&outputs[0].rank, &inputs[0].rank)?;
        s.given(&inputs[0].rank, move |s, rank| {
            let rank = rank as usize;
            if rank == 0 {
                bail!("{OP_NAME}: the input must have rank >= 1");
            }
            for ax in 0..rank.saturating_sub(1) {
                s.equals(&outputs[0].shape[ax], &inputs[0].shape[ax])?;
            }
            s.equals(&outputs[0].shape[rank - 1], &inputs[1].shape[1])?;
            s.equals(&inputs[0].shape[rank - 1], &inputs[1].shape[0])
        })
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let konst = |o: OutletId, what: &str| -> TractResult<Arc<Tensor>> {
            model.outlet_fact(o)?.konst.clone().with_context(|| {
                format!("{OP_NAME} `{prefix}`: {what} must be a constant initializer")
            })
        };
        let w = konst(inputs[1], "the weight")?;
        let (k, n) = (w.shape()[0], w.shape()[1]);
        let bias = if self.has_bias {
            Some(konst(inputs[2], "the bias")?)
        } else {
            None
        };
        // the rules made both f32, so these read the constants in place
        let bias = match &bias {
            Some(b) => Some(b.try_as_plain_ram()?.as_slice::<f32>()?),
            None => None,
        };
        let packed = PackedF32::new(w.try_as_plain_ram()?.as_slice::<f32>()?, k, n, bias)
            .map_err(|e| anyhow!("{OP_NAME} `{prefix}`: {e}"))?;
        model.wire_node(
            prefix,
            DenseMatMul {
                w: Arc::new(packed),
                act: self.act,
            },
            &inputs[..1],
        )
    }
}

/// `EbDense` lowered onto the packed kernel: `x [.., k]` -> `[.., n]`,
/// using the thread count of [`crate::model::threads`].
#[derive(Debug, Clone)]
pub struct DenseMatMul {
    w: Arc<PackedF32>,
    act: Option<Activation>,
}

impl PartialEq for DenseMatMul {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.w, &other.w) && self.act == other.act
    }
}

impl Eq for DenseMatMul {}

impl Op for DenseMatMul {
    fn name(&self) -> StaticName {
        OP_NAME.into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{} x {} f32, {} bytes packed{}",
            self.w.k(),
            self.w.n(),
            self.w.bytes(),
            self.act
                .map_or(String::new(), |a| format!(", then {}", a.name()))
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for DenseMatMul {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let dims = (self.w.k(), self.w.n());
        super::eval_linear(OP_NAME, &inputs[0], dims, |x, rows, y| {
            self.w
                .matmul_then(x, rows, y, crate::model::threads(), self.act)
        })
    }
}

impl TypedOp for DenseMatMul {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        super::linear_facts(OP_NAME, inputs[0], self.w.n())
    }

    as_op!();
}
