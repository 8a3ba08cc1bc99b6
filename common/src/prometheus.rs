//! The Prometheus endpoint both binaries serve with `--metrics-listen`: one exporter per process,
//! every metric named `earthcatalog_…` in base units (seconds, bytes), counters ending in
//! `_total`, and labels only of small fixed sets (phase, state, outcome, kind), never an item,
//! cell or worker, so a scrape stays the same size however large the run.

use std::net::SocketAddr;
use std::time::Duration;

use metrics_exporter_prometheus::{BuildError, PrometheusBuilder};

/// Why the endpoint could not be served.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The listener or the recorder could not be set up.
    #[error("cannot serve Prometheus metrics on {addr}")]
    Install {
        /// The address asked for.
        addr: SocketAddr,
        /// What the exporter said.
        #[source]
        source: BuildError,
    },
}

/// Serves the process's metrics over HTTP on `addr` (any path; `/metrics` by convention) and
/// records `earthcatalog_build_info{binary, version}`. Call from inside the Tokio runtime.
pub fn serve(addr: SocketAddr, binary: &'static str) -> Result<(), MetricsError> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .map_err(|source| MetricsError::Install { addr, source })?;
    metrics::gauge!("earthcatalog_build_info", "binary" => binary, "version" => env!("CARGO_PKG_VERSION"))
        .set(1.0);
    tracing::info!(%addr, "serving Prometheus metrics");
    Ok(())
}

/// Counts one GeoParquet file written (encoded and uploaded) and how long that took.
pub fn file_written(rows: usize, bytes: u64, took: Duration) {
    metrics::counter!("earthcatalog_files_written_total").increment(1);
    metrics::counter!("earthcatalog_rows_written_total").increment(rows as u64);
    metrics::counter!("earthcatalog_bytes_written_total").increment(bytes);
    metrics::histogram!("earthcatalog_file_upload_duration_seconds").record(took.as_secs_f64());
}

/// Counts one item that could not be fetched, by failure kind (`not_found`, `fetch_failed`, …).
pub fn fetch_failed(kind: &'static str) {
    metrics::counter!("earthcatalog_fetch_failures_total", "kind" => kind).increment(1);
}

/// Records how long one Iceberg commit took (manifests, metadata file and the catalog row), by
/// snapshot operation (`append`, `replace`, `overwrite`, `delete`).
pub fn committed(operation: &str, took: Duration) {
    metrics::histogram!("earthcatalog_commit_duration_seconds", "kind" => operation.to_string())
        .record(took.as_secs_f64());
}
