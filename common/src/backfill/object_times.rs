//! The object times Phase 3 hands to Phase 4 of a delta run.
//!
//! An item without `updated` is versioned by when its object was last modified, and no data
//! file column holds that time (staged rows do: [`crate::staging::OBJECT_MODIFIED`]). So beside
//! each data file holding such items, Phase 3 writes a small Parquet file into staging listing
//! them as (collection, id, object time), named as the data file
//! ([`super::layout::object_times_file`]); Phase 4 reads those of the files it registers to tell
//! an item re-processed in the archive from the same object listed again.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use arrow::array::{Array, AsArray, BooleanArray};
use arrow::compute::{filter_record_batch, is_not_null, is_null};
use arrow::datatypes::TimestampMicrosecondType;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};
use futures::{StreamExt, TryStreamExt};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::layout::object_times_file;
use crate::ids::ItemKey;
use crate::location::Location;
use crate::schema;
use crate::stores::{ObjectError, Stores};

/// Object-time files read at once by Phase 4.
const READS: usize = 16;

const COLLECTION: &str = "collection";
const TIME: &str = "object_modified";

/// Why object times could not be kept or read.
#[derive(Debug, thiserror::Error)]
pub enum ObjectTimesError {
    /// The store failed.
    #[error(transparent)]
    Object(#[from] ObjectError),
    /// A file that is not an object-time list, or rows that cannot become one.
    #[error("object times {location}: {reason}")]
    Format {
        /// The object-time file (or the data file it is for).
        location: String,
        /// What is wrong.
        reason: String,
    },
}

impl ObjectTimesError {
    /// Whether trying again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ObjectTimesError::Object(e) if e.is_retryable())
    }
}

/// The items of one data file that have no `updated`, with their objects' last-modified times.
#[derive(Debug, Clone)]
pub struct ObjectTimes {
    /// The data file.
    pub file: Location,
    /// (collection, id, object_modified) rows.
    pub items: RecordBatch,
}

fn times_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let time =
                DataType::Timestamp(TimeUnit::Microsecond, Some(schema::TIMESTAMP_TZ.into()));
            Arc::new(Schema::new(vec![
                Field::new(COLLECTION, DataType::Utf8, true),
                Field::new(schema::ID, DataType::Utf8, true),
                Field::new(TIME, time, true),
            ]))
        })
        .clone()
}

/// The object times of `rows` (table schema) that need keeping: rows with an id, no `updated`
/// and a known object time (`times`, one per row). `None` when there are none.
pub fn of_rows(
    file: &Location,
    rows: &RecordBatch,
    times: &ArrayRef,
) -> Result<Option<ObjectTimes>, ArrowError> {
    let column = |name: &str| {
        rows.column_by_name(name)
            .cloned()
            .ok_or_else(|| ArrowError::SchemaError(format!("no column '{name}'")))
    };
    let (ids, updated) = (column(schema::ID)?, column("updated")?);
    let keep: BooleanArray = arrow::compute::and(
        &arrow::compute::and(&is_not_null(&ids)?, &is_null(&updated)?)?,
        &is_not_null(times)?,
    )?;
    if keep.true_count() == 0 {
        return Ok(None);
    }
    let picked =
        RecordBatch::try_new(times_schema(), vec![column(COLLECTION)?, ids, times.clone()])?;
    let items = filter_record_batch(&picked, &keep)?;
    Ok(Some(ObjectTimes { file: file.clone(), items }))
}

/// Writes `times` into `folder`, named as its data file.
pub async fn write(
    stores: &Stores,
    folder: &Location,
    times: &ObjectTimes,
) -> Result<Location, ObjectTimesError> {
    let at = object_times_file(folder, &times.file);
    let format = |e: &dyn std::fmt::Display| ObjectTimesError::Format {
        location: at.to_string(),
        reason: e.to_string(),
    };
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, times_schema(), None).map_err(|e| format(&e))?;
    w.write(&times.items).map_err(|e| format(&e))?;
    w.close().map_err(|e| format(&e))?;
    stores.put(&at, buf).await?;
    Ok(at)
}

/// Writes every one of `all` into `folder`, 16 at once; on an error, deletes what it wrote.
pub async fn write_all(
    stores: &Stores,
    folder: &Location,
    all: &[ObjectTimes],
) -> Result<(), ObjectTimesError> {
    let results: Vec<_> = futures::stream::iter(all)
        .map(|times| write(stores, folder, times))
        .buffer_unordered(READS)
        .collect()
        .await;
    let mut first_error = None;
    let mut written = Vec::new();
    for r in results {
        match r {
            Ok(at) => written.push(at),
            Err(e) => first_error = first_error.or(Some(e)),
        }
    }
    match first_error {
        None => Ok(()),
        Some(e) => {
            stores.delete_all(&written, "an abandoned output").await;
            Err(e)
        }
    }
}

