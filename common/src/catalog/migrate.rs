//! Bringing SQLite catalogs made by older PyIceberg up to the layout iceberg-rust expects.
//!
//! PyIceberg 0.11 created `iceberg_tables` without the `iceberg_type` column ("v0" layout);
//! iceberg-rust filters every query on that column and never adds it, so such a catalog fails
//! with "no such column". Adding the column (NULL for existing rows, which both iceberg-rust and
//! PyIceberg read as a table) is exactly what PyIceberg's own `schema_version=v1` upgrade does.

use std::path::{Path, PathBuf};

use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

/// Why the catalog file could not be checked or migrated.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The SQLite file could not be opened, read or altered.
    #[error("cannot {action} catalog {path}: {source}")]
    Sql {
        /// What we were doing.
        action: &'static str,
        /// The SQLite file.
        path: PathBuf,
        /// The database error.
        source: sqlx::Error,
    },
}

/// What [`migrate_catalog`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migration {
    /// No `iceberg_tables` table yet: iceberg-rust will create the current layout.
    NewCatalog,
    /// The catalog already has `iceberg_type`.
    UpToDate,
    /// The v0 layout was found and `iceberg_type` was added.
    AddedIcebergType,
}

/// Adds `iceberg_tables.iceberg_type` when the catalog at `db` lacks it (creating an empty file
/// if there is none).
pub async fn migrate_catalog(db: &Path) -> Result<Migration, MigrateError> {
    let err = |action: &'static str| {
        move |source| MigrateError::Sql { action, path: db.to_path_buf(), source }
    };
    let options = SqliteConnectOptions::new().filename(db).create_if_missing(true);
    let pool: SqlitePool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .map_err(err("open"))?;
    let result = migrate_pool(&pool).await.map_err(|(action, source)| MigrateError::Sql {
        action,
        path: db.to_path_buf(),
        source,
    });
    pool.close().await;
    let migration = result?;
    if migration == Migration::AddedIcebergType {
        tracing::info!(catalog = %db.display(), "migrated a v0 PyIceberg catalog: added iceberg_tables.iceberg_type");
    }
    Ok(migration)
}

async fn migrate_pool(pool: &SqlitePool) -> Result<Migration, (&'static str, sqlx::Error)> {
    let tables = sqlx::query(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'iceberg_tables'",
    )
    .fetch_all(pool)
    .await
    .map_err(|e| ("read", e))?;
    if tables.is_empty() {
        return Ok(Migration::NewCatalog);
    }
    let columns = sqlx::query("PRAGMA table_info(iceberg_tables)")
        .fetch_all(pool)
        .await
        .map_err(|e| ("read", e))?;
    let has_type = columns.iter().any(|row| {
        row.try_get::<String, _>("name").is_ok_and(|n| n.eq_ignore_ascii_case("iceberg_type"))
    });
    if has_type {
        return Ok(Migration::UpToDate);
    }
    sqlx::query("ALTER TABLE iceberg_tables ADD COLUMN iceberg_type VARCHAR(5)")
        .execute(pool)
        .await
        .map_err(|e| ("migrate", e))?;
    Ok(Migration::AddedIcebergType)
}
