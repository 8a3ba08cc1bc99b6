//! The `earthcatalog.v1.Coordinator` gRPC service: converts messages and calls the
//! [`Scheduler`]; no logic of its own.

use std::sync::Arc;

use earthcatalog_common::rpc::pb::coordinator_server::Coordinator;
use earthcatalog_common::rpc::{LeaseRef, TaskReport, pb};
use tonic::{Request, Response, Status};

use super::scheduler::{ReportError, Scheduler};
use super::table::StateCounts;

/// How long a worker waits before asking again when nothing is ready: short enough that a
/// newly opened phase starts quickly, long enough that idle workers cost nothing.
const RETRY_AFTER_MS: u64 = 250;

/// The gRPC face of a [`Scheduler`].
#[derive(Clone)]
pub struct CoordinatorService {
    scheduler: Arc<Scheduler>,
}

impl CoordinatorService {
    /// Serves `scheduler`.
    pub fn new(scheduler: Arc<Scheduler>) -> Self {
        CoordinatorService { scheduler }
    }
}

fn refs(list: Vec<pb::LeaseRef>) -> Result<Vec<LeaseRef>, Status> {
    list.into_iter().map(|l| LeaseRef::try_from(l).map_err(Status::from)).collect()
}

fn report_response(
    result: Result<(), ReportError>,
) -> Result<Response<pb::ReportResponse>, Status> {
    let outcome = match result {
        Ok(()) => pb::report_response::Outcome::Accepted(pb::Accepted {}),
        Err(ReportError::Persist { task, reason }) => {
            return Err(Status::unavailable(format!(
                "cannot record the result of task {task}: {reason}"
            )));
        }
        Err(refused) => pb::report_response::Outcome::Refused(pb::Refused {
            reason: refused.to_string(),
            kind: pb::RefusalKind::from(refused.refusal_kind()).into(),
        }),
    };
    Ok(Response::new(pb::ReportResponse { outcome: Some(outcome) }))
}

fn counts(c: StateCounts) -> pb::TaskCounts {
    pb::TaskCounts {
        pending: c.pending as u64,
        leased: c.leased as u64,
        done: c.done as u64,
        failed: c.failed as u64,
    }
}

#[tonic::async_trait]
impl Coordinator for CoordinatorService {
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let r = request.into_inner();
        let worker_id = self.scheduler.register(&r.name);
        let s = self.scheduler.settings();
        Ok(Response::new(pb::RegisterResponse {
            worker_id,
            run_id: self.scheduler.run_id().to_string(),
            lease_ms: s.lease.as_millis() as u64,
            renew_every_ms: s.renew_every.as_millis() as u64,
        }))
    }

    async fn acquire(
        &self,
        request: Request<pb::AcquireRequest>,
    ) -> Result<Response<pb::AcquireResponse>, Status> {
        let r = request.into_inner();
        let response = match self.scheduler.acquire(&r.worker_id, r.max_tasks as usize) {
            None => pb::AcquireResponse { finished: true, ..Default::default() },
            Some((grants, drain)) => pb::AcquireResponse {
                retry_after_ms: if grants.is_empty() { RETRY_AFTER_MS } else { 0 },
                leases: grants.iter().map(pb::Lease::from).collect(),
                finished: false,
                drain,
            },
        };
        Ok(Response::new(response))
    }

    async fn renew(
        &self,
        request: Request<pb::RenewRequest>,
    ) -> Result<Response<pb::RenewResponse>, Status> {
        let r = request.into_inner();
        let leases = refs(r.leases)?;
        let (lost, drain) = self.scheduler.renew(&r.worker_id, &leases);
        Ok(Response::new(pb::RenewResponse {
            lost: lost.into_iter().map(pb::LeaseRef::from).collect(),
            drain,
        }))
    }

    async fn complete(
        &self,
        request: Request<pb::CompleteRequest>,
    ) -> Result<Response<pb::ReportResponse>, Status> {
        let r = request.into_inner();
        let lease = LeaseRef::try_from(r.lease)?;
        let report = TaskReport::try_from(r.result)?;
        let result = self.scheduler.complete(&r.worker_id, lease, report).await;
        if !matches!(result, Err(ReportError::Persist { .. })) {
            crate::metrics::result(lease.phase, result.is_ok());
        }
        if let Err(e) = &result {
            tracing::warn!(worker = %r.worker_id, phase = %lease.phase, task = lease.task_id, token = lease.token, "result refused: {e}");
        }
        report_response(result)
    }

    async fn fail(
        &self,
        request: Request<pb::FailRequest>,
    ) -> Result<Response<pb::ReportResponse>, Status> {
        let r = request.into_inner();
        let lease = LeaseRef::try_from(r.lease)?;
        report_response(self.scheduler.fail(&r.worker_id, lease, r.error, r.retryable))
    }

    async fn release(
        &self,
        request: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReleaseResponse>, Status> {
        let r = request.into_inner();
        let leases = refs(r.leases)?;
        let released = self.scheduler.release(&r.worker_id, &leases) as u32;
        Ok(Response::new(pb::ReleaseResponse { released }))
    }

    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        Ok(Response::new(status_message(&self.scheduler)))
    }
}

/// The run's status as the status call (and the status page) answer it.
pub fn status_message(scheduler: &Scheduler) -> pb::StatusResponse {
    let s = scheduler.status();
    pb::StatusResponse {
        run_id: scheduler.run_id().to_string(),
        phase: s.stage.to_string(),
        ingest: Some(counts(s.ingest)),
        compact: Some(counts(s.compact)),
        items: s.items,
        rows: s.rows,
        workers_alive: s.workers_alive,
        finished: s.finished,
        fleet: Some(pb::Fleet {
            workers_wanted: s.fleet.wanted,
            min: s.fleet.rule.min,
            max: s.fleet.rule.max,
            slots_per_worker: s.fleet.rule.slots,
            cooldown_seconds: u32::try_from(s.fleet.rule.cooldown.as_secs()).unwrap_or(u32::MAX),
        }),
        failed: s
            .failed
            .into_iter()
            .map(|f| pb::FailedTask {
                phase: pb::Phase::from(f.phase) as i32,
                task_id: f.task,
                attempts: f.attempts,
                error: f.error,
                subject: f.subject,
            })
            .collect(),
        workers: s
            .workers
            .into_iter()
            .map(|w| pb::WorkerStatus {
                worker_id: w.id,
                last_seen_seconds: w.last_seen.as_secs_f64(),
                leases: w
                    .leases
                    .into_iter()
                    .map(|l| pb::HeldLease {
                        phase: pb::Phase::from(l.phase) as i32,
                        task_id: l.task,
                        subject: l.subject,
                        attempt: l.attempt,
                        expires_in_seconds: l.expires_in.as_secs_f64(),
                    })
                    .collect(),
            })
            .collect(),
        uptime_seconds: s.uptime.as_secs_f64(),
    }
}
