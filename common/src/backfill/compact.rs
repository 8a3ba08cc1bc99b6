//! Phase 3: the staged rows of one (cell, year) merged into GeoParquet data files.
//!
//! Everything happens on Arrow arrays: the staged batches are concatenated, duplicates of an
//! item id are dropped, the survivors are sorted and written in slices of at most
//! `compact_rows` rows, straight into the warehouse Hive folder under names from the attempt's
//! [`FileNamer`].
//!
//! Duplicates (the same item, (collection, id), staged by two chunks, or by a chunk ingested
//! twice; one id in two collections is two items) are resolved
//! to the row with the most recent version: `updated`, else when its object was last modified
//! (staged beside the rows); a missing version is older than any. On a tie
//! the row read last wins: the later file in the `staged` list, and within a file the later
//! row. Rows without an id are all kept. Sorting is by (platform, datetime), a missing platform
//! as the empty string and a missing datetime first, ties in input order — the order the
//! incremental writer uses (`fanout::sort_rows`).
//!
//! The whole (cell, year) is held in memory (about twice its Arrow size at the peak), since
//! duplicates can sit anywhere in it.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::compute::{
    SortColumn, SortOptions, concat_batches, lexsort_to_indices, take_record_batch,
};
use arrow::datatypes::TimestampMicrosecondType;
use arrow_array::{ArrayRef, RecordBatch, StringArray, UInt32Array};
use arrow_schema::ArrowError;
use futures::StreamExt;

use super::object_times::{self, ObjectTimes};
use crate::dedup::later_copy_wins;
use crate::geoparquet::{
    FileNamer, Footer, GeoSummary, WriteError, WriterOptions, WrittenFile, write_batches,
};
use crate::ids::CellYear;
use crate::ids::ItemKey;
use crate::location::Location;
use crate::schema;
use crate::stac::datetime::utc_year;
use crate::staging::{OBJECT_MODIFIED, StagingError, read_staged_with_times, staging_schema};
use crate::stores::Stores;

/// Staged files read at once. Each read waits a round trip at S3's latency, so a partition
/// staged by many chunks would otherwise wait on reads, not on the CPU.
const STAGED_READS: usize = 16;

/// Why a (cell, year) could not be compacted.
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    /// A staged file could not be read.
    #[error(transparent)]
    Staging(#[from] StagingError),
    /// A data file could not be written.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// A staged file holds a row of another (cell, year): the task was given a wrong list.
    #[error("staged file {object} row {row} belongs to {found}, not {expected}")]
    WrongPartition {
        /// The staged file.
        object: String,
        /// The 0-based row in the file.
        row: usize,
        /// The (cell, year) of the row.
        found: String,
        /// The (cell, year) being compacted.
        expected: String,
    },
    /// A staged file lacks a column Phase 3 needs (a bug: staged files have the table schema).
    #[error("staged file {object} has no usable '{column}' column")]
    MissingColumn {
        /// The staged file.
        object: String,
        /// The column.
        column: &'static str,
    },
    /// An Arrow kernel failed (a bug: all inputs share one schema).
    #[error("cannot merge the rows of {partition}: {source}")]
    Arrow {
        /// The (cell, year).
        partition: String,
        /// Arrow's error.
        source: ArrowError,
    },
    /// A `compact_rows` of zero.
    #[error("compact_rows must be at least 1")]
    ZeroCompactRows,
}

impl CompactError {
    /// Whether trying again may succeed (store and network errors may; bad input will not).
    pub fn is_retryable(&self) -> bool {
        match self {
            CompactError::Staging(StagingError::Read { .. } | StagingError::Fetch { .. }) => true,
            CompactError::Write(e) => e.is_retryable(),
            _ => false,
        }
    }
}

/// What compacting one (cell, year) produced.
#[derive(Debug, Clone)]
pub struct CompactOutcome {
    /// The data files written, in row order.
    pub files: Vec<WrittenFile>,
    /// Rows read from the staged files.
    pub input_rows: u64,
    /// Rows dropped as older duplicates of an item id.
    pub duplicates_dropped: u64,
    /// Per data file holding items without `updated`, their objects' last-modified times.
    pub object_times: Vec<ObjectTimes>,
}

impl CompactOutcome {
    /// Rows written in all files.
    pub fn output_rows(&self) -> u64 {
        self.files.iter().map(|f| f.rows as u64).sum()
    }
}

