//! `perf.json`: optional performance measurements stored in a run directory
//! (latency, memory and power measured on the host, plus roofline
//! projections for the paper's devices, labelled estimated).
//!
//! The reader is tolerant: every field is optional and unknown fields are
//! ignored, so a perf run can add fields without breaking `edgebench paper`.
//! The layout is documented in `reports/paper/README.md`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// File name inside a run directory.
pub const PERF_FILE: &str = "perf.json";

/// Why a `perf.json` could not be read.
#[derive(Debug, Error)]
pub enum PerfError {
    /// The file exists but could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not JSON of the expected shape.
    #[error("{}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
}

/// Latency quantiles in milliseconds per token.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Quantiles {
    /// Median.
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
    /// Mean.
    pub mean: Option<f64>,
}

/// Measurements of one domain's suites (Table 1's in- vs out-of-domain rows).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DomainPerf {
    /// Latency per token on the host.
    pub latency_ms_per_token: Option<Quantiles>,
    /// Mean power on the host, watts.
    pub power_w: Option<f64>,
}

/// A projection of the model's cost onto one of the paper's devices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Projection {
    /// Device id as in `devices/` (`raspberry-pi-4`, `pixel-6`, `iphone-13`, `custom-npu`).
    pub device: String,
    /// Projected latency per token, milliseconds.
    #[serde(default)]
    pub ms_per_token: Option<f64>,
    /// Projected power, watts.
    #[serde(default)]
    pub power_w: Option<f64>,
    /// Whether this is an estimate rather than a measurement on the device
    /// (true unless the file says otherwise).
    #[serde(default = "yes")]
    pub estimated: bool,
}

fn yes() -> bool {
    true
}

/// The contents of `perf.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Perf {
    /// The model the measurements belong to (a name, or `edgebench perf`'s model info object).
    pub model: Option<serde_json::Value>,
    /// Host description (text or `edgebench perf`'s provenance object).
    pub host: Option<serde_json::Value>,
    /// Latency per token on the host.
    pub latency_ms_per_token: Option<Quantiles>,
    /// Peak resident set size on the host, bytes.
    pub peak_rss_bytes: Option<u64>,
    /// Mean power on the host, watts; `null` when it could not be measured.
    pub power_w: Option<f64>,
    /// Why `power_w` is `null`.
    pub power_null_reason: Option<String>,
    /// FLOPs per token counted from the graph.
    pub flops_per_token: Option<f64>,
    /// Per-domain host measurements, keyed by domain name (`healthcare`).
    pub domains: BTreeMap<String, DomainPerf>,
    /// Projections for the paper's devices.
    pub projections: Vec<Projection>,
}

impl Perf {
    /// Reads `<run>/perf.json`; `Ok(None)` when there is none.
    pub fn load(run_root: &Path) -> Result<Option<Perf>, PerfError> {
        let path = run_root.join(PERF_FILE);
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(|source| PerfError::Io {
            path: path.clone(),
            source,
        })?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| PerfError::Parse {
                path,
                message: e.to_string(),
            })
    }

    /// The projection for `device`, if any.
    pub fn projection(&self, device: &str) -> Option<&Projection> {
        self.projections.iter().find(|p| p.device == device)
    }

    /// Median host latency per token.
    pub fn latency_p50(&self) -> Option<f64> {
        self.latency_ms_per_token.as_ref()?.p50
    }

    /// Median host latency per token on one domain's suites.
    pub fn domain_latency_p50(&self, domain: &str) -> Option<f64> {
        self.domains.get(domain)?.latency_ms_per_token.as_ref()?.p50
    }

    /// Host power on one domain's suites.
    pub fn domain_power(&self, domain: &str) -> Option<f64> {
        self.domains.get(domain)?.power_w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_documented_example_and_ignores_unknown_fields() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(PERF_FILE),
            r#"{"model": "gem-paper", "latency_ms_per_token": {"p50": 12.5, "p90": 14},
                "peak_rss_bytes": 123000000, "power_w": null,
                "power_null_reason": "no power sensor", "future_field": [1, 2],
                "domains": {"healthcare": {"latency_ms_per_token": {"p50": 11}}},
                "projections": [{"device": "raspberry-pi-4", "ms_per_token": 80.5},
                                {"device": "pixel-6", "ms_per_token": 3, "estimated": false}]}"#,
        )
        .unwrap();
        let p = Perf::load(dir.path()).unwrap().unwrap();
        assert_eq!(p.latency_p50(), Some(12.5));
        assert_eq!(p.peak_rss_bytes, Some(123_000_000));
        assert_eq!(p.power_w, None);
        assert_eq!(p.domain_latency_p50("healthcare"), Some(11.0));
        assert_eq!(p.domain_latency_p50("legal"), None);
        let rpi = p.projection("raspberry-pi-4").unwrap();
        assert_eq!((rpi.ms_per_token, rpi.estimated), (Some(80.5), true));
        assert!(!p.projection("pixel-6").unwrap().estimated);
        assert!(p.projection("iphone-13").is_none());
    }

    #[test]
    fn absent_is_none_and_malformed_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Perf::load(dir.path()).unwrap(), None);
        std::fs::write(dir.path().join(PERF_FILE), r#"{"peak_rss_bytes": "lots"}"#).unwrap();
        let e = Perf::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("perf.json"), "{e}");
    }
}
