//! earthcatalog's shared library: everything the coordinator, the workers and the CLI have in
//! common. Each module holds one concept; the list below is the table of contents.

/// The backfill's phases as library functions: staging layout, chunking, chunk ingest, compaction.
pub mod backfill;
/// The Iceberg table on the SQLite catalog: open/create, register files, queries.
pub mod catalog;
/// Downloading the SQLite catalog and uploading it back by compare-and-swap under the lock.
pub mod catalog_sync;
/// Which copy of an item id listed twice is kept: the newest `updated`, ties to the later.
pub mod dedup;
/// The daily delta: inventory keys whose ids the hash index lacks, merged with pending deltas.
pub mod delta;
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
/// Each item's version and partitions in the table, kept beside the hash index for updates.
pub mod item_index;
/// Lists kept as JSON lines (failures files, pending lists, malformed rows): one writer and reader.
pub mod json_lines;
/// Locations: `s3://`, `file://`/paths and `memory://` as one type.
pub mod location;
/// The catalog lock: conditional-put lock object with renewal, release and stale takeover.
pub mod lock;
/// Log set-up shared by the binaries (RUST_LOG, text or JSON, stderr).
pub mod logging;
/// Table maintenance: compaction by replace commits.
pub mod maintenance;
/// Partitioners: the grid cells (H3 or GeoJSON features) a footprint touches.
pub mod partition;
/// Fetch → parse → fan out → write: the data path shared by both pipelines.
pub mod pipeline;
/// The Prometheus endpoint of `--metrics-listen` and the build-info gauge.
pub mod prometheus;
/// The one publish sequence (commit under the lock, upload, hash index) and what a failed run
/// cleans.
pub mod publish;
/// A data file rewritten without some of its rows (copy-on-write for updates and deletions).
pub mod rewrite;
/// The coordinator ⇄ worker gRPC contract and its proto ⇄ domain conversions.
pub mod rpc;
/// The `--s3-bucket` flag group both binaries take.
pub mod s3_args;
/// Which credentials an S3 client uses (keys, profile, IRSA, container, instance role).
pub mod s3_credentials;
/// S3 settings from the environment and per-bucket `--s3-bucket` entries.
pub mod s3_settings;
/// Deterministic ITS_LIVE-shaped sample items (benchmarks, demo data, tests).
pub mod sample;
/// The table schema: every column, its field id and its type.
pub mod schema;
/// Item search with STAC API semantics: cells and years pruned by Iceberg, exact geometry,
/// CQL2, each item once.
pub mod search;
/// Waiting for SIGTERM or Ctrl-C.
pub mod signals;
/// STAC item JSON → typed table rows.
pub mod stac;
/// The Parquet row format staged between backfill phases 2 and 3.
pub mod staging;
/// Resolving locations to object stores (S3 settings, source mapping, client cache) and the
/// typed whole-object operations (get, put, conditional put, list, delete) on them.
pub mod stores;
/// Removing the items the archive no longer lists, by rewriting the files that hold them.
pub mod sync;
/// New, updated or unchanged: how a batch of items meets the table.
pub mod updates;
