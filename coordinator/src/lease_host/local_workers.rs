//! `--local-workers N`: worker processes started beside the coordinator, the same
//! `earthcatalog-worker` binary a fleet runs, found next to this executable (or at
//! `EARTHCATALOG_WORKER_BIN`). They are stopped with the coordinator: told the run is over
//! through the lease service, and killed if they have not exited by then.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::process::{Child, Command};

use super::ServiceConfig;

/// Name of the worker binary.
const WORKER_BIN: &str = "earthcatalog-worker";
/// How long a local worker keeps trying to reach the coordinator (it starts with it).
const CONNECT_SECONDS: &str = "30";

/// The worker processes of one run.
#[derive(Debug, Default)]
pub struct LocalWorkers {
    children: Vec<Child>,
}

impl LocalWorkers {
    /// Starts `cfg.local_workers` worker processes leasing from the coordinator at `address`.
    pub fn start(cfg: &ServiceConfig, address: SocketAddr) -> anyhow::Result<Self> {
        if cfg.local_workers == 0 {
            return Ok(LocalWorkers { children: Vec::new() });
        }
        let binary = worker_binary()?;
        let scheme = if cfg.tls.is_some() { "https" } else { "http" };
        let host = if address.ip().is_unspecified() {
            SocketAddr::from(([127, 0, 0, 1], address.port()))
        } else {
            address
        };
        let children = (0..cfg.local_workers)
            .map(|i| {
                let mut command = Command::new(&binary);
                command
                    .arg("--coordinator")
                    .arg(format!("{scheme}://{host}"))
                    .arg("--name")
                    .arg(format!("local-{i}"))
                    .arg("--slots")
                    .arg(cfg.worker_slots.to_string())
                    .arg("--connect-seconds")
                    .arg(CONNECT_SECONDS)
                    .arg("--drain-seconds")
                    .arg("0")
                    // Secrets and settings through the environment: never in a process listing.
                    .env_remove("EARTHCATALOG_TOKEN_FILE")
                    // Each process needs its own port; local workers serve no metrics.
                    .env_remove("EARTHCATALOG_METRICS_LISTEN")
                    .stdin(Stdio::null())
                    .kill_on_drop(true);
                match &cfg.token {
                    Some(t) => command.env("EARTHCATALOG_TOKEN", t),
                    None => command.env_remove("EARTHCATALOG_TOKEN"),
                };
                if let Some((cert, _)) = &cfg.tls {
                    command.arg("--tls-ca").arg(cert);
                }
                if !cfg.s3_buckets.is_empty() {
                    command.env("EARTHCATALOG_S3_BUCKETS", &cfg.s3_buckets);
                }
                command
                    .spawn()
                    .with_context(|| format!("starting local worker {i} ({})", binary.display()))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        tracing::info!(workers = children.len(), binary = %binary.display(), "local workers started");
        Ok(LocalWorkers { children })
    }

    /// Waits up to `grace` for the workers to exit on their own, then kills the rest.
    pub async fn stop(mut self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        for (i, child) in self.children.iter_mut().enumerate() {
            match tokio::time::timeout_at(deadline, child.wait()).await {
                Ok(Ok(status)) if status.success() => {}
                Ok(Ok(status)) => tracing::info!(worker = i, %status, "local worker exited"),
                Ok(Err(e)) => tracing::warn!(worker = i, error = %e, "waiting for a local worker"),
                Err(_) => {
                    tracing::info!(worker = i, "local worker still running: stopping it");
                    if let Err(e) = child.kill().await {
                        tracing::warn!(worker = i, error = %e, "could not stop a local worker");
                    }
                }
            }
        }
    }
}

/// The worker binary: `EARTHCATALOG_WORKER_BIN`, else next to this executable.
fn worker_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("EARTHCATALOG_WORKER_BIN") {
        return Ok(PathBuf::from(path));
    }
    let me = std::env::current_exe().context("finding this executable")?;
    let beside = me.with_file_name(WORKER_BIN);
    if beside.is_file() {
        return Ok(beside);
    }
    anyhow::bail!(
        "--local-workers needs the {WORKER_BIN} binary next to {} (or set EARTHCATALOG_WORKER_BIN); build it with `cargo build --workspace --bins`, or use --local-workers 0 and start workers yourself",
        me.display()
    )
}
