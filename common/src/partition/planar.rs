//! Footprints as plane figures in longitude/latitude degrees, and the one reading of a GeoJSON
//! geometry that both the partitioner and its tests share.
//!
//! GeoJSON draws a straight line between two positions in lon/lat (RFC 7946 §3.1.1). Two things
//! need a rule on a sphere, and this module is where they are decided:
//!
//! * **Antimeridian.** An edge never spans more than 180° of longitude: when two consecutive
//!   positions are further apart, the edge goes the short way, across ±180 (`179 → -179` is a 2°
//!   edge). A band wider than 180° must be written with intermediate positions (a ring
//!   `-179, 0, 179` is the wide band; a ring `-179, 179` is the narrow box around the
//!   antimeridian). An edge from exactly −180 to exactly +180 (or back) is a *seam* of zero
//!   length (as io-lulc writes its split footprints), unless reading it so leaves the ring
//!   without area: then it spans the whole parallel, which is how bbox-derived rings such as
//!   `[-180, 60, 180, 90]` or the whole globe are written.
//! * **Poles.** A ring bounds the smaller side. After unwrapping, a ring whose longitude winds
//!   once round the globe encloses a pole: of the regions between the ring and either pole, the
//!   smaller one (the ring is closed along that pole's line `lat = ±90`). A ring that does not
//!   wind encloses its plane interior, unless it comes near both poles and that interior is more
//!   than half the globe: then it is a swath passing over both poles, and it bounds the rest.
//! * **Wide rectangles** are decided by the item's bbox before this module sees them
//!   ([`super::read_with_bbox`]).
//!
//! The result is a [`Shape`]: polygons (with holes), lines and points, each inside
//! `[-180, 180] × [-90, 90]` (parts outside are cut at ±180 and shifted by 360°).

use geo::BooleanOps;
use geo_types::{Coord, Geometry, LineString, MultiPolygon, Point, Polygon, Rect, coord};

fn add_polygon(shape: &mut Shape, p: &Polygon<f64>) {
    let holes: Vec<&[Coord]> = p.interiors().iter().map(|r| r.0.as_slice()).collect();
    shape.add_polygon(&p.exterior().0, &holes);
}

fn add_line(shape: &mut Shape, l: &LineString<f64>) {
    shape.add_line(&l.0);
}

/// Adds every part of a geometry, collections recursively.
fn add_geometry(shape: &mut Shape, g: &Geometry<f64>) {
    match g {
        Geometry::Point(p) => shape.points.push(p.0),
        Geometry::MultiPoint(mp) => shape.points.extend(mp.iter().map(|p| p.0)),
        Geometry::Line(l) => shape.add_line(&[l.start, l.end]),
        Geometry::LineString(l) => add_line(shape, l),
        Geometry::MultiLineString(ml) => ml.iter().for_each(|l| add_line(shape, l)),
        Geometry::Polygon(p) => add_polygon(shape, p),
        Geometry::MultiPolygon(mp) => mp.iter().for_each(|p| add_polygon(shape, p)),
        Geometry::GeometryCollection(gc) => gc.iter().for_each(|g| add_geometry(shape, g)),
        Geometry::Rect(r) => add_polygon(shape, &r.to_polygon()),
        Geometry::Triangle(t) => add_polygon(shape, &t.to_polygon()),
    }
}

/// Consecutive segments grouped under one bounding box, so two chains can skip most pairs.
const CHUNK: usize = 16;

/// An axis-aligned box; cheaper than `geo::Rect` for the many overlap tests done here.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Bounds {
    pub min: Coord,
    pub max: Coord,
}

impl Bounds {
    pub(crate) const EMPTY: Bounds = Bounds {
        min: Coord { x: f64::INFINITY, y: f64::INFINITY },
        max: Coord { x: f64::NEG_INFINITY, y: f64::NEG_INFINITY },
    };

    pub(crate) fn of(points: &[Coord]) -> Bounds {
        points.iter().fold(Bounds::EMPTY, |b, p| b.including(*p))
    }

