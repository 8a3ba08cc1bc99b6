//! The replace commit: one snapshot (operation `replace`, or `overwrite` when rows change) that
//! removes a set of live data
//! files and adds their replacements, so readers see the old files or the new ones and never both
//! or neither. Every surviving entry is rewritten into a few merged manifests (about
//! [`TARGET_MANIFEST_BYTES`] each, sorted by partition so scan planning can skip whole
//! manifests), which keeps planning cost from growing with the table's history; the removed
//! files' entries go in small manifests of their own ([`TARGET_DELETED_MANIFEST_BYTES`]).
//!
//! Entries keep what Iceberg readers rely on: surviving files are `EXISTING` with their original
//! snapshot id and sequence numbers, removed files are `DELETED` in the new snapshot with their
//! original sequence numbers, added files inherit the new snapshot's sequence number.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use iceberg::spec::{
    DataFile, DataFileFormat, FormatVersion, MAIN_BRANCH, Manifest, ManifestContentType,
    ManifestEntryRef, ManifestFile, ManifestListWriter, ManifestStatus, ManifestWriterBuilder,
    Operation, PrimitiveLiteral, Snapshot, SnapshotReference, SnapshotRetention,
    SnapshotSummaryCollector, Summary, TableMetadata, TableProperties,
};
use iceberg::table::Table;
use tokio_util::task::AbortOnDropHandle;
use uuid::Uuid;

use super::commit::{CommitError, Swap, commit_metadata};
use super::manifest_encoding::{EntryToWrite, ManifestFormat};
use super::{Catalog, CatalogError};

/// Merged manifests aim at this size. Iceberg's default (`commit.manifest.target-size-bytes`,
/// 8 MB) suits scans of whole partitions; here nearly every query names a few cells, and a
/// reader decodes every entry of each manifest the partition filter keeps, so smaller manifests
/// sorted by partition let a point query decode one of a few hundred KB instead of megabytes.
pub const TARGET_MANIFEST_BYTES: u64 = 256 * 1024;
/// Manifests of the entries a replace removes aim at this size: scans never need them, and
/// small ones sorted by partition are skipped by the partition filter.
pub const TARGET_DELETED_MANIFEST_BYTES: u64 = 256 * 1024;

/// Size assumed per entry when the table's manifests do not tell (no manifest yet).
const DEFAULT_ENTRY_BYTES: u64 = 2_048;

/// Commits tried before a replace gives up on a busy table.
pub(super) const COMMIT_ATTEMPTS: usize = 5;

/// Manifests read at once.
const MANIFEST_CONCURRENCY: usize = 8;

/// Why a replace was refused or failed; the table is unchanged in every case.
#[derive(Debug, thiserror::Error)]
pub enum ReplaceError {
    /// There is no table to replace files in.
    #[error("there is no table in {catalog}")]
    NoTable {
        /// The catalog file.
        catalog: PathBuf,
    },
    /// Some files to remove are not live in the current snapshot: someone else replaced or
    /// removed them since they were chosen.
    #[error("files to replace are no longer in the table (changed by another writer?): {}", paths.join(", "))]
    NotLive {
        /// The missing paths.
        paths: Vec<String>,
    },
    /// The table has delete files; rewriting data files without applying them would bring
    /// deleted rows back.
    #[error(
        "the table has {count} delete manifests; replacing data files of such a table is not supported"
    )]
    HasDeleteFiles {
        /// Delete manifests in the current snapshot.
        count: usize,
    },
    /// Only format version 2 tables are written by us and by PyIceberg's defaults.
    #[error("the table has format version {0}; only version 2 is supported")]
    UnsupportedFormat(FormatVersion),
    /// Other writers kept committing; every attempt lost the race.
    #[error("the table kept changing under the commit ({attempts} attempts)")]
    Busy {
        /// Attempts made.
        attempts: usize,
    },
    /// Reading or writing manifests failed.
    #[error("{action}: {source}")]
    Iceberg {
        /// What we were doing.
        action: &'static str,
        /// iceberg's error.
        source: Box<iceberg::Error>,
    },
    /// The metadata commit failed.
    #[error(transparent)]
    Commit(#[from] CommitError),
    /// Loading the table failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The runtime stopped a manifest write before it finished (it is shutting down).
    #[error("a manifest write was stopped before it finished")]
    Cancelled,
}

