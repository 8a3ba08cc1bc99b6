//! A multi-process backfill cluster under test: one coordinator (`earthcatalog coordinator`)
//! and any number of `earthcatalog-worker` processes, each with its own log file. Ports are
//! picked free, the coordinator is ready once its port accepts connections, processes can be
//! killed (`SIGKILL`), paused (`SIGSTOP`), resumed (`SIGCONT`) and restarted, and every child
//! is killed and reaped on drop.

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use earthcatalog_common::rpc::pb;
use earthcatalog_common::rpc::pb::coordinator_client::CoordinatorClient;

use crate::binaries;

/// How long a starting coordinator may take to listen (it reads the catalog first).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// One child process and its log.
#[derive(Debug)]
pub struct Proc {
    /// A name for messages.
    pub name: String,
    child: Child,
    log: PathBuf,
    exit: Option<ExitStatus>,
}

impl Proc {
    fn spawn(
        name: &str,
        exe: &Path,
        args: &[String],
        env: &[(String, String)],
        dir: &Path,
    ) -> anyhow::Result<Proc> {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&log)?;
        let child = Command::new(exe)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {name} ({})", exe.display()))?;
        Ok(Proc { name: name.to_string(), child, log, exit: None })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether it has exited (reaping it if so).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    /// Waits for the process to exit, up to `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(s) = self.exited() {
                return Ok(s);
            }
            if start.elapsed() > timeout {
                bail!("{} still running after {timeout:?}; its log:\n{}", self.name, self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `SIGKILL`, then reaps it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        self.exit = self.child.wait().ok();
    }

    /// Sends a signal by name (`STOP`, `CONT`, `TERM`).
    pub fn signal(&self, name: &str) -> anyhow::Result<()> {
        let status =
            Command::new("kill").args([format!("-{name}"), self.pid().to_string()]).status()?;
        if !status.success() {
            bail!("kill -{name} {} failed", self.pid());
        }
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.exit.is_none() {
            let _ = self.signal("CONT");
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A coordinator and its workers.
#[derive(Debug)]
pub struct Cluster {
    dir: tempfile::TempDir,
    port: u16,
    env: Vec<(String, String)>,
    command: String,
    coordinator_args: Vec<String>,
    /// The coordinator (the latest one started).
    pub coordinator: Option<Proc>,
    /// Workers, in start order.
    pub workers: Vec<Proc>,
    restarts: usize,
}

/// An endpoint that accepts connections and never answers: whatever a process sends there
/// waits for its own timeouts. The connections are held until the test process ends.
pub fn unresponsive_endpoint() -> anyhow::Result<String> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let url = format!("http://{}", listener.local_addr()?);
    std::thread::spawn(move || {
        let held: Vec<TcpStream> = listener.incoming().flatten().collect();
        drop(held);
    });
    Ok(url)
}

/// A port that was free on 127.0.0.1 a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}

impl Cluster {
    /// A cluster whose processes get `env`; `coordinator_args` are the backfill flags (the
    /// harness adds `--listen`).
    pub fn new(
        env: Vec<(String, String)>,
        coordinator_args: Vec<String>,
    ) -> anyhow::Result<Cluster> {
        Cluster::serving("coordinator", env, coordinator_args)
    }

    /// A cluster whose coordinator is `earthcatalog <command> <args>` (e.g. `compact`, whose
    /// partitions workers rewrite when it listens); the harness adds `--listen`.
    pub fn serving(
        command: &str,
        env: Vec<(String, String)>,
        args: Vec<String>,
    ) -> anyhow::Result<Cluster> {
        Ok(Cluster {
            dir: tempfile::tempdir()?,
            port: free_port()?,
            env,
            command: command.to_string(),
            coordinator_args: args,
            coordinator: None,
            workers: Vec::new(),
            restarts: 0,
        })
    }

    /// A folder for this cluster's files (logs, token, local catalog).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The coordinator's URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The coordinator's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts (or restarts) the coordinator and waits until it listens.
    pub fn start_coordinator(&mut self) -> anyhow::Result<()> {
        let mut args = vec![self.command.clone()];
        args.extend(self.coordinator_args.iter().cloned());
        args.extend(["--listen".to_string(), format!("127.0.0.1:{}", self.port)]);
        let name = format!("coordinator-{}", self.restarts);
        self.restarts += 1;
        let mut p =
            Proc::spawn(&name, &binaries::earthcatalog(), &args, &self.env, self.dir.path())?;
        let start = Instant::now();
        while TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_err() {
            if let Some(s) = p.exited() {
                bail!("{name} exited with {s} before listening; its log:\n{}", p.log());
            }
            if start.elapsed() > READY_TIMEOUT {
                bail!("{name} not listening after {READY_TIMEOUT:?}; its log:\n{}", p.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.coordinator = Some(p);
        Ok(())
    }

    /// Starts a worker with `extra` flags (after `--coordinator`); returns its index.
    pub fn start_worker<S: AsRef<str>>(&mut self, extra: &[S]) -> anyhow::Result<usize> {
        self.start_worker_at(&self.url(), extra)
    }

    /// Starts a worker told to reach the coordinator at `url` (e.g. `https://localhost:PORT`).
    pub fn start_worker_at<S: AsRef<str>>(
        &mut self,
        url: &str,
        extra: &[S],
    ) -> anyhow::Result<usize> {
        self.start_worker_with(url, extra, &[])
    }

    /// Starts a worker at `url` whose environment also has `env` (later entries win).
    pub fn start_worker_with<S: AsRef<str>>(
        &mut self,
        url: &str,
        extra: &[S],
        env: &[(String, String)],
    ) -> anyhow::Result<usize> {
        let mut args = vec!["--coordinator".to_string(), url.to_string()];
        args.extend(extra.iter().map(|s| s.as_ref().to_string()));
        let name = format!("worker-{}", self.workers.len());
        let env: Vec<(String, String)> = self.env.iter().chain(env).cloned().collect();
        let p = Proc::spawn(&name, &binaries::worker(), &args, &env, self.dir.path())?;
        self.workers.push(p);
        Ok(self.workers.len() - 1)
    }

    /// The coordinator process.
    pub fn coordinator(&mut self) -> &mut Proc {
        self.coordinator.as_mut().unwrap_or_else(|| panic!("no coordinator started"))
    }

    /// Asks the coordinator for its status (with `token`, if it needs one).
    pub fn status(&self, token: Option<&str>) -> anyhow::Result<pb::StatusResponse> {
        let url = self.url();
        let token = token.map(|t| format!("Bearer {t}"));
        // A runtime per call: when it is dropped, the connection closes (an idle runtime would
        // keep it open and hold up the coordinator's graceful shutdown).
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(async move {
            let mut client = CoordinatorClient::connect(url).await?;
            let mut request = tonic::Request::new(pb::StatusRequest {});
            if let Some(t) = token {
                request.metadata_mut().insert("authorization", t.parse()?);
            }
            Ok(client.status(request).await?.into_inner())
        })
    }

    /// Polls the status until `ready` holds; fails after `timeout` or if the coordinator exits.
    pub fn wait_status(
        &mut self,
        token: Option<&str>,
        timeout: Duration,
        what: &str,
        ready: impl Fn(&pb::StatusResponse) -> bool,
    ) -> anyhow::Result<pb::StatusResponse> {
        let start = Instant::now();
        loop {
            if let Ok(s) = self.status(token)
                && ready(&s)
            {
                return Ok(s);
            }
            if let Some(s) = self.coordinator().exited() {
                bail!(
                    "coordinator exited with {s} while waiting for {what}; log:\n{}",
                    self.coordinator().log()
                );
            }
            if start.elapsed() > timeout {
                bail!(
                    "no {what} after {timeout:?}; coordinator log:\n{}",
                    self.coordinator().log()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Pauses (`SIGSTOP`) worker `worker` at a moment it holds a `phase` lease, and leaves it
    /// paused. Only `worker` may be running. A worker whose last task finished between the
    /// status poll and the signal holds nothing, so after the signal the status is read again
    /// (once in-flight calls have landed) and the pause is retried until a lease is caught.
    pub fn pause_holding_a_lease(
        &mut self,
        worker: usize,
        token: Option<&str>,
        phase: &str,
    ) -> anyhow::Result<()> {
        let leased = |s: &pb::StatusResponse| {
            let counts = if phase == "ingest" { &s.ingest } else { &s.compact };
            s.phase == phase && counts.as_ref().is_some_and(|c| c.leased >= 1)
        };
        let start = Instant::now();
        loop {
            self.wait_status(token, READY_TIMEOUT, &format!("a {phase} lease"), leased)?;
            self.workers[worker].signal("STOP")?;
            std::thread::sleep(Duration::from_millis(300));
            if leased(&self.status(token)?) {
                return Ok(());
            }
            self.workers[worker].signal("CONT")?;
            if start.elapsed() > READY_TIMEOUT {
                bail!("{} never held a {phase} lease when paused", self.workers[worker].name);
            }
        }
    }

    /// Waits until a log line of process `proc` contains `needle`.
    pub fn wait_log(proc: &mut Proc, needle: &str, timeout: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        while !proc.log().contains(needle) {
            if start.elapsed() > timeout {
                bail!("{} never logged '{needle}'; its log:\n{}", proc.name, proc.log());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Proc::drop kills and reaps each child; when a test failed, keep the logs readable.
        if std::thread::panicking() {
            for p in self.coordinator.iter().chain(&self.workers) {
                eprintln!("---- {} ----\n{}", p.name, p.log());
            }
        }
    }
}
