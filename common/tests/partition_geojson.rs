//! GeoJSON boundaries: loading through a location, keys, errors naming the feature, the index,
//! and grid descriptions round-tripping through table properties.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::Instant;

use earthcatalog_common::location::Location;
use earthcatalog_common::partition::geojson::BoundariesError;
use earthcatalog_common::partition::{
    GeoJsonPartitioner, GridError, GridSpec, NO_CELL, Partitioner, open_partitioner,
};
use earthcatalog_common::stores::{S3Settings, Stores};
use geo_types::{Geometry, LineString, Point, Polygon};
use object_store::ObjectStoreExt;
use serde_json::json;

fn square(x: f64, y: f64, size: f64) -> serde_json::Value {
    json!({"type": "Polygon", "coordinates": [[[x, y], [x + size, y], [x + size, y + size], [x, y + size], [x, y]]]})
}

fn collection(features: Vec<serde_json::Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({"type": "FeatureCollection", "features": features})).unwrap()
}

fn feature(props: serde_json::Value, geometry: serde_json::Value) -> serde_json::Value {
    json!({"type": "Feature", "properties": props, "geometry": geometry})
}

fn boundaries() -> Vec<u8> {
    collection(vec![
        feature(json!({"name": "west"}), square(0.0, 0.0, 1.0)),
        feature(json!({"name": "east"}), square(1.0, 0.0, 1.0)),
        feature(json!({"name": 7}), square(5.0, 5.0, 1.0)),
    ])
}

fn poly(ring: &[(f64, f64)]) -> Geometry {
    Geometry::Polygon(Polygon::new(LineString::from(ring.to_vec()), vec![]))
}

#[tokio::test]
async fn boundaries_load_from_a_local_file_and_touching_features_count() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grid.geojson");
    std::fs::write(&path, boundaries()).unwrap();
    let spec =
        GridSpec::GeoJson { boundaries: path.display().to_string(), id_field: "name".into() };
    let p = open_partitioner(&spec, &Stores::new(S3Settings::default())).await.unwrap();
    assert_eq!(p.grid(), spec);
    // Inside one square; on the shared edge (touches both); far away (none); a number key.
    assert_eq!(p.cells(&Geometry::Point(Point::new(0.5, 0.5))).unwrap(), ["west"]);
    assert_eq!(p.cells(&Geometry::Point(Point::new(1.0, 0.5))).unwrap(), ["east", "west"]);
    let spanning = poly(&[(0.5, 0.2), (5.5, 0.2), (5.5, 5.5), (0.5, 0.2)]);
    assert_eq!(p.cells(&spanning).unwrap(), ["7", "east", "west"]);
    assert!(p.cells(&Geometry::Point(Point::new(50.0, 50.0))).unwrap().is_empty());
    assert_eq!(NO_CELL, "__none__");
}

#[test]
fn a_footprint_crossing_the_antimeridian_touches_the_boundaries_on_both_sides_only() {
    let bytes = collection(vec![
        feature(json!({"name": "far-west"}), square(-180.0, 0.0, 10.0)),
        feature(json!({"name": "greenwich"}), square(-5.0, 0.0, 10.0)),
        feature(json!({"name": "far-east"}), square(170.0, 0.0, 10.0)),
    ]);
    let p = GeoJsonPartitioner::from_bytes(&bytes, "grid.geojson", "name").unwrap();
    // A 10° wide footprint written the way many STAC items are: 175 → -175 is the short way.
    let across = poly(&[(175.0, 4.0), (-175.0, 4.0), (-175.0, 6.0), (175.0, 6.0), (175.0, 4.0)]);
    assert_eq!(p.cells(&across).unwrap(), ["far-east", "far-west"]);
    let line = Geometry::LineString(LineString::from(vec![(178.0, 5.0), (-178.0, 5.0)]));
    assert_eq!(p.cells(&line).unwrap(), ["far-east", "far-west"]);
    // Footprints that do not cross are matched as before.
    let near_zero = poly(&[(-1.0, 4.0), (1.0, 4.0), (1.0, 6.0), (-1.0, 4.0)]);
    assert_eq!(p.cells(&near_zero).unwrap(), ["greenwich"]);
}

