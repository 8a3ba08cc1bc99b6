//! Resolving [`Location`]s to object stores, with one cached client per bucket.
//!
//! S3 settings come from the standard `AWS_*` environment variables and can be overridden per
//! bucket ([`BucketSettings`], from `--s3-bucket`); credentials are chosen as
//! [`crate::s3_credentials`] describes (keys, profile, IRSA, container or instance role).
//! A bucket can also be *mapped* to another location (a local mirror, another endpoint), so an
//! inventory naming `s3://its-live-data/...` can be ingested from a copy of that bucket.

mod cas;
mod objects;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;

use crate::location::Location;
use crate::s3_credentials::{AwsEnvironment, BuildError, CredentialError, build_client};
pub use crate::s3_settings::{BucketSettings, S3Settings};
pub use cas::{CasObject, Versioned};
pub use objects::{ListedObject, ObjectError, ObjectOp};

/// Why a location could not be turned into a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The S3 client could not be built (bad endpoint, region, …).
    #[error("cannot configure the S3 client for bucket '{bucket}': {source}")]
    S3Config {
        /// The bucket.
        bucket: String,
        /// The builder's error.
        source: object_store::Error,
    },
    /// No usable credentials for a bucket (a missing profile, …).
    #[error("no credentials for S3 bucket '{bucket}': {source}")]
    Credentials {
        /// The bucket.
        bucket: String,
        /// Why.
        source: CredentialError,
    },
    /// A local path that object_store cannot represent.
    #[error("invalid local path '{path}': {source}")]
    LocalPath {
        /// The path.
        path: String,
        /// The conversion error.
        source: object_store::path::Error,
    },
}

/// An object store and a path inside it.
#[derive(Debug, Clone)]
pub struct ObjectLocation {
    /// The store.
    pub store: Arc<dyn ObjectStore>,
    /// The path inside the store.
    pub path: Path,
}

/// Clients by bucket (or `memory://` name), shared by every view of one [`Stores`].
type ClientCache = Arc<Mutex<HashMap<String, Arc<dyn ObjectStore>>>>;

/// Resolves locations to stores; one client per bucket, shared by every caller. A process
/// builds one from its flags and environment and passes it down; a view with other source
/// mappings ([`Stores::with_sources`]) shares its clients.
#[derive(Debug, Default, Clone)]
pub struct Stores {
    s3_defaults: S3Settings,
    aws_env: AwsEnvironment,
    per_bucket: HashMap<String, S3Settings>,
    sources: HashMap<String, Location>,
    s3_clients: ClientCache,
    memory: ClientCache,
    local: Option<Arc<dyn ObjectStore>>,
}

/// The local file system as a store. Deleting a folder's last object removes the folders it
/// leaves empty, so a cleaned local staging or a deleted attempt leaves no empty tree behind,
/// as on S3 where folders do not exist.
fn local_files() -> Arc<dyn ObjectStore> {
    Arc::new(LocalFileSystem::new().with_automatic_cleanup(true))
}

impl Stores {
    /// Stores configured as this process is: S3 defaults, role credentials and profiles from
    /// the environment, overridden per bucket by `buckets` (the `--s3-bucket` flags).
    pub fn from_env(buckets: &BucketSettings) -> Self {
        Stores { aws_env: AwsEnvironment::from_env(), ..Self::new(S3Settings::from_env()) }
            .with_buckets(buckets)
    }

    /// Stores with the given S3 defaults and nothing else from the environment: no role
    /// credentials, no shared profile files (so tests are not affected by the machine).
    pub fn new(s3_defaults: S3Settings) -> Self {
        Stores { s3_defaults, local: Some(local_files()), ..Default::default() }
    }

    /// These stores seeing `env` for role credentials, profiles and object_store options.
    pub fn with_aws_environment(mut self, env: AwsEnvironment) -> Self {
        self.aws_env = env;
        self
    }

    /// Overrides S3 settings for every bucket `buckets` names.
    pub fn with_buckets(self, buckets: &BucketSettings) -> Self {
        buckets.iter().fold(self, |s, (bucket, settings)| {
            s.with_bucket_settings(bucket.clone(), settings.clone())
        })
    }

    /// Overrides S3 settings for one bucket.
    pub fn with_bucket_settings(mut self, bucket: impl Into<String>, settings: S3Settings) -> Self {
        self.per_bucket.insert(bucket.into(), settings);
        self
    }

    /// Reads the objects of `bucket` from `location` instead (a mirror or another endpoint).
    pub fn with_source(mut self, bucket: impl Into<String>, location: Location) -> Self {
        self.sources.insert(bucket.into(), location);
        self
    }

