//! The one sequence by which a run changes the table, used by the incremental run, backfill
//! Phase 4 and the maintenance commands:
//!
//! ```text
//! lock (taken by the caller) → download the catalog when it is stored → commit snapshots, each
//! after checking the lock is still ours → confirm the lock and upload the catalog conditionally
//! on the version downloaded → write the hash index → release the lock
//! ```
//!
//! and the one place that decides what a failed run deletes: the data files it wrote that no
//! catalog will reference. With a stored catalog that is every such file until the upload is
//! tried (after a failed upload the store may hold a catalog that references them, so they are
//! kept); with a local catalog, the files not yet committed.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use iceberg::spec::DataFile;
use iceberg::table::Table;

use crate::catalog::{
    Catalog, CatalogError, RegisterError, RegisterSummary, ReplaceError, ReplaceSummary,
    Replacement,
};
use crate::catalog_sync::{CatalogCopy, CatalogSyncError};
use crate::geoparquet::is_incremental_output;
use crate::hash_index::{HashIndex, HashIndexError};
use crate::location::Location;
use crate::lock::{LockError, LockGuard};
use crate::stores::{ObjectError, Stores};

/// Where a table's catalog is and how it is synchronised.
#[derive(Debug, Clone)]
pub struct CatalogPlace {
    /// The local SQLite file used during the run.
    pub path: PathBuf,
    /// The authoritative catalog object when it lives elsewhere (downloaded, then uploaded).
    pub remote: Option<Location>,
    /// The lock object.
    pub lock: Location,
    /// The warehouse root.
    pub warehouse: Location,
}

