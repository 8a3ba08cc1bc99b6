//! Phase 4: exactly the files of accepted compact results become the table's contents (full
//! mode: one `overwrite` snapshot removes every file the table held and adds the run's, so
//! readers see the old table or the new one, never an empty or half-registered one; delta mode:
//! appended, or, when items the table holds at an older version are among them, one `overwrite`
//! that also rewrites the files holding their old rows), the catalog is uploaded under the lock,
//! and then the hash index and the item index are written.
//!
//! Before registering, data files that attempts of this run left in the touched partitions but
//! that no accepted result names (an expired attempt that kept writing) are deleted.

use std::collections::{BTreeSet, HashMap, HashSet};

use anyhow::Context;
use arrow::array::{Array, AsArray};
use earthcatalog_common::backfill::StagingLayout;
use earthcatalog_common::backfill::layout::compact_output_token;
use earthcatalog_common::backfill::object_times;
use earthcatalog_common::catalog::{
    ReplaceKind, ReplaceSummary, Replacement, TableSettings, data_files, partition_of,
};
use earthcatalog_common::geoparquet::FileNamer;
use earthcatalog_common::hash_index::HashIndex;
use earthcatalog_common::ids::{CellYear, RunId};
use earthcatalog_common::item_index::ItemIndex;
use earthcatalog_common::location::Location;
use earthcatalog_common::partition::GridSpec;
use earthcatalog_common::publish::{CatalogWriter, Files, IndexUpdate};
use earthcatalog_common::rewrite::{Rewritten, RowOf, without_rows};
use earthcatalog_common::rpc::ReportedFile;
use earthcatalog_common::staging::read_staged;
use earthcatalog_common::stores::Stores;
use earthcatalog_common::updates::{self, NewFile};
use futures::{StreamExt, TryStreamExt};

use super::config::BackfillConfig;

/// Files registered per snapshot (as the original's batches).
const REGISTER_BATCH: usize = 2_000;
/// Partition folders listed at once when looking for orphaned files.
const PARTITION_LISTINGS: usize = 32;

/// What Phase 4 did.
#[derive(Debug, Default)]
pub struct Registered {
    /// Files registered.
    pub files: u64,
    /// Rows registered.
    pub rows: u64,
    /// Snapshots committed.
    pub snapshots: u64,
    /// Items (delta mode) the table held at an older version: their old rows were replaced.
    pub items_updated: u64,
    /// Items (delta mode) the table already held at that version or a newer one: not added.
    pub items_skipped: u64,
    /// Whether the catalog was uploaded.
    pub uploaded: bool,
    /// The hash index written, and its size.
    pub hash_index: Option<(String, usize)>,
}

/// The hash index location: asked for, else the table's property, else next to the warehouse.
pub fn hash_index_location(
    cfg: &BackfillConfig,
    property: Option<&str>,
) -> anyhow::Result<Location> {
    if let Some(l) = &cfg.hash_index {
        return Ok(l.clone());
    }
    if let Some(p) = property {
        return Location::parse(p).context("table property earthcatalog.hash_index_path");
    }
    earthcatalog_common::hash_index::default_location(&cfg.place.warehouse)
        .context("default hash index location")
}

/// Deletes this run's data files in `partitions` whose URI `keep` does not hold (the accepted
/// results' files, or the table's live files when an abandoned run is cleared).
pub async fn delete_orphans(
    stores: &Stores,
    warehouse: &Location,
    run: &RunId,
    partitions: &[CellYear],
    keep: &HashSet<String>,
) -> anyhow::Result<u64> {
    // One listing per partition, many at once: one after another they took a round trip each
    // (5,000 partitions at S3's latency: minutes).
    let listings: Vec<_> = futures::stream::iter(partitions)
        .map(|p| async move { stores.list(&warehouse.join(&p.hive_dir())).await })
        .buffered(PARTITION_LISTINGS)
        .try_collect()
        .await?;
    let mut orphans = Vec::new();
    for l in listings.into_iter().flatten() {
        let mine = l.file_name().and_then(|n| compact_output_token(run, n)).is_some();
        if mine && !keep.contains(&l.uri()) {
            orphans.push(l);
        }
    }
    if !orphans.is_empty() {
        tracing::warn!(
            files = orphans.len(),
            "deleting data files of attempts whose results were not accepted"
        );
    }
    let failed = stores.delete_all(&orphans, "an orphaned data file").await;
    Ok((orphans.len() - failed) as u64)
}

