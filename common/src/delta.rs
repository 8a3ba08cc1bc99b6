//! The daily delta: the keys of an inventory whose item ids the hash index does not hold,
//! written as a Parquet inventory (`bucket`, `key`, `id_hash`; readable by `--inventory` and by
//! the original's scripts) at `<prefix>/pending/delta_<date>.parquet`, merged with the earlier
//! pending deltas. Rows of earlier deltas whose ids the index now holds were ingested (their run
//! updated the index) and are dropped, so a delta is consumed by ingesting it; the earlier files
//! are deleted once today's is written. As in the original, an item's id is its key's file name
//! without `.stac.json`.
//!
//! Memory: the index (16 bytes per id) and one 16-byte hash per key written; keys stream from
//! the inventory to the output in batches.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{Array, AsArray, FixedSizeBinaryBuilder, StringBuilder};
use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use chrono::{DateTime, NaiveDate, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use parquet::arrow::async_reader::ParquetObjectReader;
use parquet::arrow::async_writer::ParquetObjectWriter;
use parquet::arrow::{AsyncArrowWriter, ParquetRecordBatchStreamBuilder};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::Serialize;

use crate::backfill::chunks::MalformedEntry;
use crate::hash_index::{HashIndex, HashIndexError, hash_id};
use crate::inventory::filter::{Filter, STAC_SUFFIX, filter};
use crate::inventory::{InventoryError, InventoryRecord, OpenOptions};
use crate::location::Location;
use crate::stores::{ObjectError, StoreError, Stores};

/// Rows per output batch.
const BATCH: usize = 65_536;

/// What to compute.
#[derive(Debug, Clone)]
pub struct DeltaSettings {
    /// Today's inventory.
    pub inventory: Location,
    /// Only inventory rows last modified at or after this.
    pub since: Option<DateTime<Utc>>,
    /// Also list keys whose ids are indexed when their object was modified at or after this
    /// (re-processed items: the ingest replaces the ones whose `updated` is newer).
    pub changed_since: Option<DateTime<Utc>>,
    /// The hash index of the table.
    pub index: Location,
    /// Where deltas live (`pending/` under it).
    pub prefix: Location,
    /// The date naming today's delta.
    pub date: NaiveDate,
}

/// What a delta run found and wrote.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeltaOutcome {
    /// The date of the delta.
    pub date: String,
    /// `.stac.json` keys read from the inventory (after `since`).
    pub inventory_keys: u64,
    /// Distinct ids in the hash index.
    pub indexed_ids: usize,
    /// Keys of the inventory not in the index (each id once).
    pub new_keys: u64,
    /// Keys whose ids are indexed, listed because their object changed at or after
    /// `changed_since`.
    pub changed_keys: u64,
    /// Rows carried over from earlier pending deltas (not ingested yet).
    pub carried_keys: u64,
    /// Rows of earlier deltas dropped because their ids are in the index now (ingested).
    pub consumed_keys: u64,
    /// Rows in today's delta.
    pub total_keys: u64,
    /// Today's delta, when it has rows (none is written otherwise).
    pub delta: Option<String>,
    /// Earlier pending deltas merged into today's and deleted.
    pub merged_deltas: Vec<String>,
    /// Inventory rows that could not be read, listed in this file.
    pub malformed_rows: u64,
    /// Where the malformed rows are listed.
    pub malformed_file: Option<String>,
}

/// Why a delta could not be made (nothing is deleted then).
#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    /// The hash index is missing: without it every key would look new.
    #[error(
        "no hash index at {0}: build one first (backfill or incremental with --update-hash-index)"
    )]
    NoIndex(String),
    /// The hash index could not be read.
    #[error(transparent)]
    Index(#[from] HashIndexError),
    /// The inventory could not be read.
    #[error("reading the inventory: {0}")]
    Inventory(#[from] InventoryError),
    /// An object could not be listed, read, written or deleted.
    #[error(transparent)]
    Object(#[from] ObjectError),
    /// A location could not be resolved.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A delta file could not be read or written.
    #[error("delta {location}: {reason}")]
    Parquet {
        /// The file.
        location: String,
        /// What went wrong.
        reason: String,
    },
    /// The malformed rows could not be listed.
    #[error(transparent)]
    List(#[from] crate::json_lines::JsonLinesError),
}

/// The pending folder of a delta prefix.
pub fn pending_dir(prefix: &Location) -> Location {
    prefix.join("pending")
}

/// Today's delta file.
pub fn delta_file(prefix: &Location, date: NaiveDate) -> Location {
    pending_dir(prefix).join(&format!("delta_{}.parquet", date.format("%Y-%m-%d")))
}

fn is_delta_name(name: &str) -> bool {
    name.starts_with("delta_") && name.ends_with(".parquet")
}

/// The item id of an inventory key: its file name without `.stac.json`.
pub fn id_of_key(key: &str) -> &str {
    let name = key.rsplit('/').next().unwrap_or(key);
    name.strip_suffix(STAC_SUFFIX).unwrap_or(name)
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("bucket", DataType::Utf8, false),
        Field::new("key", DataType::Utf8, false),
        Field::new("id_hash", DataType::FixedSizeBinary(16), false),
    ]))
}

