//! The worker's own Prometheus metrics (`--metrics-listen`): tasks by phase and how they ended.
//! Files, rows and bytes written and fetch failures are counted where they happen, in
//! `earthcatalog_common` (`prometheus`).

use earthcatalog_common::rpc::PhaseKind;

/// How a task attempt ended, as the `outcome` label.
#[derive(Debug, Clone, Copy)]
pub enum TaskEnd {
    /// The coordinator accepted its result.
    Completed,
    /// It failed and said so.
    Failed,
    /// The coordinator refused its result (not the current attempt, or not fitting the task).
    Refused,
    /// Given up: lease lost, drained, or the result could not be delivered.
    Abandoned,
}

impl TaskEnd {
    fn as_str(self) -> &'static str {
        match self {
            TaskEnd::Completed => "completed",
            TaskEnd::Failed => "failed",
            TaskEnd::Refused => "refused",
            TaskEnd::Abandoned => "abandoned",
        }
    }
}

/// Counts one finished task attempt.
pub fn task_ended(phase: PhaseKind, end: TaskEnd) {
    metrics::counter!("earthcatalog_worker_tasks_total", "phase" => phase.to_string(), "outcome" => end.as_str())
        .increment(1);
}
