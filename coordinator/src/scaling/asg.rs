//! `--scale-asg NAME`: the coordinator sets an EC2 Auto Scaling group's desired capacity to the
//! workers its rule wants, at start, whenever the number changes, and to 0 at the end.
//!
//! The client uses the AWS SDK's standard credential chain and region (environment, profile,
//! web identity, container or instance role). A failed call is logged and tried again with a
//! growing pause; it never stops the run: the fleet then keeps its last size.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_autoscaling::Client;
use aws_sdk_autoscaling::config::BehaviorVersion;
use aws_sdk_autoscaling::config::timeout::TimeoutConfig;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use earthcatalog_common::logging::error_report;
use tokio_util::sync::CancellationToken;

use crate::lease::scheduler::Scheduler;

/// How often the wanted number is compared with what the group was last given: a change
/// reaches the group within this, and an unchanged number costs no call.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);
/// First pause after a failed call; doubled per failure.
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// Longest pause between tries (well inside the API's throttling limits).
const MAX_RETRY: Duration = Duration::from_secs(30);
/// One call with the SDK's own retries; an unreachable endpoint must not stall the follower.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// After the run, how long the last call (to 0) is tried before the coordinator exits anyway.
const FINAL_TRIES: Duration = Duration::from_secs(60);

/// Why an Auto Scaling call failed.
#[derive(Debug, thiserror::Error)]
pub enum AsgError {
    /// Reading the group failed.
    #[error("reading Auto Scaling group {group}")]
    Describe {
        /// The group.
        group: String,
        /// The SDK's error.
        #[source]
        source: Box<aws_sdk_autoscaling::Error>,
    },
    /// The group does not exist (or is not visible to these credentials).
    #[error("Auto Scaling group {group} not found")]
    NotFound {
        /// The group.
        group: String,
    },
    /// Setting the desired capacity failed.
    #[error("setting the desired capacity of Auto Scaling group {group} to {capacity}")]
    Set {
        /// The group.
        group: String,
        /// The capacity asked for.
        capacity: u32,
        /// The SDK's error.
        #[source]
        source: Box<aws_sdk_autoscaling::Error>,
    },
}

/// One Auto Scaling group and a client for it.
#[derive(Debug, Clone)]
pub struct AutoScalingGroup {
    client: Client,
    name: String,
}

impl AutoScalingGroup {
    /// A client for group `name` from the standard AWS configuration chain.
    pub async fn connect(name: String) -> Self {
        // rustls on ring: the TLS stack the rest of the binary already links.
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let timeouts = TimeoutConfig::builder().operation_timeout(CALL_TIMEOUT).build();
        let config = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http)
            .timeout_config(timeouts)
            .load()
            .await;
        AutoScalingGroup { client: Client::new(&config), name }
    }

    /// The group's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The group's desired capacity now.
    pub async fn desired_capacity(&self) -> Result<u32, AsgError> {
        let out = self
            .client
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(&self.name)
            .send()
            .await
            .map_err(|e| AsgError::Describe {
                group: self.name.clone(),
                source: Box::new(e.into()),
            })?;
        out.auto_scaling_groups()
            .iter()
            .find(|g| g.auto_scaling_group_name() == Some(self.name.as_str()))
            .and_then(|g| g.desired_capacity())
            .map(|n| u32::try_from(n).unwrap_or(0))
            .ok_or_else(|| AsgError::NotFound { group: self.name.clone() })
    }

    /// Sets the desired capacity (ignoring the group's own cooldown: the rule has its own).
    pub async fn set_desired_capacity(&self, capacity: u32) -> Result<(), AsgError> {
        self.client
            .set_desired_capacity()
            .auto_scaling_group_name(&self.name)
            .desired_capacity(i32::try_from(capacity).unwrap_or(i32::MAX))
            .honor_cooldown(false)
            .send()
            .await
            .map_err(|e| AsgError::Set {
                group: self.name.clone(),
                capacity,
                source: Box::new(e.into()),
            })?;
        Ok(())
    }
}

/// Keeps `group`'s desired capacity equal to the workers `scheduler` wants until `stop`, then
/// makes the last change (0 once the run is over) within [`FINAL_TRIES`].
pub async fn follow(group: AutoScalingGroup, scheduler: Arc<Scheduler>, stop: CancellationToken) {
    let mut follower = Follower::new(group);
    let mut ticker = tokio::time::interval(FOLLOW_EVERY);
    loop {
        tokio::select! {
            _ = ticker.tick() => follower.step(scheduler.status().fleet.wanted).await,
            () = stop.cancelled() => break,
        }
    }
    let deadline = Instant::now() + FINAL_TRIES;
    loop {
        let wanted = scheduler.status().fleet.wanted;
        follower.step(wanted).await;
        if follower.applied == Some(wanted) {
            return;
        }
        if Instant::now() >= deadline {
            tracing::error!(
                group = follower.group.name(),
                wanted,
                "the Auto Scaling group could not be set at the end of the run; set its desired capacity by hand"
            );
            return;
        }
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
}

/// What the group was last given, and when to try again after a failure.
struct Follower {
    group: AutoScalingGroup,
    applied: Option<u32>,
    retry_at: Option<Instant>,
    pause: Duration,
}

impl Follower {
    fn new(group: AutoScalingGroup) -> Self {
        Follower { group, applied: None, retry_at: None, pause: FIRST_RETRY }
    }

    /// Gives the group `wanted` if it does not have it yet and no retry pause is running.
    async fn step(&mut self, wanted: u32) {
        if self.applied == Some(wanted) || self.retry_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        match self.group.set_desired_capacity(wanted).await {
            Ok(()) => {
                tracing::info!(
                    group = self.group.name(),
                    desired = wanted,
                    "Auto Scaling group set"
                );
                self.applied = Some(wanted);
                self.retry_at = None;
                self.pause = FIRST_RETRY;
            }
            Err(e) => {
                tracing::warn!(
                    retry_in = ?self.pause,
                    "{}; tried again later, the run goes on",
                    error_report(&e)
                );
                self.retry_at = Some(Instant::now() + self.pause);
                self.pause = (self.pause * 2).min(MAX_RETRY);
            }
        }
    }
}
