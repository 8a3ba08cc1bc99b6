//! Reading a finished table back with PyIceberg, as a user would.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::Context;

use crate::python::Python;
use crate::s3::S3Server;

/// Python that opens the table as `t` from the catalog at argv[1] and the warehouse at argv[2]
/// (the S3 test server's endpoint and keys from the environment, when set).
const OPEN_TABLE: &str = r#"
import json, os, sys
from pyiceberg.catalog.sql import SqlCatalog
db, warehouse = sys.argv[1], sys.argv[2]
props = {"uri": f"sqlite:///{db}", "warehouse": warehouse}
if os.environ.get("AWS_ENDPOINT_URL"):
    props.update({
        "s3.endpoint": os.environ["AWS_ENDPOINT_URL"],
        "s3.access-key-id": os.environ["AWS_ACCESS_KEY_ID"],
        "s3.secret-access-key": os.environ["AWS_SECRET_ACCESS_KEY"],
        "s3.region": os.environ.get("AWS_REGION", "us-east-1"),
    })
t = SqlCatalog("earthcatalog", **props).load_table("earthcatalog.stac_items")
"#;

const READ_TABLE: &str = r#"
snapshots = len(t.snapshots())
if t.current_snapshot() is None:
    rows, files = [], []
else:
    tbl = t.scan(selected_fields=("id", "grid_partition", "updated")).to_arrow()
    updated = [u.isoformat() if u is not None else None for u in tbl.column("updated").to_pylist()]
    rows = list(zip(tbl.column("id").to_pylist(), tbl.column("grid_partition").to_pylist(), updated))
    files = t.inspect.files().column("file_path").to_pylist()
print(json.dumps({"rows": rows, "snapshots": snapshots, "properties": dict(t.properties),
                  "files": files}))
"#;

/// What PyIceberg sees in a table.
#[derive(Debug, Clone)]
pub struct TableView {
    /// Every (id, grid_partition) row, duplicates kept as a count mismatch.
    pub rows: BTreeSet<(String, String)>,
    /// Number of rows scanned (equal to `rows.len()` when no row is duplicated).
    pub row_count: usize,
    /// Snapshots in the table's history.
    pub snapshots: usize,
    /// The `updated` values (ISO 8601) of each id's rows: one per id unless two versions of an
    /// item are in the table.
    pub updated: BTreeMap<String, BTreeSet<String>>,
    /// Table properties.
    pub properties: serde_json::Value,
    /// The `file_path` of every data file in the current snapshot.
    pub files: BTreeSet<String>,
}

/// Loads `earthcatalog.stac_items` from the SQLite catalog at `db` with PyIceberg and scans it.
pub fn read_table(
    py: &Python,
    db: &Path,
    warehouse: &str,
    s3: Option<&S3Server>,
) -> anyhow::Result<TableView> {
    read_table_with_env(py, db, warehouse, &s3.map(|s| s.env()).unwrap_or_default())
}

/// [`read_table`] with the S3 settings given as `AWS_*` variables (any S3 server).
pub fn read_table_with_env(
    py: &Python,
    db: &Path,
    warehouse: &str,
    env: &[(String, String)],
) -> anyhow::Result<TableView> {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let db = db.to_string_lossy();
    let out = py.run_with_env(&format!("{OPEN_TABLE}{READ_TABLE}"), &[&db, warehouse], &env)?;
    let last = out.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
    let v: serde_json::Value =
        serde_json::from_str(last).with_context(|| format!("PyIceberg output: {out}"))?;
    let list = v["rows"].as_array().cloned().unwrap_or_default();
    let rows: BTreeSet<(String, String)> = list
        .iter()
        .map(|r| {
            (
                r[0].as_str().unwrap_or_default().to_string(),
                r[1].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let mut updated: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in &list {
        if let (Some(id), Some(u)) = (r[0].as_str(), r[2].as_str()) {
            updated.entry(id.to_string()).or_default().insert(u.to_string());
        }
    }
    Ok(TableView {
        rows,
        updated,
        row_count: list.len(),
        snapshots: v["snapshots"].as_u64().unwrap_or(0) as usize,
        properties: v["properties"].clone(),
        files: v["files"]
            .as_array()
            .map(|a| a.iter().filter_map(|f| f.as_str().map(str::to_string)).collect())
            .unwrap_or_default(),
    })
}

const READ_HISTORY: &str = r#"
out = []
for entry in t.history():
    s = t.snapshot_by_id(entry.snapshot_id)
    tbl = t.scan(selected_fields=("id", "grid_partition"), snapshot_id=s.snapshot_id).to_arrow()
    rows = list(zip(tbl.column("id").to_pylist(), tbl.column("grid_partition").to_pylist()))
    out.append({"id": s.snapshot_id, "parent": s.parent_snapshot_id,
                "operation": s.summary.operation.value if s.summary else None,
                "rows": rows, "uuid": str(t.metadata.table_uuid)})
print(json.dumps(out))
"#;

/// One snapshot of the table's history as PyIceberg reads it by time travel.
#[derive(Debug, Clone)]
pub struct SnapshotView {
    /// Snapshot id.
    pub id: i64,
    /// Its parent.
    pub parent: Option<i64>,
    /// `append`, `replace`, `overwrite`, …
    pub operation: String,
    /// Every (id, grid_partition) row the snapshot reads.
    pub rows: BTreeSet<(String, String)>,
    /// Rows scanned (duplicates counted).
    pub row_count: usize,
    /// The table's uuid (the same table across its history, unless it was recreated).
    pub table_uuid: String,
}

/// The table's history (the main branch's snapshots, oldest first), each snapshot scanned.
pub fn read_history(
    py: &Python,
    db: &Path,
    warehouse: &str,
    s3: Option<&S3Server>,
) -> anyhow::Result<Vec<SnapshotView>> {
    let env: Vec<(String, String)> = s3.map(|s| s.env()).unwrap_or_default();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let db = db.to_string_lossy();
    let out = py.run_with_env(&format!("{OPEN_TABLE}{READ_HISTORY}"), &[&db, warehouse], &env)?;
    let last = out.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
    let v: Vec<serde_json::Value> =
        serde_json::from_str(last).with_context(|| format!("PyIceberg output: {out}"))?;
    Ok(v.iter()
        .map(|s| {
            let list = s["rows"].as_array().cloned().unwrap_or_default();
            SnapshotView {
                id: s["id"].as_i64().unwrap_or_default(),
                parent: s["parent"].as_i64(),
                operation: s["operation"].as_str().unwrap_or_default().to_string(),
                row_count: list.len(),
                rows: list
                    .iter()
                    .map(|r| {
                        (
                            r[0].as_str().unwrap_or_default().to_string(),
                            r[1].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect(),
                table_uuid: s["uuid"].as_str().unwrap_or_default().to_string(),
            }
        })
        .collect())
}
