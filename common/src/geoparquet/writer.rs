//! Writing one (cell, year) group of rows as a GeoParquet 1.1 file to any object store.

use std::sync::atomic::{AtomicU64, Ordering};

use arrow_array::RecordBatch;
use parquet::arrow::async_writer::{AsyncArrowWriter, ParquetObjectWriter};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::{KeyValue, ParquetMetaData};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use super::batch::record_batch;
use super::footer::Footer;
use super::metadata::{GEO_KEY, STAC_GEOPARQUET_KEY, STAC_GEOPARQUET_VALUE, geo_metadata};
use crate::fanout::CellRow;
use crate::ids::{CellYear, RunId};
use crate::location::Location;
use crate::schema;
use crate::stores::{StoreError, Stores};

/// Why a data file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The target location could not be resolved.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The rows could not become an Arrow batch (a bug: rows are typed by the schema).
    #[error("cannot build the Arrow batch for {location}: {source}")]
    Arrow {
        /// The file being written.
        location: String,
        /// Arrow's error.
        source: arrow_schema::ArrowError,
    },
    /// Encoding or uploading the file failed.
    #[error("cannot write {location}: {source}")]
    Parquet {
        /// The file being written.
        location: String,
        /// Parquet's (or the store's) error.
        source: parquet::errors::ParquetError,
    },
    /// The task writing a file panicked.
    #[error("file writer task failed: {0}")]
    Panicked(String),
}

impl WriteError {
    /// Whether trying again may succeed (store and network errors may; data errors will not).
    pub fn is_retryable(&self) -> bool {
        matches!(self, WriteError::Parquet { .. })
    }
}

/// Physical layout choices for data files.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Rows per row group: small enough for readers to skip groups by statistics and read them
    /// in parallel, large enough to keep the footer small.
    pub row_group_rows: usize,
    /// zstd level (3: about as fast as level 1 on this data, and smaller).
    pub zstd_level: i32,
    /// Files with fewer rows than this are compressed with Snappy instead of zstd; `0` means
    /// every file is zstd. Parquet creates a zstd context per column per file, which on a file
    /// of a few rows costs far more than compressing it (measured: 38% of the incremental
    /// pipeline's CPU went to creating zstd contexts for its small per-chunk files).
    pub zstd_min_rows: usize,
    /// Files with fewer rows than this have no page index and no dictionaries: such a file has
    /// one page per column, so page statistics repeat the column chunk's (which Iceberg's
    /// bounds and readers' row-group pruning use), and a dictionary only adds a page per
    /// column. Building both for every column of a file of a few rows cost more than encoding
    /// its values.
    pub small_file_rows: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            row_group_rows: 65_536,
            zstd_level: 3,
            zstd_min_rows: 2_048,
            small_file_rows: 2_048,
        }
    }
}

/// Columns whose min/max statistics are useless to queries (JSON text, WKB) and only bloat
/// the footer; Iceberg records no bounds for them.
const NO_STATS: &[&str] =
    &["geometry", "assets", "links", "stac_extensions", "bbox", "extra_properties", "extra_fields"];

impl WriterOptions {
    /// The codec of a file of `rows` rows: Snappy below [`WriterOptions::zstd_min_rows`], zstd
    /// at [`WriterOptions::zstd_level`] (or zstd's default level 1 when that level is
    /// invalid) otherwise.
    pub fn compression(&self, rows: usize) -> Compression {
        if rows < self.zstd_min_rows {
            Compression::SNAPPY
        } else {
            Compression::ZSTD(ZstdLevel::try_new(self.zstd_level).unwrap_or_default())
        }
    }

    /// The Parquet writer properties for a file of `rows` rows with the given `geo` metadata.
    fn properties(&self, geo: &str, rows: usize) -> WriterProperties {
        let mut b = WriterProperties::builder()
            .set_compression(self.compression(rows))
            // Whole min/max values: a file's partition is read from its grid_partition statistics
            // and must be exact (GeoJSON grid keys can be longer than parquet's default 64 bytes).
            // The long free-text columns have no statistics at all (NO_STATS).
            .set_statistics_truncate_length(None)
            .set_max_row_group_row_count(Some(self.row_group_rows.max(1)))
            .set_key_value_metadata(Some(vec![
                KeyValue::new(GEO_KEY.to_string(), geo.to_string()),
                KeyValue::new(STAC_GEOPARQUET_KEY.to_string(), STAC_GEOPARQUET_VALUE.to_string()),
            ]));
        if rows < self.small_file_rows {
            b = b
                .set_statistics_enabled(EnabledStatistics::Chunk)
                .set_offset_index_disabled(true)
                .set_dictionary_enabled(false);
        }
        for name in NO_STATS {
            let path = ColumnPath::from(*name);
            b = b
                .set_column_statistics_enabled(path.clone(), EnabledStatistics::None)
                .set_column_dictionary_enabled(path, false);
        }
        b.build()
    }
}

/// Names data files so that no two writers, attempts or runs ever pick the same name:
/// `<run id>_<writer tag>_<sequence>.parquet`.
#[derive(Debug)]
pub struct FileNamer {
    run: RunId,
    writer: String,
    seq: AtomicU64,
}

impl FileNamer {
    /// A namer for one writer (one process, or one task attempt) of a run.
    pub fn new(run: RunId, writer: impl Into<String>) -> Self {
        FileNamer { run, writer: writer.into(), seq: AtomicU64::new(0) }
    }

