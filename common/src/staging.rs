//! The row format staged between backfill Phase 2 (chunk ingest) and Phase 3 (compaction).
//!
//! Staged rows are Parquet files of the table schema, one per (chunk, cell, year). They are
//! written with [`staging_options`]: Snappy below 2,048 rows and zstd level 1 from there on, so
//! nearly every staged file (a chunk's rows of one cell and year: a few to a few hundred) is
//! Snappy. Measured against the original's NDJSON (one item JSON per line, see
//! `docs/benchmarks.md` and the `staging` groups of `benches/data_path.rs`), they are several
//! times smaller and faster to read back, and Phase 3 can merge them as Arrow batches without
//! parsing JSON again.

use arrow_array::RecordBatch;
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::fanout::CellRow;
use crate::geoparquet::{WriteError, WriterOptions, write_rows};
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
    write_rows(stores, location, rows, &staging_options()).await.map(|_| ())
}

/// Reads staged rows back as record batches of the table schema.
pub async fn read_staged(
    stores: &Stores,
    location: &Location,
) -> Result<Vec<RecordBatch>, StagingError> {
    let target = stores.resolve(location)?;
    let shown = || location.to_string();
    // One GET for the whole file: every row and column is read anyway, and ranged reads (footer
    // length, footer, then the data) cost three round trips where S3's latency dominates.
    let fetched = async { target.store.get(&target.path).await?.bytes().await };
    let bytes =
        fetched.await.map_err(|source| StagingError::Fetch { location: shown(), source })?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|source| StagingError::Read { location: shown(), source })?;
    check_schema(builder.schema(), &shown())?;
    let reader =
        builder.build().map_err(|source| StagingError::Read { location: shown(), source })?;
    reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| StagingError::Read { location: shown(), source: source.into() })
}

fn check_schema(found: &arrow_schema::Schema, location: &str) -> Result<(), StagingError> {
    let want = schema::arrow_schema();
    let err = |reason: String| StagingError::Schema { location: location.to_string(), reason };
    if found.fields().len() != want.fields().len() {
        return Err(err(format!(
            "{} columns, expected {}",
            found.fields().len(),
            want.fields().len()
        )));
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
    Ok(())
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
