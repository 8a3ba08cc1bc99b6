//! H3 covers of the widest footprints real catalogs publish, checked against a brute-force
//! spherical oracle: every cell holding a point of the footprint is in the cover, and no cell of
//! the cover lies far from the footprint.
//!
//! The footprints are generated from what they describe, so the truth is known independently of
//! the partitioner: polar-orbit swaths (Sentinel-3 / Sentinel-5P style rings, not split at ±180,
//! passing over both poles) and rectangles wider than 180° that are their own bbox.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use earthcatalog_common::partition::{H3Partitioner, Partitioner};
use earthcatalog_common::stac::parse_item;
use geo_types::{Geometry, LineString, Polygon};
use h3o::{CellIndex, LatLng, Resolution};

type V = [f64; 3];

fn unit(lat: f64, lon: f64) -> V {
    let (lat, lon) = (lat.to_radians(), lon.to_radians());
    [lat.cos() * lon.cos(), lat.cos() * lon.sin(), lat.sin()]
}

fn lat_lon(v: V) -> (f64, f64) {
    (v[2].atan2(v[0].hypot(v[1])).to_degrees(), v[1].atan2(v[0]).to_degrees())
}

fn angle(a: V, b: V) -> f64 {
    (a[0] * b[0] + a[1] * b[1] + a[2] * b[2]).clamp(-1.0, 1.0).acos()
}

/// Points of the true footprint (unit vectors), at most `spacing` radians from their neighbours.
struct Truth {
    points: Vec<V>,
    spacing: f64,
}

/// What the oracle found wrong with a cover.
#[derive(Debug, Default)]
struct Verdict {
    /// Cells holding a point of the footprint that the cover lacks, with their latitude.
    missed: BTreeSet<String>,
    /// Cells of the cover farther from every point of the footprint than their own size.
    far: BTreeSet<String>,
    cover: usize,
}

fn judge(cover: &[String], truth: &Truth, res: u8) -> Verdict {
    let resolution = Resolution::try_from(res).unwrap();
    let cover_set: BTreeSet<&str> = cover.iter().map(String::as_str).collect();
    let mut v = Verdict { cover: cover.len(), ..Verdict::default() };
    for p in &truth.points {
        let (lat, lon) = lat_lon(*p);
        let cell = LatLng::new(lat, lon).unwrap().to_cell(resolution).to_string();
        if !cover_set.contains(cell.as_str()) {
            v.missed.insert(cell);
        }
    }
    for key in cover {
        let cell: CellIndex = key.parse().unwrap();
        let c = LatLng::from(cell);
        let centre = unit(c.lat(), c.lng());
        let radius = cell
            .boundary()
            .iter()
            .map(|b| angle(centre, unit(b.lat(), b.lng())))
            .fold(0.0, f64::max);
        let nearest = truth.points.iter().map(|p| angle(centre, *p)).fold(f64::INFINITY, f64::min);
        // Far: not even the cell's circumscribed circle, widened by the sampling step and a
        // margin for the straight lon/lat edges of the footprint, reaches a point of it.
        if nearest > radius + truth.spacing + 1.5_f64.to_radians() {
            v.far.insert(key.clone());
        }
    }
    v
}

fn assert_right(name: &str, v: &Verdict) {
    assert!(
        v.missed.is_empty() && v.far.is_empty(),
        "{name}: cover of {} cells misses {} cells holding footprint points {:?} and has {} far \
         cells {:?}",
        v.cover,
        v.missed.len(),
        v.missed.iter().take(5).collect::<Vec<_>>(),
        v.far.len(),
        v.far.iter().take(5).collect::<Vec<_>>()
    );
}

/// A sun-synchronous polar orbit's swath (inclination 98.7°), as the producer's ring: the left
/// edge forward, the right edge back, longitudes in [-180, 180] (crossing ±180 the short way).
struct Swath {
    /// Orbit angle at the start and end (0 = ascending node), radians.
    from: f64,
    to: f64,
    /// Longitude of the ascending node, degrees.
    node: f64,
    /// Half the swath width, degrees of arc.
    half_width: f64,
}

