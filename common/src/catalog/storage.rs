//! iceberg's file I/O over our object stores, so S3 settings are given once (in [`Stores`]).
//!
//! iceberg-rust 0.10 reads and writes metadata through a pluggable [`Storage`]; its own S3
//! backend would need a second client configured separately. This adapter resolves every path
//! iceberg hands us (`s3://…`, `file:///…`, `file:/…`, `/…`, `memory://…`) with
//! [`Stores::resolve`], so metadata, manifests and data files all go through the same clients.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use iceberg::io::{
    FileMetadata, FileRead, FileWrite, InputFile, OutputFile, Storage, StorageConfig,
    StorageFactory,
};
use iceberg::{Error, ErrorKind};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::location::Location;
use crate::stores::{ObjectLocation, Stores};

/// Builds [`ObjectStoreStorage`] for iceberg's `FileIO`, sharing one [`Stores`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ObjectStoreStorageFactory {
    // iceberg requires the factory to be serializable; a deserialized copy (never made by us)
    // has no stores and refuses to build, rather than guess S3 settings from the environment.
    #[serde(skip)]
    stores: Option<Arc<Stores>>,
}

impl ObjectStoreStorageFactory {
    /// A factory whose storages resolve paths with `stores`.
    pub fn new(stores: Arc<Stores>) -> Self {
        ObjectStoreStorageFactory { stores: Some(stores) }
    }
}

#[typetag::serde]
impl StorageFactory for ObjectStoreStorageFactory {
    fn build(&self, _config: &StorageConfig) -> iceberg::Result<Arc<dyn Storage>> {
        let stores = self.stores.clone().ok_or_else(|| {
            Error::new(ErrorKind::Unexpected, "object store storage factory used without stores")
        })?;
        Ok(Arc::new(ObjectStoreStorage { stores: Some(stores) }))
    }
}

/// iceberg [`Storage`] backed by the object stores of a [`Stores`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ObjectStoreStorage {
    #[serde(skip)]
    stores: Option<Arc<Stores>>,
}

impl ObjectStoreStorage {
    /// A storage resolving paths with `stores`.
    pub fn new(stores: Arc<Stores>) -> Self {
        ObjectStoreStorage { stores: Some(stores) }
    }

    fn resolve(&self, path: &str) -> iceberg::Result<ObjectLocation> {
        let location = parse_iceberg_path(path)?;
        let stores = self.stores.as_ref().ok_or_else(|| {
            Error::new(ErrorKind::Unexpected, "object store storage used without stores")
        })?;
        stores.resolve(&location).map_err(|e| io_error(path, "resolve", e))
    }
}

/// Parses the path forms iceberg and PyIceberg write into metadata.
fn parse_iceberg_path(path: &str) -> iceberg::Result<Location> {
    // Java and PyIceberg sometimes write `file:/abs` (one slash); Location wants `file:///abs`.
    let normalized = match path.strip_prefix("file:") {
        Some(rest) if !rest.starts_with("//") => format!("file://{rest}"),
        _ => path.to_string(),
    };
    Location::parse(&normalized).map_err(|e| {
        Error::new(ErrorKind::DataInvalid, format!("cannot read iceberg path '{path}': {e}"))
    })
}

fn io_error(path: &str, op: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::new(ErrorKind::Unexpected, format!("{op} '{path}' failed")).with_source(e)
}

#[async_trait]
#[typetag::serde]
impl Storage for ObjectStoreStorage {
    async fn exists(&self, path: &str) -> iceberg::Result<bool> {
        let loc = self.resolve(path)?;
        match loc.store.head(&loc.path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(io_error(path, "head", e)),
        }
    }

    async fn metadata(&self, path: &str) -> iceberg::Result<FileMetadata> {
        let loc = self.resolve(path)?;
        let meta = loc.store.head(&loc.path).await.map_err(|e| io_error(path, "head", e))?;
        Ok(FileMetadata { size: meta.size })
    }

    async fn read(&self, path: &str) -> iceberg::Result<Bytes> {
        let loc = self.resolve(path)?;
        let got = loc.store.get(&loc.path).await.map_err(|e| io_error(path, "get", e))?;
        got.bytes().await.map_err(|e| io_error(path, "read", e))
    }

    async fn reader(&self, path: &str) -> iceberg::Result<Box<dyn FileRead>> {
        let loc = self.resolve(path)?;
        Ok(Box::new(ObjectRead { store: loc.store, path: loc.path, uri: path.to_string() }))
    }

    async fn write(&self, path: &str, bs: Bytes) -> iceberg::Result<()> {
        let loc = self.resolve(path)?;
        loc.store.put(&loc.path, bs.into()).await.map_err(|e| io_error(path, "put", e))?;
        Ok(())
    }

