//! Command-line arguments (clap derive; every flag can also come from an environment variable).

use earthcatalog_common::pipeline::Budget;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// earthcatalog: STAC items in object storage → an H3-partitioned GeoParquet warehouse
/// registered in an Apache Iceberg table.
#[derive(Debug, Parser)]
#[command(name = "earthcatalog", version, about)]
pub struct Cli {
    /// Log format: `text` or `json` (levels from RUST_LOG, default info).
    #[arg(long, global = true, env = "EARTHCATALOG_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
    /// Per-bucket S3 settings (any subcommand that touches S3).
    #[command(flatten)]
    pub s3: earthcatalog_common::s3_args::S3BucketArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ingest the items an inventory names into the warehouse, in one process.
    Incremental(IncrementalArgs),
    /// Show what a catalog holds: snapshots, files, rows per cell and year.
    Info(InfoArgs),
    /// Write ITS_LIVE-shaped sample items and an inventory listing them.
    Sample(SampleArgs),
    /// Distributed backfill: chunk the inventory, lease ingest and compact tasks to workers
    /// (local ones by default), then register the result.
    Backfill(BackfillArgs),
    /// The backfill coordinator alone: like `backfill`, but only external workers
    /// (`earthcatalog-worker`) do the work unless --local-workers is given.
    Coordinator(BackfillArgs),
    /// Ask a coordinator whether it is serving (exit 0 if so); for container health checks.
    Health(HealthArgs),
    /// Show where a running backfill stands: phase, tasks by state, items and rows so far.
    Status(StatusArgs),
    /// Merge the small files of (cell, year) partitions and commit them in one replace
    /// snapshot (history, properties and the hash index stay).
    Compact(CompactArgs),
    /// Write today's delta inventory: the keys whose item ids the hash index lacks, merged with
    /// the pending deltas not ingested yet.
    Delta(DeltaArgs),
    /// Remove the rows of items a full inventory no longer lists, in one snapshot.
    Sync(SyncArgs),
    /// Expire old snapshots, then delete the data files, manifests, manifest lists and metadata
    /// files only they referenced.
    ExpireSnapshots(ExpireArgs),
    /// Delete files in the table's data and metadata folders that no snapshot references and
    /// that are older than a threshold (what runs that died before registering left).
    RemoveOrphans(OrphansArgs),
    /// Search the table's items (STAC API item search) and print them as GeoJSON or NDJSON.
    Search(SearchArgs),
    /// Serve the table as a STAC API over HTTP (landing page, collections, items, search);
    /// new snapshots are picked up without a restart.
    Serve(ServeArgs),
}

/// `earthcatalog serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Catalog and warehouse locations.
    #[command(flatten)]
    pub catalog: CatalogArgs,
    /// Address to listen on.
    #[arg(long, env = "EARTHCATALOG_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// Seconds between checks of the catalog for a new version (a HEAD of the catalog object,
    /// or of the local file); a changed catalog is reloaded.
    #[arg(long, env = "EARTHCATALOG_SERVE_REFRESH", default_value_t = 10)]
    pub refresh_secs: u64,
    /// The URL clients reach the server at (behind a proxy), used in links; by default
    /// `http://` and the request's Host header.
    #[arg(long, env = "EARTHCATALOG_PUBLIC_URL")]
    pub public_url: Option<String>,
}

/// How `earthcatalog search` prints items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SearchFormat {
    /// One GeoJSON FeatureCollection (with `numberMatched` and `numberReturned`).
    Geojson,
    /// One item per line.
    Ndjson,
    /// One stac-geoparquet file (spec 1.0.0), for stac-geoparquet, rustac, DuckDB, geopandas.
    StacGeoparquet,
}

