//! `earthcatalog incremental`: one process streams an inventory, ingests it chunk by chunk and
//! registers the files in the Iceberg table, under the catalog lock.
//!
//! Order of a run: take the lock → download the catalog (when it lives in a store) → open the
//! table and its item index → for each chunk: fetch, fan out, skip the items the table holds at
//! that version, write, register (an item held at an older version leaves its old rows in the
//! same snapshot: [`earthcatalog_common::updates`]) → upload the catalog (conditional on the
//! version downloaded) → release the lock, through the one publish sequence of
//! [`earthcatalog_common::publish`], which also decides what a failed run deletes. The inventory's first record is read before the lock is taken, so a run that
//! cannot read its input leaves nothing behind (no catalog, no table, no lock).

mod held;
mod progress;
mod summary;

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, bail};
use earthcatalog_common::catalog::{
    Catalog, Entries, PROP_HASH_INDEX_PATH, ReplaceKind, Replacement, TableSettings, data_files,
    reachable,
};
use earthcatalog_common::geoparquet::{FileNamer, WrittenFile, incremental_namer};
use earthcatalog_common::hash_index::{HashIndex, default_location};
use earthcatalog_common::ids::RunId;
use earthcatalog_common::inventory::{self, Filter, InventoryRecord, InventoryStream, OpenOptions};
use earthcatalog_common::item_index::{Freshness, ItemIndex};
use earthcatalog_common::json_lines;
use earthcatalog_common::location::Location;
use earthcatalog_common::partition::{GridSpec, open_partitioner};
use earthcatalog_common::pipeline::{
    DataPath, DataPathOptions, FailureKind, ItemFailure, ObjectKey,
};
use earthcatalog_common::publish::{CatalogWriter, Files, IndexUpdate};
use earthcatalog_common::stores::Stores;
use earthcatalog_common::updates::{self, LiveFiles, Sorted};
use futures::StreamExt;
use iceberg::table::Table;
use tracing::Instrument;

pub use summary::RunSummary;

use crate::config::IncrementalConfig;
use held::Held;
use progress::Progress;

/// Runs the incremental pipeline; the summary says what happened (failed items included).
pub async fn run(cfg: IncrementalConfig, stores: &Stores) -> anyhow::Result<RunSummary> {
    if !cfg.lock.enabled && cfg.place.remote.is_some() {
        bail!(
            "--no-lock cannot be used with --catalog-store: the catalog is only uploaded under the lock"
        );
    }
    let stores = Arc::new(stores.clone().with_sources(&cfg.sources));
    let inventory =
        first_readable(inventory::open(&stores, &cfg.inventory, &OpenOptions::default()))
            .await
            .context("reading the inventory")?;
    let guard =
        cfg.lock.acquire(&stores, &cfg.place.lock, "earthcatalog incremental".into()).await?;
    let writer = CatalogWriter::open(stores.clone(), cfg.place.clone(), guard).await?;
    Run::new(&cfg, stores).execute(writer, inventory).await
}

/// `stream`, once its first record has been read: an inventory that cannot be opened fails here,
/// before the run changes anything.
async fn first_readable(
    stream: InventoryStream,
) -> Result<InventoryStream, inventory::InventoryError> {
    let mut stream = stream.peekable();
    if let Some(Err(_)) = std::pin::Pin::new(&mut stream).peek().await
        && let Some(Err(e)) = stream.next().await
    {
        return Err(e);
    }
    Ok(stream.boxed())
}

/// One run's state.
struct Run<'a> {
    cfg: &'a IncrementalConfig,
    stores: Arc<Stores>,
    summary: RunSummary,
    failures: Vec<ItemFailure>,
    progress: Progress,
    /// The hash index being extended, with `--update-hash-index`.
    index: Option<IndexUpdate>,
    /// What the table holds of each item, kept as batches are written.
    items: ItemIndex,
    /// The table's live files by partition, kept as snapshots are committed: the files an
    /// update rewrites are found here.
    live: LiveFiles,
}

