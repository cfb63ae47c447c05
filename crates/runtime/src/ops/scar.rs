//! `EbScar`: GEM's Sparse Cross-Attention Router (paper section 3.3).
//!
//! Tokens are clustered by cosine-distance k-means over their
//! representations `X`, separately within each `group` (GEM pathway), and a
//! query sees a key of its own group (causal when `causal = 1`) that is in its
//! cluster, is one of the group's first `sinks` tokens, or lies within its
//! local `window`: `A = softmax(M . QK^T * scale)` with masked pairs excluded.
//! With `cached = 1` the op takes a KV cache (`K`, `V` over past and new
//! tokens, the past tokens' representations and cluster ids) and attends
//! for the new tokens only; with `cached = 2` (frozen centroids only) it
//! takes, instead of the past representations, each past token's running
//! centroid sum, so a new token's clustering reads one row per cluster
//! rather than every past token. Semantics in full: `docs/ops.md`.
//!
//! k-means, exactly (so the op is deterministic and testable), per group of
//! `n_g` tokens:
//! - `k' = min(k, n_g)` centroids, initialised to the unit vectors of the
//!   group's tokens of rank `floor(j * n_g / k')`, `j = 0 .. k'`;
//! - assignment: each token goes to the centroid of largest cosine similarity
//!   (smallest `1 - x.mu / (|x||mu|)`), ties to the lowest index; a zero
//!   vector has similarity 0 with every centroid, so it joins cluster 0;
//! - `iterations` rounds of: each centroid becomes the mean of its members'
//!   unit vectors (an empty cluster keeps its previous centroid), then
//!   reassignment. Cluster ids are centroid indices in `0 .. k'` (an empty
//!   cluster's id is simply unused).
//!
//! Kernel: per head, each (group, cluster) block with a query attends
//! within itself with two small matrix products (`Q_c K_c^T`, then
//! `P_c V_c`); sink and window keys outside the query's cluster are a second
//! part, computed per block of consecutive queries of a group over the union
//! of their sink and window keys with a mask, and the two parts' softmaxes
//! are merged through their log-sum-exps. [`reference`] is the plain dense
//! masked implementation tests compare with.

use edgebench_kernels::attention::dot;
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
    /// A group's first `sinks` tokens are visible to all its queries.
    pub sinks: usize,
    /// Keys less than `window` ranks before a query (within its group) are
    /// visible to it; 0 = no window.
    pub window: usize,
    /// Cached calls re-cluster every group from scratch when the total
    /// length crosses a multiple of this (1: every call; 0: never, new tokens
    /// join the past tokens' clusters).
    pub recluster_every: usize,
}

