//! The replace commit: files swapped atomically in one `replace` snapshot, history kept,
//! manifests merged, and a replace of files that are no longer live refused.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::Arc;

use earthcatalog_common::catalog::{
    Catalog, ReplaceError, Replacement, TableSettings, data_files, snapshots,
};
use earthcatalog_common::fanout::{Groups, fan_out};
use earthcatalog_common::geoparquet::{FileNamer, WriterOptions, WrittenFile, write_partition};
use earthcatalog_common::ids::RunId;
use earthcatalog_common::location::Location;
use earthcatalog_common::sample::itslive_item;
use earthcatalog_common::stac::parse_item_value;
use earthcatalog_common::stores::{S3Settings, Stores};
use futures::TryStreamExt;
use iceberg::table::Table;
use iceberg::transaction::ApplyTransactionAction;

struct Fixture {
    _dir: tempfile::TempDir,
    stores: Arc<Stores>,
    warehouse: Location,
    catalog: Catalog,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let stores = Arc::new(Stores::new(S3Settings::default()));
    let warehouse = Location::local(dir.path().join("wh")).unwrap();
    let catalog =
        Catalog::open(&dir.path().join("c.db"), &warehouse, stores.clone()).await.unwrap();
    catalog.open_table(&TableSettings::h3(1)).await.unwrap();
    Fixture { _dir: dir, stores, warehouse, catalog }
}

/// Writes items `ids` into partition key `key`, one file per (key, year).
async fn write(f: &Fixture, key: &str, ids: std::ops::Range<u64>) -> Vec<WrittenFile> {
    let mut groups = Groups::new();
    for i in ids {
        let p = parse_item_value(&itslive_item(i)).unwrap();
        groups.extend(fan_out(p.row, &[key.to_string()]));
    }
    let namer = FileNamer::new(RunId::new(), "t");
    let mut written = Vec::new();
    for (part, group) in groups.into_sorted() {
        let options = WriterOptions::default();
        written.push(
            write_partition(&f.stores, &f.warehouse, &part, &group, &namer, &options)
                .await
                .unwrap(),
        );
    }
    written
}

async fn table(f: &Fixture) -> Table {
    f.catalog.load_table().await.unwrap().unwrap()
}

async fn append(f: &Fixture, files: &[WrittenFile]) -> Table {
    let t = table(f).await;
    f.catalog.register_written(&t, files).await.unwrap().0
}

async fn describe(f: &Fixture, files: &[WrittenFile]) -> Vec<iceberg::spec::DataFile> {
    let t = table(f).await;
    let mut out = Vec::new();
    for w in files {
        out.push(f.catalog.describe_file(&t, &w.location).await.unwrap());
    }
    out
}

async fn rows_at(table: &Table, snapshot: i64) -> usize {
    let scan = table.scan().snapshot_id(snapshot).select_all().build().unwrap();
    let batches: Vec<_> = scan.to_arrow().await.unwrap().try_collect().await.unwrap();
    batches.iter().map(|b| b.num_rows()).sum()
}

async fn manifest_count(table: &Table) -> usize {
    let snap = table.metadata().current_snapshot().unwrap();
    table.manifest_list_reader(snap).load().await.unwrap().entries().len()
}

fn uris(files: &[WrittenFile]) -> BTreeSet<String> {
    files.iter().map(|w| w.location.uri()).collect()
}

#[tokio::test]
async fn a_replace_swaps_files_in_one_snapshot_and_keeps_the_old_snapshot_readable() {
    let f = fixture().await;
    let mut old = Vec::new();
    for batch in 0..3u64 {
        let files = write(&f, "basin-a", batch * 10..batch * 10 + 10).await;
        append(&f, &files).await;
        old.extend(files);
    }
    let other = write(&f, "basin-b", 100..105).await;
    let before = append(&f, &other).await;
    let before_snapshot = before.metadata().current_snapshot_id().unwrap();
    assert_eq!(manifest_count(&before).await, 4);
    let merged = write(&f, "basin-a", 0..30).await;

    let replacement =
        Replacement { remove: uris(&old), add: describe(&f, &merged).await, ..Default::default() };
    let (after, summary) = f.catalog.replace(&replacement).await.unwrap();

    assert_eq!(summary.removed_files, old.len());
    assert_eq!(summary.removed_records, 30);
    assert_eq!(summary.added_files, merged.len());
    assert_eq!(summary.added_records, 30);
    let live: BTreeSet<String> =
        data_files(&after).await.unwrap().into_iter().map(|d| d.path).collect();
    let expected: BTreeSet<String> = uris(&merged).union(&uris(&other)).cloned().collect();
    assert_eq!(live, expected);
    // Every surviving entry sits in one merged manifest now, and the removed files' entries in
    // one of their own, which a scan's partition filter can skip without decoding it.
    let snap = after.metadata().current_snapshot().unwrap();
    let list = after.manifest_list_reader(snap).load().await.unwrap();
    let counts: Vec<(u32, u32, u32)> = list
        .entries()
        .iter()
        .map(|m| {
            let n = |c: Option<u32>| c.unwrap_or(0);
            (n(m.added_files_count), n(m.existing_files_count), n(m.deleted_files_count))
        })
        .collect();
    let live = (merged.len() + other.len()) as u32;
    assert_eq!(counts, [(merged.len() as u32, other.len() as u32, 0), (0, 0, old.len() as u32)]);
    assert_eq!(counts[0].0 + counts[0].1, live);

    let last = snapshots(&after).pop().unwrap();
    assert_eq!(last.operation, "replace");
    assert_eq!(last.parent_id, Some(before_snapshot));
    assert_eq!(last.summary["deleted-data-files"], old.len().to_string());
    assert_eq!(last.summary["added-data-files"], merged.len().to_string());
    assert_eq!(last.summary["total-records"], "35");
    assert_eq!(last.summary["total-data-files"], expected.len().to_string());

    // Readers see the new rows now and the old ones by time travel.
    assert_eq!(rows_at(&after, summary.snapshot_id.unwrap()).await, 35);
    assert_eq!(rows_at(&after, before_snapshot).await, 35);
    let old_files = after.metadata().snapshot_by_id(before_snapshot).unwrap().manifest_list();
    assert!(!old_files.is_empty());
}

