//! `earthcatalog status`: where a running backfill stands, from its coordinator's status call
//! (phase, tasks by state, items and rows so far, workers alive and wanted, tasks given up).

use std::fmt::Write as _;

use anyhow::Context;
use earthcatalog_common::rpc::pb;
use serde_json::json;

use crate::cli::StatusArgs;

/// Asks the coordinator once and prints the answer (text, or JSON with `--json`).
pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let mut coordinator = args.connect.client()?;
    let status = coordinator
        .status(pb::StatusRequest {})
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))
        .with_context(|| format!("asking {} for its status", args.connect.coordinator))?
        .into_inner();
    let text = if args.json { as_json(&status).to_string() } else { as_text(&status) };
    // The command's output, not a log line.
    println!("{text}");
    Ok(())
}

fn counts(c: Option<&pb::TaskCounts>) -> pb::TaskCounts {
    c.copied().unwrap_or_default()
}

fn phase_name(phase: i32) -> &'static str {
    match pb::Phase::try_from(phase) {
        Ok(pb::Phase::Ingest) => "ingest",
        Ok(pb::Phase::Compact) => "compact",
        _ => "unknown",
    }
}

/// The status as `--json` prints it and the status page reads it.
pub(crate) fn as_json(s: &pb::StatusResponse) -> serde_json::Value {
    let tasks = |c: pb::TaskCounts| json!({"pending": c.pending, "leased": c.leased, "done": c.done, "failed": c.failed});
    json!({
        "run_id": s.run_id,
        "phase": s.phase,
        "finished": s.finished,
        "workers_alive": s.workers_alive,
        "workers_wanted": s.fleet.map(|f| f.workers_wanted),
        "scaling": s.fleet.map(|f| json!({
            "min": f.min,
            "max": f.max,
            "slots_per_worker": f.slots_per_worker,
            "cooldown_seconds": f.cooldown_seconds,
        })),
        "items": s.items,
        "rows": s.rows,
        "ingest": tasks(counts(s.ingest.as_ref())),
        "compact": tasks(counts(s.compact.as_ref())),
        "uptime_seconds": s.uptime_seconds,
        "items_per_second": if s.uptime_seconds > 0.0 { s.items as f64 / s.uptime_seconds } else { 0.0 },
        "workers": s.workers.iter().map(|w| json!({
            "id": w.worker_id,
            "last_seen_seconds": w.last_seen_seconds,
            "leases": w.leases.iter().map(|l| json!({
                "phase": phase_name(l.phase),
                "task": l.task_id,
                "subject": l.subject,
                "attempt": l.attempt,
                "expires_in_seconds": l.expires_in_seconds,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "failed": s.failed.iter().map(|f| json!({
            "phase": phase_name(f.phase),
            "task": f.task_id,
            "subject": f.subject,
            "attempts": f.attempts,
            "error": f.error,
        })).collect::<Vec<_>>(),
    })
}

fn as_text(s: &pb::StatusResponse) -> String {
    let mut out = String::new();
    let finished = if s.finished { ", finished" } else { "" };
    let _ = writeln!(out, "run {}: phase {}{finished}", s.run_id, s.phase);
    let _ = writeln!(out, "workers alive: {}", s.workers_alive);
    for w in &s.workers {
        let _ = write!(out, "  {} (seen {:.0} s ago)", w.worker_id, w.last_seen_seconds);
        for l in &w.leases {
            let _ = write!(
                out,
                "; {} task {} ({}) attempt {}, {:.0} s left",
                phase_name(l.phase),
                l.task_id,
                l.subject,
                l.attempt,
                l.expires_in_seconds
            );
        }
        out.push('\n');
    }
    if let Some(f) = s.fleet {
        let _ = writeln!(
            out,
            "workers wanted: {} (between {} and {}, {} tasks each, fewer after {} s with none pending)",
            f.workers_wanted, f.min, f.max, f.slots_per_worker, f.cooldown_seconds
        );
    }
    for (name, c) in [("ingest", s.ingest.as_ref()), ("compact", s.compact.as_ref())] {
        let c = counts(c);
        let total = c.pending + c.leased + c.done + c.failed;
        let _ = writeln!(
            out,
            "{name:<8} {done}/{total} done, {leased} leased, {pending} pending, {failed} failed",
            done = c.done,
            leased = c.leased,
            pending = c.pending,
            failed = c.failed
        );
    }
    let _ = write!(out, "items so far: {}, rows so far: {}", s.items, s.rows);
    for f in &s.failed {
        let _ = write!(
            out,
            "\ngave up: {} task {} ({}) after {} attempt(s): {}",
            phase_name(f.phase),
            f.task_id,
            f.subject,
            f.attempts,
            f.error
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_shows_progress_per_phase_and_every_task_given_up() {
        let s = pb::StatusResponse {
            run_id: "20260101T000000Z-abc".into(),
            phase: "compact".into(),
            ingest: Some(pb::TaskCounts { pending: 0, leased: 0, done: 5, failed: 1 }),
            compact: Some(pb::TaskCounts { pending: 90, leased: 8, done: 20, failed: 0 }),
            items: 100,
            rows: 157,
            workers_alive: 4,
            finished: false,
            fleet: Some(pb::Fleet {
                workers_wanted: 25,
                min: 0,
                max: 40,
                slots_per_worker: 4,
                cooldown_seconds: 120,
            }),
            failed: vec![pb::FailedTask {
                phase: pb::Phase::Ingest as i32,
                task_id: 2,
                attempts: 3,
                error: "bad chunk".into(),
                subject: "s3://b/staging/chunks/chunk_000002.parquet".into(),
            }],
            workers: vec![pb::WorkerStatus {
                worker_id: "host-1#1".into(),
                last_seen_seconds: 1.2,
                leases: vec![pb::HeldLease {
                    phase: pb::Phase::Compact as i32,
                    task_id: 7,
                    subject: "grid_partition=8105bffffffffff/year=2012".into(),
                    attempt: 2,
                    expires_in_seconds: 41.6,
                }],
            }],
            uptime_seconds: 50.0,
        };
        assert_eq!(
            as_text(&s),
            "run 20260101T000000Z-abc: phase compact\n\
             workers alive: 4\n\
             \x20 host-1#1 (seen 1 s ago); compact task 7 (grid_partition=8105bffffffffff/year=2012) attempt 2, 42 s left\n\
             workers wanted: 25 (between 0 and 40, 4 tasks each, fewer after 120 s with none pending)\n\
             ingest   5/6 done, 0 leased, 0 pending, 1 failed\n\
             compact  20/118 done, 8 leased, 90 pending, 0 failed\n\
             items so far: 100, rows so far: 157\n\
             gave up: ingest task 2 (s3://b/staging/chunks/chunk_000002.parquet) after 3 attempt(s): bad chunk"
        );
        let json = as_json(&s);
        assert_eq!(json["failed"][0]["phase"], "ingest");
        assert_eq!(json["workers_wanted"], 25);
        assert_eq!(json["scaling"]["slots_per_worker"], 4);
        assert_eq!(json["items_per_second"], 2.0);
        assert_eq!(
            json["workers"][0]["leases"][0]["subject"],
            "grid_partition=8105bffffffffff/year=2012"
        );
    }
}
