//! A footprint too large for the H3 resolution is an item failure naming the object and the
//! reason, while the other items of the batch become rows.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use earthcatalog_common::location::Location;
use earthcatalog_common::partition::{H3Partitioner, Partitioner};
use earthcatalog_common::pipeline::{DataPath, DataPathOptions, ObjectKey};
use earthcatalog_common::sample::itslive_item;
use earthcatalog_common::stac::parse_item_value;
use earthcatalog_common::stores::{S3Settings, Stores};
use object_store::ObjectStoreExt;

#[tokio::test]
async fn an_item_covering_too_many_cells_is_rejected_and_the_others_are_kept() {
    let stores = Arc::new(
        Stores::new(S3Settings::default())
            .with_source("src", Location::parse("memory://source").unwrap()),
    );
    // A 185 km ITS_LIVE footprint and a 20 m one; resolution 12 with a 10,000-cell limit.
    let big = itslive_item(1);
    let mut small = itslive_item(2);
    small["geometry"] = serde_json::json!({"type": "Polygon", "coordinates": [[
        [-45.0, 70.0], [-44.9995, 70.0], [-44.9995, 70.0002], [-45.0, 70.0002], [-45.0, 70.0]
    ]]});
    for (key, item) in [("big.json", &big), ("small.json", &small)] {
        let o = stores.resolve_source("src", key).unwrap();
        o.store.put(&o.path, serde_json::to_vec(item).unwrap().into()).await.unwrap();
    }
    let h3 = H3Partitioner::new(12).unwrap().with_max_cells(10_000);
    let path = DataPath::new(stores, Arc::new(h3), DataPathOptions::default());
    let collected = path
        .collect(vec![ObjectKey::new("src", "big.json"), ObjectKey::new("src", "small.json")])
        .await;

    assert_eq!(collected.items, 1);
    assert_eq!(collected.failures.len(), 1);
    let failure = &collected.failures[0];
    assert_eq!((failure.bucket.as_str(), failure.key.as_str()), ("src", "big.json"));
    assert!(
        failure.reason.contains("H3 cells at resolution 12, more than the limit of 10000"),
        "{failure:?}"
    );
    // The small item has one row per cell of its cover.
    let geometry = parse_item_value(&small).unwrap().geometry;
    let cells = h3.cells(&geometry).unwrap();
    assert!(!cells.is_empty());
    assert_eq!(collected.groups.row_count(), cells.len());
}
