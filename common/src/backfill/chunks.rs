//! Phase 1: an inventory streamed into chunk files of (bucket, key) rows.
//!
//! Memory stays bounded: one chunk is filled at a time while at most `uploads` earlier chunks
//! are encoded and written. Each chunk file carries a fingerprint of its rows in its footer,
//! so a resumed Phase 1 keeps a chunk that is already there with the same rows and rewrites
//! one that is missing or differs.
//!
//! `chunks/_manifest.json` records the settings (inventory, `since`, `limit`, chunk size). It
//! is written with `complete: false` before the first chunk and with `complete: true`, the
//! chunk count and the filter counts after the last one. A complete manifest with the same
//! settings is reused without reading the inventory; a manifest with other settings is an
//! error naming each difference, so one staging folder never mixes two inventories.

use std::sync::Arc;

use arrow::array::AsArray;
use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use futures::{StreamExt, TryStreamExt};
use parquet::arrow::async_reader::ParquetObjectReader;
use parquet::arrow::{ArrowWriter, ParquetRecordBatchStreamBuilder};
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use super::layout::{StagingLayout, parse_chunk_file_name};
use crate::inventory::{
    self, Filter, FilterCounts, InventoryError, InventoryRecord, MalformedRow, OpenOptions,
};
use crate::json_lines::{self, JsonLinesError};
use crate::location::Location;
use crate::pipeline::ObjectKey;
use crate::stores::{ObjectError, Stores};

/// Footer key of a chunk file's fingerprint (row count and a hash of its rows).
const FINGERPRINT_KEY: &str = "earthcatalog.chunk.fingerprint";
/// Column of the bucket in chunk files.
const BUCKET: &str = "bucket";
/// Column of the key in chunk files.
const KEY: &str = "key";

/// Why Phase 1 could not finish, or a chunk could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ChunkError {
    /// The staging folder was made from another inventory or with other settings.
    #[error(
        "staging {manifest} was made with other settings ({differences}); resume with the same settings or use another run or staging folder"
    )]
    SettingsChanged {
        /// The manifest.
        manifest: String,
        /// Each difference, `what: staged X, requested Y`.
        differences: String,
    },
    /// A chunk size of zero.
    #[error("chunk size must be at least 1")]
    ZeroChunkSize,
    /// The inventory could not be read.
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    /// A staging object could not be read or written.
    #[error(transparent)]
    Io(#[from] ObjectError),
    /// The malformed-rows list could not be read or written.
    #[error(transparent)]
    List(#[from] JsonLinesError),
    /// The manifest is not what Phase 1 writes.
    #[error("invalid {object} at line {line}: {reason}")]
    BadFile {
        /// The file.
        object: String,
        /// The 1-based line (1 for a JSON document).
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A chunk file is not a readable Parquet file of (bucket, key) rows.
    #[error("cannot read chunk {object}: {reason}")]
    BadChunk {
        /// The chunk file.
        object: String,
        /// What is wrong.
        reason: String,
    },
    /// A chunk could not be encoded (a bug: the rows are plain strings).
    #[error("cannot encode chunk {object}: {reason}")]
    Encode {
        /// The chunk file.
        object: String,
        /// The encoder's error.
        reason: String,
    },
    /// A chunk upload task panicked.
    #[error("chunk upload task failed: {0}")]
    Panicked(String),
}

impl ChunkError {
    /// Whether trying again may succeed (store and network errors may; settings will not).
    pub fn is_retryable(&self) -> bool {
        match self {
            ChunkError::Io(e) => e.is_retryable(),
            ChunkError::List(e) => e.is_retryable(),
            ChunkError::Inventory(InventoryError::Fetch { .. } | InventoryError::Read { .. }) => {
                true
            }
            _ => false,
        }
    }
}

/// What Phase 1 reads and how it cuts it; a resumed Phase 1 must ask for the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkSettings {
    /// The inventory (CSV, CSV.gz, Parquet or manifest.json).
    pub inventory: Location,
    /// Keep entries last modified at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Stop after this many `.stac.json` keys.
    pub limit: Option<u64>,
    /// Keys per chunk.
    pub chunk_size: usize,
}

/// How Phase 1 runs (none of this changes what it produces).
#[derive(Debug, Clone)]
pub struct ChunkOptions {
    /// How the inventory is read.
    pub open: OpenOptions,
    /// Chunks encoded and written at once, besides the one being filled.
    pub uploads: usize,
}

impl Default for ChunkOptions {
    fn default() -> Self {
        ChunkOptions { open: OpenOptions::default(), uploads: 4 }
    }
}

/// The Phase 1 manifest, as stored in `chunks/_manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkManifest {
    /// URI of the inventory.
    pub inventory: String,
    /// `since` as RFC 3339 (UTC, microseconds), if set.
    pub since: Option<String>,
    /// `limit`, if set.
    pub limit: Option<u64>,
    /// Keys per chunk.
    pub chunk_size: u64,
    /// Number of chunk files (ids `0..chunks`); meaningful once complete.
    pub chunks: u64,
    /// Number of keys in all chunks; meaningful once complete.
    pub keys: u64,
    /// What the inventory filter saw; meaningful once complete.
    pub counts: FilterCounts,
    /// Whether every chunk was written; set last.
    pub complete: bool,
}

