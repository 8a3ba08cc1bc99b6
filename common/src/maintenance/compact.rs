//! Compaction: which (cell, year) partitions are worth rewriting, and rewriting one. The rows of
//! a partition's files are merged exactly as backfill Phase 3 merges staged rows
//! ([`compact_partition`]: one row per item id, the newest `updated`, sorted as the writer
//! sorts), into files of at most `target_rows` rows; the caller commits every rewritten
//! partition in one replace snapshot.

use std::collections::BTreeMap;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::backfill::compact::{CompactError, CompactOutcome, compact_partition};
use crate::catalog::DataFileInfo;
use crate::geoparquet::{FileNamer, WriterOptions};
use crate::ids::{CellYear, NULL_YEAR_DIR};
use crate::location::{Location, LocationError};
use crate::stores::Stores;

/// Which partitions to rewrite.
#[derive(Debug, Clone)]
pub struct CompactPolicy {
    /// A partition with at least this many files is rewritten.
    pub min_input_files: usize,
    /// A partition holding a file with fewer rows than this is rewritten.
    pub min_file_rows: u64,
    /// Rows per output file, at most.
    pub target_rows: u64,
    /// Only these partitions (rewritten whenever they have a file), when given.
    pub only: Vec<CellYear>,
}

impl Default for CompactPolicy {
    fn default() -> Self {
        CompactPolicy {
            min_input_files: 5,
            min_file_rows: 10_000,
            target_rows: 100_000,
            only: Vec::new(),
        }
    }
}

/// One partition chosen for rewriting, with its current files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionPlan {
    /// The (cell, year), as `CELL/YEAR`.
    #[serde(serialize_with = "display", deserialize_with = "parse_partition")]
    pub partition: CellYear,
    /// Paths of its live data files.
    pub files: Vec<String>,
    /// Rows in those files.
    pub rows: u64,
    /// Bytes in those files.
    pub bytes: u64,
    /// Files the rewrite will write (at most; fewer when duplicates are dropped).
    pub output_files: u64,
}

/// As `--partition` takes it (`CELL/YEAR`), so a dry run's output can be passed back.
fn display<S: serde::Serializer>(p: &CellYear, s: S) -> Result<S::Ok, S::Error> {
    let year = p.year.map_or_else(|| NULL_YEAR_DIR.to_string(), |y| y.to_string());
    s.collect_str(&format_args!("{}/{year}", p.cell))
}

fn parse_partition<'de, D: serde::Deserializer<'de>>(d: D) -> Result<CellYear, D::Error> {
    let text = String::deserialize(d)?;
    text.parse::<PartitionArg>().map(|p| p.0).map_err(serde::de::Error::custom)
}

/// A `--partition` that is not `CELL/YEAR`.
#[derive(Debug, thiserror::Error)]
#[error(
    "partition '{0}' is not CELL/YEAR (a year, or '{NULL_YEAR_DIR}' for items without a datetime)"
)]
pub struct BadPartition(String);

/// Parses `CELL/YEAR` (`CELL/unknown` for the partition of items without a datetime).
impl FromStr for PartitionArg {
    type Err = BadPartition;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadPartition(s.to_string());
        let (cell, year) = s.rsplit_once('/').ok_or_else(bad)?;
        if cell.is_empty() {
            return Err(bad());
        }
        let year = match year {
            y if y == NULL_YEAR_DIR => None,
            y => Some(y.parse::<i32>().map_err(|_| bad())?),
        };
        Ok(PartitionArg(CellYear::new(cell, year)))
    }
}

/// A partition named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionArg(pub CellYear);

/// The partitions `policy` picks among `files` (the table's live files), in partition order.
/// A rewrite must lower the partition's file count, so a partition already in as few files as
/// its rows allow is left alone even when it has small files.
pub fn plan(files: &[DataFileInfo], policy: &CompactPolicy) -> Vec<PartitionPlan> {
    let mut by_partition: BTreeMap<(String, Option<i32>), Vec<&DataFileInfo>> = BTreeMap::new();
    for f in files {
        // Files of the null cell (items without a footprint) are never fanned out to a cell
        // folder the writer could rewrite into; they are left as they are.
        if let Some(cell) = &f.grid_partition {
            by_partition.entry((cell.clone(), f.year)).or_default().push(f);
        }
    }
    let target = policy.target_rows.max(1);
    by_partition
        .into_iter()
        .filter_map(|((cell, year), group)| {
            let partition = CellYear::new(cell, year);
            let rows: u64 = group.iter().map(|f| f.record_count).sum();
            let output_files = rows.div_ceil(target).max(1);
            let named = policy.only.contains(&partition);
            let worth = if policy.only.is_empty() {
                let fewer = (group.len() as u64) > output_files;
                let many = group.len() >= policy.min_input_files.max(2);
                let small = group.iter().any(|f| f.record_count < policy.min_file_rows);
                fewer && (many || small)
            } else {
                named
            };
            worth.then(|| PartitionPlan {
                partition,
                files: group.iter().map(|f| f.path.clone()).collect(),
                rows,
                bytes: group.iter().map(|f| f.file_size_in_bytes).sum(),
                output_files,
            })
        })
        .collect()
}