impl<'a> Run<'a> {
    fn new(cfg: &'a IncrementalConfig, stores: Arc<Stores>) -> Self {
        Run {
            cfg,
            stores,
            summary: RunSummary { run_id: RunId::new().to_string(), ..Default::default() },
            failures: Vec::new(),
            progress: Progress::new(cfg.progress),
            index: None,
            items: ItemIndex::default(),
            live: LiveFiles::new(),
        }
    }

    async fn execute(
        mut self,
        mut writer: CatalogWriter,
        inventory: InventoryStream,
    ) -> anyhow::Result<RunSummary> {
        let outcome = self.ingest(&mut writer, inventory).await;
        self.progress.finish();
        match outcome {
            Ok(()) => writer.finish().await,
            Err(_) => writer.abandon().await,
        }
        // Failures found before an abort are listed too: they are still worth retrying. But a
        // retry that reads the failures file itself keeps it whole when it aborts: the items it
        // had not reached yet are listed nowhere else.
        let listed = if outcome.is_err() && self.retries_the_failures_file() {
            tracing::warn!(
                "the failures file {} is this run's inventory: kept as it was",
                self.cfg.failures
            );
            Ok(())
        } else {
            self.write_failures().await
        };
        outcome?;
        listed?;
        self.summary.seconds = self.progress.elapsed();
        Ok(self.summary)
    }

    async fn ingest(
        &mut self,
        writer: &mut CatalogWriter,
        inventory: InventoryStream,
    ) -> anyhow::Result<()> {
        let cfg = self.cfg;
        let grid = self.grid(writer.catalog()).await?;
        let mut table = writer.catalog().open_table(&TableSettings::from_grid(&grid)).await?;
        let partitioner = open_partitioner(&grid, &self.stores).await?;
        tracing::info!(catalog = %cfg.place.path.display(), warehouse = %cfg.place.warehouse, ?grid, run = %self.summary.run_id, "ingesting {}", cfg.inventory);

        let data_path = DataPath::new(
            self.stores.clone(),
            partitioner,
            DataPathOptions {
                fetch_concurrency: cfg.max_workers,
                write_concurrency: cfg.write_concurrency,
                newest_copy_only: true,
                ..DataPathOptions::default()
            },
        );
        if cfg.update_hash_index {
            self.index = Some(read_index(&self.stores, &table, &cfg.place.warehouse).await?);
        }
        let registered = data_files(&table).await?;
        // Every snapshot's files, not only the current one's: a compaction or an update
        // replaces files that time travel to earlier snapshots still reads.
        let snapshots: Vec<i64> = table.metadata().snapshots().map(|s| s.snapshot_id()).collect();
        let referenced = reachable(&table, snapshots, Entries::All).await?.data_files;
        self.summary.orphans_deleted = writer.delete_orphans(&referenced).await? as u64;
        self.live = updates::live_files(&registered);
        let items_at = ItemIndex::location(&cfg.place.warehouse).context("item index location")?;
        let (items, freshness) = ItemIndex::load(&self.stores, &table, &items_at).await?;
        match freshness {
            Freshness::Current => {}
            Freshness::CaughtUp { files } => {
                tracing::info!("item index {items_at} brought up to date from {files} files")
            }
            Freshness::Rebuilt { files } => {
                tracing::info!("item index {items_at} built from the table's {files} files")
            }
        }
        self.items = items;
        let index_current = freshness == Freshness::Current;
        let namer = Arc::new(incremental_namer(RunId::from_string(&self.summary.run_id)));
        let mut held = if cfg.batch_add_files {
            Some(Held::new(cfg.spill_dir.as_deref(), cfg.budget.rows)?)
        } else {
            None
        };

        let filter = Filter { since: cfg.since, limit: cfg.limit, stac_only: true };
        let (mut stream, counters) = inventory::filter(inventory, filter);
        let mut chunk: Vec<ObjectKey> = Vec::with_capacity(cfg.chunk_size);
        let mut chunk_index = 0usize;
        loop {
            let next = stream.next().await;
            let done = next.is_none();
            match next {
                Some(Ok(InventoryRecord::Entry(e))) => chunk.push(ObjectKey::new(e.bucket, e.key)),
                Some(Ok(InventoryRecord::Malformed(m))) => {
                    tracing::warn!("{m}");
                    self.failures.push(ItemFailure {
                        bucket: String::new(),
                        key: format!("{} {}", m.object, m.position),
                        kind: FailureKind::MalformedInventoryRow,
                        reason: m.to_string(),
                    });
                }
                Some(Err(e)) => return Err(e).context("reading the inventory"),
                None => {}
            }
            if chunk.len() >= cfg.chunk_size || (done && !chunk.is_empty()) {
                chunk_index += 1;
                let keys = std::mem::take(&mut chunk);
                let span = tracing::info_span!("chunk", index = chunk_index, items = keys.len());
                let place = Batches { writer, table: &mut table, held: held.as_mut() };
                self.chunk(chunk_index, keys, &data_path, &namer, place).instrument(span).await?;
            }
            let c = counters.snapshot();
            self.summary.inventory_rows = c.rows_read;
            self.summary.items_listed = c.kept;
            self.summary.not_stac = c.not_stac;
            self.summary.before_since = c.before_since;
            self.summary.without_date = c.without_date;
            self.summary.malformed_rows = c.malformed;
            if done {
                break;
            }
        }
        if let Some(held) = &mut held {
            table = self.write_out(held, writer, &table, &data_path, &namer).await?;
            self.summary.spills = held.spills();
        }
        if let Some(why) = self.summary.why_nothing_ingested() {
            tracing::warn!("{why} ({})", cfg.inventory);
        }
        let index = self.index.take();
        self.summary.catalog_uploaded = writer.publish(index.as_ref()).await?;
        if let Some(i) = index {
            self.summary.hash_index = Some(i.location.uri());
        }
        // After the catalog it describes is published: an index ahead of the stored catalog
        // would name a snapshot the next run cannot find (it would then rebuild it). A stored
        // index that was current and still is (nothing committed) is not written again.
        let now = table.metadata().current_snapshot_id();
        if !index_current || self.items.snapshot() != now {
            self.items.set_snapshot(now);
            self.items.write(&self.stores, &items_at).await?;
        }
        Ok(())
    }

