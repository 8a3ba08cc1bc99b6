//! Proto ⇄ domain conversions, in one place. Domain → proto is infallible; proto → domain is
//! `TryFrom`, and a missing field or an unparsable location is a [`ConvertError`] naming it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::pb;
use crate::backfill::StagedFile;
use crate::ids::{CellYear, RunId};
use crate::location::{Location, LocationError};
use crate::partition::GridSpec;

/// Why a message could not be turned into a domain value.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// A required field was absent or empty.
    #[error("message {message} has no {field}")]
    Missing {
        /// The message type.
        message: &'static str,
        /// The field.
        field: &'static str,
    },
    /// A location field does not parse.
    #[error("message {message} field {field}: {source}")]
    Location {
        /// The message type.
        message: &'static str,
        /// The field.
        field: &'static str,
        /// Why it does not parse.
        source: LocationError,
    },
    /// A field holds a value outside its range.
    #[error("message {message} field {field}: {reason}")]
    Invalid {
        /// The message type.
        message: &'static str,
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl From<ConvertError> for tonic::Status {
    fn from(e: ConvertError) -> Self {
        tonic::Status::invalid_argument(e.to_string())
    }
}

fn location(message: &'static str, field: &'static str, s: &str) -> Result<Location, ConvertError> {
    if s.is_empty() {
        return Err(ConvertError::Missing { message, field });
    }
    Location::parse(s).map_err(|source| ConvertError::Location { message, field, source })
}

fn required<T>(
    message: &'static str,
    field: &'static str,
    v: Option<T>,
) -> Result<T, ConvertError> {
    v.ok_or(ConvertError::Missing { message, field })
}

/// The two leased phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PhaseKind {
    /// Phase 2: one task per chunk.
    Ingest,
    /// Phase 3: one task per (cell, year).
    Compact,
}

impl std::fmt::Display for PhaseKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PhaseKind::Ingest => "ingest",
            PhaseKind::Compact => "compact",
        })
    }
}

/// Where a backfill run is; `earthcatalog status` shows it by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Stage {
    /// Resolving the grid and the run.
    #[default]
    Starting,
    /// Phase 1: the inventory is cut into chunks.
    Inventory,
    /// Phase 2 or 3: tasks are leased.
    Leasing(PhaseKind),
    /// Phase 4: the files are registered and the catalog published.
    Register,
    /// Staging is removed.
    Cleanup,
    /// The run is over.
    Finished,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stage::Starting => f.write_str("starting"),
            Stage::Inventory => f.write_str("inventory"),
            Stage::Leasing(phase) => phase.fmt(f),
            Stage::Register => f.write_str("register"),
            Stage::Cleanup => f.write_str("cleanup"),
            Stage::Finished => f.write_str("finished"),
        }
    }
}

impl From<PhaseKind> for pb::Phase {
    fn from(p: PhaseKind) -> Self {
        match p {
            PhaseKind::Ingest => pb::Phase::Ingest,
            PhaseKind::Compact => pb::Phase::Compact,
        }
    }
}

impl TryFrom<i32> for PhaseKind {
    type Error = ConvertError;

    fn try_from(v: i32) -> Result<Self, ConvertError> {
        match pb::Phase::try_from(v) {
            Ok(pb::Phase::Ingest) => Ok(PhaseKind::Ingest),
            Ok(pb::Phase::Compact) => Ok(PhaseKind::Compact),
            _ => Err(ConvertError::Invalid {
                message: "LeaseRef",
                field: "phase",
                reason: format!("{v} is not a leased phase"),
            }),
        }
    }
}

/// What a refused result means for the attempt's outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// Another attempt holds the task, or the result does not fit it: the outputs will never be
    /// registered, so the worker deletes them.
    Superseded,
    /// The task is finished, maybe by this attempt (its reply was lost, or the coordinator
    /// restarted knowing the task done but not by whom): the outputs may be registered, so the
    /// worker keeps them (the run deletes what it does not register).
    Finished,
    /// The coordinator did not say: kept, as for [`RefusalKind::Finished`].
    Unspecified,
}

impl RefusalKind {
    /// Whether the attempt's outputs can be deleted safely.
    pub fn outputs_are_dead(self) -> bool {
        self == RefusalKind::Superseded
    }
}

