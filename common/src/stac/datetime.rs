//! Timestamps in STAC items → microseconds since the epoch, UTC.
//!
//! Rules (documented in `docs/schema.md`):
//! - RFC 3339 with `Z` or an offset; the offset is converted, not dropped
//!   (`2021-01-01T01:00:00+02:00` is `2020-12-31T23:00:00Z`).
//! - Lower-case `t`/`z` and a space between date and time are accepted.
//! - A timestamp without offset is taken as UTC (the original did the same, with a warning).
//! - A date alone (`2021-06-15`) is midnight UTC (the original failed the whole file on it).
//! - Digits below the microsecond are truncated.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

/// Parses a STAC timestamp string to microseconds since the epoch (UTC).
pub fn parse_timestamp_micros(s: &str) -> Option<i64> {
    parse_timestamp(s).map(|dt| dt.timestamp_micros())
}

/// Parses a STAC timestamp string to a UTC instant.
pub fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if s.len() < 10 {
        return None;
    }
    if s.len() == 10 {
        let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
        return Some(d.and_hms_opt(0, 0, 0)?.and_utc());
    }
    let normalized = normalize(s);
    if let Ok(dt) = DateTime::parse_from_rfc3339(&normalized) {
        return Some(dt.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(&normalized, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(&normalized, "%Y-%m-%dT%H:%M"))
        .ok()
        .map(|n| n.and_utc())
}

/// Upper-cases the `T` separator and the `Z` suffix, and turns a space separator into `T`.
fn normalize(s: &str) -> String {
    let mut out: Vec<u8> = s.as_bytes().to_vec();
    if let Some(sep) = out.get_mut(10)
        && (*sep == b't' || *sep == b' ')
    {
        *sep = b'T';
    }
    if let Some(last) = out.last_mut()
        && *last == b'z'
    {
        *last = b'Z';
    }
    String::from_utf8(out).unwrap_or_else(|_| s.to_string())
}

/// The UTC calendar year of a timestamp in microseconds.
pub fn utc_year(micros: i64) -> Option<i32> {
    use chrono::Datelike;
    DateTime::<Utc>::from_timestamp_micros(micros).map(|d| d.year())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iso(micros: i64) -> String {
        DateTime::<Utc>::from_timestamp_micros(micros)
            .map(|d| d.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
            .unwrap_or_default()
    }

    #[test]
    fn offsets_are_converted_to_utc() {
        let us = parse_timestamp_micros("2021-01-01T01:00:00+02:00").unwrap();
        assert_eq!(iso(us), "2020-12-31T23:00:00.000000Z");
        assert_eq!(utc_year(us), Some(2020));
    }

    #[test]
    fn lower_case_and_space_separated_forms_are_accepted() {
        let a = parse_timestamp_micros("2019-05-24T12:00:00Z").unwrap();
        assert_eq!(parse_timestamp_micros("2019-05-24t12:00:00z"), Some(a));
        assert_eq!(parse_timestamp_micros("2019-05-24 12:00:00Z"), Some(a));
        assert_eq!(parse_timestamp_micros("2019-05-24T12:00:00"), Some(a), "naive is UTC");
    }

    #[test]
    fn date_only_is_midnight_utc_and_nanoseconds_are_truncated() {
        assert_eq!(
            iso(parse_timestamp_micros("2021-06-15").unwrap()),
            "2021-06-15T00:00:00.000000Z"
        );
        let us = parse_timestamp_micros("2024-04-19T09:55:49.123456789Z").unwrap();
        assert_eq!(iso(us), "2024-04-19T09:55:49.123456Z");
    }

    #[test]
    fn garbage_is_not_a_timestamp() {
        for bad in ["", "yesterday", "2021-13-01", "2021-06-15T25:00:00Z", "20210615"] {
            assert_eq!(parse_timestamp_micros(bad), None, "{bad}");
        }
    }
}
