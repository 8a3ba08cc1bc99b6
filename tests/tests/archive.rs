//! Following the archive: `earthcatalog delta` day after day: today's inventory against the hash index that
//! `incremental --update-hash-index` keeps, pending deltas carried until ingested, on local
//! files and on the moto S3 server; delta files read back with pyarrow; `earthcatalog sync`
//! removing the items a full inventory no longer lists.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use earthcatalog_common::hash_index::{HashIndex, default_location};
use earthcatalog_common::location::Location;
use earthcatalog_tests::ingest::{SampleItem, Samples, in_2001, moved, reprocessed};
use earthcatalog_tests::on_both_backends;
use earthcatalog_tests::python::Python;
use earthcatalog_tests::readers::read_history;
use earthcatalog_tests::site::{Backend, Site, run, stderr, strings, summary};

on_both_backends!(
    a_newer_copy_replaces_every_old_row_even_across_chunks_and_partitions_and_an_older_one_is_skipped,
    a_delta_lists_the_new_keys_carries_the_pending_ones_and_drops_them_once_ingested,
    sync_removes_exactly_the_items_the_full_inventory_no_longer_lists_and_refuses_a_mass_delete,
    an_item_without_updated_is_versioned_by_its_object_so_a_rewritten_object_replaces_its_rows,
);

fn delta(site: &Site, inventory: &Location, date: &str) -> serde_json::Value {
    let mut args = strings(&["delta", "--inventory", &inventory.to_string()]);
    args.extend(strings(&["--delta-prefix", &site.root().join("deltas").to_string()]));
    args.extend(strings(&["--warehouse", &site.warehouse().to_string(), "--date", date, "--json"]));
    let out = run(&args, &site.env());
    assert!(out.status.success(), "{}", stderr(&out));
    summary(&out)
}

