//! Which files snapshots reference: their manifest lists, manifests and data files. Snapshot
//! expiry deletes what only expired snapshots reached; orphan removal deletes what no snapshot
//! reaches.

use std::collections::{HashMap, HashSet};

use futures::{StreamExt, TryStreamExt};
use iceberg::spec::{ManifestFile, ManifestStatus};
use iceberg::table::Table;

/// Manifest lists and manifests read at once.
const CONCURRENCY: usize = 8;

/// The files some snapshots reference.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reachable {
    /// Manifest lists (one per snapshot).
    pub manifest_lists: HashSet<String>,
    /// Manifests the lists name.
    pub manifests: HashSet<String>,
    /// Data files the manifests name.
    pub data_files: HashSet<String>,
}

impl Reachable {
    /// Every path, whatever its kind.
    pub fn contains(&self, path: &str) -> bool {
        self.data_files.contains(path)
            || self.manifests.contains(path)
            || self.manifest_lists.contains(path)
    }
}

/// Which data file entries count as referenced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entries {
    /// Only files live in the snapshot (added or existing): what a reader of it opens.
    Live,
    /// Every file named, deleted entries too.
    All,
}

/// The files the snapshots `ids` of `table` reference (ids not in the table are ignored).
/// Each manifest is read once, however many snapshots share it.
pub async fn reachable(
    table: &Table,
    ids: impl IntoIterator<Item = i64>,
    entries: Entries,
) -> iceberg::Result<Reachable> {
    let metadata = table.metadata();
    let snapshots: Vec<_> = ids.into_iter().filter_map(|id| metadata.snapshot_by_id(id)).collect();
    let mut out = Reachable::default();
    let lists: Vec<Vec<ManifestFile>> = futures::stream::iter(snapshots.iter())
        .map(|s| async move {
            let list = table.manifest_list_reader(s).load().await?;
            Ok::<_, iceberg::Error>(list.entries().to_vec())
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    out.manifest_lists = snapshots.iter().map(|s| s.manifest_list().to_string()).collect();
    let mut unique: HashMap<String, ManifestFile> = HashMap::new();
    for m in lists.into_iter().flatten() {
        unique.entry(m.manifest_path.clone()).or_insert(m);
    }
    out.manifests = unique.keys().cloned().collect();
    let io = table.file_io().clone();
    let files: Vec<Vec<String>> = futures::stream::iter(unique.into_values())
        .map(|m| {
            let io = io.clone();
            async move {
                let manifest = m.load_manifest(&io).await?;
                Ok::<_, iceberg::Error>(
                    manifest
                        .entries()
                        .iter()
                        .filter(|e| {
                            entries == Entries::All || e.status() != ManifestStatus::Deleted
                        })
                        .map(|e| e.file_path().to_string())
                        .collect(),
                )
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    out.data_files = files.into_iter().flatten().collect();
    Ok(out)
}
