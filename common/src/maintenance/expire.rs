//! Snapshot expiry: snapshots older than a cutoff leave the table's metadata (the newest
//! `retain_last` of the main branch, every ref's head and everything newer than the cutoff
//! stay), and then the files only they reached are deleted: data files no retained snapshot
//! reads, manifests and manifest lists no retained snapshot lists, and metadata JSON files the
//! table's metadata log no longer names (`write.metadata.previous-versions-max`). Files are
//! deleted only after the metadata commit, so a failure leaves extra files, never a snapshot
//! whose files are gone.

use std::collections::{BTreeSet, HashSet};

use iceberg::spec::{TableMetadata, TableProperties};
use serde::Serialize;

use super::{MaintenanceError, delete_listed, metadata_files};
use crate::catalog::{Catalog, Entries, Swap, commit_metadata, reachable};

/// Which snapshots go.
#[derive(Debug, Clone, Copy)]
pub struct ExpirePolicy {
    /// Snapshots committed before this (ms since the epoch) may expire.
    pub cutoff_ms: i64,
    /// The newest this many snapshots of the main branch always stay (at least 1).
    pub retain_last: usize,
}

/// What an expiry removed (or, in a dry run, would remove).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ExpireOutcome {
    /// Nothing was changed.
    pub dry_run: bool,
    /// Snapshots expired.
    pub expired_snapshots: Vec<i64>,
    /// Snapshots left.
    pub retained_snapshots: usize,
    /// Data files deleted.
    pub data_files: Vec<String>,
    /// Manifests deleted.
    pub manifests: Vec<String>,
    /// Manifest lists deleted.
    pub manifest_lists: Vec<String>,
    /// Metadata JSON files deleted.
    pub metadata_files: Vec<String>,
    /// Files that could not be deleted (logged; a later run or remove-orphans retries).
    pub not_deleted: usize,
    /// Manifests of removed files only, written by snapshots older than the cutoff, that the
    /// current snapshot stops listing (a snapshot without them is committed first, so the one
    /// that wrote them can expire in the same run; a dry run counts them and lists the
    /// snapshots that expire without that step).
    pub delete_only_manifests: usize,
}

/// The snapshots of `metadata` that `policy` expires, sorted.
pub fn to_expire(metadata: &TableMetadata, policy: &ExpirePolicy) -> Vec<i64> {
    let refs = crate::catalog::refs(metadata);
    let mut keep: HashSet<i64> = refs.iter().map(|(_, id)| *id).collect();
    let mut ancestors_of_refs = HashSet::new();
    for (name, head) in &refs {
        let mut next = Some(*head);
        let mut kept = 0usize;
        while let Some(id) = next {
            let Some(snapshot) = metadata.snapshot_by_id(id) else { break };
            ancestors_of_refs.insert(id);
            let main = name == iceberg::spec::MAIN_BRANCH;
            // Other branches keep their whole history: we never write them and do not know
            // their owners' retention.
            if !main
                || kept < policy.retain_last.max(1)
                || snapshot.timestamp_ms() >= policy.cutoff_ms
            {
                keep.insert(id);
            }
            kept += 1;
            next = snapshot.parent_snapshot_id();
        }
    }
    if let Some(current) = metadata.current_snapshot_id() {
        keep.insert(current);
    }
    let mut out: Vec<i64> = metadata
        .snapshots()
        .filter(|s| !keep.contains(&s.snapshot_id()))
        .filter(|s| {
            ancestors_of_refs.contains(&s.snapshot_id()) || s.timestamp_ms() < policy.cutoff_ms
        })
        .map(|s| s.snapshot_id())
        .collect();
    out.sort_unstable();
    out
}

