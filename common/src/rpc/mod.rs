//! The coordinator ⇄ worker gRPC contract: the generated `earthcatalog.v1` code ([`pb`]) and
//! the domain types both sides work with ([`convert`]), so handlers never touch raw messages.

/// The authenticated client: connection flags (address, token, TLS CA), channel, token header.
pub mod client;
pub mod convert;

pub use convert::{
    CompactReport, CompactTask, ConvertError, IngestReport, IngestTask, LeaseGrant, LeaseRef,
    PhaseKind, RefusalKind, ReportedFile, Stage, TaskReport, TaskSpec,
};

/// Code generated from `proto/earthcatalog/v1/coordinator.proto`.
#[allow(missing_docs, clippy::all, clippy::unwrap_used)]
pub mod pb {
    tonic::include_proto!("earthcatalog.v1");
}

/// The metadata key carrying the shared token.
pub const AUTH_HEADER: &str = "authorization";

/// The `authorization` value for `token`.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}
