//! Registering files from the footers the writer returned, without reading them back.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use earthcatalog_common::catalog::{Catalog, TableSettings, data_files};
use earthcatalog_common::fanout::{Groups, fan_out};
use earthcatalog_common::geoparquet::{FileNamer, WriterOptions, WrittenFile, write_partition};
use earthcatalog_common::ids::RunId;
use earthcatalog_common::location::Location;
use earthcatalog_common::partition::{H3Partitioner, Partitioner};
use earthcatalog_common::sample::itslive_item;
use earthcatalog_common::stac::parse_item_value;
use earthcatalog_common::stores::{S3Settings, Stores};
use iceberg::table::Table;
use object_store::ObjectStoreExt;

/// A new H3 resolution-1 table in a local warehouse.
struct Fixture {
    _dir: tempfile::TempDir,
    stores: Arc<Stores>,
    warehouse: Location,
    catalog: Catalog,
    table: Table,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let stores = Arc::new(Stores::new(S3Settings::default()));
    let warehouse = Location::local(dir.path().join("wh")).unwrap();
    let catalog =
        Catalog::open(&dir.path().join("c.db"), &warehouse, stores.clone()).await.unwrap();
    let table = catalog.open_table(&TableSettings::h3(1)).await.unwrap();
    Fixture { _dir: dir, stores, warehouse, catalog, table }
}

/// Writes every group as one data file, as the pipeline does.
async fn write_all(f: &Fixture, groups: Groups) -> Vec<WrittenFile> {
    let namer = FileNamer::new(RunId::new(), "t");
    let mut written = Vec::new();
    for (part, group) in groups.into_sorted() {
        let options = WriterOptions::default();
        written.push(
            write_partition(&f.stores, &f.warehouse, &part, &group, &namer, &options)
                .await
                .unwrap(),
        );
    }
    written
}

#[tokio::test]
async fn written_files_register_with_their_true_size_counts_and_partitions() {
    let f = fixture().await;
    let (stores, catalog, table) = (&f.stores, &f.catalog, &f.table);
    let h3 = H3Partitioner::new(1).unwrap();
    let mut groups = Groups::new();
    for i in 0..60 {
        let p = parse_item_value(&itslive_item(i)).unwrap();
        let cells = h3.cells(&p.geometry).unwrap();
        groups.extend(fan_out(p.row, &cells));
    }
    let rows = groups.row_count();
    let written = write_all(&f, groups).await;
    let (table, summary) = catalog.register_written(table, &written).await.unwrap();
    assert_eq!(summary.files, written.len());
    assert_eq!(summary.records as usize, rows);

    let files = data_files(&table).await.unwrap();
    assert_eq!(files.len(), written.len());
    for w in &written {
        let f = files.iter().find(|f| f.path == w.location.uri()).unwrap();
        let o = stores.resolve(&w.location).unwrap();
        let size = o.store.head(&o.path).await.unwrap().size;
        assert_eq!(f.file_size_in_bytes, size, "{}", f.path);
        assert_eq!(f.record_count as usize, w.rows);
        assert_eq!(f.grid_partition.as_deref(), Some(w.partition.cell.as_str()));
        assert_eq!(f.year, w.partition.year);
    }
    // The general path (any file, e.g. from an earlier run) still refuses a registered path.
    let again = vec![written[0].location.clone()];
    let err = catalog.register(&table, &again).await.unwrap_err();
    assert!(err.to_string().contains(&written[0].location.uri()), "{err}");
}

#[tokio::test]
async fn a_partition_key_longer_than_parquet_statistics_truncation_registers_exactly() {
    // GeoJSON grids key cells by any id field; parquet truncates string statistics to 64 bytes
    // by default, which would leave such a file's partition unknown.
    let f = fixture().await;
    let key = format!("glacier-basin-{}", "0123456789".repeat(10));
    let mut groups = Groups::new();
    for i in 0..3 {
        let p = parse_item_value(&itslive_item(i)).unwrap();
        groups.extend(fan_out(p.row, std::slice::from_ref(&key)));
    }
    let written = write_all(&f, groups).await;
    // Registered from the footer read back, the path any file written earlier takes.
    let locations: Vec<Location> = written.iter().map(|w| w.location.clone()).collect();
    let (table, summary) = f.catalog.register(&f.table, &locations).await.unwrap();
    assert_eq!(summary.records, 3);
    let files = data_files(&table).await.unwrap();
    assert!(!files.is_empty());
    assert!(files.iter().all(|f| f.grid_partition.as_deref() == Some(key.as_str())), "{files:?}");
}
