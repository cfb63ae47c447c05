//! Picking the first usable power source on the running machine.

use super::{Battery, Hwmon, PowerSource, Powermetrics, Rapl};
use serde::Serialize;
use std::path::Path;
use std::time::Duration;
use thiserror::Error;

/// Why no power source is usable: one reason per backend tried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Error)]
#[error("no usable power source: {}", .reasons.join("; "))]
pub struct Unavailable {
    /// `backend: reason` for each backend tried.
    pub reasons: Vec<String>,
}

/// The first usable source under `sysfs_root` (normally `/sys`): RAPL (`class/powercap`), then
/// hwmon (`class/hwmon`), then a discharging battery (`class/power_supply`); on macOS then
/// `powermetrics`. Each candidate is read once, so an unreadable file is a reason, not a later
/// failure.
pub fn detect(sysfs_root: &Path) -> Result<Box<dyn PowerSource>, Unavailable> {
    let class = sysfs_root.join("class");
    let mut reasons = Vec::new();
    match Rapl::discover(&class.join("powercap")) {
        Ok(s) => return Ok(Box::new(s)),
        Err(e) => reasons.push(format!("powercap: {e}")),
    }
    match Hwmon::discover(&class.join("hwmon")) {
        Ok(s) => return Ok(Box::new(s)),
        Err(e) => reasons.push(format!("hwmon: {e}")),
    }
    match Battery::discover(&class.join("power_supply")) {
        Ok(s) => return Ok(Box::new(s)),
        Err(e) => reasons.push(format!("battery: {e}")),
    }
    if cfg!(target_os = "macos") {
        match Powermetrics::spawn(Duration::from_millis(100)) {
            Ok(s) => return Ok(Box::new(s)),
            Err(e) => reasons.push(e.to_string()),
        }
    }
    Err(Unavailable { reasons })
}
