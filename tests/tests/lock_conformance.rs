//! The catalog lock and catalog sync, checked the same way against every backend: `InMemory`,
//! `LocalFileSystem` (a temp dir; CAS through the advisory lock) and S3 (moto, serialized).
//!
//! Each check is a plain async fn taking a [`Backend`]; the `conformance!` macro turns it into one
//! test per backend. Every test works under its own fresh prefix or bucket.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use earthcatalog_common::catalog_sync::{CatalogCopy, CatalogSyncError};
use earthcatalog_common::location::Location;
use earthcatalog_common::lock::payload::{hostname, python_time};
use earthcatalog_common::lock::{CatalogLock, LockError, LockGuard, LockOptions};
use earthcatalog_common::stores::Stores;
use earthcatalog_tests::s3::{S3Server, unique_name};
use object_store::ObjectStoreExt;

/// Where a check runs: stores and a prefix of its own.
struct Backend {
    stores: Arc<Stores>,
    base: Location,
    /// Local files for the working copies (and the local backend's objects).
    dir: tempfile::TempDir,
}

impl Backend {
    fn memory() -> Option<Backend> {
        let base = Location::parse(&format!("memory://{}/warehouse", unique_name("mem"))).unwrap();
        let stores = Arc::new(Stores::new(Default::default()));
        Some(Backend { stores, base, dir: tempfile::tempdir().unwrap() })
    }

    fn local() -> Option<Backend> {
        let dir = tempfile::tempdir().unwrap();
        let base = Location::local(dir.path().join("warehouse")).unwrap();
        Some(Backend { stores: Arc::new(Stores::new(Default::default())), base, dir })
    }

    fn moto(test: &str) -> Option<Backend> {
        let server = S3Server::shared(test)?;
        let base = server.new_bucket().unwrap().join("catalog");
        Some(Backend { stores: Arc::new(server.stores()), base, dir: tempfile::tempdir().unwrap() })
    }

    fn lock(&self) -> Location {
        self.base.join(".lock")
    }

    fn catalog(&self) -> Location {
        self.base.join("catalog.db")
    }

    async fn acquire(&self, options: LockOptions) -> Result<LockGuard, LockError> {
        CatalogLock::acquire(&self.stores, &self.lock(), options).await
    }

    async fn put_raw(&self, location: &Location, body: String) {
        let o = self.stores.resolve(location).unwrap();
        o.store.put(&o.path, Bytes::from(body).into()).await.unwrap();
    }

    async fn get_raw(&self, location: &Location) -> Bytes {
        let o = self.stores.resolve(location).unwrap();
        o.store.get(&o.path).await.unwrap().bytes().await.unwrap()
    }
}

/// Options for `owner` with a long TTL and no renewal or waiting (the checks set what they test).
fn opts(owner: &str) -> LockOptions {
    LockOptions {
        owner: owner.into(),
        ttl: Duration::from_secs(300),
        wait: None,
        renew_every: None,
        ..Default::default()
    }
}

fn holder_owner(err: &LockError) -> &str {
    match err {
        LockError::Locked { holder, .. } => &holder.owner,
        other => panic!("expected the lock to be refused as held, got: {other}"),
    }
}

// ---- the checks ----

async fn an_acquired_lock_is_free_again_after_release(b: &Backend) {
    let a = b.acquire(opts("alpha")).await.unwrap();
    let holder = CatalogLock::holder(&b.stores, &b.lock()).await.unwrap().unwrap();
    assert_eq!(holder.owner, "alpha");
    assert_eq!(holder.pid, std::process::id());
    a.release().await.unwrap();
    assert_eq!(CatalogLock::holder(&b.stores, &b.lock()).await.unwrap(), None);
    let again = b.acquire(opts("beta")).await.unwrap();
    assert_eq!(again.owner(), "beta");
    again.release().await.unwrap();
}

async fn a_guard_dropped_without_release_frees_the_lock_in_the_background(b: &Backend) {
    let options = LockOptions { renew_every: Some(Duration::from_millis(100)), ..opts("alpha") };
    drop(b.acquire(options).await.unwrap());
    let mut holder = CatalogLock::holder(&b.stores, &b.lock()).await.unwrap();
    for _ in 0..200 {
        if holder.is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        holder = CatalogLock::holder(&b.stores, &b.lock()).await.unwrap();
    }
    assert_eq!(holder, None, "the dropped guard's lock is still held");
    b.acquire(opts("beta")).await.unwrap().release().await.unwrap();
}

