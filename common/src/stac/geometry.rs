//! GeoJSON geometry (as parsed JSON) → `geo_types`, without copying the JSON first.
//!
//! Positions keep their first two numbers (lon, lat); a third (height) is dropped.

use geo_types::{
    Coord, Geometry, GeometryCollection, LineString, MultiLineString, MultiPoint, MultiPolygon,
    Point, Polygon,
};
use serde_json::Value as Json;

/// Converts a GeoJSON geometry object.
pub fn from_json(v: &Json) -> Result<Geometry<f64>, String> {
    let obj = v.as_object().ok_or("geometry is not an object")?;
    let kind = obj.get("type").and_then(Json::as_str).ok_or("geometry has no 'type'")?;
    if kind == "GeometryCollection" {
        let parts = obj
            .get("geometries")
            .and_then(Json::as_array)
            .ok_or("GeometryCollection has no 'geometries' array")?;
        let parts = parts.iter().map(from_json).collect::<Result<Vec<_>, _>>()?;
        return Ok(Geometry::GeometryCollection(GeometryCollection(parts)));
    }
    let c = obj.get("coordinates").ok_or_else(|| format!("{kind} has no 'coordinates'"))?;
    Ok(match kind {
        "Point" => Geometry::Point(Point(position(c)?)),
        "MultiPoint" => Geometry::MultiPoint(MultiPoint(
            array(c)?.iter().map(|p| position(p).map(Point)).collect::<Result<_, _>>()?,
        )),
        "LineString" => Geometry::LineString(line(c)?),
        "MultiLineString" => Geometry::MultiLineString(MultiLineString(
            array(c)?.iter().map(line).collect::<Result<_, _>>()?,
        )),
        "Polygon" => Geometry::Polygon(polygon(c)?),
        "MultiPolygon" => Geometry::MultiPolygon(MultiPolygon(
            array(c)?.iter().map(polygon).collect::<Result<_, _>>()?,
        )),
        other => return Err(format!("unknown geometry type '{other}'")),
    })
}

fn array(v: &Json) -> Result<&Vec<Json>, String> {
    v.as_array().ok_or_else(|| format!("expected an array of coordinates, found {v}"))
}

fn position(v: &Json) -> Result<Coord<f64>, String> {
    let p = array(v)?;
    match (p.first().and_then(Json::as_f64), p.get(1).and_then(Json::as_f64)) {
        (Some(x), Some(y)) => Ok(Coord { x, y }),
        _ => Err(format!("a position needs two numbers, found {v}")),
    }
}

fn line(v: &Json) -> Result<LineString<f64>, String> {
    Ok(LineString(array(v)?.iter().map(position).collect::<Result<_, _>>()?))
}

fn polygon(v: &Json) -> Result<Polygon<f64>, String> {
    let mut rings = array(v)?.iter().map(line);
    let exterior = rings.next().transpose()?.unwrap_or_else(|| LineString(Vec::new()));
    Ok(Polygon::new(exterior, rings.collect::<Result<_, _>>()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_geojson_type_converts() {
        let g = from_json(&json!({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]], [[0.2, 0.2], [0.5, 0.2], [0.2, 0.5], [0.2, 0.2]]]})).unwrap();
        let Geometry::Polygon(p) = g else { panic!("polygon") };
        assert_eq!(p.exterior().0.len(), 4);
        assert_eq!(p.interiors().len(), 1);
        let g = from_json(&json!({"type": "GeometryCollection", "geometries": [
            {"type": "Point", "coordinates": [1, 2, 30]},
            {"type": "MultiLineString", "coordinates": [[[0, 0], [1, 1]]]},
            {"type": "MultiPoint", "coordinates": [[0, 0]]},
            {"type": "MultiPolygon", "coordinates": [[[[0, 0], [1, 0], [0, 1], [0, 0]]]]},
            {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}
        ]}))
        .unwrap();
        let Geometry::GeometryCollection(gc) = g else { panic!("collection") };
        assert_eq!(gc.0.len(), 5);
        assert_eq!(gc.0[0], Geometry::Point(Point::new(1.0, 2.0)));
    }

    #[test]
    fn malformed_geometries_say_what_is_wrong() {
        assert_eq!(
            from_json(&json!({"type": "Blob", "coordinates": []})).unwrap_err(),
            "unknown geometry type 'Blob'"
        );
        assert!(from_json(&json!({"type": "Point"})).unwrap_err().contains("no 'coordinates'"));
        assert!(
            from_json(&json!({"type": "Point", "coordinates": ["a", 1]}))
                .unwrap_err()
                .contains("two numbers")
        );
        assert!(from_json(&json!([1, 2])).is_err());
    }
}
