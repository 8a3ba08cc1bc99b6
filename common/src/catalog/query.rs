//! Read-only views of the table for the CLI: snapshots, data files, and totals per partition.

use std::collections::{BTreeMap, HashMap};

use futures::{StreamExt, TryStreamExt};
use iceberg::spec::{Literal, PartitionSpec, PrimitiveLiteral};
use iceberg::table::Table;

use super::table::YEAR_PARTITION;
use crate::schema::GRID_PARTITION;

/// Manifests loaded at once when listing data files.
const MANIFEST_CONCURRENCY: usize = 8;

/// One snapshot of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Snapshot id.
    pub id: i64,
    /// Parent snapshot, if any.
    pub parent_id: Option<i64>,
    /// Commit time, milliseconds since the epoch.
    pub timestamp_ms: i64,
    /// `append`, `overwrite`, …
    pub operation: String,
    /// The summary counters (`added-data-files`, `total-records`, …).
    pub summary: BTreeMap<String, String>,
}

/// The table's snapshots, oldest first.
pub fn snapshots(table: &Table) -> Vec<SnapshotInfo> {
    let mut out: Vec<SnapshotInfo> = table
        .metadata()
        .snapshots()
        .map(|s| SnapshotInfo {
            id: s.snapshot_id(),
            parent_id: s.parent_snapshot_id(),
            timestamp_ms: s.timestamp_ms(),
            operation: s.summary().operation.as_str().to_string(),
            summary: s.summary().additional_properties.clone().into_iter().collect(),
        })
        .collect();
    out.sort_by_key(|s| (s.timestamp_ms, s.id));
    out
}

/// One live data file of the current snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFileInfo {
    /// The file URI as registered.
    pub path: String,
    /// Its `grid_partition` value (`None` for the null partition).
    pub grid_partition: Option<String>,
    /// Its calendar year (`None` for items without `datetime`).
    pub year: Option<i32>,
    /// Rows.
    pub record_count: u64,
    /// Bytes.
    pub file_size_in_bytes: u64,
}

fn partition_value<'a>(
    spec: &PartitionSpec,
    name: &str,
    values: &'a [Option<Literal>],
) -> Option<&'a PrimitiveLiteral> {
    let pos = spec.fields().iter().position(|f| f.name == name)?;
    match values.get(pos)? {
        Some(Literal::Primitive(p)) => Some(p),
        _ => None,
    }
}

/// The (cell, year) of a data file described for `table` (the null partition's cell is empty).
pub fn partition_of(table: &Table, file: &iceberg::spec::DataFile) -> crate::ids::CellYear {
    let spec = table.metadata().default_partition_spec();
    let values = file.partition().fields();
    let cell = match partition_value(spec, GRID_PARTITION, values) {
        Some(PrimitiveLiteral::String(s)) => s.clone(),
        _ => String::new(),
    };
    let year = match partition_value(spec, YEAR_PARTITION, values) {
        Some(PrimitiveLiteral::Int(y)) => Some(1970 + *y),
        _ => None,
    };
    crate::ids::CellYear::new(cell, year)
}

/// The live data files of the current snapshot, sorted by path.
pub async fn data_files(table: &Table) -> iceberg::Result<Vec<DataFileInfo>> {
    match table.metadata().current_snapshot_id() {
        Some(id) => data_files_at(table, id).await,
        None => Ok(Vec::new()),
    }
}

/// The live data files of snapshot `snapshot_id` (none when the table no longer has it), sorted
/// by path.
pub async fn data_files_at(table: &Table, snapshot_id: i64) -> iceberg::Result<Vec<DataFileInfo>> {
    let Some(snapshot) = table.metadata().snapshot_by_id(snapshot_id) else {
        return Ok(Vec::new());
    };
    let list = table.manifest_list_reader(snapshot).load().await?;
    let io = table.file_io().clone();
    let manifests: Vec<_> = futures::stream::iter(list.entries().to_vec())
        .map(|m| {
            let io = io.clone();
            async move { m.load_manifest(&io).await }
        })
        .buffer_unordered(MANIFEST_CONCURRENCY)
        .try_collect()
        .await?;
    let mut out = Vec::new();
    for manifest in manifests {
        let spec = manifest.metadata().partition_spec().clone();
        for entry in manifest.entries().iter().filter(|e| e.is_alive()) {
            let f = entry.data_file();
            let values = f.partition().fields();
            let grid_partition = match partition_value(&spec, GRID_PARTITION, values) {
                Some(PrimitiveLiteral::String(s)) => Some(s.clone()),
                _ => None,
            };
            let year = match partition_value(&spec, YEAR_PARTITION, values) {
                Some(PrimitiveLiteral::Int(y)) => Some(1970 + *y),
                _ => None,
            };
            out.push(DataFileInfo {
                path: f.file_path().to_string(),
                grid_partition,
                year,
                record_count: f.record_count(),
                file_size_in_bytes: f.file_size_in_bytes(),
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Rows, files and bytes of one (cell, year).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionTotals {
    /// The cell (`None` for the null partition).
    pub grid_partition: Option<String>,
    /// The year (`None` for items without `datetime`).
    pub year: Option<i32>,
    /// Rows.
    pub rows: u64,
    /// Files.
    pub files: u64,
    /// Bytes.
    pub bytes: u64,
}

/// Totals per (cell, year), sorted by cell then year (nulls first).
pub fn partition_totals(files: &[DataFileInfo]) -> Vec<PartitionTotals> {
    let mut by: HashMap<(Option<String>, Option<i32>), PartitionTotals> = HashMap::new();
    for f in files {
        let key = (f.grid_partition.clone(), f.year);
        let t = by.entry(key).or_insert_with(|| PartitionTotals {
            grid_partition: f.grid_partition.clone(),
            year: f.year,
            rows: 0,
            files: 0,
            bytes: 0,
        });
        t.rows += f.record_count;
        t.files += 1;
        t.bytes += f.file_size_in_bytes;
    }
    let mut out: Vec<PartitionTotals> = by.into_values().collect();
    out.sort_by(|a, b| (&a.grid_partition, a.year).cmp(&(&b.grid_partition, b.year)));
    out
}

/// The table's refs (branches and tags) and the snapshot each points at. iceberg-rust 0.10
/// keeps the map private (only one named ref can be looked up), so it is read from the
/// metadata's JSON form, which the spec fixes (`refs` → `snapshot-id`).
pub fn refs(metadata: &iceberg::spec::TableMetadata) -> Vec<(String, i64)> {
    let json = match serde_json::to_value(metadata) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the table's refs; keeping only the current snapshot");
            return Vec::new();
        }
    };
    let mut out: Vec<(String, i64)> = json
        .get("refs")
        .and_then(|r| r.as_object())
        .map(|refs| {
            refs.iter()
                .filter_map(|(name, r)| Some((name.clone(), r.get("snapshot-id")?.as_i64()?)))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}