    async fn writer(&self, path: &str) -> iceberg::Result<Box<dyn FileWrite>> {
        let loc = self.resolve(path)?;
        Ok(Box::new(ObjectWrite {
            store: loc.store,
            path: loc.path,
            uri: path.to_string(),
            parts: Vec::new(),
            closed: false,
        }))
    }

    async fn delete(&self, path: &str) -> iceberg::Result<()> {
        let loc = self.resolve(path)?;
        match loc.store.delete(&loc.path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(io_error(path, "delete", e)),
        }
    }

    async fn delete_prefix(&self, path: &str) -> iceberg::Result<()> {
        let loc = self.resolve(path)?;
        let listed = loc.store.list(Some(&loc.path)).map_ok(|m| m.location).boxed();
        loc.store
            .delete_stream(listed)
            .try_collect::<Vec<_>>()
            .await
            .map_err(|e| io_error(path, "delete prefix", e))?;
        Ok(())
    }

    async fn delete_stream(&self, paths: BoxStream<'static, String>) -> iceberg::Result<()> {
        let paths: Vec<String> = paths.collect().await;
        for path in paths {
            self.delete(&path).await?;
        }
        Ok(())
    }

    fn new_input(&self, path: &str) -> iceberg::Result<InputFile> {
        Ok(InputFile::new(Arc::new(self.clone()), path.to_string()))
    }

    fn new_output(&self, path: &str) -> iceberg::Result<OutputFile> {
        Ok(OutputFile::new(Arc::new(self.clone()), path.to_string()))
    }
}

/// Ranged reads of one object.
struct ObjectRead {
    store: Arc<dyn ObjectStore>,
    path: Path,
    uri: String,
}

#[async_trait]
impl FileRead for ObjectRead {
    async fn read(&self, range: Range<u64>) -> iceberg::Result<Bytes> {
        self.store.get_range(&self.path, range).await.map_err(|e| io_error(&self.uri, "read", e))
    }
}

/// Buffers a whole object and puts it on close: iceberg writes only metadata this way, and
/// metadata files are small.
struct ObjectWrite {
    store: Arc<dyn ObjectStore>,
    path: Path,
    uri: String,
    parts: Vec<Bytes>,
    closed: bool,
}

#[async_trait]
impl FileWrite for ObjectWrite {
    async fn write(&mut self, bs: Bytes) -> iceberg::Result<()> {
        if self.closed {
            return Err(Error::new(
                ErrorKind::Unexpected,
                format!("write to '{}' after close", self.uri),
            ));
        }
        self.parts.push(bs);
        Ok(())
    }

    async fn close(&mut self) -> iceberg::Result<()> {
        if self.closed {
            return Err(Error::new(ErrorKind::Unexpected, format!("'{}' closed twice", self.uri)));
        }
        self.closed = true;
        let payload: PutPayload = std::mem::take(&mut self.parts).into_iter().collect();
        self.store.put(&self.path, payload).await.map_err(|e| io_error(&self.uri, "put", e))?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::stores::S3Settings;

    #[test]
    fn single_slash_file_uris_are_read_as_absolute_paths() {
        let l = parse_iceberg_path("file:/tmp/wh/metadata/x.json").unwrap();
        assert_eq!(l.to_string(), "file:///tmp/wh/metadata/x.json");
        assert_eq!(parse_iceberg_path("/tmp/a").unwrap().to_string(), "file:///tmp/a");
        assert_eq!(parse_iceberg_path("s3://b/k").unwrap().to_string(), "s3://b/k");
    }

    #[tokio::test]
    async fn writes_through_the_storage_are_visible_in_the_shared_store() {
        let stores = Arc::new(Stores::new(S3Settings::default()));
        let storage = ObjectStoreStorage::new(stores.clone());
        let out = storage.new_output("memory://st/t/metadata/a.json").unwrap();
        let mut w = out.writer().await.unwrap();
        w.write(Bytes::from_static(b"hello ")).await.unwrap();
        w.write(Bytes::from_static(b"world")).await.unwrap();
        w.close().await.unwrap();
        assert!(storage.exists("memory://st/t/metadata/a.json").await.unwrap());
        assert!(!storage.exists("memory://st/t/metadata/b.json").await.unwrap());
        let input = storage.new_input("memory://st/t/metadata/a.json").unwrap();
        assert_eq!(&input.read().await.unwrap()[..], b"hello world");
        let reader = storage.reader("memory://st/t/metadata/a.json").await.unwrap();
        assert_eq!(&reader.read(6..11).await.unwrap()[..], b"world");
        storage.delete_prefix("memory://st/t").await.unwrap();
        assert!(!storage.exists("memory://st/t/metadata/a.json").await.unwrap());
    }
}
