//! Items → one stac-geoparquet file (spec 1.0.0), which stac-geoparquet and rustac read back
//! into items.
//!
//! The layout is the spec's, not the table's: `bbox` is a `{xmin, ymin, xmax, ymax}` struct,
//! `stac_extensions`, `links` and `assets` are nested Arrow types, every property is a column of
//! its own, and the STAC timestamps (`datetime`, `start_datetime`, `end_datetime`, `created`,
//! `updated`) are `timestamp[us, UTC]`. Column types are inferred from the items by arrow-json,
//! one member at a time, because, unlike the table, the output holds whatever members the items
//! have: a member null in every item is text, and a member whose shape differs between items
//! (no one Arrow type fits) is written as JSON text.

use std::io::Write;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BinaryBuilder};
use arrow::compute::cast;
use arrow::datatypes::TimestampMicrosecondType;
use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Fields, Schema, TimeUnit};
use geo::BoundingRect;
use geo_types::Geometry;
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use serde_json::{Map, Value as Json};

use crate::geoparquet::{GEO_KEY, GeoSummary, STAC_GEOPARQUET_KEY, STAC_GEOPARQUET_VALUE};

/// The projection extension's footprint, which the spec stores as WKB.
const PROJ_GEOMETRY: &str = "proj:geometry";

/// STAC timestamps written as timestamp columns.
const TIMESTAMPS: [&str; 5] = ["datetime", "start_datetime", "end_datetime", "created", "updated"];

/// Why the items could not be written as stac-geoparquet.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StacGeoparquetError {
    /// An item has no usable geometry.
    #[error("item '{id}': {reason}")]
    Geometry {
        /// The item.
        id: String,
        /// Why.
        reason: String,
    },
    /// The items' members do not fit one Arrow schema (e.g. a member that is an object in one
    /// item and a number in another).
    #[error("the items do not fit one stac-geoparquet schema: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    /// Writing Parquet failed.
    #[error("writing stac-geoparquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
}

/// Writes `items` (STAC item JSON) as one stac-geoparquet file.
pub fn write_stac_geoparquet(
    items: &[Json],
    out: impl Write + Send,
) -> Result<(), StacGeoparquetError> {
    let mut records = Vec::with_capacity(items.len());
    let mut geometries = Vec::with_capacity(items.len());
    for item in items {
        let (record, geometry) = flatten(item)?;
        records.push(record);
        geometries.push(geometry);
    }
    let batch = record_batch(&records, &geometries)?;
    let mut summary = GeoSummary::default();
    for (wkb, g) in &geometries {
        summary.add(wkb, g.bounding_rect().map(|r| [r.min().x, r.min().y, r.max().x, r.max().y]));
    }
    let props = WriterProperties::builder()
        .set_key_value_metadata(Some(vec![
            KeyValue::new(GEO_KEY.to_string(), summary.to_json()),
            KeyValue::new(STAC_GEOPARQUET_KEY.to_string(), STAC_GEOPARQUET_VALUE.to_string()),
        ]))
        .build();
    let mut writer = ArrowWriter::try_new(out, batch.schema(), Some(props))?;
    writer.write(&batch)?;
    writer.close()?;
    Ok(())
}

/// An item's geometry, as WKB and decoded.
type Footprint = (Vec<u8>, Geometry<f64>);

