//! The lock object's JSON, readable by earthcatalog 0.6.1's Python `S3Lock`.
//!
//! Python reads `owner`, `hostname`, `acquired` and `ttl_hours` and treats the lock as stale once
//! `now - acquired >= ttl_hours`. We keep `acquired` as the real acquisition time and rewrite
//! `ttl_hours` on every renewal so that `acquired + ttl_hours` is our current expiry: a Python
//! writer then honours a renewed lock, and a released lock (a tombstone with `ttl_hours: 0`)
//! looks stale to it, so it takes the lock over as it would any stale one. Our extra fields
//! (`token`, `expires`, `renewed`, `released`) are ignored by Python.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// The lock object's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockPayload {
    /// Who holds the lock (`backfill`, `incremental`, …).
    pub owner: String,
    /// Process id of the holder.
    pub pid: u32,
    /// Host of the holder.
    pub hostname: String,
    /// When the lock was acquired: ISO-8601 UTC with microseconds and `+00:00`, as Python writes.
    pub acquired: String,
    /// Hours from `acquired` to the expiry (fractional; 0 for a released lock).
    pub ttl_hours: Option<f64>,
    /// Unique per acquisition; absent in locks written by Python.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Exact expiry (same instant as `acquired + ttl_hours`); absent in Python's locks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// Time of the last renewal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewed: Option<String>,
    /// Set by a release: the lock is free.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub released: bool,
    /// The holder's PID namespace (`/proc/self/ns/pid`): with the host name, it says whether
    /// `pid` can be looked up from here. Absent in Python's locks and off Linux.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_ns: Option<String>,
}

/// Formats a time as Python's `datetime.isoformat()` does for UTC with microseconds.
pub fn python_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, false)
}

/// Parses an ISO-8601 time with an offset (Python's and ours).
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

fn hours(d: chrono::Duration) -> f64 {
    d.num_microseconds().unwrap_or(i64::MAX) as f64 / 3_600_000_000.0
}

impl LockPayload {
    /// A fresh lock held by `owner` from `now` for `ttl`.
    pub fn new(owner: &str, token: &str, now: DateTime<Utc>, ttl: Duration) -> Self {
        let mut p = LockPayload {
            owner: owner.to_string(),
            pid: std::process::id(),
            hostname: hostname(),
            acquired: python_time(now),
            ttl_hours: None,
            token: Some(token.to_string()),
            expires: None,
            renewed: None,
            released: false,
            pid_ns: pid_namespace(),
        };
        p.set_expiry(now, now + chrono_duration(ttl));
        p
    }

    /// This lock renewed at `now` for another `ttl`.
    pub fn renewed(&self, now: DateTime<Utc>, ttl: Duration) -> Self {
        let mut p = self.clone();
        p.renewed = Some(python_time(now));
        p.set_expiry(now, now + chrono_duration(ttl));
        p
    }

    /// This lock marked free at `now`.
    pub fn released_at(&self, now: DateTime<Utc>) -> Self {
        let mut p = self.clone();
        p.released = true;
        p.expires = Some(python_time(now));
        p.ttl_hours = Some(0.0);
        p
    }

    fn set_expiry(&mut self, now: DateTime<Utc>, expires: DateTime<Utc>) {
        let acquired = parse_time(&self.acquired).unwrap_or(now);
        self.ttl_hours = Some(hours(expires - acquired).max(0.0));
        self.expires = Some(python_time(expires));
    }

    /// When the lock was acquired, if the payload says.
    pub fn acquired_at(&self) -> Option<DateTime<Utc>> {
        parse_time(&self.acquired)
    }

    /// When the lock expires: `expires`, else `acquired + ttl_hours` (Python's rule, using
    /// `default_ttl` when the payload has no TTL).
    pub fn expires_at(&self, default_ttl: Duration) -> Option<DateTime<Utc>> {
        if let Some(t) = self.expires.as_deref().and_then(parse_time) {
            return Some(t);
        }
        let acquired = self.acquired_at()?;
        let ttl = match self.ttl_hours {
            Some(h) if h.is_finite() => {
                chrono::Duration::microseconds((h * 3_600_000_000.0).clamp(0.0, 1e17) as i64)
            }
            _ => chrono_duration(default_ttl),
        };
        Some(acquired + ttl)
    }

    /// Whether someone may take the lock at `now`: released, or expired per its own payload.
    pub fn is_free(&self, now: DateTime<Utc>, default_ttl: Duration) -> bool {
        self.released || self.expires_at(default_ttl).is_none_or(|t| now >= t)
    }