#[test]
fn a_feature_without_the_key_is_refused_naming_its_index() {
    let bytes = collection(vec![
        feature(json!({"name": "a"}), square(0.0, 0.0, 1.0)),
        feature(json!({"other": "b"}), square(1.0, 0.0, 1.0)),
    ]);
    let err = GeoJsonPartitioner::from_bytes(&bytes, "grid.geojson", "name").unwrap_err();
    assert!(matches!(err, BoundariesError::MissingKey { index: 1, .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "feature 1 of 'grid.geojson' has no usable 'name' property (a string or a number is required)"
    );
}

#[test]
fn a_duplicate_key_is_refused_naming_both_features() {
    let bytes = collection(vec![
        feature(json!({"id": "a"}), square(0.0, 0.0, 1.0)),
        feature(json!({"id": "b"}), square(1.0, 0.0, 1.0)),
        feature(json!({"id": "a"}), square(2.0, 0.0, 1.0)),
    ]);
    let err = GeoJsonPartitioner::from_bytes(&bytes, "g.json", "id").unwrap_err();
    assert_eq!(err.to_string(), "features 0 and 2 of 'g.json' have the same key 'a'");
}

#[test]
fn a_feature_without_geometry_or_a_non_collection_is_refused() {
    let bytes =
        collection(vec![json!({"type": "Feature", "properties": {"id": "x"}, "geometry": null})]);
    let err = GeoJsonPartitioner::from_bytes(&bytes, "g.json", "id").unwrap_err();
    assert!(
        err.to_string().starts_with("feature 0 ('x') of 'g.json' has an unusable geometry"),
        "{err}"
    );
    let single = serde_json::to_vec(&square(0.0, 0.0, 1.0)).unwrap();
    let err = GeoJsonPartitioner::from_bytes(&single, "g.json", "id").unwrap_err();
    assert!(matches!(err, BoundariesError::NotFeatureCollection { found: "Geometry", .. }));
}

#[test]
fn ten_thousand_boundaries_answer_a_thousand_queries_through_the_index() {
    let features: Vec<_> = (0..10_000)
        .map(|i| {
            let (x, y) = (f64::from(i % 100) * 3.0 - 150.0, f64::from(i / 100) * 1.5 - 75.0);
            feature(json!({"id": i}), square(x, y, 1.0))
        })
        .collect();
    let started = Instant::now();
    let p = GeoJsonPartitioner::from_bytes(&collection(features), "generated", "id").unwrap();
    let loaded = started.elapsed();
    assert_eq!(p.len(), 10_000);
    let started = Instant::now();
    let mut hits = 0;
    for q in 0..1000 {
        let (i, j) = (q % 100, (q * 7) % 100);
        let (x, y) = (f64::from(i) * 3.0 - 150.0, f64::from(j) * 1.5 - 75.0);
        // A point inside box (i, j), and a line that touches nothing (between the boxes).
        let keys = p.cells(&Geometry::Point(Point::new(x + 0.5, y + 0.5))).unwrap();
        assert_eq!(keys, [(j * 100 + i).to_string()]);
        let gap = Geometry::LineString(LineString::from(vec![(x + 1.5, y), (x + 2.5, y + 1.0)]));
        assert!(p.cells(&gap).unwrap().is_empty());
        hits += keys.len();
    }
    eprintln!("10,000 boundaries loaded in {loaded:?}; 2,000 queries in {:?}", started.elapsed());
    assert_eq!(hits, 1000);
}

#[test]
fn grid_specs_round_trip_through_table_properties() {
    for spec in [
        GridSpec::H3 { resolution: 1 },
        GridSpec::H3 { resolution: 15 },
        GridSpec::GeoJson { boundaries: "s3://b/grid.geojson".into(), id_field: "code".into() },
    ] {
        let props: HashMap<String, String> = spec.to_properties().into_iter().collect();
        assert_eq!(GridSpec::from_properties(&props).unwrap(), spec);
    }
    let props = |kv: &[(&str, &str)]| -> HashMap<String, String> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    };
    assert_eq!(GridSpec::from_properties(&props(&[])).unwrap(), GridSpec::H3 { resolution: 1 });
    let gj = props(&[
        ("earthcatalog.grid.type", "geojson"),
        ("earthcatalog.grid.boundaries_path", "/g.json"),
    ]);
    assert_eq!(
        GridSpec::from_properties(&gj).unwrap(),
        GridSpec::GeoJson { boundaries: "/g.json".into(), id_field: "id".into() }
    );
    let err =
        GridSpec::from_properties(&props(&[("earthcatalog.grid.type", "geojson")])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "earthcatalog.grid.boundaries_path is required for grid type 'geojson'"
    );
    let err =
        GridSpec::from_properties(&props(&[("earthcatalog.grid.resolution", "16")])).unwrap_err();
    assert!(matches!(err, GridError::Resolution(r) if r == "16"));
    let err = GridSpec::from_properties(&props(&[("earthcatalog.grid.type", "s2")])).unwrap_err();
    assert!(matches!(err, GridError::S2NotImplemented));
    let err = GridSpec::from_properties(&props(&[("earthcatalog.grid.type", "hex")])).unwrap_err();
    assert_eq!(err.to_string(), "unknown grid type 'hex' (expected 'h3' or 'geojson')");
}

#[tokio::test]
async fn boundaries_in_an_object_store_give_the_same_cells_as_the_same_file_on_disk() {
    let stores = Stores::new(S3Settings::default());
    let bytes = collection(vec![
        feature(json!({"code": "west"}), square(0.0, 0.0, 1.0)),
        feature(json!({"code": "east"}), square(1.0, 0.0, 1.0)),
        feature(json!({"code": 7}), square(5.0, 5.0, 1.0)),
        feature(json!({"code": "dateline"}), square(170.0, -5.0, 10.0)),
    ]);
    let remote = "memory://grids/boundaries/regions.geojson";
    let target = stores.resolve(&Location::parse(remote).unwrap()).unwrap();
    target.store.put(&target.path, bytes.clone().into()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("regions.geojson");
    std::fs::write(&local, &bytes).unwrap();

    let spec = |b: String| GridSpec::GeoJson { boundaries: b, id_field: "code".into() };
    let from_store = open_partitioner(&spec(remote.into()), &stores).await.unwrap();
    let from_disk = open_partitioner(&spec(local.display().to_string()), &stores).await.unwrap();
    assert_eq!(from_store.grid(), spec(remote.into()));
    let footprints = [
        (Geometry::Point(Point::new(0.5, 0.5)), vec!["west"]),
        (Geometry::Point(Point::new(1.0, 0.5)), vec!["east", "west"]),
        (poly(&[(0.5, 0.2), (5.5, 0.2), (5.5, 5.5), (0.5, 0.2)]), vec!["7", "east", "west"]),
        (poly(&[(175.0, 0.0), (-175.0, 0.0), (-175.0, 1.0), (175.0, 0.0)]), vec!["dateline"]),
        (Geometry::Point(Point::new(50.0, 50.0)), vec![]),
    ];
    for (g, want) in footprints {
        assert_eq!(from_store.cells(&g).unwrap(), want, "{g:?} from {remote}");
        assert_eq!(from_disk.cells(&g).unwrap(), want, "{g:?} from {}", local.display());
    }

    // A location with nothing there is refused naming it.
    let missing = "memory://grids/boundaries/absent.geojson";
    let err = open_partitioner(&spec(missing.into()), &stores).await.unwrap_err();
    assert!(err.to_string().starts_with(&format!("cannot read boundaries '{missing}': ")), "{err}");
}
