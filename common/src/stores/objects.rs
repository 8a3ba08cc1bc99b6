//! Whole-object operations addressed by [`Location`]: read, write, list, delete. Every caller
//! that moves a whole object (state files, results, failure lists, cleanup) goes through these,
//! so each failure names its object and keeps the store's error as its source.

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::{StoreError, Stores};
use crate::location::Location;

/// Folders listed and emptied at once by [`Stores::delete_folders`].
const FOLDERS_AT_ONCE: usize = 32;

/// What was being done to an object when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectOp {
    /// Reading it.
    Read,
    /// Writing it unconditionally.
    Write,
    /// Writing it only if absent.
    Create,
    /// Writing it only if unchanged since a version was read.
    Replace,
    /// Listing the folder it names.
    List,
    /// Deleting it.
    Delete,
}

impl std::fmt::Display for ObjectOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ObjectOp::Read => "read",
            ObjectOp::Write => "write",
            ObjectOp::Create => "create",
            ObjectOp::Replace => "replace",
            ObjectOp::List => "list",
            ObjectOp::Delete => "delete",
        })
    }
}

/// Why an object operation failed; every variant names the object.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// The location could not be resolved to a store.
    #[error("cannot open {location}: {source}")]
    Resolve {
        /// The object.
        location: Location,
        /// The resolver's error.
        source: Box<StoreError>,
    },
    /// A create found the object already there.
    #[error("{location} already exists")]
    Exists {
        /// The object.
        location: Location,
    },
    /// A replace found the object changed (or gone) since the version it expected.
    #[error("{location} changed since version {expected} was read")]
    Changed {
        /// The object.
        location: Location,
        /// The ETag the caller expected.
        expected: String,
    },
    /// The store answered a write without an ETag, so the object cannot be replaced safely later.
    #[error("{location}: the store returned no ETag, so conditional writes are impossible")]
    NoETag {
        /// The object.
        location: Location,
    },
    /// The advisory lock guarding a local object could not be taken.
    #[error("cannot lock {path} (guards {location}): {source}")]
    LocalLock {
        /// The sidecar lock file.
        path: std::path::PathBuf,
        /// The object it guards.
        location: Location,
        /// The OS error.
        source: std::io::Error,
    },
    /// The store refused or failed the operation.
    #[error("cannot {op} {location}: {source}")]
    Store {
        /// What was being done.
        op: ObjectOp,
        /// The object (or folder, for a listing).
        location: Location,
        /// The store's error.
        source: Box<object_store::Error>,
    },
}

impl ObjectError {
    /// Whether trying again may succeed (store and network errors may; bad locations will not).
    pub fn is_retryable(&self) -> bool {
        !matches!(self, ObjectError::Resolve { .. })
    }

    pub(super) fn store(op: ObjectOp, location: &Location, source: object_store::Error) -> Self {
        ObjectError::Store { op, location: location.clone(), source: Box::new(source) }
    }
}

/// An object found by a listing.
#[derive(Debug, Clone)]
pub struct ListedObject {
    /// Where it is.
    pub location: Location,
    /// When it was last written.
    pub last_modified: chrono::DateTime<chrono::Utc>,
}

impl Stores {
    /// The store and path of `location`, as an [`ObjectError`] naming it when that fails.
    pub(super) fn open(&self, location: &Location) -> Result<super::ObjectLocation, ObjectError> {
        self.resolve(location).map_err(|source| ObjectError::Resolve {
            location: location.clone(),
            source: Box::new(source),
        })
    }

