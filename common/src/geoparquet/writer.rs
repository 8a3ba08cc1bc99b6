//! Writing one (cell, year) group of rows as a GeoParquet 1.1 file to any object store.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::arrow_writer::{ArrowWriter, ArrowWriterOptions};
use parquet::arrow::async_writer::{AsyncArrowWriter, ParquetObjectWriter};
use parquet::arrow::{ARROW_SCHEMA_META_KEY, ArrowSchemaConverter, encode_arrow_schema};
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::{KeyValue, ParquetMetaData};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::{ColumnPath, SchemaDescriptor};

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
    /// its values. On the local disk such a file is also encoded in memory and written in place
    /// (see `write_local_file`).
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

    /// The Parquet writer properties for a file of `rows` rows with the given `geo` metadata and
    /// encoded Arrow schema (written last, where Parquet's Arrow writer puts it).
    fn properties(&self, geo: &str, encoded_arrow: &str, rows: usize) -> WriterProperties {
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
                KeyValue::new(ARROW_SCHEMA_META_KEY.to_string(), encoded_arrow.to_string()),
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

/// A file schema in the two forms every Parquet file of it needs: its Parquet schema and its
/// Arrow schema encoded for the footer. Made once per schema: for a file of a few rows, making
/// them took about a twentieth of the CPU of writing it.
#[derive(Debug)]
struct PreparedSchema {
    arrow: SchemaRef,
    parquet: SchemaDescriptor,
    encoded_arrow: String,
}

/// Schemas prepared so far; a few at most (the table's, the staged one), bounded all the same.
static PREPARED: Mutex<Vec<Arc<PreparedSchema>>> = Mutex::new(Vec::new());
const PREPARED_KEPT: usize = 8;

/// The prepared form of `schema`, made on first use. The conversion is the one Parquet's Arrow
/// writer makes when not given one (no type coercion: the writer properties set none).
fn prepared(schema: &SchemaRef) -> Result<Arc<PreparedSchema>, ParquetError> {
    let found = |kept: &[Arc<PreparedSchema>]| {
        kept.iter().find(|p| Arc::ptr_eq(&p.arrow, schema) || p.arrow == *schema).cloned()
    };
    if let Some(p) = found(&PREPARED.lock().unwrap_or_else(PoisonError::into_inner)) {
        return Ok(p);
    }
    let made = Arc::new(PreparedSchema {
        arrow: schema.clone(),
        parquet: ArrowSchemaConverter::new().convert(schema)?,
        encoded_arrow: encode_arrow_schema(schema),
    });
    let mut kept = PREPARED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(p) = found(&kept) {
        return Ok(p);
    }
    if kept.len() == PREPARED_KEPT {
        kept.remove(0);
    }
    kept.push(made.clone());
    Ok(made)
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
    let failed = |source| WriteError::Parquet { location: location.to_string(), source };
    let started = std::time::Instant::now();
    let schema = batches.first().map(RecordBatch::schema).unwrap_or_else(schema::arrow_schema);
    let prepared = prepared(&schema).map_err(failed)?;
    let rows = batches.iter().map(RecordBatch::num_rows).sum();
    let writer_options = ArrowWriterOptions::new()
        .with_properties(options.properties(geo, &prepared.encoded_arrow, rows))
        .with_parquet_schema(prepared.parquet.clone())
        .with_skip_arrow_metadata(true);
    let written = match location.as_local_path() {
        Some(path) if rows < options.small_file_rows => {
            let mut writer = ArrowWriter::try_new_with_options(Vec::new(), schema, writer_options)
                .map_err(failed)?;
            for batch in row_group_slices(batches, options) {
                writer.write(&batch).map_err(failed)?;
            }
            let metadata = writer.finish().map_err(failed)?;
            let bytes = std::mem::take(writer.inner_mut());
            write_local_file(path, &bytes)
                .map_err(|e| failed(ParquetError::External(Box::new(e))))?;
            (metadata, bytes.len() as u64)
        }
        _ => {
            let target = stores.resolve(location)?;
            let sink = ParquetObjectWriter::new(target.store, target.path);
            let mut writer = AsyncArrowWriter::try_new_with_options(sink, schema, writer_options)
                .map_err(failed)?;
            for batch in row_group_slices(batches, options) {
                writer.write(&batch).await.map_err(failed)?;
            }
            let metadata = writer.finish().await.map_err(failed)?;
            (metadata, writer.bytes_written() as u64)
        }
    };
    crate::prometheus::file_written(rows, written.1, started.elapsed());
    Ok(written)
}

/// The batches cut into slices of at most one row group: the encoder buffers a row group at
/// most.
fn row_group_slices<'a>(
    batches: &'a [RecordBatch],
    options: &WriterOptions,
) -> impl Iterator<Item = RecordBatch> + 'a {
    let step = options.row_group_rows.max(1);
    batches.iter().flat_map(move |batch| {
        (0..batch.num_rows())
            .step_by(step)
            .map(move |offset| batch.slice(offset, step.min(batch.num_rows() - offset)))
    })
}

