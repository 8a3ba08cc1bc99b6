//! How a batch of items meets the table: an item the table lacks is new; one it holds at an older
//! version (`ItemRow::version_micros`: `updated`, else the object's last-modified time; a
//! missing one older than any) is an update, whose old rows leave the
//! table, wherever they are, in the snapshot that adds its new ones; one it holds at the same or a
//! newer version is skipped. [`ItemIndex`] says what the table holds.

use std::collections::{BTreeSet, HashMap, HashSet};

use futures::{StreamExt, TryStreamExt};

use crate::catalog::DataFileInfo;
use crate::fanout::Groups;
use crate::geoparquet::FileNamer;
use crate::ids::CellYear;
use crate::item_index::{ItemIndex, ItemIndexError, items_of};
use crate::location::Location;
use crate::rewrite::{RewriteError, Rewritten, RowOf, without_rows};
use crate::stores::Stores;

/// What [`sort_out`] found in a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sorted {
    /// Items the table lacks.
    pub new_items: usize,
    /// Items the table holds at an older version, with the partitions holding their old rows.
    pub updated: HashMap<u128, Vec<CellYear>>,
    /// Items the table holds at this version or a newer one (their rows were removed).
    pub skipped_items: usize,
    /// Rows removed for that reason.
    pub skipped_rows: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    New,
    Update,
    Skip,
}

/// Removes from `groups` the rows of items the table already holds at their version or a newer
/// one, and says which of the rest are new and which replace older rows.
pub fn sort_out(index: &ItemIndex, groups: &mut Groups) -> Sorted {
    let mut out = Sorted::default();
    let mut fates: HashMap<u128, Fate> = HashMap::new();
    let skipped_rows = groups.retain(|_, row| {
        let item = row.item.key().digest();
        let fate = *fates.entry(item).or_insert_with(|| match index.get(item) {
            None => Fate::New,
            Some(held) if row.item.version_micros() > held.version => {
                out.updated.insert(item, held.partitions.into_iter().cloned().collect());
                Fate::Update
            }
            Some(_) => Fate::Skip,
        });
        fate != Fate::Skip
    });
    out.skipped_rows = skipped_rows;
    for fate in fates.values() {
        match fate {
            Fate::New => out.new_items += 1,
            Fate::Skip => out.skipped_items += 1,
            Fate::Update => {}
        }
    }
    out
}

/// Records in `index` that the table holds every item of `groups` at its version in exactly the
/// partitions of its rows there (a batch holds whole items).
pub fn record(index: &mut ItemIndex, groups: &mut Groups) {
    let mut items: HashMap<u128, (Option<i64>, HashSet<CellYear>)> = HashMap::new();
    groups.retain(|part, row| {
        let entry = items
            .entry(row.item.key().digest())
            .or_insert_with(|| (row.item.version_micros(), HashSet::new()));
        entry.1.insert(part.clone());
        true
    });
    for (item, (version, partitions)) in items {
        index.set(item, version, &partitions);
    }
}

/// Live data files by partition, as [`drop_old_rows`] looks them up.
pub type LiveFiles = HashMap<CellYear, Vec<String>>;

/// Groups `files` by partition.
pub fn live_files(files: &[DataFileInfo]) -> LiveFiles {
    let mut out = LiveFiles::new();
    for f in files {
        let part = CellYear::new(f.grid_partition.clone().unwrap_or_default(), f.year);
        out.entry(part).or_default().push(f.path.clone());
    }
    out
}

/// The live files holding old rows of updated items, rewritten without those rows: commit
/// `remove` out and `rewritten` in, with the items' new rows, in one snapshot.
#[derive(Debug, Clone, Default)]
pub struct OldRows {
    /// Files to remove from the table.
    pub remove: BTreeSet<String>,
    /// Their replacements (files with rows of other items left), with their partitions.
    pub rewritten: Vec<(CellYear, Location)>,
    /// Old rows left out.
    pub removed_rows: u64,
}

impl OldRows {
    /// Applies the commit of these changes to `live`.
    pub fn apply_to(&self, live: &mut LiveFiles) {
        for files in live.values_mut() {
            files.retain(|f| !self.remove.contains(f));
        }
        for (part, file) in &self.rewritten {
            live.entry(part.clone()).or_default().push(file.uri());
        }
    }
}

/// Old files rewritten at once.
const REWRITES: usize = 4;

