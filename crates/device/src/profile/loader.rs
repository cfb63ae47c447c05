//! Reading and validating `devices/<id>.toml` profiles.

use super::schema::{ComputeKind, ComputeUnit, DeviceProfile, HostMeasurements, Spec};
use super::{Host, HOST_ID, PAPER_DEVICE_IDS, SCHEMA_VERSION};
use serde::Deserialize;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

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

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::profile) const MINIMAL: &str = r#"
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

    pub(in crate::profile) fn parse_text(text: &str) -> Result<DeviceProfile, ProfileError> {
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
}
