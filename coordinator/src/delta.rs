//! `earthcatalog delta`: today's delta inventory from an inventory and the hash index.

use std::sync::Arc;

use anyhow::{Context, bail};
use earthcatalog_common::delta::{DeltaOutcome, DeltaSettings, run_delta};
use earthcatalog_common::hash_index::default_location;
use earthcatalog_common::inventory::parse_since;
use earthcatalog_common::location::Location;
use earthcatalog_common::stores::Stores;

use crate::cli::DeltaArgs;

/// Runs `earthcatalog delta` and prints what it wrote.
pub async fn run(args: DeltaArgs, stores: &Stores) -> anyhow::Result<()> {
    let index = match (&args.hash_index, &args.warehouse) {
        (Some(i), _) => Location::parse(i).context("--hash-index")?,
        (None, Some(w)) => default_location(&Location::parse(w).context("--warehouse")?)?,
        (None, None) => bail!(
            "name the hash index with --hash-index, or the warehouse beside it with --warehouse"
        ),
    };
    let settings = DeltaSettings {
        inventory: Location::parse(&args.inventory).context("--inventory")?,
        since: args.since.as_deref().map(parse_since).transpose()?,
        changed_since: args.changed_since.as_deref().map(parse_since).transpose()?,
        index,
        prefix: Location::parse(&args.delta_prefix).context("--delta-prefix")?,
        date: args.date.unwrap_or_else(|| chrono::Utc::now().date_naive()),
    };
    let outcome = run_delta(&Arc::new(stores.clone()), &settings).await?;
    report(&outcome, args.json)
}

fn report(o: &DeltaOutcome, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(o)?);
    }
    tracing::info!(
        "delta {}: {} inventory keys against {} indexed ids: {} new, {} changed, {} carried from {} pending deltas ({} ingested since), {} in total -> {}",
        o.date,
        o.inventory_keys,
        o.indexed_ids,
        o.new_keys,
        o.changed_keys,
        o.carried_keys,
        o.merged_deltas.len(),
        o.consumed_keys,
        o.total_keys,
        o.delta.as_deref().unwrap_or("(nothing to write)"),
    );
    Ok(())
}