/// Compacts the staged files of `partition` into data files of at most `compact_rows` rows
/// under `<warehouse>/grid_partition=<cell>/year=<year>/`. On error, the files this call wrote
/// are deleted (best effort) before the error is returned.
pub async fn compact_partition(
    stores: &Stores,
    partition: &CellYear,
    staged: &[Location],
    warehouse: &Location,
    namer: &FileNamer,
    compact_rows: usize,
    options: &WriterOptions,
) -> Result<CompactOutcome, CompactError> {
    if compact_rows == 0 {
        return Err(CompactError::ZeroCompactRows);
    }
    let arrow_err =
        |source: ArrowError| CompactError::Arrow { partition: partition.to_string(), source };
    let batches = read_all(stores, partition, staged).await?;
    let all = concat_batches(&staging_schema(), &batches).map_err(arrow_err)?;
    drop(batches);
    let input_rows = all.num_rows() as u64;
    let kept = newest_per_id(&all).map_err(arrow_err)?;
    let duplicates_dropped = input_rows - kept.len() as u64;
    let order = sorted(&all, kept).map_err(arrow_err)?;
    let rows = take_record_batch(&all, &order).map_err(arrow_err)?;
    drop(all);
    let table_columns: Vec<usize> = (0..schema::arrow_schema().fields().len()).collect();
    let times = rows.column(table_columns.len()).clone();
    let rows = rows.project(&table_columns).map_err(arrow_err)?;
    let files =
        write_slices(stores, partition, &rows, warehouse, namer, compact_rows, options).await?;
    let object_times = times_of(&files, &rows, &times).map_err(arrow_err)?;
    tracing::debug!(%partition, input_rows, duplicates_dropped, files = files.len(), "compacted");
    Ok(CompactOutcome { files, input_rows, duplicates_dropped, object_times })
}

/// The object times of each written file's items without `updated` (files hold consecutive
/// slices of `rows`).
fn times_of(
    files: &[WrittenFile],
    rows: &RecordBatch,
    times: &ArrayRef,
) -> Result<Vec<ObjectTimes>, ArrowError> {
    let mut out = Vec::new();
    let mut offset = 0;
    for file in files {
        let slice = rows.slice(offset, file.rows);
        out.extend(object_times::of_rows(&file.location, &slice, &times.slice(offset, file.rows))?);
        offset += file.rows;
    }
    Ok(out)
}

/// Every batch of every staged file, in list order, each checked to hold only `partition`.
async fn read_all(
    stores: &Stores,
    partition: &CellYear,
    staged: &[Location],
) -> Result<Vec<RecordBatch>, CompactError> {
    let reads = futures::stream::iter(staged).map(|location| async move {
        let batches = read_staged_with_times(stores, location).await?;
        check_partition(location, &batches, partition)?;
        Ok::<_, CompactError>(batches)
    });
    let mut results = reads.buffered(STAGED_READS);
    let mut out = Vec::new();
    while let Some(batches) = results.next().await {
        out.extend(batches?);
    }
    Ok(out)
}

fn check_partition(
    location: &Location,
    batches: &[RecordBatch],
    expected: &CellYear,
) -> Result<(), CompactError> {
    let missing = |column| CompactError::MissingColumn { object: location.to_string(), column };
    let mut row_base = 0;
    for batch in batches {
        let cells = batch
            .column_by_name(schema::GRID_PARTITION)
            .and_then(|c| c.as_string_opt::<i32>())
            .ok_or_else(|| missing(schema::GRID_PARTITION))?;
        let times = batch
            .column_by_name(schema::DATETIME)
            .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>())
            .ok_or_else(|| missing(schema::DATETIME))?;
        for row in 0..batch.num_rows() {
            let cell = if cells.is_valid(row) { cells.value(row) } else { "" };
            let year = times.is_valid(row).then(|| utc_year(times.value(row))).flatten();
            if cell != expected.cell || year != expected.year {
                return Err(CompactError::WrongPartition {
                    object: location.to_string(),
                    row: row_base + row,
                    found: CellYear::new(cell, year).to_string(),
                    expected: expected.to_string(),
                });
            }
        }
        row_base += batch.num_rows();
    }
    Ok(())
}

