//! The original's YAML config, and the validated settings of an incremental run.

use earthcatalog_common::pipeline::{Budget, FETCH_CONCURRENCY};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use earthcatalog_common::inventory::parse_since;
use earthcatalog_common::location::Location;
use earthcatalog_common::lock::{CatalogLock, LockGuard, LockOptions};
use earthcatalog_common::partition::{DEFAULT_ID_FIELD, GridSpec};
pub use earthcatalog_common::publish::CatalogPlace;
use earthcatalog_common::stores::Stores;
use serde::Deserialize;

use crate::cli::{CatalogArgs, IncrementalArgs, LockArgs, SourceArgs};

/// The YAML config file: `catalog`, `grid` and `ingest` sections, each optional; an unknown key
/// is an error (as in the original).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppConfig {
    /// Where the catalog and warehouse are.
    pub catalog: CatalogSection,
    /// The grid.
    pub grid: GridSection,
    /// Ingest knobs.
    pub ingest: IngestSection,
}

/// `catalog:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CatalogSection {
    /// SQLite catalog path.
    pub db_path: Option<PathBuf>,
    /// Warehouse root.
    pub warehouse: Option<String>,
}

/// `grid:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GridSection {
    /// `h3` (default), `geojson`; `s2` is refused.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// H3 resolution.
    pub resolution: Option<u8>,
    /// GeoJSON boundaries location.
    pub boundaries_path: Option<String>,
    /// GeoJSON key property.
    pub id_field: Option<String>,
}

/// `ingest:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestSection {
    /// Items per chunk.
    pub chunk_size: Option<usize>,
    /// Fetch concurrency.
    pub max_workers: Option<usize>,
    /// One snapshot per run.
    pub batch_add_files: Option<bool>,
}

impl AppConfig {
    /// Reads a YAML config; an empty file means all defaults.
    pub fn load(path: &Path) -> anyhow::Result<AppConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        if text.trim().is_empty() {
            return Ok(AppConfig::default());
        }
        serde_yaml_ng::from_str(&text).with_context(|| format!("parsing config {}", path.display()))
    }

    /// The grid this config asks for, if it asks for one.
    fn grid(&self) -> anyhow::Result<Option<GridSpec>> {
        let g = &self.grid;
        match g.kind.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("h3") => g.resolution.map(GridSpec::h3).transpose().map_err(Into::into),
            Some("geojson") => {
                let Some(boundaries) = g.boundaries_path.clone() else {
                    bail!("grid.boundaries_path is required for grid type 'geojson'");
                };
                let id_field = g.id_field.clone().unwrap_or_else(|| DEFAULT_ID_FIELD.to_string());
                Ok(Some(GridSpec::GeoJson { boundaries, id_field }))
            }
            Some("s2") => bail!("grid type 's2' is not implemented"),
            Some(other) => bail!("unknown grid type '{other}' (use h3 or geojson)"),
        }
    }
}

/// Resolves catalog flags (and config values) into locations.
pub fn catalog_place(
    args: &CatalogArgs,
    db_path: Option<PathBuf>,
    warehouse: Option<String>,
) -> anyhow::Result<CatalogPlace> {
    let path = args.catalog.clone().or(db_path).unwrap_or_else(|| PathBuf::from("catalog.db"));
    let path =
        Location::local(&path)?.as_local_path().map(Path::to_path_buf).context("catalog path")?;
    let warehouse = args.warehouse.clone().or(warehouse).unwrap_or_else(|| "warehouse".into());
    let warehouse = Location::parse(&warehouse).context("--warehouse")?;
    let (remote, lock) = match &args.catalog_store {
        Some(store) => {
            let store = Location::parse(store).context("--catalog-store")?;
            (Some(store.join(&args.catalog_key)), store.join(".lock"))
        }
        None => {
            let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            let lock = format!("{}.lock", name.unwrap_or_else(|| "catalog.db".into()));
            (None, Location::local(dir.join(lock))?)
        }
    };
    Ok(CatalogPlace { path, remote, lock, warehouse })
}

/// Items per incremental chunk unless told otherwise. The original's 500 made every chunk
/// write one tiny file per (cell, year) it touched (~290 files of 1-3 rows per 500 ITS_LIVE
/// items): file creation then bounds throughput and readers face many small files. 5,000 items
/// is about a second of work, so a crash still loses little.
const DEFAULT_INCREMENTAL_CHUNK: usize = 5_000;