#[tokio::test]
async fn a_replace_of_files_no_longer_live_is_refused_and_changes_nothing() {
    let f = fixture().await;
    let old = write(&f, "basin-a", 0..10).await;
    append(&f, &old).await;
    let first = write(&f, "basin-a", 0..10).await;
    let second = write(&f, "basin-a", 0..10).await;
    let remove = uris(&old);
    let winner = Replacement {
        remove: remove.clone(),
        add: describe(&f, &first).await,
        ..Default::default()
    };
    let loser = Replacement { remove, add: describe(&f, &second).await, ..Default::default() };
    let (after_first, _) = f.catalog.replace(&winner).await.unwrap();
    let snapshot = after_first.metadata().current_snapshot_id();

    let err = f.catalog.replace(&loser).await.unwrap_err();
    assert!(
        matches!(err, ReplaceError::NotLive { ref paths } if paths.len() == old.len()),
        "{err}"
    );
    assert!(err.to_string().contains(&old[0].location.uri()), "{err}");
    let now = table(&f).await;
    assert_eq!(now.metadata().current_snapshot_id(), snapshot);
    let live: BTreeSet<String> =
        data_files(&now).await.unwrap().into_iter().map(|d| d.path).collect();
    assert_eq!(live, uris(&first));
}

#[tokio::test]
async fn properties_set_in_a_replace_land_with_it_and_others_survive() {
    let f = fixture().await;
    let old = write(&f, "basin-a", 0..5).await;
    append(&f, &old).await;
    let props_before = table(&f).await.metadata().properties().clone();
    let new = write(&f, "basin-a", 0..5).await;
    let replacement = Replacement {
        remove: uris(&old),
        add: describe(&f, &new).await,
        set_properties: [("earthcatalog.test".to_string(), "yes".to_string())].into(),
        ..Default::default()
    };
    let (after, _) = f.catalog.replace(&replacement).await.unwrap();
    let props = after.metadata().properties();
    assert_eq!(props.get("earthcatalog.test").map(String::as_str), Some("yes"));
    for (k, v) in &props_before {
        assert_eq!(props.get(k), Some(v), "{k}");
    }
}

#[tokio::test]
async fn expiry_keeps_only_as_many_old_metadata_files_as_the_table_property_allows() {
    use earthcatalog_common::maintenance::expire::{ExpirePolicy, expire_snapshots};
    let f = fixture().await;
    let t = table(&f).await;
    let tx = iceberg::transaction::Transaction::new(&t);
    let tx = tx
        .update_table_properties()
        .set("write.metadata.previous-versions-max".into(), "2".into())
        .apply(tx)
        .unwrap();
    tx.commit(f.catalog.sql()).await.unwrap();
    for n in 0..5u64 {
        let files = write(&f, "basin-a", n * 3..n * 3 + 3).await;
        append(&f, &files).await;
    }
    let metadata_dir = f.warehouse.join("earthcatalog/stac_items/metadata");
    let json = |all: Vec<Location>| -> Vec<String> {
        all.iter().map(Location::uri).filter(|u| u.ends_with(".metadata.json")).collect()
    };
    let before = json(f.stores.list(&metadata_dir).await.unwrap());
    assert!(before.len() >= 7, "{before:?}");

    let policy =
        ExpirePolicy { cutoff_ms: chrono::Utc::now().timestamp_millis() + 1, retain_last: 1 };
    let outcome = expire_snapshots(&f.catalog, &policy, false).await.unwrap();
    assert_eq!(outcome.expired_snapshots.len(), 4);
    let after = json(f.stores.list(&metadata_dir).await.unwrap());
    assert_eq!(after.len(), 3, "the current file and two before it: {after:?}");
    assert_eq!(outcome.metadata_files.len() + after.len(), before.len() + 1);
    let current = table(&f).await;
    assert!(after.contains(&current.metadata_location().unwrap().to_string()));
    assert_eq!(rows_at(&current, current.metadata().current_snapshot_id().unwrap()).await, 15);
}