impl Default for ScarParams {
    fn default() -> Self {
        ScarParams {
            k: 16,
            iterations: 10,
            causal: true,
            scale: None,
            sinks: 0,
            window: 0,
            recluster_every: 1,
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

/// Unit vector of one row (a zero row stays zero), as k-means computes it.
fn unit_of(row: &[f32]) -> Vec<f32> {
    let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
    row.iter()
        .map(|v| if norm > 0.0 { v / norm } else { 0.0 })
        .collect()
}

/// Positions (ascending) of each group value among `group`.
fn positions_by_group(group: &[i64]) -> std::collections::BTreeMap<i64, Vec<usize>> {
    let mut by: std::collections::BTreeMap<i64, Vec<usize>> = Default::default();
    for (i, &g) in group.iter().enumerate() {
        by.entry(g).or_default().push(i);
    }
    by
}

/// [`positions_by_group`] of the groups that have a token at `p` or later.
fn positions_of_new_groups(group: &[i64], p: usize) -> std::collections::BTreeMap<i64, Vec<usize>> {
    let mut by: std::collections::BTreeMap<i64, Vec<usize>> =
        group[p..].iter().map(|&g| (g, vec![])).collect();
    for (i, g) in group.iter().enumerate() {
        if let Some(pos) = by.get_mut(g) {
            pos.push(i);
        }
    }
    by
}

/// The cluster id of every one of the `t` tokens, by the rules of
/// `docs/ops.md`: `x_all` is `[t, dx]` (the `p` past tokens' rows, then the
/// new ones), `group` is `[t]`, `past_clusters` the `p` past tokens' ids.
/// `p = 0` is the uncached op: every group is k-means-clustered on its own.
/// With `p > 0`, a group is re-clustered from scratch over all its tokens
/// when `recluster_every` is 1 or the length crossed a multiple of it;
/// otherwise its past ids stay and each new token joins the nearest centroid
/// (mean unit vector) of the ids present among its group's past tokens.
pub fn assign_clusters(
    x_all: &[f32],
    t: usize,
    dx: usize,
    group: &[i64],
    past_clusters: &[i64],
    p: usize,
    params: &ScarParams,
) -> Vec<i64> {
    assert!(x_all.len() >= t * dx && group.len() >= t && past_clusters.len() >= p && p <= t);
    assign_rows(
        |i| &x_all[i * dx..(i + 1) * dx],
        (t, dx),
        group,
        past_clusters,
        p,
        params,
    )
}

/// [`assign_clusters`] with row `i` of `x_all` given by `row` (so the op
/// reads the cached and new rows where they are).
fn assign_rows<'a>(
    row: impl Fn(usize) -> &'a [f32],
    (t, dx): (usize, usize),
    group: &[i64],
    past_clusters: &[i64],
    p: usize,
    params: &ScarParams,
) -> Vec<i64> {
    let n_every = params.recluster_every;
    let recluster = p == 0 || n_every == 1 || (n_every > 1 && t / n_every > p / n_every);
    let mut ids = vec![0i64; t];
    for pos in positions_by_group(&group[..t]).into_values() {
        let n_past = pos.partition_point(|&i| i < p);
        if recluster || n_past == 0 {
            let rows: Vec<f32> = pos.iter().flat_map(|&i| row(i).iter().copied()).collect();
            let c = kmeans_cosine(&rows, pos.len(), dx, params.k, params.iterations);
            for (&i, c) in pos.iter().zip(c) {
                ids[i] = c as i64;
            }
            continue;
        }
        for &i in &pos[..n_past] {
            ids[i] = past_clusters[i];
        }
        if n_past == pos.len() {
            // no new token in this group: nothing to assign
            continue;
        }
        // frozen: centroids of the ids among the group's past tokens
        let mut sums: std::collections::BTreeMap<i64, (Vec<f32>, usize)> = Default::default();
        for &i in &pos[..n_past] {
            let (s, count) = sums
                .entry(past_clusters[i])
                .or_insert_with(|| (vec![0f32; dx], 0));
            add_unit(s, row(i));
            *count += 1;
        }
        let centroids: Vec<(i64, Vec<f32>)> = sums
            .into_iter()
            .map(|(id, (s, count))| {
                let mean: Vec<f32> = s.iter().map(|v| v / count as f32).collect();
                (id, unit_of(&mean))
            })
            .collect();
        for &i in &pos[n_past..] {
            ids[i] = nearest(&unit_of(row(i)), &centroids);
        }
    }
    ids
}

/// Adds the unit vector of `r` (nothing for a zero row) to `s`, exactly as
/// the frozen rule sums a cluster's members.
fn add_unit(s: &mut [f32], r: &[f32]) {
    let norm = dot(r, r).sqrt();
    if norm > 0.0 {
        for (a, b) in s.iter_mut().zip(r) {
            *a += b / norm;
        }
    }
}

/// The frozen rule (`recluster_every = 0`) from running sums: the cluster
/// ids of all `t` tokens as [`assign_clusters`] gives them, and the running
/// sum of each new token (`[t - p, dx]`): the sum of the unit vectors of its
/// group's tokens up to itself in its cluster. `past_sums` `[p, dx]` holds
/// the past tokens' running sums, so the centroid of a cluster is the last
/// running sum of its past members over their count, and a call reads one
/// row per cluster instead of every past token. The sums are added in token
/// order, as [`assign_clusters`] adds them, so ids and sums equal its own.
pub fn assign_clusters_with_sums(
    x_new: &[f32],
    (t, dx): (usize, usize),
    group: &[i64],
    past_clusters: &[i64],
    past_sums: &[f32],
    p: usize,
    params: &ScarParams,
) -> (Vec<i64>, Vec<f32>) {
    assert!(
        p <= t
            && x_new.len() >= (t - p) * dx
            && group.len() >= t
            && past_clusters.len() >= p
            && past_sums.len() >= p * dx
    );
    sums_rows(
        |i| &x_new[(i - p) * dx..(i - p + 1) * dx],
        |i| &past_sums[i * dx..(i + 1) * dx],
        (t, dx),
        group,
        past_clusters,
        p,
        params,
    )
}

/// [`assign_clusters_with_sums`] with the new tokens' rows (`i >= p`) and
/// the past tokens' running sums (`i < p`) given where they are.
fn sums_rows<'a>(
    row: impl Fn(usize) -> &'a [f32],
    past_sum: impl Fn(usize) -> &'a [f32],
    (t, dx): (usize, usize),
    group: &[i64],
    past_clusters: &[i64],
    p: usize,
    params: &ScarParams,
) -> (Vec<i64>, Vec<f32>) {
    // past ids never change
    let mut ids = past_clusters[..p].to_vec();
    ids.resize(t, 0);
    let mut sums = vec![0f32; (t - p) * dx];
    for pos in positions_of_new_groups(&group[..t], p).into_values() {
        let n_past = pos.partition_point(|&i| i < p);
        // each past id's (last member, member count)
        let mut last: std::collections::BTreeMap<i64, (usize, usize)> = Default::default();
        for &i in &pos[..n_past] {
            let e = last.entry(past_clusters[i]).or_insert((i, 0));
            e.0 = i;
            e.1 += 1;
        }
        if n_past == 0 {
            let rows: Vec<f32> = pos.iter().flat_map(|&i| row(i).iter().copied()).collect();
            let c = kmeans_cosine(&rows, pos.len(), dx, params.k, params.iterations);
            for (&i, c) in pos.iter().zip(c) {
                ids[i] = c as i64;
            }
        } else {
            // frozen: the centroids of the ids among the group's past tokens
            let centroids: Vec<(i64, Vec<f32>)> = last
                .iter()
                .map(|(&id, &(j, count))| {
                    let mean: Vec<f32> = past_sum(j).iter().map(|v| v / count as f32).collect();
                    (id, unit_of(&mean))
                })
                .collect();
            for &i in &pos[n_past..] {
                ids[i] = nearest(&unit_of(row(i)), &centroids);
            }
        }
        // running sums of the new tokens, in token order, from the last past
        // member's of their id
        let mut running: std::collections::BTreeMap<i64, Vec<f32>> = Default::default();
        for &i in &pos[n_past..] {
            let s = running
                .entry(ids[i])
                .or_insert_with(|| match last.get(&ids[i]) {
                    Some(&(j, _)) => past_sum(j).to_vec(),
                    None => vec![0f32; dx],
                });
            add_unit(s, row(i));
            sums[(i - p) * dx..(i - p + 1) * dx].copy_from_slice(s);
        }
    }
    (ids, sums)
}

/// What one batch item's attention needs, shared by its heads: which keys
/// each query block reads and the masks of the sink/window part.
struct Plan {
    /// (group, cluster) member positions (ascending, in `0 .. t`) of blocks
    /// with at least one query, and the index of the first query member.
    clusters: Vec<(Vec<usize>, usize)>,
    /// Sink/window part: blocks of consecutive queries of one group.
    extra: Vec<ExtraBlock>,
}

/// Queries (positions, each `>= p`), the union of their sink and window keys
/// (positions), and which (query, key) pairs are visible through this part
/// (key outside the query's cluster, so no pair is counted twice).
struct ExtraBlock {
    queries: Vec<usize>,
    keys: Vec<usize>,
    visible: Vec<bool>,
}

/// Queries per block of the sink/window part: half the window, so the
/// block's union of keys stays within about 1.5 times what its queries see.
fn extra_block_len(window: usize) -> usize {
    (window / 2).clamp(8, 64)
}

impl Plan {
    fn new(clusters: &[i64], group: &[i64], p: usize, params: &ScarParams) -> Plan {
        let t = clusters.len();
        // the (group, cluster) blocks of the queries, then their members
        let mut by: std::collections::BTreeMap<(i64, i64), Vec<usize>> =
            (p..t).map(|i| ((group[i], clusters[i]), vec![])).collect();
        for i in 0..t {
            if let Some(m) = by.get_mut(&(group[i], clusters[i])) {
                m.push(i);
            }
        }
        let blocks = by
            .into_values()
            .map(|m| {
                let first = m.partition_point(|&i| i < p);
                (m, first)
            })
            .collect();
        let mut extra = Vec::new();
        let (sinks, window) = (params.sinks, params.window);
        if sinks > 0 || window > 0 {
            let qb = extra_block_len(window);
            for pos in positions_of_new_groups(group, p).into_values() {
                let first = pos.partition_point(|&i| i < p);
                let len = pos.len();
                let mut r0 = first;
                while r0 < len {
                    let r1 = (r0 + qb).min(len) - 1;
                    // key ranks: sinks, then the window span around r0 ..= r1
                    let mut ranks: Vec<usize> = (0..sinks.min(len)).collect();
                    if window > 0 {
                        let lo = (r0 + 1).saturating_sub(window).max(ranks.len());
                        let hi = if params.causal {
                            r1
                        } else {
                            (r1 + window - 1).min(len - 1)
                        };
                        ranks.extend(lo..=hi);
                    }
                    let keys: Vec<usize> = ranks.iter().map(|&r| pos[r]).collect();
                    let mut visible = Vec::with_capacity((r1 + 1 - r0) * keys.len());
                    for (rq, &i) in (r0..).zip(&pos[r0..=r1]) {
                        for (&rk, &j) in ranks.iter().zip(&keys) {
                            let near = window > 0 && rq.abs_diff(rk) < window;
                            visible.push(
                                clusters[j] != clusters[i]
                                    && (!params.causal || j <= i)
                                    && (rk < sinks || near),
                            );
                        }
                    }
                    if visible.iter().any(|&v| v) {
                        extra.push(ExtraBlock {
                            queries: pos[r0..=r1].to_vec(),
                            keys,
                            visible,
                        });
                    }
                    r0 = r1 + 1;
                }
            }
        }
        Plan {
            clusters: blocks,
            extra,
        }
    }
}

/// Blocks with at most this many queries (decode steps) skip the gathers
/// and matrix products and read `K` and `V` rows in place.
const DIRECT_QUERIES: usize = 2;

/// Query rows per tile of a causal cluster block.
const CAUSAL_TILE: usize = 64;

/// Reusable buffers of [`attend`].
#[derive(Default)]
struct Scratch {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    scores: Vec<f32>,
    out: Vec<f32>,
}

impl Scratch {
    /// Gathers rows `rows` of the `[_, w]` matrix `src` into `buf`.
    fn gather(buf: &mut Vec<f32>, src: &[f32], w: usize, rows: impl Iterator<Item = usize>) {
        buf.clear();
        for i in rows {
            buf.extend_from_slice(&src[i * w..(i + 1) * w]);
        }
    }

