//! earthcatalog's shared library: everything the coordinator, the workers and the CLI have in
//! common. Each module holds one concept; the list below is the table of contents.

/// The Iceberg catalog: open/create the table, register Parquet files, list snapshots and files.
pub mod catalog;
/// Locations: `s3://`, `file://`/paths and `memory://` as one type.
pub mod location;
/// The table schema: every column, its field id and its type.
pub mod schema;
/// STAC item JSON → typed table rows.
pub mod stac;
/// Resolving locations to object stores (S3 settings, source mapping, client cache).
pub mod stores;