    /// The grid to partition with: the one asked for, else the table's, else H3 resolution 1.
    async fn grid(&self, catalog: &Catalog) -> anyhow::Result<GridSpec> {
        if let Some(g) = &self.cfg.grid {
            return Ok(g.clone());
        }
        Ok(match catalog.load_table().await? {
            Some(t) => GridSpec::from_properties(t.metadata().properties())?,
            None => GridSpec::default(),
        })
    }

    /// Ingests one chunk, a batch within the budget at a time: each batch's files are reported to
    /// the writer as soon as they exist, then registered in one snapshot (with
    /// `--batch-add-files`, its rows are held for the run's files instead). A chunk within the
    /// budget is one batch.
    async fn chunk(
        &mut self,
        index: usize,
        keys: Vec<ObjectKey>,
        data_path: &DataPath,
        namer: &Arc<FileNamer>,
        place: Batches<'_>,
    ) -> anyhow::Result<()> {
        let Batches { writer, table, mut held } = place;
        let mut collected = data_path.load(keys).await;
        let (mut skipped, mut updated, mut ingested, mut rows, mut files) = (0, 0, 0, 0, 0);
        let mut held_rows = 0;
        while let Some(mut groups) = collected.next_groups(self.cfg.budget.rows) {
            if let Some(index) = &mut self.index {
                // Every id of the batch is in the table after it commits, including the ones
                // already there: the index then matches the table even after a rerun.
                groups.retain(|_, row| {
                    index.index.insert_id(row.item.id());
                    true
                });
            }
            // Whole items per batch: an item is counted (new, updated or skipped) in one batch.
            let sorted = updates::sort_out(&self.items, &mut groups);
            skipped += sorted.skipped_items;
            self.summary.rows_skipped += sorted.skipped_rows as u64;
            updated += sorted.updated.len();
            ingested += sorted.new_items;
            rows += groups.row_count();
            // Known before the batch is registered, so that a later copy in this run finds it.
            updates::record(&mut self.items, &mut groups);
            if sorted.updated.is_empty()
                && let Some(held) = held.as_deref_mut()
            {
                held_rows += groups.row_count();
                held.hold(groups, data_path).await?;
                continue;
            }
            let mut replacing = Vec::new();
            for part in groups.split(self.cfg.budget.files) {
                let written = data_path.write(part, &self.cfg.place.warehouse, namer).await?;
                writer.wrote(written.iter().map(|f| f.location.clone()));
                files += written.len();
                if sorted.updated.is_empty() {
                    *table = self.register(writer, table, written).await?;
                } else {
                    replacing.extend(written);
                }
            }
            if !sorted.updated.is_empty() {
                // Old rows may be among the rows held for this run: written and registered
                // first, so that the update finds and rewrites them.
                if let Some(held) = held.as_deref_mut() {
                    *table = self.write_out(held, writer, table, data_path, namer).await?;
                }
                *table = self.replace(writer, table, &sorted, replacing, namer).await?;
            }
        }
        for f in &collected.failures {
            *self.summary.failures_by_kind.entry(f.kind).or_insert(0) += 1;
        }
        self.summary.items_failed += collected.failures.len() as u64;
        self.summary.items_ingested += ingested as u64;
        self.summary.items_updated += updated as u64;
        self.summary.items_skipped += skipped as u64;
        self.summary.duplicates_dropped += collected.duplicates_dropped as u64;
        self.summary.rows += rows as u64;
        let failed = collected.failures.len();
        self.failures.extend(collected.failures);
        let held_note = match held_rows {
            0 => String::new(),
            n => format!(" and {n} held for the run's files"),
        };
        tracing::info!(
            "chunk {index}: {} items read, {ingested} new and {updated} updated -> {rows} rows in {files} files{held_note} ({failed} failed, {skipped} skipped, {} older duplicates dropped)",
            collected.items,
            collected.duplicates_dropped
        );
        self.progress.update(&self.summary);
        Ok(())
    }

