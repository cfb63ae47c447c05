//! EdgeBench's model runtime on tract: the ONNX writer ([`onnx`]), the
//! custom ops as thin parse/wire/eval layers over `edgebench-kernels`
//! ([`ops`]), the model loaders, tokenizers and the `Model` seam ([`model`]),
//! and GEM's graph builder ([`gem`]).

pub mod gem;
pub mod model;
pub mod onnx;
pub mod ops;