    /// `scores = scale Q K^T` over the gathered `Q` rows `rows` and the
    /// first `nk` gathered `K` rows.
    fn scores(&mut self, rows: std::ops::Range<usize>, nk: usize, d: usize, scale: f32) {
        let nq = rows.len();
        self.scores.resize(nq * nk, 0.0);
        let qc = ArrayView2::from_shape((nq, d), &self.q[rows.start * d..rows.end * d])
            .expect("gathered Q");
        let kc = ArrayView2::from_shape((nk, d), &self.k[..nk * d]).expect("gathered K");
        let mut sc = ArrayViewMut2::from_shape((nq, nk), &mut self.scores).expect("scores");
        general_mat_mul(scale, &qc, &kc.t(), 0.0, &mut sc);
    }

    /// `out = P V` over the `[nq, nk]` probabilities in `scores` and the
    /// first `nk` gathered `V` rows.
    fn values(&mut self, nq: usize, nk: usize, dv: usize) {
        self.out.resize(nq * dv, 0.0);
        let p = ArrayView2::from_shape((nq, nk), &self.scores[..nq * nk]).expect("probabilities");
        let vc = ArrayView2::from_shape((nk, dv), &self.v[..nk * dv]).expect("gathered V");
        let mut oc = ArrayViewMut2::from_shape((nq, dv), &mut self.out).expect("output");
        general_mat_mul(1.0, &p, &vc, 0.0, &mut oc);
    }
}

/// Softmax of the entries of `row` that `seen` keeps (the others become 0);
/// returns the log-sum-exp of the kept scores (`-inf` when none is kept).
fn masked_softmax(row: &mut [f32], seen: impl Fn(usize) -> bool) -> f32 {
    let mut max = f32::NEG_INFINITY;
    for (j, x) in row.iter().enumerate() {
        if seen(j) && *x > max {
            max = *x;
        }
    }
    if max == f32::NEG_INFINITY {
        row.fill(0.0);
        return f32::NEG_INFINITY;
    }
    let mut total = 0f32;
    for (j, x) in row.iter_mut().enumerate() {
        *x = if seen(j) { (*x - max).exp() } else { 0.0 };
        total += *x;
    }
    let inv = 1.0 / total;
    row.iter_mut().for_each(|x| *x *= inv);
    max + total.ln()
}

/// Attention of one head: `q` `[n, d]` (queries at positions `p ..`), `k`
/// `[t, d]`, `v` `[t, dv]`; writes `out` `[n, dv]`. The cluster part
/// writes each query's row and log-sum-exp; the sink/window part's rows are
/// merged in by their log-sum-exps.
#[allow(clippy::too_many_arguments)]
fn attend(
    plan: &Plan,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    p: usize,
    (d, dv): (usize, usize),
    causal: bool,
    scale: f32,
    s: &mut Scratch,
    lse: &mut [f32],
    out: &mut [f32],
) {
    let need_lse = !plan.extra.is_empty();
    for (m, first) in &plan.clusters {
        let (len, first) = (m.len(), *first);
        if len == 1 {
            let i = m[0];
            let r = i - p;
            out[r * dv..(r + 1) * dv].copy_from_slice(&v[i * dv..(i + 1) * dv]);
            if need_lse {
                let dot: f32 = q[r * d..(r + 1) * d]
                    .iter()
                    .zip(&k[i * d..(i + 1) * d])
                    .map(|(a, b)| a * b)
                    .sum();
                lse[r] = dot * scale;
            }
            continue;
        }
        let nq = len - first;
        if nq <= DIRECT_QUERIES {
            // decode: read the keys and values in place, one pass each
            for a in first..len {
                let r = m[a] - p;
                let keys = if causal { &m[..=a] } else { &m[..] };
                let qr = &q[r * d..(r + 1) * d];
                s.scores.clear();
                s.scores.extend(
                    keys.iter()
                        .map(|&j| dot(qr, &k[j * d..(j + 1) * d]) * scale),
                );
                lse[r] = masked_softmax(&mut s.scores, |_| true);
                let o = &mut out[r * dv..(r + 1) * dv];
                o.fill(0.0);
                for (&j, &w) in keys.iter().zip(&s.scores) {
                    for (o, x) in o.iter_mut().zip(&v[j * dv..(j + 1) * dv]) {
                        *o += w * x;
                    }
                }
            }
            continue;
        }
        Scratch::gather(&mut s.q, q, d, m[first..].iter().map(|&i| i - p));
        Scratch::gather(&mut s.k, k, d, m.iter().copied());
        Scratch::gather(&mut s.v, v, dv, m.iter().copied());
        // causal: tiles of query rows, each against the keys up to its last
        // query only, so a large block costs about its visible half
        let tile = if causal { CAUSAL_TILE } else { nq };
        for a0 in (0..nq).step_by(tile) {
            let a1 = (a0 + tile).min(nq);
            let nk = if causal { first + a1 } else { len };
            s.scores(a0..a1, nk, d, scale);
            for (a, row) in (a0..).zip(s.scores.chunks_mut(nk)) {
                let l = if causal {
                    let last = first + a;
                    masked_softmax(row, |j| j <= last)
                } else {
                    masked_softmax(row, |_| true)
                };
                lse[m[first + a] - p] = l;
            }
            s.values(a1 - a0, nk, dv);
            for (a, &i) in m[first + a0..first + a1].iter().enumerate() {
                let r = i - p;
                out[r * dv..(r + 1) * dv].copy_from_slice(&s.out[a * dv..(a + 1) * dv]);
            }
        }
    }
    for b in &plan.extra {
        let (nq, nk) = (b.queries.len(), b.keys.len());
        if nq <= DIRECT_QUERIES {
            // decode: the visible keys and values in place, one pass each
            for (a, &i) in b.queries.iter().enumerate() {
                let r = i - p;
                let qr = &q[r * d..(r + 1) * d];
                let seen = &b.visible[a * nk..(a + 1) * nk];
                s.scores.clear();
                s.scores
                    .extend(b.keys.iter().zip(seen).map(|(&j, &vis)| match vis {
                        true => dot(qr, &k[j * d..(j + 1) * d]) * scale,
                        false => 0.0,
                    }));
                let l2 = masked_softmax(&mut s.scores, |j| seen[j]);
                if l2 == f32::NEG_INFINITY {
                    continue;
                }
                s.out.clear();
                s.out.resize(dv, 0.0);
                for ((&j, &w), &vis) in b.keys.iter().zip(&s.scores).zip(seen) {
                    if vis {
                        for (o, x) in s.out.iter_mut().zip(&v[j * dv..(j + 1) * dv]) {
                            *o += w * x;
                        }
                    }
                }
                merge(&mut out[r * dv..(r + 1) * dv], &mut lse[r], &s.out, l2);
            }
            continue;
        }
        Scratch::gather(&mut s.q, q, d, b.queries.iter().map(|&i| i - p));
        Scratch::gather(&mut s.k, k, d, b.keys.iter().copied());
        Scratch::gather(&mut s.v, v, dv, b.keys.iter().copied());
        s.scores(0..nq, nk, d, scale);
        let mut lse2 = vec![f32::NEG_INFINITY; nq];
        for (a, row) in s.scores.chunks_mut(nk).enumerate() {
            let seen = &b.visible[a * nk..(a + 1) * nk];
            lse2[a] = masked_softmax(row, |j| seen[j]);
        }
        s.values(nq, nk, dv);
        for (a, &i) in b.queries.iter().enumerate() {
            if lse2[a] == f32::NEG_INFINITY {
                continue;
            }
            let r = i - p;
            merge(
                &mut out[r * dv..(r + 1) * dv],
                &mut lse[r],
                &s.out[a * dv..(a + 1) * dv],
                lse2[a],
            );
        }
    }
}

/// Merges a second softmax part (`part`, log-sum-exp `lse2`) into a query's
/// output row `o` (log-sum-exp `lse`, updated).
fn merge(o: &mut [f32], lse: &mut f32, part: &[f32], lse2: f32) {
    let top = lse.max(lse2);
    let (w1, w2) = ((*lse - top).exp(), (lse2 - top).exp());
    let inv = 1.0 / (w1 + w2);
    for (o, e) in o.iter_mut().zip(part) {
        *o = (w1 * *o + w2 * e) * inv;
    }
    *lse = top + (w1 + w2).ln();
}

/// Shapes of one call: batch, heads, new tokens, past tokens, representation
/// dim, head dims. Keys and values cover `t = p + n` tokens.
#[derive(Debug, Clone, Copy)]
struct Dims {
    b: usize,
    h: usize,
    /// Key/value heads (`h` a multiple of it).
    kvh: usize,
    n: usize,
    p: usize,
    dx: usize,
    d: usize,
    dv: usize,
}

/// One call's inputs as plain slices: `x` `[b, n, dx]`, `q` `[b, h, n, d]`,
/// `k` `[b, kvh, t, d]`, `v` `[b, kvh, t, dv]`, `groups` `[b, t]`, `past`
/// `[b, p, dx]` (the past representations, or with `sums` their running
/// centroid sums), `past_clusters` `[b, p]`.
struct Inputs<'a> {
    x: &'a [f32],
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    groups: Option<&'a [i64]>,
    past: &'a [f32],
    past_clusters: &'a [i64],
    sums: bool,
}

