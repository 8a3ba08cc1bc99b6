//! Opening the table to read it (`info`, `search`, the dry runs of maintenance and `sync`): a catalog kept in a store is read from a
//! private copy, so the working copy and the lock are left alone.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use earthcatalog_common::catalog::Catalog;
use earthcatalog_common::catalog_sync::CatalogCopy;
use earthcatalog_common::stores::Stores;
use iceberg::table::Table;

use crate::cli::CatalogArgs;
use crate::config::catalog_place;

/// The table opened for reading, and the catalog file it came from.
pub struct ReadTable {
    /// The table at its current snapshot.
    pub table: Table,
    /// The catalog it was loaded from.
    pub catalog: Catalog,
    /// The catalog file read (a temporary copy when the catalog is kept in a store).
    pub path: PathBuf,
    // Keeps the downloaded copy until the table is dropped.
    _copy: Option<tempfile::TempDir>,
}

/// Opens the table the catalog flags name; an error when there is no catalog or no table.
pub async fn open(args: &CatalogArgs, stores: &Stores) -> anyhow::Result<ReadTable> {
    let place = catalog_place(args, None, None)?;
    let stores = Arc::new(stores.clone());
    let (path, copy) = match &place.remote {
        Some(remote) => {
            let tmp = tempfile::tempdir().context("creating a temporary folder")?;
            let local = tmp.path().join("catalog.db");
            CatalogCopy::download(&stores, remote, &local).await?;
            (local, Some(tmp))
        }
        None => (place.path.clone(), None),
    };
    if !path.is_file() {
        anyhow::bail!("no catalog at {}", path.display());
    }
    let catalog = Catalog::open(&path, &place.warehouse, stores).await?;
    let Some(table) = catalog.load_table().await? else {
        anyhow::bail!("catalog {} has no table earthcatalog.stac_items", path.display());
    };
    Ok(ReadTable { table, catalog, path, _copy: copy })
}
