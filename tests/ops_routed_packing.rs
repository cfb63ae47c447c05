//! `EbRoutedLinear` sets and nodes made from the same initializers share one
//! packed matrix (measured with `quant::live_packed_bytes`, process-wide, so
//! this binary holds this one test alone), and compute what separate copies do.

use edgebench::onnx::{encode, Dim, Elem, GraphBuilder};
use edgebench::ops::qkernel::PackedMatrix;
use edgebench::ops::quant::{self, QuantFormat, QuantMatrix};
use edgebench::ops::routed::{self, RoutedSet, SetWeights};
use tract_onnx::prelude::*;

const K: usize = 64;
const N: usize = 24;
const ROWS: usize = 18;

fn quantize(bits: usize, seed: usize) -> QuantMatrix {
    let w: Vec<f32> = (0..N * K)
        .map(|i| ((i * 37 + seed * 11) % 101) as f32 / 50.0 - 1.0)
        .collect();
    let f = QuantFormat {
        bits,
        block_size: 32,
        k: K,
        n: N,
    };
    QuantMatrix::quantize(&w, f, true).unwrap()
}

/// How the 8 domain sets get their weights.
#[derive(Clone, Copy, PartialEq)]
enum Domains {
    /// One set of initializers read by all 8.
    Shared,
    /// 8 initializers of identical values (tract merges equal constants at
    /// load, so they are one tensor by the time the node is wired).
    Copies,
    /// 8 different matrices.
    Distinct,
}

/// GEM's layout: routes 0..8 at 4 bits, route 8 at 8 bits; `nodes` such
/// nodes over the same initializers, summed.
fn graph(domains: Domains, nodes: usize) -> tract_onnx::pb::ModelProto {
    let q8 = quantize(8, 100);
    let mut g = GraphBuilder::new("packing");
    let x = g.input(
        "x",
        Elem::F32,
        &[Dim::Fixed(ROWS as i64), Dim::Fixed(K as i64)],
    );
    let route = g.input("route", Elem::I64, &[Dim::Fixed(ROWS as i64)]);
    let general = quant::write_initializers(&mut g, "general", &q8);
    let copies = if domains == Domains::Shared { 1 } else { 8 };
    let domain: Vec<Vec<String>> = (0..copies)
        .map(|d| {
            let seed = if domains == Domains::Distinct { d } else { 0 };
            quant::write_initializers(&mut g, &format!("domain{d}"), &quantize(4, seed))
        })
        .collect();
    let mut sets: Vec<RoutedSet> = (0..8)
        .map(|d| RoutedSet {
            route: d as i64,
            weights: SetWeights::Quant {
                format: quantize(4, 0).format,
                inits: &domain[d % copies],
            },
        })
        .collect();
    sets.push(RoutedSet {
        route: 8,
        weights: SetWeights::Quant {
            format: q8.format,
            inits: &general,
        },
    });
    let mut y = routed::write_node(&mut g, "lin0", &x, &route, &sets);
    for i in 1..nodes {
        let z = routed::write_node(&mut g, &format!("lin{i}"), &x, &route, &sets);
        y = g.op("Add", &[&y, &z], &[]);
    }
    g.op("Identity", &[&y], &[]);
    g.name_last_output("y");
    g.output(
        "y",
        Elem::F32,
        &[Dim::Fixed(ROWS as i64), Dim::Fixed(N as i64)],
    );
    g.finish("packing", &[])
}

/// Loads `model` (kernel lowering), returns the packed bytes it added while
/// alive and its output.
fn load_and_run(model: &tract_onnx::pb::ModelProto) -> (u64, Vec<f32>) {
    let before = quant::live_packed_bytes();
    let onnx = edgebench::ops::onnx();
    let proto = onnx
        .proto_model_for_read(&mut encode(model).as_slice())
        .unwrap();
    let plan = onnx
        .model_for_proto_model(&proto)
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .unwrap();
    let added = quant::live_packed_bytes() - before;
    let x: Vec<f32> = (0..ROWS * K).map(|i| (i % 13) as f32 / 6.0 - 1.0).collect();
    let route: Vec<i64> = (0..ROWS as i64).map(|i| i % 9).collect();
    let out = plan
        .run(tvec!(
            Tensor::from_shape(&[ROWS, K], &x).unwrap().into_tvalue(),
            Tensor::from_shape(&[ROWS], &route).unwrap().into_tvalue()
        ))
        .unwrap();
    let y = out[0]
        .to_plain_array_view::<f32>()
        .unwrap()
        .iter()
        .copied()
        .collect();
    (added, y)
}

#[test]
fn shared_initializers_are_packed_once_and_compute_what_copies_do() {
    let bytes = |q: &QuantMatrix| {
        let f = q.format;
        PackedMatrix::from_blocks(
            f.bits,
            f.block_size,
            f.n,
            f.k,
            &q.packed,
            &q.scales,
            q.mins.as_deref(),
        )
        .unwrap()
        .bytes() as u64
    };
    let (b4, b8) = (bytes(&quantize(4, 0)), bytes(&quantize(8, 100)));
    assert_eq!(quant::live_packed_bytes(), 0);
    let (distinct, _) = load_and_run(&graph(Domains::Distinct, 1));
    assert_eq!(
        distinct,
        8 * b4 + b8,
        "8 different 4-bit matrices, one 8-bit"
    );
    let (shared, y_shared) = load_and_run(&graph(Domains::Shared, 1));
    assert_eq!(shared, b4 + b8, "one 4-bit matrix for 8 sets");
    let (copies, y_copies) = load_and_run(&graph(Domains::Copies, 1));
    assert_eq!(copies, b4 + b8, "equal copies are one tensor once loaded");
    assert_eq!(y_copies, y_shared, "same kernels, same results");
    let (three, y_three) = load_and_run(&graph(Domains::Shared, 3));
    assert_eq!(three, b4 + b8, "three nodes over the same initializers");
    let want: Vec<f32> = y_shared.iter().map(|v| v + v + v).collect();
    assert_eq!(y_three, want);
    assert_eq!(quant::live_packed_bytes(), 0, "dropped with the models");
}
