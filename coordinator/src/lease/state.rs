//! The life of one task, as an enum of per-state structs whose transitions consume the state,
//! so an impossible move (completing a pending task, renewing a finished one) does not compile.
//!
//! ```text
//!            grant                    complete (matching attempt)
//!  Pending ─────────▶ Leased ────────────────────────────────▶ Done
//!     ▲                 │ │
//!     │  release        │ │ fail / expire: attempts < cap
//!     ├─(no attempt)────┘ ├──────────────────────────────────▶ Pending (backoff)
//!     └───────────────────┘ fail (not retryable) / expire: attempts == cap
//!                           └────────────────────────────────▶ Failed
//! ```
//!
//! Every grant carries an attempt number and a fencing token that is unique across the run and
//! cannot be guessed; a report naming any other token, or from another worker than the holder,
//! is refused (see `table.rs`).

use std::time::{Duration, Instant};

/// A task waiting to be granted.
#[derive(Debug, Clone)]
pub struct Pending {
    /// Attempts that ended in failure or expiry so far.
    pub failed_attempts: u32,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// Not to be granted before this instant (backoff after a failure).
    pub not_before: Option<Instant>,
}

/// A task held by a worker.
#[derive(Debug, Clone)]
pub struct Leased {
    /// The holder.
    pub worker: String,
    /// 1-based attempt number of this grant.
    pub attempt: u32,
    /// Fencing token of this grant (unique in the run).
    pub token: u64,
    /// When the lease runs out unless renewed.
    pub expires_at: Instant,
    failed_attempts: u32,
    last_error: Option<String>,
}

/// A task that will not be tried again.
#[derive(Debug, Clone)]
pub struct Failed {
    /// Attempts made.
    pub attempts: u32,
    /// The last error.
    pub error: String,
}

/// Where a task is in its life.
#[derive(Debug, Clone)]
pub enum TaskState {
    /// Waiting for a worker.
    Pending(Pending),
    /// Held by a worker.
    Leased(Leased),
    /// Result accepted: from which worker and grant, when this coordinator accepted it (a task
    /// restored from an earlier run's results does not know).
    Done(Option<AcceptedFrom>),
    /// Given up.
    Failed(Failed),
}

/// The grant whose result was accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedFrom {
    /// The worker that held it.
    pub worker: String,
    /// Its fencing token.
    pub token: u64,
}

/// What a failed or expired attempt turns into.
#[derive(Debug, Clone)]
pub enum AfterFailure {
    /// Tried again later.
    Retry(Pending),
    /// Given up.
    GiveUp(Failed),
}

impl AfterFailure {
    /// The resulting state.
    pub fn into_state(self) -> TaskState {
        match self {
            AfterFailure::Retry(p) => TaskState::Pending(p),
            AfterFailure::GiveUp(f) => TaskState::Failed(f),
        }
    }
}

/// Attempt cap and backoff.
#[derive(Debug, Clone, Copy)]
pub struct RetryRules {
    /// Attempts in all before a task is marked failed.
    pub max_attempts: u32,
    /// Wait before the second attempt; doubled each time.
    pub first_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
}

impl Pending {
    /// A task never tried.
    pub fn new() -> Self {
        Pending { failed_attempts: 0, last_error: None, not_before: None }
    }

    /// Whether it may be granted at `now`.
    #[cfg(test)]
    pub fn ready(&self, now: Instant) -> bool {
        self.not_before.is_none_or(|t| now >= t)
    }

    /// Grants the task to `worker`.
    pub fn grant(self, worker: &str, token: u64, now: Instant, lease: Duration) -> Leased {
        Leased {
            worker: worker.to_string(),
            attempt: self.failed_attempts + 1,
            token,
            expires_at: now + lease,
            failed_attempts: self.failed_attempts,
            last_error: self.last_error,
        }
    }
}

impl Default for Pending {
    fn default() -> Self {
        Self::new()
    }
}

impl Leased {
    /// Extends the lease.
    pub fn renew(mut self, now: Instant, lease: Duration) -> Leased {
        self.expires_at = now + lease;
        self
    }

    /// The holder's result was accepted.
    pub fn complete(self) -> TaskState {
        tracing::debug!(attempt = self.attempt, worker = %self.worker, "result accepted");
        TaskState::Done(Some(AcceptedFrom { worker: self.worker, token: self.token }))
    }

    /// The holder handed the task back without failing it (drain, spot notice): no attempt is
    /// counted.
    pub fn release(self) -> Pending {
        Pending {
            failed_attempts: self.failed_attempts,
            last_error: self.last_error,
            not_before: None,
        }
    }

    /// The attempt failed (`retryable = false` gives up at once).
    pub fn fail(
        self,
        error: String,
        retryable: bool,
        now: Instant,
        rules: &RetryRules,
    ) -> AfterFailure {
        let failed = self.failed_attempts + 1;
        if !retryable || failed >= rules.max_attempts {
            return AfterFailure::GiveUp(Failed { attempts: failed, error });
        }
        let backoff = rules
            .first_backoff
            .checked_mul(1 << (failed - 1).min(16))
            .unwrap_or(rules.max_backoff)
            .min(rules.max_backoff);
        AfterFailure::Retry(Pending {
            failed_attempts: failed,
            last_error: Some(error),
            not_before: Some(now + backoff),
        })
    }

    /// The lease ran out: counted as a failed attempt (the worker died, hung or was cut off).
    pub fn expire(self, now: Instant, rules: &RetryRules) -> AfterFailure {
        let msg = format!("lease of attempt {} held by {} expired", self.attempt, self.worker);
        self.fail(msg, true, now, rules)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> RetryRules {
        RetryRules {
            max_attempts: 3,
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(4),
        }
    }

    #[test]
    fn attempts_count_failures_and_expiries_but_not_releases() {
        let now = Instant::now();
        let lease = Duration::from_secs(60);
        let l = Pending::new().grant("w1", 1, now, lease);
        assert_eq!(l.attempt, 1);
        let p = l.release();
        let l = p.grant("w2", 2, now, lease);
        assert_eq!(l.attempt, 1, "a release does not use up an attempt");
        let AfterFailure::Retry(p) = l.expire(now, &rules()) else { panic!("should retry") };
        assert!(!p.ready(now), "backoff after a failure");
        assert!(p.ready(now + Duration::from_secs(1)));
        let l = p.grant("w3", 3, now, lease);
        assert_eq!(l.attempt, 2);
        let AfterFailure::Retry(p) = l.fail("boom".into(), true, now, &rules()) else { panic!() };
        let l = p.grant("w4", 4, now, lease);
        assert_eq!(l.attempt, 3);
        match l.fail("boom again".into(), true, now, &rules()) {
            AfterFailure::GiveUp(f) => {
                assert_eq!(f.attempts, 3);
                assert_eq!(f.error, "boom again");
            }
            AfterFailure::Retry(_) => panic!("the cap is 3 attempts"),
        }
    }

    #[test]
    fn a_non_retryable_failure_gives_up_at_once() {
        let l = Pending::new().grant("w", 1, Instant::now(), Duration::from_secs(1));
        assert!(matches!(
            l.fail("bad input".into(), false, Instant::now(), &rules()),
            AfterFailure::GiveUp(Failed { attempts: 1, .. })
        ));
    }
}
