//! AWS S3 Inventory `manifest.json`: which data files to read, where, and in which format.
//!
//! The manifest names its data files by key in the destination bucket (`destinationBucket`, an
//! ARN `arn:aws:s3:::name`; the manifest's own bucket when absent). Each data file is read
//! through [`Stores::source_location`], so a bucket can be mapped to a local mirror or a memory
//! store. CSV data files are headerless and take their columns from `fileSchema`. ORC is refused.
//! The manifest itself is small (one line per data file) and is read whole; data files stream.
//!
//! Before a data file is read, its size is checked against the manifest's `size`, and on S3 its
//! ETag against `MD5checksum` (the ETag of a single-part upload is the object's MD5; multipart
//! ETags carry a `-N` suffix and are not compared). A data file replaced or truncated since the
//! manifest was written would otherwise lose rows without a trace.

use std::sync::Arc;

use futures::StreamExt;
use object_store::ObjectStoreExt;
use serde::Deserialize;

use super::{
    InventoryError, InventoryFormat, InventoryStream, OpenOptions, lazily, open_as, resolve,
};
use crate::location::Location;
use crate::stores::Stores;

/// The format of a manifest's data files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataFormat {
    /// Headerless CSV, gzip-compressed when the name ends in `.gz`.
    Csv,
    /// Parquet.
    Parquet,
    /// No `fileFormat`: each data file's reader is chosen by its name.
    ByName,
}

/// What a manifest says about its data files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The bucket holding the data files (the ARN's name part).
    pub destination_bucket: Option<String>,
    /// The data files' format.
    pub file_format: DataFormat,
    /// The CSV column list (`Bucket, Key, ...`) or the Parquet/ORC schema text.
    pub file_schema: Option<String>,
    /// Data files in the destination bucket, in the listed order.
    pub files: Vec<DataFile>,
}

/// One data file of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFile {
    /// Key in the destination bucket.
    pub key: String,
    /// Size in bytes, when listed.
    pub size: Option<u64>,
    /// Hex MD5 of the file, when listed.
    pub md5: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestJson {
    destination_bucket: Option<String>,
    file_format: Option<String>,
    file_schema: Option<String>,
    files: Option<Vec<ManifestFileJson>>,
}

#[derive(Deserialize)]
struct ManifestFileJson {
    key: String,
    size: Option<u64>,
    #[serde(rename = "MD5checksum")]
    md5: Option<String>,
}

/// Parses manifest JSON; `manifest` (its URI) names it in errors.
pub fn parse(json: &[u8], manifest: &str) -> Result<Manifest, InventoryError> {
    let invalid =
        |reason: String| InventoryError::Manifest { manifest: manifest.to_string(), reason };
    let raw: ManifestJson = serde_json::from_slice(json).map_err(|e| invalid(e.to_string()))?;
    let file_format = match raw.file_format.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None => DataFormat::ByName,
        Some("csv") => DataFormat::Csv,
        Some("parquet") => DataFormat::Parquet,
        Some(_) => {
            return Err(InventoryError::UnsupportedFormat {
                manifest: manifest.to_string(),
                format: raw.file_format.unwrap_or_default(),
            });
        }
    };
    let files = raw.files.ok_or_else(|| invalid("no 'files' list".into()))?;
    Ok(Manifest {
        destination_bucket: raw.destination_bucket.map(|b| bucket_name(&b).to_string()),
        file_format,
        file_schema: raw.file_schema,
        files: files
            .into_iter()
            .map(|f| DataFile { key: f.key, size: f.size, md5: f.md5.map(|m| m.to_lowercase()) })
            .collect(),
    })
}

/// `arn:aws:s3:::name` → `name`; anything else is taken as a bucket name.
fn bucket_name(destination: &str) -> &str {
    destination.rsplit_once(":::").map_or(destination, |(_, name)| name)
}

impl Manifest {
    /// Where data file `key` is read from, given where the manifest itself is.
    pub fn data_location(
        &self,
        stores: &Stores,
        manifest: &Location,
        key: &str,
    ) -> Result<Location, InventoryError> {
        match (&self.destination_bucket, manifest) {
            (Some(bucket), _) | (None, Location::S3 { bucket, .. }) => {
                Ok(stores.source_location(bucket, key))
            }
            (None, Location::Memory { name, .. }) => {
                Ok(Location::Memory { name: name.clone(), prefix: key.trim_matches('/').into() })
            }
            (None, Location::Local { .. }) => Err(InventoryError::Manifest {
                manifest: manifest.uri(),
                reason: "no destinationBucket, and a local manifest has no bucket of its own"
                    .into(),
            }),
        }
    }

