//! `earthcatalog backfill` / `earthcatalog coordinator`: the distributed backfill driver.
//!
//! Order of a run: resolve the grid → find or start the run (`<staging>/_run.json`) → serve
//! gRPC (and start local workers) → Phase 1 chunks the inventory (reused when staged) →
//! Phase 2 leases one ingest task per chunk → Phase 3 leases one compact task per (cell, year)
//! Phase 2 staged → Phase 4 takes the lock, registers exactly the accepted files, uploads the
//! catalog, writes the hash index → failed items are kept in `<staging>/pending/` → staging is
//! cleaned. Accepted results are recorded as they arrive, so a restarted coordinator resumes
//! the same run without redoing them. A task given up after the attempt cap stops the run
//! before Phase 4 with an error naming it; rerunning the command retries just those tasks.

pub mod config;
pub mod register;
pub mod results;
pub mod run_state;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use earthcatalog_common::backfill::{
    ChunkManifest, ChunkOptions, ChunkSettings, StagingLayout, StagingRoot, write_chunks,
};
use earthcatalog_common::catalog::Catalog;
use earthcatalog_common::catalog_sync::CatalogCopy;
use earthcatalog_common::ids::{CellYear, RunId};
use earthcatalog_common::json_lines;
use earthcatalog_common::location::Location;
use earthcatalog_common::logging::error_report;
use earthcatalog_common::partition::GridSpec;
use earthcatalog_common::pipeline::ItemFailure;
use earthcatalog_common::publish::CatalogWriter;
use earthcatalog_common::rpc::{
    CompactTask, IngestTask, PhaseKind, ReportedFile, Stage, TaskReport, TaskSpec,
};
use earthcatalog_common::stores::Stores;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::lease::check::OutputCheck;
use crate::lease::scheduler::{FailedTask, PhasePlan, Scheduler};
use crate::lease::table::TaskId;
use crate::lease_host::{LeaseHost, SWEEP_EVERY};
use crate::scaling::Fleet;
use crate::scaling::asg::AutoScalingGroup;
use config::BackfillConfig;
use results::RunResults;
use run_state::{Committed, RunState};

/// What a backfill run did.
#[derive(Debug, Default, Serialize)]
pub struct BackfillSummary {
    /// The run id.
    pub run_id: String,
    /// Whether an unfinished run was resumed.
    pub resumed: bool,
    /// Chunks (ingest tasks).
    pub chunks: u64,
    /// Items ingested.
    pub items: u64,
    /// Items that could not be ingested (listed in `pending_file`).
    pub failed_items: u64,
    /// (cell, year) partitions compacted.
    pub partitions: u64,
    /// Data files registered.
    pub files: u64,
    /// Rows registered.
    pub rows: u64,
    /// Snapshots committed.
    pub snapshots: u64,
    /// Items (`--delta`) the table held at an older version (`updated`, else the object's time):
    /// their old rows were replaced.
    pub items_updated: u64,
    /// Items (`--delta`) the table already held at that version or a newer one: not added.
    pub items_skipped: u64,
    /// Abandoned attempt files deleted.
    pub orphans_deleted: u64,
    /// Whether the catalog was uploaded.
    pub catalog_uploaded: bool,
    /// The hash index written.
    pub hash_index: Option<String>,
    /// Where the failed items are listed for `--retry-pending`.
    pub pending_file: Option<String>,
    /// Wall time.
    pub seconds: f64,
}

