//! The lease table: every task of a phase, who holds what, and until when.
//!
//! Grants, renewals and reports are checked against the fencing token of the current grant;
//! anything else gets a typed [`Refusal`]. Expired leases go back to the queue (counted as a
//! failed attempt); released ones go back to the front of the queue without counting. Time is
//! passed in, so tests drive it by hand.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use super::state::{Pending, RetryRules, TaskState};

/// Index of a task in its phase.
pub type TaskId = u64;

/// Why a report or renewal was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No such task in this phase.
    #[error("unknown task {0}")]
    UnknownTask(TaskId),
    /// The token is not the current grant's (an expired or superseded attempt).
    #[error("task {task}: lease {token} is not the current lease")]
    StaleLease {
        /// The task.
        task: TaskId,
        /// The token presented.
        token: u64,
    },
    /// The task was already finished by another attempt.
    #[error("task {0} is already finished")]
    Finished(TaskId),
}

/// A granted lease, as handed to a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant<T> {
    /// The task.
    pub task: TaskId,
    /// 1-based attempt.
    pub attempt: u32,
    /// Fencing token of this grant.
    pub token: u64,
    /// Lease length; renew well before it runs out.
    pub lease: Duration,
    /// What to do.
    pub spec: T,
}

/// Tasks per state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateCounts {
    /// Waiting (including backing off).
    pub pending: usize,
    /// Held by a worker.
    pub leased: usize,
    /// Result accepted.
    pub done: usize,
    /// Given up.
    pub failed: usize,
}

#[derive(Debug)]
struct Entry<T> {
    spec: T,
    state: TaskState,
}

/// All tasks of one phase.
#[derive(Debug)]
pub struct LeaseTable<T> {
    tasks: Vec<Entry<T>>,
    ready: VecDeque<TaskId>,
    delayed: BinaryHeap<Reverse<(Instant, TaskId)>>,
    expiry: BinaryHeap<Reverse<(Instant, TaskId, u64)>>,
    holders: HashMap<String, HashSet<TaskId>>,
    next_token: u64,
    lease: Duration,
    rules: RetryRules,
    counts: StateCounts,
}

impl<T: Clone> LeaseTable<T> {
    /// An empty table; `first_token` lets a restarted coordinator keep tokens unique.
    pub fn new(lease: Duration, rules: RetryRules, first_token: u64) -> Self {
        LeaseTable {
            tasks: Vec::new(),
            ready: VecDeque::new(),
            delayed: BinaryHeap::new(),
            expiry: BinaryHeap::new(),
            holders: HashMap::new(),
            next_token: first_token.max(1),
            lease,
            rules,
            counts: StateCounts::default(),
        }
    }

    /// Adds a task waiting for a worker.
    pub fn add(&mut self, spec: T) -> TaskId {
        let id = self.tasks.len() as TaskId;
        self.tasks.push(Entry { spec, state: TaskState::Pending(Pending::new()) });
        self.ready.push_back(id);
        self.counts.pending += 1;
        id
    }

    /// Adds a task whose result was accepted before (a resumed run).
    pub fn add_done(&mut self, spec: T, worker: &str) -> TaskId {
        let id = self.tasks.len() as TaskId;
        let state = TaskState::Done(super::state::Done { attempt: 0, worker: worker.to_string() });
        self.tasks.push(Entry { spec, state });
        self.counts.done += 1;
        id
    }

    /// The task's description.
    pub fn spec(&self, task: TaskId) -> Option<&T> {
        self.tasks.get(task as usize).map(|e| &e.spec)
    }

    /// Tasks per state.
    pub fn counts(&self) -> StateCounts {
        self.counts
    }

    /// Whether every task is done or failed.
    pub fn is_finished(&self) -> bool {
        self.counts.pending == 0 && self.counts.leased == 0
    }

    /// The next token that would be handed out (persisted so a restart keeps tokens unique).
    pub fn next_token(&self) -> u64 {
        self.next_token
    }

