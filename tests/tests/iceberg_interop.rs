//! Our Iceberg table against PyIceberg 0.12 and DuckDB's `iceberg_scan`, in both directions.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Builder, RecordBatch, StringBuilder, StructArray, TimestampMicrosecondBuilder,
    new_null_array,
};
use earthcatalog_common::catalog::{Catalog, Migration, TableSettings, migrate_catalog};
use earthcatalog_common::fanout::{Groups, fan_out};
use earthcatalog_common::geoparquet::{FileNamer, WriterOptions, write_partition};
use earthcatalog_common::ids::RunId;
use earthcatalog_common::location::Location;
use earthcatalog_common::partition::{H3Partitioner, Partitioner};
use earthcatalog_common::sample::itslive_item;
use earthcatalog_common::schema::{COLUMNS, arrow_schema, bbox_fields, column_index};
use earthcatalog_common::stac::{ParsedItem, parse_item_value};
use earthcatalog_common::stores::{S3Settings, Stores};
use earthcatalog_tests::python::{DUCKDB_PRELUDE, Python};
use parquet::arrow::ArrowWriter;
use serde_json::{Value, json};

const CELL_A: &str = "8a1fb46622dffff";
const CELL_B: &str = "8a1fb46622d7fff";

fn micros(iso: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(iso).unwrap().timestamp_micros()
}

/// Writes a data file with the full table schema; rows are (id, cell, RFC 3339 datetime).
fn write_file(path: &Path, rows: &[(&str, &str, &str)]) -> Location {
    let schema = arrow_schema();
    let n = rows.len();
    let mut columns: Vec<ArrayRef> =
        schema.fields().iter().map(|f| new_null_array(f.data_type(), n)).collect();
    let mut ids = StringBuilder::new();
    let mut cells = StringBuilder::new();
    let mut times = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    for (id, cell, iso) in rows {
        ids.append_value(id);
        cells.append_value(cell);
        times.append_value(micros(iso));
    }
    let bbox: Vec<ArrayRef> = (0..4)
        .map(|i| {
            let mut b = Float64Builder::new();
            (0..n).for_each(|_| b.append_value(f64::from(i)));
            Arc::new(b.finish()) as ArrayRef
        })
        .collect();
    columns[column_index("id").unwrap()] = Arc::new(ids.finish());
    columns[column_index("grid_partition").unwrap()] = Arc::new(cells.finish());
    columns[column_index("datetime").unwrap()] = Arc::new(times.finish());
    columns[column_index("geometry_bbox").unwrap()] =
        Arc::new(StructArray::new(bbox_fields(), bbox, None));
    let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut w = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    Location::local(path).unwrap()
}

