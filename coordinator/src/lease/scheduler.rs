//! The coordinator's live state behind the gRPC service: which phase is being leased, its lease
//! table, the workers seen, and the results accepted so far.
//!
//! The backfill driver opens a phase with [`Scheduler::start_phase`] and waits for it with
//! [`Scheduler::phase_finished`]; the service calls the other methods. Per task the table keeps
//! only its state (the task's description is built at grant time by the phase's [`TaskMaker`]),
//! so 100,000 tasks cost a few megabytes.
//!
//! A result is taken only from the worker holding the lease, and only once its outputs passed
//! the run's [`ResultCheck`]; a result that fails the check counts as a failed attempt. An
//! accepted result is persisted (through [`ResultStore`]) before the lease is marked done,
//! under its task's report lock: a result is on record if and only if the table accepted it.
//! Reports of different tasks persist at once (each persist waits a round trip to the store,
//! and one lock for all would cap a fleet at one result per round trip).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use earthcatalog_common::rpc::{
    LeaseGrant, LeaseRef, PhaseKind, RefusalKind, Stage, TaskReport, TaskSpec,
};
use tokio::sync::Notify;

use super::check::{InvalidResult, ResultCheck};
use super::state::RetryRules;
use super::table::{LeaseTable, Refusal, StateCounts, TaskId};
use super::tokens::{FencingTokens, random_u64};
use crate::scaling::{Fleet, Queue, ScalingRule};

/// One task's report lock: its reports are persisted one at a time.
type ReportLock = Arc<tokio::sync::Mutex<()>>;

/// Builds the description of task `task` for the grant with fencing token `token`.
pub type TaskMaker = Arc<dyn Fn(TaskId, u64) -> TaskSpec + Send + Sync>;

/// Persists accepted results (the run state a restarted coordinator resumes from).
#[async_trait::async_trait]
pub trait ResultStore: Send + Sync {
    /// Records the accepted `report` of `task`.
    async fn save(&self, phase: PhaseKind, task: TaskId, report: &TaskReport)
    -> Result<(), String>;
    /// Forgets a record saved for a report the table then refused.
    async fn forget(&self, phase: PhaseKind, task: TaskId);
}

/// A phase to lease out.
pub struct PhasePlan {
    /// Which phase.
    pub kind: PhaseKind,
    /// Number of tasks (ids `0..tasks`).
    pub tasks: u64,
    /// Tasks whose result was accepted by an earlier coordinator of the same run.
    pub done: Vec<bool>,
    /// What each task is about, for failure reports.
    pub subjects: Vec<String>,
    /// Builds each grant's task description.
    pub make: TaskMaker,
}

/// A task given up, as reported to operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedTask {
    /// The phase.
    pub phase: PhaseKind,
    /// The task.
    pub task: TaskId,
    /// What it was about.
    pub subject: String,
    /// Attempts made.
    pub attempts: u32,
    /// Its last error.
    pub error: String,
}

/// What a finished phase produced in this coordinator's lifetime.
#[derive(Debug, Default)]
pub struct PhaseOutcome {
    /// Results accepted now (earlier ones are in the result store).
    pub accepted: BTreeMap<TaskId, TaskReport>,
    /// Tasks given up.
    pub failed: Vec<FailedTask>,
}

/// Why a report was not taken.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The lease is not current (expired, superseded, finished, or another phase).
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The report names a phase that is not being leased.
    #[error("phase {0} is not running")]
    WrongPhase(PhaseKind),
    /// The result names outputs that are not its attempt's; counted as a failed attempt.
    #[error("task {task}: result refused: {reason}")]
    Invalid {
        /// The task.
        task: TaskId,
        /// What does not fit.
        reason: InvalidResult,
    },
    /// The result could not be persisted; the lease stays with the worker.
    #[error("cannot record the result of task {task}: {reason}")]
    Persist {
        /// The task.
        task: TaskId,
        /// Why.
        reason: String,
    },
}

impl ReportError {
    /// What the refusal means for the attempt's outputs: only an attempt another one replaced,
    /// or a result that does not fit its task, can have its outputs deleted by the worker.
    pub fn refusal_kind(&self) -> RefusalKind {
        match self {
            ReportError::Refused(Refusal::StaleLease { .. } | Refusal::NotHolder { .. })
            | ReportError::Invalid { .. } => RefusalKind::Superseded,
            // The phase is over or the task done: perhaps by this attempt, its reply lost.
            ReportError::Refused(Refusal::Finished(_)) | ReportError::WrongPhase(_) => {
                RefusalKind::Finished
            }
            ReportError::Refused(Refusal::UnknownTask(_)) | ReportError::Persist { .. } => {
                RefusalKind::Unspecified
            }
        }
    }
}

