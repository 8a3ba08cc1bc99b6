//! The Iceberg catalog: one SQLite file naming the `earthcatalog.stac_items` table, whose
//! metadata lives under `<warehouse>/earthcatalog/stac_items/metadata/`.
//!
//! [`Catalog::open`] migrates catalogs made by older PyIceberg, then wires iceberg's file I/O to
//! our [`Stores`] so `file://`, `memory://` and `s3://` warehouses behave the same.
//! [`Catalog::open_table`] opens or creates the table with our schema, partition spec and
//! properties; [`Catalog::register`] appends existing Parquet files in one snapshot.

mod append;
mod commit;
mod datafile;
mod manifest_encoding;
mod migrate;
mod prune_manifests;
mod query;
mod reachable;
mod register;
mod replace;
mod storage;
mod table;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use iceberg::spec::{NestedFieldRef, Schema};
use iceberg::table::Table;
use iceberg::transaction::{AddColumn, ApplyTransactionAction, Transaction};
use iceberg::{Catalog as _, CatalogBuilder, NamespaceIdent, TableCreation, TableIdent};
use iceberg_catalog_sql::{
    SQL_CATALOG_PROP_BIND_STYLE, SQL_CATALOG_PROP_URI, SQL_CATALOG_PROP_WAREHOUSE, SqlBindStyle,
    SqlCatalog, SqlCatalogBuilder,
};

pub use commit::{CommitError, Swap, commit_metadata};
pub use datafile::{DataFileError, data_file_from_footer, footer_cell_year};
pub use migrate::{MigrateError, Migration, migrate_catalog};
pub use prune_manifests::DroppedManifests;
pub use query::{
    DataFileInfo, PartitionTotals, SnapshotInfo, data_files, data_files_at, partition_of,
    partition_totals, refs, snapshots,
};
pub use reachable::{Entries, Reachable, reachable};
pub use register::{RegisterError, RegisterSummary};
pub use replace::{ReplaceError, ReplaceKind, ReplaceSummary, Replacement, TARGET_MANIFEST_BYTES};
pub use storage::{ObjectStoreStorage, ObjectStoreStorageFactory};
pub use table::{
    GridMismatch, NAME_MAPPING_KEY, PROP_GRID_BOUNDARIES, PROP_GRID_ID_FIELD, PROP_GRID_RESOLUTION,
    PROP_GRID_TYPE, PROP_HASH_INDEX_PATH, TableSettings, YEAR_PARTITION, iceberg_schema,
    name_mapping_json, partition_spec,
};

use crate::location::Location;
use crate::stores::Stores;

/// Catalog name (the `catalog_name` column; PyIceberg must use the same).
pub const CATALOG_NAME: &str = "earthcatalog";
/// Namespace of the table.
pub const NAMESPACE: &str = "earthcatalog";
/// Table name.
pub const TABLE_NAME: &str = "stac_items";

/// Why the catalog or the table could not be opened or changed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The catalog file path could not be made absolute.
    #[error("cannot use catalog path {path}: {source}")]
    CatalogPath {
        /// The path given.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Migrating an older catalog failed.
    #[error(transparent)]
    Migrate(#[from] MigrateError),
    /// An iceberg operation failed.
    #[error("{action} (catalog {catalog}): {source}")]
    Iceberg {
        /// What we were doing.
        action: String,
        /// The catalog file.
        catalog: PathBuf,
        /// iceberg's error.
        source: Box<iceberg::Error>,
    },
    /// The requested grid differs from the one the table was built with.
    #[error(
        "the table in {catalog} was built with a different grid: {}",
        mismatches.iter().map(|m| format!("{} is '{}' in the table but '{}' was requested", m.key, m.table, m.requested)).collect::<Vec<_>>().join("; ")
    )]
    GridMismatch {
        /// The catalog file.
        catalog: PathBuf,
        /// Each conflicting property.
        mismatches: Vec<GridMismatch>,
    },
    /// The table has a field with one of our names but another id or type.
    #[error("the table in {catalog} has an incompatible schema: {}", conflicts.join("; "))]
    SchemaConflict {
        /// The catalog file.
        catalog: PathBuf,
        /// Each conflicting field.
        conflicts: Vec<String>,
    },
}

/// The SQLite catalog holding `earthcatalog.stac_items`.
#[derive(Debug)]
pub struct Catalog {
    sql: SqlCatalog,
    db: PathBuf,
    warehouse: Location,
    stores: Arc<Stores>,
}

