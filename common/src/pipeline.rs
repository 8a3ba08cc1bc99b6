//! Fetch → parse → fan out → group → write: the one data path both pipelines use.
//!
//! The incremental pipeline runs it per inventory chunk and writes straight into the warehouse;
//! backfill workers run it per chunk into the staging prefix and later compact. Items that cannot
//! be used come back as [`ItemFailure`]s with their bucket, key and reason.

use std::collections::VecDeque;
use std::sync::Arc;

use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::dedup::keep_newest;
use crate::fanout::{Groups, fan_out};
use crate::fetch::{RetryPolicy, fetch_object};
use crate::geoparquet::{FileNamer, WriteError, WriterOptions, WrittenFile, write_partition};
use crate::location::Location;
use crate::partition::{NO_CELL, Partitioner};
use crate::stac::{ItemRejection, ItemRow, parse_item};
use crate::stores::Stores;

/// An item object named by an inventory.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ObjectKey {
    /// Bucket as named by the inventory (before source mapping).
    pub bucket: String,
    /// Object key.
    pub key: String,
}

impl ObjectKey {
    /// An object key.
    pub fn new(bucket: impl Into<String>, key: impl Into<String>) -> Self {
        ObjectKey { bucket: bucket.into(), key: key.into() }
    }

    /// `s3://bucket/key`, for messages.
    pub fn uri(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }
}

/// Why an item did not make it into the table, as a stable category (its `snake_case` name is
/// what failures files and summaries hold).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The object does not exist.
    NotFound,
    /// Reading the object was refused.
    Denied,
    /// The bucket and key do not make a location.
    BadLocation,
    /// The object could not be fetched after every retry.
    FetchFailed,
    /// Fetching failed in a way retrying will not fix.
    FetchError,
    /// The body is not JSON.
    InvalidJson,
    /// The JSON is not an object.
    NotAnObject,
    /// The object is not a GeoJSON Feature.
    NotAFeature,
    /// No `id`.
    MissingId,
    /// No geometry.
    MissingGeometry,
    /// A geometry that cannot be read.
    InvalidGeometry,
    /// A timestamp that cannot be read.
    BadTimestamp,
    /// A value that does not fit its column.
    BadValue,
    /// The footprint could not be placed in the grid.
    Partition,
    /// A bug: the item's task panicked.
    Internal,
    /// An inventory row that could not be read (listed without a bucket).
    MalformedInventoryRow,
    /// A category this version does not know (a list written by a newer one).
    #[serde(other)]
    Unknown,
}

impl FailureKind {
    /// The category's stable name (`not_found`, `invalid_json`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::NotFound => "not_found",
            FailureKind::Denied => "denied",
            FailureKind::BadLocation => "bad_location",
            FailureKind::FetchFailed => "fetch_failed",
            FailureKind::FetchError => "fetch_error",
            FailureKind::InvalidJson => "invalid_json",
            FailureKind::NotAnObject => "not_an_object",
            FailureKind::NotAFeature => "not_a_feature",
            FailureKind::MissingId => "missing_id",
            FailureKind::MissingGeometry => "missing_geometry",
            FailureKind::InvalidGeometry => "invalid_geometry",
            FailureKind::BadTimestamp => "bad_timestamp",
            FailureKind::BadValue => "bad_value",
            FailureKind::Partition => "partition",
            FailureKind::Internal => "internal",
            FailureKind::MalformedInventoryRow => "malformed_inventory_row",
            FailureKind::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for FailureKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// An item that did not make it into the table, and why; operators retry from these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemFailure {
    /// Bucket as named by the inventory.
    pub bucket: String,
    /// Object key.
    pub key: String,
    /// Its category.
    pub kind: FailureKind,
    /// The full reason.
    pub reason: String,
}

impl crate::json_lines::Listed for ItemFailure {
    const LIST: &'static str = "failures file";
}

impl ItemFailure {
    fn new(at: &ObjectKey, kind: FailureKind, reason: String) -> Self {
        ItemFailure { bucket: at.bucket.clone(), key: at.key.clone(), kind, reason }
    }
}

/// Rows of a batch of items, grouped by (cell, year), and the items that failed.
#[derive(Debug, Default)]
pub struct Collected {
    /// Rows by (cell, year).
    pub groups: Groups,
    /// Items that could not be fetched, parsed or partitioned.
    pub failures: Vec<ItemFailure>,
    /// Items that became rows.
    pub items: usize,
    /// Older copies of an item id dropped (only with [`DataPathOptions::newest_copy_only`]).
    pub duplicates_dropped: usize,
}

/// A chunk's items, read, covered and (with [`DataPathOptions::newest_copy_only`]) deduplicated,
/// waiting to become rows. Rows are made a batch of whole items at a time within a [`Budget`]'s
/// rows, so that a chunk's memory follows the budget rather than its items: at H3 resolution 3
/// one near-global item is ~40,000 rows.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Items not yet fanned out, in listing order, with their cells.
    pending: VecDeque<(ItemRow, Vec<String>)>,
    /// Items that could not be used, with the reason.
    pub failures: Vec<ItemFailure>,
    /// Items kept (after dropping older copies).
    pub items: usize,
    /// Older copies of an item dropped (only with [`DataPathOptions::newest_copy_only`]).
    pub duplicates_dropped: usize,
}

