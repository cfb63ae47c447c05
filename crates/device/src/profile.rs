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
//!   `max(flops / peak, bytes / bandwidth)`, always labelled `estimated`.
//! * [`list`] returns the paper's four devices plus `host`.
//!
//! Self-contained: std, serde, toml, thiserror and sysinfo only.

use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Profile schema version this code reads.
pub const SCHEMA_VERSION: i64 = 1;
/// Ids of the paper's devices, in the paper's order.
pub const PAPER_DEVICE_IDS: [&str; 4] = ["raspberry-pi-4", "pixel-6", "iphone-13", "custom-npu"];
/// Id of the profile built from the running machine.
pub const HOST_ID: &str = "host";

// ---------------------------------------------------------------------------
// Errors

/// A device profile that cannot be used. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The file or directory cannot be read.
    #[error("{}: cannot read: {source}", .path.display())]
    Io {
        /// File or directory.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: io::Error,
    },
    /// Not valid TOML, or a field of the wrong type or an unknown field.
    #[error("{}: malformed profile: {message}", .path.display())]
    Toml {
        /// Profile file.
        path: PathBuf,
        /// Parser message (with line and column).
        message: String,
    },
    /// A required field is absent.
    #[error("{}: missing field `{field}`", .path.display())]
    MissingField {
        /// Profile file.
        path: PathBuf,
        /// Dotted field name, e.g. `memory_bandwidth.unit`.
        field: String,
    },
    /// A field is present but its value is unusable.
    #[error("{}: field `{field}`: {reason}", .path.display())]
    InvalidValue {
        /// Profile file.
        path: PathBuf,
        /// Dotted field name.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A unit that this field does not accept.
    #[error("{}: field `{field}`: unknown unit `{unit}` (expected one of: {expected})", .path.display())]
    UnknownUnit {
        /// Profile file.
        path: PathBuf,
        /// Dotted field name.
        field: String,
        /// The unit as written.
        unit: String,
        /// Accepted units.
        expected: String,
    },
}

/// A workload that cannot be projected (negative or non-finite counts).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid workload: {0}")]
pub struct WorkloadError(pub String);

// ---------------------------------------------------------------------------
// Profile types

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

    fn unknown(reason: impl Into<String>) -> Self {
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

// ---------------------------------------------------------------------------
// Loading

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    schema: Option<i64>,
    id: Option<String>,
    name: Option<String>,
    arch: Option<String>,
    notes: Option<String>,
    cpu: Option<RawItem>,
    cores: Option<RawItem>,
    ram: Option<RawItem>,
    memory_type: Option<RawItem>,
    memory_bandwidth: Option<RawItem>,
    power_envelope: Option<RawItem>,
    compute: Option<Vec<RawCompute>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawItem {
    value: Option<toml::Value>,
    unit: Option<String>,
    source: Option<String>,
    derived: Option<bool>,
    derivation: Option<String>,
    unknown: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCompute {
    kind: Option<String>,
    name: Option<String>,
    precision: Option<String>,
    peak: Option<RawItem>,
}

/// Units a quantity accepts, with their factor to the base unit.
struct UnitTable {
    units: &'static [(&'static str, f64)],
}

const BYTES: UnitTable = UnitTable {
    units: &[
        ("B", 1.0),
        ("kB", 1e3),
        ("KB", 1e3),
        ("MB", 1e6),
        ("GB", 1e9),
        ("TB", 1e12),
        ("KiB", 1024.0),
        ("MiB", 1048576.0),
        ("GiB", 1073741824.0),
        ("TiB", 1099511627776.0),
    ],
};
const BANDWIDTH: UnitTable = UnitTable {
    units: &[
        ("B/s", 1.0),
        ("kB/s", 1e3),
        ("MB/s", 1e6),
        ("GB/s", 1e9),
        ("TB/s", 1e12),
        ("KiB/s", 1024.0),
        ("MiB/s", 1048576.0),
        ("GiB/s", 1073741824.0),
    ],
};
const FLOPS: UnitTable = UnitTable {
    units: &[
        ("FLOP/s", 1.0),
        ("kFLOP/s", 1e3),
        ("MFLOP/s", 1e6),
        ("GFLOP/s", 1e9),
        ("TFLOP/s", 1e12),
        ("PFLOP/s", 1e15),
    ],
};
const POWER: UnitTable = UnitTable {
    units: &[("mW", 1e-3), ("W", 1.0)],
};

impl UnitTable {
    fn factor(&self, unit: &str) -> Option<f64> {
        self.units.iter().find(|(u, _)| *u == unit).map(|(_, f)| *f)
    }

    fn list(&self) -> String {
        self.units
            .iter()
            .map(|(u, _)| *u)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Field validation against one file.
struct Ctx<'a> {
    path: &'a Path,
}

impl Ctx<'_> {
    fn missing(&self, field: &str) -> ProfileError {
        ProfileError::MissingField {
            path: self.path.to_path_buf(),
            field: field.to_string(),
        }
    }

    fn invalid(&self, field: &str, reason: impl Into<String>) -> ProfileError {
        ProfileError::InvalidValue {
            path: self.path.to_path_buf(),
            field: field.to_string(),
            reason: reason.into(),
        }
    }

    fn text(&self, field: &str, v: Option<String>) -> Result<String, ProfileError> {
        let v = v.ok_or_else(|| self.missing(field))?;
        if v.trim().is_empty() {
            return Err(self.invalid(field, "is empty"));
        }
        Ok(v)
    }

