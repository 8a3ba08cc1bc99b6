//! Parquet inventories, read row group by row group through range requests, projecting only
//! `bucket`, `key` and (when present) `last_modified_date`.
//!
//! Columns are found by name, ignoring case. Keys and buckets may be any Arrow string or binary
//! type; `last_modified_date` may be a string (ISO 8601) or a TIMESTAMP in any unit, with or
//! without a time zone (naive values are UTC). Malformed rows are reported by 0-based row number
//! counted from the start of the file.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Int64Type, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType,
};
use arrow_array::{
    Array, ArrayRef, BinaryArray, Int64Array, LargeBinaryArray, LargeStringArray, RecordBatch,
    StringArray, StringViewArray,
};
use arrow_schema::{DataType, Schema, TimeUnit};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use object_store::ObjectStoreExt;
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::arrow::ProjectionMask;
use parquet::arrow::async_reader::{ParquetObjectReader, ParquetRecordBatchStream};

use super::dates::parse_datetime;
use super::{
    InventoryEntry, InventoryError, InventoryRecord, InventoryStream, MalformedReason,
    MalformedRow, RowPosition, lazily, resolve,
};
use crate::location::Location;
use crate::stores::Stores;

/// The name of the optional last-modified column.
pub const LAST_MODIFIED_COLUMN: &str = "last_modified_date";

/// Streams the Parquet file at `location` in batches of `batch_size` rows.
pub fn read(stores: Arc<Stores>, location: Location, batch_size: usize) -> InventoryStream {
    lazily(async move {
        let reader = ParquetReader::open(&stores, &location, batch_size.max(1)).await?;
        Ok(super::records(reader))
    })
}

/// Positions of the needed columns in the projected batches.
struct Columns {
    bucket: usize,
    key: usize,
    last_modified: Option<usize>,
}

struct ParquetReader {
    object: String,
    batches: ParquetRecordBatchStream<ParquetObjectReader>,
    columns: Columns,
    current: Option<BatchView>,
    next_row: u64,
    finished: bool,
}

impl super::RecordSource for ParquetReader {
    fn next_record(
        &mut self,
    ) -> impl Future<Output = Option<Result<InventoryRecord, InventoryError>>> + Send {
        self.read_next()
    }
}

impl ParquetReader {
    async fn open(
        stores: &Stores,
        location: &Location,
        batch_size: usize,
    ) -> Result<Self, InventoryError> {
        let object = location.uri();
        let target = resolve(stores, location)?;
        let meta = target.store.head(&target.path).await.map_err(|source| {
            InventoryError::Fetch { object: object.clone(), source: Box::new(source) }
        })?;
        let reader = ParquetObjectReader::new(target.store, target.path).with_file_size(meta.size);
        let parquet_error = |e: parquet::errors::ParquetError| InventoryError::Parquet {
            object: object.clone(),
            source: Box::new(e),
        };
        let builder = ParquetRecordBatchStreamBuilder::new(reader).await.map_err(parquet_error)?;
        let schema = builder.schema().clone();
        let bucket = find_column(&schema, "bucket", &object)?;
        let key = find_column(&schema, "key", &object)?;
        let last_modified = find_column(&schema, LAST_MODIFIED_COLUMN, &object).ok();
        check_text_type(&schema, bucket, &object)?;
        check_text_type(&schema, key, &object)?;
        if let Some(index) = last_modified {
            check_date_type(&schema, index, &object)?;
        }
        let mut wanted: Vec<usize> =
            [Some(bucket), Some(key), last_modified].into_iter().flatten().collect();
        wanted.sort_unstable();
        let projected = |index: usize| wanted.iter().position(|&w| w == index).unwrap_or_default();
        let columns = Columns {
            bucket: projected(bucket),
            key: projected(key),
            last_modified: last_modified.map(projected),
        };
        let mask = ProjectionMask::roots(builder.parquet_schema(), wanted.iter().copied());
        let batches = builder
            .with_projection(mask)
            .with_batch_size(batch_size)
            .build()
            .map_err(parquet_error)?;
        Ok(ParquetReader { object, batches, columns, current: None, next_row: 0, finished: false })
    }