/// Rewrites the files of `live` in the partitions that `updated` names without the rows of
/// those items (named by [`crate::ids::ItemKey::digest`]).
pub async fn drop_old_rows(
    stores: &Stores,
    live: &LiveFiles,
    updated: &HashMap<u128, Vec<CellYear>>,
    namer: &FileNamer,
) -> Result<OldRows, RewriteError> {
    let old: HashSet<&CellYear> = updated.values().flatten().collect();
    let candidates = old
        .into_iter()
        .flat_map(|p| live.get(p).into_iter().flatten().map(move |f| (p.clone(), f.clone())));
    let is_updated = |row: RowOf<'_>| updated.contains_key(&row.item.digest());
    let rewrites: Vec<(CellYear, String, Rewritten)> = futures::stream::iter(candidates)
        .map(|(part, path)| async move {
            without_rows(stores, &path, is_updated, namer).await.map(|r| (part, path, r))
        })
        .buffer_unordered(REWRITES)
        .try_collect()
        .await?;
    let mut out = OldRows::default();
    for (part, path, r) in rewrites {
        match r {
            Rewritten::Untouched => continue,
            Rewritten::Into { file, removed_rows } => {
                out.removed_rows += removed_rows;
                out.rewritten.push((part, file));
            }
            Rewritten::Emptied { removed_rows } => out.removed_rows += removed_rows,
        }
        out.remove.insert(path);
    }
    Ok(out)
}

/// A backfill delta's new files sorted out against the table: which items are new, which update
/// older rows, which the table already holds; and which rows of the new files must go (items
/// skipped, and older copies of an item whose newer copy landed in other partitions).
#[derive(Debug, Clone, Default)]
pub struct FilesSorted {
    /// Items the table lacks.
    pub new_items: usize,
    /// Items the table holds at an older version, with the partitions of their old rows.
    pub updated: HashMap<u128, Vec<CellYear>>,
    /// Items the table holds at the same version or a newer one.
    pub skipped_items: usize,
    /// Per new file (in the order given), whether it holds rows that must go.
    pub stale: Vec<bool>,
    /// The version each item not skipped keeps (its newest in the new files), and the
    /// partitions of its rows at that version.
    kept: HashMap<u128, (Option<i64>, HashSet<CellYear>)>,
}

impl FilesSorted {
    /// Whether a row of a new file (whose object times are `object_times`) must go.
    pub fn drops(&self, row: RowOf<'_>, object_times: &HashMap<u128, i64>) -> bool {
        let item = row.item.digest();
        match self.kept.get(&item) {
            None => true,
            Some((version, _)) => version_of(item, row.updated, object_times) != *version,
        }
    }

    /// Records in `index` what the table holds once the new files (without their dropped rows)
    /// are committed.
    pub fn record(&self, index: &mut ItemIndex) {
        for (item, (version, partitions)) in &self.kept {
            index.set(*item, *version, partitions);
        }
    }
}

/// A backfill delta's new data file, as [`sort_out_files`] needs it.
#[derive(Debug, Clone)]
pub struct NewFile {
    /// Its (cell, year).
    pub partition: CellYear,
    /// Its URI.
    pub path: String,
    /// Its size, when known (saves a request).
    pub size: Option<u64>,
    /// The object times of its items without `updated`, by item digest.
    pub object_times: HashMap<u128, i64>,
}

/// A row's version: its `updated`, else its object's time.
fn version_of(item: u128, updated: Option<i64>, object_times: &HashMap<u128, i64>) -> Option<i64> {
    updated.or_else(|| object_times.get(&item).copied())
}

/// Reads the items of `files` and sorts them out against `index`.
pub async fn sort_out_files(
    stores: &Stores,
    index: &ItemIndex,
    files: &[NewFile],
) -> Result<FilesSorted, ItemIndexError> {
    let scans: Vec<Vec<(u128, Option<i64>)>> = futures::stream::iter(files)
        .map(|f| async move {
            let rows = items_of(stores, &f.path, f.size).await?;
            let versioned = rows
                .into_iter()
                .map(|(item, updated)| (item, version_of(item, updated, &f.object_times)));
            Ok::<_, ItemIndexError>(versioned.collect())
        })
        .buffered(REWRITES * 2)
        .try_collect()
        .await?;
    let mut newest: HashMap<u128, Option<i64>> = HashMap::new();
    for (item, version) in scans.iter().flatten() {
        let v = newest.entry(*item).or_insert(*version);
        *v = (*v).max(*version);
    }
    let mut out = FilesSorted { stale: vec![false; files.len()], ..Default::default() };
    let mut skipped = HashSet::new();
    for (item, version) in &newest {
        match index.get(*item) {
            None => out.new_items += 1,
            Some(held) if *version > held.version => {
                out.updated.insert(*item, held.partitions.into_iter().cloned().collect());
            }
            Some(_) => {
                skipped.insert(*item);
            }
        }
    }
    out.skipped_items = skipped.len();
    for (i, rows) in scans.iter().enumerate() {
        for (item, version) in rows {
            if skipped.contains(item) || *version != newest[item] {
                out.stale[i] = true;
            } else {
                let kept = out.kept.entry(*item).or_insert_with(|| (*version, HashSet::new()));
                kept.1.insert(files[i].partition.clone());
            }
        }
    }
    Ok(out)
}
