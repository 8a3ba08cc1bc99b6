//! The row format staged between backfill Phase 2 (chunk ingest) and Phase 3 (compaction).
//!
//! Staged rows are Parquet files of the table schema plus one column, [`OBJECT_MODIFIED`], one
//! per (chunk, cell, year): an item without `updated` is versioned by when its object was last
//! modified, which no data file column holds, so Phase 3 must get it from here. They are
//! written with [`staging_options`]: Snappy below 2,048 rows and zstd level 1 from there on, so
//! nearly every staged file (a chunk's rows of one cell and year: a few to a few hundred) is
//! Snappy. Measured against the original's NDJSON (one item JSON per line, see
//! `docs/benchmarks.md` and the `staging` groups of `benches/data_path.rs`), they are several
//! times smaller and faster to read back, and Phase 3 can merge them as Arrow batches without
//! parsing JSON again.

use std::sync::{Arc, OnceLock};

use arrow_array::{RecordBatch, TimestampMicrosecondArray, new_null_array};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::fanout::CellRow;
use crate::geoparquet::{WriteError, WriterOptions, geo_metadata, record_batch, write_batches};
use crate::location::Location;
use crate::schema;
use crate::stores::{StoreError, Stores};

/// Why staged rows could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    /// The location could not be resolved.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The object could not be fetched.
    #[error("cannot fetch staged rows {location}: {source}")]
    Fetch {
        /// The staged file.
        location: String,
        /// The store's error.
        source: object_store::Error,
    },
    /// Not a readable Parquet file.
    #[error("cannot read staged rows {location}: {source}")]
    Read {
        /// The staged file.
        location: String,
        /// The reader's error.
        source: parquet::errors::ParquetError,
    },
    /// A Parquet file whose columns are not the table schema.
    #[error("staged file {location} does not have the table schema: {reason}")]
    Schema {
        /// The staged file.
        location: String,
        /// The first difference.
        reason: String,
    },
}

/// The column staged rows have after the table's: when the item's object was last modified
/// (microseconds, UTC; null when not known), the version of an item without `updated`.
pub const OBJECT_MODIFIED: &str = "object_modified";

/// The schema of staged rows: the table's columns, then [`OBJECT_MODIFIED`].
pub fn staging_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let table = schema::arrow_schema();
            let mut fields: Vec<Field> =
                table.fields().iter().map(|f| f.as_ref().clone()).collect();
            fields.push(Field::new(OBJECT_MODIFIED, object_modified_type(), true));
            Arc::new(Schema::new(fields))
        })
        .clone()
}

fn object_modified_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some(schema::TIMESTAMP_TZ.into()))
}

/// Writer settings for staged rows: Snappy for files under 2,048 rows (the data files'
/// threshold), zstd level 1 (the fastest) for larger ones, one row group per 65,536 rows.
pub fn staging_options() -> WriterOptions {
    WriterOptions { zstd_level: 1, ..WriterOptions::default() }
}

/// Writes rows of one (chunk, cell, year) to `location`.
pub async fn write_staged(
    stores: &Stores,
    location: &Location,
    rows: &[CellRow],
) -> Result<(), WriteError> {
    let batch = staged_batch(rows)
        .map_err(|source| WriteError::Arrow { location: location.to_string(), source })?;
    write_batches(stores, location, &[batch], &geo_metadata(rows), &staging_options())
        .await
        .map(|_| ())
}

fn staged_batch(rows: &[CellRow]) -> Result<RecordBatch, ArrowError> {
    let table = record_batch(rows)?;
    let times: TimestampMicrosecondArray = rows.iter().map(|r| r.item.object_modified()).collect();
    let mut columns = table.columns().to_vec();
    columns.push(Arc::new(times.with_timezone(schema::TIMESTAMP_TZ)));
    RecordBatch::try_new(staging_schema(), columns)
}

/// Reads staged rows (or a data file) back as record batches of the table schema.
pub async fn read_staged(
    stores: &Stores,
    location: &Location,
) -> Result<Vec<RecordBatch>, StagingError> {
    let (batches, with_times) = read_batches(stores, location).await?;
    if !with_times {
        return Ok(batches);
    }
    let table: Vec<usize> = (0..schema::arrow_schema().fields().len()).collect();
    batches
        .iter()
        .map(|b| b.project(&table))
        .collect::<Result<_, _>>()
        .map_err(|e| schema_error(location, e))
}

/// Reads staged rows (or a data file) back as record batches of [`staging_schema`]; a file
/// without [`OBJECT_MODIFIED`] (a data file, or rows staged before it existed) reads as nulls.
pub async fn read_staged_with_times(
    stores: &Stores,
    location: &Location,
) -> Result<Vec<RecordBatch>, StagingError> {
    let (batches, with_times) = read_batches(stores, location).await?;
    batches
        .into_iter()
        .map(|b| {
            let mut columns = b.columns().to_vec();
            if !with_times {
                columns.push(new_null_array(&object_modified_type(), b.num_rows()));
            }
            RecordBatch::try_new(staging_schema(), columns)
        })
        .collect::<Result<_, _>>()
        .map_err(|e| schema_error(location, e))
}

fn schema_error(location: &Location, e: ArrowError) -> StagingError {
    StagingError::Schema { location: location.to_string(), reason: e.to_string() }
}