impl Swath {
    const INCLINATION: f64 = 98.7;
    /// Degrees the Earth turns under one orbit (~101 minutes).
    const DRIFT_PER_ORBIT: f64 = 25.3;

    /// The point at orbit angle `u`, `offset` degrees across the track.
    fn at(&self, u: f64, offset: f64) -> (f64, f64) {
        let i = Self::INCLINATION.to_radians();
        let p = [u.cos(), u.sin() * i.cos(), u.sin() * i.sin()];
        let n = [0.0, -i.sin(), i.cos()];
        let t = offset.to_radians();
        let q = [0, 1, 2].map(|k| p[k] * t.cos() + n[k] * t.sin());
        let (lat, lon) = lat_lon(q);
        let lon = lon + self.node - Self::DRIFT_PER_ORBIT * u / std::f64::consts::TAU;
        (lat, (lon + 540.0).rem_euclid(360.0) - 180.0)
    }

    fn steps(&self, n: usize) -> impl DoubleEndedIterator<Item = f64> + '_ {
        (0..=n).map(move |k| self.from + (self.to - self.from) * k as f64 / n as f64)
    }

    fn footprint(&self) -> Geometry {
        let left = self.steps(400).map(|u| self.at(u, self.half_width));
        let right: Vec<_> = self.steps(400).map(|u| self.at(u, -self.half_width)).collect();
        let mut ring: Vec<(f64, f64)> =
            left.chain(right.into_iter().rev()).map(|(lat, lon)| (lon, lat)).collect();
        ring.push(ring[0]);
        Geometry::Polygon(Polygon::new(LineString::from(ring), vec![]))
    }

    fn truth(&self) -> Truth {
        let (along, across) = (2000, 24);
        let mut points = Vec::new();
        for u in self.steps(along) {
            for k in 0..=across {
                let offset = -self.half_width + 2.0 * self.half_width * k as f64 / across as f64;
                let (lat, lon) = self.at(u, offset);
                points.push(unit(lat, lon));
            }
        }
        let step_along = (self.to - self.from).abs() / along as f64;
        let step_across = (2.0 * self.half_width / across as f64).to_radians();
        Truth { points, spacing: step_along.max(step_across) }
    }
}

/// Points of the lon/lat rectangle `[west, east] × [south, north]` (west < east, read as given).
fn rectangle_truth(west: f64, south: f64, east: f64, north: f64) -> Truth {
    let step = 0.5;
    let mut points = Vec::new();
    let mut lat = south;
    while lat <= north {
        let mut lon = west;
        while lon <= east {
            points.push(unit(lat, lon));
            lon += step;
        }
        lat += step;
    }
    Truth { points, spacing: step.to_radians() }
}

fn cover(res: u8, g: &Geometry) -> Vec<String> {
    H3Partitioner::new(res).unwrap().cells(g).unwrap()
}

#[test]
fn half_orbit_swaths_over_both_poles_get_the_cells_of_the_swath() {
    let half = std::f64::consts::FRAC_PI_2;
    for (k, node) in [0.0, 95.0, 180.0, -120.0].into_iter().enumerate() {
        // From south of the descending node's latitude over the south pole, up the day side and
        // over the north pole: both poles are inside the swath.
        let s = Swath { from: -half - 0.45, to: half + 0.45, node, half_width: 12.0 };
        let v = judge(&cover(1, &s.footprint()), &s.truth(), 1);
        assert_right(&format!("swath {k} (node {node})"), &v);
        assert!(v.cover < 300, "swath {k}: {} cells for about an eighth of the globe", v.cover);
    }
}

#[test]
fn a_swath_over_one_pole_gets_the_cells_of_the_swath() {
    let s = Swath { from: 0.6, to: 2.6, node: 170.0, half_width: 13.0 };
    let v = judge(&cover(1, &s.footprint()), &s.truth(), 1);
    assert_right("swath over the north pole", &v);
}

fn item(bbox: [f64; 4], geometry: &Geometry) -> Vec<u8> {
    let g: geojson::Geometry = geometry.into();
    serde_json::json!({
        "type": "Feature", "stac_version": "1.0.0", "id": "wide", "bbox": bbox,
        "geometry": g, "properties": {"datetime": "2020-01-01T00:00:00Z"}, "assets": {}, "links": []
    })
    .to_string()
    .into_bytes()
}

