//! `EbScar` and `EbTokenRouter` executed by tract (plain and optimised, with a
//! symbolic sequence length) against their plain references, over random
//! shapes and values.

use edgebench::onnx::{encode, Dim, Elem, GraphBuilder};
use edgebench::ops::{router, scar};
use proptest::prelude::*;
use tract_onnx::prelude::*;

fn rng(seed: u64) -> impl FnMut() -> f32 {
    let mut state = seed | 1;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 2001) as f32 / 1000.0 - 1.0
    }
}

fn sym(s: &str) -> Dim {
    Dim::Sym(s.into())
}

fn run_both(bytes: &[u8], inputs: Vec<Tensor>) -> [TVec<TValue>; 2] {
    let m = edgebench::ops::onnx()
        .model_for_read(&mut &*bytes)
        .expect("graph loads");
    let go = |model: TypedModel| {
        let plan = model.into_runnable().unwrap();
        plan.run(inputs.iter().cloned().map(|t| t.into_tvalue()).collect())
            .unwrap()
    };
    [
        go(m.clone().into_typed().unwrap()),
        go(m.into_optimized().unwrap()),
    ]
}

fn floats(v: &TValue) -> Vec<f32> {
    v.to_plain_array_view::<f32>()
        .unwrap()
        .iter()
        .copied()
        .collect()
}

fn ints(v: &TValue) -> Vec<i64> {
    v.to_plain_array_view::<i64>()
        .unwrap()
        .iter()
        .copied()
        .collect()
}

/// Random SCAR inputs of one batch item: `x` `[t, dx]`, `q` `[h, t, d]`,
/// `k` and `v` `[h, t, d]`, and groups `[t]` drawn from `0 .. ngroups`.
struct Case {
    h: usize,
    t: usize,
    dx: usize,
    d: usize,
    x: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    groups: Vec<i64>,
}

impl Case {
    fn new(h: usize, t: usize, dx: usize, d: usize, ngroups: usize, seed: u64) -> Case {
        let mut r = rng(seed);
        let mut draw = |len: usize| -> Vec<f32> { (0..len).map(|_| r()).collect() };
        let (x, q, k, v) = (
            draw(t * dx),
            draw(h * t * d),
            draw(h * t * d),
            draw(h * t * d),
        );
        let groups = draw(t)
            .iter()
            .map(|u| (((u + 1.0) * 0.5 * ngroups as f32) as i64).min(ngroups as i64 - 1))
            .collect();
        Case {
            h,
            t,
            dx,
            d,
            x,
            q,
            k,
            v,
            groups,
        }
    }

    /// Rows `a .. b` of each head of a `[h, t, w]` tensor.
    fn rows(&self, m: &[f32], a: usize, b: usize) -> Vec<f32> {
        let w = self.d;
        (0..self.h)
            .flat_map(|hi| {
                m[(hi * self.t + a) * w..(hi * self.t + b) * w]
                    .iter()
                    .copied()
            })
            .collect()
    }

    fn tensor4(&self, m: &[f32], rows: usize) -> Tensor {
        Tensor::from_shape(&[1, self.h, rows, self.d], m).unwrap()
    }

    /// Inputs of the uncached node over tokens `0 .. t`.
    fn uncached_inputs(&self, t: usize, grouped: bool) -> Vec<Tensor> {
        let mut inputs = vec![
            Tensor::from_shape(&[1, t, self.dx], &self.x[..t * self.dx]).unwrap(),
            self.tensor4(&self.rows(&self.q, 0, t), t),
            self.tensor4(&self.rows(&self.k, 0, t), t),
            self.tensor4(&self.rows(&self.v, 0, t), t),
        ];
        if grouped {
            inputs.push(Tensor::from_shape(&[1, t], &self.groups[..t]).unwrap());
        }
        inputs
    }

    /// Inputs of the cached node: tokens `p .. t` new, `0 .. p` cached
    /// with cluster ids `past`.
    fn cached_inputs(&self, p: usize, past: &[i64]) -> Vec<Tensor> {
        let (t, dx) = (self.t, self.dx);
        vec![
            Tensor::from_shape(&[1, t - p, dx], &self.x[p * dx..]).unwrap(),
            self.tensor4(&self.rows(&self.q, p, t), t - p),
            self.tensor4(&self.k, t),
            self.tensor4(&self.v, t),
            Tensor::from_shape(&[1, t], &self.groups).unwrap(),
            Tensor::from_shape(&[1, p, dx], &self.x[..p * dx]).unwrap(),
            Tensor::from_shape(&[1, p], past).unwrap(),
        ]
    }

