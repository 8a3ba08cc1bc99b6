//! The stateless backfill worker: connects to the coordinator, leases tasks, runs them, renews
//! their leases while they run, reports, and drains on SIGTERM or a spot interruption notice.
//!
//! The binary (`earthcatalog-worker`) runs [`run`]; the coordinator's embedded mode
//! (`earthcatalog backfill --local-workers N`) starts such binaries as child processes.

/// Prometheus metrics of task attempts.
pub mod metrics;
/// Lease renewal, the worker's heartbeat.
pub mod renew;
/// The main loop: register, acquire, run, report, drain.
pub mod run_loop;
/// SIGTERM and drain windows.
pub mod shutdown;
/// EC2 spot interruption notices from the instance metadata service (IMDSv2).
pub mod spot;
/// Running one leased task.
pub mod task;

pub use run_loop::{WorkerConfig, WorkerSummary, run};