/// Expires snapshots of the catalog's table by `policy`, then deletes the files only they
/// reached; with `dry_run`, only says what would go.
pub async fn expire_snapshots(
    catalog: &Catalog,
    policy: &ExpirePolicy,
    dry_run: bool,
) -> Result<ExpireOutcome, MaintenanceError> {
    let delete_only_manifests = if dry_run {
        catalog.delete_only_manifests(policy.cutoff_ms).await?.len()
    } else {
        catalog.drop_delete_only_manifests(policy.cutoff_ms).await?.map_or(0, |d| d.manifests)
    };
    let table = catalog
        .load_table()
        .await?
        .ok_or_else(|| MaintenanceError::NoTable { catalog: catalog.path().to_path_buf() })?;
    let metadata = table.metadata();
    let expired = to_expire(metadata, policy);
    let retained: Vec<i64> = metadata
        .snapshots()
        .map(|s| s.snapshot_id())
        .filter(|id| expired.binary_search(id).is_err())
        .collect();
    let kept = reachable(&table, retained.iter().copied(), Entries::Live)
        .await
        .map_err(MaintenanceError::iceberg("read the retained snapshots' manifests"))?;
    let gone = reachable(&table, expired.iter().copied(), Entries::All)
        .await
        .map_err(MaintenanceError::iceberg("read the expired snapshots' manifests"))?;
    let only_gone = |all: &HashSet<String>, keep: &HashSet<String>| -> Vec<String> {
        all.difference(keep).cloned().collect::<BTreeSet<_>>().into_iter().collect()
    };
    let mut outcome = ExpireOutcome {
        dry_run,
        retained_snapshots: retained.len(),
        data_files: only_gone(&gone.data_files, &kept.data_files),
        manifests: only_gone(&gone.manifests, &kept.manifests),
        manifest_lists: only_gone(&gone.manifest_lists, &kept.manifest_lists),
        expired_snapshots: expired.clone(),
        delete_only_manifests,
        ..Default::default()
    };
    let after = if dry_run || expired.is_empty() {
        table.clone()
    } else {
        let ids = expired.clone();
        match commit_metadata(catalog.path(), &table, move |b| Ok(b.remove_snapshots(&ids))).await?
        {
            Swap::Committed(_) => catalog.load_table().await?.ok_or_else(|| {
                MaintenanceError::NoTable { catalog: catalog.path().to_path_buf() }
            })?,
            Swap::Conflict => return Err(MaintenanceError::Changed),
        }
    };
    outcome.metadata_files = stale_metadata_files(catalog, &after).await?;
    if dry_run {
        return Ok(outcome);
    }
    tracing::info!(
        snapshots = expired.len(),
        "expired snapshots; deleting the files only they reached"
    );
    let doomed: Vec<&String> = outcome
        .data_files
        .iter()
        .chain(&outcome.manifests)
        .chain(&outcome.manifest_lists)
        .chain(&outcome.metadata_files)
        .collect();
    outcome.not_deleted =
        delete_listed(catalog, doomed, "a file only expired snapshots reached").await?;
    Ok(outcome)
}

/// Metadata JSON files of the table older than every one its metadata log keeps (after the
/// log was trimmed to `write.metadata.previous-versions-max` entries).
async fn stale_metadata_files(
    catalog: &Catalog,
    table: &iceberg::table::Table,
) -> Result<Vec<String>, MaintenanceError> {
    let metadata = table.metadata();
    let max = metadata
        .properties()
        .get(TableProperties::PROPERTY_METADATA_PREVIOUS_VERSIONS_MAX)
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(TableProperties::PROPERTY_METADATA_PREVIOUS_VERSIONS_MAX_DEFAULT);
    let log = metadata.metadata_log();
    let mut kept: Vec<&str> =
        log.iter().rev().take(max).map(|l| l.metadata_file.as_str()).collect();
    if let Some(current) = table.metadata_location() {
        kept.push(current);
    }
    let oldest_kept = kept.iter().filter_map(|p| metadata_version(p)).min();
    let Some(oldest_kept) = oldest_kept else { return Ok(Vec::new()) };
    let all = metadata_files(catalog, metadata.location()).await?;
    Ok(all
        .into_iter()
        .filter(|p| !kept.contains(&p.as_str()))
        .filter(|p| metadata_version(p).is_some_and(|v| v < oldest_kept))
        .collect())
}

/// The version number of a metadata file (`00012-<uuid>.metadata.json` → 12).
pub fn metadata_version(path: &str) -> Option<u64> {
    let name = path.rsplit('/').next()?;
    if !name.ends_with(".metadata.json") {
        return None;
    }
    name.split_once('-')?.0.parse().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn metadata_versions_come_from_the_file_name() {
        assert_eq!(metadata_version("s3://b/t/metadata/00012-ab-cd.metadata.json"), Some(12));
        assert_eq!(metadata_version("file:///t/metadata/00003-x.gz.metadata.json"), Some(3));
        assert_eq!(metadata_version("file:///t/metadata/snap-1-0-x.avro"), None);
    }
}