    /// The reference output of the queries `p .. t` given all cluster ids.
    fn reference(&self, p: usize, clusters: &[i64], params: &scar::ScarParams) -> Vec<f32> {
        let t = self.t;
        let shape = scar::RefShape {
            h: self.h,
            t,
            n: t - p,
            d: self.d,
            dv: self.d,
        };
        scar::reference(
            &self.q_rows(p),
            &self.k,
            &self.v,
            shape,
            clusters,
            Some(&self.groups),
            params,
        )
    }

    fn q_rows(&self, p: usize) -> Vec<f32> {
        self.rows(&self.q, p, self.t)
    }
}

/// The uncached graph with symbolic `n`.
fn uncached_graph(c: &Case, grouped: bool, p: &scar::ScarParams) -> Vec<u8> {
    let mut g = GraphBuilder::new("scar");
    let (hd, dd, xd) = (c.h as i64, c.d as i64, c.dx as i64);
    g.input("x", Elem::F32, &[1.into(), sym("n"), xd.into()]);
    for name in ["q", "k", "v"] {
        g.input(name, Elem::F32, &[1.into(), hd.into(), sym("n"), dd.into()]);
    }
    if grouped {
        g.input("g", Elem::I64, &[1.into(), sym("n")]);
    }
    let (y, cl) = scar::write_node(
        &mut g,
        "scar",
        "x",
        "q",
        "k",
        "v",
        grouped.then_some("g"),
        p,
    );
    g.output(&y, Elem::F32, &[1.into(), hd.into(), sym("n"), dd.into()]);
    g.output(&cl, Elem::I64, &[1.into(), sym("n")]);
    encode(&g.finish("test", &[]))
}

/// The cached graph with symbolic `seq` (new), `past` and `total` tokens.
fn cached_graph(c: &Case, p: &scar::ScarParams) -> Vec<u8> {
    cached_graph_with(c, p, "past")
}

/// [`cached_graph`] with `past_clusters` of length `pc_len` (a symbol).
fn cached_graph_with(c: &Case, p: &scar::ScarParams, pc_len: &str) -> Vec<u8> {
    let mut g = GraphBuilder::new("scar");
    let (hd, dd, xd) = (c.h as i64, c.d as i64, c.dx as i64);
    g.input("x", Elem::F32, &[1.into(), sym("seq"), xd.into()]);
    g.input(
        "q",
        Elem::F32,
        &[1.into(), hd.into(), sym("seq"), dd.into()],
    );
    for name in ["k", "v"] {
        g.input(
            name,
            Elem::F32,
            &[1.into(), hd.into(), sym("total"), dd.into()],
        );
    }
    g.input("g", Elem::I64, &[1.into(), sym("total")]);
    g.input("px", Elem::F32, &[1.into(), sym("past"), xd.into()]);
    g.input("pc", Elem::I64, &[1.into(), sym(pc_len)]);
    let (y, cl) = scar::write_node_cached(&mut g, "scar", "x", "q", "k", "v", "g", "px", "pc", p);
    g.output(&y, Elem::F32, &[1.into(), hd.into(), sym("seq"), dd.into()]);
    g.output(&cl, Elem::I64, &[1.into(), sym("total")]);
    encode(&g.finish("test", &[]))
}

/// Per-group k-means, computed from `kmeans_cosine` on each group's rows.
fn per_group_kmeans(x: &[f32], dx: usize, groups: &[i64], k: usize, iterations: usize) -> Vec<i64> {
    let mut ids = vec![-1i64; groups.len()];
    let mut seen: Vec<i64> = groups.to_vec();
    seen.sort();
    seen.dedup();
    for g in seen {
        let pos: Vec<usize> = (0..groups.len()).filter(|&i| groups[i] == g).collect();
        let rows: Vec<f32> = pos
            .iter()
            .flat_map(|&i| x[i * dx..(i + 1) * dx].to_vec())
            .collect();
        for (&i, c) in pos
            .iter()
            .zip(scar::kmeans_cosine(&rows, pos.len(), dx, k, iterations))
        {
            ids[i] = c as i64;
        }
    }
    ids
}

fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!((a - b).abs() < tol, "{what}: element {i}: {a} vs {b}");
    }
}

/// Checks one uncached SCAR configuration against per-group k-means and
/// the reference.
#[allow(clippy::too_many_arguments)]
fn check_scar(
    h: usize,
    n: usize,
    dx: usize,
    d: usize,
    k: usize,
    causal: bool,
    grouped: bool,
    seed: u64,
) {
    check_scar_local(h, n, dx, d, k, causal, grouped, (0, 0), seed);
}

