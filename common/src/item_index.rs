//! What the table holds of each item: its version (`updated`) and the (cell, year) partitions its
//! rows are in, by the digest of its (collection, id) ([`crate::ids::ItemKey::digest`]). A newer
//! copy of an item finds the partitions holding its old rows here, without scanning the table.
//!
//! Kept beside the hash index as one Parquet file (`item`, `version`, `grid_partition`, `year`:
//! one row per item and partition) stamped with the snapshot it describes. Whoever changes the
//! table need not keep it: a file behind the table (a run killed before saving it, a compaction,
//! a sync) is brought up to date from the files added and removed since its snapshot, and
//! rebuilt from the live files when that snapshot has expired.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{Array, AsArray, FixedSizeBinaryArray, Int32Array, StringArray};
use arrow::datatypes::{Int32Type, TimestampMicrosecondType};
use arrow_array::{RecordBatch, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use futures::{StreamExt, TryStreamExt};
use iceberg::table::Table;
use parquet::arrow::async_reader::ParquetObjectReader;
use parquet::arrow::{AsyncArrowWriter, ParquetRecordBatchStreamBuilder, ProjectionMask};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use crate::catalog::{DataFileInfo, data_files, data_files_at};
use crate::ids::{CellYear, ItemKey};
use crate::location::{Location, LocationError};
use crate::stores::{ObjectError, Stores};

/// The file metadata key naming the snapshot the index describes (empty: the table had none).
const SNAPSHOT_KEY: &str = "earthcatalog.item_index.snapshot_id";
/// Data files read at once when the index is brought up to date.
const SCAN_CONCURRENCY: usize = 8;
/// Rows per written batch, so that writing does not copy the whole index at once.
const WRITE_BATCH: usize = 1 << 20;

/// Why the index could not be read, brought up to date or written.
#[derive(Debug, thiserror::Error)]
pub enum ItemIndexError {
    /// The object could not be found out about or written.
    #[error(transparent)]
    Object(#[from] ObjectError),
    /// The index file could not be read or written.
    #[error("item index {location}: {reason}")]
    Io {
        /// The index file.
        location: String,
        /// What went wrong.
        reason: String,
    },
    /// A data file of the table could not be read.
    #[error("item index: reading data file {path}: {reason}")]
    DataFile {
        /// The data file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The table's metadata could not be read.
    #[error("item index: reading the table's metadata")]
    Table(#[from] iceberg::Error),
}

/// What the table holds of one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held<'a> {
    /// Its `updated` in microseconds (`None`: the item has none).
    pub version: Option<i64>,
    /// The partitions its rows are in.
    pub partitions: Vec<&'a CellYear>,
}

#[derive(Debug, Clone, Default)]
struct Entry {
    version: Option<i64>,
    /// Indexes into [`ItemIndex::partitions`].
    partitions: Vec<u32>,
}

/// Every item of the table with its version and partitions.
#[derive(Debug, Clone, Default)]
pub struct ItemIndex {
    snapshot: Option<i64>,
    partitions: Vec<CellYear>,
    partition_ids: HashMap<CellYear, u32>,
    items: HashMap<u128, Entry>,
}

/// How [`ItemIndex::load`] got the index to the table's current snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// The stored index described the current snapshot.
    Current,
    /// The stored index was behind: the files added and removed since were read.
    CaughtUp {
        /// Data files read.
        files: usize,
    },
    /// No usable stored index: every live file was read.
    Rebuilt {
        /// Data files read.
        files: usize,
    },
}

impl ItemIndex {
    /// Where a warehouse's item index lives: `<warehouse>_items.parquet`, beside the hash index.
    pub fn location(warehouse: &Location) -> Result<Location, LocationError> {
        Location::parse(&format!("{}_items.parquet", warehouse.uri().trim_end_matches('/')))
    }

    /// The snapshot the index describes.
    pub fn snapshot(&self) -> Option<i64> {
        self.snapshot
    }

    /// Says that the index now describes `snapshot`.
    pub fn set_snapshot(&mut self, snapshot: Option<i64>) {
        self.snapshot = snapshot;
    }

    /// Items in the index.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the index holds no item.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// What the table holds of the item with this digest, if anything.
    pub fn get(&self, item: u128) -> Option<Held<'_>> {
        self.items.get(&item).map(|e| Held {
            version: e.version,
            partitions: e.partitions.iter().map(|p| &self.partitions[*p as usize]).collect(),
        })
    }

    /// Records that the table now holds the item at `version` in exactly `partitions`.
    pub fn set(&mut self, item: u128, version: Option<i64>, partitions: &HashSet<CellYear>) {
        let partitions = partitions.iter().map(|p| self.partition_id(p)).collect();
        self.items.insert(item, Entry { version, partitions });
    }

    /// Records that the table no longer holds the item.
    pub fn remove(&mut self, item: u128) {
        self.items.remove(&item);
    }

    fn partition_id(&mut self, part: &CellYear) -> u32 {
        if let Some(id) = self.partition_ids.get(part) {
            return *id;
        }
        let id = self.partitions.len() as u32;
        self.partitions.push(part.clone());
        self.partition_ids.insert(part.clone(), id);
        id
    }

    /// Adds one row of a file: the item is in `part` at `version` (the newest version seen wins).
    fn add_row(&mut self, item: u128, version: Option<i64>, part: u32) {
        let entry = self.items.entry(item).or_default();
        entry.version = entry.version.max(version);
        if !entry.partitions.contains(&part) {
            entry.partitions.push(part);
        }
    }

    /// Takes away one row of a removed file: the item is no longer in `part`. An item left in
    /// no partition is dropped by [`Self::drop_unplaced`] once the added files are in, so an
    /// item whose rows were only moved keeps its version (which its rows may not carry: the
    /// object's last-modified time of an item without `updated`).
    fn remove_row(&mut self, item: u128, part: u32) {
        if let Some(entry) = self.items.get_mut(&item) {
            entry.partitions.retain(|p| *p != part);
        }
    }

    /// Drops the items no partition holds any more.
    fn drop_unplaced(&mut self) {
        self.items.retain(|_, entry| !entry.partitions.is_empty());
    }

    /// The index for `table`'s current snapshot: the stored one at `location` if it describes
    /// it, else the stored one brought up to date, else one built from the live files.
    pub async fn load(
        stores: &Arc<Stores>,
        table: &Table,
        location: &Location,
    ) -> Result<(ItemIndex, Freshness), ItemIndexError> {
        let current = table.metadata().current_snapshot_id();
        let stored = ItemIndex::read(stores, location).await?;
        let base = stored
            .as_ref()
            .and_then(|i| i.snapshot)
            .filter(|s| table.metadata().snapshot_by_id(*s).is_some());
        match (stored, base) {
            (Some(index), _) if index.snapshot == current => Ok((index, Freshness::Current)),
            (Some(mut index), Some(base)) => {
                let files = index.catch_up(stores, table, base).await?;
                index.snapshot = current;
                Ok((index, Freshness::CaughtUp { files }))
            }
            _ => {
                let mut index = ItemIndex::default();
                let live = data_files(table).await?;
                index.apply(stores, &[], &live).await?;
                index.snapshot = current;
                Ok((index, Freshness::Rebuilt { files: live.len() }))
            }
        }
    }

    /// Applies the files `base` had and the current snapshot does not, and the other way round.
    async fn catch_up(
        &mut self,
        stores: &Stores,
        table: &Table,
        base: i64,
    ) -> Result<usize, ItemIndexError> {
        let before = data_files_at(table, base).await?;
        let now = data_files(table).await?;
        let had: HashSet<&str> = before.iter().map(|f| f.path.as_str()).collect();
        let has: HashSet<&str> = now.iter().map(|f| f.path.as_str()).collect();
        let removed: Vec<DataFileInfo> =
            before.iter().filter(|f| !has.contains(f.path.as_str())).cloned().collect();
        let added: Vec<DataFileInfo> =
            now.iter().filter(|f| !had.contains(f.path.as_str())).cloned().collect();
        if removed.len() + added.len() > now.len() {
            // A rebuild or a large compaction: reading the live files is less. Versions the
            // rows do not carry (items without `updated`) are kept from before.
            let before = std::mem::take(self);
            self.apply(stores, &[], &now).await?;
            for (item, entry) in &mut self.items {
                if entry.version.is_none() {
                    entry.version = before.items.get(item).and_then(|e| e.version);
                }
            }
            return Ok(now.len());
        }
        self.apply(stores, &removed, &added).await?;
        Ok(removed.len() + added.len())
    }

    /// Takes the rows of `removed` away, then adds those of `added` (a rewrite that keeps an
    /// item's rows removes and adds them, so the order matters).
    async fn apply(
        &mut self,
        stores: &Stores,
        removed: &[DataFileInfo],
        added: &[DataFileInfo],
    ) -> Result<(), ItemIndexError> {
        let mut scans = futures::stream::iter(removed.iter().map(|f| (f, false)))
            .chain(futures::stream::iter(added.iter().map(|f| (f, true))))
            .map(|(f, add)| async move {
                items_of(stores, &f.path, Some(f.file_size_in_bytes))
                    .await
                    .map(|rows| (f, add, rows))
            })
            .buffered(SCAN_CONCURRENCY);
        while let Some((file, add, rows)) = scans.try_next().await? {
            let part = CellYear::new(file.grid_partition.clone().unwrap_or_default(), file.year);
            let part = self.partition_id(&part);
            for (item, version) in rows {
                if add {
                    self.add_row(item, version, part);
                } else {
                    self.remove_row(item, part);
                }
            }
        }
        self.drop_unplaced();
        Ok(())
    }

    /// Reads a stored index; `None` when there is none.
    pub async fn read(
        stores: &Stores,
        location: &Location,
    ) -> Result<Option<ItemIndex>, ItemIndexError> {
        let Some((target, meta)) = stores.head(location).await? else {
            return Ok(None);
        };
        let err = |reason: String| ItemIndexError::Io { location: location.uri(), reason };
        let reader = ParquetObjectReader::new(target.store, target.path).with_file_size(meta.size);
        let builder =
            ParquetRecordBatchStreamBuilder::new(reader).await.map_err(|e| err(e.to_string()))?;
        let stamp = builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|kv| kv.key == SNAPSHOT_KEY))
            .and_then(|kv| kv.value.clone())
            .ok_or_else(|| err(format!("no {SNAPSHOT_KEY} in its metadata")))?;
        let snapshot = match stamp.as_str() {
            "" => None,
            s => Some(s.parse::<i64>().map_err(|e| err(format!("{SNAPSHOT_KEY} {s:?}: {e}")))?),
        };
        let mut index = ItemIndex { snapshot, ..Default::default() };
        let mut stream = builder.build().map_err(|e| err(e.to_string()))?;
        while let Some(batch) = stream.try_next().await.map_err(|e| err(e.to_string()))? {
            let missing = |name: &str| err(format!("no readable '{name}' column"));
            let items = batch
                .column_by_name("item")
                .and_then(|c| c.as_fixed_size_binary_opt())
                .filter(|c| c.value_length() == 16)
                .ok_or_else(|| missing("item"))?;
            let versions = batch
                .column_by_name("version")
                .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>())
                .ok_or_else(|| missing("version"))?;
            let cells = batch
                .column_by_name("grid_partition")
                .and_then(|c| c.as_string_opt::<i32>())
                .ok_or_else(|| missing("grid_partition"))?;
            let years = batch
                .column_by_name("year")
                .and_then(|c| c.as_primitive_opt::<Int32Type>())
                .ok_or_else(|| missing("year"))?;
            for i in 0..batch.num_rows() {
                let item = u128::from_be_bytes(
                    items.value(i).try_into().map_err(|_| err("an item of another size".into()))?,
                );
                let version = versions.is_valid(i).then(|| versions.value(i));
                let year = years.is_valid(i).then(|| years.value(i));
                let part = index.partition_id(&CellYear::new(cells.value(i), year));
                index.add_row(item, version, part);
            }
        }
        Ok(Some(index))
    }

    /// Writes the index, replacing any stored one.
    pub async fn write(&self, stores: &Stores, location: &Location) -> Result<(), ItemIndexError> {
        let err = |reason: String| ItemIndexError::Io { location: location.uri(), reason };
        let schema = Arc::new(Schema::new(vec![
            Field::new("item", DataType::FixedSizeBinary(16), false),
            Field::new(
                "version",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("grid_partition", DataType::Utf8, false),
            Field::new("year", DataType::Int32, true),
        ]));
        let stamp = self.snapshot.map(|s| s.to_string()).unwrap_or_default();
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_key_value_metadata(Some(vec![KeyValue::new(SNAPSHOT_KEY.into(), stamp)]))
            .build();
        let mut buf = Vec::new();
        let mut w = AsyncArrowWriter::try_new(&mut buf, schema.clone(), Some(props))
            .map_err(|e| err(e.to_string()))?;
        let mut rows = self
            .items
            .iter()
            .flat_map(|(item, e)| e.partitions.iter().map(move |p| (*item, e.version, *p)))
            .peekable();
        while rows.peek().is_some() {
            let batch: Vec<_> = rows.by_ref().take(WRITE_BATCH).collect();
            let items: Vec<u8> = batch.iter().flat_map(|(i, _, _)| i.to_be_bytes()).collect();
            let columns: Vec<Arc<dyn Array>> = vec![
                Arc::new(FixedSizeBinaryArray::new(16, items.into(), None)),
                Arc::new(
                    TimestampMicrosecondArray::from_iter(batch.iter().map(|(_, v, _)| *v))
                        .with_timezone("UTC"),
                ),
                Arc::new(StringArray::from_iter_values(
                    batch.iter().map(|(_, _, p)| self.partitions[*p as usize].cell.as_str()),
                )),
                Arc::new(Int32Array::from_iter(
                    batch.iter().map(|(_, _, p)| self.partitions[*p as usize].year),
                )),
            ];
            let batch =
                RecordBatch::try_new(schema.clone(), columns).map_err(|e| err(e.to_string()))?;
            w.write(&batch).await.map_err(|e| err(e.to_string()))?;
        }
        w.close().await.map_err(|e| err(e.to_string()))?;
        stores.put(location, buf).await?;
        Ok(())
    }
}