    /// Whether the holder is provably gone: it ran on this host in this PID namespace and its
    /// process no longer exists (killed without releasing). Anything less certain (another
    /// host, another namespace, a lock without the namespace) is not gone.
    pub fn holder_is_gone(&self) -> bool {
        let here = pid_namespace();
        here.is_some()
            && self.pid_ns == here
            && self.hostname == hostname()
            && self.pid != std::process::id()
            && !std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
    }

    /// The JSON bytes.
    pub fn to_bytes(&self) -> bytes::Bytes {
        // A struct of strings and numbers always serializes.
        bytes::Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }
}

/// `std` to `chrono` duration, saturating.
pub fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// This process's PID namespace (the target of `/proc/self/ns/pid`), where there is one.
fn pid_namespace() -> Option<String> {
    std::fs::read_link("/proc/self/ns/pid").ok().map(|p| p.to_string_lossy().into_owned())
}

/// This machine's host name (`HOSTNAME`, then the kernel's), or `unknown`.
pub fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

/// A duration as a person reads it: `3h 12m`, `4m 05s`, `2.5s`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h {:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn payload_has_the_fields_python_reads_in_its_format() {
        let now = parse_time("2026-03-01T10:00:00.000001+00:00").unwrap();
        let p = LockPayload::new("backfill", "tok", now, Duration::from_secs(6 * 3600));
        let v: serde_json::Value = serde_json::from_slice(&p.to_bytes()).unwrap();
        assert_eq!(v["owner"], "backfill");
        assert_eq!(v["acquired"], "2026-03-01T10:00:00.000001+00:00");
        assert_eq!(v["ttl_hours"], 6.0);
        assert_eq!(v["pid"], std::process::id());
        assert!(v["hostname"].as_str().is_some_and(|h| !h.is_empty()));
        assert!(v.get("released").is_none());
    }

    #[test]
    fn renewal_moves_python_visible_expiry_without_changing_acquired() {
        let t0 = parse_time("2026-03-01T10:00:00+00:00").unwrap();
        let p = LockPayload::new("o", "t", t0, Duration::from_secs(60));
        let r = p.renewed(t0 + chrono::Duration::seconds(600), Duration::from_secs(60));
        assert_eq!(r.acquired, p.acquired);
        assert_eq!(r.ttl_hours, Some(11.0 / 60.0));
        // Python's rule (acquired + ttl_hours) and ours agree.
        let python_expiry = LockPayload { expires: None, ..r.clone() };
        assert_eq!(python_expiry.expires_at(Duration::ZERO), r.expires_at(Duration::ZERO));
        assert_eq!(r.expires_at(Duration::ZERO), Some(t0 + chrono::Duration::seconds(660)));
    }

    #[test]
    fn a_holder_is_gone_only_when_its_process_on_this_host_and_namespace_has_ended() {
        let mut p = LockPayload::new("t", "tok", Utc::now(), Duration::from_secs(60));
        assert!(!p.holder_is_gone(), "we are alive");
        // A PID far above any this machine hands out (pid_max is at most 2^22).
        p.pid = 4_000_000_000;
        assert_eq!(p.holder_is_gone(), pid_namespace().is_some());
        let mut elsewhere = p.clone();
        elsewhere.hostname = "another-host".into();
        assert!(!elsewhere.holder_is_gone());
        let mut unknown_ns = p.clone();
        unknown_ns.pid_ns = None;
        assert!(!unknown_ns.holder_is_gone(), "a lock without a namespace is never taken early");
    }

    #[test]
    fn a_python_lock_expires_after_its_ttl_hours_and_a_tombstone_is_free() {
        let python: LockPayload = serde_json::from_str(
            r#"{"owner": "incremental", "pid": 7, "hostname": "h", "acquired": "2026-03-01T00:00:00+00:00", "ttl_hours": 12}"#,
        )
        .unwrap();
        let t0 = parse_time("2026-03-01T00:00:00+00:00").unwrap();
        assert!(!python.is_free(t0 + chrono::Duration::hours(11), Duration::ZERO));
        assert!(python.is_free(t0 + chrono::Duration::hours(13), Duration::ZERO));
        let released = python.released_at(t0);
        assert!(released.is_free(t0, Duration::ZERO));
        assert_eq!(released.ttl_hours, Some(0.0));
    }

    #[test]
    fn durations_read_like_a_person_would_write_them() {
        assert_eq!(human(Duration::from_secs(3 * 3600 + 12 * 60 + 5)), "3h 12m");
        assert_eq!(human(Duration::from_secs(245)), "4m 05s");
        assert_eq!(human(Duration::from_millis(2500)), "2.5s");
    }
}