/// `earthcatalog search`.
#[derive(Debug, Clone, Args)]
pub struct SearchArgs {
    /// Catalog and warehouse locations.
    #[command(flatten)]
    pub catalog: CatalogArgs,
    /// Only items meeting this box: west,south,east,north (west > east crosses ±180).
    #[arg(
        long,
        env = "EARTHCATALOG_BBOX",
        value_delimiter = ',',
        allow_hyphen_values = true,
        num_args = 1
    )]
    pub bbox: Option<Vec<f64>>,
    /// Only items meeting this GeoJSON geometry (or Feature); `@FILE` reads it from a file.
    #[arg(long, env = "EARTHCATALOG_INTERSECTS", conflicts_with = "bbox")]
    pub intersects: Option<String>,
    /// Only items at this RFC 3339 instant or in this interval (`start/end`, `..` = open), by
    /// `datetime` or by their `start_datetime`..`end_datetime` range.
    #[arg(long, env = "EARTHCATALOG_DATETIME")]
    pub datetime: Option<String>,
    /// Only these item ids (comma-separated).
    #[arg(long, env = "EARTHCATALOG_IDS", value_delimiter = ',')]
    pub ids: Vec<String>,
    /// Only these collections (comma-separated).
    #[arg(long, env = "EARTHCATALOG_COLLECTIONS", value_delimiter = ',')]
    pub collections: Vec<String>,
    /// CQL2 filter, text or JSON; `@FILE` reads it from a file.
    #[arg(long, env = "EARTHCATALOG_FILTER")]
    pub filter: Option<String>,
    /// Sort keys, e.g. `-properties.datetime,+id` [default: newest first, then id].
    #[arg(long, env = "EARTHCATALOG_SORTBY", allow_hyphen_values = true)]
    pub sortby: Option<String>,
    /// Return at most this many items.
    #[arg(long, visible_alias = "limit", env = "EARTHCATALOG_MAX_ITEMS")]
    pub max_items: Option<usize>,
    /// Members to keep or drop, e.g. `properties.platform,-assets`.
    #[arg(long, env = "EARTHCATALOG_FIELDS", allow_hyphen_values = true)]
    pub fields: Option<String>,
    /// Output format.
    #[arg(long, value_enum, env = "EARTHCATALOG_SEARCH_FORMAT", default_value = "geojson")]
    pub format: SearchFormat,
    /// Write to this file instead of stdout.
    #[arg(long, short = 'o', env = "EARTHCATALOG_SEARCH_OUT")]
    pub out: Option<PathBuf>,
}

/// `earthcatalog status`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// How to reach the coordinator.
    #[command(flatten)]
    pub connect: earthcatalog_common::rpc::client::CoordinatorArgs,
    /// Print JSON instead of text.
    #[arg(long, env = "EARTHCATALOG_JSON")]
    pub json: bool,
}

/// `earthcatalog health`.
#[derive(Debug, Clone, Args)]
pub struct HealthArgs {
    /// Coordinator address (`http://host:port`; `https://` with --tls-ca).
    #[arg(long, env = "EARTHCATALOG_COORDINATOR", default_value = "http://127.0.0.1:50051")]
    pub coordinator: String,
    /// CA certificate (PEM) to trust for a TLS coordinator.
    #[arg(long, env = "EARTHCATALOG_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Service to ask about ("" = the server as a whole).
    #[arg(long, env = "EARTHCATALOG_HEALTH_SERVICE", default_value = "")]
    pub service: String,
    /// Seconds to wait for the answer.
    #[arg(long, env = "EARTHCATALOG_HEALTH_TIMEOUT", default_value_t = 5.0)]
    pub timeout_seconds: f64,
}

