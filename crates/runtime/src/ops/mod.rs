//! EdgeBench's custom ONNX ops (domain `ai.edgebench`), registered in
//! tract-onnx's op registry. The registry keys on op type only, so every name
//! is prefixed `Eb`. Semantics and packing layouts: `docs/ops.md`.

pub mod attention;
pub mod dense;
pub mod graphs;
pub mod norm;
pub mod quant;
pub(crate) mod rewrite;
pub mod rope;
pub mod routed;
pub mod router;
pub mod scar;

pub use edgebench_kernels::{activation, gemm, parallel, qkernel, softmax};
pub use edgebench_kernels::{detected_isa, huge_pages, Exec, Isa};

/// The [`Exec`] a node's kernels run with: its `threads` and `isa`
/// attributes, which `RuntimeOptions::annotate` sets at load; one thread
/// and the CPU's widest instructions when they are absent.
pub(crate) fn exec_of(node: &tract_onnx::pb::NodeProto) -> tract_onnx::prelude::TractResult<Exec> {
    let threads = node.get_attr_opt::<i64>("threads")?.unwrap_or(1);
    anyhow::ensure!(
        (1..=1024).contains(&threads),
        "{} node `{}`: attribute threads = {threads} is outside 1..=1024",
        node.op_type,
        node.name
    );
    let isa = match node.get_attr_opt::<&str>("isa")? {
        None => Isa::Avx512,
        Some(name) => Isa::parse(name).ok_or_else(|| {
            anyhow::anyhow!(
                "{} node `{}`: attribute isa {name:?} is not avx512, avx2, neon or portable",
                node.op_type,
                node.name
            )
        })?,
    };
    Ok(Exec::new(threads as usize, isa))
}

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
    onnx.op_register.insert(routed::OP_NAME, routed::parse);
    onnx.op_register.insert(scar::OP_NAME, scar::parse);
    onnx.op_register.insert(router::OP_NAME, router::parse);
    onnx.op_register.insert(rope::OP_NAME, rope::parse);
    onnx.op_register.insert(norm::OP_NAME, norm::parse);
    onnx
}

/// An f32 tensor of `shape` that `fill` writes in place. Building the
/// output in a `Vec` and converting it (`ndarray` -> `Tensor`) would copy it
/// once more: tract copies into its own aligned storage. The storage is not
/// zeroed first (a 25 MB memset per LM head, 2-3 % of a MiniLM batch).
///
/// # Safety
/// `fill` must write every element before it reads any (or return an
/// error, which drops the tensor).
pub(crate) unsafe fn f32_output(
    shape: &[usize],
    fill: impl FnOnce(&mut [f32]) -> tract_onnx::prelude::TractResult<()>,
) -> tract_onnx::prelude::TractResult<tract_onnx::prelude::TValue> {
    use tract_onnx::prelude::*;
    // SAFETY: f32 has no invalid bit patterns, and the caller's `fill`
    // writes every element before anything reads it.
    let mut t = unsafe { Tensor::uninitialized::<f32>(shape)? };
    fill(t.try_as_plain_ram_mut()?.as_slice_mut::<f32>()?)?;
    Ok(t.into_tvalue())
}

/// Evaluates a linear layer `x [.., k]` -> `[.., n]`: `run(x, rows, y)`
/// writes every value of `y` (`rows x n`, not initialised), the output's
/// own storage.
pub(crate) fn eval_linear(
    op: &str,
    x: &tract_onnx::prelude::TValue,
    (k, n): (usize, usize),
    run: impl FnOnce(&[f32], usize, &mut [f32]),
) -> tract_onnx::prelude::TractResult<tract_onnx::prelude::TVec<tract_onnx::prelude::TValue>> {
    use tract_onnx::prelude::*;
    let x = x.cast_to::<f32>()?;
    let shape = x.shape().to_vec();
    anyhow::ensure!(
        shape.last() == Some(&k),
        "{op}: input shape {shape:?}, expected {k} features"
    );
    let xs = x.try_as_plain_ram()?.as_slice::<f32>()?;
    let rows = xs.len() / k;
    let mut out_shape = shape;
    *out_shape.last_mut().expect("rank >= 1") = n;
    // SAFETY: `run` writes all of `y` (this function's contract); every
    // kernel behind it stores each output rather than adding to it.
    let y = unsafe {
        f32_output(&out_shape, |y| {
            run(xs, rows, y);
            Ok(())
        })?
    };
    Ok(tvec!(y))
}

/// Output fact of a linear layer: the input's shape with `n` features, f32.
pub(crate) fn linear_facts(
    op: &str,
    x: &tract_onnx::prelude::TypedFact,
    n: usize,
) -> tract_onnx::prelude::TractResult<tract_onnx::prelude::TVec<tract_onnx::prelude::TypedFact>> {
    use tract_onnx::prelude::*;
    let mut shape: TVec<TDim> = x.shape.iter().cloned().collect();
    anyhow::ensure!(!shape.is_empty(), "{op}: input must have rank >= 1");
    *shape.last_mut().expect("rank >= 1") = n.to_dim();
    Ok(tvec!(f32::fact(shape)))
}

/// Helpers of the ops' unit tests.
#[cfg(test)]
pub(crate) mod test_util {
    use tract_onnx::prelude::*;

    pub(crate) use edgebench_kernels::test_util::*;

    /// The first output of `model`, loaded with EdgeBench's ops and
    /// optimised by tract, on `inputs`.
    pub(crate) fn run_optimized(model: &tract_onnx::pb::ModelProto, inputs: &[Tensor]) -> Vec<f32> {
        let plan = super::onnx()
            .model_for_proto_model(model)
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .unwrap();
        let out = plan
            .run(inputs.iter().cloned().map(Tensor::into_tvalue).collect())
            .unwrap();
        out[0]
            .try_as_plain_ram()
            .unwrap()
            .as_slice::<f32>()
            .unwrap()
            .to_vec()
    }
}
