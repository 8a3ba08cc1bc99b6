//! Whole-object reads, writes, listings and deletions the driver needs (small JSON state files,
//! folder cleanup), with errors that name the object.

use anyhow::Context;
use earthcatalog_common::location::Location;
use earthcatalog_common::stores::Stores;
use futures::{StreamExt, TryStreamExt};
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

/// Deletes `locations` (missing ones are fine); returns how many deletions failed.
pub async fn delete_all(stores: &Stores, locations: &[Location]) -> usize {
    let deletions = futures::stream::iter(locations.iter().cloned())
        .map(|l| async move {
            let o = stores.resolve(&l).map_err(|e| e.to_string())?;
            match o.store.delete(&o.path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(format!("{l}: {e}")),
            }
        })
        .buffer_unordered(16);
    let errors: Vec<String> = deletions.filter_map(|r| async move { r.err() }).collect().await;
    for e in &errors {
        tracing::warn!(error = %e, "could not delete");
    }
    errors.len()
}

/// Deletes everything under the folder `location`.
pub async fn delete_folder(stores: &Stores, location: &Location) -> anyhow::Result<usize> {
    let all = list(stores, location).await?;
    let failed = delete_all(stores, &all).await;
    Ok(all.len() - failed)
}