/// Registers `files` and publishes the catalog through `writer`.
pub async fn register(
    cfg: &BackfillConfig,
    writer: &mut CatalogWriter,
    grid: &GridSpec,
    files: &[ReportedFile],
    resumed: bool,
    layout: &StagingLayout,
) -> anyhow::Result<Registered> {
    let mut out = Registered::default();
    let catalog = writer.catalog();
    let stores = catalog.stores().clone();
    let existing = catalog.load_table().await?;
    let property = existing
        .as_ref()
        .and_then(|t| t.metadata().properties().get("earthcatalog.hash_index_path").cloned());
    let index_at = hash_index_location(cfg, property.as_deref())?;
    let mut settings = TableSettings::from_grid(grid);
    settings.hash_index_path = Some(index_at.uri());
    let mut items = None;
    if cfg.delta {
        let table = catalog.open_table(&settings).await?;
        let items_at = ItemIndex::location(&cfg.place.warehouse)?;
        let (mut index, _) = ItemIndex::load(&stores, &table, &items_at).await?;
        let locations = unregistered(&table, files, resumed).await?;
        let table = apply_delta(writer, table, &locations, &mut index, layout, &mut out).await?;
        index.set_snapshot(table.metadata().current_snapshot_id());
        items = Some((index, items_at));
    } else {
        let (table, grid_change) = catalog.open_for_rebuild(&settings).await?;
        let locations: Vec<Location> = files.iter().map(|f| f.location.clone()).collect();
        let summary = rebuild(writer, &table, &locations, grid_change).await?;
        out.files = summary.added_files as u64;
        out.rows = summary.added_records;
        out.snapshots = u64::from(summary.snapshot_id.is_some());
    }
    let index = match cfg.update_hash_index {
        true => Some(hash_index(cfg, &stores, files, index_at).await?),
        false => None,
    };
    out.uploaded = writer.publish(index.as_ref()).await?;
    out.hash_index = index.map(|u| (u.location.uri(), u.index.len()));
    // After the catalog it describes is published (an index ahead of it would be rebuilt).
    if let Some((index, at)) = items {
        index.write(&stores, &at).await?;
    }
    Ok(out)
}

/// Commits a delta run's files: appended when every item is new; otherwise in one `overwrite`
/// snapshot where the files holding old rows of updated items are rewritten without them, and
/// new files holding rows the table must not take (items it holds at that version or a newer
/// one, older copies of an item) are rewritten without those. An item without `updated` is
/// versioned by the object time Phase 3 kept for it.
async fn apply_delta(
    writer: &mut CatalogWriter,
    table: iceberg::table::Table,
    locations: &[Location],
    index: &mut ItemIndex,
    layout: &StagingLayout,
    out: &mut Registered,
) -> anyhow::Result<iceberg::table::Table> {
    let stores = writer.catalog().stores().clone();
    let described = writer.catalog().describe_files(&table, locations).await?;
    let times = object_times::read_for(&stores, &layout.object_times_dir(), locations)
        .await
        .context("reading the object times Phase 3 kept")?;
    let files: Vec<NewFile> = described
        .iter()
        .zip(times)
        .map(|(d, object_times)| NewFile {
            partition: partition_of(&table, d),
            path: d.file_path().to_string(),
            size: Some(d.file_size_in_bytes()),
            object_times,
        })
        .collect();
    let sorted = updates::sort_out_files(&stores, index, &files).await?;
    sorted.record(index);
    out.items_updated = sorted.updated.len() as u64;
    out.items_skipped = sorted.skipped_items as u64;
    if sorted.updated.is_empty() && !sorted.stale.contains(&true) {
        return append(writer, table, locations, out).await;
    }
    let namer = FileNamer::new(layout.run().clone(), "update");
    let mut add = Vec::new();
    let mut superseded = Vec::new();
    for ((file, stale), new) in described.into_iter().zip(&sorted.stale).zip(&files) {
        if !stale {
            add.push(file);
            continue;
        }
        let path = file.file_path().to_string();
        superseded.push(Location::parse(&path)?);
        let drops = |row: RowOf<'_>| sorted.drops(row, &new.object_times);
        if let Rewritten::Into { file, .. } = without_rows(&stores, &path, drops, &namer).await? {
            writer.wrote([file.clone()]);
            add.extend(writer.catalog().describe_files(&table, &[file]).await?);
        }
    }
    let live = updates::live_files(&data_files(&table).await?);
    let old = updates::drop_old_rows(&stores, &live, &sorted.updated, &namer).await?;
    let rewritten: Vec<Location> = old.rewritten.iter().map(|(_, f)| f.clone()).collect();
    writer.wrote(rewritten.iter().cloned());
    add.extend(writer.catalog().describe_files(&table, &rewritten).await?);
    tracing::info!(
        updated = sorted.updated.len(),
        skipped = sorted.skipped_items,
        old_files = old.remove.len(),
        "registering the delta with its updates in one snapshot"
    );
    let replacement =
        Replacement { kind: ReplaceKind::Overwrite, remove: old.remove, add, ..Default::default() };
    let (table, summary) = writer.replace(&replacement).await?;
    out.files += summary.added_files as u64;
    out.rows += summary.added_records;
    out.snapshots += u64::from(summary.snapshot_id.is_some());
    // The run's own files that were rewritten are registered nowhere.
    stores.delete_all(&superseded, "a delta file rewritten without superseded rows").await;
    Ok(table)
}

