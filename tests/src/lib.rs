//! Test support for the workspace-level integration tests: third-party checkers, and (as they
//! arrive) the S3 server and process harnesses.

/// Python-based checkers (pyarrow, geopandas, DuckDB, PyIceberg) from the project's venv.
pub mod python;
/// A local moto S3 server (requests serialized so conditional writes are atomic).
pub mod s3;
