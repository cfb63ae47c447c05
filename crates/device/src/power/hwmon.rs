//! The Linux hwmon source: one power or energy channel of a hardware-monitor chip.

use super::sysfs::{list_dir, read_text, read_u64, Counter, SYSFS_HINT};
use super::{Method, PowerError, PowerSource, Reading};
use std::path::{Path, PathBuf};

/// Which hwmon attribute a [`Hwmon`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum HwmonAttr {
    /// `energyN_input`, cumulative µJ.
    Energy,
    /// `powerN_input`, instantaneous µW.
    PowerInput,
    /// `powerN_average`, averaged µW.
    PowerAverage,
}

/// Linux hwmon power or energy sensor.
///
/// Within one chip the channel is chosen as: a channel whose `label` says package, socket,
/// total or system first; then energy counters before `power*_input` before `power*_average`;
/// then the lowest channel number. One channel is read (chips that expose several rails or
/// per-core counters would double-count if summed).
#[derive(Debug)]
pub struct Hwmon {
    name: String,
    path: PathBuf,
    attr: HwmonAttr,
    counter: Option<Counter>,
    total_uj: u128,
}

impl Hwmon {
    /// Default hwmon root.
    pub const DEFAULT_ROOT: &'static str = "/sys/class/hwmon";

    /// The first `hwmon*` under `root` with a power or energy file.
    pub fn discover(root: &Path) -> Result<Hwmon, PowerError> {
        Self::find(root, None)
    }

    /// The first `hwmon*` under `root` whose `name` file is `chip`.
    pub fn discover_named(root: &Path, chip: &str) -> Result<Hwmon, PowerError> {
        Self::find(root, Some(chip))
    }

    fn find(root: &Path, chip: Option<&str>) -> Result<Hwmon, PowerError> {
        if !root.is_dir() {
            return Err(PowerError::NotFound(format!(
                "{}: no such directory (no hwmon drivers loaded)",
                root.display()
            )));
        }
        let mut seen = Vec::new();
        for (file, dir) in list_dir(root, SYSFS_HINT)? {
            if !file.starts_with("hwmon") {
                continue;
            }
            let name = read_text(&dir.join("name"), SYSFS_HINT).unwrap_or_default();
            if chip.is_some_and(|c| c != name) {
                seen.push(format!("{file} ({name})"));
                continue;
            }
            match Self::open_chip(&dir, &file, &name) {
                Ok(Some(h)) => return Ok(h),
                Ok(None) => seen.push(format!("{file} ({name}): no power*/energy* file")),
                Err(e) => seen.push(format!("{file} ({name}): {e}")),
            }
        }
        let what = match chip {
            Some(c) => format!("no hwmon chip named {c:?}"),
            None => "no hwmon chip with a power*_input, power*_average or energy*_input file"
                .to_string(),
        };
        Err(PowerError::NotFound(format!(
            "{}: {what}{}",
            root.display(),
            if seen.is_empty() {
                String::new()
            } else {
                format!("; found {}", seen.join(", "))
            }
        )))
    }

    fn open_chip(dir: &Path, file: &str, name: &str) -> Result<Option<Hwmon>, PowerError> {
        // attributes live in the hwmon directory, or in device/ on old kernels
        let mut candidates = Vec::new();
        for d in [dir.to_path_buf(), dir.join("device")] {
            let Ok(entries) = list_dir(&d, SYSFS_HINT) else {
                continue;
            };
            for (f, p) in entries {
                let parsed = [
                    ("energy", "_input", HwmonAttr::Energy),
                    ("power", "_input", HwmonAttr::PowerInput),
                    ("power", "_average", HwmonAttr::PowerAverage),
                ]
                .into_iter()
                .find_map(|(pre, suf, attr)| {
                    let n = f.strip_prefix(pre)?.strip_suffix(suf)?;
                    let n: u32 = n.parse().ok()?;
                    Some((attr, n))
                });
                if let Some((attr, n)) = parsed {
                    let prefix = if attr == HwmonAttr::Energy {
                        "energy"
                    } else {
                        "power"
                    };
                    let label = std::fs::read_to_string(d.join(format!("{prefix}{n}_label")))
                        .map(|s| s.trim().to_string())
                        .unwrap_or_default();
                    let l = label.to_ascii_lowercase();
                    let preferred = ["package", "socket", "total", "sys"]
                        .iter()
                        .any(|k| l.contains(k));
                    candidates.push((!preferred, attr, n, p, label));
                }
            }
            if !candidates.is_empty() {
                break;
            }
        }
        candidates.sort_by_key(|a| (a.0, a.1, a.2));
        let Some((_, attr, _, path, label)) = candidates.into_iter().next() else {
            return Ok(None);
        };
        let channel = path
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or_default()
            .to_string();
        let label = if label.is_empty() {
            String::new()
        } else {
            format!(" {label:?}")
        };
        let mut hw = Hwmon {
            name: format!("hwmon:{name}/{channel}{label} ({file})"),
            counter: None,
            path,
            attr,
            total_uj: 0,
        };
        if attr == HwmonAttr::Energy {
            hw.counter = Some(Counter::open(hw.path.clone(), None, SYSFS_HINT)?);
        } else {
            hw.read()?;
        }
        Ok(Some(hw))
    }

    /// The file read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The attribute kind read.
    pub fn attr(&self) -> HwmonAttr {
        self.attr
    }
}

impl PowerSource for Hwmon {
    fn name(&self) -> &str {
        &self.name
    }
    fn method(&self) -> Method {
        Method::Hwmon
    }
    fn read(&mut self) -> Result<Reading, PowerError> {
        if let Some(counter) = &mut self.counter {
            self.total_uj += u128::from(counter.advance(SYSFS_HINT)?);
            return Ok(Reading::Energy {
                joules: self.total_uj as f64 / 1e6,
            });
        }
        let uw = read_u64(&self.path, "a power in µW", SYSFS_HINT)?;
        Ok(Reading::Power {
            watts: uw as f64 / 1e6,
        })
    }
}
