//! Test inputs for ingest runs: sample items uploaded to a store, inventories naming them in
//! every supported format, and the exact (id, grid_partition) rows a run must produce.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use anyhow::Context;
use arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMillisecondArray};
use chrono::Datelike;
use earthcatalog_common::location::Location;
use earthcatalog_common::partition::{H3Partitioner, Partitioner};
use earthcatalog_common::sample::{itslive_item, itslive_key};
use earthcatalog_common::stac::parse_item_value;
use earthcatalog_common::stores::Stores;
use object_store::ObjectStoreExt;
use serde_json::Value;

/// The bucket every sample inventory names.
pub const BUCKET: &str = "its-live-data";

/// One sample item: its key in the bucket, its JSON, and its last-modified time.
#[derive(Debug, Clone)]
pub struct SampleItem {
    /// Object key.
    pub key: String,
    /// The item.
    pub json: Value,
    /// Last-modified date the inventories give it (`2024-01-DDT00:00:00Z`).
    pub modified: String,
}

impl SampleItem {
    /// The item's id.
    pub fn id(&self) -> String {
        self.json["id"].as_str().unwrap_or_default().to_string()
    }

    /// Its `updated` as PyIceberg spells a timestamp (`2025-06-01T00:00:00+00:00`).
    pub fn updated_iso(&self) -> String {
        let at = self.json["properties"]["updated"].as_str().unwrap_or_default();
        chrono::DateTime::parse_from_rfc3339(at).map(|t| t.to_rfc3339()).unwrap_or_default()
    }
}

/// `item` as the archive re-processed it: `updated` set to `when`, then `change` applied.
pub fn reprocessed(item: &SampleItem, when: &str, change: impl Fn(&mut Value)) -> SampleItem {
    let mut json = item.json.clone();
    json["properties"]["updated"] = when.into();
    change(&mut json);
    SampleItem { json, ..item.clone() }
}

/// Moves a polygon footprint (and its bbox) by `dlon` degrees of longitude, away from the
/// antimeridian.
pub fn moved(json: &mut Value, dlon: f64) {
    let east = json["bbox"][2].as_f64().unwrap_or_default();
    let dlon = if east + dlon > 179.0 { -dlon } else { dlon };
    let shift = |v: &mut Value| *v = (v.as_f64().unwrap_or_default() + dlon).into();
    if let Some(rings) = json["geometry"]["coordinates"].as_array_mut() {
        for point in rings.iter_mut().filter_map(Value::as_array_mut).flatten() {
            shift(&mut point[0]);
        }
    }
    shift(&mut json["bbox"][0]);
    shift(&mut json["bbox"][2]);
}

/// Moves an item's acquisition to 2001 (another year partition).
pub fn in_2001(json: &mut Value) {
    for field in ["datetime", "start_datetime", "mid_datetime", "end_datetime"] {
        json["properties"][field] = "2001-06-01T00:00:00Z".into();
    }
}

/// A set of sample items.
#[derive(Debug, Clone)]
pub struct Samples {
    /// The items, in inventory order.
    pub items: Vec<SampleItem>,
}

impl Samples {
    /// ITS_LIVE-shaped items `first..first + n`; item `i` was modified on day `1 + i % 28` of
    /// January 2024.
    pub fn itslive(first: u64, n: u64) -> Self {
        let items = (first..first + n)
            .map(|i| SampleItem {
                key: itslive_key(i),
                json: itslive_item(i),
                modified: format!("2024-01-{:02}T00:00:00Z", 1 + i % 28),
            })
            .collect();
        Samples { items }
    }

    /// Writes every item under `root` (the bucket's mirror or the bucket itself).
    pub async fn upload(&self, stores: &Stores, root: &Location) -> anyhow::Result<()> {
        for item in &self.items {
            put(stores, &root.join(&item.key), serde_json::to_vec(&item.json)?).await?;
        }
        Ok(())
    }

    /// The rows a run must register for these items at `resolution`: (id, cell) pairs.
    pub fn expected_rows(&self, resolution: u8) -> BTreeSet<(String, String)> {
        let h3 = H3Partitioner::new(resolution).unwrap_or_else(|e| panic!("{e}"));
        let mut out = BTreeSet::new();
        for item in &self.items {
            let parsed = parse_item_value(&item.json).unwrap_or_else(|e| panic!("{e}"));
            for cell in h3.cells(&parsed.geometry).unwrap_or_else(|e| panic!("{e}")) {
                out.insert((parsed.row.id().to_string(), cell));
            }
        }
        out
    }

    /// The ids of the items.
    pub fn ids(&self) -> Vec<String> {
        self.items.iter().map(|i| i.json["id"].as_str().unwrap_or_default().to_string()).collect()
    }

    /// Only the items for which `keep` holds.
    pub fn filtered(&self, keep: impl Fn(&SampleItem) -> bool) -> Samples {
        Samples { items: self.items.iter().filter(|i| keep(i)).cloned().collect() }
    }

    /// CSV with a header (`bucket,key,last_modified_date`).
    pub fn csv(&self) -> String {
        let mut s = String::from("bucket,key,last_modified_date\n");
        for i in &self.items {
            s.push_str(&format!("{BUCKET},{},{}\n", i.key, i.modified));
        }
        s
    }

