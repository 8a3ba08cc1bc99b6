//! Opening, creating, evolving, migrating and recreating the table.
#![allow(clippy::unwrap_used)]

mod catalog_support;

use std::collections::HashMap;
use std::sync::Arc;

use catalog_support::{row, stores, write_rows};
use earthcatalog_common::catalog::{
    Catalog, CatalogError, Migration, NAME_MAPPING_KEY, PROP_GRID_RESOLUTION, PROP_GRID_TYPE,
    PROP_HASH_INDEX_PATH, ReplaceKind, Replacement, TableSettings, migrate_catalog,
    name_mapping_json,
};
use earthcatalog_common::location::Location;
use earthcatalog_common::partition::GridSpec;
use iceberg::spec::{NestedField, Schema, Transform};
use iceberg::transaction::ApplyTransactionAction;
use iceberg::{Catalog as _, NamespaceIdent, TableCreation};
use sqlx::Connection;
use sqlx::sqlite::SqliteConnection;

fn local(dir: &std::path::Path) -> Location {
    Location::local(dir).unwrap()
}

#[tokio::test]
async fn a_new_table_has_our_schema_spec_and_properties_under_the_warehouse() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = local(&tmp.path().join("warehouse"));
    let catalog = Catalog::open(&tmp.path().join("catalog.db"), &wh, stores()).await.unwrap();
    let mut settings = TableSettings::h3(1);
    settings.hash_index_path = Some("s3://bucket/warehouse_id_hashes.parquet".into());
    let table = catalog.open_table(&settings).await.unwrap();

    let meta = table.metadata();
    assert_eq!(meta.format_version(), iceberg::spec::FormatVersion::V2);
    assert_eq!(meta.location(), format!("{wh}/earthcatalog/stac_items"));
    let schema = meta.current_schema();
    assert_eq!(schema.field_by_name("proj:code").unwrap().id, 8);
    assert_eq!(schema.field_by_name("bbox").unwrap().id, 28);
    assert_eq!(schema.field_by_name("geometry_bbox").unwrap().id, 31);
    assert_eq!(schema.field_by_name("geometry_bbox.xmin").unwrap().id, 32);
    assert_eq!(schema.field_by_name("geometry_bbox.ymax").unwrap().id, 35);
    let spec = meta.default_partition_spec();
    let fields: Vec<(i32, i32, String, Transform)> = spec
        .fields()
        .iter()
        .map(|f| (f.field_id, f.source_id, f.name.clone(), f.transform))
        .collect();
    assert_eq!(
        fields,
        vec![
            (1000, 2, "grid_partition".to_string(), Transform::Identity),
            (1001, 4, "year".to_string(), Transform::Year)
        ]
    );
    let props = meta.properties();
    assert_eq!(props.get(PROP_GRID_TYPE).map(String::as_str), Some("h3"));
    assert_eq!(props.get(PROP_GRID_RESOLUTION).map(String::as_str), Some("1"));
    assert_eq!(
        props.get(PROP_HASH_INDEX_PATH).map(String::as_str),
        Some("s3://bucket/warehouse_id_hashes.parquet")
    );
    assert_eq!(props.get(NAME_MAPPING_KEY), Some(&name_mapping_json(schema)));
    let metadata_dir = tmp.path().join("warehouse/earthcatalog/stac_items/metadata");
    let names: Vec<String> = std::fs::read_dir(&metadata_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].starts_with("00000-") && names[0].ends_with(".metadata.json"), "{names:?}");
}

