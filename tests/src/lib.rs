//! Test support for the workspace-level integration tests: third-party checkers, the S3
//! server (and moto's Auto Scaling API on it), the process harness and test certificates.

/// EC2 Auto Scaling groups on the moto server (create one, read its desired capacity).
pub mod autoscaling;
/// Paths of the workspace binaries, built once per test process.
pub mod binaries;
/// Headless Chromium: a page's DOM after its scripts ran, and screenshots.
pub mod chromium;
/// A coordinator and worker processes under test: ports, logs, kill/pause/restart, reaping.
pub mod cluster;
/// A backfill deployed with `deploy/compose` in containers: images, faults, read-back.
pub mod compose;
/// A stand-in for the EC2 instance metadata service (spot interruption notices).
pub mod imds;
/// Sample items, inventories in every format, and expected rows.
pub mod ingest;
/// A TCP proxy adding a fixed delay each way (network latency for the S3 benchmark).
pub mod latency_proxy;
/// Python-based checkers (pyarrow, geopandas, DuckDB, PyIceberg) from the project's venv.
pub mod python;
/// Reading tables back with PyIceberg.
pub mod readers;
/// A local moto S3 server (requests serialized so conditional writes are atomic).
pub mod s3;
/// Where an end-to-end case runs (local files or S3), one catalog over uploaded items, the CLI.
pub mod site;
/// A running `earthcatalog serve` and the HTTP calls tests make to it.
pub mod stac_api;
/// Throwaway certificates for TLS tests.
pub mod tls;
