//! `earthcatalog sample`: writes ITS_LIVE-shaped items and an inventory listing them, for
//! trying the tool and for benchmarks.

use std::sync::Arc;

use anyhow::Context;
use earthcatalog_common::location::Location;
use earthcatalog_common::sample::{DateSpan, itslive_item_in, itslive_key_in};
use earthcatalog_common::stores::Stores;
use futures::StreamExt;

use crate::cli::SampleArgs;

/// Writes `args.items` items under `args.out` and an inventory CSV (with a header) naming them
/// in bucket `args.bucket`.
pub async fn run(args: SampleArgs, stores: &Stores) -> anyhow::Result<()> {
    let stores = Arc::new(stores.clone());
    let root = Location::parse(&args.out).context("--out")?;
    let items_root = root.join("items");
    let span = args.years.map_or(DateSpan::DEFAULT, DateSpan::years);
    let mut csv = String::from("bucket,key,last_modified_date\n");
    for i in args.first..args.first + args.items {
        csv.push_str(&format!(
            "{},{},2024-01-{:02}T00:00:00Z\n",
            args.bucket,
            itslive_key_in(i, span),
            1 + i % 28
        ));
    }
    let writes = futures::stream::iter(args.first..args.first + args.items).map(|i| {
        let stores = stores.clone();
        let target = items_root.join(&itslive_key_in(i, span));
        async move {
            let body = serde_json::to_vec_pretty(&itslive_item_in(i, span))?;
            stores.put(&target, body).await?;
            anyhow::Ok(())
        }
    });
    let results: Vec<_> = writes.buffer_unordered(32).collect().await;
    results.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    let inv = root.join("inventory.csv");
    stores.put(&inv, csv).await?;
    tracing::info!(
        "wrote {} items under {items_root} and the inventory {inv}; ingest them with --source {}={items_root}",
        args.items,
        args.bucket
    );
    Ok(())
}