impl From<RefusalKind> for pb::RefusalKind {
    fn from(k: RefusalKind) -> Self {
        match k {
            RefusalKind::Superseded => pb::RefusalKind::Superseded,
            RefusalKind::Finished => pb::RefusalKind::Finished,
            RefusalKind::Unspecified => pb::RefusalKind::Unspecified,
        }
    }
}

#[cfg(test)]
mod refusal_tests {
    use super::{RefusalKind, pb};

    #[test]
    fn only_a_superseded_attempt_deletes_its_outputs_and_unknown_kinds_keep_them() {
        for kind in [RefusalKind::Superseded, RefusalKind::Finished, RefusalKind::Unspecified] {
            let wire: i32 = pb::RefusalKind::from(kind).into();
            assert_eq!(RefusalKind::from(wire), kind);
        }
        assert!(RefusalKind::Superseded.outputs_are_dead());
        assert!(!RefusalKind::Finished.outputs_are_dead());
        assert!(!RefusalKind::from(0).outputs_are_dead(), "an older coordinator: kept");
        assert!(!RefusalKind::from(99).outputs_are_dead(), "a newer coordinator's kind: kept");
    }
}

impl From<i32> for RefusalKind {
    /// Unknown values (a newer coordinator) read as [`RefusalKind::Unspecified`]: keep.
    fn from(v: i32) -> Self {
        match pb::RefusalKind::try_from(v) {
            Ok(pb::RefusalKind::Superseded) => RefusalKind::Superseded,
            Ok(pb::RefusalKind::Finished) => RefusalKind::Finished,
            _ => RefusalKind::Unspecified,
        }
    }
}

/// Names one grant of one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LeaseRef {
    /// The task's phase.
    pub phase: PhaseKind,
    /// The task's index in its phase.
    pub task_id: u64,
    /// The grant's fencing token.
    pub token: u64,
}

impl From<LeaseRef> for pb::LeaseRef {
    fn from(l: LeaseRef) -> Self {
        pb::LeaseRef { phase: pb::Phase::from(l.phase) as i32, task_id: l.task_id, token: l.token }
    }
}

impl TryFrom<pb::LeaseRef> for LeaseRef {
    type Error = ConvertError;

    fn try_from(l: pb::LeaseRef) -> Result<Self, ConvertError> {
        Ok(LeaseRef { phase: PhaseKind::try_from(l.phase)?, task_id: l.task_id, token: l.token })
    }
}

impl TryFrom<Option<pb::LeaseRef>> for LeaseRef {
    type Error = ConvertError;

    fn try_from(l: Option<pb::LeaseRef>) -> Result<Self, ConvertError> {
        LeaseRef::try_from(required("LeaseRef", "lease", l)?)
    }
}

/// Phase 2 work: one chunk.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestTask {
    /// The chunk's id.
    pub chunk_id: u64,
    /// The chunk file.
    pub chunk: Location,
    /// The folder this attempt writes into (unique per attempt).
    pub output: Location,
    /// The run.
    pub run: RunId,
    /// Items fetched at once.
    pub fetch_concurrency: usize,
    /// The grid to partition with.
    pub grid: GridSpec,
    /// Buckets read from another location.
    pub sources: Vec<(String, Location)>,
    /// Retry only the items of this failures file (`--retry-pending`).
    pub retry_failures: Option<Location>,
}

/// Phase 3 work: one (cell, year).
#[derive(Debug, Clone, PartialEq)]
pub struct CompactTask {
    /// The partition.
    pub partition: CellYear,
    /// Its staged files, in chunk order.
    pub staged: Vec<Location>,
    /// The warehouse root.
    pub warehouse: Location,
    /// The run.
    pub run: RunId,
    /// Rows per data file at most.
    pub compact_rows: usize,
    /// Where the object times of items without `updated` are kept (a delta run), if anywhere.
    pub object_times: Option<Location>,
}

/// What a lease asks the worker to do.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskSpec {
    /// Phase 2.
    Ingest(IngestTask),
    /// Phase 3.
    Compact(CompactTask),
}

/// A lease as the worker sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseGrant {
    /// Which grant.
    pub lease: LeaseRef,
    /// 1-based attempt.
    pub attempt: u32,
    /// How long the lease lasts without renewal.
    pub duration: Duration,
    /// The work; for ingest tasks `output` is already the attempt's folder.
    pub task: TaskSpec,
}

