//! `EbRoutedLinear`: a linear layer with one weight set per route, each
//! token's row multiplied by the weights of its own route only (GEM's sparse
//! dispatch: one pathway per token, each row multiplied once).
//!
//! Inputs: `X` f32 `[.., n, K]`, `route` i64 `[.., n]`, then each weight
//! set's tensors in order: a quantized set `qweight`, `scales` (and `mins`
//! when asymmetric), exactly as `EbQuantLinear` packs them; an f32 set one
//! `W` `[K, N]`. Rows are grouped by set, gathered into a contiguous buffer
//! (not copied when every row is one set), multiplied by the set's packed
//! matrix and scattered back in order. Quantized sets run on the fused
//! kernels and share packed copies with every node and set made from the
//! same initializers (`quant`'s cache); the `f32` lowering dequantizes them
//! at load onto the packed f32 kernel, which f32 sets always use.

use super::gemm::PackedF32;
use super::qkernel::PackedMatrix;
use super::quant::{Lowering, QuantFormat};
use edgebench_kernels::Exec;
use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

/// Op type in the ONNX graph.
pub const OP_NAME: &str = "EbRoutedLinear";

/// The `bits` value of an f32 weight set.
pub const F32_BITS: usize = 32;

/// One weight set's tensors, as [`write_node`] takes them.
#[derive(Debug, Clone, Copy)]
pub enum SetWeights<'a> {
    /// A quantized matrix `[N, K]`: the initializers written by
    /// `quant::write_initializers` (`qweight`, `scales`, optional `mins`).
    Quant {
        format: QuantFormat,
        inits: &'a [String],
    },
    /// An f32 initializer `[K, N]` (ONNX `MatMul` layout).
    F32 { weight: &'a str },
}

/// A weight set and the route value it serves.
#[derive(Debug, Clone, Copy)]
pub struct RoutedSet<'a> {
    pub route: i64,
    pub weights: SetWeights<'a>,
}

/// Adds an `EbRoutedLinear` node over `x` and `route`; returns its output.
/// The same initializers may serve several sets.
///
/// # Panics
/// When `sets` is empty, or the sets disagree on `K`, `N` or (quantized)
/// the block size, or an f32 weight is not a rank-2 initializer of `g`:
/// one node has one shape and one block size.
pub fn write_node(
    g: &mut crate::onnx::GraphBuilder,
    name: &str,
    x: &str,
    route: &str,
    sets: &[RoutedSet],
) -> String {
    use crate::onnx::{Attr, CUSTOM_DOMAIN};
    assert!(!sets.is_empty(), "{OP_NAME} `{name}`: no weight set");
    let mut refs: Vec<&str> = vec![x, route];
    let (mut routes, mut bits, mut asym) = (vec![], vec![], vec![]);
    let mut dims: Option<(usize, usize)> = None;
    let mut block: Option<usize> = None;
    for set in sets {
        let kn = match set.weights {
            SetWeights::Quant { format, inits } => {
                assert!(
                    block.is_none_or(|b| b == format.block_size),
                    "{OP_NAME} `{name}`: sets with different block sizes"
                );
                block = Some(format.block_size);
                refs.extend(inits.iter().map(String::as_str));
                bits.push(format.bits as i64);
                asym.push((inits.len() == 3) as i64);
                (format.k, format.n)
            }
            SetWeights::F32 { weight } => {
                let d = g
                    .init_dims(weight)
                    .filter(|d| d.len() == 2)
                    .unwrap_or_else(|| {
                        panic!("{OP_NAME} `{name}`: `{weight}` is not a rank-2 initializer")
                    });
                let kn = (d[0] as usize, d[1] as usize);
                refs.push(weight);
                bits.push(F32_BITS as i64);
                asym.push(0);
                kn
            }
        };
        assert!(
            dims.is_none_or(|d| d == kn),
            "{OP_NAME} `{name}`: sets of different shapes"
        );
        dims = Some(kn);
        routes.push(set.route);
    }
    let (k, n) = dims.expect("at least one set");
    let out = format!("{name}.out");
    let mut attrs = vec![
        ("routes", Attr::Ints(routes)),
        ("bits", Attr::Ints(bits)),
        ("asymmetric", Attr::Ints(asym)),
        ("in_features", Attr::Int(k as i64)),
        ("out_features", Attr::Int(n as i64)),
    ];
    if let Some(b) = block {
        attrs.push(("block_size", Attr::Int(b as i64)));
    }
    g.node_in_domain(CUSTOM_DOMAIN, OP_NAME, &refs, &[&out], &attrs);
    out
}

