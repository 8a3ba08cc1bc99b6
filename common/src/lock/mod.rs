//! The catalog lock: one object whose conditional writes decide who may write the catalog.
//!
//! Protocol (every write is a compare-and-swap, see [`cas`]):
//!
//! * **acquire**: create the lock object with `If-None-Match: *` holding a [`LockPayload`] with a
//!   fresh token. If it exists, read it with its ETag. If it is *free* — released (a tombstone) or
//!   expired per its own payload — replace it with `If-Match: <that ETag>`; of several takers only
//!   one can match, the others re-read and see the winner. Otherwise the lock is held: fail with
//!   [`LockError::Locked`], or, with [`LockOptions::wait`], retry with jittered exponential backoff
//!   until the deadline.
//! * **renew**: a background task replaces the object every [`LockOptions::renew_every`] with
//!   `If-Match` on the ETag it last wrote, pushing the expiry forward. If that fails with a
//!   precondition error someone else took the lock over: the guard becomes *lost*
//!   ([`LockGuard::check`] fails) and renewal stops. A guard whose expiry passes without a
//!   successful renewal (store unreachable) is lost too.
//! * **confirm**: right before a protected write (the catalog upload) the holder renews once more,
//!   synchronously, with `If-Match` on its last ETag ([`LockGuard::confirm`]); a replaced lock
//!   object is found there and then, not at the next background renewal. The guard's own deadline
//!   is the expiry written in the payload less a margin, never later than what others read.
//! * **release**: object_store has no conditional delete, so release replaces the object, again
//!   with `If-Match` on our last ETag, by a tombstone (`released: true`, `ttl_hours: 0`). The
//!   tombstone stays; acquire treats it as free. If the ETag no longer matches the lock was taken
//!   over and release fails without touching the new owner's lock.
//!
//! Expiry is judged by the reader's clock against the writer's timestamps, so hosts need roughly
//! synchronized clocks (skew well below the TTL). The payload stays readable by earthcatalog
//! 0.6.1's Python `S3Lock` (see [`payload`]), so Python and Rust writers exclude each other as long
//! as the Python side honours `If-None-Match` (it does) — though Python's stale takeover deletes
//! and re-creates, which is not atomic against a third writer.

pub mod payload;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Mutex, Notify};
use tokio::task::JoinHandle;

use crate::location::Location;
use crate::stores::Stores;
use crate::stores::{CasObject, ObjectError, Versioned};
use payload::{LockPayload, chrono_duration, human};

/// First pause between attempts when waiting for a held lock; doubles up to `max_backoff`.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Create/read/replace rounds without any wait before giving up: each lost round means another
/// writer made progress, so this many in a row means the object is being rewritten constantly.
const MAX_CONTENDED_ROUNDS: u32 = 50;
/// Most we trust our own clock and the store's write latency: the guard counts its lock as expired
/// this much (or a tenth of the TTL, if less) before the expiry written in the payload.
const MAX_EXPIRY_MARGIN: Duration = Duration::from_secs(2);

/// How to take the lock.
#[derive(Debug, Clone)]
pub struct LockOptions {
    /// Who takes it (shown to anyone refused).
    pub owner: String,
    /// How long the lock stays valid after each (re)write.
    pub ttl: Duration,
    /// Wait up to this long for a held lock instead of failing at once.
    pub wait: Option<Duration>,
    /// Renew this often while held; `None` disables renewal (the lock then lapses after `ttl`).
    pub renew_every: Option<Duration>,
    /// Upper bound of the pause between attempts while waiting.
    pub max_backoff: Duration,
}

