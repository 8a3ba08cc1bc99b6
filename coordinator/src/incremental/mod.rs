//! `earthcatalog incremental`: one process streams an inventory, ingests it chunk by chunk and
//! registers the files in the Iceberg table, under the catalog lock.
//!
//! Order of a run: take the lock → download the catalog (when it lives in a store) → open the
//! table → for each chunk: fetch, fan out, drop rows already in their partition, write, register
//! → upload the catalog (conditional on the version downloaded) → release the lock, through the
//! one publish sequence of [`earthcatalog_common::publish`], which also decides what a failed
//! run deletes. The inventory's first record is read before the lock is taken, so a run that
//! cannot read its input leaves nothing behind (no catalog, no table, no lock).

mod progress;
mod summary;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use anyhow::{Context, bail};
use earthcatalog_common::catalog::{Catalog, PROP_HASH_INDEX_PATH, TableSettings, data_files};
use earthcatalog_common::fanout::Groups;
use earthcatalog_common::geoparquet::{FileNamer, WrittenFile, incremental_namer};
use earthcatalog_common::hash_index::{HashIndex, default_location};
use earthcatalog_common::ids::RunId;
use earthcatalog_common::inventory::{self, Filter, InventoryRecord, InventoryStream, OpenOptions};
use earthcatalog_common::json_lines;
use earthcatalog_common::known_ids::{KnownIds, Skipped};
use earthcatalog_common::location::Location;
use earthcatalog_common::partition::{GridSpec, open_partitioner};
use earthcatalog_common::pipeline::{
    DataPath, DataPathOptions, FailureKind, ItemFailure, ObjectKey,
};
use earthcatalog_common::publish::{CatalogWriter, Files, IndexUpdate};
use earthcatalog_common::stores::Stores;
use futures::StreamExt;
use iceberg::table::Table;
use tracing::Instrument;

pub use summary::RunSummary;

use crate::config::IncrementalConfig;
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
                newest_copy_only: true,
                ..DataPathOptions::default()
            },
        );
        if cfg.update_hash_index {
            self.index = Some(read_index(&self.stores, &table, &cfg.place.warehouse).await?);
        }
        let registered = data_files(&table).await?;
        let referenced: HashSet<String> = registered.iter().map(|f| f.path.clone()).collect();
        self.summary.orphans_deleted = writer.delete_orphans(&referenced).await? as u64;
        let mut known = KnownIds::new(self.stores.clone(), &registered);
        let namer = Arc::new(incremental_namer(RunId::from_string(&self.summary.run_id)));
        let mut pending: Vec<WrittenFile> = Vec::new();

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
                let place = Batches { writer, table: &mut table, pending: &mut pending };
                self.chunk(chunk_index, keys, &data_path, &mut known, &namer, place)
                    .instrument(span)
                    .await?;
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
        if cfg.batch_add_files {
            table = self.register(writer, &table, pending).await?;
        }
        if let Some(why) = self.summary.why_nothing_ingested() {
            tracing::warn!("{why} ({})", cfg.inventory);
        }
        drop(table);
        let index = self.index.take();
        self.summary.catalog_uploaded = writer.publish(index.as_ref()).await?;
        if let Some(i) = index {
            self.summary.hash_index = Some(i.location.uri());
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
    /// the writer as soon as they exist, then registered in one snapshot (or kept for the run's
    /// one snapshot with `--batch-add-files`). A chunk within the budget is one batch.
    async fn chunk(
        &mut self,
        index: usize,
        keys: Vec<ObjectKey>,
        data_path: &DataPath,
        known: &mut KnownIds,
        namer: &Arc<FileNamer>,
        place: Batches<'_>,
    ) -> anyhow::Result<()> {
        let Batches { writer, table, pending } = place;
        let mut collected = data_path.load(keys).await;
        let (mut skipped, mut ingested, mut rows, mut files) = (Skipped::default(), 0, 0, 0);
        while let Some(mut groups) = collected.next_groups(self.cfg.budget.rows) {
            if let Some(index) = &mut self.index {
                // Every id of the batch is in the table after it commits, including the ones
                // already there: the index then matches the table even after a rerun.
                groups.retain(|_, row| {
                    index.index.insert_id(row.item.id());
                    true
                });
            }
            // Whole items per batch: an item is counted (ingested or skipped) in one batch only.
            let s = known.drop_known(&mut groups).await?;
            skipped.items += s.items;
            skipped.rows += s.rows;
            ingested += items_in(&mut groups);
            rows += groups.row_count();
            for part in groups.split(self.cfg.budget.files) {
                let written = data_path.write(part, &self.cfg.place.warehouse, namer).await?;
                writer.wrote(written.iter().map(|f| f.location.clone()));
                files += written.len();
                if self.cfg.batch_add_files {
                    pending.extend(written);
                } else {
                    *table = self.register(writer, table, written).await?;
                }
            }
        }
        for f in &collected.failures {
            *self.summary.failures_by_kind.entry(f.kind).or_insert(0) += 1;
        }
        self.summary.items_failed += collected.failures.len() as u64;
        self.summary.items_ingested += ingested as u64;
        self.summary.items_skipped += skipped.items as u64;
        self.summary.rows_skipped += skipped.rows as u64;
        self.summary.duplicates_dropped += collected.duplicates_dropped as u64;
        self.summary.rows += rows as u64;
        let failed = collected.failures.len();
        self.failures.extend(collected.failures);
        tracing::info!(
            "chunk {index}: {} items read, {ingested} -> {rows} rows in {files} files ({failed} failed, {} skipped, {} older duplicates dropped)",
            collected.items,
            skipped.items,
            collected.duplicates_dropped
        );
        self.progress.update(&self.summary);
        Ok(())
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
        let (table, summary) = writer.commit(table, Files::Written(&files)).await?;
        if writer.publish_due(self.cfg.publish_every) {
            self.summary.catalog_uploaded = writer.publish(None).await?;
        }
        self.summary.files += summary.files as u64;
        self.summary.snapshots += u64::from(summary.snapshot_id.is_some());
        self.progress.update(&self.summary);
        Ok(table)
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
/// are registered in, or the files kept for the run's one snapshot.
struct Batches<'a> {
    writer: &'a mut CatalogWriter,
    table: &'a mut Table,
    pending: &'a mut Vec<WrittenFile>,
}

/// Distinct items that still have a row in `groups` (the ones this chunk ingests).
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

fn items_in(groups: &mut Groups) -> usize {
    let mut items = HashSet::new();
    groups.retain(|_, row| {
        items.insert(row.item.key().digest());
        true
    });
    items.len()
}
