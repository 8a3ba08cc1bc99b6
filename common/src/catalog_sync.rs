//! Moving the SQLite catalog (`catalog.db`) between its home location and a local working copy.
//!
//! A run downloads the catalog, remembering the ETag it got (none = no catalog yet, a fresh one
//! will be created), works on the local copy, and — only if it succeeded — uploads it while still
//! holding the catalog lock. The upload is a compare-and-swap against the downloaded version
//! (`If-Match`, or `If-None-Match: *` for a fresh catalog), so a catalog that changed behind our
//! back is reported as [`CatalogSyncError::Changed`] and never overwritten. Local catalog
//! locations get the same guarantee through the advisory lock of [`crate::stores::CasObject`].

use std::path::{Path, PathBuf};

use crate::location::Location;
use crate::lock::{LockError, LockGuard};
use crate::stores::Stores;
use crate::stores::{CasObject, ObjectError};

/// Why the catalog could not be downloaded or uploaded.
#[derive(Debug, thiserror::Error)]
pub enum CatalogSyncError {
    /// The catalog changed since we downloaded it (another writer, or a lock that failed).
    #[error(
        "catalog {location} changed since it was downloaded (downloaded version: {}); not overwriting it — rerun to start from the current catalog",
        expected.as_deref().unwrap_or("none, the catalog did not exist")
    )]
    Changed {
        /// The catalog object.
        location: Location,
        /// The ETag we downloaded (`None`: there was no catalog).
        expected: Option<String>,
    },
    /// The lock guard passed to the upload is no longer held.
    #[error("not uploading catalog {location}: {source}")]
    LockNotHeld {
        /// The catalog object.
        location: Location,
        /// Why the lock is not held.
        source: LockError,
    },
    /// The local copy could not be read or written.
    #[error("cannot {operation} local catalog copy {path}: {source}")]
    Local {
        /// `read`, `write` or `remove`.
        operation: &'static str,
        /// The local file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] ObjectError),
}

/// A local working copy of the catalog and the version it was downloaded from.
#[derive(Debug)]
pub struct CatalogCopy {
    object: CasObject,
    local_path: PathBuf,
    e_tag: Option<String>,
}

impl CatalogCopy {
    /// Downloads the catalog at `location` to `local_path`. When there is no catalog yet, any
    /// local file there is removed (the store is the authority: a leftover working copy of a
    /// failed run must not become the catalog) and the copy is *fresh* (its upload will create
    /// the object).
    pub async fn download(
        stores: &Stores,
        location: &Location,
        local_path: impl Into<PathBuf>,
    ) -> Result<Self, CatalogSyncError> {
        let object = stores.conditional(location)?;
        let local_path = local_path.into();
        let Some(current) = object.read().await? else {
            tracing::info!(catalog = %location, "no existing catalog; a fresh one will be created");
            match tokio::fs::remove_file(&local_path).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(CatalogSyncError::Local {
                        operation: "remove",
                        path: local_path,
                        source: e,
                    });
                }
                _ => {}
            }
            return Ok(CatalogCopy { object, local_path, e_tag: None });
        };
        write_atomically(&local_path, &current.bytes).await?;
        tracing::info!(catalog = %location, local = %local_path.display(), bytes = current.bytes.len(), "catalog downloaded");
        Ok(CatalogCopy { object, local_path, e_tag: Some(current.e_tag) })
    }

    /// The local working copy.
    pub fn local_path(&self) -> &Path {
        &self.local_path
    }

    /// The catalog's home location.
    pub fn location(&self) -> &Location {
        self.object.location()
    }

    /// The version (ETag) the copy is based on; `None` for a fresh catalog.
    pub fn version(&self) -> Option<&str> {
        self.e_tag.as_deref()
    }

    /// Uploads the local copy if `guard` still holds the lock — confirmed in the store right
    /// before the upload ([`LockGuard::confirm`]) — and the catalog is unchanged since download
    /// (or the last upload); afterwards the copy is based on the uploaded version.
    pub async fn upload(&mut self, guard: &LockGuard) -> Result<(), CatalogSyncError> {
        let location = self.object.location().clone();
        let bytes = tokio::fs::read(&self.local_path).await.map_err(|source| {
            CatalogSyncError::Local { operation: "read", path: self.local_path.clone(), source }
        })?;
        // Last, so the confirmed lock has its whole TTL left for the upload itself.
        guard.confirm().await.map_err(|source| CatalogSyncError::LockNotHeld {
            location: location.clone(),
            source,
        })?;
        let size = bytes.len();
        let written = match &self.e_tag {
            Some(e_tag) => self.object.replace(e_tag, bytes.into()).await,
            None => self.object.create(bytes.into()).await,
        };
        let e_tag = written.map_err(|e| match e {
            ObjectError::Changed { .. } | ObjectError::Exists { .. } => CatalogSyncError::Changed {
                location: location.clone(),
                expected: self.e_tag.clone(),
            },
            other => other.into(),
        })?;
        tracing::info!(catalog = %location, local = %self.local_path.display(), bytes = size, "catalog uploaded");
        self.e_tag = Some(e_tag);
        Ok(())
    }
}

/// Writes `path` via a sibling temporary file and a rename, so a crash never leaves half a file.
async fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), CatalogSyncError> {
    let err =
        |source| CatalogSyncError::Local { operation: "write", path: path.to_path_buf(), source };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(dir).await.map_err(err)?;
    }
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(format!(".download-{}", uuid::Uuid::new_v4().simple()));
    let tmp = PathBuf::from(tmp);
    tokio::fs::write(&tmp, bytes).await.map_err(err)?;
    if let Err(e) = tokio::fs::rename(&tmp, path).await {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(err(e));
    }
    Ok(())
}
