//! A gRPC client to the coordinator that presents the shared token on every call.

use std::path::{Path, PathBuf};

use super::pb::coordinator_client::CoordinatorClient;
use super::{AUTH_HEADER, bearer};
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use tonic::{Request, Status};

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The coordinator address is not a URL.
    #[error("coordinator address '{address}': {reason}")]
    Address {
        /// The address given.
        address: String,
        /// Why it is refused.
        reason: String,
    },
    /// The token cannot be sent as metadata.
    #[error("the shared token has characters that cannot be sent in a header")]
    Token,
    /// The token file could not be read.
    #[error("reading the token file {path}: {source}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The token is empty (a blank file or variable would let anyone in, or no one).
    #[error("the shared token is empty")]
    EmptyToken,
    /// The CA certificate could not be read.
    #[error("reading the CA certificate {path}: {source}")]
    Ca {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// How to reach the coordinator: the flags the worker and `earthcatalog status` share.
#[derive(Debug, Clone, clap::Args)]
pub struct CoordinatorArgs {
    /// Coordinator address (`http://host:port`; `https://` with --tls-ca).
    #[arg(long, env = "EARTHCATALOG_COORDINATOR")]
    pub coordinator: String,
    /// The shared token (prefer --token-file or the environment variable).
    #[arg(long, env = "EARTHCATALOG_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// File holding the shared token.
    #[arg(long, env = "EARTHCATALOG_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// CA certificate (PEM) to trust for a TLS coordinator.
    #[arg(long, env = "EARTHCATALOG_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
}

impl CoordinatorArgs {
    /// The shared token given, if any (see [`read_token`]).
    pub fn token(&self) -> Result<Option<String>, ConnectError> {
        read_token(self.token.clone(), self.token_file.as_deref())
    }

    /// A client presenting the token.
    pub fn client(&self) -> Result<Client, ConnectError> {
        client(&self.coordinator, self.token()?.as_deref(), self.tls_ca.as_ref())
    }
}

/// The shared token from `file` (which wins) or `token`, without surrounding white space.
pub fn read_token(
    token: Option<String>,
    file: Option<&Path>,
) -> Result<Option<String>, ConnectError> {
    let token = match file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|source| ConnectError::TokenFile { path: path.to_path_buf(), source })?,
        ),
        None => token,
    };
    match token.map(|t| t.trim().to_string()) {
        Some(t) if t.is_empty() => Err(ConnectError::EmptyToken),
        other => Ok(other),
    }
}

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct AddToken {
    value: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl tonic::service::Interceptor for AddToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.value {
            request.metadata_mut().insert(AUTH_HEADER, v.clone());
        }
        Ok(request)
    }
}

/// How long a connection attempt may take before the call fails (and is retried by the caller).
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// HTTP/2 pings on every connection: a peer cut off by the network never closes the TCP
/// connection, and without pings a call on it waits forever instead of failing, so a worker
/// behind a partition would neither notice its lost leases nor reconnect once it heals.
const KEEPALIVE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);
/// An unanswered ping closes the connection (failing its calls) after this long.
const KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The client type the worker uses.
pub type Client = CoordinatorClient<InterceptedService<Channel, AddToken>>;

/// A client for `address` (`http://host:port`, or `https://` with `ca`). The connection is made
/// lazily, so an unreachable coordinator shows up as failing calls that the caller retries.
pub fn client(
    address: &str,
    token: Option<&str>,
    ca: Option<&PathBuf>,
) -> Result<Client, ConnectError> {
    let value = match token {
        Some(t) => Some(MetadataValue::try_from(bearer(t)).map_err(|_| ConnectError::Token)?),
        None => None,
    };
    Ok(CoordinatorClient::with_interceptor(channel(address, ca)?, AddToken { value }))
}

/// A lazily connecting channel to `address` (`http://host:port`, or `https://` trusting `ca`),
/// for any service the coordinator serves.
pub fn channel(address: &str, ca: Option<&PathBuf>) -> Result<Channel, ConnectError> {
    let bad = |reason: String| ConnectError::Address { address: address.to_string(), reason };
    let mut endpoint = Channel::from_shared(address.to_string()).map_err(|e| bad(e.to_string()))?;
    endpoint = endpoint
        .tcp_nodelay(true)
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(KEEPALIVE_EVERY)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    if let Some(ca) = ca {
        let pem =
            std::fs::read(ca).map_err(|source| ConnectError::Ca { path: ca.clone(), source })?;
        let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem));
        endpoint = endpoint.tls_config(tls).map_err(|e| bad(e.to_string()))?;
    }
    Ok(endpoint.connect_lazy())
}
