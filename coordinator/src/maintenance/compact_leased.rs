//! `earthcatalog compact` with workers (`--local-workers N`, `--listen`): each planned
//! partition is a lease task of backfill Phase 3's kind whose inputs are the partition's live
//! files, rewritten by `earthcatalog-worker`s under the same leases, fencing tokens, attempt
//! cap and result checks. Only the files of accepted results are committed, in one replace
//! snapshot; what other attempts wrote is deleted.
//!
//! A compaction whose coordinator stops resumes when the command is run again:
//! `<staging>/_compact.json` keeps the run id and its plan, and accepted results are recorded
//! under `<staging>/<run>/results/compact/`. The plan is resumed while every file it rewrites
//! is still live; when the table moved on, the old run's unregistered files are deleted and a
//! new plan is made.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use anyhow::{Context, bail};
use earthcatalog_common::backfill::{StagingLayout, StagingRoot};
use earthcatalog_common::catalog::{ReplaceKind, ReplaceSummary, Replacement, data_files};
use earthcatalog_common::ids::{CellYear, RunId};
use earthcatalog_common::location::Location;
use earthcatalog_common::maintenance::compact::{CompactPolicy, PartitionPlan, plan};
use earthcatalog_common::publish::CatalogWriter;
use earthcatalog_common::rpc::{CompactTask, PhaseKind, TaskReport, TaskSpec};
use earthcatalog_common::stores::Stores;
use iceberg::table::Table;
use serde::{Deserialize, Serialize};

use super::compact::{CompactSummary, planned};
use crate::backfill::refuse_failed;
use crate::backfill::register::delete_orphans;
use crate::backfill::results::RunResults;
use crate::lease::check::OutputCheck;
use crate::lease::scheduler::{PhasePlan, Scheduler, TaskMaker};
use crate::lease_host::{LeaseHost, SWEEP_EVERY, ServiceConfig};

/// The distributed compaction a staging folder is in the middle of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct CompactRun {
    /// The run id: names the attempts' files and the results folder.
    run_id: String,
    /// When it started.
    started: String,
    /// Rows per output file.
    target_rows: u64,
    /// Task `i` rewrites `plan[i]`.
    plan: Vec<PartitionPlan>,
}

impl CompactRun {
    fn start(plan: Vec<PartitionPlan>, target_rows: u64) -> Self {
        CompactRun {
            run_id: RunId::new().to_string(),
            started: chrono::Utc::now().to_rfc3339(),
            target_rows,
            plan,
        }
    }

    async fn load(stores: &Stores, staging: &StagingRoot) -> anyhow::Result<Option<Self>> {
        let at = staging.compact_pointer();
        let Some(bytes) = stores.get(&at).await? else { return Ok(None) };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            anyhow::anyhow!("compaction state {at} is unreadable ({e}); delete it to start over")
        })
    }

    async fn save(&self, stores: &Stores, staging: &StagingRoot) -> anyhow::Result<()> {
        Ok(stores.put(&staging.compact_pointer(), serde_json::to_vec_pretty(self)?).await?)
    }

    fn layout(&self, staging: &StagingRoot) -> StagingLayout {
        staging.run(RunId::from_string(&self.run_id))
    }

    fn partitions(&self) -> Vec<CellYear> {
        self.plan.iter().map(|p| p.partition.clone()).collect()
    }

    /// Whether every file the plan rewrites is still live (so its results still apply).
    fn still_applies(&self, live: &HashSet<String>) -> bool {
        self.plan.iter().flat_map(|p| &p.files).all(|f| live.contains(f))
    }

    /// Deletes what this run wrote that the table does not hold, its recorded results and
    /// the pointer (the pointer last: a stop midway leaves it to be cleared again).
    async fn clear(
        &self,
        stores: &Stores,
        staging: &StagingRoot,
        warehouse: &Location,
        live: &HashSet<String>,
    ) -> anyhow::Result<()> {
        let run = RunId::from_string(&self.run_id);
        let deleted = delete_orphans(stores, warehouse, &run, &self.partitions(), live).await?;
        stores.delete_folder(self.layout(staging).root(), "a compaction result record").await?;
        stores.delete(&staging.compact_pointer()).await?;
        tracing::info!(run = %self.run_id, files_deleted = deleted, "compaction state cleared");
        Ok(())
    }
}

