//! The GeoParquet 1.1 `geo` file metadata (and the `stac-geoparquet` marker).

use std::collections::{BTreeMap, BTreeSet};

use arrow::array::{Array, AsArray};
use arrow::datatypes::Float64Type;
use arrow_array::RecordBatch;
use serde::Serialize;

use crate::fanout::CellRow;
use crate::schema;

/// Key of the GeoParquet metadata in the Parquet footer.
pub const GEO_KEY: &str = "geo";
/// Key of the stac-geoparquet marker.
pub const STAC_GEOPARQUET_KEY: &str = "stac-geoparquet";
/// Value of the stac-geoparquet marker.
pub const STAC_GEOPARQUET_VALUE: &str = r#"{"version":"1.0.0"}"#;

/// The WKB geometry type name of an ISO WKB blob (2-D, Z, M and ZM codes all map to the base).
pub fn wkb_type_name(wkb: &[u8]) -> Option<&'static str> {
    let code = match wkb.first()? {
        1 => u32::from_le_bytes(wkb.get(1..5)?.try_into().ok()?),
        0 => u32::from_be_bytes(wkb.get(1..5)?.try_into().ok()?),
        _ => return None,
    };
    Some(match code % 1000 {
        1 => "Point",
        2 => "LineString",
        3 => "Polygon",
        4 => "MultiPoint",
        5 => "MultiLineString",
        6 => "MultiPolygon",
        7 => "GeometryCollection",
        _ => return None,
    })
}

/// What the `geo` metadata says about a file's geometries: their types and extent.
#[derive(Debug, Default, Clone)]
pub struct GeoSummary {
    types: BTreeSet<&'static str>,
    bbox: Option<[f64; 4]>,
}

impl GeoSummary {
    /// Adds one geometry (its WKB and its bbox).
    pub fn add(&mut self, wkb: &[u8], bbox: Option<[f64; 4]>) {
        if let Some(t) = wkb_type_name(wkb) {
            self.types.insert(t);
        }
        if let Some(b) = bbox {
            self.bbox = Some(match self.bbox {
                None => b,
                Some(a) => [a[0].min(b[0]), a[1].min(b[1]), a[2].max(b[2]), a[3].max(b[3])],
            });
        }
    }

    /// The summary of rows about to be written.
    pub fn of_rows(rows: &[CellRow]) -> Self {
        let mut s = GeoSummary::default();
        for r in rows {
            s.add(r.item.wkb(), r.item.geometry_bbox());
        }
        s
    }

    /// The summary of record batches of the table schema.
    pub fn of_batches(batches: &[RecordBatch]) -> Self {
        let mut s = GeoSummary::default();
        for b in batches {
            let (Some(geom), Some(cover)) =
                (b.column_by_name(schema::GEOMETRY), b.column_by_name(schema::GEOMETRY_BBOX))
            else {
                continue;
            };
            let (Some(geom), Some(cover)) = (geom.as_binary_opt::<i32>(), cover.as_struct_opt())
            else {
                continue;
            };
            let parts: Vec<_> =
                (0..4).filter_map(|k| cover.column(k).as_primitive_opt::<Float64Type>()).collect();
            for i in 0..b.num_rows() {
                let bbox = (parts.len() == 4 && cover.is_valid(i)).then(|| {
                    [parts[0].value(i), parts[1].value(i), parts[2].value(i), parts[3].value(i)]
                });
                s.add(if geom.is_valid(i) { geom.value(i) } else { &[] }, bbox);
            }
        }
        s
    }

