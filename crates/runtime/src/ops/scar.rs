//! `EbScar`: GEM's Sparse Cross-Attention Router (paper section 3.3).
//!
//! Tokens are clustered by cosine-distance k-means over their
//! representations `X`, and attention is restricted to tokens of the same
//! cluster (and of the same `group`, and causal when `causal = 1`):
//! `A = softmax(M . QK^T * scale)` with masked pairs excluded.
//!
//! k-means, exactly (so the op is deterministic and testable):
//! - `k' = min(k, n)` centroids, initialised to the unit vectors of the tokens
//!   at positions `floor(j * n / k')`, `j = 0 .. k'`;
//! - assignment: each token goes to the centroid of largest cosine similarity
//!   (smallest `1 - x.mu / (|x||mu|)`), ties to the lowest index; a zero
//!   vector has similarity 0 with every centroid, so it joins cluster 0;
//! - `iterations` rounds of: each centroid becomes the mean of its members'
//!   unit vectors (an empty cluster keeps its previous centroid), then
//!   reassignment. Cluster ids are centroid indices in `0 .. k'` (an empty
//!   cluster's id is simply unused).
//!
//! A token always attends to itself, so a token alone in its cluster gets its
//! own value vector back. The kernel gathers each cluster's members and
//! attends within it with two small matrix products (`Q_c K_c^T`, then
//! `P_c V_c`): `O(sum_c |c|^2 d)` instead of dense `O(n^2 d)`. The k-means
//! assignment is one `[n, dx] x [dx, k]` product per round.
//! [`reference`] is the plain dense masked implementation tests compare with.

use tract_onnx::model::ParsingContext;
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::tract_ndarray::linalg::general_mat_mul;
use tract_onnx::tract_hir::tract_ndarray::{Array2, ArrayView2, ArrayViewMut2};

/// Op type in the ONNX graph.
pub const OP_NAME: &str = "EbScar";

/// The op's attributes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScarParams {
    /// Number of clusters (k >= 1).
    pub k: usize,
    /// k-means refinement rounds after the initial assignment.
    pub iterations: usize,
    /// Token `i` attends only to `j <= i`.
    pub causal: bool,
    /// Score scale; `None` means `1 / sqrt(head_dim)`.
    pub scale: Option<f32>,
}

impl Default for ScarParams {
    fn default() -> Self {
        ScarParams {
            k: 16,
            iterations: 10,
            causal: true,
            scale: None,
        }
    }
}

/// Cosine k-means as documented in the module: the cluster id of each of the
/// `n` rows of `x` (`[n, dim]`, row-major).
///
/// Unit vectors are computed once; each assignment is one `[n, dim] x
/// [dim, k]` matrix product (ndarray's, on matrixmultiply's kernels).
pub fn kmeans_cosine(x: &[f32], n: usize, dim: usize, k: usize, iterations: usize) -> Vec<usize> {
    if n == 0 {
        return vec![];
    }
    let k = k.clamp(1, n);
    let mut unit = x[..n * dim].to_vec();
    for row in unit.chunks_mut(dim) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        row.iter_mut()
            .for_each(|v| *v = if norm > 0.0 { *v / norm } else { 0.0 });
    }
    let mut centroids: Vec<f32> = (0..k)
        .flat_map(|j| {
            let i = j * n / k;
            unit[i * dim..(i + 1) * dim].to_vec()
        })
        .collect();
    let u = ArrayView2::from_shape((n, dim), &unit).expect("n x dim unit vectors");
    let mut dots = Array2::<f32>::zeros((n, k));
    let mut labels = assign(u, &centroids, k, dim, &mut dots);
    let mut sums = vec![0f32; k * dim];
    let mut counts = vec![0usize; k];
    for _ in 0..iterations {
        sums.fill(0.0);
        counts.fill(0);
        for (i, &c) in labels.iter().enumerate() {
            counts[c] += 1;
            for (s, v) in sums[c * dim..(c + 1) * dim]
                .iter_mut()
                .zip(&unit[i * dim..(i + 1) * dim])
            {
                *s += v;
            }
        }
        for c in 0..k {
            if counts[c] > 0 {
                for (m, s) in centroids[c * dim..(c + 1) * dim]
                    .iter_mut()
                    .zip(&sums[c * dim..(c + 1) * dim])
                {
                    *m = s / counts[c] as f32;
                }
            }
        }
        let next = assign(u, &centroids, k, dim, &mut dots);
        if next == labels {
            break;
        }
        labels = next;
    }
    labels
}