fn stores() -> Arc<Stores> {
    Arc::new(Stores::new(S3Settings::default()))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// PyIceberg: load the table, list snapshots, scan everything, plan pruned scans.
const PY_READ: &str = r#"
import sys, json
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.expressions import EqualTo, GreaterThanOrEqual, And
db, wh, cell = sys.argv[1:4]
cat = SqlCatalog("earthcatalog", uri=f"sqlite:///{db}", warehouse=f"file://{wh}")
t = cat.load_table("earthcatalog.stac_items")
tbl = t.scan().to_arrow()
by_cell = EqualTo("grid_partition", cell)
since_2020 = GreaterThanOrEqual("datetime", "2020-01-01T00:00:00+00:00")
plan = lambda f: len(list(t.scan(row_filter=f).plan_files()))
print(json.dumps({
    "operations": [s.summary.operation.value for s in t.snapshots()],
    "ids": sorted(tbl.column("id").to_pylist()),
    "rows": tbl.num_rows,
    "columns": len(tbl.schema.names),
    "field_ids": {f.name: f.field_id for f in t.schema().fields},
    "cell_files": plan(by_cell),
    "year_files": plan(since_2020),
    "both_files": plan(And(by_cell, since_2020)),
    "cell_ids": sorted(t.scan(row_filter=by_cell).to_arrow().column("id").to_pylist()),
    "grid_type": t.properties.get("earthcatalog.grid.type"),
}))
"#;

/// PyIceberg: create the 0.6.1 table (28 fields) and `add_files` a pyarrow file into it. With
/// `v0`, the catalog tables are first created as PyIceberg 0.11 did (no `iceberg_type`).
const PY_CREATE: &str = r#"
import sys, sqlite3, datetime as dt
import pyarrow as pa, pyarrow.parquet as pq
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.schema import Schema
from pyiceberg.types import NestedField, StringType, BinaryType, TimestamptzType, LongType, DoubleType
from pyiceberg.partitioning import PartitionSpec, PartitionField
from pyiceberg.transforms import IdentityTransform, YearTransform
db, wh, datafile, cell, layout = sys.argv[1:6]
if layout == "v0":
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE iceberg_tables (catalog_name VARCHAR(255) NOT NULL, table_namespace VARCHAR(255) NOT NULL, table_name VARCHAR(255) NOT NULL, metadata_location VARCHAR(1000), previous_metadata_location VARCHAR(1000), PRIMARY KEY (catalog_name, table_namespace, table_name))")
    con.execute("CREATE TABLE iceberg_namespace_properties (catalog_name VARCHAR(255) NOT NULL, namespace VARCHAR(255) NOT NULL, property_key VARCHAR(255) NOT NULL, property_value VARCHAR(1000) NOT NULL, PRIMARY KEY (catalog_name, namespace, property_key))")
    con.commit(); con.close()
S, B, T, L, D = StringType(), BinaryType(), TimestamptzType(), LongType(), DoubleType()
cols = [("id", S), ("grid_partition", S), ("geometry", B), ("datetime", T), ("platform", S),
        ("percent_valid_pixels", L), ("date_dt", L), ("proj:code", S), ("assets", S), ("links", S),
        ("stac_version", S), ("type", S), ("start_datetime", T), ("version", S), ("sat:orbit_state", S),
        ("scene_1_id", S), ("scene_2_id", S), ("scene_1_frame", S), ("scene_2_frame", S),
        ("mid_datetime", S), ("created", T), ("updated", T), ("end_datetime", T),
        ("stac_extensions", S), ("collection", S), ("latitude", D), ("longitude", D), ("bbox", S)]
schema = Schema(*[NestedField(i + 1, n, t, required=False) for i, (n, t) in enumerate(cols)])
spec = PartitionSpec(PartitionField(2, 1000, IdentityTransform(), "grid_partition"),
                     PartitionField(4, 1001, YearTransform(), "year"))
cat = SqlCatalog("earthcatalog", uri=f"sqlite:///{db}", warehouse=f"file://{wh}")
cat.create_namespace("earthcatalog")
t = cat.create_table("earthcatalog.stac_items", schema=schema, partition_spec=spec,
                     properties={"earthcatalog.grid.type": "h3", "earthcatalog.grid.resolution": "10"})
utc = dt.timezone.utc
tbl = pa.table({
    "id": ["py-1", "py-2"],
    "grid_partition": [cell, cell],
    "datetime": pa.array([dt.datetime(2019, 5, 1, tzinfo=utc), dt.datetime(2019, 6, 1, tzinfo=utc)],
                         pa.timestamp("us", tz="UTC")),
    "platform": ["Landsat 8", None],
})
pq.write_table(tbl, datafile)
t.add_files([datafile])
print(len(t.snapshots()))
"#;

async fn our_table_with_two_snapshots(tmp: &Path) -> (Catalog, Vec<Location>) {
    let wh = Location::local(tmp.join("warehouse")).unwrap();
    let catalog = Catalog::open(&tmp.join("catalog.db"), &wh, stores()).await.unwrap();
    let table = catalog.open_table(&TableSettings::h3(10)).await.unwrap();
    let data = tmp.join("warehouse");
    let a19 = write_file(
        &data.join(format!("grid_partition={CELL_A}/year=2019/a.parquet")),
        &[("a19-1", CELL_A, "2019-03-01T00:00:00Z"), ("a19-2", CELL_A, "2019-11-01T00:00:00Z")],
    );
    let a20 = write_file(
        &data.join(format!("grid_partition={CELL_A}/year=2020/a.parquet")),
        &[("a20-1", CELL_A, "2020-06-01T00:00:00Z")],
    );
    let b20 = write_file(
        &data.join(format!("grid_partition={CELL_B}/year=2020/b.parquet")),
        &[("b20-1", CELL_B, "2020-01-05T00:00:00Z"), ("b20-2", CELL_B, "2020-07-05T00:00:00Z")],
    );
    let (table, _) = catalog.register(&table, &[a19.clone(), a20.clone()]).await.unwrap();
    catalog.register(&table, std::slice::from_ref(&b20)).await.unwrap();
    (catalog, vec![a19, a20, b20])
}

#[tokio::test]
async fn pyiceberg_loads_our_table_lists_snapshots_scans_every_row_and_prunes() {
    let Some(py) = Python::find("pyiceberg_loads_our_table") else { return };
    let tmp = tempfile::tempdir().unwrap();
    our_table_with_two_snapshots(tmp.path()).await;
    let db = tmp.path().join("catalog.db");
    let wh = tmp.path().join("warehouse");
    let out = py.run_json(PY_READ, &[s(&db), s(&wh), CELL_A]).unwrap();
    assert_eq!(out["operations"], json!(["append", "append"]));
    assert_eq!(out["ids"], json!(["a19-1", "a19-2", "a20-1", "b20-1", "b20-2"]));
    assert_eq!(out["columns"], json!(31));
    assert_eq!(out["field_ids"]["proj:code"], json!(8));
    assert_eq!(out["field_ids"]["geometry_bbox"], json!(31));
    assert_eq!(out["cell_files"], json!(2));
    assert_eq!(out["year_files"], json!(2));
    assert_eq!(out["both_files"], json!(1));
    assert_eq!(out["cell_ids"], json!(["a19-1", "a19-2", "a20-1"]));
    assert_eq!(out["grid_type"], json!("h3"));
}

/// Real STAC items (`common/tests/data/stac`, sources and licences in its `SOURCES.md`) that
/// parse, plus ITS_LIVE-shaped granules for the columns only granules fill (scene ids, frames).
fn sample_items() -> Vec<ParsedItem> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../common/tests/data/stac");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".stac.json"))
        .collect();
    names.sort();
    let real = names.iter().filter_map(|p| {
        let json: Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
        // The fixture set holds negative cases too (an item without a time zone).
        parse_item_value(&json).ok()
    });
    let granules = (0..3).map(|i| parse_item_value(&itslive_item(i)).unwrap());
    real.chain(granules).collect()
}

