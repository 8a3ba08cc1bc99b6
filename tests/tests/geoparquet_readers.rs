//! GeoParquet files written by earthcatalog, read back by pyarrow, geopandas and DuckDB spatial,
//! from a local folder and (a file large enough for a multipart upload) from S3.

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
# geopandas >= 1.0 turns bbox= into a filter on the geo.covering column (it refuses bbox= on a
# WKB file without one).
sub = gpd.read_parquet(path, bbox=(qx0, qy0, qx1, qy1))
out["geopandas_bbox_ids"] = sorted(sub["id"])
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
    assert_eq!(out["geopandas_bbox_ids"], serde_json::json!(want_bbox));
    assert!(want_bbox.len() < 400, "the query box must leave some items out");
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

const READ_S3: &str = r#"
import json, sys
import pyarrow.fs as fs
import pyarrow.parquet as pq
endpoint, bucket, key = sys.argv[1:4]
s3 = fs.S3FileSystem(endpoint_override=endpoint, scheme="http", access_key="test",
                     secret_key="test", region="us-east-1")
t = pq.read_table(f"{bucket}/{key}", filesystem=s3)
geo = json.loads(pq.ParquetFile(s3.open_input_file(f"{bucket}/{key}")).metadata.metadata[b"geo"])
print(json.dumps({"rows": t.num_rows, "ids": sorted(t.column("id").to_pylist()),
                  "geo_version": geo["version"]}))
"#;

/// `n` characters of a 64-letter alphabet from a splitmix64 generator: text that no codec can
/// shrink below 6 bits a character.
fn noise(seed: u64, n: usize) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            char::from(ALPHABET[((z ^ (z >> 31)) >> 58) as usize])
        })
        .collect()
}

#[tokio::test]
async fn a_file_above_the_single_put_size_goes_up_in_parts_and_pyarrow_reads_every_row() {
    use earthcatalog_common::geoparquet::write_rows;
    use object_store::ObjectStoreExt;
    let Some(server) = earthcatalog_tests::s3::S3Server::shared("geoparquet multipart") else {
        return;
    };
    let Some(py) = Python::find("geoparquet multipart") else { return };
    let root = server.new_bucket().unwrap();
    let stores = server.stores();

    // 600 items with 30,000 random characters each in a property: at least 13.5 MB of Parquet,
    // above the 10 MiB that ParquetObjectWriter buffers for a single put.
    let mut rows = Vec::new();
    let mut ids = Vec::new();
    for i in 0..600 {
        let mut item = itslive_item(i);
        item["properties"]["noise"] = serde_json::json!(noise(i * 30_000, 30_000));
        let parsed = parse_item_value(&item).unwrap();
        ids.push(parsed.row.id().to_string());
        rows.extend(fan_out(parsed.row, &["8106fffffffffff".to_string()]));
    }
    ids.sort();
    let location = root.join("warehouse/grid_partition=8106fffffffffff/big.parquet");
    let opts = WriterOptions { zstd_min_rows: 0, ..WriterOptions::default() };
    let (_, size) = write_rows(&stores, &location, &rows, &opts).await.unwrap();
    assert!(size > 10 * 1024 * 1024, "{size} bytes is not above the single-put size");

    // S3 gives a multipart upload's ETag a "-<parts>" suffix; a single put has none.
    let target = stores.resolve(&location).unwrap();
    let head = target.store.head(&target.path).await.unwrap();
    assert_eq!(head.size, size);
    let etag = head.e_tag.unwrap_or_default();
    assert!(etag.trim_matches('"').ends_with("-2"), "ETag {etag}: not a 2-part upload");

    let Location::S3 { bucket, .. } = &root else { panic!("an s3 location") };
    let key = target.path.to_string();
    let out = py.run_json(READ_S3, &[&server.endpoint(), bucket, &key]).unwrap();
    assert_eq!(out["rows"], 600);
    assert_eq!(out["ids"], serde_json::json!(ids));
    assert_eq!(out["geo_version"], "1.1.0");
}
