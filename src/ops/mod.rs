//! EdgeBench's custom ONNX ops (domain `ai.edgebench`), registered in
//! tract-onnx's op registry. The registry keys on op type only, so every name
//! is prefixed `Eb`. Semantics and packing layouts: `docs/ops.md`.

pub mod activation;
pub mod attention;
pub mod dense;
pub mod gemm;
pub mod graphs;
pub mod norm;
pub(crate) mod parallel;
pub mod qkernel;
pub mod quant;
pub(crate) mod rewrite;
pub mod rope;
pub mod router;
pub mod scar;
pub(crate) mod softmax;

/// The widest x86-64 vector instructions EdgeBench's kernels use, in
/// increasing order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// Plain Rust (the compiler's own vectorisation): every other CPU.
    Portable,
    /// AVX2 + FMA, 8 lanes.
    Avx2,
    /// AVX-512F (with AVX2 + FMA), 16 lanes: the f32 product kernels.
    Avx512,
}

impl Isa {
    /// Lower-case name, as `EDGEBENCH_MAX_ISA` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }
}

/// The kernels this process runs: the widest this CPU has (detected at
/// run time), capped by the environment variable `EDGEBENCH_MAX_ISA`
/// (`avx512`, `avx2` or `portable`), so the same binary can be compared
/// against itself, or kept off AVX-512 on CPUs that slow their clock for
/// it. Read once per process; an unknown value is reported on stderr and
/// ignored.
pub fn isa() -> Isa {
    static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
    *ISA.get_or_init(|| {
        let cap = match std::env::var("EDGEBENCH_MAX_ISA") {
            Err(_) => Isa::Avx512,
            Ok(v) => match [Isa::Portable, Isa::Avx2, Isa::Avx512]
                .into_iter()
                .find(|i| i.name() == v.trim().to_ascii_lowercase())
            {
                Some(i) => i,
                None => {
                    eprintln!(
                        "warning: EDGEBENCH_MAX_ISA={v:?} is not one of avx512, avx2, portable; ignored"
                    );
                    Isa::Avx512
                }
            },
        };
        detected_isa().min(cap)
    })
}

/// The widest [`Isa`] this CPU supports.
fn detected_isa() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        use std::is_x86_feature_detected as has;
        if has!("avx2") && has!("fma") {
            return if has!("avx512f") {
                Isa::Avx512
            } else {
                Isa::Avx2
            };
        }
    }
    Isa::Portable
}

/// Whether EdgeBench's AVX2+FMA kernels run (`gemm`, `softmax`,
/// `activation`): see [`isa`].
pub(crate) fn avx2_fma() -> bool {
    isa() >= Isa::Avx2
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

/// Asks Linux to back the 2 MiB-aligned interior of `bytes` bytes at
/// `ptr` with transparent huge pages (`MADV_HUGEPAGE`, which is what matters
/// where the THP mode is `madvise`). A hint: packed weights are streamed a panel at a
/// time, and with 4 KiB pages every 4 KiB of a stream is a TLB miss. Call
/// it before the memory is first written. Does nothing elsewhere or when
/// the region holds no whole huge page.
pub(crate) fn huge_pages(ptr: *const u8, bytes: usize) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let start = (ptr as usize).next_multiple_of(HUGE);
        let end = (ptr as usize + bytes) / HUGE * HUGE;
        if end > start {
            // SAFETY: the range lies inside the caller's allocation;
            // MADV_HUGEPAGE changes how pages are backed, never their contents.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (ptr, bytes);
}

/// Helpers of the ops' unit tests.
#[cfg(test)]
pub(crate) mod test_util {
    use tract_onnx::prelude::*;

    /// Fold step for the largest error: NaN once any error is NaN
    /// (`f32::max` would drop it, and an output never written, or NaN,
    /// would pass).
    pub(crate) fn worse(largest: f32, e: f32) -> f32 {
        if e > largest || e.is_nan() {
            e
        } else {
            largest
        }
    }

    /// Largest `|got - want| / (1 + |want|)` (NaN if any value is NaN).
    pub(crate) fn rel_err(got: &[f32], want: &[f32]) -> f32 {
        assert_eq!(got.len(), want.len(), "lengths differ");
        got.iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs() / (1.0 + b.abs()))
            .fold(0f32, worse)
    }

    /// `n` deterministic pseudo-random values in [-1, 1].
    pub(crate) fn data(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let h = (i as u32)
                    .wrapping_mul(2654435761)
                    .wrapping_add(seed.wrapping_mul(97));
                ((h >> 8) % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

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
