//! Device measurement: the host and the paper's device profiles with roofline
//! projections ([`profile`]), LoadGen-style latency statistics ([`stats`]) and
//! power/energy sources ([`power`]), and performance mode ([`perf`]), which
//! measures a model with them. A number not measured here is `None` or
//! labelled `estimated`, never invented.

pub mod bench;
pub mod perf;
pub mod power;
pub mod profile;
pub mod stats;
