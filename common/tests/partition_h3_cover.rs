//! H3 covers: the original's reference cells, its antimeridian and MultiPolygon bugs fixed,
//! holes, lines, poles, real footprints and the errors a caller sees.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use earthcatalog_common::partition::{CoverError, GridSpec, H3Partitioner, Partitioner};
use geo_types::{Geometry, GeometryCollection, LineString, MultiPolygon, Point, Polygon};
use h3o::{CellIndex, LatLng, Resolution};

fn h3(res: u8) -> H3Partitioner {
    H3Partitioner::new(res).unwrap()
}

fn polygon(ring: &[(f64, f64)]) -> Polygon {
    Polygon::new(LineString::from(ring.to_vec()), vec![])
}

fn cells(res: u8, g: impl Into<Geometry>) -> Vec<String> {
    h3(res).cells(&g.into()).unwrap()
}

fn set(keys: &[&str]) -> BTreeSet<String> {
    keys.iter().map(|k| k.to_string()).collect()
}

fn fixture(name: &str) -> Geometry {
    let path = format!("{}/tests/data/stac/{name}.stac.json", env!("CARGO_MANIFEST_DIR"));
    let item: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let g: geojson::Geometry = serde_json::from_value(item["geometry"].clone()).unwrap();
    Geometry::try_from(g).unwrap()
}

fn cell_at(lon: f64, lat: f64, res: Resolution) -> CellIndex {
    LatLng::new(lat, lon).unwrap().to_cell(res)
}

#[test]
fn points_get_the_reference_cells_of_the_original() {
    assert_eq!(cells(1, Point::new(-133.99, 58.74)), ["8113bffffffffff"]);
    assert_eq!(cells(2, Point::new(-45.0, 70.0)), ["8206f7fffffffff"]);
    assert_eq!(cells(2, Point::new(-49.0, 66.5)), ["8206c7fffffffff"]);
}

#[test]
fn the_reference_box_gets_the_originals_six_cells_at_resolution_1() {
    let b = polygon(&[(-10.0, 60.0), (10.0, 60.0), (10.0, 70.0), (-10.0, 70.0), (-10.0, 60.0)]);
    let original = set(&[
        "81073ffffffffff",
        "81083ffffffffff",
        "81093ffffffffff",
        "81097ffffffffff",
        "8109bffffffffff",
        "81193ffffffffff",
    ]);
    let ours: BTreeSet<String> = cells(1, b.clone()).into_iter().collect();
    assert_eq!(ours, original);
    assert_eq!(cells(2, b.clone()).len(), 28, "the original's count at resolution 2");
    // The original finds 147 cells at resolution 3 (centroid fill + boundary samples every
    // ~0.1°); one more cell touches the box only through a sliver between two of its sample
    // points, which sampling cannot see and the exact cover does.
    assert_eq!(cells(3, b).len(), 148);
}

#[test]
fn the_second_reference_box_and_an_itslive_footprint_match_the_original() {
    let b = polygon(&[(-60.0, 60.0), (-30.0, 60.0), (-30.0, 80.0), (-60.0, 80.0), (-60.0, 60.0)]);
    assert_eq!(cells(1, b.clone()).len(), 9);
    assert_eq!(cells(2, b).len(), 43);
    let its = polygon(&[(-33.3, 60.0), (-29.3, 60.0), (-29.3, 62.0), (-33.3, 62.0), (-33.3, 60.0)]);
    assert_eq!(cells(1, its), ["81067ffffffffff"]);
}

#[test]
fn a_box_crossing_the_antimeridian_gets_only_cells_at_the_antimeridian() {
    // The original walked the boundary the long way round and assigned 30 cells.
    let b = polygon(&[(179.0, 60.0), (-179.0, 60.0), (-179.0, 61.0), (179.0, 61.0), (179.0, 60.0)]);
    let got = cells(1, b.clone());
    assert_eq!(got, ["810cbffffffffff", "81177ffffffffff"]);
    let expected: BTreeSet<String> = [(179.5, 60.5), (-179.5, 60.5), (179.0, 60.0), (-179.0, 61.0)]
        .iter()
        .map(|&(x, y)| cell_at(x, y, Resolution::One).to_string())
        .collect();
    assert!(expected.iter().all(|c| got.contains(c)), "{got:?} lacks one of {expected:?}");
    // The same box pre-split into two parts (RFC 7946 style) gets the same cells.
    let split = MultiPolygon(vec![
        polygon(&[(179.0, 60.0), (180.0, 60.0), (180.0, 61.0), (179.0, 61.0), (179.0, 60.0)]),
        polygon(&[(-180.0, 60.0), (-179.0, 60.0), (-179.0, 61.0), (-180.0, 61.0), (-180.0, 60.0)]),
    ]);
    assert_eq!(cells(1, split), got);
    // Written with longitudes past 180, it is the same box again.
    let past =
        polygon(&[(179.0, 60.0), (181.0, 60.0), (181.0, 61.0), (179.0, 61.0), (179.0, 60.0)]);
    assert_eq!(cells(1, past), got);
}

