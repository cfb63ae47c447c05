//! `EbQuantLinear` executed by tract (optimised and not) against the plain
//! reference, over random shapes, values, widths and block formats, on each
//! lowering (EdgeBench's kernels, tract's block-quant matmul, f32), which
//! each graph carries as its nodes' `lowering` attribute.

use edgebench::onnx::{encode, Dim, Elem, GraphBuilder};
use edgebench::ops::quant::{
    reference_matmul, write_node, Lowering, QuantFormat, QuantMatrix, BITS,
};
use edgebench::runtime::RuntimeOptions;
use proptest::prelude::*;
use tract_onnx::prelude::*;

fn graph(rows: usize, w: &QuantMatrix) -> Vec<u8> {
    let mut g = GraphBuilder::new("quant");
    let x = g.input(
        "x",
        Elem::F32,
        &[Dim::Fixed(rows as i64), Dim::Fixed(w.format.k as i64)],
    );
    let y = write_node(&mut g, "lin", &x, w);
    g.op("Identity", &[&y], &[]);
    g.name_last_output("y");
    g.output(
        "y",
        Elem::F32,
        &[Dim::Fixed(rows as i64), Dim::Fixed(w.format.n as i64)],
    );
    encode(&g.finish("test", &[]))
}

fn run(model: TypedModel, x: &[f32], rows: usize, k: usize) -> Vec<f32> {
    let plan = model.into_runnable().unwrap();
    let input = Tensor::from_shape(&[rows, k], x).unwrap();
    let out = plan.run(tvec!(input.into_tvalue())).unwrap();
    out[0]
        .to_plain_array_view::<f32>()
        .unwrap()
        .iter()
        .copied()
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn check(
    bits: usize,
    block_size: usize,
    blocks: usize,
    n: usize,
    rows: usize,
    asym: bool,
    seed: u64,
    lowering: Lowering,
) {
    let k = blocks * block_size;
    let mut state = seed | 1;
    let mut rnd = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 2001) as f32 / 1000.0 - 1.0
    };
    let w: Vec<f32> = (0..n * k).map(|_| rnd() * 0.5 + 0.1).collect();
    let x: Vec<f32> = (0..rows * k).map(|_| rnd()).collect();
    let q = QuantMatrix::quantize(
        &w,
        QuantFormat {
            bits,
            block_size,
            k,
            n,
        },
        asym,
    )
    .unwrap();
    let expect = reference_matmul(&x, rows, &q);
    let bytes = graph(rows, &q);
    let onnx = edgebench::ops::onnx();
    let mut proto = onnx.proto_model_for_read(&mut bytes.as_slice()).unwrap();
    let options = RuntimeOptions {
        lowering,
        ..RuntimeOptions::default()
    };
    options.annotate(proto.graph.as_mut().unwrap());
    let m = onnx.model_for_proto_model(&proto).unwrap();
    let plain = run(m.clone().into_typed().unwrap(), &x, rows, k);
    let opt = run(m.into_optimized().unwrap(), &x, rows, k);
    for (i, e) in expect.iter().enumerate() {
        let tol = 1e-3 * (1.0 + e.abs()) * (k as f32 / 32.0).sqrt();
        assert!(
            (plain[i] - e).abs() < tol,
            "{lowering:?} bits {bits} asym {asym}: plain {} vs ref {e}",
            plain[i]
        );
        assert!(
            (opt[i] - e).abs() < tol,
            "{lowering:?} bits {bits} asym {asym}: optimised {} vs ref {e}",
            opt[i]
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn quant_linear_matches_reference(
        bits_ix in 0usize..BITS.len(),
        block_ix in 0usize..3,
        blocks in 1usize..5,
        n in 1usize..12,
        rows in prop::sample::select(vec![1usize, 2, 3, 5, 17, 70]),
        asym in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let block_size = [32, 16, 64][block_ix];
        let lowering = RuntimeOptions::from_env().unwrap().lowering;
        check(BITS[bits_ix], block_size, blocks, n, rows, asym, seed, lowering);
    }
}

#[test]
fn every_lowering_matches_the_reference_on_every_kernel_path() {
    // rows 1 (gemv), 5 (tile), 70 (sgemm panels); n not a multiple of the kernel's 4-row tile
    for lowering in Lowering::ALL {
        for rows in [1, 5, 70] {
            for bits in BITS {
                check(bits, 32, 3, 9, rows, true, 42 + bits as u64, lowering);
                check(bits, 64, 2, 6, rows, false, 7 + bits as u64, lowering);
            }
        }
    }
    // tract's Q4_0 lowering with the asymmetric correction term, kept as the baseline
    check(4, 32, 4, 8, 3, true, 42, Lowering::Tract);
    check(4, 32, 2, 5, 1, false, 7, Lowering::Tract);
}