/// Runs a backfill (serving workers while it runs).
pub async fn run(cfg: BackfillConfig, stores: &Stores) -> anyhow::Result<BackfillSummary> {
    let started = Instant::now();
    if cfg.upload && !cfg.lock.enabled && cfg.place.remote.is_some() {
        bail!(
            "--no-lock cannot be used with --catalog-store: the catalog is only uploaded under the lock (add --no-upload)"
        );
    }
    let stores = Arc::new(stores.clone().with_sources(&cfg.sources));
    let grid = resolve_grid(&cfg, &stores).await?;
    let staging = StagingRoot::new(cfg.staging.clone());
    let (state, resumed) = match RunState::load(&stores, &staging).await? {
        Some(s) => {
            if let Some(done) = s.committed {
                return finish_committed(&stores, &staging, s.run_id, done).await;
            }
            let diff = s.differences(&cfg.inventory, cfg.delta, cfg.retry_pending);
            if !diff.is_empty() {
                bail!(
                    "staging {} holds unfinished run {} started with other settings ({}); finish it with the same settings or delete {}",
                    cfg.staging,
                    s.run_id,
                    diff.join("; "),
                    staging.run_pointer()
                );
            }
            tracing::info!(run = %s.run_id, started = %s.started, "resuming an unfinished run");
            (s, true)
        }
        None => {
            let mut s = RunState::start(&cfg.inventory, cfg.delta, cfg.retry_pending);
            if cfg.retry_pending {
                s.pending = pending_lists(&stores, &staging).await?;
            }
            s.save(&stores, &staging).await?;
            tracing::info!(run = %s.run_id, "starting a new run");
            (s, false)
        }
    };
    let layout = staging.run(RunId::from_string(&state.run_id));
    let results = RunResults::new(stores.clone(), layout.clone());
    let settings = cfg.service.lease_settings();
    // Every result is checked against its task before it is accepted (nothing is trusted).
    let check = OutputCheck::new(stores.clone(), layout.clone());
    let scheduler = Arc::new(Scheduler::new(
        state.run_id.clone(),
        settings,
        Arc::new(results.clone()),
        Arc::new(check),
    ));

    let scale_stop = CancellationToken::new();
    let scaler = start_scaling(&cfg, &scheduler, scale_stop.clone()).await;
    let mut host = LeaseHost::start(&cfg.service, scheduler.clone()).await?;

    let mut driver = Driver {
        cfg: &cfg,
        stores,
        staging,
        layout,
        results,
        scheduler: scheduler.clone(),
        grid,
        resumed,
        state: state.clone(),
    };
    let mut summary =
        BackfillSummary { run_id: state.run_id.clone(), resumed, ..Default::default() };
    let outcome = driver.phases(&mut summary).await;
    host.finish(outcome.is_ok()).await;
    // The group's last change (to 0) is made before the coordinator goes.
    scale_stop.cancel();
    if let Some(scaler) = scaler
        && let Err(e) = scaler.await
    {
        tracing::warn!("Auto Scaling follower: {e}");
    }
    host.close().await;
    outcome?;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// Sizes the scheduler's fleet and, with `--scale-asg`, starts the group following it. A group
/// that already runs workers (a restarted coordinator) keeps them through the cooldown; a group
/// that cannot be read is logged and the fleet starts from the minimum.
async fn start_scaling(
    cfg: &BackfillConfig,
    scheduler: &Arc<Scheduler>,
    stop: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    let Some(name) = cfg.scale_asg.clone() else {
        scheduler.set_fleet(Fleet::new(cfg.scaling));
        return None;
    };
    let group = AutoScalingGroup::connect(name).await;
    let fleet = match group.desired_capacity().await {
        Ok(running) => {
            tracing::info!(group = group.name(), running, "Auto Scaling group found");
            Fleet::resume(cfg.scaling, running, Instant::now())
        }
        Err(e) => {
            tracing::warn!("{}; starting from --scale-min", error_report(&e));
            Fleet::new(cfg.scaling)
        }
    };
    scheduler.set_fleet(fleet);
    Some(tokio::spawn(crate::scaling::asg::follow(group, scheduler.clone(), stop)))
}

/// The grid: asked for, else the table's; a first full run must say which.
async fn resolve_grid(cfg: &BackfillConfig, stores: &Arc<Stores>) -> anyhow::Result<GridSpec> {
    if let Some(r) = cfg.h3_resolution {
        return Ok(GridSpec::h3(r)?);
    }
    let scratch = tempfile::tempdir()?;
    let local = match &cfg.place.remote {
        Some(remote) => {
            let copy = scratch.path().join("catalog.db");
            CatalogCopy::download(stores, remote, &copy).await?;
            copy
        }
        None => cfg.place.path.clone(),
    };
    let table = if local.exists() {
        Catalog::open(&local, &cfg.place.warehouse, stores.clone()).await?.load_table().await?
    } else {
        None
    };
    match table {
        Some(t) => {
            let grid = GridSpec::from_properties(t.metadata().properties())?;
            tracing::info!(?grid, "grid read from the table");
            Ok(grid)
        }
        None => bail!(
            "no existing table and no --h3-resolution given: specify --h3-resolution for the initial backfill"
        ),
    }
}

/// One run's phases.
struct Driver<'a> {
    cfg: &'a BackfillConfig,
    stores: Arc<Stores>,
    staging: StagingRoot,
    layout: StagingLayout,
    results: RunResults,
    scheduler: Arc<Scheduler>,
    grid: GridSpec,
    /// A resumed run may have registered its files before it stopped (Phase 4 is idempotent).
    resumed: bool,
    /// The run state (with --retry-pending, the failure lists retried).
    state: RunState,
}

