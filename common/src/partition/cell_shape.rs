//! H3 cells as plane figures in lon/lat degrees, faithful to their true (geodesic) edges.
//!
//! An H3 cell's edges are great-circle arcs; drawn straight in lon/lat they would be off by up
//! to ~10 km at resolution 1 around latitude 70°. Each edge is therefore densified along its
//! great circle until the straight pieces stay within [`DEVIATION`] × the edge length of the
//! arc, and the largest remaining deviation is kept as the cell's `tolerance`: a footprint
//! within that distance of the drawn cell counts as touching it, so a cover never misses a cell
//! and over-reaches by at most a few metres. Cells around a pole and across ±180 go through the
//! same rules as footprints ([`super::planar`]).

use std::sync::{Arc, OnceLock};

use geo_types::{Coord, coord};
use h3o::{CellIndex, LatLng, Resolution};

use super::planar::Shape;

/// Allowed gap between an arc and its straight pieces, as a fraction of the arc's length.
const DEVIATION: f64 = 1e-4;
/// Cells of resolutions up to this one are drawn once per process, when first asked for, and
/// kept. Drawn lazily: a search of a small area needs a few cells, and drawing all 5,882 of
/// resolution 2 (or even the 842 of resolution 1) up front was most of its time.
const CACHED_UP_TO: u8 = 2;
/// H3 has 122 base cells, each with at most 7 children per resolution.
const BASE_CELLS: usize = 122;
/// Recursion limit of the edge densification (2^12 pieces per edge at most).
const MAX_DEPTH: u32 = 12;

/// A cell drawn in lon/lat degrees, with the slack its drawing needs.
#[derive(Debug)]
pub(crate) struct CellShape {
    pub shape: Shape,
    pub tolerance: f64,
}

/// One slot per possible cell of a resolution (see [`slot`]), filled when first asked for.
type Cache = Vec<OnceLock<Arc<CellShape>>>;

static CACHES: [OnceLock<Cache>; CACHED_UP_TO as usize + 1] =
    [OnceLock::new(), OnceLock::new(), OnceLock::new()];

/// The shape of `cell`, from the per-resolution cache for coarse cells.
pub(crate) fn cell_shape(cell: CellIndex) -> Arc<CellShape> {
    let res = u8::from(cell.resolution());
    match CACHES.get(usize::from(res)) {
        Some(cache) => {
            let cache = cache.get_or_init(|| {
                (0..BASE_CELLS * 7usize.pow(u32::from(res))).map(|_| OnceLock::new()).collect()
            });
            match cache.get(slot(cell)) {
                Some(shape) => shape.get_or_init(|| Arc::new(draw(cell))).clone(),
                None => Arc::new(draw(cell)),
            }
        }
        None => Arc::new(draw(cell)),
    }
}

/// The cell's place among the cells of its resolution: its base cell, then one base-7 digit per
/// resolution (a pentagon's missing digit leaves a slot unused).
fn slot(cell: CellIndex) -> usize {
    let base = usize::from(u8::from(cell.base_cell()));
    Resolution::range(Resolution::One, cell.resolution())
        .map(|r| cell.direction_at(r).map_or(0, |d| usize::from(u8::from(d))))
        .fold(base, |i, digit| i * 7 + digit)
}

fn unit(ll: LatLng) -> [f64; 3] {
    let (lat, lng) = (ll.lat_radians(), ll.lng_radians());
    [lat.cos() * lng.cos(), lat.cos() * lng.sin(), lat.sin()]
}

fn lonlat(v: [f64; 3]) -> Coord {
    let lat = v[2].atan2(v[0].hypot(v[1])).to_degrees();
    let lon = v[1].atan2(v[0]).to_degrees();
    coord! { x: lon, y: lat }
}

fn midpoint(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    let m = [a[0] + b[0], a[1] + b[1], a[2] + b[2]];
    let n = (m[0] * m[0] + m[1] * m[1] + m[2] * m[2]).sqrt();
    [m[0] / n, m[1] / n, m[2] / n]
}

/// `b`'s longitude moved by whole turns to within 180° of `a`'s.
fn near_lon(a: Coord, mut b: Coord) -> Coord {
    while b.x - a.x > 180.0 {
        b.x -= 360.0;
    }
    while b.x - a.x < -180.0 {
        b.x += 360.0;
    }
    b
}

fn arc_degrees(a: [f64; 3], b: [f64; 3]) -> f64 {
    let dot = (a[0] * b[0] + a[1] * b[1] + a[2] * b[2]).clamp(-1.0, 1.0);
    dot.acos().to_degrees()
}

/// Appends the arc `a → b` (without `a`) as straight pieces; returns the largest deviation.
fn densify(a: [f64; 3], b: [f64; 3], limit: f64, depth: u32, out: &mut Vec<Coord>) -> f64 {
    let (pa, m) = (lonlat(a), midpoint(a, b));
    let pb = near_lon(pa, lonlat(b));
    let pm = near_lon(pa, lonlat(m));
    let deviation = super::planar::segment_distance(pm, pm, pa, pb);
    if deviation > limit && depth < MAX_DEPTH {
        let left = densify(a, m, limit, depth + 1, out);
        let right = densify(m, b, limit, depth + 1, out);
        return left.max(right);
    }
    out.push(lonlat(b));
    deviation
}

fn draw(cell: CellIndex) -> CellShape {
    let vertices: Vec<[f64; 3]> = cell.boundary().iter().map(|ll| unit(*ll)).collect();
    let mut ring = vec![lonlat(vertices[0])];
    let mut worst = 0.0_f64;
    for (i, &a) in vertices.iter().enumerate() {
        let b = vertices[(i + 1) % vertices.len()];
        let limit = arc_degrees(a, b) * DEVIATION;
        worst = worst.max(densify(a, b, limit, 0, &mut ring));
    }
    let mut shape = Shape::default();
    shape.add_polygon(&ring, &[]);
    // The deviation is measured at arc midpoints; 1.5× covers the rest of each piece, and the
    // floor absorbs rounding in the clipping at ±180.
    CellShape { shape, tolerance: worst * 1.5 + 1e-9 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cached_cell_has_a_slot_of_its_own() {
        for res in Resolution::range(Resolution::Zero, Resolution::Two) {
            let slots = BASE_CELLS * 7usize.pow(u32::from(u8::from(res)));
            let mut taken = vec![false; slots];
            for cell in CellIndex::base_cells().flat_map(|b| b.children(res)) {
                let i = slot(cell);
                assert!(i < slots && !taken[i], "{cell} at {i}");
                taken[i] = true;
            }
        }
    }

    #[test]
    fn the_north_pole_cell_contains_the_pole_line() {
        let Ok(pole) = LatLng::new(90.0, 0.0) else { panic!("the pole is a position") };
        let cell = pole.to_cell(Resolution::One);
        let s = cell_shape(cell);
        for lon in [-179.0, -90.0, 0.0, 90.0, 179.0] {
            let p = coord! { x: lon, y: 89.99 };
            assert!(s.shape.areas.iter().any(|a| a.contains(p)), "lon {lon}");
        }
    }

    #[test]
    fn a_cell_on_the_antimeridian_is_drawn_on_both_sides() {
        let Ok(on_180) = LatLng::new(60.0, 180.0) else { panic!("a position") };
        let cell = on_180.to_cell(Resolution::Three);
        let s = cell_shape(cell);
        let p = |x| coord! { x: x, y: LatLng::from(cell).lat() };
        assert!(s.shape.areas.iter().any(|a| a.contains(p(179.99))));
        assert!(s.shape.areas.iter().any(|a| a.contains(p(-179.99))));
    }
}