/// Runs SCAR; returns (`[b, h, n, dv]`, `[b, t]`, and with `sums` the new
/// tokens' running sums `[b, n, dx]`, else nothing).
fn run(params: &ScarParams, dims: Dims, inp: &Inputs) -> (Vec<f32>, Vec<i64>, Vec<f32>) {
    let Dims {
        b,
        h,
        kvh,
        n,
        p,
        dx,
        d,
        dv,
    } = dims;
    let t = p + n;
    let scale = params.scale.unwrap_or(1.0 / (d as f32).sqrt());
    let mut out = vec![0f32; b * h * n * dv];
    let mut ids = Vec::with_capacity(b * t);
    let mut new_sums = Vec::with_capacity(if inp.sums { b * n * dx } else { 0 });
    let mut scratch = Scratch::default();
    let mut lse = vec![0f32; n];
    let zeros = vec![0i64; t];
    for bi in 0..b {
        let (past_rows, x) = (
            &inp.past[bi * p * dx..(bi + 1) * p * dx],
            &inp.x[bi * n * dx..(bi + 1) * n * dx],
        );
        let row = |i: usize| match i < p {
            true => &past_rows[i * dx..(i + 1) * dx],
            false => &x[(i - p) * dx..(i - p + 1) * dx],
        };
        let group = inp.groups.map_or(&zeros[..], |g| &g[bi * t..(bi + 1) * t]);
        let past = &inp.past_clusters[bi * p..(bi + 1) * p];
        let clusters = match inp.sums {
            true => {
                let (ids, sums) = sums_rows(row, row, (t, dx), group, past, p, params);
                new_sums.extend(sums);
                ids
            }
            false => assign_rows(row, (t, dx), group, past, p, params),
        };
        let plan = Plan::new(&clusters, group, p, params);
        for hi in 0..h {
            // query head hi reads key/value head hi / (h / kvh)
            let (qo, ko) = ((bi * h + hi) * n, (bi * kvh + hi / (h / kvh)) * t);
            attend(
                &plan,
                &inp.q[qo * d..(qo + n) * d],
                &inp.k[ko * d..(ko + t) * d],
                &inp.v[ko * dv..(ko + t) * dv],
                p,
                (d, dv),
                params.causal,
                scale,
                &mut scratch,
                &mut lse,
                &mut out[qo * dv..(qo + n) * dv],
            );
        }
        ids.extend(clusters);
    }
    (out, ids, new_sums)
}