    /// Splits an item into Known (value, unit, source, derivation) or Unknown.
    #[allow(clippy::type_complexity)]
    fn item(
        &self,
        field: &str,
        raw: Option<RawItem>,
        allow_unknown: bool,
    ) -> Result<Result<(toml::Value, Option<String>, String, Option<String>), String>, ProfileError>
    {
        let raw = raw.ok_or_else(|| self.missing(field))?;
        if let Some(reason) = raw.unknown {
            if !allow_unknown {
                return Err(self.invalid(
                    &format!("{field}.unknown"),
                    "this field is required and cannot be unknown",
                ));
            }
            if raw.value.is_some() || raw.unit.is_some() || raw.source.is_some() {
                return Err(self.invalid(
                    &format!("{field}.unknown"),
                    "an unknown value must not also give value, unit or source",
                ));
            }
            if reason.trim().is_empty() {
                return Err(self.invalid(&format!("{field}.unknown"), "reason is empty"));
            }
            return Ok(Err(reason));
        }
        let value = raw
            .value
            .ok_or_else(|| self.missing(&format!("{field}.value")))?;
        let source = self.text(&format!("{field}.source"), raw.source)?;
        let derivation = match (raw.derived.unwrap_or(false), raw.derivation) {
            (true, Some(d)) if !d.trim().is_empty() => Some(d),
            (true, _) => return Err(self.missing(&format!("{field}.derivation"))),
            (false, Some(_)) => {
                return Err(self.invalid(
                    &format!("{field}.derivation"),
                    "given without `derived = true`",
                ))
            }
            (false, None) => None,
        };
        Ok(Ok((value, raw.unit, source, derivation)))
    }

    /// A positive quantity with a unit from `table`, in base units.
    fn quantity(
        &self,
        field: &str,
        raw: Option<RawItem>,
        table: &UnitTable,
        allow_unknown: bool,
    ) -> Result<Spec<f64>, ProfileError> {
        let (value, unit, source, derivation) = match self.item(field, raw, allow_unknown)? {
            Ok(parts) => parts,
            Err(reason) => return Ok(Spec::unknown(reason)),
        };
        let number = match value {
            toml::Value::Integer(i) => i as f64,
            toml::Value::Float(f) => f,
            other => {
                return Err(self.invalid(
                    &format!("{field}.value"),
                    format!("expected a number, found {}", other.type_str()),
                ))
            }
        };
        if !number.is_finite() || number <= 0.0 {
            return Err(self.invalid(
                &format!("{field}.value"),
                format!("must be a positive finite number, found {number}"),
            ));
        }
        let unit = unit.ok_or_else(|| self.missing(&format!("{field}.unit")))?;
        let factor = table
            .factor(&unit)
            .ok_or_else(|| ProfileError::UnknownUnit {
                path: self.path.to_path_buf(),
                field: format!("{field}.unit"),
                unit: unit.clone(),
                expected: table.list(),
            })?;
        Ok(Spec::Known {
            value: number * factor,
            stated: format!("{number} {unit}"),
            source,
            derivation,
        })
    }

    /// A text value with its source.
    fn text_item(
        &self,
        field: &str,
        raw: Option<RawItem>,
        allow_unknown: bool,
    ) -> Result<Spec<String>, ProfileError> {
        let (value, unit, source, derivation) = match self.item(field, raw, allow_unknown)? {
            Ok(parts) => parts,
            Err(reason) => return Ok(Spec::unknown(reason)),
        };
        if unit.is_some() {
            return Err(self.invalid(&format!("{field}.unit"), "a text field takes no unit"));
        }
        match value {
            toml::Value::String(s) if !s.trim().is_empty() => Ok(Spec::Known {
                value: s.clone(),
                stated: s,
                source,
                derivation,
            }),
            toml::Value::String(_) => Err(self.invalid(&format!("{field}.value"), "is empty")),
            other => Err(self.invalid(
                &format!("{field}.value"),
                format!("expected a string, found {}", other.type_str()),
            )),
        }
    }

    /// A positive integer count with its source (no unit).
    fn count(
        &self,
        field: &str,
        raw: Option<RawItem>,
        allow_unknown: bool,
    ) -> Result<Spec<u32>, ProfileError> {
        let (value, unit, source, derivation) = match self.item(field, raw, allow_unknown)? {
            Ok(parts) => parts,
            Err(reason) => return Ok(Spec::unknown(reason)),
        };
        if unit.is_some() {
            return Err(self.invalid(&format!("{field}.unit"), "a count takes no unit"));
        }
        match value {
            toml::Value::Integer(i) if i > 0 && i <= i64::from(u32::MAX) => Ok(Spec::Known {
                value: i as u32,
                stated: i.to_string(),
                source,
                derivation,
            }),
            toml::Value::Integer(i) => Err(self.invalid(
                &format!("{field}.value"),
                format!("must be a positive integer, found {i}"),
            )),
            other => Err(self.invalid(
                &format!("{field}.value"),
                format!("expected an integer, found {}", other.type_str()),
            )),
        }
    }
}

