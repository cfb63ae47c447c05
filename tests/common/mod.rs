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

/// The runtime options of the tests: the defaults, with the environment's
/// overrides (CI caps the kernels with `EDGEBENCH_MAX_ISA`).
pub fn runtime() -> edgebench::runtime::RuntimeOptions {
    edgebench::runtime::RuntimeOptions::from_env().expect("EDGEBENCH_* variables are valid")
}

/// The shared SmolLM2-135M-Instruct Q4_1 GGUF file, when `../shared` is present.
#[allow(dead_code)]
pub fn smollm2_gguf() -> Option<PathBuf> {
    shared_model("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// `../shared/models/<rel>` when present.
#[allow(dead_code)]
pub fn shared_model(rel: &str) -> Option<PathBuf> {
    let p = repo().join("../shared/models").join(rel);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("skipping: {} not found", p.display());
        None
    }
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

/// A command that starts the edgebench binary: through the cargo runner of
/// the target it was built for when `CARGO_TARGET_<TRIPLE>_RUNNER` is set
/// (qemu-aarch64 when `tools/cross-aarch64.sh` runs the tests of a cross
/// build), else directly.
pub fn edgebench_command() -> Command {
    let exe = env!("CARGO_BIN_EXE_edgebench");
    let triple = option_env!("EDGEBENCH_TARGET").unwrap_or_default();
    let var = format!(
        "CARGO_TARGET_{}_RUNNER",
        triple.to_uppercase().replace(['-', '.'], "_")
    );
    let runner = std::env::var(var).unwrap_or_default();
    let mut words = runner.split_whitespace();
    match words.next() {
        Some(program) if !triple.is_empty() => {
            let mut c = Command::new(program);
            c.args(words).arg(exe);
            c
        }
        _ => Command::new(exe),
    }
}

/// Runs the edgebench binary in `cwd` with `args`.
pub fn edgebench(cwd: &Path, args: &[&str]) -> Output {
    edgebench_command()
        .args(args)
        .current_dir(cwd)
        .env_remove("EDGEBENCH_DATA")
        .env_remove("EDGEBENCH_SUITES_PATH")
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

/// The graph in `dir` as written (typed, not optimised) and as
/// `model::load_graph` serves it (attention, RoPE and norms fused, f32
/// linear layers on `EbDense`, symbol bounds, tract's optimisation); asserts
/// how many of each the load-time rewrites replaced.
pub fn written_and_fused(
    dir: &Path,
    layers: usize,
    rope: usize,
    norms: usize,
    dense: usize,
) -> (
    std::sync::Arc<tract_onnx::prelude::TypedRunnableModel>,
    std::sync::Arc<tract_onnx::prelude::TypedRunnableModel>,
) {
    use tract_onnx::prelude::*;
    let manifest = edgebench::model::manifest::ModelManifest::load(dir).unwrap();
    let plain = edgebench::ops::onnx()
        .model_for_path(dir.join(&manifest.graph))
        .unwrap()
        .into_typed()
        .unwrap();
    let loaded = edgebench::model::load_graph(dir, &manifest, &runtime()).unwrap();
    let r = loaded.rewrites;
    assert_eq!(r.attention, layers, "attention layers fused");
    assert_eq!(r.rope, rope, "RoPE chains on EbRope");
    assert_eq!(r.norm, norms, "normalisations on EbNorm");
    assert_eq!(r.dense, dense, "linear layers on EbDense");
    (plain.into_runnable().unwrap(), loaded.plan)
}

/// `EbDense` nodes of `plan` that apply `then` (`Add` or `Mul`) to their
/// outputs (`dense::fuse_graph` folded a residual or SwiGLU's product in).
pub fn dense_then(plan: &tract_onnx::prelude::TypedRunnableModel, then: &str) -> usize {
    plan.model()
        .nodes
        .iter()
        .filter(|n| n.op().name() == "EbDense")
        .filter(|n| {
            n.op()
                .info()
                .unwrap()
                .iter()
                .any(|l| l.ends_with(&format!("then {then}")))
        })
        .count()
}

/// Fold step for the largest error: NaN once any error is NaN
/// (`f32::max` would drop it, so a NaN output would pass).
pub fn worse(largest: f32, e: f32) -> f32 {
    if e > largest || e.is_nan() {
        e
    } else {
        largest
    }
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
        .fold(0f32, worse)
}

/// Largest `|a - b| / (1 + |a|)` over two equally long slices (NaN wins).
pub fn max_rel(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / (1.0 + x.abs()))
        .fold(0f32, worse)
}

/// Record lines written so far under a run folder's `records/` (0 before
/// the folder exists): how tests wait for a run to get under way.
pub fn record_lines(run: &Path) -> usize {
    std::fs::read_dir(run.join("records"))
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| {
                    std::fs::read_to_string(e.path())
                        .unwrap_or_default()
                        .lines()
                        .count()
                })
                .sum()
        })
        .unwrap_or(0)
}
