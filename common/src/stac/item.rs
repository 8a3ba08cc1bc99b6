//! The conversion of one STAC item into an [`ItemRow`] plus its footprint.

use geo::BoundingRect;
use geo_types::Geometry;
use serde_json::{Map, Value as Json};

use super::ItemRejection;
use super::columns::{
    KNOWN_TOP_LEVEL, convert, is_typed_property, property_columns, shown, top_level_columns,
    top_level_json_columns,
};
use super::row::{ItemRow, Value, idx};
use super::spelling::Spelled;
use crate::partition::read_with_bbox;
use crate::schema::column_index;

/// An item ready for fan-out: its row (without `grid_partition`) and its footprint.
#[derive(Debug, Clone)]
pub struct ParsedItem {
    /// Column values.
    pub row: ItemRow,
    /// The footprint, lon/lat degrees, as the partitioner reads it (the item's `bbox` decides
    /// the reading of its widest edges: [`read_with_bbox`]).
    pub geometry: Geometry<f64>,
}

/// Parses item JSON bytes; JSON text columns keep the source's spelling of every value.
pub fn parse_item(bytes: &[u8]) -> Result<ParsedItem, ItemRejection> {
    let json: Json =
        serde_json::from_slice(bytes).map_err(|e| ItemRejection::InvalidJson(e.to_string()))?;
    let top = Spelled::of(bytes);
    let props = top.raw("properties").map(|p| Spelled::of(p.as_bytes())).unwrap_or_default();
    convert_item(&json, &top, &props)
}

/// Converts an already-parsed item (numbers in JSON text are spelled as serde_json writes them).
pub fn parse_item_value(json: &Json) -> Result<ParsedItem, ItemRejection> {
    convert_item(json, &Spelled::default(), &Spelled::default())
}

/// The conversion itself; `top` and `props_spelled` hold the source text of the item's members and of
/// its properties' members, when known.
fn convert_item(
    json: &Json,
    top: &Spelled<'_>,
    props_spelled: &Spelled<'_>,
) -> Result<ParsedItem, ItemRejection> {
    let item = json.as_object().ok_or(ItemRejection::NotAnObject)?;
    if let Some(t) = item.get("type")
        && t.as_str() != Some("Feature")
    {
        return Err(ItemRejection::NotAFeature(
            t.as_str().map_or_else(|| shown(t), str::to_string),
        ));
    }
    match item.get("id") {
        Some(Json::String(s)) if !s.is_empty() => {}
        _ => return Err(ItemRejection::MissingId),
    }
    let empty = Map::new();
    let props = match item.get("properties") {
        Some(Json::Object(p)) => p,
        None | Some(Json::Null) => &empty,
        Some(other) => {
            return Err(ItemRejection::BadValue {
                field: "properties",
                expected: "object",
                value: shown(other),
            });
        }
    };

    let mut row = ItemRow::empty();
    for &(i, name, kind) in top_level_columns() {
        if let Some(v) = item.get(name) {
            row.set(i, convert(name, kind, v, top.raw(name))?);
        }
    }
    for &(i, name, _) in top_level_json_columns() {
        if let Some(v) = item.get(name).filter(|v| !v.is_null()) {
            row.set(i, Value::Text(top.text(name, v)));
        }
    }
    for &(i, name, kind) in property_columns() {
        if let Some(v) = props.get(name) {
            row.set(i, convert(name, kind, v, props_spelled.raw(name))?);
        }
    }
    // Pre-1.0 items put `collection` inside properties.
    if matches!(row.get_by_name("collection"), Some(Value::Null))
        && let Some(Json::String(c)) = props.get("collection")
    {
        row.set_by_name("collection", Value::Text(c.clone()));
    }
    row.set_by_name(
        "extra_properties",
        extras(props, props_spelled, |k| !is_typed_property(k) && k != "grid_partition"),
    );
    row.set_by_name("extra_fields", extras(item, top, |k| !KNOWN_TOP_LEVEL.contains(&k)));

    let geometry = footprint(item.get("geometry"))?;
    let bbox = geometry
        .bounding_rect()
        .ok_or_else(|| ItemRejection::InvalidGeometry("geometry has no coordinates".into()))?;
    row.set(
        idx::GEOMETRY_BBOX,
        Value::Bbox([bbox.min().x, bbox.min().y, bbox.max().x, bbox.max().y]),
    );
    row.set(idx::GEOMETRY, Value::Bytes(to_wkb(&geometry)?));
    debug_assert_eq!(column_index("geometry"), Some(idx::GEOMETRY));
    let geometry = read_with_bbox(geometry, declared_bbox(item.get("bbox")));
    Ok(ParsedItem { row, geometry })
}