/// `earthcatalog backfill` and `earthcatalog coordinator`.
#[derive(Debug, Clone, Args)]
pub struct BackfillArgs {
    /// Inventory: CSV, CSV.gz, Parquet or an S3 Inventory manifest.json (local or s3://); or
    /// JSON lines with bucket and key (`.jsonl`).
    #[arg(long, short = 'i', env = "EARTHCATALOG_INVENTORY")]
    pub inventory: String,
    /// Catalog and warehouse locations.
    #[command(flatten)]
    pub catalog: CatalogArgs,
    /// Staging folder (local path or s3://bucket/prefix) for chunks, staged rows and run state.
    #[arg(long, env = "EARTHCATALOG_STAGING", default_value = "staging")]
    pub staging: String,
    /// Only inventory rows last modified at or after this date or ISO timestamp.
    #[arg(long, env = "EARTHCATALOG_SINCE")]
    pub since: Option<String>,
    /// Stop after this many items (0 = no limit).
    #[arg(long, env = "EARTHCATALOG_LIMIT")]
    pub limit: Option<u64>,
    /// Items per chunk (one ingest task each).
    #[arg(long, env = "EARTHCATALOG_CHUNK_SIZE", default_value_t = 100_000)]
    pub chunk_size: usize,
    /// Rows per data file at most.
    #[arg(long, env = "EARTHCATALOG_COMPACT_ROWS", default_value_t = 100_000)]
    pub compact_rows: usize,
    /// Items one ingest task fetches at once.
    #[arg(long, env = "EARTHCATALOG_FETCH_CONCURRENCY", default_value_t = 256)]
    pub fetch_concurrency: usize,
    /// H3 resolution 0-15 [default: the table's; required for a first full run].
    #[arg(long, env = "EARTHCATALOG_H3_RESOLUTION")]
    pub h3_resolution: Option<u8>,
    /// Append to the existing table instead of rebuilding it.
    #[arg(long, env = "EARTHCATALOG_DELTA")]
    pub delta: bool,
    /// Use the chunks already in staging instead of reading the inventory.
    #[arg(long, env = "EARTHCATALOG_SKIP_INVENTORY")]
    pub skip_inventory: bool,
    /// Skip Phase 2: compact what earlier ingest tasks of this run staged.
    #[arg(long, env = "EARTHCATALOG_SKIP_INGEST")]
    pub skip_ingest: bool,
    /// Ingest only the items earlier runs listed as failed (staging `pending/`), and append them.
    #[arg(long, env = "EARTHCATALOG_RETRY_PENDING")]
    pub retry_pending: bool,
    /// Write the item-id hash index after the catalog is uploaded.
    #[arg(long, env = "EARTHCATALOG_UPDATE_HASH_INDEX")]
    pub update_hash_index: bool,
    /// Hash index location [default: the table's property, else <warehouse>_id_hashes.parquet].
    #[arg(long, env = "EARTHCATALOG_HASH_INDEX")]
    pub hash_index: Option<String>,
    /// How the catalog lock is taken.
    #[command(flatten)]
    pub lock: LockArgs,
    /// Do not upload the catalog to --catalog-store at the end.
    #[arg(long, alias = "skip-upload", env = "EARTHCATALOG_NO_UPLOAD")]
    pub no_upload: bool,
    /// Buckets whose items are read from elsewhere.
    #[command(flatten)]
    pub sources: SourceArgs,
    /// The lease service workers call, and the workers started beside it.
    #[command(flatten)]
    pub service: LeaseServiceArgs,
    /// Print a machine-readable JSON summary on stdout at the end.
    #[arg(long, env = "EARTHCATALOG_JSON")]
    pub json: bool,
    /// How many workers the run wants, and who is told.
    #[command(flatten)]
    pub scaling: ScalingArgs,
}

