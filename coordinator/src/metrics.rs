//! The coordinator's Prometheus metrics (`--metrics-listen`): lease traffic counted where it
//! happens (granted, renewed, expired; results accepted or fenced off), and the run's tasks by
//! phase and state, items, rows, live workers and the workers the scaling rule wants (what KEDA
//! follows) sampled from the scheduler's status.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use earthcatalog_common::prometheus::{self, MetricsError};
use earthcatalog_common::rpc::PhaseKind;

use crate::lease::scheduler::{Scheduler, StatusView};

/// How often the status gauges are refreshed: far below any scrape interval, and reading the
/// status is a few counters under the scheduler's lock.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Serves the metrics on `addr` and keeps the status gauges of `scheduler` current.
pub fn serve(addr: SocketAddr, scheduler: Arc<Scheduler>) -> Result<(), MetricsError> {
    prometheus::serve(addr, "earthcatalog")?;
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(SAMPLE_EVERY);
        loop {
            ticker.tick().await;
            record_status(&scheduler.status());
        }
    });
    Ok(())
}

fn record_status(s: &StatusView) {
    for (phase, c) in [(PhaseKind::Ingest, &s.ingest), (PhaseKind::Compact, &s.compact)] {
        let phase = phase.to_string();
        for (state, n) in
            [("pending", c.pending), ("leased", c.leased), ("done", c.done), ("failed", c.failed)]
        {
            metrics::gauge!("earthcatalog_tasks", "phase" => phase.clone(), "state" => state)
                .set(n as f64);
        }
    }
    metrics::gauge!("earthcatalog_workers_alive").set(f64::from(s.workers_alive));
    metrics::gauge!("earthcatalog_workers_wanted").set(f64::from(s.fleet.wanted));
    metrics::counter!("earthcatalog_items_ingested_total").absolute(s.items);
    metrics::counter!("earthcatalog_rows_staged_total").absolute(s.rows);
}

/// Counts leases handed out in `phase`.
pub fn leases_granted(phase: PhaseKind, n: usize) {
    metrics::counter!("earthcatalog_leases_granted_total", "phase" => phase.to_string())
        .increment(n as u64);
}

/// Counts leases renewed.
pub fn leases_renewed(n: usize) {
    metrics::counter!("earthcatalog_leases_renewed_total").increment(n as u64);
}

/// Counts a lease that ran out before its holder renewed it.
pub fn lease_expired() {
    metrics::counter!("earthcatalog_leases_expired_total").increment(1);
}

/// Counts a task result: `accepted`, or `fenced` (refused: not the current attempt, or not
/// fitting its task).
pub fn result(phase: PhaseKind, accepted: bool) {
    let outcome = if accepted { "accepted" } else { "fenced" };
    metrics::counter!("earthcatalog_results_total", "phase" => phase.to_string(), "outcome" => outcome)
        .increment(1);
}