/// Rows buffered for the output, each id once.
struct Output {
    writer: AsyncArrowWriter<ParquetObjectWriter>,
    location: Location,
    seen: HashSet<[u8; 16]>,
    buckets: StringBuilder,
    keys: StringBuilder,
    hashes: FixedSizeBinaryBuilder,
    rows: u64,
}

impl Output {
    fn open(stores: &Stores, location: Location) -> Result<Output, DeltaError> {
        let target = stores.resolve(&location)?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .build();
        let object = ParquetObjectWriter::new(target.store, target.path);
        let writer = AsyncArrowWriter::try_new(object, schema(), Some(props))
            .map_err(|e| parquet_err(&location, e))?;
        Ok(Output {
            writer,
            location,
            seen: HashSet::new(),
            buckets: StringBuilder::new(),
            keys: StringBuilder::new(),
            hashes: FixedSizeBinaryBuilder::new(16),
            rows: 0,
        })
    }

    /// Adds a row unless its id was added already; returns whether it was added.
    async fn add(&mut self, bucket: &str, key: &str, hash: [u8; 16]) -> Result<bool, DeltaError> {
        if !self.seen.insert(hash) {
            return Ok(false);
        }
        self.buckets.append_value(bucket);
        self.keys.append_value(key);
        self.hashes.append_value(hash).map_err(|e| parquet_err(&self.location, e))?;
        self.rows += 1;
        if self.rows.is_multiple_of(BATCH as u64) {
            self.flush().await?;
        }
        Ok(true)
    }

    async fn flush(&mut self) -> Result<(), DeltaError> {
        let batch = RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(self.buckets.finish()),
                Arc::new(self.keys.finish()),
                Arc::new(self.hashes.finish()),
            ],
        )
        .map_err(|e| parquet_err(&self.location, e))?;
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.writer.write(&batch).await.map_err(|e| parquet_err(&self.location, e))
    }

    async fn close(mut self) -> Result<u64, DeltaError> {
        self.flush().await?;
        self.writer.close().await.map_err(|e| parquet_err(&self.location, e))?;
        Ok(self.rows)
    }
}

fn parquet_err(location: &Location, e: impl std::fmt::Display) -> DeltaError {
    DeltaError::Parquet { location: location.to_string(), reason: e.to_string() }
}

/// Computes today's delta (see the module doc) and returns what it found.
pub async fn run_delta(
    stores: &Arc<Stores>,
    settings: &DeltaSettings,
) -> Result<DeltaOutcome, DeltaError> {
    if stores.head(&settings.index).await?.is_none() {
        return Err(DeltaError::NoIndex(settings.index.to_string()));
    }
    let index = HashIndex::read(stores, &settings.index).await?;
    let today = delta_file(&settings.prefix, settings.date);
    let earlier: Vec<Location> = {
        let mut v: Vec<Location> = stores
            .list(&pending_dir(&settings.prefix))
            .await?
            .into_iter()
            .filter(|l| l.file_name().is_some_and(is_delta_name))
            .collect();
        v.sort_by_key(Location::uri);
        v
    };
    // Written under a name of its own and copied into place at the end: today's delta may be
    // among the earlier ones being read (a second run the same day).
    let partial = pending_dir(&settings.prefix).join(&format!(
        ".partial-{}-{}",
        settings.date,
        uuid::Uuid::new_v4()
    ));
    let mut out = Output::open(stores, partial.clone())?;
    let mut outcome = DeltaOutcome {
        date: settings.date.to_string(),
        indexed_ids: index.len(),
        ..Default::default()
    };
    let malformed = match read_inventory(stores, settings, &index, &mut out, &mut outcome).await {
        Ok(m) => m,
        Err(e) => {
            discard(stores, out, &partial).await;
            return Err(e);
        }
    };
    for file in &earlier {
        if let Err(e) = carry(stores, file, &index, &mut out, &mut outcome).await {
            discard(stores, out, &partial).await;
            return Err(e);
        }
    }
    outcome.total_keys = out.close().await?;
    if !malformed.is_empty() {
        let at = pending_dir(&settings.prefix).join(&format!("malformed_{}.jsonl", settings.date));
        crate::json_lines::write(stores, &at, &malformed).await?;
        tracing::warn!(rows = malformed.len(), file = %at, "inventory rows could not be read; listed");
        outcome.malformed_file = Some(at.uri());
    }
    if outcome.total_keys > 0 {
        copy(stores, &partial, &today).await?;
        outcome.delta = Some(today.uri());
    }
    stores.delete(&partial).await?;
    let merged: Vec<Location> =
        earlier.into_iter().filter(|l| *l != today || outcome.total_keys == 0).collect();
    let failed = stores.delete_all(&merged, "a merged pending delta").await;
    if failed > 0 {
        tracing::warn!(
            failed,
            "merged deltas could not be deleted; the next delta merges them again"
        );
    }
    outcome.merged_deltas = merged.iter().map(Location::uri).collect();
    Ok(outcome)
}

