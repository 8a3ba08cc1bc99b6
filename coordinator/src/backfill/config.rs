//! The validated settings of a backfill run, from `earthcatalog backfill|coordinator` flags.

use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use earthcatalog_common::inventory::parse_since;
use earthcatalog_common::location::Location;

use crate::cli::{BackfillArgs, ScalingArgs};
use crate::config::{CatalogPlace, LockPolicy, catalog_place, parse_sources};
use crate::lease_host::{EMBEDDED_LISTEN, ServiceConfig};
use crate::scaling::ScalingRule;

/// Default address of a standalone coordinator.
const COORDINATOR_LISTEN: &str = "0.0.0.0:50051";

/// How many workers run inside the coordinator's process by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `earthcatalog backfill`: local workers unless told otherwise.
    Backfill,
    /// `earthcatalog coordinator`: external workers.
    Coordinator,
}

/// Settings of one backfill run.
#[derive(Debug, Clone)]
pub struct BackfillConfig {
    /// The inventory.
    pub inventory: Location,
    /// Catalog, lock and warehouse.
    pub place: CatalogPlace,
    /// Staging root.
    pub staging: Location,
    /// Inventory rows last modified before this are skipped.
    pub since: Option<DateTime<Utc>>,
    /// Stop after this many items.
    pub limit: Option<u64>,
    /// Items per chunk.
    pub chunk_size: usize,
    /// Rows per data file.
    pub compact_rows: usize,
    /// Items fetched at once per ingest task.
    pub fetch_concurrency: usize,
    /// H3 resolution asked for.
    pub h3_resolution: Option<u8>,
    /// Append instead of rebuilding.
    pub delta: bool,
    /// Reuse staged chunks only.
    pub skip_inventory: bool,
    /// Skip Phase 2.
    pub skip_ingest: bool,
    /// Retry the items listed in staging `pending/`.
    pub retry_pending: bool,
    /// Write the hash index.
    pub update_hash_index: bool,
    /// Hash index location asked for.
    pub hash_index: Option<Location>,
    /// How the catalog lock is taken.
    pub lock: LockPolicy,
    /// Upload the catalog at the end.
    pub upload: bool,
    /// Buckets read from elsewhere.
    pub sources: Vec<(String, Location)>,
    /// The lease service and its local workers.
    pub service: ServiceConfig,
    /// Print a JSON summary.
    pub json: bool,
    /// How many workers the run wants.
    pub scaling: ScalingRule,
    /// The Auto Scaling group that follows it.
    pub scale_asg: Option<String>,
}

impl BackfillConfig {
    /// Validates `args` for `mode`.
    pub fn from_args(a: BackfillArgs, mode: Mode) -> anyhow::Result<BackfillConfig> {
        let place = catalog_place(&a.catalog, None, None)?;
        if a.chunk_size == 0 {
            bail!("--chunk-size must be at least 1");
        }
        if a.compact_rows == 0 {
            bail!("--compact-rows must be at least 1");
        }
        let scaling = scaling_rule(&a.scaling, a.service.worker_slots)?;
        let (default_listen, default_workers) = match mode {
            Mode::Backfill => (EMBEDDED_LISTEN, 2),
            Mode::Coordinator => (COORDINATOR_LISTEN, 0),
        };
        let service = ServiceConfig::from_args(&a.service, default_listen, default_workers)?;
        Ok(BackfillConfig {
            inventory: Location::parse(&a.inventory).context("--inventory")?,
            place,
            staging: Location::parse(&a.staging).context("--staging")?,
            since: a.since.as_deref().map(parse_since).transpose()?,
            limit: a.limit.filter(|l| *l > 0),
            chunk_size: a.chunk_size,
            compact_rows: a.compact_rows,
            fetch_concurrency: a.fetch_concurrency.max(1),
            h3_resolution: a.h3_resolution,
            delta: a.delta || a.retry_pending,
            skip_inventory: a.skip_inventory,
            skip_ingest: a.skip_ingest,
            retry_pending: a.retry_pending,
            update_hash_index: a.update_hash_index,
            hash_index: a
                .hash_index
                .as_deref()
                .map(Location::parse)
                .transpose()
                .context("--hash-index")?,
            lock: LockPolicy::from_args(&a.lock),
            upload: !a.no_upload,
            sources: parse_sources(&a.sources)?,
            service,
            json: a.json,
            scaling,
            scale_asg: a.scaling.scale_asg.filter(|g| !g.is_empty()),
        })
    }
}

/// The scaling rule from its flags; fleet workers run `--worker-slots` tasks unless told.
fn scaling_rule(a: &ScalingArgs, worker_slots: usize) -> anyhow::Result<ScalingRule> {
    if a.scale_min > a.scale_max {
        bail!("--scale-min {} is above --scale-max {}", a.scale_min, a.scale_max);
    }
    let slots = match a.scale_slots {
        Some(0) => bail!("--scale-slots must be at least 1"),
        Some(s) => s,
        None => u32::try_from(worker_slots.max(1)).unwrap_or(u32::MAX),
    };
    Ok(ScalingRule {
        min: a.scale_min,
        max: a.scale_max,
        slots,
        cooldown: Duration::from_secs(a.scale_cooldown_seconds),
    })
}