    pub(crate) fn including(self, p: Coord) -> Bounds {
        Bounds {
            min: coord! { x: self.min.x.min(p.x), y: self.min.y.min(p.y) },
            max: coord! { x: self.max.x.max(p.x), y: self.max.y.max(p.y) },
        }
    }

    pub(crate) fn union(self, o: Bounds) -> Bounds {
        self.including(o.min).including(o.max)
    }

    /// Whether the boxes are at most `tol` apart.
    pub(crate) fn near(&self, o: &Bounds, tol: f64) -> bool {
        self.min.x <= o.max.x + tol
            && o.min.x <= self.max.x + tol
            && self.min.y <= o.max.y + tol
            && o.min.y <= self.max.y + tol
    }
}

/// A polyline (a ring when its last point equals its first) with chunk boxes.
#[derive(Debug, Clone)]
pub(crate) struct Chain {
    pub points: Vec<Coord>,
    chunks: Vec<Bounds>,
    pub bounds: Bounds,
}

impl Chain {
    pub(crate) fn new(points: Vec<Coord>) -> Chain {
        let segments = points.len().saturating_sub(1).max(1);
        let chunks: Vec<Bounds> = (0..segments.div_ceil(CHUNK))
            .map(|c| {
                let end = ((c + 1) * CHUNK + 1).min(points.len());
                Bounds::of(&points[c * CHUNK..end])
            })
            .collect();
        let bounds = chunks.iter().fold(Bounds::EMPTY, |b, c| b.union(*c));
        Chain { points, chunks, bounds }
    }

    fn segments_of_chunk(&self, chunk: usize) -> impl Iterator<Item = (Coord, Coord)> + '_ {
        let end = ((chunk + 1) * CHUNK + 1).min(self.points.len());
        let pts = &self.points[chunk * CHUNK..end];
        // A single position is a zero-length segment, so a one-point line still has a place.
        let single = (pts.len() == 1).then(|| (pts[0], pts[0]));
        pts.windows(2).map(|w| (w[0], w[1])).chain(single)
    }

    /// Whether some point of `self` lies within `tol` of some point of `other`.
    pub(crate) fn near(&self, other: &Chain, tol: f64) -> bool {
        if !self.bounds.near(&other.bounds, tol) {
            return false;
        }
        for (i, a) in self.chunks.iter().enumerate() {
            for (j, b) in other.chunks.iter().enumerate() {
                if !a.near(b, tol) {
                    continue;
                }
                for (p, q) in self.segments_of_chunk(i) {
                    let sb = Bounds::of(&[p, q]);
                    for (r, s) in other.segments_of_chunk(j) {
                        if sb.near(&Bounds::of(&[r, s]), tol) && segment_distance(p, q, r, s) <= tol
                        {
                            return true;
                        }
                    }
                }
            }
        }
        false
    }
}

/// A polygon with holes, every ring a closed [`Chain`].
#[derive(Debug, Clone)]
pub(crate) struct Area {
    pub exterior: Chain,
    pub holes: Vec<Chain>,
}

impl Area {
    fn from_polygon(p: &Polygon) -> Option<Area> {
        let exterior = closed(p.exterior().0.clone())?;
        let holes = p.interiors().iter().filter_map(|r| closed(r.0.clone())).map(Chain::new);
        Some(Area { exterior: Chain::new(exterior), holes: holes.collect() })
    }

    /// Whether `p` is inside the area (not in a hole); points on a ring may go either way.
    pub(crate) fn contains(&self, p: Coord) -> bool {
        self.exterior.bounds.near(&Bounds { min: p, max: p }, 0.0)
            && ring_contains(&self.exterior.points, p)
            && !self.holes.iter().any(|h| ring_contains(&h.points, p))
    }

    fn rings(&self) -> impl Iterator<Item = &Chain> {
        std::iter::once(&self.exterior).chain(&self.holes)
    }