/// Parses one profile from TOML text; `path` names the file in errors and
/// the id must equal its file stem.
pub fn parse(path: &Path, text: &str) -> Result<DeviceProfile, ProfileError> {
    let raw: RawProfile = toml::from_str(text).map_err(|e| ProfileError::Toml {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    })?;
    let cx = Ctx { path };
    if let Some(schema) = raw.schema {
        if schema != SCHEMA_VERSION {
            return Err(cx.invalid(
                "schema",
                format!("version {schema} is not supported (expected {SCHEMA_VERSION})"),
            ));
        }
    }
    let id = cx.text("id", raw.id)?;
    if !id
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(cx.invalid("id", format!("`{id}` may only use a-z, 0-9 and '-'")));
    }
    if id == HOST_ID {
        return Err(cx.invalid("id", "`host` is reserved for the detected machine"));
    }
    if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
        if stem != id {
            return Err(cx.invalid(
                "id",
                format!("`{id}` does not match the file name `{stem}`"),
            ));
        }
    }
    let name = cx.text("name", raw.name)?;
    let arch = match raw.arch {
        Some(a) if a.split('-').filter(|p| !p.is_empty()).count() >= 2 => Some(a),
        Some(a) => {
            return Err(cx.invalid(
                "arch",
                format!("`{a}` is not a target triple such as aarch64-unknown-linux-gnu"),
            ))
        }
        None => None,
    };
    let cpu = cx.text_item("cpu", raw.cpu, true)?;
    let cores = cx.count("cores", raw.cores, true)?;
    let ram = cx.quantity("ram", raw.ram, &BYTES, false)?;
    let ram_bytes = match ram {
        Spec::Known {
            value,
            stated,
            source,
            derivation,
        } => Spec::Known {
            value: value.round() as u64,
            stated,
            source,
            derivation,
        },
        Spec::Unknown { reason } => Spec::Unknown { reason },
    };
    let memory_type = match raw.memory_type {
        Some(item) => cx.text_item("memory_type", Some(item), true)?,
        None => Spec::unknown("not given in the profile"),
    };
    let memory_bandwidth_bytes_per_s =
        cx.quantity("memory_bandwidth", raw.memory_bandwidth, &BANDWIDTH, true)?;
    let power_envelope_w = cx.quantity("power_envelope", raw.power_envelope, &POWER, true)?;
    let raw_compute = raw.compute.ok_or_else(|| cx.missing("compute"))?;
    if raw_compute.is_empty() {
        return Err(cx.invalid("compute", "needs at least one compute unit"));
    }
    let mut compute = Vec::with_capacity(raw_compute.len());
    for (i, unit) in raw_compute.into_iter().enumerate() {
        let field = |f: &str| format!("compute[{i}].{f}");
        let kind_text = cx.text(&field("kind"), unit.kind)?;
        let kind = match kind_text.as_str() {
            "cpu" => ComputeKind::Cpu,
            "gpu" => ComputeKind::Gpu,
            "npu" => ComputeKind::Npu,
            other => {
                return Err(cx.invalid(
                    &field("kind"),
                    format!("`{other}` is not one of cpu, gpu, npu"),
                ))
            }
        };
        compute.push(ComputeUnit {
            kind,
            name: cx.text(&field("name"), unit.name)?,
            precision: unit.precision,
            peak_flops: cx.quantity(&field("peak"), unit.peak, &FLOPS, true)?,
        });
    }
    Ok(DeviceProfile {
        id,
        name,
        arch,
        cpu,
        cores,
        ram_bytes,
        memory_type,
        memory_bandwidth_bytes_per_s,
        power_envelope_w,
        compute,
        notes: raw.notes.unwrap_or_default().trim().to_string(),
        source_file: Some(path.to_path_buf()),
    })
}

/// Loads one profile file.
pub fn load(path: impl AsRef<Path>) -> Result<DeviceProfile, ProfileError> {
    let path = path.as_ref();
    let text = fs::read_to_string(path).map_err(|source| ProfileError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Loads every `*.toml` in `dir`: the paper's devices first (in
/// [`PAPER_DEVICE_IDS`] order), then the others by id.
pub fn load_dir(dir: impl AsRef<Path>) -> Result<Vec<DeviceProfile>, ProfileError> {
    let dir = dir.as_ref();
    let io_err = |source| ProfileError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut paths = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err)? {
        let path = entry.map_err(io_err)?.path();
        if path.extension().is_some_and(|e| e == "toml") && path.is_file() {
            paths.push(path);
        }
    }
    let mut profiles = paths.iter().map(load).collect::<Result<Vec<_>, _>>()?;
    profiles.sort_by_key(|p| {
        let rank = PAPER_DEVICE_IDS
            .iter()
            .position(|id| *id == p.id)
            .unwrap_or(PAPER_DEVICE_IDS.len());
        (rank, p.id.clone())
    });
    Ok(profiles)
}

/// The profiles in `devices_dir` (the paper's four first) followed by the
/// `host` profile built from `host` and `measured`.
pub fn list(
    devices_dir: impl AsRef<Path>,
    host: &Host,
    measured: &HostMeasurements,
) -> Result<Vec<DeviceProfile>, ProfileError> {
    let mut profiles = load_dir(devices_dir)?;
    profiles.push(DeviceProfile::host(host, measured));
    Ok(profiles)
}

// ---------------------------------------------------------------------------
// Roofline projection

/// Work per generated token, counted from the model graph.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    /// Floating-point (or integer multiply-accumulate x 2) operations per token.
    pub flops_per_token: f64,
    /// Weight bytes read per token (at their stored precision).
    pub weight_bytes_per_token: f64,
    /// Other bytes moved per token (KV cache, activations), 0 if not counted.
    pub other_bytes_per_token: f64,
}

impl Workload {
    /// Total bytes moved per token.
    pub fn bytes_per_token(&self) -> f64 {
        self.weight_bytes_per_token + self.other_bytes_per_token
    }

    fn check(&self) -> Result<(), WorkloadError> {
        for (name, v) in [
            ("flops_per_token", self.flops_per_token),
            ("weight_bytes_per_token", self.weight_bytes_per_token),
            ("other_bytes_per_token", self.other_bytes_per_token),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(WorkloadError(format!(
                    "{name} is {v}; it must be finite and non-negative"
                )));
            }
        }
        Ok(())
    }
}

/// Which roof limits the projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bound {
    /// Peak FLOP/s limits.
    Compute,
    /// Memory bandwidth limits.
    Memory,
}

