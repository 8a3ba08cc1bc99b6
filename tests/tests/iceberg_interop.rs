//! Our Iceberg table against PyIceberg 0.12 and DuckDB's `iceberg_scan`, in both directions.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Builder, RecordBatch, StringBuilder, StructArray, TimestampMicrosecondBuilder,
    new_null_array,
};
use earthcatalog_common::catalog::{Catalog, Migration, TableSettings, migrate_catalog};
use earthcatalog_common::location::Location;
use earthcatalog_common::schema::{arrow_schema, bbox_fields, column_index};
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

#[tokio::test]
async fn duckdb_iceberg_scan_reads_the_non_geometry_columns_of_our_table() {
    let Some(py) = Python::find("duckdb_iceberg_scan_reads_our_table") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let (catalog, _) = our_table_with_two_snapshots(tmp.path()).await;
    let table = catalog.load_table().await.unwrap().unwrap();
    let metadata = table.metadata_location().unwrap().trim_start_matches("file://").to_string();
    let script = format!(
        r#"{DUCKDB_PRELUDE}
import sys, json
con = duck()
con.sql("LOAD avro"); con.sql("LOAD iceberg")
rows = con.sql(f"SELECT id, grid_partition, epoch_us(datetime), geometry_bbox.xmax FROM iceberg_scan('{{sys.argv[1]}}') ORDER BY id").fetchall()
snaps = con.sql(f"SELECT count(*) FROM iceberg_snapshots('{{sys.argv[1]}}')").fetchone()[0]
print(json.dumps({{"rows": rows, "snapshots": snaps}}))
"#
    );
    let out = py.run_json(&script, &[&metadata]).unwrap();
    assert_eq!(out["snapshots"], json!(2));
    let rows = out["rows"].as_array().unwrap();
    let got: Vec<(String, String, i64, f64)> = rows
        .iter()
        .map(|r| {
            (
                r[0].as_str().unwrap().to_string(),
                r[1].as_str().unwrap().to_string(),
                r[2].as_i64().unwrap(),
                r[3].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("a19-1".into(), CELL_A.into(), micros("2019-03-01T00:00:00Z"), 2.0),
            ("a19-2".into(), CELL_A.into(), micros("2019-11-01T00:00:00Z"), 2.0),
            ("a20-1".into(), CELL_A.into(), micros("2020-06-01T00:00:00Z"), 2.0),
            ("b20-1".into(), CELL_B.into(), micros("2020-01-05T00:00:00Z"), 2.0),
            ("b20-2".into(), CELL_B.into(), micros("2020-07-05T00:00:00Z"), 2.0),
        ]
    );
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
