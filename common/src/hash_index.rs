//! The item-id hash index: xxh3-128 (seed 42, big-endian 16 bytes) of every item id in the
//! warehouse, one sorted Parquet column `id_hash fixed_size_binary[16]`, zstd — byte-compatible
//! with earthcatalog 0.6.1's index, so existing indexes stay usable for daily deltas.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{Array, AsArray, FixedSizeBinaryArray};
use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Schema};
use futures::TryStreamExt;
use parquet::arrow::async_reader::ParquetObjectReader;
use parquet::arrow::{AsyncArrowWriter, ParquetRecordBatchStreamBuilder};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::location::Location;
use crate::stores::{ObjectError, Stores};

/// The index's only column.
pub const COLUMN: &str = "id_hash";
/// Seed of the hash, fixed by the original.
pub const SEED: u64 = 42;

/// The 16-byte hash of an item id.
pub fn hash_id(id: &str) -> [u8; 16] {
    xxhash_rust::xxh3::xxh3_128_with_seed(id.as_bytes(), SEED).to_be_bytes()
}

/// Where a warehouse's index lives unless told otherwise: `<warehouse>_id_hashes.parquet`
/// beside it (the original's default).
pub fn default_location(warehouse: &Location) -> Result<Location, crate::location::LocationError> {
    Location::parse(&format!("{}_id_hashes.parquet", warehouse.uri().trim_end_matches('/')))
}

/// Why the index could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum HashIndexError {
    /// The object could not be found out about or written.
    #[error(transparent)]
    Object(#[from] ObjectError),
    /// Reading or writing failed.
    #[error("hash index {location}: {reason}")]
    Io {
        /// The index file.
        location: String,
        /// What went wrong.
        reason: String,
    },
}

/// A set of id hashes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HashIndex {
    hashes: BTreeSet<[u8; 16]>,
}

impl HashIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an id; returns whether it was new.
    pub fn insert_id(&mut self, id: &str) -> bool {
        self.hashes.insert(hash_id(id))
    }

    /// Whether the id is in the index.
    pub fn contains_id(&self, id: &str) -> bool {
        self.hashes.contains(&hash_id(id))
    }

    /// Whether a hash is in the index.
    pub fn contains_hash(&self, hash: &[u8; 16]) -> bool {
        self.hashes.contains(hash)
    }

    /// Removes a hash; returns whether it was there.
    pub fn remove_hash(&mut self, hash: &[u8; 16]) -> bool {
        self.hashes.remove(hash)
    }

    /// Number of distinct hashes.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// Reads an index; a missing object is the empty index.
    pub async fn read(stores: &Stores, location: &Location) -> Result<HashIndex, HashIndexError> {
        let Some((target, meta)) = stores.head(location).await? else {
            return Ok(HashIndex::new());
        };
        let err = |reason: String| HashIndexError::Io { location: location.to_string(), reason };
        let reader = ParquetObjectReader::new(target.store, target.path).with_file_size(meta.size);
        let mut stream = ParquetRecordBatchStreamBuilder::new(reader)
            .await
            .and_then(|b| b.build())
            .map_err(|e| err(e.to_string()))?;
        let mut out = HashIndex::new();
        while let Some(batch) = stream.try_next().await.map_err(|e| err(e.to_string()))? {
            let col = batch
                .column_by_name(COLUMN)
                .and_then(|c| c.as_fixed_size_binary_opt())
                .filter(|c| c.value_length() == 16)
                .ok_or_else(|| err(format!("no {COLUMN} fixed_size_binary[16] column")))?;
            for i in (0..col.len()).filter(|i| col.is_valid(*i)) {
                let mut h = [0u8; 16];
                h.copy_from_slice(col.value(i));
                out.hashes.insert(h);
            }
        }
        Ok(out)
    }

    /// Writes the index, sorted, replacing any previous object.
    pub async fn write(&self, stores: &Stores, location: &Location) -> Result<(), HashIndexError> {
        let err = |reason: String| HashIndexError::Io { location: location.to_string(), reason };
        let schema =
            Arc::new(Schema::new(vec![Field::new(COLUMN, DataType::FixedSizeBinary(16), false)]));
        // A BTreeSet iterates in ascending byte order: the file is sorted, as the original's.
        let values: Vec<u8> = self.hashes.iter().flatten().copied().collect();
        let array = FixedSizeBinaryArray::new(16, values.into(), None);
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(array)])
            .map_err(|e| err(e.to_string()))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .build();
        let mut buf = Vec::new();
        let mut w = AsyncArrowWriter::try_new(&mut buf, schema, Some(props))
            .map_err(|e| err(e.to_string()))?;
        w.write(&batch).await.map_err(|e| err(e.to_string()))?;
        w.close().await.map_err(|e| err(e.to_string()))?;
        stores.put(location, buf).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stores::S3Settings;

    fn hex(b: [u8; 16]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn hashes_match_the_originals_test_vectors() {
        assert_eq!(hex(hash_id("item-1")), "531fdc248680ebb5a14d3481f4a2b986");
        assert_eq!(hex(hash_id("item-abc")), "6dd1314e5bde2d516b73a2681fd987bf");
        assert_eq!(hex(hash_id("")), "16c20acd33f7af2f3c1d09e9fe249164");
        assert_eq!(
            hex(hash_id(
                "LC08_L1TP_232011_20190524_20200828_02_T1_X_LC08_L1TP_232011_20190711_20200827_02_T1_G0120V02_P056"
            )),
            "bad603c1790e3f7c689df147d96601b1"
        );
    }

    #[tokio::test]
    async fn an_index_round_trips_sorted_and_a_missing_one_is_empty() {
        let stores = Stores::new(S3Settings::default());
        let loc = Location::parse("memory://idx/warehouse_id_hashes.parquet").unwrap();
        assert!(HashIndex::read(&stores, &loc).await.unwrap().is_empty());
        let mut idx = HashIndex::new();
        for id in ["b", "a", "c", "a"] {
            idx.insert_id(id);
        }
        assert_eq!(idx.len(), 3);
        idx.write(&stores, &loc).await.unwrap();
        let back = HashIndex::read(&stores, &loc).await.unwrap();
        assert_eq!(back, idx);
        assert!(back.contains_id("c") && !back.contains_id("d"));
        HashIndex::new().write(&stores, &loc).await.unwrap();
        assert!(HashIndex::read(&stores, &loc).await.unwrap().is_empty());
    }
}