/// One item as a flat record (properties lifted to the top level, `bbox` as a struct) and its
/// geometry.
fn flatten(item: &Json) -> Result<(Json, Footprint), StacGeoparquetError> {
    let id = item.get("id").and_then(Json::as_str).unwrap_or_default().to_string();
    let bad = |reason: String| StacGeoparquetError::Geometry { id: id.clone(), reason };
    let geometry: Geometry<f64> = item
        .get("geometry")
        .cloned()
        .ok_or_else(|| bad("no geometry".into()))
        .and_then(|g| geojson::Geometry::from_json_value(g).map_err(|e| bad(e.to_string())))
        .and_then(|g| Geometry::try_from(g).map_err(|e| bad(e.to_string())))?;
    let mut wkb = Vec::new();
    wkb::writer::write_geometry(&mut wkb, &geometry, &wkb::writer::WriteOptions::default())
        .map_err(|e| bad(e.to_string()))?;

    let mut record = Map::new();
    if let Json::Object(top) = item {
        for (k, v) in top {
            if k != "geometry" && k != "properties" && k != "bbox" {
                record.insert(k.clone(), v.clone());
            }
        }
    }
    if let Some(Json::Object(props)) = item.get("properties") {
        for (k, v) in props {
            record.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    let bbox = match item
        .get("bbox")
        .and_then(Json::as_array)
        .map(|b| b.iter().filter_map(Json::as_f64).collect::<Vec<_>>())
    {
        Some(b) if b.len() == 4 => [b[0], b[1], b[2], b[3]],
        Some(b) if b.len() == 6 => [b[0], b[1], b[3], b[4]],
        _ => {
            let r = geometry.bounding_rect().ok_or_else(|| bad("empty geometry".into()))?;
            [r.min().x, r.min().y, r.max().x, r.max().y]
        }
    };
    record.insert(
        "bbox".into(),
        serde_json::json!({"xmin": bbox[0], "ymin": bbox[1], "xmax": bbox[2], "ymax": bbox[3]}),
    );
    Ok((Json::Object(record), (wkb, geometry)))
}

fn record_batch(
    records: &[Json],
    geometries: &[Footprint],
) -> Result<RecordBatch, StacGeoparquetError> {
    let mut names: Vec<&String> = Vec::new();
    for r in records {
        for k in r.as_object().into_iter().flat_map(Map::keys) {
            if !names.contains(&k) {
                names.push(k);
            }
        }
    }
    let mut fields: Vec<Field> = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for name in names {
        let values: Vec<Json> =
            records.iter().map(|r| r.get(name.as_str()).cloned().unwrap_or(Json::Null)).collect();
        let typed = if name == PROJ_GEOMETRY {
            wkb_column(name, &values)
        } else {
            typed_column(name, &values)
        };
        let (field, column) = match typed {
            Ok(typed) => typed,
            // Members whose shape differs between items (e.g. `proj:geometry` a Polygon in one
            // item and a Point in another) fit no one Arrow type: they are kept as JSON text.
            Err(_) => json_text_column(name, &values),
        };
        fields.push(field);
        columns.push(column);
    }
    let mut wkb = BinaryBuilder::new();
    for (bytes, _) in geometries {
        wkb.append_value(bytes);
    }
    fields.push(Field::new("geometry", DataType::Binary, true));
    columns.push(Arc::new(wkb.finish()));
    let options = arrow_array::RecordBatchOptions::new().with_row_count(Some(records.len()));
    Ok(RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), columns, &options)?)
}