fn grid_to_pb(g: &GridSpec) -> pb::Grid {
    match g {
        GridSpec::H3 { resolution } => pb::Grid {
            r#type: "h3".into(),
            resolution: u32::from(*resolution),
            ..Default::default()
        },
        GridSpec::GeoJson { boundaries, id_field } => pb::Grid {
            r#type: "geojson".into(),
            boundaries: boundaries.clone(),
            id_field: id_field.clone(),
            ..Default::default()
        },
    }
}

fn grid_from_pb(g: Option<pb::Grid>) -> Result<GridSpec, ConvertError> {
    let g = required("IngestChunk", "grid", g)?;
    let invalid = |reason: String| ConvertError::Invalid { message: "Grid", field: "type", reason };
    match g.r#type.as_str() {
        "h3" => {
            let r = u8::try_from(g.resolution).map_err(|e| invalid(e.to_string()))?;
            GridSpec::h3(r).map_err(|e| invalid(e.to_string()))
        }
        "geojson" if !g.boundaries.is_empty() => {
            Ok(GridSpec::GeoJson { boundaries: g.boundaries, id_field: g.id_field })
        }
        "geojson" => Err(ConvertError::Missing { message: "Grid", field: "boundaries" }),
        other => Err(invalid(format!("unknown grid type '{other}'"))),
    }
}

impl From<&TaskSpec> for pb::Task {
    fn from(t: &TaskSpec) -> Self {
        let kind = match t {
            TaskSpec::Ingest(i) => pb::task::Kind::Ingest(pb::IngestChunk {
                chunk_id: i.chunk_id,
                chunk_uri: i.chunk.uri(),
                output_uri: i.output.uri(),
                run_id: i.run.to_string(),
                fetch_concurrency: i.fetch_concurrency as u32,
                grid: Some(grid_to_pb(&i.grid)),
                sources: i.sources.iter().map(|(b, l)| (b.clone(), l.uri())).collect(),
                retry_failures_uri: i
                    .retry_failures
                    .as_ref()
                    .map(Location::uri)
                    .unwrap_or_default(),
            }),
            TaskSpec::Compact(c) => pb::task::Kind::Compact(pb::CompactPartition {
                cell: c.partition.cell.clone(),
                year: c.partition.year,
                staged_uris: c.staged.iter().map(Location::uri).collect(),
                warehouse_uri: c.warehouse.uri(),
                run_id: c.run.to_string(),
                compact_rows: c.compact_rows as u64,
                object_times_uri: c.object_times.as_ref().map(Location::uri).unwrap_or_default(),
            }),
        };
        pb::Task { kind: Some(kind) }
    }
}

impl TryFrom<pb::IngestChunk> for IngestTask {
    type Error = ConvertError;

    fn try_from(i: pb::IngestChunk) -> Result<Self, ConvertError> {
        const M: &str = "IngestChunk";
        if i.run_id.is_empty() {
            return Err(ConvertError::Missing { message: M, field: "run_id" });
        }
        let mut sources = Vec::with_capacity(i.sources.len());
        for (bucket, loc) in &i.sources {
            sources.push((bucket.clone(), location(M, "sources", loc)?));
        }
        sources.sort();
        let retry_failures = match i.retry_failures_uri.as_str() {
            "" => None,
            s => Some(location(M, "retry_failures_uri", s)?),
        };
        Ok(IngestTask {
            chunk_id: i.chunk_id,
            chunk: location(M, "chunk_uri", &i.chunk_uri)?,
            output: location(M, "output_uri", &i.output_uri)?,
            run: RunId::from_string(i.run_id),
            fetch_concurrency: (i.fetch_concurrency as usize).max(1),
            grid: grid_from_pb(i.grid)?,
            sources,
            retry_failures,
        })
    }
}

impl TryFrom<pb::CompactPartition> for CompactTask {
    type Error = ConvertError;

    fn try_from(c: pb::CompactPartition) -> Result<Self, ConvertError> {
        const M: &str = "CompactPartition";
        if c.cell.is_empty() {
            return Err(ConvertError::Missing { message: M, field: "cell" });
        }
        if c.run_id.is_empty() {
            return Err(ConvertError::Missing { message: M, field: "run_id" });
        }
        if c.compact_rows == 0 {
            return Err(ConvertError::Missing { message: M, field: "compact_rows" });
        }
        let staged = c
            .staged_uris
            .iter()
            .map(|s| location(M, "staged_uris", s))
            .collect::<Result<_, _>>()?;
        let object_times = match c.object_times_uri.as_str() {
            "" => None,
            s => Some(location(M, "object_times_uri", s)?),
        };
        Ok(CompactTask {
            partition: CellYear::new(c.cell, c.year),
            staged,
            warehouse: location(M, "warehouse_uri", &c.warehouse_uri)?,
            run: RunId::from_string(c.run_id),
            compact_rows: c.compact_rows as usize,
            object_times,
        })
    }
}

