//! `EbDense`: `Y = X · W (+ bias)` with `W` `[k, n]` a constant f32
//! initializer, run by EdgeBench's packed f32 kernel (`edgebench_kernels::gemm`).
//!
//! Our graph files keep linear layers as standard `MatMul` (+ `Add` of a
//! bias), so f32 exports also run in onnxruntime. [`fuse_graph`] rewrites
//! them at load, before tract parses the graph. tract's own f32 matrix
//! product reached about 60 % of the FMA peak (AMD EPYC, see docs/performance.md) on MiniLM and
//! SmolLM2 prefill; the packed kernel blocks `k` so its weight slice stays
//! in L1, as MLAS does. Off with `EDGEBENCH_DENSE=0` or [`set_dense`].

use super::activation::{Activation, Binary, Epilogue};
use super::gemm::PackedF32;
use super::rewrite::{replace_all, Fused, GraphView};
use edgebench_kernels::Exec;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

/// Op type in the ONNX graph (domain `ai.edgebench`).
pub const OP_NAME: &str = "EbDense";

/// Replaces every `MatMul(x, W)` whose `W` is a rank-2 f32 initializer
/// with one `EbDense` node, together with what alone consumes its result,
/// in this order: the `Add` of an f32 initializer `[n]` (a bias); an
/// activation chain (BERT's exact GELU or Llama's SiLU, see
/// [`activation_after`]); an `Add` or `Mul` with a computed tensor (a
/// residual connection, SwiGLU's product; see [`binary_after`]). Returns
/// how many it replaced.
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
    // SwiGLU's `Mul` alone consumes both the gate's and the up product's
    // chains: the first of them takes it
    let mut taken = std::collections::HashSet::new();
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
        if let Some((op, b, other)) = binary_after(&view, &graph.node[last].output[0]) {
            if taken.insert(b) {
                last = b;
                nodes.push(b);
                inputs.push(other.to_string());
                attributes.push(super::rewrite::string_attr("then", op.name()));
            }
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

/// The `Add` or `Mul` that alone consumes `y`, its node, and its other
/// operand: computed (not an initializer: constants are biases or stay
/// tract's) and not `y` itself. Whether the operand has `y`'s shape is only
/// known once tract has typed the graph: `EbDense` checks it then, and
/// wires the product and tract's broadcasting op when it does not.
fn binary_after<'a>(view: &GraphView<'a>, y: &str) -> Option<(Binary, usize, &'a str)> {
    let b = view
        .single_consumer(y, "Add")
        .or_else(|| view.single_consumer(y, "Mul"))?;
    let node = &view.g.node[b];
    if node.input.len() != 2 || node.output.len() != 1 || node.input[0] == node.input[1] {
        return None;
    }
    let other = node.input.iter().find(|x| *x != y)?;
    if view.inits.contains_key(other.as_str()) {
        return None;
    }
    Some((Binary::parse(&node.op_type)?, b, other.as_str()))
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
/// `bias [n]`, then, with attribute `then` (`Add` or `Mul`), the other
/// operand of that operation; optional attribute `activation` (`gelu` or
/// `silu`), applied before `then`.
pub fn parse(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let then = named_attr(node, "then", Binary::parse, "Add or Mul")?;
    let has_bias = super::has_input(node, 2) && (then.is_none() || super::has_input(node, 3));
    let act = named_attr(node, "activation", Activation::parse, "gelu or silu")?;
    let exec = super::exec_of(node)?;
    Ok((
        expand(DenseExpansion {
            has_bias,
            act,
            then,
            exec,
        }),
        vec![],
    ))
}

/// Optional string attribute `attr` of `node`, read by `parse`; an unknown
/// value is an error naming the node and the `expected` values.
fn named_attr<T>(
    node: &NodeProto,
    attr: &str,
    parse: impl Fn(&str) -> Option<T>,
    expected: &str,
) -> TractResult<Option<T>> {
    node.get_attr_opt::<String>(attr)?
        .map(|name| {
            parse(&name).with_context(|| {
                format!(
                    "{OP_NAME} `{}`: unknown {attr} {name:?} ({expected})",
                    node.name
                )
            })
        })
        .transpose()
}

#[derive(Debug, Clone)]
struct DenseExpansion {
    has_bias: bool,
    act: Option<Activation>,
    then: Option<Binary>,
    exec: Exec,
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
        let arity = 2 + self.has_bias as usize + self.then.is_some() as usize;
        check_input_arity(inputs, arity)?;
        check_output_arity(outputs, 1)?;
        for t in inputs {
            s.equals(&t.datum_type, f32::datum_type())?;
        }
        s.equals(&inputs[1].rank, 2)?;
        s.equals(&outputs[0].datum_type, f32::datum_type())?;
        let then = self.then.is_some();
        if then {
            // the product's shape, broadcast with the other operand (as the
            // replaced Add or Mul did)
            s.given_3(
                &inputs[0].shape,
                &inputs[1].shape,
                &inputs[arity - 1].shape,
                move |s, x, w, other| {
                    let mut y = x.clone();
                    if let Some(last) = y.last_mut() {
                        *last = w[1].clone();
                    }
                    let out = tract_onnx::tract_core::broadcast::multi_broadcast(&[y, other])?;
                    s.equals(&outputs[0].shape, out)
                },
            )?;
        } else {
            s.equals(&outputs[0].rank, &inputs[0].rank)?;
        }
        s.given(&inputs[0].rank, move |s, rank| {
            let rank = rank as usize;
            if rank == 0 {
                bail!("{OP_NAME}: the input must have rank >= 1");
            }
            if !then {
                for ax in 0..rank.saturating_sub(1) {
                    s.equals(&outputs[0].shape[ax], &inputs[0].shape[ax])?;
                }
                s.equals(&outputs[0].shape[rank - 1], &inputs[1].shape[1])?;
            }
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
        let dense = DenseMatMul {
            w: Arc::new(packed),
            act: self.act,
            then: None,
            exec: self.exec,
        };
        let Some(op) = self.then else {
            return model.wire_node(prefix, dense, &inputs[..1]);
        };
        let other = *inputs.last().expect("arity checked");
        let mut y: TVec<TDim> = model.outlet_fact(inputs[0])?.shape.to_tvec();
        if let Some(last) = y.last_mut() {
            *last = n.to_dim();
        }
        if model.outlet_fact(other)?.shape.to_tvec() == y {
            let dense = DenseMatMul {
                then: Some(op),
                ..dense
            };
            return model.wire_node(prefix, dense, &[inputs[0], other]);
        }
        // the other operand broadcasts: the product, then tract's op
        let y = model.wire_node(format!("{prefix}.product"), dense, &inputs[..1])?;
        let mini = match op {
            Binary::Add => tract_onnx::tract_core::ops::math::add(),
            Binary::Mul => tract_onnx::tract_core::ops::math::mul(),
        };
        tract_onnx::tract_core::ops::change_axes::wire_with_rank_broadcast(
            prefix,
            model,
            mini,
            &[y[0], other],
        )
    }
}

/// `EbDense` lowered onto the packed kernel: `x [.., k]` -> `[.., n]`;
/// with `then`, a second input of the output's shape.
#[derive(Debug, Clone)]
pub struct DenseMatMul {
    w: Arc<PackedF32>,
    act: Option<Activation>,
    then: Option<Binary>,
    exec: Exec,
}

impl PartialEq for DenseMatMul {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.w, &other.w)
            && self.act == other.act
            && self.then == other.then
            && self.exec == other.exec
    }
}