/// One member of every item as a column of the type arrow-json infers for it.
fn typed_column(
    name: &str,
    values: &[Json],
) -> Result<(Field, ArrayRef), arrow_schema::ArrowError> {
    let rows: Vec<Json> = values.iter().map(|v| serde_json::json!({ name: v })).collect();
    let inferred = arrow_json::reader::infer_json_schema_from_iterator(rows.iter().map(Ok))?;
    let field = match inferred.fields().first() {
        Some(f) => without_null_types(f),
        None => Field::new(name, DataType::Utf8, true),
    };
    let schema = Arc::new(Schema::new(vec![field.clone()]));
    let mut decoder = arrow_json::ReaderBuilder::new(schema.clone())
        .with_coerce_primitive(true)
        .build_decoder()?;
    decoder.serialize(&rows)?;
    let batch = decoder.flush()?.unwrap_or_else(|| RecordBatch::new_empty(schema));
    let column = batch.column(0).clone();
    if TIMESTAMPS.contains(&name) && field.data_type() == &DataType::Utf8 {
        // Parsed as naive UTC (the strings carry `Z`), then labelled: casting straight to a
        // named zone needs arrow's chrono-tz feature.
        let naive = cast(&column, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
        let utc = naive.as_primitive::<TimestampMicrosecondType>().clone().with_timezone("UTC");
        return Ok((Field::new(name, utc.data_type().clone(), true), Arc::new(utc)));
    }
    Ok((field, column))
}

/// GeoJSON geometries (`proj:geometry`) as WKB, which stac-geoparquet readers decode.
fn wkb_column(name: &str, values: &[Json]) -> Result<(Field, ArrayRef), arrow_schema::ArrowError> {
    let mut b = BinaryBuilder::new();
    for v in values {
        if v.is_null() {
            b.append_null();
            continue;
        }
        let g = geojson::Geometry::from_json_value(v.clone())
            .ok()
            .and_then(|g| Geometry::<f64>::try_from(g).ok())
            .ok_or_else(|| {
                arrow_schema::ArrowError::ParseError(format!("{name}: not a geometry"))
            })?;
        let mut bytes = Vec::new();
        wkb::writer::write_geometry(&mut bytes, &g, &wkb::writer::WriteOptions::default())
            .map_err(|e| arrow_schema::ArrowError::ParseError(e.to_string()))?;
        b.append_value(bytes);
    }
    Ok((Field::new(name, DataType::Binary, true), Arc::new(b.finish())))
}

/// One member of every item as JSON text (strings as they are).
fn json_text_column(name: &str, values: &[Json]) -> (Field, ArrayRef) {
    let texts: arrow_array::StringArray = values
        .iter()
        .map(|v| match v {
            Json::Null => None,
            Json::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        })
        .collect();
    (Field::new(name, DataType::Utf8, true), Arc::new(texts))
}

/// The field with every `Null` type (a member null or empty in every item) made text.
fn without_null_types(f: &Field) -> Field {
    let t = match f.data_type() {
        DataType::Null => DataType::Utf8,
        DataType::List(inner) => DataType::List(Arc::new(without_null_types(inner))),
        DataType::Struct(children) => DataType::Struct(
            children.iter().map(|c| Arc::new(without_null_types(c))).collect::<Fields>(),
        ),
        other => other.clone(),
    };
    Field::new(f.name(), t, true).with_metadata(f.metadata().clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use serde_json::json;

    #[test]
    fn items_become_one_file_with_spec_columns() {
        let items = vec![
            json!({"type": "Feature", "stac_version": "1.1.0", "id": "a", "links": [],
                "bbox": [0.0, 0.0, 1.0, 1.0], "assets": {"data": {"href": "x"}},
                "geometry": {"type": "Point", "coordinates": [0.5, 0.5]},
                "properties": {"datetime": "2020-01-01T00:00:00Z", "cloud": 3, "empty": null}}),
            json!({"type": "Feature", "stac_version": "1.1.0", "id": "b", "links": [],
                "assets": {"other": {"href": "y", "roles": ["data"]}},
                "geometry": {"type": "Point", "coordinates": [2.0, 3.0]},
                "properties": {"datetime": "2021-01-01T00:00:00Z", "cloud": 4.5}}),
        ];
        let mut buf = Vec::new();
        write_stac_geoparquet(&items, &mut buf).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(buf)).unwrap();
        let kv = reader.metadata().file_metadata().key_value_metadata().unwrap().clone();
        assert!(kv.iter().any(|k| k.key == "stac-geoparquet"));
        let schema = reader.schema().clone();
        assert_eq!(
            schema.field_with_name("datetime").unwrap().data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
        assert!(matches!(schema.field_with_name("bbox").unwrap().data_type(), DataType::Struct(_)));
        assert_eq!(schema.field_with_name("cloud").unwrap().data_type(), &DataType::Float64);
        let rows: usize = reader.build().unwrap().map(|b| b.unwrap().num_rows()).sum();
        assert_eq!(rows, 2);
    }
}