/// The batches of the file at `location`, and whether it has [`OBJECT_MODIFIED`].
async fn read_batches(
    stores: &Stores,
    location: &Location,
) -> Result<(Vec<RecordBatch>, bool), StagingError> {
    let target = stores.resolve(location)?;
    let shown = || location.to_string();
    // One GET for the whole file: every row and column is read anyway, and ranged reads (footer
    // length, footer, then the data) cost three round trips where S3's latency dominates.
    let fetched = async { target.store.get(&target.path).await?.bytes().await };
    let bytes =
        fetched.await.map_err(|source| StagingError::Fetch { location: shown(), source })?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|source| StagingError::Read { location: shown(), source })?;
    let with_times = check_schema(builder.schema(), &shown())?;
    let reader =
        builder.build().map_err(|source| StagingError::Read { location: shown(), source })?;
    let batches = reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| StagingError::Read { location: shown(), source: source.into() })?;
    Ok((batches, with_times))
}

/// Checks that `found` is the table schema, or the staging schema; says which.
fn check_schema(found: &arrow_schema::Schema, location: &str) -> Result<bool, StagingError> {
    let want = staging_schema();
    let err = |reason: String| StagingError::Schema { location: location.to_string(), reason };
    let table_columns = want.fields().len() - 1;
    let with_times = found.fields().len() == want.fields().len();
    if found.fields().len() != table_columns && !with_times {
        return Err(err(format!("{} columns, expected {table_columns}", found.fields().len())));
    }
    for (f, w) in found.fields().iter().zip(want.fields()) {
        if f.name() != w.name() || f.data_type() != w.data_type() {
            return Err(err(format!(
                "column {} {:?}, expected {} {:?}",
                f.name(),
                f.data_type(),
                w.name(),
                w.data_type()
            )));
        }
    }
    Ok(with_times)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fanout::fan_out;
    use crate::geoparquet::record_batch;
    use crate::sample::itslive_item;
    use crate::stac::parse_item_value;
    use crate::stores::S3Settings;

    #[tokio::test]
    async fn staged_rows_read_back_equal_to_what_was_written() {
        let stores = Stores::new(S3Settings::default());
        let mut rows = Vec::new();
        for i in 0..100 {
            let p = parse_item_value(&itslive_item(i)).unwrap();
            rows.extend(fan_out(p.row, &["8106fffffffffff".into()]));
        }
        let loc =
            Location::parse("memory://staging/chunk-000001/8106fffffffffff/2019.parquet").unwrap();
        write_staged(&stores, &loc, &rows).await.unwrap();
        let batches = read_staged(&stores, &loc).await.unwrap();
        let back = arrow::compute::concat_batches(&schema::arrow_schema(), &batches).unwrap();
        assert_eq!(back, record_batch(&rows).unwrap());
    }

    #[tokio::test]
    async fn object_times_are_staged_and_a_file_without_them_reads_as_unknown() {
        use arrow::array::{Array, AsArray};
        use arrow::datatypes::TimestampMicrosecondType;
        let stores = Stores::new(S3Settings::default());
        let rows: Vec<CellRow> = (0..3)
            .map(|i| {
                let mut row = parse_item_value(&itslive_item(i)).unwrap().row;
                if i != 1 {
                    row.set_object_modified(1_700_000_000_000_000 + i as i64);
                }
                fan_out(row, &["8106fffffffffff".into()]).remove(0)
            })
            .collect();
        let staged = Location::parse("memory://staging/times/2019.parquet").unwrap();
        write_staged(&stores, &staged, &rows).await.unwrap();
        let batches = read_staged_with_times(&stores, &staged).await.unwrap();
        let times = batches[0].column_by_name(OBJECT_MODIFIED).unwrap();
        let times = times.as_primitive::<TimestampMicrosecondType>();
        let read: Vec<Option<i64>> = times.iter().collect();
        assert_eq!(read, [Some(1_700_000_000_000_000), None, Some(1_700_000_000_000_002)]);

        // A data file has the table's columns only: its object times are unknown.
        let data = Location::parse("memory://wh/data.parquet").unwrap();
        crate::geoparquet::write_rows(&stores, &data, &rows, &WriterOptions::default())
            .await
            .unwrap();
        let batches = read_staged_with_times(&stores, &data).await.unwrap();
        assert_eq!(batches[0].schema(), staging_schema());
        assert_eq!(batches[0].column_by_name(OBJECT_MODIFIED).unwrap().null_count(), 3);
        let plain = read_staged(&stores, &staged).await.unwrap();
        assert_eq!(plain[0].num_columns(), schema::arrow_schema().fields().len());
    }

    #[tokio::test]
    async fn a_file_with_another_schema_is_refused_with_its_name() {
        let stores = Stores::new(S3Settings::default());
        let loc = Location::parse("memory://staging/bad.parquet").unwrap();
        let target = stores.resolve(&loc).unwrap();
        let batch = RecordBatch::try_from_iter([(
            "id",
            std::sync::Arc::new(arrow_array::StringArray::from(vec!["a"])) as arrow_array::ArrayRef,
        )])
        .unwrap();
        let mut buf = Vec::new();
        let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        use object_store::ObjectStoreExt;
        target.store.put(&target.path, buf.into()).await.unwrap();
        let err = read_staged(&stores, &loc).await.unwrap_err();
        assert!(err.to_string().contains("memory://staging/bad.parquet"), "{err}");
        assert!(err.to_string().contains("1 columns, expected"), "{err}");
    }
}
