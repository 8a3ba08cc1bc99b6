//! The worker's main loop: register → acquire up to the free slots → run each task while the
//! renew loop keeps its lease → report → repeat until the coordinator says the run is finished,
//! or a stop request drains the worker.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use earthcatalog_common::rpc::client::{self as connect, Client, ConnectError};
use earthcatalog_common::rpc::{LeaseGrant, LeaseRef, RefusalKind, TaskReport, pb};
use earthcatalog_common::stores::Stores;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tracing::Instrument;

use crate::renew::{self, Held};
use crate::shutdown::{self, Shutdown};
use crate::spot;
use crate::task::TaskContext;

/// First wait after a failed call to the coordinator; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Longest wait between attempts to reach the coordinator (a restart takes seconds).
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long cancelled tasks may spend deleting their partial outputs after their leases were
/// handed back. Past it they are abandoned: the worker may be minutes from losing its machine,
/// and the coordinator deletes outputs no accepted result names before it registers anything.
const CLEANUP_GRACE: Duration = Duration::from_secs(5);

/// Settings of one worker.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Coordinator URL (`http://host:port` or `https://…`).
    pub coordinator: String,
    /// Name for the coordinator's logs.
    pub name: String,
    /// Tasks run at once.
    pub slots: usize,
    /// The shared token.
    pub token: Option<String>,
    /// CA certificate to trust for TLS.
    pub tls_ca: Option<PathBuf>,
    /// How long to keep trying when the coordinator cannot be reached.
    pub connect_for: Duration,
    /// How long running tasks may take to finish once draining (SIGTERM).
    pub drain_window: Duration,
    /// Instance metadata endpoint to poll for spot notices (`None`: not on spot).
    pub spot_endpoint: Option<String>,
    /// Drain on SIGTERM / Ctrl-C (the standalone binary; not when embedded).
    pub handle_signals: bool,
}

/// What a worker did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerSummary {
    /// Results accepted.
    pub completed: u64,
    /// Attempts reported as failed.
    pub failed: u64,
    /// Results refused (the lease had moved on); their outputs were deleted.
    pub refused: u64,
    /// Tasks stopped because their lease was lost or the worker drained.
    pub abandoned: u64,
    /// Leases handed back on drain.
    pub released: u64,
    /// Whether the coordinator said the run is finished.
    pub finished: bool,
}

/// Why a worker stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The client could not be built.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The coordinator refused the shared token.
    #[error("the coordinator refused this worker: {0}")]
    Unauthenticated(String),
    /// The coordinator could not be reached for too long.
    #[error("the coordinator at {address} could not be reached for {seconds} s: {last_error}")]
    Unreachable {
        /// Its address.
        address: String,
        /// How long.
        seconds: u64,
        /// The last error.
        last_error: String,
    },
}

enum Outcome {
    Completed,
    Failed,
    Refused,
    Abandoned,
}

impl Outcome {
    fn task_end(&self) -> crate::metrics::TaskEnd {
        use crate::metrics::TaskEnd;
        match self {
            Outcome::Completed => TaskEnd::Completed,
            Outcome::Failed => TaskEnd::Failed,
            Outcome::Refused => TaskEnd::Refused,
            Outcome::Abandoned => TaskEnd::Abandoned,
        }
    }
}

/// Tracks how long the coordinator has been unreachable.
struct Reach {
    since: Option<Instant>,
    backoff: Duration,
    limit: Duration,
    address: String,
}

impl Reach {
    fn new(cfg: &WorkerConfig) -> Self {
        Reach {
            since: None,
            backoff: FIRST_BACKOFF,
            limit: cfg.connect_for,
            address: cfg.coordinator.clone(),
        }
    }

    fn ok(&mut self) {
        self.since = None;
        self.backoff = FIRST_BACKOFF;
    }

    /// Records a failed call: the error to give up with, or the wait before trying again.
    fn failed(&mut self, status: &tonic::Status) -> Result<Duration, WorkerError> {
        if status.code() == Code::Unauthenticated {
            return Err(WorkerError::Unauthenticated(status.message().to_string()));
        }
        let since = *self.since.get_or_insert_with(Instant::now);
        if since.elapsed() > self.limit {
            return Err(WorkerError::Unreachable {
                address: self.address.clone(),
                seconds: since.elapsed().as_secs(),
                last_error: status.message().to_string(),
            });
        }
        tracing::debug!(error = %status.message(), "coordinator not reachable; retrying");
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        Ok(wait)
    }
}

