//! Property: the H3 cell of every point of a footprint is in the footprint's cover.
//!
//! Footprints are read as the partitioner reads them (straight lines in lon/lat, the short way
//! across ±180, rings winding round a pole enclose it); sample points are drawn inside each
//! footprint and on its edges, in that same reading, and located with h3o's exact `to_cell`.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;

use earthcatalog_common::partition::H3Partitioner;
use geo_types::{Geometry, LineString, Polygon};
use h3o::{CellIndex, LatLng, Resolution};
use proptest::prelude::*;

/// A footprint, its resolution and points that lie in it (unwrapped longitudes allowed).
#[derive(Debug, Clone)]
struct Case {
    geometry: Geometry,
    resolution: u8,
    samples: Vec<(f64, f64)>,
}

fn wrap(lon: f64) -> f64 {
    if lon > 180.0 {
        lon - 360.0
    } else if lon < -180.0 {
        lon + 360.0
    } else {
        lon
    }
}

fn ring_geometry(ring: &[(f64, f64)]) -> Geometry {
    let mut r: Vec<(f64, f64)> = ring.iter().map(|&(x, y)| (wrap(x), y)).collect();
    r.push(r[0]);
    Geometry::Polygon(Polygon::new(LineString::from(r), vec![]))
}

/// Points on the edges of a (planar, unwrapped) ring, and interpolated between them.
fn edge_samples(ring: &[(f64, f64)], ts: &[f64]) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    for i in 0..ring.len() {
        let (a, b) = (ring[i], ring[(i + 1) % ring.len()]);
        for t in ts {
            out.push((a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1)));
        }
    }
    out
}

/// Bilinear points of a convex quad `[p0, p1, p2, p3]`: inside it, edges included.
fn quad_samples(q: &[(f64, f64); 4], uv: &[(f64, f64)]) -> Vec<(f64, f64)> {
    uv.iter()
        .map(|&(u, v)| {
            let lerp = |a: (f64, f64), b: (f64, f64), t: f64| {
                (a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1))
            };
            lerp(lerp(q[0], q[1], u), lerp(q[3], q[2], u), v)
        })
        .collect()
}

fn unit() -> impl Strategy<Value = f64> {
    prop_oneof![3 => 0.0..=1.0f64, 1 => Just(0.0), 1 => Just(1.0)]
}

fn uvs() -> impl Strategy<Value = Vec<(f64, f64)>> {
    prop::collection::vec((unit(), unit()), 40)
}

fn boxes() -> impl Strategy<Value = Case> {
    (-179.0..170.0f64, -85.0..80.0f64, 0.001..9.0f64, 0.001..5.0f64, 0u8..=3, uvs()).prop_map(
        |(x, y, w, h, resolution, uv)| {
            let q = [(x, y), (x + w, y), (x + w, y + h), (x, y + h)];
            let mut samples = quad_samples(&q, &uv);
            samples.extend(edge_samples(&q, &[0.0, 0.37, 0.5, 0.999]));
            Case { geometry: ring_geometry(&q), resolution, samples }
        },
    )
}

fn rotated_quads() -> impl Strategy<Value = Case> {
    (
        -170.0..170.0f64,
        -75.0..75.0f64,
        0.01..4.0f64,
        0.01..2.0f64,
        0.0..std::f64::consts::PI,
        1u8..=4,
        uvs(),
    )
        .prop_map(|(cx, cy, a, b, angle, resolution, uv)| {
            let (s, c) = angle.sin_cos();
            let corner = |u: f64, v: f64| (cx + u * a * c - v * b * s, cy + u * a * s + v * b * c);
            let q = [corner(-1.0, -1.0), corner(1.0, -1.0), corner(1.0, 1.0), corner(-1.0, 1.0)];
            Case { geometry: ring_geometry(&q), resolution, samples: quad_samples(&q, &uv) }
        })
}

fn antimeridian_boxes() -> impl Strategy<Value = Case> {
    (170.0..179.99f64, 0.02..9.0f64, -80.0..80.0f64, 0.01..4.0f64, 0u8..=3, uvs()).prop_map(
        |(x, w, y, h, resolution, uv)| {
            // x + w may pass 180: the ring is written with wrapped longitudes (179 → -179).
            let q = [(x, y), (x + w, y), (x + w, y + h), (x, y + h)];
            Case { geometry: ring_geometry(&q), resolution, samples: quad_samples(&q, &uv) }
        },
    )
}

