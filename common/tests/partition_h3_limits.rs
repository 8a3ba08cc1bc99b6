//! H3 covers at the finest resolutions: small footprints get exactly the cells they touch,
//! huge ones are refused (before any flood) with the resolution and the estimated count.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use earthcatalog_common::partition::{CoverError, DEFAULT_MAX_CELLS, H3Partitioner, Partitioner};
use geo::{BoundingRect, Distance, Euclidean, Intersects};
use geo_types::{Geometry, LineString, Point, Polygon};
use h3o::{CellIndex, LatLng, Resolution};

fn polygon(ring: &[(f64, f64)]) -> Polygon {
    Polygon::new(LineString::from(ring.to_vec()), vec![])
}

/// A square of `side` degrees with its south-west corner at (`lon`, `lat`).
fn square(lon: f64, lat: f64, side: f64) -> Geometry {
    Geometry::Polygon(polygon(&[
        (lon, lat),
        (lon + side, lat),
        (lon + side, lat + side),
        (lon, lat + side),
        (lon, lat),
    ]))
}

/// A cell drawn with straight edges: at resolution 12 and finer an edge is under 10 m, where
/// a great-circle arc and its chord differ by nanometres.
fn cell_polygon(cell: CellIndex) -> Polygon {
    let mut ring: Vec<(f64, f64)> = cell.boundary().iter().map(|v| (v.lng(), v.lat())).collect();
    ring.push(ring[0]);
    polygon(&ring)
}

/// Brute force over a disk of cells: those whose drawing intersects the footprint, and those
/// within `slack` degrees of it; the disk's outer ring must hold neither.
fn oracle(
    footprint: &Geometry,
    res: Resolution,
    radius: u32,
    slack: f64,
) -> [BTreeSet<CellIndex>; 2] {
    let Geometry::Polygon(p) = footprint else { panic!("a polygon footprint") };
    let c = p.bounding_rect().unwrap().center();
    let centre = LatLng::new(c.y, c.x).unwrap().to_cell(res);
    let (mut touching, mut near) = (BTreeSet::new(), BTreeSet::new());
    let rim: BTreeSet<CellIndex> = centre.grid_ring_fast(radius).flatten().collect();
    for cell in centre.grid_disk::<Vec<_>>(radius) {
        let drawn = cell_polygon(cell);
        if drawn.intersects(p) {
            touching.insert(cell);
        }
        if Euclidean.distance(&drawn, p) <= slack {
            assert!(!rim.contains(&cell), "the oracle's disk of radius {radius} is too small");
            near.insert(cell);
        }
    }
    [touching, near]
}

#[test]
fn a_50_metre_footprint_gets_exactly_the_cells_it_touches_at_resolutions_12_to_15() {
    // About 50 m × 55 m in south-east Alaska, one corner off the axes so no edge is parallel to
    // the grid's.
    let footprint = Geometry::Polygon(polygon(&[
        (-133.99, 58.74),
        (-133.9892, 58.7401),
        (-133.9891, 58.7406),
        (-133.9899, 58.7405),
        (-133.99, 58.74),
    ]));
    for (res, radius) in [(12u8, 8), (13, 16), (14, 40), (15, 100)] {
        let p = H3Partitioner::new(res).unwrap();
        let r = Resolution::try_from(res).unwrap();
        let cover: BTreeSet<CellIndex> = p.cover(&footprint).unwrap().into_iter().collect();
        let [touching, near] = oracle(&footprint, r, radius, 1e-8);
        assert!(touching.is_subset(&cover), "res {res}: missed {:?}", &touching - &cover);
        assert!(cover.is_subset(&near), "res {res}: too far {:?}", &cover - &near);
        assert_eq!(cover, touching, "res {res}: no cell lies within 1 mm without touching");
        let estimate = p.estimate_cells(&footprint).unwrap();
        eprintln!("res {res}: {} cells (estimated {estimate})", cover.len());
        assert!(cover.iter().all(|c| c.resolution() == r));
    }
}

#[test]
fn a_point_gets_its_one_cell_at_resolution_15() {
    let p = H3Partitioner::new(15).unwrap();
    let cell = LatLng::new(61.2, -149.9).unwrap().to_cell(Resolution::Fifteen);
    assert_eq!(p.cells(&Geometry::Point(Point::new(-149.9, 61.2))).unwrap(), [cell.to_string()]);
}

#[test]
fn a_185_km_swath_at_resolution_15_is_refused_with_the_resolution_and_the_estimate() {
    // A Landsat-sized scene: about 185 km × 185 km at latitude 60 (3.33° of longitude).
    let scene = Geometry::Polygon(polygon(&[
        (-150.0, 60.0),
        (-146.67, 60.0),
        (-146.67, 61.66),
        (-150.0, 61.66),
        (-150.0, 60.0),
    ]));
    let p = H3Partitioner::new(15).unwrap();
    assert_eq!(p.max_cells(), DEFAULT_MAX_CELLS);
    let err = p.cells(&scene).unwrap_err();
    let CoverError::TooManyCells { resolution, estimated, limit } = err.clone() else {
        panic!("{err:?}")
    };
    assert_eq!((resolution, limit), (15, 1_000_000));
    // 185 km × 185 km is 3.4e10 m²; the average cell at resolution 15 is 0.895 m².
    assert!((3.5e10..4.5e10).contains(&(estimated as f64)), "{estimated}");
    assert_eq!(
        err.to_string(),
        format!(
            "the footprint covers about {estimated} H3 cells at resolution 15, more than the limit of 1000000"
        )
    );
    // The whole globe is refused too, without overflowing the estimate.
    let globe = Geometry::Polygon(polygon(&[
        (-180.0, -90.0),
        (180.0, -90.0),
        (180.0, 90.0),
        (-180.0, 90.0),
        (-180.0, -90.0),
    ]));
    assert!(matches!(p.cells(&globe), Err(CoverError::TooManyCells { resolution: 15, .. })));
}

#[test]
fn the_limit_is_a_setting_of_the_partitioner() {
    let scene = square(-150.0, 60.0, 1.0);
    let p = H3Partitioner::new(6).unwrap();
    let all = p.cover(&scene).unwrap();
    let estimate = p.estimate_cells(&scene).unwrap();
    // The estimate is of the right size (area over cell area, plus the rim).
    let ratio = estimate as f64 / all.len() as f64;
    assert!((0.7..1.5).contains(&ratio), "{estimate} estimated for {} cells", all.len());
    // Exactly at the limit the cover is whole; one cell below, the flood finds one too many.
    assert_eq!(p.with_max_cells(all.len()).cover(&scene).unwrap(), all);
    let err = p.with_max_cells(all.len() - 1).cover(&scene).unwrap_err();
    let limit = all.len() as u64 - 1;
    assert_eq!(err, CoverError::TooManyCells { resolution: 6, estimated: estimate, limit });
    // Far below, the estimate refuses it.
    let err = p.with_max_cells(10).cover(&scene).unwrap_err();
    assert_eq!(err, CoverError::TooManyCells { resolution: 6, estimated: estimate, limit: 10 });
}
