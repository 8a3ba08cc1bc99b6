//! Locations: one type naming every place the system reads or writes.
//!
//! A location is `s3://bucket/prefix`, `file:///abs/path` (or a plain path, made absolute), or
//! `memory://name/prefix` for tests. [`crate::stores::Stores`] turns one into an object store and
//! a path inside it.

use std::fmt;
use std::path::{Path as FsPath, PathBuf};
use std::str::FromStr;

/// Why a location string could not be understood.
#[derive(Debug, thiserror::Error)]
pub enum LocationError {
    /// The string is empty.
    #[error("empty location")]
    Empty,
    /// `s3://` or `memory://` without a bucket/store name.
    #[error("location '{0}' has no bucket name")]
    NoBucket(String),
    /// A URL scheme we do not read or write.
    #[error(
        "location '{location}' has unsupported scheme '{scheme}' (use s3://, file:// or a path)"
    )]
    UnsupportedScheme {
        /// The whole location.
        location: String,
        /// Its scheme.
        scheme: String,
    },
    /// A relative path when the current directory cannot be read.
    #[error("cannot make '{path}' absolute: {source}")]
    Relative {
        /// The relative path.
        path: String,
        /// The error reading the current directory.
        source: std::io::Error,
    },
}

/// A place in an object store or on the local disk.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Location {
    /// An S3 (or S3-compatible) bucket and a key prefix (no leading or trailing `/`).
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix, possibly empty.
        prefix: String,
    },
    /// An absolute local path.
    Local {
        /// The absolute path.
        path: PathBuf,
    },
    /// A named in-process memory store and a prefix (for tests).
    Memory {
        /// Store name; the same name always resolves to the same store.
        name: String,
        /// Key prefix, possibly empty.
        prefix: String,
    },
}

fn trim_slashes(s: &str) -> String {
    s.trim_matches('/').to_string()
}

fn join_keys(prefix: &str, rel: &str) -> String {
    let rel = rel.trim_matches('/');
    match (prefix.is_empty(), rel.is_empty()) {
        (true, _) => rel.to_string(),
        (_, true) => prefix.to_string(),
        _ => format!("{prefix}/{rel}"),
    }
}

impl Location {
    /// Parses a location string (see the module docs for the accepted forms).
    pub fn parse(s: &str) -> Result<Self, LocationError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(LocationError::Empty);
        }
        if let Some(rest) = s.strip_prefix("s3://").or_else(|| s.strip_prefix("s3a://")) {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(LocationError::NoBucket(s.to_string()));
            }
            return Ok(Location::S3 { bucket: bucket.to_string(), prefix: trim_slashes(prefix) });
        }
        if let Some(rest) = s.strip_prefix("memory://") {
            let (name, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if name.is_empty() {
                return Err(LocationError::NoBucket(s.to_string()));
            }
            return Ok(Location::Memory { name: name.to_string(), prefix: trim_slashes(prefix) });
        }
        if let Some(rest) = s.strip_prefix("file://") {
            return Self::local(rest);
        }
        if let Some((scheme, _)) = s.split_once("://") {
            return Err(LocationError::UnsupportedScheme {
                location: s.to_string(),
                scheme: scheme.to_string(),
            });
        }
        Self::local(s)
    }

    /// A local location; relative paths are taken from the current directory.
    pub fn local(path: impl AsRef<FsPath>) -> Result<Self, LocationError> {
        let path = path.as_ref();
        let abs = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir()
                .map_err(|source| LocationError::Relative {
                    path: path.display().to_string(),
                    source,
                })?
                .join(path)
        };
        Ok(Location::Local { path: normalize(&abs) })
    }

    /// The location `rel` below this one (`rel` uses `/` separators).
    pub fn join(&self, rel: &str) -> Location {
        match self {
            Location::S3 { bucket, prefix } => {
                Location::S3 { bucket: bucket.clone(), prefix: join_keys(prefix, rel) }
            }
            Location::Memory { name, prefix } => {
                Location::Memory { name: name.clone(), prefix: join_keys(prefix, rel) }
            }
            Location::Local { path } => {
                let mut p = path.clone();
                for part in rel.split('/').filter(|p| !p.is_empty()) {
                    p.push(part);
                }
                Location::Local { path: p }
            }
        }
    }

    /// The last path segment (file name), if any.
    pub fn file_name(&self) -> Option<&str> {
        match self {
            Location::S3 { prefix, .. } | Location::Memory { prefix, .. } => {
                prefix.rsplit('/').next().filter(|s| !s.is_empty())
            }
            Location::Local { path } => path.file_name().and_then(|n| n.to_str()),
        }
    }

    /// The local path, for local locations.
    pub fn as_local_path(&self) -> Option<&FsPath> {
        match self {
            Location::Local { path } => Some(path),
            _ => None,
        }
    }

    /// The absolute URI of this location (`s3://…`, `file:///…`, `memory://…`), as registered in
    /// Iceberg metadata.
    pub fn uri(&self) -> String {
        self.to_string()
    }
}

/// Removes `.` and resolves `..` lexically (no filesystem access; the path may not exist yet).
fn normalize(path: &FsPath) -> PathBuf {
    let mut out = PathBuf::new();
    for comp in path.components() {
        match comp {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Location::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            Location::Memory { name, prefix } if prefix.is_empty() => write!(f, "memory://{name}"),
            Location::Memory { name, prefix } => write!(f, "memory://{name}/{prefix}"),
            Location::Local { path } => write!(f, "file://{}", path.display()),
        }
    }
}

/// Serialized as its URI ([`Location::uri`]), the form every state file and report holds.
impl serde::Serialize for Location {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.uri())
    }
}

impl<'de> serde::Deserialize<'de> for Location {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Location::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl FromStr for Location {
    type Err = LocationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Location::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_locations_split_bucket_and_prefix() {
        let l = Location::parse("s3://its-live-data/test-space/stac/").unwrap();
        assert_eq!(
            l,
            Location::S3 { bucket: "its-live-data".into(), prefix: "test-space/stac".into() }
        );
        assert_eq!(l.to_string(), "s3://its-live-data/test-space/stac");
        assert_eq!(l.join("a/b.json").to_string(), "s3://its-live-data/test-space/stac/a/b.json");
        assert_eq!(Location::parse("s3://b").unwrap().join("k").to_string(), "s3://b/k");
    }

    #[test]
    fn plain_and_file_paths_become_absolute_local_locations() {
        let l = Location::parse("file:///tmp/x/../wh").unwrap();
        assert_eq!(l.to_string(), "file:///tmp/wh");
        let rel = Location::parse("some/dir").unwrap();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(rel.as_local_path(), Some(cwd.join("some/dir").as_path()));
        assert_eq!(l.join("a/b.parquet").file_name(), Some("b.parquet"));
    }

    #[test]
    fn bad_locations_are_refused_with_the_reason() {
        assert!(matches!(Location::parse(""), Err(LocationError::Empty)));
        assert!(matches!(Location::parse("s3:///k"), Err(LocationError::NoBucket(_))));
        let err = Location::parse("gs://b/k").unwrap_err();
        assert!(err.to_string().contains("unsupported scheme 'gs'"), "{err}");
    }
}