    /// Failed tasks with their last error.
    pub fn failed(&self) -> Vec<(TaskId, &T, &str)> {
        self.tasks
            .iter()
            .enumerate()
            .filter_map(|(i, e)| match &e.state {
                TaskState::Failed(f) => Some((i as TaskId, &e.spec, f.error.as_str())),
                _ => None,
            })
            .collect()
    }

    /// Failed tasks with the attempts made and the last error.
    pub fn failures(&self) -> Vec<(TaskId, u32, &str)> {
        self.tasks
            .iter()
            .enumerate()
            .filter_map(|(i, e)| match &e.state {
                TaskState::Failed(f) => Some((i as TaskId, f.attempts, f.error.as_str())),
                _ => None,
            })
            .collect()
    }

    /// Grants up to `max` ready tasks to `worker`.
    pub fn acquire(&mut self, worker: &str, max: usize, now: Instant) -> Vec<Grant<T>> {
        self.sweep(now);
        let mut out = Vec::new();
        while out.len() < max {
            let Some(id) = self.ready.pop_front() else { break };
            let entry = &mut self.tasks[id as usize];
            let state = std::mem::replace(&mut entry.state, TaskState::Pending(Pending::new()));
            let TaskState::Pending(p) = state else {
                entry.state = state; // stale queue entry; keep the real state
                continue;
            };
            let token = self.next_token;
            self.next_token += 1;
            let leased = p.grant(worker, token, now, self.lease);
            out.push(Grant {
                task: id,
                attempt: leased.attempt,
                token,
                lease: self.lease,
                spec: entry.spec.clone(),
            });
            self.expiry.push(Reverse((leased.expires_at, id, token)));
            entry.state = TaskState::Leased(leased);
            self.holders.entry(worker.to_string()).or_default().insert(id);
            self.counts.pending -= 1;
            self.counts.leased += 1;
        }
        out
    }

    /// Extends the lease `token` of `task`; returns the new lease length.
    pub fn renew(&mut self, task: TaskId, token: u64, now: Instant) -> Result<Duration, Refusal> {
        self.sweep(now);
        let lease = self.lease;
        self.with_current_lease(task, token, |l| TaskState::Leased(l.renew(now, lease)))?;
        self.expiry.push(Reverse((now + lease, task, token)));
        Ok(lease)
    }

    /// Accepts the result of lease `token`; the caller persists the result first.
    pub fn complete(&mut self, task: TaskId, token: u64, now: Instant) -> Result<(), Refusal> {
        self.check(task, token, now)?;
        let worker = self.holder(task);
        self.with_current_lease(task, token, |l| TaskState::Done(l.complete()))?;
        self.after_leave(worker, task);
        self.counts.leased -= 1;
        self.counts.done += 1;
        Ok(())
    }

    /// Whether `token` is the live lease of `task` at `now` (expiring overdue leases first).
    pub fn check(&mut self, task: TaskId, token: u64, now: Instant) -> Result<(), Refusal> {
        self.sweep(now);
        match self.tasks.get(task as usize).map(|e| &e.state) {
            None => Err(Refusal::UnknownTask(task)),
            Some(TaskState::Leased(l)) if l.token == token => Ok(()),
            Some(TaskState::Done(_) | TaskState::Failed(_)) => Err(Refusal::Finished(task)),
            Some(_) => Err(Refusal::StaleLease { task, token }),
        }
    }

    /// Records a failed attempt; the task is retried after a backoff or given up.
    pub fn fail(
        &mut self,
        task: TaskId,
        token: u64,
        error: String,
        retryable: bool,
        now: Instant,
    ) -> Result<(), Refusal> {
        self.check(task, token, now)?;
        let worker = self.holder(task);
        let rules = self.rules;
        self.with_current_lease(task, token, |l| {
            l.fail(error, retryable, now, &rules).into_state()
        })?;
        self.after_leave(worker, task);
        self.after_failure(task);
        Ok(())
    }