/// The members of `obj` selected by `keep`, as compact JSON object text in source order and
/// spelling (null when there are none).
fn extras(obj: &Map<String, Json>, spelled: &Spelled<'_>, keep: impl Fn(&str) -> bool) -> Value {
    let mut text = String::new();
    for (k, v) in obj.iter().filter(|(k, _)| keep(k)) {
        text.push(if text.is_empty() { '{' } else { ',' });
        text.push_str(&Json::String(k.clone()).to_string());
        text.push(':');
        text.push_str(&spelled.text(k, v));
    }
    if text.is_empty() {
        return Value::Null;
    }
    text.push('}');
    Value::Text(text)
}

/// The item's own `bbox` as `[west, south, east, north]` (a 3-D bbox without its heights);
/// `None` when it is absent or not 4 or 6 numbers.
fn declared_bbox(v: Option<&Json>) -> Option<[f64; 4]> {
    let n: Vec<f64> = v?.as_array()?.iter().map(Json::as_f64).collect::<Option<_>>()?;
    match n.as_slice() {
        [w, s, e, north] | [w, s, _, e, north, _] => Some([*w, *s, *e, *north]),
        _ => None,
    }
}

fn footprint(v: Option<&Json>) -> Result<Geometry<f64>, ItemRejection> {
    let v = match v {
        None | Some(Json::Null) => return Err(ItemRejection::MissingGeometry),
        Some(v) => v,
    };
    let g = super::geometry::from_json(v).map_err(ItemRejection::InvalidGeometry)?;
    check_coordinates(&g)?;
    Ok(g)
}

fn check_coordinates(g: &Geometry<f64>) -> Result<(), ItemRejection> {
    use geo::CoordsIter;
    let mut n = 0usize;
    for c in g.coords_iter() {
        n += 1;
        if !c.x.is_finite() || !c.y.is_finite() {
            return Err(ItemRejection::InvalidGeometry(format!(
                "non-finite coordinate ({}, {})",
                c.x, c.y
            )));
        }
        if c.y.abs() > 90.0 + 1e-6 {
            return Err(ItemRejection::InvalidGeometry(format!(
                "latitude {} outside [-90, 90] (coordinates must be lon, lat degrees)",
                c.y
            )));
        }
    }
    if n == 0 {
        return Err(ItemRejection::InvalidGeometry("geometry has no coordinates".into()));
    }
    Ok(())
}

