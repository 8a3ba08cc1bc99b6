//! Table maintenance end to end: `earthcatalog compact` on tables built by incremental runs,
//! on local files and on the moto S3 server, every result read back by PyIceberg (current
//! snapshot and time travel) and DuckDB's `iceberg_scan`.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use earthcatalog_common::location::Location;
use earthcatalog_tests::cluster::Cluster;
use earthcatalog_tests::ingest::{Samples, list, put};
use earthcatalog_tests::on_both_backends;
use earthcatalog_tests::python::{DUCKDB_PRELUDE, Python};
use earthcatalog_tests::readers::read_history;
use earthcatalog_tests::site::{Backend, Site, command, stderr, strings, summary};

on_both_backends!(
    compaction_keeps_every_row_in_fewer_files_and_time_travel_still_reads_the_old_ones,
    a_dry_run_says_what_it_would_do_and_changes_nothing,
    expiring_snapshots_leaves_no_file_that_only_expired_snapshots_referenced,
    remove_orphans_deletes_an_old_orphan_but_not_a_fresh_one_nor_a_live_file,
    compaction_by_local_workers_keeps_every_row_and_leaves_no_attempt_file_or_state_behind,
);

/// A table of `samples` built by one incremental run in chunks of 4 items: each chunk writes
/// its own file per (cell, year), so partitions hold many small files.
async fn fragmented(backend: Backend, samples: &Samples) -> Site {
    let site = backend.site(samples).await;
    let inv = site.put("inv.csv", samples.csv().into_bytes()).await;
    let out = site.run(&inv, &["--chunk-size", "4", "--h3-resolution", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    site
}

/// The (id, grid_partition) rows DuckDB's `iceberg_scan` reads from the table's current
/// metadata (found with PyIceberg).
const DUCKDB_ROWS: &str = r#"
import json, os, sys
from pyiceberg.catalog.sql import SqlCatalog
db, warehouse = sys.argv[1], sys.argv[2]
props = {"uri": f"sqlite:///{db}", "warehouse": warehouse}
con = duck()
con.sql("LOAD avro"); con.sql("LOAD iceberg"); con.sql("LOAD httpfs")
if os.environ.get("AWS_ENDPOINT_URL"):
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    props.update({"s3.endpoint": endpoint, "s3.access-key-id": os.environ["AWS_ACCESS_KEY_ID"],
                  "s3.secret-access-key": os.environ["AWS_SECRET_ACCESS_KEY"],
                  "s3.region": os.environ.get("AWS_REGION", "us-east-1")})
    host = endpoint.split("://", 1)[1]
    con.sql(f"""CREATE SECRET (TYPE S3, KEY_ID '{os.environ["AWS_ACCESS_KEY_ID"]}',
        SECRET '{os.environ["AWS_SECRET_ACCESS_KEY"]}', ENDPOINT '{host}', URL_STYLE 'path',
        USE_SSL false, REGION '{os.environ.get("AWS_REGION", "us-east-1")}')""")
t = SqlCatalog("earthcatalog", **props).load_table("earthcatalog.stac_items")
rows = con.sql(f"SELECT id, grid_partition FROM iceberg_scan('{t.metadata_location}')").fetchall()
print(json.dumps([list(r) for r in rows]))
"#;

async fn duckdb_rows(site: &Site, py: &Python) -> (BTreeSet<(String, String)>, usize) {
    let db = site.catalog_copy().await;
    let env = site.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let script = format!("{DUCKDB_PRELUDE}\n{DUCKDB_ROWS}");
    let out = py
        .run_with_env(&script, &[&db.to_string_lossy(), &site.warehouse().to_string()], &env)
        .unwrap();
    let last = out.lines().rev().find(|l| l.starts_with('[')).unwrap();
    let rows: Vec<(String, String)> = serde_json::from_str(last).unwrap();
    (rows.iter().cloned().collect(), rows.len())
}

async fn compaction_keeps_every_row_in_fewer_files_and_time_travel_still_reads_the_old_ones(
    backend: Backend,
    py: Python,
) {
    let samples = Samples::itslive(0, 60);
    let site = fragmented(backend, &samples).await;
    let before = site.table(&py).await;
    let expected = samples.expected_rows(1);
    assert_eq!(before.rows, expected);

    let out = site.maintain("compact", &["--min-input-files", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let s = summary(&out);
    assert!(s["partitions"].as_u64().unwrap() > 0, "{s}");
    assert!(s["output_files"].as_u64() < s["input_files"].as_u64(), "{s}");
    assert_eq!(s["input_rows"], s["output_rows"], "{s}");

    let after = site.table(&py).await;
    assert_eq!(after.rows, expected, "PyIceberg reads the same rows");
    assert_eq!(after.row_count, expected.len(), "no row twice");
    assert!(
        after.files.len() < before.files.len(),
        "{} -> {} files",
        before.files.len(),
        after.files.len()
    );
    assert_eq!(after.files.len() as u64, s["table_files_after"].as_u64().unwrap());
    assert_eq!(after.properties, before.properties, "properties survive");
    let (duck, duck_count) = duckdb_rows(&site, &py).await;
    assert_eq!(duck, expected, "DuckDB reads the same rows");
    assert_eq!(duck_count, expected.len());

    let db = site.catalog_copy().await;
    let history = read_history(&py, &db, &site.warehouse().to_string(), site.server).unwrap();
    let last = history.last().unwrap();
    assert_eq!(last.operation, "replace");
    assert_eq!(Some(last.id), s["snapshot_id"].as_i64());
    let parent = history.iter().find(|h| Some(h.id) == last.parent).unwrap();
    assert_eq!(parent.rows, expected, "time travel to before the compaction");
    assert_eq!(history.len(), before.snapshots + 1, "history kept, one snapshot added");

    // Nothing left worth doing: a second compaction changes nothing.
    let again = site.maintain("compact", &["--min-input-files", "2"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(summary(&again)["partitions"], 0);
    assert_eq!(site.table(&py).await.snapshots, history.len());
}

async fn a_dry_run_says_what_it_would_do_and_changes_nothing(backend: Backend, py: Python) {
    let samples = Samples::itslive(0, 30);
    let site = fragmented(backend, &samples).await;
    let stored = site.catalog_bytes().await;
    let before = site.table(&py).await;
    let out = site.maintain("compact", &["--min-input-files", "2", "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let s = summary(&out);
    assert_eq!(s["dry_run"], true);
    let planned = s["plan"].as_array().unwrap();
    assert_eq!(planned.len() as u64, s["partitions"].as_u64().unwrap());
    assert!(!planned.is_empty(), "{s}");
    let listed: usize = planned.iter().map(|p| p["files"].as_array().unwrap().len()).sum();
    assert_eq!(listed as u64, s["input_files"].as_u64().unwrap());
    assert!(planned.iter().all(|p| {
        p["files"].as_array().unwrap().iter().all(|f| before.files.contains(f.as_str().unwrap()))
    }));
    assert_eq!(site.catalog_bytes().await, stored, "the catalog is untouched");
    assert_eq!(site.table(&py).await.snapshots, before.snapshots);
}

#[tokio::test]
async fn a_partition_argument_that_is_not_cell_slash_year_is_refused_naming_it() {
    let Some(_py) = Python::find("compact_bad_partition") else { return };
    let samples = Samples::itslive(0, 4);
    let site = Backend::Local.site(&samples).await;
    let out = site.maintain("compact", &["--partition", "8a1fb46622dffff"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("partition '8a1fb46622dffff' is not CELL/YEAR"),
        "{}",
        stderr(&out)
    );
}

/// Every object under the site's warehouse, as URIs.
async fn warehouse_objects(site: &Site) -> BTreeSet<String> {
    list(&site.stores, &site.warehouse()).await.unwrap()
}

async fn expiring_snapshots_leaves_no_file_that_only_expired_snapshots_referenced(
    backend: Backend,
    py: Python,
) {
    let samples = Samples::itslive(0, 40);
    let site = fragmented(backend, &samples).await;
    let compacted = site.maintain("compact", &["--min-input-files", "2"]);
    assert!(compacted.status.success(), "{}", stderr(&compacted));
    let before = site.table(&py).await;
    assert!(before.snapshots > 2);
    let objects_before = warehouse_objects(&site).await;

    // Nothing is old enough by default: nothing changes.
    let kept = site.maintain("expire-snapshots", &[]);
    assert!(kept.status.success(), "{}", stderr(&kept));
    assert_eq!(summary(&kept)["expired_snapshots"].as_array().unwrap().len(), 0);
    assert_eq!(site.table(&py).await.snapshots, before.snapshots);

    // The compaction's snapshot listed the removed files' entries in a manifest of their own;
    // a snapshot without it is committed first, so every earlier one expires, the compaction's
    // included.
    let out = site.maintain("expire-snapshots", &["--older-than", "0s", "--retain-last", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let s = summary(&out);
    assert_eq!(s["delete_only_manifests"], 1, "{s}");
    assert_eq!(s["expired_snapshots"].as_array().unwrap().len(), before.snapshots, "{s}");
    let after = site.table(&py).await;
    assert_eq!(after.snapshots, 1);
    assert_eq!(after.rows, samples.expected_rows(1), "the current snapshot reads every row");
    assert_eq!(after.files, before.files);

    // What is left in the warehouse: the live data files, the current snapshot's manifest list
    // and manifests, and metadata JSON files; every deleted file was reported.
    let objects = warehouse_objects(&site).await;
    let data: BTreeSet<String> =
        objects.iter().filter(|o| o.ends_with(".parquet")).cloned().collect();
    assert_eq!(data, after.files, "no data file only expired snapshots read is left");
    let avro = objects.iter().filter(|o| o.ends_with(".avro")).count();
    assert_eq!(avro, 2, "the manifest list and the merged manifest of the live files: {objects:?}");
    let reported: BTreeSet<String> =
        ["data_files", "manifests", "manifest_lists", "metadata_files"]
            .iter()
            .flat_map(|k| s[*k].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()))
            .collect();
    let gone: BTreeSet<String> = objects_before.difference(&objects).cloned().collect();
    assert_eq!(gone, reported);
    let deleted_data = s["data_files"].as_array().unwrap();
    assert!(!deleted_data.is_empty(), "the compacted-away files went: {s}");
    assert!(deleted_data.iter().all(|f| !after.files.contains(f.as_str().unwrap())));
}

async fn remove_orphans_deletes_an_old_orphan_but_not_a_fresh_one_nor_a_live_file(
    backend: Backend,
    py: Python,
) {
    let samples = Samples::itslive(0, 20);
    let site = fragmented(backend, &samples).await;
    let before = site.table(&py).await;
    let live = before.files.iter().next().unwrap().clone();
    let folder = live.rsplit_once('/').unwrap().0.to_string();
    let bytes = earthcatalog_tests::ingest::get(&site.stores, &Location::parse(&live).unwrap())
        .await
        .unwrap();
    let old = Location::parse(&format!("{folder}/dead-run_inc_000001.parquet")).unwrap();
    put(&site.stores, &old, bytes.clone()).await.unwrap();
    let note = site.warehouse().join("README.txt");
    put(&site.stores, &note, b"not a table file".to_vec()).await.unwrap();
    std::thread::sleep(std::time::Duration::from_secs(3));
    let fresh = Location::parse(&format!("{folder}/running_inc_000001.parquet")).unwrap();
    put(&site.stores, &fresh, bytes).await.unwrap();

    let dry = site.maintain("remove-orphans", &["--older-than", "2s", "--dry-run"]);
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert_eq!(summary(&dry)["deleted"], serde_json::json!([old.uri()]));
    assert!(warehouse_objects(&site).await.contains(&old.uri()), "a dry run deletes nothing");

    let out = site.maintain("remove-orphans", &["--older-than", "2s"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let s = summary(&out);
    assert_eq!(s["deleted"], serde_json::json!([old.uri()]), "{s}");
    assert_eq!(s["too_recent"], 1, "{s}");
    let objects = warehouse_objects(&site).await;
    assert!(!objects.contains(&old.uri()));
    assert!(objects.contains(&fresh.uri()), "a fresh file may be a running writer's");
    assert!(objects.contains(&note.uri()), "files outside the table's layout are left alone");
    assert!(before.files.iter().all(|f| objects.contains(f)));
    let after = site.table(&py).await;
    assert_eq!(after.rows, samples.expected_rows(1));
}

#[tokio::test]
async fn an_incremental_run_and_a_compaction_started_together_both_land_and_no_row_is_lost_or_doubled()
 {
    let Some(py) = Python::find("compact_with_incremental") else { return };
    let old = Samples::itslive(0, 40);
    let new = Samples::itslive(40, 40);
    let all = Samples::itslive(0, 80);
    let site = Backend::Local.site(&all).await;
    let inv_old = site.put("old.csv", old.csv().into_bytes()).await;
    let first = site.run(&inv_old, &["--chunk-size", "4", "--h3-resolution", "1"]);
    assert!(first.status.success(), "{}", stderr(&first));
    let inv_new = site.put("new.csv", new.csv().into_bytes()).await;

    // Both wait for the lock: whichever takes it first, the other follows.
    let env = site.env();
    let ingest = command(&site.args(&inv_new, &["--chunk-size", "4", "--lock-wait", "120"]), &env)
        .spawn()
        .unwrap();
    let mut compact_args = strings(&["compact"]);
    compact_args.extend(site.catalog_args());
    compact_args.extend(strings(&["--json", "--min-input-files", "2", "--lock-wait", "120"]));
    let compact = command(&compact_args, &env).spawn().unwrap();
    let ingest = ingest.wait_with_output().unwrap();
    let compact = compact.wait_with_output().unwrap();
    assert!(ingest.status.success(), "{}", stderr(&ingest));
    assert!(compact.status.success(), "{}", stderr(&compact));
    let after = site.table(&py).await;
    let mut expected = old.expected_rows(1);
    expected.extend(new.expected_rows(1));
    assert_eq!(after.rows, expected);
    assert_eq!(after.row_count, expected.len(), "no row twice");

    // Without waiting, the one that finds the lock taken is refused cleanly and changes nothing.
    let holder = site.maintain("compact", &["--min-input-files", "2"]);
    assert!(holder.status.success(), "{}", stderr(&holder));
    let guard = earthcatalog_common::lock::CatalogLock::acquire(
        &site.stores,
        &site.lock(),
        earthcatalog_common::lock::LockOptions { owner: "a test".into(), ..Default::default() },
    )
    .await
    .unwrap();
    let refused = site.maintain("compact", &["--partition", "x/2020"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("a test"),
        "the refusal names the holder: {}",
        stderr(&refused)
    );
    guard.release().await.unwrap();
    assert_eq!(site.table(&py).await.rows, expected);
}

#[tokio::test]
async fn a_compaction_killed_midway_leaves_the_table_readable_and_a_rerun_plus_orphan_removal_ends_exact()
 {
    let Some(py) = Python::find("compact_killed") else { return };
    let samples = Samples::itslive(0, 80);
    let site = fragmented(Backend::Local, &samples).await;
    let expected = samples.expected_rows(1);
    let mut args = strings(&["compact"]);
    args.extend(site.catalog_args());
    args.extend(strings(&["--min-input-files", "2", "--concurrency", "1"]));
    let log = site.work.path().join("compact.log");
    let mut child = command(&args, &site.env())
        .env("RUST_LOG", "debug")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // Killed once it has started rewriting (or, on a fast machine, maybe after it committed).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("compacting partitions") {
        assert!(std::time::Instant::now() < deadline, "{}", std::fs::read_to_string(&log).unwrap());
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let now = site.table(&py).await;
    assert_eq!(now.rows, expected, "readers see every row, once, whatever the moment");
    assert_eq!(now.row_count, expected.len());

    // The lock of the killed process is taken over (same host, process gone); the rerun ends
    // the job; once old snapshots are expired, orphan removal deletes what the killed run wrote
    // and never committed, and nothing else is left.
    let rerun = site.maintain("compact", &["--min-input-files", "2"]);
    assert!(rerun.status.success(), "{}", stderr(&rerun));
    let expired = site.maintain("expire-snapshots", &["--older-than", "0s"]);
    assert!(expired.status.success(), "{}", stderr(&expired));
    let swept = site.maintain("remove-orphans", &["--older-than", "0s"]);
    assert!(swept.status.success(), "{}", stderr(&swept));
    let after = site.table(&py).await;
    assert_eq!(after.rows, expected);
    assert_eq!(after.row_count, expected.len());
    assert_eq!(data_objects(&site).await, after.files, "only the live files are left");
}

/// Where a distributed compaction on `site` keeps its state: beside the warehouse.
fn staging_of(site: &Site) -> Location {
    site.root().join("compact-staging")
}

async fn data_objects(site: &Site) -> BTreeSet<String> {
    warehouse_objects(site).await.into_iter().filter(|o| o.ends_with(".parquet")).collect()
}

async fn compaction_by_local_workers_keeps_every_row_and_leaves_no_attempt_file_or_state_behind(
    backend: Backend,
    py: Python,
) {
    let samples = Samples::itslive(0, 60);
    let site = fragmented(backend, &samples).await;
    let before = site.table(&py).await;
    let expected = samples.expected_rows(1);
    let staging = staging_of(&site).to_string();
    let out = site.maintain(
        "compact",
        &["--min-input-files", "2", "--local-workers", "2", "--staging", &staging],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let s = summary(&out);
    assert!(s["partitions"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(s["input_rows"], s["output_rows"], "{s}");
    assert!(stderr(&out).contains("leasing phase"), "the workers did the rewrites");

    let after = site.table(&py).await;
    assert_eq!(after.rows, expected, "PyIceberg reads the same rows");
    assert_eq!(after.row_count, expected.len(), "no row twice");
    assert!(after.files.len() < before.files.len());
    assert_eq!(after.files.len() as u64, s["table_files_after"].as_u64().unwrap());
    assert_eq!(after.properties, before.properties, "properties survive");
    let (duck, _) = duckdb_rows(&site, &py).await;
    assert_eq!(duck, expected, "DuckDB reads the same rows");
    let db = site.catalog_copy().await;
    let history = read_history(&py, &db, &site.warehouse().to_string(), site.server).unwrap();
    assert_eq!(history.last().unwrap().operation, "replace");

    // The old files stay for time travel; nothing else is there: no output of an attempt that
    // was not accepted, and no state of the finished run.
    let referenced: BTreeSet<String> = before.files.union(&after.files).cloned().collect();
    assert_eq!(data_objects(&site).await, referenced);
    let left = list(&site.stores, &staging_of(&site)).await.unwrap();
    assert!(left.is_empty(), "staging left behind: {left:?}");
}

#[tokio::test]
async fn a_worker_killed_mid_rewrite_and_a_coordinator_killed_mid_compaction_still_end_exact() {
    let Some(py) = Python::find("compact_distributed_kills") else { return };
    let samples = Samples::itslive(0, 80);
    let site = fragmented(Backend::Local, &samples).await;
    let before = site.table(&py).await;
    let expected = samples.expected_rows(1);
    let mut args = site.catalog_args();
    let staging = staging_of(&site).to_string();
    args.extend(strings(&["--min-input-files", "2", "--staging", &staging]));
    args.extend(strings(&["--lease-seconds", "2", "--max-attempts", "10", "--json"]));
    let env = site.env();
    let worker = strings(&["--slots", "1", "--connect-seconds", "30"]);
    let resumed_log = tokio::task::spawn_blocking(move || {
        let wait = std::time::Duration::from_secs(120);
        let mut c = Cluster::serving("compact", env, args).unwrap();
        c.start_coordinator().unwrap();
        // A worker killed while it holds a rewrite: its lease expires, another attempt redoes it.
        let first = c.start_worker(&worker).unwrap();
        c.pause_holding_a_lease(first, None, "compact").unwrap();
        c.workers[first].kill9();
        // Then the coordinator is killed once some rewrites are accepted, with a lease out.
        let second = c.start_worker(&worker).unwrap();
        c.wait_status(None, wait, "an accepted rewrite", |s| {
            s.compact.as_ref().is_some_and(|t| t.done >= 1)
        })
        .unwrap();
        c.pause_holding_a_lease(second, None, "compact").unwrap();
        let done = c.status(None).unwrap().compact.unwrap().done;
        c.coordinator().kill9();
        c.workers[second].kill9();
        // The rerun takes the dead coordinator's lock over and resumes its run.
        c.start_coordinator().unwrap();
        c.start_worker(&worker).unwrap();
        assert!(c.coordinator().wait(wait).unwrap().success(), "{}", c.coordinator().log());
        (c.coordinator().log(), done)
    })
    .await
    .unwrap();
    let (log, done) = resumed_log;
    assert!(log.contains("resuming an unfinished compaction"), "{log}");
    assert!(
        log.contains(&format!("already_done={done}")),
        "the {done} rewrites accepted before the kill were kept:\n{log}"
    );

    let after = site.table(&py).await;
    assert_eq!(after.rows, expected);
    assert_eq!(after.row_count, expected.len(), "no row twice");
    assert!(after.files.len() < before.files.len());
    let (duck, _) = duckdb_rows(&site, &py).await;
    assert_eq!(duck, expected, "DuckDB reads the same rows");
    let referenced: BTreeSet<String> = before.files.union(&after.files).cloned().collect();
    assert_eq!(data_objects(&site).await, referenced, "no file of a lost attempt is left");
    let left = list(&site.stores, &staging_of(&site)).await.unwrap();
    assert!(left.is_empty(), "staging left behind: {left:?}");
}
