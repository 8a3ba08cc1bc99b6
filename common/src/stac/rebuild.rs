//! Table rows → STAC item JSON: the inverse of [`super::parse_item_value`].
//!
//! Each column goes back where [`super::columns`] says it came from: typed properties into
//! `properties`, top-level members to the top level, JSON text columns parsed back, and
//! `extra_properties` / `extra_fields` merged in. What cannot come back exactly is listed in
//! `docs/schema.md` ("Items read back"): timestamps come back as RFC 3339 UTC (`Z`), whole-number
//! floats in long columns as integers, explicit nulls in typed columns as absent, and a
//! `collection` given only inside `properties` comes back at the top level too.

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{Float64Type, Int64Type, TimestampMicrosecondType};
use arrow_array::RecordBatch;
use chrono::{DateTime, SecondsFormat, Utc};
use geo_traits::to_geo::ToGeoGeometry;
use geo_types::Geometry;
use serde_json::{Map, Value as Json};

use super::columns::{property_columns, top_level_columns, top_level_json_columns};
use crate::schema::{self, COLUMNS, ColumnKind};

/// Why a row could not be turned back into an item.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RebuildError {
    /// A column has a type that cannot be read as the schema's type.
    #[error("column '{column}' cannot be read as {expected}: {source}")]
    ColumnType {
        /// The column.
        column: &'static str,
        /// The schema's Arrow type.
        expected: String,
        /// Arrow's error.
        source: arrow_schema::ArrowError,
    },
    /// The row has no id.
    #[error("a row has no id")]
    MissingId,
    /// The WKB geometry does not decode.
    #[error("item '{id}': the geometry is not valid WKB: {reason}")]
    Geometry {
        /// The item id.
        id: String,
        /// Why.
        reason: String,
    },
    /// A JSON text column does not hold JSON.
    #[error("item '{id}': column '{column}' does not hold JSON: {source}")]
    JsonText {
        /// The item id.
        id: String,
        /// The column.
        column: &'static str,
        /// The parser's error.
        source: serde_json::Error,
    },
}

/// The columns of one record batch, cast to the schema's types, ready to read items from.
#[derive(Debug)]
pub struct ItemColumns {
    /// Indexed like [`COLUMNS`]; `None` for a column the batch lacks (read as null).
    columns: Vec<Option<ArrayRef>>,
    rows: usize,
}

