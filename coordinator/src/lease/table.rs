//! The lease table: every task of a phase, who holds what, and until when.
//!
//! Grants, renewals and reports are checked against the fencing token of the current grant and
//! the worker it was granted to; anything else gets a typed [`Refusal`] and leaves the lease as
//! it was. Expired leases go back to the queue (counted as a
//! failed attempt); released ones go back to the front of the queue without counting. Time is
//! passed in, so tests drive it by hand.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

use super::state::{Leased, Pending, RetryRules, TaskState};
use super::tokens::FencingTokens;

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
    /// The token is the current grant's, but the caller is not the worker it was granted to.
    #[error("task {task}: the lease is held by another worker, not {worker}")]
    NotHolder {
        /// The task.
        task: TaskId,
        /// The worker that reported.
        worker: String,
    },
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
    tokens: FencingTokens,
    lease: Duration,
    rules: RetryRules,
    counts: StateCounts,
}

impl<T: Clone> LeaseTable<T> {
    /// An empty table granting tokens from `tokens` (shared by the phases of a run, so a token
    /// is never handed out twice).
    pub fn new(lease: Duration, rules: RetryRules, tokens: FencingTokens) -> Self {
        LeaseTable {
            tasks: Vec::new(),
            ready: VecDeque::new(),
            delayed: BinaryHeap::new(),
            expiry: BinaryHeap::new(),
            tokens,
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
    pub fn add_done(&mut self, spec: T) -> TaskId {
        let id = self.tasks.len() as TaskId;
        let state = TaskState::Done(None);
        self.tasks.push(Entry { spec, state });
        self.counts.done += 1;
        id
    }

    /// Tasks per state.
    pub fn counts(&self) -> StateCounts {
        self.counts
    }

    /// Whether every task is done or failed.
    pub fn is_finished(&self) -> bool {
        self.counts.pending == 0 && self.counts.leased == 0
    }

    /// Hands the token source back (for the next phase), leaving an empty one.
    pub fn take_tokens(&mut self) -> FencingTokens {
        std::mem::take(&mut self.tokens)
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

    /// The leases held now, by task.
    pub fn held(&self) -> impl Iterator<Item = (TaskId, &Leased)> + '_ {
        self.tasks.iter().enumerate().filter_map(|(i, e)| match &e.state {
            TaskState::Leased(l) => Some((i as TaskId, l)),
            _ => None,
        })
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
            let token = self.tokens.next();
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
            self.counts.pending -= 1;
            self.counts.leased += 1;
        }
        out
    }

    /// Extends the lease `token` of `task` held by `worker`; returns the new lease length.
    pub fn renew(
        &mut self,
        task: TaskId,
        token: u64,
        worker: &str,
        now: Instant,
    ) -> Result<Duration, Refusal> {
        let lease = self.lease;
        self.report(task, token, worker, now, |l| TaskState::Leased(l.renew(now, lease)))?;
        self.expiry.push(Reverse((now + lease, task, token)));
        Ok(lease)
    }

    /// Accepts the result of lease `token` held by `worker`; the caller persists the result
    /// first.
    pub fn complete(
        &mut self,
        task: TaskId,
        token: u64,
        worker: &str,
        now: Instant,
    ) -> Result<(), Refusal> {
        self.report(task, token, worker, now, |l| l.complete())?;
        self.counts.leased -= 1;
        self.counts.done += 1;
        Ok(())
    }

    /// Whether `task` was finished by this very grant of `worker`: a repeated report of an
    /// accepted result (its reply was lost) is answered as accepted again, so the worker keeps
    /// the outputs the run will register.
    pub fn accepted_from(&self, task: TaskId, token: u64, worker: &str) -> bool {
        self.tasks.get(task as usize).is_some_and(|e| {
            matches!(&e.state, TaskState::Done(Some(a)) if a.token == token && a.worker == worker)
        })
    }

    /// Records a failed attempt; the task is retried after a backoff or given up.
    pub fn fail(
        &mut self,
        task: TaskId,
        token: u64,
        worker: &str,
        error: String,
        retryable: bool,
        now: Instant,
    ) -> Result<(), Refusal> {
        let rules = self.rules;
        self.report(task, token, worker, now, |l| {
            l.fail(error, retryable, now, &rules).into_state()
        })?;
        self.after_failure(task);
        Ok(())
    }

    /// Hands the task back without counting an attempt (drain, spot interruption).
    pub fn release(
        &mut self,
        task: TaskId,
        token: u64,
        worker: &str,
        now: Instant,
    ) -> Result<(), Refusal> {
        self.report(task, token, worker, now, |l| TaskState::Pending(l.release()))?;
        self.ready.push_front(task);
        self.counts.leased -= 1;
        self.counts.pending += 1;
        Ok(())
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
            let rules = self.rules;
            let holder = match &self.tasks[id as usize].state {
                TaskState::Leased(l) => l.worker.clone(),
                _ => continue,
            };
            let _ = self.with_current_lease(id, token, &holder, |l| {
                tracing::warn!(task = id, attempt = l.attempt, worker = %l.worker, "lease expired");
                crate::metrics::lease_expired();
                l.expire(now, &rules).into_state()
            });
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

    /// Applies `f` to the current lease of `task` if `token` is it and `worker` holds it;
    /// otherwise the state is left exactly as it was.
    /// A report on grant `token` of `task` from `worker` at `now`: overdue leases expire first,
    /// then `f` moves the lease on if the report is the live holder's.
    fn report(
        &mut self,
        task: TaskId,
        token: u64,
        worker: &str,
        now: Instant,
        f: impl FnOnce(Leased) -> TaskState,
    ) -> Result<(), Refusal> {
        self.sweep(now);
        self.with_current_lease(task, token, worker, f)
    }

    fn with_current_lease(
        &mut self,
        task: TaskId,
        token: u64,
        worker: &str,
        f: impl FnOnce(Leased) -> TaskState,
    ) -> Result<(), Refusal> {
        let entry = self.tasks.get_mut(task as usize).ok_or(Refusal::UnknownTask(task))?;
        if let Some(r) = refusal(&entry.state, task, token, worker) {
            return Err(r);
        }
        entry.state = match std::mem::replace(&mut entry.state, TaskState::Pending(Pending::new()))
        {
            TaskState::Leased(l) => f(l),
            other => other, // not reached: `refusal` let only a lease through
        };
        Ok(())
    }
}

/// Why a report naming grant `token` of `task` from `worker` cannot be taken in `state`, if it
/// cannot. The token is compared before the holder, so a worker's late report for its own
/// expired grant still reads as stale.
fn refusal(state: &TaskState, task: TaskId, token: u64, worker: &str) -> Option<Refusal> {
    match state {
        TaskState::Leased(l) if l.token != token => Some(Refusal::StaleLease { task, token }),
        TaskState::Leased(l) if l.worker != worker => {
            Some(Refusal::NotHolder { task, worker: worker.to_string() })
        }
        TaskState::Leased(_) => None,
        TaskState::Done(_) | TaskState::Failed(_) => Some(Refusal::Finished(task)),
        TaskState::Pending(_) => Some(Refusal::StaleLease { task, token }),
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
        let mut t = LeaseTable::new(LEASE, rules, FencingTokens::new());
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
        for g in &a {
            t.complete(g.task, g.token, "w1", now).unwrap();
        }
        t.complete(b[0].task, b[0].token, "w2", now).unwrap();
        assert!(t.is_finished());
        assert_eq!(t.counts(), StateCounts { done: 3, ..Default::default() });
        assert_eq!(t.complete(0, a[0].token, "w1", now), Err(Refusal::Finished(0)));
    }

    #[test]
    fn an_expired_lease_is_handed_out_again_and_the_late_report_refused() {
        let (mut t, now) = table(1);
        let first = t.acquire("paused", 1, now).remove(0);
        // Found expired just after `now + LEASE`, then a 1 s backoff before it is handed out again.
        t.sweep(now + LEASE + Duration::from_millis(1));
        let later = now + LEASE + Duration::from_secs(2);
        let second = t.acquire("healthy", 1, later).remove(0);
        assert_eq!(second.task, first.task);
        assert_eq!(second.attempt, 2);
        assert_ne!(second.token, first.token);
        assert_eq!(
            t.complete(first.task, first.token, "paused", later),
            Err(Refusal::StaleLease { task: 0, token: first.token })
        );
        assert_eq!(
            t.renew(first.task, first.token, "paused", later),
            Err(Refusal::StaleLease { task: 0, token: first.token })
        );
        t.complete(second.task, second.token, "healthy", later).unwrap();
        assert!(t.is_finished());
    }

    #[test]
    fn a_report_after_expiry_is_refused_even_before_anyone_else_takes_the_task() {
        let (mut t, now) = table(1);
        let g = t.acquire("w", 1, now).remove(0);
        let late = now + LEASE + Duration::from_millis(1);
        assert!(t.complete(g.task, g.token, "w", late).is_err());
        assert_eq!(t.counts().pending, 1);
    }

    #[test]
    fn renewing_keeps_a_long_task_alive() {
        let (mut t, now) = table(1);
        let g = t.acquire("w", 1, now).remove(0);
        let mut at = now;
        for _ in 0..10 {
            at += LEASE / 2;
            t.renew(g.task, g.token, "w", at).unwrap();
        }
        assert!(t.acquire("other", 1, at + LEASE / 2).is_empty());
        t.complete(g.task, g.token, "w", at + LEASE / 2).unwrap();
    }

    #[test]
    fn failures_back_off_and_are_capped_with_the_last_error_kept() {
        let (mut t, now) = table(1);
        let mut at = now;
        for attempt in 1..=3 {
            let g = t.acquire("w", 1, at);
            assert_eq!(g.len(), 1, "attempt {attempt} granted");
            assert_eq!(g[0].attempt, attempt);
            t.fail(g[0].task, g[0].token, "w", format!("error {attempt}"), true, at).unwrap();
            assert!(t.acquire("w", 1, at).is_empty(), "backing off");
            at += Duration::from_secs(10);
        }
        assert!(t.is_finished());
        assert_eq!(t.failures(), vec![(0, 3, "error 3")]);
    }

    #[test]
    fn a_drained_worker_hands_its_tasks_back_without_using_an_attempt() {
        let (mut t, now) = table(2);
        let grants = t.acquire("spot", 2, now);
        for g in &grants {
            t.release(g.task, g.token, "spot", now).unwrap();
        }
        let again = t.acquire("other", 2, now);
        assert_eq!(again.iter().map(|g| g.attempt).collect::<Vec<_>>(), [1, 1]);
        assert!(t.complete(grants[0].task, grants[0].token, "spot", now).is_err());
    }

    #[test]
    fn a_report_from_a_worker_that_does_not_hold_the_lease_is_refused_and_changes_nothing() {
        let (mut t, now) = table(2);
        let held = t.acquire("holder", 1, now).remove(0);
        let own = t.acquire("intruder", 1, now).remove(0);
        // Tokens do not follow from one another: the intruder's own token plus or minus one
        // names no other lease (it did when tokens were sequential).
        assert_ne!(held.token, own.token.wrapping_add(1));
        assert_ne!(held.token, own.token.wrapping_sub(1));
        let guessed = own.token.wrapping_add(1);
        assert_eq!(
            t.complete(held.task, guessed, "intruder", now),
            Err(Refusal::StaleLease { task: held.task, token: guessed })
        );
        // Even the right token is refused from a worker the lease was not granted to.
        let not_holder = Err(Refusal::NotHolder { task: held.task, worker: "intruder".into() });
        assert_eq!(t.complete(held.task, held.token, "intruder", now), not_holder);
        assert_eq!(t.fail(held.task, held.token, "intruder", "x".into(), false, now), not_holder);
        assert_eq!(t.release(held.task, held.token, "intruder", now), not_holder);
        assert_eq!(t.renew(held.task, held.token, "intruder", now).map(|_| ()), not_holder);
        // The lease is untouched: still leased to its holder, no attempt used, not re-granted.
        assert_eq!(t.counts(), StateCounts { leased: 2, ..Default::default() });
        assert!(t.acquire("third", 2, now).is_empty());
        t.renew(held.task, held.token, "holder", now).unwrap();
        t.complete(held.task, held.token, "holder", now).unwrap();
        t.complete(own.task, own.token, "intruder", now).unwrap();
        assert!(t.is_finished() && t.failures().is_empty());
    }

    #[test]
    fn an_accepted_result_is_recognised_from_its_own_grant_only() {
        let (mut t, now) = table(1);
        let held = t.acquire("holder", 1, now).remove(0);
        assert!(!t.accepted_from(held.task, held.token, "holder"), "not accepted yet");
        t.complete(held.task, held.token, "holder", now).unwrap();
        assert!(t.accepted_from(held.task, held.token, "holder"));
        assert!(!t.accepted_from(held.task, held.token, "intruder"));
        assert!(!t.accepted_from(held.task, held.token.wrapping_add(1), "holder"));
        // The table itself still refuses a second completion: the scheduler answers it.
        assert_eq!(
            t.complete(held.task, held.token, "holder", now),
            Err(Refusal::Finished(held.task))
        );
    }
}