/// A roofline lower bound on latency per token. Always an estimate: it
/// serialises with `"label": "estimated"` and `"estimated": true`.
#[derive(Debug, Clone, PartialEq)]
pub struct Projection {
    /// Device the projection is for.
    pub device_id: String,
    /// Compute unit whose peak was used.
    pub compute_unit: Option<String>,
    /// Peak FLOP/s used.
    pub peak_flops: Option<f64>,
    /// Memory bandwidth used, bytes/s.
    pub memory_bandwidth_bytes_per_s: Option<f64>,
    /// `flops / peak`, ms; `None` when the peak is unknown.
    pub compute_bound_ms: Option<f64>,
    /// `bytes / bandwidth`, ms; `None` when the bandwidth is unknown.
    pub memory_bound_ms: Option<f64>,
    /// `max` of the known bounds, ms; `None` when neither is known.
    pub ms_per_token_lower_bound: Option<f64>,
    /// The roof that gives the lower bound.
    pub bound: Option<Bound>,
    /// What the bound leaves out.
    pub caveats: Vec<String>,
}

impl Projection {
    /// The label every projection carries.
    pub const LABEL: &'static str = "estimated";

    /// Always true: a projection is never a measurement.
    pub fn is_estimated(&self) -> bool {
        true
    }

    /// Upper bound on tokens per second, `1000 / ms_per_token_lower_bound`.
    pub fn tokens_per_s_upper_bound(&self) -> Option<f64> {
        self.ms_per_token_lower_bound
            .filter(|ms| *ms > 0.0)
            .map(|ms| 1000.0 / ms)
    }
}

impl Serialize for Projection {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Projection", 12)?;
        st.serialize_field("label", Self::LABEL)?;
        st.serialize_field("estimated", &true)?;
        st.serialize_field("device_id", &self.device_id)?;
        st.serialize_field("compute_unit", &self.compute_unit)?;
        st.serialize_field("peak_flops", &self.peak_flops)?;
        st.serialize_field(
            "memory_bandwidth_bytes_per_s",
            &self.memory_bandwidth_bytes_per_s,
        )?;
        st.serialize_field("compute_bound_ms", &self.compute_bound_ms)?;
        st.serialize_field("memory_bound_ms", &self.memory_bound_ms)?;
        st.serialize_field("ms_per_token_lower_bound", &self.ms_per_token_lower_bound)?;
        st.serialize_field("tokens_per_s_upper_bound", &self.tokens_per_s_upper_bound())?;
        st.serialize_field("bound", &self.bound)?;
        st.serialize_field("caveats", &self.caveats)?;
        st.end()
    }
}

/// Roofline lower bound on the device's fastest compute unit (highest known
/// peak, else its first unit): `max(flops / peak, bytes / bandwidth)`, or
/// the one bound that is known.
pub fn project(profile: &DeviceProfile, workload: &Workload) -> Result<Projection, WorkloadError> {
    let unit = profile.fastest_unit().or(profile.compute.first());
    project_with(profile, unit, workload)
}

/// Roofline lower bound on the first compute unit of `kind`.
pub fn project_on(
    profile: &DeviceProfile,
    kind: ComputeKind,
    workload: &Workload,
) -> Result<Projection, WorkloadError> {
    project_with(profile, profile.unit(kind), workload)
}

fn project_with(
    profile: &DeviceProfile,
    unit: Option<&ComputeUnit>,
    workload: &Workload,
) -> Result<Projection, WorkloadError> {
    workload.check()?;
    let mut caveats = vec![
        "roofline lower bound: assumes peak throughput and each byte moved once; \
         real latency is higher"
            .to_string(),
    ];
    let peak = unit.and_then(|u| u.peak_flops.get());
    match unit {
        None => caveats.push("no compute unit with a known peak: compute bound omitted".into()),
        Some(u) => {
            if let Spec::Unknown { reason } = &u.peak_flops {
                caveats.push(format!(
                    "peak FLOP/s unknown ({reason}): compute bound omitted"
                ));
            }
            if u.precision
                .as_deref()
                .is_none_or(|p| p.starts_with("unspecified"))
            {
                caveats.push(format!(
                    "the peak of `{}` is stated without a numeric precision",
                    u.name
                ));
            }
        }
    }
    let bandwidth = profile.memory_bandwidth_bytes_per_s.get();
    if let Spec::Unknown { reason } = &profile.memory_bandwidth_bytes_per_s {
        caveats.push(format!(
            "memory bandwidth unknown ({reason}): memory bound omitted"
        ));
    }
    if profile.memory_bandwidth_bytes_per_s.is_derived() {
        caveats.push("memory bandwidth is a theoretical peak derived from the memory spec".into());
    }
    let compute_bound_ms = peak.map(|p| workload.flops_per_token / p * 1e3);
    let memory_bound_ms = bandwidth.map(|b| workload.bytes_per_token() / b * 1e3);
    let (ms_per_token_lower_bound, bound) = match (compute_bound_ms, memory_bound_ms) {
        (Some(c), Some(m)) if m > c => (Some(m), Some(Bound::Memory)),
        (Some(c), _) => (Some(c), Some(Bound::Compute)),
        (None, Some(m)) => (Some(m), Some(Bound::Memory)),
        (None, None) => (None, None),
    };
    Ok(Projection {
        device_id: profile.id.clone(),
        compute_unit: unit.map(|u| u.name.clone()),
        peak_flops: peak,
        memory_bandwidth_bytes_per_s: bandwidth,
        compute_bound_ms,
        memory_bound_ms,
        ms_per_token_lower_bound,
        bound,
        caveats,
    })
}

// ---------------------------------------------------------------------------
// Host detection

/// A value read from the running machine, or why it could not be read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Reading<T> {
    /// Read successfully.
    Read {
        /// The value.
        value: T,
        /// Where it came from (a path, or `sysinfo`).
        source: String,
    },
    /// Could not be read.
    Unreadable {
        /// The file tried, if any.
        path: Option<PathBuf>,
        /// Why it could not be read.
        reason: String,
    },
}

impl<T> Reading<T> {
    /// The value, when read.
    pub fn value(&self) -> Option<&T> {
        match self {
            Reading::Read { value, .. } => Some(value),
            Reading::Unreadable { .. } => None,
        }
    }