/// This delta run's files not registered yet. A resumed run may have registered its files (and
/// uploaded the catalog) before it stopped; registering them again would be refused as
/// duplicates.
async fn unregistered(
    table: &iceberg::table::Table,
    files: &[ReportedFile],
    resumed: bool,
) -> anyhow::Result<Vec<Location>> {
    let mut locations: Vec<Location> = files.iter().map(|f| f.location.clone()).collect();
    if resumed {
        let registered: HashSet<String> = data_files(table)
            .await
            .context("listing the table's files")?
            .into_iter()
            .map(|f| f.path)
            .collect();
        let before = locations.len();
        locations.retain(|l| !registered.contains(&l.uri()));
        if locations.len() < before {
            tracing::info!(
                already = before - locations.len(),
                "files of this run were registered before it stopped; not registering them again"
            );
        }
    }
    Ok(locations)
}

/// Appends files in batches.
async fn append(
    writer: &mut CatalogWriter,
    mut table: iceberg::table::Table,
    locations: &[Location],
    out: &mut Registered,
) -> anyhow::Result<iceberg::table::Table> {
    for batch in locations.chunks(REGISTER_BATCH) {
        let (t, summary) = writer.commit(&table, Files::At(batch)).await?;
        table = t;
        out.files += summary.files as u64;
        out.rows += summary.records;
        out.snapshots += u64::from(summary.snapshot_id.is_some());
        tracing::info!("registered {} files", out.files);
    }
    Ok(table)
}

/// Makes `files` the table's whole contents in one `overwrite` snapshot, setting the grid
/// properties a rebuild changes in the same commit. Files already live (a resumed run that
/// committed before it stopped) stay, so a repeated Phase 4 changes nothing.
async fn rebuild(
    writer: &mut CatalogWriter,
    table: &iceberg::table::Table,
    files: &[Location],
    set_properties: HashMap<String, String>,
) -> anyhow::Result<ReplaceSummary> {
    let live: BTreeSet<String> = data_files(table)
        .await
        .context("listing the table's files")?
        .into_iter()
        .map(|f| f.path)
        .collect();
    let new: HashSet<String> = files.iter().map(Location::uri).collect();
    let remove: BTreeSet<String> = live.iter().filter(|p| !new.contains(*p)).cloned().collect();
    let to_add: Vec<Location> =
        files.iter().filter(|l| !live.contains(&l.uri())).cloned().collect();
    let add = writer.catalog().describe_files(table, &to_add).await?;
    tracing::info!(
        removing = remove.len(),
        adding = add.len(),
        "replacing the table's contents in one snapshot"
    );
    let replacement = Replacement { kind: ReplaceKind::Overwrite, remove, add, set_properties };
    let (_, summary) = writer.replace(&replacement).await?;
    Ok(summary)
}

/// The hash index after this run: the ids of `files`, added to the stored index in delta mode.
async fn hash_index(
    cfg: &BackfillConfig,
    stores: &Stores,
    files: &[ReportedFile],
    location: Location,
) -> anyhow::Result<IndexUpdate> {
    let mut index = match cfg.delta {
        true => HashIndex::read(stores, &location).await?,
        false => HashIndex::new(),
    };
    for f in files {
        add_ids(stores, &f.location, &mut index).await?;
    }
    Ok(IndexUpdate { location, index })
}

async fn add_ids(stores: &Stores, file: &Location, index: &mut HashIndex) -> anyhow::Result<()> {
    let batches =
        read_staged(stores, file).await.with_context(|| format!("reading ids of {file}"))?;
    for b in batches {
        let Some(col) = b.column_by_name("id") else {
            anyhow::bail!("data file {file} has no id column");
        };
        let ids = col
            .as_string_opt::<i32>()
            .with_context(|| format!("{file}: id is not a string column"))?;
        for i in (0..ids.len()).filter(|i| ids.is_valid(*i)) {
            index.insert_id(ids.value(i));
        }
    }
    Ok(())
}
