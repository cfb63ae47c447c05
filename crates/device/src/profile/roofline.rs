//! Roofline projection: a lower bound on milliseconds per token from a profile's peaks.

use super::schema::{ComputeKind, ComputeUnit, DeviceProfile, Spec};
use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};

/// A workload that cannot be projected (negative or non-finite counts).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid workload: {0}")]
pub struct WorkloadError(pub String);

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::loader::tests::{parse_text, MINIMAL};

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
}
