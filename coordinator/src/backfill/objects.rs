//! Whole-object reads, writes, listings and deletions the driver needs (small JSON state files,
//! folder cleanup), with errors that name the object.

use anyhow::Context;
use earthcatalog_common::cleanup::delete_objects;
use earthcatalog_common::location::Location;
use earthcatalog_common::stores::Stores;
use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt};

/// Writes `bytes` at `location`.
pub async fn put(stores: &Stores, location: &Location, bytes: Vec<u8>) -> anyhow::Result<()> {
    let o = stores.resolve(location)?;
    o.store.put(&o.path, bytes.into()).await.with_context(|| format!("writing {location}"))?;
    Ok(())
}

/// The object at `location`, or `None`.
pub async fn get(stores: &Stores, location: &Location) -> anyhow::Result<Option<Vec<u8>>> {
    let o = stores.resolve(location)?;
    let read = async { o.store.get(&o.path).await?.bytes().await };
    match read.await {
        Ok(b) => Ok(Some(b.to_vec())),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {location}")),
    }
}

/// Every object under the folder `location`, as locations.
pub async fn list(stores: &Stores, location: &Location) -> anyhow::Result<Vec<Location>> {
    let o = stores.resolve(location)?;
    let store: &dyn ObjectStore = o.store.as_ref();
    let metas: Vec<_> = match store.list(Some(&o.path)).try_collect().await {
        Ok(m) => m,
        Err(object_store::Error::NotFound { .. }) => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("listing {location}")),
    };
    let base = o.path.as_ref().to_string();
    Ok(metas
        .into_iter()
        .filter_map(|m| {
            let full = m.location.as_ref().to_string();
            let rel = full.strip_prefix(&base)?.trim_start_matches('/').to_string();
            Some(location.join(&rel))
        })
        .collect())
}

/// Deletes everything under the folder `location`; returns how many objects went.
pub async fn delete_folder(stores: &Stores, location: &Location) -> anyhow::Result<usize> {
    let all = list(stores, location).await?;
    let failed = delete_objects(stores, &all, "a staging object").await;
    Ok(all.len() - failed)
}