/// How much of a chunk is held at once: rows (each shares its item, ~100 bytes of its own), and
/// files written before they are registered (each (cell, year) is one file; its footer and its
/// Iceberg entry take ~30 KB until the snapshot is committed). Rows beyond the budget are made
/// in another batch of items (more files for cells both batches touch); files beyond it are
/// registered in another snapshot (each (cell, year) still one file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Rows at most.
    pub rows: usize,
    /// Partitions (files) at most.
    pub files: usize,
}

impl Budget {
    /// No limit: the whole chunk at once.
    pub const UNLIMITED: Budget = Budget { rows: usize::MAX, files: usize::MAX };
}

impl Default for Budget {
    /// 1,000,000 rows and 10,000 files: ~150 MB of rows and ~300 MB of files being registered,
    /// so that a chunk stays under 1 GB however its items fan out.
    fn default() -> Self {
        Budget { rows: 1_000_000, files: 10_000 }
    }
}

impl Loaded {
    /// The rows of the next items, grouped: whole items only, at most `rows` rows unless one
    /// item alone has more (it then comes alone); `None` once every item has been taken.
    pub fn next_groups(&mut self, rows: usize) -> Option<Groups> {
        if self.pending.is_empty() {
            return None;
        }
        let mut groups = Groups::new();
        while let Some((_, cells)) = self.pending.front() {
            if !groups.is_empty() && groups.row_count() + cells.len() > rows {
                break;
            }
            let Some((row, cells)) = self.pending.pop_front() else { break };
            groups.extend(fan_out(row, &cells));
        }
        Some(groups)
    }
}

/// Objects fetched at once by default. Against S3 a fetch mostly waits: at 30 ms of latency, 16
/// at once (the original's default) read 165 items/s and 512 read 2,063; on local files 512 costs
/// about 10 % of the speed and 50 MB more memory than 16 (docs/benchmarks.md, "S3 at real
/// latency").
pub const FETCH_CONCURRENCY: usize = 512;

/// Files encoded and uploaded at once by default. A PUT to S3 waits a round trip or more, and
/// most files are small: with 4 at a time, an S3 run at 30 ms of latency spent most of its time
/// waiting on uploads; 64 read 1,950-2,290 items/s where 32 read 1,760-1,840, and cost nothing
/// on local files (docs/benchmarks.md, "S3 at real latency").
pub const WRITE_CONCURRENCY: usize = 64;

/// Settings of the data path.
#[derive(Debug, Clone)]
pub struct DataPathOptions {
    /// Objects fetched at once.
    pub fetch_concurrency: usize,
    /// Retries of one fetch.
    pub retry: RetryPolicy,
    /// Files encoded and uploaded at once.
    pub write_concurrency: usize,
    /// Data file layout.
    pub writer: WriterOptions,
    /// Keep one copy per item id of a batch, the newest (see [`crate::dedup`]). Backfill leaves
    /// this off: its compaction applies the same rule to everything staged for a partition.
    pub newest_copy_only: bool,
}

impl Default for DataPathOptions {
    fn default() -> Self {
        DataPathOptions {
            fetch_concurrency: FETCH_CONCURRENCY,
            retry: RetryPolicy::default(),
            write_concurrency: WRITE_CONCURRENCY,
            writer: WriterOptions::default(),
            newest_copy_only: false,
        }
    }
}

/// The data path: stores, a partitioner and settings.
#[derive(Debug, Clone)]
pub struct DataPath {
    stores: Arc<Stores>,
    partitioner: Arc<dyn Partitioner>,
    options: DataPathOptions,
}

impl DataPath {
    /// A data path reading items through `stores` and placing them with `partitioner`.
    pub fn new(
        stores: Arc<Stores>,
        partitioner: Arc<dyn Partitioner>,
        options: DataPathOptions,
    ) -> Self {
        DataPath { stores, partitioner, options }
    }

    /// The stores items are read from and files written to.
    pub fn stores(&self) -> &Arc<Stores> {
        &self.stores
    }

    /// Its settings.
    pub fn options(&self) -> &DataPathOptions {
        &self.options
    }

    /// Fetches, parses and fans out `items`, keeping their order within each group.
    pub async fn collect(&self, items: Vec<ObjectKey>) -> Collected {
        let mut loaded = self.load(items).await;
        let groups = loaded.next_groups(usize::MAX).unwrap_or_default();
        Collected {
            groups,
            failures: loaded.failures,
            items: loaded.items,
            duplicates_dropped: loaded.duplicates_dropped,
        }
    }

