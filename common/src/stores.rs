//! Resolving [`Location`]s to object stores, with one cached client per bucket.
//!
//! S3 settings come from the standard `AWS_*` environment variables (endpoint, region,
//! credentials, session token, `AWS_ALLOW_HTTP`), then from the profile named by `AWS_PROFILE` in
//! the shared credentials file, then from the instance role; each can be overridden per bucket.
//! A bucket can also be *mapped* to another location (a local mirror, another endpoint), so an
//! inventory naming `s3://its-live-data/...` can be ingested from a copy of that bucket.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;

use crate::location::Location;

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
    /// A local path that object_store cannot represent.
    #[error("invalid local path '{path}': {source}")]
    LocalPath {
        /// The path.
        path: String,
        /// The conversion error.
        source: object_store::path::Error,
    },
    /// The shared credentials file could not be read.
    #[error("cannot read AWS profile '{profile}' from {file}: {reason}")]
    Profile {
        /// Profile name.
        profile: String,
        /// Credentials file.
        file: String,
        /// What went wrong.
        reason: String,
    },
}

/// S3 client settings. `None` means "as the environment says".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Settings {
    /// Endpoint URL (moto, MinIO, another region's endpoint).
    pub endpoint: Option<String>,
    /// Region (default `us-west-2`, where ITS_LIVE lives, when nothing else says).
    pub region: Option<String>,
    /// Allow plain `http://` endpoints.
    pub allow_http: Option<bool>,
    /// Send unsigned requests (public buckets).
    pub anonymous: Option<bool>,
    /// Static access key id.
    pub access_key_id: Option<String>,
    /// Static secret key.
    pub secret_access_key: Option<String>,
    /// Session token for temporary credentials.
    pub session_token: Option<String>,
    /// Profile in the shared credentials file, used when no static keys are given.
    pub profile: Option<String>,
    /// Retries of one request inside the client (throttling, 5xx, connection errors); default 5.
    pub max_retries: Option<usize>,
    /// Give up retrying one request after this long; default 60 s.
    pub retry_timeout: Option<std::time::Duration>,
}