/// The (item digest, `updated`) of every row with an id of the data file at `path` (its size,
/// when known, saves a request).
pub async fn items_of(
    stores: &Stores,
    path: &str,
    size: Option<u64>,
) -> Result<Vec<(u128, Option<i64>)>, ItemIndexError> {
    let err = |reason: String| ItemIndexError::DataFile { path: path.to_string(), reason };
    let location = Location::parse(path).map_err(|e| err(e.to_string()))?;
    let target = stores.resolve(&location).map_err(|e| err(e.to_string()))?;
    let mut reader = ParquetObjectReader::new(target.store, target.path);
    if let Some(size) = size {
        reader = reader.with_file_size(size);
    }
    let builder =
        ParquetRecordBatchStreamBuilder::new(reader).await.map_err(|e| err(e.to_string()))?;
    let roots: Vec<usize> = ["collection", crate::schema::ID, "updated"]
        .iter()
        .map(|name| builder.schema().index_of(name).map_err(|_| err(format!("no '{name}' column"))))
        .collect::<Result<_, _>>()?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let mut stream = builder.with_projection(mask).build().map_err(|e| err(e.to_string()))?;
    let mut out = Vec::new();
    while let Some(batch) = stream.try_next().await.map_err(|e| err(e.to_string()))? {
        let text = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_string_opt::<i32>())
                .ok_or_else(|| err(format!("'{name}' is not a string column")))
        };
        let (collections, ids) = (text("collection")?, text(crate::schema::ID)?);
        let updated = batch
            .column_by_name("updated")
            .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>())
            .ok_or_else(|| err("'updated' is not a microsecond timestamp column".into()))?;
        for i in (0..ids.len()).filter(|i| ids.is_valid(*i)) {
            let collection = collections.is_valid(i).then(|| collections.value(i));
            let item = ItemKey { collection, id: ids.value(i) }.digest();
            out.push((item, updated.is_valid(i).then(|| updated.value(i))));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stores::S3Settings;

    fn parts(list: &[(&str, Option<i32>)]) -> HashSet<CellYear> {
        list.iter().map(|(c, y)| CellYear::new(*c, *y)).collect()
    }

    #[tokio::test]
    async fn an_index_round_trips_with_its_snapshot_versions_and_partitions() {
        let stores = Stores::new(S3Settings::default());
        let warehouse = Location::parse("memory://items/warehouse").unwrap();
        let at = ItemIndex::location(&warehouse).unwrap();
        assert_eq!(at.uri(), "memory://items/warehouse_items.parquet");
        assert!(ItemIndex::read(&stores, &at).await.unwrap().is_none());

        let mut index = ItemIndex::default();
        index.set(1, Some(10), &parts(&[("a", Some(2020)), ("b", Some(2020))]));
        index.set(2, None, &parts(&[("a", None)]));
        index.set(3, Some(5), &parts(&[("c", Some(1999))]));
        index.remove(3);
        index.set_snapshot(Some(42));
        index.write(&stores, &at).await.unwrap();

        let back = ItemIndex::read(&stores, &at).await.unwrap().unwrap();
        assert_eq!(back.snapshot(), Some(42));
        assert_eq!(back.len(), 2);
        let one = back.get(1).unwrap();
        assert_eq!(one.version, Some(10));
        let mut cells: Vec<_> = one.partitions.iter().map(|p| p.to_string()).collect();
        cells.sort();
        assert_eq!(cells, ["grid_partition=a/year=2020", "grid_partition=b/year=2020"]);
        let two = back.get(2).unwrap();
        assert_eq!((two.version, two.partitions.len()), (None, 1));
        assert!(back.get(3).is_none());

        ItemIndex::default().write(&stores, &at).await.unwrap();
        let empty = ItemIndex::read(&stores, &at).await.unwrap().unwrap();
        assert!(empty.is_empty() && empty.snapshot().is_none());
    }

    #[test]
    fn a_removed_file_takes_only_its_partition_and_the_item_goes_with_its_last() {
        let mut index = ItemIndex::default();
        let (a, b) = (
            index.partition_id(&CellYear::new("a", None)),
            index.partition_id(&CellYear::new("b", None)),
        );
        index.add_row(7, Some(1), a);
        index.add_row(7, Some(3), b);
        assert_eq!(index.get(7).unwrap().version, Some(3), "the newest version seen wins");
        index.remove_row(7, a);
        assert_eq!(index.get(7).unwrap().partitions, [&CellYear::new("b", None)]);
        index.remove_row(7, b);
        index.drop_unplaced();
        assert!(index.get(7).is_none());
    }

    #[test]
    fn an_item_whose_rows_moved_keeps_a_version_its_rows_do_not_carry() {
        let mut index = ItemIndex::default();
        let (a, b) = (CellYear::new("a", None), CellYear::new("b", None));
        // Versioned by its object's last-modified time: its rows have no `updated`.
        index.set(7, Some(5), &HashSet::from([a.clone()]));
        let (pa, pb) = (index.partition_id(&a), index.partition_id(&b));
        // A compaction (or a copy-on-write) removes the file holding it and adds another.
        index.remove_row(7, pa);
        index.add_row(7, None, pb);
        index.drop_unplaced();
        let held = index.get(7).unwrap();
        assert_eq!(held.version, Some(5));
        assert_eq!(held.partitions, [&b]);
    }
}
