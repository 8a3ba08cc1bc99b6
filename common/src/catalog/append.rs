//! The append commit: one `append` snapshot that lists the current snapshot's manifests as they
//! are and the added files in new manifests, sorted by partition and cut at about
//! [`TARGET_MANIFEST_BYTES`], written several at once.
//!
//! Iceberg's fast append writes all of a commit's files into one manifest in the order given:
//! a table built by appends then has manifests that each span every partition, and a query
//! naming one cell decodes all of them. Sorted and cut, a partition filter skips most.

use std::collections::HashMap;
use std::sync::Arc;

use iceberg::spec::{DataFile, FormatVersion, ManifestFile, Operation, Summary, TableMetadata};
use iceberg::table::Table;
use uuid::Uuid;

use super::Catalog;
use super::replace::{
    NewEntry, ReplaceError, Staged, TARGET_MANIFEST_BYTES, iceberg, list_snapshot, partition_order,
    snapshot_list_path, summary_collector, unique_snapshot_id, write_manifests,
};

/// Size assumed per added entry when sizing manifests (entries of the table's 35 columns'
/// statistics measure about 1 KB to 2 KB).
const ENTRY_BYTES: u64 = 2_048;

/// Totals a snapshot summary carries, each with the summary key that adds to it.
const TOTALS: [(&str, &str); 6] = [
    ("total-data-files", "added-data-files"),
    ("total-records", "added-records"),
    ("total-files-size", "added-files-size"),
    ("total-delete-files", "added-delete-files"),
    ("total-position-deletes", "added-position-deletes"),
    ("total-equality-deletes", "added-equality-deletes"),
];

impl Catalog {
    /// Commits `files` (described for the current schema and spec) as one `append` snapshot,
    /// retrying when another writer commits in between; returns the table as committed and the
    /// new snapshot's id.
    pub async fn append(&self, files: Vec<DataFile>) -> Result<(Table, i64), ReplaceError> {
        let mut added: Vec<NewEntry> =
            files.into_iter().map(|f| NewEntry::Added(Arc::new(f))).collect();
        added.sort_by(|a, b| partition_order(a.file(), b.file()));
        let no_properties = HashMap::new();
        let (table, _, id) = self
            .commit_staged(Operation::Append, &no_properties, async |table| {
                stage(table, &added).await
            })
            .await?;
        Ok((table, id))
    }
}

/// Writes the manifests of `added` (sorted by partition) and the list of a snapshot of
/// `table` that holds them after the current snapshot's manifests.
async fn stage(table: &Table, added: &[NewEntry]) -> Result<Staged<i64>, ReplaceError> {
    let metadata = table.metadata();
    if metadata.format_version() != FormatVersion::V2 {
        return Err(ReplaceError::UnsupportedFormat(metadata.format_version()));
    }
    let mut manifests: Vec<ManifestFile> = match metadata.current_snapshot() {
        Some(current) => table
            .manifest_list_reader(current)
            .load()
            .await
            .map_err(iceberg("read the manifest list"))?
            .entries()
            .to_vec(),
        None => Vec::new(),
    };
    let snapshot_id = unique_snapshot_id(metadata);
    let commit = Uuid::new_v4();
    let per_manifest = (TARGET_MANIFEST_BYTES / ENTRY_BYTES).max(1) as usize;
    let chunks = added.chunks(per_manifest).map(<[NewEntry]>::to_vec).collect();
    let (mut files, written) = write_manifests(table, snapshot_id, commit, chunks).await?;
    manifests.extend(written);
    let summary = Summary {
        operation: Operation::Append,
        additional_properties: summary(metadata, added.iter().map(NewEntry::file)),
    };
    let snapshot = list_snapshot(table, snapshot_id, commit, manifests, summary).await?;
    files.push(snapshot_list_path(metadata, snapshot_id, commit));
    tracing::debug!(files = added.len(), manifests = files.len() - 1, "append staged");
    Ok(Staged { snapshot, files, outcome: snapshot_id })
}

/// The summary of an append: what it adds (with partition summaries) and the table's totals
/// after it, from the current snapshot's totals. A total the current snapshot does not carry
/// stays unknown (left out), as Iceberg's own writers do.
fn summary<'a>(
    metadata: &TableMetadata,
    added: impl Iterator<Item = &'a DataFile>,
) -> HashMap<String, String> {
    let schema = metadata.current_schema();
    let spec = metadata.default_partition_spec();
    let mut collector = summary_collector(metadata);
    for file in added {
        collector.add_file(file, schema.clone(), spec.clone());
    }
    let mut props = collector.build();
    let previous = metadata.current_snapshot().map(|s| &s.summary().additional_properties);
    let number = |map: &HashMap<String, String>, key: &str| map.get(key)?.parse::<u64>().ok();
    for (total, added) in TOTALS {
        let added = number(&props, added).unwrap_or(0);
        let before = match previous {
            None => Some(0),
            Some(p) => number(p, total),
        };
        if let Some(before) = before {
            props.insert(total.to_string(), (before + added).to_string());
        }
    }
    props
}