/// Why a partition could not be rewritten.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    /// A registered path is not a location we can read.
    #[error("data file {path}: {source}")]
    Path {
        /// The registered path.
        path: String,
        /// Why it does not parse.
        source: LocationError,
    },
    /// Merging or writing failed.
    #[error("rewriting {partition}: {source}")]
    Compact {
        /// The partition.
        partition: String,
        /// Why.
        source: Box<CompactError>,
    },
}

/// Rewrites one planned partition into `warehouse` (files named by `namer`).
pub async fn rewrite(
    stores: &Stores,
    warehouse: &Location,
    plan: &PartitionPlan,
    namer: &FileNamer,
    target_rows: u64,
) -> Result<CompactOutcome, RewriteError> {
    let inputs = plan
        .files
        .iter()
        .map(|p| {
            Location::parse(p).map_err(|source| RewriteError::Path { path: p.clone(), source })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let rows = usize::try_from(target_rows).unwrap_or(usize::MAX).max(1);
    compact_partition(
        stores,
        &plan.partition,
        &inputs,
        warehouse,
        namer,
        rows,
        &WriterOptions::default(),
    )
    .await
    .map_err(|source| RewriteError::Compact {
        partition: plan.partition.to_string(),
        source: Box::new(source),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn file(cell: &str, year: i32, n: u32, rows: u64) -> DataFileInfo {
        DataFileInfo {
            path: format!("file:///wh/grid_partition={cell}/year={year}/f{n}.parquet"),
            grid_partition: Some(cell.into()),
            year: Some(year),
            record_count: rows,
            file_size_in_bytes: rows * 100,
        }
    }

    #[test]
    fn partitions_with_many_files_or_small_files_are_picked_when_a_rewrite_lowers_their_count() {
        let policy =
            CompactPolicy { min_input_files: 3, min_file_rows: 10, target_rows: 100, only: vec![] };
        let files = vec![
            // Many files: picked.
            file("a", 2020, 1, 50),
            file("a", 2020, 2, 50),
            file("a", 2020, 3, 50),
            // Two files, one small: picked.
            file("b", 2020, 1, 5),
            file("b", 2020, 2, 50),
            // One small file: nothing to merge it with.
            file("c", 2020, 1, 5),
            // Two full files: already as few as the rows allow.
            file("d", 2020, 1, 100),
            file("d", 2020, 2, 100),
        ];
        let picked: Vec<String> =
            plan(&files, &policy).iter().map(|p| p.partition.to_string()).collect();
        assert_eq!(picked.len(), 2, "{picked:?}");
        let a = &plan(&files, &policy)[0];
        assert_eq!((a.files.len(), a.rows, a.output_files), (3, 150, 2));
    }

    #[test]
    fn a_named_partition_is_rewritten_whatever_its_files_and_only_it() {
        let only = vec!["c/2020".parse::<PartitionArg>().unwrap().0];
        let policy = CompactPolicy { only, ..CompactPolicy::default() };
        let files = vec![file("a", 2020, 1, 1), file("a", 2020, 2, 1), file("c", 2020, 1, 5)];
        let picked = plan(&files, &policy);
        assert_eq!(picked.len(), 1);
        assert_eq!(picked[0].partition, CellYear::new("c", Some(2020)));
    }

    #[test]
    fn a_plan_reads_back_as_written() {
        let policy = CompactPolicy { min_input_files: 2, ..CompactPolicy::default() };
        let files = vec![file("a", 2020, 1, 1), file("a", 2020, 2, 1)];
        let planned = plan(&files, &policy);
        let json = serde_json::to_string(&planned).unwrap();
        assert!(json.contains(r#""partition":"a/2020""#), "{json}");
        assert_eq!(serde_json::from_str::<Vec<PartitionPlan>>(&json).unwrap(), planned);
    }

    #[test]
    fn partition_arguments_name_a_cell_and_a_year_or_unknown() {
        assert_eq!("8a1/2020".parse::<PartitionArg>().unwrap().0, CellYear::new("8a1", Some(2020)));
        assert_eq!("8a1/unknown".parse::<PartitionArg>().unwrap().0, CellYear::new("8a1", None));
        for bad in ["8a1", "/2020", "8a1/20x0"] {
            let err = bad.parse::<PartitionArg>().unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
    }
}
