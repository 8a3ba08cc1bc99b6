//! Dropping the manifests that only record removed files from the current snapshot.
//!
//! A replace (compaction, updates) records the files it removes as `DELETED` entries, in
//! manifests of their own ([`super::replace`]). Scans never use those entries, yet every later
//! fast append carries the manifests forward (iceberg-rust keeps them, apache/iceberg-rust#2148),
//! so every reader keeps decoding them: after compacting 16,856 files into 963, a scan of the
//! whole table decoded 17 MB of removed entries beside 1 MB of live ones. A snapshot that lists
//! the same manifests less those (operation `replace`, no data change, as Iceberg's
//! rewrite-manifests action commits) ends that; the snapshots before it keep theirs. It is part
//! of expiring the snapshots that removed the files: only manifests written by a snapshot older
//! than the expiry's cutoff go.
//!
//! Only manifests whose removed files are live in no other listed manifest are dropped: our
//! replace rewrites every live entry, so that holds for our tables, but a table another writer
//! changed might record a removal beside a manifest that still lists the file.

use std::collections::{HashMap, HashSet};

use iceberg::spec::{
    MAIN_BRANCH, ManifestContentType, ManifestFile, Operation, Snapshot, SnapshotReference,
    SnapshotRetention, Summary,
};
use iceberg::table::Table;
use uuid::Uuid;

use super::commit::{Swap, commit_metadata};
use super::replace::{
    COMMIT_ATTEMPTS, iceberg, list_snapshot, load_manifests, snapshot_list_path, unique_snapshot_id,
};
use super::{Catalog, ReplaceError};

/// Summary properties a snapshot that changes no data carries over from its parent.
const TOTALS: [&str; 6] = [
    "total-data-files",
    "total-records",
    "total-files-size",
    "total-delete-files",
    "total-position-deletes",
    "total-equality-deletes",
];

/// What dropping the delete-only manifests committed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DroppedManifests {
    /// The snapshot that lists the manifests without them.
    pub snapshot_id: i64,
    /// Manifests no longer listed.
    pub manifests: usize,
    /// Removed-file entries they held.
    pub entries: u64,
}

impl Catalog {
    /// The current snapshot's manifests that hold only removed files, written by snapshots
    /// committed before `cutoff_ms`, that can go (see the module); changes nothing.
    pub async fn delete_only_manifests(
        &self,
        cutoff_ms: i64,
    ) -> Result<Vec<ManifestFile>, ReplaceError> {
        let table = self.current_table().await?;
        Ok(droppable(&table, cutoff_ms).await?.map(|(_, dropped)| dropped).unwrap_or_default())
    }

    /// Commits a snapshot listing the current snapshot's manifests less those that hold only
    /// removed files and were written by snapshots committed before `cutoff_ms`; `None` when
    /// there are none. Retries when another writer commits first.
    pub async fn drop_delete_only_manifests(
        &self,
        cutoff_ms: i64,
    ) -> Result<Option<DroppedManifests>, ReplaceError> {
        for attempt in 1..=COMMIT_ATTEMPTS {
            let table = self.current_table().await?;
            let Some((kept, dropped)) = droppable(&table, cutoff_ms).await? else {
                return Ok(None);
            };
            let (snapshot, list_path) = write_snapshot(&table, kept).await?;
            let snapshot_id = snapshot.snapshot_id();
            let swap = commit_metadata(self.path(), &table, move |b| {
                b.add_snapshot(snapshot)?.set_ref(
                    MAIN_BRANCH,
                    SnapshotReference::new(
                        snapshot_id,
                        SnapshotRetention::branch(None, None, None),
                    ),
                )
            })
            .await;
            let discard = async || {
                if let Err(e) = table.file_io().delete(&list_path).await {
                    tracing::warn!(file = %list_path, error = %e, "could not delete an uncommitted manifest list");
                }
            };
            match swap {
                Ok(Swap::Committed(_)) => {
                    let dropped = DroppedManifests {
                        snapshot_id,
                        manifests: dropped.len(),
                        entries: dropped.iter().map(deleted_count).sum(),
                    };
                    tracing::info!(
                        snapshot = snapshot_id,
                        manifests = dropped.manifests,
                        entries = dropped.entries,
                        "the current snapshot no longer lists manifests of removed files only"
                    );
                    return Ok(Some(dropped));
                }
                Ok(Swap::Conflict) => {
                    tracing::warn!(
                        attempt,
                        "the table changed while dropping manifests; trying again"
                    );
                    discard().await;
                }
                Err(e) => {
                    discard().await;
                    return Err(e.into());
                }
            }
        }
        Err(ReplaceError::Busy { attempts: COMMIT_ATTEMPTS })
    }
}