impl Driver<'_> {
    async fn phases(&mut self, summary: &mut BackfillSummary) -> anyhow::Result<()> {
        let inputs = self.phase1().await?;
        summary.chunks = inputs.len() as u64;
        let ingested = self.phase2(&inputs).await?;
        summary.items = ingested.values().map(|r| r.items).sum();
        summary.failed_items = ingested.values().map(|r| r.failed_items).sum();
        let partitions = partitions(&ingested);
        summary.partitions = partitions.len() as u64;
        let compacted = self.phase3(&partitions).await?;
        let files: Vec<ReportedFile> = compacted.into_values().flatten().collect();
        let cells: Vec<CellYear> = partitions.keys().cloned().collect();
        let accepted = files.iter().map(|f| f.location.uri()).collect();
        summary.orphans_deleted = register::delete_orphans(
            &self.stores,
            &self.cfg.place.warehouse,
            self.layout.run(),
            &cells,
            &accepted,
        )
        .await?;
        self.scheduler.set_stage(Stage::Register);
        let registered = self.phase4(&files).await?;
        summary.files = registered.files;
        summary.rows = registered.rows;
        summary.snapshots = registered.snapshots;
        summary.items_updated = registered.items_updated;
        summary.items_skipped = registered.items_skipped;
        summary.catalog_uploaded = registered.uploaded;
        summary.hash_index = registered.hash_index.map(|(l, _)| l);
        summary.pending_file = self.keep_failures(&ingested, &inputs).await?;
        self.scheduler.set_stage(Stage::Cleanup);
        // Known as committed before staging goes: a coordinator stopped during the cleanup
        // finishes it when restarted, instead of running (and appending) again.
        let mut state = self.state.clone();
        state.committed = Some(Committed {
            at: chrono::Utc::now().to_rfc3339(),
            files: summary.files,
            rows: summary.rows,
            snapshots: summary.snapshots,
            pending_file: summary.pending_file.clone(),
        });
        state.save(&self.stores, &self.staging).await?;
        clean_staging(&self.stores, &self.staging, &self.layout).await
    }

    /// Phase 1: the chunk files (or, with --retry-pending, the pending failure lists).
    async fn phase1(&self) -> anyhow::Result<Vec<Input>> {
        self.scheduler.set_stage(Stage::Inventory);
        if self.cfg.retry_pending {
            if self.state.pending.is_empty() {
                tracing::info!("no pending failures to retry");
            }
            return self
                .state
                .pending
                .iter()
                .map(|l| Ok(Input::Pending(Location::parse(l).context("run state: pending list")?)))
                .collect();
        }
        let chunks = if self.cfg.skip_inventory {
            let at = self.layout.chunk_manifest();
            let bytes = self
                .stores
                .get(&at)
                .await?
                .with_context(|| format!("--skip-inventory: no Phase 1 manifest at {at}"))?;
            let manifest: ChunkManifest =
                serde_json::from_slice(&bytes).with_context(|| at.to_string())?;
            if !manifest.complete {
                bail!("--skip-inventory: Phase 1 in {} did not finish", self.layout.root());
            }
            (0..manifest.chunks).map(|id| self.layout.chunk(id)).collect()
        } else {
            let settings = ChunkSettings {
                inventory: self.cfg.inventory.clone(),
                since: self.cfg.since,
                limit: self.cfg.limit,
                chunk_size: self.cfg.chunk_size,
            };
            let plan =
                write_chunks(&self.stores, &self.layout, &settings, &ChunkOptions::default())
                    .await?;
            tracing::info!(
                chunks = plan.chunks.len(),
                written = plan.written,
                reused = plan.reused,
                malformed = plan.malformed.len(),
                "Phase 1 done"
            );
            plan.chunks.into_iter().map(|c| c.location).collect::<Vec<_>>()
        };
        Ok(chunks.into_iter().map(Input::Chunk).collect())
    }

    /// Phase 2: one ingest task per input; returns every accepted result, by task.
    async fn phase2(&self, inputs: &[Input]) -> anyhow::Result<BTreeMap<TaskId, IngestSummary>> {
        let earlier = self.results.load(PhaseKind::Ingest).await?;
        let mut all: BTreeMap<TaskId, TaskReport> =
            earlier.into_iter().filter(|(id, _)| (*id as usize) < inputs.len()).collect();
        let (items, rows) = all.values().fold((0, 0), |(i, r), rep| match rep {
            TaskReport::Ingest(x) => {
                (i + x.items, r + x.staged.iter().map(|s| s.rows).sum::<u64>())
            }
            TaskReport::Compact(_) => (i, r),
        });
        self.scheduler.add_progress(items, rows);
        if !self.cfg.skip_ingest {
            let done: Vec<bool> =
                (0..inputs.len() as u64).map(|id| all.contains_key(&id)).collect();
            let subjects = inputs.iter().map(|i| i.location().to_string()).collect();
            let make = self.ingest_maker(inputs);
            let plan = PhasePlan {
                kind: PhaseKind::Ingest,
                tasks: inputs.len() as u64,
                done,
                subjects,
                make,
            };
            all.extend(self.lease_phase(plan).await?);
        }
        Ok(all
            .into_iter()
            .filter_map(|(id, r)| match r {
                TaskReport::Ingest(i) => Some((id, IngestSummary::from(i))),
                TaskReport::Compact(_) => None,
            })
            .collect())
    }

    fn ingest_maker(&self, inputs: &[Input]) -> crate::lease::scheduler::TaskMaker {
        let inputs: Arc<Vec<Input>> = Arc::new(inputs.to_vec());
        let layout = self.layout.clone();
        let grid = self.grid.clone();
        let sources = self.cfg.sources.clone();
        let fetch_concurrency = self.cfg.fetch_concurrency;
        Arc::new(move |task, token| {
            let input = &inputs[task as usize];
            let (chunk, retry_failures) = match input {
                Input::Chunk(l) => (l.clone(), None),
                Input::Pending(l) => (l.clone(), Some(l.clone())),
            };
            TaskSpec::Ingest(IngestTask {
                chunk_id: task,
                chunk,
                output: layout.ingest_attempt(task, token),
                run: layout.run().clone(),
                fetch_concurrency,
                grid: grid.clone(),
                sources: sources.clone(),
                retry_failures,
            })
        })
    }

    /// Phase 3: one compact task per (cell, year); returns the files of every accepted result.
    async fn phase3(
        &self,
        partitions: &BTreeMap<CellYear, Vec<Location>>,
    ) -> anyhow::Result<BTreeMap<TaskId, Vec<ReportedFile>>> {
        let earlier = self.results.load(PhaseKind::Compact).await?;
        let mut all: BTreeMap<TaskId, TaskReport> =
            earlier.into_iter().filter(|(id, _)| (*id as usize) < partitions.len()).collect();
        let list: Arc<Vec<(CellYear, Vec<Location>)>> =
            Arc::new(partitions.iter().map(|(k, v)| (k.clone(), v.clone())).collect());
        let done: Vec<bool> = (0..list.len() as u64).map(|id| all.contains_key(&id)).collect();
        let subjects = list.iter().map(|(p, _)| p.to_string()).collect();
        let (warehouse, run, compact_rows) =
            (self.cfg.place.warehouse.clone(), self.layout.run().clone(), self.cfg.compact_rows);
        // Only a delta run compares versions with the table's (a full run replaces it).
        let object_times = self.cfg.delta.then(|| self.layout.object_times_dir());
        let tasks = list.len() as u64;
        let make: crate::lease::scheduler::TaskMaker = Arc::new(move |task, _token| {
            let (partition, staged) = &list[task as usize];
            TaskSpec::Compact(CompactTask {
                partition: partition.clone(),
                staged: staged.clone(),
                warehouse: warehouse.clone(),
                run: run.clone(),
                compact_rows,
                object_times: object_times.clone(),
            })
        });
        let plan = PhasePlan { kind: PhaseKind::Compact, tasks, done, subjects, make };
        all.extend(self.lease_phase(plan).await?);
        Ok(all
            .into_iter()
            .filter_map(|(id, r)| match r {
                TaskReport::Compact(c) => Some((id, c.files)),
                TaskReport::Ingest(_) => None,
            })
            .collect())
    }

    /// Leases the phase's tasks until each is accepted or given up; any task given up stops
    /// the run before registration. Returns the accepted results.
    async fn lease_phase(&self, plan: PhasePlan) -> anyhow::Result<BTreeMap<TaskId, TaskReport>> {
        self.scheduler.start_phase(plan);
        let outcome = self.scheduler.phase_finished(SWEEP_EVERY).await;
        refuse_failed(&outcome.failed, &self.layout)?;
        Ok(outcome.accepted)
    }

    /// Phase 4 under the lock.
    async fn phase4(&self, files: &[ReportedFile]) -> anyhow::Result<register::Registered> {
        let owner = format!("earthcatalog backfill {}", self.scheduler.run_id());
        let guard = self.cfg.lock.acquire(&self.stores, &self.cfg.place.lock, owner).await?;
        let mut writer =
            CatalogWriter::open(self.stores.clone(), self.cfg.place.clone(), guard).await?;
        if !self.cfg.upload {
            writer = writer.without_upload();
        }
        let result = register::register(
            self.cfg,
            &mut writer,
            &self.grid,
            files,
            self.resumed,
            &self.layout,
        )
        .await;
        // Accepted results are never deleted on failure: a rerun registers them.
        writer.finish().await;
        result
    }

    /// Copies every failed item into `<staging>/pending/<run>.jsonl` (for --retry-pending) and
    /// drops the pending lists this run retried.
    async fn keep_failures(
        &self,
        ingested: &BTreeMap<TaskId, IngestSummary>,
        inputs: &[Input],
    ) -> anyhow::Result<Option<String>> {
        let mut failed: Vec<ItemFailure> = Vec::new();
        for r in ingested.values() {
            if let Some(f) = &r.failures
                && let Some(list) = json_lines::read(&self.stores, f).await?
            {
                failed.extend(list);
            }
        }
        let retried: Vec<Location> = inputs
            .iter()
            .filter_map(|i| match i {
                Input::Pending(l) => Some(l.clone()),
                Input::Chunk(_) => None,
            })
            .collect();
        // The new list is written before the retried ones go, so no failed item is ever unlisted.
        let listed = if failed.is_empty() {
            None
        } else {
            let at = self.staging.pending_list(self.layout.run());
            json_lines::write(&self.stores, &at, &failed).await?;
            tracing::warn!(file = %at, "failed items listed; rerun with --retry-pending to try them again");
            Some(at.uri())
        };
        self.stores.delete_all(&retried, "a retried pending list").await;
        Ok(listed)
    }
}

