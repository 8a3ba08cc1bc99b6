//! Two copies of one item id in a batch: with `newest_copy_only` (the incremental pipeline) only
//! the rows of the copy with the newest `updated` are kept, whichever is listed first, and the
//! other copies are counted; without it (backfill, whose compaction dedups) every copy is kept.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::Arc;

use earthcatalog_common::location::Location;
use earthcatalog_common::partition::{H3Partitioner, Partitioner};
use earthcatalog_common::pipeline::{Collected, DataPath, DataPathOptions, ObjectKey};
use earthcatalog_common::sample::itslive_item;
use earthcatalog_common::stac::parse_item_value;
use earthcatalog_common::stores::{S3Settings, Stores};
use object_store::ObjectStoreExt;
use serde_json::Value;

/// A copy of sample 1 updated at `updated`, its footprint a small square at longitude `lon`
/// (copies 60° apart share no H3 cell at resolution 1).
fn copy(lon: f64, updated: &str) -> Value {
    let mut item = itslive_item(1);
    let (w, e, s, n) = (lon, lon + 0.5, 10.0, 10.5);
    item["geometry"] = serde_json::json!({"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]});
    item["bbox"] = serde_json::json!([w, s, e, n]);
    item["properties"]["updated"] = Value::from(updated);
    item
}

/// (id, cell) of every row the item gets at H3 resolution 1.
fn rows_of(item: &Value) -> BTreeSet<(String, String)> {
    let parsed = parse_item_value(item).unwrap();
    let cells = H3Partitioner::new(1).unwrap().cells(&parsed.geometry).unwrap();
    cells.into_iter().map(|c| (parsed.row.id().to_string(), c)).collect()
}

/// Collects `items` (listed in this order) with or without `newest_copy_only`.
async fn collect(items: &[Value], newest_copy_only: bool) -> Collected {
    let stores = Arc::new(
        Stores::new(S3Settings::default())
            .with_source("src", Location::parse("memory://duplicates").unwrap()),
    );
    let mut keys = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let key = format!("copy{i}.stac.json");
        let o = stores.resolve_source("src", &key).unwrap();
        o.store.put(&o.path, serde_json::to_vec(item).unwrap().into()).await.unwrap();
        keys.push(ObjectKey::new("src", key));
    }
    let options = DataPathOptions { newest_copy_only, ..DataPathOptions::default() };
    let path = DataPath::new(stores, Arc::new(H3Partitioner::new(1).unwrap()), options);
    path.collect(keys).await
}

/// (id, cell, updated in microseconds) of every collected row.
fn collected_rows(collected: Collected) -> BTreeSet<(String, String, Option<i64>)> {
    let mut out = BTreeSet::new();
    for (_, rows) in collected.groups.into_sorted() {
        for r in rows {
            out.insert((r.item.id().to_string(), r.cell.to_string(), r.item.updated_micros()));
        }
    }
    out
}

fn with_updated(
    rows: BTreeSet<(String, String)>,
    item: &Value,
) -> BTreeSet<(String, String, Option<i64>)> {
    let updated = parse_item_value(item).unwrap().row.updated_micros();
    rows.into_iter().map(|(id, cell)| (id, cell, updated)).collect()
}

#[tokio::test]
async fn only_the_rows_of_the_newest_copy_are_kept_wherever_it_is_listed() {
    // Footprints far apart, so that keeping a row of the wrong copy shows as a wrong cell.
    let old = copy(0.0, "2020-01-01T00:00:00Z");
    let new = copy(60.0, "2024-06-01T00:00:00Z");
    let older = copy(120.0, "2019-01-01T00:00:00Z");
    assert!(rows_of(&old).is_disjoint(&rows_of(&new)), "the copies must differ in cells");
    let want = with_updated(rows_of(&new), &new);

    for listed in [
        vec![old.clone(), new.clone(), older.clone()],
        vec![new.clone(), old.clone(), older.clone()],
        vec![older.clone(), old.clone(), new.clone()],
    ] {
        let collected = collect(&listed, true).await;
        assert_eq!((collected.items, collected.duplicates_dropped), (1, 2));
        assert_eq!(collected_rows(collected), want);
    }
}

#[tokio::test]
async fn copies_updated_at_the_same_time_keep_the_one_listed_last() {
    let first = copy(0.0, "2024-06-01T00:00:00Z");
    let last = copy(60.0, "2024-06-01T00:00:00Z");
    let collected = collect(&[first, last.clone()], true).await;
    assert_eq!(collected.duplicates_dropped, 1);
    assert_eq!(collected_rows(collected), with_updated(rows_of(&last), &last));
}

#[tokio::test]
async fn without_newest_copy_only_every_copy_is_collected() {
    let old = copy(0.0, "2020-01-01T00:00:00Z");
    let new = copy(60.0, "2024-06-01T00:00:00Z");
    let collected = collect(&[old.clone(), new.clone()], false).await;
    assert_eq!((collected.items, collected.duplicates_dropped), (2, 0));
    let mut want = with_updated(rows_of(&old), &old);
    want.extend(with_updated(rows_of(&new), &new));
    assert_eq!(collected_rows(collected), want);
}