/// Our table at H3 resolution 0 holding `items`, each file written by our GeoParquet writer and
/// registered from the footers it returned; returns the catalog and the rows written.
async fn table_of_items(tmp: &Path, items: Vec<ParsedItem>) -> (Catalog, usize) {
    let stores = stores();
    let wh = Location::local(tmp.join("warehouse")).unwrap();
    let catalog = Catalog::open(&tmp.join("catalog.db"), &wh, stores.clone()).await.unwrap();
    let table = catalog.open_table(&TableSettings::h3(0)).await.unwrap();
    let h3 = H3Partitioner::new(0).unwrap();
    let mut groups = Groups::new();
    for item in items {
        let cells = h3.cells(&item.geometry).unwrap();
        groups.extend(fan_out(item.row, &cells));
    }
    let rows = groups.row_count();
    let namer = FileNamer::new(RunId::new(), "interop");
    let mut written = Vec::new();
    for (part, rows) in groups.into_sorted() {
        written.push(
            write_partition(&stores, &wh, &part, &rows, &namer, &WriterOptions::default())
                .await
                .unwrap(),
        );
    }
    catalog.register_written(&table, &written).await.unwrap();
    (catalog, rows)
}

/// Every non-geometry column of every row, as DuckDB's `iceberg_scan` and PyIceberg's scan
/// return them (timestamps as epoch microseconds, rows ordered by id and cell), and the columns
/// left null in every row.
const SCAN_BOTH: &str = r#"
import sys, json
import pyarrow as pa, pyarrow.compute as pc
from pyiceberg.catalog.sql import SqlCatalog
db, wh, metadata = sys.argv[1:4]

def plain(tbl):
    cols = {}
    for name in tbl.column_names:
        col = tbl.column(name)
        if pa.types.is_timestamp(col.type):
            col = pc.cast(pc.cast(col, pa.timestamp("us", tz="UTC")), pa.int64())
        cols[name] = col.to_pylist()
    rows = [dict(zip(cols, values)) for values in zip(*cols.values())]
    return sorted(rows, key=lambda r: (r["id"], r["grid_partition"]))

cat = SqlCatalog("earthcatalog", uri=f"sqlite:///{db}", warehouse=f"file://{wh}")
py = cat.load_table("earthcatalog.stac_items").scan().to_arrow().drop_columns(["geometry"])
con = duck()
con.sql("LOAD avro"); con.sql("LOAD iceberg")
dk = con.sql(f"SELECT * EXCLUDE (geometry) FROM iceberg_scan('{metadata}')").fetch_arrow_table()
print(json.dumps({
    "pyiceberg_columns": py.column_names,
    "duckdb_columns": dk.column_names,
    "all_null": [n for n in py.column_names if py.column(n).null_count == py.num_rows],
    "pyiceberg": plain(py),
    "duckdb": plain(dk),
}))
"#;