/// Deletes a committed run's staging, the run state last.
async fn clean_staging(
    stores: &Stores,
    staging: &StagingRoot,
    layout: &StagingLayout,
) -> anyhow::Result<()> {
    // The staged files first, each chunk's folder listed at once (an archive stages millions).
    let chunks = stores.subfolders(&layout.ingest_dir()).await?;
    let staged = stores.delete_folders(&chunks, "a staged file").await?;
    let rest = stores.delete_folder(layout.root(), "a staging object").await?;
    tracing::info!(objects = staged + rest, chunk_folders = chunks.len(), "staging cleaned");
    let state = staging.run_pointer();
    stores.delete(&state).await.with_context(|| {
        format!(
            "the run is registered, but its run state {state} must be deleted before the next run"
        )
    })?;
    Ok(())
}

/// A restart that finds its run committed: only the cleanup is left.
async fn finish_committed(
    stores: &Stores,
    staging: &StagingRoot,
    run_id: String,
    committed: Committed,
) -> anyhow::Result<BackfillSummary> {
    let started = Instant::now();
    tracing::info!(
        run = %run_id, committed = %committed.at,
        "the run was committed before it stopped; finishing its cleanup"
    );
    let layout = staging.run(RunId::from_string(&run_id));
    clean_staging(stores, staging, &layout).await?;
    Ok(BackfillSummary {
        run_id,
        resumed: true,
        files: committed.files,
        rows: committed.rows,
        snapshots: committed.snapshots,
        pending_file: committed.pending_file,
        seconds: started.elapsed().as_secs_f64(),
        ..Default::default()
    })
}

