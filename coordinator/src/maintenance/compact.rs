//! `earthcatalog compact`: the (cell, year) partitions worth it are merged into fewer files and
//! committed in one replace snapshot, under the catalog lock, through the publish sequence
//! (a stored catalog is uploaded after). The rows stay the same, so the hash index does too.
//! A failed compaction deletes the files it wrote; the table is unchanged. The partitions are
//! rewritten in this process, or, with `--local-workers N` or `--listen`, by workers that lease
//! them (`super::compact_leased`).

use std::collections::BTreeSet;
use std::time::Instant;

use anyhow::{Context, bail};
use earthcatalog_common::backfill::StagingRoot;
use earthcatalog_common::catalog::{ReplaceKind, Replacement, data_files};
use earthcatalog_common::geoparquet::{FileNamer, WrittenFile};
use earthcatalog_common::ids::RunId;
use earthcatalog_common::location::Location;
use earthcatalog_common::maintenance::compact::{
    CompactPolicy, PartitionArg, PartitionPlan, plan, rewrite,
};
use earthcatalog_common::publish::CatalogWriter;
use earthcatalog_common::stores::Stores;
use futures::StreamExt;
use serde::Serialize;

use super::{compact_leased, open_locked, under_lock};
use crate::cli::CompactArgs;
use crate::lease_host::{EMBEDDED_LISTEN, ServiceConfig};
use crate::read_table;

/// Writer tag of compaction outputs: `<run>_compact_NNNNNN.parquet`.
const COMPACT_WRITER: &str = "compact";

/// What a compaction did (or, with `--dry-run`, would do).
#[derive(Debug, Default, Serialize)]
pub struct CompactSummary {
    /// Whether nothing was changed.
    pub dry_run: bool,
    /// Partitions rewritten.
    pub partitions: usize,
    /// Files they had.
    pub input_files: usize,
    /// Files they have now (dry run: at most this many).
    pub output_files: usize,
    /// Rows read.
    pub input_rows: u64,
    /// Rows written.
    pub output_rows: u64,
    /// Older copies of an item id dropped.
    pub duplicates_dropped: u64,
    /// The replace snapshot.
    pub snapshot_id: Option<i64>,
    /// Live data files of the table before and after.
    pub table_files_before: usize,
    /// Live data files after.
    pub table_files_after: usize,
    /// Wall time.
    pub seconds: f64,
    /// The partitions chosen.
    pub plan: Vec<PartitionPlan>,
}

fn policy(args: &CompactArgs) -> anyhow::Result<CompactPolicy> {
    if args.target_rows == 0 {
        bail!("--target-rows must be at least 1");
    }
    let only = args
        .partitions
        .iter()
        .map(|p| p.parse::<PartitionArg>().map(|a| a.0))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CompactPolicy {
        min_input_files: args.min_input_files,
        min_file_rows: args.min_file_rows,
        target_rows: args.target_rows,
        only,
    })
}

/// Runs `earthcatalog compact` and prints its summary; `s3_buckets` (the `--s3-bucket`
/// entries) is passed on to local workers.
pub async fn run(args: CompactArgs, stores: &Stores, s3_buckets: String) -> anyhow::Result<()> {
    let started = Instant::now();
    let policy = policy(&args)?;
    let leased = args.service.listen.is_some() || args.service.local_workers.unwrap_or(0) > 0;
    let mut summary = if args.dry_run {
        dry_run(&args, &policy, stores).await?
    } else if leased {
        let mut service = ServiceConfig::from_args(&args.service, EMBEDDED_LISTEN, 0)?;
        service.s3_buckets = s3_buckets;
        let staging = StagingRoot::new(Location::parse(&args.staging).context("--staging")?);
        let writer = open_locked(&args.catalog, &args.lock, stores, "earthcatalog compact").await?;
        under_lock(writer, async |w| {
            let summary =
                compact_leased::compact_under_lock(w, &policy, &service, &staging).await?;
            Ok((summary, None))
        })
        .await?
    } else {
        compact(&args, &policy, stores).await?
    };
    summary.seconds = started.elapsed().as_secs_f64();
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    }
    tracing::info!(
        "{}{} partitions: {} files -> {} files, {} rows -> {} rows ({} duplicates dropped); table files {} -> {}; {:.1}s",
        if summary.dry_run { "dry run, would compact " } else { "compacted " },
        summary.partitions,
        summary.input_files,
        summary.output_files,
        summary.input_rows,
        summary.output_rows,
        summary.duplicates_dropped,
        summary.table_files_before,
        summary.table_files_after,
        summary.seconds,
    );
    Ok(())
}