    /// Writes the rows held for the run (one file per (cell, year)) and registers them in one
    /// snapshot.
    async fn write_out(
        &mut self,
        held: &mut Held,
        writer: &mut CatalogWriter,
        table: &Table,
        data_path: &DataPath,
        namer: &Arc<FileNamer>,
    ) -> anyhow::Result<Table> {
        let written = held.write_out(data_path, &self.cfg.place.warehouse, namer).await?;
        writer.wrote(written.iter().map(|f| f.location.clone()));
        tracing::info!(
            "{} held rows written in {} files",
            written.iter().map(|f| f.rows).sum::<usize>(),
            written.len()
        );
        self.register(writer, table, written).await
    }

    /// Registers files in one snapshot (a failed run deletes them: see [`CatalogWriter`]).
    async fn register(
        &mut self,
        writer: &mut CatalogWriter,
        table: &Table,
        files: Vec<WrittenFile>,
    ) -> anyhow::Result<Table> {
        if files.is_empty() {
            return Ok(table.clone());
        }
        let described = writer.catalog().describe_written(table, &files).await?;
        let mut locations = Vec::with_capacity(files.len());
        for f in &files {
            self.live.entry(f.partition.clone()).or_default().push(f.location.uri());
            locations.push(f.location.clone());
        }
        // The footers are not needed once described: freed on another thread while the
        // manifests are written and committed. Freed after the commit, thousands of them held
        // a run's end ~35 ms on one core (5 % of a 2,000-file run).
        tokio::task::spawn_blocking(move || drop(files));
        let (table, summary) =
            writer.commit(table, Files::Described(&locations, described)).await?;
        self.summary.files += summary.files as u64;
        self.summary.snapshots += u64::from(summary.snapshot_id.is_some());
        self.committed(writer).await?;
        Ok(table)
    }