impl ChunkManifest {
    /// An incomplete manifest recording `settings`.
    fn started(settings: &ChunkSettings) -> Self {
        ChunkManifest {
            inventory: settings.inventory.uri(),
            since: settings.since.map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true)),
            limit: settings.limit,
            chunk_size: settings.chunk_size as u64,
            chunks: 0,
            keys: 0,
            counts: FilterCounts::default(),
            complete: false,
        }
    }

    /// Each setting that differs from `wanted`, as `what: staged X, requested Y`.
    fn differences(&self, wanted: &ChunkManifest) -> Vec<String> {
        fn shown<T: std::fmt::Display>(v: &Option<T>) -> String {
            v.as_ref().map_or_else(|| "none".to_string(), T::to_string)
        }
        let mut out = Vec::new();
        if self.inventory != wanted.inventory {
            out.push(format!(
                "inventory: staged {}, requested {}",
                self.inventory, wanted.inventory
            ));
        }
        if self.since != wanted.since {
            out.push(format!(
                "since: staged {}, requested {}",
                shown(&self.since),
                shown(&wanted.since)
            ));
        }
        if self.limit != wanted.limit {
            out.push(format!(
                "limit: staged {}, requested {}",
                shown(&self.limit),
                shown(&wanted.limit)
            ));
        }
        if self.chunk_size != wanted.chunk_size {
            out.push(format!(
                "chunk size: staged {}, requested {}",
                self.chunk_size, wanted.chunk_size
            ));
        }
        out
    }
}

/// An inventory row Phase 1 could not read, as stored in `chunks/_malformed.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MalformedEntry {
    /// URI of the inventory object holding the row.
    pub object: String,
    /// Where the row is (`line 12`, `row 3 (0-based)`).
    pub position: String,
    /// Why it was refused.
    pub reason: String,
}

impl json_lines::Listed for MalformedEntry {
    const LIST: &'static str = "malformed-rows file";
}

impl From<&MalformedRow> for MalformedEntry {
    fn from(m: &MalformedRow) -> Self {
        MalformedEntry {
            object: m.object.clone(),
            position: m.position.to_string(),
            reason: m.reason.to_string(),
        }
    }
}

/// One chunk file of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkFile {
    /// Chunk id.
    pub id: u64,
    /// Where it is.
    pub location: Location,
    /// Keys in it.
    pub rows: u64,
}

/// What Phase 1 produced.
#[derive(Debug, Clone)]
pub struct ChunkPlan {
    /// Every chunk, by id.
    pub chunks: Vec<ChunkFile>,
    /// What the inventory filter saw.
    pub counts: FilterCounts,
    /// Inventory rows that could not be read (also in `chunks/_malformed.jsonl`).
    pub malformed: Vec<MalformedEntry>,
    /// Chunks written by this call.
    pub written: usize,
    /// Chunks found already staged with the same rows and kept.
    pub kept: usize,
    /// Whether a finished Phase 1 was reused without reading the inventory.
    pub reused: bool,
}

