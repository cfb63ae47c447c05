//! EdgeBench's model runtime on tract: the ONNX writer ([`onnx`]), the
//! custom ops as thin parse/wire/eval layers over `edgebench-kernels`
//! ([`ops`]), the model loaders, tokenizers and the `Model` seam ([`model`]),
//! GEM's graph builder ([`gem`]), and the options models are loaded and
//! run with ([`options`]).

pub mod gem;
pub mod model;
pub mod onnx;
pub mod ops;
pub mod options;

pub use options::RuntimeOptions;