#[allow(clippy::too_many_arguments)]
fn check_scar_local(
    h: usize,
    n: usize,
    dx: usize,
    d: usize,
    k: usize,
    causal: bool,
    grouped: bool,
    (sinks, window): (usize, usize),
    seed: u64,
) {
    let mut c = Case::new(h, n, dx, d, if grouped { 3 } else { 1 }, seed);
    if !grouped {
        c.groups.fill(0);
    }
    let p = scar::ScarParams {
        k,
        iterations: 6,
        causal,
        sinks,
        window,
        ..Default::default()
    };
    let expect_clusters = per_group_kmeans(&c.x, dx, &c.groups, k, 6);
    for out in run_both(
        &uncached_graph(&c, grouped, &p),
        c.uncached_inputs(n, grouped),
    ) {
        let clusters = ints(&out[1]);
        assert_eq!(clusters, expect_clusters);
        assert!(clusters.iter().all(|&c| (c as usize) < k.min(n)));
        assert_close(
            &floats(&out[0]),
            &c.reference(0, &clusters, &p),
            1e-4,
            "scar vs reference",
        );
    }
}

/// Plain causal (or bidirectional) softmax attention within each group, f64.
fn dense_within_groups(c: &Case, p: usize, causal: bool) -> Vec<f32> {
    let (h, t, d) = (c.h, c.t, c.d);
    let n = t - p;
    let q = c.q_rows(p);
    let scale = 1.0 / (d as f64).sqrt();
    let mut out = vec![0f32; h * n * d];
    for hi in 0..h {
        for row in 0..n {
            let i = p + row;
            let keys: Vec<usize> = (0..t)
                .filter(|&j| c.groups[j] == c.groups[i] && (!causal || j <= i))
                .collect();
            let s: Vec<f64> = keys
                .iter()
                .map(|&j| {
                    (0..d)
                        .map(|e| {
                            q[(hi * n + row) * d + e] as f64 * c.k[(hi * t + j) * d + e] as f64
                        })
                        .sum::<f64>()
                        * scale
                })
                .collect();
            let max = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let total: f64 = s.iter().map(|x| (x - max).exp()).sum();
            for e in 0..d {
                out[(hi * n + row) * d + e] = keys
                    .iter()
                    .zip(&s)
                    .map(|(&j, x)| (x - max).exp() / total * c.v[(hi * t + j) * d + e] as f64)
                    .sum::<f64>() as f32;
            }
        }
    }
    out
}

/// Runs a sequence as one uncached call and as a prefill of `p` tokens
/// followed by one cached call of the rest, and checks them against each
/// other and the references.
#[allow(clippy::too_many_arguments)]
fn check_cached(
    h: usize,
    t: usize,
    p: usize,
    dx: usize,
    d: usize,
    k: usize,
    (sinks, window): (usize, usize),
    recluster_every: usize,
    causal: bool,
    seed: u64,
) {
    let c = Case::new(h, t, dx, d, 3, seed);
    let params = scar::ScarParams {
        k,
        iterations: 5,
        causal,
        sinks,
        window,
        recluster_every,
        ..Default::default()
    };
    let whole = run_both(
        &uncached_graph(&c, true, &params),
        c.uncached_inputs(t, true),
    );
    let prefill_case = Case {
        t: p,
        x: c.x[..p * dx].to_vec(),
        q: c.rows(&c.q, 0, p),
        k: c.rows(&c.k, 0, p),
        v: c.rows(&c.v, 0, p),
        groups: c.groups[..p].to_vec(),
        ..c
    };
    let cached = cached_graph(&c, &params);
    // the prefill, through the cached form with p = 0
    let prefill = run_both(&cached, prefill_case.cached_inputs(0, &[]));
    let past = ints(&prefill[0][1]);
    assert_eq!(
        past,
        per_group_kmeans(&c.x[..p * dx], dx, &c.groups[..p], k, 5)
    );
    for out in &prefill {
        assert_eq!(ints(&out[1]), past);
    }
    let rest = run_both(&cached, c.cached_inputs(p, &past));
    let expect = scar::assign_clusters(&c.x, t, dx, &c.groups, &past, p, &params);
    let recluster =
        recluster_every == 1 || (recluster_every > 1 && t / recluster_every > p / recluster_every);
    if recluster {
        assert_eq!(
            expect,
            ints(&whole[0][1]),
            "re-clustered ids = uncached ids"
        );
    } else {
        assert_eq!(&expect[..p], &past[..], "frozen: past ids kept");
    }
    for out in &rest {
        let clusters = ints(&out[1]);
        assert_eq!(clusters, expect);
        assert_close(
            &floats(&out[0]),
            &c.reference(p, &clusters, &params),
            1e-4,
            "cached vs reference",
        );
    }
    if k == 1 {
        // exact: one cluster per group is dense attention within groups
        let dense = dense_within_groups(&c, 0, causal);
        for out in &whole {
            assert_close(&floats(&out[0]), &dense, 1e-5, "k = 1 uncached vs dense");
        }
        for out in &prefill {
            let want = dense_within_groups(&prefill_case, 0, causal);
            assert_close(&floats(&out[0]), &want, 1e-5, "k = 1 prefill vs dense");
        }
        let want: Vec<f32> = (0..h)
            .flat_map(|hi| dense[(hi * t + p) * d..(hi * t + t) * d].to_vec())
            .collect();
        for out in &rest {
            assert_close(&floats(&out[0]), &want, 1e-5, "k = 1 cached vs dense");
        }
    }
}