    fn read(value: T, source: &Path) -> Self {
        Reading::Read {
            value,
            source: source.display().to_string(),
        }
    }

    fn unreadable(path: &Path, reason: impl Into<String>) -> Self {
        Reading::Unreadable {
            path: Some(path.to_path_buf()),
            reason: reason.into(),
        }
    }

    fn is_read(&self) -> bool {
        matches!(self, Reading::Read { .. })
    }

    fn reason(&self) -> String {
        match self {
            Reading::Read { .. } => String::new(),
            Reading::Unreadable {
                path: Some(p),
                reason,
            } => format!("{}: {reason}", p.display()),
            Reading::Unreadable { path: None, reason } => reason.clone(),
        }
    }
}

/// Where `proc`, `sys` and `etc` live: `/` on a real machine, a fixture tree
/// in tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRoots {
    /// Root directory holding `proc/`, `sys/` and `etc/`.
    pub root: PathBuf,
}

impl HostRoots {
    /// The real machine: `/proc`, `/sys`, `/etc`.
    pub fn system() -> Self {
        HostRoots {
            root: PathBuf::from("/"),
        }
    }

    /// A fake tree rooted at `root`.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        HostRoots { root: root.into() }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
}

/// One thermal zone's temperature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZoneTemperature {
    /// Zone directory name, e.g. `thermal_zone0`.
    pub zone: String,
    /// Zone type (`type` file), when readable.
    pub kind: Option<String>,
    /// Temperature in degrees Celsius.
    pub celsius: f64,
}

/// Thermal state: the hottest zone and every zone read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thermal {
    /// Highest temperature over the readable zones, degrees Celsius.
    pub max_celsius: f64,
    /// The zones read, in directory order.
    pub zones: Vec<ZoneTemperature>,
    /// Zones skipped, with the reason.
    pub skipped: Vec<String>,
}

/// The machine EdgeBench runs on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Host {
    /// CPU model, e.g. `AMD EPYC 7B13` or `4x Cortex-A72`.
    pub cpu_model: Reading<String>,
    /// Board model (Raspberry Pi `Model` line or device tree), when present.
    pub board: Reading<String>,
    /// Logical CPU cores.
    pub logical_cores: Reading<u32>,
    /// Total RAM in bytes.
    pub ram_bytes: Reading<u64>,
    /// Operating system (os-release `PRETTY_NAME`).
    pub os: Reading<String>,
    /// Kernel release.
    pub kernel: Reading<String>,
    /// CPU frequency governor of cpu0.
    pub governor: Reading<String>,
    /// Maximum frequency of cpu0, MHz.
    pub cpu_max_mhz: Reading<f64>,
    /// Thermal state when detected.
    pub thermal: Reading<Thermal>,
    /// Target triple this binary was built for (reconstructed from `cfg`).
    pub target: String,
}

impl Host {
    /// Detects the running machine: `/proc`, `/sys` and `/etc` first, then
    /// `sysinfo` for the CPU model, core count, RAM, OS and kernel where the
    /// files gave nothing (e.g. on macOS).
    pub fn detect() -> Host {
        let mut host = Host::detect_from(&HostRoots::system());
        let needs_sysinfo =
            !host.cpu_model.is_read() || !host.logical_cores.is_read() || !host.ram_bytes.is_read();
        if needs_sysinfo {
            use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};
            let sys = System::new_with_specifics(
                RefreshKind::nothing()
                    .with_cpu(CpuRefreshKind::nothing())
                    .with_memory(MemoryRefreshKind::nothing().with_ram()),
            );
            if !host.cpu_model.is_read() {
                let brand = sys
                    .cpus()
                    .first()
                    .map(|c| c.brand().trim().to_string())
                    .unwrap_or_default();
                host.cpu_model = fallback(&host.cpu_model, (!brand.is_empty()).then_some(brand));
            }
            if !host.logical_cores.is_read() {
                let n = sys.cpus().len() as u32;
                host.logical_cores = fallback(&host.logical_cores, (n > 0).then_some(n));
            }
            if !host.ram_bytes.is_read() {
                let ram = sys.total_memory();
                host.ram_bytes = fallback(&host.ram_bytes, (ram > 0).then_some(ram));
            }
        }
        if !host.os.is_read() {
            host.os = fallback(&host.os, sysinfo::System::long_os_version());
        }
        if !host.kernel.is_read() {
            host.kernel = fallback(&host.kernel, sysinfo::System::kernel_version());
        }
        host
    }

    /// Reads a `proc`/`sys`/`etc` tree only (no `sysinfo`), so tests can use
    /// fake trees.
    pub fn detect_from(roots: &HostRoots) -> Host {
        let cpuinfo_path = roots.path("proc/cpuinfo");
        let (cpu_model, board, logical_cores) = match fs::read_to_string(&cpuinfo_path) {
            Ok(text) => {
                let info = CpuInfo::parse(&text);
                let board = info
                    .board
                    .clone()
                    .map(|b| Reading::read(b, &cpuinfo_path))
                    .unwrap_or_else(|| read_device_tree_model(roots, info.hardware.as_deref()));
                let cores = if info.processors > 0 {
                    Reading::read(info.processors, &cpuinfo_path)
                } else {
                    Reading::unreadable(&cpuinfo_path, "no `processor` entries")
                };
                let model = info
                    .model()
                    .map(|m| Reading::read(m, &cpuinfo_path))
                    .unwrap_or_else(|| {
                        Reading::unreadable(
                            &cpuinfo_path,
                            "no `model name`, `CPU part` or `Processor` line",
                        )
                    });
                (model, board, cores)
            }
            Err(e) => {
                let reason = e.to_string();
                (
                    Reading::unreadable(&cpuinfo_path, reason.clone()),
                    read_device_tree_model(roots, None),
                    Reading::unreadable(&cpuinfo_path, reason),
                )
            }
        };
        Host {
            cpu_model,
            board,
            logical_cores,
            ram_bytes: read_meminfo(roots),
            os: read_os_release(roots),
            kernel: read_trimmed(&roots.path("proc/sys/kernel/osrelease")),
            governor: read_governor(roots),
            cpu_max_mhz: read_max_mhz(roots),
            thermal: read_thermal(roots),
            target: running_target(),
        }
    }
}