impl S3Settings {
    /// Settings from `AWS_*` variables and `EARTHCATALOG_S3_ANONYMOUS`.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let flag = |k: &str| {
            var(k).map(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
        };
        S3Settings {
            endpoint: var("AWS_ENDPOINT_URL_S3")
                .or_else(|| var("AWS_ENDPOINT_URL"))
                .or_else(|| var("AWS_ENDPOINT")),
            region: var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")),
            allow_http: flag("AWS_ALLOW_HTTP"),
            anonymous: flag("EARTHCATALOG_S3_ANONYMOUS").or_else(|| flag("AWS_SKIP_SIGNATURE")),
            access_key_id: var("AWS_ACCESS_KEY_ID"),
            secret_access_key: var("AWS_SECRET_ACCESS_KEY"),
            session_token: var("AWS_SESSION_TOKEN"),
            profile: var("AWS_PROFILE"),
            max_retries: None,
            retry_timeout: None,
        }
    }

    /// These settings with every value set in `other` taking precedence.
    pub fn overridden_by(&self, other: &S3Settings) -> S3Settings {
        fn pick<T: Clone>(a: &Option<T>, b: &Option<T>) -> Option<T> {
            b.clone().or_else(|| a.clone())
        }
        S3Settings {
            endpoint: pick(&self.endpoint, &other.endpoint),
            region: pick(&self.region, &other.region),
            allow_http: pick(&self.allow_http, &other.allow_http),
            anonymous: pick(&self.anonymous, &other.anonymous),
            access_key_id: pick(&self.access_key_id, &other.access_key_id),
            secret_access_key: pick(&self.secret_access_key, &other.secret_access_key),
            session_token: pick(&self.session_token, &other.session_token),
            profile: pick(&self.profile, &other.profile),
            max_retries: pick(&self.max_retries, &other.max_retries),
            retry_timeout: pick(&self.retry_timeout, &other.retry_timeout),
        }
    }

    fn build(&self, bucket: &str) -> Result<Arc<dyn ObjectStore>, StoreError> {
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(self.region.clone().unwrap_or_else(|| "us-west-2".into()))
            .with_virtual_hosted_style_request(false)
            .with_retry(object_store::RetryConfig {
                max_retries: self.max_retries.unwrap_or(5),
                retry_timeout: self.retry_timeout.unwrap_or(std::time::Duration::from_secs(60)),
                ..Default::default()
            });
        if let Some(endpoint) = &self.endpoint {
            b = b.with_endpoint(endpoint);
        }
        if let Some(allow) = self.allow_http {
            b = b.with_allow_http(allow);
        }
        if self.anonymous == Some(true) {
            b = b.with_skip_signature(true);
        } else if let (Some(k), Some(s)) = (&self.access_key_id, &self.secret_access_key) {
            b = b.with_access_key_id(k).with_secret_access_key(s);
            if let Some(t) = &self.session_token {
                b = b.with_token(t);
            }
        } else if let Some((k, s, t)) = self.profile_credentials(bucket)? {
            b = b.with_access_key_id(k).with_secret_access_key(s);
            if let Some(t) = t {
                b = b.with_token(t);
            }
        }
        // Otherwise object_store falls back to the container/instance role.
        let store = b
            .build()
            .map_err(|source| StoreError::S3Config { bucket: bucket.to_string(), source })?;
        Ok(Arc::new(store))
    }

    /// Keys of the configured (or `default`) profile, if a shared credentials file has them.
    fn profile_credentials(
        &self,
        _bucket: &str,
    ) -> Result<Option<(String, String, Option<String>)>, StoreError> {
        let file =
            std::env::var_os("AWS_SHARED_CREDENTIALS_FILE").map(PathBuf::from).or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".aws/credentials"))
            });
        let Some(file) = file.filter(|f| f.is_file()) else {
            return Ok(None);
        };
        let profile = self.profile.clone().unwrap_or_else(|| "default".into());
        let err = |reason: String| StoreError::Profile {
            profile: profile.clone(),
            file: file.display().to_string(),
            reason,
        };
        let ini = ini::Ini::load_from_file(&file).map_err(|e| err(e.to_string()))?;
        let Some(section) = ini.section(Some(profile.as_str())) else {
            return if self.profile.is_some() {
                Err(err("no such profile".into()))
            } else {
                Ok(None)
            };
        };
        match (section.get("aws_access_key_id"), section.get("aws_secret_access_key")) {
            (Some(k), Some(s)) => Ok(Some((
                k.to_string(),
                s.to_string(),
                section.get("aws_session_token").map(str::to_string),
            ))),
            _ => Err(err("profile has no aws_access_key_id/aws_secret_access_key".into())),
        }
    }
}

/// An object store and a path inside it.
#[derive(Debug, Clone)]
pub struct ObjectLocation {
    /// The store.
    pub store: Arc<dyn ObjectStore>,
    /// The path inside the store.
    pub path: Path,
}

/// Resolves locations to stores; one client per bucket, shared by every caller.
#[derive(Debug, Default)]
pub struct Stores {
    s3_defaults: S3Settings,
    per_bucket: HashMap<String, S3Settings>,
    sources: HashMap<String, Location>,
    s3_clients: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
    memory: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
    local: Option<Arc<dyn ObjectStore>>,
}

/// The local file system as a store. Deleting a folder's last object removes the folders it
/// leaves empty, so a cleaned local staging or a deleted attempt leaves no empty tree behind,
/// as on S3 where folders do not exist.
fn local_files() -> Arc<dyn ObjectStore> {
    Arc::new(LocalFileSystem::new().with_automatic_cleanup(true))
}

impl Stores {
    /// Stores whose S3 settings come from the environment.
    pub fn from_env() -> Self {
        Self::new(S3Settings::from_env())
    }

    /// Stores with the given S3 defaults.
    pub fn new(s3_defaults: S3Settings) -> Self {
        Stores { s3_defaults, local: Some(local_files()), ..Default::default() }
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

    /// The store and path for a location.
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
        let client = self.s3_settings(bucket).build(bucket)?;
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