    /// Hands the task back without counting an attempt (drain, spot interruption).
    pub fn release(&mut self, task: TaskId, token: u64, now: Instant) -> Result<(), Refusal> {
        self.check(task, token, now)?;
        let worker = self.holder(task);
        self.with_current_lease(task, token, |l| TaskState::Pending(l.release()))?;
        self.after_leave(worker, task);
        self.ready.push_front(task);
        self.counts.leased -= 1;
        self.counts.pending += 1;
        Ok(())
    }

    /// Hands back every task `worker` holds (it is draining or deregistered).
    pub fn release_worker(&mut self, worker: &str, now: Instant) -> usize {
        let held: Vec<(TaskId, u64)> = self
            .holders
            .get(worker)
            .map(|s| s.iter().copied().collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|id| match &self.tasks[id as usize].state {
                TaskState::Leased(l) => Some((id, l.token)),
                _ => None,
            })
            .collect();
        held.iter().filter(|(id, token)| self.release(*id, *token, now).is_ok()).count()
    }

    /// Expires overdue leases and readies tasks whose backoff is over.
    pub fn sweep(&mut self, now: Instant) {
        while let Some(Reverse((at, id, token))) = self.expiry.peek().copied() {
            if at > now {
                break;
            }
            self.expiry.pop();
            let live = matches!(&self.tasks[id as usize].state,
                TaskState::Leased(l) if l.token == token && l.expires_at <= now);
            if !live {
                continue; // renewed, finished or re-granted since this entry was pushed
            }
            let worker = self.holder(id);
            let rules = self.rules;
            let _ = self.with_current_lease(id, token, |l| {
                tracing::warn!(task = id, attempt = l.attempt, worker = %l.worker, "lease expired");
                l.expire(now, &rules).into_state()
            });
            self.after_leave(worker, id);
            self.after_failure(id);
        }
        while let Some(Reverse((at, id))) = self.delayed.peek().copied() {
            if at > now {
                break;
            }
            self.delayed.pop();
            self.ready.push_back(id);
        }
    }

    fn holder(&self, task: TaskId) -> Option<String> {
        match &self.tasks.get(task as usize)?.state {
            TaskState::Leased(l) => Some(l.worker.clone()),
            _ => None,
        }
    }

    fn after_leave(&mut self, worker: Option<String>, task: TaskId) {
        if let Some(w) = worker
            && let Some(set) = self.holders.get_mut(&w)
        {
            set.remove(&task);
            if set.is_empty() {
                self.holders.remove(&w);
            }
        }
    }

    /// Bookkeeping after a leased task failed or expired.
    fn after_failure(&mut self, task: TaskId) {
        self.counts.leased -= 1;
        match &self.tasks[task as usize].state {
            TaskState::Pending(p) => {
                self.counts.pending += 1;
                match p.not_before {
                    Some(at) => self.delayed.push(Reverse((at, task))),
                    None => self.ready.push_back(task),
                }
            }
            _ => self.counts.failed += 1,
        }
    }

