//! Fetching item objects: bounded concurrency, retries with backoff on throttling and server
//! errors, and a typed outcome per object (a missing object is recorded, not retried forever).

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use object_store::ObjectStoreExt;

use crate::pipeline::FailureKind;
use crate::stores::Stores;

/// Why an object could not be fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The object does not exist (404).
    #[error("not found")]
    NotFound,
    /// Access was refused (403/401).
    #[error("access denied: {0}")]
    Denied(String),
    /// The location could not be resolved to a store.
    #[error("bad location: {0}")]
    Location(String),
    /// Still failing after every retry (throttling, 5xx, network).
    #[error("failed after {attempts} attempts: {last}")]
    Exhausted {
        /// Attempts made.
        attempts: u32,
        /// The last error.
        last: String,
    },
    /// An error that retrying will not fix.
    #[error("{0}")]
    Other(String),
}

impl FetchError {
    /// A short, stable category name for summaries.
    pub fn kind(&self) -> FailureKind {
        match self {
            FetchError::NotFound => FailureKind::NotFound,
            FetchError::Denied(_) => FailureKind::Denied,
            FetchError::Location(_) => FailureKind::BadLocation,
            FetchError::Exhausted { .. } => FailureKind::FetchFailed,
            FetchError::Other(_) => FailureKind::FetchError,
        }
    }
}

/// How often and how patiently to retry a fetch, on top of the client's own retries.
///
/// Two layers retry, deliberately: the S3 client retries each request (5xx, 429/SlowDown,
/// timeouts, connection and body errors) [`DEFAULT_MAX_RETRIES`](crate::s3_settings::DEFAULT_MAX_RETRIES) times within about a second,
/// which rides out a blip; this policy then waits longer (a second or two, jittered) and tries
/// the whole request again, which rides out a throttling burst. With the defaults a persistent
/// 5xx costs `attempts × (1 + DEFAULT_MAX_RETRIES)` = 2 × 4 = 8 requests over about 3 s before
/// the item is recorded as `fetch_failed`; a 404, 403 or bad path is recorded after 1 request,
/// and unparsable JSON is a parse failure of the one body fetched.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Rounds in all (1 = only the client's own retries).
    pub attempts: u32,
    /// Pause before the second round; doubled each time, with jitter.
    pub initial_backoff: Duration,
    /// Upper bound of one pause.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 2,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(5),
        }
    }
}

enum Class {
    Final(FetchError),
    Retry(String),
}

fn classify(e: object_store::Error) -> Class {
    match e {
        object_store::Error::NotFound { .. } => Class::Final(FetchError::NotFound),
        object_store::Error::PermissionDenied { source, .. }
        | object_store::Error::Unauthenticated { source, .. } => {
            Class::Final(FetchError::Denied(source.to_string()))
        }
        object_store::Error::InvalidPath { source } => {
            Class::Final(FetchError::Location(source.to_string()))
        }
        object_store::Error::NotSupported { source } => {
            Class::Final(FetchError::Other(source.to_string()))
        }
        other => Class::Retry(other.to_string()),
    }
}

/// An object's bytes and when it was last modified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedObject {
    /// The content.
    pub bytes: Bytes,
    /// The store's last-modified time of the object.
    pub last_modified: DateTime<Utc>,
}

/// Reads the object `key` of `bucket` (after source mapping), retrying transient failures.
pub async fn fetch_object(
    stores: &Stores,
    bucket: &str,
    key: &str,
    policy: &RetryPolicy,
) -> Result<FetchedObject, FetchError> {
    let result = fetch_with_retries(stores, bucket, key, policy).await;
    if let Err(e) = &result {
        crate::prometheus::fetch_failed(e.kind().as_str());
    }
    result
}

async fn fetch_with_retries(
    stores: &Stores,
    bucket: &str,
    key: &str,
    policy: &RetryPolicy,
) -> Result<FetchedObject, FetchError> {
    let target =
        stores.resolve_source(bucket, key).map_err(|e| FetchError::Location(e.to_string()))?;
    let mut delay = policy.initial_backoff;
    let attempts = policy.attempts.max(1);
    let mut last = String::new();
    for attempt in 1..=attempts {
        let result = match target.store.get(&target.path).await {
            Ok(r) => {
                let last_modified = r.meta.last_modified;
                r.bytes().await.map(|bytes| FetchedObject { bytes, last_modified })
            }
            Err(e) => Err(e),
        };
        match result.map_err(classify) {
            Ok(object) => return Ok(object),
            Err(Class::Final(e)) => return Err(e),
            Err(Class::Retry(msg)) => {
                tracing::debug!(bucket, key, attempt, error = %msg, "fetch failed, will retry");
                last = msg;
                if attempt < attempts {
                    tokio::time::sleep(jitter(delay)).await;
                    delay = (delay * 2).min(policy.max_backoff);
                }
            }
        }
    }
    Err(FetchError::Exhausted { attempts, last })
}

/// `d` scaled by a factor in [0.5, 1.5), so retries from many tasks do not line up.
fn jitter(d: Duration) -> Duration {
    let r = uuid::Uuid::new_v4().as_u128() as u64 % 1000;
    d.mul_f64(0.5 + r as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::location::Location;
    use crate::stores::S3Settings;

    #[tokio::test]
    async fn a_missing_object_is_not_found_without_retries() {
        let stores = Stores::new(S3Settings::default())
            .with_source("b", Location::parse("memory://mirror").unwrap());
        let err = fetch_object(&stores, "b", "nope.stac.json", &RetryPolicy::default()).await;
        assert_eq!(err, Err(FetchError::NotFound));
    }

    #[tokio::test]
    async fn objects_are_read_through_the_source_mapping() {
        let stores = Stores::new(S3Settings::default())
            .with_source("its-live-data", Location::parse("memory://mirror/itslive").unwrap());
        let o = stores
            .resolve(&Location::parse("memory://mirror/itslive/a/x.stac.json").unwrap())
            .unwrap();
        o.store.put(&o.path, "{}".into()).await.unwrap();
        let got =
            fetch_object(&stores, "its-live-data", "a/x.stac.json", &RetryPolicy::default()).await;
        let got = got.unwrap();
        assert_eq!(got.bytes, Bytes::from_static(b"{}"));
        let age = Utc::now() - got.last_modified;
        assert!(age >= chrono::Duration::zero() && age < chrono::Duration::minutes(1), "{age}");
    }

    #[tokio::test]
    async fn an_unreachable_server_is_retried_then_reported() {
        // Port 9 (discard) on loopback refuses connections: a transient-looking network error.
        let stores = Stores::new(S3Settings {
            endpoint: Some("http://127.0.0.1:9".into()),
            allow_http: Some(true),
            anonymous: Some(true),
            max_retries: Some(0),
            ..Default::default()
        });
        let policy = RetryPolicy {
            attempts: 2,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
        };
        match fetch_object(&stores, "bucket", "k.stac.json", &policy).await {
            Err(FetchError::Exhausted { attempts: 2, .. }) => {}
            other => panic!("expected exhausted retries, got {other:?}"),
        }
    }
}