/// Replaces an unreadable item by a `sysinfo` value, keeping the file's
/// reason when `sysinfo` has nothing either.
fn fallback<T: Clone>(prev: &Reading<T>, value: Option<T>) -> Reading<T> {
    match value {
        Some(v) => Reading::Read {
            value: v,
            source: "sysinfo".to_string(),
        },
        None => match prev {
            Reading::Read { .. } => prev.clone(),
            Reading::Unreadable { path, reason } => Reading::Unreadable {
                path: path.clone(),
                reason: format!("{reason}; sysinfo has no value either"),
            },
        },
    }
}

/// A trimmed, non-empty one-line file.
fn read_trimmed(path: &Path) -> Reading<String> {
    match fs::read_to_string(path) {
        Ok(s) => {
            let s = s.trim_matches(|c: char| c.is_whitespace() || c == '\0');
            if s.is_empty() {
                Reading::unreadable(path, "file is empty")
            } else {
                Reading::read(s.to_string(), path)
            }
        }
        Err(e) => Reading::unreadable(path, e.to_string()),
    }
}

/// CPU frequency governor of cpu0 (`scaling_governor`).
pub fn read_governor(roots: &HostRoots) -> Reading<String> {
    read_trimmed(&roots.path("sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"))
}

fn read_max_mhz(roots: &HostRoots) -> Reading<f64> {
    let path = roots.path("sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq");
    match read_trimmed(&path) {
        Reading::Read { value, .. } => match value.parse::<u64>() {
            Ok(khz) if khz > 0 => Reading::read(khz as f64 / 1000.0, &path),
            _ => Reading::unreadable(&path, format!("`{value}` is not a frequency in kHz")),
        },
        Reading::Unreadable { path, reason } => Reading::Unreadable { path, reason },
    }
}

fn read_meminfo(roots: &HostRoots) -> Reading<u64> {
    let path = roots.path("proc/meminfo");
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => return Reading::unreadable(&path, e.to_string()),
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("MemTotal:") {
            let mut parts = rest.split_whitespace();
            let number = parts.next().and_then(|n| n.parse::<u64>().ok());
            return match (number, parts.next()) {
                // The kernel's "kB" is KiB.
                (Some(kib), Some("kB")) if kib > 0 => {
                    Reading::read(kib.saturating_mul(1024), &path)
                }
                _ => Reading::unreadable(&path, format!("cannot parse `{}`", line.trim())),
            };
        }
    }
    Reading::unreadable(&path, "no `MemTotal` line")
}

fn read_os_release(roots: &HostRoots) -> Reading<String> {
    let mut reasons = Vec::new();
    for rel in ["etc/os-release", "usr/lib/os-release"] {
        let path = roots.path(rel);
        match fs::read_to_string(&path) {
            Ok(text) => {
                let value = |key: &str| {
                    text.lines().find_map(|l| {
                        l.strip_prefix(key)
                            .and_then(|v| v.strip_prefix('='))
                            .map(|v| v.trim().trim_matches('"').trim_matches('\'').to_string())
                            .filter(|v| !v.is_empty())
                    })
                };
                match value("PRETTY_NAME").or_else(|| value("NAME")) {
                    Some(name) => return Reading::read(name, &path),
                    None => reasons.push(format!("{}: no PRETTY_NAME or NAME", path.display())),
                }
            }
            Err(e) => reasons.push(format!("{}: {e}", path.display())),
        }
    }
    Reading::Unreadable {
        path: Some(roots.path("etc/os-release")),
        reason: reasons.join("; "),
    }
}

fn read_device_tree_model(roots: &HostRoots, hardware: Option<&str>) -> Reading<String> {
    let path = roots.path("sys/firmware/devicetree/base/model");
    match read_trimmed(&path) {
        r @ Reading::Read { .. } => r,
        Reading::Unreadable { reason, .. } => match hardware {
            Some(hw) => Reading::Read {
                value: hw.to_string(),
                source: format!("{} (Hardware line)", roots.path("proc/cpuinfo").display()),
            },
            None => Reading::unreadable(
                &path,
                format!("{reason}; no `Model` or `Hardware` line in cpuinfo"),
            ),
        },
    }
}

/// Highest temperature over `sys/class/thermal/thermal_zone*/temp`
/// (millidegrees Celsius). Zones that fail to read or report an implausible
/// value (outside -40..=150 degrees C) are skipped and listed.
pub fn read_thermal(roots: &HostRoots) -> Reading<Thermal> {
    let dir = roots.path("sys/class/thermal");
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) => return Reading::unreadable(&dir, e.to_string()),
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("thermal_zone"))
        .collect();
    names.sort_by_key(|n| {
        (
            n["thermal_zone".len()..].parse::<u64>().unwrap_or(u64::MAX),
            n.clone(),
        )
    });
    let mut zones = Vec::new();
    let mut skipped = Vec::new();
    for name in names {
        let temp_path = dir.join(&name).join("temp");
        let kind = read_trimmed(&dir.join(&name).join("type")).value().cloned();
        match read_trimmed(&temp_path) {
            Reading::Read { value, .. } => match value.parse::<i64>() {
                Ok(milli) if (-40_000..=150_000).contains(&milli) => zones.push(ZoneTemperature {
                    zone: name,
                    kind,
                    celsius: milli as f64 / 1000.0,
                }),
                Ok(milli) => skipped.push(format!("{name}: implausible {milli} millidegrees")),
                Err(_) => skipped.push(format!("{name}: `{value}` is not millidegrees")),
            },
            unreadable => skipped.push(format!("{name}: {}", unreadable.reason())),
        }
    }
    let max = zones
        .iter()
        .map(|z| z.celsius)
        .fold(f64::NEG_INFINITY, f64::max);
    if zones.is_empty() {
        let reason = if skipped.is_empty() {
            "no thermal_zone* directory".to_string()
        } else {
            format!("no readable zone: {}", skipped.join("; "))
        };
        return Reading::unreadable(&dir, reason);
    }
    Reading::read(
        Thermal {
            max_celsius: max,
            zones,
            skipped,
        },
        &dir,
    )
}

