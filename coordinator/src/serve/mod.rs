//! `earthcatalog serve`: the table as a STAC API over HTTP (axum). Searches go through the
//! library's one search sequence ([`earthcatalog_common::search::search`]); this module only
//! translates HTTP to search requests and results to STAC API documents.

mod documents;
mod error;
mod live;
mod paging;
mod params;
mod routes;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use earthcatalog_common::stores::Stores;

use crate::cli::ServeArgs;
use live::LiveTable;
use routes::{AppState, router};

/// Loads the table, then serves it until the process is stopped.
pub async fn run(args: ServeArgs, stores: &Stores) -> anyhow::Result<()> {
    let live = Arc::new(LiveTable::open(args.catalog.clone(), stores.clone()).await?);
    let refresher = live.clone().spawn_refresher(Duration::from_secs(args.refresh_secs.max(1)));
    let state = Arc::new(AppState { live, public_url: args.public_url.clone() });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    tracing::info!("serving the STAC API on http://{addr}/");
    let served = axum::serve(listener, router(state)).await.context("serving HTTP");
    refresher.abort();
    served
}