#[test]
fn rectangles_wider_than_180_degrees_that_are_their_own_bbox_are_read_the_long_way() {
    for [w, s, e, n] in [
        [-178.97696981133217, -85.40054232550574, 180.0, -59.475639025638955],
        [-179.5, -60.0, 179.5, 80.0],
        [-170.0, 10.0, 60.0, 50.0],
    ] {
        let rect = Geometry::Polygon(Polygon::new(
            LineString::from(vec![(w, s), (e, s), (e, n), (w, n), (w, s)]),
            vec![],
        ));
        let parsed = parse_item(&item([w, s, e, n], &rect)).unwrap();
        let v = judge(&cover(1, &parsed.geometry), &rectangle_truth(w, s, e, n), 1);
        assert_right(&format!("rectangle {:?}", [w, s, e, n]), &v);
    }
}

#[test]
fn a_rectangle_whose_bbox_crosses_the_antimeridian_stays_the_narrow_box() {
    // The same corners, but the bbox says west > east: the box crosses ±180.
    let rect = Geometry::Polygon(Polygon::new(
        LineString::from(vec![(170.0, 10.0), (-170.0, 10.0), (-170.0, 30.0), (170.0, 30.0)]),
        vec![],
    ));
    let parsed = parse_item(&item([170.0, 10.0, -170.0, 30.0], &rect)).unwrap();
    let mut truth = rectangle_truth(170.0, 10.0, 180.0, 30.0);
    truth.points.extend(rectangle_truth(-180.0, 10.0, -170.0, 30.0).points);
    assert_right("box across ±180", &judge(&cover(1, &parsed.geometry), &truth, 1));
}

#[test]
fn the_us_census_item_is_found_by_a_query_over_ohio() {
    let path = format!(
        "{}/tests/data/stac/2020-census-blocks-population.stac.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let bytes = std::fs::read(path).unwrap();
    // As published (a rectangle per region), and as catalogs that give the bbox as footprint do.
    let mut as_bbox: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let [w, s, e, n] = [0, 1, 2, 3].map(|k| as_bbox["bbox"][k].as_f64().unwrap());
    as_bbox["geometry"] = serde_json::json!({"type": "Polygon",
        "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]});
    let as_bbox = serde_json::to_vec(&as_bbox).unwrap();
    for (bytes, res) in [(&bytes, 1u8), (&bytes, 3), (&as_bbox, 1), (&as_bbox, 3)] {
        let parsed = parse_item(bytes).unwrap();
        let cells = cover(res, &parsed.geometry);
        let ohio = LatLng::new(40.4, -82.9).unwrap().to_cell(Resolution::try_from(res).unwrap());
        assert!(cells.contains(&ohio.to_string()), "resolution {res}: Ohio's cell {ohio} missed");
        // Alaska and Guam are in too.
        for (lat, lon) in [(64.8, -147.7), (13.45, 144.8)] {
            let c = LatLng::new(lat, lon).unwrap().to_cell(Resolution::try_from(res).unwrap());
            assert!(cells.contains(&c.to_string()), "resolution {res}: ({lat}, {lon})");
        }
    }
}

#[test]
fn a_wide_densified_rectangle_short_of_the_poles_is_read_as_drawn() {
    // Positions every 59° along the long sides: no bbox needed, and more than half the globe.
    let (w, s, e, n) = (-179.0, -80.0, 176.0, 80.0);
    let k = 6;
    let mut ring: Vec<(f64, f64)> =
        (0..=k).map(|j| (w + (e - w) * f64::from(j) / f64::from(k), s)).collect();
    ring.extend((0..=k).map(|j| (e - (e - w) * f64::from(j) / f64::from(k), n)));
    ring.push((w, s));
    let g = Geometry::Polygon(Polygon::new(LineString::from(ring), vec![]));
    assert_right("densified rectangle", &judge(&cover(1, &g), &rectangle_truth(w, s, e, n), 1));
}
