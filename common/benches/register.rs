//! Registering 2,000 small local GeoParquet-schema files in one snapshot (goal: < 2 s on 2 cores);
//! every sample asserts that the batch became exactly one snapshot. `cargo test --bench register`
//! runs one sample in debug as a check.
//!
//! The files are written once; every sample opens a fresh catalog and table (not timed) and
//! times footer reading, data-file building and the single fast-append commit.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::builder::{StringBuilder, TimestampMicrosecondBuilder};
use arrow_array::{ArrayRef, RecordBatch, new_null_array};
use criterion::{Criterion, criterion_group, criterion_main};
use earthcatalog_common::catalog::{Catalog, TableSettings};
use earthcatalog_common::location::Location;
use earthcatalog_common::schema::{arrow_schema, column_index};
use earthcatalog_common::stores::{S3Settings, Stores};
use parquet::arrow::ArrowWriter;

const FILES: usize = 2_000;
const ROWS_PER_FILE: usize = 20;

/// One small file per (cell, year): 100 cells × 20 years.
fn write_files(dir: &std::path::Path) -> Vec<Location> {
    let schema = arrow_schema();
    (0..FILES)
        .map(|i| {
            let cell = format!("8a1fb4662{:06x}", i % 100);
            let year = 2000 + (i / 100) as i32;
            let base = chrono::NaiveDate::from_ymd_opt(year, 3, 1)
                .unwrap()
                .and_hms_opt(0, 0, 0)
                .unwrap()
                .and_utc()
                .timestamp_micros();
            let mut columns: Vec<ArrayRef> = schema
                .fields()
                .iter()
                .map(|f| new_null_array(f.data_type(), ROWS_PER_FILE))
                .collect();
            let mut ids = StringBuilder::new();
            let mut cells = StringBuilder::new();
            let mut times = TimestampMicrosecondBuilder::new().with_timezone("UTC");
            for r in 0..ROWS_PER_FILE {
                ids.append_value(format!("item-{i}-{r}"));
                cells.append_value(&cell);
                times.append_value(base + r as i64 * 3_600_000_000);
            }
            columns[column_index("id").unwrap()] = Arc::new(ids.finish());
            columns[column_index("grid_partition").unwrap()] = Arc::new(cells.finish());
            columns[column_index("datetime").unwrap()] = Arc::new(times.finish());
            let batch = RecordBatch::try_new(schema.clone(), columns).unwrap();
            let path = dir.join(format!("grid_partition={cell}/year={year}/part_{i:06}.parquet"));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let file = std::fs::File::create(&path).unwrap();
            let mut w = ArrowWriter::try_new(file, schema.clone(), None).unwrap();
            w.write(&batch).unwrap();
            w.close().unwrap();
            Location::local(&path).unwrap()
        })
        .collect()
}

fn register_2000_files(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let files = write_files(&tmp.path().join("warehouse"));
    let wh = Location::local(tmp.path().join("warehouse")).unwrap();
    let mut group = c.benchmark_group("register");
    group.sample_size(10).measurement_time(Duration::from_secs(20));
    group.bench_function("2000_local_files_one_snapshot", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for n in 0..iters {
                let db = tmp.path().join(format!("catalog-{n}-{}.db", uuid::Uuid::new_v4()));
                let stores = Arc::new(Stores::new(S3Settings::default()));
                total += rt.block_on(async {
                    let catalog = Catalog::open(&db, &wh, stores).await.unwrap();
                    let table = catalog.open_table(&TableSettings::h3(10)).await.unwrap();
                    let start = Instant::now();
                    let (table, summary) = catalog.register(&table, &files).await.unwrap();
                    let took = start.elapsed();
                    assert_eq!(summary.files, FILES);
                    // The whole batch is one snapshot, holding every file, in the catalog too.
                    let snapshots: Vec<_> = table.metadata().snapshots().collect();
                    assert_eq!(
                        snapshots.len(),
                        1,
                        "2,000 files made {} snapshots",
                        snapshots.len()
                    );
                    assert_eq!(summary.snapshot_id, Some(snapshots[0].snapshot_id()));
                    let stored = catalog.load_table().await.unwrap().unwrap();
                    assert_eq!(stored.metadata().snapshots().count(), 1);
                    let added =
                        snapshots[0].summary().additional_properties.get("added-data-files");
                    assert_eq!(added.map(String::as_str), Some("2000"));
                    took
                });
            }
            total
        });
    });
    group.finish();
}

criterion_group!(benches, register_2000_files);
criterion_main!(benches);