    /// Whether the two areas overlap or come within `tol` of each other.
    pub(crate) fn near_area(&self, other: &Area, tol: f64) -> bool {
        if !self.exterior.bounds.near(&other.exterior.bounds, tol) {
            return false;
        }
        self.rings().any(|a| other.rings().any(|b| a.near(b, tol)))
            || other.contains(self.exterior.points[0])
            || self.contains(other.exterior.points[0])
    }

    /// Whether the line enters the area or comes within `tol` of it.
    pub(crate) fn near_chain(&self, line: &Chain, tol: f64) -> bool {
        self.exterior.bounds.near(&line.bounds, tol)
            && (self.rings().any(|r| r.near(line, tol)) || self.contains(line.points[0]))
    }
}

/// A footprint read as plane figures inside `[-180, 180] × [-90, 90]`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Shape {
    pub areas: Vec<Area>,
    pub lines: Vec<Chain>,
    pub points: Vec<Coord>,
}

impl Shape {
    /// A GeoJSON geometry read with the module's rules (collections recursively).
    pub(crate) fn of(geometry: &Geometry<f64>) -> Shape {
        let mut shape = Shape::default();
        add_geometry(&mut shape, geometry);
        shape
    }

    /// The shape as plain geometries inside `[-180, 180] × [-90, 90]`: a footprint that crosses
    /// the antimeridian comes back as its pieces on either side.
    pub(crate) fn pieces(&self) -> Vec<Geometry<f64>> {
        let ring = |c: &Chain| LineString(c.points.clone());
        let areas = self.areas.iter().map(|a| {
            Geometry::Polygon(Polygon::new(ring(&a.exterior), a.holes.iter().map(ring).collect()))
        });
        let lines = self.lines.iter().map(|l| Geometry::LineString(ring(l)));
        let points = self.points.iter().map(|p| Geometry::Point(Point(*p)));
        areas.chain(lines).chain(points).collect()
    }

    /// Whether the two shapes touch, allowing a gap of `tol` degrees. Points of `other` are
    /// not considered (callers locate points exactly).
    pub(crate) fn areas_touch(&self, other: &Shape, tol: f64) -> bool {
        self.areas.iter().any(|a| {
            other.areas.iter().any(|b| a.near_area(b, tol))
                || other.lines.iter().any(|l| a.near_chain(l, tol))
        })
    }

    /// Adds a polygon given by rings of (lon, lat) positions, applying the module's rules.
    pub(crate) fn add_polygon(&mut self, exterior: &[Coord], holes: &[&[Coord]]) {
        let Some(ext) = unwrap_ring(exterior) else { return };
        let centre = (ext.bounds.min.x + ext.bounds.max.x) / 2.0;
        let mut rings = if ext.complement {
            // The globe around the ring, in the ring's own 360° turn, with the ring as a hole.
            let band = GLOBE.iter().map(|c| coord! { x: c.x + centre, y: c.y }).collect();
            vec![band, ext.coords]
        } else {
            vec![ext.coords]
        };
        for hole in holes {
            if let Some(h) = unwrap_ring(hole) {
                // Put the hole in the same 360° turn as the exterior it cuts.
                let shift = ((centre - (h.bounds.min.x + h.bounds.max.x) / 2.0) / 360.0).round();
                rings.push(
                    h.coords.iter().map(|c| coord! { x: c.x + shift * 360.0, y: c.y }).collect(),
                );
            }
        }
        let polygon =
            Polygon::new(LineString(rings.remove(0)), rings.into_iter().map(LineString).collect());
        self.add_unwrapped(polygon);
    }

    /// Adds a line of (lon, lat) positions, crossing ±180 the short way.
    pub(crate) fn add_line(&mut self, positions: &[Coord]) {
        if positions.is_empty() {
            return;
        }
        let line = unwrap_path(positions, false);
        let (lo, hi) = lon_range(&line);
        for turn in turns(lo, hi) {
            let offset = turn * 360.0;
            // Cut at the window edges so each piece stays inside [-180, 180].
            let mut piece: Vec<Coord> = Vec::new();
            for w in line.windows(2) {
                if let Some((a, b)) = clip_segment(w[0], w[1], offset - 180.0, offset + 180.0) {
                    if piece.last() != Some(&a) {
                        self.push_line(std::mem::take(&mut piece), offset);
                        piece.push(a);
                    }
                    piece.push(b);
                } else {
                    self.push_line(std::mem::take(&mut piece), offset);
                }
            }
            if line.len() == 1 && (offset - 180.0..=offset + 180.0).contains(&line[0].x) {
                piece.push(line[0]);
            }
            self.push_line(piece, offset);
        }
    }

