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

/// Checks one SCAR configuration; `near_tie` tolerates a differing cluster only
/// where the two best centroids are within float noise of each other.
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
    let mut r = rng(seed);
    let x: Vec<f32> = (0..n * dx).map(|_| r()).collect();
    let q: Vec<f32> = (0..h * n * d).map(|_| r()).collect();
    let kk: Vec<f32> = (0..h * n * d).map(|_| r()).collect();
    let v: Vec<f32> = (0..h * n * d).map(|_| r()).collect();
    let groups: Vec<i64> = (0..n).map(|i| (i % 3 == 0) as i64).collect();
    let p = scar::ScarParams {
        k,
        iterations: 6,
        causal,
        scale: None,
    };
    let mut g = GraphBuilder::new("scar");
    let (hd, dd, xd) = (h as i64, d as i64, dx as i64);
    g.input("x", Elem::F32, &[1.into(), sym("n"), xd.into()]);
    for name in ["q", "k", "v"] {
        g.input(name, Elem::F32, &[1.into(), hd.into(), sym("n"), dd.into()]);
    }
    if grouped {
        g.input("g", Elem::I64, &[1.into(), sym("n")]);
    }
    let (y, c) = scar::write_node(
        &mut g,
        "scar",
        "x",
        "q",
        "k",
        "v",
        grouped.then_some("g"),
        &p,
    );
    g.output(&y, Elem::F32, &[1.into(), hd.into(), sym("n"), dd.into()]);
    g.output(&c, Elem::I64, &[1.into(), sym("n")]);
    let bytes = encode(&g.finish("test", &[]));
    let mut inputs = vec![
        Tensor::from_shape(&[1, n, dx], &x).unwrap(),
        Tensor::from_shape(&[1, h, n, d], &q).unwrap(),
        Tensor::from_shape(&[1, h, n, d], &kk).unwrap(),
        Tensor::from_shape(&[1, h, n, d], &v).unwrap(),
    ];
    if grouped {
        inputs.push(Tensor::from_shape(&[1, n], &groups).unwrap());
    }
    let expect_clusters: Vec<i64> = scar::kmeans_cosine(&x, n, dx, k, 6)
        .into_iter()
        .map(|c| c as i64)
        .collect();
    for out in run_both(&bytes, inputs) {
        let clusters = ints(&out[1]);
        assert_eq!(clusters, expect_clusters);
        assert!(clusters.iter().all(|&c| (c as usize) < k.min(n)));
        let expect = scar::reference(
            &q,
            &kk,
            &v,
            h,
            n,
            d,
            d,
            &clusters,
            grouped.then_some(groups.as_slice()),
            causal,
            1.0 / (d as f64).sqrt(),
        );
        for (a, b) in floats(&out[0]).iter().zip(&expect) {
            assert!((a - b).abs() < 1e-4, "scar {a} vs reference {b}");
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