/// Nearest centroid (largest cosine similarity, ties to the lowest index) of
/// every unit row of `u`; `dots` is `[n, k]` scratch.
fn assign(
    u: ArrayView2<f32>,
    centroids: &[f32],
    k: usize,
    dim: usize,
    dots: &mut Array2<f32>,
) -> Vec<usize> {
    let c = ArrayView2::from_shape((k, dim), centroids).expect("k x dim centroids");
    general_mat_mul(1.0, &u, &c.t(), 0.0, dots);
    let inv_norms: Vec<f32> = centroids
        .chunks(dim)
        .map(|c| {
            let norm = c.iter().map(|v| v * v).sum::<f32>().sqrt();
            if norm > 0.0 {
                1.0 / norm
            } else {
                0.0
            }
        })
        .collect();
    dots.rows()
        .into_iter()
        .map(|row| {
            let mut best = (0, f32::NEG_INFINITY);
            for (j, (dot, inv)) in row.iter().zip(&inv_norms).enumerate() {
                let sim = dot * inv;
                if sim > best.1 {
                    best = (j, sim);
                }
            }
            best.0
        })
        .collect()
}

/// Reusable buffers of [`attend_clustered`], sized for the largest cluster.
#[derive(Default)]
struct Scratch {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    scores: Vec<f32>,
    out: Vec<f32>,
}

/// Attention of one head restricted to the token lists in `members` (each
/// ascending: one (group, cluster)). Per list: gather its `Q`, `K`, `V` rows,
/// `S = scale Q K^T` as one small matrix product, masked row softmax (causal:
/// column `<=` row), `S V` as another, scatter back. `q`, `k` are `[n, d]`,
/// `v` is `[n, dv]`; the result is `[n, dv]`.
#[allow(clippy::too_many_arguments)]
fn attend_clustered(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    n: usize,
    d: usize,
    dv: usize,
    members: &[Vec<usize>],
    causal: bool,
    scale: f32,
    out: &mut [f32],
) {
    debug_assert!(members.iter().map(Vec::len).sum::<usize>() == n);
    let mut s = Scratch::default();
    for m in members {
        let len = m.len();
        if len == 1 {
            let i = m[0];
            out[i * dv..(i + 1) * dv].copy_from_slice(&v[i * dv..(i + 1) * dv]);
            continue;
        }
        let gather = |buf: &mut Vec<f32>, src: &[f32], w: usize| {
            buf.clear();
            for &i in m {
                buf.extend_from_slice(&src[i * w..(i + 1) * w]);
            }
        };
        gather(&mut s.q, q, d);
        gather(&mut s.k, k, d);
        gather(&mut s.v, v, dv);
        s.scores.resize(len * len, 0.0);
        s.out.resize(len * dv, 0.0);
        let qc = ArrayView2::from_shape((len, d), &s.q).expect("gathered Q");
        let kc = ArrayView2::from_shape((len, d), &s.k).expect("gathered K");
        let mut sc = ArrayViewMut2::from_shape((len, len), &mut s.scores).expect("scores");
        general_mat_mul(scale, &qc, &kc.t(), 0.0, &mut sc);
        for (a, row) in s.scores.chunks_mut(len).enumerate() {
            let visible = if causal { a + 1 } else { len };
            let (seen, hidden) = row.split_at_mut(visible);
            let max = seen.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut total = 0f32;
            for x in seen.iter_mut() {
                *x = (*x - max).exp();
                total += *x;
            }
            let inv = 1.0 / total;
            seen.iter_mut().for_each(|x| *x *= inv);
            hidden.fill(0.0);
        }
        let p = ArrayView2::from_shape((len, len), &s.scores).expect("probabilities");
        let vc = ArrayView2::from_shape((len, dv), &s.v).expect("gathered V");
        let mut oc = ArrayViewMut2::from_shape((len, dv), &mut s.out).expect("output");
        general_mat_mul(1.0, &p, &vc, 0.0, &mut oc);
        for (a, &i) in m.iter().enumerate() {
            out[i * dv..(i + 1) * dv].copy_from_slice(&s.out[a * dv..(a + 1) * dv]);
        }
    }
}

