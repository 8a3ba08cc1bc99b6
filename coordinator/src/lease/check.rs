//! What a result may name before it is accepted.
//!
//! A worker's report is the only record of what its attempt wrote, and Phase 4 registers what
//! accepted reports name. Taken on trust, one report could register any Parquet file the
//! stores reach (another partition's file, a file from outside the warehouse). So each reported
//! object is checked against the task it claims to finish:
//!
//! - ingest: every staged file is the attempt folder's file of its (cell, year), and the
//!   failures list is the attempt folder's;
//! - compact: every data file sits in the task's `grid_partition=…/year=…` folder under the
//!   warehouse, is named for this run and attempt (`<run>_c<token>_NNNNNN.parquet`), and its
//!   footer holds exactly the task's cell and year.

use std::sync::Arc;

use earthcatalog_common::backfill::StagingLayout;
use earthcatalog_common::backfill::layout::{failures_file, staged_file};
use earthcatalog_common::catalog::footer_cell_year;
use earthcatalog_common::geoparquet;
use earthcatalog_common::ids::CellYear;
use earthcatalog_common::location::Location;
use earthcatalog_common::rpc::{CompactTask, IngestTask, PhaseKind, TaskReport, TaskSpec};
use earthcatalog_common::stores::Stores;

/// Footers read at once for one report.
const FOOTER_CONCURRENCY: usize = 8;

/// Why a reported result does not fit its task (each names the offending file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidResult {
    /// A result of the other phase.
    #[error("a {found} result for a {expected} task")]
    WrongPhase {
        /// The task's phase.
        expected: PhaseKind,
        /// The result's phase.
        found: PhaseKind,
    },
    /// A staged file that is not the attempt folder's file of its (cell, year).
    #[error("staged file {file} is not this attempt's file of {partition} ({expected})")]
    StagedElsewhere {
        /// The reported file.
        file: String,
        /// The (cell, year) it was reported for.
        partition: CellYear,
        /// Where this attempt stages that (cell, year).
        expected: String,
    },
    /// A failures list that is not the attempt folder's.
    #[error("failures file {file} is not this attempt's ({expected})")]
    FailuresElsewhere {
        /// The reported file.
        file: String,
        /// This attempt's failures file.
        expected: String,
    },
    /// A data file outside the task's partition folder.
    #[error("data file {file} is not in the task's partition folder {folder}")]
    OutsidePartition {
        /// The reported file.
        file: String,
        /// The task's partition folder.
        folder: String,
    },
    /// A data file not named for this run and attempt.
    #[error("data file {file} is not named for this run and attempt (like {example})")]
    ForeignName {
        /// The reported file.
        file: String,
        /// The first name this attempt's files take.
        example: String,
    },
    /// A data file whose footer could not be read.
    #[error("cannot read the footer of data file {file}: {reason}")]
    Unreadable {
        /// The reported file.
        file: String,
        /// Why.
        reason: String,
    },
    /// A data file whose footer holds another partition than the task's.
    #[error("data file {file} holds cell {cell:?} and year {year:?}, not the task's {expected}")]
    OtherPartition {
        /// The reported file.
        file: String,
        /// The `grid_partition` value of its footer.
        cell: Option<String>,
        /// The year of its footer's `datetime`.
        year: Option<i32>,
        /// The task's partition.
        expected: CellYear,
    },
}

/// Checks a result against the task (as granted with `token`) before it is accepted.
#[async_trait::async_trait]
pub trait ResultCheck: Send + Sync {
    /// `Ok` when every object `report` names belongs to this grant of `task`.
    async fn check(
        &self,
        task: &TaskSpec,
        token: u64,
        report: &TaskReport,
    ) -> Result<(), InvalidResult>;
}

/// The checks of a backfill run: paths and names by the run's layout, footers through `stores`.
pub struct OutputCheck {
    stores: Arc<Stores>,
    layout: StagingLayout,
}

impl OutputCheck {
    /// Checks results of the run laid out by `layout`.
    pub fn new(stores: Arc<Stores>, layout: StagingLayout) -> Self {
        OutputCheck { stores, layout }
    }