fn to_wkb(g: &Geometry<f64>) -> Result<Vec<u8>, ItemRejection> {
    let mut buf = Vec::with_capacity(256);
    wkb::writer::write_geometry(&mut buf, g, &wkb::writer::WriteOptions::default())
        .map_err(|e| ItemRejection::InvalidGeometry(format!("cannot encode as WKB: {e}")))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn itslive_like() -> Json {
        json!({
            "type": "Feature", "stac_version": "1.1.0",
            "stac_extensions": ["https://stac-extensions.github.io/projection/v2.0.0/schema.json"],
            "id": "LC08_X_LC08_G0120V02_P056", "collection": "itslive-granules",
            "bbox": [-33.3, 59.9, -29.3, 62.1],
            "geometry": {"type": "Polygon", "coordinates": [[[-33.3, 59.9], [-29.3, 59.9], [-29.3, 62.1], [-33.3, 62.1], [-33.3, 59.9]]]},
            "properties": {
                "datetime": "2019-06-17T00:00:00Z", "start_datetime": "2019-05-24T13:00:00Z",
                "end_datetime": "2019-07-11T13:00:00Z", "mid_datetime": "2019-06-17T00:00:00Z",
                "created": "2020-09-01T00:00:00+02:00", "updated": "2020-09-01T00:00:00Z",
                "platform": "LC08", "version": "002", "percent_valid_pixels": 56, "date_dt": 48.0,
                "latitude": 61.0, "longitude": -31.3, "proj:code": "EPSG:32624",
                "sat:orbit_state": "descending", "scene_1_id": "a", "scene_2_id": "b",
                "scene_1_frame": "232011", "scene_2_frame": "232011", "cloud": 3
            },
            "links": [], "assets": {"data": {"href": "s3://x/y.nc", "roles": ["data"]}},
            "foreign": true
        })
    }

    #[test]
    fn an_itslive_item_fills_every_typed_column() {
        let p = parse_item_value(&itslive_like()).unwrap();
        let r = &p.row;
        assert_eq!(r.id(), "LC08_X_LC08_G0120V02_P056");
        assert_eq!(r.get_by_name("date_dt"), Some(&Value::Long(48)));
        assert_eq!(r.get_by_name("percent_valid_pixels"), Some(&Value::Long(56)));
        assert_eq!(
            r.get_by_name("mid_datetime"),
            Some(&Value::Text("2019-06-17T00:00:00Z".into()))
        );
        assert_eq!(r.get_by_name("created"), Some(&Value::Micros(1_598_911_200_000_000)));
        assert_eq!(r.get_by_name("bbox"), Some(&Value::Text("[-33.3,59.9,-29.3,62.1]".into())));
        assert_eq!(r.get_by_name("links"), Some(&Value::Text("[]".into())));
        assert_eq!(r.get_by_name("extra_properties"), Some(&Value::Text(r#"{"cloud":3}"#.into())));
        assert_eq!(r.get_by_name("extra_fields"), Some(&Value::Text(r#"{"foreign":true}"#.into())));
        assert_eq!(r.geometry_bbox(), Some([-33.3, 59.9, -29.3, 62.1]));
        assert_eq!(r.wkb()[0..5], [1, 3, 0, 0, 0], "little-endian ISO WKB polygon");
        assert_eq!(r.get_by_name("grid_partition"), Some(&Value::Null));
    }

    #[test]
    fn unusable_items_are_rejected_with_the_reason() {
        let mut no_geom = itslive_like();
        no_geom["geometry"] = Json::Null;
        assert_eq!(parse_item_value(&no_geom).unwrap_err(), ItemRejection::MissingGeometry);

        let mut bad_dt = itslive_like();
        bad_dt["properties"]["datetime"] = json!("yesterday");
        assert_eq!(
            parse_item_value(&bad_dt).unwrap_err().to_string(),
            "'datetime' is not a valid timestamp: \"yesterday\""
        );

        let mut no_id = itslive_like();
        no_id.as_object_mut().unwrap().remove("id");
        assert_eq!(parse_item_value(&no_id).unwrap_err(), ItemRejection::MissingId);

        assert!(matches!(parse_item(b"{not json"), Err(ItemRejection::InvalidJson(_))));
        let fc = json!({"type": "FeatureCollection", "features": []});
        assert_eq!(
            parse_item_value(&fc).unwrap_err().to_string(),
            "not a STAC item: type is 'FeatureCollection', expected 'Feature'"
        );
        let mut empty = itslive_like();
        empty["geometry"] = json!({"type": "Polygon", "coordinates": []});
        assert!(matches!(parse_item_value(&empty), Err(ItemRejection::InvalidGeometry(_))));
    }

    #[test]
    fn a_null_datetime_is_allowed() {
        let mut v = itslive_like();
        v["properties"]["datetime"] = Json::Null;
        assert_eq!(parse_item_value(&v).unwrap().row.datetime_micros(), None);
    }
}
