//! Where each column's value comes from in a STAC item, and how a JSON value becomes it.

use std::sync::OnceLock;

use serde_json::Value as Json;

use super::ItemRejection;
use super::datetime::parse_timestamp_micros;
use super::row::Value;
use crate::schema::{COLUMNS, ColumnKind};

/// Where a column's value is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// `properties.<name>`.
    Property,
    /// A top-level member whose scalar value is stored as is.
    TopLevel,
    /// A top-level member stored as JSON text (`assets`, `links`, `stac_extensions`, `bbox`).
    TopLevelJson,
    /// Computed by the transform or at fan-out (`geometry`, `grid_partition`, extras, covering).
    Derived,
}

/// Top-level members that have a column (or are the geometry/properties themselves).
pub(crate) const KNOWN_TOP_LEVEL: &[&str] = &[
    "type",
    "stac_version",
    "stac_extensions",
    "id",
    "geometry",
    "bbox",
    "properties",
    "links",
    "assets",
    "collection",
];

fn source_of(name: &str) -> Source {
    match name {
        "id" | "type" | "stac_version" | "collection" => Source::TopLevel,
        "assets" | "links" | "stac_extensions" | "bbox" => Source::TopLevelJson,
        "grid_partition" | "geometry" | "extra_properties" | "extra_fields" | "geometry_bbox" => {
            Source::Derived
        }
        _ => Source::Property,
    }
}

/// `(column index, name, kind)` of every column read from `properties`.
pub(crate) fn property_columns() -> &'static [(usize, &'static str, ColumnKind)] {
    static CACHE: OnceLock<Vec<(usize, &'static str, ColumnKind)>> = OnceLock::new();
    CACHE.get_or_init(|| by_source(Source::Property))
}

/// `(column index, name, kind)` of every column read from a top-level member as is.
pub(crate) fn top_level_columns() -> &'static [(usize, &'static str, ColumnKind)] {
    static CACHE: OnceLock<Vec<(usize, &'static str, ColumnKind)>> = OnceLock::new();
    CACHE.get_or_init(|| by_source(Source::TopLevel))
}

/// `(column index, name, kind)` of every column holding a top-level member as JSON text.
pub(crate) fn top_level_json_columns() -> &'static [(usize, &'static str, ColumnKind)] {
    static CACHE: OnceLock<Vec<(usize, &'static str, ColumnKind)>> = OnceLock::new();
    CACHE.get_or_init(|| by_source(Source::TopLevelJson))
}

/// The item properties that have a typed column, with the column's kind (what a STAC API
/// lists as queryables).
pub fn typed_properties() -> impl Iterator<Item = (&'static str, ColumnKind)> {
    property_columns().iter().map(|(_, name, kind)| (*name, *kind))
}

/// Whether `properties.<name>` has its own column (so it is not an extra property).
pub(crate) fn is_typed_property(name: &str) -> bool {
    property_columns().iter().any(|(_, n, _)| *n == name)
}

fn by_source(source: Source) -> Vec<(usize, &'static str, ColumnKind)> {
    COLUMNS
        .iter()
        .enumerate()
        .filter(|(_, c)| source_of(c.name) == source)
        .map(|(i, c)| (i, c.name, c.kind))
        .collect()
}

/// JSON text of a value, cut to a readable length for error messages.
pub(crate) fn shown(v: &Json) -> String {
    let mut s = v.to_string();
    if s.len() > 80 {
        let mut cut = 77;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// Converts a JSON scalar to a column value of `kind` (see `docs/schema.md` for the rules);
/// `spelled` is the value's source text, when known, which a text column keeps.
pub(crate) fn convert(
    field: &'static str,
    kind: ColumnKind,
    v: &Json,
    spelled: Option<&str>,
) -> Result<Value, ItemRejection> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    let bad = |expected: &'static str| ItemRejection::BadValue { field, expected, value: shown(v) };
    match kind {
        ColumnKind::String => match v {
            Json::String(s) => Ok(Value::Text(s.clone())),
            // Numbers and booleans keep their JSON spelling: lossless, and one type per column.
            Json::Number(_) | Json::Bool(_) => {
                Ok(Value::Text(spelled.map_or_else(|| v.to_string(), str::to_string)))
            }
            _ => Err(bad("string")),
        },
        ColumnKind::Long => match v {
            Json::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Ok(Value::Long(i))
                } else if let Some(f) = n.as_f64().filter(|f| f.fract() == 0.0) {
                    // A whole float (ITS_LIVE writes `date_dt: 48.0`) is the integer it spells.
                    if f >= -(2f64.powi(63)) && f < 2f64.powi(63) {
                        Ok(Value::Long(f as i64))
                    } else {
                        Err(bad("long"))
                    }
                } else {
                    Err(bad("long"))
                }
            }
            _ => Err(bad("long")),
        },
        ColumnKind::Double => match v.as_f64() {
            Some(f) => Ok(Value::Double(f)),
            None => Err(bad("double")),
        },
        ColumnKind::TimestampTz => v
            .as_str()
            .and_then(parse_timestamp_micros)
            .map(Value::Micros)
            .ok_or_else(|| ItemRejection::BadTimestamp { field, value: shown(v) }),
        ColumnKind::Binary | ColumnKind::BboxStruct => Err(bad("derived")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn whole_floats_become_longs_and_fractions_are_refused() {
        assert_eq!(convert("date_dt", ColumnKind::Long, &json!(48.0), None), Ok(Value::Long(48)));
        assert_eq!(convert("date_dt", ColumnKind::Long, &json!(56), None), Ok(Value::Long(56)));
        let err =
            convert("percent_valid_pixels", ColumnKind::Long, &json!(56.5), None).unwrap_err();
        assert_eq!(err.to_string(), "'percent_valid_pixels' does not fit its long column: 56.5");
        assert!(convert("date_dt", ColumnKind::Long, &json!("48"), None).is_err());
        assert!(convert("date_dt", ColumnKind::Long, &json!(1e30), None).is_err());
    }

    #[test]
    fn integral_coordinates_are_doubles() {
        assert_eq!(
            convert("latitude", ColumnKind::Double, &json!(61), None),
            Ok(Value::Double(61.0))
        );
        assert!(convert("latitude", ColumnKind::Double, &json!("61"), None).is_err());
    }

    #[test]
    fn numbers_in_text_columns_keep_their_spelling_and_objects_are_refused() {
        assert_eq!(
            convert("version", ColumnKind::String, &json!(2), None),
            Ok(Value::Text("2".into()))
        );
        assert_eq!(
            convert("version", ColumnKind::String, &json!("002"), None),
            Ok(Value::Text("002".into()))
        );
        assert!(convert("version", ColumnKind::String, &json!({"a": 1}), None).is_err());
        assert_eq!(
            convert("version", ColumnKind::String, &json!(1000.0), Some("1E3")),
            Ok(Value::Text("1E3".into())),
            "a number keeps its source spelling"
        );
    }

    #[test]
    fn every_column_has_exactly_one_source() {
        let n =
            property_columns().len() + top_level_columns().len() + top_level_json_columns().len();
        let derived = COLUMNS.iter().filter(|c| source_of(c.name) == Source::Derived).count();
        assert_eq!(n + derived, COLUMNS.len());
        assert_eq!(derived, 5);
    }
}