    fn push_line(&mut self, piece: Vec<Coord>, offset: f64) {
        if !piece.is_empty() {
            let shifted = piece.into_iter().map(|c| coord! { x: c.x - offset, y: c.y }).collect();
            self.lines.push(Chain::new(shifted));
        }
    }

    fn add_unwrapped(&mut self, polygon: Polygon) {
        let (lo, hi) = lon_range(&polygon.exterior().0);
        if lo >= -180.0 && hi <= 180.0 {
            if let Some(a) = Area::from_polygon(&polygon) {
                self.areas.push(a);
            }
            return;
        }
        for turn in turns(lo, hi) {
            let offset = turn * 360.0;
            let window = Rect::new(
                coord! { x: offset - 180.0, y: -90.0 },
                coord! { x: offset + 180.0, y: 90.0 },
            )
            .to_polygon();
            let part: MultiPolygon = polygon.intersection(&window);
            for mut p in part {
                p.exterior_mut(|r| shift_ring(r, offset));
                p.interiors_mut(|rs| rs.iter_mut().for_each(|r| shift_ring(r, offset)));
                if let Some(a) = Area::from_polygon(&p) {
                    self.areas.push(a);
                }
            }
        }
    }
}

fn shift_ring(r: &mut LineString, offset: f64) {
    for c in r.coords_mut() {
        c.x = (c.x - offset).clamp(-180.0, 180.0);
    }
}

/// The 360° turns (`k` in `[360k − 180, 360k + 180]`) a longitude range reaches.
fn turns(lo: f64, hi: f64) -> impl Iterator<Item = f64> {
    let first = ((lo + 180.0) / 360.0).floor() as i64;
    let mut last = ((hi + 180.0) / 360.0).floor() as i64;
    // A range ending exactly on a window edge does not reach into the next window.
    if last > first && hi + 180.0 == last as f64 * 360.0 {
        last -= 1;
    }
    (first..=last).map(|k| k as f64)
}

fn lon_range(points: &[Coord]) -> (f64, f64) {
    let b = Bounds::of(points);
    (b.min.x, b.max.x)
}

/// A ring's positions in one continuous longitude space.
struct Unwrapped {
    coords: Vec<Coord>,
    bounds: Bounds,
    /// Whether the ring bounds the globe outside it rather than its plane interior.
    complement: bool,
}

/// Unwraps a ring and decides which of the two regions it divides the sphere into it bounds
/// (module docs): a ring winding round the globe is closed over the pole for which that region
/// is the smaller one; a ring that does not wind, comes near both poles and would enclose more
/// than half the globe in the plane (a swath passing over both poles) bounds the rest of the
/// globe instead.
fn unwrap_ring(ring: &[Coord]) -> Option<Unwrapped> {
    let ring = closed(ring.to_vec())?;
    let mut coords = unwrap_path(&ring, false);
    let literal = planar_area(&coords).abs() < 1e-12;
    if literal {
        coords = unwrap_path(&ring, true);
    }
    let (first, last) = (coords[0], coords[coords.len() - 1]);
    let winding = last.x - first.x;
    let mut complement = false;
    if winding.abs() > 180.0 {
        let closed_over = |pole: f64| {
            let mut c = coords.clone();
            c.extend([coord! { x: last.x, y: pole }, coord! { x: first.x, y: pole }, first]);
            c
        };
        let (north, south) = (closed_over(90.0), closed_over(-90.0));
        coords = if sphere_area(&north) <= sphere_area(&south) { north } else { south };
    } else if !literal {
        complement = passes_both_poles(&coords) && sphere_area(&coords) > sphere_area(&GLOBE) / 2.0;
    }
    let bounds = Bounds::of(&coords);
    Some(Unwrapped { coords, bounds, complement })
}

