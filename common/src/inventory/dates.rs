//! Reading last-modified dates and the `--since` cut-off.
//!
//! Accepted: RFC 3339 / ISO 8601 with `Z` or an offset (converted to UTC, not replaced), naive
//! timestamps (taken as UTC), with `T` or a space, with or without fractional seconds, and
//! date-only values (midnight UTC).

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};

/// A date string we could not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "'{value}' is not a date (use YYYY-MM-DD or an ISO 8601 timestamp such as 2024-01-31T12:00:00Z)"
)]
pub struct DateError {
    /// The value as given.
    pub value: String,
}

const NAIVE_FORMATS: [&str; 4] =
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"];

const OFFSET_FORMATS: [&str; 2] = ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z"];

/// Parses a `--since` value: `2024-01-31` or an ISO 8601 timestamp.
pub fn parse_since(value: &str) -> Result<DateTime<Utc>, DateError> {
    parse_datetime(value).ok_or_else(|| DateError { value: value.to_string() })
}

/// Parses an inventory date value; `None` when it is not a date.
pub fn parse_datetime(value: &str) -> Option<DateTime<Utc>> {
    let value = value.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(value) {
        return Some(dt.with_timezone(&Utc));
    }
    for format in OFFSET_FORMATS {
        if let Ok(dt) = DateTime::parse_from_str(value, format) {
            return Some(dt.with_timezone(&Utc));
        }
    }
    for format in NAIVE_FORMATS {
        if let Ok(naive) = NaiveDateTime::parse_from_str(value, format) {
            return Some(Utc.from_utc_datetime(&naive));
        }
    }
    let date = NaiveDate::parse_from_str(value, "%Y-%m-%d").ok()?;
    Some(Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0)?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn aws_style_timestamps_are_utc() {
        assert_eq!(parse_datetime("2015-08-29T06:56:01.000Z"), Some(utc("2015-08-29T06:56:01Z")));
        assert_eq!(parse_datetime(" 2015-08-29T06:56:01Z "), Some(utc("2015-08-29T06:56:01Z")));
    }

    #[test]
    fn offsets_are_converted_to_utc_not_replaced() {
        assert_eq!(parse_datetime("2024-01-31T02:00:00+02:00"), Some(utc("2024-01-31T00:00:00Z")));
        assert_eq!(parse_datetime("2024-01-31T02:00:00+0200"), Some(utc("2024-01-31T00:00:00Z")));
    }

    #[test]
    fn naive_timestamps_and_dates_are_taken_as_utc() {
        assert_eq!(parse_datetime("2024-01-31T10:20:30.5"), Some(utc("2024-01-31T10:20:30.5Z")));
        assert_eq!(parse_datetime("2024-01-31 10:20:30"), Some(utc("2024-01-31T10:20:30Z")));
        assert_eq!(parse_datetime("2024-01-31"), Some(utc("2024-01-31T00:00:00Z")));
        assert_eq!(parse_since("2024-01-31").unwrap(), utc("2024-01-31T00:00:00Z"));
    }

    #[test]
    fn non_dates_are_refused_with_the_value_and_the_accepted_forms() {
        assert_eq!(parse_datetime("not-a-date"), None);
        assert_eq!(parse_datetime(""), None);
        let err = parse_since("31/01/2024").unwrap_err();
        assert!(err.to_string().contains("'31/01/2024' is not a date (use YYYY-MM-DD"), "{err}");
    }
}
