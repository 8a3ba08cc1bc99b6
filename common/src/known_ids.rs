//! Items already registered, per (cell, year), so that ingesting the same inventory twice
//! never puts an item into a partition twice. An item is its (collection, id)
//! ([`crate::ids::ItemKey`]): the same id in another collection is another item.
//!
//! The items of a partition are read (the `collection` and `id` columns only) from the table's files in that
//! partition the first time a run writes to it, then kept up to date with what the run writes.
//! Reading is proportional to the partitions a run touches, not to the table.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use futures::TryStreamExt;
use parquet::arrow::async_reader::ParquetObjectReader;
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};

use crate::catalog::DataFileInfo;
use crate::fanout::Groups;
use crate::ids::{CellYear, ItemKey};
use crate::location::Location;
use crate::stores::Stores;

/// Why the ids of a registered file could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the ids of registered file {file}: {reason}")]
pub struct KnownIdsError {
    /// The data file.
    pub file: String,
    /// What went wrong.
    pub reason: String,
}

/// What [`KnownIds::drop_known`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Rows not written because their (collection, id, cell, year) is already in the table.
    pub rows: usize,
    /// Distinct items that lost at least one row that way.
    pub items: usize,
}

/// The digest of an item's (collection, id) ([`crate::ids::ItemKey::digest`]): the sets live as
/// long as the run and hold every item it wrote per partition, so 16 bytes each, not the text.
type Known = u128;

/// Items known to be in each (cell, year) of the table.
#[derive(Debug)]
pub struct KnownIds {
    stores: Arc<Stores>,
    files: HashMap<CellYear, Vec<String>>,
    ids: HashMap<CellYear, HashSet<Known>>,
}

impl KnownIds {
    /// Knows which files hold each partition; reads their ids only when needed.
    pub fn new(stores: Arc<Stores>, files: &[DataFileInfo]) -> Self {
        let mut by: HashMap<CellYear, Vec<String>> = HashMap::new();
        for f in files {
            let key = CellYear::new(f.grid_partition.clone().unwrap_or_default(), f.year);
            by.entry(key).or_default().push(f.path.clone());
        }
        KnownIds { stores, files: by, ids: HashMap::new() }
    }

    /// Removes from `groups` every row whose item is already in its partition (in the table or
    /// earlier in this run), and remembers the rest as known.
    pub async fn drop_known(&mut self, groups: &mut Groups) -> Result<Skipped, KnownIdsError> {
        for part in groups.partitions() {
            self.load(&part).await?;
        }
        let mut skipped_items = HashSet::new();
        let ids = &mut self.ids;
        let rows = groups.retain(|part, row| {
            let known = ids.entry(part.clone()).or_default();
            let key = row.item.key().digest();
            let fresh = known.insert(key);
            if !fresh {
                skipped_items.insert(key);
            }
            fresh
        });
        Ok(Skipped { rows, items: skipped_items.len() })
    }

    async fn load(&mut self, part: &CellYear) -> Result<(), KnownIdsError> {
        if self.ids.contains_key(part) {
            return Ok(());
        }
        let mut set = HashSet::new();
        for file in self.files.get(part).map(Vec::as_slice).unwrap_or_default() {
            read_ids(&self.stores, file, &mut set).await?;
        }
        self.ids.insert(part.clone(), set);
        Ok(())
    }
}

async fn read_ids(
    stores: &Stores,
    file: &str,
    out: &mut HashSet<Known>,
) -> Result<(), KnownIdsError> {
    let err = |reason: String| KnownIdsError { file: file.to_string(), reason };
    let location = Location::parse(file).map_err(|e| err(e.to_string()))?;
    let target = stores.resolve(&location).map_err(|e| err(e.to_string()))?;
    let reader = ParquetObjectReader::new(target.store, target.path);
    let builder =
        ParquetRecordBatchStreamBuilder::new(reader).await.map_err(|e| err(e.to_string()))?;
    let position = |name: &str| {
        builder
            .parquet_schema()
            .columns()
            .iter()
            .position(|c| c.name() == name)
            .ok_or_else(|| err(format!("no '{name}' column")))
    };
    let (id, collection) = (position("id")?, position("collection")?);
    let mask = ProjectionMask::leaves(builder.parquet_schema(), [id, collection]);
    let mut stream = builder.with_projection(mask).build().map_err(|e| err(e.to_string()))?;
    while let Some(batch) = stream.try_next().await.map_err(|e| err(e.to_string()))? {
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_string_opt::<i32>())
                .ok_or_else(|| err(format!("'{name}' is not a string column")))
        };
        let (ids, collections) = (column("id")?, column("collection")?);
        for i in (0..ids.len()).filter(|i| ids.is_valid(*i)) {
            let collection = collections.is_valid(i).then(|| collections.value(i));
            out.insert(ItemKey { collection, id: ids.value(i) }.digest());
        }
    }
    Ok(())
}