fn polar_caps() -> impl Strategy<Value = Case> {
    (
        any::<bool>(),
        prop::collection::vec((30.0..60.0f64, 60.0..89.5f64), 4..12),
        -180.0..180.0f64,
        0u8..=2,
        prop::collection::vec((unit(), unit(), 0usize..64), 40),
    )
        .prop_map(|(north, steps, start, resolution, picks)| {
            // Longitudes increase by the steps, scaled to one turn; the last step closes the
            // ring. Every step stays under 180° (at most 60 / (60 + 3 × 30) of the turn).
            let total: f64 = steps.iter().map(|s| s.0).sum();
            let scale = 360.0 / total;
            let sign = if north { 1.0 } else { -1.0 };
            let mut ring = Vec::new();
            let mut lon = start;
            for (step, lat) in &steps {
                ring.push((lon, sign * lat));
                lon += step * scale;
            }
            let mut unwrapped = ring.clone();
            unwrapped.push((start + 360.0, ring[0].1));
            assert!(unwrapped.windows(2).all(|w| w[1].0 - w[0].0 < 180.0));
            let samples = picks
                .iter()
                .map(|&(t, v, i)| {
                    let k = i % (unwrapped.len() - 1);
                    let (a, b) = (unwrapped[k], unwrapped[k + 1]);
                    let (x, y) = (a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1));
                    // Anywhere between the ring and the pole.
                    (x, y + v * (sign * 90.0 - y))
                })
                .collect();
            let geometry =
                ring_geometry(&ring.iter().map(|&(x, y)| (wrap_far(x), y)).collect::<Vec<_>>());
            Case { geometry, resolution, samples }
        })
}

fn wrap_far(lon: f64) -> f64 {
    let mut l = lon;
    while l > 180.0 {
        l -= 360.0;
    }
    l
}

fn thin_lines() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec((-179.9..179.9f64, -89.0..89.0f64), 1..4),
        prop::collection::vec((-3.0..3.0f64, -2.0..2.0f64), 1..4),
        0u8..=5,
        prop::collection::vec(unit(), 30),
    )
        .prop_map(|(starts, deltas, resolution, ts)| {
            let (x0, y0) = starts[0];
            let mut line = vec![(x0, y0)];
            for (dx, dy) in deltas {
                let (x, y) = line[line.len() - 1];
                line.push((x + dx, (y + dy).clamp(-90.0, 90.0)));
            }
            let mut samples = Vec::new();
            for w in line.windows(2) {
                for t in &ts {
                    samples.push((w[0].0 + t * (w[1].0 - w[0].0), w[0].1 + t * (w[1].1 - w[0].1)));
                }
            }
            let wrapped: Vec<(f64, f64)> = line.iter().map(|&(x, y)| (wrap(x), y)).collect();
            Case { geometry: Geometry::LineString(LineString::from(wrapped)), resolution, samples }
        })
}

fn check(case: &Case) -> Result<(), TestCaseError> {
    let p = H3Partitioner::new(case.resolution).unwrap();
    let cover: HashSet<CellIndex> = p.cover(&case.geometry).unwrap().into_iter().collect();
    let res = Resolution::try_from(case.resolution).unwrap();
    for &(x, y) in &case.samples {
        let cell = LatLng::new(y, wrap_far(wrap(x))).unwrap().to_cell(res);
        prop_assert!(
            cover.contains(&cell),
            "sample ({x}, {y}) in {cell} not in cover of {} cells",
            cover.len()
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_point_of_a_box_is_in_a_cell_of_its_cover(case in boxes()) {
        check(&case)?;
    }

    #[test]
    fn every_point_of_a_rotated_quad_is_in_a_cell_of_its_cover(case in rotated_quads()) {
        check(&case)?;
    }

    #[test]
    fn every_point_of_a_box_across_the_antimeridian_is_in_a_cell_of_its_cover(case in antimeridian_boxes()) {
        check(&case)?;
    }

    #[test]
    fn every_point_of_a_polar_cap_is_in_a_cell_of_its_cover(case in polar_caps()) {
        check(&case)?;
    }

    #[test]
    fn every_point_of_a_thin_line_is_in_a_cell_of_its_cover(case in thin_lines()) {
        check(&case)?;
    }
}