/// What `/proc/cpuinfo` says about the CPU.
#[derive(Debug, Default)]
struct CpuInfo {
    processors: u32,
    model_name: Option<String>,
    /// Old 32-bit ARM kernels: `Processor : ARMv7 Processor rev 4 (v7l)`.
    legacy_processor: Option<String>,
    /// (implementer, part) per processor, aarch64 style.
    parts: Vec<(Option<u32>, u32)>,
    hardware: Option<String>,
    board: Option<String>,
}

fn parse_hex(s: &str) -> Option<u32> {
    let s = s.trim();
    let digits = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"))?;
    u32::from_str_radix(digits, 16).ok()
}

impl CpuInfo {
    fn parse(text: &str) -> CpuInfo {
        let mut info = CpuInfo::default();
        let mut implementer = None;
        for line in text.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let (key, value) = (key.trim(), value.trim());
            match key {
                "processor" if value.parse::<u32>().is_ok() => {
                    info.processors += 1;
                    implementer = None;
                }
                "Processor" if !value.is_empty() => {
                    info.legacy_processor
                        .get_or_insert_with(|| value.to_string());
                }
                "model name" if !value.is_empty() => {
                    info.model_name.get_or_insert_with(|| value.to_string());
                }
                "CPU implementer" => implementer = parse_hex(value),
                "CPU part" => {
                    if let Some(part) = parse_hex(value) {
                        info.parts.push((implementer, part));
                    }
                }
                "Hardware" if !value.is_empty() => info.hardware = Some(value.to_string()),
                "Model" if !value.is_empty() => info.board = Some(value.to_string()),
                _ => {}
            }
        }
        info
    }

    /// Decoded cores (`4x Cortex-A72`) when every part is known, else the
    /// `model name`, else raw part ids, else the legacy `Processor` line.
    fn model(&self) -> Option<String> {
        let mut groups: Vec<(String, bool, u32)> = Vec::new();
        for (imp, part) in &self.parts {
            let (name, known) = arm_part_name(*imp, *part);
            match groups.iter_mut().find(|g| g.0 == name) {
                Some(g) => g.2 += 1,
                None => groups.push((name, known, 1)),
            }
        }
        let describe = || {
            groups
                .iter()
                .map(|(n, _, c)| format!("{c}x {n}"))
                .collect::<Vec<_>>()
                .join(" + ")
        };
        if !groups.is_empty() && groups.iter().all(|g| g.1) {
            return Some(describe());
        }
        if let Some(m) = &self.model_name {
            return Some(m.clone());
        }
        if !groups.is_empty() {
            return Some(describe());
        }
        self.legacy_processor.clone()
    }
}

/// Name of an Arm CPU from its MIDR implementer and part number (values from
/// the Arm technical reference manuals, as listed in Linux's
/// `arch/arm64/include/asm/cputype.h`). The bool says whether it was known.
fn arm_part_name(implementer: Option<u32>, part: u32) -> (String, bool) {
    if implementer.is_none_or(|i| i == 0x41) {
        let name = match part {
            0xd03 => Some("Cortex-A53"),
            0xd04 => Some("Cortex-A35"),
            0xd05 => Some("Cortex-A55"),
            0xd07 => Some("Cortex-A57"),
            0xd08 => Some("Cortex-A72"),
            0xd09 => Some("Cortex-A73"),
            0xd0a => Some("Cortex-A75"),
            0xd0b => Some("Cortex-A76"),
            0xd0c => Some("Neoverse-N1"),
            0xd0d => Some("Cortex-A77"),
            0xd40 => Some("Neoverse-V1"),
            0xd41 => Some("Cortex-A78"),
            0xd44 => Some("Cortex-X1"),
            0xd46 => Some("Cortex-A510"),
            0xd47 => Some("Cortex-A710"),
            0xd48 => Some("Cortex-X2"),
            0xd49 => Some("Neoverse-N2"),
            0xd4f => Some("Neoverse-V2"),
            _ => None,
        };
        if let Some(n) = name {
            return (n.to_string(), true);
        }
    }
    let imp = implementer
        .map(|i| format!("implementer 0x{i:02x} "))
        .unwrap_or_default();
    (format!("Arm CPU ({imp}part 0x{part:03x})"), false)
}