impl Catalog {
    /// Opens (creating if needed) the SQLite catalog at `db`, with metadata written under
    /// `warehouse`. A v0 catalog from an older PyIceberg is migrated in place first.
    pub async fn open(
        db: &Path,
        warehouse: &Location,
        stores: Arc<Stores>,
    ) -> Result<Catalog, CatalogError> {
        let db = std::path::absolute(db)
            .map_err(|source| CatalogError::CatalogPath { path: db.to_path_buf(), source })?;
        migrate_catalog(&db).await?;
        let props = HashMap::from([
            (SQL_CATALOG_PROP_URI.to_string(), format!("sqlite://{}?mode=rwc", db.display())),
            (SQL_CATALOG_PROP_WAREHOUSE.to_string(), warehouse.uri()),
            (SQL_CATALOG_PROP_BIND_STYLE.to_string(), SqlBindStyle::QMark.to_string()),
        ]);
        let sql = SqlCatalogBuilder::default()
            .with_storage_factory(Arc::new(ObjectStoreStorageFactory::new(stores.clone())))
            .load(CATALOG_NAME, props)
            .await
            .map_err(|source| CatalogError::Iceberg {
                action: "open the catalog".into(),
                catalog: db.clone(),
                source: Box::new(source),
            })?;
        Ok(Catalog { sql, db, warehouse: warehouse.clone(), stores })
    }

    /// The table's identifier, `earthcatalog.stac_items`.
    pub fn ident() -> TableIdent {
        TableIdent::new(NamespaceIdent::new(NAMESPACE.into()), TABLE_NAME.into())
    }

    /// The SQLite file.
    pub fn path(&self) -> &Path {
        &self.db
    }

    /// The warehouse root.
    pub fn warehouse(&self) -> &Location {
        &self.warehouse
    }

    /// The stores every file is read and written through.
    pub fn stores(&self) -> &Arc<Stores> {
        &self.stores
    }

    /// The underlying iceberg catalog, for operations not wrapped here.
    pub fn sql(&self) -> &SqlCatalog {
        &self.sql
    }