/// Groups token indices by (group, cluster), each list ascending.
fn members_of(clusters: &[usize], groups: Option<&[i64]>) -> Vec<Vec<usize>> {
    let mut by: std::collections::BTreeMap<(i64, usize), Vec<usize>> = Default::default();
    for (i, &c) in clusters.iter().enumerate() {
        let g = groups.map_or(0, |g| g[i]);
        by.entry((g, c)).or_default().push(i);
    }
    by.into_values().collect()
}

/// Shapes of one call: batch, heads, tokens, representation dim, head dims.
#[derive(Debug, Clone, Copy)]
struct Dims {
    b: usize,
    h: usize,
    n: usize,
    dx: usize,
    d: usize,
    dv: usize,
}

/// Runs SCAR on plain slices: `x` `[b, n, dx]`, `q`/`k` `[b, h, n, d]`,
/// `v` `[b, h, n, dv]`, `groups` `[b, n]`. Returns (`[b, h, n, dv]`, `[b, n]`).
#[allow(clippy::too_many_arguments)]
fn run(
    p: &ScarParams,
    dims: Dims,
    x: &[f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    groups: Option<&[i64]>,
) -> (Vec<f32>, Vec<i64>) {
    let Dims { b, h, n, dx, d, dv } = dims;
    let scale = p.scale.unwrap_or(1.0 / (d as f32).sqrt());
    let mut out = vec![0f32; b * h * n * dv];
    let mut ids = Vec::with_capacity(b * n);
    for bi in 0..b {
        let clusters = kmeans_cosine(&x[bi * n * dx..(bi + 1) * n * dx], n, dx, p.k, p.iterations);
        let members = members_of(&clusters, groups.map(|g| &g[bi * n..(bi + 1) * n]));
        for hi in 0..h {
            let off = (bi * h + hi) * n;
            attend_clustered(
                &q[off * d..(off + n) * d],
                &k[off * d..(off + n) * d],
                &v[off * dv..(off + n) * dv],
                n,
                d,
                dv,
                &members,
                p.causal,
                scale,
                &mut out[off * dv..(off + n) * dv],
            );
        }
        ids.extend(clusters.iter().map(|&c| c as i64));
    }
    (out, ids)
}

/// Plain dense masked attention (f64), the reference for tests: given the
/// cluster ids the op chose, token `i` attends to `j` iff same cluster, same
/// group and (when causal) `j <= i`. Shapes as in the op, batch 1 per call:
/// `q`/`k` `[h, n, d]`, `v` `[h, n, dv]`; returns `[h, n, dv]`.
#[allow(clippy::too_many_arguments)]
pub fn reference(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    h: usize,
    n: usize,
    d: usize,
    dv: usize,
    clusters: &[i64],
    groups: Option<&[i64]>,
    causal: bool,
    scale: f64,
) -> Vec<f32> {
    let mut out = vec![0f32; h * n * dv];
    for hi in 0..h {
        for i in 0..n {
            let mut weights = vec![f64::NEG_INFINITY; n];
            for (j, w) in weights.iter_mut().enumerate() {
                let same = clusters[i] == clusters[j] && groups.is_none_or(|g| g[i] == g[j]);
                if same && (!causal || j <= i) {
                    *w = (0..d)
                        .map(|t| q[(hi * n + i) * d + t] as f64 * k[(hi * n + j) * d + t] as f64)
                        .sum::<f64>()
                        * scale;
                }
            }
            let max = weights.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let exps: Vec<f64> = weights.iter().map(|w| (w - max).exp()).collect();
            let total: f64 = exps.iter().sum();
            for t in 0..dv {
                out[(hi * n + i) * dv + t] = (0..n)
                    .map(|j| exps[j] / total * v[(hi * n + j) * dv + t] as f64)
                    .sum::<f64>() as f32;
            }
        }
    }
    out
}

/// Adds an `EbScar` node to `g`; returns the names of (attention output, cluster ids).
#[allow(clippy::too_many_arguments)]
pub fn write_node(
    g: &mut crate::onnx::GraphBuilder,
    name: &str,
    x: &str,
    q: &str,
    k: &str,
    v: &str,
    group: Option<&str>,
    p: &ScarParams,
) -> (String, String) {
    use crate::onnx::Attr;
    let (y, c) = (format!("{name}.out"), format!("{name}.clusters"));
    let mut inputs = vec![x, q, k, v];
    inputs.extend(group);
    let mut attrs = vec![
        ("k", Attr::Int(p.k as i64)),
        ("iterations", Attr::Int(p.iterations as i64)),
        ("causal", Attr::Int(p.causal as i64)),
    ];
    if let Some(s) = p.scale {
        attrs.push(("scale", Attr::Float(s)));
    }
    g.node_in_domain(
        crate::onnx::CUSTOM_DOMAIN,
        OP_NAME,
        &inputs,
        &[&y, &c],
        &attrs,
    );
    (y, c)
}

/// Parses an `EbScar` node.
pub fn parse(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let k = node.get_attr_opt::<i64>("k")?.unwrap_or(16);
    let iterations = node.get_attr_opt::<i64>("iterations")?.unwrap_or(10);
    if k < 1 {
        bail!(
            "{OP_NAME} node `{}`: attribute k = {k}, must be >= 1",
            node.name
        );
    }
    if iterations < 0 {
        bail!(
            "{OP_NAME} node `{}`: attribute iterations = {iterations}, must be >= 0",
            node.name
        );
    }
    let causal = node.get_attr_opt::<i64>("causal")?.unwrap_or(1) != 0;
    let scale = node.get_attr_opt::<f32>("scale")?;
    if scale.is_some_and(|s| !s.is_finite()) {
        bail!(
            "{OP_NAME} node `{}`: attribute scale must be finite",
            node.name
        );
    }
    let has_groups = super::has_input(node, 4);
    let params = ScarParams {
        k: k as usize,
        iterations: iterations as usize,
        causal,
        scale,
    };
    Ok((expand(ScarExpansion { params, has_groups }), vec![]))
}

#[derive(Debug, Clone)]
struct ScarExpansion {
    params: ScarParams,
    has_groups: bool,
}

impl Expansion for ScarExpansion {
    fn name(&self) -> StaticName {
        OP_NAME.into()
    }

    fn nboutputs(&self) -> TractResult<usize> {
        Ok(2)
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 4 + self.has_groups as usize)?;
        check_output_arity(outputs, 2)?;
        s.equals(&inputs[0].rank, 3)?;
        for t in &inputs[1..4] {
            s.equals(&t.rank, 4)?;
            s.equals(&t.datum_type, f32::datum_type())?;
        }
        s.equals(&outputs[0].datum_type, f32::datum_type())?;
        s.equals(&outputs[1].datum_type, i64::datum_type())?;
        s.equals(&outputs[0].rank, 4)?;
        s.equals(&outputs[1].rank, 2)?;
        for ax in 0..3 {
            s.equals(&outputs[0].shape[ax], &inputs[1].shape[ax])?;
        }
        s.equals(&outputs[0].shape[3], &inputs[3].shape[3])?;
        s.equals(&outputs[1].shape[0], &inputs[0].shape[0])?;
        s.equals(&outputs[1].shape[1], &inputs[0].shape[1])?;
        if self.has_groups {
            s.equals(&inputs[4].datum_type, i64::datum_type())?;
            s.equals(&inputs[4].rank, 2)?;
        }
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        model.wire_node(
            prefix,
            Scar {
                params: self.params,
            },
            inputs,
        )
    }
}

