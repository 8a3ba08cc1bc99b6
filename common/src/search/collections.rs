//! The collections a table holds and the time each spans: what a STAC API lists under
//! `/collections`.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimeUnit, TimestampMicrosecondType};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use iceberg::table::Table;

use super::SearchError;
use crate::schema;

/// The column the collection id is kept in.
const COLLECTION: &str = "collection";

/// One collection of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionSummary {
    /// The collection id (items without one are listed under no collection).
    pub id: String,
    /// The earliest item `datetime`, if any item has one.
    pub start: Option<DateTime<Utc>>,
    /// The latest item `datetime`.
    pub end: Option<DateTime<Utc>>,
}

/// The collections of the current snapshot, by id, with their `datetime` range. Reads two
/// columns of every file: done once per snapshot, not per request.
pub async fn collections(table: &Table) -> Result<Vec<CollectionSummary>, SearchError> {
    let iceberg = |action| move |e| SearchError::Iceberg { action, source: Box::new(e) };
    let scan = table
        .scan()
        .select([COLLECTION, schema::DATETIME])
        .build()
        .map_err(iceberg("planning the collections scan"))?;
    let mut batches = scan.to_arrow().await.map_err(iceberg("reading the collections"))?;
    let mut ranges: BTreeMap<String, (Option<i64>, Option<i64>)> = BTreeMap::new();
    let micros = DataType::Timestamp(TimeUnit::Microsecond, Some(schema::TIMESTAMP_TZ.into()));
    while let Some(batch) = batches.try_next().await.map_err(iceberg("reading the collections"))? {
        let (Some(ids), Some(times)) =
            (batch.column_by_name(COLLECTION), batch.column_by_name(schema::DATETIME))
        else {
            continue;
        };
        let ids = cast(ids, &DataType::Utf8).map_err(|source| column_type(COLLECTION, source))?;
        let times = cast(times, &micros).map_err(|source| column_type(schema::DATETIME, source))?;
        let (ids, times) =
            (ids.as_string::<i32>(), times.as_primitive::<TimestampMicrosecondType>());
        for row in 0..ids.len() {
            if ids.is_null(row) {
                continue;
            }
            let range = ranges.entry(ids.value(row).to_string()).or_default();
            if times.is_valid(row) {
                let t = times.value(row);
                range.0 = Some(range.0.map_or(t, |s| s.min(t)));
                range.1 = Some(range.1.map_or(t, |e| e.max(t)));
            }
        }
    }
    Ok(ranges
        .into_iter()
        .map(|(id, (start, end))| CollectionSummary {
            id,
            start: start.and_then(DateTime::from_timestamp_micros),
            end: end.and_then(DateTime::from_timestamp_micros),
        })
        .collect())
}

fn column_type(column: &'static str, source: arrow_schema::ArrowError) -> SearchError {
    SearchError::Rebuild(crate::stac::RebuildError::ColumnType {
        column,
        expected: "its schema type".into(),
        source,
    })
}
