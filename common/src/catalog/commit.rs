//! Committing metadata we build ourselves: iceberg-rust 0.10.1 only commits its own actions
//! (append, properties, schema), and its `TableCommit` cannot be built outside the crate. A
//! replace snapshot or a snapshot expiry is committed the way the SQL catalog commits: the new
//! metadata file is written next to the current one, then the catalog row is switched to it by a
//! compare-and-swap `UPDATE` on the current metadata location. A writer that lost the race has
//! changed nothing readers see; its metadata file is deleted.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use iceberg::MetadataLocation;
use iceberg::spec::{TableMetadata, TableMetadataBuilder};
use iceberg::table::Table;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

use super::{CATALOG_NAME, NAMESPACE, TABLE_NAME};

/// Why a metadata commit failed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The table has no metadata location (never committed).
    #[error("the table has no metadata file to commit after")]
    NoMetadataLocation,
    /// Building or writing the new metadata failed.
    #[error("{action}: {source}")]
    Iceberg {
        /// What we were doing.
        action: &'static str,
        /// iceberg's error.
        source: Box<iceberg::Error>,
    },
    /// The catalog row could not be updated.
    #[error("updating the catalog {catalog}: {source}")]
    Sql {
        /// The SQLite file.
        catalog: PathBuf,
        /// Why.
        source: sqlx::Error,
    },
}

fn iceberg(action: &'static str) -> impl FnOnce(iceberg::Error) -> CommitError {
    move |source| CommitError::Iceberg { action, source: Box::new(source) }
}

/// The outcome of a compare-and-swap on the catalog row.
#[derive(Debug)]
pub enum Swap {
    /// The table now points at the new metadata file.
    Committed(String),
    /// Someone committed since `base` was loaded; nothing changed.
    Conflict,
}

/// Builds the next metadata of `base` with `change`, writes it, and points the catalog row at it
/// if the row still names `base`'s metadata file.
pub async fn commit_metadata(
    db: &Path,
    base: &Table,
    change: impl FnOnce(TableMetadataBuilder) -> iceberg::Result<TableMetadataBuilder>,
) -> Result<Swap, CommitError> {
    let current = base.metadata_location().ok_or(CommitError::NoMetadataLocation)?;
    let builder = base.metadata().clone().into_builder(Some(current.to_string()));
    let next: TableMetadata = change(builder)
        .and_then(TableMetadataBuilder::build)
        .map_err(iceberg("build the new table metadata"))?
        .metadata;
    let location = MetadataLocation::from_str(current)
        .map_err(iceberg("parse the current metadata location"))?
        .with_next_version()
        .with_new_metadata(&next);
    next.write_to(base.file_io(), &location)
        .await
        .map_err(iceberg("write the new metadata file"))?;
    let new_location = location.to_string();
    if swap_row(db, current, &new_location).await? {
        return Ok(Swap::Committed(new_location));
    }
    if let Err(e) = base.file_io().delete(&new_location).await {
        tracing::warn!(file = %new_location, error = %e, "could not delete the metadata file of a commit that lost a race");
    }
    Ok(Swap::Conflict)
}

/// Points the table's row at `new` if it still names `current`; false when it does not.
async fn swap_row(db: &Path, current: &str, new: &str) -> Result<bool, CommitError> {
    let err = |source| CommitError::Sql { catalog: db.to_path_buf(), source };
    let options = SqliteConnectOptions::new().filename(db);
    let pool =
        SqlitePoolOptions::new().max_connections(1).connect_with(options).await.map_err(err)?;
    let result = sqlx::query(
        "UPDATE iceberg_tables SET metadata_location = ?, previous_metadata_location = ? \
         WHERE catalog_name = ? AND table_namespace = ? AND table_name = ? \
         AND (iceberg_type = 'TABLE' OR iceberg_type IS NULL) AND metadata_location = ?",
    )
    .bind(new)
    .bind(current)
    .bind(CATALOG_NAME)
    .bind(NAMESPACE)
    .bind(TABLE_NAME)
    .bind(current)
    .execute(&pool)
    .await;
    pool.close().await;
    Ok(result.map_err(err)?.rows_affected() == 1)
}