impl Eq for DenseMatMul {}

impl Op for DenseMatMul {
    fn name(&self) -> StaticName {
        OP_NAME.into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{} x {} f32, {} bytes packed{}{}",
            self.w.k(),
            self.w.n(),
            self.w.bytes(),
            self.act
                .map_or(String::new(), |a| format!(", then {}", a.name())),
            self.then
                .map_or(String::new(), |b| format!(", then {}", b.name()))
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for DenseMatMul {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let dims = (self.w.k(), self.w.n());
        let other = match (self.then, inputs.get(1)) {
            (Some(op), Some(t)) => {
                anyhow::ensure!(
                    t.len() == inputs[0].len() / dims.0 * dims.1,
                    "{OP_NAME}: the operand of {} has shape {:?}, the product {:?} x {}",
                    op.name(),
                    t.shape(),
                    inputs[0].shape(),
                    dims.1
                );
                Some((op, t.try_as_plain_ram()?.as_slice::<f32>()?))
            }
            (None, None) => None,
            _ => bail!("{OP_NAME}: `then` and its operand must come together"),
        };
        let epi = Epilogue {
            act: self.act,
            then: other,
        };
        super::eval_linear(OP_NAME, &inputs[0], dims, |x, rows, y| {
            self.w.matmul_then(x, rows, y, self.exec, epi)
        })
    }
}

impl TypedOp for DenseMatMul {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        super::linear_facts(OP_NAME, inputs[0], self.w.n())
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::{Dim, Elem, GraphBuilder};
    use crate::ops::test_util::{data, rel_err};

    fn rows() -> Dim {
        Dim::from("rows")
    }