pub(super) fn iceberg(action: &'static str) -> impl FnOnce(iceberg::Error) -> ReplaceError {
    move |source| ReplaceError::Iceberg { action, source: Box::new(source) }
}

/// What a replace means to readers: the operation its snapshot records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReplaceKind {
    /// The same rows in other files (compaction): operation `replace`.
    #[default]
    Rewrite,
    /// Rows change (a full rebuild, updates, deletions): operation `overwrite`.
    Overwrite,
}

impl ReplaceKind {
    fn operation(self) -> Operation {
        match self {
            ReplaceKind::Rewrite => Operation::Replace,
            ReplaceKind::Overwrite => Operation::Overwrite,
        }
    }
}

/// A change to commit as one snapshot that removes and adds data files.
#[derive(Debug, Clone, Default)]
pub struct Replacement {
    /// What the change means to readers.
    pub kind: ReplaceKind,
    /// Paths of live data files to remove (as registered).
    pub remove: BTreeSet<String>,
    /// Data files to add, described for the table's current schema and spec.
    pub add: Vec<DataFile>,
    /// Table properties to set in the same commit.
    pub set_properties: HashMap<String, String>,
}

/// What a replace committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplaceSummary {
    /// The new snapshot (`None` when there was nothing to change).
    pub snapshot_id: Option<i64>,
    /// Data files removed.
    pub removed_files: usize,
    /// Rows in the removed files.
    pub removed_records: u64,
    /// Data files added.
    pub added_files: usize,
    /// Rows in the added files.
    pub added_records: u64,
    /// Manifests the new snapshot lists.
    pub manifests: usize,
}

impl Catalog {
    /// Commits `replacement` as one `replace` snapshot on the current table, retrying when
    /// another writer commits in between (each retry checks the files to remove again).
    pub async fn replace(
        &self,
        replacement: &Replacement,
    ) -> Result<(Table, ReplaceSummary), ReplaceError> {
        if replacement.remove.is_empty()
            && replacement.add.is_empty()
            && replacement.set_properties.is_empty()
        {
            let table = self.current_table().await?;
            let summary = ReplaceSummary {
                snapshot_id: None,
                removed_files: 0,
                removed_records: 0,
                added_files: 0,
                added_records: 0,
                manifests: 0,
            };
            return Ok((table, summary));
        }
        let operation = replacement.kind.operation();
        let (table, metadata, summary) = self
            .commit_staged(operation.clone(), &replacement.set_properties, async |table| {
                stage(table, replacement).await
            })
            .await?;
        tracing::info!(
            snapshot = ?summary.snapshot_id,
            removed = summary.removed_files,
            added = summary.added_files,
            manifests = summary.manifests,
            metadata,
            "committed a {} snapshot",
            operation.as_str()
        );
        Ok((table, summary))
    }

    /// Stages a snapshot on the current table with `stage` and makes it the main branch's head
    /// (setting `properties` in the same commit), staging again from the new table when another
    /// writer commits in between; a snapshot that was not committed has its files deleted.
    /// Returns the table as committed, its new metadata file and what the stage gave.
    pub(super) async fn commit_staged<T>(
        &self,
        operation: Operation,
        properties: &HashMap<String, String>,
        mut stage: impl AsyncFnMut(&Table) -> Result<Staged<T>, ReplaceError>,
    ) -> Result<(Table, String, T), ReplaceError> {
        for attempt in 1..=COMMIT_ATTEMPTS {
            let started = std::time::Instant::now();
            let table = self.current_table().await?;
            let staged = stage(&table).await?;
            let snapshot = staged.snapshot.clone();
            let props = properties.clone();
            let swap = commit_metadata(self.path(), &table, move |b| {
                let id = snapshot.snapshot_id();
                let b = b.add_snapshot(snapshot)?.set_ref(
                    MAIN_BRANCH,
                    SnapshotReference::new(id, SnapshotRetention::branch(None, None, None)),
                )?;
                if props.is_empty() { Ok(b) } else { b.set_properties(props) }
            })
            .await;
            match swap {
                Ok(Swap::Committed(metadata)) => {
                    crate::prometheus::committed(operation.as_str(), started.elapsed());
                    return Ok((self.current_table().await?, metadata, staged.outcome));
                }
                Ok(Swap::Conflict) => {
                    tracing::warn!(
                        attempt,
                        "the table changed during the {} commit; trying again",
                        operation.as_str()
                    );
                    staged.discard(&table).await;
                }
                Err(e) => {
                    staged.discard(&table).await;
                    return Err(e.into());
                }
            }
        }
        Err(ReplaceError::Busy { attempts: COMMIT_ATTEMPTS })
    }
}

