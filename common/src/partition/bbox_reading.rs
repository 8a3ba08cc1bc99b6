//! The item's `bbox` deciding how a footprint's widest edges are read.
//!
//! A footprint edge spanning more than 180° of longitude is read the short way, across ±180
//! ([`super::planar`]): that is what swaths crossing the antimeridian mean. A global or
//! continental product whose footprint is its own bbox rectangle (`[-178.98, -85.4, 180, -59.5]`
//! for a region around Antarctica, a census of the US and its islands) means the long way, and
//! only its `bbox` tells: STAC writes a bbox crossing the antimeridian with west > east, so a bbox
//! with west < east that spans more than 180° says the footprint does not cross. A polygon with an
//! edge that runs along the bbox's south or north side from its west to its east longitude is
//! therefore read as drawn, in the plane, and cut at the bbox's middle meridian into two halves
//! that no rule can read another way. Other polygons keep the short-way rule, because footprints
//! that do cross ±180 often come with a bbox of their plain minimum and maximum longitudes
//! (Sentinel-3 and Sentinel-5P swaths, io-lulc tiles), which would otherwise be read as bands
//! round the globe.

use geo::BooleanOps;
use geo_types::{Geometry, MultiPolygon, Polygon, Rect};

/// The footprint as the partitioner should read it under the item's `bbox`
/// (`[west, south, east, north]`): a polygon with an edge along a wide bbox's south or north side
/// becomes its two halves either side of the bbox's middle meridian.
pub fn read_with_bbox(geometry: Geometry<f64>, bbox: Option<[f64; 4]>) -> Geometry<f64> {
    match bbox {
        Some([west, south, east, north]) if west < east && east - west > 180.0 => {
            let sides = Sides { west, east, south, north };
            sides.apply(geometry)
        }
        _ => geometry,
    }
}

/// The longitudes and latitudes of a wide bbox's sides.
#[derive(Debug, Clone, Copy)]
struct Sides {
    west: f64,
    east: f64,
    south: f64,
    north: f64,
}

impl Sides {
    fn apply(self, geometry: Geometry<f64>) -> Geometry<f64> {
        match geometry {
            Geometry::Polygon(p) => self.polygons(vec![p]),
            Geometry::MultiPolygon(mp) => self.polygons(mp.0),
            Geometry::GeometryCollection(gc) => Geometry::GeometryCollection(
                gc.into_iter().map(|g| self.apply(g)).collect::<Vec<_>>().into(),
            ),
            other => other,
        }
    }

    fn polygons(self, polygons: Vec<Polygon<f64>>) -> Geometry<f64> {
        if !polygons.iter().any(|p| self.has_a_side(p)) {
            return match <[Polygon<f64>; 1]>::try_from(polygons) {
                Ok([p]) => Geometry::Polygon(p),
                Err(many) => Geometry::MultiPolygon(MultiPolygon(many)),
            };
        }
        let mut out = Vec::with_capacity(polygons.len() + 1);
        for p in polygons {
            if self.has_a_side(&p) {
                out.extend(self.halves(&p));
            } else {
                out.push(p);
            }
        }
        Geometry::MultiPolygon(MultiPolygon(out))
    }

    /// Whether some edge of the exterior runs along the south or north side, end to end.
    fn has_a_side(self, p: &Polygon<f64>) -> bool {
        p.exterior().0.windows(2).any(|w| {
            let (a, b) = (w[0], w[1]);
            let ends =
                (a.x == self.west && b.x == self.east) || (a.x == self.east && b.x == self.west);
            ends && a.y == b.y && (a.y == self.south || a.y == self.north)
        })
    }

    /// The polygon as drawn in the plane, cut at the middle meridian.
    fn halves(self, p: &Polygon<f64>) -> Vec<Polygon<f64>> {
        let middle = (self.west + self.east) / 2.0;
        let window = |w: f64, e: f64| Rect::new((w, -90.0), (e, 90.0)).to_polygon();
        let west = p.intersection(&window(self.west.min(-360.0), middle));
        let east = p.intersection(&window(middle, self.east.max(360.0)));
        west.into_iter().chain(east).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo_types::polygon;

    #[test]
    fn a_wide_bbox_rectangle_becomes_its_two_halves() {
        let rect = polygon![(x: -178.5, y: -85.0), (x: 180.0, y: -85.0), (x: 180.0, y: -59.0),
            (x: -178.5, y: -59.0), (x: -178.5, y: -85.0)];
        let read =
            read_with_bbox(Geometry::Polygon(rect.clone()), Some([-178.5, -85.0, 180.0, -59.0]));
        let Geometry::MultiPolygon(halves) = read else { panic!("two polygons") };
        assert_eq!(halves.0.len(), 2);
        let widths: Vec<(f64, f64)> = halves
            .iter()
            .map(|h| {
                let xs = h.exterior().0.iter().map(|c| c.x);
                (xs.clone().fold(f64::MAX, f64::min), xs.fold(f64::MIN, f64::max))
            })
            .collect();
        assert!(widths.contains(&(-178.5, 0.75)) && widths.contains(&(0.75, 180.0)), "{widths:?}");
        // A bbox crossing the antimeridian (west > east) changes nothing, nor does no bbox.
        let crossing = Some([180.0, -85.0, -178.5, -59.0]);
        assert_eq!(
            read_with_bbox(Geometry::Polygon(rect.clone()), crossing),
            Geometry::Polygon(rect.clone())
        );
        assert_eq!(read_with_bbox(Geometry::Polygon(rect.clone()), None), Geometry::Polygon(rect));
    }
}