/// Writes a small data file to the local disk in place, on the calling thread, creating its
/// folders. Through the object store a file of a few rows cost a blocking-thread hand-off
/// and a temporary file renamed into place: together about a seventh of the CPU of a run
/// writing one such file per item. In place is safe for data files: their names are new
/// (run, writer, sequence), and no reader looks for one before a commit lists it; an
/// interrupted write leaves an unlisted file, which orphan removal deletes as it would a
/// temporary one.
fn write_local_file(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    match std::fs::write(path, bytes) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(folder) = path.parent() {
                std::fs::create_dir_all(folder)?;
            }
            std::fs::write(path, bytes)
        }
        done => done,
    }
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod schema_tests {
    use std::collections::HashMap;

    use arrow_array::{ArrayRef, Int64Array};
    use arrow_schema::{DataType, Field, Schema};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;
    use crate::fanout::fan_out;
    use crate::sample::itslive_item;
    use crate::stac::parse_item_value;
    use crate::stores::S3Settings;

    /// Writes `batch` with `write_batches` and reads the file back with Parquet's own reader.
    async fn written_and_read(
        stores: &Stores,
        name: &str,
        batch: RecordBatch,
    ) -> ParquetRecordBatchReaderBuilder<bytes::Bytes> {
        let at = Location::parse(&format!("memory://schemas/{name}.parquet")).unwrap();
        write_batches(stores, &at, &[batch], "{}", &WriterOptions::default()).await.unwrap();
        let bytes = stores.get(&at).await.unwrap().unwrap();
        ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap()
    }

    fn rows() -> Vec<CellRow> {
        (0..3)
            .flat_map(|i| {
                fan_out(
                    parse_item_value(&itslive_item(i)).unwrap().row,
                    &["8106fffffffffff".into()],
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn a_small_local_file_is_written_in_place_with_its_folders_and_reads_back() {
        let stores = Stores::new(S3Settings::default());
        let dir = tempfile::tempdir().unwrap();
        let batch = record_batch(&rows()).unwrap();
        let folder = dir.path().join("grid_partition=8106fffffffffff/year=2019");
        let at = Location::parse(folder.join("a.parquet").to_str().unwrap()).unwrap();
        let (meta, bytes) = write_batches(
            &stores,
            &at,
            std::slice::from_ref(&batch),
            "{}",
            &WriterOptions::default(),
        )
        .await
        .unwrap();
        assert_eq!(meta.file_metadata().num_rows(), 3);
        // The file alone, of the size reported: no temporary file left beside it.
        let names: Vec<_> =
            std::fs::read_dir(&folder).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["a.parquet"]);
        assert_eq!(std::fs::metadata(folder.join("a.parquet")).unwrap().len(), bytes);
        let read =
            ParquetRecordBatchReaderBuilder::try_new(stores.get(&at).await.unwrap().unwrap())
                .unwrap();
        let back: Vec<RecordBatch> = read.build().unwrap().map(Result::unwrap).collect();
        assert_eq!(back[0].columns(), batch.columns());

        // A folder that cannot be made (a file stands in its place): the error names the file.
        std::fs::write(dir.path().join("blocked"), b"x").unwrap();
        let at = Location::parse(dir.path().join("blocked/b.parquet").to_str().unwrap()).unwrap();
        let err = write_batches(&stores, &at, &[batch], "{}", &WriterOptions::default())
            .await
            .unwrap_err();
        assert!(err.to_string().contains(&at.to_string()), "{err}");
    }

    #[tokio::test]
    async fn files_of_each_schema_carry_it_and_read_back_with_it() {
        let stores = Stores::new(S3Settings::default());
        let table = record_batch(&rows()).unwrap();
        // A second schema (as staged files have: the table's and a column of their own), written
        // between files of the first, so that each file must get its own schema, not the last one.
        let mut fields: Vec<Field> =
            table.schema().fields().iter().map(|f| (**f).clone()).collect();
        fields.push(
            Field::new("extra", DataType::Int64, false).with_metadata(HashMap::from([(
                "PARQUET:field_id".to_string(),
                "9999".to_string(),
            )])),
        );
        let wider = Arc::new(Schema::new(fields));
        let mut columns = table.columns().to_vec();
        columns.push(Arc::new(Int64Array::from(vec![7; table.num_rows()])) as ArrayRef);
        let staged = RecordBatch::try_new(wider.clone(), columns).unwrap();

        for (name, batch) in [("a", &table), ("b", &staged), ("c", &table), ("d", &staged)] {
            let read = written_and_read(&stores, name, batch.clone()).await;
            assert_eq!(read.schema().fields(), batch.schema().fields(), "file {name}");
            let encoded: Vec<_> = read
                .metadata()
                .file_metadata()
                .key_value_metadata()
                .unwrap()
                .iter()
                .filter(|kv| kv.key == ARROW_SCHEMA_META_KEY)
                .map(|kv| kv.value.clone().unwrap())
                .collect();
            assert_eq!(encoded, vec![encode_arrow_schema(&batch.schema())], "file {name}");
            let back: Vec<RecordBatch> = read.build().unwrap().map(Result::unwrap).collect();
            assert_eq!(back.len(), 1, "file {name}");
            assert_eq!(back[0].columns(), batch.columns(), "file {name}");
        }
    }
}