    /// The object at `location`, or `None` if there is none.
    pub async fn get(&self, location: &Location) -> Result<Option<Bytes>, ObjectError> {
        let target = self.open(location)?;
        let read = async { target.store.get(&target.path).await?.bytes().await };
        match read.await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(ObjectError::store(ObjectOp::Read, location, source)),
        }
    }

    /// The store and path of the object at `location` with its metadata (size, ETag), or
    /// `None` if there is none: for ranged reads that need the size first.
    pub async fn head(
        &self,
        location: &Location,
    ) -> Result<Option<(super::ObjectLocation, object_store::ObjectMeta)>, ObjectError> {
        let target = self.open(location)?;
        match target.store.head(&target.path).await {
            Ok(meta) => Ok(Some((target, meta))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(ObjectError::store(ObjectOp::Read, location, source)),
        }
    }

    /// Writes `bytes` as the object at `location`, replacing any object there.
    pub async fn put(
        &self,
        location: &Location,
        bytes: impl Into<Bytes>,
    ) -> Result<(), ObjectError> {
        let target = self.open(location)?;
        target
            .store
            .put(&target.path, PutPayload::from(bytes.into()))
            .await
            .map_err(|source| ObjectError::store(ObjectOp::Write, location, source))?;
        Ok(())
    }

    /// Every object under the folder `folder` (at any depth), as locations; none when the
    /// folder does not exist.
    pub async fn list(&self, folder: &Location) -> Result<Vec<Location>, ObjectError> {
        Ok(self.list_listed(folder).await?.into_iter().map(|o| o.location).collect())
    }

    /// Every object under the folder `folder` (at any depth), with when it was last written;
    /// none when the folder does not exist.
    pub async fn list_listed(&self, folder: &Location) -> Result<Vec<ListedObject>, ObjectError> {
        let target = self.open(folder)?;
        let store: &dyn ObjectStore = target.store.as_ref();
        let metas: Vec<_> = match store.list(Some(&target.path)).try_collect().await {
            Ok(m) => m,
            Err(object_store::Error::NotFound { .. }) => Vec::new(),
            Err(source) => return Err(ObjectError::store(ObjectOp::List, folder, source)),
        };
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                let location = below(folder, &target.path, &m.location)?;
                Some(ListedObject { location, last_modified: m.last_modified })
            })
            .collect())
    }

    /// The folders directly under `folder` (one listing by delimiter); none when it does not
    /// exist.
    pub async fn subfolders(&self, folder: &Location) -> Result<Vec<Location>, ObjectError> {
        let target = self.open(folder)?;
        let listed = match target.store.list_with_delimiter(Some(&target.path)).await {
            Ok(listed) => listed.common_prefixes,
            Err(object_store::Error::NotFound { .. }) => Vec::new(),
            Err(source) => return Err(ObjectError::store(ObjectOp::List, folder, source)),
        };
        Ok(listed.iter().filter_map(|p| below(folder, &target.path, p)).collect())
    }

    /// Deletes the object at `location`; one already gone counts as deleted.
    pub async fn delete(&self, location: &Location) -> Result<(), ObjectError> {
        let target = self.open(location)?;
        match target.store.delete(&target.path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(ObjectError::store(ObjectOp::Delete, location, source)),
        }
    }

    /// Deletes `locations`, best effort: for objects nothing will register (a failed write's
    /// output, a refused attempt's files, finished staging), where a leftover is harmless
    /// because its name is unique to its attempt. Each failure is logged as a warning saying
    /// `what` the objects were; returns how many deletions failed (a bulk request that failed as
    /// a whole counts once).
    pub async fn delete_all(&self, locations: &[Location], what: &str) -> usize {
        let mut failed = 0;
        // Grouped by client, so that each store deletes in bulk where it can: S3 takes 1,000 keys
        // per DeleteObjects request, where one request per object made cleaning a large staging
        // folder take minutes at S3's latency.
        let mut by_store: Vec<(std::sync::Arc<dyn ObjectStore>, Vec<object_store::path::Path>)> =
            Vec::new();
        for location in locations {
            let target = match self.open(location) {
                Ok(target) => target,
                Err(e) => {
                    tracing::warn!(error = %e, "could not delete {what}");
                    failed += 1;
                    continue;
                }
            };
            let same = |s: &std::sync::Arc<dyn ObjectStore>| {
                std::ptr::addr_eq(std::sync::Arc::as_ptr(s), std::sync::Arc::as_ptr(&target.store))
            };
            match by_store.iter_mut().find(|(s, _)| same(s)) {
                Some((_, paths)) => paths.push(target.path),
                None => by_store.push((target.store, vec![target.path])),
            }
        }
        for (store, paths) in by_store {
            let results: Vec<_> = store
                .delete_stream(futures::stream::iter(paths.into_iter().map(Ok)).boxed())
                .collect()
                .await;
            for result in results {
                match result {
                    Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => {
                        // The store's error names the key it could not delete.
                        tracing::warn!(error = %e, "could not delete {what}");
                        failed += 1;
                    }
                }
            }
        }
        failed
    }

    /// Deletes everything under each of `folders`, many folders at once (best effort, as
    /// [`Stores::delete_all`]); returns how many objects went. A listing is one page of 1,000
    /// keys after another, so a folder of millions of objects (a backfill's staged files) is
    /// emptied much sooner by its subfolders at once than as one folder.
    pub async fn delete_folders(
        &self,
        folders: &[Location],
        what: &str,
    ) -> Result<usize, ObjectError> {
        let counts: Vec<usize> = futures::stream::iter(folders)
            .map(|folder| self.delete_folder(folder, what))
            .buffer_unordered(FOLDERS_AT_ONCE)
            .try_collect()
            .await?;
        Ok(counts.into_iter().sum())
    }

    /// Deletes everything under the folder `folder` (best effort, as [`Stores::delete_all`]);
    /// returns how many objects went.
    pub async fn delete_folder(&self, folder: &Location, what: &str) -> Result<usize, ObjectError> {
        let all = self.list(folder).await?;
        let failed = self.delete_all(&all, what).await;
        Ok(all.len() - failed)
    }
}

