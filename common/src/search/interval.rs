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
        let bad = |reason: &str| SearchError::BadDatetime {
            datetime: text.to_string(),
            reason: reason.to_string(),
        };
        let side = |s: &str| -> Result<Option<DateTime<Utc>>, SearchError> {
            let s = s.trim();
            if s.is_empty() || s == ".." {
                return Ok(None);
            }
            parse_timestamp(s).map(Some).ok_or_else(|| {
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
    fn bad_intervals_say_why() {
        assert!(Interval::parse("../..").unwrap_err().to_string().contains("at least one end"));
        assert!(
            Interval::parse("2021-01-01/2020-01-01").unwrap_err().to_string().contains("after")
        );
        assert!(Interval::parse("yesterday").unwrap_err().to_string().contains("'yesterday'"));
    }
}