/// Shapes for [`reference`]: heads, all tokens `t`, queries `n` (the last `n`
/// of the `t`), head dims.
#[derive(Debug, Clone, Copy)]
pub struct RefShape {
    pub h: usize,
    pub t: usize,
    pub n: usize,
    pub d: usize,
    pub dv: usize,
}

/// Plain dense masked attention (f64), the reference for tests: given the
/// cluster ids of all `t` tokens, the query at position `i = t - n + row`
/// attends to `j` iff same group, (when causal) `j <= i`, and same cluster,
/// `rank(j) < sinks` or `|rank(i) - rank(j)| < window` (ranks within the
/// group). Batch 1 per call: `q` `[h, n, d]`, `k` `[h, t, d]`, `v`
/// `[h, t, dv]`; returns `[h, n, dv]`. `params.k`, `iterations` and
/// `recluster_every` are not used.
pub fn reference(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    shape: RefShape,
    clusters: &[i64],
    groups: Option<&[i64]>,
    params: &ScarParams,
) -> Vec<f32> {
    let RefShape { h, t, n, d, dv } = shape;
    let p = t - n;
    let scale = params.scale.map_or(1.0 / (d as f64).sqrt(), |s| s as f64);
    let group = |i: usize| groups.map_or(0, |g| g[i]);
    let rank = |i: usize| (0..i).filter(|&j| group(j) == group(i)).count();
    let visible = |i: usize, j: usize| {
        let (ri, rj) = (rank(i), rank(j));
        group(i) == group(j)
            && (!params.causal || j <= i)
            && (clusters[i] == clusters[j]
                || rj < params.sinks
                || (params.window > 0 && ri.abs_diff(rj) < params.window))
    };
    let mut out = vec![0f32; h * n * dv];
    for hi in 0..h {
        for row in 0..n {
            let i = p + row;
            let mut weights = vec![f64::NEG_INFINITY; t];
            for (j, w) in weights.iter_mut().enumerate() {
                if visible(i, j) {
                    *w = (0..d)
                        .map(|e| q[(hi * n + row) * d + e] as f64 * k[(hi * t + j) * d + e] as f64)
                        .sum::<f64>()
                        * scale;
                }
            }
            let max = weights.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let exps: Vec<f64> = weights.iter().map(|w| (w - max).exp()).collect();
            let total: f64 = exps.iter().sum();
            for e in 0..dv {
                out[(hi * n + row) * dv + e] = (0..t)
                    .map(|j| exps[j] / total * v[(hi * t + j) * dv + e] as f64)
                    .sum::<f64>() as f32;
            }
        }
    }
    out
}