/// The object times kept in `folder` for each of `files` (by item digest), in the order given;
/// empty for a file that has none.
pub async fn read_for(
    stores: &Stores,
    folder: &Location,
    files: &[Location],
) -> Result<Vec<HashMap<u128, i64>>, ObjectTimesError> {
    // One listing, then reads of only what is there: most data files have none.
    let present: std::collections::HashSet<String> =
        stores.list(folder).await?.into_iter().map(|l| l.uri()).collect();
    futures::stream::iter(files)
        .map(|file| {
            let at = object_times_file(folder, file);
            let there = present.contains(&at.uri());
            async move {
                match there {
                    true => read(stores, &at).await,
                    false => Ok(HashMap::new()),
                }
            }
        })
        .buffered(READS)
        .try_collect()
        .await
}

async fn read(stores: &Stores, at: &Location) -> Result<HashMap<u128, i64>, ObjectTimesError> {
    let format = |reason: String| ObjectTimesError::Format { location: at.to_string(), reason };
    let bytes = stores.get(at).await?.ok_or_else(|| format("gone since it was listed".into()))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .and_then(|b| b.build())
        .map_err(|e| format(e.to_string()))?;
    let mut out = HashMap::new();
    for batch in reader {
        let batch = batch.map_err(|e| format(e.to_string()))?;
        let text = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_string_opt::<i32>())
                .ok_or_else(|| format(format!("no '{name}' text column")))
        };
        let (collections, ids) = (text(COLLECTION)?, text(schema::ID)?);
        let times = batch
            .column_by_name(TIME)
            .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>())
            .ok_or_else(|| format(format!("no '{TIME}' timestamp column")))?;
        for i in (0..batch.num_rows()).filter(|i| ids.is_valid(*i) && times.is_valid(*i)) {
            let collection = collections.is_valid(i).then(|| collections.value(i));
            let item = ItemKey { collection, id: ids.value(i) }.digest();
            let time = out.entry(item).or_insert(times.value(i));
            *time = (*time).max(times.value(i));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fanout::fan_out;
    use crate::geoparquet::record_batch;
    use crate::sample::itslive_item;
    use crate::stac::parse_item_value;
    use crate::stores::S3Settings;
    use arrow_array::TimestampMicrosecondArray;

    #[tokio::test]
    async fn only_items_without_updated_are_kept_and_phase_4_reads_them_by_data_file() {
        let stores = Stores::new(S3Settings::default());
        let mut rows = Vec::new();
        for i in 0..4 {
            let mut json = itslive_item(i);
            if i % 2 == 0 {
                json["properties"].as_object_mut().unwrap().remove("updated");
            }
            rows.extend(fan_out(parse_item_value(&json).unwrap().row, &["8106fffffffffff".into()]));
        }
        let batch = record_batch(&rows).unwrap();
        let times: ArrayRef = Arc::new(
            TimestampMicrosecondArray::from(vec![Some(10), Some(11), None, Some(13)])
                .with_timezone(schema::TIMESTAMP_TZ),
        );
        let file =
            Location::parse("memory://wh/grid_partition=x/year=2019/r_c7_000001.parquet").unwrap();
        // Item 0: no `updated`, a time; 1: `updated`; 2: no time; 3: `updated`.
        let kept = of_rows(&file, &batch, &times).unwrap().unwrap();
        assert_eq!(kept.items.num_rows(), 1);

        let folder = Location::parse("memory://staging/run/object_times").unwrap();
        write(&stores, &folder, &kept).await.unwrap();
        let other =
            Location::parse("memory://wh/grid_partition=x/year=2019/r_c7_000002.parquet").unwrap();
        let read = read_for(&stores, &folder, &[other, file.clone()]).await.unwrap();
        assert!(read[0].is_empty(), "a data file without object times");
        let first = parse_item_value(&itslive_item(0)).unwrap();
        let digest = first.row.key().digest();
        assert_eq!(read[1], HashMap::from([(digest, 10)]));

        let none = of_rows(&file, &record_batch(&rows[1..2]).unwrap(), &times.slice(1, 1));
        assert!(none.unwrap().is_none(), "an item with `updated` needs no object time");
    }
}
