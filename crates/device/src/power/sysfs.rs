//! Reading Linux sysfs files (one integer, or a sorted directory) and unwrapping µJ energy
//! counters, shared by the sysfs power sources.

use super::PowerError;
use std::path::{Path, PathBuf};

/// Advice for unreadable sysfs files.
pub(super) const SYSFS_HINT: &str = "run as a user that can read it, or `sudo chmod o+r` the file";

pub(super) fn read_text(path: &Path, hint: &str) -> Result<String, PowerError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| PowerError::io(path, e, hint))
}

pub(super) fn read_u64(path: &Path, expected: &'static str, hint: &str) -> Result<u64, PowerError> {
    let text = read_text(path, hint)?;
    text.parse().map_err(|_| PowerError::BadValue {
        path: path.to_path_buf(),
        expected,
        found: text,
    })
}

pub(super) fn read_i64(path: &Path, expected: &'static str, hint: &str) -> Result<i64, PowerError> {
    let text = read_text(path, hint)?;
    text.parse().map_err(|_| PowerError::BadValue {
        path: path.to_path_buf(),
        expected,
        found: text,
    })
}

/// Entries of a directory as (file name, path), sorted with numeric suffixes in numeric order.
pub(super) fn list_dir(dir: &Path, hint: &str) -> Result<Vec<(String, PathBuf)>, PowerError> {
    let rd = std::fs::read_dir(dir).map_err(|e| PowerError::io(dir, e, hint))?;
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| PowerError::io(dir, e, hint))?;
        if let Some(name) = entry.file_name().to_str() {
            out.push((name.to_string(), entry.path()));
        }
    }
    out.sort_by_key(|a| natural_key(&a.0));
    Ok(out)
}

fn natural_key(name: &str) -> (String, u64) {
    let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (stem, num) = name.split_at(name.len() - digits);
    (stem.to_string(), num.parse().unwrap_or(0))
}

/// Difference between two readings of a counter that wraps to 0 after `max` (its
/// `max_energy_range_uj`). `None` if the counter went backwards and `max` cannot explain it.
pub fn counter_delta(before: u64, after: u64, max: u64) -> Option<u64> {
    if after >= before {
        Some(after - before)
    } else if before <= max {
        // wrapped: from `before` up to `max`, then from 0 up to `after`
        Some(max - before + after)
    } else {
        None
    }
}

/// A raw µJ counter unwrapped into a running total.
#[derive(Debug, Clone)]
pub(super) struct Counter {
    path: PathBuf,
    /// Wrap range, `None` if unknown (hwmon).
    max_uj: Option<u64>,
    last_uj: u64,
}

impl Counter {
    /// Takes the first reading of the counter at `path`, which wraps after `max_uj` (`None`:
    /// range unknown), so an unreadable counter fails here.
    pub(super) fn open(
        path: PathBuf,
        max_uj: Option<u64>,
        hint: &str,
    ) -> Result<Counter, PowerError> {
        let last_uj = read_u64(&path, "an energy counter in µJ", hint)?;
        Ok(Counter {
            path,
            max_uj,
            last_uj,
        })
    }

    /// Reads the counter and returns the µJ since the last read.
    pub(super) fn advance(&mut self, hint: &str) -> Result<u64, PowerError> {
        let now = read_u64(&self.path, "an energy counter in µJ", hint)?;
        let delta = counter_delta(self.last_uj, now, self.max_uj.unwrap_or(0)).ok_or(
            PowerError::CounterBackwards {
                path: self.path.clone(),
                before: self.last_uj,
                after: now,
            },
        )?;
        self.last_uj = now;
        Ok(delta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_wraps_at_its_range() {
        let max = 262_143_328_850;
        assert_eq!(counter_delta(100, 250, max), Some(150));
        assert_eq!(
            counter_delta(max - 1_000_000, 500_000, max),
            Some(1_500_000)
        );
        // unknown range (hwmon): a decrease is an error
        assert_eq!(counter_delta(10, 5, 0), None);
    }
}