    async fn compact(
        &self,
        task: &CompactTask,
        token: u64,
        files: &[Location],
    ) -> Result<(), InvalidResult> {
        let folder = task.warehouse.join(&task.partition.hive_dir());
        for file in files {
            self.named_in_folder(file, &folder, token)?;
        }
        for batch in files.chunks(FOOTER_CONCURRENCY) {
            let mut reads = Vec::with_capacity(batch.len());
            for file in batch {
                reads.push(self.footer_partition_is(file, &task.partition));
            }
            futures::future::try_join_all(reads).await?;
        }
        Ok(())
    }

    /// `file` is `folder/<name>` with a name of this run's attempt `token`.
    fn named_in_folder(
        &self,
        file: &Location,
        folder: &Location,
        token: u64,
    ) -> Result<(), InvalidResult> {
        let name = file.file_name().unwrap_or_default();
        // Equality with the folder joined with the name rules out other folders, sub-folders
        // and `..` segments alike.
        if name.is_empty() || folder.join(name) != *file {
            return Err(InvalidResult::OutsidePartition { file: file.uri(), folder: folder.uri() });
        }
        if !self.layout.is_compact_file_name(name, token) {
            return Err(InvalidResult::ForeignName {
                file: file.uri(),
                example: self.layout.compact_namer(token).next_name(),
            });
        }
        Ok(())
    }

    /// The footer of `file` holds exactly `expected`'s cell and year.
    async fn footer_partition_is(
        &self,
        file: &Location,
        expected: &CellYear,
    ) -> Result<(), InvalidResult> {
        let unreadable = |reason: String| InvalidResult::Unreadable { file: file.uri(), reason };
        let meta = read_footer(&self.stores, file).await.map_err(unreadable)?;
        let (cell, year) =
            footer_cell_year(&file.uri(), &meta).map_err(|e| unreadable(e.to_string()))?;
        if cell.as_deref() != Some(expected.cell.as_str()) || year != expected.year {
            return Err(InvalidResult::OtherPartition {
                file: file.uri(),
                cell,
                year,
                expected: expected.clone(),
            });
        }
        Ok(())
    }
}

/// Every staged file is where this attempt stages its (cell, year); the failures list is this
/// attempt's.
fn ingest_outputs_are_the_attempts(
    task: &IngestTask,
    report: &earthcatalog_common::rpc::IngestReport,
) -> Result<(), InvalidResult> {
    for s in &report.staged {
        let expected = staged_file(&task.output, &s.partition);
        if s.location != expected {
            return Err(InvalidResult::StagedElsewhere {
                file: s.location.uri(),
                partition: s.partition.clone(),
                expected: expected.uri(),
            });
        }
    }
    let expected = failures_file(&task.output);
    match &report.failures {
        Some(f) if *f != expected => {
            Err(InvalidResult::FailuresElsewhere { file: f.uri(), expected: expected.uri() })
        }
        _ => Ok(()),
    }
}

/// The Parquet footer of `file`.
async fn read_footer(
    stores: &Stores,
    file: &Location,
) -> Result<Arc<parquet::file::metadata::ParquetMetaData>, String> {
    let loc = stores.resolve(file).map_err(|e| e.to_string())?;
    let (footer, _) =
        geoparquet::read_footer(loc.store.as_ref(), &loc.path).await.map_err(|e| e.to_string())?;
    Ok(footer)
}