/// The typed, runnable op.
#[derive(Debug, Clone, PartialEq)]
pub struct Scar {
    /// Attributes.
    pub params: ScarParams,
}

// Attributes are never NaN (parse rejects nothing that could be), so equality is total.
impl Eq for Scar {}

impl Op for Scar {
    fn name(&self) -> StaticName {
        OP_NAME.into()
    }

    op_as_typed_op!();
}

impl EvalOp for Scar {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = inputs[0].cast_to::<f32>()?;
        let (q, k, v) = (&inputs[1], &inputs[2], &inputs[3]);
        let (xs, qs, ks, vs) = (x.shape(), q.shape(), k.shape(), v.shape());
        ensure!(
            qs == ks && qs[..3] == vs[..3] && xs[0] == qs[0] && xs[1] == qs[2],
            "{OP_NAME}: shapes X {xs:?}, Q {qs:?}, K {ks:?}, V {vs:?} do not fit [b, n, dx], [b, h, n, d], [b, h, n, d], [b, h, n, dv]"
        );
        let dims = Dims {
            b: qs[0],
            h: qs[1],
            n: qs[2],
            dx: xs[2],
            d: qs[3],
            dv: vs[3],
        };
        let groups = match inputs.get(4) {
            Some(g) => {
                ensure!(
                    g.shape() == &xs[..2],
                    "{OP_NAME}: group shape {:?}, expected {:?}",
                    g.shape(),
                    &xs[..2]
                );
                Some(g.cast_to::<i64>()?)
            }
            None => None,
        };
        let (q, k, v) = (
            q.cast_to::<f32>()?,
            k.cast_to::<f32>()?,
            v.cast_to::<f32>()?,
        );
        let (out, ids) = run(
            &self.params,
            dims,
            x.try_as_plain_ram()?.as_slice::<f32>()?,
            q.try_as_plain_ram()?.as_slice::<f32>()?,
            k.try_as_plain_ram()?.as_slice::<f32>()?,
            v.try_as_plain_ram()?.as_slice::<f32>()?,
            match &groups {
                Some(g) => Some(g.try_as_plain_ram()?.as_slice::<i64>()?),
                None => None,
            },
        );
        let out = Tensor::from_shape(&[dims.b, dims.h, dims.n, dims.dv], &out)?;
        let ids = Tensor::from_shape(&[dims.b, dims.n], &ids)?;
        Ok(tvec!(out.into_tvalue(), ids.into_tvalue()))
    }
}