/// Runs Phase 1: streams the inventory into chunk files under `layout`, or reuses a finished
/// Phase 1 with the same settings (see the module docs).
pub async fn write_chunks(
    stores: &Arc<Stores>,
    layout: &StagingLayout,
    settings: &ChunkSettings,
    options: &ChunkOptions,
) -> Result<ChunkPlan, ChunkError> {
    if settings.chunk_size == 0 {
        return Err(ChunkError::ZeroChunkSize);
    }
    let wanted = ChunkManifest::started(settings);
    let manifest_at = layout.chunk_manifest();
    match read_manifest(stores, &manifest_at).await? {
        Some(staged) => {
            let differences = staged.differences(&wanted);
            if !differences.is_empty() {
                return Err(ChunkError::SettingsChanged {
                    manifest: manifest_at.to_string(),
                    differences: differences.join("; "),
                });
            }
            if staged.complete {
                tracing::info!(manifest = %manifest_at, chunks = staged.chunks, "Phase 1 already complete; reusing its chunks");
                return reuse(stores, layout, &staged).await;
            }
        }
        None => write_manifest(stores, &manifest_at, &wanted).await?,
    }
    let streamed = stream_chunks(stores, layout, settings, options).await?;
    remove_stale_chunks(stores, layout, streamed.chunks.len() as u64).await?;
    write_malformed(stores, &layout.malformed_rows(), &streamed.malformed).await?;
    let done = ChunkManifest {
        chunks: streamed.chunks.len() as u64,
        keys: streamed.chunks.iter().map(|c| c.rows).sum(),
        counts: streamed.counts,
        complete: true,
        ..wanted
    };
    write_manifest(stores, &manifest_at, &done).await?;
    tracing::info!(
        chunks = streamed.chunks.len(),
        written = streamed.written,
        kept = streamed.kept,
        counts = %streamed.counts,
        "Phase 1 done"
    );
    Ok(streamed)
}

/// Reads the (bucket, key) rows of a chunk file.
pub async fn read_chunk(
    stores: &Stores,
    location: &Location,
) -> Result<Vec<ObjectKey>, ChunkError> {
    let bad = |reason: String| ChunkError::BadChunk { object: location.to_string(), reason };
    let target = stores.resolve(location).map_err(|e| bad(e.to_string()))?;
    let reader = ParquetObjectReader::new(target.store, target.path);
    let builder =
        ParquetRecordBatchStreamBuilder::new(reader).await.map_err(|e| bad(e.to_string()))?;
    let stream = builder.build().map_err(|e| bad(e.to_string()))?;
    let batches: Vec<RecordBatch> = stream.try_collect().await.map_err(|e| bad(e.to_string()))?;
    let mut out = Vec::new();
    for batch in &batches {
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_string_opt::<i32>())
                .ok_or_else(|| bad(format!("no utf8 column '{name}'")))
        };
        let (buckets, keys) = (column(BUCKET)?, column(KEY)?);
        for (row, (bucket, key)) in buckets.iter().zip(keys.iter()).enumerate() {
            match (bucket, key) {
                (Some(b), Some(k)) => out.push(ObjectKey::new(b, k)),
                _ => return Err(bad(format!("null bucket or key in row {row}"))),
            }
        }
    }
    Ok(out)
}

/// The plan of a finished Phase 1, from its manifest and malformed-rows file.
async fn reuse(
    stores: &Stores,
    layout: &StagingLayout,
    manifest: &ChunkManifest,
) -> Result<ChunkPlan, ChunkError> {
    let size = manifest.chunk_size.max(1);
    let chunks = (0..manifest.chunks)
        .map(|id| ChunkFile {
            id,
            location: layout.chunk(id),
            rows: manifest.keys.saturating_sub(id * size).min(size),
        })
        .collect();
    Ok(ChunkPlan {
        chunks,
        counts: manifest.counts,
        malformed: read_malformed(stores, &layout.malformed_rows()).await?,
        written: 0,
        kept: manifest.chunks as usize,
        reused: true,
    })
}

/// Outcome of one chunk's upload task.
struct Uploaded {
    chunk: ChunkFile,
    written: bool,
}