/// Runs a worker until the run is finished, `stop` is cancelled (drain), or an error.
pub async fn run(
    cfg: WorkerConfig,
    stores: Arc<Stores>,
    stop: CancellationToken,
) -> Result<WorkerSummary, WorkerError> {
    let mut client = connect::client(&cfg.coordinator, cfg.token.as_deref(), cfg.tls_ca.as_ref())?;
    let shutdown = Shutdown::new(&stop);
    if cfg.handle_signals {
        shutdown::on_signals(shutdown.clone(), cfg.drain_window);
    }
    if let Some(endpoint) = &cfg.spot_endpoint {
        spot::watch(endpoint.clone(), shutdown.clone());
    }
    let mut reach = Reach::new(&cfg);
    let registered = loop {
        let request = pb::RegisterRequest { name: cfg.name.clone(), slots: cfg.slots as u32 };
        match client.register(request).await {
            Ok(r) => break r.into_inner(),
            Err(status) => {
                let wait = reach.failed(&status)?;
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.stop_taking.cancelled() => return Ok(WorkerSummary::default()),
                }
            }
        }
    };
    reach.ok();
    let worker_id = registered.worker_id;
    tracing::info!(worker = %worker_id, run = %registered.run_id, slots = cfg.slots, "registered");
    let held = Held::default();
    let renew_stop = CancellationToken::new();
    let renew_every = Duration::from_millis(registered.renew_every_ms.max(100));
    let renewer = renew::spawn(
        client.clone(),
        worker_id.clone(),
        held.clone(),
        renew_every,
        renew_stop.clone(),
    );
    let ctx = Arc::new(TaskContext::new(stores));
    let mut tasks: JoinSet<Outcome> = JoinSet::new();
    let mut summary = WorkerSummary::default();
    let tally = |s: &mut WorkerSummary, o: Outcome| match o {
        Outcome::Completed => s.completed += 1,
        Outcome::Failed => s.failed += 1,
        Outcome::Refused => s.refused += 1,
        Outcome::Abandoned => s.abandoned += 1,
    };
    let result = loop {
        if shutdown.stop_taking.is_cancelled() {
            break Ok(());
        }
        while let Some(done) = tasks.try_join_next() {
            tally(&mut summary, done.unwrap_or(Outcome::Abandoned));
        }
        let free = cfg.slots.saturating_sub(tasks.len());
        if free == 0 {
            tokio::select! {
                Some(done) = tasks.join_next() => tally(&mut summary, done.unwrap_or(Outcome::Abandoned)),
                _ = shutdown.stop_taking.cancelled() => {}
            }
            continue;
        }
        let request = pb::AcquireRequest { worker_id: worker_id.clone(), max_tasks: free as u32 };
        let wait = match client.acquire(request).await {
            Ok(r) => {
                reach.ok();
                let r = r.into_inner();
                if r.finished {
                    summary.finished = true;
                    break Ok(());
                }
                let granted = r.leases.len();
                for lease in r.leases {
                    match LeaseGrant::try_from(lease) {
                        Ok(grant) => {
                            let cancel = held.insert(grant.lease, grant.duration);
                            let (ctx, client, worker, held) =
                                (ctx.clone(), client.clone(), worker_id.clone(), held.clone());
                            let span = tracing::info_span!("task", phase = %grant.lease.phase, task = grant.lease.task_id, attempt = grant.attempt);
                            tasks.spawn(
                                run_task(ctx, client, worker, held, grant, cancel, cfg.connect_for)
                                    .instrument(span),
                            );
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "unreadable lease ignored; it will expire")
                        }
                    }
                }
                if granted > 0 { Duration::ZERO } else { Duration::from_millis(r.retry_after_ms) }
            }
            Err(status) => match reach.failed(&status) {
                Ok(wait) => wait,
                Err(e) => break Err(e),
            },
        };
        if !wait.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                Some(done) = tasks.join_next() => tally(&mut summary, done.unwrap_or(Outcome::Abandoned)),
                _ = shutdown.stop_taking.cancelled() => {}
            }
        }
    };
    // Drain: running tasks get the window, then what is left is handed back.
    let window = shutdown.window(cfg.drain_window);
    let deadline = tokio::time::Instant::now() + window;
    if !tasks.is_empty() {
        tracing::info!(
            running = tasks.len(),
            window_s = window.as_secs_f64(),
            "waiting for running tasks"
        );
    }
    while !tasks.is_empty() {
        match tokio::time::timeout_at(deadline, tasks.join_next()).await {
            Ok(Some(done)) => tally(&mut summary, done.unwrap_or(Outcome::Abandoned)),
            Ok(None) => break,
            Err(_) => {
                let leases = held.cancel_all();
                summary.released += release(&mut client, &worker_id, &leases).await;
                let cleaned = async {
                    while let Some(done) = tasks.join_next().await {
                        tally(&mut summary, done.unwrap_or(Outcome::Abandoned));
                    }
                };
                if tokio::time::timeout(CLEANUP_GRACE, cleaned).await.is_err() {
                    tracing::warn!(
                        tasks = tasks.len(),
                        "handed-back tasks still cleaning up; leaving their outputs to the coordinator"
                    );
                    tasks.abort_all();
                    while let Some(done) = tasks.join_next().await {
                        tally(&mut summary, done.unwrap_or(Outcome::Abandoned));
                    }
                }
            }
        }
    }
    renew_stop.cancel();
    let _ = renewer.await;
    tracing::info!(?summary, "worker stopped");
    result.map(|()| summary)
}

