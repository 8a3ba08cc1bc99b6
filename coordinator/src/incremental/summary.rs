//! What a run did, for people (log lines) and machines (`--json`).

use earthcatalog_common::pipeline::FailureKind;
use serde::Serialize;

/// Totals of one incremental run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunSummary {
    /// The run id (it prefixes every file the run wrote).
    pub run_id: String,
    /// The hash index written, with `--update-hash-index`.
    pub hash_index: Option<String>,
    /// Inventory rows read.
    pub inventory_rows: u64,
    /// Inventory entries kept by the filters (the items the run tried).
    pub items_listed: u64,
    /// Rows that were not `.stac.json` keys.
    pub not_stac: u64,
    /// Rows last modified before `--since`.
    pub before_since: u64,
    /// Kept rows that had no date to compare with `--since`.
    pub without_date: u64,
    /// Malformed inventory rows (listed in the failures file).
    pub malformed_rows: u64,
    /// Items the table did not hold, now in it.
    pub items_ingested: u64,
    /// Items the table held at an older `updated`: their old rows were replaced by the new ones.
    pub items_updated: u64,
    /// Old rows those updates removed.
    pub rows_replaced: u64,
    /// Items that failed (listed in the failures file with their reason).
    pub items_failed: u64,
    /// Items the table already holds at the same `updated` or a newer one.
    pub items_skipped: u64,
    /// Their rows, not written.
    pub rows_skipped: u64,
    /// Copies of an item id dropped because a chunk listed a newer copy of it (the newest
    /// `updated` wins; on a tie the later listed).
    pub duplicates_dropped: u64,
    /// Rows written.
    pub rows: u64,
    /// Data files of earlier killed runs that no catalog referenced, deleted at the start.
    pub orphans_deleted: u64,
    /// Data files written and registered.
    pub files: u64,
    /// Snapshots committed.
    pub snapshots: u64,
    /// Times the rows held for the run (`--batch-add-files`) passed the row budget and were
    /// spilled to local disk.
    pub spills: u64,
    /// Failures by kind.
    pub failures_by_kind: std::collections::BTreeMap<FailureKind, u64>,
    /// Where the failures are listed (when there are any): `--failures`, else next to the
    /// catalog object in `--catalog-store`, else next to the local catalog file.
    pub failures_file: Option<String>,
    /// Whether the catalog was uploaded to its store.
    pub catalog_uploaded: bool,
    /// Wall time, seconds.
    pub seconds: f64,
}

impl RunSummary {
    /// Whether any item or inventory row failed.
    pub fn has_failures(&self) -> bool {
        self.items_failed > 0 || self.malformed_rows > 0
    }

    /// Why a run ingested no item, when it ingested none: how many inventory rows it read and
    /// where each went, so a run that did nothing never looks like a run that had nothing to do.
    pub fn why_nothing_ingested(&self) -> Option<String> {
        if self.items_ingested > 0 || self.items_updated > 0 {
            return None;
        }
        if self.inventory_rows == 0 {
            return Some("the inventory lists no rows: nothing ingested".into());
        }
        Some(format!(
            "{} inventory rows read, none ingested: {} not .stac.json, {} before --since, \
             {} malformed, {} items failed, {} already in the table, {} older duplicates dropped",
            self.inventory_rows,
            self.not_stac,
            self.before_since,
            self.malformed_rows,
            self.items_failed,
            self.items_skipped,
            self.duplicates_dropped
        ))
    }

    /// Items per second over the run.
    pub fn items_per_second(&self) -> f64 {
        if self.seconds > 0.0 { self.items_ingested as f64 / self.seconds } else { 0.0 }
    }
}