/// Streams the filtered inventory into chunks, a few uploads at a time.
async fn stream_chunks(
    stores: &Arc<Stores>,
    layout: &StagingLayout,
    settings: &ChunkSettings,
    options: &ChunkOptions,
) -> Result<ChunkPlan, ChunkError> {
    let raw = inventory::open(stores, &settings.inventory, &options.open);
    let wanted = Filter { since: settings.since, limit: settings.limit, stac_only: true };
    let (mut records, counters) = inventory::filter(raw, wanted);
    let mut uploads: JoinSet<Result<Uploaded, ChunkError>> = JoinSet::new();
    let mut done = Vec::new();
    let mut malformed = Vec::new();
    let mut buffer = Vec::with_capacity(settings.chunk_size);
    let mut next_id = 0u64;
    while let Some(record) = records.next().await {
        match record? {
            InventoryRecord::Entry(e) => buffer.push(ObjectKey::new(e.bucket, e.key)),
            InventoryRecord::Malformed(m) => {
                tracing::warn!(%m, "malformed inventory row");
                malformed.push(MalformedEntry::from(&m));
            }
        }
        if buffer.len() == settings.chunk_size {
            let full = std::mem::replace(&mut buffer, Vec::with_capacity(settings.chunk_size));
            wait_for_room(&mut uploads, options.uploads.max(1), &mut done).await?;
            spawn_upload(&mut uploads, stores, layout.chunk(next_id), next_id, full);
            next_id += 1;
        }
    }
    if !buffer.is_empty() {
        wait_for_room(&mut uploads, options.uploads.max(1), &mut done).await?;
        spawn_upload(&mut uploads, stores, layout.chunk(next_id), next_id, buffer);
    }
    // Room for one more means every upload has finished.
    wait_for_room(&mut uploads, 1, &mut done).await?;
    done.sort_by_key(|u| u.chunk.id);
    let written = done.iter().filter(|u| u.written).count();
    Ok(ChunkPlan {
        kept: done.len() - written,
        written,
        chunks: done.into_iter().map(|u| u.chunk).collect(),
        counts: counters.snapshot(),
        malformed,
        reused: false,
    })
}

/// Waits until fewer than `slots` uploads run, collecting the finished ones.
async fn wait_for_room(
    uploads: &mut JoinSet<Result<Uploaded, ChunkError>>,
    slots: usize,
    done: &mut Vec<Uploaded>,
) -> Result<(), ChunkError> {
    while uploads.len() >= slots {
        match uploads.join_next().await {
            Some(result) => done.push(joined(result)?),
            None => break,
        }
    }
    Ok(())
}

fn joined(
    result: Result<Result<Uploaded, ChunkError>, tokio::task::JoinError>,
) -> Result<Uploaded, ChunkError> {
    result.map_err(|e| ChunkError::Panicked(e.to_string()))?
}

fn spawn_upload(
    uploads: &mut JoinSet<Result<Uploaded, ChunkError>>,
    stores: &Arc<Stores>,
    location: Location,
    id: u64,
    keys: Vec<ObjectKey>,
) {
    let stores = stores.clone();
    uploads.spawn(async move {
        let rows = keys.len() as u64;
        let fingerprint = fingerprint(&keys);
        let written = if staged_fingerprint(&stores, &location).await? == Some(fingerprint.clone())
        {
            tracing::debug!(chunk = %location, "chunk already staged with the same rows");
            false
        } else {
            let bytes = encode_chunk(&keys, &fingerprint)
                .map_err(|reason| ChunkError::Encode { object: location.to_string(), reason })?;
            stores.put(&location, bytes).await?;
            true
        };
        Ok(Uploaded { chunk: ChunkFile { id, location, rows }, written })
    });
}

/// `<rows>:<xxh3-128 of the rows>`: equal for equal rows in equal order.
fn fingerprint(keys: &[ObjectKey]) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for k in keys {
        h.update(k.bucket.as_bytes());
        h.update(&[0]);
        h.update(k.key.as_bytes());
        h.update(b"\n");
    }
    format!("{}:{:032x}", keys.len(), h.digest128())
}

/// The fingerprint in the footer of the chunk at `location`; `None` if there is no readable
/// chunk there (a missing or damaged file is simply written again).
async fn staged_fingerprint(
    stores: &Stores,
    location: &Location,
) -> Result<Option<String>, ChunkError> {
    let Some((target, meta)) = stores.head(location).await? else {
        return Ok(None);
    };
    let reader = ParquetObjectReader::new(target.store, target.path).with_file_size(meta.size);
    match ParquetRecordBatchStreamBuilder::new(reader).await {
        Ok(builder) => Ok(builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|e| e.key == FINGERPRINT_KEY))
            .and_then(|e| e.value.clone())),
        Err(error) => {
            tracing::warn!(chunk = %location, %error, "unreadable chunk file; writing it again");
            Ok(None)
        }
    }
}