/// Plain reference (f64 sums): row `i` of `x` (`[rows, k]`) times the
/// transposed `W` (`[n, k]`, dequantized) of the set serving `route[i]`.
///
/// # Panics
/// When no set serves a route.
pub fn reference(
    x: &[f32],
    rows: usize,
    route: &[i64],
    sets: &[(i64, Vec<f32>)],
    n: usize,
    k: usize,
) -> Vec<f32> {
    let mut y = vec![0f32; rows * n];
    for r in 0..rows {
        let (_, w) = sets
            .iter()
            .find(|(s, _)| *s == route[r])
            .unwrap_or_else(|| panic!("route {} is served by no set", route[r]));
        for o in 0..n {
            let acc: f64 = (0..k)
                .map(|i| x[r * k + i] as f64 * w[o * k + i] as f64)
                .sum();
            y[r * n + o] = acc as f32;
        }
    }
    y
}

/// A weight set as the node declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SetSpec {
    route: i64,
    /// 2..8, or [`F32_BITS`].
    bits: usize,
    /// Whether a quantized set has `mins`.
    asymmetric: bool,
}

impl SetSpec {
    /// Its number of weight inputs.
    fn inputs(&self) -> usize {
        if self.bits == F32_BITS {
            1
        } else {
            2 + self.asymmetric as usize
        }
    }
}

/// Parses an `EbRoutedLinear` node (registered in the tract-onnx op registry).
pub fn parse(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let at = |attr: &str, msg: String| anyhow!("{OP_NAME} node `{}`: {attr}: {msg}", node.name);
    let routes: Vec<i64> = node.get_attr_vec("routes")?;
    let bits: Vec<i64> = node.get_attr_vec("bits")?;
    let asym: Vec<i64> = node.get_attr_vec("asymmetric")?;
    if routes.is_empty() {
        return Err(at("routes", "no weight set".into()));
    }
    if bits.len() != routes.len() || asym.len() != routes.len() {
        return Err(at(
            "bits/asymmetric",
            format!(
                "lengths {} and {} differ from routes' {}",
                bits.len(),
                asym.len(),
                routes.len()
            ),
        ));
    }
    for (i, r) in routes.iter().enumerate() {
        if routes[..i].contains(r) {
            return Err(at("routes", format!("route {r} is served twice")));
        }
    }
    let k = node.get_attr::<i64>("in_features")?;
    let n = node.get_attr::<i64>("out_features")?;
    if k <= 0 || n <= 0 {
        return Err(at(
            "in_features/out_features",
            format!("{k} x {n} must both be positive"),
        ));
    }
    let (k, n) = (k as usize, n as usize);
    let block_size = node.get_attr_opt::<i64>("block_size")?;
    let mut sets = Vec::with_capacity(routes.len());
    for ((&route, &b), &a) in routes.iter().zip(&bits).zip(&asym) {
        let spec = SetSpec {
            route,
            bits: b.max(0) as usize,
            asymmetric: a != 0,
        };
        if spec.bits != F32_BITS {
            if !super::quant::BITS.contains(&spec.bits) {
                return Err(at(
                    "bits",
                    format!(
                        "{b} (set of route {route}) is not one of {:?} or {F32_BITS}",
                        super::quant::BITS
                    ),
                ));
            }
            if !matches!(a, 0 | 1) {
                return Err(at(
                    "asymmetric",
                    format!("{a} (route {route}) is not 0 or 1"),
                ));
            }
            let block_size = block_size
                .ok_or_else(|| at("block_size", "missing, and a set is quantized".to_string()))?;
            let format = QuantFormat {
                bits: spec.bits,
                block_size: block_size.max(0) as usize,
                k,
                n,
            };
            format.validate().map_err(|e| {
                let attr = if e.starts_with("in_features") {
                    "block_size/in_features"
                } else {
                    "block_size"
                };
                at(attr, e)
            })?;
        }
        sets.push(spec);
    }
    let want = 2 + sets.iter().map(SetSpec::inputs).sum::<usize>();
    if node.input.len() != want || node.input.iter().any(String::is_empty) {
        return Err(at(
            "inputs",
            format!(
                "{} inputs, expected {want}: X, route, then each set's weights",
                node.input.len()
            ),
        ));
    }
    let lowering = match node.get_attr_opt::<&str>("lowering")? {
        None => Lowering::Kernel,
        Some(l) => Lowering::parse(l)
            .ok_or_else(|| at("lowering", format!("{l:?} is not kernel, tract or f32")))?,
    };
    let exec = super::exec_of(node)?;
    Ok((
        expand(RoutedLinear {
            node: node.name.clone(),
            sets,
            block_size: block_size.unwrap_or(0).max(0) as usize,
            k,
            n,
            lowering,
            exec,
        }),
        vec![],
    ))
}

