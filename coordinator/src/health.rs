//! `earthcatalog health`: asks a coordinator's `grpc.health.v1` service whether it is serving,
//! for container health checks and scripts (exit 0 when serving).

use std::time::Duration;

use anyhow::{Context, bail};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::cli::HealthArgs;

/// Checks once; an error says why the coordinator is not healthy.
pub async fn run(args: HealthArgs) -> anyhow::Result<()> {
    let channel =
        earthcatalog_common::rpc::client::channel(&args.coordinator, args.tls_ca.as_ref())?;
    let request = HealthCheckRequest { service: args.service.clone() };
    let timeout = Duration::from_secs_f64(args.timeout_seconds);
    let answer = tokio::time::timeout(timeout, HealthClient::new(channel).check(request))
        .await
        .with_context(|| format!("{} did not answer within {timeout:?}", args.coordinator))?
        .with_context(|| format!("health check of {}", args.coordinator))?;
    let status = answer.into_inner().status();
    if status != ServingStatus::Serving {
        bail!("{} reports {}", args.coordinator, status.as_str_name());
    }
    tracing::debug!(coordinator = %args.coordinator, "serving");
    Ok(())
}