    /// Commits `written` (the new rows of a batch with updates) and, in the same `overwrite`
    /// snapshot, every live file holding old rows of the updated items, rewritten without them.
    async fn replace(
        &mut self,
        writer: &mut CatalogWriter,
        table: &Table,
        sorted: &Sorted,
        written: Vec<WrittenFile>,
        namer: &Arc<FileNamer>,
    ) -> anyhow::Result<Table> {
        let old = updates::drop_old_rows(&self.stores, &self.live, &sorted.updated, namer).await?;
        writer.wrote(old.rewritten.iter().map(|(_, f)| f.clone()));
        let catalog = writer.catalog();
        let mut add = catalog.describe_written(table, &written).await?;
        let files: Vec<_> = old.rewritten.iter().map(|(_, f)| f.clone()).collect();
        add.extend(catalog.describe_files(table, &files).await?);
        let replacement = Replacement {
            kind: ReplaceKind::Overwrite,
            remove: old.remove.clone(),
            add,
            ..Default::default()
        };
        let (table, summary) = writer.replace(&replacement).await?;
        old.apply_to(&mut self.live);
        for f in &written {
            self.live.entry(f.partition.clone()).or_default().push(f.location.uri());
        }
        self.summary.rows_replaced += old.removed_rows;
        self.summary.files += summary.added_files as u64;
        self.summary.snapshots += u64::from(summary.snapshot_id.is_some());
        self.committed(writer).await?;
        Ok(table)
    }

    /// After a commit: publishes when due, shows progress.
    async fn committed(&mut self, writer: &mut CatalogWriter) -> anyhow::Result<()> {
        if writer.publish_due(self.cfg.publish_every) {
            self.summary.catalog_uploaded = writer.publish(None).await?;
        }
        self.progress.update(&self.summary);
        Ok(())
    }

    /// Whether this run's inventory is the failures file it writes (a retry of the list).
    fn retries_the_failures_file(&self) -> bool {
        self.cfg.inventory == self.cfg.failures
    }

    /// Writes the failures (one JSON object per line: bucket, key, kind, reason).
    async fn write_failures(&mut self) -> anyhow::Result<()> {
        if self.failures.is_empty() {
            if self.retries_the_failures_file() {
                // A retry of the whole list that failed nothing: the list is done.
                self.stores.delete(&self.cfg.failures).await?;
                tracing::info!("every listed item retried: removed {}", self.cfg.failures);
            }
            return Ok(());
        }
        json_lines::write(&self.stores, &self.cfg.failures, &self.failures)
            .await
            .context("writing the failures file")?;
        self.summary.failures_file = Some(self.cfg.failures.to_string());
        let by_kind: BTreeMap<&str, u64> =
            self.summary.failures_by_kind.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        tracing::warn!(
            failed_items = self.summary.items_failed,
            malformed_rows = self.summary.malformed_rows,
            ?by_kind,
            "failures listed in {}",
            self.cfg.failures
        );
        Ok(())
    }
}

/// Where a chunk's batches go: the writer that deletes them if the run fails, the table they
/// are registered in, or the rows held for the run's files (`--batch-add-files`).
struct Batches<'a> {
    writer: &'a mut CatalogWriter,
    table: &'a mut Table,
    held: Option<&'a mut Held>,
}

/// The table's hash index (where its property says, else beside the warehouse), read to be
/// extended.
async fn read_index(
    stores: &Stores,
    table: &Table,
    warehouse: &Location,
) -> anyhow::Result<IndexUpdate> {
    let location = match table.metadata().properties().get(PROP_HASH_INDEX_PATH) {
        Some(p) => Location::parse(p).context("table property earthcatalog.hash_index_path")?,
        None => default_location(warehouse).context("default hash index location")?,
    };
    let index = HashIndex::read(stores, &location).await?;
    Ok(IndexUpdate { location, index })
}