/// Plans (or resumes), leases the rewrites, commits the accepted files in one replace snapshot.
pub async fn compact_under_lock(
    writer: &mut CatalogWriter,
    policy: &CompactPolicy,
    service: &ServiceConfig,
    staging: &StagingRoot,
) -> anyhow::Result<CompactSummary> {
    let catalog = writer.catalog();
    let Some(table) = catalog.load_table().await? else {
        bail!("catalog {} has no table earthcatalog.stac_items", catalog.path().display());
    };
    let files = data_files(&table).await.context("listing the table's files")?;
    let live: HashSet<String> = files.iter().map(|f| f.path.clone()).collect();
    let stores = catalog.stores().clone();
    let warehouse = catalog.warehouse().clone();
    let run = match CompactRun::load(&stores, staging).await? {
        Some(old) if old.still_applies(&live) => {
            tracing::info!(run = %old.run_id, started = %old.started, partitions = old.plan.len(), "resuming an unfinished compaction");
            old
        }
        Some(old) => {
            tracing::info!(run = %old.run_id, "an unfinished compaction no longer applies (the table changed): starting over");
            old.clear(&stores, staging, &warehouse, &live).await?;
            CompactRun::start(plan(&files, policy), policy.target_rows)
        }
        None => CompactRun::start(plan(&files, policy), policy.target_rows),
    };
    let mut summary = planned(files.len(), run.plan.clone(), false);
    if run.plan.is_empty() {
        tracing::info!(files = files.len(), "no partition is worth compacting");
        return Ok(summary);
    }
    run.save(&stores, staging).await?;
    let reports = lease_rewrites(&run, &stores, &warehouse, service, staging).await?;

    let mut accepted: Vec<Location> = Vec::new();
    for report in reports {
        if let TaskReport::Compact(c) = report {
            summary.duplicates_dropped += c.duplicates_dropped;
            accepted.extend(c.files.into_iter().map(|f| f.location));
        }
    }
    let keep: HashSet<String> = accepted.iter().map(Location::uri).collect();
    let layout = run.layout(staging);
    delete_orphans(&stores, &warehouse, layout.run(), &run.partitions(), &keep).await?;
    // From here a failed commit deletes them (the publish sequence's rule), and the run state
    // goes with them: a rerun plans again.
    writer.wrote(accepted.iter().cloned());
    let committed = commit(writer, &table, &run.plan, &accepted).await;
    // Committed or not, the run is over: a failed commit's files go with the failed run.
    if let Err(e) = run.clear(&stores, staging, &warehouse, &keep).await {
        tracing::warn!("{e:#}; the next compaction clears it");
    }
    let (after, committed) = committed?;
    summary.snapshot_id = committed.snapshot_id;
    summary.output_files = committed.added_files;
    summary.output_rows = committed.added_records;
    summary.table_files_after = data_files(&after).await.map(|f| f.len()).unwrap_or_default();
    Ok(summary)
}

/// Commits the accepted files in place of the plan's (`table` as loaded under this lock).
async fn commit(
    writer: &mut CatalogWriter,
    table: &Table,
    plan: &[PartitionPlan],
    accepted: &[Location],
) -> anyhow::Result<(Table, ReplaceSummary)> {
    let add = writer.catalog().describe_files(table, accepted).await?;
    let remove: BTreeSet<String> = plan.iter().flat_map(|p| p.files.iter().cloned()).collect();
    let replacement = Replacement { kind: ReplaceKind::Rewrite, remove, add, ..Default::default() };
    Ok(writer.replace(&replacement).await?)
}