impl Catalog {
    /// The table, or the refusal naming the catalog that has none.
    pub(super) async fn current_table(&self) -> Result<Table, ReplaceError> {
        self.load_table()
            .await?
            .ok_or_else(|| ReplaceError::NoTable { catalog: self.path().to_path_buf() })
    }
}

/// A snapshot written (its manifests and manifest list) but not committed, and what its stage
/// gives the caller once it is.
pub(super) struct Staged<T> {
    /// The snapshot to add.
    pub(super) snapshot: Snapshot,
    /// Every file written for it (deleted if it is not committed).
    pub(super) files: Vec<String>,
    /// What the stage reports.
    pub(super) outcome: T,
}

impl<T> Staged<T> {
    /// Deletes the files of a snapshot that was not committed.
    async fn discard(&self, table: &Table) {
        for f in &self.files {
            if let Err(e) = table.file_io().delete(f).await {
                tracing::warn!(file = %f, error = %e, "could not delete a file of an uncommitted snapshot");
            }
        }
    }
}

/// The live entries of the current snapshot, and the bytes per entry its manifests use.
struct Current {
    live: Vec<ManifestEntryRef>,
    bytes_per_entry: u64,
}

async fn current_entries(table: &Table) -> Result<Current, ReplaceError> {
    let Some(snapshot) = table.metadata().current_snapshot() else {
        return Ok(Current { live: Vec::new(), bytes_per_entry: DEFAULT_ENTRY_BYTES });
    };
    let list = table
        .manifest_list_reader(snapshot)
        .load()
        .await
        .map_err(iceberg("read the manifest list"))?;
    let manifests: Vec<ManifestFile> = list.entries().to_vec();
    let deletes = manifests.iter().filter(|m| m.content == ManifestContentType::Deletes).count();
    if deletes > 0 {
        return Err(ReplaceError::HasDeleteFiles { count: deletes });
    }
    let (bytes, entries) = manifests.iter().fold((0u64, 0u64), |(b, n), m| {
        let count = [m.added_files_count, m.existing_files_count, m.deleted_files_count]
            .iter()
            .map(|c| u64::from(c.unwrap_or(0)))
            .sum::<u64>();
        (b + m.manifest_length.max(0) as u64, n + count)
    });
    let bytes_per_entry = bytes.checked_div(entries).map_or(DEFAULT_ENTRY_BYTES, |b| b.max(1));
    let loaded = load_manifests(table, &manifests).await?;
    let live = loaded.into_iter().flat_map(|m| m.into_parts().0).filter(|e| e.is_alive()).collect();
    Ok(Current { live, bytes_per_entry })
}

/// The manifests, decoded, in the order given, several at once.
pub(super) async fn load_manifests(
    table: &Table,
    manifests: &[ManifestFile],
) -> Result<Vec<Manifest>, ReplaceError> {
    let io = table.file_io().clone();
    futures::stream::iter(manifests.iter().cloned())
        .map(|m| {
            let io = io.clone();
            async move { m.load_manifest(&io).await }
        })
        .buffered(MANIFEST_CONCURRENCY)
        .try_collect()
        .await
        .map_err(iceberg("read a manifest"))
}

/// The order merged manifests keep: by partition, then path.
pub(super) fn partition_order(a: &DataFile, b: &DataFile) -> Ordering {
    let key = |f: &DataFile| -> Vec<Option<PrimitiveLiteral>> {
        f.partition().iter().map(|v| v.and_then(|l| l.as_primitive_literal())).collect()
    };
    key(a)
        .partial_cmp(&key(b))
        .unwrap_or(Ordering::Equal)
        .then_with(|| a.file_path().cmp(b.file_path()))
}

