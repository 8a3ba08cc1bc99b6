//! Best-effort deletion of objects nothing will register: a failed write's partial output, a
//! refused attempt's files, a finished run's staging. A leftover is logged, never fatal, because
//! every such name is unique to its attempt and no catalog points at it.

use futures::StreamExt;
use object_store::ObjectStoreExt;

use crate::location::Location;
use crate::stores::Stores;

/// Deletions in flight at once (S3 DELETE latency dominates; 16 keeps one client busy).
const CONCURRENT_DELETES: usize = 16;

/// Why one object could not be deleted.
#[derive(Debug, thiserror::Error)]
#[error("cannot delete {location}: {reason}")]
pub struct DeleteError {
    /// The object.
    pub location: String,
    /// The store's (or the resolver's) message.
    pub reason: String,
}

/// Deletes `locations` (one already gone counts as deleted); each failure is logged as a
/// warning saying `what` the objects were. Returns how many could not be deleted.
pub async fn delete_objects(stores: &Stores, locations: &[Location], what: &str) -> usize {
    // Owned items: a stream of borrowed ones makes the future not `Send` for every lifetime,
    // which callers inside spawned tasks need.
    let failures: Vec<DeleteError> = futures::stream::iter(locations.iter().cloned())
        .map(|location| async move { delete_object(stores, &location).await })
        .buffer_unordered(CONCURRENT_DELETES)
        .filter_map(|r| std::future::ready(r.err()))
        .collect()
        .await;
    for e in &failures {
        tracing::warn!(object = %e.location, error = %e.reason, "could not delete {what}");
    }
    failures.len()
}

/// Deletes the object at `location`; one already gone counts as deleted.
pub async fn delete_object(stores: &Stores, location: &Location) -> Result<(), DeleteError> {
    let fail = |reason: String| DeleteError { location: location.to_string(), reason };
    let target = stores.resolve(location).map_err(|e| fail(e.to_string()))?;
    match target.store.delete(&target.path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(fail(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stores::S3Settings;
    use object_store::PutPayload;

    #[tokio::test]
    async fn deleting_removes_present_objects_and_accepts_missing_ones() {
        let stores = Stores::new(S3Settings::default());
        let dir = Location::parse("memory://cleanup/run").unwrap();
        let present = [dir.join("a.parquet"), dir.join("b/c.parquet")];
        for l in &present {
            let t = stores.resolve(l).unwrap();
            t.store.put(&t.path, PutPayload::from_static(b"x")).await.unwrap();
        }
        let mut all = present.to_vec();
        all.push(dir.join("never-written.parquet"));
        assert_eq!(delete_objects(&stores, &all, "test outputs").await, 0);
        for l in &present {
            let t = stores.resolve(l).unwrap();
            assert!(t.store.head(&t.path).await.is_err(), "{l} still there");
        }
    }
}