/// The lease service of a run whose tasks workers do (backfill, coordinator, compact).
#[derive(Debug, Clone, Args)]
pub struct LeaseServiceArgs {
    /// Address the gRPC service listens on [default: 127.0.0.1:0 for backfill and
    /// compact, 0.0.0.0:50051 for coordinator].
    #[arg(long, env = "EARTHCATALOG_LISTEN")]
    pub listen: Option<std::net::SocketAddr>,
    /// Serve Prometheus metrics over HTTP on this address (e.g. 0.0.0.0:9100) [default: none].
    #[arg(long, env = "EARTHCATALOG_METRICS_LISTEN")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Serve the live status page over HTTP on this address (e.g. 0.0.0.0:8080); it asks for
    /// the shared token when one is set [default: none].
    #[arg(long, env = "EARTHCATALOG_STATUS_LISTEN")]
    pub status_listen: Option<std::net::SocketAddr>,
    /// Worker processes started beside this one [default: 2 for backfill, 0 for coordinator
    /// and compact].
    #[arg(long, env = "EARTHCATALOG_LOCAL_WORKERS")]
    pub local_workers: Option<usize>,
    /// Tasks each local worker runs at once.
    #[arg(long, env = "EARTHCATALOG_WORKER_SLOTS", default_value_t = 2)]
    pub worker_slots: usize,
    /// Lease length in seconds.
    #[arg(long, env = "EARTHCATALOG_LEASE_SECONDS", default_value_t = 60)]
    pub lease_seconds: u64,
    /// How often workers renew, in seconds [default: a quarter of the lease].
    #[arg(long, env = "EARTHCATALOG_RENEW_SECONDS")]
    pub renew_seconds: Option<f64>,
    /// Attempts per task before it is marked failed.
    #[arg(long, env = "EARTHCATALOG_MAX_ATTEMPTS", default_value_t = 3)]
    pub max_attempts: u32,
    /// The shared token workers must present.
    #[arg(long, env = "EARTHCATALOG_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// File holding the shared token.
    #[arg(long, env = "EARTHCATALOG_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// TLS certificate chain (PEM); with --tls-key, the service uses TLS.
    #[arg(long, env = "EARTHCATALOG_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, env = "EARTHCATALOG_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// The scaling rule's settings (see docs/deploy.md, "The fleet scales itself").
#[derive(Debug, Clone, Args)]
pub struct ScalingArgs {
    /// Fewest workers wanted while the run is not over (0 lets the fleet go between phases).
    #[arg(long, env = "EARTHCATALOG_SCALE_MIN", default_value_t = 0)]
    pub scale_min: u32,
    /// Most workers ever wanted.
    #[arg(long, env = "EARTHCATALOG_SCALE_MAX", default_value_t = 50)]
    pub scale_max: u32,
    /// Tasks one fleet worker runs at once (its --slots) [default: --worker-slots].
    #[arg(long, env = "EARTHCATALOG_SCALE_SLOTS")]
    pub scale_slots: Option<u32>,
    /// Seconds a lower number must be wanted, with no task pending, before workers are let go.
    #[arg(long, env = "EARTHCATALOG_SCALE_COOLDOWN_SECONDS", default_value_t = 120)]
    pub scale_cooldown_seconds: u64,
    /// EC2 Auto Scaling group whose desired capacity follows the workers wanted (set at start,
    /// on every change, 0 at the end), with the standard AWS credential chain and region.
    #[arg(long, env = "EARTHCATALOG_SCALE_ASG")]
    pub scale_asg: Option<String>,
}

/// `earthcatalog sample`.
#[derive(Debug, Clone, Args)]
pub struct SampleArgs {
    /// Folder (local path or s3://bucket/prefix) to write `items/...` and `inventory.csv` into.
    #[arg(long, env = "EARTHCATALOG_SAMPLE_OUT")]
    pub out: String,
    /// Number of items.
    #[arg(long, env = "EARTHCATALOG_SAMPLE_ITEMS", default_value_t = 1000)]
    pub items: u64,
    /// Index of the first item (items are deterministic by index).
    #[arg(long, env = "EARTHCATALOG_SAMPLE_FIRST", default_value_t = 0)]
    pub first: u64,
    /// Bucket name the inventory gives the items.
    #[arg(long, env = "EARTHCATALOG_SAMPLE_BUCKET", default_value = "its-live-data")]
    pub bucket: String,
    /// Spread the item dates over this many years ending in 2019 (default: 2011 to 2019). Over
    /// decades nearly every item lands in a (cell, year) of its own.
    #[arg(long, env = "EARTHCATALOG_SAMPLE_YEARS", value_parser = clap::value_parser!(u32).range(1..=200))]
    pub years: Option<u32>,
}

/// Where the catalog lives (shared by every command that opens it).
#[derive(Debug, Clone, Args)]
pub struct CatalogArgs {
    /// Local path of the SQLite catalog file (the working copy when --catalog-store is set).
    #[arg(long, env = "EARTHCATALOG_CATALOG")]
    pub catalog: Option<PathBuf>,
    /// Folder (local path or s3://bucket/prefix) holding the authoritative catalog object and
    /// its lock; the catalog is downloaded from it before a run and uploaded after. Without it,
    /// the local --catalog file is the catalog and its lock sits next to it.
    #[arg(long, env = "EARTHCATALOG_CATALOG_STORE")]
    pub catalog_store: Option<String>,
    /// Name of the catalog object inside --catalog-store.
    #[arg(long, env = "EARTHCATALOG_CATALOG_KEY", default_value = "catalog.db")]
    pub catalog_key: String,
    /// Warehouse root for data files and Iceberg metadata (local path or s3://bucket/prefix).
    #[arg(long, env = "EARTHCATALOG_WAREHOUSE")]
    pub warehouse: Option<String>,
}

/// How the catalog lock is taken (shared by every command that writes the catalog).
#[derive(Debug, Clone, Args)]
pub struct LockArgs {
    /// Do not take the catalog lock (only when nothing else can write the catalog).
    #[arg(long, env = "EARTHCATALOG_NO_LOCK")]
    pub no_lock: bool,
    /// Wait up to this many seconds for the lock instead of failing at once.
    #[arg(long, env = "EARTHCATALOG_LOCK_WAIT", default_value_t = 0)]
    pub lock_wait: u64,
}

/// Buckets read from another place (shared by every command that fetches items).
#[derive(Debug, Clone, Args)]
pub struct SourceArgs {
    /// Read the items of BUCKET from LOCATION instead (a local mirror or another endpoint);
    /// repeatable: --source its-live-data=/data/mirror.
    #[arg(
        long = "source",
        value_name = "BUCKET=LOCATION",
        env = "EARTHCATALOG_SOURCES",
        value_delimiter = ','
    )]
    pub sources: Vec<String>,
}

