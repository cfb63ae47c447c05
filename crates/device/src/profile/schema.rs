//! The device profile types: values with their provenance, compute units, and the `host`
//! profile built from what was detected and measured.

use super::host::{Host, Reading};
use super::HOST_ID;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;

/// A value with its provenance, or the reason it is unknown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Spec<T> {
    /// A stated, derived or measured value.
    Known {
        /// The value in base units (bytes, bytes/s, FLOP/s, watts).
        value: T,
        /// The value as written, with its unit, e.g. `12.8 GB/s`.
        stated: String,
        /// Where the value comes from (the paper, a public spec, a measurement).
        source: String,
        /// How it was computed, when it is not printed in any spec.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        derivation: Option<String>,
    },
    /// Not known, and why.
    Unknown {
        /// Why the value is not known.
        reason: String,
    },
}

impl<T> Spec<T> {
    /// The value, when known.
    pub fn value(&self) -> Option<&T> {
        match self {
            Spec::Known { value, .. } => Some(value),
            Spec::Unknown { .. } => None,
        }
    }

    /// True for a known value that was derived rather than stated.
    pub fn is_derived(&self) -> bool {
        matches!(
            self,
            Spec::Known {
                derivation: Some(_),
                ..
            }
        )
    }

    /// The source of a known value.
    pub fn source(&self) -> Option<&str> {
        match self {
            Spec::Known { source, .. } => Some(source),
            Spec::Unknown { .. } => None,
        }
    }

    pub(super) fn unknown(reason: impl Into<String>) -> Self {
        Spec::Unknown {
            reason: reason.into(),
        }
    }
}

impl<T: Copy> Spec<T> {
    /// The value, when known, by copy.
    pub fn get(&self) -> Option<T> {
        self.value().copied()
    }
}

/// Kind of compute unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComputeKind {
    /// General-purpose CPU cores.
    Cpu,
    /// GPU.
    Gpu,
    /// Neural processing unit / AI accelerator.
    Npu,
}

impl fmt::Display for ComputeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ComputeKind::Cpu => "cpu",
            ComputeKind::Gpu => "gpu",
            ComputeKind::Npu => "npu",
        })
    }
}

/// One compute unit of a device and its peak throughput.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComputeUnit {
    /// CPU, GPU or NPU.
    pub kind: ComputeKind,
    /// Human-readable name.
    pub name: String,
    /// Numeric precision the peak refers to, when stated.
    pub precision: Option<String>,
    /// Peak FLOP/s.
    pub peak_flops: Spec<f64>,
}

/// A device: hardware facts, each with its source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceProfile {
    /// Stable id, equal to the file stem (`raspberry-pi-4`), or `host`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Rust target triple of the device's CPU, when known.
    pub arch: Option<String>,
    /// CPU description.
    pub cpu: Spec<String>,
    /// Logical CPU cores.
    pub cores: Spec<u32>,
    /// RAM in bytes.
    pub ram_bytes: Spec<u64>,
    /// Memory technology (e.g. LPDDR4-3200).
    pub memory_type: Spec<String>,
    /// Peak memory bandwidth in bytes per second.
    pub memory_bandwidth_bytes_per_s: Spec<f64>,
    /// Power envelope in watts.
    pub power_envelope_w: Spec<f64>,
    /// Compute units, at least one.
    pub compute: Vec<ComputeUnit>,
    /// Free-form notes.
    pub notes: String,
    /// File the profile was read from; `None` for `host`.
    pub source_file: Option<PathBuf>,
}

impl DeviceProfile {
    /// The compute unit with the highest known peak FLOP/s, if any.
    pub fn fastest_unit(&self) -> Option<&ComputeUnit> {
        self.compute
            .iter()
            .filter(|u| u.peak_flops.get().is_some())
            .max_by(|a, b| {
                let a = a.peak_flops.get().unwrap_or(0.0);
                let b = b.peak_flops.get().unwrap_or(0.0);
                a.total_cmp(&b)
            })
    }

    /// The first compute unit of the given kind.
    pub fn unit(&self, kind: ComputeKind) -> Option<&ComputeUnit> {
        self.compute.iter().find(|u| u.kind == kind)
    }

    /// Builds the `host` profile from a detected [`Host`] and whatever was
    /// measured on it; anything not measured is [`Spec::Unknown`].
    pub fn host(host: &Host, measured: &HostMeasurements) -> DeviceProfile {
        let detected = |source: &str| format!("detected on this machine ({source})");
        let cpu = match &host.cpu_model {
            Reading::Read { value, source } => Spec::Known {
                value: value.clone(),
                stated: value.clone(),
                source: detected(source),
                derivation: None,
            },
            Reading::Unreadable { reason, .. } => Spec::unknown(reason.clone()),
        };
        let cores = match &host.logical_cores {
            Reading::Read { value, source } => Spec::Known {
                value: *value,
                stated: format!("{value} logical cores"),
                source: detected(source),
                derivation: None,
            },
            Reading::Unreadable { reason, .. } => Spec::unknown(reason.clone()),
        };
        let ram_bytes = match &host.ram_bytes {
            Reading::Read { value, source } => Spec::Known {
                value: *value,
                stated: format!("{value} B"),
                source: detected(source),
                derivation: None,
            },
            Reading::Unreadable { reason, .. } => Spec::unknown(reason.clone()),
        };
        let method = if measured.method.trim().is_empty() {
            "method not recorded"
        } else {
            measured.method.as_str()
        };
        let measured_spec = |v: Option<f64>, unit: &str, what: &str| match v {
            Some(v) if v.is_finite() && v > 0.0 => Spec::Known {
                value: v,
                stated: format!("{v} {unit}"),
                source: format!("measured on this machine: {method}"),
                derivation: None,
            },
            Some(v) => Spec::unknown(format!("measured {what} {v} is not a positive number")),
            None => Spec::unknown(format!("{what} not measured on this machine")),
        };
        let name = match host.cpu_model.value() {
            Some(model) => format!("this machine ({model})"),
            None => "this machine".to_string(),
        };
        DeviceProfile {
            id: HOST_ID.to_string(),
            name,
            arch: Some(host.target.clone()),
            cpu,
            cores,
            ram_bytes,
            memory_type: Spec::unknown("not detectable from software"),
            memory_bandwidth_bytes_per_s: measured_spec(
                measured.memory_bandwidth_bytes_per_s,
                "B/s",
                "memory bandwidth",
            ),
            power_envelope_w: Spec::unknown("no power envelope is known for this machine"),
            compute: vec![ComputeUnit {
                kind: ComputeKind::Cpu,
                name: host
                    .cpu_model
                    .value()
                    .cloned()
                    .unwrap_or_else(|| "host CPU".to_string()),
                precision: measured.precision.clone(),
                peak_flops: measured_spec(measured.peak_flops, "FLOP/s", "peak FLOP/s"),
            }],
            notes: "detected at run time; only measured values are known".to_string(),
            source_file: None,
        }
    }
}

/// Throughput measured on the host, to build its profile. `None` = not measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostMeasurements {
    /// Measured memory bandwidth in bytes per second.
    pub memory_bandwidth_bytes_per_s: Option<f64>,
    /// Measured peak FLOP/s of the CPU.
    pub peak_flops: Option<f64>,
    /// Precision of the FLOP/s measurement (e.g. `f32`).
    pub precision: Option<String>,
    /// How the values were measured (kept as their source).
    pub method: String,
}
