//! Shared helpers of the catalog tests: small data files written with the real table schema.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;

use arrow_array::builder::{Float64Builder, StringBuilder, TimestampMicrosecondBuilder};
use arrow_array::{ArrayRef, RecordBatch, StructArray, TimestampMillisecondArray, new_null_array};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use earthcatalog_common::location::Location;
use earthcatalog_common::schema::{arrow_schema, bbox_fields, column_index};
use earthcatalog_common::stores::{S3Settings, Stores};
use object_store::ObjectStoreExt;
use parquet::arrow::ArrowWriter;

/// One test row: id, cell, datetime (µs since the epoch).
#[derive(Debug, Clone)]
pub struct Row {
    pub id: String,
    pub cell: Option<String>,
    pub micros: Option<i64>,
}

/// A row at `iso` (RFC 3339) in `cell`.
pub fn row(id: &str, cell: &str, iso: &str) -> Row {
    Row { id: id.into(), cell: Some(cell.into()), micros: Some(micros(iso)) }
}

/// Microseconds since the epoch of an RFC 3339 time.
pub fn micros(iso: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(iso).unwrap().timestamp_micros()
}

pub fn stores() -> Arc<Stores> {
    Arc::new(Stores::new(S3Settings::default()))
}

fn bbox_column(rows: &[Row]) -> ArrayRef {
    let fields = bbox_fields();
    let mut cols: Vec<ArrayRef> = Vec::new();
    for (i, _) in fields.iter().enumerate() {
        let mut b = Float64Builder::new();
        for (n, _) in rows.iter().enumerate() {
            b.append_value(n as f64 + i as f64 * 0.5);
        }
        cols.push(Arc::new(b.finish()));
    }
    Arc::new(StructArray::new(fields, cols, None))
}

/// A batch with the full table schema: id, grid_partition, datetime and geometry_bbox set,
/// every other column null.
pub fn batch(rows: &[Row]) -> RecordBatch {
    let schema = arrow_schema();
    let n = rows.len();
    let mut columns: Vec<ArrayRef> =
        schema.fields().iter().map(|f| new_null_array(f.data_type(), n)).collect();
    let mut ids = StringBuilder::new();
    let mut cells = StringBuilder::new();
    let mut times = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    for r in rows {
        ids.append_value(&r.id);
        cells.append_option(r.cell.as_deref());
        times.append_option(r.micros);
    }
    columns[column_index("id").unwrap()] = Arc::new(ids.finish());
    columns[column_index("grid_partition").unwrap()] = Arc::new(cells.finish());
    columns[column_index("datetime").unwrap()] = Arc::new(times.finish());
    columns[column_index("geometry_bbox").unwrap()] = bbox_column(rows);
    RecordBatch::try_new(schema, columns).unwrap()
}

/// The same rows with `datetime` stored in milliseconds (as old PyArrow writers did).
pub fn batch_millis(rows: &[Row]) -> RecordBatch {
    let b = batch(rows);
    let dt = column_index("datetime").unwrap();
    let ms_type = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    let fields: Vec<Field> = b
        .schema()
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            if i == dt {
                f.as_ref().clone().with_data_type(ms_type.clone())
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    let mut columns = b.columns().to_vec();
    let ms: TimestampMillisecondArray = rows
        .iter()
        .map(|r| r.micros.map(|m| m / 1000))
        .collect::<TimestampMillisecondArray>()
        .with_timezone("UTC");
    columns[dt] = Arc::new(ms);
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
}

/// Parquet bytes of `batch` (one row group per `rows_per_group` rows).
pub fn parquet_bytes(batch: &RecordBatch, rows_per_group: usize) -> Vec<u8> {
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(rows_per_group))
        .build();
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), Some(props)).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
    buf
}

/// Writes `batch` as Parquet at `location`.
pub async fn write_parquet(stores: &Stores, location: &Location, batch: &RecordBatch) {
    let bytes = parquet_bytes(batch, 1024);
    let loc = stores.resolve(location).unwrap();
    loc.store.put(&loc.path, bytes.into()).await.unwrap();
}

/// Writes `rows` under `root` in the Hive layout and returns the file's location.
pub async fn write_rows(stores: &Stores, root: &Location, name: &str, rows: &[Row]) -> Location {
    let cell = rows.first().and_then(|r| r.cell.clone()).unwrap_or_else(|| "none".into());
    let loc = root.join(&format!("grid_partition={cell}/{name}.parquet"));
    write_parquet(stores, &loc, &batch(rows)).await;
    loc
}
