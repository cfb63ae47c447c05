//! EdgeBench's custom ONNX ops (domain `ai.edgebench`), registered in
//! tract-onnx's op registry. The registry keys on op type only, so every name
//! is prefixed `Eb`. Semantics and packing layouts: `docs/ops.md`.

pub mod attention;
pub mod dense;
pub mod gemm;
pub mod graphs;
pub mod qkernel;
pub mod quant;
pub(crate) mod rewrite;
pub mod router;
pub mod scar;

/// Whether an ONNX node has its optional input `i` (present and not the empty name).
pub(crate) fn has_input(node: &tract_onnx::pb::NodeProto, i: usize) -> bool {
    node.input.get(i).is_some_and(|name| !name.is_empty())
}

/// tract-onnx with EdgeBench's custom ops registered.
pub fn onnx() -> tract_onnx::model::Onnx {
    let mut onnx = tract_onnx::onnx();
    onnx.op_register
        .insert(attention::OP_NAME, attention::parse);
    onnx.op_register.insert(dense::OP_NAME, dense::parse);
    onnx.op_register.insert(quant::OP_NAME, quant::parse);
    onnx.op_register.insert(scar::OP_NAME, scar::parse);
    onnx.op_register.insert(router::OP_NAME, router::parse);
    onnx
}
