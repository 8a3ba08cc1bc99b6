//! earthcatalog's shared library: everything the coordinator, the workers and the CLI have in
//! common. Each module holds one concept; the list below is the table of contents.

/// The backfill's Phases 1–3 as library functions: chunking, chunk ingest, compaction.
pub mod backfill;
/// Fan-out of items to cells and grouping by (cell, year).
pub mod fanout;
/// Fetching item objects with retries and typed failures.
pub mod fetch;
/// GeoParquet 1.1 data files.
pub mod geoparquet;
/// The xxh3-128 item-id hash index used by delta runs.
pub mod hash_index;
/// Typed ids: runs and (cell, year) partitions.
pub mod ids;
/// Streaming S3 Inventory readers (CSV, CSV.gz, Parquet, manifest.json) and their filter.
pub mod inventory;
/// Locations: `s3://`, `file://`/paths and `memory://` as one type.
pub mod location;
/// Partitioners: the grid cells (H3 or GeoJSON features) a footprint touches.
pub mod partition;
/// Fetch → parse → fan out → write: the data path shared by both pipelines.
pub mod pipeline;
/// Deterministic ITS_LIVE-shaped sample items (benchmarks, demo data, tests).
pub mod sample;
/// The table schema: every column, its field id and its type.
pub mod schema;
/// STAC item JSON → typed table rows.
pub mod stac;
/// The Parquet row format staged between backfill phases 2 and 3.
pub mod staging;
/// Resolving locations to object stores (S3 settings, source mapping, client cache).
pub mod stores;