/// The attributes shared by both forms of the node.
fn attrs(p: &ScarParams, cached: i64) -> Vec<(&'static str, crate::onnx::Attr)> {
    use crate::onnx::Attr;
    let mut attrs = vec![
        ("k", Attr::Int(p.k as i64)),
        ("iterations", Attr::Int(p.iterations as i64)),
        ("causal", Attr::Int(p.causal as i64)),
    ];
    if let Some(s) = p.scale {
        attrs.push(("scale", Attr::Float(s)));
    }
    if p.sinks > 0 {
        attrs.push(("sinks", Attr::Int(p.sinks as i64)));
    }
    if p.window > 0 {
        attrs.push(("window", Attr::Int(p.window as i64)));
    }
    if cached > 0 {
        attrs.push(("cached", Attr::Int(cached)));
        attrs.push(("recluster_every", Attr::Int(p.recluster_every as i64)));
    }
    attrs
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
    let (y, c) = (format!("{name}.out"), format!("{name}.clusters"));
    let mut inputs = vec![x, q, k, v];
    inputs.extend(group);
    g.node_in_domain(
        crate::onnx::CUSTOM_DOMAIN,
        OP_NAME,
        &inputs,
        &[&y, &c],
        &attrs(p, 0),
    );
    (y, c)
}

/// Adds an `EbScar` node in its cached form (`cached = 1`) to `g`: `k`, `v`
/// and `group` cover past then new tokens, `past_x` and `past_clusters` the
/// past ones. Returns the names of (attention output of the new tokens,
/// cluster ids of all tokens `[b, t]`).
#[allow(clippy::too_many_arguments)]
pub fn write_node_cached(
    g: &mut crate::onnx::GraphBuilder,
    name: &str,
    x: &str,
    q: &str,
    k: &str,
    v: &str,
    group: &str,
    past_x: &str,
    past_clusters: &str,
    p: &ScarParams,
) -> (String, String) {
    let (y, c) = (format!("{name}.out"), format!("{name}.clusters"));
    g.node_in_domain(
        crate::onnx::CUSTOM_DOMAIN,
        OP_NAME,
        &[x, q, k, v, group, past_x, past_clusters],
        &[&y, &c],
        &attrs(p, 1),
    );
    (y, c)
}