/// Lease settings.
#[derive(Debug, Clone, Copy)]
pub struct LeaseSettings {
    /// Lease length.
    pub lease: Duration,
    /// How often workers renew.
    pub renew_every: Duration,
    /// Attempt cap and backoff.
    pub rules: RetryRules,
}

/// Counts and progress for the status call.
#[derive(Debug, Clone, Default)]
pub struct StatusView {
    /// Where the run is.
    pub stage: Stage,
    /// Ingest tasks per state.
    pub ingest: StateCounts,
    /// Compact tasks per state.
    pub compact: StateCounts,
    /// Items ingested so far.
    pub items: u64,
    /// Rows staged (Phase 2) so far.
    pub rows: u64,
    /// Workers seen within one lease length.
    pub workers_alive: u32,
    /// The run is over: workers may exit.
    pub finished: bool,
    /// Tasks given up.
    pub failed: Vec<FailedTask>,
    /// The fleet the scaling rule wants now.
    pub fleet: FleetView,
    /// Workers seen within one lease length, with the leases each holds.
    pub workers: Vec<WorkerView>,
    /// Time since this coordinator process took the run up (the base of its throughput).
    pub uptime: Duration,
}

/// A worker as the status shows it.
#[derive(Debug, Clone)]
pub struct WorkerView {
    /// Its id (as registered).
    pub id: String,
    /// Time since its last call.
    pub last_seen: Duration,
    /// The leases it holds now.
    pub leases: Vec<HeldLease>,
}

/// A lease held by a worker.
#[derive(Debug, Clone)]
pub struct HeldLease {
    /// Its phase.
    pub phase: PhaseKind,
    /// Its task.
    pub task: TaskId,
    /// What the task is about (a chunk file, or a cell and year).
    pub subject: String,
    /// 1-based attempt.
    pub attempt: u32,
    /// Time left before it runs out unless renewed.
    pub expires_in: Duration,
}

/// The scaling rule's decision and its settings, for status and metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct FleetView {
    /// Workers wanted now.
    pub wanted: u32,
    /// The rule deciding it.
    pub rule: ScalingRule,
}

struct Running {
    kind: PhaseKind,
    table: LeaseTable<()>,
    make: TaskMaker,
    subjects: Vec<String>,
    accepted: BTreeMap<TaskId, TaskReport>,
}

struct Inner {
    stage: Stage,
    running: Option<Running>,
    finished_counts: HashMap<PhaseKind, StateCounts>,
    failed: Vec<FailedTask>,
    workers: HashMap<String, Instant>,
    told_finished: std::collections::HashSet<String>,
    next_worker: u64,
    tokens: FencingTokens,
    items: u64,
    rows: u64,
    finished: bool,
    drain: bool,
}

/// The coordinator's shared state.
pub struct Scheduler {
    inner: Mutex<Inner>,
    /// The report lock of each task with a report being persisted.
    reports: Mutex<HashMap<(PhaseKind, TaskId), ReportLock>>,
    results: Arc<dyn ResultStore>,
    check: Arc<dyn ResultCheck>,
    settings: LeaseSettings,
    run_id: String,
    changed: Notify,
    fleet: Mutex<Fleet>,
    started: Instant,
}

impl Scheduler {
    /// A scheduler for run `run_id` that records accepted results in `results` after they pass
    /// `check`.
    pub fn new(
        run_id: String,
        settings: LeaseSettings,
        results: Arc<dyn ResultStore>,
        check: Arc<dyn ResultCheck>,
    ) -> Self {
        Scheduler {
            inner: Mutex::new(Inner {
                stage: Stage::Starting,
                running: None,
                finished_counts: HashMap::new(),
                failed: Vec::new(),
                workers: HashMap::new(),
                told_finished: Default::default(),
                next_worker: 1,
                tokens: FencingTokens::new(),
                items: 0,
                rows: 0,
                finished: false,
                drain: false,
            }),
            reports: Mutex::new(HashMap::new()),
            results,
            check,
            settings,
            run_id,
            changed: Notify::new(),
            fleet: Mutex::new(Fleet::new(ScalingRule::default())),
            started: Instant::now(),
        }
    }