#[tokio::test]
async fn reopening_keeps_existing_properties_adds_missing_ones_and_refuses_another_resolution() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = local(&tmp.path().join("warehouse"));
    let db = tmp.path().join("catalog.db");
    {
        let catalog = Catalog::open(&db, &wh, stores()).await.unwrap();
        catalog.open_table(&TableSettings::h3(2)).await.unwrap();
    }
    let catalog = Catalog::open(&db, &wh, stores()).await.unwrap();
    let mut again = TableSettings::h3(2);
    again.hash_index_path = Some("file:///idx.parquet".into());
    let table = catalog.open_table(&again).await.unwrap();
    let props = table.metadata().properties();
    assert_eq!(props.get(PROP_GRID_RESOLUTION).map(String::as_str), Some("2"));
    assert_eq!(props.get(PROP_HASH_INDEX_PATH).map(String::as_str), Some("file:///idx.parquet"));

    // An unspecified grid keeps the table's; a later, different hash path does not replace it.
    let other_hash = TableSettings {
        hash_index_path: Some("file:///other.parquet".into()),
        ..Default::default()
    };
    let table = catalog.open_table(&other_hash).await.unwrap();
    assert_eq!(
        table.metadata().properties().get(PROP_HASH_INDEX_PATH).map(String::as_str),
        Some("file:///idx.parquet")
    );

    let err = catalog.open_table(&TableSettings::h3(3)).await.unwrap_err();
    assert!(matches!(err, CatalogError::GridMismatch { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("earthcatalog.grid.resolution is '2' in the table but '3' was requested"),
        "{err}"
    );
    let geojson = TableSettings { grid_type: Some("geojson".into()), ..Default::default() };
    let err = catalog.open_table(&geojson).await.unwrap_err();
    assert!(err.to_string().contains("earthcatalog.grid.type is 'h3'"), "{err}");
    // Refusals changed nothing.
    let table = catalog.load_table().await.unwrap().unwrap();
    assert_eq!(table.metadata().properties().get(PROP_GRID_TYPE).map(String::as_str), Some("h3"));
}

#[tokio::test]
async fn a_geojson_table_reopened_with_other_boundaries_or_id_field_is_refused_naming_both() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = local(&tmp.path().join("warehouse"));
    let catalog = Catalog::open(&tmp.path().join("catalog.db"), &wh, stores()).await.unwrap();
    let grid = |boundaries: &str, id_field: &str| {
        TableSettings::from_grid(&GridSpec::GeoJson {
            boundaries: boundaries.into(),
            id_field: id_field.into(),
        })
    };
    catalog.open_table(&grid("s3://b/tiles.geojson", "name")).await.unwrap();
    catalog.open_table(&grid("s3://b/tiles.geojson", "name")).await.unwrap();

    let err = catalog.open_table(&grid("s3://b/tiles-v2.geojson", "name")).await.unwrap_err();
    assert!(matches!(err, CatalogError::GridMismatch { .. }), "{err:?}");
    assert!(
        err.to_string().ends_with(
            "was built with a different grid: earthcatalog.grid.boundaries_path is \
             's3://b/tiles.geojson' in the table but 's3://b/tiles-v2.geojson' was requested"
        ),
        "{err}"
    );
    let err = catalog.open_table(&grid("s3://b/tiles.geojson", "tile_id")).await.unwrap_err();
    assert!(
        err.to_string().ends_with(
            "earthcatalog.grid.id_field is 'name' in the table but 'tile_id' was requested"
        ),
        "{err}"
    );
}

/// The 28 fields of earthcatalog 0.6.1, as PyIceberg created them.
fn original_schema() -> Schema {
    let ours = earthcatalog_common::catalog::iceberg_schema().unwrap();
    let fields = ours
        .as_struct()
        .fields()
        .iter()
        .filter(|f| f.id <= 28)
        .map(|f| Arc::new(NestedField::optional(f.id, &f.name, (*f.field_type).clone())))
        .collect::<Vec<_>>();
    Schema::builder().with_fields(fields).build().unwrap()
}

#[tokio::test]
async fn a_table_with_only_the_original_28_fields_gains_ours_with_the_same_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = local(&tmp.path().join("warehouse"));
    let catalog = Catalog::open(&tmp.path().join("catalog.db"), &wh, stores()).await.unwrap();
    let ns = NamespaceIdent::new("earthcatalog".into());
    catalog.sql().create_namespace(&ns, HashMap::new()).await.unwrap();
    let creation = TableCreation::builder()
        .name("stac_items".into())
        .schema(original_schema())
        .partition_spec(earthcatalog_common::catalog::partition_spec().unwrap())
        .properties(HashMap::from([(PROP_GRID_TYPE.to_string(), "h3".to_string())]))
        .build();
    catalog.sql().create_table(&ns, creation).await.unwrap();

    let table = catalog.open_table(&TableSettings::h3(1)).await.unwrap();
    let schema = table.metadata().current_schema();
    assert_eq!(schema.field_by_name("extra_properties").unwrap().id, 29);
    assert_eq!(schema.field_by_name("extra_fields").unwrap().id, 30);
    assert_eq!(schema.field_by_name("geometry_bbox").unwrap().id, 31);
    assert_eq!(schema.field_by_name("geometry_bbox.ymax").unwrap().id, 35);
    assert_eq!(
        table.metadata().properties().get(NAME_MAPPING_KEY),
        Some(&name_mapping_json(schema))
    );
    assert_eq!(
        table.metadata().properties().get(PROP_GRID_RESOLUTION).map(String::as_str),
        Some("1")
    );
    // Opening again changes nothing more.
    let again = catalog.open_table(&TableSettings::h3(1)).await.unwrap();
    assert_eq!(again.metadata_location(), table.metadata_location());
}

