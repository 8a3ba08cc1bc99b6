//! `earthcatalog incremental` end to end: the real binary against local files and the moto S3
//! server, every result read back with PyIceberg and compared with the exact (id, cell) set.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use earthcatalog_common::location::Location;
use earthcatalog_common::lock::{CatalogLock, LockOptions};
use earthcatalog_common::stores::{S3Settings, Stores};
use earthcatalog_tests::binaries::earthcatalog;
use earthcatalog_tests::ingest::{BUCKET, Samples, get, gzip, manifest, put};
use earthcatalog_tests::python::Python;
use earthcatalog_tests::readers::{TableView, read_table};
use earthcatalog_tests::s3::S3Server;

/// Runs the CLI with `args` and extra environment, with no AWS settings leaking in otherwise.
fn run(args: &[&str], env: &[(String, String)]) -> Output {
    let mut cmd = Command::new(earthcatalog());
    for k in ["AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"] {
        cmd.env_remove(k);
    }
    cmd.env("RUST_LOG", "info").args(args).envs(env.iter().map(|(k, v)| (k, v)));
    let out = cmd.output().unwrap();
    eprintln!("$ earthcatalog {}\n{}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    out
}

fn summary(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().rev().find(|l| l.starts_with('{')).unwrap_or("{}");
    serde_json::from_str(line).unwrap()
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// A local layout: items mirrored under `items/`, inventory, catalog and warehouse in one dir.
struct Local {
    dir: tempfile::TempDir,
    stores: Stores,
}

impl Local {
    async fn with(samples: &Samples) -> Local {
        let dir = tempfile::tempdir().unwrap();
        let stores = Stores::new(S3Settings::default());
        samples.upload(&stores, &Location::local(dir.path().join("items")).unwrap()).await.unwrap();
        Local { dir, stores }
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    async fn write(&self, rel: &str, bytes: Vec<u8>) -> String {
        put(&self.stores, &Location::local(self.path(rel)).unwrap(), bytes).await.unwrap();
        s(&self.path(rel))
    }
    fn source(&self) -> String {
        format!("{BUCKET}={}", s(&self.path("items")))
    }
    fn args<'a>(&'a self, inventory: &'a str, extra: &[&'a str]) -> Vec<String> {
        let mut v = vec![
            "incremental".to_string(),
            "--inventory".into(),
            inventory.into(),
            "--source".into(),
            self.source(),
            "--catalog".into(),
            s(&self.path("catalog.db")),
            "--warehouse".into(),
            s(&self.path("warehouse")),
            "--json".into(),
        ];
        v.extend(extra.iter().map(|x| x.to_string()));
        v
    }
    fn table(&self, py: &Python) -> TableView {
        let wh = format!("file://{}", s(&self.path("warehouse")));
        read_table(py, &self.path("catalog.db"), &wh, None).unwrap()
    }
}

/// `incremental` of `inventory` with the items mirrored under `bucket/mirror`, the working
/// catalog in `dir`, and the catalog store and warehouse under `root`.
fn s3_run(
    inventory: &Location,
    bucket: &Location,
    dir: &tempfile::TempDir,
    root: &Location,
) -> Vec<String> {
    vec![
        "incremental".to_string(),
        "--inventory".into(),
        inventory.to_string(),
        "--source".into(),
        format!("{BUCKET}={}", bucket.join("mirror")),
        "--catalog".into(),
        s(&dir.path().join("work.db")),
        "--catalog-store".into(),
        root.join("catalog").to_string(),
        "--warehouse".into(),
        root.join("warehouse").to_string(),
    ]
}

fn argv(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[tokio::test]
async fn a_local_run_registers_every_item_in_every_cell_it_touches_one_snapshot_per_chunk() {
    let Some(py) = Python::find("incremental local") else { return };
    let samples = Samples::itslive(0, 35);
    let local = Local::with(&samples).await;
    let inv = local.write("inventory.csv", samples.csv().into_bytes()).await;
    let out = run(&argv(&local.args(&inv, &["--chunk-size", "10"])), &[]);
    assert_eq!(out.status.code(), Some(0));
    let sum = summary(&out);
    assert_eq!(sum["items_ingested"], 35);
    assert_eq!(sum["items_failed"], 0);
    let table = local.table(&py);
    let want = samples.expected_rows(1);
    assert_eq!(table.rows, want);
    assert_eq!(table.row_count, want.len());
    assert_eq!(table.snapshots, 4, "35 items in chunks of 10");
    assert_eq!(table.properties["earthcatalog.grid.resolution"], "1");
    assert!(table.properties["schema.name-mapping.default"].is_string());
}

#[tokio::test]
async fn since_keeps_rows_modified_on_or_after_the_date_and_limit_stops_early() {
    let Some(py) = Python::find("incremental since/limit") else { return };
    let samples = Samples::itslive(100, 40);
    let local = Local::with(&samples).await;
    let inv = local.write("inventory.csv", samples.csv().into_bytes()).await;
    let out = run(&argv(&local.args(&inv, &["--since", "2024-01-15"])), &[]);
    assert_eq!(out.status.code(), Some(0));
    let recent = samples.filtered(|i| i.modified.as_str() >= "2024-01-15");
    assert!(recent.items.len() < samples.items.len());
    assert_eq!(summary(&out)["before_since"], (samples.items.len() - recent.items.len()) as u64);
    assert_eq!(local.table(&py).rows, recent.expected_rows(1));

    let other = Local::with(&samples).await;
    let inv = other.write("inventory.parquet", samples.parquet().unwrap()).await;
    let out = run(&argv(&other.args(&inv, &["--limit", "7"])), &[]);
    assert_eq!(out.status.code(), Some(0));
    let first7 = Samples { items: samples.items[..7].to_vec() };
    assert_eq!(other.table(&py).rows, first7.expected_rows(1));
}

#[tokio::test]
async fn batch_add_files_commits_the_whole_run_in_one_snapshot() {
    let Some(py) = Python::find("incremental batch") else { return };
    let samples = Samples::itslive(200, 20);
    let local = Local::with(&samples).await;
    let inv = local.write("inventory.csv.gz", gzip(samples.csv().as_bytes()).unwrap()).await;
    let out = run(&argv(&local.args(&inv, &["--chunk-size", "5", "--batch-add-files"])), &[]);
    assert_eq!(out.status.code(), Some(0));
    let table = local.table(&py);
    assert_eq!(table.snapshots, 1);
    assert_eq!(table.rows, samples.expected_rows(1));
}

#[tokio::test]
async fn running_the_same_inventory_twice_registers_nothing_twice() {
    let Some(py) = Python::find("incremental rerun") else { return };
    let samples = Samples::itslive(300, 25);
    let local = Local::with(&samples).await;
    let inv = local.write("inventory.csv", samples.csv().into_bytes()).await;
    assert_eq!(run(&argv(&local.args(&inv, &[])), &[]).status.code(), Some(0));
    let first = local.table(&py);
    let out = run(&argv(&local.args(&inv, &[])), &[]);
    assert_eq!(out.status.code(), Some(0));
    let sum = summary(&out);
    assert_eq!(sum["items_skipped"], 25);
    assert_eq!(sum["rows"], 0);
    let second = local.table(&py);
    assert_eq!(second.rows, first.rows);
    assert_eq!(second.row_count, first.row_count, "no row registered twice");
    assert_eq!(second.snapshots, first.snapshots, "nothing new, no new snapshot");

    // A longer inventory later: only the new items are added.
    let more = Samples::itslive(300, 30);
    more.upload(&local.stores, &Location::local(local.path("items")).unwrap()).await.unwrap();
    let inv = local.write("inventory2.csv", more.csv().into_bytes()).await;
    let out = run(&argv(&local.args(&inv, &[])), &[]);
    assert_eq!(summary(&out)["items_skipped"], 25);
    let third = local.table(&py);
    assert_eq!(third.rows, more.expected_rows(1));
    assert_eq!(third.row_count, third.rows.len());
}

#[tokio::test]
async fn bad_items_are_listed_with_their_reasons_and_the_good_ones_land() {
    let Some(py) = Python::find("incremental bad items") else { return };
    let samples = Samples::itslive(400, 10);
    let local = Local::with(&samples).await;
    let mut bad = samples.items[0].json.clone();
    bad["properties"]["percent_valid_pixels"] = serde_json::json!(56.5);
    let mut no_geom = samples.items[1].json.clone();
    no_geom["geometry"] = serde_json::Value::Null;
    let mut bad_dt = samples.items[2].json.clone();
    bad_dt["properties"]["datetime"] = serde_json::json!("not a date");
    let broken: [(&str, Vec<u8>); 4] = [
        ("bad/percent.stac.json", serde_json::to_vec(&bad).unwrap()),
        ("bad/nogeom.stac.json", serde_json::to_vec(&no_geom).unwrap()),
        ("bad/datetime.stac.json", serde_json::to_vec(&bad_dt).unwrap()),
        ("bad/json.stac.json", b"{\"type\": \"Feature\", ".to_vec()),
    ];
    for (key, bytes) in &broken {
        local.write(&format!("items/{key}"), bytes.clone()).await;
    }
    let mut csv = samples.csv();
    for (key, _) in &broken {
        csv.push_str(&format!("{BUCKET},{key},2024-01-01T00:00:00Z\n"));
    }
    csv.push_str(&format!("{BUCKET},bad/missing.stac.json,2024-01-01T00:00:00Z\n"));
    csv.push_str(&format!("{BUCKET}\n"));
    let inv = local.write("inventory.csv", csv.into_bytes()).await;
    let out = run(&argv(&local.args(&inv, &[])), &[]);
    assert_eq!(out.status.code(), Some(3), "exit code 3: finished, but some items failed");
    let sum = summary(&out);
    assert_eq!(sum["items_ingested"], 10);
    assert_eq!(sum["items_failed"], 5);
    assert_eq!(sum["malformed_rows"], 1);
    assert_eq!(local.table(&py).rows, samples.expected_rows(1));

    let failures = std::fs::read_to_string(local.path("catalog.failures.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> =
        failures.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let find = |key: &str| {
        lines
            .iter()
            .find(|l| l["key"] == key)
            .unwrap_or_else(|| panic!("{key} not listed: {failures}"))
    };
    assert_eq!(find("bad/percent.stac.json")["kind"], "bad_value");
    assert!(
        find("bad/percent.stac.json")["reason"].as_str().unwrap().contains("percent_valid_pixels")
    );
    assert_eq!(find("bad/nogeom.stac.json")["kind"], "missing_geometry");
    assert_eq!(find("bad/datetime.stac.json")["kind"], "bad_timestamp");
    assert_eq!(find("bad/json.stac.json")["kind"], "invalid_json");
    assert_eq!(find("bad/missing.stac.json")["kind"], "not_found");
    assert_eq!(find("bad/missing.stac.json")["bucket"], BUCKET);
    assert!(lines.iter().any(|l| l["kind"] == "malformed_inventory_row"
        && l["reason"].as_str().unwrap().contains("line 17")));
}

#[tokio::test]
async fn a_run_while_another_holds_the_lock_is_refused_naming_the_holder() {
    let Some(py) = Python::find("incremental lock held") else { return };
    let samples = Samples::itslive(500, 5);
    let local = Local::with(&samples).await;
    let inv = local.write("inventory.csv", samples.csv().into_bytes()).await;
    let lock = Location::local(local.path("catalog.db.lock")).unwrap();
    let options = LockOptions { owner: "nightly-backfill".into(), ..LockOptions::default() };
    let guard = CatalogLock::acquire(&local.stores, &lock, options).await.unwrap();
    let out = run(&argv(&local.args(&inv, &[])), &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("catalog locked by nightly-backfill"), "{stderr}");
    assert!(!local.path("catalog.db").exists() || local.table(&py).rows.is_empty());
    guard.release().await.unwrap();
    assert_eq!(run(&argv(&local.args(&inv, &[])), &[]).status.code(), Some(0));
    assert_eq!(local.table(&py).rows, samples.expected_rows(1));
}

/// Everything on the S3 server: items in a bucket, the inventory, warehouse and catalog store.
#[tokio::test]
async fn every_inventory_format_on_s3_gives_the_exact_table() {
    let Some(py) = Python::find("incremental s3 formats") else { return };
    let Some(server) = S3Server::shared("incremental s3 formats") else { return };
    let stores = server.stores();
    let bucket = server.new_bucket().unwrap();
    let samples = Samples::itslive(600, 12);
    samples.upload(&stores, &bucket.join("mirror")).await.unwrap();
    let want = samples.expected_rows(1);

    let data = bucket.join("inventories");
    put(&stores, &data.join("inv.csv"), samples.csv().into_bytes()).await.unwrap();
    put(&stores, &data.join("inv.csv.gz"), gzip(samples.csv().as_bytes()).unwrap()).await.unwrap();
    put(&stores, &data.join("inv.parquet"), samples.parquet().unwrap()).await.unwrap();
    // AWS layouts: the manifest names data files in a destination bucket.
    let Location::S3 { bucket: name, .. } = &bucket else { unreachable!() };
    let parquet = samples.parquet().unwrap();
    put(&stores, &bucket.join("data/a.parquet"), parquet.clone()).await.unwrap();
    let m = manifest(
        "Parquet",
        "message s3 { required binary bucket; }",
        name,
        &[("data/a.parquet".into(), &parquet)],
    );
    put(&stores, &data.join("parquet/manifest.json"), m.into_bytes()).await.unwrap();
    let csv_gz = gzip(samples.aws_csv().as_bytes()).unwrap();
    put(&stores, &bucket.join("data/a.csv.gz"), csv_gz.clone()).await.unwrap();
    let m = manifest(
        "CSV",
        "Bucket, Key, Size, LastModifiedDate",
        name,
        &[("data/a.csv.gz".into(), &csv_gz)],
    );
    put(&stores, &data.join("csv/manifest.json"), m.into_bytes()).await.unwrap();

    let env = server.env();
    for (i, inv) in
        ["inv.csv", "inv.csv.gz", "inv.parquet", "parquet/manifest.json", "csv/manifest.json"]
            .iter()
            .enumerate()
    {
        let dir = tempfile::tempdir().unwrap();
        let root = bucket.join(&format!("run{i}"));
        let mut args = s3_run(&data.join(inv), &bucket, &dir, &root);
        args.extend(["--since".into(), "2023-12-31".into(), "--json".into()]);
        let out = run(&argv(&args), &env);
        assert_eq!(out.status.code(), Some(0), "{inv}");
        assert_eq!(summary(&out)["catalog_uploaded"], true);
        // Read the uploaded catalog, not the working copy.
        let db = dir.path().join("uploaded.db");
        let bytes = get(&stores, &root.join("catalog/catalog.db")).await.unwrap();
        std::fs::write(&db, bytes).unwrap();
        let table =
            read_table(&py, &db, &root.join("warehouse").to_string(), Some(server)).unwrap();
        assert_eq!(table.rows, want, "{inv}");
        assert_eq!(table.row_count, want.len(), "{inv}");
    }

    // A data file rewritten after its manifest was (same size, other bytes) is refused by MD5.
    let mut changed = csv_gz.clone();
    let last = changed.len() - 1;
    changed[last] ^= 0xff;
    put(&stores, &bucket.join("data/changed.csv.gz"), changed).await.unwrap();
    let m = manifest(
        "CSV",
        "Bucket, Key, Size, LastModifiedDate",
        name,
        &[("data/changed.csv.gz".into(), &csv_gz)],
    );
    put(&stores, &data.join("changed/manifest.json"), m.into_bytes()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = bucket.join("changed-run");
    let args = s3_run(&data.join("changed/manifest.json"), &bucket, &dir, &root);
    let out = run(&argv(&args), &env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("data file {} has MD5 ", bucket.join("data/changed.csv.gz")))
            && stderr.contains("replaced or truncated after the manifest was written"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_run_that_fails_midway_uploads_nothing_leaves_nothing_half_registered_and_frees_the_lock()
{
    let Some(py) = Python::find("incremental failure") else { return };
    let Some(server) = S3Server::shared("incremental failure") else { return };
    let stores = server.stores();
    let bucket = server.new_bucket().unwrap();
    let samples = Samples::itslive(700, 20);
    samples.upload(&stores, &bucket.join("mirror")).await.unwrap();
    put(&stores, &bucket.join("inv.csv"), samples.csv().into_bytes()).await.unwrap();

    // Block one cell of the second chunk that the first chunk does not touch: a file where the
    // cell's folder must go makes writing that chunk fail.
    let first = Samples { items: samples.items[..10].to_vec() }.expected_rows(1);
    let second = Samples { items: samples.items[10..].to_vec() }.expected_rows(1);
    let first_cells: BTreeSet<_> = first.iter().map(|(_, c)| c.clone()).collect();
    let blocked =
        second.iter().map(|(_, c)| c).find(|c| !first_cells.contains(*c)).unwrap().clone();
    let dir = tempfile::tempdir().unwrap();
    let warehouse = dir.path().join("warehouse");
    std::fs::create_dir_all(&warehouse).unwrap();
    std::fs::write(warehouse.join(format!("grid_partition={blocked}")), b"in the way").unwrap();

    let store = bucket.join("catalog");
    let args = [
        "incremental".to_string(),
        "--inventory".into(),
        bucket.join("inv.csv").to_string(),
        "--source".into(),
        format!("{BUCKET}={}", bucket.join("mirror")),
        "--catalog".into(),
        s(&dir.path().join("work.db")),
        "--catalog-store".into(),
        store.to_string(),
        "--warehouse".into(),
        s(&warehouse),
        "--chunk-size".into(),
        "10".into(),
    ];
    let env = server.env();
    let out = run(&argv(&args), &env);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("grid_partition={blocked}")));
    // Not uploaded, lock free.
    assert!(get(&stores, &store.join("catalog.db")).await.is_err(), "catalog must not be uploaded");
    assert_eq!(CatalogLock::holder(&stores, &store.join(".lock")).await.unwrap(), None);
    // The failed chunk's files were removed; only the first chunk's (unregistered) files remain.
    let names: Vec<String> = walk(&warehouse);
    assert!(
        names
            .iter()
            .all(|n| !n.contains("_inc_000") || first_cells.iter().any(|c| n.contains(c.as_str()))),
        "{names:?}"
    );

    // Once the obstacle is gone, the same command lands exactly the inventory.
    std::fs::remove_file(warehouse.join(format!("grid_partition={blocked}"))).unwrap();
    assert_eq!(run(&argv(&args), &env).status.code(), Some(0));
    let db = dir.path().join("uploaded.db");
    std::fs::write(&db, get(&stores, &store.join("catalog.db")).await.unwrap()).unwrap();
    let table = read_table(&py, &db, &format!("file://{}", s(&warehouse)), Some(server)).unwrap();
    assert_eq!(table.rows, samples.expected_rows(1));
    assert_eq!(table.row_count, table.rows.len());
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(s(&p));
        }
    }
    out
}