/// Adds an `EbScar` node in its running-sums form (`cached = 2`, the frozen
/// rule: `p.recluster_every` must be 0) to `g`: as [`write_node_cached`]
/// with `past_sums` `[b, past, dx]`, the past tokens' running centroid sums,
/// in place of their representations. Returns the names of (attention
/// output of the new tokens, cluster ids of all tokens `[b, t]`, running
/// sums of the new tokens `[b, n, dx]`).
#[allow(clippy::too_many_arguments)]
pub fn write_node_sums(
    g: &mut crate::onnx::GraphBuilder,
    name: &str,
    x: &str,
    q: &str,
    k: &str,
    v: &str,
    group: &str,
    past_sums: &str,
    past_clusters: &str,
    p: &ScarParams,
) -> (String, String, String) {
    assert_eq!(
        p.recluster_every, 0,
        "the running-sums form is the frozen rule's"
    );
    let (y, c, s) = (
        format!("{name}.out"),
        format!("{name}.clusters"),
        format!("{name}.sums"),
    );
    g.node_in_domain(
        crate::onnx::CUSTOM_DOMAIN,
        OP_NAME,
        &[x, q, k, v, group, past_sums, past_clusters],
        &[&y, &c, &s],
        &attrs(p, 2),
    );
    (y, c, s)
}

/// Parses an `EbScar` node.
pub fn parse(
    _ctx: &ParsingContext,
    node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let int = |attr: &str, default: i64, min: i64| -> TractResult<usize> {
        let v = node.get_attr_opt::<i64>(attr)?.unwrap_or(default);
        if v < min {
            bail!(
                "{OP_NAME} node `{}`: attribute {attr} = {v}, must be >= {min}",
                node.name
            );
        }
        Ok(v as usize)
    };
    let k = int("k", 16, 1)?;
    let iterations = int("iterations", 10, 0)?;
    let sinks = int("sinks", 0, 0)?;
    let window = int("window", 0, 0)?;
    let recluster_every = int("recluster_every", 1, 0)?;
    let (cached, sums) = match node.get_attr_opt::<i64>("cached")?.unwrap_or(0) {
        0 => (false, false),
        1 => (true, false),
        2 => (true, true),
        other => bail!(
            "{OP_NAME} node `{}`: attribute cached = {other}, must be 0, 1 or 2",
            node.name
        ),
    };
    if sums && recluster_every != 0 {
        bail!(
            "{OP_NAME} node `{}`: cached = 2 (running sums) is the frozen rule, so recluster_every must be 0, not {recluster_every}",
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
    if cached && !(4..7).all(|i| super::has_input(node, i)) {
        bail!(
            "{OP_NAME} node `{}`: cached = {} needs 7 inputs (x, q, k, v, group, {}, past_clusters)",
            node.name,
            1 + sums as usize,
            if sums { "past_sums" } else { "past_x" }
        );
    }
    let params = ScarParams {
        k,
        iterations,
        causal,
        scale,
        sinks,
        window,
        recluster_every,
    };
    Ok((
        expand(ScarExpansion {
            params,
            has_groups,
            cached,
            sums,
        }),
        vec![],
    ))
}

#[derive(Debug, Clone)]
struct ScarExpansion {
    params: ScarParams,
    has_groups: bool,
    cached: bool,
    sums: bool,
}

impl Expansion for ScarExpansion {
    fn name(&self) -> StaticName {
        OP_NAME.into()
    }

    fn nboutputs(&self) -> TractResult<usize> {
        Ok(2 + self.sums as usize)
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        let arity = if self.cached {
            7
        } else {
            4 + self.has_groups as usize
        };
        check_input_arity(inputs, arity)?;
        check_output_arity(outputs, 2 + self.sums as usize)?;
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
        if self.cached {
            // clusters cover all t tokens: K's axis 2
            s.equals(&outputs[1].shape[1], &inputs[2].shape[2])?;
            s.equals(&inputs[5].rank, 3)?;
            s.equals(&inputs[6].rank, 2)?;
            s.equals(&inputs[6].datum_type, i64::datum_type())?;
            if self.sums {
                s.equals(&inputs[5].datum_type, f32::datum_type())?;
                s.equals(&outputs[2].datum_type, f32::datum_type())?;
                s.equals(&outputs[2].rank, 3)?;
                s.equals(&outputs[2].shape, &inputs[0].shape)?;
            }
        } else {
            s.equals(&outputs[1].shape[1], &inputs[0].shape[1])?;
        }
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
                cached: self.cached,
                sums: self.sums,
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
    /// The cached input form (`cached = 1` or 2).
    pub cached: bool,
    /// The running-sums form (`cached = 2`): input 5 holds the past tokens'
    /// running centroid sums, and a third output the new tokens'.
    pub sums: bool,
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
            xs.len() == 3
                && qs.len() == 4
                && ks.len() == 4
                && vs.len() == 4
                && qs[0] == ks[0]
                && ks[1] > 0
                && qs[1] % ks[1] == 0
                && ks[..3] == vs[..3]
                && qs[3] == ks[3]
                && xs[0] == qs[0]
                && xs[1] == qs[2]
                && (self.cached || ks[2] == qs[2])
                && ks[2] >= qs[2],
            "{OP_NAME}: shapes X {xs:?}, Q {qs:?}, K {ks:?}, V {vs:?} do not fit [b, n, dx], [b, h, n, d], [b, kv, {t}, d], [b, kv, {t}, dv] (kv dividing h)",
            t = if self.cached { "p + n" } else { "n" }
        );
        let (b, n, t) = (qs[0], qs[2], ks[2]);
        let p = t - n;
        let groups = match inputs.get(4) {
            Some(g) => {
                ensure!(
                    g.shape() == [b, t],
                    "{OP_NAME}: group shape {:?}, expected {:?}",
                    g.shape(),
                    [b, t]
                );
                Some(g.cast_to::<i64>()?)
            }
            None => None,
        };
        let (past_x, past_clusters) = if self.cached {
            let (px, pc) = (inputs[5].cast_to::<f32>()?, inputs[6].cast_to::<i64>()?);
            ensure!(
                px.shape() == [b, p, xs[2]] && pc.shape() == [b, p],
                "{OP_NAME}: {} {:?} and past_clusters {:?} do not fit [b, p, dx] = {:?} and [b, p] = {:?} (K {ks:?} has t = p + n tokens, Q {qs:?} has n)",
                if self.sums { "past_sums" } else { "past_x" },
                px.shape(),
                pc.shape(),
                [b, p, xs[2]],
                [b, p]
            );
            (Some(px), Some(pc))
        } else {
            (None, None)
        };
        let dims = Dims {
            b,
            h: qs[1],
            kvh: ks[1],
            n,
            p,
            dx: xs[2],
            d: qs[3],
            dv: vs[3],
        };
        let (q, k, v) = (
            q.cast_to::<f32>()?,
            k.cast_to::<f32>()?,
            v.cast_to::<f32>()?,
        );
        let inp = Inputs {
            x: x.try_as_plain_ram()?.as_slice::<f32>()?,
            q: q.try_as_plain_ram()?.as_slice::<f32>()?,
            k: k.try_as_plain_ram()?.as_slice::<f32>()?,
            v: v.try_as_plain_ram()?.as_slice::<f32>()?,
            groups: match &groups {
                Some(g) => Some(g.try_as_plain_ram()?.as_slice::<i64>()?),
                None => None,
            },
            past: match &past_x {
                Some(a) => a.try_as_plain_ram()?.as_slice::<f32>()?,
                None => &[],
            },
            past_clusters: match &past_clusters {
                Some(a) => a.try_as_plain_ram()?.as_slice::<i64>()?,
                None => &[],
            },
            sums: self.sums,
        };
        let (out, ids, sums) = run(&self.params, dims, &inp);
        let out = Tensor::from_shape(&[b, dims.h, n, dims.dv], &out)?;
        let ids = Tensor::from_shape(&[b, t], &ids)?;
        let mut outs = tvec!(out.into_tvalue(), ids.into_tvalue());
        if self.sums {
            outs.push(Tensor::from_shape(&[b, n, dims.dx], &sums)?.into_tvalue());
        }
        Ok(outs)
    }
}

impl TypedOp for Scar {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let q = &inputs[1].shape;
        let v = &inputs[3].shape;
        let x = &inputs[0].shape;
        // clusters cover every token of K: `t = p + n` cached, `n` otherwise
        let t = if self.cached {
            inputs[2].shape[2].clone()
        } else {
            x[1].clone()
        };
        let mut facts = tvec!(
            f32::fact([q[0].clone(), q[1].clone(), q[2].clone(), v[3].clone()]),
            i64::fact([x[0].clone(), t])
        );
        if self.sums {
            facts.push(f32::fact(x.iter().cloned().collect::<TVec<_>>()));
        }
        Ok(facts)
    }

    as_op!();
}

