//! `earthcatalog remove-orphans`: deletes the table's files that no snapshot references and
//! that are older than `--older-than` (so a running writer's uncommitted files are safe).

use earthcatalog_common::maintenance::orphans::{OrphanOutcome, remove_orphans};
use earthcatalog_common::stores::Stores;

use super::{open_locked, parse_age, under_lock};
use crate::cli::OrphansArgs;
use crate::read_table;

/// Runs `earthcatalog remove-orphans` and prints what it deleted.
pub async fn run(args: OrphansArgs, stores: &Stores) -> anyhow::Result<()> {
    let before = chrono::Utc::now() - parse_age(&args.older_than)?;
    let outcome = if args.dry_run {
        let read = read_table::open(&args.catalog, stores).await?;
        remove_orphans(&read.catalog, before, true).await?
    } else {
        let writer =
            open_locked(&args.catalog, &args.lock, stores, "earthcatalog remove-orphans").await?;
        under_lock(writer, async |w| Ok((remove_orphans(w.catalog(), before, false).await?, None)))
            .await?
    };
    report(&outcome, args.json)
}

fn report(o: &OrphanOutcome, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(o)?);
    }
    for path in &o.deleted {
        tracing::info!(file = %path, "{}", if o.dry_run { "would delete" } else { "deleted" });
    }
    tracing::info!(
        "{} {} orphaned files of {} scanned ({} unreferenced but too recent){}",
        if o.dry_run { "dry run, would delete" } else { "deleted" },
        o.deleted.len(),
        o.scanned,
        o.too_recent,
        if o.not_deleted > 0 {
            format!("; {} could not be deleted", o.not_deleted)
        } else {
            String::new()
        },
    );
    Ok(())
}
