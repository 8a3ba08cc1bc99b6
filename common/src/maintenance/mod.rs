//! Table maintenance: compaction of (cell, year) partitions by a replace commit
//! (`compact.rs`), snapshot expiry (`expire.rs`) and orphan removal (`orphans.rs`). Each runs
//! under the catalog lock the caller holds; what they delete is decided from the table's
//! metadata, never from file names alone.

pub mod compact;
pub mod expire;
pub mod orphans;

use std::path::PathBuf;

use crate::catalog::{CatalogError, CommitError};
use crate::location::Location;
use crate::stores::ObjectError;

/// Why a maintenance step failed (the table is unchanged, or changed only by its commit).
#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    /// The catalog has no table.
    #[error("catalog {catalog} has no table earthcatalog.stac_items")]
    NoTable {
        /// The catalog file.
        catalog: PathBuf,
    },
    /// Reading the table's metadata failed.
    #[error("{action}: {source}")]
    Iceberg {
        /// What we were doing.
        action: &'static str,
        /// iceberg's error.
        source: Box<iceberg::Error>,
    },
    /// Someone committed while we held the lock (a writer that does not take it).
    #[error(
        "the table changed during maintenance (a writer that does not take the catalog lock?); run it again"
    )]
    Changed,
    /// The metadata commit failed.
    #[error(transparent)]
    Commit(#[from] CommitError),
    /// The catalog could not be read.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The snapshot without the removed files' manifests could not be committed.
    #[error(transparent)]
    Manifests(#[from] crate::catalog::ReplaceError),
    /// A folder could not be listed.
    #[error(transparent)]
    Object(#[from] ObjectError),
    /// A path in the metadata is not a location we can reach.
    #[error("cannot reach {path} named in the table's metadata")]
    Path {
        /// The path.
        path: String,
    },
}

impl MaintenanceError {
    fn iceberg(action: &'static str) -> impl FnOnce(iceberg::Error) -> MaintenanceError {
        move |source| MaintenanceError::Iceberg { action, source: Box::new(source) }
    }
}

/// The table's metadata JSON files (under `<table location>/metadata/`), as paths.
async fn metadata_files(
    catalog: &crate::catalog::Catalog,
    table_location: &str,
) -> Result<Vec<String>, MaintenanceError> {
    let folder = metadata_folder(table_location)?;
    Ok(catalog
        .stores()
        .list(&folder)
        .await?
        .into_iter()
        .map(|l| l.uri())
        .filter(|p| p.ends_with(".metadata.json"))
        .collect())
}

fn metadata_folder(table_location: &str) -> Result<Location, MaintenanceError> {
    let path = format!("{}/metadata", table_location.trim_end_matches('/'));
    Location::parse(&path).map_err(|_| MaintenanceError::Path { path })
}

/// Deletes `paths` (best effort, each failure logged as `what`); returns how many stayed.
async fn delete_listed<'a>(
    catalog: &crate::catalog::Catalog,
    paths: impl IntoIterator<Item = &'a String>,
    what: &str,
) -> Result<usize, MaintenanceError> {
    let locations = paths
        .into_iter()
        .map(|p| Location::parse(p).map_err(|_| MaintenanceError::Path { path: p.clone() }))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(catalog.stores().delete_all(&locations, what).await)
}
