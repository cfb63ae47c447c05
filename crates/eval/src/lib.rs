//! EdgeBench's evaluation: suite files ([`suite`]) -> examples ([`data`]) ->
//! requests ([`request`], fitted to the context by [`fit`]) -> a model -> per-example records ([`record`], run by
//! [`runner`], split into shards by [`shard`] and put back together by [`merge`]) -> metrics ([`metrics`]) -> reports ([`report`]), plus
//! compression sweeps ([`sweep`]) and the CI regression gate ([`gate`]).
//! [`evaluate::evaluate`] runs the whole flow.

pub mod data;
pub mod evaluate;
pub mod fit;
pub mod gate;
pub mod merge;
pub mod metrics;
pub mod record;
pub mod report;
pub mod request;
pub mod runner;
pub mod shard;
pub mod suite;
pub mod sweep;