/// One entry of the new snapshot's manifests.
#[derive(Clone)]
pub(super) enum NewEntry {
    Existing(ManifestEntryRef),
    Deleted(ManifestEntryRef),
    Added(Arc<DataFile>),
}

impl NewEntry {
    pub(super) fn file(&self) -> &DataFile {
        match self {
            NewEntry::Existing(e) | NewEntry::Deleted(e) => e.data_file(),
            NewEntry::Added(f) => f,
        }
    }
}

/// Writes the manifests and manifest list of the replace snapshot of `table`.
async fn stage(
    table: &Table,
    replacement: &Replacement,
) -> Result<Staged<ReplaceSummary>, ReplaceError> {
    let metadata = table.metadata();
    if metadata.format_version() != FormatVersion::V2 {
        return Err(ReplaceError::UnsupportedFormat(metadata.format_version()));
    }
    let current = current_entries(table).await?;
    let live_paths: HashSet<&str> = current.live.iter().map(|e| e.file_path()).collect();
    let missing: Vec<String> =
        replacement.remove.iter().filter(|p| !live_paths.contains(p.as_str())).cloned().collect();
    if !missing.is_empty() {
        return Err(ReplaceError::NotLive { paths: missing });
    }
    let mut entries: Vec<NewEntry> = current
        .live
        .iter()
        .map(|e| match replacement.remove.contains(e.file_path()) {
            true => NewEntry::Deleted(e.clone()),
            false => NewEntry::Existing(e.clone()),
        })
        .chain(replacement.add.iter().cloned().map(|f| NewEntry::Added(Arc::new(f))))
        .collect();
    entries.sort_by(|a, b| partition_order(a.file(), b.file()));

    let snapshot_id = unique_snapshot_id(metadata);
    let summary_props = summary(metadata, &entries);
    let commit = Uuid::new_v4();
    // Readers decode every entry of a manifest their partition filter keeps, live or not, so
    // the removed files' entries go in manifests of their own, small enough for that filter to
    // skip nearly all of them (after a compaction they outnumber the live ones many times).
    let (deleted, live): (Vec<NewEntry>, Vec<NewEntry>) =
        entries.into_iter().partition(|e| matches!(e, NewEntry::Deleted(_)));
    let per = |target: u64| (target / current.bytes_per_entry).max(1) as usize;
    let chunks: Vec<Vec<NewEntry>> = live
        .chunks(per(TARGET_MANIFEST_BYTES))
        .chain(deleted.chunks(per(TARGET_DELETED_MANIFEST_BYTES)))
        .map(<[NewEntry]>::to_vec)
        .collect();
    let (mut files, manifests) = write_manifests(table, snapshot_id, commit, chunks).await?;
    let entries: Vec<NewEntry> = live.into_iter().chain(deleted).collect();
    let manifest_count = manifests.len();
    let summary =
        Summary { operation: replacement.kind.operation(), additional_properties: summary_props };
    let snapshot = list_snapshot(table, snapshot_id, commit, manifests, summary).await?;
    files.push(snapshot_list_path(metadata, snapshot_id, commit));
    let mut summary = ReplaceSummary {
        snapshot_id: Some(snapshot_id),
        removed_files: 0,
        removed_records: 0,
        added_files: 0,
        added_records: 0,
        manifests: manifest_count,
    };
    for entry in &entries {
        match entry {
            NewEntry::Deleted(e) => {
                summary.removed_files += 1;
                summary.removed_records += e.data_file().record_count();
            }
            NewEntry::Added(f) => {
                summary.added_files += 1;
                summary.added_records += f.record_count();
            }
            NewEntry::Existing(_) => {}
        }
    }
    Ok(Staged { snapshot, files, outcome: summary })
}

/// Where the manifest list of snapshot `snapshot_id`, written by commit attempt `commit`, goes.
pub(super) fn snapshot_list_path(
    metadata: &TableMetadata,
    snapshot_id: i64,
    commit: Uuid,
) -> String {
    format!(
        "{}/metadata/snap-{snapshot_id}-0-{commit}.{}",
        metadata.location(),
        DataFileFormat::Avro
    )
}