/// Why a step of the publish sequence failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The stored catalog could not be downloaded or uploaded.
    #[error(transparent)]
    Sync(#[from] CatalogSyncError),
    /// The catalog could not be opened.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// Files could not be committed.
    #[error("registering data files: {0}")]
    Register(#[from] RegisterError),
    /// A replace was refused or failed (the table is unchanged).
    #[error(transparent)]
    Replace(#[from] ReplaceError),
    /// The lock was lost before a commit.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// A stored catalog can only be uploaded under the lock.
    #[error("uploading the catalog {0} needs the lock")]
    NoLock(Location),
    /// The warehouse could not be listed or cleaned.
    #[error(transparent)]
    Object(#[from] ObjectError),
    /// The hash index could not be written.
    #[error(transparent)]
    HashIndex(#[from] HashIndexError),
    /// The local catalog's folder could not be created.
    #[error("creating {path}: {source}")]
    LocalDir {
        /// The folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// What a run is adding to a commit.
#[derive(Debug)]
pub enum Files<'a> {
    /// Files this process wrote, described from the footers it kept
    /// ([`Catalog::describe_written`]): their locations and data files, in the same order.
    Described(&'a [Location], Vec<DataFile>),
    /// Files written elsewhere (footers read from the objects).
    At(&'a [Location]),
}

/// A hash index to write once the catalog is published.
#[derive(Debug)]
pub struct IndexUpdate {
    /// Where it goes.
    pub location: Location,
    /// Its content.
    pub index: HashIndex,
}

/// The catalog opened for one run's changes, under the lock the caller took.
#[derive(Debug)]
pub struct CatalogWriter {
    stores: Arc<Stores>,
    place: CatalogPlace,
    guard: Option<LockGuard>,
    copy: Option<CatalogCopy>,
    catalog: Catalog,
    /// Data files of this run that no catalog will reference if the run fails now.
    unpublished: Vec<Location>,
    /// Whether [`CatalogWriter::publish`] uploads a stored catalog (off: `--no-upload`).
    upload: bool,
    /// Whether the catalog upload was tried: after a failed one, whether the store took it is
    /// unknown, so this run's files are kept.
    upload_tried: bool,
    /// When the catalog was last published (or opened).
    published_at: std::time::Instant,
}

impl CatalogWriter {
    /// Opens the catalog of `place` (downloading it first when it is stored), holding `guard`.
    /// On failure the lock is released.
    pub async fn open(
        stores: Arc<Stores>,
        place: CatalogPlace,
        guard: Option<LockGuard>,
    ) -> Result<Self, PublishError> {
        match Self::local_copy(&stores, &place).await {
            Ok((copy, catalog)) => Ok(CatalogWriter {
                stores,
                place,
                guard,
                copy,
                catalog,
                unpublished: Vec::new(),
                upload: true,
                upload_tried: false,
                published_at: std::time::Instant::now(),
            }),
            Err(e) => {
                release(guard).await;
                Err(e)
            }
        }
    }

    async fn local_copy(
        stores: &Arc<Stores>,
        place: &CatalogPlace,
    ) -> Result<(Option<CatalogCopy>, Catalog), PublishError> {
        let copy = match &place.remote {
            Some(remote) => Some(CatalogCopy::download(stores, remote, &place.path).await?),
            None => None,
        };
        if let Some(dir) = place.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|source| PublishError::LocalDir { path: dir.to_path_buf(), source })?;
        }
        let catalog = Catalog::open(&place.path, &place.warehouse, stores.clone()).await?;
        Ok((copy, catalog))
    }

    /// Deletes the data files of earlier incremental runs that no snapshot references
    /// (`referenced` holds the URIs the table references): a run killed after writing them,
    /// before its catalog was published, leaves them. Only incremental file names are
    /// considered, and only under the lock, when no other incremental run can be writing;
    /// anything else in the warehouse (a backfill's unregistered outputs) is left alone.
    /// Returns how many went.
    pub async fn delete_orphans(&self, referenced: &HashSet<String>) -> Result<usize, ObjectError> {
        if self.guard.is_none() {
            return Ok(0);
        }
        let orphans: Vec<Location> = self
            .stores
            .list(&self.place.warehouse)
            .await?
            .into_iter()
            .filter(|l| l.file_name().is_some_and(is_incremental_output))
            .filter(|l| !referenced.contains(&l.uri()))
            .collect();
        if orphans.is_empty() {
            return Ok(0);
        }
        let failed = self.stores.delete_all(&orphans, "an orphaned data file").await;
        let deleted = orphans.len() - failed;
        tracing::warn!(
            files = deleted,
            "deleted data files of earlier runs that no catalog references"
        );
        Ok(deleted)
    }

    /// Leaves a stored catalog's working copy local: [`CatalogWriter::publish`] uploads nothing.
    pub fn without_upload(mut self) -> Self {
        self.upload = false;
        self
    }

    /// The catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Notes data files this run wrote: until they are published, a failed run deletes them.
    pub fn wrote(&mut self, files: impl IntoIterator<Item = Location>) {
        self.unpublished.extend(files);
    }

    /// Commits `files` to `table` in one snapshot, after checking the lock is still ours.
    pub async fn commit(
        &mut self,
        table: &Table,
        files: Files<'_>,
    ) -> Result<(Table, RegisterSummary), PublishError> {
        if let Some(guard) = &self.guard {
            guard.check()?;
        }
        let committed = match files {
            Files::Described(at, described) => {
                self.catalog.register_described(table, at, described).await?
            }
            Files::At(f) => self.catalog.register(table, f).await?,
        };
        if self.place.remote.is_none() {
            // Committed to the catalog the user named: these files are published.
            self.unpublished.clear();
        }
        Ok(committed)
    }

    /// Commits `replacement` as one snapshot (files removed and added atomically), after
    /// checking the lock is still ours.
    pub async fn replace(
        &mut self,
        replacement: &Replacement,
    ) -> Result<(Table, ReplaceSummary), PublishError> {
        if let Some(guard) = &self.guard {
            guard.check()?;
        }
        let committed = self.catalog.replace(replacement).await?;
        if self.place.remote.is_none() {
            self.unpublished.clear();
        }
        Ok(committed)
    }

    /// Whether a stored catalog has commits not uploaded for `every` or longer: a run that
    /// publishes then loses at most that much work if it is killed.
    pub fn publish_due(&self, every: std::time::Duration) -> bool {
        self.copy.is_some() && self.upload && self.published_at.elapsed() >= every
    }

    /// Publishes what was committed: uploads a stored catalog (after confirming the lock in the
    /// store, conditional on the version downloaded), then writes `index`, so an index never
    /// lists ids the published catalog does not hold. Returns whether a catalog was uploaded.
    pub async fn publish(&mut self, index: Option<&IndexUpdate>) -> Result<bool, PublishError> {
        let uploaded = match self.copy.as_mut().filter(|_| self.upload) {
            Some(copy) => {
                let guard = self
                    .guard
                    .as_ref()
                    .ok_or_else(|| PublishError::NoLock(copy.location().clone()))?;
                self.upload_tried = true;
                copy.upload(guard).await?;
                true
            }
            None => false,
        };
        self.unpublished.clear();
        self.published_at = std::time::Instant::now();
        if let Some(update) = index {
            update.index.write(&self.stores, &update.location).await?;
            tracing::info!(index = %update.location, hashes = update.index.len(), "hash index written");
        }
        Ok(uploaded)
    }

    /// Ends a run that failed: deletes its data files no catalog will reference, then
    /// releases the lock.
    pub async fn abandon(mut self) {
        let files = std::mem::take(&mut self.unpublished);
        if !files.is_empty() {
            if self.upload_tried {
                tracing::warn!(
                    files = files.len(),
                    "the catalog upload failed; this run's data files are kept, as the store may hold a catalog that references them"
                );
            } else {
                let kept = self.stores.delete_all(&files, "a data file of the failed run").await;
                tracing::warn!(
                    "the run failed: deleted {} data files no catalog references ({kept} could not be deleted)",
                    files.len() - kept
                );
            }
        }
        self.finish().await;
    }

    /// Ends the run: releases the lock.
    pub async fn finish(self) {
        release(self.guard).await;
    }
}

async fn release(guard: Option<LockGuard>) {
    if let Some(guard) = guard
        && let Err(e) = guard.release().await
    {
        tracing::warn!(error = %e, "could not release the catalog lock");
    }
}