/// How close to a pole (degrees of latitude) a ring must come to be taken as passing over it.
const NEAR_POLE: f64 = 5.0;

/// Whether the ring comes within [`NEAR_POLE`] of both poles: a swath passing over both, whose
/// plane interior is the rest of the globe. A wide rectangle short of the poles (±80°) is not.
fn passes_both_poles(ring: &[Coord]) -> bool {
    let b = Bounds::of(ring);
    b.min.y <= -90.0 + NEAR_POLE && b.max.y >= 90.0 - NEAR_POLE
}

/// The whole globe as a lon/lat ring.
const GLOBE: [Coord; 5] = [
    Coord { x: -180.0, y: -90.0 },
    Coord { x: 180.0, y: -90.0 },
    Coord { x: 180.0, y: 90.0 },
    Coord { x: -180.0, y: 90.0 },
    Coord { x: -180.0, y: -90.0 },
];

/// The area on the sphere of the region a lon/lat ring bounds in the plane (m²).
fn sphere_area(ring: &[Coord]) -> f64 {
    use geo::ChamberlainDuquetteArea;
    Polygon::new(LineString(ring.to_vec()), vec![]).chamberlain_duquette_unsigned_area()
}

/// Longitudes made continuous: each step takes the short way round. With `literal_seams`, a
/// step from exactly ∓180 to ±180 keeps its full 360° (see the module docs).
fn unwrap_path(points: &[Coord], literal_seams: bool) -> Vec<Coord> {
    let mut out = Vec::with_capacity(points.len() + 3);
    let mut prev_raw = points[0].x;
    let mut x = prev_raw;
    out.push(points[0]);
    for p in &points[1..] {
        let mut d = p.x - prev_raw;
        let seam = d.abs() == 360.0 && prev_raw.abs() == 180.0;
        if !(seam && literal_seams) {
            if d > 180.0 {
                d -= 360.0 * ((d + 180.0) / 360.0).floor();
            } else if d < -180.0 {
                d += 360.0 * ((180.0 - d) / 360.0).floor();
            }
        }
        x += d;
        prev_raw = p.x;
        out.push(coord! { x: x, y: p.y });
    }
    out
}

/// The ring with its first position repeated at the end; `None` when it has no position.
fn closed(mut ring: Vec<Coord>) -> Option<Vec<Coord>> {
    let first = *ring.first()?;
    if ring.last() != Some(&first) {
        ring.push(first);
    }
    Some(ring)
}

fn planar_area(ring: &[Coord]) -> f64 {
    ring.windows(2).map(|w| w[0].x * w[1].y - w[1].x * w[0].y).sum::<f64>() / 2.0
}

/// Crossing-number point-in-ring test.
fn ring_contains(ring: &[Coord], p: Coord) -> bool {
    let mut inside = false;
    for w in ring.windows(2) {
        let (a, b) = (w[0], w[1]);
        if (a.y > p.y) != (b.y > p.y) {
            let x = a.x + (p.y - a.y) / (b.y - a.y) * (b.x - a.x);
            if p.x < x {
                inside = !inside;
            }
        }
    }
    inside
}

/// The part of segment `a → b` with `lo <= x <= hi`, if any.
fn clip_segment(a: Coord, b: Coord, lo: f64, hi: f64) -> Option<(Coord, Coord)> {
    let (mut t0, mut t1) = (0.0_f64, 1.0_f64);
    let dx = b.x - a.x;
    for (p, q) in [(-dx, a.x - lo), (dx, hi - a.x)] {
        if p == 0.0 {
            if q < 0.0 {
                return None;
            }
        } else {
            let r = q / p;
            if p < 0.0 {
                t0 = t0.max(r);
            } else {
                t1 = t1.min(r);
            }
        }
    }
    if t0 > t1 {
        return None;
    }
    let at = |t: f64| coord! { x: a.x + t * dx, y: a.y + t * (b.y - a.y) };
    Some((at(t0), at(t1)))
}