async fn release(client: &mut Client, worker_id: &str, leases: &[LeaseRef]) -> u64 {
    if leases.is_empty() {
        return 0;
    }
    let request = pb::ReleaseRequest {
        worker_id: worker_id.to_string(),
        leases: leases.iter().copied().map(pb::LeaseRef::from).collect(),
    };
    match client.release(request).await {
        Ok(r) => u64::from(r.into_inner().released),
        Err(status) => {
            tracing::warn!(error = %status.message(), "could not hand leases back; they will expire");
            0
        }
    }
}

/// Runs one task and reports it; a cancelled task cleans its outputs and reports nothing.
async fn run_task(
    ctx: Arc<TaskContext>,
    mut client: Client,
    worker_id: String,
    held: Held,
    grant: LeaseGrant,
    cancel: CancellationToken,
    connect_for: Duration,
) -> Outcome {
    let lease = grant.lease;
    let outcome = match ctx.execute(&grant, &cancel).await.transpose() {
        None => {
            ctx.clean_attempt(&grant).await;
            Outcome::Abandoned
        }
        Some(Ok(report)) => {
            complete(&ctx, &mut client, &worker_id, &grant, report, &cancel, connect_for).await
        }
        Some(Err(e)) => {
            let request = pb::FailRequest {
                worker_id: worker_id.clone(),
                lease: Some(lease.into()),
                error: e.to_string(),
                retryable: e.is_retryable(),
            };
            if let Err(status) = client.fail(request).await {
                tracing::warn!(error = %status.message(), "could not report the failure; the lease will expire");
            }
            Outcome::Failed
        }
    };
    held.remove(&lease);
    crate::metrics::task_ended(lease.phase, outcome.task_end());
    outcome
}

async fn complete(
    ctx: &TaskContext,
    client: &mut Client,
    worker_id: &str,
    grant: &LeaseGrant,
    report: TaskReport,
    cancel: &CancellationToken,
    connect_for: Duration,
) -> Outcome {
    let started = Instant::now();
    let mut backoff = FIRST_BACKOFF;
    loop {
        let request = pb::CompleteRequest {
            worker_id: worker_id.to_string(),
            lease: Some(grant.lease.into()),
            result: Some(pb::TaskResult::from(&report)),
        };
        match client.complete(request).await.map(|r| r.into_inner().outcome) {
            Ok(Some(pb::report_response::Outcome::Accepted(_))) => return Outcome::Completed,
            Ok(other) => {
                let (why, kind) = match other {
                    Some(pb::report_response::Outcome::Refused(r)) => {
                        (r.reason, RefusalKind::from(r.kind))
                    }
                    _ => ("no outcome".into(), RefusalKind::Unspecified),
                };
                if kind.outputs_are_dead() {
                    tracing::warn!(reason = %why, "result refused; deleting its outputs");
                    ctx.discard(&report).await;
                } else {
                    tracing::warn!(reason = %why, "result refused; its outputs are kept, as the run may register them");
                }
                return Outcome::Refused;
            }
            Err(status) if cancel.is_cancelled() || started.elapsed() > connect_for => {
                // The coordinator may have recorded it with the reply lost: the outputs stay,
                // and the run deletes them if it never accepted them.
                tracing::warn!(error = %status.message(), "result not delivered; its outputs are kept for the coordinator to register or delete");
                return Outcome::Abandoned;
            }
            Err(status) => {
                tracing::warn!(error = %status.message(), "could not report the result; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
