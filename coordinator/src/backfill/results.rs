//! Accepted task results, persisted under the run's `results/` folder so that a restarted
//! coordinator resumes without redoing them.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use earthcatalog_common::backfill::{StagedFile, StagingLayout};
use earthcatalog_common::cleanup::delete_objects;
use earthcatalog_common::ids::CellYear;
use earthcatalog_common::location::Location;
use earthcatalog_common::rpc::{CompactReport, IngestReport, PhaseKind, ReportedFile, TaskReport};
use earthcatalog_common::stores::Stores;
use serde::{Deserialize, Serialize};

use super::objects;
use crate::lease::scheduler::ResultStore;
use crate::lease::table::TaskId;

/// A staged file as stored.
#[derive(Debug, Serialize, Deserialize)]
struct Staged {
    uri: String,
    cell: String,
    year: Option<i32>,
    rows: u64,
}

/// A result as stored (`results/{ingest,compact}/{task:06}.json`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Stored {
    Ingest { staged: Vec<Staged>, items: u64, failed_items: u64, failures: Option<String> },
    Compact { files: Vec<(String, u64)>, input_rows: u64, duplicates_dropped: u64 },
}

impl From<&TaskReport> for Stored {
    fn from(r: &TaskReport) -> Self {
        match r {
            TaskReport::Ingest(i) => Stored::Ingest {
                staged: i
                    .staged
                    .iter()
                    .map(|s| Staged {
                        uri: s.location.uri(),
                        cell: s.partition.cell.clone(),
                        year: s.partition.year,
                        rows: s.rows,
                    })
                    .collect(),
                items: i.items,
                failed_items: i.failed_items,
                failures: i.failures.as_ref().map(Location::uri),
            },
            TaskReport::Compact(c) => Stored::Compact {
                files: c.files.iter().map(|f| (f.location.uri(), f.rows)).collect(),
                input_rows: c.input_rows,
                duplicates_dropped: c.duplicates_dropped,
            },
        }
    }
}

impl TryFrom<Stored> for TaskReport {
    type Error = anyhow::Error;

    fn try_from(s: Stored) -> anyhow::Result<Self> {
        Ok(match s {
            Stored::Ingest { staged, items, failed_items, failures } => {
                TaskReport::Ingest(IngestReport {
                    staged: staged
                        .into_iter()
                        .map(|s| {
                            Ok(StagedFile {
                                location: Location::parse(&s.uri)?,
                                partition: CellYear::new(s.cell, s.year),
                                rows: s.rows,
                            })
                        })
                        .collect::<anyhow::Result<_>>()?,
                    items,
                    failed_items,
                    failures: failures.as_deref().map(Location::parse).transpose()?,
                })
            }
            Stored::Compact { files, input_rows, duplicates_dropped } => {
                TaskReport::Compact(CompactReport {
                    files: files
                        .into_iter()
                        .map(|(uri, rows)| {
                            Ok(ReportedFile { location: Location::parse(&uri)?, rows })
                        })
                        .collect::<anyhow::Result<_>>()?,
                    input_rows,
                    duplicates_dropped,
                })
            }
        })
    }
}

/// The run's `results/` folder.
#[derive(Debug, Clone)]
pub struct RunResults {
    stores: Arc<Stores>,
    layout: StagingLayout,
}

impl RunResults {
    /// The results of the run laid out by `layout`.
    pub fn new(stores: Arc<Stores>, layout: StagingLayout) -> Self {
        RunResults { stores, layout }
    }

    fn location(&self, phase: PhaseKind, task: TaskId) -> Location {
        match phase {
            PhaseKind::Ingest => self.layout.ingest_result(task),
            PhaseKind::Compact => self.layout.compact_result(task),
        }
    }

    /// Every result of `phase` recorded so far, by task.
    pub async fn load(&self, phase: PhaseKind) -> anyhow::Result<BTreeMap<TaskId, TaskReport>> {
        let folder = self.location(phase, 0);
        let folder = folder.uri();
        let folder = Location::parse(folder.rsplit_once('/').map_or(folder.as_str(), |(d, _)| d))?;
        let mut out = BTreeMap::new();
        for location in objects::list(&self.stores, &folder).await? {
            let Some(task) = location
                .file_name()
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(|n| n.parse::<TaskId>().ok())
            else {
                continue;
            };
            let Some(bytes) = objects::get(&self.stores, &location).await? else { continue };
            let stored: Stored = serde_json::from_slice(&bytes)
                .with_context(|| format!("reading the recorded result {location}"))?;
            out.insert(task, TaskReport::try_from(stored).with_context(|| location.to_string())?);
        }
        Ok(out)
    }
}

#[async_trait::async_trait]
impl ResultStore for RunResults {
    async fn save(
        &self,
        phase: PhaseKind,
        task: TaskId,
        report: &TaskReport,
    ) -> Result<(), String> {
        let bytes = serde_json::to_vec(&Stored::from(report)).map_err(|e| e.to_string())?;
        objects::put(&self.stores, &self.location(phase, task), bytes)
            .await
            .map_err(|e| format!("{e:#}"))
    }

    async fn forget(&self, phase: PhaseKind, task: TaskId) {
        let at = self.location(phase, task);
        delete_objects(&self.stores, &[at], "a stale task result").await;
    }
}
