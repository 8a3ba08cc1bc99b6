//! Helpers shared by the backfill tests: a source bucket in memory holding sample items,
//! inventories, a data path, and readers of what the phases wrote.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use earthcatalog_common::fetch::RetryPolicy;
use earthcatalog_common::location::Location;
use earthcatalog_common::partition::H3Partitioner;
use earthcatalog_common::pipeline::{DataPath, DataPathOptions};
use earthcatalog_common::sample::{itslive_item, itslive_key};
use earthcatalog_common::stores::{S3Settings, Stores};
use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

/// The bucket inventories name; its objects are read from `memory://source`.
pub const BUCKET: &str = "its-live-data";

/// Stores whose source bucket is the memory store `source`.
pub fn stores() -> Arc<Stores> {
    Arc::new(
        Stores::new(S3Settings::default())
            .with_source(BUCKET, Location::parse("memory://source").unwrap()),
    )
}

/// Writes `bytes` at `location`.
pub async fn put(stores: &Stores, location: &Location, bytes: impl Into<Vec<u8>>) {
    let t = stores.resolve(location).unwrap();
    t.store.put(&t.path, PutPayload::from(bytes.into())).await.unwrap();
}

/// Deletes the object at `location`.
pub async fn delete(stores: &Stores, location: &Location) {
    let t = stores.resolve(location).unwrap();
    t.store.delete(&t.path).await.unwrap();
}

/// Whether an object exists at `location`.
pub async fn exists(stores: &Stores, location: &Location) -> bool {
    let t = stores.resolve(location).unwrap();
    t.store.head(&t.path).await.is_ok()
}

/// The text of the object at `location`.
pub async fn text(stores: &Stores, location: &Location) -> String {
    let t = stores.resolve(location).unwrap();
    let bytes = t.store.get(&t.path).await.unwrap().bytes().await.unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// The ETag of every object under `folder`, by file name (a put always changes it).
pub async fn etags(stores: &Stores, folder: &Location) -> BTreeMap<String, String> {
    let t = stores.resolve(folder).unwrap();
    let store: &dyn ObjectStore = t.store.as_ref();
    let metas: Vec<_> = store.list(Some(&t.path)).try_collect().await.unwrap();
    metas
        .into_iter()
        .map(|m| (m.location.filename().unwrap().to_string(), m.e_tag.unwrap()))
        .collect()
}

/// Puts sample items `range` into the source bucket; returns their keys.
pub async fn put_items(stores: &Stores, range: std::ops::Range<u64>) -> Vec<String> {
    let mut keys = Vec::new();
    for i in range {
        let key = itslive_key(i);
        put_item(stores, &key, &itslive_item(i)).await;
        keys.push(key);
    }
    keys
}

/// Puts one item JSON at `key` of the source bucket.
pub async fn put_item(stores: &Stores, key: &str, item: &serde_json::Value) {
    let at = stores.source_location(BUCKET, key);
    put(stores, &at, serde_json::to_vec(item).unwrap()).await;
}

/// Writes a CSV inventory with a header listing `keys` of [`BUCKET`].
pub async fn csv_inventory(stores: &Stores, location: &Location, keys: &[String]) {
    let mut csv = String::from("bucket,key\n");
    for k in keys {
        csv.push_str(&format!("{BUCKET},{k}\n"));
    }
    put(stores, location, csv).await;
}

/// The data path of the tests: H3 resolution 1, one fetch attempt (nothing here is flaky).
pub fn data_path(stores: &Arc<Stores>) -> DataPath {
    let options = DataPathOptions {
        fetch_concurrency: 8,
        retry: RetryPolicy {
            attempts: 1,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(1),
        },
        ..DataPathOptions::default()
    };
    DataPath::new(stores.clone(), Arc::new(H3Partitioner::new(1).unwrap()), options)
}