/// Serves the plan's rewrites to workers until each is accepted or given up; returns every
/// accepted result (those of an earlier coordinator of the run included), in task order.
async fn lease_rewrites(
    run: &CompactRun,
    stores: &Arc<Stores>,
    warehouse: &Location,
    service: &ServiceConfig,
    staging: &StagingRoot,
) -> anyhow::Result<Vec<TaskReport>> {
    let inputs = task_inputs(&run.plan)?;
    let layout = run.layout(staging);
    let results = RunResults::new(stores.clone(), layout.clone());
    let tasks = run.plan.len() as u64;
    let mut all = results.load(PhaseKind::Compact).await?;
    all.retain(|id, _| *id < tasks);
    let scheduler = Arc::new(Scheduler::new(
        run.run_id.clone(),
        service.lease_settings(),
        Arc::new(results),
        Arc::new(OutputCheck::new(stores.clone(), layout.clone())),
    ));
    let mut host = LeaseHost::start(service, scheduler.clone()).await?;
    let done = (0..tasks).map(|id| all.contains_key(&id)).collect();
    let subjects = run.plan.iter().map(|p| p.partition.to_string()).collect();
    scheduler.start_phase(PhasePlan {
        kind: PhaseKind::Compact,
        tasks,
        done,
        subjects,
        make: task_maker(inputs, run, warehouse),
    });
    let outcome = scheduler.phase_finished(SWEEP_EVERY).await;
    host.finish(outcome.failed.is_empty()).await;
    host.close().await;
    refuse_failed(&outcome.failed, &layout)?;
    all.extend(outcome.accepted);
    Ok(all.into_values().collect())
}

/// The inputs of each task: the plan's partitions with their files as locations. A registered
/// path that is no location stops the compaction before anything is leased (a task that skipped
/// it would drop its rows, since the commit removes every planned file).
fn task_inputs(plan: &[PartitionPlan]) -> anyhow::Result<Vec<(CellYear, Vec<Location>)>> {
    plan.iter()
        .map(|p| {
            let files = p
                .files
                .iter()
                .map(|f| {
                    Location::parse(f).with_context(|| format!("data file {f} of {}", p.partition))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            Ok((p.partition.clone(), files))
        })
        .collect()
}

/// Task `i` merges the live files of partition `i` into the warehouse, as Phase 3 merges staged
/// rows.
fn task_maker(
    inputs: Vec<(CellYear, Vec<Location>)>,
    run: &CompactRun,
    warehouse: &Location,
) -> TaskMaker {
    let inputs = Arc::new(inputs);
    let (warehouse, run_id) = (warehouse.clone(), RunId::from_string(&run.run_id));
    let compact_rows = usize::try_from(run.target_rows).unwrap_or(usize::MAX).max(1);
    Arc::new(move |task, _token| {
        let (partition, staged) = &inputs[task as usize];
        TaskSpec::Compact(CompactTask {
            partition: partition.clone(),
            staged: staged.clone(),
            warehouse: warehouse.clone(),
            run: run_id.clone(),
            compact_rows,
            object_times: None,
        })
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn partition(files: &[&str]) -> PartitionPlan {
        PartitionPlan {
            partition: CellYear::new("8106fffffffffff", Some(2012)),
            files: files.iter().map(|f| f.to_string()).collect(),
            rows: 2,
            bytes: 2,
            output_files: 1,
        }
    }

    #[test]
    fn every_planned_file_becomes_a_task_input_or_the_compaction_stops_naming_it() {
        let good = partition(&["file:///wh/a.parquet", "s3://b/wh/b.parquet"]);
        let inputs = task_inputs(std::slice::from_ref(&good)).unwrap();
        assert_eq!(inputs[0].1.len(), 2, "no file is left out of its task");
        let bad = partition(&["file:///wh/a.parquet", "ftp://host/b.parquet"]);
        let err = format!("{:#}", task_inputs(&[good, bad]).unwrap_err());
        assert!(err.contains("ftp://host/b.parquet") && err.contains("8106fffffffffff"), "{err}");
    }

    #[test]
    fn a_plan_applies_while_every_file_it_rewrites_is_live() {
        let run = CompactRun::start(vec![partition(&["file:///wh/a.parquet"])], 10);
        let live: HashSet<String> = ["file:///wh/a.parquet".to_string()].into();
        assert!(run.still_applies(&live));
        assert!(!run.still_applies(&HashSet::new()));
    }
}