    fn iceberg_err(&self, action: &str) -> impl FnOnce(iceberg::Error) -> CatalogError + '_ {
        let action = action.to_string();
        move |source| CatalogError::Iceberg {
            action,
            catalog: self.db.clone(),
            source: Box::new(source),
        }
    }

    /// The table, if the catalog has one.
    pub async fn load_table(&self) -> Result<Option<Table>, CatalogError> {
        let ident = Self::ident();
        let exists =
            self.sql.table_exists(&ident).await.map_err(self.iceberg_err("look up the table"))?;
        if !exists {
            return Ok(None);
        }
        let table =
            self.sql.load_table(&ident).await.map_err(self.iceberg_err("load the table"))?;
        Ok(Some(table))
    }

    /// Opens the table, creating it when absent. Requested settings missing from an existing
    /// table are added (existing values are never replaced); a different grid type or
    /// resolution is refused; a table with only PyIceberg's 28 fields gains ours.
    pub async fn open_table(&self, settings: &TableSettings) -> Result<Table, CatalogError> {
        match self.load_table().await? {
            Some(table) => self.reconcile(table, settings).await,
            None => self.create_table(settings.to_properties().into_iter().collect()).await,
        }
    }

    /// For a full rebuild: the table (created when absent) evolved to our schema, and the grid
    /// properties of `settings` that differ from the table's. A rebuild may change the grid, as
    /// every old row leaves in the same commit: those properties are set by that commit
    /// ([`Replacement::set_properties`]), never before it.
    pub async fn open_for_rebuild(
        &self,
        settings: &TableSettings,
    ) -> Result<(Table, HashMap<String, String>), CatalogError> {
        let Some(table) = self.load_table().await? else {
            return Ok((self.open_table(settings).await?, HashMap::new()));
        };
        let props = table.metadata().properties();
        let changed: HashMap<String, String> = table::grid_mismatches(props, settings)
            .into_iter()
            .map(|m| (m.key.to_string(), m.requested))
            .collect();
        let mut compatible = settings.clone();
        if !changed.is_empty() {
            let current = TableSettings::from_properties(props);
            compatible.grid_type = current.grid_type;
            compatible.grid_resolution = current.grid_resolution;
            compatible.boundaries_path = current.boundaries_path;
            compatible.id_field = current.id_field;
        }
        let table = self.reconcile(table, &compatible).await?;
        Ok((table, changed))
    }

    async fn ensure_namespace(&self) -> Result<(), CatalogError> {
        let ns = NamespaceIdent::new(NAMESPACE.into());
        let exists = self
            .sql
            .namespace_exists(&ns)
            .await
            .map_err(self.iceberg_err("look up the namespace"))?;
        if !exists {
            self.sql
                .create_namespace(&ns, HashMap::new())
                .await
                .map_err(self.iceberg_err("create the namespace"))?;
        }
        Ok(())
    }

    /// Creates the table with `props` and the name mapping of our schema.
    async fn create_table(
        &self,
        mut props: HashMap<String, String>,
    ) -> Result<Table, CatalogError> {
        self.ensure_namespace().await?;
        let schema = iceberg_schema().map_err(self.iceberg_err("build the schema"))?;
        let spec = partition_spec().map_err(self.iceberg_err("build the partition spec"))?;
        props.insert(NAME_MAPPING_KEY.to_string(), name_mapping_json(&schema));
        let creation = TableCreation::builder()
            .name(TABLE_NAME.to_string())
            .schema(schema)
            .partition_spec(spec)
            .properties(props)
            .build();
        let table = self
            .sql
            .create_table(&NamespaceIdent::new(NAMESPACE.into()), creation)
            .await
            .map_err(self.iceberg_err("create the table"))?;
        self.check_schema(table.metadata().current_schema())?;
        tracing::info!(catalog = %self.db.display(), location = table.metadata().location(), "created the table");
        Ok(table)
    }

    fn check_schema(&self, schema: &Schema) -> Result<(), CatalogError> {
        let conflicts = table::conflicting_fields(schema);
        if conflicts.is_empty() {
            Ok(())
        } else {
            Err(CatalogError::SchemaConflict { catalog: self.db.clone(), conflicts })
        }
    }

    async fn reconcile(
        &self,
        table: Table,
        settings: &TableSettings,
    ) -> Result<Table, CatalogError> {
        let props = table.metadata().properties();
        let mismatches = table::grid_mismatches(props, settings);
        if !mismatches.is_empty() {
            return Err(CatalogError::GridMismatch { catalog: self.db.clone(), mismatches });
        }
        let schema = table.metadata().current_schema().clone();
        self.check_schema(&schema)?;
        let missing = table::missing_fields(&schema);
        let mut updates = table::missing_properties(props, settings);
        let mapping = name_mapping_json(&evolved_schema(&schema, &missing)?);
        if props.get(NAME_MAPPING_KEY) != Some(&mapping) {
            updates.insert(NAME_MAPPING_KEY.to_string(), mapping);
        }
        if missing.is_empty() && updates.is_empty() {
            return Ok(table);
        }
        let mut tx = Transaction::new(&table);
        if !missing.is_empty() {
            let action = missing.iter().fold(tx.update_schema(), |action, field| {
                action.add_column(AddColumn::optional(&field.name, (*field.field_type).clone()))
            });
            tx = action.apply(tx).map_err(self.iceberg_err("add our fields to the schema"))?;
        }
        let action = updates
            .into_iter()
            .fold(tx.update_table_properties(), |action, (k, v)| action.set(k, v));
        tx = action.apply(tx).map_err(self.iceberg_err("set table properties"))?;
        let table = tx.commit(&self.sql).await.map_err(self.iceberg_err("update the table"))?;
        self.check_schema(table.metadata().current_schema())?;
        if !missing.is_empty() {
            tracing::info!(catalog = %self.db.display(), added = missing.len(), "evolved a PyIceberg table to our schema");
        }
        Ok(table)
    }
}

/// `schema` with `missing` appended, as the evolution will leave it (for its name mapping).
fn evolved_schema(schema: &Schema, missing: &[NestedFieldRef]) -> Result<Schema, CatalogError> {
    let fields: Vec<NestedFieldRef> =
        schema.as_struct().fields().iter().cloned().chain(missing.iter().cloned()).collect();
    Schema::builder().with_fields(fields).build().map_err(|source| CatalogError::Iceberg {
        action: "build the evolved schema".into(),
        catalog: PathBuf::new(),
        source: Box::new(source),
    })
}
