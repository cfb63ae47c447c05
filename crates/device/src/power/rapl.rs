//! The Linux powercap / Intel RAPL source: package-domain `energy_uj` counters.

use super::sysfs::{list_dir, read_text, read_u64, Counter, SYSFS_HINT};
use super::{Method, PowerError, PowerSource, Reading};
use std::path::Path;

/// Advice for an unreadable RAPL counter.
const RAPL_HINT: &str =
    "RAPL needs root since CVE-2020-8694; run with sudo or `sudo chmod o+r` the energy_uj files";

/// Linux powercap / Intel RAPL: the sum of the package domains' `energy_uj` counters.
///
/// Only top-level `intel-rapl:N` zones named `package-N` are used: subzones (`intel-rapl:N:M`:
/// core, uncore, dram) are inside a package or overlap it, `psys` covers the whole platform
/// including the packages, and `intel-rapl-mmio:N` duplicates package N, so each would
/// double-count. Wrap-around at `max_energy_range_uj` is unwrapped per package; the meter polls
/// often enough (the range is minutes to hours at package power) to see every wrap.
#[derive(Debug)]
pub struct Rapl {
    name: String,
    domains: Vec<(String, Counter)>,
    total_uj: u128,
}

impl Rapl {
    /// Default powercap root.
    pub const DEFAULT_ROOT: &'static str = "/sys/class/powercap";

    /// Finds the package domains under `root` (normally [`Rapl::DEFAULT_ROOT`]) and reads each
    /// counter once, so an unreadable counter fails here.
    pub fn discover(root: &Path) -> Result<Rapl, PowerError> {
        if !root.is_dir() {
            return Err(PowerError::NotFound(format!(
                "{}: no such directory (no powercap support: the kernel needs the intel_rapl_common module, on an Intel or AMD x86 CPU)",
                root.display()
            )));
        }
        let mut domains = Vec::new();
        let mut skipped = Vec::new();
        for (file, dir) in list_dir(root, SYSFS_HINT)? {
            let Some(index) = file.strip_prefix("intel-rapl:") else {
                continue;
            };
            if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
                skipped.push(file); // subzone intel-rapl:N:M
                continue;
            }
            let name = read_text(&dir.join("name"), SYSFS_HINT)?;
            if !name.starts_with("package-") {
                skipped.push(format!("{file} ({name})"));
                continue;
            }
            let energy = dir.join("energy_uj");
            let max = read_u64(
                &dir.join("max_energy_range_uj"),
                "the counter range in µJ",
                RAPL_HINT,
            )?;
            domains.push((name, Counter::open(energy, Some(max), RAPL_HINT)?));
        }
        if domains.is_empty() {
            return Err(PowerError::NotFound(format!(
                "{}: no RAPL package domain (intel-rapl:N with name package-N){}",
                root.display(),
                if skipped.is_empty() {
                    String::new()
                } else {
                    format!("; skipped {}", skipped.join(", "))
                }
            )));
        }
        let labels: Vec<&str> = domains.iter().map(|(n, _)| n.as_str()).collect();
        Ok(Rapl {
            name: format!("rapl:{}", labels.join("+")),
            domains,
            total_uj: 0,
        })
    }

    /// The `name` of each package domain summed, e.g. `["package-0", "package-1"]`.
    pub fn domains(&self) -> Vec<&str> {
        self.domains.iter().map(|(n, _)| n.as_str()).collect()
    }
}

impl PowerSource for Rapl {
    fn name(&self) -> &str {
        &self.name
    }
    fn method(&self) -> Method {
        Method::Rapl
    }
    fn read(&mut self) -> Result<Reading, PowerError> {
        for (_, counter) in &mut self.domains {
            self.total_uj += u128::from(counter.advance(RAPL_HINT)?);
        }
        Ok(Reading::Energy {
            joules: self.total_uj as f64 / 1e6,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    #[test]
    fn permission_hint_only_for_permission_errors() {
        let denied = PowerError::io(
            Path::new("/sys/class/powercap/intel-rapl:0/energy_uj"),
            io::Error::from(io::ErrorKind::PermissionDenied),
            RAPL_HINT,
        );
        assert!(denied.to_string().contains("CVE-2020-8694"), "{denied}");
        let missing = PowerError::io(
            Path::new("/x"),
            io::Error::from(io::ErrorKind::NotFound),
            RAPL_HINT,
        );
        assert!(!missing.to_string().contains("CVE"), "{missing}");
    }
}
