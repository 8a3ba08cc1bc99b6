//! The area of a search (`bbox` or `intersects`): its cells, its boxes for pruning, and the exact
//! test against an item's footprint.
//!
//! Both the area and the footprints are read with the partitioner's rules (edges go the short
//! way across ±180, a ring winding round the globe encloses a pole), so a search finds exactly
//! what the partitioner put in the cells it asks for.

use geo::{BoundingRect, Intersects};
use geo_types::{Geometry, MultiPolygon, Rect, coord};

use super::SearchError;
use crate::partition::CoverError;
use crate::partition::{GridSpec, NO_CELL, Partitioner, plane_pieces};

/// The area a search is restricted to.
#[derive(Debug, Clone)]
pub struct Area {
    geometry: Geometry<f64>,
    pieces: Vec<Geometry<f64>>,
}

impl Area {
    /// A STAC bbox: `[west, south, east, north]` or the 6-number form with heights. A `west`
    /// greater than `east` crosses the antimeridian.
    pub fn from_bbox(bbox: &[f64]) -> Result<Area, SearchError> {
        let bad = |why: &str| SearchError::BadBbox { bbox: bbox.to_vec(), reason: why.into() };
        let [w, s, e, n] = match *bbox {
            [w, s, e, n] | [w, s, _, e, n, _] => [w, s, e, n],
            _ => return Err(bad("a bbox has 4 numbers (or 6 with heights)")),
        };
        if bbox.iter().any(|v| !v.is_finite()) {
            return Err(bad("every number must be finite"));
        }
        if !(-90.0..=90.0).contains(&s) || !(-90.0..=90.0).contains(&n) || s > n {
            return Err(bad("latitudes must be within ±90 with south ≤ north"));
        }
        if !(-180.0..=180.0).contains(&w) || !(-180.0..=180.0).contains(&e) {
            return Err(bad("longitudes must be within ±180"));
        }
        let rect = |w: f64, e: f64| Rect::new(coord! { x: w, y: s }, coord! { x: e, y: n });
        let pieces = if w <= e { vec![rect(w, e)] } else { vec![rect(w, 180.0), rect(-180.0, e)] };
        let geometry =
            Geometry::MultiPolygon(MultiPolygon(pieces.iter().map(|r| r.to_polygon()).collect()));
        let pieces = pieces.into_iter().map(Geometry::Rect).collect();
        Ok(Area { geometry, pieces })
    }

    /// A GeoJSON geometry (or a Feature holding one) as text.
    pub fn from_geojson(text: &str) -> Result<Area, SearchError> {
        let bad = |reason: String| SearchError::BadIntersects { reason };
        let gj: geojson::GeoJson = text.parse().map_err(|e| bad(format!("{e}")))?;
        let geometry = match gj {
            geojson::GeoJson::Geometry(g) => g,
            geojson::GeoJson::Feature(f) => {
                f.geometry.ok_or_else(|| bad("the Feature has no geometry".into()))?
            }
            geojson::GeoJson::FeatureCollection(_) => {
                return Err(bad("a FeatureCollection is not a geometry".into()));
            }
        };
        let geometry: Geometry<f64> = geometry.try_into().map_err(|e| bad(format!("{e}")))?;
        Area::from_geometry(geometry)
    }

    /// An area given as a geometry.
    pub fn from_geometry(geometry: Geometry<f64>) -> Result<Area, SearchError> {
        use geo::CoordsIter;
        if geometry.coords_iter().next().is_none() {
            return Err(SearchError::BadIntersects { reason: "the geometry is empty".into() });
        }
        if let Some(c) = geometry.coords_iter().find(|c| !c.x.is_finite() || c.y.abs() > 90.0) {
            return Err(SearchError::BadIntersects {
                reason: format!("position ({}, {}) is not lon, lat degrees", c.x, c.y),
            });
        }
        let pieces = plane_pieces(&geometry);
        Ok(Area { geometry, pieces })
    }

    /// The area as given.
    pub fn geometry(&self) -> &Geometry<f64> {
        &self.geometry
    }

    /// The cells of the table's grid that may hold matching rows, or `None` when the area
    /// covers too many cells to list (then every file is a candidate).
    pub fn cells(&self, partitioner: &dyn Partitioner) -> Result<Option<Vec<String>>, SearchError> {
        let mut cells = match partitioner.cells(&self.geometry) {
            Ok(cells) => cells,
            Err(CoverError::TooManyCells { .. }) => return Ok(None),
            Err(source) => return Err(SearchError::Cover { source }),
        };
        // Footprints outside every boundary were filed under NO_CELL; they may meet the area.
        if matches!(partitioner.grid(), GridSpec::GeoJson { .. }) {
            cells.push(NO_CELL.to_string());
        }
        Ok(Some(cells))
    }

    /// The bounding boxes `[xmin, ymin, xmax, ymax]` of the area's pieces, each inside ±180.
    pub fn boxes(&self) -> Vec<[f64; 4]> {
        self.pieces
            .iter()
            .filter_map(|p| p.bounding_rect())
            .map(|r| [r.min().x, r.min().y, r.max().x, r.max().y])
            .collect()
    }

    /// Whether a footprint meets the area (boundaries included).
    pub fn intersects(&self, footprint: &Geometry<f64>) -> bool {
        let theirs = plane_pieces(footprint);
        theirs.iter().any(|t| self.pieces.iter().any(|p| p.intersects(t)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo_types::{Point, point};

    #[test]
    fn a_bbox_across_the_antimeridian_is_two_boxes() {
        let a = Area::from_bbox(&[170.0, -10.0, -170.0, 10.0]).unwrap();
        assert_eq!(a.boxes(), vec![[170.0, -10.0, 180.0, 10.0], [-180.0, -10.0, -170.0, 10.0]]);
        assert!(a.intersects(&Geometry::Point(point! { x: 175.0, y: 0.0 })));
        assert!(a.intersects(&Geometry::Point(point! { x: -175.0, y: 0.0 })));
        assert!(!a.intersects(&Geometry::Point(Point::new(0.0, 0.0))));
    }

    #[test]
    fn bad_bboxes_say_why() {
        let e = Area::from_bbox(&[0.0, 10.0, 1.0, 5.0]).unwrap_err().to_string();
        assert!(e.contains("south ≤ north"), "{e}");
        assert!(Area::from_bbox(&[0.0, 1.0, 2.0]).is_err());
        assert!(Area::from_bbox(&[0.0, 0.0, 200.0, 1.0]).is_err());
    }

    #[test]
    fn a_footprint_drawn_across_the_antimeridian_meets_an_area_on_either_side() {
        let item = Area::from_geojson(
            r#"{"type":"Polygon","coordinates":[[[179,0],[-179,0],[-179,1],[179,1],[179,0]]]}"#,
        )
        .unwrap();
        let west = Area::from_bbox(&[-179.5, 0.2, -179.2, 0.5]).unwrap();
        let far = Area::from_bbox(&[0.0, 0.2, 1.0, 0.5]).unwrap();
        assert!(west.intersects(item.geometry()));
        assert!(!far.intersects(item.geometry()), "the short way, not round the globe");
    }

    #[test]
    fn intersects_accepts_a_feature_and_refuses_a_collection() {
        let f =
            r#"{"type":"Feature","properties":{},"geometry":{"type":"Point","coordinates":[1,2]}}"#;
        assert!(Area::from_geojson(f).is_ok());
        let fc = r#"{"type":"FeatureCollection","features":[]}"#;
        assert!(Area::from_geojson(fc).unwrap_err().to_string().contains("FeatureCollection"));
        assert!(Area::from_geojson("{nope").is_err());
    }
}