    async fn read_next(&mut self) -> Option<Result<InventoryRecord, InventoryError>> {
        loop {
            if self.finished {
                return None;
            }
            if let Some(view) = &mut self.current
                && view.index < view.len
            {
                let record = view.record(&self.object, self.next_row);
                view.index += 1;
                self.next_row += 1;
                return Some(Ok(record));
            }
            match self.batches.next().await {
                None => {
                    self.finished = true;
                    return None;
                }
                Some(Err(source)) => {
                    self.finished = true;
                    return Some(Err(InventoryError::Parquet {
                        object: self.object.clone(),
                        source: Box::new(source),
                    }));
                }
                Some(Ok(batch)) => match BatchView::new(&batch, &self.columns, &self.object) {
                    Ok(view) => self.current = Some(view),
                    Err(err) => {
                        self.finished = true;
                        return Some(Err(err));
                    }
                },
            }
        }
    }
}

fn find_column(schema: &Schema, name: &str, object: &str) -> Result<usize, InventoryError> {
    let fields = schema.fields();
    fields
        .iter()
        .position(|f| f.name() == name)
        .or_else(|| fields.iter().position(|f| f.name().eq_ignore_ascii_case(name)))
        .ok_or_else(|| InventoryError::MissingColumn {
            object: object.to_string(),
            column: name.to_string(),
            found: fields.iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", "),
        })
}

fn is_text(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Binary
            | DataType::LargeBinary
    )
}

fn type_error(schema: &Schema, index: usize, object: &str) -> InventoryError {
    let field = schema.field(index);
    InventoryError::ColumnType {
        object: object.to_string(),
        column: field.name().clone(),
        data_type: field.data_type().to_string(),
    }
}

fn check_text_type(schema: &Schema, index: usize, object: &str) -> Result<(), InventoryError> {
    if is_text(schema.field(index).data_type()) {
        Ok(())
    } else {
        Err(type_error(schema, index, object))
    }
}

fn check_date_type(schema: &Schema, index: usize, object: &str) -> Result<(), InventoryError> {
    let data_type = schema.field(index).data_type();
    if is_text(data_type) || matches!(data_type, DataType::Timestamp(_, _)) {
        Ok(())
    } else {
        Err(type_error(schema, index, object))
    }
}

/// A string-like column of one batch.
enum TextColumn {
    Utf8(StringArray),
    LargeUtf8(LargeStringArray),
    View(StringViewArray),
    Binary(BinaryArray),
    LargeBinary(LargeBinaryArray),
}

/// A value that is not valid UTF-8.
struct NotUtf8;

impl TextColumn {
    fn new(array: &ArrayRef) -> Option<Self> {
        Some(match array.data_type() {
            DataType::Utf8 => TextColumn::Utf8(array.as_string::<i32>().clone()),
            DataType::LargeUtf8 => TextColumn::LargeUtf8(array.as_string::<i64>().clone()),
            DataType::Utf8View => TextColumn::View(array.as_string_view().clone()),
            DataType::Binary => TextColumn::Binary(array.as_binary::<i32>().clone()),
            DataType::LargeBinary => TextColumn::LargeBinary(array.as_binary::<i64>().clone()),
            _ => return None,
        })
    }

    fn value(&self, row: usize) -> Result<Option<&str>, NotUtf8> {
        fn utf8(bytes: &[u8]) -> Result<&str, NotUtf8> {
            std::str::from_utf8(bytes).map_err(|_| NotUtf8)
        }
        Ok(match self {
            TextColumn::Utf8(a) => a.is_valid(row).then(|| a.value(row)),
            TextColumn::LargeUtf8(a) => a.is_valid(row).then(|| a.value(row)),
            TextColumn::View(a) => a.is_valid(row).then(|| a.value(row)),
            TextColumn::Binary(a) => a.is_valid(row).then(|| utf8(a.value(row))).transpose()?,
            TextColumn::LargeBinary(a) => {
                a.is_valid(row).then(|| utf8(a.value(row))).transpose()?
            }
        })
    }
}

/// The last-modified column of one batch.
enum DateColumn {
    Text(TextColumn),
    Timestamp(Int64Array, TimeUnit),
}