/// Independent check of the k-means: the f64 cosine distances of the final
/// assignment are a fixed point (no token is strictly closer to another
/// centroid of the members' mean), up to float noise.
fn check_kmeans_fixed_point(n: usize, dx: usize, k: usize, seed: u64) {
    let mut r = rng(seed);
    let x: Vec<f32> = (0..n * dx).map(|_| r()).collect();
    let c = scar::kmeans_cosine(&x, n, dx, k, 200);
    let unit = |i: usize| -> Vec<f64> {
        let row = &x[i * dx..(i + 1) * dx];
        let norm = row.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
        row.iter().map(|v| *v as f64 / norm).collect()
    };
    let kk = k.min(n);
    let centroids: Vec<Option<Vec<f64>>> = (0..kk)
        .map(|j| {
            let members: Vec<usize> = (0..n).filter(|&i| c[i] == j).collect();
            (!members.is_empty()).then(|| {
                let mut m = vec![0f64; dx];
                for &i in &members {
                    for (a, b) in m.iter_mut().zip(unit(i)) {
                        *a += b / members.len() as f64;
                    }
                }
                m
            })
        })
        .collect();
    let dist = |i: usize, m: &[f64]| {
        let u = unit(i);
        let dot: f64 = u.iter().zip(m).map(|(a, b)| a * b).sum();
        1.0 - dot / m.iter().map(|v| v * v).sum::<f64>().sqrt()
    };
    for i in 0..n {
        let own = dist(i, centroids[c[i]].as_ref().unwrap());
        for m in centroids.iter().flatten() {
            assert!(
                dist(i, m) >= own - 1e-5,
                "token {i} is closer to another centroid"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]
    #[test]
    fn scar_matches_dense_masked_reference(
        h in 1usize..3, n in 1usize..40, dx in 2usize..9, d in 1usize..6,
        k in 1usize..20, causal in any::<bool>(), grouped in any::<bool>(), seed in any::<u64>(),
    ) {
        check_scar(h, n, dx, d, k, causal, grouped, seed);
    }

    #[test]
    fn scar_with_sinks_and_window_matches_reference(
        h in 1usize..3, n in 1usize..48, dx in 2usize..7, d in 1usize..5, k in 1usize..8,
        causal in any::<bool>(), grouped in any::<bool>(), sinks in 0usize..4, window in 0usize..12,
        seed in any::<u64>(),
    ) {
        check_scar_local(h, n, dx, d, k, causal, grouped, (sinks, window), seed);
    }

    #[test]
    fn cached_calls_match_the_reference(
        h in 1usize..3, t in 1usize..40, past_pct in 0usize..100, dx in 2usize..7, d in 1usize..5,
        k in 1usize..6, sinks in 0usize..3, window in 0usize..8, every in 0usize..5,
        causal in any::<bool>(), seed in any::<u64>(),
    ) {
        check_cached(h, t, t * past_pct / 100, dx, d, k, (sinks, window), every, causal, seed);
    }

    #[test]
    fn kmeans_converges_to_a_fixed_point(n in 1usize..60, dx in 2usize..8, k in 1usize..20, seed in any::<u64>()) {
        check_kmeans_fixed_point(n, dx, k, seed);
    }

    #[test]
    fn router_matches_reference(n in 1usize..30, dim in 1usize..16, domains in 2usize..10,
                                bias in any::<bool>(), tau_pct in 0u32..100, seed in any::<u64>()) {
        check_router(n, dim, domains, bias, tau_pct as f32 / 100.0, seed);
    }
}

fn check_router(n: usize, dim: usize, domains: usize, with_bias: bool, tau: f32, seed: u64) {
    let mut r = rng(seed);
    let h: Vec<f32> = (0..n * dim).map(|_| r() * 3.0).collect();
    let w: Vec<f32> = (0..domains * dim).map(|_| r()).collect();
    let b: Vec<f32> = (0..domains).map(|_| r()).collect();
    let mut g = GraphBuilder::new("router");
    g.input("h", Elem::F32, &[1.into(), sym("n"), (dim as i64).into()]);
    let wn = g.init_f32("w", &[domains as i64, dim as i64], &w);
    let bn = with_bias.then(|| g.init_f32("b", &[domains as i64], &b));
    let (route, probs) = router::write_node(&mut g, "router", "h", &wn, bn.as_deref(), tau);
    g.output(&route, Elem::I64, &[1.into(), sym("n")]);
    g.output(
        &probs,
        Elem::F32,
        &[1.into(), sym("n"), (domains as i64).into()],
    );
    let bytes = encode(&g.finish("test", &[]));
    let (er, ep) = router::reference(&h, n, dim, &w, with_bias.then_some(b.as_slice()), tau);
    for out in run_both(&bytes, vec![Tensor::from_shape(&[1, n, dim], &h).unwrap()]) {
        let p = floats(&out[1]);
        for (a, b) in p.iter().zip(&ep) {
            assert!((a - b).abs() < 1e-5);
        }
        for (i, (a, b)) in ints(&out[0]).iter().zip(&er).enumerate() {
            // a token whose top probability sits on tau may go either way in f32
            let top = ep[i * domains..(i + 1) * domains]
                .iter()
                .copied()
                .fold(0f32, f32::max);
            assert!(
                a == b || (top - tau).abs() < 1e-5,
                "token {i}: route {a} vs reference {b}"
            );
        }
        assert!(ints(&out[0])
            .iter()
            .all(|&x| (0..=domains as i64).contains(&x)));
    }
}

#[test]
fn scar_with_one_cluster_and_no_causality_is_dense_attention() {
    check_scar(2, 17, 4, 3, 1, false, false, 11);
}

#[test]
fn scar_matches_reference_when_clusters_exceed_one_matmul_block() {
    // clusters of about 300 tokens: the per-cluster products span several
    // of matrixmultiply's blocks along the inner dimension
    check_scar(2, 600, 8, 8, 2, true, true, 3);
    check_scar(1, 520, 6, 5, 1, false, false, 4);
}

#[test]
fn scar_with_k_above_n_isolates_tokens() {
    // k > n with distinct directions: each token ends alone, so attention returns V itself
    let n = 3;
    let x = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
    let clusters = scar::kmeans_cosine(&x, n, 3, 16, 4);
    assert_eq!(clusters, vec![0, 1, 2]);
    check_scar(1, 5, 3, 2, 64, true, true, 5);
}

#[test]
fn bad_attributes_are_refused_at_load() {
    let mut g = GraphBuilder::new("bad");
    g.input("x", Elem::F32, &[1.into(), 4.into(), 2.into()]);
    for name in ["q", "k", "v"] {
        g.input(name, Elem::F32, &[1.into(), 1.into(), 4.into(), 2.into()]);
    }
    let p = scar::ScarParams {
        k: 0,
        ..Default::default()
    };
    let (y, _) = scar::write_node(&mut g, "scar", "x", "q", "k", "v", None, &p);
    g.output(&y, Elem::F32, &[1.into(), 1.into(), 4.into(), 2.into()]);
    let bytes = encode(&g.finish("test", &[]));
    let err = edgebench::ops::onnx()
        .model_for_read(&mut bytes.as_slice())
        .and_then(|m| m.into_typed())
        .unwrap_err();
    assert!(format!("{err:?}").contains("k = 0"), "{err:?}");
}

#[test]
fn scar_with_one_cluster_is_dense_attention_within_groups() {
    // sinks and window add nothing when every token of a group shares its cluster
    for (causal, local, seed) in [(true, (0, 0), 1), (true, (2, 5), 2), (false, (3, 1), 3)] {
        let c = Case::new(2, 37, 5, 4, 3, seed);
        let p = scar::ScarParams {
            k: 1,
            causal,
            sinks: local.0,
            window: local.1,
            ..Default::default()
        };
        let want = dense_within_groups(&c, 0, causal);
        for out in run_both(&uncached_graph(&c, true, &p), c.uncached_inputs(37, true)) {
            assert_close(&floats(&out[0]), &want, 1e-5, "k = 1 vs dense");
        }
    }
}

#[test]
fn prefill_then_cached_call_equals_one_call() {
    // k = 1: exact against dense attention within groups
    check_cached(2, 50, 30, 6, 4, 1, (0, 0), 1, true, 7);
    check_cached(2, 50, 30, 6, 4, 1, (2, 6), 0, true, 8);
    // re-clustering each call: the ids are those of one uncached call
    check_cached(2, 120, 119, 8, 4, 8, (4, 16), 1, true, 9);
    check_cached(1, 90, 40, 8, 4, 4, (1, 3), 1, false, 10);
    // recluster_every = 16: 100 -> 112 crosses 112, 100 -> 111 does not
    check_cached(1, 112, 100, 8, 4, 4, (2, 8), 16, true, 11);
    check_cached(1, 111, 100, 8, 4, 4, (2, 8), 16, true, 12);
    // about 70 new tokens per group: several causal tiles of query rows
    check_cached(1, 300, 100, 8, 4, 1, (0, 0), 1, true, 14);
    // decode steps (keys and values read in place), exact at k = 1
    check_cached(2, 64, 63, 6, 4, 1, (0, 0), 0, true, 15);
    check_cached(1, 64, 62, 6, 4, 1, (2, 4), 1, false, 16);
    // frozen, one decode step
    check_cached(2, 200, 199, 8, 4, 8, (4, 32), 0, true, 13);
}

/// The running-sums graph (`cached = 2`) with symbolic `seq`, `past` and `total`.
fn sums_graph(c: &Case, p: &scar::ScarParams) -> Vec<u8> {
    let mut g = GraphBuilder::new("scar");
    let (hd, dd, xd) = (c.h as i64, c.d as i64, c.dx as i64);
    g.input("x", Elem::F32, &[1.into(), sym("seq"), xd.into()]);
    g.input(
        "q",
        Elem::F32,
        &[1.into(), hd.into(), sym("seq"), dd.into()],
    );
    for name in ["k", "v"] {
        g.input(
            name,
            Elem::F32,
            &[1.into(), hd.into(), sym("total"), dd.into()],
        );
    }
    g.input("g", Elem::I64, &[1.into(), sym("total")]);
    g.input("ps", Elem::F32, &[1.into(), sym("past"), xd.into()]);
    g.input("pc", Elem::I64, &[1.into(), sym("past")]);
    let (y, cl, sums) =
        scar::write_node_sums(&mut g, "scar", "x", "q", "k", "v", "g", "ps", "pc", p);
    g.output(&y, Elem::F32, &[1.into(), hd.into(), sym("seq"), dd.into()]);
    g.output(&cl, Elem::I64, &[1.into(), sym("total")]);
    g.output(&sums, Elem::F32, &[1.into(), sym("seq"), xd.into()]);
    encode(&g.finish("test", &[]))
}

/// A prefill of `steps[0]` tokens, then calls of `steps[1..]` tokens each,
/// through the frozen rule's two forms, each on its own cache: recomputing
/// the centroids from the past representations (`cached = 1`) and carrying
/// running sums (`cached = 2`). Ids must be equal and outputs within 1e-5
/// at every call; the running sums must be the sums `assign_clusters` adds.
fn check_sums_form(c: &Case, params: &scar::ScarParams, steps: &[usize]) {
    let dx = c.dx;
    let (recompute, carried) = (cached_graph(c, params), sums_graph(c, params));
    let mut past_ids: [Vec<i64>; 2] = [vec![], vec![]];
    let mut past_sums: Vec<f32> = vec![];
    let mut p = 0;
    for &n in steps {
        let t = p + n;
        let step = Case {
            t,
            x: c.x[..t * dx].to_vec(),
            q: c.rows(&c.q, 0, t),
            k: c.rows(&c.k, 0, t),
            v: c.rows(&c.v, 0, t),
            groups: c.groups[..t].to_vec(),
            ..*c
        };
        let old = run_both(&recompute, step.cached_inputs(p, &past_ids[0]));
        let mut inputs = step.cached_inputs(p, &past_ids[1]);
        inputs[5] = Tensor::from_shape(&[1, p, dx], &past_sums).unwrap();
        let new = run_both(&carried, inputs);
        let ids = ints(&old[0][1]);
        let (want_ids, want_sums) = scar::assign_clusters_with_sums(
            &c.x[p * dx..t * dx],
            (t, dx),
            &c.groups,
            &past_ids[1],
            &past_sums,
            p,
            params,
        );
        assert_eq!(want_ids, ids, "p {p}: the rule in Rust");
        for (o, f) in old.iter().zip(&new) {
            assert_eq!(ints(&o[1]), ids, "p {p}: recomputing ids");
            assert_eq!(ints(&f[1]), ids, "p {p}: running-sums ids");
            assert_close(&floats(&f[0]), &floats(&o[0]), 1e-5, "sums vs recomputed");
            assert_eq!(floats(&f[2]), want_sums, "p {p}: running sums");
        }
        // the running sum of each token is the sum of its cluster's unit vectors up to it
        for i in p..t {
            let mut s = vec![0f64; dx];
            for j in (0..=i).filter(|&j| c.groups[j] == c.groups[i] && ids[j] == ids[i]) {
                let r = &c.x[j * dx..(j + 1) * dx];
                let norm = r.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
                if norm > 0.0 {
                    s.iter_mut()
                        .zip(r)
                        .for_each(|(a, b)| *a += *b as f64 / norm);
                }
            }
            let got = &want_sums[(i - p) * dx..(i - p + 1) * dx];
            for (a, b) in got.iter().zip(&s) {
                assert!((*a as f64 - b).abs() < 1e-4, "token {i}: {a} vs {b}");
            }
        }
        past_ids = [ids.clone(), ids];
        past_sums.extend(want_sums);
        p = t;
    }
}

#[test]
fn frozen_running_sums_equal_recomputed_centroids_over_a_decode() {
    // three groups, one of which first appears while decoding; a prefill,
    // single-token steps and a three-token call
    let mut c = Case::new(2, 90, 7, 4, 3, 31);
    for g in &mut c.groups[..40] {
        *g %= 2;
    }
    let mut steps = vec![40];
    steps.extend(std::iter::repeat_n(1, 30));
    steps.push(3);
    steps.extend(std::iter::repeat_n(1, 17));
    for (k, (sinks, window)) in [(4, (2, 8)), (8, (0, 0)), (3, (1, 0))] {
        let params = scar::ScarParams {
            k,
            iterations: 5,
            sinks,
            window,
            recluster_every: 0,
            ..Default::default()
        };
        check_sums_form(&c, &params, &steps);
    }
    // zero rows are counted but add nothing to their cluster's sum
    let mut z = Case::new(1, 30, 5, 4, 2, 32);
    for i in [3, 12, 20, 25] {
        z.x[i * 5..(i + 1) * 5].fill(0.0);
    }
    let params = scar::ScarParams {
        k: 3,
        iterations: 4,
        recluster_every: 0,
        ..Default::default()
    };
    check_sums_form(&z, &params, &[10, 1, 1, 5, 1, 1, 1, 10]);
}

#[test]
fn running_sums_form_refuses_a_reclustering_rule() {
    use edgebench::onnx::Attr;
    let mut g = GraphBuilder::new("bad");
    g.input("x", Elem::F32, &[1.into(), 1.into(), 2.into()]);
    g.input("q", Elem::F32, &[1.into(), 1.into(), 1.into(), 2.into()]);
    for name in ["k", "v"] {
        g.input(name, Elem::F32, &[1.into(), 1.into(), 4.into(), 2.into()]);
    }
    g.input("g", Elem::I64, &[1.into(), 4.into()]);
    g.input("ps", Elem::F32, &[1.into(), 3.into(), 2.into()]);
    g.input("pc", Elem::I64, &[1.into(), 3.into()]);
    g.node_in_domain(
        edgebench::onnx::CUSTOM_DOMAIN,
        scar::OP_NAME,
        &["x", "q", "k", "v", "g", "ps", "pc"],
        &["y", "c", "s"],
        &[("cached", Attr::Int(2)), ("recluster_every", Attr::Int(4))],
    );
    g.output("y", Elem::F32, &[1.into(), 1.into(), 1.into(), 2.into()]);
    let bytes = encode(&g.finish("test", &[]));
    let err = edgebench::ops::onnx()
        .model_for_read(&mut bytes.as_slice())
        .and_then(|m| m.into_typed())
        .unwrap_err();
    let msg = format!("{err:?}");
    assert!(
        msg.contains("cached = 2") && msg.contains("recluster_every must be 0, not 4"),
        "{msg}"
    );
}

#[test]
fn frozen_call_keeps_past_ids_and_clusters_a_new_group_alone() {
    // groups 0 and 1 in the past; group 2 appears only among the new tokens
    let mut c = Case::new(1, 60, 6, 4, 2, 21);
    for g in &mut c.groups[45..] {
        *g = 2;
    }
    c.groups[50] = 0;
    let params = scar::ScarParams {
        k: 4,
        iterations: 5,
        recluster_every: 0,
        window: 4,
        sinks: 1,
        ..Default::default()
    };
    let past = per_group_kmeans(&c.x[..45 * 6], 6, &c.groups[..45], 4, 5);
    let outs = run_both(&cached_graph(&c, &params), c.cached_inputs(45, &past));
    let expect = scar::assign_clusters(&c.x, 60, 6, &c.groups, &past, 45, &params);
    assert_eq!(&expect[..45], &past[..]);
    let new2: Vec<usize> = (45..60).filter(|&i| c.groups[i] == 2).collect();
    let rows: Vec<f32> = new2
        .iter()
        .flat_map(|&i| c.x[i * 6..(i + 1) * 6].to_vec())
        .collect();
    let alone = scar::kmeans_cosine(&rows, new2.len(), 6, 4, 5);
    for (&i, a) in new2.iter().zip(alone) {
        assert_eq!(expect[i], a as i64, "token {i} of the new group");
    }
    // token 50 (group 0) joined one of group 0's past ids
    assert!(past
        .iter()
        .zip(&c.groups)
        .any(|(&id, &g)| g == 0 && id == expect[50]));
    for out in outs {
        assert_eq!(ints(&out[1]), expect);
        assert_close(
            &floats(&out[0]),
            &c.reference(45, &expect, &params),
            1e-4,
            "frozen vs reference",
        );
    }
}

#[test]
fn negative_sinks_or_window_are_refused_at_load() {
    for attr in ["sinks", "window", "recluster_every"] {
        let mut g = GraphBuilder::new("bad");
        g.input("x", Elem::F32, &[1.into(), 4.into(), 2.into()]);
        for name in ["q", "k", "v"] {
            g.input(name, Elem::F32, &[1.into(), 1.into(), 4.into(), 2.into()]);
        }
        g.node_in_domain(
            edgebench::onnx::CUSTOM_DOMAIN,
            scar::OP_NAME,
            &["x", "q", "k", "v"],
            &["y", "c"],
            &[(attr, edgebench::onnx::Attr::Int(-1))],
        );
        g.output("y", Elem::F32, &[1.into(), 1.into(), 4.into(), 2.into()]);
        let bytes = encode(&g.finish("test", &[]));
        let err = edgebench::ops::onnx()
            .model_for_read(&mut bytes.as_slice())
            .and_then(|m| m.into_typed())
            .unwrap_err();
        let msg = format!("{err:?}");
        assert!(
            msg.contains(&format!("{attr} = -1")) && msg.contains("EbScar node `EbScar"),
            "{msg}"
        );
    }
}

#[test]
fn mismatched_past_shapes_are_refused_at_run_time() {
    let c = Case::new(1, 10, 3, 2, 2, 5);
    let m = edgebench::ops::onnx()
        .model_for_read(&mut &*cached_graph_with(
            &c,
            &scar::ScarParams::default(),
            "other",
        ))
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let mut inputs = c.cached_inputs(4, &[0; 4]);
    inputs[6] = Tensor::from_shape(&[1, 3], &[0i64; 3]).unwrap();
    let err = m
        .run(inputs.into_iter().map(|t| t.into_tvalue()).collect())
        .unwrap_err();
    let msg = format!("{err:?}");
    assert!(
        msg.contains("past_clusters [1, 3]") && msg.contains("[1, 4]"),
        "{msg}"
    );
}

/// A graph of one `EbScar` whose keys and values have `kv` heads.
fn grouped_query_graph(h: usize, kv: usize, d: usize, dx: usize, p: &scar::ScarParams) -> Vec<u8> {
    let mut g = GraphBuilder::new("scar");
    let (hd, kd, dd) = (h as i64, kv as i64, d as i64);
    g.input("x", Elem::F32, &[1.into(), sym("n"), (dx as i64).into()]);
    g.input("q", Elem::F32, &[1.into(), hd.into(), sym("n"), dd.into()]);
    for name in ["k", "v"] {
        g.input(name, Elem::F32, &[1.into(), kd.into(), sym("n"), dd.into()]);
    }
    g.input("g", Elem::I64, &[1.into(), sym("n")]);
    let (y, cl) = scar::write_node(&mut g, "scar", "x", "q", "k", "v", Some("g"), p);
    g.output(&y, Elem::F32, &[1.into(), hd.into(), sym("n"), dd.into()]);
    g.output(&cl, Elem::I64, &[1.into(), sym("n")]);
    encode(&g.finish("test", &[]))
}

#[test]
fn grouped_query_keys_equal_keys_repeated_per_query_head() {
    // query head i reads key/value head i / (h / kv), as if each key/value
    // head were repeated h / kv times
    let (h, kv, n, d, dx) = (6, 2, 37, 8, 12);
    let mut r = rng(41);
    let mut draw = |len: usize| -> Vec<f32> { (0..len).map(|_| r()).collect() };
    let (x, q, k, v) = (
        draw(n * dx),
        draw(h * n * d),
        draw(kv * n * d),
        draw(kv * n * d),
    );
    let groups: Vec<i64> = (0..n as i64).map(|i| (i * 7 / 5) % 3).collect();
    let repeat = |m: &[f32]| -> Vec<f32> {
        (0..h)
            .flat_map(|hi| m[(hi / (h / kv)) * n * d..(hi / (h / kv) + 1) * n * d].to_vec())
            .collect()
    };
    let p = scar::ScarParams {
        k: 3,
        sinks: 1,
        window: 4,
        ..scar::ScarParams::default()
    };
    let inputs = |kh: usize, k: &[f32], v: &[f32]| {
        vec![
            Tensor::from_shape(&[1, n, dx], &x).unwrap(),
            Tensor::from_shape(&[1, h, n, d], &q).unwrap(),
            Tensor::from_shape(&[1, kh, n, d], k).unwrap(),
            Tensor::from_shape(&[1, kh, n, d], v).unwrap(),
            Tensor::from_shape(&[1, n], &groups).unwrap(),
        ]
    };
    let grouped = run_both(&grouped_query_graph(h, kv, d, dx, &p), inputs(kv, &k, &v));
    let repeated = run_both(
        &grouped_query_graph(h, h, d, dx, &p),
        inputs(h, &repeat(&k), &repeat(&v)),
    );
    for (a, b) in grouped.iter().zip(&repeated) {
        assert_eq!(floats(&a[0]), floats(&b[0]));
        assert_eq!(ints(&a[1]), ints(&b[1]));
    }
}
