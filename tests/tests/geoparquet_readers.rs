//! GeoParquet files written by earthcatalog, read back by pyarrow, geopandas and DuckDB spatial.

#![allow(clippy::unwrap_used)]

use earthcatalog_common::fanout::{Groups, fan_out};
use earthcatalog_common::geoparquet::{FileNamer, WriterOptions, write_partition};
use earthcatalog_common::ids::RunId;
use earthcatalog_common::location::Location;
use earthcatalog_common::sample::itslive_item;
use earthcatalog_common::stac::parse_item_value;
use earthcatalog_common::stores::{S3Settings, Stores};
use earthcatalog_tests::python::{DUCKDB_PRELUDE, Python};
use geo::Intersects;

const CHECK: &str = r#"
import json, sys
import pyarrow.parquet as pq
import geopandas as gpd
path, qx0, qy0, qx1, qy1 = sys.argv[1], *map(float, sys.argv[2:6])
t = pq.read_table(path)
out = {"pyarrow_rows": t.num_rows, "columns": t.column_names,
       "datetime_type": str(t.schema.field("datetime").type)}
gdf = gpd.read_parquet(path)
out["geopandas_rows"] = len(gdf)
out["crs"] = gdf.crs.to_string() if gdf.crs else None
out["geom_types"] = sorted(set(gdf.geometry.geom_type))
out["total_bounds"] = [float(v) for v in gdf.total_bounds]
con = duck()
con.sql("LOAD spatial")
out["duckdb_geometry_type"] = con.sql(f"SELECT typeof(geometry) FROM read_parquet('{path}') LIMIT 1").fetchone()[0]
q = f"""SELECT id FROM read_parquet('{path}')
        WHERE geometry_bbox.xmax >= {qx0} AND geometry_bbox.xmin <= {qx1}
          AND geometry_bbox.ymax >= {qy0} AND geometry_bbox.ymin <= {qy1}"""
out["bbox_ids"] = sorted(r[0] for r in con.sql(q).fetchall())
box = f"POLYGON(({qx0} {qy0}, {qx1} {qy0}, {qx1} {qy1}, {qx0} {qy1}, {qx0} {qy0}))"
q2 = f"SELECT id FROM read_parquet('{path}') WHERE ST_Intersects(geometry, ST_GeomFromText('{box}'))"
out["intersects_ids"] = sorted(r[0] for r in con.sql(q2).fetchall())
print(json.dumps(out))
"#;

#[tokio::test]
async fn pyarrow_geopandas_and_duckdb_read_our_files_and_filter_by_the_covering_bbox() {
    let Some(py) = Python::find("geoparquet_readers") else { return };
    let dir = tempfile::tempdir().unwrap();
    let stores = Stores::new(S3Settings::default());
    let root = Location::local(dir.path()).unwrap();

    // 400 items in one (cell, year) file; the cell is nominal here, the geometries are real.
    let mut groups = Groups::new();
    let mut geoms = Vec::new();
    for i in 0..400 {
        let mut item = itslive_item(i);
        item["properties"]["datetime"] = serde_json::json!("2019-06-17T00:00:00Z");
        let parsed = parse_item_value(&item).unwrap();
        geoms.push((
            parsed.row.id().to_string(),
            parsed.row.geometry_bbox().unwrap(),
            parsed.geometry,
        ));
        groups.extend(fan_out(parsed.row, &["8106fffffffffff".to_string()]));
    }
    let (part, rows) = groups.into_sorted().remove(0);
    let namer = FileNamer::new(RunId::new(), "readers");
    let file = write_partition(&stores, &root, &part, &rows, &namer, &WriterOptions::default())
        .await
        .unwrap();
    let path = file.location.as_local_path().unwrap().to_string_lossy().into_owned();

    // A query box over southern Greenland.
    let q = [-50.0, 62.0, -40.0, 68.0];
    let qpoly =
        geo::Rect::new(geo::coord! {x: q[0], y: q[1]}, geo::coord! {x: q[2], y: q[3]}).to_polygon();
    let mut want_bbox: Vec<String> = geoms
        .iter()
        .filter(|(_, b, _)| b[2] >= q[0] && b[0] <= q[2] && b[3] >= q[1] && b[1] <= q[3])
        .map(|(id, _, _)| id.clone())
        .collect();
    want_bbox.sort();
    let mut want_hits: Vec<String> = geoms
        .iter()
        .filter(|(_, _, g)| g.intersects(&qpoly))
        .map(|(id, _, _)| id.clone())
        .collect();
    want_hits.sort();
    assert!(!want_hits.is_empty(), "the query box must hit some sample items");

    let script = format!("{DUCKDB_PRELUDE}\n{CHECK}");
    let args: Vec<String> = std::iter::once(path).chain(q.iter().map(|v| v.to_string())).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = py.run_json(&script, &args).unwrap();

    assert_eq!(out["pyarrow_rows"], 400);
    assert_eq!(out["geopandas_rows"], 400);
    assert_eq!(out["datetime_type"], "timestamp[us, tz=UTC]");
    let crs = out["crs"].as_str().unwrap_or_default();
    assert!(crs == "OGC:CRS84" || crs == "EPSG:4326", "crs {crs}");
    assert_eq!(out["geom_types"], serde_json::json!(["Polygon"]));
    assert_eq!(out["duckdb_geometry_type"], "GEOMETRY");
    assert_eq!(out["bbox_ids"], serde_json::json!(want_bbox));
    assert_eq!(out["intersects_ids"], serde_json::json!(want_hits));
    let union = geoms.iter().fold([f64::MAX, f64::MAX, f64::MIN, f64::MIN], |a, (_, b, _)| {
        [a[0].min(b[0]), a[1].min(b[1]), a[2].max(b[2]), a[3].max(b[3])]
    });
    let bounds: Vec<f64> =
        out["total_bounds"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    for k in 0..4 {
        assert!((bounds[k] - union[k]).abs() < 1e-9, "bounds {bounds:?} vs {union:?}");
    }
    let columns = out["columns"].as_array().unwrap();
    assert_eq!(columns.len(), earthcatalog_common::schema::COLUMNS.len());
}
