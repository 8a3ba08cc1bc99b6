//! Helpers shared by the inventory tests: stores, object writers, collectors, file makers.
#![allow(dead_code)]

use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch};
use chrono::{DateTime, Utc};
use earthcatalog_common::inventory::{
    InventoryEntry, InventoryError, InventoryRecord, InventoryStream, MalformedRow,
};
use earthcatalog_common::location::Location;
use earthcatalog_common::stores::{S3Settings, Stores};
use futures::StreamExt;
use object_store::{ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use tokio::io::AsyncReadExt;

/// The directory of the copied real fixtures.
pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/inventory");

/// The text of a real fixture.
pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).unwrap()
}

/// `manifest` (JSON) with every data file listed at the size and MD5 of `data`, as AWS would
/// list the data file the test wrote.
pub fn listing(manifest: &[u8], data: &[u8]) -> Vec<u8> {
    use md5::Digest;
    let mut json: serde_json::Value = serde_json::from_slice(manifest).unwrap();
    let md5 = format!("{:x}", md5::Md5::digest(data));
    for file in json["files"].as_array_mut().unwrap() {
        file["size"] = data.len().into();
        file["MD5checksum"] = md5.clone().into();
    }
    serde_json::to_vec(&json).unwrap()
}

/// Stores with no S3 configuration (tests use memory:// and file:// only).
pub fn stores() -> Arc<Stores> {
    Arc::new(Stores::new(S3Settings::default()))
}

/// A memory root and a local temporary root: every reader test runs on both.
pub struct Roots {
    /// Keeps the local directory alive.
    pub dir: tempfile::TempDir,
    /// `memory://<name>` and `file://<dir>`.
    pub roots: Vec<Location>,
}

/// Roots for one test; `name` keeps memory stores of different tests apart.
pub fn roots(name: &str) -> Roots {
    let dir = tempfile::tempdir().unwrap();
    let roots = vec![
        Location::parse(&format!("memory://{name}")).unwrap(),
        Location::local(dir.path()).unwrap(),
    ];
    Roots { dir, roots }
}

/// Writes `bytes` at `location`.
pub async fn put(stores: &Stores, location: &Location, bytes: impl Into<Vec<u8>>) {
    let target = stores.resolve(location).unwrap();
    target.store.put(&target.path, PutPayload::from(bytes.into())).await.unwrap();
}

/// Every item of a stream.
pub async fn collect(stream: InventoryStream) -> Vec<Result<InventoryRecord, InventoryError>> {
    stream.collect().await
}

/// The entries of a stream, panicking on errors and malformed rows.
pub async fn entries(stream: InventoryStream) -> Vec<InventoryEntry> {
    collect(stream)
        .await
        .into_iter()
        .map(|item| match item.unwrap() {
            InventoryRecord::Entry(e) => e,
            InventoryRecord::Malformed(m) => panic!("unexpected malformed row: {m}"),
        })
        .collect()
}

/// (bucket, key) pairs of entries.
pub fn pairs(entries: &[InventoryEntry]) -> Vec<(String, String)> {
    entries.iter().map(|e| (e.bucket.clone(), e.key.clone())).collect()
}

/// The malformed rows of a list of items.
pub fn malformed(items: &[Result<InventoryRecord, InventoryError>]) -> Vec<MalformedRow> {
    items
        .iter()
        .filter_map(|item| match item {
            Ok(InventoryRecord::Malformed(m)) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

/// An RFC 3339 instant.
pub fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// `bytes` gzip-compressed as one member.
pub async fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = async_compression::tokio::bufread::GzipEncoder::new(bytes);
    let mut out = Vec::new();
    encoder.read_to_end(&mut out).await.unwrap();
    out
}

/// A Parquet file holding `columns`, with row groups of `row_group_size` rows.
pub fn parquet_bytes(columns: Vec<(&str, ArrayRef)>, row_group_size: usize) -> Vec<u8> {
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let props =
        WriterProperties::builder().set_max_row_group_row_count(Some(row_group_size)).build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    out
}