    /// Fetches, parses and covers `items`, and keeps one copy of each (with
    /// [`DataPathOptions::newest_copy_only`]); their rows are made by [`Loaded::next_groups`], a
    /// bounded batch at a time.
    pub async fn load(&self, items: Vec<ObjectKey>) -> Loaded {
        let mut out = Loaded::default();
        // Fanned out only once all are loaded, so that an older copy of an id listed earlier
        // can still be dropped in favour of a newer one listed later.
        let mut loaded: Vec<(ItemRow, Vec<String>)> = Vec::with_capacity(items.len());
        let tasks = futures::stream::iter(items).map(|at| {
            let stores = self.stores.clone();
            let partitioner = self.partitioner.clone();
            let retry = self.options.retry.clone();
            // Spawned so that parsing and covering run on every core, not just this task's.
            let task = tokio::spawn({
                let at = at.clone();
                async move { load_item(&stores, partitioner.as_ref(), &at, &retry).await }
            });
            async move { (task.await, at) }
        });
        let mut results = tasks.buffered(self.options.fetch_concurrency.max(1));
        while let Some((joined, at)) = results.next().await {
            match joined {
                Ok(Ok(item)) => loaded.push(item),
                Ok(Err(failure)) => {
                    tracing::debug!(item = %at.uri(), kind = %failure.kind, reason = %failure.reason, "item rejected");
                    out.failures.push(failure);
                }
                Err(join) => {
                    // A panic in one item's task is a bug; the item keeps its bucket and key so
                    // that a retry of the failures list takes it again.
                    tracing::error!(item = %at.uri(), error = %join, "item task failed");
                    out.failures.push(ItemFailure::new(
                        &at,
                        FailureKind::Internal,
                        join.to_string(),
                    ));
                }
            }
        }
        if self.options.newest_copy_only {
            let (kept, dropped) =
                keep_newest(loaded, |(row, _)| row.key(), |(row, _)| row.version_micros());
            loaded = kept;
            out.duplicates_dropped = dropped;
        }
        out.items = loaded.len();
        out.pending = loaded.into();
        out
    }

    /// Writes every group as one file under `root`, a few at a time. All or nothing: if any
    /// file fails, the files this call did write are deleted (best effort) and the error returned,
    /// so a caller never registers part of a chunk.
    pub async fn write(
        &self,
        groups: Groups,
        root: &Location,
        namer: &Arc<FileNamer>,
    ) -> Result<Vec<WrittenFile>, WriteError> {
        let writes = futures::stream::iter(groups.into_sorted()).map(|(part, rows)| {
            let stores = self.stores.clone();
            let root = root.clone();
            let namer = namer.clone();
            let options = self.options.writer.clone();
            let handle = tokio::spawn(async move {
                write_partition(&stores, &root, &part, &rows, &namer, &options).await
            });
            async move {
                match handle.await {
                    Ok(r) => r,
                    Err(join) => Err(WriteError::Panicked(join.to_string())),
                }
            }
        });
        let results: Vec<_> =
            writes.buffer_unordered(self.options.write_concurrency.max(1)).collect().await;
        let mut written = Vec::with_capacity(results.len());
        let mut first_error = None;
        for r in results {
            match r {
                Ok(f) => written.push(f),
                Err(e) => first_error = first_error.or(Some(e)),
            }
        }
        match first_error {
            None => Ok(written),
            Some(e) => {
                self.delete_files(&written).await;
                Err(e)
            }
        }
    }

    /// Deletes files this process wrote but will not register (best effort, logged).
    pub async fn delete_files(&self, files: &[WrittenFile]) {
        let locations: Vec<Location> = files.iter().map(|f| f.location.clone()).collect();
        self.stores.delete_all(&locations, "an unregistered file").await;
    }
}

/// Fetches, parses and covers one item.
async fn load_item(
    stores: &Stores,
    partitioner: &dyn Partitioner,
    at: &ObjectKey,
    retry: &RetryPolicy,
) -> Result<(ItemRow, Vec<String>), ItemFailure> {
    let object = fetch_object(stores, &at.bucket, &at.key, retry)
        .await
        .map_err(|e| ItemFailure::new(at, e.kind(), e.to_string()))?;
    let mut parsed =
        parse_item(&object.bytes).map_err(|e| ItemFailure::new(at, e.kind(), e.to_string()))?;
    parsed.row.set_object_modified(object.last_modified.timestamp_micros());
    let mut cells = partitioner.cells(&parsed.geometry).map_err(|e| {
        let e = ItemRejection::Partition(e.to_string());
        ItemFailure::new(at, e.kind(), e.to_string())
    })?;
    if cells.is_empty() {
        cells.push(NO_CELL.to_string());
    }
    Ok((parsed.row, cells))
}

#[cfg(test)]
mod failure_kind_tests {
    use super::FailureKind as K;

    #[test]
    fn each_kind_is_written_and_read_by_its_stable_name() {
        for k in [
            K::NotFound,
            K::Denied,
            K::BadLocation,
            K::FetchFailed,
            K::FetchError,
            K::InvalidJson,
            K::NotAnObject,
            K::NotAFeature,
            K::MissingId,
            K::MissingGeometry,
            K::InvalidGeometry,
            K::BadTimestamp,
            K::BadValue,
            K::Partition,
            K::Internal,
            K::MalformedInventoryRow,
        ] {
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.as_str()));
            assert_eq!(serde_json::from_str::<K>(&json).unwrap(), k);
        }
        assert_eq!(serde_json::from_str::<K>("\"from_a_newer_version\"").unwrap(), K::Unknown);
    }
}
