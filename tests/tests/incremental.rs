//! `earthcatalog incremental` end to end: the real binary against local files and the moto S3
//! server, every result read back with PyIceberg and compared with the exact (id, cell) set.
//!
//! Most cases run twice, once per [`Backend`] (`<case>::on_local_files` and `<case>::on_s3`):
//! locally the catalog file is the catalog; on S3 items, inventory, warehouse and the catalog
//! store all live in a bucket and the catalog is read back from the uploaded object.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output};

use earthcatalog_common::location::Location;
use earthcatalog_common::lock::{CatalogLock, LockOptions};
use earthcatalog_tests::binaries::earthcatalog;
use earthcatalog_tests::ingest::{
    BUCKET, SampleItem, Samples, etag, get, gzip, list, moved, put, reprocessed,
};
use earthcatalog_tests::on_both_backends;
use earthcatalog_tests::python::Python;
use earthcatalog_tests::readers::read_table;
use earthcatalog_tests::s3::S3Server;
use earthcatalog_tests::site::{Backend, Site, command, run, s, stderr, strings, summary};

on_both_backends!(
    every_inventory_format_lands_exactly_the_items_modified_since_the_cutoff,
    limit_stops_after_that_many_items,
    a_chunk_written_a_few_rows_at_a_time_lands_every_row_once,
    batch_add_files_commits_the_whole_run_in_one_snapshot,
    running_the_same_inventory_twice_registers_nothing_twice_and_counts_the_skipped_items,
    bad_items_are_listed_next_to_the_catalog_with_their_reasons_and_the_good_ones_land,
    a_run_while_another_holds_the_lock_is_refused_naming_the_holder_and_changes_nothing,
);

async fn every_inventory_format_lands_exactly_the_items_modified_since_the_cutoff(
    backend: Backend,
    py: Python,
) {
    // Items 600..612 were modified on January 13..24; the cutoff keeps the last six.
    let samples = Samples::itslive(600, 12);
    let site = backend.site(&samples).await;
    let recent = samples.filtered(|i| i.modified.as_str() >= "2024-01-19");
    assert_eq!(recent.items.len(), 6);
    let want = recent.expected_rows(1);

    let parquet = samples.parquet().unwrap();
    let aws_csv = gzip(samples.aws_csv().as_bytes()).unwrap();
    let inventories = [
        site.put("inv/inv.csv", samples.csv().into_bytes()).await,
        site.put("inv/inv.csv.gz", gzip(samples.csv().as_bytes()).unwrap()).await,
        site.put("inv/inv.parquet", parquet.clone()).await,
        site.manifest(
            "inv/parquet",
            "Parquet",
            "message s3 { required binary bucket; }",
            &[("a.parquet", Some(&parquet))],
        )
        .await,
        site.manifest(
            "inv/csv",
            "CSV",
            "Bucket, Key, Size, LastModifiedDate",
            &[("a.csv.gz", Some(&aws_csv))],
        )
        .await,
    ];
    for (i, inv) in inventories.iter().enumerate() {
        let run = site.fresh(&format!("run{i}"));
        let out = run.run(inv, &["--since", "2024-01-19", "--chunk-size", "4"]);
        assert_eq!(out.status.code(), Some(0), "{inv}");
        let sum = summary(&out);
        assert_eq!(sum["inventory_rows"], 12, "{inv}");
        assert_eq!(sum["before_since"], 6, "{inv}");
        assert_eq!(sum["items_ingested"], 6, "{inv}");
        assert_eq!(sum["catalog_uploaded"], run.server.is_some(), "{inv}");
        let table = run.table(&py).await;
        assert_eq!(table.rows, want, "{inv}");
        assert_eq!(table.row_count, want.len(), "{inv}");
    }
}

async fn limit_stops_after_that_many_items(backend: Backend, py: Python) {
    let samples = Samples::itslive(100, 10);
    let site = backend.site(&samples).await;
    let inv = site.put("inv.parquet", samples.parquet().unwrap()).await;
    let out = site.run(&inv, &["--limit", "4", "--chunk-size", "3"]);
    assert_eq!(out.status.code(), Some(0));
    let sum = summary(&out);
    assert_eq!(sum["items_listed"], 4);
    assert_eq!(sum["items_ingested"], 4);
    let table = site.table(&py).await;
    assert_eq!(table.rows, samples.first(4).expected_rows(1));
    assert_eq!(table.snapshots, 2, "4 items in chunks of 3");
}

