//! Phase 2 on a worker: a chunk (or an earlier failures file) fetched, fanned out and staged.

use earthcatalog_common::backfill::{ingest_chunk, retry_failed};
use earthcatalog_common::pipeline::{DataPath, DataPathOptions};
use earthcatalog_common::rpc::{IngestReport, IngestTask, TaskReport};

use super::{TaskContext, TaskError};

/// Ingests `task` into its attempt folder.
pub(super) async fn run(ctx: &TaskContext, task: &IngestTask) -> Result<TaskReport, TaskError> {
    let stores = ctx.stores(&task.sources);
    let partitioner = ctx.partitioner(&task.grid, &stores).await?;
    let options =
        DataPathOptions { fetch_concurrency: task.fetch_concurrency, ..DataPathOptions::default() };
    let data_path = DataPath::new(stores, partitioner, options);
    let outcome = match &task.retry_failures {
        Some(failures) => retry_failed(&data_path, failures, &task.output).await?,
        None => ingest_chunk(&data_path, &task.chunk, &task.output).await?,
    };
    tracing::info!(
        chunk = task.chunk_id,
        items = outcome.items,
        failed = outcome.failed_items,
        staged = outcome.staged.len(),
        "chunk ingested"
    );
    Ok(TaskReport::Ingest(IngestReport {
        staged: outcome.staged,
        items: outcome.items,
        failed_items: outcome.failed_items,
        failures: outcome.failures_file,
    }))
}