impl Default for LockOptions {
    fn default() -> Self {
        LockOptions {
            owner: "earthcatalog".to_string(),
            // Renewal is what keeps the lock, so the TTL only bounds how long a holder that
            // died on another machine blocks the catalog; four renewals fit in it.
            ttl: Duration::from_secs(2 * 60),
            wait: None,
            renew_every: Some(Duration::from_secs(30)),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// Who holds a lock, as its payload says.
#[derive(Debug, Clone, PartialEq)]
pub struct LockHolder {
    /// Owner name.
    pub owner: String,
    /// Host.
    pub hostname: String,
    /// Process id.
    pub pid: u32,
    /// Acquisition time as written.
    pub acquired: String,
    /// Expiry.
    pub expires: DateTime<Utc>,
    /// Whether the lock was released.
    pub released: bool,
}

/// Why the lock could not be taken, kept or released.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Someone else holds the lock.
    #[error(
        "catalog locked by {} on host {} (pid {}) since {}, expires in {} (lock object {location})",
        holder.owner, holder.hostname, holder.pid, holder.acquired, human(*expires_in)
    )]
    Locked {
        /// The lock object.
        location: Location,
        /// Its holder.
        holder: Box<LockHolder>,
        /// Time left until it expires.
        expires_in: Duration,
    },
    /// The lock object holds something that is not a lock payload.
    #[error(
        "lock object {location} is not a readable lock ({reason}); remove it by hand if no run holds the catalog"
    )]
    Unreadable {
        /// The lock object.
        location: Location,
        /// What is wrong with it.
        reason: String,
    },
    /// We no longer hold the lock.
    #[error("lock {location} held by {owner} was lost: {reason}")]
    Lost {
        /// The lock object.
        location: Location,
        /// Our owner name.
        owner: String,
        /// How it was lost.
        reason: String,
    },
    /// The object kept changing under us.
    #[error("lock object {location} kept changing during {rounds} attempts to take it")]
    Contended {
        /// The lock object.
        location: Location,
        /// Attempts made.
        rounds: u32,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] ObjectError),
}

/// Entry point for taking the catalog lock.
#[derive(Debug)]
pub struct CatalogLock;

impl CatalogLock {
    /// Takes the lock at `location`, waiting per `options.wait`; renews it in the background.
    pub async fn acquire(
        stores: &Stores,
        location: &Location,
        options: LockOptions,
    ) -> Result<LockGuard, LockError> {
        let object = stores.conditional(location)?;
        let token = uuid::Uuid::new_v4().to_string();
        let deadline = options.wait.map(|w| tokio::time::Instant::now() + w);
        let mut backoff = FIRST_BACKOFF;
        let mut rounds = 0;
        loop {
            let (holder, expires_in) = match try_take(&object, &options, &token).await? {
                Attempt::Taken(e_tag, payload) => {
                    return Ok(LockGuard::start(object, options, e_tag, payload));
                }
                Attempt::Raced => {
                    rounds += 1;
                    if rounds >= MAX_CONTENDED_ROUNDS {
                        return Err(LockError::Contended { location: location.clone(), rounds });
                    }
                    continue;
                }
                Attempt::Held(holder, expires_in) => (holder, expires_in),
            };
            let now = tokio::time::Instant::now();
            let Some(left) = deadline.and_then(|d| d.checked_duration_since(now)) else {
                return Err(LockError::Locked { location: location.clone(), holder, expires_in });
            };
            if left.is_zero() {
                return Err(LockError::Locked { location: location.clone(), holder, expires_in });
            }
            // Never sleep past the deadline, nor (much) past the moment the holder's lock lapses.
            let pause = jittered(backoff).min(left).min(expires_in + Duration::from_millis(10));
            tracing::debug!(lock = %location, holder = %holder.owner, ?pause, "catalog lock held; waiting");
            tokio::time::sleep(pause).await;
            rounds = 0;
            backoff = (backoff * 2).min(options.max_backoff.max(FIRST_BACKOFF));
        }
    }

    /// Who holds the lock at `location` now, or `None` when it is absent or free.
    pub async fn holder(
        stores: &Stores,
        location: &Location,
    ) -> Result<Option<LockHolder>, LockError> {
        let object = stores.conditional(location)?;
        let Some(current) = object.read().await? else {
            return Ok(None);
        };
        let payload = parse(&object, &current)?;
        let ttl = Duration::ZERO;
        if payload.is_free(Utc::now(), ttl) {
            return Ok(None);
        }
        Ok(Some(holder_of(&object, &payload, ttl)?))
    }
}