/// Writes the manifest list of a new snapshot of `table` (a child of the current one) that
/// lists `manifests`, and returns the snapshot, not committed; its list is at
/// [`snapshot_list_path`].
pub(super) async fn list_snapshot(
    table: &Table,
    snapshot_id: i64,
    commit: Uuid,
    manifests: Vec<ManifestFile>,
    summary: Summary,
) -> Result<Snapshot, ReplaceError> {
    let metadata = table.metadata();
    let sequence_number = metadata.next_sequence_number();
    let list_path = snapshot_list_path(metadata, snapshot_id, commit);
    let output =
        table.file_io().new_output(&list_path).map_err(iceberg("open the manifest list"))?;
    let writer = output.writer().await.map_err(iceberg("open the manifest list"))?;
    let mut list = ManifestListWriter::v2(
        writer,
        snapshot_id,
        metadata.current_snapshot_id(),
        sequence_number,
    );
    list.add_manifests(manifests.into_iter()).map_err(iceberg("list the manifests"))?;
    list.close().await.map_err(iceberg("write the manifest list"))?;
    Ok(Snapshot::builder()
        .with_manifest_list(list_path)
        .with_snapshot_id(snapshot_id)
        .with_parent_snapshot_id(metadata.current_snapshot_id())
        .with_sequence_number(sequence_number)
        .with_summary(summary)
        .with_schema_id(metadata.current_schema_id())
        .with_timestamp_ms(chrono::Utc::now().timestamp_millis().max(metadata.last_updated_ms()))
        .build())
}

/// Writes one manifest per chunk of entries for snapshot `snapshot_id` of commit attempt
/// `commit`, several at once on the runtime's threads (encoding a manifest's entries costs
/// about as much as a small data file), and returns their paths and the manifest-list entries,
/// in chunk order.
pub(super) async fn write_manifests(
    table: &Table,
    snapshot_id: i64,
    commit: Uuid,
    chunks: Vec<Vec<NewEntry>>,
) -> Result<(Vec<String>, Vec<ManifestFile>), ReplaceError> {
    let location = table.metadata().location().to_string();
    let paths: Vec<String> =
        (0..chunks.len()).map(|n| format!("{location}/metadata/{commit}-m{n}.avro")).collect();
    let format = match chunks.is_empty() {
        true => None,
        false => ManifestFormat::of(table.metadata())
            .await
            .map_err(iceberg("read the manifest format"))?
            .map(Arc::new),
    };
    let writes = chunks.into_iter().zip(paths.clone()).map(|(entries, path)| {
        let table = table.clone();
        let format = format.clone();
        AbortOnDropHandle::new(tokio::spawn(async move {
            match format {
                Some(format) => {
                    encode_manifest(&table, &format, snapshot_id, &path, &entries).await
                }
                None => write_manifest(&table, snapshot_id, &path, &entries).await,
            }
        }))
    });
    let manifests = futures::stream::iter(writes)
        .buffered(MANIFEST_CONCURRENCY)
        .map(|joined| match joined {
            Ok(written) => written,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(ReplaceError::Cancelled),
        })
        .try_collect()
        .await?;
    Ok((paths, manifests))
}

/// How each entry is written by the snapshot `snapshot_id`: added files inherit its sequence
/// number, existing ones keep their snapshot and sequence numbers, deleted ones keep their
/// sequence numbers and are marked deleted by it, as iceberg's writer does.
fn to_write(entry: &NewEntry, snapshot_id: i64) -> EntryToWrite<'_> {
    match entry {
        NewEntry::Added(f) => EntryToWrite {
            status: ManifestStatus::Added,
            snapshot_id,
            sequence_number: None,
            file_sequence_number: None,
            file: f,
        },
        NewEntry::Existing(e) => {
            let (snap, seq, file_seq) = inherited(e);
            EntryToWrite {
                status: ManifestStatus::Existing,
                snapshot_id: snap,
                sequence_number: Some(seq),
                file_sequence_number: Some(file_seq),
                file: e.data_file(),
            }
        }
        NewEntry::Deleted(e) => {
            let (_, seq, file_seq) = inherited(e);
            EntryToWrite {
                status: ManifestStatus::Deleted,
                snapshot_id,
                sequence_number: Some(seq),
                file_sequence_number: Some(file_seq),
                file: e.data_file(),
            }
        }
    }
}

