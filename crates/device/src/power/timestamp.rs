//! Wall-clock timestamps: UNIX seconds from [`SystemTime`] and from RFC 3339 text.

use edgebench_util::time::{civil_from_days, days_from_civil};
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the UNIX epoch (negative before it).
pub fn unix_seconds(t: SystemTime) -> f64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// UNIX seconds of an RFC 3339 time such as `2025-01-15T10:00:00.250Z` or
/// `2025-01-15T11:00:00+01:00`; `None` for anything else.
pub(super) fn parse_rfc3339(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    if b.len() < 20 || !s.is_ascii() {
        return None;
    }
    let num = |r: std::ops::Range<usize>| digits(&s[r]);
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let days = days_from_civil(y, mo, d);
    // a date the calendar does not have (2023-02-29, month 13) comes back as another date
    if civil_from_days(days) != (y, mo, d) {
        return None;
    }
    if h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut frac = 0.0;
    if let Some(r) = rest.strip_prefix('.') {
        let len = r.bytes().take_while(|c| c.is_ascii_digit()).count();
        if len == 0 {
            return None;
        }
        frac = format!("0.{}", &r[..len]).parse().ok()?;
        rest = &r[len..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && rest.as_bytes()[3] == b':' => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (oh, om) = (digits(&rest[1..3])?, digits(&rest[4..6])?);
            if oh > 23 || om > 59 {
                return None;
            }
            sign * (oh * 3600 + om * 60)
        }
        _ => return None,
    };
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset;
    Some(secs as f64 + frac)
}

/// An unsigned decimal made of ASCII digits only (no sign, no spaces).
fn digits(t: &str) -> Option<i64> {
    if t.bytes().all(|c| c.is_ascii_digit()) {
        t.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(parse_rfc3339("2025-01-15T10:00:00Z"), Some(1_736_935_200.0));
        assert_eq!(
            parse_rfc3339("2025-01-15T11:00:00.25+01:00"),
            Some(1_736_935_200.25)
        );
        assert_eq!(parse_rfc3339("2024-02-29T00:00:00Z"), Some(1_709_164_800.0));
        assert_eq!(parse_rfc3339("2023-02-29T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("2000-02-29T00:00:00Z"), Some(951_782_400.0));
        for no_such_day in [
            "1900-02-29",
            "2025-04-31",
            "2025-01-00",
            "2025-13-01",
            "2025-00-10",
        ] {
            assert_eq!(parse_rfc3339(&format!("{no_such_day}T00:00:00Z")), None);
        }
        assert_eq!(parse_rfc3339("2025-01-15 10:00:00"), None); // no offset
        assert_eq!(parse_rfc3339("1736935200"), None);
    }
}