impl TypedOp for Scar {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let q = &inputs[1].shape;
        let v = &inputs[3].shape;
        let x = &inputs[0].shape;
        Ok(tvec!(
            f32::fact([q[0].clone(), q[1].clone(), q[2].clone(), v[3].clone()]),
            i64::fact([x[0].clone(), x[1].clone()])
        ))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_obvious_directions_make_two_clusters() {
        // tokens point along +x or +y; k = 2 separates them exactly
        let x = [1.0, 0.1, 0.0, 2.0, 3.0, 0.2, 0.1, 1.0, 2.0, 0.0];
        let c = kmeans_cosine(&x, 5, 2, 2, 5);
        assert_eq!(c[0], c[2]);
        assert_eq!(c[0], c[4]);
        assert_eq!(c[1], c[3]);
        assert_ne!(c[0], c[1]);
    }

    #[test]
    fn edge_cases_k_above_n_zero_vectors_and_empty_input() {
        assert!(kmeans_cosine(&[], 0, 3, 4, 2).is_empty());
        // k > n: every token may have its own cluster, ids stay below n
        let c = kmeans_cosine(&[1.0, 0.0, 0.0, 1.0], 2, 2, 16, 3);
        assert!(c.iter().all(|&i| i < 2));
        assert_ne!(c[0], c[1]);
        // a zero vector joins cluster 0
        let c = kmeans_cosine(&[0.0, 0.0, 0.0, 1.0, 1.0, 0.0], 3, 2, 3, 2);
        assert_eq!(c[0], 0);
    }

    #[test]
    fn lone_token_gets_its_own_value() {
        let members = vec![vec![0], vec![1, 2]];
        let q = [1.0, 2.0, 3.0];
        let k = [1.0, 1.0, 2.0]; // token 2 scores 3 on token 1 and 6 on itself
        let v = [5.0, 7.0, 9.0];
        let mut out = [0f32; 3];
        attend_clustered(&q, &k, &v, 3, 1, 1, &members, true, 1.0, &mut out);
        assert_eq!(out[0], 5.0);
        assert_eq!(out[1], 7.0); // causal: token 1 sees only itself
        let w = 1.0 / (1.0 + (-3.0f32).exp());
        assert!((out[2] - (9.0 * w + 7.0 * (1.0 - w))).abs() < 1e-5);
    }
}
