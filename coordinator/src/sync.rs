//! `earthcatalog sync`: the items a full inventory no longer lists leave the table in one
//! `overwrite` snapshot (files holding their rows rewritten without them), and leave the hash
//! index; refused, changing nothing, when more than `--max-delete-fraction` of the rows would go.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use anyhow::{Context, bail};
use earthcatalog_common::catalog::{PROP_HASH_INDEX_PATH, ReplaceKind, Replacement, data_files};
use earthcatalog_common::geoparquet::FileNamer;
use earthcatalog_common::hash_index::{HashIndex, default_location};
use earthcatalog_common::ids::RunId;
use earthcatalog_common::location::Location;
use earthcatalog_common::publish::{CatalogWriter, IndexUpdate};
use earthcatalog_common::stores::Stores;
use earthcatalog_common::sync::{SyncPlan, listed_ids, plan, rewrite};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use crate::cli::SyncArgs;
use crate::maintenance::{open_locked, under_lock};
use crate::read_table;

/// Files rewritten at once.
const REWRITES: usize = 4;

/// What a sync did (or, in a dry run, would do).
#[derive(Debug, Default, Serialize)]
pub struct SyncSummary {
    /// Nothing was changed.
    pub dry_run: bool,
    /// Items the inventory lists.
    pub listed_items: usize,
    /// Rows in the table before.
    pub table_rows: u64,
    /// Items removed.
    pub deleted_items: usize,
    /// Rows removed.
    pub deleted_rows: u64,
    /// Files rewritten without those rows.
    pub files_rewritten: usize,
    /// Files dropped (every row went).
    pub files_dropped: usize,
    /// The overwrite snapshot.
    pub snapshot_id: Option<i64>,
    /// Ids removed from the hash index.
    pub index_removed: usize,
}

/// Runs `earthcatalog sync` and prints its summary.
pub async fn run(args: SyncArgs, stores: &Stores) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&args.max_delete_fraction) {
        bail!("--max-delete-fraction must be between 0 and 1");
    }
    let shared = Arc::new(stores.clone());
    let inventory = Location::parse(&args.inventory).context("--inventory")?;
    let (listed, malformed) = listed_ids(&shared, &inventory).await?;
    if malformed > 0 {
        bail!(
            "{malformed} rows of {inventory} could not be read: a sync needs the whole inventory (an item on an unreadable row would be deleted); nothing changed"
        );
    }
    if listed.is_empty() {
        bail!(
            "{inventory} lists no .stac.json keys: refusing to delete every item; nothing changed"
        );
    }
    let summary = if args.dry_run {
        let read = read_table::open(&args.catalog, stores).await?;
        let found = plan(read.catalog.stores(), &data_files(&read.table).await?, &listed).await?;
        check_fraction(&found, args.max_delete_fraction)?;
        planned(&found, listed.len(), true)
    } else {
        let writer = open_locked(&args.catalog, &args.lock, stores, "earthcatalog sync").await?;
        let max = args.max_delete_fraction;
        under_lock(writer, async |w| sync_under_lock(w, &listed, max).await).await?
    };
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    }
    tracing::info!(
        "{} {} items ({} rows of {}): {} files rewritten, {} dropped",
        if summary.dry_run { "dry run, would delete" } else { "deleted" },
        summary.deleted_items,
        summary.deleted_rows,
        summary.table_rows,
        summary.files_rewritten,
        summary.files_dropped,
    );
    Ok(())
}

fn planned(found: &SyncPlan, listed: usize, dry_run: bool) -> SyncSummary {
    let dropped = found.files.iter().filter(|f| f.removed_rows == f.rows).count();
    SyncSummary {
        dry_run,
        listed_items: listed,
        table_rows: found.table_rows,
        deleted_items: found.removed_ids.len(),
        deleted_rows: found.removed_rows,
        files_rewritten: found.files.len() - dropped,
        files_dropped: dropped,
        ..Default::default()
    }
}

fn check_fraction(found: &SyncPlan, max: f64) -> anyhow::Result<()> {
    let fraction = found.removed_rows as f64 / found.table_rows.max(1) as f64;
    if fraction > max {
        bail!(
            "the inventory does not list {} items holding {} of the table's {} rows ({:.1} %), more than --max-delete-fraction {}: nothing changed (is the inventory complete? to remove them anyway, raise --max-delete-fraction)",
            found.removed_ids.len(),
            found.removed_rows,
            found.table_rows,
            fraction * 100.0,
            max
        );
    }
    Ok(())
}

async fn sync_under_lock(
    writer: &mut CatalogWriter,
    listed: &HashSet<[u8; 16]>,
    max: f64,
) -> anyhow::Result<(SyncSummary, Option<IndexUpdate>)> {
    let catalog = writer.catalog();
    let stores = catalog.stores().clone();
    let table = catalog.load_table().await?.context("the catalog has no table")?;
    let found = plan(&stores, &data_files(&table).await?, listed).await?;
    check_fraction(&found, max)?;
    let mut summary = planned(&found, listed.len(), false);
    if found.files.is_empty() {
        return Ok((summary, None));
    }
    let namer = FileNamer::new(RunId::new(), "sync");
    let written: Vec<Option<Location>> = futures::stream::iter(&found.files)
        .map(|edit| rewrite(&stores, edit, listed, &namer))
        .buffered(REWRITES)
        .try_collect()
        .await?;
    let written: Vec<Location> = written.into_iter().flatten().collect();
    writer.wrote(written.iter().cloned());
    let add = writer.catalog().describe_files(&table, &written).await?;
    let remove: BTreeSet<String> = found.files.iter().map(|f| f.path.clone()).collect();
    let replacement =
        Replacement { kind: ReplaceKind::Overwrite, remove, add, ..Default::default() };
    let (_, committed) = writer.replace(&replacement).await?;
    summary.snapshot_id = committed.snapshot_id;
    let index_at = match table.metadata().properties().get(PROP_HASH_INDEX_PATH) {
        Some(p) => Location::parse(p).context("table property earthcatalog.hash_index_path")?,
        None => default_location(writer.catalog().warehouse())?,
    };
    if stores.head(&index_at).await?.is_none() {
        return Ok((summary, None));
    }
    let mut index = HashIndex::read(&stores, &index_at).await?;
    summary.index_removed = found.removed_ids.iter().filter(|h| index.remove_hash(h)).count();
    Ok((summary, Some(IndexUpdate { location: index_at, index })))
}
