//! EdgeBench: an evaluation harness for on-device language models.
//!
//! The work lives in layered crates, each depending only on those below it:
//! `edgebench-util` -> `edgebench-kernels` -> `edgebench-runtime` ->
//! `edgebench-device` -> `edgebench-eval` -> `edgebench-paper`. This crate is
//! the `edgebench` command line; its library re-exports the layers' modules
//! under one name for programs and tests that use EdgeBench as a library.

pub use edgebench_device::{self as device, perf};
pub use edgebench_eval::{
    data, evaluate, fit, gate, merge, metrics, record, report, request, runner, shard, suite, sweep,
};
pub use edgebench_kernels::alloc;
pub use edgebench_paper as paper;
pub use edgebench_runtime::{self as runtime, gem, model, onnx, ops};
pub use edgebench_util as util;
