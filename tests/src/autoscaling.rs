//! EC2 Auto Scaling groups on the test's moto server (moto serves every AWS API it mocks on
//! one endpoint, the S3 server's): create a group, read its desired capacity. The client is the
//! AWS SDK with the server's static test credentials.

use anyhow::Context;
use aws_sdk_autoscaling::Client;
use aws_sdk_autoscaling::config::{BehaviorVersion, Credentials, Region};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

use crate::s3::S3Server;

/// An image id moto accepts for launch configurations (one of its built-in AMIs).
const MOTO_AMI: &str = "ami-12c6146b";

/// Auto Scaling on `server`.
#[derive(Debug, Clone)]
pub struct AutoScaling {
    client: Client,
}

impl AutoScaling {
    /// A client for the Auto Scaling API of `server`.
    pub fn on(server: &S3Server) -> Self {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let config = aws_sdk_autoscaling::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(server.endpoint())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "moto"))
            .http_client(http)
            .build();
        AutoScaling { client: Client::from_conf(config) }
    }

    /// Creates group `name` (0 to `max` instances, none wanted yet).
    pub async fn create_group(&self, name: &str, max: i32) -> anyhow::Result<()> {
        let launch = format!("{name}-launch");
        self.client
            .create_launch_configuration()
            .launch_configuration_name(&launch)
            .image_id(MOTO_AMI)
            .instance_type("t2.micro")
            .send()
            .await
            .with_context(|| format!("creating launch configuration {launch}"))?;
        self.client
            .create_auto_scaling_group()
            .auto_scaling_group_name(name)
            .launch_configuration_name(&launch)
            .min_size(0)
            .max_size(max)
            .desired_capacity(0)
            .availability_zones("us-east-1a")
            .send()
            .await
            .with_context(|| format!("creating Auto Scaling group {name}"))?;
        Ok(())
    }

    /// Group `name`'s desired capacity, `None` when there is no such group.
    pub async fn desired_capacity(&self, name: &str) -> anyhow::Result<Option<i32>> {
        let out = self
            .client
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(name)
            .send()
            .await
            .with_context(|| format!("reading Auto Scaling group {name}"))?;
        Ok(out
            .auto_scaling_groups()
            .iter()
            .find(|g| g.auto_scaling_group_name() == Some(name))
            .and_then(|g| g.desired_capacity()))
    }
}
