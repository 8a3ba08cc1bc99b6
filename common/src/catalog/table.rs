//! The Iceberg view of the table: schema, partition spec, name mapping and properties.
//!
//! The schema is built from [`crate::schema::COLUMNS`], so the Iceberg field ids are the ones
//! every data file carries. Tables created by PyIceberg with only the 28 original fields are
//! evolved (fields 29+ added, same ids) rather than accepted as they are: our files carry those
//! columns, and without them in the schema readers would drop them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use iceberg::spec::{
    DEFAULT_SCHEMA_NAME_MAPPING, MappedField, NameMapping, NestedField, NestedFieldRef,
    PrimitiveType, Schema, StructType, Transform, Type, UnboundPartitionSpec,
};

use crate::partition::GridSpec;
use crate::schema::{BBOX_CHILDREN, COLUMNS, ColumnKind, DATETIME, GRID_PARTITION};

pub use crate::partition::{
    PROP_GRID_BOUNDARIES, PROP_GRID_ID_FIELD, PROP_GRID_RESOLUTION, PROP_GRID_TYPE,
};
/// Table property: where the item-id hash index lives.
pub const PROP_HASH_INDEX_PATH: &str = "earthcatalog.hash_index_path";
/// Name of the year partition field (as PyIceberg named it).
pub const YEAR_PARTITION: &str = "year";

/// The `earthcatalog.*` properties a caller asks for; `None` means "not specified".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableSettings {
    /// `earthcatalog.grid.type`, e.g. `h3`.
    pub grid_type: Option<String>,
    /// `earthcatalog.grid.resolution`, e.g. `1`.
    pub grid_resolution: Option<u8>,
    /// `earthcatalog.grid.boundaries_path`.
    pub boundaries_path: Option<String>,
    /// `earthcatalog.grid.id_field`.
    pub id_field: Option<String>,
    /// `earthcatalog.hash_index_path`.
    pub hash_index_path: Option<String>,
}

impl TableSettings {
    /// An H3 grid at `resolution`.
    pub fn h3(resolution: u8) -> Self {
        TableSettings {
            grid_type: Some("h3".into()),
            grid_resolution: Some(resolution),
            ..Default::default()
        }
    }

    /// The properties describing `grid` (and nothing else).
    pub fn from_grid(grid: &GridSpec) -> Self {
        match grid {
            GridSpec::H3 { resolution } => TableSettings::h3(*resolution),
            GridSpec::GeoJson { boundaries, id_field } => TableSettings {
                grid_type: Some("geojson".into()),
                boundaries_path: Some(boundaries.clone()),
                id_field: Some(id_field.clone()),
                ..Default::default()
            },
        }
    }

    /// The settings as table properties (only those that are set).
    pub fn to_properties(&self) -> BTreeMap<String, String> {
        let pairs = [
            (PROP_GRID_TYPE, self.grid_type.clone()),
            (PROP_GRID_RESOLUTION, self.grid_resolution.map(|r| r.to_string())),
            (PROP_GRID_BOUNDARIES, self.boundaries_path.clone()),
            (PROP_GRID_ID_FIELD, self.id_field.clone()),
            (PROP_HASH_INDEX_PATH, self.hash_index_path.clone()),
        ];
        pairs.into_iter().filter_map(|(k, v)| v.map(|v| (k.to_string(), v))).collect()
    }

    /// The settings recorded in a table's properties (a resolution that is not a number is
    /// left out).
    pub fn from_properties(props: &HashMap<String, String>) -> Self {
        let get = |k: &str| props.get(k).cloned();
        TableSettings {
            grid_type: get(PROP_GRID_TYPE),
            grid_resolution: props.get(PROP_GRID_RESOLUTION).and_then(|r| r.trim().parse().ok()),
            boundaries_path: get(PROP_GRID_BOUNDARIES),
            id_field: get(PROP_GRID_ID_FIELD),
            hash_index_path: get(PROP_HASH_INDEX_PATH),
        }
    }
}

/// A requested grid setting that contradicts the table's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GridMismatch {
    /// The property key.
    pub key: &'static str,
    /// The table's value.
    pub table: String,
    /// The requested value.
    pub requested: String,
}

