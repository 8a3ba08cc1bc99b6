//! GeoJSON geometry (as parsed JSON) ⇄ `geo_types`, without copying the JSON in between.
//!
//! Positions keep their first two numbers (lon, lat); a third (height) is dropped.

use geo_types::{
    Coord, Geometry, GeometryCollection, LineString, MultiLineString, MultiPoint, MultiPolygon,
    Point, Polygon,
};
use serde_json::{Map, Number, Value as Json};

/// A geometry as a GeoJSON geometry object. Built as JSON directly: through `geojson`'s
/// serializer it took a sixth of a search returning whole items.
pub fn to_json(geometry: &Geometry<f64>) -> Json {
    value_json(&geojson::Value::from(geometry))
}

fn value_json(value: &geojson::Value) -> Json {
    use geojson::Value as G;
    fn position(p: &[f64]) -> Json {
        Json::Array(
            p.iter().map(|x| Number::from_f64(*x).map_or(Json::Null, Json::Number)).collect(),
        )
    }
    fn positions(ps: &[Vec<f64>]) -> Json {
        Json::Array(ps.iter().map(|p| position(p)).collect())
    }
    fn rings(rs: &[Vec<Vec<f64>>]) -> Json {
        Json::Array(rs.iter().map(|r| positions(r)).collect())
    }
    let mut object = Map::with_capacity(2);
    object.insert("type".into(), Json::from(value.type_name()));
    let (member, inner) = match value {
        G::Point(p) => ("coordinates", position(p)),
        G::MultiPoint(ps) | G::LineString(ps) => ("coordinates", positions(ps)),
        G::MultiLineString(rs) | G::Polygon(rs) => ("coordinates", rings(rs)),
        G::MultiPolygon(polygons) => {
            ("coordinates", Json::Array(polygons.iter().map(|p| rings(p)).collect()))
        }
        G::GeometryCollection(parts) => {
            ("geometries", Json::Array(parts.iter().map(|g| value_json(&g.value)).collect()))
        }
    };
    object.insert(member.into(), inner);
    Json::Object(object)
}

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
    fn geometries_come_back_as_geojson_writes_them() {
        let collection = json!({"type": "GeometryCollection", "geometries": [
            {"type": "Point", "coordinates": [1.5, -2.25]},
            {"type": "MultiLineString", "coordinates": [[[0.0, 0.0], [1.0, 1.0]]]},
            {"type": "MultiPoint", "coordinates": [[0.0, 0.0], [3.0, 4.0]]},
            {"type": "MultiPolygon", "coordinates": [[[[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]]]},
            {"type": "LineString", "coordinates": [[0.0, 0.0], [1.0, 1.0]]},
            {"type": "Polygon", "coordinates": [[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]], [[0.2, 0.2], [0.5, 0.2], [0.2, 0.5], [0.2, 0.2]]]}
        ]});
        let g = from_json(&collection).unwrap();
        assert_eq!(to_json(&g), collection);
        let by_geojson = geojson::Geometry::new(geojson::Value::from(&g));
        assert_eq!(to_json(&g), serde_json::to_value(by_geojson).unwrap());
        let rect = Geometry::Rect(geo_types::Rect::new((0.0, 0.0), (2.0, 1.0)));
        let by_geojson = geojson::Geometry::new(geojson::Value::from(&rect));
        assert_eq!(to_json(&rect), serde_json::to_value(by_geojson).unwrap());
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