/// The op as an expansion, lowered when the model is typed.
#[derive(Debug, Clone)]
struct RoutedLinear {
    node: String,
    sets: Vec<SetSpec>,
    block_size: usize,
    k: usize,
    n: usize,
    lowering: Lowering,
    exec: Exec,
}

impl Expansion for RoutedLinear {
    fn name(&self) -> StaticName {
        OP_NAME.into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(
            inputs,
            2 + self.sets.iter().map(SetSpec::inputs).sum::<usize>(),
        )?;
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[0].datum_type, f32::datum_type())?;
        s.equals(&inputs[1].datum_type, i64::datum_type())?;
        s.equals(&outputs[0].datum_type, f32::datum_type())?;
        let (k, n) = (self.k.to_dim(), self.n.to_dim());
        s.given(&inputs[0].rank, move |s, rank| {
            let rank = rank as usize;
            if rank == 0 {
                bail!("{OP_NAME}: X must have rank >= 1");
            }
            s.equals(&outputs[0].rank, rank as i64)?;
            s.equals(&inputs[1].rank, rank as i64 - 1)?;
            for ax in 0..rank - 1 {
                s.equals(&outputs[0].shape[ax], &inputs[0].shape[ax])?;
                s.equals(&inputs[1].shape[ax], &inputs[0].shape[ax])?;
            }
            s.equals(&inputs[0].shape[rank - 1], k.clone())?;
            s.equals(&outputs[0].shape[rank - 1], n.clone())
        })
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let (k, n) = (self.k, self.n);
        let node = &self.node;
        // f32 matrices packed by this node, by the tensors they came from
        let mut local: Vec<(Vec<Arc<Tensor>>, Arc<PackedF32>)> = vec![];
        let mut packed = Vec::with_capacity(self.sets.len());
        let mut next = 2;
        for (si, spec) in self.sets.iter().enumerate() {
            let route = spec.route;
            let mut tensors = Vec::with_capacity(spec.inputs());
            for j in 0..spec.inputs() {
                let what = if spec.bits == F32_BITS {
                    "W"
                } else {
                    ["qweight", "scales", "mins"][j]
                };
                let t = model.outlet_fact(inputs[next + j])?.konst.clone().with_context(|| {
                    format!(
                        "{OP_NAME} node `{node}`: input {} ({what} of set {si}, route {route}) must be a constant initializer",
                        next + j
                    )
                })?;
                tensors.push(t);
            }
            next += spec.inputs();
            let bad =
                |msg: String| anyhow!("{OP_NAME} node `{node}`: set {si} (route {route}): {msg}");
            let find_local = |local: &[(Vec<Arc<Tensor>>, Arc<PackedF32>)]| {
                local
                    .iter()
                    .find(|(key, _)| {
                        key.len() == tensors.len()
                            && key.iter().zip(&tensors).all(|(a, b)| Arc::ptr_eq(a, b))
                    })
                    .map(|(_, p)| p.clone())
            };
            if spec.bits == F32_BITS {
                let w = &tensors[0];
                if w.shape() != [k, n] {
                    return Err(bad(format!(
                        "W has shape {:?}, expected [{k}, {n}]",
                        w.shape()
                    )));
                }
                let p = match find_local(&local) {
                    Some(p) => p,
                    None => {
                        let w32 = w.cast_to::<f32>()?;
                        let p =
                            PackedF32::new(w32.try_as_plain_ram()?.as_slice::<f32>()?, k, n, None)
                                .map_err(bad)?;
                        let p = Arc::new(p);
                        local.push((tensors.clone(), p.clone()));
                        p
                    }
                };
                packed.push(Packed::F32(p));
                continue;
            }
            let format = QuantFormat {
                bits: spec.bits,
                block_size: self.block_size,
                k,
                n,
            };
            let codes = tensors[0]
                .try_as_plain_ram()?
                .as_slice::<u8>()
                .map_err(|_| {
                    bad(format!(
                        "qweight is {:?}, expected u8",
                        tensors[0].datum_type()
                    ))
                })?;
            if codes.len() != format.packed_len() {
                return Err(bad(format!(
                    "{} packed bytes, expected {}",
                    codes.len(),
                    format.packed_len()
                )));
            }
            let f32s = |t: &Arc<Tensor>, what: &str| -> TractResult<Vec<f32>> {
                let v = t.cast_to::<f32>()?;
                let v = v.try_as_plain_ram()?.as_slice::<f32>()?.to_vec();
                if v.len() != n * format.blocks() {
                    return Err(bad(format!(
                        "{} {what}, expected {}",
                        v.len(),
                        n * format.blocks()
                    )));
                }
                Ok(v)
            };
            let scales = f32s(&tensors[1], "scales")?;
            let mins = match spec.asymmetric {
                true => Some(f32s(&tensors[2], "mins")?),
                false => None,
            };
            let kernel_ok = super::qkernel::supports_block(format.block_size)
                && k.is_multiple_of(super::qkernel::QB);
            if self.lowering != Lowering::F32 && kernel_ok {
                let key: Vec<Option<Arc<Tensor>>> = tensors.iter().cloned().map(Some).collect();
                let w = super::quant::shared_packed(&key, || {
                    PackedMatrix::from_blocks(
                        format.bits,
                        format.block_size,
                        n,
                        k,
                        codes,
                        &scales,
                        mins.as_deref(),
                    )
                    .map_err(bad)
                })?;
                packed.push(Packed::Quant(w));
                continue;
            }
            let p = match find_local(&local) {
                Some(p) => p,
                None => {
                    let m = super::quant::QuantMatrix {
                        format,
                        packed: codes.to_vec(),
                        scales,
                        mins,
                    };
                    let w = crate::onnx::layers::transpose(&m.dequantize(), n, k);
                    let p = Arc::new(PackedF32::new(&w, k, n, None).map_err(bad)?);
                    local.push((tensors.clone(), p.clone()));
                    p
                }
            };
            packed.push(Packed::F32(p));
        }
        let op = RoutedMatMul {
            node: self.node.clone(),
            routes: self.sets.iter().map(|s| s.route).collect(),
            sets: packed,
            k,
            n,
            exec: self.exec,
        };
        model.wire_node(prefix, op, &inputs[..2])
    }
}

