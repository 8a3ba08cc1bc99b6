//! The one table schema: every column of every data file, its Iceberg field id and its type.
//!
//! Fields 1–28 are the columns of earthcatalog 0.6.1 (same names, ids and Iceberg types), so
//! PyIceberg and the Python tool keep reading tables we write. Fields from 29 on are ours and are
//! documented in `docs/schema.md`. Every data file carries every column, with exactly the Arrow
//! type given here, whatever the items looked like: column types are never inferred from data.

use std::sync::{Arc, OnceLock};

use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

/// Timezone written on every timestamp column (UTC, microseconds: iceberg-rust reads only µs/ns).
pub const TIMESTAMP_TZ: &str = "UTC";

/// The physical kind of a column, shared by the Arrow and the Iceberg view of the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// UTF-8 text (Iceberg `string`).
    String,
    /// Raw bytes (Iceberg `binary`); only the WKB geometry.
    Binary,
    /// 64-bit signed integer (Iceberg `long`).
    Long,
    /// 64-bit float (Iceberg `double`).
    Double,
    /// Microseconds since the epoch, UTC (Iceberg `timestamptz`).
    TimestampTz,
    /// The GeoParquet 1.1 bbox covering: a struct of four doubles.
    BboxStruct,
}

/// One column of the table.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// Iceberg field id.
    pub id: i32,
    /// Column name, verbatim (`proj:code` keeps its colon).
    pub name: &'static str,
    /// Physical type.
    pub kind: ColumnKind,
}

const fn col(id: i32, name: &'static str, kind: ColumnKind) -> Column {
    Column { id, name, kind }
}

use ColumnKind::{BboxStruct, Binary, Double, Long, String as Str, TimestampTz};

/// Every column, in the order they are written.
pub const COLUMNS: &[Column] = &[
    col(1, "id", Str),
    col(2, "grid_partition", Str),
    col(3, "geometry", Binary),
    col(4, "datetime", TimestampTz),
    col(5, "platform", Str),
    col(6, "percent_valid_pixels", Long),
    col(7, "date_dt", Long),
    col(8, "proj:code", Str),
    col(9, "assets", Str),
    col(10, "links", Str),
    col(11, "stac_version", Str),
    col(12, "type", Str),
    col(13, "start_datetime", TimestampTz),
    col(14, "version", Str),
    col(15, "sat:orbit_state", Str),
    col(16, "scene_1_id", Str),
    col(17, "scene_2_id", Str),
    col(18, "scene_1_frame", Str),
    col(19, "scene_2_frame", Str),
    col(20, "mid_datetime", Str),
    col(21, "created", TimestampTz),
    col(22, "updated", TimestampTz),
    col(23, "end_datetime", TimestampTz),
    col(24, "stac_extensions", Str),
    col(25, "collection", Str),
    col(26, "latitude", Double),
    col(27, "longitude", Double),
    col(28, "bbox", Str),
    col(29, "extra_properties", Str),
    col(30, "extra_fields", Str),
    col(31, "geometry_bbox", BboxStruct),
];

/// Field ids and names of the children of `geometry_bbox`, in order.
pub const BBOX_CHILDREN: [(i32, &str); 4] =
    [(32, "xmin"), (33, "ymin"), (34, "xmax"), (35, "ymax")];

/// The highest field id in use; new columns take ids above it.
pub const LAST_FIELD_ID: i32 = 35;

/// Name of the partition column holding the cell key.
pub const GRID_PARTITION: &str = "grid_partition";
/// The item id column.
pub const ID: &str = "id";
/// Name of the WKB geometry column.
pub const GEOMETRY: &str = "geometry";
/// Name of the bbox covering column declared in the `geo` metadata.
pub const GEOMETRY_BBOX: &str = "geometry_bbox";
/// Name of the item timestamp column that drives the year partition.
pub const DATETIME: &str = "datetime";

/// Metadata key under which Parquet/Arrow carry a field's Iceberg id.
pub const FIELD_ID_KEY: &str = "PARQUET:field_id";

/// Position of a column in [`COLUMNS`] (and in the Arrow schema).
pub fn column_index(name: &str) -> Option<usize> {
    COLUMNS.iter().position(|c| c.name == name)
}

fn with_id(field: Field, id: i32) -> Field {
    field.with_metadata([(FIELD_ID_KEY.to_string(), id.to_string())].into())
}

/// The Arrow fields of the `geometry_bbox` struct.
pub fn bbox_fields() -> Fields {
    BBOX_CHILDREN
        .iter()
        .map(|(id, name)| with_id(Field::new(*name, DataType::Float64, true), *id))
        .collect()
}

/// The Arrow type of a column kind.
pub fn arrow_type(kind: ColumnKind) -> DataType {
    match kind {
        ColumnKind::String => DataType::Utf8,
        ColumnKind::Binary => DataType::Binary,
        ColumnKind::Long => DataType::Int64,
        ColumnKind::Double => DataType::Float64,
        ColumnKind::TimestampTz => {
            DataType::Timestamp(TimeUnit::Microsecond, Some(TIMESTAMP_TZ.into()))
        }
        ColumnKind::BboxStruct => DataType::Struct(bbox_fields()),
    }
}

/// The Arrow schema of every data file (all columns nullable, each tagged with its field id).
pub fn arrow_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let fields: Vec<Field> = COLUMNS
                .iter()
                .map(|c| with_id(Field::new(c.name, arrow_type(c.kind), true), c.id))
                .collect();
            Arc::new(Schema::new(fields))
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_28_fields_match_the_python_table() {
        let expected = [
            "id",
            "grid_partition",
            "geometry",
            "datetime",
            "platform",
            "percent_valid_pixels",
            "date_dt",
            "proj:code",
            "assets",
            "links",
            "stac_version",
            "type",
            "start_datetime",
            "version",
            "sat:orbit_state",
            "scene_1_id",
            "scene_2_id",
            "scene_1_frame",
            "scene_2_frame",
            "mid_datetime",
            "created",
            "updated",
            "end_datetime",
            "stac_extensions",
            "collection",
            "latitude",
            "longitude",
            "bbox",
        ];
        for (i, name) in expected.iter().enumerate() {
            assert_eq!(COLUMNS[i].name, *name);
            assert_eq!(COLUMNS[i].id, i as i32 + 1);
        }
    }

    #[test]
    fn field_ids_are_unique_and_bounded_by_the_last_id() {
        let mut ids: Vec<i32> = COLUMNS.iter().map(|c| c.id).collect();
        ids.extend(BBOX_CHILDREN.iter().map(|(id, _)| *id));
        let n = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), n);
        assert_eq!(ids.last().copied(), Some(LAST_FIELD_ID));
    }

    #[test]
    fn arrow_schema_has_one_field_per_column() {
        let schema = arrow_schema();
        assert_eq!(schema.fields().len(), COLUMNS.len());
        assert_eq!(
            schema.field(column_index(DATETIME).unwrap_or(0)).data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
    }
}