/// Validated settings of one incremental run.
#[derive(Debug, Clone)]
pub struct IncrementalConfig {
    /// The inventory.
    pub inventory: Location,
    /// Catalog, lock and warehouse.
    pub place: CatalogPlace,
    /// Rows last modified before this are skipped.
    pub since: Option<DateTime<Utc>>,
    /// Stop after this many items.
    pub limit: Option<u64>,
    /// Items per chunk.
    pub chunk_size: usize,
    /// How much of a chunk is held at once (rows, files); a chunk beyond it is written and
    /// registered in several batches.
    pub budget: Budget,
    /// Fetch concurrency.
    pub max_workers: usize,
    /// Files encoded and uploaded at once.
    pub write_concurrency: usize,
    /// The grid asked for; `None` = the table's, else H3 resolution 1.
    pub grid: Option<GridSpec>,
    /// How the catalog lock is taken.
    pub lock: LockPolicy,
    /// One snapshot per run.
    pub batch_add_files: bool,
    /// Where held rows are spilled (`--batch-add-files`); `None`: the system's temporary folder.
    pub spill_dir: Option<PathBuf>,
    /// Add the ids of the run's items to the table's hash index.
    pub update_hash_index: bool,
    /// How often a stored catalog is uploaded during the run.
    pub publish_every: Duration,
    /// Buckets read from elsewhere.
    pub sources: Vec<(String, Location)>,
    /// Where failed items are listed.
    pub failures: Location,
    /// Print a JSON summary.
    pub json: bool,
    /// Show a progress bar on a terminal.
    pub progress: bool,
}

/// Whether and how a run takes the catalog lock.
#[derive(Debug, Clone)]
pub struct LockPolicy {
    /// Take the lock (off only when nothing else can write the catalog).
    pub enabled: bool,
    /// How long to wait for a held lock; zero fails at once.
    pub wait: Duration,
}

impl LockPolicy {
    /// From `--no-lock` and `--lock-wait`.
    pub fn from_args(a: &LockArgs) -> LockPolicy {
        LockPolicy { enabled: !a.no_lock, wait: Duration::from_secs(a.lock_wait) }
    }

    /// Takes the lock at `lock` as `owner`, or nothing when the lock is off.
    pub async fn acquire(
        &self,
        stores: &Stores,
        lock: &Location,
        owner: String,
    ) -> anyhow::Result<Option<LockGuard>> {
        if !self.enabled {
            return Ok(None);
        }
        let options = LockOptions {
            owner,
            wait: (!self.wait.is_zero()).then_some(self.wait),
            ..LockOptions::default()
        };
        Ok(Some(CatalogLock::acquire(stores, lock, options).await?))
    }
}

/// Parses every `--source BUCKET=LOCATION`.
pub fn parse_sources(a: &SourceArgs) -> anyhow::Result<Vec<(String, Location)>> {
    a.sources.iter().map(|s| parse_source(s)).collect()
}

/// Parses `BUCKET=LOCATION`.
pub fn parse_source(s: &str) -> anyhow::Result<(String, Location)> {
    let Some((bucket, loc)) = s.split_once('=') else {
        bail!("--source '{s}' must be BUCKET=LOCATION");
    };
    if bucket.is_empty() {
        bail!("--source '{s}' has no bucket name");
    }
    Ok((bucket.to_string(), Location::parse(loc).with_context(|| format!("--source '{s}'"))?))
}

/// Where failures are listed unless told: next to the catalog the user named, that is next to
/// the catalog object in `--catalog-store` when there is one (the local file is only a working
/// copy, often on a machine that is gone after the run), else next to the local catalog file.
fn default_failures(args: &CatalogArgs, place: &CatalogPlace) -> anyhow::Result<Location> {
    match &args.catalog_store {
        Some(store) => {
            let store = Location::parse(store).context("--catalog-store")?;
            let key = Path::new(&args.catalog_key).with_extension("failures.jsonl");
            Ok(store.join(&key.to_string_lossy()))
        }
        None => Ok(Location::local(place.path.with_extension("failures.jsonl"))?),
    }
}

impl TryFrom<IncrementalArgs> for IncrementalConfig {
    type Error = anyhow::Error;