/// Indices (ascending) of the rows to keep: per item, (collection, id), the newest version
/// (`updated`, else the object's time), ties to the later row (the rule of [`crate::dedup`]);
/// every row without an id.
fn newest_per_id(all: &RecordBatch) -> Result<Vec<u32>, ArrowError> {
    let column = |name: &str| {
        all.column_by_name(name)
            .cloned()
            .ok_or_else(|| ArrowError::SchemaError(format!("no column '{name}'")))
    };
    let ids = column("id")?;
    let ids = ids.as_string_opt::<i32>().ok_or_else(|| not_typed("id"))?;
    let collections = column("collection")?;
    let collections = collections.as_string_opt::<i32>().ok_or_else(|| not_typed("collection"))?;
    let key = |i: usize| ItemKey {
        collection: collections.is_valid(i).then(|| collections.value(i)),
        id: ids.value(i),
    };
    let updated = column("updated")?;
    let updated = updated
        .as_primitive_opt::<TimestampMicrosecondType>()
        .ok_or_else(|| not_typed("updated"))?;
    let times = column(OBJECT_MODIFIED)?;
    let times = times
        .as_primitive_opt::<TimestampMicrosecondType>()
        .ok_or_else(|| not_typed(OBJECT_MODIFIED))?;
    let when = |i: usize| {
        let at = |c: &arrow_array::TimestampMicrosecondArray| c.is_valid(i).then(|| c.value(i));
        at(updated).or_else(|| at(times))
    };
    let mut winner: HashMap<ItemKey<'_>, u32> = HashMap::with_capacity(all.num_rows());
    let mut kept = Vec::new();
    for i in 0..all.num_rows() {
        let row = u32::try_from(i).map_err(|_| too_many(all.num_rows()))?;
        if !ids.is_valid(i) {
            kept.push(row);
            continue;
        }
        match winner.entry(key(i)) {
            Entry::Vacant(v) => {
                v.insert(row);
            }
            Entry::Occupied(mut o) => {
                if later_copy_wins(when(i), when(*o.get() as usize)) {
                    o.insert(row);
                }
            }
        }
    }
    kept.extend(winner.into_values());
    kept.sort_unstable();
    Ok(kept)
}

fn not_typed(column: &str) -> ArrowError {
    ArrowError::SchemaError(format!("column '{column}' does not have the table schema's type"))
}

fn too_many(rows: usize) -> ArrowError {
    ArrowError::ComputeError(format!("{rows} rows in one (cell, year) is more than 2^32"))
}

/// The rows of `kept` in (platform, datetime) order, ties in their current order.
fn sorted(all: &RecordBatch, kept: Vec<u32>) -> Result<UInt32Array, ArrowError> {
    let kept = UInt32Array::from(kept);
    let pick = |name: &str| -> Result<ArrayRef, ArrowError> {
        let c = all
            .column_by_name(name)
            .ok_or_else(|| ArrowError::SchemaError(format!("no column '{name}'")))?;
        arrow::compute::take(c.as_ref(), &kept, None)
    };
    let platform = pick("platform")?;
    let platform = platform.as_string_opt::<i32>().ok_or_else(|| not_typed("platform"))?;
    // The incremental writer sorts a missing platform as "", so do the same.
    let platform: ArrayRef =
        Arc::new(platform.iter().map(|p| Some(p.unwrap_or(""))).collect::<StringArray>());
    let position: ArrayRef = Arc::new(UInt32Array::from_iter_values(0..kept.len() as u32));
    let ascending = |nulls_first| Some(SortOptions { descending: false, nulls_first });
    let keys = [
        SortColumn { values: platform, options: ascending(true) },
        SortColumn { values: pick(schema::DATETIME)?, options: ascending(true) },
        SortColumn { values: position, options: ascending(true) },
    ];
    let order = lexsort_to_indices(&keys, None)?;
    let picked = arrow::compute::take(&kept, &order, None)?;
    picked
        .as_primitive_opt::<arrow::datatypes::UInt32Type>()
        .cloned()
        .ok_or_else(|| not_typed("row index"))
}

/// Writes `rows` as files of at most `compact_rows` rows; all or nothing.
async fn write_slices(
    stores: &Stores,
    partition: &CellYear,
    rows: &RecordBatch,
    warehouse: &Location,
    namer: &FileNamer,
    compact_rows: usize,
    options: &WriterOptions,
) -> Result<Vec<WrittenFile>, CompactError> {
    let folder = warehouse.join(&partition.hive_dir());
    let mut files: Vec<WrittenFile> = Vec::new();
    let mut offset = 0;
    while offset < rows.num_rows() {
        let len = compact_rows.min(rows.num_rows() - offset);
        let slice = rows.slice(offset, len);
        let location = folder.join(&namer.next_name());
        let geo = GeoSummary::of_batches(std::slice::from_ref(&slice)).to_json();
        match write_batches(stores, &location, &[slice], &geo, options).await {
            Ok((metadata, bytes)) => match Footer::keep(metadata) {
                Ok(footer) => files.push(WrittenFile {
                    location,
                    partition: partition.clone(),
                    rows: len,
                    bytes,
                    footer,
                }),
                Err(source) => {
                    let mut written: Vec<Location> =
                        files.into_iter().map(|f| f.location).collect();
                    let shown = location.to_string();
                    written.push(location);
                    stores.delete_all(&written, "an abandoned output").await;
                    return Err(WriteError::Parquet { location: shown, source }.into());
                }
            },
            Err(e) => {
                let mut written: Vec<Location> = files.into_iter().map(|f| f.location).collect();
                written.push(location);
                stores.delete_all(&written, "an abandoned output").await;
                return Err(e.into());
            }
        }
        offset += len;
    }
    Ok(files)
}