pub(super) fn planned(
    files_before: usize,
    plan: Vec<PartitionPlan>,
    dry_run: bool,
) -> CompactSummary {
    let input_files = plan.iter().map(|p| p.files.len()).sum();
    let output_files = plan.iter().map(|p| p.output_files as usize).sum();
    let rows = plan.iter().map(|p| p.rows).sum();
    CompactSummary {
        dry_run,
        partitions: plan.len(),
        input_files,
        output_files,
        input_rows: rows,
        output_rows: rows,
        table_files_before: files_before,
        table_files_after: files_before - input_files + output_files,
        plan,
        ..Default::default()
    }
}

/// Plans on a private copy of the catalog, without the lock.
async fn dry_run(
    args: &CompactArgs,
    policy: &CompactPolicy,
    stores: &Stores,
) -> anyhow::Result<CompactSummary> {
    let read = read_table::open(&args.catalog, stores).await?;
    let files = data_files(&read.table).await?;
    Ok(planned(files.len(), plan(&files, policy), true))
}

async fn compact(
    args: &CompactArgs,
    policy: &CompactPolicy,
    stores: &Stores,
) -> anyhow::Result<CompactSummary> {
    let writer = open_locked(&args.catalog, &args.lock, stores, "earthcatalog compact").await?;
    let concurrency = args.concurrency.max(1);
    under_lock(writer, async |w| Ok((compact_under_lock(w, policy, concurrency).await?, None)))
        .await
}

async fn compact_under_lock(
    writer: &mut CatalogWriter,
    policy: &CompactPolicy,
    concurrency: usize,
) -> anyhow::Result<CompactSummary> {
    let catalog = writer.catalog();
    let Some(table) = catalog.load_table().await? else {
        bail!("catalog {} has no table earthcatalog.stac_items", catalog.path().display());
    };
    let files = data_files(&table).await.context("listing the table's files")?;
    let chosen = plan(&files, policy);
    let mut summary = planned(files.len(), chosen.clone(), false);
    if chosen.is_empty() {
        tracing::info!(files = files.len(), "no partition is worth compacting");
        return Ok(summary);
    }
    tracing::info!(partitions = chosen.len(), files = summary.input_files, "compacting partitions");
    let stores = catalog.stores().clone();
    let warehouse = catalog.warehouse().clone();
    let namer = FileNamer::new(RunId::new(), COMPACT_WRITER);
    let mut rewrites = futures::stream::iter(&chosen)
        .map(|p| rewrite(&stores, &warehouse, p, &namer, policy.target_rows))
        .buffer_unordered(concurrency);
    let mut written: Vec<WrittenFile> = Vec::new();
    let (mut duplicates, mut done) = (0u64, 0usize);
    while let Some(outcome) = rewrites.next().await {
        // Noted before the error check: whatever was written goes if the compaction fails.
        match outcome {
            Ok(o) => {
                writer.wrote(o.files.iter().map(|f| f.location.clone()));
                duplicates += o.duplicates_dropped;
                written.extend(o.files);
                done += 1;
                if done % 100 == 0 {
                    tracing::info!("rewrote {done} of {} partitions", chosen.len());
                }
            }
            Err(e) => {
                drop(rewrites);
                return Err(e.into());
            }
        }
    }
    drop(rewrites);
    let add = writer.catalog().describe_written(&table, &written).await?;
    let remove: BTreeSet<String> = chosen.iter().flat_map(|p| p.files.iter().cloned()).collect();
    let replacement = Replacement { kind: ReplaceKind::Rewrite, remove, add, ..Default::default() };
    let (after, committed) = writer.replace(&replacement).await?;
    summary.snapshot_id = committed.snapshot_id;
    summary.output_files = committed.added_files;
    summary.output_rows = committed.added_records;
    summary.duplicates_dropped = duplicates;
    summary.table_files_after = data_files(&after).await.map(|f| f.len()).unwrap_or_default();
    Ok(summary)
}
