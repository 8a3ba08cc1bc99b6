//! Opening the table to read it (`info`, `search`, the dry runs of maintenance and `sync`): a catalog kept in a store is read from a
//! private copy, so the working copy and the lock are left alone.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use earthcatalog_common::catalog::Catalog;
use earthcatalog_common::catalog_sync::CatalogCopy;
use earthcatalog_common::location::Location;
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
    /// The version of the catalog object it was read at (its ETag), when known.
    pub version: Option<String>,
    // Keeps the downloaded copy until the table is dropped.
    _copy: Option<tempfile::TempDir>,
}

/// Opens the table the catalog flags name; an error when there is no catalog or no table.
pub async fn open(args: &CatalogArgs, stores: &Stores) -> anyhow::Result<ReadTable> {
    let place = catalog_place(args, None, None)?;
    let stores = Arc::new(stores.clone());
    let (path, copy, version) = match &place.remote {
        Some(remote) => {
            let tmp = tempfile::tempdir().context("creating a temporary folder")?;
            let local = tmp.path().join("catalog.db");
            let downloaded = CatalogCopy::download(&stores, remote, &local).await?;
            (local, Some(tmp), downloaded.version().map(str::to_string))
        }
        None => {
            // Taken before the file is opened: a change in between is seen as a new version.
            let version = catalog_version(&stores, &catalog_location(args)?).await?;
            (place.path.clone(), None, version)
        }
    };
    if !path.is_file() {
        anyhow::bail!("no catalog at {}", path.display());
    }
    let catalog = Catalog::open(&path, &place.warehouse, stores).await?;
    let Some(table) = catalog.load_table().await? else {
        anyhow::bail!("catalog {} has no table earthcatalog.stac_items", path.display());
    };
    Ok(ReadTable { table, catalog, path, version, _copy: copy })
}

/// The catalog object the flags name: the one in `--catalog-store`, else the local file.
pub fn catalog_location(args: &CatalogArgs) -> anyhow::Result<Location> {
    let place = catalog_place(args, None, None)?;
    match place.remote {
        Some(remote) => Ok(remote),
        None => Ok(Location::local(&place.path)?),
    }
}

/// The current version of the catalog object (its ETag, else its time and size), `None`
/// when there is none.
pub async fn catalog_version(
    stores: &Stores,
    location: &Location,
) -> anyhow::Result<Option<String>> {
    let head = stores.head(location).await.with_context(|| format!("reading {location}"))?;
    Ok(head.map(|(_, meta)| {
        meta.e_tag
            .unwrap_or_else(|| format!("{}-{}", meta.last_modified.timestamp_micros(), meta.size))
    }))
}