/// A weight set's packed matrix.
#[derive(Debug, Clone)]
enum Packed {
    Quant(Arc<PackedMatrix>),
    F32(Arc<PackedF32>),
}

impl Packed {
    /// `y [rows, n] = x [rows, k] · Wᵀ`.
    fn matmul(&self, x: &[f32], rows: usize, y: &mut [f32], exec: Exec) {
        match self {
            Packed::Quant(w) => w.matmul(x, y, exec),
            Packed::F32(w) => w.matmul(x, rows, y, exec),
        }
    }

    fn same(&self, other: &Packed) -> bool {
        match (self, other) {
            (Packed::Quant(a), Packed::Quant(b)) => Arc::ptr_eq(a, b),
            (Packed::F32(a), Packed::F32(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    fn describe(&self) -> String {
        match self {
            Packed::Quant(w) => format!("{} bits, {} bytes", w.bits(), w.bytes()),
            Packed::F32(w) => format!("f32, {} bytes", w.bytes()),
        }
    }
}

/// `EbRoutedLinear` lowered: inputs `x [.., k]` and `route [..]`, output
/// `[.., n]`, each row by the set serving its route.
#[derive(Debug, Clone)]
pub struct RoutedMatMul {
    node: String,
    routes: Vec<i64>,
    sets: Vec<Packed>,
    k: usize,
    n: usize,
    exec: Exec,
}

impl PartialEq for RoutedMatMul {
    fn eq(&self, other: &Self) -> bool {
        self.node == other.node
            && self.routes == other.routes
            && self.sets.len() == other.sets.len()
            && self.sets.iter().zip(&other.sets).all(|(a, b)| a.same(b))
            && self.exec == other.exec
    }
}

impl Eq for RoutedMatMul {}

impl RoutedMatMul {
    /// Multiplies the rows of `x` (`rows x k`), whose sets are `set_of`, into
    /// `y` (`rows x n`, every value written).
    fn run(&self, x: &[f32], rows: usize, set_of: &[usize], y: &mut [f32]) {
        let (k, n) = (self.k, self.n);
        let mut counts = vec![0usize; self.sets.len()];
        for &s in set_of {
            counts[s] += 1;
        }
        if rows == 0 {
            return;
        }
        if let Some(s) = counts.iter().position(|&c| c == rows) {
            // every row is one set's: no copy
            self.sets[s].matmul(x, rows, y, self.exec);
            return;
        }
        let most = counts.iter().copied().max().unwrap_or(0);
        let (mut xs, mut ys) = (Vec::with_capacity(most * k), vec![0f32; most * n]);
        for (s, &c) in counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            xs.clear();
            for (r, _) in set_of.iter().enumerate().filter(|(_, &t)| t == s) {
                xs.extend_from_slice(&x[r * k..(r + 1) * k]);
            }
            let out = &mut ys[..c * n];
            self.sets[s].matmul(&xs, c, out, self.exec);
            let mut done = out.chunks_exact(n);
            for (r, _) in set_of.iter().enumerate().filter(|(_, &t)| t == s) {
                y[r * n..(r + 1) * n].copy_from_slice(done.next().expect("c rows"));
            }
        }
    }
}

impl Op for RoutedMatMul {
    fn name(&self) -> StaticName {
        OP_NAME.into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(self
            .routes
            .iter()
            .zip(&self.sets)
            .map(|(r, s)| format!("route {r}: {} x {}, {}", self.n, self.k, s.describe()))
            .collect())
    }

    op_as_typed_op!();
}

impl EvalOp for RoutedMatMul {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let (k, n) = (self.k, self.n);
        let route = inputs[1].cast_to::<i64>()?;
        let route = route.try_as_plain_ram()?.as_slice::<i64>()?;
        let rows = inputs[0].len() / k;
        ensure!(
            route.len() == rows,
            "{OP_NAME} node `{}`: {} routes for {rows} rows (X {:?}, route {:?})",
            self.node,
            route.len(),
            inputs[0].shape(),
            inputs[1].shape()
        );
        let set_of = route
            .iter()
            .map(|r| {
                self.routes.iter().position(|s| s == r).ok_or_else(|| {
                    anyhow!(
                        "{OP_NAME} node `{}`: route {r} is served by no weight set (routes {:?})",
                        self.node,
                        self.routes
                    )
                })
            })
            .collect::<TractResult<Vec<usize>>>()?;
        super::eval_linear(OP_NAME, &inputs[0], (k, n), |x, rows, y| {
            self.run(x, rows, &set_of, y)
        })
    }
}

impl TypedOp for RoutedMatMul {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        super::linear_facts(OP_NAME, inputs[0], self.n)
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::{Dim, Elem, GraphBuilder};
    use crate::ops::quant::QuantMatrix;
    use tract_onnx::pb;

    const K: usize = 64;
    const N: usize = 4;

    /// A node with a 4-bit asymmetric set (route 0) and an f32 set (route 8).
    fn model() -> pb::ModelProto {
        let mut g = GraphBuilder::new("routed");
        let x = g.input("x", Elem::F32, &[Dim::Fixed(2), Dim::Fixed(K as i64)]);
        let route = g.input("route", Elem::I64, &[Dim::Fixed(2)]);
        let w: Vec<f32> = (0..N * K).map(|i| (i % 7) as f32 / 7.0 - 0.5).collect();
        let format = QuantFormat {
            bits: 4,
            block_size: 32,
            k: K,
            n: N,
        };
        let q = QuantMatrix::quantize(&w, format, true).unwrap();
        let inits = crate::ops::quant::write_initializers(&mut g, "q", &q);
        let wt = g.init_f32(
            "w",
            &[K as i64, N as i64],
            &crate::onnx::layers::transpose(&w, N, K),
        );
        let sets = [
            RoutedSet {
                route: 0,
                weights: SetWeights::Quant {
                    format,
                    inits: &inits,
                },
            },
            RoutedSet {
                route: 8,
                weights: SetWeights::F32 { weight: &wt },
            },
        ];
        let y = write_node(&mut g, "lin", &x, &route, &sets);
        g.op("Identity", &[&y], &[]);
        g.name_last_output("y");
        g.output("y", Elem::F32, &[Dim::Fixed(2), Dim::Fixed(N as i64)]);
        g.finish("routed", &[])
    }

    fn node(m: &mut pb::ModelProto) -> &mut pb::NodeProto {
        let g = m.graph.as_mut().unwrap();
        g.node.iter_mut().find(|n| n.op_type == OP_NAME).unwrap()
    }

    fn set_ints(m: &mut pb::ModelProto, name: &str, v: &[i64]) {
        let a = node(m)
            .attribute
            .iter_mut()
            .find(|a| a.name == name)
            .unwrap();
        a.ints = v.to_vec();
    }

    fn set_int(m: &mut pb::ModelProto, name: &str, v: i64) {
        let a = node(m)
            .attribute
            .iter_mut()
            .find(|a| a.name == name)
            .unwrap();
        a.i = v;
    }

    /// The load error of `m` (typed, as a model loader does).
    fn load_error(m: &pb::ModelProto) -> String {
        let e = crate::ops::onnx()
            .model_for_proto_model(m)
            .and_then(|m| m.into_typed())
            .unwrap_err();
        format!("{e:?}")
    }

    #[test]
    fn the_model_loads_and_routes_each_row() {
        let x: Vec<f32> = (0..2 * K).map(|i| (i % 5) as f32 - 2.0).collect();
        let out = crate::ops::test_util::run_optimized(
            &model(),
            &[
                Tensor::from_shape(&[2, K], &x).unwrap(),
                Tensor::from_shape(&[2], &[8i64, 0]).unwrap(),
            ],
        );
        let w: Vec<f32> = (0..N * K).map(|i| (i % 7) as f32 / 7.0 - 0.5).collect();
        let format = QuantFormat {
            bits: 4,
            block_size: 32,
            k: K,
            n: N,
        };
        let deq = QuantMatrix::quantize(&w, format, true)
            .unwrap()
            .dequantize();
        let want = reference(&x, 2, &[8, 0], &[(0, deq), (8, w)], N, K);
        let err = crate::ops::test_util::rel_err(&out, &want);
        assert!(err < 1e-6, "error {err}: {out:?} vs {want:?}");
    }

    #[test]
    fn the_loader_options_choose_each_quantized_set_s_lowering() {
        for (lowering, want) in [
            (Lowering::Kernel, "route 0: 4 x 64, 4 bits"),
            (Lowering::Tract, "route 0: 4 x 64, 4 bits"),
            (Lowering::F32, "route 0: 4 x 64, f32"),
        ] {
            let mut m = model();
            let options = crate::RuntimeOptions {
                lowering,
                threads: 2,
                ..Default::default()
            };
            options.annotate(m.graph.as_mut().unwrap());
            let typed = crate::ops::onnx()
                .model_for_proto_model(&m)
                .and_then(|m| m.into_typed())
                .unwrap();
            let op = typed
                .nodes
                .iter()
                .find_map(|n| n.op_as::<RoutedMatMul>())
                .expect("the node is lowered");
            assert_eq!(op.exec.threads, 2);
            let info = op.info().unwrap();
            assert!(info[0].starts_with(want), "{lowering:?}: {info:?}");
            assert!(info[1].starts_with("route 8: 4 x 64, f32"), "{info:?}");
        }
    }

    #[test]
    fn load_errors_name_the_node_and_the_attribute() {
        let name = node(&mut model()).name.clone();
        type Edit = Box<dyn Fn(&mut pb::ModelProto)>;
        let cases: Vec<(&str, Edit)> = vec![
            ("bits/asymmetric", Box::new(|m| set_ints(m, "bits", &[4]))),
            (
                "routes: route 3 is served twice",
                Box::new(|m| set_ints(m, "routes", &[3, 3])),
            ),
            ("bits: 7", Box::new(|m| set_ints(m, "bits", &[7, 32]))),
            ("block_size", Box::new(|m| set_int(m, "block_size", 12))),
            (
                "block_size/in_features",
                Box::new(|m| set_int(m, "block_size", 48)),
            ),
            (
                "inputs: 6 inputs, expected 5",
                Box::new(|m| set_ints(m, "asymmetric", &[0, 0])),
            ),
            (
                "asymmetric: 2",
                Box::new(|m| set_ints(m, "asymmetric", &[2, 0])),
            ),
            (
                "must be a constant initializer",
                Box::new(|m| {
                    let g = m.graph.as_mut().unwrap();
                    let scales = g
                        .initializer
                        .iter()
                        .position(|t| t.name == "q.scales")
                        .unwrap();
                    let t = g.initializer.remove(scales);
                    // an f32 graph input instead (typed like `x`)
                    let mut input = g.input[0].clone();
                    input.name = t.name;
                    g.input.push(input);
                }),
            ),
        ];
        for (want, edit) in cases {
            let mut m = model();
            edit(&mut m);
            let e = load_error(&m);
            assert!(e.contains(want) && e.contains(&name), "{want}: {e}");
        }
    }
}