/// The location of `listed`, a path the store listed under `base` (the store's path of
/// `folder`); `None` for `base` itself or a path outside it.
fn below(
    folder: &Location,
    base: &object_store::path::Path,
    listed: &object_store::path::Path,
) -> Option<Location> {
    let rel = listed.as_ref().strip_prefix(base.as_ref())?.trim_start_matches('/');
    (!rel.is_empty()).then(|| folder.join(rel))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stores::S3Settings;

    #[tokio::test]
    async fn missing_objects_read_as_none_and_delete_as_done() {
        let stores = Stores::new(S3Settings::default());
        let at = Location::parse("memory://objects/none.json").unwrap();
        assert!(stores.get(&at).await.unwrap().is_none());
        stores.delete(&at).await.unwrap();
        assert!(
            stores
                .list(&Location::parse("memory://objects/nothing").unwrap())
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn deleting_objects_of_several_stores_takes_each_and_counts_no_missing_one_as_failed() {
        let stores = Stores::new(S3Settings::default());
        let dir = tempfile::tempdir().unwrap();
        let local = Location::parse(dir.path().to_str().unwrap()).unwrap();
        let present = [
            Location::parse("memory://objects-a/x/1.parquet").unwrap(),
            Location::parse("memory://objects-b/2.parquet").unwrap(),
            local.join("y/3.parquet"),
            local.join("4.parquet"),
        ];
        for l in &present {
            stores.put(l, Bytes::from_static(b"x")).await.unwrap();
        }
        let missing = [
            Location::parse("memory://objects-a/never.parquet").unwrap(),
            local.join("never.parquet"),
        ];
        let all: Vec<Location> = present.iter().chain(&missing).cloned().collect();
        assert_eq!(stores.delete_all(&all, "a test object").await, 0);
        for l in &present {
            assert!(stores.get(l).await.unwrap().is_none(), "{l} is still there");
        }
    }

    #[tokio::test]
    async fn subfolders_are_listed_one_level_deep_and_emptied_together() {
        let dir = tempfile::tempdir().unwrap();
        let local = Location::parse(dir.path().to_str().unwrap()).unwrap();
        for root in [Location::parse("memory://objects-sub/run").unwrap(), local] {
            let stores = Stores::new(S3Settings::default());
            let objects = [
                root.join("ingest/chunk_000001/attempt_7/a.parquet"),
                root.join("ingest/chunk_000001/attempt_7/b.parquet"),
                root.join("ingest/chunk_000002/attempt_9/c.parquet"),
                root.join("ingest/note.json"),
                root.join("results/1.json"),
            ];
            for l in &objects {
                stores.put(l, Bytes::from_static(b"x")).await.unwrap();
            }
            let mut chunks = stores.subfolders(&root.join("ingest")).await.unwrap();
            chunks.sort_by_key(|l| l.uri());
            assert_eq!(
                chunks,
                [root.join("ingest/chunk_000001"), root.join("ingest/chunk_000002")],
                "{root}"
            );
            assert_eq!(stores.delete_folders(&chunks, "a test object").await.unwrap(), 3);
            let mut left = stores.list(&root).await.unwrap();
            left.sort_by_key(|l| l.uri());
            assert_eq!(left, [objects[3].clone(), objects[4].clone()], "{root}");
            assert!(stores.subfolders(&root.join("nothing")).await.unwrap().is_empty());
        }
    }

    #[tokio::test]
    async fn a_folder_lists_every_object_below_it_and_deletes_whole() {
        let stores = Stores::new(S3Settings::default());
        let dir = Location::parse("memory://objects/run").unwrap();
        let present = [dir.join("a.parquet"), dir.join("b/c.parquet")];
        for l in &present {
            stores.put(l, Bytes::from_static(b"x")).await.unwrap();
        }
        let mut listed = stores.list(&dir).await.unwrap();
        listed.sort_by_key(Location::uri);
        assert_eq!(listed, present.to_vec());
        let mut all = present.to_vec();
        all.push(dir.join("never-written.parquet"));
        assert_eq!(stores.delete_all(&all, "test outputs").await, 0);
        assert!(stores.list(&dir).await.unwrap().is_empty());
        stores.put(&dir.join("d"), Bytes::from_static(b"y")).await.unwrap();
        assert_eq!(stores.delete_folder(&dir, "test outputs").await.unwrap(), 1);
        assert!(stores.get(&dir.join("d")).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_failed_read_names_the_object() {
        let stores = Stores::new(S3Settings::default());
        let err = stores.get(&Location::parse("/dev/null/x/y").unwrap()).await.unwrap_err();
        assert!(err.to_string().contains("/dev/null/x/y"), "{err}");
    }
}
