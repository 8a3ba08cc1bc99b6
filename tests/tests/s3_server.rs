//! The moto S3 test server harness: it serves S3, resets, and never outlives its test process.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::time::{Duration, Instant};

use bytes::Bytes;
use earthcatalog_tests::s3::S3Server;
use object_store::ObjectStoreExt;

/// Whether process `pid` still runs (a zombie awaiting its reaper counts as gone).
fn is_running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit(") ").next().is_some_and(|rest| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

fn wait_until_gone(pid: u32) -> bool {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if !is_running(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[tokio::test]
async fn a_private_server_stores_objects_forgets_them_on_reset_and_stops_on_drop() {
    let Some(server) = S3Server::start("private_server") else { return };
    let bucket = server.new_bucket().unwrap();
    let stores = server.stores();
    let object = stores.resolve(&bucket.join("dir/a.json")).unwrap();
    object.store.put(&object.path, Bytes::from_static(b"{}").into()).await.unwrap();
    let got = object.store.get(&object.path).await.unwrap().bytes().await.unwrap();
    assert_eq!(&got[..], b"{}");

    server.reset().unwrap();
    let err = object.store.get(&object.path).await.unwrap_err();
    assert!(matches!(err, object_store::Error::NotFound { .. }), "{err}");

    let (pid, endpoint) = (server.pid(), server.endpoint());
    assert!(std::fs::metadata(server.log_path()).is_ok());
    drop(server);
    assert!(!is_running(pid), "the server process must be killed and reaped on drop");
    let port = endpoint.rsplit(':').next().unwrap();
    assert!(std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_err());
}

#[test]
fn the_settings_and_environment_name_the_server_with_test_keys_in_us_east_1() {
    let Some(server) = S3Server::shared("settings") else { return };
    let s = server.settings();
    assert_eq!(s.endpoint.as_deref(), Some(server.endpoint().as_str()));
    assert_eq!((s.region.as_deref(), s.allow_http), (Some("us-east-1"), Some(true)));
    let env = server.env();
    let var = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(var("AWS_ENDPOINT_URL"), Some(server.endpoint()));
    assert_eq!(var("AWS_ALLOW_HTTP").as_deref(), Some("true"));
    assert_eq!(var("AWS_ACCESS_KEY_ID").as_deref(), Some("test"));
}

/// Run only as the child of the test below: starts the shared server, says its pid, panics.
#[test]
#[ignore = "helper run by a_panicking_test_binary_leaves_no_server_behind"]
fn child_that_starts_the_shared_server_and_panics() {
    if std::env::var_os("EC_S3_PANICKING_CHILD").is_none() {
        return;
    }
    let server = S3Server::shared("panicking_child").expect("moto available in the parent");
    println!("MOTO_PID={}", server.pid());
    panic!("a test failing while the shared server runs");
}

#[test]
fn a_panicking_test_binary_leaves_no_server_behind() {
    if S3Server::shared("panicking_parent").is_none() {
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_that_starts_the_shared_server_and_panics", "--ignored"])
        .args(["--nocapture", "--test-threads=1"])
        .env("EC_S3_PANICKING_CHILD", "1")
        .output()
        .unwrap();
    assert!(!out.status.success(), "the child test must fail");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let pid: u32 = stdout
        .lines()
        .find_map(|l| l.split_once("MOTO_PID=").map(|(_, p)| p))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("child printed no server pid:\n{stdout}"));
    assert!(wait_until_gone(pid), "moto (pid {pid}) outlived the test process that started it");
}
