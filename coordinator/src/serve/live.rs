//! The table as the server sees it: loaded once, then reloaded whenever the catalog object
//! changes (checked with a HEAD on a cadence), so new snapshots are served without a restart.
//! Requests hold the [`Loaded`] they started with; a reload swaps in a new one for the next.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use earthcatalog_common::location::Location;
use earthcatalog_common::logging::error_report;
use earthcatalog_common::partition::{GridSpec, Partitioner, open_partitioner};
use earthcatalog_common::search::{CollectionSummary, collections};
use earthcatalog_common::stores::Stores;

use crate::cli::CatalogArgs;
use crate::read_table::{self, ReadTable};

/// One version of the table, with what every request needs from it.
pub struct Loaded {
    /// The table and the catalog (copy) it came from.
    pub read: ReadTable,
    /// The table's grid.
    pub partitioner: Arc<dyn Partitioner>,
    /// The collections of the current snapshot.
    pub collections: Vec<CollectionSummary>,
}

impl Loaded {
    async fn load(args: &CatalogArgs, stores: &Stores) -> anyhow::Result<Loaded> {
        let read = read_table::open(args, stores).await?;
        let grid = GridSpec::from_properties(read.table.metadata().properties())
            .context("reading the table's grid")?;
        let partitioner = open_partitioner(&grid, stores).await?;
        let collections =
            collections(&read.table).await.context("listing the table's collections")?;
        Ok(Loaded { read, partitioner, collections })
    }

    /// The current snapshot's id (`None` for a table without snapshots).
    pub fn snapshot_id(&self) -> Option<i64> {
        self.read.table.metadata().current_snapshot().map(|s| s.snapshot_id())
    }
}

/// The table being served, reloaded when its catalog changes.
pub struct LiveTable {
    args: CatalogArgs,
    stores: Stores,
    catalog: Location,
    current: RwLock<Arc<Loaded>>,
}

impl LiveTable {
    /// Loads the table the flags name; an error when there is none.
    pub async fn open(args: CatalogArgs, stores: Stores) -> anyhow::Result<LiveTable> {
        let catalog = read_table::catalog_location(&args)?;
        let loaded = Loaded::load(&args, &stores).await?;
        log_loaded(&loaded);
        Ok(LiveTable { args, stores, catalog, current: RwLock::new(Arc::new(loaded)) })
    }

    /// The version requests use now.
    pub fn current(&self) -> Arc<Loaded> {
        match self.current.read() {
            Ok(c) => c.clone(),
            // A panic while swapping left the old value, which is still whole.
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reloads the table when the catalog object's version differs from the loaded one;
    /// whether it did.
    pub async fn refresh(&self) -> anyhow::Result<bool> {
        let now = read_table::catalog_version(&self.stores, &self.catalog).await?;
        if now.is_none() || now == self.current().read.version {
            return Ok(false);
        }
        let loaded = Loaded::load(&self.args, &self.stores).await?;
        log_loaded(&loaded);
        let loaded = Arc::new(loaded);
        match self.current.write() {
            Ok(mut c) => *c = loaded,
            Err(poisoned) => *poisoned.into_inner() = loaded,
        }
        Ok(true)
    }

    /// Checks for a new catalog every `every` until the process ends; a failed check is
    /// logged and the loaded table stays in service.
    pub fn spawn_refresher(self: Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                if let Err(e) = self.refresh().await {
                    tracing::warn!("cannot reload the catalog: {}", error_report(e.as_ref()));
                }
            }
        })
    }
}

fn log_loaded(loaded: &Loaded) {
    tracing::info!(
        snapshot = loaded.snapshot_id(),
        version = loaded.read.version.as_deref(),
        collections = loaded.collections.len(),
        "table loaded"
    );
}
