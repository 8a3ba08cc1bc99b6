//! The filter between a reader and its consumer: `.stac.json` keys only, `since`, `limit`,
//! with counters a caller can print.
//!
//! Each entry read lands in exactly one of: not `.stac.json`, before `since`, kept. Entries kept
//! only because they have no date (when `since` is set) are also counted as without a date.
//! Malformed rows are counted and passed on so the caller can report them. Once `limit` entries
//! are kept the stream ends without pulling the reader again.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use futures::StreamExt;

use super::{InventoryEntry, InventoryRecord, InventoryStream};

/// The suffix of STAC item keys; matched exactly, case-sensitive.
pub const STAC_SUFFIX: &str = ".stac.json";

/// What to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// Keep entries last modified at or after this instant (entries without a date pass).
    pub since: Option<DateTime<Utc>>,
    /// Stop after keeping this many entries.
    pub limit: Option<u64>,
    /// Keep only keys ending in `.stac.json`.
    pub stac_only: bool,
}

impl Default for Filter {
    fn default() -> Self {
        Filter { since: None, limit: None, stac_only: true }
    }
}

/// Counts of what the filter saw, as plain numbers (kept in the Phase 1 manifest as they are).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FilterCounts {
    /// Rows read from the inventory (entries and malformed rows).
    pub rows_read: u64,
    /// Entries passed on.
    pub kept: u64,
    /// Entries whose key does not end in `.stac.json`.
    pub not_stac: u64,
    /// Entries last modified before `since`.
    pub before_since: u64,
    /// Kept entries that had no date to compare with `since`.
    pub without_date: u64,
    /// Malformed rows (passed on for reporting).
    pub malformed: u64,
}

impl fmt::Display for FilterCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} rows read, {} kept, {} not .stac.json, {} before since, {} without a date, {} malformed",
            self.rows_read,
            self.kept,
            self.not_stac,
            self.before_since,
            self.without_date,
            self.malformed
        )
    }
}

/// Live counters of a filtered stream, readable while or after it runs.
#[derive(Debug, Clone, Default)]
pub struct FilterCounters(Arc<Counters>);

#[derive(Debug, Default)]
struct Counters {
    rows_read: AtomicU64,
    kept: AtomicU64,
    not_stac: AtomicU64,
    before_since: AtomicU64,
    without_date: AtomicU64,
    malformed: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl FilterCounters {
    /// The counts so far.
    pub fn snapshot(&self) -> FilterCounts {
        let c = &self.0;
        FilterCounts {
            rows_read: c.rows_read.load(Ordering::Relaxed),
            kept: c.kept.load(Ordering::Relaxed),
            not_stac: c.not_stac.load(Ordering::Relaxed),
            before_since: c.before_since.load(Ordering::Relaxed),
            without_date: c.without_date.load(Ordering::Relaxed),
            malformed: c.malformed.load(Ordering::Relaxed),
        }
    }
}

impl Filter {
    /// Whether `entry` is kept, counting why not.
    fn keeps(&self, entry: &InventoryEntry, counters: &Counters) -> bool {
        if self.stac_only && !entry.key.ends_with(STAC_SUFFIX) {
            bump(&counters.not_stac);
            return false;
        }
        if let Some(since) = self.since {
            match entry.last_modified {
                Some(modified) if modified < since => {
                    bump(&counters.before_since);
                    return false;
                }
                Some(_) => {}
                None => bump(&counters.without_date),
            }
        }
        bump(&counters.kept);
        true
    }
}

struct State {
    inner: InventoryStream,
    filter: Filter,
    counters: FilterCounters,
}

/// Filters `stream`: entries that pass, malformed rows and errors are passed on.
pub fn filter(stream: InventoryStream, filter: Filter) -> (InventoryStream, FilterCounters) {
    let counters = FilterCounters::default();
    let state = State { inner: stream, filter, counters: counters.clone() };
    let filtered = futures::stream::unfold(state, |mut state| async move {
        loop {
            let counts = &state.counters.0;
            if state.filter.limit.is_some_and(|limit| counts.kept.load(Ordering::Relaxed) >= limit)
            {
                return None;
            }
            let item = state.inner.next().await?;
            match &item {
                Ok(InventoryRecord::Entry(entry)) => {
                    bump(&counts.rows_read);
                    if !state.filter.keeps(entry, counts) {
                        continue;
                    }
                }
                Ok(InventoryRecord::Malformed(_)) => {
                    bump(&counts.rows_read);
                    bump(&counts.malformed);
                }
                Err(_) => {}
            }
            return Some((item, state));
        }
    });
    (filtered.boxed(), counters)
}