/// The id of the centroid most similar to the unit vector `u` (ties to the
/// first listed).
fn nearest(u: &[f32], centroids: &[(i64, Vec<f32>)]) -> i64 {
    let mut best = (centroids[0].0, f32::NEG_INFINITY);
    for (id, c) in centroids {
        let sim = dot(u, c);
        if sim > best.1 {
            best = (*id, sim);
        }
    }
    best.0
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
        // token 0 alone in cluster 0; tokens 1, 2 in cluster 1
        let plan = Plan::new(&[0, 1, 1], &[0, 0, 0], 0, &ScarParams::default());
        let q = [1.0, 2.0, 3.0];
        let k = [1.0, 1.0, 2.0]; // token 2 scores 3 on token 1 and 6 on itself
        let v = [5.0, 7.0, 9.0];
        let (mut out, mut lse) = ([0f32; 3], [0f32; 3]);
        let mut s = Scratch::default();
        attend(
            &plan,
            &q,
            &k,
            &v,
            0,
            (1, 1),
            true,
            1.0,
            &mut s,
            &mut lse,
            &mut out,
        );
        assert_eq!(out[0], 5.0);
        assert_eq!(out[1], 7.0); // causal: token 1 sees only itself
        let w = 1.0 / (1.0 + (-3.0f32).exp());
        assert!((out[2] - (9.0 * w + 7.0 * (1.0 - w))).abs() < 1e-5);
    }

    #[test]
    fn frozen_new_tokens_join_the_nearest_past_centroid() {
        // past: ids 3 (along +x) and 5 (along +y) in group 0; group 1 has no past
        let x = [
            1.0, 0.0, 0.0, 1.0, 2.0, 0.0, // past, group 0
            0.1, 3.0, 1.0, 1.0, 0.0, 0.0, // new: near +y, a tie, zero, in group 0
            4.0, 4.0, // new, group 1
        ];
        let group = [0, 0, 0, 0, 0, 0, 1];
        let params = ScarParams {
            recluster_every: 0,
            ..ScarParams::default()
        };
        let ids = assign_clusters(&x, 7, 2, &group, &[3, 5, 3], 3, &params);
        // a tie and a zero vector go to the lowest id; group 1 starts at 0
        assert_eq!(ids, vec![3, 5, 3, 5, 3, 3, 0]);
    }
}
