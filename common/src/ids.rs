//! Typed identifiers: runs, the (cell, year) a data file belongs to, and an item's identity.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An item's identity in the table: its `collection` and its `id`. STAC ids are unique within a
/// collection only, so two items with one id in two collections are two items (both land), and
/// copies of one item are those that share both. An item without a collection is its own
/// collection (`None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItemKey<'a> {
    /// The item's `collection`, if it has one.
    pub collection: Option<&'a str>,
    /// The item's `id`.
    pub id: &'a str,
}

impl ItemKey<'_> {
    /// A 128-bit digest of the key (xxh3), for sets that outlive a chunk: 16 bytes per item
    /// instead of its text. A missing collection and an empty one differ.
    pub fn digest(&self) -> u128 {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        match self.collection {
            Some(c) => {
                h.update(&[1]);
                h.update(&(c.len() as u64).to_le_bytes());
                h.update(c.as_bytes());
            }
            None => h.update(&[0]),
        }
        h.update(self.id.as_bytes());
        h.digest128()
    }
}

/// Identifies one ingest run; every file the run writes carries it in its name.
///
/// Format `YYYYMMDDTHHMMSSZ-xxxxxx` (UTC start time, 6 random hex digits): sortable, and short
/// enough for file names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RunId(String);

impl RunId {
    /// A fresh run id.
    pub fn new() -> Self {
        let now = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        let rand = uuid::Uuid::new_v4().simple().to_string();
        RunId(format!("{now}-{}", &rand[..6]))
    }

    /// A run id from its text (for resumed runs).
    pub fn from_string(s: impl Into<String>) -> Self {
        RunId(s.into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for RunId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Folder name used for items without `datetime` (Iceberg records a null year for them).
pub const NULL_YEAR_DIR: &str = "unknown";

/// The partition of a data file: one grid cell and one UTC year (`None`: no datetime).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CellYear {
    /// The cell key (e.g. an H3 index).
    pub cell: String,
    /// The UTC year of the items' `datetime`.
    pub year: Option<i32>,
}

impl CellYear {
    /// A (cell, year) pair.
    pub fn new(cell: impl Into<String>, year: Option<i32>) -> Self {
        CellYear { cell: cell.into(), year }
    }

    /// The Hive-style folder `grid_partition=<cell>/year=<year>` of this partition.
    pub fn hive_dir(&self) -> String {
        match self.year {
            Some(y) => format!("grid_partition={}/year={y}", self.cell),
            None => format!("grid_partition={}/year={NULL_YEAR_DIR}", self.cell),
        }
    }
}

impl fmt::Display for CellYear {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hive_dir())
    }
}

#[cfg(test)]
mod item_key_tests {
    use super::ItemKey;

    #[test]
    fn digests_tell_collections_apart_and_a_missing_collection_from_an_empty_one() {
        let d = |collection, id| ItemKey { collection, id }.digest();
        assert_eq!(d(Some("v1"), "a"), d(Some("v1"), "a"));
        assert_ne!(d(Some("v1"), "a"), d(Some("v2"), "a"));
        assert_ne!(d(None, "a"), d(Some(""), "a"));
        assert_ne!(d(Some("ab"), "c"), d(Some("a"), "bc"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_unique_and_sortable_by_time() {
        let a = RunId::new();
        let b = RunId::new();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), "20261124T071000Z-ab12cd".len());
    }

    #[test]
    fn hive_folders_name_the_cell_and_the_year_or_unknown() {
        assert_eq!(
            CellYear::new("81067ffffffffff", Some(2019)).hive_dir(),
            "grid_partition=81067ffffffffff/year=2019"
        );
        assert_eq!(CellYear::new("x", None).hive_dir(), "grid_partition=x/year=unknown");
    }
}