fn orient(a: Coord, b: Coord, c: Coord) -> f64 {
    (b.x - a.x) * (c.y - a.y) - (b.y - a.y) * (c.x - a.x)
}

fn point_segment_distance(p: Coord, a: Coord, b: Coord) -> f64 {
    let (dx, dy) = (b.x - a.x, b.y - a.y);
    let len2 = dx * dx + dy * dy;
    let t = if len2 == 0.0 {
        0.0
    } else {
        (((p.x - a.x) * dx + (p.y - a.y) * dy) / len2).clamp(0.0, 1.0)
    };
    ((a.x + t * dx - p.x).powi(2) + (a.y + t * dy - p.y).powi(2)).sqrt()
}

/// Planar distance between segments `p–q` and `r–s` (0 when they cross or touch).
pub(crate) fn segment_distance(p: Coord, q: Coord, r: Coord, s: Coord) -> f64 {
    let (d1, d2) = (orient(r, s, p), orient(r, s, q));
    let (d3, d4) = (orient(p, q, r), orient(p, q, s));
    if ((d1 > 0.0 && d2 < 0.0) || (d1 < 0.0 && d2 > 0.0))
        && ((d3 > 0.0 && d4 < 0.0) || (d3 < 0.0 && d4 > 0.0))
    {
        return 0.0;
    }
    point_segment_distance(p, r, s)
        .min(point_segment_distance(q, r, s))
        .min(point_segment_distance(r, p, q))
        .min(point_segment_distance(s, p, q))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(points: &[(f64, f64)]) -> Vec<Coord> {
        points.iter().map(|&(x, y)| coord! { x: x, y: y }).collect()
    }

    #[test]
    fn a_ring_jumping_from_179_to_minus_179_becomes_two_boxes_at_the_antimeridian() {
        let mut s = Shape::default();
        s.add_polygon(&ring(&[(179.0, 60.0), (-179.0, 60.0), (-179.0, 61.0), (179.0, 61.0)]), &[]);
        assert_eq!(s.areas.len(), 2);
        let widths: Vec<(f64, f64)> =
            s.areas.iter().map(|a| (a.exterior.bounds.min.x, a.exterior.bounds.max.x)).collect();
        assert!(
            widths.contains(&(179.0, 180.0)) && widths.contains(&(-180.0, -179.0)),
            "{widths:?}"
        );
    }

    #[test]
    fn a_bbox_ring_from_minus_180_to_180_covers_the_whole_band() {
        let mut s = Shape::default();
        s.add_polygon(&ring(&[(-180.0, 60.0), (180.0, 60.0), (180.0, 90.0), (-180.0, 90.0)]), &[]);
        assert_eq!(s.areas.len(), 1);
        assert!(s.areas[0].contains(coord! { x: 0.0, y: 75.0 }));
        assert!(s.areas[0].contains(coord! { x: 179.0, y: 61.0 }));
    }

    #[test]
    fn a_ring_winding_round_the_north_pole_encloses_the_pole() {
        let mut s = Shape::default();
        s.add_polygon(&ring(&[(0.0, 80.0), (120.0, 80.0), (-120.0, 80.0)]), &[]);
        assert!(s.areas.iter().any(|a| a.contains(coord! { x: 45.0, y: 89.0 })));
        assert!(s.areas.iter().any(|a| a.contains(coord! { x: -170.0, y: 85.0 })));
        assert!(!s.areas.iter().any(|a| a.contains(coord! { x: 0.0, y: 79.0 })));
    }

    #[test]
    fn crossing_segments_are_zero_apart_and_parallel_ones_are_not() {
        let c = |x, y| coord! { x: x, y: y };
        assert_eq!(segment_distance(c(0.0, 0.0), c(1.0, 1.0), c(0.0, 1.0), c(1.0, 0.0)), 0.0);
        assert_eq!(segment_distance(c(0.0, 0.0), c(1.0, 0.0), c(0.0, 1.0), c(1.0, 1.0)), 1.0);
    }
}
