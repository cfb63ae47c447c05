//! Device profiles, host detection and roofline projection.
//!
//! * [`load`] / [`load_dir`] read `devices/<id>.toml` ([`DeviceProfile`]);
//!   every value carries its source, derived values their derivation, and
//!   values nobody publishes are [`Spec::Unknown`] with the reason. The file
//!   format is described in `devices/README.md`.
//! * [`Host::detect`] reads the machine EdgeBench runs on (CPU model, cores,
//!   RAM, OS, kernel, frequency governor, temperature) from `/proc` and `/sys`
//!   with a `sysinfo` fallback; [`Host::detect_from`] reads a fake tree. Every
//!   item that cannot be read is [`Reading::Unreadable`] with the path and
//!   reason; nothing here panics on bad input.
//! * [`project`] gives a roofline lower bound on milliseconds per token,
//!   `max(flops / peak, bytes / bandwidth)`, always labelled `estimated`;
//!   [`estimate_power`] the power beside it (the profile's power envelope),
//!   labelled likewise.
//! * [`list`] returns the paper's four devices plus `host`.
//!
//! Self-contained: std, serde, toml, thiserror and sysinfo only.

mod cpuinfo;
mod host;
mod loader;
mod power_estimate;
mod roofline;
mod schema;

pub use host::{
    read_governor, read_thermal, running_target, Host, HostRoots, Reading, Thermal, ZoneTemperature,
};
pub use loader::{list, load, load_dir, parse, ProfileError};
pub use power_estimate::{estimate_power, PowerEstimate};
pub use roofline::{project, project_on, Bound, Projection, Workload, WorkloadError};
pub use schema::{ComputeKind, ComputeUnit, DeviceProfile, HostMeasurements, Spec};

/// Profile schema version this code reads.
pub const SCHEMA_VERSION: i64 = 1;
/// Ids of the paper's devices, in the paper's order.
pub const PAPER_DEVICE_IDS: [&str; 4] = ["raspberry-pi-4", "pixel-6", "iphone-13", "custom-npu"];
/// Id of the profile built from the running machine.
pub const HOST_ID: &str = "host";
