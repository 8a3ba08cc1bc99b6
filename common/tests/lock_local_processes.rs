//! The lock on a local path excludes other *processes*, not just other tasks: its compare-and-swap
//! runs under an OS advisory lock. Child processes (this test binary, re-run in helper mode) take
//! the lock in turns; while holding it each creates a marker file with `create_new`, which fails
//! if another process holds the lock at the same time.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use earthcatalog_common::location::Location;
use earthcatalog_common::lock::{CatalogLock, LockOptions};
use earthcatalog_common::stores::Stores;

const CHILDREN: usize = 6;
const ROUNDS: usize = 15;
const CHILD_ENV: &str = "EC_LOCK_CHILD_DIR";

/// Run only as a child of the test below.
#[tokio::test]
#[ignore = "helper run by processes_sharing_a_local_lock_never_hold_it_at_the_same_time"]
async fn child_takes_the_local_lock_repeatedly() {
    let Some(dir) = std::env::var_os(CHILD_ENV).map(PathBuf::from) else { return };
    let stores = Stores::new(Default::default());
    let lock = Location::local(dir.join("catalog/.lock")).unwrap();
    let marker = dir.join("holder");
    let me = format!("pid-{}", std::process::id());
    for round in 0..ROUNDS {
        let options = LockOptions {
            owner: me.clone(),
            wait: Some(Duration::from_secs(30)),
            max_backoff: Duration::from_millis(50),
            renew_every: None,
            ..Default::default()
        };
        let guard = CatalogLock::acquire(&stores, &lock, options).await.unwrap();
        let created = std::fs::OpenOptions::new().write(true).create_new(true).open(&marker);
        if let Err(e) = created {
            let other = std::fs::read_to_string(&marker).unwrap_or_default();
            panic!("{me} round {round}: someone else holds the lock too ({other}): {e}");
        }
        std::fs::write(&marker, &me).unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
        std::fs::remove_file(&marker).unwrap();
        guard.release().await.unwrap();
    }
    println!("ACQUIRED={ROUNDS}");
}

#[test]
fn processes_sharing_a_local_lock_never_hold_it_at_the_same_time() {
    let dir = tempfile::tempdir().unwrap();
    let children: Vec<_> = (0..CHILDREN)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "child_takes_the_local_lock_repeatedly", "--ignored"])
                .args(["--nocapture", "--test-threads=1"])
                .env(CHILD_ENV, dir.path())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut acquired = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "child failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        acquired += stdout
            .lines()
            .find_map(|l| {
                l.split_once("ACQUIRED=").and_then(|(_, n)| n.trim().parse::<usize>().ok())
            })
            .unwrap_or(0);
    }
    assert_eq!(acquired, CHILDREN * ROUNDS);
}