fn deleted_count(m: &ManifestFile) -> u64 {
    u64::from(m.deleted_files_count.unwrap_or(0))
}

/// A data manifest whose entries are all removals.
fn delete_only(m: &ManifestFile) -> bool {
    m.content == ManifestContentType::Data
        && !m.has_added_files()
        && !m.has_existing_files()
        && m.has_deleted_files()
}

/// The current snapshot's manifests split into those to keep and the delete-only ones that
/// can go; `None` when none can.
async fn droppable(
    table: &Table,
    cutoff_ms: i64,
) -> Result<Option<(Vec<ManifestFile>, Vec<ManifestFile>)>, ReplaceError> {
    let metadata = table.metadata();
    let Some(snapshot) = metadata.current_snapshot() else { return Ok(None) };
    // A snapshot already expired is older than any cutoff.
    let old = |m: &ManifestFile| {
        metadata.snapshot_by_id(m.added_snapshot_id).is_none_or(|s| s.timestamp_ms() < cutoff_ms)
    };
    let list = table
        .manifest_list_reader(snapshot)
        .load()
        .await
        .map_err(iceberg("read the manifest list"))?;
    let (candidates, mut kept): (Vec<ManifestFile>, Vec<ManifestFile>) =
        list.entries().iter().cloned().partition(|m| delete_only(m) && old(m));
    if candidates.is_empty() {
        return Ok(None);
    }
    let loaded = load_manifests(table, &kept).await?;
    let live: HashSet<String> = loaded
        .iter()
        .flat_map(|m| m.entries())
        .filter(|e| e.is_alive())
        .map(|e| e.file_path().to_string())
        .collect();
    let removals = load_manifests(table, &candidates).await?;
    let mut dropped = Vec::new();
    for (manifest, removed) in candidates.into_iter().zip(removals) {
        if removed.entries().iter().any(|e| live.contains(e.file_path())) {
            kept.push(manifest);
        } else {
            dropped.push(manifest);
        }
    }
    Ok((!dropped.is_empty()).then_some((kept, dropped)))
}

/// Writes the manifest list of a snapshot listing `manifests` over the same data as the
/// current one, and returns the snapshot and the list's path.
async fn write_snapshot(
    table: &Table,
    manifests: Vec<ManifestFile>,
) -> Result<(Snapshot, String), ReplaceError> {
    let metadata = table.metadata();
    let totals: HashMap<String, String> = metadata
        .current_snapshot()
        .map(|p| &p.summary().additional_properties)
        .into_iter()
        .flat_map(|props| props.iter())
        .filter(|(k, _)| TOTALS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let summary = Summary { operation: Operation::Replace, additional_properties: totals };
    let snapshot_id = unique_snapshot_id(metadata);
    let commit = Uuid::new_v4();
    let list_path = snapshot_list_path(metadata, snapshot_id, commit);
    match list_snapshot(table, snapshot_id, commit, manifests, summary).await {
        Ok(snapshot) => Ok((snapshot, list_path)),
        Err(e) => {
            // A list written before the failure is no snapshot's.
            let _ = table.file_io().delete(&list_path).await;
            Err(e)
        }
    }
}