    /// The `geo` metadata JSON: WKB encoding, the sorted geometry types present, the bbox, and the
    /// `geometry_bbox` covering so readers can filter without decoding WKB. No `crs` member:
    /// OGC:CRS84 (lon/lat degrees). Serialized from typed parts: every file has one, and building
    /// it as a JSON value cost about as much as encoding a small file's geometry column.
    pub fn to_json(&self) -> String {
        let cover = schema::GEOMETRY_BBOX;
        let column = GeoColumn {
            encoding: "WKB",
            geometry_types: &self.types,
            covering: Covering {
                bbox: CoveringBbox {
                    xmin: [cover, "xmin"],
                    ymin: [cover, "ymin"],
                    xmax: [cover, "xmax"],
                    ymax: [cover, "ymax"],
                },
            },
            bbox: self.bbox,
        };
        let geo = GeoMetadata {
            version: "1.1.0",
            primary_column: schema::GEOMETRY,
            columns: [(schema::GEOMETRY, column)].into_iter().collect(),
        };
        serde_json::to_string(&geo).unwrap_or_default()
    }
}

/// The `geo` metadata document (GeoParquet 1.1), members in the order readers show them.
#[derive(Serialize)]
struct GeoMetadata<'a> {
    version: &'static str,
    primary_column: &'static str,
    columns: BTreeMap<&'static str, GeoColumn<'a>>,
}

#[derive(Serialize)]
struct GeoColumn<'a> {
    encoding: &'static str,
    geometry_types: &'a BTreeSet<&'static str>,
    covering: Covering,
    #[serde(skip_serializing_if = "Option::is_none")]
    bbox: Option<[f64; 4]>,
}

#[derive(Serialize)]
struct Covering {
    bbox: CoveringBbox,
}

#[derive(Serialize)]
struct CoveringBbox {
    xmin: [&'static str; 2],
    ymin: [&'static str; 2],
    xmax: [&'static str; 2],
    ymax: [&'static str; 2],
}

/// The `geo` metadata JSON for a file holding `rows`.
pub fn geo_metadata(rows: &[CellRow]) -> String {
    GeoSummary::of_rows(rows).to_json()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_geo_document_is_the_geoparquet_one_with_or_without_a_bbox() {
        let mut s = GeoSummary::default();
        let empty = serde_json::from_str::<serde_json::Value>(&s.to_json()).unwrap();
        let cover = schema::GEOMETRY_BBOX;
        let covering = json!({"bbox": {
            "xmin": [cover, "xmin"], "ymin": [cover, "ymin"],
            "xmax": [cover, "xmax"], "ymax": [cover, "ymax"],
        }});
        assert_eq!(
            empty,
            json!({"version": "1.1.0", "primary_column": "geometry", "columns": {"geometry": {
                "encoding": "WKB", "geometry_types": [], "covering": covering}}})
        );
        s.add(&[1, 6, 0, 0, 0], Some([-10.5, -5.0, 3.25, 60.0]));
        s.add(&[1, 3, 0, 0, 0], Some([-20.0, 0.0, 1.0, 1.0]));
        s.add(&[1, 3, 0, 0, 0], None);
        assert_eq!(
            s.to_json(),
            concat!(
                r#"{"version":"1.1.0","primary_column":"geometry","columns":{"geometry":{"#,
                r#""encoding":"WKB","geometry_types":["MultiPolygon","Polygon"],"#,
                r#""covering":{"bbox":{"xmin":["geometry_bbox","xmin"],"ymin":["geometry_bbox","ymin"],"#,
                r#""xmax":["geometry_bbox","xmax"],"ymax":["geometry_bbox","ymax"]}},"#,
                r#""bbox":[-20.0,-5.0,3.25,60.0]}}}"#
            )
        );
    }

    #[test]
    fn wkb_type_codes_map_to_geoparquet_names() {
        assert_eq!(wkb_type_name(&[1, 3, 0, 0, 0]), Some("Polygon"));
        assert_eq!(wkb_type_name(&[1, 6, 0, 0, 0]), Some("MultiPolygon"));
        assert_eq!(wkb_type_name(&[0, 0, 0, 0, 1]), Some("Point"));
        assert_eq!(wkb_type_name(&[1, 0xEB, 0x03, 0, 0]), Some("Polygon"), "1003 = Polygon Z");
        assert_eq!(wkb_type_name(&[]), None);
    }
}