async fn a_chunk_written_a_few_rows_at_a_time_lands_every_row_once(backend: Backend, py: Python) {
    let samples = Samples::itslive(120, 12);
    let site = backend.site(&samples).await;
    let inv = site.put("inv.csv", samples.csv().into_bytes()).await;
    // Every sample has several cells, so a budget of 5 rows writes almost every item alone.
    let out = site.run(&inv, &["--chunk-rows", "5"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let sum = summary(&out);
    assert_eq!(sum["items_ingested"], 12, "{sum}");
    let table = site.table(&py).await;
    assert_eq!(table.rows, samples.expected_rows(1));
    assert_eq!(table.row_count, table.rows.len(), "no row twice");
    assert!(table.snapshots > 1, "each batch is registered as it is written");
    let partitions = samples.rows_per_cell_and_year(1).len();
    assert!(
        table.files.len() > partitions,
        "{} files for {partitions} partitions",
        table.files.len()
    );
    // A rerun skips every item, whatever the batches were.
    let again = site.run(&inv, &["--chunk-rows", "5"]);
    assert_eq!(summary(&again)["items_skipped"], 12, "{}", stderr(&again));

    // Registered 3 files at a time: more snapshots, but each (cell, year) is still one file.
    let by_files = site.fresh("by-files");
    let out = by_files.run(&inv, &["--chunk-files", "3"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let table = by_files.table(&py).await;
    assert_eq!(table.rows, samples.expected_rows(1));
    assert_eq!(table.files.len(), partitions, "one file per (cell, year)");
    assert_eq!(table.snapshots, partitions.div_ceil(3));
}

/// `samples`, then a copy of each under another id (same footprint and dates): each (cell, year)
/// gets rows from two chunks far apart.
fn with_twins(samples: Samples) -> Samples {
    let twins: Vec<SampleItem> = samples
        .items
        .iter()
        .map(|i| {
            let mut json = i.json.clone();
            json["id"] = format!("{}-twin", i.id()).into();
            SampleItem { key: format!("twin/{}", i.key), json, modified: i.modified.clone() }
        })
        .collect();
    Samples { items: [samples.items, twins].concat() }
}

async fn batch_add_files_commits_the_whole_run_in_one_snapshot(backend: Backend, py: Python) {
    let samples = with_twins(Samples::itslive(200, 8));
    let site = backend.site(&samples).await;
    let inv = site.put("inv.csv.gz", gzip(samples.csv().as_bytes()).unwrap()).await;
    let out = site.run(&inv, &["--chunk-size", "3", "--batch-add-files"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(summary(&out)["snapshots"], 1);
    assert_eq!(summary(&out)["spills"], 0);
    let table = site.table(&py).await;
    assert_eq!(table.snapshots, 1, "16 items in 6 chunks, one snapshot");
    assert_eq!(table.rows, samples.expected_rows(1));
    assert_eq!(table.row_count, table.rows.len());
    // Chunks share (cell, year)s, yet each is one file: the rows were held across chunks.
    let partitions = samples.rows_per_cell_and_year(1).len();
    let per_chunk: usize = samples
        .items
        .chunks(3)
        .map(|c| Samples { items: c.to_vec() }.rows_per_cell_and_year(1).len())
        .sum();
    assert!(per_chunk > partitions, "{per_chunk} partitions by chunk, {partitions} in all");
    assert_eq!(table.files.len(), partitions, "one file per (cell, year) for the whole run");

    // Past a budget of 5 rows the held rows go to disk and are merged at the end: same table.
    // The spill directory holds what a run killed outright left (its owner lock free, for a
    // while) and the folder of a run still going (its lock held): the first goes, not the second.
    let spill = tempfile::tempdir().unwrap();
    let abandoned = spill.path().join("earthcatalog-spill-killed");
    std::fs::create_dir_all(abandoned.join("spill-000001")).unwrap();
    let lock = std::fs::File::create(abandoned.join("owner.lock")).unwrap();
    lock.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(600)).unwrap();
    drop(lock);
    let in_use = spill.path().join("earthcatalog-spill-running");
    std::fs::create_dir_all(&in_use).unwrap();
    let lock = std::fs::File::create(in_use.join("owner.lock")).unwrap();
    lock.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(600)).unwrap();
    lock.lock().unwrap();
    let spilled = site.fresh("spilled");
    let args = ["--chunk-size", "3", "--batch-add-files", "--chunk-rows", "5", "--spill-dir"];
    let out = spilled.run(&inv, &[&args[..], &[&s(spill.path())]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let sum = summary(&out);
    assert!(sum["spills"].as_u64().unwrap() >= 2, "{sum}");
    let table = spilled.table(&py).await;
    assert_eq!(table.snapshots, 1);
    assert_eq!(table.rows, samples.expected_rows(1));
    assert_eq!(table.row_count, table.rows.len(), "no row twice");
    assert_eq!(table.files.len(), partitions, "one file per (cell, year), spilled or not");
    let left: Vec<_> =
        std::fs::read_dir(spill.path()).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(left, [in_use], "the run's own folder and the abandoned one are removed");
    assert!(stderr(&out).contains("earthcatalog-spill-killed: the spill folder of a run"));
}

async fn running_the_same_inventory_twice_registers_nothing_twice_and_counts_the_skipped_items(
    backend: Backend,
    py: Python,
) {
    let more = Samples::itslive(300, 10);
    let samples = more.first(8);
    let site = backend.site(&more).await;
    let inv = site.put("inv.csv", samples.csv().into_bytes()).await;
    let out = site.run(&inv, &[]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(summary(&out)["items_ingested"], 8);
    let first = site.table(&py).await;

    let out = site.run(&inv, &[]);
    assert_eq!(out.status.code(), Some(0));
    let sum = summary(&out);
    assert_eq!(sum["items_ingested"], 0, "no item became a row: {sum}");
    assert_eq!(sum["items_skipped"], 8);
    assert_eq!(sum["rows_skipped"], first.row_count);
    assert_eq!(sum["rows"], 0);
    assert_eq!(sum["snapshots"], 0);
    let second = site.table(&py).await;
    assert_eq!(second.rows, first.rows);
    assert_eq!(second.row_count, first.row_count, "no row registered twice");
    assert_eq!(second.snapshots, first.snapshots, "nothing new, no new snapshot");

    // A longer inventory later: only the new items are added.
    let inv = site.put("inv2.csv", more.csv().into_bytes()).await;
    let out = site.run(&inv, &[]);
    assert_eq!(out.status.code(), Some(0));
    let sum = summary(&out);
    assert_eq!(sum["items_skipped"], 8);
    assert_eq!(sum["items_ingested"], 2);
    let third = site.table(&py).await;
    assert_eq!(third.rows, more.expected_rows(1));
    assert_eq!(third.row_count, third.rows.len());
}

async fn bad_items_are_listed_next_to_the_catalog_with_their_reasons_and_the_good_ones_land(
    backend: Backend,
    py: Python,
) {
    let samples = Samples::itslive(400, 6);
    let site = backend.site(&samples).await;
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
        put(&site.stores, &site.items().join(key), bytes.clone()).await.unwrap();
    }
    let mut csv = samples.csv();
    for (key, _) in &broken {
        csv.push_str(&format!("{BUCKET},{key},2024-01-01T00:00:00Z\n"));
    }
    csv.push_str(&format!("{BUCKET},bad/missing.stac.json,2024-01-01T00:00:00Z\n"));
    csv.push_str(&format!("{BUCKET}\n"));
    let inv = site.put("inventory.csv", csv.into_bytes()).await;
    let out = site.run(&inv, &[]);
    assert_eq!(out.status.code(), Some(3), "exit code 3: finished, but some items failed");
    let sum = summary(&out);
    assert_eq!(sum["items_ingested"], 6);
    assert_eq!(sum["items_failed"], 5);
    assert_eq!(sum["malformed_rows"], 1);
    assert_eq!(sum["failures_by_kind"]["not_found"], 1);
    assert_eq!(sum["failures_file"], site.failures().to_string(), "the summary says where");
    assert_eq!(site.table(&py).await.rows, samples.expected_rows(1));

    let failures = String::from_utf8(get(&site.stores, &site.failures()).await.unwrap()).unwrap();
    let lines: Vec<serde_json::Value> =
        failures.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 6, "{failures}");
    let find = |key: &str| {
        lines
            .iter()
            .find(|l| l["key"] == key)
            .unwrap_or_else(|| panic!("{key} not listed: {failures}"))
    };
    assert_eq!(find("bad/percent.stac.json")["kind"], "bad_value");
    assert_eq!(find("bad/percent.stac.json")["bucket"], BUCKET);
    assert!(
        find("bad/percent.stac.json")["reason"].as_str().unwrap().contains("percent_valid_pixels")
    );
    assert_eq!(find("bad/nogeom.stac.json")["kind"], "missing_geometry");
    assert_eq!(find("bad/datetime.stac.json")["kind"], "bad_timestamp");
    assert_eq!(find("bad/json.stac.json")["kind"], "invalid_json");
    assert_eq!(find("bad/missing.stac.json")["kind"], "not_found");
    assert_eq!(find("bad/missing.stac.json")["bucket"], BUCKET);
    assert!(lines.iter().any(|l| l["kind"] == "malformed_inventory_row"
        && l["reason"].as_str().unwrap().contains("line 13")));
    if site.server.is_some() {
        let stray: Vec<_> = std::fs::read_dir(site.work.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("failures"))
            .collect();
        assert!(stray.is_empty(), "failures listed next to the working copy: {stray:?}");
    }

    // Once the items are fixed, the failures file is the inventory that retries exactly them.
    let fixes = Samples::itslive(420, 5);
    let keys = broken.iter().map(|(k, _)| *k).chain(["bad/missing.stac.json"]);
    for (key, fixed) in keys.zip(&fixes.items) {
        let bytes = serde_json::to_vec(&fixed.json).unwrap();
        put(&site.stores, &site.items().join(key), bytes).await.unwrap();
    }
    let out = site.run(&site.failures(), &[]);
    let sum = summary(&out);
    assert_eq!(sum["items_listed"], 5, "{sum}");
    assert_eq!(sum["items_ingested"], 5, "{sum}");
    assert_eq!(sum["items_failed"], 0, "{sum}");
    // The broken inventory row has no bucket to retry; it is reported again, by its line.
    assert_eq!(sum["malformed_rows"], 1, "{sum}");
    let mut want = samples.expected_rows(1);
    want.extend(fixes.expected_rows(1));
    assert_eq!(site.table(&py).await.rows, want);
    let failures = String::from_utf8(get(&site.stores, &site.failures()).await.unwrap()).unwrap();
    assert!(
        failures.contains("listed as unreadable by an earlier run")
            && failures.contains("inventory.csv at line 13"),
        "the retry keeps the original reason: {failures}"
    );
}

async fn a_run_while_another_holds_the_lock_is_refused_naming_the_holder_and_changes_nothing(
    backend: Backend,
    py: Python,
) {
    let samples = Samples::itslive(500, 6);
    let site = backend.site(&samples).await;
    let first = site.put("first.csv", samples.first(3).csv().into_bytes()).await;
    let all = site.put("all.csv", samples.csv().into_bytes()).await;
    assert_eq!(site.run(&first, &[]).status.code(), Some(0));
    let before = site.catalog_bytes().await.unwrap();

    let options = LockOptions { owner: "nightly-backfill".into(), ..LockOptions::default() };
    let guard = CatalogLock::acquire(&site.stores, &site.lock(), options).await.unwrap();
    let out = site.run(&all, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("catalog locked by nightly-backfill"), "{}", stderr(&out));
    assert_eq!(site.catalog_bytes().await.unwrap(), before, "the catalog is untouched");
    assert_eq!(site.table(&py).await.rows, samples.first(3).expected_rows(1));
    let holder = CatalogLock::holder(&site.stores, &site.lock()).await.unwrap().unwrap();
    assert_eq!(holder.owner, "nightly-backfill", "the holder keeps its lock");

    guard.release().await.unwrap();
    assert_eq!(site.run(&all, &[]).status.code(), Some(0));
    assert_eq!(site.table(&py).await.rows, samples.expected_rows(1));
}

/// A second run over an existing S3 catalog reads a manifest whose second data file is gone:
/// it fails after ingesting (and, without `--batch-add-files`, registering in its working copy)
/// the first file's items. The stored catalog must be untouched.
async fn a_failed_run_on_s3_leaves_the_stored_catalog_as_it_was(batch: bool) {
    let test = "incremental failure midway";
    let Some(py) = Python::find(test) else { return };
    let Some(server) = S3Server::shared(test) else { return };
    let samples = Samples::itslive(700, 10);
    let site = Backend::S3(server).site(&samples).await;
    let first = site.put("first.csv", samples.first(4).csv().into_bytes()).await;
    assert_eq!(site.run(&first, &[]).status.code(), Some(0));
    let tag = etag(&site.stores, &site.catalog()).await.unwrap();
    let bytes = site.catalog_bytes().await.unwrap();
    let data_files = |all: BTreeSet<String>| -> BTreeSet<String> {
        all.into_iter().filter(|f| f.contains("/grid_partition=")).collect()
    };
    let written_before = data_files(list(&site.stores, &site.warehouse()).await.unwrap());

    let rest = gzip(samples.after(4).aws_csv().as_bytes()).unwrap();
    let inv = site
        .manifest(
            "second",
            "CSV",
            "Bucket, Key, Size, LastModifiedDate",
            &[("b.csv.gz", Some(&rest)), ("gone.csv.gz", None)],
        )
        .await;
    let mut extra = vec!["--chunk-size", "3"];
    if batch {
        extra.push("--batch-add-files");
    }
    let out = site.run(&inv, &extra);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("gone.csv.gz"), "the error names the missing data file");
    // It wrote files before it failed (2 chunks of 3 items), and deleted every one of them. With
    // --batch-add-files those chunks' rows were held for the end: nothing was written (the
    // warehouse is checked below).
    if !batch {
        let deleted = number_between(&err, "the run failed: deleted ", " data files");
        assert!(deleted > 0, "{err}");
        assert!(err.contains("(0 could not be deleted)"), "{err}");
    }

    assert_eq!(etag(&site.stores, &site.catalog()).await.unwrap(), tag, "catalog not uploaded");
    assert_eq!(site.catalog_bytes().await.unwrap(), bytes);
    assert_eq!(CatalogLock::holder(&site.stores, &site.lock()).await.unwrap(), None);
    let table = site.table(&py).await;
    assert_eq!(table.rows, samples.first(4).expected_rows(1));
    assert_eq!(table.row_count, table.rows.len());
    // The warehouse holds exactly the data files the stored catalog references: no orphans.
    let written = data_files(list(&site.stores, &site.warehouse()).await.unwrap());
    assert_eq!(written, written_before);
    let referenced = site.table(&py).await.files;
    assert_eq!(referenced, written_before);

    // Once the inventory is whole, the same catalog takes the rest.
    let all = site.put("all.csv", samples.csv().into_bytes()).await;
    assert_eq!(site.run(&all, &[]).status.code(), Some(0));
    let table = site.table(&py).await;
    assert_eq!(table.rows, samples.expected_rows(1));
    assert_eq!(table.row_count, table.rows.len());
}

#[tokio::test]
async fn a_run_that_fails_midway_on_s3_uploads_nothing_registers_nothing_and_frees_the_lock() {
    a_failed_run_on_s3_leaves_the_stored_catalog_as_it_was(false).await;
}

#[tokio::test]
async fn a_batch_add_files_run_that_fails_midway_on_s3_uploads_nothing_and_frees_the_lock() {
    a_failed_run_on_s3_leaves_the_stored_catalog_as_it_was(true).await;
}

#[tokio::test]
async fn a_manifest_data_file_rewritten_after_the_manifest_is_refused_by_its_md5() {
    let test = "incremental manifest md5";
    let Some(_py) = Python::find(test) else { return };
    let Some(server) = S3Server::shared(test) else { return };
    let samples = Samples::itslive(650, 3);
    let site = Backend::S3(server).site(&samples).await;
    let csv_gz = gzip(samples.aws_csv().as_bytes()).unwrap();
    let inv = site
        .manifest("m", "CSV", "Bucket, Key, Size, LastModifiedDate", &[("a.csv.gz", Some(&csv_gz))])
        .await;
    // Same size, other bytes.
    let mut changed = csv_gz.clone();
    let last = changed.len() - 1;
    changed[last] ^= 0xff;
    let data = site.put("data/a.csv.gz", changed).await;
    let out = site.run(&inv, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("data file {data} has MD5 "))
            && err.contains("replaced or truncated after the manifest was written"),
        "{err}"
    );
    assert!(site.catalog_bytes().await.is_none(), "nothing uploaded");
}

#[tokio::test]
async fn a_chunk_that_cannot_be_written_is_deleted_never_registered_and_the_rerun_lands_all() {
    let Some(py) = Python::find("incremental failure") else { return };
    let Some(server) = S3Server::shared("incremental failure") else { return };
    let stores = server.stores();
    let bucket = server.new_bucket().unwrap();
    let samples = Samples::itslive(750, 20);
    samples.upload(&stores, &bucket.join("mirror")).await.unwrap();
    put(&stores, &bucket.join("inv.csv"), samples.csv().into_bytes()).await.unwrap();

    // Block one cell of the second chunk that the first chunk does not touch: a file where the
    // cell's folder must go makes writing that chunk fail.
    let first = samples.first(10).expected_rows(1);
    let second = samples.after(10).expected_rows(1);
    let first_cells: BTreeSet<_> = first.iter().map(|(_, c)| c.clone()).collect();
    let blocked =
        second.iter().map(|(_, c)| c).find(|c| !first_cells.contains(*c)).unwrap().clone();
    let dir = tempfile::tempdir().unwrap();
    let warehouse = dir.path().join("warehouse");
    std::fs::create_dir_all(&warehouse).unwrap();
    std::fs::write(warehouse.join(format!("grid_partition={blocked}")), b"in the way").unwrap();

    let store = bucket.join("catalog");
    let args = strings(&[
        "incremental",
        "--inventory",
        &bucket.join("inv.csv").to_string(),
        "--source",
        &format!("{BUCKET}={}", bucket.join("mirror")),
        "--catalog",
        &s(&dir.path().join("work.db")),
        "--catalog-store",
        &store.to_string(),
        "--warehouse",
        &s(&warehouse),
        "--chunk-size",
        "10",
    ]);
    let env = server.env();
    let out = run(&args, &env);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&format!("grid_partition={blocked}")));
    assert!(get(&stores, &store.join("catalog.db")).await.is_err(), "catalog must not be uploaded");
    assert_eq!(CatalogLock::holder(&stores, &store.join(".lock")).await.unwrap(), None);
    // The failed chunk's files were removed; only the first chunk's (unregistered) files remain.
    let names = walk(&warehouse);
    assert!(
        names
            .iter()
            .all(|n| !n.contains("_inc_000") || first_cells.iter().any(|c| n.contains(c.as_str()))),
        "{names:?}"
    );

    std::fs::remove_file(warehouse.join(format!("grid_partition={blocked}"))).unwrap();
    assert_eq!(run(&args, &env).status.code(), Some(0));
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

#[tokio::test]
async fn a_local_run_commits_one_snapshot_per_chunk_and_records_the_grid() {
    let Some(py) = Python::find("incremental local") else { return };
    let samples = Samples::itslive(0, 35);
    let site = Backend::Local.site(&samples).await;
    let inv = site.put("inventory.csv", samples.csv().into_bytes()).await;
    let out = site.run(&inv, &["--chunk-size", "10"]);
    assert_eq!(out.status.code(), Some(0));
    let sum = summary(&out);
    assert_eq!(sum["items_ingested"], 35);
    assert_eq!(sum["items_failed"], 0);
    let table = site.table(&py).await;
    let want = samples.expected_rows(1);
    assert_eq!(table.rows, want);
    assert_eq!(table.row_count, want.len());
    assert_eq!(table.snapshots, 4, "35 items in chunks of 10");
    assert_eq!(table.properties["earthcatalog.grid.resolution"], "1");
    assert!(table.properties["schema.name-mapping.default"].is_string());
}

/// `incremental` with only `--config`, the inventory and the source as flags.
fn config_run(site: &Site, config: &str, inventory: &Location) -> Output {
    let path = site.work.path().join("config.yaml");
    std::fs::write(&path, config).unwrap();
    let args = strings(&[
        "incremental",
        "--config",
        &s(&path),
        "--inventory",
        &inventory.to_string(),
        "--source",
        &format!("{BUCKET}={}", site.items()),
        "--json",
    ]);
    run(&args, &[])
}

/// The `catalog:` section of a config naming this site's catalog and warehouse.
fn catalog_section(site: &Site) -> String {
    format!(
        "catalog:\n  db_path: {}\n  warehouse: {}\n",
        s(site.catalog().as_local_path().unwrap()),
        site.warehouse()
    )
}

#[tokio::test]
async fn a_yaml_config_gives_the_catalog_the_warehouse_the_h3_resolution_and_the_chunk_size() {
    let Some(py) = Python::find("incremental config h3") else { return };
    let samples = Samples::itslive(800, 6);
    let site = Backend::Local.site(&samples).await;
    let inv = site.put("inv.csv", samples.csv().into_bytes()).await;
    let config = format!(
        "{}grid:\n  type: h3\n  resolution: 2\ningest:\n  chunk_size: 2\n  max_workers: 2\n",
        catalog_section(&site)
    );
    let out = config_run(&site, &config, &inv);
    assert_eq!(out.status.code(), Some(0));
    let table = site.table(&py).await;
    assert_eq!(table.rows, samples.expected_rows(2));
    assert_ne!(table.rows, samples.expected_rows(1), "resolution 2 must differ from the default");
    assert_eq!(table.snapshots, 3, "6 items in chunks of 2");
    assert_eq!(table.properties["earthcatalog.grid.resolution"], "2");
}

/// A lon/lat box as a GeoJSON feature keyed by `name`.
fn band(name: &str, south: f64, north: f64) -> serde_json::Value {
    let ring = [[-180.0, south], [180.0, south], [180.0, north], [-180.0, north], [-180.0, south]];
    serde_json::json!({
        "type": "Feature",
        "properties": {"name": name},
        "geometry": {"type": "Polygon", "coordinates": [ring]},
    })
}

#[tokio::test]
async fn a_geojson_grid_from_the_config_puts_each_item_in_every_region_it_touches() {
    let Some(py) = Python::find("incremental config geojson") else { return };
    let samples = Samples::itslive(900, 24);
    let site = Backend::Local.site(&samples).await;
    let inv = site.put("inv.csv", samples.csv().into_bytes()).await;
    let regions = serde_json::json!({
        "type": "FeatureCollection",
        "features": [band("arctic", 60.0, 90.0), band("temperate", -60.0, 60.0)],
    });
    let boundaries = site.put("regions.geojson", serde_json::to_vec(&regions).unwrap()).await;
    let config = format!(
        "{}grid:\n  type: geojson\n  boundaries_path: {boundaries}\n  id_field: name\n",
        catalog_section(&site)
    );
    let out = config_run(&site, &config, &inv);
    assert_eq!(out.status.code(), Some(0));

    // Footprints are lon/lat boxes (their bbox): a band is touched when the latitudes overlap;
    // Antarctic items touch none and are kept under "__none__".
    let mut want = BTreeSet::new();
    for item in &samples.items {
        let id = item.json["id"].as_str().unwrap().to_string();
        let (south, north) =
            (item.json["bbox"][1].as_f64().unwrap(), item.json["bbox"][3].as_f64().unwrap());
        if north >= 60.0 {
            want.insert((id.clone(), "arctic".to_string()));
        }
        if south <= 60.0 && north >= -60.0 {
            want.insert((id.clone(), "temperate".to_string()));
        }
        if north < -60.0 {
            want.insert((id, "__none__".to_string()));
        }
    }
    let cells: BTreeSet<_> = want.iter().map(|(_, c)| c.as_str()).collect();
    assert_eq!(cells.len(), 3, "the samples reach every band and none: {want:?}");
    let table = site.table(&py).await;
    assert_eq!(table.rows, want);
    assert_eq!(table.properties["earthcatalog.grid.type"], "geojson");
    assert_eq!(table.properties["earthcatalog.grid.id_field"], "name");
}

#[tokio::test]
async fn every_flag_can_come_from_an_earthcatalog_environment_variable() {
    let Some(py) = Python::find("incremental env") else { return };
    // Items 850..860 were modified on January 11..20: since the 14th keeps 853..859, the limit
    // the first five of those.
    let samples = Samples::itslive(850, 10);
    let site = Backend::Local.site(&samples).await;
    let inv = site.put("inv.csv", samples.csv().into_bytes()).await;
    let env: Vec<(String, String)> = [
        ("EARTHCATALOG_INVENTORY", inv.to_string()),
        ("EARTHCATALOG_SOURCES", format!("{BUCKET}={}", site.items())),
        ("EARTHCATALOG_CATALOG", s(site.catalog().as_local_path().unwrap())),
        ("EARTHCATALOG_WAREHOUSE", site.warehouse().to_string()),
        ("EARTHCATALOG_H3_RESOLUTION", "2".into()),
        ("EARTHCATALOG_SINCE", "2024-01-14".into()),
        ("EARTHCATALOG_LIMIT", "5".into()),
        ("EARTHCATALOG_CHUNK_SIZE", "2".into()),
        ("EARTHCATALOG_BATCH_ADD_FILES", "true".into()),
        ("EARTHCATALOG_JSON", "true".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let out = run(&strings(&["incremental"]), &env);
    assert_eq!(out.status.code(), Some(0));
    let sum = summary(&out);
    assert_eq!(sum["before_since"], 3, "{sum}");
    assert_eq!(sum["items_ingested"], 5, "{sum}");
    let table = site.table(&py).await;
    let want = Samples { items: samples.items[3..8].to_vec() };
    assert_eq!(table.rows, want.expected_rows(2));
    assert_eq!(table.snapshots, 1, "batch add files: one snapshot for 3 chunks");
}

#[tokio::test]
async fn info_after_a_run_reports_its_snapshots_files_and_rows_per_cell_and_year() {
    let Some(_py) = Python::find("incremental info") else { return };
    let samples = Samples::itslive(950, 12);
    let site = Backend::Local.site(&samples).await;
    let inv = site.put("inv.csv", samples.csv().into_bytes()).await;
    let out = site.run(&inv, &["--chunk-size", "5"]);
    assert_eq!(out.status.code(), Some(0));
    let files = summary(&out)["files"].as_u64().unwrap();
    let want = samples.rows_per_cell_and_year(1);
    let rows: u64 = want.values().sum();

    let catalog = s(site.catalog().as_local_path().unwrap());
    let info = |extra: &[&str]| {
        let mut args = strings(&["info", "--catalog", &catalog]);
        args.extend(strings(&["--warehouse", &site.warehouse().to_string()]));
        args.extend(strings(extra));
        let out = run(&args, &[]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    let json: serde_json::Value = serde_json::from_str(&info(&["--json"])).unwrap();
    assert_eq!(json["snapshots"].as_array().unwrap().len(), 3, "12 items in chunks of 5");
    assert_eq!(json["files"], files);
    assert_eq!(json["rows"], rows);
    let got: BTreeMap<(String, i32), u64> = json["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let key = (
                p["grid_partition"].as_str().unwrap().to_string(),
                p["year"].as_i64().unwrap() as i32,
            );
            (key, p["rows"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(got, want);
    let added: u64 = json["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["summary"]["added-records"].as_str().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(added, rows, "the snapshots add up to the rows");

    let text = info(&[]);
    assert!(text.contains("snapshots  3\n"), "{text}");
    assert!(text.contains(&format!("files      {files}\n")), "{text}");
    assert!(text.contains(&format!("rows       {rows}\n")), "{text}");
    for ((cell, year), n) in &want {
        let line =
            text.lines().find(|l| l.starts_with(cell.as_str()) && l.contains(&format!(" {year} ")));
        let cols: Vec<&str> = line
            .unwrap_or_else(|| panic!("{cell} {year} missing: {text}"))
            .split_whitespace()
            .collect();
        assert_eq!(cols[2], n.to_string(), "{cell} {year}: {text}");
    }
}

/// The number between `before` and `after` in the first line of `text` that has them.
fn number_between(text: &str, before: &str, after: &str) -> usize {
    text.lines()
        .find_map(|l| {
            let rest = &l[l.find(before)? + before.len()..];
            rest[..rest.find(after)?].trim().parse().ok()
        })
        .unwrap_or(0)
}

/// Runs `earthcatalog` with `args` on a pseudo-terminal (util-linux `script`) and returns what
/// the terminal showed.
fn run_on_a_terminal(args: &[String]) -> (Option<i32>, String) {
    let quote = |a: &str| format!("'{}'", a.replace('\'', r"'\''"));
    let line = std::iter::once(s(&earthcatalog()))
        .chain(args.iter().cloned())
        .map(|a| quote(&a))
        .collect::<Vec<_>>()
        .join(" ");
    let out = Command::new("script")
        .args(["--quiet", "--return", "--command", &line, "/dev/null"])
        .env("RUST_LOG", "info")
        .env("TERM", "xterm")
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Terminal output as the lines a person sees: ANSI escapes removed, split at `\r` and `\n`.
fn screen_lines(raw: &str) -> Vec<String> {
    let mut text = String::new();
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte (a letter).
            if chars.peek() == Some(&'[') {
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        text.push(c);
    }
    text.split(['\r', '\n']).map(str::to_string).filter(|l| !l.trim().is_empty()).collect()
}

#[tokio::test]
async fn a_terminal_shows_a_progress_bar_that_log_lines_never_tear_through() {
    let Some(py) = Python::find("incremental progress bar") else { return };
    let samples = Samples::itslive(1100, 40);
    let site = Backend::Local.site(&samples).await;
    let inv = site.put("inv.csv", samples.csv().into_bytes()).await;
    let args = site.args(&inv, &["--chunk-size", "5"]);
    let (code, screen) = run_on_a_terminal(&args);
    assert_eq!(code, Some(0), "{screen}");
    let lines = screen_lines(&screen);
    let bar: Vec<&String> = lines.iter().filter(|l| l.contains("items read (")).collect();
    assert!(!bar.is_empty(), "no progress bar on the terminal:\n{screen}");
    assert!(
        bar.iter().any(|l| l.contains("ingested")
            && l.contains("rows")
            && l.contains("files")
            && l.contains("items/s")
            && l.contains("failures")),
        "{bar:?}"
    );
    let logs = lines.iter().filter(|l| l.contains(" INFO ")).count();
    assert!(logs >= 8, "the chunk log lines are shown too:\n{screen}");
    let torn: Vec<&String> =
        lines.iter().filter(|l| l.contains("items read (") && l.contains(" INFO ")).collect();
    assert!(torn.is_empty(), "log lines written into the bar: {torn:?}");
    assert_eq!(site.table(&py).await.rows, samples.expected_rows(1));

    // Without a terminal there is no bar, only log lines.
    let out = site.run(&inv, &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(!stderr(&out).contains("items read ("), "{}", stderr(&out));
}

#[tokio::test]
async fn a_retry_from_the_failures_file_that_aborts_keeps_the_file_whole() {
    let Some(py) = Python::find("incremental retry abort") else { return };
    let samples = Samples::itslive(1200, 6);
    let site = Backend::Local.site(&samples).await;
    // Three listed items are missing: the run lists them.
    let missing = Samples::itslive(1210, 3);
    let mut csv = samples.csv();
    for item in &missing.items {
        csv.push_str(&format!("{BUCKET},{},{}\n", item.key, item.modified));
    }
    let inv = site.put("inv.csv", csv.into_bytes()).await;
    assert_eq!(site.run(&inv, &[]).status.code(), Some(3));
    let listed = get(&site.stores, &site.failures()).await.unwrap();

    // They appear, but a cell folder of one of them is blocked: the retry aborts mid-way.
    missing.upload(&site.stores, &site.items()).await.unwrap();
    let landed: BTreeSet<String> = samples.expected_rows(1).into_iter().map(|(_, c)| c).collect();
    let (_, cell) =
        missing.expected_rows(1).into_iter().find(|(_, c)| !landed.contains(c)).unwrap();
    let blocked = site.warehouse().as_local_path().unwrap().join(format!("grid_partition={cell}"));
    std::fs::write(&blocked, b"in the way").unwrap();
    let out = site.run(&site.failures(), &["--chunk-size", "1"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("kept as it was"), "{}", stderr(&out));
    assert_eq!(get(&site.stores, &site.failures()).await.unwrap(), listed, "the list is whole");

    // Unblocked, the retry takes every listed item, and the list, now done, is removed.
    std::fs::remove_file(&blocked).unwrap();
    let out = site.run(&site.failures(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // Chunks the aborted retry registered before it failed are skipped now.
    let sum = summary(&out);
    assert_eq!(sum["items_listed"], 3, "{sum}");
    assert_eq!(sum["items_failed"], 0, "{sum}");
    assert!(get(&site.stores, &site.failures()).await.is_err(), "the done list is removed");
    let mut want = samples.expected_rows(1);
    want.extend(missing.expected_rows(1));
    assert_eq!(site.table(&py).await.rows, want);
}

#[tokio::test]
async fn an_inventory_whose_header_names_key_but_not_bucket_is_refused_naming_the_column() {
    let samples = Samples::itslive(1300, 5);
    let site = Backend::Local.site(&samples).await;
    let mut csv = String::from("key,size,last_modified_date\n");
    for i in &samples.items {
        csv.push_str(&format!("{},1234,{}\n", i.key, i.modified));
    }
    let inv = site.put("no-bucket.csv", csv.into_bytes()).await;
    let out = site.run(&inv, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "inventory {} has no 'bucket' column (columns: key, size, last_modified_date)",
            inv.uri()
        )),
        "the error names the column and the inventory: {err}"
    );
    assert!(!err.contains("done:"), "{err}");
    assert!(get(&site.stores, &site.failures()).await.is_err(), "nothing to retry is listed");
}

#[tokio::test]
async fn a_run_that_reads_rows_but_ingests_none_warns_how_many_and_why() {
    let samples = Samples::itslive(1320, 5);
    let site = Backend::Local.site(&samples).await;
    let inv = site.put("inv.csv", samples.csv().into_bytes()).await;
    let out = site.run(&inv, &["--since", "2030-01-01"]);
    assert_eq!(out.status.code(), Some(0), "nothing failed: {}", stderr(&out));
    let err = stderr(&out);
    let warning = err
        .lines()
        .find(|l| l.contains("WARN") && l.contains("none ingested"))
        .unwrap_or_else(|| panic!("no warning: {err}"));
    assert!(warning.contains("5 inventory rows read"), "{warning}");
    assert!(warning.contains("5 before --since"), "{warning}");

    let mut csv = String::from("bucket,key\n");
    for i in &samples.items {
        csv.push_str(&format!("{BUCKET},{}.bak\n", i.key));
    }
    let inv = site.put("not-stac.csv", csv.into_bytes()).await;
    let out = site.run(&inv, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.lines().any(|l| l.contains("WARN")
            && l.contains("5 inventory rows read, none ingested: 5 not .stac.json")),
        "{err}"
    );

    // A run that ingests something says nothing of the kind.
    let out = site.run(&site.put("inv2.csv", samples.csv().into_bytes()).await, &[]);
    assert_eq!(summary(&out)["items_ingested"], 5);
    assert!(!stderr(&out).contains("none ingested"), "{}", stderr(&out));
}

/// (id, `updated` as ISO text) of every row of the table, read with PyIceberg.
fn updated_rows(py: &Python, db: &Path, warehouse: &str) -> Vec<(String, String)> {
    const SCRIPT: &str = r#"
import json, sys
from pyiceberg.catalog.sql import SqlCatalog
cat = SqlCatalog("earthcatalog", uri=f"sqlite:///{sys.argv[1]}", warehouse=sys.argv[2])
tbl = cat.load_table("earthcatalog.stac_items").scan(selected_fields=("id", "updated")).to_arrow()
print(json.dumps([[i, u.isoformat()] for i, u in zip(tbl.column("id").to_pylist(), tbl.column("updated").to_pylist())]))
"#;
    let v = py.run_json(SCRIPT, &[&s(db), warehouse]).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_str().unwrap().to_string(), r[1].as_str().unwrap().to_string()))
        .collect()
}

#[tokio::test]
async fn two_copies_of_an_item_in_one_inventory_land_as_the_newest_and_the_other_is_counted() {
    let Some(py) = Python::find("incremental duplicate ids") else { return };
    let samples = Samples::itslive(1340, 4);
    let site = Backend::Local.site(&samples).await;
    // Sample 0 (updated 2022) has two more copies of its id, listed after it: one updated in
    // 2023, then the newest, in 2024, each with a footprint far from the others (other cells).
    let copy = |lon: f64, updated: &str| {
        let mut item = samples.items[0].json.clone();
        let (w, e, s, n) = (lon, lon + 0.5, 10.0, 10.5);
        item["geometry"] = serde_json::json!({"type": "Polygon",
            "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]});
        item["bbox"] = serde_json::json!([w, s, e, n]);
        item["properties"]["updated"] = serde_json::json!(updated);
        item
    };
    let old = copy(0.0, "2023-01-01T00:00:00Z");
    let new = copy(60.0, "2024-06-01T00:00:00Z");
    let mut csv = samples.csv();
    for (key, item) in [("dup/old.stac.json", &old), ("dup/new.stac.json", &new)] {
        put(&site.stores, &site.items().join(key), serde_json::to_vec(item).unwrap())
            .await
            .unwrap();
        csv.push_str(&format!("{BUCKET},{key},2024-01-01T00:00:00Z\n"));
    }
    let inv = site.put("inv.csv", csv.into_bytes()).await;
    let out = site.run(&inv, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let sum = summary(&out);
    assert_eq!(sum["items_listed"], 6, "{sum}");
    assert_eq!(sum["duplicates_dropped"], 2, "the older copy and sample 0's own: {sum}");
    assert_eq!(sum["items_ingested"], 4, "{sum}");
    assert!(stderr(&out).contains("2 duplicates dropped"), "{}", stderr(&out));

    let newest = Samples {
        items: samples
            .items
            .iter()
            .skip(1)
            .cloned()
            .chain([earthcatalog_tests::ingest::SampleItem {
                key: "dup/new.stac.json".into(),
                json: new.clone(),
                modified: "2024-01-01T00:00:00Z".into(),
            }])
            .collect(),
    };
    let table = site.table(&py).await;
    assert_eq!(table.rows, newest.expected_rows(1), "only the newest copy's cells");
    assert_eq!(table.row_count, table.rows.len());
    let id = samples.ids()[0].clone();
    let db = site.catalog_copy().await;
    let updated: BTreeSet<String> = updated_rows(&py, &db, &site.warehouse().to_string())
        .into_iter()
        .filter(|(i, _)| *i == id)
        .map(|(_, u)| u)
        .collect();
    assert_eq!(updated, BTreeSet::from(["2024-06-01T00:00:00+00:00".to_string()]));
}

#[tokio::test]
async fn an_update_later_in_a_batch_add_files_run_replaces_the_rows_held_for_its_item() {
    let Some(py) = Python::find("incremental batch update") else { return };
    let samples = Samples::itslive(1400, 6);
    let site = Backend::Local.site(&samples).await;
    // Sample 0 again, re-processed with a footprint far away, listed after the others: its
    // first version's rows are held (not yet written) when the update arrives.
    let newer = reprocessed(&samples.items[0], "2030-01-01T00:00:00Z", |j| moved(j, 60.0));
    let newer = SampleItem { key: "again/0.stac.json".into(), ..newer };
    let body = serde_json::to_vec(&newer.json).unwrap();
    put(&site.stores, &site.items().join(&newer.key), body).await.unwrap();
    let listed = Samples { items: [&samples.items[..], std::slice::from_ref(&newer)].concat() };
    let inv = site.put("inv.csv", listed.csv().into_bytes()).await;
    let out = site.run(&inv, &["--chunk-size", "3", "--batch-add-files"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let sum = summary(&out);
    assert_eq!((sum["items_ingested"].as_u64(), sum["items_updated"].as_u64()), (Some(6), Some(1)));
    let current = Samples { items: [&samples.items[1..], &[newer]].concat() };
    let table = site.table(&py).await;
    assert_eq!(table.rows, current.expected_rows(1), "only the newer version's cells");
    assert_eq!(table.row_count, table.rows.len());
    let versions = &table.updated[&samples.ids()[0]];
    assert_eq!(versions.len(), 1, "{versions:?}");
    assert!(versions.iter().all(|u| u.starts_with("2030-01-01")), "{versions:?}");
}

/// (collection, id, cell) of every row of the table, read with PyIceberg.
fn collection_rows(py: &Python, db: &Path, warehouse: &str) -> Vec<(String, String, String)> {
    const SCRIPT: &str = r#"
import json, sys
from pyiceberg.catalog.sql import SqlCatalog
cat = SqlCatalog("earthcatalog", uri=f"sqlite:///{sys.argv[1]}", warehouse=sys.argv[2])
t = cat.load_table("earthcatalog.stac_items").scan(
    selected_fields=("collection", "id", "grid_partition")).to_arrow()
print(json.dumps(list(zip(*(t.column(c).to_pylist() for c in ("collection", "id", "grid_partition"))))))
"#;
    let v = py.run_json(SCRIPT, &[&s(db), warehouse]).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| [0, 1, 2].map(|k| r[k].as_str().unwrap().to_string()))
        .map(|[c, i, g]| (c, i, g))
        .collect()
}

#[tokio::test]
async fn one_id_in_two_collections_lands_twice_in_one_run_and_in_a_later_run() {
    let Some(py) = Python::find("incremental ids shared by collections") else { return };
    let samples = Samples::itslive(1360, 3);
    // The same scene in another version of the catalog: same id, same footprint (same cells).
    let mut other = samples.items[0].json.clone();
    other["collection"] = serde_json::json!("itslive-granules-v3");
    let key = "v3/scene.stac.json";
    let expected = || {
        let mut rows: Vec<(String, String, String)> = samples
            .expected_rows(1)
            .into_iter()
            .map(|(id, cell)| ("itslive-granules".to_string(), id, cell))
            .collect();
        let first = samples.ids()[0].clone();
        let cells: Vec<String> = samples
            .expected_rows(1)
            .into_iter()
            .filter(|(id, _)| *id == first)
            .map(|(_, cell)| cell)
            .collect();
        assert!(!cells.is_empty());
        rows.extend(
            cells.into_iter().map(|c| ("itslive-granules-v3".to_string(), first.clone(), c)),
        );
        rows.sort();
        rows
    };

    // Both in one inventory: neither is a duplicate of the other.
    let site = Backend::Local.site(&samples).await;
    put(&site.stores, &site.items().join(key), serde_json::to_vec(&other).unwrap()).await.unwrap();
    let mut csv = samples.csv();
    csv.push_str(&format!("{BUCKET},{key},2024-01-01T00:00:00Z\n"));
    let out = site.run(&site.put("inv.csv", csv.into_bytes()).await, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let sum = summary(&out);
    assert_eq!(
        (sum["items_ingested"].as_u64(), sum["duplicates_dropped"].as_u64()),
        (Some(4), Some(0)),
        "{sum}"
    );
    let db = site.catalog_copy().await;
    let mut rows = collection_rows(&py, &db, &site.warehouse().to_string());
    rows.sort();
    assert_eq!(rows, expected());

    // The other collection's copy arriving in a later run is not "already registered".
    let later = site.fresh("later");
    let first = later.run(&later.put("inv-a.csv", samples.csv().into_bytes()).await, &[]);
    assert_eq!(summary(&first)["items_ingested"], 3, "{}", stderr(&first));
    let csv = format!("bucket,key,last_modified_date\n{BUCKET},{key},2024-01-01T00:00:00Z\n");
    let second = later.run(&later.put("inv-b.csv", csv.into_bytes()).await, &[]);
    assert_eq!(second.status.code(), Some(0), "{}", stderr(&second));
    let sum = summary(&second);
    assert_eq!(
        (sum["items_ingested"].as_u64(), sum["items_skipped"].as_u64()),
        (Some(1), Some(0)),
        "{sum}"
    );
    let db = later.catalog_copy().await;
    let mut rows = collection_rows(&py, &db, &later.warehouse().to_string());
    rows.sort();
    assert_eq!(rows, expected());
}

#[tokio::test]
async fn a_run_whose_inventory_is_missing_leaves_nothing_behind_and_says_why_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-inventory.csv");
    let catalog = dir.path().join("cat").join("catalog.db");
    let warehouse = dir.path().join("warehouse");
    let out = run(
        &[
            "incremental".into(),
            "--inventory".into(),
            s(&missing),
            "--catalog".into(),
            s(&catalog),
            "--warehouse".into(),
            s(&warehouse),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let said: Vec<&str> = err.lines().filter(|l| l.contains("no-such-inventory.csv")).collect();
    assert_eq!(said.len(), 1, "the error is said once: {err}");
    assert!(said[0].starts_with("error: reading the inventory"), "{err}");
    assert_eq!(said[0].matches("not found").count(), 1, "each cause once: {err}");
    assert_eq!(said[0].matches("No such file or directory").count(), 1, "each cause once: {err}");
    let left: Vec<String> = walk(dir.path());
    assert!(left.is_empty(), "a run that read nothing leaves nothing: {left:?}");
}

/// Starts `incremental` with `args` and returns once it holds the catalog lock at `lock`.
fn start_holding_the_lock(args: &[String], lock: &Path) -> std::process::Child {
    let mut child = command(args, &[]).stderr(std::process::Stdio::null()).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let held = std::fs::read(lock)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .is_some_and(|v| v["released"] != true);
        if held {
            return child;
        }
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it took the lock");
        assert!(std::time::Instant::now() < deadline, "the run never took the lock");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[tokio::test]
async fn a_run_stopped_by_sigterm_frees_the_lock_and_a_rerun_starts_at_once() {
    let Some(py) = Python::find("incremental sigterm") else { return };
    let samples = Samples::itslive(0, 400);
    let site = Backend::Local.site(&samples).await;
    let inv = site.put("inventory.csv", samples.csv().into_bytes()).await;
    let args = site.args(&inv, &["--chunk-size", "5"]);
    let lock = site.lock().as_local_path().unwrap().to_path_buf();
    let child = start_holding_the_lock(&args, &lock);
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(143));
    let payload: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&lock).unwrap()).unwrap();
    assert_eq!(payload["released"], true, "the lock is released on SIGTERM: {payload}");

    let rerun = site.run(&inv, &["--lock-wait", "0"]);
    assert_eq!(rerun.status.code(), Some(0), "{}", stderr(&rerun));
    assert_eq!(site.table(&py).await.rows, samples.expected_rows(1));
}

#[tokio::test]
async fn a_run_killed_on_this_host_leaves_a_lock_the_rerun_takes_over_at_once() {
    let Some(py) = Python::find("incremental kill") else { return };
    let samples = Samples::itslive(0, 400);
    let site = Backend::Local.site(&samples).await;
    let inv = site.put("inventory.csv", samples.csv().into_bytes()).await;
    let args = site.args(&inv, &["--chunk-size", "5"]);
    let lock = site.lock().as_local_path().unwrap().to_path_buf();
    let mut child = start_holding_the_lock(&args, &lock);
    child.kill().unwrap();
    child.wait().unwrap();
    let payload: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&lock).unwrap()).unwrap();
    assert_ne!(payload["released"], true, "kill -9 cannot release: {payload}");

    let rerun = site.run(&inv, &["--lock-wait", "0"]);
    assert_eq!(rerun.status.code(), Some(0), "{}", stderr(&rerun));
    assert!(stderr(&rerun).contains("no longer exists"), "{}", stderr(&rerun));
    assert_eq!(site.table(&py).await.rows, samples.expected_rows(1));
}

#[tokio::test]
async fn a_run_killed_on_s3_keeps_what_it_published_and_the_rerun_resumes_and_removes_its_orphans()
{
    let test = "incremental killed on s3";
    let Some(py) = Python::find(test) else { return };
    let Some(server) = S3Server::shared(test) else { return };
    let samples = Samples::itslive(1500, 300);
    let site = Backend::S3(server).site(&samples).await;
    let inv = site.put("inventory.csv", samples.csv().into_bytes()).await;
    let args = site.args(&inv, &["--chunk-size", "5", "--publish-every", "0"]);
    let mut child =
        command(&args, &site.env()).stderr(std::process::Stdio::null()).spawn().unwrap();
    // Killed once the stored catalog holds a few chunks.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        if site.catalog_bytes().await.is_some_and(|b| !b.is_empty()) {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it published");
        assert!(std::time::Instant::now() < deadline, "the run never published");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    assert!(child.wait().unwrap().code().is_none(), "killed, not finished");
    let kept = site.table(&py).await;
    assert!(!kept.rows.is_empty(), "what was published before the kill is kept");
    assert!(kept.rows.len() < samples.expected_rows(1).len(), "killed midway");

    let rerun = site.run(&inv, &["--lock-wait", "0"]);
    assert_eq!(rerun.status.code(), Some(0), "{}", stderr(&rerun));
    let sum = summary(&rerun);
    assert!(sum["items_skipped"].as_u64().unwrap() > 0, "the rerun resumes: {sum}");
    let table = site.table(&py).await;
    assert_eq!(table.rows, samples.expected_rows(1));
    assert_eq!(table.row_count, table.rows.len());
    let written: BTreeSet<String> = list(&site.stores, &site.warehouse())
        .await
        .unwrap()
        .into_iter()
        .filter(|f| f.contains("/grid_partition="))
        .collect();
    assert_eq!(written, table.files, "the warehouse holds exactly the referenced files: {sum}");
}