    /// Applies `f` to the current lease of `task` if `token` is it.
    fn with_current_lease(
        &mut self,
        task: TaskId,
        token: u64,
        f: impl FnOnce(super::state::Leased) -> TaskState,
    ) -> Result<(), Refusal> {
        let entry = self.tasks.get_mut(task as usize).ok_or(Refusal::UnknownTask(task))?;
        match std::mem::replace(&mut entry.state, TaskState::Pending(Pending::new())) {
            TaskState::Leased(l) if l.token == token => {
                entry.state = f(l);
                Ok(())
            }
            other => {
                let refusal = match &other {
                    TaskState::Done(_) | TaskState::Failed(_) => Refusal::Finished(task),
                    _ => Refusal::StaleLease { task, token },
                };
                entry.state = other;
                Err(refusal)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(60);

    fn table(n: usize) -> (LeaseTable<String>, Instant) {
        let rules = RetryRules {
            max_attempts: 3,
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(8),
        };
        let mut t = LeaseTable::new(LEASE, rules, 1);
        for i in 0..n {
            t.add(format!("chunk-{i}"));
        }
        (t, Instant::now())
    }

    #[test]
    fn tasks_are_granted_once_and_completed_by_their_holder() {
        let (mut t, now) = table(3);
        let a = t.acquire("w1", 2, now);
        let b = t.acquire("w2", 5, now);
        assert_eq!(a.iter().map(|g| g.task).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(b.iter().map(|g| g.task).collect::<Vec<_>>(), [2]);
        assert!(t.acquire("w3", 1, now).is_empty());
        for g in a.iter().chain(&b) {
            t.complete(g.task, g.token, now).unwrap();
        }
        assert!(t.is_finished());
        assert_eq!(t.counts(), StateCounts { done: 3, ..Default::default() });
        assert_eq!(t.complete(0, a[0].token, now), Err(Refusal::Finished(0)));
    }

    #[test]
    fn an_expired_lease_is_handed_out_again_and_the_late_report_refused() {
        let (mut t, now) = table(1);
        let first = t.acquire("paused", 1, now).remove(0);
        let expired_at = now + LEASE + Duration::from_secs(1);
        t.sweep(expired_at);
        // An expiry counts as a failed attempt, so the task waits out the first backoff.
        let later = expired_at + Duration::from_secs(1);
        let second = t.acquire("healthy", 1, later).remove(0);
        assert_eq!(second.task, first.task);
        assert_eq!(second.attempt, 2);
        assert_ne!(second.token, first.token);
        assert_eq!(
            t.complete(first.task, first.token, later),
            Err(Refusal::StaleLease { task: 0, token: first.token })
        );
        assert_eq!(
            t.renew(first.task, first.token, later),
            Err(Refusal::StaleLease { task: 0, token: first.token })
        );
        t.complete(second.task, second.token, later).unwrap();
        assert!(t.is_finished());
    }

    #[test]
    fn a_report_after_expiry_is_refused_even_before_anyone_else_takes_the_task() {
        let (mut t, now) = table(1);
        let g = t.acquire("w", 1, now).remove(0);
        let late = now + LEASE + Duration::from_millis(1);
        assert!(t.complete(g.task, g.token, late).is_err());
        assert_eq!(t.counts().pending, 1);
    }

    #[test]
    fn renewing_keeps_a_long_task_alive() {
        let (mut t, now) = table(1);
        let g = t.acquire("w", 1, now).remove(0);
        let mut at = now;
        for _ in 0..10 {
            at += LEASE / 2;
            t.renew(g.task, g.token, at).unwrap();
        }
        assert!(t.acquire("other", 1, at + LEASE / 2).is_empty());
        t.complete(g.task, g.token, at + LEASE / 2).unwrap();
    }

    #[test]
    fn failures_back_off_and_are_capped_with_the_last_error_kept() {
        let (mut t, now) = table(1);
        let mut at = now;
        for attempt in 1..=3 {
            let g = t.acquire("w", 1, at);
            assert_eq!(g.len(), 1, "attempt {attempt} granted");
            assert_eq!(g[0].attempt, attempt);
            t.fail(g[0].task, g[0].token, format!("error {attempt}"), true, at).unwrap();
            assert!(t.acquire("w", 1, at).is_empty(), "backing off");
            at += Duration::from_secs(10);
        }
        assert!(t.is_finished());
        assert_eq!(t.failed(), vec![(0, &"chunk-0".to_string(), "error 3")]);
    }

    #[test]
    fn a_drained_worker_hands_its_tasks_back_without_using_an_attempt() {
        let (mut t, now) = table(2);
        let grants = t.acquire("spot", 2, now);
        assert_eq!(t.release_worker("spot", now), 2);
        let again = t.acquire("other", 2, now);
        assert_eq!(again.iter().map(|g| g.attempt).collect::<Vec<_>>(), [1, 1]);
        assert!(t.complete(grants[0].task, grants[0].token, now).is_err());
    }
}
