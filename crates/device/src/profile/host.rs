//! Host detection: what the running machine is, read from `/proc`, `/sys` and `/etc` with a
//! `sysinfo` fallback.

use super::cpuinfo::CpuInfo;
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};

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

    #[test]
    fn running_target_has_arch_and_os() {
        let t = running_target();
        assert!(t.starts_with(std::env::consts::ARCH), "{t}");
        assert!(t.contains(std::env::consts::OS), "{t}");
    }
}
