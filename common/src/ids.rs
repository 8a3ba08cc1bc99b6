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
    /// The same key owning its text (to keep in sets beyond the rows' lifetime).
    pub fn to_owned_key(&self) -> (Option<String>, String) {
        (self.collection.map(str::to_string), self.id.to_string())
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