#[test]
fn a_band_written_with_intermediate_vertices_spans_the_long_way() {
    // -179 → 179 directly is the narrow box across ±180 ...
    let narrow =
        polygon(&[(-179.0, 10.0), (179.0, 10.0), (179.0, 11.0), (-179.0, 11.0), (-179.0, 10.0)]);
    assert!(cells(0, narrow).len() <= 2);
    // ... and with a vertex at 0 it is the band round the globe.
    let wide = polygon(&[
        (-179.0, 10.0),
        (0.0, 10.0),
        (179.0, 10.0),
        (179.0, 11.0),
        (0.0, 11.0),
        (-179.0, 11.0),
        (-179.0, 10.0),
    ]);
    let got = cells(0, wide);
    for lon in [-170.0, -90.0, 0.0, 90.0, 170.0] {
        assert!(got.contains(&cell_at(lon, 10.5, Resolution::Zero).to_string()), "lon {lon}");
    }
}

#[test]
fn a_multipolygon_gets_the_cells_of_every_part() {
    // The original dropped MultiPolygon items.
    let a = polygon(&[(-33.3, 60.0), (-29.3, 60.0), (-29.3, 62.0), (-33.3, 62.0), (-33.3, 60.0)]);
    let b = polygon(&[(-133.99, 58.74), (-133.9, 58.74), (-133.9, 58.8), (-133.99, 58.74)]);
    let got = cells(1, MultiPolygon(vec![a, b]));
    assert_eq!(got, ["81067ffffffffff", "8113bffffffffff"]);
}

#[test]
fn a_hole_removes_the_cells_that_lie_inside_it() {
    let outer =
        LineString::from(vec![(0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0), (0.0, 0.0)]);
    let hole = LineString::from(vec![(2.0, 2.0), (8.0, 2.0), (8.0, 8.0), (2.0, 8.0), (2.0, 2.0)]);
    let with_hole = cells(3, Polygon::new(outer.clone(), vec![hole]));
    let without = cells(3, Polygon::new(outer, vec![]));
    let centre = cell_at(5.0, 5.0, Resolution::Three).to_string();
    assert!(without.contains(&centre));
    assert!(!with_hole.contains(&centre));
    assert!(with_hole.contains(&cell_at(2.0, 5.0, Resolution::Three).to_string()), "hole edge");
    assert!(with_hole.contains(&cell_at(1.0, 5.0, Resolution::Three).to_string()));
    assert!(with_hole.len() < without.len());
}

#[test]
fn a_line_gets_every_cell_it_passes_through() {
    let line = LineString::from(vec![(-20.0, 64.0), (-10.0, 66.0), (-10.0, 70.0)]);
    let got = cells(3, line);
    for i in 0..=2000 {
        let t = f64::from(i) / 2000.0;
        let (x, y) = if t < 0.5 {
            (-20.0 + 20.0 * t, 64.0 + 4.0 * t)
        } else {
            (-10.0, 66.0 + 8.0 * (t - 0.5))
        };
        assert!(got.contains(&cell_at(x, y, Resolution::Three).to_string()), "missed ({x}, {y})");
    }
    // A line across the antimeridian stays near it.
    let across = cells(2, LineString::from(vec![(179.5, 50.0), (-179.5, 50.2)]));
    assert!(across.len() <= 4, "{across:?}");
}

#[test]
fn a_collection_gets_the_union_of_its_members_recursively() {
    let a = Geometry::Point(Point::new(-133.99, 58.74));
    let b = Geometry::Point(Point::new(-31.3, 61.0));
    let inner = Geometry::GeometryCollection(GeometryCollection(vec![b]));
    let got = cells(1, Geometry::GeometryCollection(GeometryCollection(vec![a, inner])));
    assert_eq!(got, ["81067ffffffffff", "8113bffffffffff"]);
}

#[test]
fn footprints_at_the_poles_get_the_pole_cell() {
    let north = cell_at(0.0, 90.0, Resolution::Two).to_string();
    assert_eq!(cells(2, Point::new(123.0, 90.0)), std::slice::from_ref(&north));
    // A ring winding round the pole at latitude 85 encloses it.
    let ring: Vec<(f64, f64)> = (0..12).map(|i| (-180.0 + 30.0 * f64::from(i), 85.0)).collect();
    let mut closed = ring.clone();
    closed.push(ring[0]);
    let cap = cells(2, polygon(&closed));
    assert!(cap.contains(&north));
    // The same cap as a bbox-style ring [-180, 85, 180, 90].
    let bbox = cells(
        2,
        polygon(&[(-180.0, 85.0), (180.0, 85.0), (180.0, 90.0), (-180.0, 90.0), (-180.0, 85.0)]),
    );
    assert_eq!(cap, bbox);
    // A small box touching the pole line at one longitude touches the pole cell too.
    let touching =
        cells(2, polygon(&[(10.0, 89.0), (11.0, 89.0), (11.0, 90.0), (10.0, 90.0), (10.0, 89.0)]));
    assert!(touching.contains(&north));
}

