//! EdgeBench: an evaluation harness for on-device language models.
//!
//! Data flows one way: [`suite`] files -> [`data`] examples -> [`request`]s ->
//! [`model`] -> per-example [`record`]s -> [`metrics`] -> [`report`].

pub mod alloc;
pub mod data;
pub mod device;
pub mod gate;
pub mod gem;
pub mod metrics;
pub mod model;
pub mod onnx;
pub mod ops;
pub mod paper;
pub mod perf;
pub mod record;
pub mod report;
pub mod request;
pub mod runner;
pub mod suite;
pub mod sweep;