#[tokio::test]
async fn duckdb_iceberg_scan_reads_every_non_geometry_column_of_real_items_as_pyiceberg_does() {
    let Some(py) = Python::find("duckdb_iceberg_scan_reads_our_table") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (catalog, rows) = table_of_items(tmp.path(), sample_items()).await;
    let table = catalog.load_table().await.unwrap().unwrap();
    let metadata = table.metadata_location().unwrap().trim_start_matches("file://").to_string();
    let db = tmp.path().join("catalog.db");
    let wh = tmp.path().join("warehouse");
    let script = format!("{DUCKDB_PRELUDE}\n{SCAN_BOTH}");
    let out = py.run_json(&script, &[s(&db), s(&wh), &metadata]).unwrap();

    let ours: Vec<&str> = COLUMNS.iter().map(|c| c.name).filter(|n| *n != "geometry").collect();
    assert_eq!(out["pyiceberg_columns"], json!(ours));
    assert_eq!(out["duckdb_columns"], json!(ours));
    assert_eq!(out["all_null"], json!([]), "every column must be filled somewhere");
    let scanned = out["pyiceberg"].as_array().unwrap();
    assert_eq!(scanned.len(), rows);
    assert_eq!(out["duckdb"], out["pyiceberg"]);
    // Spot-check against the source: a real Landsat item's values came through both readers.
    let landsat = scanned.iter().find(|r| r["id"] == "LC09_L2SP_089090_20240417_02_T1").unwrap();
    assert_eq!(landsat["platform"], json!("landsat-9"));
    assert_eq!(landsat["collection"], json!("landsat-c2-l2"));
    assert_eq!(landsat["datetime"], json!(micros("2024-04-17T23:46:20.477296Z")));
}

/// PyIceberg creates and fills the table; we evolve it, append, and PyIceberg reads it all.
async fn pyiceberg_table_is_taken_over(py: &Python, layout: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("catalog.db");
    let wh = tmp.path().join("warehouse");
    let pyfile = tmp.path().join(format!("warehouse/grid_partition={CELL_A}/year=2019/py.parquet"));
    std::fs::create_dir_all(pyfile.parent().unwrap()).unwrap();
    let snaps = py.run(PY_CREATE, &[s(&db), s(&wh), s(&pyfile), CELL_A, layout]).unwrap();
    assert_eq!(snaps.trim(), "1");

    let expected = if layout == "v0" { Migration::AddedIcebergType } else { Migration::UpToDate };
    assert_eq!(migrate_catalog(&db).await.unwrap(), expected);
    let catalog = Catalog::open(&db, &Location::local(&wh).unwrap(), stores()).await.unwrap();
    let table = catalog.open_table(&TableSettings::h3(10)).await.unwrap();
    assert_eq!(
        table.metadata().current_schema().field_by_name("geometry_bbox.ymax").unwrap().id,
        35
    );
    let ours = write_file(
        &wh.join(format!("grid_partition={CELL_B}/year=2020/rs.parquet")),
        &[("rs-1", CELL_B, "2020-02-02T00:00:00Z")],
    );
    let (table, summary) = catalog.register(&table, &[ours]).await.unwrap();
    assert_eq!(summary.records, 1);
    let files = earthcatalog_common::catalog::data_files(&table).await.unwrap();
    let partitions: Vec<(Option<String>, Option<i32>, u64)> =
        files.iter().map(|f| (f.grid_partition.clone(), f.year, f.record_count)).collect();
    assert!(partitions.contains(&(Some(CELL_A.into()), Some(2019), 2)), "{partitions:?}");
    assert!(partitions.contains(&(Some(CELL_B.into()), Some(2020), 1)), "{partitions:?}");
    drop(catalog);

    let out: Value = py.run_json(PY_READ, &[s(&db), s(&wh), CELL_A]).unwrap();
    assert_eq!(out["operations"], json!(["append", "append"]));
    assert_eq!(out["ids"], json!(["py-1", "py-2", "rs-1"]));
    assert_eq!(out["columns"], json!(31));
    assert_eq!(out["cell_files"], json!(1));
    assert_eq!(out["cell_ids"], json!(["py-1", "py-2"]));
    assert_eq!(out["year_files"], json!(1));
    assert_eq!(out["both_files"], json!(0));
}

#[tokio::test]
async fn a_table_pyiceberg_created_and_filled_is_appended_to_and_stays_readable_by_pyiceberg() {
    let Some(py) = Python::find("pyiceberg_table_is_taken_over") else { return };
    pyiceberg_table_is_taken_over(&py, "v1").await;
}

#[tokio::test]
async fn a_catalog_in_the_older_pyiceberg_layout_is_migrated_appended_to_and_stays_readable() {
    let Some(py) = Python::find("older_pyiceberg_layout") else { return };
    pyiceberg_table_is_taken_over(&py, "v0").await;
}