/// The grid settings (type, resolution, GeoJSON boundaries and id field) the request
/// contradicts: a table partitioned by one grid must not be appended to with cells of another.
/// The hash index path never conflicts (an existing value is simply kept).
pub fn grid_mismatches(
    existing: &HashMap<String, String>,
    requested: &TableSettings,
) -> Vec<GridMismatch> {
    let wanted = requested.to_properties();
    [PROP_GRID_TYPE, PROP_GRID_RESOLUTION, PROP_GRID_BOUNDARIES, PROP_GRID_ID_FIELD]
        .into_iter()
        .filter_map(|key| {
            let table = existing.get(key)?;
            let requested = wanted.get(key)?;
            (table.trim() != requested.trim()).then(|| GridMismatch {
                key,
                table: table.clone(),
                requested: requested.clone(),
            })
        })
        .collect()
}

/// The requested properties the table does not have yet (existing values are never replaced).
pub fn missing_properties(
    existing: &HashMap<String, String>,
    requested: &TableSettings,
) -> BTreeMap<String, String> {
    requested.to_properties().into_iter().filter(|(k, _)| !existing.contains_key(k)).collect()
}

fn iceberg_type(kind: ColumnKind) -> Type {
    let primitive = match kind {
        ColumnKind::String => PrimitiveType::String,
        ColumnKind::Binary => PrimitiveType::Binary,
        ColumnKind::Long => PrimitiveType::Long,
        ColumnKind::Double => PrimitiveType::Double,
        ColumnKind::TimestampTz => PrimitiveType::Timestamptz,
        ColumnKind::BboxStruct => return Type::Struct(bbox_struct()),
    };
    Type::Primitive(primitive)
}

fn bbox_struct() -> StructType {
    StructType::new(
        BBOX_CHILDREN
            .iter()
            .map(|(id, name)| {
                Arc::new(NestedField::optional(*id, *name, Type::Primitive(PrimitiveType::Double)))
            })
            .collect(),
    )
}

/// Every table field as an Iceberg field (all optional, ids from [`COLUMNS`]).
pub fn iceberg_fields() -> Vec<NestedFieldRef> {
    COLUMNS
        .iter()
        .map(|c| Arc::new(NestedField::optional(c.id, c.name, iceberg_type(c.kind))))
        .collect()
}

/// The table schema.
pub fn iceberg_schema() -> iceberg::Result<Schema> {
    Schema::builder().with_schema_id(0).with_fields(iceberg_fields()).build()
}

/// identity(`grid_partition`) + year(`datetime`); iceberg assigns them ids 1000 and 1001.
pub fn partition_spec() -> iceberg::Result<UnboundPartitionSpec> {
    let source =
        |name: &str| COLUMNS.iter().find(|c| c.name == name).map(|c| c.id).unwrap_or_default();
    Ok(UnboundPartitionSpec::builder()
        .add_partition_field(source(GRID_PARTITION), GRID_PARTITION, Transform::Identity)?
        .add_partition_field(source(DATETIME), YEAR_PARTITION, Transform::Year)?
        .build())
}

fn mapped(field: &NestedField) -> MappedField {
    let children = match field.field_type.as_ref() {
        Type::Struct(s) => s.fields().iter().map(|f| mapped(f)).collect(),
        _ => Vec::new(),
    };
    MappedField::new(Some(field.id), vec![field.name.clone()], children)
}

/// The `schema.name-mapping.default` value for `schema` (nested struct children included), so
/// readers match Parquet columns by name instead of position.
pub fn name_mapping_json(schema: &Schema) -> String {
    let fields = schema.as_struct().fields().iter().map(|f| mapped(f)).collect();
    // A name mapping of plain strings and ints always serializes.
    serde_json::to_string(&NameMapping::new(fields)).unwrap_or_default()
}

/// The property key of the name mapping.
pub const NAME_MAPPING_KEY: &str = DEFAULT_SCHEMA_NAME_MAPPING;

/// Our fields missing from `schema` (a table created by PyIceberg with the original 28), in
/// id order, each with its children.
pub fn missing_fields(schema: &Schema) -> Vec<NestedFieldRef> {
    iceberg_fields().into_iter().filter(|f| schema.field_by_name(&f.name).is_none()).collect()
}

