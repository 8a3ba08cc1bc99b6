//! Copy-on-write of a data file: its rows but the ones of some items, written beside it under a
//! new name. Updates drop an item's old rows this way, `sync` the rows of deleted items; the
//! caller commits the new file in place of the old one.

use arrow::array::{Array, AsArray, BooleanArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::TimestampMicrosecondType;

use crate::geoparquet::{FileNamer, GeoSummary, WriterOptions, write_batches};
use crate::ids::ItemKey;
use crate::location::Location;
use crate::staging::read_staged;
use crate::stores::Stores;

/// Why a file could not be rewritten (nothing was committed).
#[derive(Debug, thiserror::Error)]
#[error("rewriting data file {path}: {reason}")]
pub struct RewriteError {
    /// The file being read or written.
    pub path: String,
    /// What went wrong.
    pub reason: String,
}

/// What became of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewritten {
    /// No row matched: the file stays as it is.
    Untouched,
    /// The other rows were written to `file`, which replaces the old one.
    Into {
        /// The new file.
        file: Location,
        /// Rows left out.
        removed_rows: u64,
    },
    /// Every row matched: the file goes, with no replacement.
    Emptied {
        /// Rows left out.
        removed_rows: u64,
    },
}

/// What a row is of: its item and that item's version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowOf<'a> {
    /// The item.
    pub item: ItemKey<'a>,
    /// Its `updated`, microseconds.
    pub updated: Option<i64>,
}

/// Rewrites the file at `path` without the rows for which `drop` holds (rows without an id stay:
/// they cannot be matched with any item).
pub async fn without_rows(
    stores: &Stores,
    path: &str,
    drop: impl Fn(RowOf<'_>) -> bool,
    namer: &FileNamer,
) -> Result<Rewritten, RewriteError> {
    let err =
        |e: &dyn std::fmt::Display| RewriteError { path: path.to_string(), reason: e.to_string() };
    let location = Location::parse(path).map_err(|e| err(&e))?;
    let batches = read_staged(stores, &location).await.map_err(|e| err(&e))?;
    let mut kept = Vec::with_capacity(batches.len());
    let (mut removed, mut left) = (0u64, 0u64);
    for b in batches {
        let ids = b
            .column_by_name(crate::schema::ID)
            .and_then(|c| c.as_string_opt::<i32>())
            .ok_or_else(|| err(&"no id column"))?;
        let collections = b
            .column_by_name("collection")
            .and_then(|c| c.as_string_opt::<i32>())
            .ok_or_else(|| err(&"no collection column"))?;
        let updated = b
            .column_by_name("updated")
            .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>());
        let keep: BooleanArray = (0..ids.len())
            .map(|i| {
                let collection = collections.is_valid(i).then(|| collections.value(i));
                let item = ItemKey { collection, id: ids.value(i) };
                let updated = updated.filter(|u| u.is_valid(i)).map(|u| u.value(i));
                Some(!ids.is_valid(i) || !drop(RowOf { item, updated }))
            })
            .collect();
        let batch = filter_record_batch(&b, &keep).map_err(|e| err(&e))?;
        removed += (b.num_rows() - batch.num_rows()) as u64;
        left += batch.num_rows() as u64;
        kept.push(batch);
    }
    if removed == 0 {
        return Ok(Rewritten::Untouched);
    }
    if left == 0 {
        return Ok(Rewritten::Emptied { removed_rows: removed });
    }
    let folder = path.rsplit_once('/').map(|(f, _)| f).unwrap_or(path);
    let out = Location::parse(&format!("{folder}/{}", namer.next_name())).map_err(|e| err(&e))?;
    let geo = GeoSummary::of_batches(&kept).to_json();
    write_batches(stores, &out, &kept, &geo, &WriterOptions::default())
        .await
        .map_err(|e| RewriteError { path: out.uri(), reason: e.to_string() })?;
    Ok(Rewritten::Into { file: out, removed_rows: removed })
}
