//! `earthcatalog-worker` arguments (every flag can also come from an environment variable).

use std::time::Duration;

use clap::Parser;
use earthcatalog_common::rpc::client::CoordinatorArgs;
use earthcatalog_common::s3_args::S3BucketArgs;
use earthcatalog_worker::WorkerConfig;

/// A stateless earthcatalog backfill worker: leases tasks from a coordinator and runs them.
///
/// Exit codes: 0 when the coordinator says the run is finished; 75 when the worker stopped
/// early (SIGTERM or a spot interruption notice) and handed its unfinished tasks back, so the
/// run still needs workers; 1 on an error (coordinator unreachable, token refused, …).
#[derive(Debug, Parser)]
#[command(name = "earthcatalog-worker", version, about, long_about)]
pub struct Cli {
    /// How to reach the coordinator.
    #[command(flatten)]
    pub connect: CoordinatorArgs,
    /// Tasks run at once.
    #[arg(long, env = "EARTHCATALOG_WORKER_SLOTS", default_value_t = 2)]
    pub slots: usize,
    /// Name shown in the coordinator's logs [default: host name and process id].
    #[arg(long, env = "EARTHCATALOG_WORKER_NAME")]
    pub name: Option<String>,
    /// Seconds to keep trying to reach the coordinator before giving up.
    #[arg(long, env = "EARTHCATALOG_CONNECT_SECONDS", default_value_t = 120)]
    pub connect_seconds: u64,
    /// Seconds running tasks may take to finish after SIGTERM before being handed back.
    #[arg(long, env = "EARTHCATALOG_DRAIN_SECONDS", default_value_t = 30)]
    pub drain_seconds: u64,
    /// Poll the EC2 instance metadata service for spot interruption notices.
    #[arg(long, env = "EARTHCATALOG_SPOT")]
    pub spot: bool,
    /// Instance metadata endpoint.
    #[arg(long, env = "EARTHCATALOG_IMDS_ENDPOINT", default_value = "http://169.254.169.254")]
    pub imds_endpoint: String,
    /// Per-bucket S3 settings.
    #[command(flatten)]
    pub s3: S3BucketArgs,
    /// Serve Prometheus metrics over HTTP on this address (e.g. 0.0.0.0:9100) [default: none].
    #[arg(long, env = "EARTHCATALOG_METRICS_LISTEN")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Log format: `text` or `json`.
    #[arg(long, env = "EARTHCATALOG_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}

impl TryFrom<Cli> for WorkerConfig {
    type Error = anyhow::Error;

    fn try_from(c: Cli) -> anyhow::Result<Self> {
        if c.slots == 0 {
            anyhow::bail!("--slots must be at least 1");
        }
        let name = c.name.unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into());
            format!("{host}-{}", std::process::id())
        });
        Ok(WorkerConfig {
            token: c.connect.token()?,
            coordinator: c.connect.coordinator,
            name,
            slots: c.slots,
            tls_ca: c.connect.tls_ca,
            connect_for: Duration::from_secs(c.connect_seconds),
            drain_window: Duration::from_secs(c.drain_seconds),
            spot_endpoint: c.spot.then_some(c.imds_endpoint),
            handle_signals: true,
        })
    }
}
