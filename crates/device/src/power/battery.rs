//! The Linux/Android battery source: the system's draw read from a discharging battery.

use super::sysfs::{list_dir, read_i64, read_text, SYSFS_HINT};
use super::{Method, PowerError, PowerSource, Reading};
use std::path::{Path, PathBuf};

/// Linux/Android battery (`/sys/class/power_supply/*` with `type` = `Battery`), read as the
/// system's draw while discharging.
///
/// Uses `power_now` (µW) when present, else `current_now` (µA) × `voltage_now` (µV). The sign of
/// `power_now`/`current_now` differs between drivers (the ABI says negative while discharging;
/// ACPI laptops and many phones report a positive discharge current), so the magnitude is used,
/// and the direction is taken from `status`: every read fails unless `status` is `Discharging`
/// (a reading while charging measures the charger, not the system). A battery without a
/// `status` file is trusted. Some Android kernels report `current_now` in mA instead of µA;
/// such a battery reads 1000 times too low.
#[derive(Debug)]
pub struct Battery {
    name: String,
    dir: PathBuf,
    use_power_now: bool,
}

impl Battery {
    /// Default power_supply root.
    pub const DEFAULT_ROOT: &'static str = "/sys/class/power_supply";

    /// The first battery under `root` (normally [`Battery::DEFAULT_ROOT`]) that can be read now;
    /// fails if it is not discharging.
    pub fn discover(root: &Path) -> Result<Battery, PowerError> {
        if !root.is_dir() {
            return Err(PowerError::NotFound(format!(
                "{}: no such directory (no power_supply class)",
                root.display()
            )));
        }
        let mut seen = Vec::new();
        let mut first_err = None;
        for (file, dir) in list_dir(root, SYSFS_HINT)? {
            let kind = read_text(&dir.join("type"), SYSFS_HINT).unwrap_or_default();
            if kind != "Battery" {
                seen.push(format!("{file} ({kind})"));
                continue;
            }
            let mut bat = Battery {
                name: format!("battery:{file}"),
                use_power_now: dir.join("power_now").exists(),
                dir,
            };
            match bat.read() {
                Ok(_) => return Ok(bat),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        Err(PowerError::NotFound(format!(
            "{}: no supply of type Battery{}",
            root.display(),
            if seen.is_empty() {
                String::new()
            } else {
                format!("; found {}", seen.join(", "))
            }
        )))
    }

    /// The battery's `status` (`Discharging`, `Charging`, `Full`, `Not charging`, ...), if it
    /// has one.
    pub fn status(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.join("status"))
            .ok()
            .map(|s| s.trim().to_string())
    }
}

impl PowerSource for Battery {
    fn name(&self) -> &str {
        &self.name
    }
    fn method(&self) -> Method {
        Method::Battery
    }
    fn read(&mut self) -> Result<Reading, PowerError> {
        let status_path = self.dir.join("status");
        if status_path.exists() {
            let status = read_text(&status_path, SYSFS_HINT)?;
            if status != "Discharging" {
                return Err(PowerError::NotDischarging {
                    path: status_path,
                    status,
                });
            }
        }
        let watts = if self.use_power_now {
            let uw = read_i64(&self.dir.join("power_now"), "a power in µW", SYSFS_HINT)?;
            uw.unsigned_abs() as f64 / 1e6
        } else {
            let ua = read_i64(&self.dir.join("current_now"), "a current in µA", SYSFS_HINT)?;
            let uv = read_i64(&self.dir.join("voltage_now"), "a voltage in µV", SYSFS_HINT)?;
            (ua.unsigned_abs() as f64 / 1e6) * (uv.unsigned_abs() as f64 / 1e6)
        };
        Ok(Reading::Power { watts })
    }
}