    /// Reads the objects of each (bucket, location) pair's bucket from its location.
    pub fn with_sources<'a>(
        self,
        sources: impl IntoIterator<Item = &'a (String, Location)>,
    ) -> Self {
        sources
            .into_iter()
            .fold(self, |s, (bucket, location)| s.with_source(bucket.clone(), location.clone()))
    }

    /// The S3 settings used for `bucket`.
    pub fn s3_settings(&self, bucket: &str) -> S3Settings {
        match self.per_bucket.get(bucket) {
            Some(o) => self.s3_defaults.overridden_by(o),
            None => self.s3_defaults.clone(),
        }
    }

    /// The object at `location`, for conditional writes (create if absent, replace if
    /// unchanged since read): what the catalog lock and the catalog upload are built on.
    pub fn conditional(&self, location: &Location) -> Result<CasObject, ObjectError> {
        CasObject::resolve(self, location)
    }

    /// The store and path for a location, for streamed or ranged IO (whole objects go through
    /// [`Stores::get`], [`Stores::put`], [`Stores::list`], [`Stores::delete`]).
    pub fn resolve(&self, location: &Location) -> Result<ObjectLocation, StoreError> {
        match location {
            Location::S3 { bucket, prefix } => Ok(ObjectLocation {
                store: self.s3_client(bucket)?,
                path: Path::from(prefix.as_str()),
            }),
            Location::Memory { name, prefix } => {
                let mut mem = self.memory.lock().unwrap_or_else(|p| p.into_inner());
                let store =
                    mem.entry(name.clone()).or_insert_with(|| Arc::new(InMemory::new())).clone();
                Ok(ObjectLocation { store, path: Path::from(prefix.as_str()) })
            }
            Location::Local { path } => {
                let store = self.local.clone().unwrap_or_else(local_files);
                let path = Path::from_absolute_path(path).map_err(|source| {
                    StoreError::LocalPath { path: path.display().to_string(), source }
                })?;
                Ok(ObjectLocation { store, path })
            }
        }
    }

    /// Where the object `key` of `bucket` (as named by an inventory) is read from, after
    /// applying any source mapping for that bucket.
    pub fn source_location(&self, bucket: &str, key: &str) -> Location {
        match self.sources.get(bucket) {
            Some(mirror) => mirror.join(key),
            None => Location::S3 {
                bucket: bucket.to_string(),
                prefix: key.trim_start_matches('/').to_string(),
            },
        }
    }

    /// The store and path of an inventory-named object, after source mapping.
    pub fn resolve_source(&self, bucket: &str, key: &str) -> Result<ObjectLocation, StoreError> {
        self.resolve(&self.source_location(bucket, key))
    }

    fn s3_client(&self, bucket: &str) -> Result<Arc<dyn ObjectStore>, StoreError> {
        let mut clients = self.s3_clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(bucket) {
            return Ok(c.clone());
        }
        let (client, _) = build_client(bucket, &self.s3_settings(bucket), &self.aws_env).map_err(
            |e| match e {
                BuildError::Credentials(source) => {
                    StoreError::Credentials { bucket: bucket.to_string(), source }
                }
                BuildError::Client(source) => {
                    StoreError::S3Config { bucket: bucket.to_string(), source }
                }
            },
        )?;
        clients.insert(bucket.to_string(), client.clone());
        Ok(client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;

    #[tokio::test]
    async fn memory_locations_with_the_same_name_share_one_store() {
        let stores = Stores::new(S3Settings::default());
        let a = stores.resolve(&Location::parse("memory://t/a").unwrap()).unwrap();
        a.store.put(&a.path.clone().join("x"), "hi".into()).await.unwrap();
        let b = stores.resolve(&Location::parse("memory://t/a/x").unwrap()).unwrap();
        let got = b.store.get(&b.path).await.unwrap().bytes().await.unwrap();
        assert_eq!(&got[..], b"hi");
    }

    #[test]
    fn one_s3_client_is_built_per_bucket() {
        let stores = Stores::new(S3Settings {
            endpoint: Some("http://127.0.0.1:1".into()),
            allow_http: Some(true),
            anonymous: Some(true),
            ..Default::default()
        });
        let a = stores.resolve(&Location::parse("s3://bucket-a/x").unwrap()).unwrap();
        let b = stores.resolve(&Location::parse("s3://bucket-a/y").unwrap()).unwrap();
        let c = stores.resolve(&Location::parse("s3://bucket-b/y").unwrap()).unwrap();
        assert!(Arc::ptr_eq(&a.store, &b.store));
        assert!(!Arc::ptr_eq(&a.store, &c.store));
    }

    #[test]
    fn mapped_buckets_are_read_from_their_mirror() {
        let stores = Stores::new(S3Settings::default())
            .with_source("its-live-data", Location::parse("file:///mirror/itslive").unwrap());
        assert_eq!(
            stores.source_location("its-live-data", "velocity/a.stac.json").to_string(),
            "file:///mirror/itslive/velocity/a.stac.json"
        );
        assert_eq!(stores.source_location("other", "k.json").to_string(), "s3://other/k.json");
    }

    #[test]
    fn per_bucket_settings_override_the_defaults() {
        let stores =
            Stores::new(S3Settings { region: Some("us-east-1".into()), ..Default::default() })
                .with_bucket_settings(
                    "pub",
                    S3Settings { anonymous: Some(true), ..Default::default() },
                );
        let s = stores.s3_settings("pub");
        assert_eq!(s.region.as_deref(), Some("us-east-1"));
        assert_eq!(s.anonymous, Some(true));
        assert_eq!(stores.s3_settings("other").anonymous, None);
    }
}
