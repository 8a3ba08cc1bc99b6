//! Running one leased task: what each kind needs (stores, partitioners) and how its errors are
//! classified for the wire.

mod compact;
mod ingest;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use earthcatalog_common::backfill::layout::compact_output_token;
use earthcatalog_common::backfill::object_times::ObjectTimesError;
use earthcatalog_common::backfill::{CompactError, IngestError};
use earthcatalog_common::location::Location;
use earthcatalog_common::partition::{GridError, GridSpec, Partitioner, open_partitioner};
use earthcatalog_common::rpc::{LeaseGrant, TaskReport, TaskSpec};
use earthcatalog_common::stores::Stores;
use tokio_util::sync::CancellationToken;

/// Why a task failed.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// Phase 2 failed.
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// Phase 3 failed.
    #[error(transparent)]
    Compact(#[from] CompactError),
    /// The object times of a delta run's items could not be kept.
    #[error(transparent)]
    ObjectTimes(#[from] ObjectTimesError),
    /// The compaction thread died.
    #[error("the compaction thread stopped: {0}")]
    Thread(String),
    /// The grid could not be opened.
    #[error("opening the grid: {0}")]
    Grid(#[from] GridError),
}

impl TaskError {
    /// Whether another attempt may succeed: the one place this is decided for the wire.
    pub fn is_retryable(&self) -> bool {
        match self {
            TaskError::Ingest(e) => e.is_retryable(),
            TaskError::Compact(e) => e.is_retryable(),
            TaskError::ObjectTimes(e) => e.is_retryable(),
            TaskError::Grid(_) | TaskError::Thread(_) => true,
        }
    }
}

/// Bucket → location mappings, the key of the stores cache.
type Sources = Vec<(String, Location)>;

/// What tasks share in one worker process: object store clients and partitioners.
pub struct TaskContext {
    /// The process's stores (no source mappings).
    stores: Arc<Stores>,
    /// Views of them reading tasks' mapped buckets from their locations (same clients).
    mapped: Mutex<HashMap<Sources, Arc<Stores>>>,
    partitioners: tokio::sync::Mutex<HashMap<String, Arc<dyn Partitioner>>>,
}

impl TaskContext {
    /// A context over the process's `stores`.
    pub fn new(stores: Arc<Stores>) -> Self {
        TaskContext { stores, mapped: Mutex::default(), partitioners: Default::default() }
    }

    /// Stores reading `sources` buckets from their mapped locations.
    fn stores(&self, sources: &[(String, Location)]) -> Arc<Stores> {
        if sources.is_empty() {
            return self.stores.clone();
        }
        let mut cache = self.mapped.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .entry(sources.to_vec())
            .or_insert_with(|| Arc::new(self.stores.as_ref().clone().with_sources(sources)))
            .clone()
    }

    async fn partitioner(
        &self,
        grid: &GridSpec,
        stores: &Stores,
    ) -> Result<Arc<dyn Partitioner>, GridError> {
        let key = format!("{grid:?}");
        let mut cache = self.partitioners.lock().await;
        if let Some(p) = cache.get(&key) {
            return Ok(p.clone());
        }
        let p = open_partitioner(grid, stores).await?;
        cache.insert(key, p.clone());
        Ok(p)
    }

    /// Runs the task of `grant`; `Ok(None)` when `cancel` stopped it first. When this returns,
    /// nothing of the task is still writing.
    pub async fn execute(
        self: &Arc<Self>,
        grant: &LeaseGrant,
        cancel: &CancellationToken,
    ) -> Result<Option<TaskReport>, TaskError> {
        match &grant.task {
            TaskSpec::Ingest(t) => tokio::select! {
                r = ingest::run(self, t) => r.map(Some),
                _ = cancel.cancelled() => Ok(None),
            },
            TaskSpec::Compact(t) => {
                compact::run_blocking(self.clone(), t.clone(), grant.lease.token, cancel.clone())
                    .await
            }
        }
    }

    /// Deletes whatever an abandoned attempt (cancelled, lost, drained) may have written, found
    /// by the attempt-unique names: the ingest attempt folder, or the compact files named with
    /// the lease token in the partition folder (best effort, logged).
    pub async fn clean_attempt(&self, grant: &LeaseGrant) {
        let token = grant.lease.token;
        let (folder, run) = match &grant.task {
            TaskSpec::Ingest(t) => (t.output.clone(), None),
            TaskSpec::Compact(t) => (t.warehouse.join(&t.partition.hive_dir()), Some(&t.run)),
        };
        let ours = |l: &Location| match run {
            None => true,
            Some(run) => l.file_name().and_then(|n| compact_output_token(run, n)) == Some(token),
        };
        let names: Vec<Location> = match self.stores.list(&folder).await {
            Ok(listed) => listed.into_iter().filter(ours).collect(),
            Err(error) => {
                tracing::warn!(%error, "cannot list an abandoned attempt's outputs");
                Vec::new()
            }
        };
        // Logged even when it wrote nothing yet: an operator reading the log sees how every
        // abandoned task ended.
        tracing::info!(folder = %folder, objects = names.len(), "deleting an abandoned attempt's outputs");
        self.delete(&names).await;
    }

    /// Deletes what a task whose result was refused wrote (best effort, logged).
    pub async fn discard(&self, report: &TaskReport) {
        self.delete(&report.outputs()).await;
    }

    async fn delete(&self, locations: &[Location]) {
        self.stores.delete_all(locations, "a refused output").await;
    }
}