/// A field of `schema` whose id or type differs from ours (same name), described for an error.
pub fn conflicting_fields(schema: &Schema) -> Vec<String> {
    let ours = iceberg_schema().ok();
    let Some(ours) = ours else { return Vec::new() };
    let mut out = Vec::new();
    for theirs in schema.as_struct().fields() {
        if let Some(mine) = ours.field_by_name(&theirs.name)
            && (mine.id != theirs.id || mine.field_type != theirs.field_type)
        {
            out.push(format!(
                "'{}' is id {} {} in the table, id {} {} here",
                theirs.name, theirs.id, theirs.field_type, mine.id, mine.field_type
            ));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_keeps_the_declared_ids_including_bbox_children() {
        let schema = iceberg_schema().unwrap();
        assert_eq!(schema.field_by_name("proj:code").unwrap().id, 8);
        assert_eq!(schema.field_by_name("geometry_bbox").unwrap().id, 31);
        assert_eq!(schema.field_by_name("geometry_bbox.ymax").unwrap().id, 35);
        assert_eq!(schema.highest_field_id(), crate::schema::LAST_FIELD_ID);
        assert!(schema.as_struct().fields().iter().all(|f| !f.required));
    }

    #[test]
    fn the_name_mapping_lists_every_field_and_the_bbox_children() {
        let json = name_mapping_json(&iceberg_schema().unwrap());
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let list = v.as_array().unwrap();
        assert_eq!(list.len(), COLUMNS.len());
        assert_eq!(list[0], serde_json::json!({"field-id": 1, "names": ["id"]}));
        let bbox = &list[30];
        assert_eq!(bbox["names"], serde_json::json!(["geometry_bbox"]));
        assert_eq!(bbox["fields"][3], serde_json::json!({"field-id": 35, "names": ["ymax"]}));
    }

    #[test]
    fn a_geojson_grid_with_other_boundaries_or_id_field_conflicts() {
        let grid = |boundaries: &str, id_field: &str| GridSpec::GeoJson {
            boundaries: boundaries.into(),
            id_field: id_field.into(),
        };
        let existing: HashMap<String, String> =
            TableSettings::from_grid(&grid("s3://b/tiles.geojson", "name"))
                .to_properties()
                .into_iter()
                .collect();
        assert_eq!(
            grid_mismatches(
                &existing,
                &TableSettings::from_grid(&grid("s3://b/tiles.geojson", "name"))
            ),
            vec![]
        );
        let bad = grid_mismatches(
            &existing,
            &TableSettings::from_grid(&grid("s3://b/other.geojson", "tile_id")),
        );
        assert_eq!(
            bad,
            vec![
                GridMismatch {
                    key: PROP_GRID_BOUNDARIES,
                    table: "s3://b/tiles.geojson".into(),
                    requested: "s3://b/other.geojson".into()
                },
                GridMismatch {
                    key: PROP_GRID_ID_FIELD,
                    table: "name".into(),
                    requested: "tile_id".into()
                },
            ]
        );
    }

    #[test]
    fn the_hash_index_path_never_conflicts_and_missing_settings_are_added() {
        let existing: HashMap<String, String> = [
            (PROP_GRID_TYPE.to_string(), "h3".to_string()),
            (PROP_GRID_RESOLUTION.to_string(), "1".to_string()),
            (PROP_HASH_INDEX_PATH.to_string(), "s3://b/old.parquet".to_string()),
        ]
        .into();
        let mut req = TableSettings::h3(2);
        req.hash_index_path = Some("s3://b/new.parquet".into());
        req.id_field = Some("name".into());
        let bad = grid_mismatches(&existing, &req);
        assert_eq!(
            bad,
            vec![GridMismatch {
                key: PROP_GRID_RESOLUTION,
                table: "1".into(),
                requested: "2".into()
            }]
        );
        let add = missing_properties(&existing, &req);
        assert_eq!(
            add.into_iter().collect::<Vec<_>>(),
            vec![(PROP_GRID_ID_FIELD.to_string(), "name".to_string())]
        );
    }
}