/// A chunk as Parquet bytes: `bucket`, `key` (utf8), snappy, fingerprint in the footer.
fn encode_chunk(keys: &[ObjectKey], fingerprint: &str) -> Result<Bytes, String> {
    let schema = Arc::new(Schema::new(vec![
        Field::new(BUCKET, DataType::Utf8, false),
        Field::new(KEY, DataType::Utf8, false),
    ]));
    let buckets: ArrayRef =
        Arc::new(keys.iter().map(|k| Some(k.bucket.as_str())).collect::<StringArray>());
    let names: ArrayRef =
        Arc::new(keys.iter().map(|k| Some(k.key.as_str())).collect::<StringArray>());
    let batch =
        RecordBatch::try_new(schema.clone(), vec![buckets, names]).map_err(|e| e.to_string())?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_key_value_metadata(Some(vec![KeyValue::new(
            FINGERPRINT_KEY.to_string(),
            fingerprint.to_string(),
        )]))
        .build();
    let mut buf = Vec::new();
    let mut writer =
        ArrowWriter::try_new(&mut buf, schema, Some(props)).map_err(|e| e.to_string())?;
    writer.write(&batch).map_err(|e| e.to_string())?;
    writer.close().map_err(|e| e.to_string())?;
    Ok(Bytes::from(buf))
}

/// Deletes chunk files with ids at or above `count`, left by an earlier, larger Phase 1 that
/// had no manifest; they must not be mistaken for chunks of this one.
async fn remove_stale_chunks(
    stores: &Stores,
    layout: &StagingLayout,
    count: u64,
) -> Result<(), ChunkError> {
    let stale: Vec<Location> = stores
        .list(&layout.chunks_dir())
        .await?
        .iter()
        .filter_map(|l| l.file_name().and_then(parse_chunk_file_name))
        .filter(|id| *id >= count)
        .map(|id| layout.chunk(id))
        .collect();
    if !stale.is_empty() {
        tracing::info!(count = stale.len(), "removing chunk files beyond the inventory's end");
        stores.delete_all(&stale, "a stale chunk file").await;
    }
    Ok(())
}

async fn read_manifest(
    stores: &Stores,
    location: &Location,
) -> Result<Option<ChunkManifest>, ChunkError> {
    let Some(bytes) = stores.get(location).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| ChunkError::BadFile {
        object: location.to_string(),
        line: e.line(),
        reason: e.to_string(),
    })
}

async fn write_manifest(
    stores: &Stores,
    location: &Location,
    manifest: &ChunkManifest,
) -> Result<(), ChunkError> {
    let json = serde_json::to_vec_pretty(manifest)
        .map_err(|e| ChunkError::Encode { object: location.to_string(), reason: e.to_string() })?;
    Ok(stores.put(location, json).await?)
}

async fn write_malformed(
    stores: &Stores,
    location: &Location,
    rows: &[MalformedEntry],
) -> Result<(), ChunkError> {
    Ok(json_lines::write(stores, location, rows).await?)
}

async fn read_malformed(
    stores: &Stores,
    location: &Location,
) -> Result<Vec<MalformedEntry>, ChunkError> {
    match json_lines::read(stores, location).await? {
        Some(rows) => Ok(rows),
        None => {
            tracing::warn!(file = %location, "finished Phase 1 has no malformed-rows file");
            Ok(Vec::new())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_differ_when_rows_or_their_order_differ() {
        let a = [ObjectKey::new("b", "x"), ObjectKey::new("b", "y")];
        let b = [ObjectKey::new("b", "y"), ObjectKey::new("b", "x")];
        let c = [ObjectKey::new("b", "x\0b"), ObjectKey::new("b", "y")];
        assert_eq!(fingerprint(&a), fingerprint(&a.clone()));
        assert_ne!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&c));
        assert!(fingerprint(&a).starts_with("2:"));
    }

    #[test]
    fn manifest_differences_name_each_setting() {
        let base = ChunkSettings {
            inventory: Location::parse("s3://inv/a.csv").unwrap(),
            since: None,
            limit: Some(10),
            chunk_size: 1000,
        };
        let other = ChunkSettings {
            inventory: Location::parse("s3://inv/b.csv").unwrap(),
            chunk_size: 500,
            ..base.clone()
        };
        let d = ChunkManifest::started(&base).differences(&ChunkManifest::started(&other));
        assert_eq!(
            d,
            [
                "inventory: staged s3://inv/a.csv, requested s3://inv/b.csv",
                "chunk size: staged 1000, requested 500"
            ]
        );
    }
}
