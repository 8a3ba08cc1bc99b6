//! The `datetime` of a search: an instant or an interval with `..` (or nothing) for an open end.

use chrono::{DateTime, Utc};

use super::SearchError;
use crate::stac::datetime::parse_timestamp;

/// A closed time interval; either end may be open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    /// Earliest instant, inclusive.
    pub start: Option<DateTime<Utc>>,
    /// Latest instant, inclusive.
    pub end: Option<DateTime<Utc>>,
}

impl Interval {
    /// Parses `instant`, `start/end`, `../end`, `start/..` (an empty side is open too).
    /// Timestamps are RFC 3339; a date alone is midnight UTC.
    pub fn parse(text: &str) -> Result<Interval, SearchError> {
        Interval::parse_with(text, parse_timestamp)
    }

    /// Like [`Interval::parse`], but each end must be an RFC 3339 date-time with its offset,
    /// as the STAC API requires (no date alone, no local time).
    pub fn parse_rfc3339(text: &str) -> Result<Interval, SearchError> {
        Interval::parse_with(text, |s| {
            DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
        })
    }

    fn parse_with(
        text: &str,
        timestamp: impl Fn(&str) -> Option<DateTime<Utc>>,
    ) -> Result<Interval, SearchError> {
        let bad = |reason: &str| SearchError::BadDatetime {
            datetime: text.to_string(),
            reason: reason.to_string(),
        };
        let side = |s: &str| -> Result<Option<DateTime<Utc>>, SearchError> {
            let s = s.trim();
            if s.is_empty() || s == ".." {
                return Ok(None);
            }
            timestamp(s).map(Some).ok_or_else(|| {
                bad(&format!("'{s}' is not an RFC 3339 timestamp (e.g. 2020-01-31T12:00:00Z)"))
            })
        };
        let interval = match text.split_once('/') {
            None => {
                let at = side(text)?.ok_or_else(|| bad("an instant cannot be open"))?;
                Interval { start: Some(at), end: Some(at) }
            }
            Some((a, b)) => Interval { start: side(a)?, end: side(b)? },
        };
        match (interval.start, interval.end) {
            (None, None) => Err(bad("an interval needs at least one end")),
            (Some(s), Some(e)) if s > e => Err(bad("the start is after the end")),
            _ => Ok(interval),
        }
    }

    /// The start in microseconds since the epoch.
    pub fn start_micros(&self) -> Option<i64> {
        self.start.map(|t| t.timestamp_micros())
    }

    /// The end in microseconds since the epoch.
    pub fn end_micros(&self) -> Option<i64> {
        self.end.map(|t| t.timestamp_micros())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_and_open_intervals_parse() {
        let i = Interval::parse("2020-01-01T00:00:00Z").unwrap();
        assert_eq!(i.start, i.end);
        let open = Interval::parse("../2020-01-01T00:00:00Z").unwrap();
        assert_eq!(open.start, None);
        let open = Interval::parse("2020-01-01/").unwrap();
        assert_eq!(open.end, None);
        assert_eq!(
            Interval::parse("2020-01-01T02:00:00+02:00/..").unwrap().start_micros(),
            Some(1_577_836_800_000_000)
        );
    }

    #[test]
    fn the_rfc3339_form_refuses_dates_and_local_times() {
        for ok in [
            "1985-04-12t23:20:50.000z",
            "2020-07-23T00:00:00.012345678Z",
            "/1985-04-12T23:20:50.52Z",
        ] {
            assert!(Interval::parse_rfc3339(ok).is_ok(), "{ok}");
        }
        for bad in [
            "1985-04-12",
            "1985-12-12T23:20:50.52",
            "1937-01-01T12:00:27.87+0100",
            "1990-12-31T23:59:61Z",
        ] {
            assert!(Interval::parse_rfc3339(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_intervals_say_why() {
        assert!(Interval::parse("../..").unwrap_err().to_string().contains("at least one end"));
        assert!(
            Interval::parse("2021-01-01/2020-01-01").unwrap_err().to_string().contains("after")
        );
        assert!(Interval::parse("yesterday").unwrap_err().to_string().contains("'yesterday'"));
    }
}