impl ItemColumns {
    /// Prepares a batch of table rows (any column order, missing columns read as null).
    pub fn new(batch: &RecordBatch) -> Result<ItemColumns, RebuildError> {
        let columns = COLUMNS
            .iter()
            .map(|c| match batch.column_by_name(c.name) {
                None => Ok(None),
                Some(a) => {
                    let target = schema::arrow_type(c.kind);
                    let cast_to = match c.kind {
                        // The covering is rebuilt from the geometry; no need to cast the struct.
                        ColumnKind::BboxStruct => return Ok(None),
                        _ => target,
                    };
                    cast(a, &cast_to).map(Some).map_err(|source| RebuildError::ColumnType {
                        column: c.name,
                        expected: cast_to.to_string(),
                        source,
                    })
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ItemColumns { columns, rows: batch.num_rows() })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    fn array(&self, name: &str) -> Option<&ArrayRef> {
        schema::column_index(name).and_then(|i| self.columns[i].as_ref())
    }

    /// The id of row `row`.
    pub fn id(&self, row: usize) -> Option<&str> {
        text(self.array("id")?, row)
    }

    /// The collection of row `row`, if it has one.
    pub fn collection(&self, row: usize) -> Option<&str> {
        text(self.array("collection")?, row)
    }

    /// The cell the row was fanned out to.
    pub fn grid_partition(&self, row: usize) -> Option<&str> {
        text(self.array(schema::GRID_PARTITION)?, row)
    }

    /// The decoded footprint of row `row`.
    pub fn geometry(&self, row: usize) -> Result<Geometry<f64>, RebuildError> {
        let id = self.id(row).unwrap_or_default().to_string();
        let bytes = self
            .array(schema::GEOMETRY)
            .and_then(|a| a.as_binary_opt::<i32>())
            .filter(|a| a.is_valid(row))
            .map(|a| a.value(row))
            .ok_or_else(|| RebuildError::Geometry { id: id.clone(), reason: "null".into() })?;
        let wkb = wkb::reader::read_wkb(bytes)
            .map_err(|e| RebuildError::Geometry { id: id.clone(), reason: e.to_string() })?;
        wkb.try_to_geometry().ok_or_else(|| RebuildError::Geometry {
            id,
            reason: "an empty point cannot be drawn in GeoJSON".into(),
        })
    }

    /// The item of row `row`, with `geometry` as given (decoded once by the caller; `None`
    /// leaves the member out, for a caller that would drop it).
    pub fn item(&self, row: usize, geometry: Option<&Geometry<f64>>) -> Result<Json, RebuildError> {
        let id = self.id(row).ok_or(RebuildError::MissingId)?.to_string();
        let mut item = Map::new();
        for &(i, name, kind) in top_level_columns() {
            if let Some(v) = self.scalar(i, kind, row) {
                item.insert(name.to_string(), v);
            }
        }
        for &(i, name, _) in top_level_json_columns() {
            if let Some(t) = self.columns[i].as_ref().and_then(|a| text(a, row)) {
                item.insert(name.to_string(), parse_json_text(&id, name, t)?);
            }
        }
        if let Some(geometry) = geometry {
            item.insert("geometry".into(), super::geometry::to_json(geometry));
        }

        let mut properties = Map::new();
        for &(i, name, kind) in property_columns() {
            if let Some(v) = self.scalar(i, kind, row) {
                properties.insert(name.to_string(), v);
            }
        }
        if let Some(Json::Object(extra)) = self.json_object(&id, "extra_properties", row)? {
            properties.extend(extra);
        }
        // STAC requires the key: a null datetime (with start/end) is written as null.
        properties.entry("datetime").or_insert(Json::Null);
        item.insert("properties".into(), Json::Object(properties));
        if let Some(Json::Object(extra)) = self.json_object(&id, "extra_fields", row)? {
            item.extend(extra);
        }
        Ok(Json::Object(item))
    }

    fn json_object(
        &self,
        id: &str,
        name: &'static str,
        row: usize,
    ) -> Result<Option<Json>, RebuildError> {
        match self.array(name).and_then(|a| text(a, row)) {
            None => Ok(None),
            Some(t) => parse_json_text(id, name, t).map(Some),
        }
    }

    fn scalar(&self, i: usize, kind: ColumnKind, row: usize) -> Option<Json> {
        let a = self.columns[i].as_ref()?;
        if a.is_null(row) {
            return None;
        }
        Some(match kind {
            ColumnKind::String => Json::String(text(a, row)?.to_string()),
            ColumnKind::Long => Json::from(a.as_primitive_opt::<Int64Type>()?.value(row)),
            ColumnKind::Double => {
                serde_json::Number::from_f64(a.as_primitive_opt::<Float64Type>()?.value(row))
                    .map_or(Json::Null, Json::Number)
            }
            ColumnKind::TimestampTz => Json::String(format_timestamp(
                a.as_primitive_opt::<TimestampMicrosecondType>()?.value(row),
            )?),
            ColumnKind::Binary | ColumnKind::BboxStruct => return None,
        })
    }
}

fn text(a: &ArrayRef, row: usize) -> Option<&str> {
    let s = a.as_string_opt::<i32>()?;
    s.is_valid(row).then(|| s.value(row))
}

fn parse_json_text(id: &str, column: &'static str, t: &str) -> Result<Json, RebuildError> {
    serde_json::from_str(t).map_err(|source| RebuildError::JsonText {
        id: id.to_string(),
        column,
        source,
    })
}

/// A stored timestamp as RFC 3339 UTC: `Z`, and a fraction only as long as it needs (0, 3 or
/// 6 digits).
pub fn format_timestamp(micros: i64) -> Option<String> {
    DateTime::<Utc>::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fanout::CellRow;
    use crate::geoparquet::record_batch;
    use crate::stac::parse_item_value;
    use serde_json::json;
    use std::sync::Arc;

    fn round_trip(item: Json) -> Json {
        let parsed = parse_item_value(&item).unwrap();
        let row = CellRow { item: Arc::new(parsed.row), cell: "8106fffffffffff".into() };
        let batch = record_batch(&[row]).unwrap();
        let cols = ItemColumns::new(&batch).unwrap();
        let g = cols.geometry(0).unwrap();
        cols.item(0, Some(&g)).unwrap()
    }

    #[test]
    fn an_item_comes_back_with_every_member_it_had() {
        let item = json!({
            "type": "Feature", "stac_version": "1.1.0", "id": "a",
            "stac_extensions": ["https://x/proj.json"], "collection": "c",
            "bbox": [-33.5, 59.9, -29.3, 62.1],
            "geometry": {"type": "Polygon", "coordinates": [[[-33.5, 59.9], [-29.3, 59.9], [-29.3, 62.1], [-33.5, 59.9]]]},
            "properties": {"datetime": "2019-06-17T00:00:00Z", "platform": "LC08",
                "percent_valid_pixels": 56, "latitude": 61.25, "proj:code": "EPSG:32624",
                "cloud": {"a": [1, null]}, "created": "2020-09-01T00:00:00.123456Z"},
            "links": [{"rel": "self", "href": "x"}], "assets": {"data": {"href": "s3://x/y.nc"}},
            "foreign": true
        });
        assert_eq!(round_trip(item.clone()), item);
    }

    #[test]
    fn a_null_datetime_comes_back_and_a_properties_collection_is_also_lifted_up() {
        let mut item = json!({
            "type": "Feature", "id": "b",
            "geometry": {"type": "Point", "coordinates": [10.5, -3.25]},
            "properties": {"datetime": null, "collection": "old",
                "start_datetime": "2020-01-01T00:00:00Z", "end_datetime": "2020-12-31T23:59:59Z"},
        });
        let back = round_trip(item.clone());
        item["collection"] = json!("old");
        assert_eq!(back, item);
    }

    #[test]
    fn timestamps_come_back_in_utc_with_the_shortest_fraction() {
        assert_eq!(format_timestamp(0).as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(format_timestamp(1_024_000).as_deref(), Some("1970-01-01T00:00:01.024Z"));
        assert_eq!(format_timestamp(1_000_001).as_deref(), Some("1970-01-01T00:00:01.000001Z"));
    }
}