enum Attempt {
    Taken(String, LockPayload),
    Raced,
    Held(Box<LockHolder>, Duration),
}

/// One create-or-take-over round.
async fn try_take(
    object: &CasObject,
    options: &LockOptions,
    token: &str,
) -> Result<Attempt, LockError> {
    let now = Utc::now();
    let ours = LockPayload::new(&options.owner, token, now, options.ttl);
    match object.create(ours.to_bytes()).await {
        Ok(e_tag) => {
            tracing::info!(lock = %object.location(), owner = %options.owner, "catalog lock acquired");
            return Ok(Attempt::Taken(e_tag, ours));
        }
        Err(ObjectError::Exists { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let Some(current) = object.read().await? else {
        return Ok(Attempt::Raced);
    };
    let theirs = parse(object, &current)?;
    let gone = !theirs.released && theirs.holder_is_gone();
    if !gone && !theirs.is_free(now, options.ttl) {
        let holder = holder_of(object, &theirs, options.ttl)?;
        let expires_in = (holder.expires - now).to_std().unwrap_or_default();
        return Ok(Attempt::Held(Box::new(holder), expires_in));
    }
    match object.replace(&current.e_tag, ours.to_bytes()).await {
        Ok(e_tag) => {
            if theirs.released {
                tracing::info!(lock = %object.location(), owner = %options.owner, "catalog lock acquired");
            } else if gone {
                tracing::warn!(
                    lock = %object.location(), owner = %options.owner, stale_owner = %theirs.owner,
                    stale_pid = theirs.pid, stale_since = %theirs.acquired,
                    "took over the catalog lock of a process on this host that no longer exists"
                );
            } else {
                tracing::warn!(
                    lock = %object.location(), owner = %options.owner, stale_owner = %theirs.owner,
                    stale_host = %theirs.hostname, stale_since = %theirs.acquired,
                    "took over an expired catalog lock"
                );
            }
            Ok(Attempt::Taken(e_tag, ours))
        }
        Err(ObjectError::Changed { .. }) => Ok(Attempt::Raced),
        Err(e) => Err(e.into()),
    }
}

fn parse(object: &CasObject, current: &Versioned) -> Result<LockPayload, LockError> {
    serde_json::from_slice(&current.bytes).map_err(|e| LockError::Unreadable {
        location: object.location().clone(),
        reason: e.to_string(),
    })
}

fn holder_of(object: &CasObject, p: &LockPayload, ttl: Duration) -> Result<LockHolder, LockError> {
    let expires = p.expires_at(ttl).ok_or_else(|| LockError::Unreadable {
        location: object.location().clone(),
        reason: format!("acquisition time '{}' is not an ISO-8601 time", p.acquired),
    })?;
    Ok(LockHolder {
        owner: p.owner.clone(),
        hostname: p.hostname.clone(),
        pid: p.pid,
        acquired: p.acquired.clone(),
        expires,
        released: p.released,
    })
}

/// `d/2 + random(0..d/2)`: racers that were refused together do not retry together.
fn jittered(d: Duration) -> Duration {
    let r = (uuid::Uuid::new_v4().as_u128() % 1_000) as u32;
    d / 2 + d / 2 * r / 1_000
}

/// What the guard last wrote.
#[derive(Debug)]
struct Held {
    e_tag: String,
    payload: LockPayload,
    /// Released or given up: no more writes.
    finished: bool,
}

#[derive(Debug)]
struct Shared {
    object: CasObject,
    options: LockOptions,
    held: Mutex<Held>,
    /// Why the lock was lost, once it is.
    lost: std::sync::Mutex<Option<String>>,
    /// Our deadline: the expiry of the last successful write, less a margin.
    expires: std::sync::Mutex<DateTime<Utc>>,
    stop: Notify,
}

impl Shared {
    fn mark_lost(&self, reason: String) {
        let mut lost = self.lost.lock().unwrap_or_else(|p| p.into_inner());
        if lost.is_none() {
            tracing::error!(lock = %self.object.location(), owner = %self.options.owner, %reason, "catalog lock lost");
            *lost = Some(reason);
        }
    }

    fn lost_error(&self, reason: String) -> LockError {
        LockError::Lost {
            location: self.object.location().clone(),
            owner: self.options.owner.clone(),
            reason,
        }
    }

    fn check(&self) -> Result<(), LockError> {
        if let Some(reason) = self.lost.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Err(self.lost_error(reason));
        }
        let expires = *self.expires.lock().unwrap_or_else(|p| p.into_inner());
        if Utc::now() >= expires {
            // Sticky: once anyone may have taken the lock over, a later lucky renewal must not
            // make a caller who already saw the loss believe it held the lock all along.
            let reason = format!(
                "it expired at {} without a successful renewal",
                payload::python_time(expires)
            );
            self.mark_lost(reason.clone());
            return Err(self.lost_error(reason));
        }
        Ok(())
    }

    /// Our local deadline for `payload`: its own expiry, less a margin for clock and latency.
    fn set_expiry(&self, payload: &LockPayload) {
        let margin = chrono_duration((self.options.ttl / 10).min(MAX_EXPIRY_MARGIN));
        // Our payloads always carry `expires`; without it, treat the lock as already expired.
        let expires = payload.expires_at(self.options.ttl).map_or_else(Utc::now, |t| t - margin);
        *self.expires.lock().unwrap_or_else(|p| p.into_inner()) = expires;
    }

    /// Rewrites our payload with a later expiry, conditional on the ETag we last wrote.
    async fn write_renewal(&self, held: &mut Held) -> Result<(), ObjectError> {
        let next = held.payload.renewed(Utc::now(), self.options.ttl);
        let e_tag = self.object.replace(&held.e_tag, next.to_bytes()).await?;
        self.set_expiry(&next);
        held.e_tag = e_tag;
        held.payload = next;
        Ok(())
    }

    /// Records that another writer replaced the lock object and stops further writes.
    fn taken_over(&self, held: &mut Held) -> LockError {
        held.finished = true;
        let reason = "another writer replaced the lock object (taken over)";
        self.mark_lost(reason.into());
        self.lost_error(reason.into())
    }

    /// One renewal; returns false when renewing should stop.
    async fn renew(&self) -> bool {
        let mut held = self.held.lock().await;
        if held.finished || self.check().is_err() {
            held.finished = true;
            return false;
        }
        match self.write_renewal(&mut held).await {
            Ok(()) => true,
            Err(ObjectError::Changed { .. }) => {
                self.taken_over(&mut held);
                false
            }
            Err(e) => {
                // Transient store trouble: keep trying until the lock expires.
                tracing::warn!(lock = %self.object.location(), error = %e, "catalog lock renewal failed; retrying");
                if self.check().is_err() {
                    held.finished = true;
                    return false;
                }
                true
            }
        }
    }

    /// A renewal now, in the store: fails unless the lock object is still the one we wrote.
    async fn confirm(&self) -> Result<(), LockError> {
        let mut held = self.held.lock().await;
        if held.finished {
            let reason = self.lost.lock().unwrap_or_else(|p| p.into_inner()).clone();
            return Err(self.lost_error(reason.unwrap_or_else(|| "already released".into())));
        }
        self.check()?;
        match self.write_renewal(&mut held).await {
            Ok(()) => Ok(()),
            Err(ObjectError::Changed { .. }) => Err(self.taken_over(&mut held)),
            // Not proven lost, but not proven held either: the caller must not write.
            Err(e) => Err(e.into()),
        }
    }

    async fn release(&self) -> Result<(), LockError> {
        let mut held = self.held.lock().await;
        if held.finished {
            let reason = self.lost.lock().unwrap_or_else(|p| p.into_inner()).clone();
            return Err(self.lost_error(reason.unwrap_or_else(|| "already released".into())));
        }
        held.finished = true;
        self.stop.notify_one();
        let tombstone = held.payload.released_at(Utc::now());
        match self.object.replace(&held.e_tag, tombstone.to_bytes()).await {
            Ok(_) => {
                tracing::info!(lock = %self.object.location(), owner = %self.options.owner, "catalog lock released");
                Ok(())
            }
            Err(ObjectError::Changed { .. }) => {
                let reason = "another writer took the lock over; left their lock in place";
                self.mark_lost(reason.into());
                Err(self.lost_error(reason.into()))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// A held catalog lock. Renewed in the background while alive; [`LockGuard::release`] frees it.
/// Dropping it without release stops renewal and releases it best-effort in the background.
#[derive(Debug)]
pub struct LockGuard {
    shared: Arc<Shared>,
    renewer: Option<JoinHandle<()>>,
    released: AtomicBool,
}

impl LockGuard {
    fn start(object: CasObject, options: LockOptions, e_tag: String, payload: LockPayload) -> Self {
        let shared = Arc::new(Shared {
            object,
            options,
            held: Mutex::new(Held { e_tag, payload: payload.clone(), finished: false }),
            lost: std::sync::Mutex::new(None),
            expires: std::sync::Mutex::new(Utc::now()),
            stop: Notify::new(),
        });
        shared.set_expiry(&payload);
        let renewer = shared.options.renew_every.map(|every| {
            let shared = shared.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(every) => {}
                        _ = shared.stop.notified() => return,
                    }
                    if !shared.renew().await {
                        return;
                    }
                }
            })
        });
        LockGuard { shared, renewer, released: AtomicBool::new(false) }
    }

    /// `Ok` while we still hold the lock; the reason once it is lost or expired.
    pub fn check(&self) -> Result<(), LockError> {
        self.shared.check()
    }

    /// Proves we still hold the lock by renewing it in the store now (`If-Match` on the ETag we
    /// last wrote); fails if the lock object was replaced, even before the background renewer
    /// would notice. Call it right before a write the lock protects.
    pub async fn confirm(&self) -> Result<(), LockError> {
        self.shared.confirm().await
    }

    /// Whether the lock was lost (taken over, or expired without renewal).
    pub fn is_lost(&self) -> bool {
        self.check().is_err()
    }

    /// The lock object's location.
    pub fn location(&self) -> &Location {
        self.shared.object.location()
    }

    /// Our owner name.
    pub fn owner(&self) -> &str {
        &self.shared.options.owner
    }

    /// Frees the lock if it is still ours; fails (leaving the new owner's lock alone) if not.
    pub async fn release(self) -> Result<(), LockError> {
        self.released.store(true, Ordering::SeqCst);
        self.shared.release().await
    }
}

/// Releases of dropped guards still under way; [`finish_releases`] waits for them.
static DROPPED_RELEASES: std::sync::LazyLock<tokio_util::task::TaskTracker> =
    std::sync::LazyLock::new(tokio_util::task::TaskTracker::new);

/// Waits up to `within` for the releases of dropped guards (a run stopped by a signal drops its
/// guard): a binary calls it before it exits, so its runtime does not cancel them and leave the
/// lock held until it expires.
pub async fn finish_releases(within: Duration) {
    DROPPED_RELEASES.close();
    if tokio::time::timeout(within, DROPPED_RELEASES.wait()).await.is_err() {
        tracing::warn!("the catalog lock could not be released in time; it stays until it expires");
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.shared.stop.notify_one();
        if self.released.load(Ordering::SeqCst) {
            return;
        }
        let shared = self.shared.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                DROPPED_RELEASES.spawn_on(
                    async move {
                        if let Err(e) = shared.release().await {
                            tracing::warn!(error = %e, "releasing a dropped catalog lock failed");
                        }
                    },
                    &rt,
                );
            }
            Err(_) => tracing::warn!(
                lock = %self.shared.object.location(),
                "catalog lock dropped outside a runtime; it stays until it expires"
            ),
        }
        // The renewer exits on `stop` (or on the `finished` flag the release sets); detach it.
        drop(self.renewer.take());
    }
}