    /// The headerless AWS CSV form: every field quoted, keys form-URL-encoded, 4 columns
    /// `Bucket, Key, Size, LastModifiedDate`.
    pub fn aws_csv(&self) -> String {
        let mut s = String::new();
        for i in &self.items {
            let key: String = i
                .key
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' => {
                        (b as char).to_string()
                    }
                    b' ' => "+".to_string(),
                    other => format!("%{other:02X}"),
                })
                .collect();
            s.push_str(&format!("\"{BUCKET}\",\"{key}\",\"1234\",\"{}\"\n", i.modified));
        }
        s
    }

    /// A Parquet inventory: `bucket`, `key`, `last_modified_date` as TIMESTAMP(MILLIS, UTC).
    pub fn parquet(&self) -> anyhow::Result<Vec<u8>> {
        let buckets = StringArray::from_iter_values(self.items.iter().map(|_| BUCKET));
        let keys = StringArray::from_iter_values(self.items.iter().map(|i| i.key.as_str()));
        let dates: Vec<i64> = self
            .items
            .iter()
            .map(|i| {
                chrono::DateTime::parse_from_rfc3339(&i.modified)
                    .map(|d| d.timestamp_millis())
                    .unwrap_or_default()
            })
            .collect();
        let dates = TimestampMillisecondArray::from(dates).with_timezone("UTC");
        let batch = RecordBatch::try_from_iter([
            ("bucket", Arc::new(buckets) as ArrayRef),
            ("key", Arc::new(keys) as ArrayRef),
            ("last_modified_date", Arc::new(dates) as ArrayRef),
        ])?;
        let mut buf = Vec::new();
        let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, batch.schema(), None)?;
        w.write(&batch)?;
        w.close()?;
        Ok(buf)
    }
}

/// Gzips bytes (for `.csv.gz` inventories).
pub fn gzip(data: &[u8]) -> anyhow::Result<Vec<u8>> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data)?;
    Ok(e.finish()?)
}

/// An S3 Inventory `manifest.json` for data files in `destination` bucket, each listed with
/// the size and MD5 of its bytes, as AWS lists them.
pub fn manifest(
    format: &str,
    file_schema: &str,
    destination: &str,
    files: &[(String, &[u8])],
) -> String {
    use md5::Digest;
    let files: Vec<Value> = files
        .iter()
        .map(|(key, data)| {
            let md5 = format!("{:x}", md5::Md5::digest(data));
            serde_json::json!({"key": key, "size": data.len(), "MD5checksum": md5})
        })
        .collect();
    serde_json::json!({
        "sourceBucket": BUCKET,
        "destinationBucket": format!("arn:aws:s3:::{destination}"),
        "version": "2016-11-30",
        "creationTimestamp": "1700000000000",
        "fileFormat": format,
        "fileSchema": file_schema,
        "files": files,
    })
    .to_string()
}

/// Writes bytes to a location.
pub async fn put(stores: &Stores, at: &Location, bytes: Vec<u8>) -> anyhow::Result<()> {
    let o = stores.resolve(at)?;
    o.store.put(&o.path, bytes.into()).await.with_context(|| format!("writing {at}"))?;
    Ok(())
}

/// Reads a location whole.
pub async fn get(stores: &Stores, at: &Location) -> anyhow::Result<Vec<u8>> {
    let o = stores.resolve(at)?;
    let r = o.store.get(&o.path).await.with_context(|| format!("reading {at}"))?;
    Ok(r.bytes().await?.to_vec())
}

/// The ETag of the object at a location (how a test proves an object was not rewritten).
pub async fn etag(stores: &Stores, at: &Location) -> anyhow::Result<Option<String>> {
    let o = stores.resolve(at)?;
    let meta = o.store.head(&o.path).await.with_context(|| format!("reading {at}"))?;
    Ok(meta.e_tag)
}

/// The URIs of every object under a location (`s3://bucket/key`, `file:///path`), sorted.
pub async fn list(stores: &Stores, at: &Location) -> anyhow::Result<BTreeSet<String>> {
    use futures::TryStreamExt;
    let o = stores.resolve(at)?;
    let metas: Vec<_> =
        o.store.list(Some(&o.path)).try_collect().await.with_context(|| format!("listing {at}"))?;
    let root = match at {
        Location::S3 { bucket, .. } => {
            Location::S3 { bucket: bucket.clone(), prefix: String::new() }
        }
        Location::Memory { name, .. } => {
            Location::Memory { name: name.clone(), prefix: String::new() }
        }
        Location::Local { .. } => Location::local("/")?,
    };
    Ok(metas.into_iter().map(|m| root.join(m.location.as_ref()).uri()).collect())
}

impl Samples {
    /// The first `n` items.
    pub fn first(&self, n: usize) -> Samples {
        Samples { items: self.items[..n.min(self.items.len())].to_vec() }
    }

    /// Items `from..` (the rest after [`Samples::first`]).
    pub fn after(&self, from: usize) -> Samples {
        Samples { items: self.items[from.min(self.items.len())..].to_vec() }
    }

    /// Rows per (cell, UTC year of the item's datetime) at H3 `resolution`: what
    /// `earthcatalog info` must report.
    pub fn rows_per_cell_and_year(&self, resolution: u8) -> BTreeMap<(String, i32), u64> {
        let years: BTreeMap<String, i32> = self
            .items
            .iter()
            .filter_map(|i| {
                let id = i.json["id"].as_str()?.to_string();
                let dt = i.json["properties"]["datetime"].as_str()?;
                let year = chrono::DateTime::parse_from_rfc3339(dt).ok()?.year();
                Some((id, year))
            })
            .collect();
        let mut out = BTreeMap::new();
        for (id, cell) in self.expected_rows(resolution) {
            let year = years.get(&id).copied().unwrap_or_else(|| panic!("no datetime in {id}"));
            *out.entry((cell, year)).or_insert(0) += 1;
        }
        out
    }
}