/// The failure lists earlier runs left in `<staging>/pending/`, in name order.
async fn pending_lists(stores: &Stores, staging: &StagingRoot) -> anyhow::Result<Vec<String>> {
    let mut lists = stores.list(&staging.pending_dir()).await?;
    lists.retain(StagingRoot::is_pending_list);
    let mut lists: Vec<String> = lists.iter().map(Location::uri).collect();
    lists.sort();
    Ok(lists)
}

/// A Phase 2 input.
#[derive(Debug, Clone)]
enum Input {
    /// A chunk file.
    Chunk(Location),
    /// A failures list from an earlier run.
    Pending(Location),
}

impl Input {
    fn location(&self) -> &Location {
        match self {
            Input::Chunk(l) | Input::Pending(l) => l,
        }
    }
}

/// What Phase 3 and the summary need of an ingest result.
struct IngestSummary {
    items: u64,
    failed_items: u64,
    staged: Vec<(CellYear, Location)>,
    failures: Option<Location>,
}

impl From<earthcatalog_common::rpc::IngestReport> for IngestSummary {
    fn from(r: earthcatalog_common::rpc::IngestReport) -> Self {
        IngestSummary {
            items: r.items,
            failed_items: r.failed_items,
            staged: r.staged.into_iter().map(|s| (s.partition, s.location)).collect(),
            failures: r.failures,
        }
    }
}

/// The staged files of each (cell, year), in task (chunk) order.
fn partitions(ingested: &BTreeMap<TaskId, IngestSummary>) -> BTreeMap<CellYear, Vec<Location>> {
    let mut out: BTreeMap<CellYear, Vec<Location>> = BTreeMap::new();
    for r in ingested.values() {
        for (p, l) in &r.staged {
            out.entry(p.clone()).or_default().push(l.clone());
        }
    }
    out
}

/// Stops the run when tasks were given up, naming each.
pub(crate) fn refuse_failed(failed: &[FailedTask], layout: &StagingLayout) -> anyhow::Result<()> {
    if failed.is_empty() {
        return Ok(());
    }
    let listed: Vec<String> = failed
        .iter()
        .map(|f| {
            format!(
                "{} task {} ({}) after {} attempt(s): {}",
                f.phase, f.task, f.subject, f.attempts, f.error
            )
        })
        .collect();
    for l in &listed {
        tracing::error!("task failed: {l}");
    }
    bail!(
        "{} task(s) failed; nothing was registered. The run is kept in {}: rerun the same command to retry them.\n  {}",
        failed.len(),
        layout.root(),
        listed.join("\n  ")
    )
}