async fn a_second_acquirer_is_refused_with_the_holders_owner_host_and_pid(b: &Backend) {
    let a = b.acquire(opts("alpha")).await.unwrap();
    let err = b.acquire(opts("beta")).await.unwrap_err();
    let msg = err.to_string();
    let expected = format!(
        "catalog locked by alpha on host {} (pid {}) since ",
        hostname(),
        std::process::id()
    );
    assert!(msg.starts_with(&expected), "{msg}");
    assert!(msg.contains(", expires in 4m 5") || msg.contains(", expires in 5m 00s"), "{msg}");
    assert!(msg.contains(&b.lock().to_string()), "{msg}");
    a.release().await.unwrap();
}

async fn a_waiting_acquirer_gets_the_lock_once_the_holder_releases_it(b: &Backend) {
    let a = b.acquire(opts("alpha")).await.unwrap();
    let stores = b.stores.clone();
    let lock = b.lock();
    let waiter = tokio::spawn(async move {
        let options = LockOptions { wait: Some(Duration::from_secs(60)), ..opts("beta") };
        CatalogLock::acquire(&stores, &lock, options).await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiter.is_finished(), "the waiter must not get a held lock");
    a.release().await.unwrap();
    let beta = waiter.await.unwrap().unwrap();
    let holder = CatalogLock::holder(&b.stores, &b.lock()).await.unwrap().unwrap();
    assert_eq!(holder.owner, "beta");
    beta.release().await.unwrap();
}

async fn a_waiting_acquirer_gives_up_at_its_deadline_naming_the_holder(b: &Backend) {
    let a = b.acquire(opts("alpha")).await.unwrap();
    let options = LockOptions { wait: Some(Duration::from_millis(700)), ..opts("beta") };
    let err = b.acquire(options).await.unwrap_err();
    assert_eq!(holder_owner(&err), "alpha");
    a.release().await.unwrap();
}

async fn an_expired_lock_is_taken_over_and_its_old_holder_can_neither_release_nor_upload(
    b: &Backend,
) {
    let mut stale_copy =
        CatalogCopy::download(&b.stores, &b.catalog(), b.dir.path().join("a.db")).await.unwrap();
    std::fs::write(stale_copy.local_path(), b"alpha's catalog").unwrap();
    let alpha =
        b.acquire(LockOptions { ttl: Duration::from_secs(1), ..opts("alpha") }).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(alpha.is_lost(), "an unrenewed lock past its TTL is no longer held");

    let beta = b.acquire(opts("beta")).await.unwrap();
    let err = stale_copy.upload(&alpha).await.unwrap_err();
    assert!(matches!(err, CatalogSyncError::LockNotHeld { .. }), "{err}");
    assert!(err.to_string().starts_with("not uploading catalog "), "{err}");
    let err = alpha.release().await.unwrap_err();
    assert!(matches!(err, LockError::Lost { .. }), "{err}");

    // beta still holds it: a third writer is refused in beta's name.
    let err = b.acquire(opts("gamma")).await.unwrap_err();
    assert_eq!(holder_owner(&err), "beta");
    beta.check().unwrap();
    beta.release().await.unwrap();
}

async fn renewal_keeps_a_short_ttl_lock_held_well_past_its_ttl(b: &Backend) {
    let options = LockOptions {
        ttl: Duration::from_millis(1500),
        renew_every: Some(Duration::from_millis(250)),
        ..opts("alpha")
    };
    let alpha = b.acquire(options).await.unwrap();
    tokio::time::sleep(Duration::from_millis(4000)).await;
    alpha.check().unwrap();
    let err = b.acquire(opts("beta")).await.unwrap_err();
    assert_eq!(holder_owner(&err), "alpha");
    alpha.release().await.unwrap();
}

async fn a_renewing_holder_whose_lock_was_replaced_notices_it_lost_the_lock(b: &Backend) {
    let options = LockOptions { renew_every: Some(Duration::from_millis(100)), ..opts("alpha") };
    let alpha = b.acquire(options).await.unwrap();
    // Someone (an operator, a Python writer) replaces the lock object outright.
    b.put_raw(&b.lock(), intruder_payload()).await;
    for _ in 0..100 {
        if alpha.is_lost() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let err = alpha.check().unwrap_err();
    assert!(err.to_string().contains("was lost: another writer replaced the lock"), "{err}");
    assert!(alpha.release().await.is_err());
    let holder = CatalogLock::holder(&b.stores, &b.lock()).await.unwrap().unwrap();
    assert_eq!(holder.owner, "intruder");
}

/// The intruder's lock: a fresh Python-style payload written over whatever is there.
fn intruder_payload() -> String {
    let now = python_time(Utc::now());
    format!(
        r#"{{"owner": "intruder", "pid": 1, "hostname": "elsewhere", "acquired": "{now}", "ttl_hours": 12}}"#
    )
}

async fn an_upload_after_the_lock_object_was_replaced_is_refused_before_the_renewer_notices(
    b: &Backend,
) {
    let guard = b.acquire(opts("alpha")).await.unwrap();
    let mut copy =
        CatalogCopy::download(&b.stores, &b.catalog(), b.dir.path().join("a.db")).await.unwrap();
    std::fs::write(copy.local_path(), b"alpha v1").unwrap();
    copy.upload(&guard).await.unwrap();
    // Someone replaces the lock object; alpha does not renew, so only the store knows.
    b.put_raw(&b.lock(), intruder_payload()).await;
    guard.check().unwrap();

    std::fs::write(copy.local_path(), b"alpha v2").unwrap();
    let err = copy.upload(&guard).await.unwrap_err();
    assert!(matches!(err, CatalogSyncError::LockNotHeld { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.starts_with(&format!("not uploading catalog {}: lock ", b.catalog())), "{msg}");
    assert!(msg.contains("was lost: another writer replaced the lock object"), "{msg}");
    assert_eq!(&b.get_raw(&b.catalog()).await[..], b"alpha v1");
    assert!(guard.is_lost(), "the refusal is remembered");
    // The intruder's lock is left in place.
    let holder = CatalogLock::holder(&b.stores, &b.lock()).await.unwrap().unwrap();
    assert_eq!(holder.owner, "intruder");
    assert!(guard.release().await.is_err());
}

async fn an_upload_after_the_lock_object_was_deleted_is_refused(b: &Backend) {
    let guard = b.acquire(opts("alpha")).await.unwrap();
    let mut copy =
        CatalogCopy::download(&b.stores, &b.catalog(), b.dir.path().join("a.db")).await.unwrap();
    std::fs::write(copy.local_path(), b"alpha v1").unwrap();
    // The first half of Python's stale takeover (delete, then create): the lock is gone.
    let o = b.stores.resolve(&b.lock()).unwrap();
    o.store.delete(&o.path).await.unwrap();
    let err = copy.upload(&guard).await.unwrap_err();
    assert!(matches!(err, CatalogSyncError::LockNotHeld { .. }), "{err}");
    let o = b.stores.resolve(&b.catalog()).unwrap();
    assert!(o.store.head(&o.path).await.is_err(), "no catalog may have been created");
    assert_eq!(CatalogLock::holder(&b.stores, &b.lock()).await.unwrap(), None);
}

async fn a_guard_counts_its_lock_as_expired_no_later_than_the_expiry_it_wrote(b: &Backend) {
    let guard =
        b.acquire(LockOptions { ttl: Duration::from_secs(2), ..opts("alpha") }).await.unwrap();
    let written = CatalogLock::holder(&b.stores, &b.lock()).await.unwrap().unwrap().expires;
    let left = (written - Utc::now()).to_std().unwrap();
    // Just before the written expiry, the guard already refuses (it keeps a margin).
    tokio::time::sleep(left.saturating_sub(Duration::from_millis(50))).await;
    assert!(guard.is_lost(), "the guard still trusts a lock about to expire in the store");
    let err = guard.check().unwrap_err();
    assert!(err.to_string().contains("expired at"), "{err}");
}

async fn a_python_lock_blocks_while_fresh_and_is_taken_over_once_stale(b: &Backend) {
    let python_lock = |acquired: chrono::DateTime<Utc>| {
        format!(
            r#"{{"owner": "incremental", "pid": 4242, "hostname": "py-host", "acquired": "{}", "ttl_hours": 12}}"#,
            python_time(acquired)
        )
    };
    b.put_raw(&b.lock(), python_lock(Utc::now() - chrono::Duration::hours(1))).await;
    let err = b.acquire(opts("backfill")).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("catalog locked by incremental on host py-host (pid 4242) since "),
        "{msg}"
    );
    assert!(msg.contains("expires in 10h 59m") || msg.contains("expires in 11h 00m"), "{msg}");

    b.put_raw(&b.lock(), python_lock(Utc::now() - chrono::Duration::hours(13))).await;
    let guard = b.acquire(opts("backfill")).await.unwrap();
    let written: serde_json::Value = serde_json::from_slice(&b.get_raw(&b.lock()).await).unwrap();
    assert_eq!(written["owner"], "backfill");
    guard.release().await.unwrap();
}

async fn a_lock_object_that_is_not_json_is_reported_not_overwritten(b: &Backend) {
    b.put_raw(&b.lock(), "garbage".into()).await;
    let err = b.acquire(opts("alpha")).await.unwrap_err();
    assert!(matches!(err, LockError::Unreadable { .. }), "{err}");
    assert!(err.to_string().contains(&format!("lock object {} is not a readable lock", b.lock())));
    assert_eq!(&b.get_raw(&b.lock()).await[..], b"garbage");
}

async fn the_catalog_round_trips_through_download_and_upload(b: &Backend) {
    let guard = b.acquire(opts("alpha")).await.unwrap();
    let mut first = CatalogCopy::download(&b.stores, &b.catalog(), b.dir.path().join("first.db"))
        .await
        .unwrap();
    assert_eq!(first.version(), None, "no catalog yet");
    assert!(!first.local_path().exists());
    std::fs::write(first.local_path(), b"sqlite v1").unwrap();
    first.upload(&guard).await.unwrap();
    assert_eq!(&b.get_raw(&b.catalog()).await[..], b"sqlite v1");
    // A second upload in the same run is based on the first.
    std::fs::write(first.local_path(), b"sqlite v2").unwrap();
    first.upload(&guard).await.unwrap();

    let second = CatalogCopy::download(&b.stores, &b.catalog(), b.dir.path().join("sub/second.db"))
        .await
        .unwrap();
    assert_eq!(std::fs::read(second.local_path()).unwrap(), b"sqlite v2");
    assert_eq!(second.version(), first.version());
    guard.release().await.unwrap();
}

async fn a_catalog_changed_after_download_is_not_overwritten(b: &Backend) {
    let guard = b.acquire(opts("alpha")).await.unwrap();
    let dir = b.dir.path();
    // Two runs both start from "no catalog": only the first to upload may create it.
    let mut one = CatalogCopy::download(&b.stores, &b.catalog(), dir.join("1.db")).await.unwrap();
    let mut two = CatalogCopy::download(&b.stores, &b.catalog(), dir.join("2.db")).await.unwrap();
    std::fs::write(one.local_path(), b"one").unwrap();
    std::fs::write(two.local_path(), b"two").unwrap();
    one.upload(&guard).await.unwrap();
    let err = two.upload(&guard).await.unwrap_err();
    assert!(matches!(err, CatalogSyncError::Changed { expected: None, .. }), "{err}");
    assert!(err.to_string().contains("changed since it was downloaded"), "{err}");

    // Two runs both start from "one": the second upload is refused.
    let mut three = CatalogCopy::download(&b.stores, &b.catalog(), dir.join("3.db")).await.unwrap();
    let mut four = CatalogCopy::download(&b.stores, &b.catalog(), dir.join("4.db")).await.unwrap();
    std::fs::write(three.local_path(), b"three").unwrap();
    std::fs::write(four.local_path(), b"four").unwrap();
    three.upload(&guard).await.unwrap();
    let err = four.upload(&guard).await.unwrap_err();
    assert!(matches!(err, CatalogSyncError::Changed { expected: Some(_), .. }), "{err}");
    assert_eq!(&b.get_raw(&b.catalog()).await[..], b"three");
    guard.release().await.unwrap();
}

/// 16 lockers race each round; all winners keep their guard until every racer has returned, so
/// the number of simultaneous holders is the number of winners.
async fn sixteen_concurrent_lockers_yield_exactly_one_holder_every_round(b: &Backend) {
    const RACERS: usize = 16;
    let rounds = 30;
    let holding = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    for round in 0..rounds {
        let tasks: Vec<_> = (0..RACERS)
            .map(|i| {
                let (stores, lock) = (b.stores.clone(), b.lock());
                let (holding, most) = (holding.clone(), most.clone());
                tokio::spawn(async move {
                    let got =
                        CatalogLock::acquire(&stores, &lock, opts(&format!("r{round}-{i}"))).await;
                    if got.is_ok() {
                        let now = holding.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                    }
                    got
                })
            })
            .collect();
        let mut winners = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                Ok(guard) => winners.push(guard),
                Err(e) => {
                    holder_owner(&e);
                }
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {} holders at once", winners.len());
        for w in winners {
            holding.fetch_sub(1, Ordering::SeqCst);
            w.release().await.unwrap();
        }
    }
    assert_eq!(most.load(Ordering::SeqCst), 1);
}

/// The strong form: 16 tasks each take the lock once per round, waiting for it with backoff,
/// hold it briefly and release it; no two ever hold it at once and every task gets it every round.
async fn sixteen_waiting_lockers_each_get_the_lock_every_round_one_at_a_time(b: &Backend) {
    const RACERS: usize = 16;
    const ROUNDS: usize = 3;
    let holding = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let got = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(tokio::sync::Barrier::new(RACERS));
    let tasks: Vec<_> = (0..RACERS)
        .map(|i| {
            let (stores, lock) = (b.stores.clone(), b.lock());
            let (holding, most, got) = (holding.clone(), most.clone(), got.clone());
            let barrier = barrier.clone();
            tokio::spawn(async move {
                for round in 0..ROUNDS {
                    barrier.wait().await;
                    let options = LockOptions {
                        wait: Some(Duration::from_secs(120)),
                        max_backoff: Duration::from_millis(300),
                        ..opts(&format!("r{round}-{i}"))
                    };
                    let guard = CatalogLock::acquire(&stores, &lock, options).await.unwrap();
                    let now = holding.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    guard.check().unwrap();
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    holding.fetch_sub(1, Ordering::SeqCst);
                    got.fetch_add(1, Ordering::SeqCst);
                    guard.release().await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(most.load(Ordering::SeqCst), 1, "two tasks held the lock at once");
    assert_eq!(got.load(Ordering::SeqCst), RACERS * ROUNDS);
}

/// 16 takers find the same expired lock; exactly one may replace it, and the others are refused
/// in the winner's name.
async fn sixteen_takers_of_one_expired_lock_yield_exactly_one_winner(b: &Backend) {
    const TAKERS: usize = 16;
    for round in 0..10 {
        let stale = format!(
            r#"{{"owner": "crashed-{round}", "pid": 1, "hostname": "gone", "acquired": "{}", "ttl_hours": 1}}"#,
            python_time(Utc::now() - chrono::Duration::hours(2))
        );
        b.put_raw(&b.lock(), stale).await;
        let tasks: Vec<_> = (0..TAKERS)
            .map(|i| {
                let (stores, lock) = (b.stores.clone(), b.lock());
                tokio::spawn(async move {
                    CatalogLock::acquire(&stores, &lock, opts(&format!("t{round}-{i}"))).await
                })
            })
            .collect();
        let mut winners = Vec::new();
        let mut refused_by = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                Ok(guard) => winners.push(guard),
                Err(e) => refused_by.push(holder_owner(&e).to_string()),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {} takers won", winners.len());
        let winner = winners.pop().unwrap();
        assert!(refused_by.iter().all(|o| o == winner.owner()), "round {round}: {refused_by:?}");
        winner.release().await.unwrap();
    }
}

macro_rules! conformance {
    ($($check:ident),* $(,)?) => {
        mod in_memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $check() {
                    let b = super::Backend::memory().unwrap();
                    super::$check(&b).await;
                }
            )*
        }
        mod local_filesystem {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $check() {
                    let b = super::Backend::local().unwrap();
                    super::$check(&b).await;
                }
            )*
        }
        mod moto_s3 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $check() {
                    let Some(b) = super::Backend::moto(stringify!($check)) else { return };
                    super::$check(&b).await;
                }
            )*
        }
    };
}

conformance!(
    an_acquired_lock_is_free_again_after_release,
    a_guard_dropped_without_release_frees_the_lock_in_the_background,
    a_second_acquirer_is_refused_with_the_holders_owner_host_and_pid,
    a_waiting_acquirer_gets_the_lock_once_the_holder_releases_it,
    a_waiting_acquirer_gives_up_at_its_deadline_naming_the_holder,
    an_expired_lock_is_taken_over_and_its_old_holder_can_neither_release_nor_upload,
    renewal_keeps_a_short_ttl_lock_held_well_past_its_ttl,
    a_renewing_holder_whose_lock_was_replaced_notices_it_lost_the_lock,
    a_python_lock_blocks_while_fresh_and_is_taken_over_once_stale,
    a_lock_object_that_is_not_json_is_reported_not_overwritten,
    the_catalog_round_trips_through_download_and_upload,
    a_catalog_changed_after_download_is_not_overwritten,
    sixteen_concurrent_lockers_yield_exactly_one_holder_every_round,
    sixteen_takers_of_one_expired_lock_yield_exactly_one_winner,
    an_upload_after_the_lock_object_was_replaced_is_refused_before_the_renewer_notices,
    an_upload_after_the_lock_object_was_deleted_is_refused,
    a_guard_counts_its_lock_as_expired_no_later_than_the_expiry_it_wrote,
    sixteen_waiting_lockers_each_get_the_lock_every_round_one_at_a_time,
);