    fn reader_for(&self, data: &Location) -> InventoryFormat {
        match self.file_format {
            DataFormat::Parquet => InventoryFormat::Parquet,
            DataFormat::Csv if data.file_name().is_some_and(|n| n.ends_with(".gz")) => {
                InventoryFormat::CsvGz
            }
            DataFormat::Csv => InventoryFormat::Csv,
            DataFormat::ByName => InventoryFormat::of(data),
        }
    }
}

/// Streams every data file named by the manifest at `location`, in the listed order.
///
/// A data file that cannot be read yields one `Err` and the stream goes on with the next file.
pub fn read(stores: Arc<Stores>, location: Location, options: OpenOptions) -> InventoryStream {
    lazily(async move {
        let object = location.uri();
        let target = resolve(&stores, &location)?;
        let fetch =
            |source| InventoryError::Fetch { object: object.clone(), source: Box::new(source) };
        let bytes =
            target.store.get(&target.path).await.map_err(fetch)?.bytes().await.map_err(fetch)?;
        let manifest = parse(&bytes, &object)?;
        tracing::info!(
            manifest = %object,
            files = manifest.files.len(),
            bucket = manifest.destination_bucket.as_deref().unwrap_or("(own)"),
            "reading inventory manifest"
        );
        let mut data_options = options;
        if manifest.file_format != DataFormat::Parquet {
            data_options.csv_file_schema =
                manifest.file_schema.clone().or(data_options.csv_file_schema);
        }
        let manifest = Arc::new(manifest);
        let files: Vec<DataFile> = manifest.files.clone();
        let stream = futures::stream::iter(files).flat_map(move |file| {
            let (stores, manifest, options) =
                (stores.clone(), manifest.clone(), data_options.clone());
            let location = location.clone();
            lazily(async move {
                let data = manifest.data_location(&stores, &location, &file.key)?;
                verify(&stores, &location, &data, &file).await?;
                Ok(open_as(&stores, &data, manifest.reader_for(&data), &options))
            })
        });
        Ok(stream.boxed())
    })
}

/// Checks the data file at `data` against what the manifest at `manifest` lists for it.
async fn verify(
    stores: &Stores,
    manifest: &Location,
    data: &Location,
    file: &DataFile,
) -> Result<(), InventoryError> {
    if file.size.is_none() && file.md5.is_none() {
        return Ok(());
    }
    let target = resolve(stores, data)?;
    let meta = target
        .store
        .head(&target.path)
        .await
        .map_err(|source| InventoryError::Fetch { object: data.uri(), source: Box::new(source) })?;
    let differs = |what: String| InventoryError::Manifest {
        manifest: manifest.uri(),
        reason: format!(
            "data file {} {what}: it was replaced or truncated after the manifest was written",
            data.uri()
        ),
    };
    if let Some(size) = file.size
        && size != meta.size
    {
        return Err(differs(format!("is {} bytes, the manifest lists {size}", meta.size)));
    }
    let etag = meta.e_tag.as_deref().map(|e| e.trim_matches('"').to_lowercase());
    if let (Some(md5), Some(etag), Location::S3 { .. }) = (&file.md5, &etag, data)
        && is_plain_md5(etag)
        && etag != md5
    {
        return Err(differs(format!("has MD5 {etag}, the manifest lists {md5}")));
    }
    Ok(())
}

/// Whether an S3 ETag is a single-part upload's MD5 (32 hex digits, no `-parts` suffix).
fn is_plain_md5(etag: &str) -> bool {
    etag.len() == 32 && etag.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn destination_arns_give_the_bucket_name() {
        assert_eq!(
            bucket_name("arn:aws:s3:::example-destination-bucket"),
            "example-destination-bucket"
        );
        assert_eq!(bucket_name("plain-bucket"), "plain-bucket");
    }

    #[test]
    fn bad_json_is_refused_naming_the_manifest() {
        let err = parse(b"{not json", "memory://m/manifest.json").unwrap_err();
        assert!(
            err.to_string().starts_with("invalid manifest memory://m/manifest.json: "),
            "{err}"
        );
        let err = parse(b"{\"fileFormat\": \"CSV\"}", "memory://m/manifest.json").unwrap_err();
        assert!(err.to_string().contains("no 'files' list"), "{err}");
    }
}