/// The target triple of this binary, rebuilt from `cfg` values
/// (e.g. `x86_64-unknown-linux-gnu`, `aarch64-linux-android`).
pub fn running_target() -> String {
    let arch = std::env::consts::ARCH;
    let os = std::env::consts::OS;
    match os {
        "android" => return format!("{arch}-linux-android"),
        "macos" => return format!("{arch}-apple-darwin"),
        "ios" => return format!("{arch}-apple-ios"),
        _ => {}
    }
    let vendor = if cfg!(target_vendor = "pc") {
        "pc"
    } else {
        "unknown"
    };
    let env = if cfg!(target_env = "gnu") {
        "-gnu"
    } else if cfg!(target_env = "musl") {
        "-musl"
    } else if cfg!(target_env = "msvc") {
        "-msvc"
    } else {
        ""
    };
    let abi = if cfg!(target_abi = "eabihf") {
        "eabihf"
    } else if cfg!(target_abi = "eabi") {
        "eabi"
    } else {
        ""
    };
    format!("{arch}-{vendor}-{os}{env}{abi}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
id = "dev"
name = "Dev"
[cpu]
unknown = "n/a"
[cores]
value = 2
source = "s"
[ram]
value = 512
unit = "MiB"
source = "s"
[memory_bandwidth]
value = 1
unit = "GB/s"
source = "s"
[power_envelope]
unknown = "n/a"
[[compute]]
kind = "cpu"
name = "c"
[compute.peak]
value = 2
unit = "GFLOP/s"
source = "s"
"#;

    fn parse_text(text: &str) -> Result<DeviceProfile, ProfileError> {
        parse(Path::new("devices/dev.toml"), text)
    }

    #[test]
    fn minimal_profile_parses_with_units() {
        let p = parse_text(MINIMAL).unwrap();
        assert_eq!(p.ram_bytes.get(), Some(512 * 1024 * 1024));
        assert_eq!(p.memory_bandwidth_bytes_per_s.get(), Some(1e9));
        assert_eq!(p.compute[0].peak_flops.get(), Some(2e9));
        assert_eq!(p.cores.get(), Some(2));
        assert!(matches!(p.cpu, Spec::Unknown { .. }));
        assert_eq!(p.arch, None);
        assert!(matches!(p.memory_type, Spec::Unknown { .. }));
    }

    #[test]
    fn bad_values_name_the_field() {
        let cases = [
            (
                MINIMAL.replace("value = 1\n", "value = 0\n"),
                "memory_bandwidth.value",
            ),
            (
                MINIMAL.replace("value = 1\n", "value = -3.5\n"),
                "memory_bandwidth.value",
            ),
            (
                MINIMAL.replace("unit = \"GB/s\"", "unit = \"Gb/s\""),
                "memory_bandwidth.unit",
            ),
            (MINIMAL.replace("unit = \"MiB\"\n", ""), "ram.unit"),
            (
                MINIMAL.replace("kind = \"cpu\"", "kind = \"tpu\""),
                "compute[0].kind",
            ),
            (
                MINIMAL.replace("value = 2\nsource", "value = 2.5\nsource"),
                "cores.value",
            ),
            (MINIMAL.replace("id = \"dev\"", "id = \"other\""), "id"),
        ];
        for (text, field) in cases {
            let err = parse_text(&text).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(field), "{field}: {msg}");
            assert!(msg.contains("devices/dev.toml"), "{msg}");
        }
    }

    #[test]
    fn derived_needs_derivation_and_required_cannot_be_unknown() {
        let text = MINIMAL.replace("unit = \"GB/s\"", "unit = \"GB/s\"\nderived = true");
        let err = parse_text(&text).unwrap_err();
        assert!(
            matches!(err, ProfileError::MissingField { ref field, .. } if field == "memory_bandwidth.derivation")
        );
        let text = MINIMAL.replace(
            "[ram]\nvalue = 512\nunit = \"MiB\"\nsource = \"s\"",
            "[ram]\nunknown = \"x\"",
        );
        let err = parse_text(&text).unwrap_err();
        assert!(err.to_string().contains("ram.unknown"), "{err}");
    }

    #[test]
    fn cpuinfo_aarch64_big_little_is_decoded() {
        let mut text = String::new();
        for (i, part) in ["0xd05", "0xd05", "0xd0b", "0xd44"].iter().enumerate() {
            text.push_str(&format!(
                "processor\t: {i}\nBogoMIPS\t: 49.15\nCPU implementer\t: 0x41\nCPU part\t: {part}\n\n"
            ));
        }
        let info = CpuInfo::parse(&text);
        assert_eq!(info.processors, 4);
        assert_eq!(
            info.model().as_deref(),
            Some("2x Cortex-A55 + 1x Cortex-A76 + 1x Cortex-X1")
        );
        let info = CpuInfo::parse("processor : 0\nCPU implementer : 0x51\nCPU part : 0x804\n");
        assert_eq!(
            info.model().as_deref(),
            Some("1x Arm CPU (implementer 0x51 part 0x804)")
        );
        let info = CpuInfo::parse("Processor : ARMv7 Processor rev 4 (v7l)\nprocessor : 0\n");
        assert_eq!(info.model().as_deref(), Some("ARMv7 Processor rev 4 (v7l)"));
        assert_eq!(CpuInfo::parse("garbage\n\n:::").model(), None);
    }

    #[test]
    fn projection_bounds() {
        let p = parse_text(MINIMAL).unwrap();
        // 2 GFLOP/s, 1 GB/s: 4e6 FLOPs -> 2 ms; 1e6 + 5e5 bytes -> 1.5 ms.
        let w = Workload {
            flops_per_token: 4e6,
            weight_bytes_per_token: 1e6,
            other_bytes_per_token: 5e5,
        };
        let pr = project(&p, &w).unwrap();
        assert!((pr.compute_bound_ms.unwrap() - 2.0).abs() < 1e-12);
        assert!((pr.memory_bound_ms.unwrap() - 1.5).abs() < 1e-12);
        assert_eq!(pr.bound, Some(Bound::Compute));
        assert!((pr.tokens_per_s_upper_bound().unwrap() - 500.0).abs() < 1e-9);
        let bad = Workload {
            flops_per_token: f64::NAN,
            ..w
        };
        assert!(project(&p, &bad).is_err());
        assert!(project_on(&p, ComputeKind::Npu, &w)
            .unwrap()
            .compute_bound_ms
            .is_none());
    }

    #[test]
    fn running_target_has_arch_and_os() {
        let t = running_target();
        assert!(t.starts_with(std::env::consts::ARCH), "{t}");
        assert!(t.contains(std::env::consts::OS), "{t}");
    }
}
