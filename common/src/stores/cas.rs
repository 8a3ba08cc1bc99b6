//! Compare-and-swap writes of one object, the same on every backend.
//!
//! S3 and `InMemory` do it natively: create is `PutMode::Create` (`If-None-Match: *`), replace is
//! `PutMode::Update` with the ETag last seen (`If-Match`). `LocalFileSystem` has no `Update`, so
//! for local objects every create and replace runs while holding an exclusive OS advisory lock
//! (`flock`) on a sidecar file `<name>.cas-lock` beside the object: check the current ETag, then
//! write. Writers of the same file on one machine (threads or processes) therefore exclude each
//! other. The sidecar is never deleted, because deleting a lock file that another process has
//! open and is about to lock would let two processes each lock a different inode.
//!
//! Readers need no lock: a local write is a rename of a fully written staging file, so a reader
//! sees the old or the new object whole, with the ETag of what it read.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};

use super::Stores;
use super::objects::{ObjectError, ObjectOp};
use crate::location::Location;

/// One object that is only ever written conditionally.
#[derive(Debug, Clone)]
pub struct CasObject {
    location: Location,
    store: Arc<dyn ObjectStore>,
    path: Path,
    /// For local objects: the sidecar file whose `flock` serializes writers.
    local_guard: Option<PathBuf>,
}

/// An object's bytes and the ETag of exactly those bytes.
#[derive(Debug, Clone)]
pub struct Versioned {
    /// The content.
    pub bytes: Bytes,
    /// The ETag to pass to [`CasObject::replace`].
    pub e_tag: String,
}

impl CasObject {
    /// The object at `location`.
    pub fn resolve(stores: &Stores, location: &Location) -> Result<Self, ObjectError> {
        let resolved = stores.open(location)?;
        let local_guard = location.as_local_path().map(|p| {
            let mut name = p.file_name().map(|n| n.to_os_string()).unwrap_or_default();
            name.push(".cas-lock");
            p.with_file_name(name)
        });
        Ok(CasObject {
            location: location.clone(),
            store: resolved.store,
            path: resolved.path,
            local_guard,
        })
    }

    /// The object's location.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The current content and ETag, or `None` when the object does not exist.
    pub async fn read(&self) -> Result<Option<Versioned>, ObjectError> {
        let got = match self.store.get(&self.path).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(source) => return Err(self.store_error(ObjectOp::Read, source)),
        };
        let e_tag = got.meta.e_tag.clone().ok_or_else(|| self.no_etag())?;
        let bytes = got.bytes().await.map_err(|source| self.store_error(ObjectOp::Read, source))?;
        Ok(Some(Versioned { bytes, e_tag }))
    }

    /// Writes `bytes` only if the object does not exist; returns the new ETag.
    pub async fn create(&self, bytes: Bytes) -> Result<String, ObjectError> {
        let _guard = self.lock_local().await?;
        self.put(bytes, PutMode::Create, ObjectOp::Create).await
    }

    /// Writes `bytes` only if the object's ETag is still `expected`; returns the new ETag.
    pub async fn replace(&self, expected: &str, bytes: Bytes) -> Result<String, ObjectError> {
        let Some(_guard) = self.lock_local().await? else {
            let version = UpdateVersion { e_tag: Some(expected.to_string()), version: None };
            return self.put(bytes, PutMode::Update(version), ObjectOp::Replace).await;
        };
        let current = match self.store.head(&self.path).await {
            Ok(meta) => meta.e_tag,
            Err(object_store::Error::NotFound { .. }) => None,
            Err(source) => return Err(self.store_error(ObjectOp::Replace, source)),
        };
        if current.as_deref() != Some(expected) {
            return Err(self.changed(expected));
        }
        self.put(bytes, PutMode::Overwrite, ObjectOp::Replace).await
    }

    async fn put(
        &self,
        bytes: Bytes,
        mode: PutMode,
        operation: ObjectOp,
    ) -> Result<String, ObjectError> {
        let expected = match &mode {
            PutMode::Update(v) => v.e_tag.clone().unwrap_or_default(),
            _ => String::new(),
        };
        let opts = PutOptions { mode, ..Default::default() };
        match self.store.put_opts(&self.path, PutPayload::from(bytes), opts).await {
            Ok(result) => result.e_tag.ok_or_else(|| self.no_etag()),
            Err(object_store::Error::AlreadyExists { .. }) => {
                Err(ObjectError::Exists { location: self.location.clone() })
            }
            // S3 answers `If-Match` on a missing key with 404, which is a change all the same.
            Err(
                object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. },
            ) if operation == ObjectOp::Replace => Err(self.changed(&expected)),
            Err(source) => Err(self.store_error(operation, source)),
        }
    }

    /// Takes the sidecar `flock` for local objects (released when the file is dropped).
    async fn lock_local(&self) -> Result<Option<std::fs::File>, ObjectError> {
        let Some(path) = self.local_guard.clone() else {
            return Ok(None);
        };
        let location = self.location.clone();
        let err_path = path.clone();
        let locked = tokio::task::spawn_blocking(move || {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let file =
                std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
            file.lock()?;
            Ok::<_, std::io::Error>(file)
        })
        .await
        .map_err(|join| std::io::Error::other(join.to_string()))
        .and_then(|r| r);
        locked.map(Some).map_err(|source| ObjectError::LocalLock {
            path: err_path,
            location,
            source,
        })
    }

    fn store_error(&self, op: ObjectOp, source: object_store::Error) -> ObjectError {
        ObjectError::store(op, &self.location, source)
    }

    fn changed(&self, expected: &str) -> ObjectError {
        ObjectError::Changed { location: self.location.clone(), expected: expected.to_string() }
    }

    fn no_etag(&self) -> ObjectError {
        ObjectError::NoETag { location: self.location.clone() }
    }
}
