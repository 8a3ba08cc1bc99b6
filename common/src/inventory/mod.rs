//! Streaming S3 Inventory readers: CSV, CSV.gz, Parquet and AWS `manifest.json`, and JSON lines
//! (the incremental pipeline's failures file, so failed items can be retried).
//!
//! # Design
//!
//! [`open`] looks at the location's name and returns an [`InventoryStream`]: a lazy stream of
//! [`InventoryRecord`]s that starts reading when first polled and holds at most one CSV buffer or
//! one Parquet record batch at a time, whatever the store (`s3://`, `file://`, `memory://`).
//!
//! | name ends with  | reader                                                   |
//! |-----------------|----------------------------------------------------------|
//! | `manifest.json` | [`manifest`]: each data file in turn, in the listed order |
//! | `.parquet`      | [`parquet`]: row group by row group through range reads   |
//! | `.gz`           | [`csv`] over a (multi-member) gzip byte stream            |
//! | `.jsonl`, `.ndjson` | [`jsonl`]: one `{"bucket", "key", ...}` object per line |
//! | anything else   | [`csv`]                                                   |
//!
//! Every row becomes either an [`InventoryEntry`] (bucket, key, optional last-modified time) or
//! a [`MalformedRow`] naming the object, the line or row and why. A malformed row never ends the
//! stream. A fatal problem (missing object, not Parquet, no `key` column, bad manifest) is an
//! `Err` item naming the object, after which that object yields nothing more.
//!
//! Readers do not filter: [`filter()`] applies `since`, `limit` and the `.stac.json` suffix and
//! keeps [`FilterCounts`] a caller can print.

pub mod csv;
pub mod dates;
pub mod filter;
pub mod jsonl;
pub mod manifest;
pub mod parquet;
mod ranged;

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::stream::BoxStream;

use crate::location::Location;
use crate::stores::{StoreError, Stores};

pub use dates::{DateError, parse_since};
pub use filter::{Filter, FilterCounters, FilterCounts, filter};

/// A lazy stream of inventory records; fatal problems are `Err` items naming the object.
pub type InventoryStream = BoxStream<'static, Result<InventoryRecord, InventoryError>>;

/// Record batch size used by the Parquet reader unless told otherwise; small enough that one
/// batch of ~150-byte keys stays around a megabyte.
pub const DEFAULT_PARQUET_BATCH_SIZE: usize = 8192;

/// One object listed by an inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryEntry {
    /// The bucket holding the object.
    pub bucket: String,
    /// The object key (URL-decoded for headerless AWS CSV files).
    pub key: String,
    /// When the object was last modified, if the inventory says.
    pub last_modified: Option<DateTime<Utc>>,
}

/// Where a malformed row sits in its object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowPosition {
    /// A CSV line, 1-based, counting the header and blank lines.
    Line(u64),
    /// A Parquet row, 0-based, counted from the start of the file.
    Row(u64),
}

impl fmt::Display for RowPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RowPosition::Line(n) => write!(f, "line {n}"),
            RowPosition::Row(n) => write!(f, "row {n} (0-based)"),
        }
    }
}

/// Why a row could not be turned into an entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MalformedReason {
    /// The row ends before the bucket or key column.
    #[error("too few fields: {found}, need at least {needed}")]
    TooFewFields {
        /// Fields in the row.
        found: usize,
        /// Fields needed to reach the bucket and key columns.
        needed: usize,
    },
    /// The bucket field is empty or null.
    #[error("empty bucket")]
    EmptyBucket,
    /// The key field is empty or null.
    #[error("empty key")]
    EmptyKey,
    /// A field is not valid UTF-8 (before or after URL-decoding).
    #[error("column '{column}' is not valid UTF-8")]
    BadUtf8 {
        /// The column.
        column: String,
    },
    /// A JSON-lines row is not a JSON object.
    #[error("not a JSON object with bucket and key: {reason}")]
    NotAnObject {
        /// What the JSON parser said.
        reason: String,
    },
    /// A failures-file line for a row that was already unreadable in an earlier inventory.
    #[error("listed as unreadable by an earlier run: {reason}")]
    ListedUnreadable {
        /// The earlier run's reason (which names the original inventory and line).
        reason: String,
    },
    /// The last-modified value cannot be read as a date.
    #[error("unparseable date in column '{column}': '{value}'")]
    BadDate {
        /// The date column.
        column: String,
        /// The value as found.
        value: String,
    },
    /// A timestamp outside the range of dates we can represent.
    #[error("timestamp {value} in column '{column}' is out of range")]
    TimestampOutOfRange {
        /// The date column.
        column: String,
        /// The raw value.
        value: i64,
    },
}

/// A row that could not be read, with where it is and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed row in {object} at {position}: {reason}")]
pub struct MalformedRow {
    /// URI of the inventory object holding the row.
    pub object: String,
    /// Where the row is.
    pub position: RowPosition,
    /// Why it was refused.
    pub reason: MalformedReason,
}

/// One item of an inventory stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InventoryRecord {
    /// A listed object.
    Entry(InventoryEntry),
    /// A row that could not be read; reported, never skipped.
    Malformed(MalformedRow),
}