/// Writes one manifest with this crate's encoder (see [`super::manifest_encoding`]).
async fn encode_manifest(
    table: &Table,
    format: &ManifestFormat,
    snapshot_id: i64,
    path: &str,
    entries: &[NewEntry],
) -> Result<ManifestFile, ReplaceError> {
    let to_write: Vec<EntryToWrite<'_>> =
        entries.iter().map(|e| to_write(e, snapshot_id)).collect();
    let (bytes, manifest) =
        format.encode(path, snapshot_id, &to_write).map_err(iceberg("encode a manifest"))?;
    let output = table.file_io().new_output(path).map_err(iceberg("open a manifest"))?;
    output.write(bytes).await.map_err(iceberg("write a manifest"))?;
    Ok(manifest)
}

/// Writes one manifest with iceberg's writer (tables whose partition values the encoder does not
/// write).
async fn write_manifest(
    table: &Table,
    snapshot_id: i64,
    path: &str,
    entries: &[NewEntry],
) -> Result<ManifestFile, ReplaceError> {
    let metadata = table.metadata();
    let output = table.file_io().new_output(path).map_err(iceberg("open a manifest"))?;
    let mut writer = ManifestWriterBuilder::new(
        output,
        Some(snapshot_id),
        metadata.current_schema().clone(),
        metadata.default_partition_spec().as_ref().clone(),
    )
    .build_v2_data();
    for entry in entries {
        to_write(entry, snapshot_id)
            .add_to(&mut writer)
            .map_err(iceberg("add a manifest entry"))?;
    }
    writer.write_manifest_file().await.map_err(iceberg("write a manifest"))
}

/// The snapshot id and sequence numbers an entry carries once loaded (inherited values filled
/// in); a file sequence number missing from older writers falls back to the data sequence number.
fn inherited(e: &ManifestEntryRef) -> (i64, i64, i64) {
    let seq = e.sequence_number().unwrap_or(0);
    (e.snapshot_id().unwrap_or(0), seq, e.file_sequence_number.unwrap_or(seq))
}

/// A summary collector with the table's partition-summary limit.
pub(super) fn summary_collector(metadata: &TableMetadata) -> SnapshotSummaryCollector {
    let mut collector = SnapshotSummaryCollector::default();
    let limit = metadata
        .properties()
        .get(TableProperties::PROPERTY_WRITE_PARTITION_SUMMARY_LIMIT)
        .and_then(|v| v.parse().ok())
        .unwrap_or(TableProperties::PROPERTY_WRITE_PARTITION_SUMMARY_LIMIT_DEFAULT);
    collector.set_partition_summary_limit(limit);
    collector
}

/// The snapshot summary: what was added and removed (with partition summaries) and the totals
/// after the commit, counted from the entries themselves.
fn summary(metadata: &TableMetadata, entries: &[NewEntry]) -> HashMap<String, String> {
    let schema = metadata.current_schema().clone();
    let spec = metadata.default_partition_spec().clone();
    let mut collector = summary_collector(metadata);
    let (mut files, mut records, mut bytes) = (0u64, 0u64, 0u64);
    for entry in entries {
        match entry {
            NewEntry::Added(f) => collector.add_file(f, schema.clone(), spec.clone()),
            NewEntry::Deleted(e) => {
                collector.remove_file(e.data_file(), schema.clone(), spec.clone())
            }
            NewEntry::Existing(_) => {}
        }
        if !matches!(entry, NewEntry::Deleted(_)) {
            files += 1;
            records += entry.file().record_count();
            bytes += entry.file().file_size_in_bytes();
        }
    }
    let mut props = collector.build();
    for (k, v) in [
        ("total-data-files", files),
        ("total-records", records),
        ("total-files-size", bytes),
        ("total-delete-files", 0),
        ("total-position-deletes", 0),
        ("total-equality-deletes", 0),
    ] {
        props.insert(k.to_string(), v.to_string());
    }
    props
}

/// A positive snapshot id not used by the table.
pub(super) fn unique_snapshot_id(metadata: &TableMetadata) -> i64 {
    loop {
        let (a, b) = Uuid::new_v4().as_u64_pair();
        let id = ((a ^ b) >> 1) as i64;
        if id != 0 && metadata.snapshot_by_id(id).is_none() {
            return id;
        }
    }
}
