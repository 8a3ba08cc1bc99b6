//! Fan-out and grouping: one row per (item, cell), grouped by (cell, UTC year) and sorted.

use std::collections::HashMap;
use std::sync::Arc;

use crate::ids::CellYear;
use crate::stac::ItemRow;
use crate::stac::datetime::utc_year;

/// One output row: an item placed in one cell. Items are shared, not copied, across cells.
#[derive(Debug, Clone)]
pub struct CellRow {
    /// The item's values.
    pub item: Arc<ItemRow>,
    /// The cell key written to `grid_partition`.
    pub cell: Arc<str>,
}

impl CellRow {
    /// The (cell, year) this row belongs to.
    pub fn partition(&self) -> CellYear {
        CellYear::new(self.cell.as_ref(), self.item.datetime_micros().and_then(utc_year))
    }
}

/// One row per cell for `item`.
pub fn fan_out(item: ItemRow, cells: &[String]) -> Vec<CellRow> {
    let item = Arc::new(item);
    cells.iter().map(|c| CellRow { item: item.clone(), cell: Arc::from(c.as_str()) }).collect()
}

/// Rows collected per (cell, year).
#[derive(Debug, Default)]
pub struct Groups {
    groups: HashMap<CellYear, Vec<CellRow>>,
    rows: usize,
}

impl Groups {
    /// No rows yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds rows to their groups.
    pub fn extend(&mut self, rows: impl IntoIterator<Item = CellRow>) {
        for row in rows {
            self.rows += 1;
            self.groups.entry(row.partition()).or_default().push(row);
        }
    }

    /// Number of rows added.
    pub fn row_count(&self) -> usize {
        self.rows
    }

    /// Number of (cell, year) groups.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// Whether no row was added.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// The groups split into sets of at most `partitions` (cell, year) groups each (one file
    /// each when written), in (cell, year) order; every partition lands in exactly one set.
    pub fn split(self, partitions: usize) -> Vec<Groups> {
        let mut sorted: Vec<(CellYear, Vec<CellRow>)> = self.groups.into_iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<Groups> = Vec::new();
        for (part, rows) in sorted {
            if out.last().is_none_or(|g| g.len() >= partitions.max(1)) {
                out.push(Groups::new());
            }
            if let Some(g) = out.last_mut() {
                g.rows += rows.len();
                g.groups.insert(part, rows);
            }
        }
        out
    }

    /// Adds every row of `other` to its group, after the rows already there.
    pub fn absorb(&mut self, other: Groups) {
        self.rows += other.rows;
        for (part, rows) in other.groups {
            self.groups.entry(part).or_default().extend(rows);
        }
    }

    /// Takes out the groups whose (cell, year) `take` picks, leaving the others.
    pub fn split_off(&mut self, mut take: impl FnMut(&CellYear) -> bool) -> Groups {
        let picked: Vec<CellYear> = self.groups.keys().filter(|p| take(p)).cloned().collect();
        let mut out = Groups::new();
        for part in picked {
            if let Some(rows) = self.groups.remove(&part) {
                self.rows -= rows.len();
                out.rows += rows.len();
                out.groups.insert(part, rows);
            }
        }
        out
    }

    /// Takes out the largest groups, most rows first, until at most `keep` rows are left.
    pub fn split_off_largest(&mut self, keep: usize) -> Groups {
        let mut sizes: Vec<(usize, CellYear)> =
            self.groups.iter().map(|(p, rows)| (rows.len(), p.clone())).collect();
        sizes.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        let mut out = Groups::new();
        for (_, part) in sizes {
            if self.rows <= keep {
                break;
            }
            if let Some(rows) = self.groups.remove(&part) {
                self.rows -= rows.len();
                out.rows += rows.len();
                out.groups.insert(part, rows);
            }
        }
        out
    }

    /// The (cell, year) pairs present.
    pub fn partitions(&self) -> Vec<CellYear> {
        self.groups.keys().cloned().collect()
    }

    /// Keeps only the rows for which `keep(partition, row)` is true; returns how many were
    /// removed. Groups left empty disappear.
    pub fn retain(&mut self, mut keep: impl FnMut(&CellYear, &CellRow) -> bool) -> usize {
        let before = self.rows;
        for (part, rows) in self.groups.iter_mut() {
            rows.retain(|r| keep(part, r));
        }
        self.groups.retain(|_, rows| !rows.is_empty());
        self.rows = self.groups.values().map(Vec::len).sum();
        before - self.rows
    }

