//! The leases a worker holds, and the loop that renews them (the renewal is the heartbeat).
//!
//! A lease the coordinator says is lost, or that could not be renewed before it ran out (the
//! coordinator unreachable, or this process paused), is cancelled: its task stops and cleans
//! its outputs, and no report is sent for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use earthcatalog_common::rpc::{LeaseRef, pb};
use tokio_util::sync::CancellationToken;

use earthcatalog_common::rpc::client::Client;

#[derive(Debug)]
struct HeldLease {
    cancel: CancellationToken,
    valid_until: Instant,
    duration: Duration,
}

/// The leases held by this worker.
#[derive(Debug, Clone, Default)]
pub struct Held {
    inner: Arc<Mutex<HashMap<LeaseRef, HeldLease>>>,
}

impl Held {
    fn lock(&self) -> MutexGuard<'_, HashMap<LeaseRef, HeldLease>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts tracking a granted lease; the token is cancelled when the lease is lost.
    pub fn insert(&self, lease: LeaseRef, duration: Duration) -> CancellationToken {
        let cancel = CancellationToken::new();
        let held =
            HeldLease { cancel: cancel.clone(), valid_until: Instant::now() + duration, duration };
        self.lock().insert(lease, held);
        cancel
    }

    /// Stops tracking a lease (its task reported or gave it up).
    pub fn remove(&self, lease: &LeaseRef) {
        self.lock().remove(lease);
    }

    /// Every held lease.
    pub fn refs(&self) -> Vec<LeaseRef> {
        self.lock().keys().copied().collect()
    }

    /// Cancels every held lease's task (drain) and returns the leases.
    pub fn cancel_all(&self) -> Vec<LeaseRef> {
        let mut held = self.lock();
        held.values().for_each(|h| h.cancel.cancel());
        held.drain().map(|(k, _)| k).collect()
    }

    fn lose(&self, lease: &LeaseRef, why: &str) {
        if let Some(h) = self.lock().remove(lease) {
            tracing::warn!(phase = %lease.phase, task = lease.task_id, token = lease.token, "lease lost ({why}); stopping its task");
            h.cancel.cancel();
        }
    }

    fn renewed(&self, leases: &[LeaseRef], at: Instant) {
        let mut held = self.lock();
        for l in leases {
            if let Some(h) = held.get_mut(l) {
                h.valid_until = at + h.duration;
            }
        }
    }

    fn overdue(&self, now: Instant) -> Vec<LeaseRef> {
        self.lock().iter().filter(|(_, h)| h.valid_until <= now).map(|(k, _)| *k).collect()
    }
}

/// Renews every held lease each `every` until `stop`.
pub fn spawn(
    mut client: Client,
    worker_id: String,
    held: Held,
    every: Duration,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticker.tick() => {}
            }
            // A paused process wakes here late: leases that ran out meanwhile are gone.
            for l in held.overdue(Instant::now()) {
                held.lose(&l, "not renewed in time");
            }
            let leases = held.refs();
            if leases.is_empty() {
                continue;
            }
            let sent_at = Instant::now();
            let request = pb::RenewRequest {
                worker_id: worker_id.clone(),
                leases: leases.iter().copied().map(pb::LeaseRef::from).collect(),
            };
            // A renewal unanswered within one interval has failed: waiting longer would hold up
            // the overdue check above while the leases run out (a partitioned worker).
            let answer = tokio::time::timeout(every, client.renew(request))
                .await
                .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("no answer in time")));
            match answer {
                Ok(r) => {
                    let lost: Vec<LeaseRef> = r
                        .into_inner()
                        .lost
                        .into_iter()
                        .filter_map(|l| LeaseRef::try_from(l).ok())
                        .collect();
                    for l in &lost {
                        held.lose(l, "the coordinator gave it to another attempt");
                    }
                    held.renewed(&leases, sent_at);
                }
                Err(status) => tracing::warn!(error = %status.message(), "cannot renew leases"),
            }
        }
    })
}
