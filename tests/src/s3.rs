//! A local S3 server for tests: moto with every request serialized (`tests/s3/moto_serialized.py`),
//! the only local server whose conditional writes are atomic under concurrent clients.
//!
//! [`S3Server::shared`] starts one server per test binary; tests sharing it each use their own
//! bucket ([`S3Server::new_bucket`]). [`S3Server::start`] gives a private server whose state a
//! test may [`S3Server::reset`]. The server is killed and reaped when an `S3Server` is dropped;
//! the shared one (a static, never dropped) exits by itself when the test process exits, because
//! the wrapper watches its standard input, a pipe whose writing end only this process holds.
//! Each server logs to `<tmp>/earthcatalog-moto-<port>.log`.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use earthcatalog_common::location::Location;
use earthcatalog_common::stores::{S3Settings, Stores};

use crate::python::{Python, in_ci, workspace_root};

/// How long a starting server may take to answer (it takes about a second on an idle machine;
/// two busy cores can make it several times slower).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Static test credentials: moto accepts any non-empty pair.
const TEST_KEY: &str = "test";

/// A running moto S3 server on a loopback port.
#[derive(Debug)]
pub struct S3Server {
    child: Mutex<Child>,
    port: u16,
    log: PathBuf,
}

impl S3Server {
    /// The server shared by this test binary, or `None` (after a note) when python or moto is
    /// missing outside CI. Panics in CI when it cannot run, and when it fails to start.
    pub fn shared(test: &str) -> Option<&'static S3Server> {
        static SHARED: OnceLock<Option<S3Server>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                let python = Self::python(test)?;
                Some(Self::start_with(&python).unwrap_or_else(|e| panic!("{test}: {e:#}")))
            })
            .as_ref()
    }

    /// A private server (killed on drop), or `None` as for [`S3Server::shared`].
    pub fn start(test: &str) -> Option<S3Server> {
        let python = Self::python(test)?;
        Some(Self::start_with(&python).unwrap_or_else(|e| panic!("{test}: {e:#}")))
    }

    fn python(test: &str) -> Option<Python> {
        let python = Python::find(test)?;
        if python.run("import moto", &[]).is_ok() {
            return Some(python);
        }
        let msg = format!("{test}: moto is not installed in {}", python.exe().display());
        if in_ci() {
            panic!("{msg}");
        }
        eprintln!("SKIPPED {msg}");
        None
    }

    fn start_with(python: &Python) -> anyhow::Result<S3Server> {
        let script = workspace_root().join("tests/s3/moto_serialized.py");
        // A port found free can be taken before moto binds it; try a few.
        let mut last_err = None;
        for _ in 0..3 {
            let port = free_port()?;
            let log = std::env::temp_dir().join(format!("earthcatalog-moto-{port}.log"));
            let log_file = std::fs::File::create(&log)
                .with_context(|| format!("creating server log {}", log.display()))?;
            let child = Command::new(python.exe())
                .arg(&script)
                .args(["--exit-with-parent", "-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::piped())
                .stdout(log_file.try_clone()?)
                .stderr(log_file)
                .spawn()
                .with_context(|| format!("starting {}", script.display()))?;
            let server = S3Server { child: Mutex::new(child), port, log };
            match server.wait_until_up() {
                Ok(()) => {
                    eprintln!("moto S3 server on port {port}, log {}", server.log.display());
                    return Ok(server);
                }
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("moto did not start")))
    }

    fn wait_until_up(&self) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.lock_child().try_wait() {
                bail!("moto exited with {status} during startup; see {}", self.log.display());
            }
            if matches!(self.request("GET", "/"), Ok(200)) {
                return Ok(());
            }
            if started.elapsed() > STARTUP_TIMEOUT {
                bail!("moto did not answer within {STARTUP_TIMEOUT:?}; see {}", self.log.display());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn lock_child(&self) -> std::sync::MutexGuard<'_, Child> {
        self.child.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The endpoint URL (`http://127.0.0.1:<port>`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.lock_child().id()
    }

    /// The server's log file.
    pub fn log_path(&self) -> &std::path::Path {
        &self.log
    }

    /// Client settings for this server.
    pub fn settings(&self) -> S3Settings {
        S3Settings {
            endpoint: Some(self.endpoint()),
            region: Some("us-east-1".into()),
            allow_http: Some(true),
            access_key_id: Some(TEST_KEY.into()),
            secret_access_key: Some(TEST_KEY.into()),
            ..Default::default()
        }
    }

    /// Stores whose S3 clients talk to this server.
    pub fn stores(&self) -> Stores {
        Stores::new(self.settings())
    }

    /// The same settings as environment variables, for child processes.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", TEST_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", TEST_KEY.into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_DEFAULT_REGION", "us-east-1".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Creates `bucket`.
    pub fn create_bucket(&self, bucket: &str) -> anyhow::Result<()> {
        match self.request("PUT", &format!("/{bucket}"))? {
            200 => Ok(()),
            status => bail!("creating bucket {bucket} answered HTTP {status}"),
        }
    }

    /// Creates a bucket with a name no other test uses and returns its `s3://` location.
    pub fn new_bucket(&self) -> anyhow::Result<Location> {
        let bucket = unique_name("ec-test");
        self.create_bucket(&bucket)?;
        Ok(Location::S3 { bucket, prefix: String::new() })
    }

    /// Wipes every bucket and object (only for a server this test started itself).
    pub fn reset(&self) -> anyhow::Result<()> {
        match self.request("POST", "/moto-api/reset")? {
            200 => Ok(()),
            status => bail!("resetting moto answered HTTP {status}"),
        }
    }

    /// Sends a bodiless HTTP/1.0 request and returns the status code.
    fn request(&self, method: &str, path: &str) -> anyhow::Result<u16> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(
            stream,
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\n\r\n",
            self.port
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let status =
            response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).with_context(|| {
                format!("unreadable HTTP response to {method} {path}: {response:.200}")
            })?;
        Ok(status)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let mut child = self.lock_child();
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A port that was free on 127.0.0.1 a moment ago.
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}

/// `<prefix>-<random hex>`: lowercase, 3-63 characters, valid as a bucket name.
pub fn unique_name(prefix: &str) -> String {
    use std::hash::{BuildHasher, RandomState};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let h = RandomState::new().hash_one((n, nanos, std::process::id()));
    format!("{prefix}-{h:016x}")
}