/// `earthcatalog incremental`.
#[derive(Debug, Clone, Args)]
pub struct IncrementalArgs {
    /// Inventory to ingest: CSV, CSV.gz, Parquet or an S3 Inventory manifest.json (local or s3://);
    /// or a run's failures file (`.jsonl`), to retry just the items it lists.
    #[arg(long, short = 'i', env = "EARTHCATALOG_INVENTORY")]
    pub inventory: String,
    /// Catalog and warehouse locations.
    #[command(flatten)]
    pub catalog: CatalogArgs,
    /// YAML config in the original's format (catalog / grid / ingest sections); flags override it.
    #[arg(long, short = 'c', env = "EARTHCATALOG_CONFIG")]
    pub config: Option<PathBuf>,
    /// Only inventory rows last modified at or after this date or ISO timestamp.
    #[arg(long, env = "EARTHCATALOG_SINCE")]
    pub since: Option<String>,
    /// Stop after this many items (0 = no limit).
    #[arg(long, env = "EARTHCATALOG_LIMIT")]
    pub limit: Option<u64>,
    /// Items per chunk; each chunk's files are registered together [default: 5000].
    #[arg(long, env = "EARTHCATALOG_CHUNK_SIZE")]
    pub chunk_size: Option<usize>,
    /// Rows held in memory at once: a chunk whose items make more rows is written and registered
    /// a batch of whole items at a time (near-global items at a fine resolution make ~40,000 rows
    /// each).
    #[arg(long, env = "EARTHCATALOG_CHUNK_ROWS", default_value_t = Budget::default().rows)]
    pub chunk_rows: usize,
    /// Files written before they are registered: a chunk's files beyond it are registered in
    /// further snapshots (each (cell, year) is still one file per batch of rows).
    #[arg(long, env = "EARTHCATALOG_CHUNK_FILES", default_value_t = Budget::default().files)]
    pub chunk_files: usize,
    /// Items fetched at once [default: 512].
    #[arg(long, alias = "workers", env = "EARTHCATALOG_MAX_WORKERS")]
    pub max_workers: Option<usize>,
    /// Data files encoded and uploaded at once.
    #[arg(long, env = "EARTHCATALOG_WRITE_CONCURRENCY", default_value_t = earthcatalog_common::pipeline::WRITE_CONCURRENCY)]
    pub write_concurrency: usize,
    /// H3 resolution 0-15 [default: the table's, else 1].
    #[arg(long, env = "EARTHCATALOG_H3_RESOLUTION")]
    pub h3_resolution: Option<u8>,
    /// How the catalog lock is taken.
    #[command(flatten)]
    pub lock: LockArgs,
    /// Hold the rows of the whole run and write one file per (cell, year), registered in one
    /// snapshot at the end, instead of a file per (cell, year) per chunk and a snapshot per
    /// chunk. Past --chunk-rows held rows, the largest (cell, year)s are spilled to local disk
    /// (--spill-dir) and merged at the end; a chunk with updates writes out what is held first.
    #[arg(long, env = "EARTHCATALOG_BATCH_ADD_FILES")]
    pub batch_add_files: bool,
    /// Where --batch-add-files spills held rows past --chunk-rows (a temporary folder inside it,
    /// removed when the run ends, or by the next run if it was killed) [default: the system's
    /// temporary folder].
    #[arg(long, env = "EARTHCATALOG_SPILL_DIR", value_name = "DIR")]
    pub spill_dir: Option<PathBuf>,
    /// Add the ids of the run's items to the table's hash index (the table property's
    /// location, else `<warehouse>_id_hashes.parquet`), written after the catalog is published;
    /// what `earthcatalog delta` compares the next inventory with.
    #[arg(long, env = "EARTHCATALOG_UPDATE_HASH_INDEX")]
    pub update_hash_index: bool,
    /// With --catalog-store: upload the catalog after a committed chunk once this many seconds
    /// have passed since the last upload (0: after every chunk), so a run that is killed keeps
    /// what it committed; it is always uploaded at the end.
    #[arg(long, env = "EARTHCATALOG_PUBLISH_EVERY", default_value_t = 30, value_name = "SECONDS")]
    pub publish_every: u64,
    /// Buckets whose items are read from elsewhere.
    #[command(flatten)]
    pub sources: SourceArgs,
    /// Where to write the failures file [default: next to the catalog].
    #[arg(long, env = "EARTHCATALOG_FAILURES")]
    pub failures: Option<String>,
    /// Print a machine-readable JSON summary on stdout at the end.
    #[arg(long, env = "EARTHCATALOG_JSON")]
    pub json: bool,
    /// No progress bar, even on a terminal.
    #[arg(long, env = "EARTHCATALOG_NO_PROGRESS")]
    pub no_progress: bool,
}