/// The two tables PyIceberg 0.11 created ("v0": no `iceberg_type`).
async fn create_v0_catalog(db: &std::path::Path, metadata_location: Option<&str>) {
    let url = format!("sqlite://{}?mode=rwc", db.display());
    let mut conn = SqliteConnection::connect(&url).await.unwrap();
    sqlx::query(
        "CREATE TABLE iceberg_tables (catalog_name VARCHAR(255) NOT NULL, table_namespace VARCHAR(255) NOT NULL, \
         table_name VARCHAR(255) NOT NULL, metadata_location VARCHAR(1000), previous_metadata_location VARCHAR(1000), \
         PRIMARY KEY (catalog_name, table_namespace, table_name))",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query(
        "CREATE TABLE iceberg_namespace_properties (catalog_name VARCHAR(255) NOT NULL, namespace VARCHAR(255) NOT NULL, \
         property_key VARCHAR(255) NOT NULL, property_value VARCHAR(1000) NOT NULL, \
         PRIMARY KEY (catalog_name, namespace, property_key))",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query("INSERT INTO iceberg_namespace_properties VALUES ('earthcatalog','earthcatalog','exists','true')")
        .execute(&mut conn)
        .await
        .unwrap();
    if let Some(loc) = metadata_location {
        sqlx::query(
            "INSERT INTO iceberg_tables VALUES ('earthcatalog','earthcatalog','stac_items',?,NULL)",
        )
        .bind(loc)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    conn.close().await.unwrap();
}

#[tokio::test]
async fn a_v0_catalog_is_migrated_in_place_and_its_table_loads_and_takes_appends() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = local(&tmp.path().join("warehouse"));
    let stores = stores();
    // A table's metadata, made by us in a scratch catalog, then pointed to by a v0 catalog.
    let scratch = Catalog::open(&tmp.path().join("scratch.db"), &wh, stores.clone()).await.unwrap();
    let made = scratch.open_table(&TableSettings::h3(1)).await.unwrap();
    let metadata_location = made.metadata_location().unwrap().to_string();
    let db = tmp.path().join("old.db");
    create_v0_catalog(&db, Some(&metadata_location)).await;

    let catalog = Catalog::open(&db, &wh, stores.clone()).await.unwrap();
    assert_eq!(migrate_catalog(&db).await.unwrap(), Migration::UpToDate);
    let table = catalog.open_table(&TableSettings::h3(1)).await.unwrap();
    assert_eq!(table.metadata_location(), Some(metadata_location.as_str()));
    let data = local(&tmp.path().join("data"));
    let f = write_rows(&stores, &data, "a", &[row("i1", "8a1", "2020-05-01T00:00:00Z")]).await;
    let (table, summary) = catalog.register(&table, &[f]).await.unwrap();
    assert_eq!(summary.records, 1);
    assert_eq!(table.metadata().snapshots().count(), 1);

    let mut conn = SqliteConnection::connect(&format!("sqlite://{}", db.display())).await.unwrap();
    let (ty, prev): (Option<String>, Option<String>) = sqlx::query_as(
        "SELECT iceberg_type, previous_metadata_location FROM iceberg_tables WHERE table_name='stac_items'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(ty, None, "existing rows keep NULL, which both iceberg-rust and PyIceberg accept");
    assert_eq!(prev.as_deref(), Some(metadata_location.as_str()));
}

#[tokio::test]
async fn an_empty_v0_catalog_is_migrated_and_gets_a_new_table() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("old.db");
    create_v0_catalog(&db, None).await;
    assert_eq!(migrate_catalog(&db).await.unwrap(), Migration::AddedIcebergType);
    assert_eq!(migrate_catalog(&db).await.unwrap(), Migration::UpToDate);
    let fresh = tmp.path().join("fresh.db");
    assert_eq!(migrate_catalog(&fresh).await.unwrap(), Migration::NewCatalog);
    let catalog = Catalog::open(&db, &local(&tmp.path().join("wh")), stores()).await.unwrap();
    let table = catalog.open_table(&TableSettings::h3(1)).await.unwrap();
    assert!(table.metadata().snapshots().next().is_none());
}

#[tokio::test]
async fn a_rebuild_replaces_every_file_in_one_commit_keeps_properties_and_history_and_may_change_the_grid()
 {
    let tmp = tempfile::tempdir().unwrap();
    let wh = local(&tmp.path().join("warehouse"));
    let stores = stores();
    let catalog = Catalog::open(&tmp.path().join("catalog.db"), &wh, stores.clone()).await.unwrap();
    let mut settings = TableSettings::h3(1);
    settings.hash_index_path = Some("file:///idx.parquet".into());
    let table = catalog.open_table(&settings).await.unwrap();
    let data = local(&tmp.path().join("data"));
    let f = write_rows(&stores, &data, "a", &[row("i1", "8a1", "2020-05-01T00:00:00Z")]).await;
    let (old, _) = catalog.register(&table, std::slice::from_ref(&f)).await.unwrap();
    // Properties someone set by hand (an operator, PyIceberg) on the old table.
    let tx = iceberg::transaction::Transaction::new(&old);
    let tx =
        tx.update_table_properties().set("owner.team".into(), "glaciers".into()).apply(tx).unwrap();
    let old = tx.commit(catalog.sql()).await.unwrap();
    let old_snapshot = old.metadata().current_snapshot_id().unwrap();

    // The rebuild asks for another resolution: refused by open_table, allowed for a rebuild,
    // and not applied before the commit that replaces the rows.
    let (table, changed) = catalog.open_for_rebuild(&TableSettings::h3(2)).await.unwrap();
    assert_eq!(changed.get(PROP_GRID_RESOLUTION).map(String::as_str), Some("2"));
    assert_eq!(
        table.metadata().properties().get(PROP_GRID_RESOLUTION).map(String::as_str),
        Some("1")
    );
    let g = write_rows(&stores, &data, "b", &[row("i2", "8b2", "2021-05-01T00:00:00Z")]).await;
    let add = catalog.describe_files(&table, std::slice::from_ref(&g)).await.unwrap();
    let replacement = Replacement {
        kind: ReplaceKind::Overwrite,
        remove: [f.uri()].into(),
        add,
        set_properties: changed,
    };
    let (fresh, summary) = catalog.replace(&replacement).await.unwrap();
    assert_eq!((summary.removed_files, summary.added_files), (1, 1));

    let props = fresh.metadata().properties();
    assert_eq!(props.get(PROP_GRID_RESOLUTION).map(String::as_str), Some("2"));
    assert_eq!(props.get(PROP_HASH_INDEX_PATH).map(String::as_str), Some("file:///idx.parquet"));
    assert_eq!(props.get("owner.team").map(String::as_str), Some("glaciers"));
    assert_eq!(fresh.metadata().uuid(), old.metadata().uuid(), "the same table, not a new one");
    let live = earthcatalog_common::catalog::data_files(&fresh).await.unwrap();
    assert_eq!(live.iter().map(|d| d.path.clone()).collect::<Vec<_>>(), vec![g.uri()]);
    let last = earthcatalog_common::catalog::snapshots(&fresh).pop().unwrap();
    assert_eq!(last.operation, "overwrite");
    // The snapshot before the rebuild still reads with its row.
    let scan = fresh.scan().snapshot_id(old_snapshot).select_all().build().unwrap();
    let batches: Vec<_> =
        futures::TryStreamExt::try_collect::<Vec<_>>(scan.to_arrow().await.unwrap()).await.unwrap();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
}