    /// The groups ordered by (cell, year), each sorted by (platform, datetime) — the order in
    /// which data files are written.
    pub fn into_sorted(self) -> Vec<(CellYear, Vec<CellRow>)> {
        let mut out: Vec<_> = self.groups.into_iter().collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, rows) in &mut out {
            sort_rows(rows);
        }
        out
    }
}

/// Sorts rows by (platform, datetime), missing values first, stably.
pub fn sort_rows(rows: &mut [CellRow]) {
    rows.sort_by(|a, b| {
        (a.item.platform().unwrap_or(""), a.item.datetime_micros())
            .cmp(&(b.item.platform().unwrap_or(""), b.item.datetime_micros()))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stac::Value;

    fn item(id: &str, platform: &str, datetime: Option<i64>) -> ItemRow {
        let mut r = ItemRow::empty();
        r.set_by_name("id", Value::Text(id.into()));
        r.set_by_name("platform", Value::Text(platform.into()));
        if let Some(us) = datetime {
            r.set_by_name("datetime", Value::Micros(us));
        }
        r
    }

    #[test]
    fn rows_group_by_cell_and_utc_year_and_sort_by_platform_then_time() {
        let y2019 = 1_560_000_000_000_000; // 2019-06-08
        let y2020 = 1_600_000_000_000_000; // 2020-09-13
        let mut g = Groups::new();
        g.extend(fan_out(item("a", "S2A", Some(y2019 + 5)), &["c1".into(), "c2".into()]));
        g.extend(fan_out(item("b", "LC08", Some(y2019)), &["c1".into()]));
        g.extend(fan_out(item("c", "LC08", Some(y2020)), &["c1".into()]));
        g.extend(fan_out(item("d", "LC08", None), &["c1".into()]));
        assert_eq!(g.row_count(), 5);
        let sorted = g.into_sorted();
        let keys: Vec<String> = sorted.iter().map(|(k, _)| k.to_string()).collect();
        assert_eq!(
            keys,
            [
                "grid_partition=c1/year=unknown",
                "grid_partition=c1/year=2019",
                "grid_partition=c1/year=2020",
                "grid_partition=c2/year=2019"
            ]
        );
        let ids: Vec<&str> = sorted[1].1.iter().map(|r| r.item.id()).collect();
        assert_eq!(ids, ["b", "a"]);
    }

    #[test]
    fn the_largest_groups_are_split_off_first_until_the_rest_fits() {
        let mut g = Groups::new();
        for (cell, n) in [("small", 1), ("big", 5), ("mid", 3), ("mid2", 3)] {
            for i in 0..n {
                g.extend(fan_out(item(&format!("{cell}{i}"), "S2A", None), &[cell.into()]));
            }
        }
        let cells = |g: &Groups| {
            let mut c: Vec<String> = g.partitions().into_iter().map(|p| p.cell).collect();
            c.sort();
            c
        };
        let taken = g.split_off_largest(6);
        // 12 rows: the 5 and one of the 3s go, leaving 4; ties by (cell, year).
        assert_eq!(cells(&taken), ["big", "mid"]);
        assert_eq!((taken.row_count(), g.row_count()), (8, 4));
        assert_eq!(cells(&g), ["mid2", "small"]);
        assert!(g.split_off_largest(4).is_empty(), "nothing to take when it fits");
    }

    #[test]
    fn groups_absorbed_and_split_off_keep_every_row_in_order() {
        let mut held = Groups::new();
        held.extend(fan_out(item("a", "S2A", Some(1)), &["c1".into(), "c2".into()]));
        let mut next = Groups::new();
        next.extend(fan_out(item("b", "S2A", Some(1)), &["c1".into(), "c3".into()]));
        held.absorb(next);
        assert_eq!((held.row_count(), held.len()), (4, 3));
        let c1 = held.split_off(|p| p.cell == "c1");
        assert_eq!((c1.row_count(), c1.len()), (2, 1));
        assert_eq!((held.row_count(), held.len()), (2, 2));
        let sorted = c1.into_sorted();
        let ids: Vec<&str> = sorted[0].1.iter().map(|r| r.item.id()).collect();
        assert_eq!(ids, ["a", "b"], "rows absorbed later come after");
    }
}