    /// Sizes the fleet with `fleet` (its rule, and the workers already running).
    pub fn set_fleet(&self, fleet: Fleet) {
        *self.fleet.lock().unwrap_or_else(|p| p.into_inner()) = fleet;
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The run's id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Lease settings.
    pub fn settings(&self) -> LeaseSettings {
        self.settings
    }

    /// Names the current stage (for status) when no phase is leased (Phase 1, Phase 4).
    pub fn set_stage(&self, stage: Stage) {
        self.lock().stage = stage;
    }

    /// Marks the run over; workers asking for work are told to exit.
    pub fn finish(&self) {
        let mut inner = self.lock();
        inner.finished = true;
        inner.stage = Stage::Finished;
    }

    /// Asks workers to stop taking work (the coordinator is giving up).
    pub fn drain(&self) {
        self.lock().drain = true;
    }

    /// Adds progress counted by the driver (results accepted by an earlier coordinator).
    pub fn add_progress(&self, items: u64, rows: u64) {
        let mut inner = self.lock();
        inner.items += items;
        inner.rows += rows;
    }

    /// Starts leasing `plan`'s tasks.
    pub fn start_phase(&self, plan: PhasePlan) {
        let mut inner = self.lock();
        let tokens = std::mem::take(&mut inner.tokens);
        let mut table = LeaseTable::new(self.settings.lease, self.settings.rules, tokens);
        for task in 0..plan.tasks {
            if plan.done.get(task as usize).copied().unwrap_or(false) {
                table.add_done(());
            } else {
                table.add(());
            }
        }
        inner.stage = Stage::Leasing(plan.kind);
        tracing::info!(phase = %plan.kind, tasks = plan.tasks, already_done = table.counts().done, "leasing phase");
        inner.running = Some(Running {
            kind: plan.kind,
            table,
            make: plan.make,
            subjects: plan.subjects,
            accepted: BTreeMap::new(),
        });
        drop(inner);
        self.changed.notify_waiters();
    }

    /// Expires overdue leases; returns whether the running phase is finished.
    pub fn tick(&self) -> bool {
        let mut inner = self.lock();
        let Some(run) = inner.running.as_mut() else { return false };
        run.table.sweep(Instant::now());
        run.table.is_finished()
    }

    /// Waits until every task of the running phase is done or failed, then closes the phase.
    pub async fn phase_finished(&self, sweep_every: Duration) -> PhaseOutcome {
        loop {
            let notified = self.changed.notified();
            if self.tick() {
                return self.close_phase();
            }
            let _ = tokio::time::timeout(sweep_every, notified).await;
        }
    }

    fn close_phase(&self) -> PhaseOutcome {
        let mut inner = self.lock();
        let Some(mut run) = inner.running.take() else { return PhaseOutcome::default() };
        inner.tokens = run.table.take_tokens();
        let failed: Vec<FailedTask> = run
            .table
            .failures()
            .into_iter()
            .map(|(task, attempts, error)| FailedTask {
                phase: run.kind,
                task,
                attempts,
                subject: run.subjects.get(task as usize).cloned().unwrap_or_default(),
                error: error.to_string(),
            })
            .collect();
        inner.failed.extend(failed.iter().cloned());
        inner.finished_counts.insert(run.kind, run.table.counts());
        PhaseOutcome { accepted: run.accepted, failed }
    }

    /// A worker joins; returns its id. Every later call names the worker by this id, so it ends
    /// in 64 random bits: another client cannot pass for this worker by guessing it.
    pub fn register(&self, name: &str) -> String {
        let mut inner = self.lock();
        let name = if name.is_empty() { "worker" } else { name };
        let id = format!("{name}#{}-{:016x}", inner.next_worker, random_u64());
        inner.next_worker += 1;
        inner.workers.insert(id.clone(), Instant::now());
        tracing::info!(worker = %id, "worker registered");
        id
    }

    /// Grants up to `max` tasks to `worker`; `None` means the run is finished.
    pub fn acquire(&self, worker: &str, max: usize) -> Option<(Vec<LeaseGrant>, bool)> {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.workers.insert(worker.to_string(), now);
        if inner.finished {
            inner.told_finished.insert(worker.to_string());
            return None;
        }
        let drain = inner.drain;
        let Some(run) = inner.running.as_mut().filter(|_| !drain) else {
            return Some((Vec::new(), drain));
        };
        let grants: Vec<LeaseGrant> = run
            .table
            .acquire(worker, max, now)
            .into_iter()
            .map(|g| LeaseGrant {
                lease: LeaseRef { phase: run.kind, task_id: g.task, token: g.token },
                attempt: g.attempt,
                duration: g.lease,
                task: (run.make)(g.task, g.token),
            })
            .collect();
        crate::metrics::leases_granted(run.kind, grants.len());
        Some((grants, drain))
    }

    /// Renews `leases`; returns the ones the worker no longer holds, and the drain flag.
    pub fn renew(&self, worker: &str, leases: &[LeaseRef]) -> (Vec<LeaseRef>, bool) {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.workers.insert(worker.to_string(), now);
        let drain = inner.drain;
        let mut lost = Vec::new();
        for l in leases {
            let kept = match inner.running.as_mut() {
                Some(run) if run.kind == l.phase => {
                    run.table.renew(l.task_id, l.token, worker, now).is_ok()
                }
                _ => false,
            };
            if !kept {
                lost.push(*l);
            }
        }
        crate::metrics::leases_renewed(leases.len() - lost.len());
        (lost, drain)
    }

    /// Accepts a result from the current lease held by `worker` once its outputs pass the
    /// check: persists it, then marks the task done.
    pub async fn complete(
        &self,
        worker: &str,
        lease: LeaseRef,
        report: TaskReport,
    ) -> Result<(), ReportError> {
        if self.already_accepted(worker, lease) {
            tracing::info!(
                task = lease.task_id,
                worker,
                "a result accepted before was reported again (its reply was lost); accepted again"
            );
            return Ok(());
        }
        self.check_outputs(worker, lease, &report).await?;
        let key = (lease.phase, lease.task_id);
        let slot = self.report_lock(key);
        let serial = slot.lock().await;
        let persisted = self.persist(worker, lease, report).await;
        self.forget_report_lock(key, &slot);
        drop(serial);
        persisted
    }

    /// The report lock of `key`'s task, made when none is held.
    fn report_lock(&self, key: (PhaseKind, TaskId)) -> ReportLock {
        let mut locks = self.reports.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        locks.entry(key).or_default().clone()
    }

    /// Drops `key`'s report lock unless another report of the task waits for it (called while
    /// `slot` is still held, so a later report finds no lock only once this one is done).
    fn forget_report_lock(&self, key: (PhaseKind, TaskId), slot: &ReportLock) {
        let mut locks = self.reports.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Held by the map and by this report only.
        if Arc::strong_count(slot) == 2 {
            locks.remove(&key);
        }
    }

    /// Persists an accepted result, then marks the task done; under the task's report lock.
    async fn persist(
        &self,
        worker: &str,
        lease: LeaseRef,
        report: TaskReport,
    ) -> Result<(), ReportError> {
        if self.already_accepted(worker, lease) {
            // The same report, sent again while the first was being persisted.
            return Ok(());
        }
        // Renewing first both checks the token and gives the persist a full lease to finish in.
        self.with_running(worker, lease.phase, |run, now| {
            run.table.renew(lease.task_id, lease.token, worker, now).map(|_| ())
        })?;
        if let Err(reason) = self.results.save(lease.phase, lease.task_id, &report).await {
            return Err(ReportError::Persist { task: lease.task_id, reason });
        }
        let accepted = self.with_running(worker, lease.phase, |run, now| {
            run.table.complete(lease.task_id, lease.token, worker, now)
        });
        if let Err(e) = accepted {
            self.results.forget(lease.phase, lease.task_id).await;
            return Err(e);
        }
        let (items, rows) = match &report {
            TaskReport::Ingest(i) => (i.items, i.staged.iter().map(|s| s.rows).sum()),
            TaskReport::Compact(_) => (0, 0),
        };
        let finished = {
            let mut inner = self.lock();
            inner.items += items;
            inner.rows += rows;
            match inner.running.as_mut() {
                Some(run) => {
                    run.accepted.insert(lease.task_id, report);
                    run.table.is_finished()
                }
                None => false,
            }
        };
        if finished {
            self.changed.notify_waiters();
        }
        Ok(())
    }

    /// Whether this grant's result was accepted already.
    fn already_accepted(&self, worker: &str, lease: LeaseRef) -> bool {
        let inner = self.lock();
        inner.running.as_ref().is_some_and(|run| {
            run.kind == lease.phase && run.table.accepted_from(lease.task_id, lease.token, worker)
        })
    }

    /// Checks the outputs `report` names against the task as granted to `worker`; a result that
    /// does not fit is refused and its attempt counted as failed (the task is leased again), so
    /// nothing it names is registered. The lease is checked (and renewed, giving the footer
    /// reads a full lease) first, so only the holder gets this far. Runs outside the report
    /// lock: footer reads of different tasks overlap.
    async fn check_outputs(
        &self,
        worker: &str,
        lease: LeaseRef,
        report: &TaskReport,
    ) -> Result<(), ReportError> {
        let task = self.with_running(worker, lease.phase, |run, now| {
            run.table.renew(lease.task_id, lease.token, worker, now)?;
            Ok((run.make)(lease.task_id, lease.token))
        })?;
        let Err(reason) = self.check.check(&task, lease.token, report).await else {
            return Ok(());
        };
        tracing::warn!(%worker, phase = %lease.phase, task = lease.task_id, %reason, "result does not fit its task");
        self.fail(worker, lease, format!("result refused: {reason}"), true)?;
        Err(ReportError::Invalid { task: lease.task_id, reason })
    }

    /// Records a failed attempt.
    pub fn fail(
        &self,
        worker: &str,
        lease: LeaseRef,
        error: String,
        retryable: bool,
    ) -> Result<(), ReportError> {
        tracing::warn!(%worker, phase = %lease.phase, task = lease.task_id, retryable, %error, "task attempt failed");
        self.with_running(worker, lease.phase, |run, now| {
            run.table.fail(lease.task_id, lease.token, worker, error, retryable, now)
        })?;
        self.changed.notify_waiters();
        Ok(())
    }

    /// Hands leases back without counting an attempt; returns how many were released.
    pub fn release(&self, worker: &str, leases: &[LeaseRef]) -> usize {
        let mut released = 0;
        for l in leases {
            let r = self.with_running(worker, l.phase, |run, now| {
                run.table.release(l.task_id, l.token, worker, now)
            });
            released += usize::from(r.is_ok());
        }
        tracing::info!(%worker, released, "worker handed leases back");
        released
    }

    fn with_running<R>(
        &self,
        worker: &str,
        phase: PhaseKind,
        f: impl FnOnce(&mut Running, Instant) -> Result<R, Refusal>,
    ) -> Result<R, ReportError> {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.workers.insert(worker.to_string(), now);
        match inner.running.as_mut() {
            Some(run) if run.kind == phase => Ok(f(run, now)?),
            _ => Err(ReportError::WrongPhase(phase)),
        }
    }

    /// Workers seen within one lease length that have not yet been told the run is finished.
    pub fn workers_not_told(&self) -> usize {
        let now = Instant::now();
        let inner = self.lock();
        inner
            .workers
            .iter()
            .filter(|(id, seen)| {
                now.duration_since(**seen) <= self.settings.lease
                    && !inner.told_finished.contains(*id)
            })
            .count()
    }

    /// The run's progress.
    pub fn status(&self) -> StatusView {
        let now = Instant::now();
        let inner = self.lock();
        let counts = |kind: PhaseKind| match inner.running.as_ref() {
            Some(run) if run.kind == kind => run.table.counts(),
            _ => inner.finished_counts.get(&kind).copied().unwrap_or_default(),
        };
        let alive = inner
            .workers
            .values()
            .filter(|seen| now.duration_since(**seen) <= self.settings.lease)
            .count();
        let queue = match (inner.finished, inner.running.as_ref()) {
            (true, _) => Queue::Done,
            (false, Some(run)) => {
                let c = run.table.counts();
                Queue::Leasing { pending: c.pending as u64, leased: c.leased as u64 }
            }
            (false, None) => Queue::Between,
        };
        let fleet = {
            let mut fleet = self.fleet.lock().unwrap_or_else(|p| p.into_inner());
            FleetView { wanted: fleet.decide(queue, now), rule: fleet.rule() }
        };
        let mut workers: Vec<WorkerView> = inner
            .workers
            .iter()
            .map(|(id, seen)| (id, now.duration_since(*seen)))
            .filter(|(_, ago)| *ago <= self.settings.lease)
            .map(|(id, last_seen)| WorkerView { id: id.clone(), last_seen, leases: Vec::new() })
            .collect();
        workers.sort_by(|a, b| a.id.cmp(&b.id));
        if let Some(run) = inner.running.as_ref() {
            for (task, lease) in run.table.held() {
                let held = HeldLease {
                    phase: run.kind,
                    task,
                    subject: run.subjects.get(task as usize).cloned().unwrap_or_default(),
                    attempt: lease.attempt,
                    expires_in: lease.expires_at.saturating_duration_since(now),
                };
                // A holder not seen within a lease length is about to lose it; still shown.
                match workers.iter_mut().find(|w| w.id == lease.worker) {
                    Some(w) => w.leases.push(held),
                    None => workers.push(WorkerView {
                        id: lease.worker.clone(),
                        last_seen: inner
                            .workers
                            .get(&lease.worker)
                            .unwrap_or(&self.started)
                            .elapsed(),
                        leases: vec![held],
                    }),
                }
            }
        }
        StatusView {
            workers,
            uptime: now.duration_since(self.started),
            fleet,
            stage: inner.stage,
            ingest: counts(PhaseKind::Ingest),
            compact: counts(PhaseKind::Compact),
            items: inner.items,
            rows: inner.rows,
            workers_alive: alive as u32,
            finished: inner.finished,
            failed: inner.failed.clone(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::lease::check::OutputCheck;
    use earthcatalog_common::backfill::StagingLayout;
    use earthcatalog_common::ids::{CellYear, RunId};
    use earthcatalog_common::location::Location;
    use earthcatalog_common::rpc::{CompactReport, CompactTask};
    use earthcatalog_common::stores::{S3Settings, Stores};

    /// Records what was saved, in memory.
    #[derive(Default)]
    struct Recorded(Mutex<Vec<(PhaseKind, TaskId)>>);

    #[async_trait::async_trait]
    impl ResultStore for Recorded {
        async fn save(
            &self,
            phase: PhaseKind,
            task: TaskId,
            _r: &TaskReport,
        ) -> Result<(), String> {
            self.0.lock().unwrap().push((phase, task));
            Ok(())
        }
        async fn forget(&self, phase: PhaseKind, task: TaskId) {
            self.0.lock().unwrap().retain(|x| *x != (phase, task));
        }
    }

    fn setup(lease: Duration, max_attempts: u32) -> (Scheduler, Arc<Recorded>) {
        setup_with(lease, max_attempts, Vec::new())
    }

    /// A scheduler leasing one compact task; `done` as a restarted coordinator knows it.
    fn setup_with(
        lease: Duration,
        max_attempts: u32,
        done: Vec<bool>,
    ) -> (Scheduler, Arc<Recorded>) {
        let recorded = Arc::new(Recorded::default());
        let settings = LeaseSettings {
            lease,
            renew_every: lease / 4,
            rules: RetryRules {
                max_attempts,
                first_backoff: Duration::ZERO,
                max_backoff: Duration::ZERO,
            },
        };
        let s = checked_scheduler(settings, recorded.clone());
        s.start_phase(PhasePlan {
            kind: PhaseKind::Compact,
            tasks: 1,
            done,
            subjects: vec!["grid_partition=x/year=2020".into()],
            make: Arc::new(|_, _| compact_task("x")),
        });
        (s, recorded)
    }

    /// A scheduler of run `run` whose results are checked as a backfill run checks them (no
    /// file is read unless the path and the name fit: the tests' reports name none or one that
    /// does not fit).
    fn checked_scheduler(settings: LeaseSettings, results: Arc<dyn ResultStore>) -> Scheduler {
        let stores = Arc::new(Stores::new(S3Settings::default()));
        let staging = Location::parse("memory://t/staging").unwrap();
        let check =
            OutputCheck::new(stores, StagingLayout::new(&staging, RunId::from_string("run")));
        Scheduler::new("run".into(), settings, results, Arc::new(check))
    }

    /// Compacting (`cell`, 2020) of run `run`.
    fn compact_task(cell: &str) -> TaskSpec {
        TaskSpec::Compact(CompactTask {
            partition: CellYear::new(cell, Some(2020)),
            staged: Vec::new(),
            warehouse: Location::parse("memory://t/wh").unwrap(),
            run: RunId::from_string("run"),
            compact_rows: 10,
            object_times: None,
        })
    }

    fn report() -> TaskReport {
        TaskReport::Compact(CompactReport::default())
    }

    #[tokio::test]
    async fn a_late_result_is_refused_and_never_recorded_while_the_current_one_is() {
        let (s, recorded) = setup(Duration::from_millis(50), 3);
        let (first, _) = s.acquire("paused", 1).unwrap();
        tokio::time::sleep(Duration::from_millis(80)).await;
        let (second, _) = s.acquire("healthy", 1).unwrap();
        assert_eq!(second.len(), 1, "the expired task is granted again");
        let late = s.complete("paused", first[0].lease, report()).await.unwrap_err();
        assert_eq!(late.refusal_kind(), RefusalKind::Superseded, "its outputs can go: {late}");
        assert!(recorded.0.lock().unwrap().is_empty(), "the late result is not on record");
        s.complete("healthy", second[0].lease, report()).await.unwrap();
        let outcome = s.phase_finished(Duration::from_millis(10)).await;
        assert_eq!(outcome.accepted.len(), 1);
        assert_eq!(*recorded.0.lock().unwrap(), vec![(PhaseKind::Compact, 0)]);
    }

    #[tokio::test]
    async fn a_task_failing_every_attempt_is_given_up_at_the_cap_with_its_last_error() {
        let (s, _) = setup(Duration::from_secs(60), 2);
        for attempt in 1..=2 {
            let (g, _) = s.acquire("w", 1).unwrap();
            assert_eq!(g[0].attempt, attempt);
            s.fail("w", g[0].lease, format!("boom {attempt}"), true).unwrap();
        }
        let outcome = s.phase_finished(Duration::from_millis(10)).await;
        assert_eq!(outcome.failed.len(), 1);
        let f = &outcome.failed[0];
        assert_eq!((f.attempts, f.error.as_str()), (2, "boom 2"));
        assert_eq!(f.subject, "grid_partition=x/year=2020");
        assert_eq!(s.status().failed.len(), 1, "the status call lists it");
    }

    #[tokio::test]
    async fn a_result_from_a_worker_that_does_not_hold_the_lease_is_refused_and_changes_nothing() {
        let (s, recorded) = setup(Duration::from_secs(60), 3);
        let holder = s.register("holder");
        let intruder = s.register("intruder");
        let (held, _) = s.acquire(&holder, 1).unwrap();
        let lease = held[0].lease;
        // The intruder's guess from a token (the next number) names no lease.
        let guessed = LeaseRef { token: lease.token.wrapping_add(1), ..lease };
        let refused = s.complete(&intruder, guessed, report()).await;
        assert!(
            matches!(refused, Err(ReportError::Refused(Refusal::StaleLease { .. }))),
            "{refused:?}"
        );
        // With the holder's very token, it is still not the intruder's lease.
        let refused = s.complete(&intruder, lease, report()).await;
        let kind = refused.as_ref().err().map(ReportError::refusal_kind);
        assert_eq!(kind, Some(RefusalKind::Superseded), "the intruder's outputs never count");
        match refused {
            Err(ReportError::Refused(Refusal::NotHolder { task, worker })) => {
                assert_eq!((task, worker.as_str()), (lease.task_id, intruder.as_str()));
            }
            other => panic!("expected NotHolder, got {other:?}"),
        }
        assert!(s.fail(&intruder, lease, "x".into(), false).is_err());
        assert_eq!(s.release(&intruder, &[lease]), 0);
        assert_eq!(s.renew(&intruder, &[lease]).0, vec![lease], "not the intruder's to renew");
        assert!(recorded.0.lock().unwrap().is_empty(), "nothing on record");
        assert_eq!(s.status().compact.leased, 1, "still leased to its holder");
        assert!(s.renew(&holder, &[lease]).0.is_empty(), "the holder keeps it");
        s.complete(&holder, lease, report()).await.unwrap();
        let outcome = s.phase_finished(Duration::from_millis(10)).await;
        assert_eq!((outcome.accepted.len(), outcome.failed.len()), (1, 0));
    }

    #[tokio::test]
    async fn an_accepted_result_reported_again_by_its_holder_is_accepted_again_and_recorded_once() {
        let (s, recorded) = setup(Duration::from_secs(60), 1);
        let holder = s.register("holder");
        let other = s.register("other");
        let (held, _) = s.acquire(&holder, 1).unwrap();
        let lease = held[0].lease;
        s.complete(&holder, lease, report()).await.unwrap();
        let saved = recorded.0.lock().unwrap().len();
        // The reply was lost and the worker asks again: without this it would be refused and
        // the worker would delete outputs that Phase 4 registers.
        s.complete(&holder, lease, report()).await.unwrap();
        assert_eq!(recorded.0.lock().unwrap().len(), saved, "recorded once");
        let refused = s.complete(&other, lease, report()).await;
        assert!(matches!(refused, Err(ReportError::Refused(Refusal::Finished(_)))), "{refused:?}");
        let outcome = s.phase_finished(Duration::from_millis(10)).await;
        assert_eq!((outcome.accepted.len(), outcome.failed.len()), (1, 0));
    }

    #[tokio::test]
    async fn a_result_reported_to_a_restarted_coordinator_that_knows_the_task_done_keeps_its_outputs()
     {
        // The first coordinator accepted the result and saved it; its reply was lost.
        let (first, _) = setup(Duration::from_secs(60), 3);
        let holder = first.register("holder");
        let (held, _) = first.acquire(&holder, 1).unwrap();
        first.complete(&holder, held[0].lease, report()).await.unwrap();
        // Its successor resumes the run with the task done, not knowing by whom.
        let (restarted, recorded) = setup_with(Duration::from_secs(60), 3, vec![true]);
        let again = restarted.complete(&holder, held[0].lease, report()).await.unwrap_err();
        assert_eq!(
            again.refusal_kind(),
            RefusalKind::Finished,
            "the worker must keep outputs the run registers: {again}"
        );
        assert!(recorded.0.lock().unwrap().is_empty(), "recorded once, by the first");
    }

    /// Saves only once `n` saves are in flight at the same time (or fails after a second).
    struct Overlapping {
        together: tokio::sync::Barrier,
        saved: Recorded,
    }

    #[async_trait::async_trait]
    impl ResultStore for Overlapping {
        async fn save(&self, phase: PhaseKind, task: TaskId, r: &TaskReport) -> Result<(), String> {
            let met = tokio::time::timeout(Duration::from_secs(1), self.together.wait()).await;
            met.map_err(|_| format!("task {task}: no other save in flight"))?;
            self.saved.save(phase, task, r).await
        }
        async fn forget(&self, phase: PhaseKind, task: TaskId) {
            self.saved.forget(phase, task).await;
        }
    }

    #[tokio::test]
    async fn results_of_different_tasks_are_persisted_at_the_same_time() {
        let store = Arc::new(Overlapping {
            together: tokio::sync::Barrier::new(2),
            saved: Recorded::default(),
        });
        let settings = LeaseSettings {
            lease: Duration::from_secs(60),
            renew_every: Duration::from_secs(15),
            rules: RetryRules {
                max_attempts: 1,
                first_backoff: Duration::ZERO,
                max_backoff: Duration::ZERO,
            },
        };
        let s = checked_scheduler(settings, store.clone());
        s.start_phase(PhasePlan {
            kind: PhaseKind::Compact,
            tasks: 2,
            done: Vec::new(),
            subjects: vec!["a".into(), "b".into()],
            make: Arc::new(|task, _| compact_task(&format!("c{task}"))),
        });
        let (held, _) = s.acquire("w", 2).unwrap();
        let (a, b) = tokio::join!(
            s.complete("w", held[0].lease, report()),
            s.complete("w", held[1].lease, report())
        );
        a.unwrap();
        b.unwrap();
        assert_eq!(store.saved.0.lock().unwrap().len(), 2);
        let outcome = s.phase_finished(Duration::from_millis(10)).await;
        assert_eq!(outcome.accepted.len(), 2);
    }

    #[tokio::test]
    async fn one_result_sent_twice_at_once_is_recorded_and_kept() {
        let (s, recorded) = setup(Duration::from_secs(60), 1);
        let (held, _) = s.acquire("w", 1).unwrap();
        let lease = held[0].lease;
        let (a, b) =
            tokio::join!(s.complete("w", lease, report()), s.complete("w", lease, report()));
        a.unwrap();
        b.unwrap();
        assert_eq!(*recorded.0.lock().unwrap(), vec![(PhaseKind::Compact, 0)], "on record once");
        assert!(s.reports.lock().unwrap().is_empty(), "no report lock left behind");
    }

    #[test]
    fn worker_ids_cannot_be_guessed_from_the_name_and_the_order_of_registration() {
        let (s, _) = setup(Duration::from_secs(60), 3);
        let first = s.register("w");
        let second = s.register("w");
        assert!(first.starts_with("w#1-") && second.starts_with("w#2-"), "{first} {second}");
        let random = |id: &str| id.rsplit('-').next().unwrap_or_default().to_string();
        assert_eq!(random(&first).len(), 16);
        assert_ne!(random(&first), random(&second));
    }

    #[tokio::test]
    async fn a_result_naming_a_file_outside_its_partition_is_refused_and_counted_as_a_failed_attempt()
     {
        let (s, recorded) = setup(Duration::from_secs(60), 3);
        let (first, _) = s.acquire("w", 1).unwrap();
        let lease = first[0].lease;
        // Named as this attempt's file, but in another partition's folder.
        let foreign = Location::parse("memory://t/wh/grid_partition=y/year=2020").unwrap().join(
            &earthcatalog_common::backfill::layout::compact_namer(
                &RunId::from_string("run"),
                lease.token,
            )
            .next_name(),
        );
        let bad = TaskReport::Compact(CompactReport {
            files: vec![earthcatalog_common::rpc::ReportedFile {
                location: foreign.clone(),
                rows: 5,
            }],
            ..Default::default()
        });
        match s.complete("w", lease, bad).await {
            Err(ReportError::Invalid { reason, .. }) => {
                assert!(reason.to_string().contains(&foreign.uri()), "names the file: {reason}");
            }
            other => panic!("expected an invalid result, got {other:?}"),
        }
        assert!(recorded.0.lock().unwrap().is_empty(), "the refused result is not on record");
        let (second, _) = s.acquire("w", 1).unwrap();
        assert_eq!(second[0].attempt, 2, "the refused result used up an attempt");
        s.complete("w", second[0].lease, report()).await.unwrap();
        let outcome = s.phase_finished(Duration::from_millis(10)).await;
        assert_eq!(outcome.accepted.len(), 1);
        assert_eq!(outcome.accepted[&0], report(), "only the good result is accepted");
    }
}
