//! Hosting the lease service for one run (a backfill, a distributed compaction): the settings
//! from `LeaseServiceArgs`, the gRPC endpoint, the optional metrics and status page, the local
//! workers, and the order in which they stop so that every worker hears that the run is over.

mod local_workers;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use earthcatalog_common::rpc::client::read_token;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cli::LeaseServiceArgs;
use crate::lease::scheduler::{LeaseSettings, Scheduler};
use crate::lease::state::RetryRules;
use crate::server::{Endpoint, ServeOptions};
use local_workers::LocalWorkers;

/// How often a driver expires overdue leases when no worker calls in.
pub const SWEEP_EVERY: Duration = Duration::from_millis(500);
/// First wait before retrying a failed task; doubled per attempt (prior art: 1 s × 2).
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Longest wait before retrying a failed task.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// After the run, how long workers get to hear "finished" before the service stops (idle
/// workers ask every 250 ms; busy ones renew at least every lease/4).
pub const FAREWELL: Duration = Duration::from_secs(5);

/// Default address when workers run beside the coordinator: loopback, any free port.
pub const EMBEDDED_LISTEN: &str = "127.0.0.1:0";

/// Validated settings of the lease service.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// Prometheus metrics address, if any.
    pub metrics_listen: Option<SocketAddr>,
    /// Status page address, if any.
    pub status_listen: Option<SocketAddr>,
    /// Worker processes started beside the coordinator.
    pub local_workers: usize,
    /// The `--s3-bucket` entries, passed on to local workers.
    pub s3_buckets: String,
    /// Slots per local worker.
    pub worker_slots: usize,
    /// Lease length.
    pub lease: Duration,
    /// Renewal interval.
    pub renew_every: Duration,
    /// Attempt cap.
    pub max_attempts: u32,
    /// Shared token.
    pub token: Option<String>,
    /// TLS certificate and key.
    pub tls: Option<(PathBuf, PathBuf)>,
}

impl ServiceConfig {
    /// Validates `a`; `default_listen` and `default_workers` apply when the flags are absent.
    pub fn from_args(
        a: &LeaseServiceArgs,
        default_listen: &str,
        default_workers: usize,
    ) -> anyhow::Result<ServiceConfig> {
        if a.max_attempts == 0 {
            bail!("--max-attempts must be at least 1");
        }
        if a.lease_seconds == 0 {
            bail!("--lease-seconds must be at least 1");
        }
        let lease = Duration::from_secs(a.lease_seconds);
        // A quarter of the lease leaves three renewals to fail before the lease runs out.
        let renew_every = match a.renew_seconds {
            Some(s) if s > 0.0 && s < a.lease_seconds as f64 => Duration::from_secs_f64(s),
            Some(s) => bail!("--renew-seconds {s} must be above 0 and below --lease-seconds"),
            None => lease / 4,
        };
        let listen = match a.listen {
            Some(l) => l,
            None => default_listen.parse().context("default listen address")?,
        };
        Ok(ServiceConfig {
            listen,
            metrics_listen: a.metrics_listen,
            status_listen: a.status_listen,
            local_workers: a.local_workers.unwrap_or(default_workers),
            s3_buckets: String::new(),
            worker_slots: a.worker_slots.max(1),
            lease,
            renew_every,
            max_attempts: a.max_attempts,
            token: read_token(a.token.clone(), a.token_file.as_deref())?,
            tls: a.tls_cert.clone().zip(a.tls_key.clone()),
        })
    }

    /// The lease lengths and retry rules of the scheduler.
    pub fn lease_settings(&self) -> LeaseSettings {
        LeaseSettings {
            lease: self.lease,
            renew_every: self.renew_every,
            rules: RetryRules {
                max_attempts: self.max_attempts,
                first_backoff: FIRST_BACKOFF,
                max_backoff: MAX_BACKOFF,
            },
        }
    }
}

/// A scheduler served to workers: the endpoint, its observers and the local workers.
pub struct LeaseHost {
    scheduler: Arc<Scheduler>,
    workers: LocalWorkers,
    server: JoinHandle<anyhow::Result<()>>,
    serve_stop: CancellationToken,
}

impl LeaseHost {
    /// Serves `scheduler` as `cfg` says and starts the local workers.
    pub async fn start(cfg: &ServiceConfig, scheduler: Arc<Scheduler>) -> anyhow::Result<Self> {
        if let Some(addr) = cfg.metrics_listen {
            crate::metrics::serve(addr, scheduler.clone())?;
        }
        if let Some(addr) = cfg.status_listen {
            crate::status_page::serve(addr, scheduler.clone(), cfg.token.clone()).await?;
        }
        let endpoint = Endpoint::bind(cfg.listen).await?;
        let address = endpoint.address();
        let serve_stop = CancellationToken::new();
        let options = ServeOptions { token: cfg.token.clone(), tls: cfg.tls.clone() };
        let server = tokio::spawn(endpoint.serve(scheduler.clone(), options, serve_stop.clone()));
        let workers = match LocalWorkers::start(cfg, address) {
            Ok(w) => w,
            Err(e) => {
                serve_stop.cancel();
                return Err(e);
            }
        };
        Ok(LeaseHost { scheduler, workers, server, serve_stop })
    }

    /// Ends the run for the workers (`drain` first when it failed), gives them the farewell
    /// to hear it, and stops the local ones. The endpoint still answers until [`Self::close`].
    pub async fn finish(&mut self, ok: bool) {
        if !ok {
            self.scheduler.drain();
        }
        self.scheduler.finish();
        let deadline = Instant::now() + FAREWELL;
        while self.scheduler.workers_not_told() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        std::mem::take(&mut self.workers).stop(FAREWELL).await;
    }

    /// Stops the endpoint.
    pub async fn close(self) {
        self.serve_stop.cancel();
        // Graceful shutdown waits for clients to hang up; one that never does must not hold
        // the run.
        match tokio::time::timeout(FAREWELL, self.server).await {
            Ok(Ok(Err(e))) => tracing::warn!("gRPC service: {e:#}"),
            Ok(Err(e)) => tracing::warn!("gRPC service task: {e}"),
            Ok(Ok(Ok(()))) => {}
            Err(_) => tracing::info!("clients still connected at exit"),
        }
    }
}