/// `earthcatalog compact`.
#[derive(Debug, Clone, Args)]
pub struct CompactArgs {
    /// Catalog and warehouse locations.
    #[command(flatten)]
    pub catalog: CatalogArgs,
    /// How the catalog lock is taken.
    #[command(flatten)]
    pub lock: LockArgs,
    /// Rewrite a partition that has at least this many files.
    #[arg(long, env = "EARTHCATALOG_MIN_INPUT_FILES", default_value_t = 5)]
    pub min_input_files: usize,
    /// Rewrite a partition that has a file with fewer rows than this (when merging lowers its
    /// file count).
    #[arg(long, env = "EARTHCATALOG_MIN_FILE_ROWS", default_value_t = 10_000)]
    pub min_file_rows: u64,
    /// Rows per output file, at most.
    #[arg(long, env = "EARTHCATALOG_TARGET_ROWS", default_value_t = 100_000)]
    pub target_rows: u64,
    /// Only this partition, `CELL/YEAR` (`CELL/unknown` for items without a datetime);
    /// repeatable. Named partitions are rewritten whatever their files.
    #[arg(
        long = "partition",
        value_name = "CELL/YEAR",
        env = "EARTHCATALOG_PARTITIONS",
        value_delimiter = ','
    )]
    pub partitions: Vec<String>,
    /// Partitions rewritten at once in this process (without workers).
    #[arg(long, env = "EARTHCATALOG_COMPACT_CONCURRENCY", default_value_t = 4)]
    pub concurrency: usize,
    /// With workers (--local-workers or --listen): where the run's accepted rewrites are
    /// recorded, so that a restarted `compact` resumes them (local path or s3://bucket/prefix).
    #[arg(long, env = "EARTHCATALOG_STAGING", default_value = "staging")]
    pub staging: String,
    /// With --local-workers N or --listen, the partitions are rewritten by workers that lease
    /// them (as backfill Phase 3), not in this process.
    #[command(flatten)]
    pub service: LeaseServiceArgs,
    /// Say what would be rewritten, change nothing (takes no lock).
    #[arg(long, env = "EARTHCATALOG_DRY_RUN")]
    pub dry_run: bool,
    /// Print a machine-readable JSON summary on stdout at the end.
    #[arg(long, env = "EARTHCATALOG_JSON")]
    pub json: bool,
}