    /// `x [rows, 4]`, `r [rows, 5]`, `g [rows, 1]`, `c [5]` ->
    /// `(x·W1 + b) + r`, `(x·W2) · g`, `(x·W3) + c`, and a SwiGLU block with
    /// its residual: `(silu(x·Wg) · (x·Wu))·Wd + x`.
    fn graph() -> pb::ModelProto {
        let mut g = GraphBuilder::new("then");
        let x = g.input("x", Elem::F32, &[rows(), Dim::Fixed(4)]);
        let r = g.input("r", Elem::F32, &[rows(), Dim::Fixed(5)]);
        let gate = g.input("g", Elem::F32, &[rows(), Dim::Fixed(1)]);
        let c = g.input("c", Elem::F32, &[Dim::Fixed(5)]);
        let w = |g: &mut GraphBuilder, name: &str, k: i64, n: i64, seed: u32| {
            g.init_f32(name, &[k, n], &data((k * n) as usize, seed))
        };
        let (w1, w2, w3) = (
            w(&mut g, "w1", 4, 5, 1),
            w(&mut g, "w2", 4, 5, 2),
            w(&mut g, "w3", 4, 5, 3),
        );
        let b = g.init_f32("b", &[5], &data(5, 4));
        let y = g.op("MatMul", &[&x, &w1], &[]);
        let y = g.op("Add", &[&y, &b], &[]);
        g.op("Add", &[&r, &y], &[]);
        let out = g.name_last_output("residual");
        g.output(&out, Elem::F32, &[rows(), Dim::Fixed(5)]);
        let y = g.op("MatMul", &[&x, &w2], &[]);
        g.op("Mul", &[&y, &gate], &[]);
        let out = g.name_last_output("broadcast_rows");
        g.output(&out, Elem::F32, &[rows(), Dim::Fixed(5)]);
        let y = g.op("MatMul", &[&x, &w3], &[]);
        g.op("Add", &[&y, &c], &[]);
        let out = g.name_last_output("broadcast_rank");
        g.output(&out, Elem::F32, &[rows(), Dim::Fixed(5)]);
        let (wg, wu, wd) = (
            w(&mut g, "wg", 4, 6, 5),
            w(&mut g, "wu", 4, 6, 6),
            w(&mut g, "wd", 6, 4, 7),
        );
        let a = g.op("MatMul", &[&x, &wg], &[]);
        let s = g.op("Sigmoid", &[&a], &[]);
        let a = g.op("Mul", &[&a, &s], &[]);
        let u = g.op("MatMul", &[&x, &wu], &[]);
        let h = g.op("Mul", &[&a, &u], &[]);
        let d = g.op("MatMul", &[&h, &wd], &[]);
        g.op("Add", &[&d, &x], &[]);
        let out = g.name_last_output("swiglu");
        g.output(&out, Elem::F32, &[rows(), Dim::Fixed(4)]);
        g.finish("then", &[])
    }

    fn run(model: &pb::ModelProto, rows: usize) -> Vec<Vec<f32>> {
        let inputs = [
            Tensor::from_shape(&[rows, 4], &data(rows * 4, 11)).unwrap(),
            Tensor::from_shape(&[rows, 5], &data(rows * 5, 12)).unwrap(),
            Tensor::from_shape(&[rows, 1], &data(rows, 13)).unwrap(),
            Tensor::from_shape(&[5], &data(5, 14)).unwrap(),
        ];
        let plan = crate::ops::onnx()
            .model_for_proto_model(model)
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .unwrap();
        let out = plan
            .run(inputs.into_iter().map(Tensor::into_tvalue).collect())
            .unwrap();
        out.iter()
            .map(|t| {
                t.try_as_plain_ram()
                    .unwrap()
                    .as_slice::<f32>()
                    .unwrap()
                    .to_vec()
            })
            .collect()
    }

    #[test]
    fn residuals_and_products_fold_in_and_broadcasts_fall_back() {
        let plain = graph();
        let mut fused = plain.clone();
        assert_eq!(fuse_graph(fused.graph.as_mut().unwrap()), 6);
        let nodes = &fused.graph.as_ref().unwrap().node;
        let left: Vec<&str> = nodes
            .iter()
            .filter(|n| n.op_type != OP_NAME)
            .map(|n| n.op_type.as_str())
            .collect();
        assert!(left.is_empty(), "left after the fusion: {left:?}");
        let then: Vec<String> = nodes
            .iter()
            .flat_map(|n| &n.attribute)
            .filter(|a| a.name == "then")
            .map(|a| String::from_utf8_lossy(&a.s).into_owned())
            .collect();
        // the residual, both broadcasts, SwiGLU's product (the gate's
        // chain takes it) and its residual
        assert_eq!(then, ["Add", "Mul", "Add", "Mul", "Add"]);
        for rows in [1usize, 7, 300] {
            let (want, got) = (run(&plain, rows), run(&fused, rows));
            for (i, (w, g)) in want.iter().zip(&got).enumerate() {
                let err = rel_err(g, w);
                assert!(err < 1e-5, "output {i}, {rows} rows: error {err}");
            }
        }
    }
}
