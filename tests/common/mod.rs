//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod synth_bert;
pub mod synth_llama;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared/data` when present.
pub fn shared_data() -> Option<PathBuf> {
    let p = repo().join("../shared/data");
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!("skipping: ../shared/data not found (the real samples live there)");
        None
    }
}

/// Runs the edgebench binary in `cwd` with `args`.
pub fn edgebench(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edgebench"))
        .args(args)
        .current_dir(cwd)
        .env_remove("EDGEBENCH_DATA")
        .output()
        .expect("edgebench runs")
}

/// stdout + stderr as text.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The graph at `path` twice: as written (typed, not optimised) and with its
/// attention fused by `fuse_graph` (which must replace `layers` chains) and
/// optimised.
pub fn written_and_fused(
    path: &Path,
    layers: usize,
) -> (
    std::sync::Arc<tract_onnx::prelude::TypedRunnableModel>,
    std::sync::Arc<tract_onnx::prelude::TypedRunnableModel>,
) {
    use tract_onnx::prelude::*;
    let onnx = edgebench::ops::onnx();
    let proto = onnx.proto_model_for_path(path).unwrap();
    let mut fused = proto.clone();
    assert_eq!(
        edgebench::ops::attention::fuse_graph(fused.graph.as_mut().unwrap()),
        layers
    );
    let plain = onnx
        .model_for_proto_model(&proto)
        .unwrap()
        .into_typed()
        .unwrap();
    let fast = onnx
        .model_for_proto_model(&fused)
        .unwrap()
        .into_optimized()
        .unwrap();
    (
        plain.into_runnable().unwrap(),
        fast.into_runnable().unwrap(),
    )
}

/// Largest absolute difference between two f32 tensors of the same shape.
pub fn max_diff(a: &tract_onnx::prelude::TValue, b: &tract_onnx::prelude::TValue) -> f32 {
    let (a, b) = (
        a.to_plain_array_view::<f32>().unwrap(),
        b.to_plain_array_view::<f32>().unwrap(),
    );
    assert_eq!(a.shape(), b.shape());
    a.iter()
        .zip(b.iter())
        .map(|(p, q)| (p - q).abs())
        .fold(0f32, f32::max)
}
