//! earthcatalog's shared library: everything the coordinator, the workers and the CLI have in
//! common. Each module holds one concept; the list below is the table of contents.

/// Downloading the SQLite catalog and uploading it back by compare-and-swap under the lock.
pub mod catalog_sync;
/// Locations: `s3://`, `file://`/paths and `memory://` as one type.
pub mod location;
/// The catalog lock: conditional-put lock object with renewal, release and stale takeover.
pub mod lock;
/// The table schema: every column, its field id and its type.
pub mod schema;
/// STAC item JSON → typed table rows.
pub mod stac;
/// Resolving locations to object stores (S3 settings, source mapping, client cache).
pub mod stores;
