//! `earthcatalog incremental`: one process streams an inventory, ingests it chunk by chunk and
//! registers the files in the Iceberg table, under the catalog lock.
//!
//! Order of a run: take the lock → download the catalog (when it lives in a store) → open the
//! table → for each chunk: fetch, fan out, drop rows already in their partition, write, register
//! → upload the catalog (conditional on the version downloaded) → release the lock. A run that
//! fails uploads nothing and deletes the data files no catalog will reference: with a catalog
//! store, every file it wrote (the stored catalog never sees them); with a local catalog, the
//! files of chunks not yet registered.

mod progress;
mod summary;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use anyhow::{Context, bail};
use earthcatalog_common::catalog::{Catalog, TableSettings, data_files};
use earthcatalog_common::catalog_sync::CatalogCopy;
use earthcatalog_common::cleanup::{delete_object, delete_objects};
use earthcatalog_common::fanout::Groups;
use earthcatalog_common::geoparquet::{FileNamer, WrittenFile};
use earthcatalog_common::ids::RunId;
use earthcatalog_common::inventory::{self, Filter, InventoryRecord, OpenOptions};
use earthcatalog_common::known_ids::KnownIds;
use earthcatalog_common::location::Location;
use earthcatalog_common::lock::LockGuard;
use earthcatalog_common::partition::{GridSpec, open_partitioner};
use earthcatalog_common::pipeline::{DataPath, DataPathOptions, ItemFailure, ObjectKey};
use earthcatalog_common::stores::Stores;
use futures::StreamExt;
use iceberg::table::Table;
use object_store::ObjectStoreExt;
use tracing::Instrument;

pub use summary::RunSummary;

use crate::config::IncrementalConfig;
use progress::Progress;

/// Runs the incremental pipeline; the summary says what happened (failed items included).
pub async fn run(cfg: IncrementalConfig) -> anyhow::Result<RunSummary> {
    if !cfg.lock.enabled && cfg.place.remote.is_some() {
        bail!(
            "--no-lock cannot be used with --catalog-store: the catalog is only uploaded under the lock"
        );
    }
    let stores = Arc::new(Stores::from_env().with_sources(&cfg.sources));
    let guard =
        cfg.lock.acquire(&stores, &cfg.place.lock, "earthcatalog incremental".into()).await?;
    let result = Run::new(&cfg, stores.clone(), guard.as_ref()).execute().await;
    if let Some(guard) = guard
        && let Err(e) = guard.release().await
    {
        tracing::warn!(error = %e, "could not release the catalog lock");
    }
    result
}

/// One run's state.
struct Run<'a> {
    cfg: &'a IncrementalConfig,
    stores: Arc<Stores>,
    guard: Option<&'a LockGuard>,
    summary: RunSummary,
    failures: Vec<ItemFailure>,
    progress: Progress,
    /// Files written by this run that no catalog will reference if the run fails now.
    unpublished: Vec<Location>,
    /// Whether the catalog upload was tried: after that, whether the store took it is unknown
    /// when it fails, so this run's files are kept.
    upload_tried: bool,
}

impl<'a> Run<'a> {
    fn new(cfg: &'a IncrementalConfig, stores: Arc<Stores>, guard: Option<&'a LockGuard>) -> Self {
        Run {
            cfg,
            stores,
            guard,
            summary: RunSummary { run_id: RunId::new().to_string(), ..Default::default() },
            failures: Vec::new(),
            progress: Progress::new(cfg.progress),
            unpublished: Vec::new(),
            upload_tried: false,
        }
    }

