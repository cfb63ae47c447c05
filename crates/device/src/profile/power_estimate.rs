//! Power estimate for a device profile: the power a device draws while it runs
//! a workload at its roofline, taken as its power envelope, always labelled
//! `estimated`.

use super::schema::{DeviceProfile, Spec};
use serde::Serialize;

/// An estimate of a device's power while it runs the projected workload.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PowerEstimate {
    /// Always `estimated`: nothing here was measured on the device.
    pub label: &'static str,
    /// Watts; `None` when the profile's power envelope is unknown.
    pub watts: Option<f64>,
    /// How `watts` follows from the inputs.
    pub model: String,
    /// The profile's power envelope, watts (the input).
    pub power_envelope_w: Option<f64>,
    /// The envelope as written in the profile, e.g. `5 W`.
    pub stated: Option<String>,
    /// Where the envelope comes from.
    pub source: Option<String>,
    /// What the estimate leaves out.
    pub caveats: Vec<String>,
}

/// Power of `profile` while it runs a workload at its roofline: the roofline
/// assumes the limiting unit runs flat out, and a device running flat out
/// draws at most its sustained power envelope, so the estimate is the
/// envelope. `watts` is `None` (with the profile's reason) when the envelope
/// is unknown.
pub fn estimate_power(profile: &DeviceProfile) -> PowerEstimate {
    let mut caveats = vec![
        "upper bound: the device is assumed to draw its whole power envelope for as long as the \
         roofline-bound workload runs; memory-bound phases and idle cores draw less"
            .to_string(),
    ];
    let (stated, source) = match &profile.power_envelope_w {
        Spec::Known { stated, source, .. } => (Some(stated.clone()), Some(source.clone())),
        Spec::Unknown { reason } => {
            caveats.push(format!("power envelope unknown ({reason}): no estimate"));
            (None, None)
        }
    };
    if profile.power_envelope_w.is_derived() {
        caveats.push("the power envelope is derived from published figures".into());
    }
    let envelope = profile.power_envelope_w.get();
    PowerEstimate {
        label: super::Projection::LABEL,
        watts: envelope,
        model: "watts = power_envelope_w (the device's sustained power limit at full load)".into(),
        power_envelope_w: envelope,
        stated,
        source,
        caveats,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::loader::tests::{parse_text, MINIMAL};

    #[test]
    fn envelope_known_and_unknown() {
        let mut p = parse_text(MINIMAL).unwrap();
        let e = estimate_power(&p);
        assert_eq!((e.watts, e.power_envelope_w), (None, None));
        assert!(
            e.caveats.iter().any(|c| c.contains("unknown (n/a)")),
            "{e:?}"
        );
        p.power_envelope_w = Spec::Known {
            value: 5.0,
            stated: "5 W".into(),
            source: "a spec sheet".into(),
            derivation: None,
        };
        let e = estimate_power(&p);
        assert_eq!((e.watts, e.power_envelope_w), (Some(5.0), Some(5.0)));
        assert_eq!(e.label, "estimated");
        assert_eq!(e.source.as_deref(), Some("a spec sheet"));
        assert_eq!(e.caveats.len(), 1);
    }
}
