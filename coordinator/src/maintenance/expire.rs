//! `earthcatalog expire-snapshots`: snapshots older than `--older-than` leave the table (the
//! newest `--retain-last` stay), then the files only they reached are deleted.

use anyhow::bail;
use earthcatalog_common::maintenance::expire::{ExpireOutcome, ExpirePolicy, expire_snapshots};
use earthcatalog_common::stores::Stores;

use super::{open_locked, parse_age, under_lock};
use crate::cli::ExpireArgs;
use crate::read_table;

/// Runs `earthcatalog expire-snapshots` and prints what it deleted.
pub async fn run(args: ExpireArgs, stores: &Stores) -> anyhow::Result<()> {
    if args.retain_last == 0 {
        bail!("--retain-last must be at least 1: the current snapshot always stays");
    }
    let age = parse_age(&args.older_than)?;
    let policy = ExpirePolicy {
        cutoff_ms: (chrono::Utc::now() - age).timestamp_millis(),
        retain_last: args.retain_last,
    };
    let outcome = if args.dry_run {
        let read = read_table::open(&args.catalog, stores).await?;
        expire_snapshots(&read.catalog, &policy, true).await?
    } else {
        let writer =
            open_locked(&args.catalog, &args.lock, stores, "earthcatalog expire-snapshots").await?;
        under_lock(writer, async |w| {
            Ok((expire_snapshots(w.catalog(), &policy, false).await?, None))
        })
        .await?
    };
    report(&outcome, args.json)
}

fn report(o: &ExpireOutcome, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(o)?);
    }
    if o.delete_only_manifests > 0 {
        tracing::info!(
            "{} {} manifests of removed files only",
            if o.dry_run {
                "dry run, the current snapshot would stop listing"
            } else {
                "the current snapshot no longer lists"
            },
            o.delete_only_manifests
        );
    }
    tracing::info!(
        "{} {} snapshots ({} stay): {} data files, {} manifests, {} manifest lists, {} metadata files{}",
        if o.dry_run { "dry run, would expire" } else { "expired" },
        o.expired_snapshots.len(),
        o.retained_snapshots,
        o.data_files.len(),
        o.manifests.len(),
        o.manifest_lists.len(),
        o.metadata_files.len(),
        if o.not_deleted > 0 {
            format!("; {} could not be deleted", o.not_deleted)
        } else {
            String::new()
        },
    );
    Ok(())
}
