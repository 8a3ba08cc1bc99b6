//! Building and serving the coordinator's gRPC endpoint: the `Coordinator` service behind a
//! shared-token check, `grpc.health.v1`, optional TLS (rustls).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use earthcatalog_common::rpc::pb::coordinator_server::CoordinatorServer;
use earthcatalog_common::rpc::{AUTH_HEADER, bearer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic::{Request, Status};

use crate::lease::scheduler::Scheduler;
use crate::lease::service::CoordinatorService;

/// Calls served at once: workers send small messages; this bounds memory under a burst.
const MAX_CONCURRENT_CALLS: usize = 256;

/// How the endpoint is exposed.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// The shared token workers must present (`None`: no check, loopback-only setups).
    pub token: Option<String>,
    /// PEM certificate chain and key for TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// Checks the `authorization` metadata against the shared token; logs refusals without it.
#[derive(Clone)]
pub struct TokenCheck {
    expected: Option<Arc<str>>,
}

impl tonic::service::Interceptor for TokenCheck {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.expected else { return Ok(request) };
        let presented = request.metadata().get(AUTH_HEADER).and_then(|v| v.to_str().ok());
        if presented.is_some_and(|p| constant_time_eq(p.as_bytes(), bearer(expected).as_bytes())) {
            return Ok(request);
        }
        let peer = request.remote_addr().map(|a| a.to_string()).unwrap_or_else(|| "?".into());
        let why = if presented.is_some() { "a wrong token" } else { "no token" };
        tracing::warn!(%peer, "refused a call with {why}");
        Err(Status::unauthenticated(format!("refused: {why}")))
    }
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A bound, not yet serving, endpoint.
pub struct Endpoint {
    listener: TcpListener,
    address: SocketAddr,
}

impl Endpoint {
    /// Binds `listen` (port 0 picks a free port).
    pub async fn bind(listen: SocketAddr) -> anyhow::Result<Endpoint> {
        let listener =
            TcpListener::bind(listen).await.with_context(|| format!("listening on {listen}"))?;
        let address = listener.local_addr()?;
        Ok(Endpoint { listener, address })
    }

    /// The bound address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Serves `scheduler` until `stop` is cancelled.
    pub async fn serve(
        self,
        scheduler: Arc<Scheduler>,
        options: ServeOptions,
        stop: CancellationToken,
    ) -> anyhow::Result<()> {
        let (health_reporter, health) = tonic_health::server::health_reporter();
        health_reporter.set_serving::<CoordinatorServer<CoordinatorService>>().await;
        let check = TokenCheck { expected: options.token.as_deref().map(Arc::from) };
        let service = InterceptedService::new(
            CoordinatorServer::new(CoordinatorService::new(scheduler)),
            check,
        );
        let mut builder = Server::builder()
            .concurrency_limit_per_connection(MAX_CONCURRENT_CALLS)
            .tcp_nodelay(true);
        if let Some((cert, key)) = &options.tls {
            let cert =
                std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
            let key = std::fs::read(key).with_context(|| format!("reading {}", key.display()))?;
            builder = builder
                .tls_config(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)))
                .context("TLS settings")?;
        }
        tracing::info!(address = %self.address, tls = options.tls.is_some(), "coordinator listening");
        let incoming = TcpIncoming::from(self.listener).with_nodelay(Some(true));
        builder
            .add_service(health)
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
            .await
            .context("serving gRPC")
    }
}
