//! A chunk's rows are made a bounded batch at a time: whole items, at most the budget's rows and
//! (cell, year) partitions per batch (an item alone over the budget comes alone), every item
//! exactly once, and the same rows as making them all at once.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::Arc;

use earthcatalog_common::location::Location;
use earthcatalog_common::partition::H3Partitioner;
use earthcatalog_common::pipeline::{DataPath, DataPathOptions, ObjectKey};
use earthcatalog_common::sample::itslive_item;
use earthcatalog_common::stores::{S3Settings, Stores};
use object_store::ObjectStoreExt;

/// Sample items, every third one a band round the globe (hundreds of rows at resolution 2).
async fn data_path() -> (DataPath, Vec<ObjectKey>) {
    let stores = Arc::new(
        Stores::new(S3Settings::default())
            .with_source("src", Location::parse("memory://row-budget").unwrap()),
    );
    let mut keys = Vec::new();
    for i in 0..12u64 {
        let mut item = itslive_item(i);
        if i % 3 == 0 {
            let (s, n) = (-20.0 + i as f64, 10.0 + i as f64);
            let ring: Vec<[f64; 2]> = [-180.0, -90.0, 0.0, 90.0, 180.0]
                .iter()
                .map(|&x| [x, s])
                .chain([180.0, 90.0, 0.0, -90.0, -180.0].iter().map(|&x| [x, n]))
                .chain([[-180.0, s]])
                .collect();
            item["geometry"] = serde_json::json!({"type": "Polygon", "coordinates": [ring]});
            item["bbox"] = serde_json::json!([-180.0, s, 180.0, n]);
        }
        let key = format!("item{i}.stac.json");
        let o = stores.resolve_source("src", &key).unwrap();
        o.store.put(&o.path, serde_json::to_vec(&item).unwrap().into()).await.unwrap();
        keys.push(ObjectKey::new("src", key));
    }
    let path = DataPath::new(
        stores,
        Arc::new(H3Partitioner::new(2).unwrap()),
        DataPathOptions { newest_copy_only: true, ..DataPathOptions::default() },
    );
    (path, keys)
}

/// Takes every batch within `budget`; checks each and returns the rows and the batch count.
async fn batches(budget: usize) -> (BTreeSet<(String, String)>, BTreeSet<(String, String)>, usize) {
    let (path, keys) = data_path().await;
    let mut all = BTreeSet::new();
    for (_, rows) in path.collect(keys.clone()).await.groups.into_sorted() {
        all.extend(rows.iter().map(|r| (r.item.id().to_string(), r.cell.to_string())));
    }
    let mut loaded = path.load(keys).await;
    assert_eq!(loaded.items, 12);
    let (mut batched, mut ids_seen, mut count) = (BTreeSet::new(), BTreeSet::new(), 0);
    while let Some(groups) = loaded.next_groups(budget) {
        count += 1;
        let mut ids = BTreeSet::new();
        let rows = groups.row_count();
        for (_, rows) in groups.into_sorted() {
            for r in rows {
                ids.insert(r.item.id().to_string());
                assert!(batched.insert((r.item.id().to_string(), r.cell.to_string())));
            }
        }
        assert!(rows <= budget || ids.len() == 1, "batch {count}: {rows} rows of {ids:?}");
        assert!(ids.is_disjoint(&ids_seen), "an item's rows are all in one batch");
        ids_seen.extend(ids);
    }
    assert_eq!(ids_seen.len(), 12);
    (all, batched, count)
}

#[tokio::test]
async fn batches_hold_whole_items_within_the_row_budget_and_together_all_the_rows() {
    let (all, batched, count) = batches(300).await;
    assert_eq!(batched, all);
    assert!(count > 3, "{count} batches for {} rows", all.len());
    let (_, _, one) = batches(usize::MAX).await;
    assert_eq!(one, 1, "without a budget the chunk is one batch");
}

#[tokio::test]
async fn groups_split_by_files_put_each_partition_in_exactly_one_part() {
    let (path, keys) = data_path().await;
    let groups = path.collect(keys).await.groups;
    let (rows, partitions) = (groups.row_count(), groups.partitions().len());
    let parts = groups.split(100);
    assert_eq!(parts.len(), partitions.div_ceil(100));
    assert!(parts.iter().all(|p| p.len() <= 100));
    assert_eq!(parts.iter().map(|p| p.row_count()).sum::<usize>(), rows);
    let mut seen = BTreeSet::new();
    for p in &parts {
        for k in p.partitions() {
            assert!(seen.insert(k.to_string()), "{k} in two parts");
        }
    }
    assert_eq!(seen.len(), partitions);
}
