//! `earthcatalog backfill` with its workers in the same process (`--local-workers`), on local
//! folders: a task that cannot succeed, a resumed run, a delta run after a full run and the
//! hash index it maintains.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use earthcatalog_common::hash_index::HashIndex;
use earthcatalog_common::location::Location;
use earthcatalog_common::stores::{S3Settings, Stores};
use earthcatalog_tests::binaries;
use earthcatalog_tests::ingest::{BUCKET, SampleItem, Samples, in_2001, moved, reprocessed};
use earthcatalog_tests::python::Python;
use earthcatalog_tests::readers::{read_history, read_table};

struct Local {
    dir: tempfile::TempDir,
    py: Python,
}

impl Local {
    fn new(test: &str) -> Option<Local> {
        let py = Python::find(test)?;
        Some(Local { dir: tempfile::tempdir().unwrap(), py })
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn stores() -> Stores {
        Stores::new(S3Settings::default())
    }

    /// Writes `samples`' items under `items/` and their inventory as `name`.
    fn inputs(&self, samples: &Samples, name: &str) {
        let root = Location::local(self.path("items")).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(samples.upload(&Self::stores(), &root)).unwrap();
        std::fs::write(self.path(name), samples.csv()).unwrap();
    }

    fn backfill(&self, inventory: &str, extra: &[&str]) -> Output {
        let items = Location::local(self.path("items")).unwrap().uri();
        let mut args: Vec<String> = vec![
            "backfill".into(),
            "--inventory".into(),
            self.path(inventory).to_string_lossy().into(),
            "--catalog".into(),
            self.path("catalog.db").to_string_lossy().into(),
            "--warehouse".into(),
            self.path("wh").to_string_lossy().into(),
            "--staging".into(),
            self.path("staging").to_string_lossy().into(),
            "--source".into(),
            format!("{BUCKET}={items}"),
            "--chunk-size".into(),
            "20".into(),
            "--compact-rows".into(),
            "50".into(),
            "--local-workers".into(),
            "2".into(),
            "--lease-seconds".into(),
            "3".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Command::new(binaries::earthcatalog()).args(&args).output().unwrap()
    }

    fn rows(&self) -> (BTreeSet<(String, String)>, usize, usize) {
        let wh = Location::local(self.path("wh")).unwrap().uri();
        let v = read_table(&self.py, &self.path("catalog.db"), &wh, None).unwrap();
        (v.rows, v.row_count, v.snapshots)
    }
}

/// Every file and folder under `dir` (nothing when it is gone).
fn walkdir(dir: &std::path::Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries.flatten().flat_map(|e| std::iter::once(e.path()).chain(walkdir(&e.path()))).collect()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn block(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, b"a file where the attempt folders of chunk 1 would go").unwrap();
}

#[test]
fn a_task_that_cannot_succeed_stops_the_run_before_registration_and_a_rerun_finishes_it() {
    let Some(t) = Local::new("backfill_failing_task") else { return };
    let samples = Samples::itslive(0, 60);
    t.inputs(&samples, "inventory.csv");
    // A run already under way whose chunk 1 cannot be staged: a file sits where its
    // attempt folders must be created.
    let run = "20260101T000000Z-failing";
    let pointer = serde_json::json!({
        "run_id": run,
        "inventory": Location::local(t.path("inventory.csv")).unwrap().uri(),
        "delta": false,
        "retry_pending": false,
        "started": "2026-01-01T00:00:00Z",
    });
    std::fs::create_dir_all(t.path("staging")).unwrap();
    std::fs::write(t.path("staging/_run.json"), pointer.to_string()).unwrap();
    let blocker = t.path(&format!("staging/{run}/ingest/chunk_000001"));
    block(&blocker);

    let first = t.backfill("inventory.csv", &["--h3-resolution", "1", "--max-attempts", "2"]);
    let out = text(&first);
    assert!(!first.status.success(), "{out}");
    assert!(out.contains("1 task(s) failed; nothing was registered"), "{out}");
    assert!(out.contains("ingest task 1"), "{out}");
    assert!(out.contains("chunk_000001.parquet"), "{out}");
    assert!(!t.path("catalog.db").exists(), "no catalog written");

    std::fs::remove_file(&blocker).unwrap();
    let second = t.backfill("inventory.csv", &["--h3-resolution", "1", "--max-attempts", "2"]);
    let out = text(&second);
    assert!(second.status.success(), "{out}");
    assert!(out.contains("resuming an unfinished run"), "{out}");
    assert!(out.contains("already_done=2"), "the two chunks accepted before are kept: {out}");
    let (rows, count, _) = t.rows();
    assert_eq!(count, rows.len());
    assert_eq!(rows, samples.expected_rows(1));
}

#[test]
fn a_full_rebuild_swaps_the_table_in_one_snapshot_so_readers_never_see_it_empty_or_half_built() {
    let Some(t) = Local::new("backfill_rebuild") else { return };
    let first = Samples::itslive(0, 40);
    let second = Samples::itslive(100, 50);
    t.inputs(&first, "first.csv");
    t.inputs(&second, "second.csv");
    let run = t.backfill("first.csv", &["--h3-resolution", "1"]);
    assert!(run.status.success(), "{}", text(&run));
    // A small register batch would have split the old drop-and-register into several commits.
    let run = t.backfill("second.csv", &["--h3-resolution", "1"]);
    assert!(run.status.success(), "{}", text(&run));

    let wh = Location::local(t.path("wh")).unwrap().uri();
    let history = read_history(&t.py, &t.path("catalog.db"), &wh, None).unwrap();
    let (old, new) = (first.expected_rows(1), second.expected_rows(1));
    // Every state readers could ever see is one whole table: the old or the new.
    for s in &history {
        assert_eq!(s.row_count, s.rows.len(), "no row twice in snapshot {}", s.id);
        assert!(
            s.rows == old || s.rows == new,
            "snapshot {} ({}) reads {} rows",
            s.id,
            s.operation,
            s.row_count
        );
    }
    let last = history.last().unwrap();
    assert_eq!(last.rows, new);
    assert_eq!(last.operation, "overwrite");
    let parent = history
        .iter()
        .find(|s| Some(s.id) == last.parent)
        .expect("the rebuild's parent is in the history");
    assert_eq!(parent.rows, old, "time travel to before the rebuild reads the old table");
    assert!(
        history.iter().all(|s| s.table_uuid == last.table_uuid),
        "the same table, not a new one"
    );
}

#[test]
fn a_delta_run_after_a_full_run_appends_its_items_and_extends_the_hash_index() {
    let Some(t) = Local::new("backfill_delta") else { return };
    let first = Samples::itslive(0, 40);
    let second = Samples::itslive(40, 30);
    t.inputs(&first, "full.csv");
    t.inputs(&second, "delta.csv");

    let full = t.backfill("full.csv", &["--h3-resolution", "1", "--update-hash-index"]);
    assert!(full.status.success(), "{}", text(&full));
    let left: Vec<_> = walkdir(&t.path("staging"));
    assert!(left.is_empty(), "a finished run leaves nothing in local staging: {left:?}");
    let delta = t.backfill("delta.csv", &["--delta", "--update-hash-index"]);
    assert!(delta.status.success(), "{}", text(&delta));

    let (rows, count, snapshots) = t.rows();
    let mut expected = first.expected_rows(1);
    expected.extend(second.expected_rows(1));
    assert_eq!(count, rows.len(), "no row twice");
    assert_eq!(rows, expected);
    assert_eq!(snapshots, 2, "the delta appended one snapshot");

    let index_at =
        Location::local(format!("{}_id_hashes.parquet", t.path("wh").display())).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let index = rt.block_on(HashIndex::read(&Local::stores(), &index_at)).unwrap();
    let ids: Vec<String> = first.ids().into_iter().chain(second.ids()).collect();
    assert_eq!(index.len(), ids.len());
    assert!(ids.iter().all(|id| index.contains_id(id)));
}

#[test]
fn a_delta_run_replaces_the_old_rows_of_items_it_brings_newer_and_adds_none_it_already_holds() {
    let Some(t) = Local::new("backfill_delta_updates") else { return };
    let first = Samples::itslive(0, 40);
    t.inputs(&first, "full.csv");
    let full = t.backfill("full.csv", &["--h3-resolution", "1"]);
    assert!(full.status.success(), "{}", text(&full));

    // The delta: ten new items; 3 re-processed with a moved footprint; 5 as it is; 7 older and
    // moved; and a newer copy of the new item 45 under another key, whose moved footprint puts
    // it in other partitions than the older copy (so Phase 3 cannot tell them apart).
    let it = &first.items;
    let new = Samples::itslive(40, 10);
    let newer = "2025-06-01T00:00:00Z";
    let three = reprocessed(&it[3], newer, |j| moved(j, 40.0));
    let seven = reprocessed(&it[7], "2001-01-01T00:00:00Z", |j| moved(j, 40.0));
    let copy = reprocessed(&new.items[5], newer, |j| moved(j, 60.0));
    let copy = SampleItem { key: format!("reprocessed/{}", copy.key), ..copy };
    let mut listed = new.items.clone();
    listed.extend([three.clone(), it[5].clone(), seven, copy.clone()]);
    t.inputs(&Samples { items: listed }, "delta.csv");
    let delta = t.backfill("delta.csv", &["--delta"]);
    assert!(delta.status.success(), "{}", text(&delta));

    let mut current: Vec<SampleItem> = first.items.clone();
    current[3] = three.clone();
    current.extend(new.items.iter().cloned());
    current[45] = copy.clone();
    let current = Samples { items: current };
    let wh = Location::local(t.path("wh")).unwrap().uri();
    let table = read_table(&t.py, &t.path("catalog.db"), &wh, None).unwrap();
    assert_eq!(table.rows, current.expected_rows(1), "exactly the newest copies' rows");
    assert_eq!(table.row_count, table.rows.len(), "no row twice");
    for item in &current.items {
        assert_eq!(
            table.updated[&item.id()],
            BTreeSet::from([item.updated_iso()]),
            "{}",
            item.id()
        );
    }
    assert_eq!(table.snapshots, 2, "the delta is one snapshot");
}

/// `item` without `updated`, as some catalogs write every item.
fn unversioned(item: &SampleItem) -> SampleItem {
    let mut json = item.json.clone();
    json["properties"].as_object_mut().unwrap().remove("updated");
    SampleItem { json, ..item.clone() }
}

fn counts(o: &Output) -> (u64, u64) {
    assert!(o.status.success(), "{}", text(o));
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    (s["items_updated"].as_u64().unwrap(), s["items_skipped"].as_u64().unwrap())
}

#[test]
fn a_delta_run_versions_items_without_updated_by_their_objects() {
    let Some(t) = Local::new("backfill_delta_object_times") else { return };
    let all = Samples { items: Samples::itslive(0, 12).items.iter().map(unversioned).collect() };
    t.inputs(&all, "all.csv");
    let full = t.backfill("all.csv", &["--h3-resolution", "1"]);
    assert!(full.status.success(), "{}", text(&full));
    // A full run keeps no versions: the first delta takes every object once and keeps its time.
    let first = t.backfill("all.csv", &["--delta", "--json"]);
    assert_eq!(counts(&first), (12, 0));

    // The archive writes two objects again: a moved footprint, another year.
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    let it = &all.items;
    let mut second = it[5].clone();
    in_2001(&mut second.json);
    let mut third = it[2].clone();
    moved(&mut third.json, 40.0);
    t.inputs(&Samples { items: vec![third.clone(), second.clone()] }, "rewritten.csv");
    let delta = t.backfill("all.csv", &["--delta", "--json"]);
    assert_eq!(counts(&delta), (2, 10), "the two rewritten objects are newer, the rest the same");

    let mut current = all.items.clone();
    current[2] = third;
    current[5] = second;
    let expected = Samples { items: current }.expected_rows(1);
    let (rows, count, _) = t.rows();
    assert_eq!(rows, expected, "the rewritten items' old rows are gone");
    assert_eq!(count, rows.len(), "no row twice");
    let again = t.backfill("all.csv", &["--delta", "--json"]);
    assert_eq!(counts(&again), (0, 12), "nothing changed since");
}

#[test]
fn a_delta_run_stopped_after_registering_resumes_without_registering_its_files_twice() {
    let Some(t) = Local::new("backfill_delta_resume") else { return };
    let first = Samples::itslive(0, 40);
    let second = Samples::itslive(40, 30);
    t.inputs(&first, "full.csv");
    t.inputs(&second, "delta.csv");
    let full = t.backfill("full.csv", &["--h3-resolution", "1"]);
    assert!(full.status.success(), "{}", text(&full));

    // The delta's files are registered, then writing the hash index fails (its folder is a
    // file): the run stops after Phase 4 committed, with its run state still in staging.
    std::fs::write(t.path("not-a-folder"), b"x").unwrap();
    let bad_index = t.path("not-a-folder/ids.parquet").to_string_lossy().into_owned();
    let stopped =
        t.backfill("delta.csv", &["--delta", "--update-hash-index", "--hash-index", &bad_index]);
    assert!(!stopped.status.success(), "{}", text(&stopped));
    assert!(t.path("staging/_run.json").exists(), "the unfinished run is on record");

    let index = t.path("ids.parquet").to_string_lossy().into_owned();
    let resumed =
        t.backfill("delta.csv", &["--delta", "--update-hash-index", "--hash-index", &index]);
    let out = text(&resumed);
    assert!(resumed.status.success(), "{out}");
    assert!(out.contains("resuming an unfinished run"), "{out}");
    assert!(out.contains("registered before it stopped; not registering them again"), "{out}");
    let (rows, count, snapshots) = t.rows();
    let mut expected = first.expected_rows(1);
    expected.extend(second.expected_rows(1));
    assert_eq!(count, rows.len(), "no row twice");
    assert_eq!(rows, expected);
    assert_eq!(snapshots, 2, "the full run's snapshot and the delta's, once");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let hashes =
        rt.block_on(HashIndex::read(&Local::stores(), &Location::local(&index).unwrap())).unwrap();
    assert!(second.ids().iter().all(|id| hashes.contains_id(id)));
    assert!(!t.path("staging/_run.json").exists());
}

#[test]
fn items_that_could_not_be_fetched_are_listed_and_retry_pending_ingests_them_later() {
    let Some(t) = Local::new("backfill_retry_pending") else { return };
    let samples = Samples::itslive(0, 40);
    t.inputs(&samples, "inventory.csv");
    let missing: Vec<_> = samples.items.iter().step_by(13).map(|i| i.key.clone()).collect();
    for key in &missing {
        std::fs::remove_file(t.path("items").join(key)).unwrap();
    }

    let first = t.backfill("inventory.csv", &["--h3-resolution", "1", "--json"]);
    assert_eq!(first.status.code(), Some(3), "some items failed:\n{}", text(&first));
    let summary: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(summary["failed_items"], missing.len());
    let pending = summary["pending_file"].as_str().unwrap().to_string();
    let listed =
        std::fs::read_to_string(Location::parse(&pending).unwrap().as_local_path().unwrap())
            .unwrap();
    for key in &missing {
        assert!(listed.contains(key.as_str()), "{key} is listed for retry:\n{listed}");
    }
    let kept = Samples {
        items: samples.items.iter().filter(|i| !missing.contains(&i.key)).cloned().collect(),
    };
    assert_eq!(t.rows().0, kept.expected_rows(1), "everything else was registered");

    // The items appear; --retry-pending ingests exactly them and appends. The first attempt
    // stops after registering (its hash index cannot be written); resumed, it retries the same
    // lists, recorded in its run state, and registers nothing twice.
    t.inputs(&samples, "inventory.csv");
    std::fs::write(t.path("not-a-folder"), b"x").unwrap();
    let bad_index = t.path("not-a-folder/ids.parquet").to_string_lossy().into_owned();
    let retry_args = ["--retry-pending", "--update-hash-index", "--hash-index"];
    let stopped = t.backfill("inventory.csv", &[&retry_args[..], &[bad_index.as_str()]].concat());
    assert!(!stopped.status.success(), "{}", text(&stopped));
    let state = std::fs::read_to_string(t.path("staging/_run.json")).unwrap();
    assert!(state.contains(&pending), "the run state names the list it retries: {state}");
    let index = t.path("ids.parquet").to_string_lossy().into_owned();
    let retry =
        t.backfill("inventory.csv", &[&retry_args[..], &[index.as_str(), "--json"]].concat());
    assert!(retry.status.success(), "{}", text(&retry));
    assert!(text(&retry).contains("resuming an unfinished run"));
    let summary: serde_json::Value = serde_json::from_slice(&retry.stdout).unwrap();
    assert_eq!(summary["items"], missing.len());
    assert!(summary["pending_file"].is_null());
    let (rows, count, _) = t.rows();
    assert_eq!(count, rows.len(), "no row twice");
    assert_eq!(rows, samples.expected_rows(1));
    assert!(!Location::parse(&pending).unwrap().as_local_path().unwrap().exists());
}

#[test]
fn a_delta_run_stopped_during_its_cleanup_only_finishes_the_cleanup_when_restarted() {
    let Some(t) = Local::new("backfill_committed") else { return };
    let first = Samples::itslive(0, 40);
    let second = Samples::itslive(40, 30);
    t.inputs(&first, "full.csv");
    t.inputs(&second, "delta.csv");
    assert!(t.backfill("full.csv", &["--h3-resolution", "1"]).status.success());
    let delta = t.backfill("delta.csv", &["--delta"]);
    assert!(delta.status.success(), "{}", text(&delta));
    let (before, _, snapshots_before) = t.rows();

    // What a coordinator stopped during the cleanup leaves: its run state, marked committed
    // after Phase 4, and part of its staging.
    let run = "20261204T000000Z-c0ffee";
    let state = serde_json::json!({
        "run_id": run,
        "inventory": Location::local(t.path("delta.csv")).unwrap().uri(),
        "delta": true,
        "retry_pending": false,
        "started": "2026-12-04T00:00:00+00:00",
        "committed": {"at": "2026-12-04T00:01:00+00:00", "files": 30, "rows": 30,
                      "snapshots": 1, "pending_file": null},
    });
    std::fs::create_dir_all(t.path(&format!("staging/{run}/results/compact"))).unwrap();
    std::fs::write(t.path(&format!("staging/{run}/results/compact/000000.json")), b"{}").unwrap();
    std::fs::write(t.path("staging/_run.json"), state.to_string()).unwrap();

    let restart = t.backfill("delta.csv", &["--delta", "--json"]);
    assert!(restart.status.success(), "{}", text(&restart));
    assert!(text(&restart).contains("finishing its cleanup"), "{}", text(&restart));
    let (after, count, snapshots) = t.rows();
    assert_eq!(after, before, "nothing is appended again");
    assert_eq!(count, after.len(), "no row twice");
    assert_eq!(snapshots, snapshots_before);
    let left: Vec<_> = walkdir(&t.path("staging"));
    assert!(left.is_empty(), "the cleanup is finished: {left:?}");
}