async fn read_inventory(
    stores: &Arc<Stores>,
    settings: &DeltaSettings,
    index: &HashIndex,
    out: &mut Output,
    outcome: &mut DeltaOutcome,
) -> Result<Vec<MalformedEntry>, DeltaError> {
    let stream = crate::inventory::open(stores, &settings.inventory, &OpenOptions::default());
    let (mut stream, _) = filter(stream, Filter { since: settings.since, ..Filter::default() });
    let mut malformed = Vec::new();
    while let Some(record) = stream.next().await {
        match record? {
            InventoryRecord::Entry(e) => {
                outcome.inventory_keys += 1;
                let hash = hash_id(id_of_key(&e.key));
                let indexed = index.contains_hash(&hash);
                let changed = settings
                    .changed_since
                    .is_some_and(|t| e.last_modified.is_some_and(|modified| modified >= t));
                if (!indexed || changed) && out.add(&e.bucket, &e.key, hash).await? {
                    if indexed {
                        outcome.changed_keys += 1;
                    } else {
                        outcome.new_keys += 1;
                    }
                }
            }
            InventoryRecord::Malformed(m) => {
                outcome.malformed_rows += 1;
                malformed.push(MalformedEntry::from(&m));
            }
        }
    }
    Ok(malformed)
}

/// Adds the rows of an earlier delta that are still not in the index.
async fn carry(
    stores: &Stores,
    file: &Location,
    index: &HashIndex,
    out: &mut Output,
    outcome: &mut DeltaOutcome,
) -> Result<(), DeltaError> {
    let target = stores.resolve(file)?;
    let size = target.store.head(&target.path).await.map_err(|e| parquet_err(file, e))?.size;
    let reader = ParquetObjectReader::new(target.store, target.path).with_file_size(size);
    let mut batches = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .and_then(|b| b.build())
        .map_err(|e| parquet_err(file, e))?;
    while let Some(batch) = batches.try_next().await.map_err(|e| parquet_err(file, e))? {
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| parquet_err(file, format!("no '{name}' column")))
        };
        let buckets = column("bucket")?
            .as_string_opt::<i32>()
            .ok_or_else(|| parquet_err(file, "bucket is not utf8"))?;
        let keys = column("key")?
            .as_string_opt::<i32>()
            .ok_or_else(|| parquet_err(file, "key is not utf8"))?;
        for i in (0..batch.num_rows()).filter(|i| buckets.is_valid(*i) && keys.is_valid(*i)) {
            let hash = hash_id(id_of_key(keys.value(i)));
            if index.contains_hash(&hash) {
                outcome.consumed_keys += 1;
            } else if out.add(buckets.value(i), keys.value(i), hash).await? {
                outcome.carried_keys += 1;
            }
        }
    }
    Ok(())
}

async fn copy(stores: &Stores, from: &Location, to: &Location) -> Result<(), DeltaError> {
    let a = stores.resolve(from)?;
    let b = stores.resolve(to)?;
    a.store.copy(&a.path, &b.path).await.map_err(|e| parquet_err(to, e))
}

async fn discard(stores: &Stores, out: Output, partial: &Location) {
    drop(out);
    if let Err(e) = stores.delete(partial).await {
        tracing::warn!(error = %e, "could not delete an unfinished delta");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_items_id_is_its_keys_file_name_without_the_suffix() {
        assert_eq!(id_of_key("velocity_image_pair/landsat/v02/N60W040/abc.stac.json"), "abc");
        assert_eq!(id_of_key("abc.stac.json"), "abc");
    }

    #[test]
    fn only_delta_files_are_pending_deltas() {
        assert!(is_delta_name("delta_2026-12-04.parquet"));
        assert!(!is_delta_name("inventory_2026-12-04.parquet"));
        assert!(!is_delta_name(".partial-2026-12-04-x"));
        assert!(!is_delta_name("malformed_2026-12-04.jsonl"));
    }
}