#[async_trait::async_trait]
impl ResultCheck for OutputCheck {
    async fn check(
        &self,
        task: &TaskSpec,
        token: u64,
        report: &TaskReport,
    ) -> Result<(), InvalidResult> {
        match (task, report) {
            (TaskSpec::Ingest(t), TaskReport::Ingest(r)) => ingest_outputs_are_the_attempts(t, r),
            (TaskSpec::Compact(t), TaskReport::Compact(r)) => {
                let files: Vec<Location> = r.files.iter().map(|f| f.location.clone()).collect();
                self.compact(t, token, &files).await
            }
            (TaskSpec::Ingest(_), TaskReport::Compact(_)) => Err(InvalidResult::WrongPhase {
                expected: PhaseKind::Ingest,
                found: PhaseKind::Compact,
            }),
            (TaskSpec::Compact(_), TaskReport::Ingest(_)) => Err(InvalidResult::WrongPhase {
                expected: PhaseKind::Compact,
                found: PhaseKind::Ingest,
            }),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use earthcatalog_common::fanout::{Groups, fan_out};
    use earthcatalog_common::geoparquet::{FileNamer, WriterOptions, write_partition};
    use earthcatalog_common::ids::RunId;
    use earthcatalog_common::rpc::{CompactReport, ReportedFile};
    use earthcatalog_common::sample::itslive_item;
    use earthcatalog_common::stac::parse_item_value;
    use earthcatalog_common::stores::S3Settings;

    const TOKEN: u64 = 7_301;

    struct Setup {
        check: OutputCheck,
        stores: Arc<Stores>,
        warehouse: Location,
        layout: StagingLayout,
    }

    fn setup(name: &str) -> Setup {
        let stores = Arc::new(Stores::new(S3Settings::default()));
        let staging = Location::parse(&format!("memory://{name}/staging")).unwrap();
        let layout = StagingLayout::new(&staging, RunId::from_string("run1"));
        let warehouse = Location::parse(&format!("memory://{name}/wh")).unwrap();
        Setup { check: OutputCheck::new(stores.clone(), layout.clone()), stores, warehouse, layout }
    }

    /// Writes one data file per given cell (item 0 of the samples) with `namer`; returns each
    /// file's partition and location.
    async fn write(s: &Setup, cells: &[&str], namer: &FileNamer) -> Vec<(CellYear, Location)> {
        let mut g = Groups::new();
        let cells: Vec<String> = cells.iter().map(|c| c.to_string()).collect();
        g.extend(fan_out(parse_item_value(&itslive_item(0)).unwrap().row, &cells));
        let mut out = Vec::new();
        for (part, rows) in g.into_sorted() {
            let opts = WriterOptions::default();
            let f =
                write_partition(&s.stores, &s.warehouse, &part, &rows, namer, &opts).await.unwrap();
            out.push((part, f.location));
        }
        out
    }

    fn compact_task(s: &Setup, partition: &CellYear) -> TaskSpec {
        TaskSpec::Compact(CompactTask {
            partition: partition.clone(),
            staged: Vec::new(),
            warehouse: s.warehouse.clone(),
            run: s.layout.run().clone(),
            compact_rows: 100,
            object_times: None,
        })
    }

    fn compact_report(files: &[&Location]) -> TaskReport {
        TaskReport::Compact(CompactReport {
            files: files.iter().map(|l| ReportedFile { location: (*l).clone(), rows: 1 }).collect(),
            ..Default::default()
        })
    }

    #[tokio::test]
    async fn a_compact_result_naming_its_own_files_is_accepted() {
        let s = setup("check_ok");
        let written = write(&s, &["81067ffffffffff"], &s.layout.compact_namer(TOKEN)).await;
        let (part, file) = &written[0];
        let report = compact_report(&[file]);
        s.check.check(&compact_task(&s, part), TOKEN, &report).await.unwrap();
    }

    #[tokio::test]
    async fn a_compact_result_naming_another_partitions_file_is_refused() {
        let s = setup("check_other_folder");
        let namer = s.layout.compact_namer(TOKEN);
        let written = write(&s, &["81067ffffffffff", "8106fffffffffff"], &namer).await;
        let (ours, _) = &written[0];
        let (_, theirs) = &written[1];
        let (task, report) = (compact_task(&s, ours), compact_report(&[theirs]));
        match s.check.check(&task, TOKEN, &report).await {
            Err(InvalidResult::OutsidePartition { file, .. }) => assert_eq!(file, theirs.uri()),
            other => panic!("expected OutsidePartition, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_compact_result_naming_a_file_outside_the_warehouse_is_refused() {
        let s = setup("check_outside");
        let (part, _) =
            write(&s, &["81067ffffffffff"], &s.layout.compact_namer(TOKEN)).await[0].clone();
        let name = s.layout.compact_namer(TOKEN).next_name();
        let elsewhere = Location::parse("memory://check_outside/other")
            .unwrap()
            .join(&part.hive_dir())
            .join(&name);
        let report = compact_report(&[&elsewhere]);
        let refused = s.check.check(&compact_task(&s, &part), TOKEN, &report).await;
        assert!(matches!(refused, Err(InvalidResult::OutsidePartition { .. })), "{refused:?}");
    }

    #[tokio::test]
    async fn a_compact_result_naming_a_file_of_another_attempt_or_run_is_refused() {
        let s = setup("check_names");
        let other_attempt =
            write(&s, &["81067ffffffffff"], &s.layout.compact_namer(TOKEN + 1)).await;
        let (part, file) = &other_attempt[0];
        let refused = s.check.check(&compact_task(&s, part), TOKEN, &compact_report(&[file])).await;
        assert!(matches!(refused, Err(InvalidResult::ForeignName { .. })), "{refused:?}");
        let other_run = FileNamer::new(RunId::from_string("run0"), format!("c{TOKEN}"));
        let (part, file) = write(&s, &["81067ffffffffff"], &other_run).await.remove(0);
        let refused =
            s.check.check(&compact_task(&s, &part), TOKEN, &compact_report(&[&file])).await;
        assert!(matches!(refused, Err(InvalidResult::ForeignName { .. })), "{refused:?}");
    }

    #[tokio::test]
    async fn a_compact_file_whose_footer_holds_another_partition_is_refused() {
        let s = setup("check_footer");
        let namer = s.layout.compact_namer(TOKEN);
        let written = write(&s, &["81067ffffffffff", "8106fffffffffff"], &namer).await;
        let (ours, _) = &written[0];
        let (_, theirs) = &written[1];
        // The other cell's rows, copied under a name this attempt would give in our folder.
        let disguised = s.warehouse.join(&ours.hive_dir()).join(&namer.next_name());
        let bytes = s.stores.get(theirs).await.unwrap().unwrap();
        s.stores.put(&disguised, bytes).await.unwrap();
        let (task, report) = (compact_task(&s, ours), compact_report(&[&disguised]));
        match s.check.check(&task, TOKEN, &report).await {
            Err(InvalidResult::OtherPartition { file, cell, .. }) => {
                assert_eq!(file, disguised.uri());
                assert_eq!(cell.as_deref(), Some("8106fffffffffff"));
            }
            other => panic!("expected OtherPartition, got {other:?}"),
        }
        // A missing file has no footer: refused too.
        let missing = s.warehouse.join(&ours.hive_dir()).join(&namer.next_name());
        let report = compact_report(&[&missing]);
        let refused = s.check.check(&task, TOKEN, &report).await;
        assert!(matches!(refused, Err(InvalidResult::Unreadable { .. })), "{refused:?}");
    }

    #[tokio::test]
    async fn ingest_results_must_name_files_of_their_own_attempt_folder() {
        let s = setup("check_ingest");
        let output = s.layout.ingest_attempt(3, TOKEN);
        let task = TaskSpec::Ingest(IngestTask {
            chunk_id: 3,
            chunk: s.layout.chunk(3),
            output: output.clone(),
            run: s.layout.run().clone(),
            fetch_concurrency: 1,
            grid: earthcatalog_common::partition::GridSpec::h3(1).unwrap(),
            sources: Vec::new(),
            retry_failures: None,
        });
        let part = CellYear::new("81067ffffffffff", Some(2020));
        let staged = |location: Location| earthcatalog_common::backfill::StagedFile {
            partition: part.clone(),
            location,
            rows: 1,
        };
        let report = |location: Location, failures: Location| {
            TaskReport::Ingest(earthcatalog_common::rpc::IngestReport {
                staged: vec![staged(location)],
                items: 1,
                failed_items: 0,
                failures: Some(failures),
            })
        };
        let own = report(staged_file(&output, &part), failures_file(&output));
        s.check.check(&task, TOKEN, &own).await.unwrap();
        let other_attempt = s.layout.ingest_attempt(3, TOKEN + 1);
        let refused = s
            .check
            .check(
                &task,
                TOKEN,
                &report(staged_file(&other_attempt, &part), failures_file(&output)),
            )
            .await;
        assert!(matches!(refused, Err(InvalidResult::StagedElsewhere { .. })), "{refused:?}");
        let mislabelled = staged_file(&output, &CellYear::new("8106fffffffffff", Some(2020)));
        let refused =
            s.check.check(&task, TOKEN, &report(mislabelled, failures_file(&output))).await;
        assert!(matches!(refused, Err(InvalidResult::StagedElsewhere { .. })), "{refused:?}");
        let refused = s
            .check
            .check(
                &task,
                TOKEN,
                &report(staged_file(&output, &part), failures_file(&other_attempt)),
            )
            .await;
        assert!(matches!(refused, Err(InvalidResult::FailuresElsewhere { .. })), "{refused:?}");
        let compact = TaskReport::Compact(CompactReport::default());
        let wrong_phase = s.check.check(&task, TOKEN, &compact).await;
        assert!(matches!(wrong_phase, Err(InvalidResult::WrongPhase { .. })));
    }
}
