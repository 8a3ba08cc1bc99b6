//! Phase 3 on a worker: one (cell, year)'s staged rows merged into data files whose names carry
//! the lease token, so each attempt writes its own objects.

use earthcatalog_common::backfill::compact_partition;
use earthcatalog_common::geoparquet::{FileNamer, WriterOptions};
use earthcatalog_common::rpc::{CompactReport, CompactTask, ReportedFile, TaskReport};

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{TaskContext, TaskError};

/// Compacts `task` on a blocking thread (it is CPU-bound: merge, dedup, sort, encode), until
/// done or `cancel`; `Ok(None)` when cancelled. Returns only once the thread is finished.
pub(super) async fn run_blocking(
    ctx: Arc<TaskContext>,
    task: CompactTask,
    token: u64,
    cancel: CancellationToken,
) -> Result<Option<TaskReport>, TaskError> {
    let handle = tokio::runtime::Handle::current();
    let job = tokio::task::spawn_blocking(move || {
        handle.block_on(async {
            tokio::select! {
                r = run(&ctx, &task, token) => r.map(Some),
                _ = cancel.cancelled() => Ok(None),
            }
        })
    });
    job.await.map_err(|e| TaskError::Thread(e.to_string()))?
}

/// Compacts `task`; `token` names this attempt's files.
async fn run(ctx: &TaskContext, task: &CompactTask, token: u64) -> Result<TaskReport, TaskError> {
    let stores = ctx.stores(&[]);
    let namer = FileNamer::new(task.run.clone(), format!("c{token}"));
    let outcome = compact_partition(
        &stores,
        &task.partition,
        &task.staged,
        &task.warehouse,
        &namer,
        task.compact_rows,
        &WriterOptions::default(),
    )
    .await?;
    tracing::info!(
        partition = %task.partition,
        input_rows = outcome.input_rows,
        duplicates = outcome.duplicates_dropped,
        files = outcome.files.len(),
        "partition compacted"
    );
    Ok(TaskReport::Compact(CompactReport {
        files: outcome
            .files
            .iter()
            .map(|f| ReportedFile { location: f.location.clone(), rows: f.rows as u64 })
            .collect(),
        input_rows: outcome.input_rows,
        duplicates_dropped: outcome.duplicates_dropped,
    }))
}