    /// The run whose files this namer names.
    pub fn run(&self) -> &RunId {
        &self.run
    }

    /// The next file name.
    pub fn next_name(&self) -> String {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        format!("{}_{}_{n:06}.parquet", self.run, self.writer)
    }
}

/// Writer tag of the incremental pipeline's data files: `<run>_inc_NNNNNN.parquet`.
const INCREMENTAL_WRITER: &str = "inc";

/// The file namer of an incremental run.
pub fn incremental_namer(run: RunId) -> FileNamer {
    FileNamer::new(run, INCREMENTAL_WRITER)
}

/// Whether `name` is a data file name an incremental run gives (any run).
pub fn is_incremental_output(name: &str) -> bool {
    let Some((head, seq)) = name.strip_suffix(".parquet").and_then(|n| n.rsplit_once('_')) else {
        return false;
    };
    let tagged = head.strip_suffix(INCREMENTAL_WRITER).is_some_and(|r| r.ends_with('_'));
    tagged && !seq.is_empty() && seq.bytes().all(|b| b.is_ascii_digit())
}

/// A data file that was written.
#[derive(Debug, Clone)]
pub struct WrittenFile {
    /// Where it is.
    pub location: Location,
    /// Its (cell, year).
    pub partition: CellYear,
    /// Number of rows.
    pub rows: usize,
    /// Size of the file in bytes.
    pub bytes: u64,
    /// The footer as written (row groups, column statistics), for registration.
    pub footer: Footer,
}

/// Writes `rows` (all of one partition, already sorted) to
/// `<root>/grid_partition=<cell>/year=<year>/<name>` and returns what was written.
pub async fn write_partition(
    stores: &Stores,
    root: &Location,
    partition: &CellYear,
    rows: &[CellRow],
    namer: &FileNamer,
    options: &WriterOptions,
) -> Result<WrittenFile, WriteError> {
    let location = root.join(&partition.hive_dir()).join(&namer.next_name());
    let (metadata, bytes) = write_rows(stores, &location, rows, options).await?;
    let footer = Footer::keep(metadata)
        .map_err(|source| WriteError::Parquet { location: location.to_string(), source })?;
    Ok(WrittenFile { location, partition: partition.clone(), rows: rows.len(), bytes, footer })
}

/// Writes `rows` as one GeoParquet file at `location` (one put for small files, a multipart
/// upload for large ones) and returns its footer and size in bytes.
pub async fn write_rows(
    stores: &Stores,
    location: &Location,
    rows: &[CellRow],
    options: &WriterOptions,
) -> Result<(ParquetMetaData, u64), WriteError> {
    let batch = record_batch(rows)
        .map_err(|source| WriteError::Arrow { location: location.to_string(), source })?;
    write_batches(stores, location, &[batch], &geo_metadata(rows), options).await
}

/// Writes record batches of the table schema (staged rows add a column of their own, see
/// [`crate::staging`]) as one GeoParquet file with the given `geo` metadata, cutting row groups of
/// `options.row_group_rows`; returns the footer and the size.
pub async fn write_batches(
    stores: &Stores,
    location: &Location,
    batches: &[RecordBatch],
    geo: &str,
    options: &WriterOptions,
) -> Result<(ParquetMetaData, u64), WriteError> {
    let target = stores.resolve(location)?;
    let shown = || location.to_string();
    let started = std::time::Instant::now();
    let sink = ParquetObjectWriter::new(target.store, target.path);
    let schema = batches.first().map(RecordBatch::schema).unwrap_or_else(schema::arrow_schema);
    let mut writer = AsyncArrowWriter::try_new(
        sink,
        schema,
        Some(options.properties(geo, batches.iter().map(RecordBatch::num_rows).sum())),
    )
    .map_err(|source| WriteError::Parquet { location: shown(), source })?;
    // Slices of at most one row group bound the encoder's buffered memory to a row group.
    let step = options.row_group_rows.max(1);
    for batch in batches {
        let mut offset = 0;
        while offset < batch.num_rows() {
            let len = step.min(batch.num_rows() - offset);
            writer
                .write(&batch.slice(offset, len))
                .await
                .map_err(|source| WriteError::Parquet { location: shown(), source })?;
            offset += len;
        }
    }
    let metadata = writer
        .finish()
        .await
        .map_err(|source| WriteError::Parquet { location: shown(), source })?;
    let bytes = writer.bytes_written() as u64;
    let rows = batches.iter().map(RecordBatch::num_rows).sum();
    crate::prometheus::file_written(rows, bytes, started.elapsed());
    Ok((metadata, bytes))
}

#[cfg(test)]
mod name_tests {
    use super::*;

    #[test]
    fn only_names_an_incremental_run_gives_are_incremental_outputs() {
        let namer = incremental_namer(RunId::from_string("20260101T000000Z-abcdef"));
        assert!(is_incremental_output(&namer.next_name()));
        for other in [
            "20260101T000000Z-abcdef_c42_000000.parquet",
            "20260101T000000Z-abcdef_xinc_000000.parquet",
            "20260101T000000Z-abcdef_inc_.parquet",
            "20260101T000000Z-abcdef_inc_000000.json",
            "part-0.parquet",
        ] {
            assert!(!is_incremental_output(other), "{other}");
        }
    }
}