impl TryFrom<Option<pb::Task>> for TaskSpec {
    type Error = ConvertError;

    fn try_from(t: Option<pb::Task>) -> Result<Self, ConvertError> {
        let kind = required("Task", "kind", required("Lease", "task", t)?.kind)?;
        Ok(match kind {
            pb::task::Kind::Ingest(i) => TaskSpec::Ingest(i.try_into()?),
            pb::task::Kind::Compact(c) => TaskSpec::Compact(c.try_into()?),
        })
    }
}

impl From<&LeaseGrant> for pb::Lease {
    fn from(g: &LeaseGrant) -> Self {
        pb::Lease {
            r#ref: Some(g.lease.into()),
            attempt: g.attempt,
            lease_ms: g.duration.as_millis() as u64,
            task: Some(pb::Task::from(&g.task)),
        }
    }
}

impl TryFrom<pb::Lease> for LeaseGrant {
    type Error = ConvertError;

    fn try_from(l: pb::Lease) -> Result<Self, ConvertError> {
        Ok(LeaseGrant {
            lease: LeaseRef::try_from(l.r#ref)?,
            attempt: l.attempt,
            duration: Duration::from_millis(l.lease_ms),
            task: TaskSpec::try_from(l.task)?,
        })
    }
}

/// A data file written by Phase 3.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "(Location, u64)", into = "(Location, u64)")]
pub struct ReportedFile {
    /// Where it is.
    pub location: Location,
    /// Rows in it.
    pub rows: u64,
}

/// The result of an ingest task.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IngestReport {
    /// Staged files, one per (cell, year).
    pub staged: Vec<StagedFile>,
    /// Items that became rows.
    pub items: u64,
    /// Items that did not.
    pub failed_items: u64,
    /// The JSON-lines list of failed items, if any failed.
    pub failures: Option<Location>,
}

/// The result of a compact task.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CompactReport {
    /// Data files written.
    pub files: Vec<ReportedFile>,
    /// Rows read.
    pub input_rows: u64,
    /// Older duplicates dropped.
    pub duplicates_dropped: u64,
}

/// What a finished task produced. Serialized tagged by `kind` (`ingest`, `compact`): the coordinator records accepted results
/// in this form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TaskReport {
    /// Phase 2.
    Ingest(IngestReport),
    /// Phase 3.
    Compact(CompactReport),
}

impl TaskReport {
    /// Every object the task wrote (deleted when the report is refused).
    pub fn outputs(&self) -> Vec<Location> {
        match self {
            TaskReport::Ingest(i) => {
                i.staged.iter().map(|s| s.location.clone()).chain(i.failures.clone()).collect()
            }
            TaskReport::Compact(c) => c.files.iter().map(|f| f.location.clone()).collect(),
        }
    }
}

impl From<(Location, u64)> for ReportedFile {
    fn from((location, rows): (Location, u64)) -> Self {
        ReportedFile { location, rows }
    }
}

impl From<ReportedFile> for (Location, u64) {
    fn from(f: ReportedFile) -> Self {
        (f.location, f.rows)
    }
}

impl From<&TaskReport> for pb::TaskResult {
    fn from(r: &TaskReport) -> Self {
        let kind = match r {
            TaskReport::Ingest(i) => pb::task_result::Kind::Ingest(pb::IngestResult {
                staged: i
                    .staged
                    .iter()
                    .map(|s| pb::StagedFile {
                        uri: s.location.uri(),
                        cell: s.partition.cell.clone(),
                        year: s.partition.year,
                        rows: s.rows,
                    })
                    .collect(),
                items: i.items,
                failed_items: i.failed_items,
                failures_uri: i.failures.as_ref().map(Location::uri).unwrap_or_default(),
            }),
            TaskReport::Compact(c) => pb::task_result::Kind::Compact(pb::CompactResult {
                files: c
                    .files
                    .iter()
                    .map(|f| pb::DataFile { uri: f.location.uri(), rows: f.rows })
                    .collect(),
                input_rows: c.input_rows,
                duplicates_dropped: c.duplicates_dropped,
            }),
        };
        pb::TaskResult { kind: Some(kind) }
    }
}