impl DateColumn {
    fn new(array: &ArrayRef) -> Option<Self> {
        let DataType::Timestamp(unit, _) = array.data_type() else {
            return TextColumn::new(array).map(DateColumn::Text);
        };
        // Arrow stores zoned timestamps as UTC instants and we take naive ones as UTC, so the
        // zone never changes the instant.
        let values = match unit {
            TimeUnit::Second => array.as_primitive::<TimestampSecondType>().reinterpret_cast(),
            TimeUnit::Millisecond => {
                array.as_primitive::<TimestampMillisecondType>().reinterpret_cast()
            }
            TimeUnit::Microsecond => {
                array.as_primitive::<TimestampMicrosecondType>().reinterpret_cast()
            }
            TimeUnit::Nanosecond => {
                array.as_primitive::<TimestampNanosecondType>().reinterpret_cast::<Int64Type>()
            }
        };
        Some(DateColumn::Timestamp(values, *unit))
    }

    fn value(&self, row: usize) -> Result<Option<DateTime<Utc>>, MalformedReason> {
        let column = || LAST_MODIFIED_COLUMN.to_string();
        match self {
            DateColumn::Text(text) => {
                let value =
                    text.value(row).map_err(|_| MalformedReason::BadUtf8 { column: column() })?;
                match value.map(str::trim).filter(|v| !v.is_empty()) {
                    None => Ok(None),
                    Some(v) => parse_datetime(v).map(Some).ok_or_else(|| {
                        MalformedReason::BadDate { column: column(), value: v.to_string() }
                    }),
                }
            }
            DateColumn::Timestamp(values, unit) => {
                if values.is_null(row) {
                    return Ok(None);
                }
                let value = values.value(row);
                let instant = match unit {
                    TimeUnit::Second => DateTime::from_timestamp(value, 0),
                    TimeUnit::Millisecond => DateTime::from_timestamp_millis(value),
                    TimeUnit::Microsecond => DateTime::from_timestamp_micros(value),
                    TimeUnit::Nanosecond => Some(DateTime::from_timestamp_nanos(value)),
                };
                instant
                    .map(Some)
                    .ok_or(MalformedReason::TimestampOutOfRange { column: column(), value })
            }
        }
    }
}

/// One decoded batch and the next row to hand out.
struct BatchView {
    bucket: TextColumn,
    key: TextColumn,
    last_modified: Option<DateColumn>,
    len: usize,
    index: usize,
}

impl BatchView {
    fn new(batch: &RecordBatch, columns: &Columns, object: &str) -> Result<Self, InventoryError> {
        let unexpected = |index: usize| type_error(batch.schema_ref(), index, object);
        let text =
            |index: usize| TextColumn::new(batch.column(index)).ok_or_else(|| unexpected(index));
        let last_modified = match columns.last_modified {
            Some(index) => {
                Some(DateColumn::new(batch.column(index)).ok_or_else(|| unexpected(index))?)
            }
            None => None,
        };
        Ok(BatchView {
            bucket: text(columns.bucket)?,
            key: text(columns.key)?,
            last_modified,
            len: batch.num_rows(),
            index: 0,
        })
    }

    fn record(&self, object: &str, row_number: u64) -> InventoryRecord {
        match self.entry(self.index) {
            Ok(entry) => InventoryRecord::Entry(entry),
            Err(reason) => InventoryRecord::Malformed(MalformedRow {
                object: object.to_string(),
                position: RowPosition::Row(row_number),
                reason,
            }),
        }
    }

    fn entry(&self, row: usize) -> Result<InventoryEntry, MalformedReason> {
        let bucket = self
            .bucket
            .value(row)
            .map_err(|_| MalformedReason::BadUtf8 { column: "bucket".into() })?
            .filter(|b| !b.is_empty())
            .ok_or(MalformedReason::EmptyBucket)?;
        let key = self
            .key
            .value(row)
            .map_err(|_| MalformedReason::BadUtf8 { column: "key".into() })?
            .filter(|k| !k.is_empty())
            .ok_or(MalformedReason::EmptyKey)?;
        let last_modified = match &self.last_modified {
            Some(dates) => dates.value(row)?,
            None => None,
        };
        Ok(InventoryEntry { bucket: bucket.to_string(), key: key.to_string(), last_modified })
    }
}
