//! Removing the items the archive no longer lists: a full inventory names every item object;
//! rows whose item id (the key's file name without `.stac.json`, as for the delta) it does not
//! name are dropped by rewriting the files that hold them (copy-on-write) and committing one
//! `overwrite` snapshot. The scan reads only the `id` column of each live file.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use futures::{StreamExt, TryStreamExt};
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::arrow::ProjectionMask;
use parquet::arrow::async_reader::ParquetObjectReader;
use serde::Serialize;

use crate::catalog::DataFileInfo;
use crate::delta::id_of_key;
use crate::geoparquet::FileNamer;
use crate::hash_index::hash_id;
use crate::inventory::filter::{Filter, filter};
use crate::inventory::{InventoryError, InventoryRecord, OpenOptions};
use crate::location::Location;
use crate::rewrite::{Rewritten, RowOf, without_rows};
use crate::stores::Stores;

/// Files scanned at once.
const SCAN_CONCURRENCY: usize = 8;

/// Why a sync step failed (the table is unchanged).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The inventory could not be read.
    #[error("reading the inventory: {0}")]
    Inventory(#[from] InventoryError),
    /// A data file could not be read or written.
    #[error("data file {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

fn file_err(path: &str, e: impl std::fmt::Display) -> SyncError {
    SyncError::File { path: path.to_string(), reason: e.to_string() }
}

/// The id hashes of every `.stac.json` key of a full inventory, and how many rows could not be
/// read (a sync with unreadable rows is refused: an item listed there would look deleted).
pub async fn listed_ids(
    stores: &Arc<Stores>,
    inventory: &Location,
) -> Result<(HashSet<[u8; 16]>, u64), SyncError> {
    let stream = crate::inventory::open(stores, inventory, &OpenOptions::default());
    let (mut stream, _) = filter(stream, Filter::default());
    let mut ids = HashSet::new();
    let mut malformed = 0;
    while let Some(record) = stream.next().await {
        match record? {
            InventoryRecord::Entry(e) => {
                ids.insert(hash_id(id_of_key(&e.key)));
            }
            InventoryRecord::Malformed(m) => {
                tracing::warn!("{m}");
                malformed += 1;
            }
        }
    }
    Ok((ids, malformed))
}

/// A live file holding rows of unlisted items.
#[derive(Debug, Clone, Serialize)]
pub struct FileEdit {
    /// The file.
    pub path: String,
    /// Its rows.
    pub rows: u64,
    /// Rows of unlisted items.
    pub removed_rows: u64,
}

/// What a sync finds in the table.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncPlan {
    /// Rows in the table.
    pub table_rows: u64,
    /// Files to rewrite (or drop, when every row goes).
    pub files: Vec<FileEdit>,
    /// Rows to remove.
    pub removed_rows: u64,
    /// Distinct item ids to remove.
    #[serde(skip)]
    pub removed_ids: HashSet<[u8; 16]>,
}

/// Scans the `id` column of `files` for ids `listed` lacks.
pub async fn plan(
    stores: &Stores,
    files: &[DataFileInfo],
    listed: &HashSet<[u8; 16]>,
) -> Result<SyncPlan, SyncError> {
    let scans: Vec<(FileEdit, HashSet<[u8; 16]>)> = futures::stream::iter(files)
        .map(|f| scan(stores, f, listed))
        .buffer_unordered(SCAN_CONCURRENCY)
        .try_collect()
        .await?;
    let mut out =
        SyncPlan { table_rows: files.iter().map(|f| f.record_count).sum(), ..Default::default() };
    for (edit, ids) in scans {
        if edit.removed_rows > 0 {
            out.removed_rows += edit.removed_rows;
            out.removed_ids.extend(ids);
            out.files.push(edit);
        }
    }
    out.files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

async fn scan(
    stores: &Stores,
    file: &DataFileInfo,
    listed: &HashSet<[u8; 16]>,
) -> Result<(FileEdit, HashSet<[u8; 16]>), SyncError> {
    let path = &file.path;
    let location = Location::parse(path).map_err(|e| file_err(path, e))?;
    let target = stores.resolve(&location).map_err(|e| file_err(path, e))?;
    let reader =
        ParquetObjectReader::new(target.store, target.path).with_file_size(file.file_size_in_bytes);
    let builder =
        ParquetRecordBatchStreamBuilder::new(reader).await.map_err(|e| file_err(path, e))?;
    let id_column =
        builder.schema().index_of(crate::schema::ID).map_err(|_| file_err(path, "no id column"))?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), [id_column]);
    let mut batches = builder.with_projection(mask).build().map_err(|e| file_err(path, e))?;
    let mut edit = FileEdit { path: path.clone(), rows: 0, removed_rows: 0 };
    let mut gone = HashSet::new();
    while let Some(batch) = batches.try_next().await.map_err(|e| file_err(path, e))? {
        let ids = batch
            .column(0)
            .as_string_opt::<i32>()
            .ok_or_else(|| file_err(path, "id is not utf8"))?;
        for i in 0..ids.len() {
            edit.rows += 1;
            // Rows without an id cannot be matched with the archive: they stay.
            if ids.is_valid(i) {
                let h = hash_id(ids.value(i));
                if !listed.contains(&h) {
                    edit.removed_rows += 1;
                    gone.insert(h);
                }
            }
        }
    }
    Ok((edit, gone))
}

/// Writes the rows of `edit`'s file whose ids are listed to a new file beside it (none when no
/// row stays); returns its location.
pub async fn rewrite(
    stores: &Stores,
    edit: &FileEdit,
    listed: &HashSet<[u8; 16]>,
    namer: &FileNamer,
) -> Result<Option<Location>, SyncError> {
    if edit.removed_rows == edit.rows {
        return Ok(None);
    }
    let unlisted = |row: RowOf<'_>| !listed.contains(&hash_id(row.item.id));
    match without_rows(stores, &edit.path, unlisted, namer).await {
        Ok(Rewritten::Into { file, .. }) => Ok(Some(file)),
        Ok(Rewritten::Emptied { .. }) => Ok(None),
        // The scan found rows to remove: a file that now has none changed under the sync.
        Ok(Rewritten::Untouched) => Err(file_err(&edit.path, "changed since it was scanned")),
        Err(e) => Err(SyncError::File { path: e.path, reason: e.reason }),
    }
}