/// `earthcatalog delta`.
#[derive(Debug, Clone, Args)]
pub struct DeltaArgs {
    /// Today's inventory: CSV, CSV.gz, Parquet or an S3 Inventory manifest.json.
    #[arg(long, short = 'i', env = "EARTHCATALOG_INVENTORY")]
    pub inventory: String,
    /// Folder of the deltas: today's is written to `pending/delta_<date>.parquet` under it.
    #[arg(long, env = "EARTHCATALOG_DELTA_PREFIX")]
    pub delta_prefix: String,
    /// The hash index [default: `<warehouse>_id_hashes.parquet`].
    #[arg(long, env = "EARTHCATALOG_HASH_INDEX")]
    pub hash_index: Option<String>,
    /// The warehouse whose default hash index is used when --hash-index is not given.
    #[arg(long, env = "EARTHCATALOG_WAREHOUSE")]
    pub warehouse: Option<String>,
    /// Date naming the delta, YYYY-MM-DD [default: today, UTC].
    #[arg(long, env = "EARTHCATALOG_DELTA_DATE")]
    pub date: Option<chrono::NaiveDate>,
    /// Only inventory rows last modified at or after this date or ISO timestamp.
    #[arg(long, env = "EARTHCATALOG_SINCE")]
    pub since: Option<String>,
    /// Also list keys of items already indexed whose object was modified at or after this date
    /// or ISO timestamp (re-processed items; the ingest replaces those with a newer `updated`).
    #[arg(long, env = "EARTHCATALOG_CHANGED_SINCE")]
    pub changed_since: Option<String>,
    /// Print a machine-readable JSON summary on stdout.
    #[arg(long, env = "EARTHCATALOG_JSON")]
    pub json: bool,
}

