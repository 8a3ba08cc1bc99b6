//! The backfill's building blocks: Phases 1–3 as plain async functions over object stores.
//!
//! The coordinator and its workers (gRPC, leases) call these; nothing here knows about leases
//! beyond the attempt token that names output folders and files.
//!
//! * [`layout`]: every staging path of a run.
//! * [`chunks`]: Phase 1, an inventory streamed into chunk files of (bucket, key) rows.
//! * [`ingest`]: Phase 2, one chunk fetched, fanned out and staged per (cell, year).
//! * [`compact`]: Phase 3, the staged rows of one (cell, year) merged into data files.

pub mod chunks;
pub mod compact;
pub mod ingest;
pub mod layout;

pub use chunks::{
    ChunkError, ChunkFile, ChunkManifest, ChunkOptions, ChunkPlan, ChunkSettings, MalformedEntry,
    read_chunk, write_chunks,
};
pub use compact::{CompactError, CompactOutcome, compact_partition};
pub use ingest::{IngestError, IngestOutcome, StagedFile, ingest_chunk, retry_failed};
pub use layout::StagingLayout;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::location::Location;
use crate::stores::{StoreError, Stores};

/// Why a whole object could not be read, written, listed or deleted.
#[derive(Debug, thiserror::Error)]
pub enum ObjectIoError {
    /// The location could not be resolved to a store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading failed.
    #[error("cannot read {location}: {source}")]
    Read {
        /// The object.
        location: String,
        /// The store's error.
        source: Box<object_store::Error>,
    },
    /// Writing failed.
    #[error("cannot write {location}: {source}")]
    Write {
        /// The object.
        location: String,
        /// The store's error.
        source: Box<object_store::Error>,
    },
    /// Listing a folder failed.
    #[error("cannot list {location}: {source}")]
    List {
        /// The folder.
        location: String,
        /// The store's error.
        source: Box<object_store::Error>,
    },
}

impl ObjectIoError {
    /// Whether trying again may succeed (store and network errors may; bad locations will not).
    pub fn is_retryable(&self) -> bool {
        !matches!(self, ObjectIoError::Store(_))
    }
}

/// Writes `bytes` as the object at `location` (replacing it).
async fn put_bytes(
    stores: &Stores,
    location: &Location,
    bytes: Bytes,
) -> Result<(), ObjectIoError> {
    let target = stores.resolve(location)?;
    target.store.put(&target.path, PutPayload::from(bytes)).await.map_err(|source| {
        ObjectIoError::Write { location: location.to_string(), source: Box::new(source) }
    })?;
    Ok(())
}

/// The object at `location`, or `None` if there is none.
async fn get_bytes(stores: &Stores, location: &Location) -> Result<Option<Bytes>, ObjectIoError> {
    let target = stores.resolve(location)?;
    let read = async { target.store.get(&target.path).await?.bytes().await };
    match read.await {
        Ok(bytes) => Ok(Some(bytes)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(source) => {
            Err(ObjectIoError::Read { location: location.to_string(), source: Box::new(source) })
        }
    }
}

/// The file names directly or indirectly under the folder `location`, with their store paths.
async fn list_names(
    stores: &Stores,
    location: &Location,
) -> Result<Vec<(String, object_store::path::Path)>, ObjectIoError> {
    let target = stores.resolve(location)?;
    let store: &dyn ObjectStore = target.store.as_ref();
    let listed: Result<Vec<_>, _> = store.list(Some(&target.path)).try_collect().await;
    match listed {
        Ok(metas) => Ok(metas
            .into_iter()
            .filter_map(|m| m.location.filename().map(|n| (n.to_string(), m.location.clone())))
            .collect()),
        Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
        Err(source) => {
            Err(ObjectIoError::List { location: location.to_string(), source: Box::new(source) })
        }
    }
}

/// Deletes what a failed call wrote (best effort: a leftover is logged, never fatal, since
/// its name is attempt-unique and nothing registers it).
async fn delete_quietly(stores: &Stores, locations: &[Location]) {
    crate::cleanup::delete_objects(stores, locations, "an abandoned output").await;
}