    async fn execute(mut self) -> anyhow::Result<RunSummary> {
        let outcome = self.ingest().await;
        self.progress.finish();
        if outcome.is_err() {
            self.delete_unpublished().await;
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

    async fn ingest(&mut self) -> anyhow::Result<()> {
        let cfg = self.cfg;
        let mut copy = match &cfg.place.remote {
            Some(remote) => {
                Some(CatalogCopy::download(&self.stores, remote, &cfg.place.path).await?)
            }
            None => None,
        };
        if let Some(dir) = cfg.place.path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let catalog =
            Catalog::open(&cfg.place.path, &cfg.place.warehouse, self.stores.clone()).await?;
        let grid = self.grid(&catalog).await?;
        let mut table = catalog.open_table(&TableSettings::from_grid(&grid)).await?;
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
        let mut known = KnownIds::new(self.stores.clone(), &data_files(&table).await?);
        let namer = Arc::new(FileNamer::new(RunId::from_string(&self.summary.run_id), "inc"));
        let mut pending: Vec<WrittenFile> = Vec::new();

        let stream = inventory::open(&self.stores, &cfg.inventory, &OpenOptions::default());
        let filter = Filter { since: cfg.since, limit: cfg.limit, stac_only: true };
        let (mut stream, counters) = inventory::filter(stream, filter);
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
                        kind: "malformed_inventory_row".into(),
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
                let files = self
                    .chunk(chunk_index, keys, &data_path, &mut known, &namer)
                    .instrument(span.clone())
                    .await?;
                self.unpublished.extend(files.iter().map(|f| f.location.clone()));
                if cfg.batch_add_files {
                    pending.extend(files);
                } else {
                    table =
                        self.register(&catalog, &table, files, &data_path).instrument(span).await?;
                }
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
            table = self.register(&catalog, &table, pending, &data_path).await?;
        }
        if let Some(why) = self.summary.why_nothing_ingested() {
            tracing::warn!("{why} ({})", cfg.inventory);
        }
        drop(table);
        if let Some(copy) = copy.as_mut() {
            let guard = self.guard.context("uploading the catalog needs the lock")?;
            self.upload_tried = true;
            copy.upload(guard).await?;
            self.summary.catalog_uploaded = true;
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

    /// Ingests one chunk and returns the files written (not yet registered).
    async fn chunk(
        &mut self,
        index: usize,
        keys: Vec<ObjectKey>,
        data_path: &DataPath,
        known: &mut KnownIds,
        namer: &Arc<FileNamer>,
    ) -> anyhow::Result<Vec<WrittenFile>> {
        let mut collected = data_path.collect(keys).await;
        let skipped = known.drop_known(&mut collected.groups).await?;
        let ingested = items_in(&mut collected.groups);
        let rows = collected.groups.row_count();
        let files = data_path.write(collected.groups, &self.cfg.place.warehouse, namer).await?;
        for f in &collected.failures {
            *self.summary.failures_by_kind.entry(f.kind.clone()).or_insert(0) += 1;
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
            "chunk {index}: {} items read, {ingested} -> {rows} rows in {} files ({failed} failed, {} skipped, {} older duplicates dropped)",
            collected.items,
            files.len(),
            skipped.items,
            collected.duplicates_dropped
        );
        self.progress.update(&self.summary);
        Ok(files)
    }

    /// Registers files in one snapshot, after checking the lock is still ours; on failure the
    /// files are deleted so nothing half-registered is left behind.
    async fn register(
        &mut self,
        catalog: &Catalog,
        table: &Table,
        files: Vec<WrittenFile>,
        data_path: &DataPath,
    ) -> anyhow::Result<Table> {
        if files.is_empty() {
            return Ok(table.clone());
        }
        if let Some(guard) = self.guard
            && let Err(e) = guard.check()
        {
            data_path.delete_files(&files).await;
            return Err(e.into());
        }
        match catalog.register_written(table, &files).await {
            Ok((table, summary)) => {
                if self.cfg.place.remote.is_none() {
                    // Committed to the catalog the user named: these files are published.
                    self.unpublished.clear();
                }
                self.summary.files += summary.files as u64;
                self.summary.snapshots += u64::from(summary.snapshot_id.is_some());
                self.progress.update(&self.summary);
                Ok(table)
            }
            Err(e) => {
                data_path.delete_files(&files).await;
                Err(e).context("registering the chunk's files")
            }
        }
    }

    /// Deletes the files of a failed run that no catalog will reference, so a failed run leaves
    /// no orphans in the warehouse (best effort: what cannot be deleted is logged).
    async fn delete_unpublished(&mut self) {
        if self.unpublished.is_empty() {
            return;
        }
        if self.upload_tried {
            tracing::warn!(
                files = self.unpublished.len(),
                "the catalog upload failed; this run's data files are kept, as the store may hold a catalog that references them"
            );
            return;
        }
        let files = std::mem::take(&mut self.unpublished);
        let kept = delete_objects(&self.stores, &files, "a data file of the failed run").await;
        tracing::warn!(
            "the run failed: deleted {} data files no catalog references ({kept} could not be deleted)",
            files.len() - kept
        );
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
                delete_object(&self.stores, &self.cfg.failures).await?;
                tracing::info!("every listed item retried: removed {}", self.cfg.failures);
            }
            return Ok(());
        }
        let mut text = String::new();
        for f in &self.failures {
            text.push_str(&serde_json::to_string(f)?);
            text.push('\n');
        }
        let target = self.stores.resolve(&self.cfg.failures)?;
        target
            .store
            .put(&target.path, text.into())
            .await
            .with_context(|| format!("writing the failures file {}", self.cfg.failures))?;
        self.summary.failures_file = Some(self.cfg.failures.to_string());
        let by_kind: BTreeMap<_, _> = self.summary.failures_by_kind.clone();
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

/// Distinct items that still have a row in `groups` (the ones this chunk ingests).
fn items_in(groups: &mut Groups) -> usize {
    let mut ids = HashSet::new();
    groups.retain(|_, row| {
        ids.insert(row.item.id().to_string());
        true
    });
    ids.len()
}