/// A problem that stops reading one inventory object.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// The location could not be turned into a store.
    #[error("cannot open inventory {object}: {source}")]
    Store {
        /// URI of the object.
        object: String,
        /// Why.
        source: Box<StoreError>,
    },
    /// The object could not be fetched (missing, no permission, network).
    #[error("cannot read inventory {object}: {source}")]
    Fetch {
        /// URI of the object.
        object: String,
        /// The store's error.
        source: Box<object_store::Error>,
    },
    /// Reading or decompressing the byte stream failed part way.
    #[error("cannot read inventory {object} near line {line}: {source}")]
    Read {
        /// URI of the object.
        object: String,
        /// The last line reached.
        line: u64,
        /// The I/O, gzip or CSV error.
        source: std::io::Error,
    },
    /// The object is not a readable Parquet file, or a row group cannot be decoded.
    #[error("cannot read Parquet inventory {object}: {source}")]
    Parquet {
        /// URI of the object.
        object: String,
        /// The Parquet or Arrow error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A required column is absent.
    #[error("inventory {object} has no '{column}' column (columns: {found})")]
    MissingColumn {
        /// URI of the object.
        object: String,
        /// The column looked for.
        column: String,
        /// The columns that were there.
        found: String,
    },
    /// A column has a type we cannot read.
    #[error("inventory {object}: column '{column}' has type {data_type}, which is not supported")]
    ColumnType {
        /// URI of the object.
        object: String,
        /// The column.
        column: String,
        /// Its type.
        data_type: String,
    },
    /// The manifest is not valid JSON or lacks a field we need.
    #[error("invalid manifest {manifest}: {reason}")]
    Manifest {
        /// URI of the manifest.
        manifest: String,
        /// What is wrong.
        reason: String,
    },
    /// The manifest declares a data format we do not read.
    #[error(
        "manifest {manifest} declares fileFormat '{format}', which is not supported (use CSV or Parquet)"
    )]
    UnsupportedFormat {
        /// URI of the manifest.
        manifest: String,
        /// The declared format.
        format: String,
    },
}

/// How to read an inventory.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Column names of headerless CSV files, as in a manifest's `fileSchema`
    /// (`Bucket, Key, Size, LastModifiedDate, ...`). Without it, headerless files are read as
    /// bucket in column 0, key in column 1 and no date.
    pub csv_file_schema: Option<String>,
    /// Rows per Parquet record batch.
    pub parquet_batch_size: usize,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions { csv_file_schema: None, parquet_batch_size: DEFAULT_PARQUET_BATCH_SIZE }
    }
}

/// The reader chosen for a location, by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InventoryFormat {
    /// An AWS S3 Inventory `manifest.json`.
    Manifest,
    /// A Parquet data file.
    Parquet,
    /// A gzip-compressed CSV file.
    CsvGz,
    /// A plain CSV file.
    Csv,
    /// JSON lines with `bucket` and `key` (a failures file).
    JsonLines,
}

impl InventoryFormat {
    /// The format implied by an object's name.
    pub fn of(location: &Location) -> Self {
        let name = location.file_name().unwrap_or_default();
        if name.ends_with("manifest.json") {
            InventoryFormat::Manifest
        } else if name.ends_with(".parquet") {
            InventoryFormat::Parquet
        } else if name.ends_with(".gz") {
            InventoryFormat::CsvGz
        } else if name.ends_with(".jsonl") || name.ends_with(".ndjson") {
            InventoryFormat::JsonLines
        } else {
            InventoryFormat::Csv
        }
    }
}

/// Opens the inventory at `location`, choosing the reader by the name (see the module docs).
pub fn open(stores: &Arc<Stores>, location: &Location, options: &OpenOptions) -> InventoryStream {
    open_as(stores, location, InventoryFormat::of(location), options)
}

/// Opens the inventory at `location` with the given reader.
pub fn open_as(
    stores: &Arc<Stores>,
    location: &Location,
    format: InventoryFormat,
    options: &OpenOptions,
) -> InventoryStream {
    match format {
        InventoryFormat::Manifest => {
            manifest::read(stores.clone(), location.clone(), options.clone())
        }
        InventoryFormat::Parquet => {
            parquet::read(stores.clone(), location.clone(), options.parquet_batch_size)
        }
        InventoryFormat::CsvGz => {
            csv::read(stores.clone(), location.clone(), true, options.clone())
        }
        InventoryFormat::Csv => csv::read(stores.clone(), location.clone(), false, options.clone()),
        InventoryFormat::JsonLines => jsonl::read(stores.clone(), location.clone()),
    }
}

/// A stream that runs `open` when first polled, then yields what it opened (or its error).
/// A reader yielding one record at a time (the CSV and Parquet readers).
trait RecordSource: Send + Sized + 'static {
    /// The next record, or `None` at the end.
    fn next_record(
        &mut self,
    ) -> impl Future<Output = Option<Result<InventoryRecord, InventoryError>>> + Send;
}

/// The records of `reader` as a stream.
fn records<R: RecordSource>(reader: R) -> InventoryStream {
    futures::StreamExt::boxed(futures::stream::unfold(reader, |mut reader| async move {
        let item = reader.next_record().await?;
        Some((item, reader))
    }))
}

fn lazily<F>(open: F) -> InventoryStream
where
    F: std::future::Future<Output = Result<InventoryStream, InventoryError>> + Send + 'static,
{
    use futures::StreamExt;
    futures::stream::once(open)
        .flat_map(|opened| match opened {
            Ok(stream) => stream,
            Err(err) => futures::stream::iter([Err(err)]).boxed(),
        })
        .boxed()
}

/// The store and path of `location`, or an error naming it.
fn resolve(
    stores: &Stores,
    location: &Location,
) -> Result<crate::stores::ObjectLocation, InventoryError> {
    stores.resolve(location).map_err(|source| InventoryError::Store {
        object: location.uri(),
        source: Box::new(source),
    })
}