/// The keys of a delta file, as pyarrow reads them (with its columns).
fn delta_keys(site: &Site, py: &Python, file: &str) -> (Vec<String>, BTreeSet<String>) {
    let env = site.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let script = r#"
import json, os, sys
import pyarrow.parquet as pq, pyarrow.fs as pafs
path = sys.argv[1]
if path.startswith("s3://"):
    fs = pafs.S3FileSystem(endpoint_override=os.environ["AWS_ENDPOINT_URL"], scheme="http",
        access_key=os.environ["AWS_ACCESS_KEY_ID"], secret_key=os.environ["AWS_SECRET_ACCESS_KEY"],
        region=os.environ.get("AWS_REGION", "us-east-1"))
    t = pq.read_table(path[5:], filesystem=fs)
else:
    t = pq.read_table(path.removeprefix("file://"))
print(json.dumps({"columns": t.column_names, "keys": t.column("key").to_pylist(),
                  "types": [str(f.type) for f in t.schema]}))
"#;
    let out = py.run_with_env(script, &[file], &env).unwrap();
    let v: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(v["types"], serde_json::json!(["string", "string", "fixed_size_binary[16]"]));
    let columns =
        v["columns"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();
    let keys =
        v["keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_string()).collect();
    (columns, keys)
}

fn keys(s: &Samples) -> BTreeSet<String> {
    s.items.iter().map(|i| i.key.clone()).collect()
}

async fn index_ids(site: &Site) -> usize {
    HashIndex::read(&site.stores, &default_location(&site.warehouse()).unwrap())
        .await
        .unwrap()
        .len()
}

async fn a_delta_lists_the_new_keys_carries_the_pending_ones_and_drops_them_once_ingested(
    backend: Backend,
    py: Python,
) {
    let all = Samples::itslive(0, 60);
    let site = backend.site(&all).await;

    // No index yet: refused, naming where it looked.
    let inv = site.put("day0.csv", all.first(30).csv().into_bytes()).await;
    let mut args = strings(&["delta", "--inventory", &inv.to_string(), "--delta-prefix"]);
    args.extend(strings(&[
        &site.root().join("deltas").to_string(),
        "--warehouse",
        &site.warehouse().to_string(),
    ]));
    let refused = run(&args, &site.env());
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("_id_hashes.parquet"), "{}", stderr(&refused));

    // Day 1: the first 30 items, with the index kept.
    let out = site.run(&inv, &["--update-hash-index", "--h3-resolution", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(index_ids(&site).await, 30);

    // Day 2: 20 new items listed; the delta holds exactly them.
    let day2 = site.put("day2.csv", all.first(50).csv().into_bytes()).await;
    let d2 = delta(&site, &day2, "2026-12-02");
    assert_eq!(
        (d2["inventory_keys"].as_u64(), d2["new_keys"].as_u64()),
        (Some(50), Some(20)),
        "{d2}"
    );
    let file2 = d2["delta"].as_str().unwrap().to_string();
    assert!(file2.ends_with("deltas/pending/delta_2026-12-02.parquet"), "{file2}");
    let (columns, listed) = delta_keys(&site, &py, &file2);
    assert_eq!(columns, ["bucket", "key", "id_hash"]);
    assert_eq!(listed, keys(&all.first(50).after(30)));

    // Day 3, before day 2's delta was ingested, with an inventory of only the latest objects:
    // the 10 new keys and the 20 still pending, each once; day 2's file is merged and removed.
    let day3 = site.put("day3.csv", all.after(50).csv().into_bytes()).await;
    let d3 = delta(&site, &day3, "2026-12-03");
    assert_eq!(
        (d3["new_keys"].as_u64(), d3["carried_keys"].as_u64(), d3["total_keys"].as_u64()),
        (Some(10), Some(20), Some(30)),
        "{d3}"
    );
    assert_eq!(d3["merged_deltas"], serde_json::json!([file2]));
    let file3 = d3["delta"].as_str().unwrap().to_string();
    assert_eq!(delta_keys(&site, &py, &file3).1, keys(&all.after(30)));
    let pending =
        earthcatalog_tests::ingest::list(&site.stores, &site.root().join("deltas")).await.unwrap();
    assert_eq!(pending, BTreeSet::from([file3.clone()]));

    // The delta is an inventory: ingesting it extends the table and the index.
    let out = site.run(&Location::parse(&file3).unwrap(), &["--update-hash-index"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(summary(&out)["items_ingested"], 30);
    assert_eq!(index_ids(&site).await, 60);
    assert_eq!(site.table(&py).await.rows, all.expected_rows(1));

    // Day 4: nothing new; the ingested delta is recognised as consumed and removed.
    let day4 = site.put("day4.csv", all.csv().into_bytes()).await;
    let d4 = delta(&site, &day4, "2026-12-04");
    assert_eq!(
        (d4["new_keys"].as_u64(), d4["consumed_keys"].as_u64(), d4["total_keys"].as_u64()),
        (Some(0), Some(30), Some(0)),
        "{d4}"
    );
    assert!(d4["delta"].is_null(), "no rows, no file: {d4}");
    let pending =
        earthcatalog_tests::ingest::list(&site.stores, &site.root().join("deltas")).await.unwrap();
    assert!(pending.is_empty(), "{pending:?}");
}

fn sync(site: &Site, inventory: &Location, extra: &[&str]) -> std::process::Output {
    let mut args = strings(&["sync", "--inventory", &inventory.to_string()]);
    args.extend(site.catalog_args());
    args.push("--json".into());
    args.extend(strings(extra));
    run(&args, &site.env())
}

async fn sync_removes_exactly_the_items_the_full_inventory_no_longer_lists_and_refuses_a_mass_delete(
    backend: Backend,
    py: Python,
) {
    let all = Samples::itslive(0, 60);
    let site = backend.site(&all).await;
    let inv = site.put("all.csv", all.csv().into_bytes()).await;
    let out =
        site.run(&inv, &["--update-hash-index", "--h3-resolution", "1", "--chunk-size", "20"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let before = site.table(&py).await;

    // Two items were deleted from the archive (near-polar sample items fan out to many cells,
    // so these two hold more than the default 5 % of the rows: the limit is raised for them).
    let ids = all.ids();
    let deleted: Vec<String> = vec![ids[7].clone(), ids[41].clone()];
    let remaining =
        all.filtered(|i| !deleted.contains(&i.json["id"].as_str().unwrap().to_string()));
    let full = site.put("full.csv", remaining.csv().into_bytes()).await;

    let dry = sync(&site, &full, &["--dry-run", "--max-delete-fraction", "0.2"]);
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert_eq!(summary(&dry)["deleted_items"], 2);
    assert_eq!(site.table(&py).await.snapshots, before.snapshots, "a dry run changes nothing");

    let out = sync(&site, &full, &["--max-delete-fraction", "0.2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let s = summary(&out);
    assert_eq!(s["deleted_items"], 2, "{s}");
    let after = site.table(&py).await;
    assert_eq!(after.rows, remaining.expected_rows(1), "exactly the listed items stay");
    assert_eq!(after.row_count, after.rows.len());
    assert_eq!(s["deleted_rows"].as_u64().unwrap() as usize, before.rows.len() - after.rows.len());
    assert_eq!(index_ids(&site).await, 58, "the index follows the table");

    // An inventory missing half the archive is refused, and nothing changes.
    let half = site.put("half.csv", remaining.first(29).csv().into_bytes()).await;
    let refused = sync(&site, &half, &[]);
    assert!(!refused.status.success());
    let err = stderr(&refused);
    assert!(err.contains("--max-delete-fraction") && err.contains("nothing changed"), "{err}");
    let unchanged = site.table(&py).await;
    assert_eq!(unchanged.rows, after.rows);
    assert_eq!(unchanged.snapshots, after.snapshots);
}

async fn a_newer_copy_replaces_every_old_row_even_across_chunks_and_partitions_and_an_older_one_is_skipped(
    backend: Backend,
    py: Python,
) {
    let all = Samples::itslive(0, 40);
    let site = backend.site(&all).await;
    let chunked = ["--h3-resolution", "1", "--chunk-size", "10"];
    let day1 = site.put("day1.csv", all.first(30).csv().into_bytes()).await;
    let out = site.run(&day1, &chunked);
    assert!(out.status.success(), "{}", stderr(&out));

    // The archive re-processes items: a new `updated` only (3), a moved footprint (5), another
    // year (7); an older copy with a moved footprint (9) and the same `updated` with a moved
    // footprint (11) must not win. A new copy of 20 and of the new item 35 sits under another key,
    // listed last, in another chunk than the first copy.
    let it = &all.items;
    let newer = "2025-06-01T00:00:00Z";
    let changed = [
        reprocessed(&it[3], newer, |j| j["properties"]["version"] = "2".into()),
        reprocessed(&it[5], newer, |j| moved(j, 40.0)),
        reprocessed(&it[7], newer, in_2001),
        reprocessed(&it[9], "2001-01-01T00:00:00Z", |j| moved(j, 40.0)),
        reprocessed(&it[11], it[11].json["properties"]["updated"].as_str().unwrap(), |j| {
            moved(j, 40.0)
        }),
    ];
    let copies: Vec<SampleItem> = [20, 35]
        .iter()
        .map(|i| {
            let copy = reprocessed(&it[*i], newer, |j| moved(j, 60.0));
            SampleItem { key: format!("reprocessed/{}", it[*i].key), ..copy }
        })
        .collect();
    let uploaded = Samples { items: changed.iter().chain(&copies).cloned().collect() };
    uploaded.upload(&site.stores, &site.items()).await.unwrap();
    let listed = Samples { items: all.items.iter().chain(&copies).cloned().collect() };
    let day2 = site.put("day2.csv", listed.csv().into_bytes()).await;
    let out = site.run(&day2, &chunked);
    assert!(out.status.success(), "{}", stderr(&out));
    let s = summary(&out);
    assert_eq!(
        (s["items_ingested"].as_u64(), s["items_updated"].as_u64()),
        (Some(10), Some(5)),
        "30..40 are new; 3, 5, 7 and the copies of 20 and 35 are newer: {s}"
    );
    assert_eq!(s["items_skipped"], 27, "0..30 but 3, 5 and 7: {s}");

    // What the archive holds now: the newest copy of each item.
    let mut current: BTreeMap<String, SampleItem> =
        all.items.iter().map(|i| (i.id(), i.clone())).collect();
    for newest in changed[..3].iter().chain(&copies) {
        current.insert(newest.id(), newest.clone());
    }
    let current = Samples { items: current.into_values().collect() };
    let table = site.table(&py).await;
    assert_eq!(table.rows, current.expected_rows(1), "exactly the rows of the newest copies");
    assert_eq!(table.row_count, table.rows.len(), "no row twice");
    for item in &current.items {
        let versions = &table.updated[&item.id()];
        assert_eq!(versions, &BTreeSet::from([item.updated_iso()]), "one version of {}", item.id());
    }

    // Again, after a compaction rewrote the table's files: nothing changes, nothing is new.
    let compacted = site.maintain("compact", &["--min-input-files", "2"]);
    assert!(compacted.status.success(), "{}", stderr(&compacted));
    let again = site.run(&day2, &chunked);
    assert!(again.status.success(), "{}", stderr(&again));
    let s = summary(&again);
    assert_eq!(
        (s["items_ingested"].as_u64(), s["items_updated"].as_u64()),
        (Some(0), Some(0)),
        "{s}"
    );
    assert_eq!(site.table(&py).await.rows, table.rows);
    // Time travel still reads every snapshot: the files the compaction replaced were kept.
    let db = site.catalog_copy().await;
    let history =
        read_history(&py, &db, &site.warehouse().to_string(), site.server).expect("time travel");
    assert!(history.iter().any(|s| s.rows != table.rows), "earlier snapshots read older rows");

    // And a newer copy still replaces the rows the compaction moved.
    let third = reprocessed(&changed[1], "2026-01-01T00:00:00Z", |j| moved(j, -40.0));
    Samples { items: vec![third.clone()] }.upload(&site.stores, &site.items()).await.unwrap();
    let out = site.run(&day2, &chunked);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(summary(&out)["items_updated"], 1);
    let mut latest = current.items.clone();
    latest.iter_mut().filter(|i| i.id() == third.id()).for_each(|i| *i = third.clone());
    let after = site.table(&py).await;
    assert_eq!(after.rows, Samples { items: latest }.expected_rows(1));
    assert_eq!(after.row_count, after.rows.len());
    assert_eq!(after.updated[&third.id()], BTreeSet::from([third.updated_iso()]));
}

/// `item` without `updated`, as some catalogs write every item.
fn unversioned(item: &SampleItem) -> SampleItem {
    let mut json = item.json.clone();
    json["properties"].as_object_mut().unwrap().remove("updated");
    SampleItem { json, ..item.clone() }
}

async fn an_item_without_updated_is_versioned_by_its_object_so_a_rewritten_object_replaces_its_rows(
    backend: Backend,
    py: Python,
) {
    let all = Samples { items: Samples::itslive(0, 12).items.iter().map(unversioned).collect() };
    let site = backend.site(&all).await;
    let flags = ["--h3-resolution", "1", "--chunk-size", "4"];
    let inventory = site.put("all.csv", all.csv().into_bytes()).await;
    let out = site.run(&inventory, &flags);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(summary(&out)["items_ingested"], 12);

    // The archive writes two objects again (S3 keeps last-modified times to the second).
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    let it = &all.items;
    let rewritten =
        [moved_copy(&it[2], 40.0), SampleItem { json: year_2001(&it[5]), ..it[5].clone() }];
    Samples { items: rewritten.to_vec() }.upload(&site.stores, &site.items()).await.unwrap();
    let out = site.run(&inventory, &flags);
    assert!(out.status.success(), "{}", stderr(&out));
    let s = summary(&out);
    assert_eq!(s["items_updated"], 2, "the two rewritten objects are newer: {s}");
    assert_eq!(s["items_skipped"], 10, "the others are the same objects: {s}");
    let mut current = all.items.clone();
    current[2] = rewritten[0].clone();
    current[5] = rewritten[1].clone();
    let expected = Samples { items: current }.expected_rows(1);
    let table = site.table(&py).await;
    assert_eq!(table.rows, expected, "the rewritten items' old rows are gone");
    assert_eq!(table.row_count, expected.len(), "no row twice");

    // The versions live beside the hash index, not in the rows: a compaction that moves every
    // row keeps them, so the same objects are still the same afterwards.
    let compacted = site.maintain("compact", &["--min-input-files", "2"]);
    assert!(compacted.status.success(), "{}", stderr(&compacted));
    let again = site.run(&inventory, &flags);
    assert!(again.status.success(), "{}", stderr(&again));
    let s = summary(&again);
    assert_eq!(
        (s["items_updated"].as_u64(), s["items_skipped"].as_u64()),
        (Some(0), Some(12)),
        "{s}"
    );
    assert_eq!(site.table(&py).await.rows, expected);
}

fn moved_copy(item: &SampleItem, dlon: f64) -> SampleItem {
    let mut json = item.json.clone();
    moved(&mut json, dlon);
    SampleItem { json, ..item.clone() }
}

fn year_2001(item: &SampleItem) -> serde_json::Value {
    let mut json = item.json.clone();
    in_2001(&mut json);
    json
}

#[tokio::test]
async fn thirty_days_of_an_archive_leave_the_table_equal_to_it_every_day() {
    earthcatalog_tests::site::on_s3("thirty_days", thirty_days).await;
}

/// Thirty days of an archive on the S3 test server: each day three items are added, two
/// re-processed (a newer `updated`; a moved footprint or another year), one deleted. Each day
/// runs `delta --changed-since` → `incremental`, every 7th day also `sync` and `compact`, and on
/// days 10 and 20 an incremental run is killed with SIGKILL before it is rerun. After every day
/// the table holds exactly the rows of each item's current version (deleted items until the
/// next sync) and the hash index holds exactly the table's ids.
async fn thirty_days(backend: Backend, py: Python) {
    let pool = Samples::itslive(0, 40 + 30 * 3);
    let site = backend.site(&pool.first(40)).await;
    let mut archive: BTreeMap<String, SampleItem> =
        pool.items[..40].iter().map(|i| (i.id(), i.clone())).collect();
    let day0 = site
        .put("day00.csv", Samples { items: archive.values().cloned().collect() }.csv().into_bytes())
        .await;
    let out = site.run(&day0, &["--update-hash-index", "--h3-resolution", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut deleted: BTreeMap<String, SampleItem> = BTreeMap::new();

    for day in 1..=30usize {
        let date = format!("2026-11-{day:02}");
        let modified = format!("{date}T00:00:00Z");
        let mut changed: Vec<SampleItem> = Vec::new();
        for fresh in &pool.items[40 + (day - 1) * 3..40 + day * 3] {
            changed.push(SampleItem { modified: modified.clone(), ..fresh.clone() });
        }
        let ids: Vec<String> = archive.keys().cloned().collect();
        let when = format!("{date}T12:00:00Z");
        let first = &archive[&ids[(day * 7) % ids.len()]];
        let second = &archive[&ids[(day * 13 + 5) % ids.len()]];
        if first.id() != second.id() {
            let other = if day % 2 == 0 {
                reprocessed(second, &when, in_2001)
            } else {
                reprocessed(second, &when, |j| j["properties"]["note"] = "reprocessed".into())
            };
            changed.push(SampleItem { modified: modified.clone(), ..other });
        }
        changed.push(SampleItem {
            modified: modified.clone(),
            ..reprocessed(first, &when, |j| moved(j, if day % 2 == 0 { 30.0 } else { -30.0 }))
        });
        // An item deleted today was not re-processed today: the table keeps its last version.
        let gone = ids[(day * 17 + 3) % ids.len()].clone();
        if !changed.iter().any(|c| c.id() == gone)
            && let Some(item) = archive.remove(&gone)
        {
            deleted.insert(gone, item);
        }
        Samples { items: changed.clone() }.upload(&site.stores, &site.items()).await.unwrap();
        for item in changed {
            archive.insert(item.id(), item);
        }

        let listing = Samples { items: archive.values().cloned().collect() };
        let inventory = site.put(&format!("day{day:02}.csv"), listing.csv().into_bytes()).await;
        let mut args = strings(&["delta", "--inventory", &inventory.to_string()]);
        args.extend(strings(&["--delta-prefix", &site.root().join("deltas").to_string()]));
        args.extend(strings(&["--warehouse", &site.warehouse().to_string(), "--date", &date]));
        args.extend(strings(&["--changed-since", &date, "--json"]));
        let out = run(&args, &site.env());
        assert!(out.status.success(), "day {day}: {}", stderr(&out));
        let d = summary(&out);
        if let Some(file) = d["delta"].as_str() {
            let file = Location::parse(file).unwrap();
            let flags = ["--update-hash-index", "--chunk-size", "2", "--publish-every", "0"];
            if day % 10 == 0 {
                let mut child =
                    earthcatalog_tests::site::command(&site.args(&file, &flags), &site.env())
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::null())
                        .spawn()
                        .unwrap();
                std::thread::sleep(std::time::Duration::from_millis(400 + 60 * day as u64));
                let _ = child.kill();
                let _ = child.wait();
            }
            let out = site.run(&file, &flags);
            assert!(out.status.success(), "day {day}: {}", stderr(&out));
        }
        if day % 7 == 0 {
            let out = sync(&site, &inventory, &["--max-delete-fraction", "1"]);
            assert!(out.status.success(), "day {day}: {}", stderr(&out));
            deleted.clear();
            let out = site.maintain("compact", &["--min-input-files", "2"]);
            assert!(out.status.success(), "day {day}: {}", stderr(&out));
        }

        let held = Samples { items: archive.values().chain(deleted.values()).cloned().collect() };
        let table = site.table(&py).await;
        assert_eq!(
            table.rows,
            held.expected_rows(1),
            "day {day}: the rows of the current versions"
        );
        assert_eq!(table.row_count, table.rows.len(), "day {day}: no row twice");
        for item in &held.items {
            assert_eq!(
                table.updated.get(&item.id()),
                Some(&BTreeSet::from([item.updated_iso()])),
                "day {day}: the version of {}",
                item.id()
            );
        }
        let index = HashIndex::read(&site.stores, &default_location(&site.warehouse()).unwrap())
            .await
            .unwrap();
        assert_eq!(index.len(), held.items.len(), "day {day}: the index holds the table's ids");
        assert!(held.items.iter().all(|i| index.contains_id(&i.id())), "day {day}");
    }
}
