//! Orphan removal: files in the table's data folders (`grid_partition=…` under the warehouse)
//! and metadata folder that no snapshot, metadata log entry or statistics file references, and
//! that are older than a threshold. The age guard keeps it from deleting what a running writer
//! wrote but has not committed yet; a run that died before registering its files leaves such
//! orphans, and this is their sweep. Nothing else under the warehouse is touched (staging, the
//! hash index, files of other layouts).

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{MaintenanceError, delete_listed, metadata_folder};
use crate::catalog::{Catalog, Entries, reachable};

/// What an orphan removal deleted (or, in a dry run, would delete).
#[derive(Debug, Clone, Default, Serialize)]
pub struct OrphanOutcome {
    /// Nothing was changed.
    pub dry_run: bool,
    /// Files of the table's folders looked at.
    pub scanned: usize,
    /// Orphans deleted.
    pub deleted: Vec<String>,
    /// Unreferenced files kept because they are newer than the threshold.
    pub too_recent: usize,
    /// Orphans that could not be deleted (logged).
    pub not_deleted: usize,
}

/// Whether `path` is a data file of the table's layout or a file of its metadata folder.
fn is_table_file(path: &str, metadata_prefix: &str) -> bool {
    let data = path.ends_with(".parquet") && path.contains("/grid_partition=");
    data || path.starts_with(metadata_prefix)
}

/// Deletes the table's files that nothing references and that were last written before
/// `older_than`; with `dry_run`, only says which.
pub async fn remove_orphans(
    catalog: &Catalog,
    older_than: DateTime<Utc>,
    dry_run: bool,
) -> Result<OrphanOutcome, MaintenanceError> {
    let table = catalog
        .load_table()
        .await?
        .ok_or_else(|| MaintenanceError::NoTable { catalog: catalog.path().to_path_buf() })?;
    let metadata = table.metadata();
    let ids: Vec<i64> = metadata.snapshots().map(|s| s.snapshot_id()).collect();
    let referenced = reachable(&table, ids, Entries::All)
        .await
        .map_err(MaintenanceError::iceberg("read the snapshots' manifests"))?;
    let mut named: HashSet<String> =
        metadata.metadata_log().iter().map(|l| l.metadata_file.clone()).collect();
    named.extend(table.metadata_location().map(str::to_string));
    named.extend(metadata.statistics_iter().map(|s| s.statistics_path.clone()));
    named.extend(metadata.partition_statistics_iter().map(|s| s.statistics_path.clone()));

    let metadata_prefix = format!("{}/", metadata_folder(metadata.location())?.uri());
    let listed = catalog.stores().list_listed(catalog.warehouse()).await?;
    let mut outcome = OrphanOutcome { dry_run, ..Default::default() };
    for object in listed {
        let path = object.location.uri();
        if !is_table_file(&path, &metadata_prefix) {
            continue;
        }
        outcome.scanned += 1;
        if referenced.contains(&path) || named.contains(&path) {
            continue;
        }
        if object.last_modified >= older_than {
            outcome.too_recent += 1;
            continue;
        }
        outcome.deleted.push(path);
    }
    outcome.deleted.sort();
    if !dry_run && !outcome.deleted.is_empty() {
        tracing::info!(files = outcome.deleted.len(), "deleting files no snapshot references");
        outcome.not_deleted =
            delete_listed(catalog, &outcome.deleted, "an orphaned table file").await?;
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_data_files_of_the_table_layout_and_metadata_files_are_considered() {
        let meta = "s3://b/wh/earthcatalog/stac_items/metadata/";
        assert!(is_table_file("s3://b/wh/grid_partition=8a/year=2020/x.parquet", meta));
        assert!(is_table_file("s3://b/wh/earthcatalog/stac_items/metadata/snap-1.avro", meta));
        assert!(!is_table_file("s3://b/wh/staging/run/ingest/chunk.parquet", meta));
        assert!(!is_table_file("s3://b/wh/grid_partition=8a/year=2020/notes.txt", meta));
        assert!(!is_table_file("s3://b/wh_id_hashes.parquet", meta));
    }
}
