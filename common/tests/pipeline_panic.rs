//! An item whose task panics (a bug) is still a listed failure that a retry can take again.

use std::sync::Arc;

use earthcatalog_common::location::Location;
use earthcatalog_common::partition::{CoverError, GridSpec, Partitioner};
use earthcatalog_common::pipeline::{DataPath, DataPathOptions, ObjectKey};
use earthcatalog_common::sample::itslive_item;
use earthcatalog_common::stores::{S3Settings, Stores};
use geo_types::Geometry;

/// A partitioner with a bug: it panics on every footprint.
#[derive(Debug)]
struct Panics;

impl Partitioner for Panics {
    fn cells(&self, _geometry: &Geometry<f64>) -> Result<Vec<String>, CoverError> {
        panic!("a bug in the cover");
    }

    fn grid(&self) -> GridSpec {
        GridSpec::default()
    }
}

#[tokio::test]
async fn an_item_whose_task_panics_is_listed_with_its_bucket_and_key() {
    let mirror = Location::parse("memory://panic/items").unwrap();
    let stores = Stores::new(S3Settings::default()).with_source("its-live-data", mirror.clone());
    let body = serde_json::to_vec(&itslive_item(7)).unwrap();
    stores.put(&mirror.join("a/item.stac.json"), body).await.unwrap();
    let data_path = DataPath::new(Arc::new(stores), Arc::new(Panics), DataPathOptions::default());

    let collected =
        data_path.collect(vec![ObjectKey::new("its-live-data", "a/item.stac.json")]).await;

    assert_eq!(collected.items, 0);
    assert_eq!(collected.failures.len(), 1);
    let f = &collected.failures[0];
    assert_eq!((f.bucket.as_str(), f.key.as_str()), ("its-live-data", "a/item.stac.json"));
    assert_eq!(f.kind, "internal");
    assert!(f.reason.contains("panicked"), "{}", f.reason);
}