#[test]
fn every_key_is_a_cell_of_the_requested_resolution_sorted_without_duplicates() {
    let g = Geometry::MultiPolygon(MultiPolygon(vec![
        polygon(&[(-10.0, 60.0), (10.0, 60.0), (10.0, 70.0), (-10.0, 70.0), (-10.0, 60.0)]),
        polygon(&[(-5.0, 61.0), (5.0, 61.0), (5.0, 69.0), (-5.0, 61.0)]),
    ]));
    for res in 0..=4u8 {
        let keys = h3(res).cells(&g).unwrap();
        assert!(!keys.is_empty());
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "sorted and unique at {res}");
        for k in &keys {
            assert_eq!(k.len(), 15);
            assert_eq!(k, &k.to_lowercase());
            let cell: CellIndex = k.parse().unwrap();
            assert_eq!(u8::from(cell.resolution()), res, "{k}");
        }
    }
}

#[test]
fn unusable_geometries_are_refused_with_the_reason() {
    let p = h3(1);
    let empty = Geometry::Polygon(Polygon::new(LineString(vec![]), vec![]));
    assert_eq!(p.cells(&empty), Err(CoverError::Empty));
    assert_eq!(p.cells(&Geometry::MultiPolygon(MultiPolygon(vec![]))), Err(CoverError::Empty));
    let nan = Geometry::Point(Point::new(f64::NAN, 1.0));
    assert!(matches!(p.cells(&nan), Err(CoverError::NotFinite { .. })));
    let err = p.cells(&Geometry::Point(Point::new(10.0, 91.0))).unwrap_err();
    assert_eq!(err, CoverError::OutOfRange { lon: 10.0, lat: 91.0 });
    assert!(err.to_string().contains("(10, 91)"), "{err}");
    assert!(H3Partitioner::new(16).is_err());
    assert_eq!(p.grid(), GridSpec::H3 { resolution: 1 });
}

#[test]
fn sentinel3_half_orbits_crossing_the_antimeridian_and_the_pole_get_a_plausible_cover() {
    for name in [
        "S3A_SL_2_LST_20160521T015552_20160521T033651_6059_004_217_____",
        "S3A_SL_2_LST_20160521T033651_20160521T051750_6059_004_218_____",
    ] {
        let g = fixture(name);
        let got = cells(1, g.clone());
        // The ring winds round the north pole: the pole cell is in, the south pole cell is not.
        assert!(got.contains(&cell_at(0.0, 90.0, Resolution::One).to_string()), "{name}");
        assert!(!got.contains(&cell_at(0.0, -90.0, Resolution::One).to_string()), "{name}");
        // Every vertex's cell is in, and the swath covers far from all of the globe (842 cells).
        let Geometry::Polygon(p) = &g else { panic!("{name} is a Polygon") };
        for c in p.exterior().coords() {
            assert!(got.contains(&cell_at(c.x, c.y, Resolution::One).to_string()), "{name} {c:?}");
        }
        assert!(got.len() > 30 && got.len() < 400, "{name}: {}", got.len());
    }
}

#[test]
fn the_copernicus_dem_tile_at_the_south_pole_gets_the_pole_cell_only_near_180() {
    let got = cells(3, fixture("Copernicus_DSM_COG_10_S90_00_W180_00_DEM"));
    assert!(got.contains(&cell_at(0.0, -90.0, Resolution::Three).to_string()));
    // Its sliver past -180 (to -180.0014) reaches the cells east of the antimeridian.
    assert!(got.contains(&cell_at(179.9999, -89.5, Resolution::Three).to_string()));
    for k in &got {
        let c = LatLng::from(k.parse::<CellIndex>().unwrap());
        assert!(c.lat() < -88.0, "{k} at {c:?}");
    }
}

#[test]
fn io_lulc_zone_60_footprints_get_the_same_cells_split_or_unsplit() {
    let v = cells(2, fixture("60V-2023"));
    let w = cells(2, fixture("60W-2023"));
    for (name, got, lat) in [("60V", &v, 60.0), ("60W", &w, 68.0)] {
        assert!(got.contains(&cell_at(179.9, lat, Resolution::Two).to_string()), "{name}");
        assert!(got.contains(&cell_at(-179.5, lat, Resolution::Two).to_string()), "{name}");
        for k in got.iter() {
            let c = LatLng::from(k.parse::<CellIndex>().unwrap());
            assert!(c.lng().abs() > 165.0, "{name}: {k} at {c:?}");
        }
    }
}

#[test]
fn the_census_multipolygon_gets_cells_on_both_sides_of_the_antimeridian() {
    let got = cells(1, fixture("2020-census-blocks-population"));
    for (lon, lat) in [(144.8, 13.4), (-66.5, 18.2), (-170.0, -14.0), (175.0, 52.0), (-100.0, 40.0)]
    {
        assert!(got.contains(&cell_at(lon, lat, Resolution::One).to_string()), "({lon}, {lat})");
    }
    // Nothing in the open Pacific south of the Aleutians between the boxes.
    assert!(!got.contains(&cell_at(-160.0, 40.0, Resolution::One).to_string()));
}
