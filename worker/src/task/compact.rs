//! Phase 3 on a worker: one (cell, year)'s staged rows merged into data files whose names carry
//! the lease token, so each attempt writes its own objects.

use earthcatalog_common::backfill::{compact_partition, object_times};
use earthcatalog_common::geoparquet::{FileNamer, WriterOptions};
use earthcatalog_common::location::Location;
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
    if let Some(folder) = &task.object_times
        && let Err(e) = object_times::write_all(&stores, folder, &outcome.object_times).await
    {
        let written: Vec<Location> = outcome.files.iter().map(|f| f.location.clone()).collect();
        stores.delete_all(&written, "an abandoned output").await;
        return Err(e.into());
    }
    tracing::info!(
        partition = %task.partition,
        input_rows = outcome.input_rows,
        duplicates = outcome.duplicates_dropped,
        files = outcome.files.len(),
        object_times = outcome.object_times.len(),
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