/// `earthcatalog sync`.
#[derive(Debug, Clone, Args)]
pub struct SyncArgs {
    /// A full inventory of the archive (not a delta): every item it does not list leaves the table.
    #[arg(long, short = 'i', env = "EARTHCATALOG_INVENTORY")]
    pub inventory: String,
    /// Catalog and warehouse locations.
    #[command(flatten)]
    pub catalog: CatalogArgs,
    /// How the catalog lock is taken.
    #[command(flatten)]
    pub lock: LockArgs,
    /// Refuse (changing nothing) when more than this fraction of the table's rows would go: an
    /// incomplete inventory must not empty the table. 1 allows any.
    #[arg(long, env = "EARTHCATALOG_MAX_DELETE_FRACTION", default_value_t = 0.05)]
    pub max_delete_fraction: f64,
    /// Say what would be removed, change nothing (takes no lock).
    #[arg(long, env = "EARTHCATALOG_DRY_RUN")]
    pub dry_run: bool,
    /// Print a machine-readable JSON summary on stdout.
    #[arg(long, env = "EARTHCATALOG_JSON")]
    pub json: bool,
}

/// `earthcatalog expire-snapshots`.
#[derive(Debug, Clone, Args)]
pub struct ExpireArgs {
    /// Catalog and warehouse locations.
    #[command(flatten)]
    pub catalog: CatalogArgs,
    /// How the catalog lock is taken.
    #[command(flatten)]
    pub lock: LockArgs,
    /// Expire snapshots committed longer ago than this (`5d`, `36h`, `90m`, `30s`; a bare
    /// number is days).
    #[arg(long, env = "EARTHCATALOG_OLDER_THAN", default_value = "5d")]
    pub older_than: String,
    /// Keep at least this many of the newest snapshots, however old.
    #[arg(long, env = "EARTHCATALOG_RETAIN_LAST", default_value_t = 1)]
    pub retain_last: usize,
    /// Say what would be expired and deleted, change nothing (takes no lock).
    #[arg(long, env = "EARTHCATALOG_DRY_RUN")]
    pub dry_run: bool,
    /// Print a machine-readable JSON summary on stdout.
    #[arg(long, env = "EARTHCATALOG_JSON")]
    pub json: bool,
}

/// `earthcatalog remove-orphans`.
#[derive(Debug, Clone, Args)]
pub struct OrphansArgs {
    /// Catalog and warehouse locations.
    #[command(flatten)]
    pub catalog: CatalogArgs,
    /// How the catalog lock is taken.
    #[command(flatten)]
    pub lock: LockArgs,
    /// Only files last written longer ago than this (`3d`, `36h`, `90m`, `30s`; a bare number
    /// is days): younger ones may belong to a run still writing.
    #[arg(long, env = "EARTHCATALOG_OLDER_THAN", default_value = "3d")]
    pub older_than: String,
    /// Say what would be deleted, change nothing (takes no lock).
    #[arg(long, env = "EARTHCATALOG_DRY_RUN")]
    pub dry_run: bool,
    /// Print a machine-readable JSON summary on stdout.
    #[arg(long, env = "EARTHCATALOG_JSON")]
    pub json: bool,
}

/// `earthcatalog info`.
#[derive(Debug, Clone, Args)]
pub struct InfoArgs {
    /// Catalog and warehouse locations.
    #[command(flatten)]
    pub catalog: CatalogArgs,
    /// Print JSON instead of tables.
    #[arg(long, env = "EARTHCATALOG_JSON")]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn incremental_flags_parse() {
        let cli = Cli::parse_from([
            "earthcatalog",
            "incremental",
            "--inventory",
            "inv.csv",
            "--catalog",
            "c.db",
            "--warehouse",
            "s3://b/wh",
            "--since",
            "2024-01-01",
            "--source",
            "its-live-data=/mirror",
            "--source",
            "other=s3://x",
            "--batch-add-files",
        ]);
        let Command::Incremental(a) = cli.command else { panic!("not incremental") };
        assert_eq!(a.sources.sources, ["its-live-data=/mirror", "other=s3://x"]);
        assert!(a.batch_add_files);
        assert_eq!(a.catalog.warehouse.as_deref(), Some("s3://b/wh"));
    }
}