    fn try_from(a: IncrementalArgs) -> anyhow::Result<Self> {
        let config = match &a.config {
            Some(p) => AppConfig::load(p)?,
            None => AppConfig::default(),
        };
        let place = catalog_place(
            &a.catalog,
            config.catalog.db_path.clone(),
            config.catalog.warehouse.clone(),
        )?;
        let grid = match a.h3_resolution {
            Some(r) => Some(GridSpec::h3(r)?),
            None => config.grid()?,
        };
        let chunk_size =
            a.chunk_size.or(config.ingest.chunk_size).unwrap_or(DEFAULT_INCREMENTAL_CHUNK);
        if chunk_size == 0 {
            bail!("--chunk-size must be at least 1");
        }
        if a.chunk_rows == 0 || a.chunk_files == 0 {
            bail!("--chunk-rows and --chunk-files must be at least 1");
        }
        let since = a.since.as_deref().map(parse_since).transpose()?;
        let failures = match &a.failures {
            Some(f) => Location::parse(f).context("--failures")?,
            None => default_failures(&a.catalog, &place)?,
        };
        Ok(IncrementalConfig {
            inventory: Location::parse(&a.inventory).context("--inventory")?,
            place,
            since,
            limit: a.limit.filter(|l| *l > 0),
            chunk_size,
            budget: Budget { rows: a.chunk_rows, files: a.chunk_files },
            max_workers: a
                .max_workers
                .or(config.ingest.max_workers)
                .unwrap_or(FETCH_CONCURRENCY)
                .max(1),
            write_concurrency: a.write_concurrency.max(1),
            grid,
            lock: LockPolicy::from_args(&a.lock),
            batch_add_files: a.batch_add_files || config.ingest.batch_add_files.unwrap_or(false),
            spill_dir: a.spill_dir.clone(),
            update_hash_index: a.update_hash_index,
            publish_every: Duration::from_secs(a.publish_every),
            sources: parse_sources(&a.sources)?,
            failures,
            json: a.json,
            progress: !a.no_progress,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> anyhow::Result<AppConfig> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("c.yaml");
        std::fs::write(&p, text)?;
        AppConfig::load(&p)
    }

    #[test]
    fn the_originals_config_format_is_read() {
        let c = yaml(
            "catalog:\n  db_path: /tmp/x.db\n  warehouse: s3://b/wh\ngrid:\n  type: h3\n  resolution: 2\ningest:\n  chunk_size: 100\n  max_workers: 8\n  batch_add_files: true\n",
        )
        .unwrap();
        assert_eq!(c.grid().unwrap(), Some(GridSpec::H3 { resolution: 2 }));
        assert_eq!(c.ingest.chunk_size, Some(100));
        assert_eq!(c.catalog.warehouse.as_deref(), Some("s3://b/wh"));
    }

    #[test]
    fn empty_configs_are_defaults_and_unknown_keys_are_errors() {
        assert!(yaml("").unwrap().grid().unwrap().is_none());
        let err = yaml("ingest:\n  chunk_sise: 3\n").unwrap_err();
        assert!(format!("{err:#}").contains("chunk_sise"), "{err:#}");
        let err = yaml("grid:\n  type: geojson\n").unwrap().grid().unwrap_err();
        assert!(err.to_string().contains("boundaries_path"));
        assert!(yaml("grid:\n  type: s2\n").unwrap().grid().is_err());
    }

    #[test]
    fn failures_are_listed_next_to_the_catalog_the_user_named() {
        let parse = |args: &[&str]| {
            let mut argv = vec!["earthcatalog", "incremental", "-i", "inv.csv"];
            argv.extend_from_slice(args);
            let cli = <crate::cli::Cli as clap::Parser>::try_parse_from(argv).unwrap();
            let crate::cli::Command::Incremental(a) = cli.command else { unreachable!() };
            IncrementalConfig::try_from(a).unwrap().failures.to_string()
        };
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join("cat.db");
        let local = local.to_str().unwrap();
        assert_eq!(
            parse(&[
                "--catalog",
                local,
                "--catalog-store",
                "s3://b/prod",
                "--catalog-key",
                "x/c.db"
            ]),
            "s3://b/prod/x/c.failures.jsonl"
        );
        assert!(parse(&["--catalog", local]).ends_with("/cat.failures.jsonl"));
        assert_eq!(parse(&["--catalog", local, "--failures", "s3://b/f.jsonl"]), "s3://b/f.jsonl");
    }

    #[test]
    fn sources_map_a_bucket_to_a_location() {
        let (b, l) = parse_source("its-live-data=s3://mirror/x").unwrap();
        assert_eq!(b, "its-live-data");
        assert_eq!(l.to_string(), "s3://mirror/x");
        assert!(parse_source("nobucket").is_err());
    }
}