impl TryFrom<Option<pb::TaskResult>> for TaskReport {
    type Error = ConvertError;

    fn try_from(r: Option<pb::TaskResult>) -> Result<Self, ConvertError> {
        let kind = required("TaskResult", "kind", required("CompleteRequest", "result", r)?.kind)?;
        Ok(match kind {
            pb::task_result::Kind::Ingest(i) => {
                const M: &str = "IngestResult";
                let mut staged = Vec::with_capacity(i.staged.len());
                for s in i.staged {
                    if s.cell.is_empty() {
                        return Err(ConvertError::Missing { message: "StagedFile", field: "cell" });
                    }
                    staged.push(StagedFile {
                        location: location("StagedFile", "uri", &s.uri)?,
                        partition: CellYear::new(s.cell, s.year),
                        rows: s.rows,
                    });
                }
                let failures = match i.failures_uri.as_str() {
                    "" => None,
                    s => Some(location(M, "failures_uri", s)?),
                };
                TaskReport::Ingest(IngestReport {
                    staged,
                    items: i.items,
                    failed_items: i.failed_items,
                    failures,
                })
            }
            pb::task_result::Kind::Compact(c) => {
                let files = c
                    .files
                    .into_iter()
                    .map(|f| {
                        Ok(ReportedFile {
                            location: location("DataFile", "uri", &f.uri)?,
                            rows: f.rows,
                        })
                    })
                    .collect::<Result<_, ConvertError>>()?;
                TaskReport::Compact(CompactReport {
                    files,
                    input_rows: c.input_rows,
                    duplicates_dropped: c.duplicates_dropped,
                })
            }
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ingest() -> TaskSpec {
        TaskSpec::Ingest(IngestTask {
            chunk_id: 3,
            chunk: Location::parse("s3://b/staging/r/chunks/chunk_000003.parquet").unwrap(),
            output: Location::parse("s3://b/staging/r/ingest/chunk_000003/attempt_9").unwrap(),
            run: RunId::from_string("r"),
            fetch_concurrency: 8,
            grid: GridSpec::h3(2).unwrap(),
            sources: vec![("its-live-data".into(), Location::parse("s3://mirror/x").unwrap())],
            retry_failures: None,
        })
    }

    #[test]
    fn a_lease_survives_the_round_trip_through_its_message() {
        let grant = LeaseGrant {
            lease: LeaseRef { phase: PhaseKind::Ingest, task_id: 3, token: 9 },
            attempt: 2,
            duration: Duration::from_secs(60),
            task: ingest(),
        };
        let back = LeaseGrant::try_from(pb::Lease::from(&grant)).unwrap();
        assert_eq!(back, grant);
    }

    #[test]
    fn a_compact_result_survives_the_round_trip() {
        let report = TaskReport::Compact(CompactReport {
            files: vec![ReportedFile {
                location: Location::parse("s3://b/wh/grid_partition=x/year=2020/a.parquet")
                    .unwrap(),
                rows: 7,
            }],
            input_rows: 9,
            duplicates_dropped: 2,
        });
        assert_eq!(TaskReport::try_from(Some(pb::TaskResult::from(&report))).unwrap(), report);
    }

    #[test]
    fn a_missing_field_is_an_error_that_names_it() {
        let mut lease = pb::Lease::from(&LeaseGrant {
            lease: LeaseRef { phase: PhaseKind::Ingest, task_id: 3, token: 9 },
            attempt: 1,
            duration: Duration::from_secs(1),
            task: ingest(),
        });
        lease.r#ref = None;
        let err = LeaseGrant::try_from(lease.clone()).unwrap_err();
        assert_eq!(err.to_string(), "message LeaseRef has no lease");
        lease.r#ref = Some(pb::LeaseRef { phase: 1, task_id: 3, token: 9 });
        if let Some(pb::task::Kind::Ingest(i)) = lease.task.as_mut().and_then(|t| t.kind.as_mut()) {
            i.chunk_uri.clear();
        }
        let err = LeaseGrant::try_from(lease).unwrap_err();
        assert_eq!(err.to_string(), "message IngestChunk has no chunk_uri");
        let err = TaskReport::try_from(None).unwrap_err();
        assert_eq!(err.to_string(), "message CompleteRequest has no result");
    }
}
