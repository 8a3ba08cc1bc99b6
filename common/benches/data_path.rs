//! Data-path micro-benchmarks: parse → H3 fan-out → Arrow batch, GeoParquet writing, and the
//! staging format (Parquet vs the original's NDJSON). Numbers go to `docs/benchmarks.md`.
//!
//! Run: `cargo bench -p earthcatalog-common --bench data_path`.

#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use earthcatalog_common::fanout::{CellRow, Groups, fan_out};
use earthcatalog_common::geoparquet::{FileNamer, WriterOptions, record_batch, write_partition};
use earthcatalog_common::ids::RunId;
use earthcatalog_common::location::Location;
use earthcatalog_common::partition::{H3Partitioner, Partitioner};
use earthcatalog_common::sample::itslive_item;
use earthcatalog_common::stac::parse_item;
use earthcatalog_common::staging::{read_staged, write_staged};
use earthcatalog_common::stores::{S3Settings, Stores};
use object_store::ObjectStoreExt;

const ITEMS: u64 = 2_000;

fn item_bytes() -> Vec<Vec<u8>> {
    (0..ITEMS).map(|i| serde_json::to_vec(&itslive_item(i)).unwrap_or_default()).collect()
}

fn rows(items: &[Vec<u8>], h3: &H3Partitioner) -> Vec<CellRow> {
    let mut out = Vec::new();
    for bytes in items {
        if let Ok(p) = parse_item(bytes) {
            let cells = h3.cells(&p.geometry).unwrap_or_default();
            out.extend(fan_out(p.row, &cells));
        }
    }
    out
}

fn parse_fanout_batch(c: &mut Criterion) {
    let items = item_bytes();
    let h3 = H3Partitioner::new(1).unwrap_or_else(|e| panic!("{e}"));
    let mut g = c.benchmark_group("parse_fanout_batch");
    g.throughput(Throughput::Elements(ITEMS));
    g.bench_function("itslive_res1", |b| {
        b.iter(|| {
            let mut groups = Groups::new();
            for bytes in &items {
                let p = parse_item(bytes).unwrap_or_else(|e| panic!("{e}"));
                let cells = h3.cells(&p.geometry).unwrap_or_default();
                groups.extend(fan_out(p.row, &cells));
            }
            for (_, rows) in groups.into_sorted() {
                black_box(record_batch(&rows).unwrap_or_else(|e| panic!("{e}")));
            }
        })
    });
    g.bench_function("parse_only", |b| {
        b.iter(|| {
            for bytes in &items {
                black_box(parse_item(bytes).ok());
            }
        })
    });
    let parsed: Vec<_> = items.iter().filter_map(|b| parse_item(b).ok()).collect();
    g.bench_function("h3_cover_only", |b| {
        b.iter(|| {
            for p in &parsed {
                black_box(h3.cells(&p.geometry).ok());
            }
        })
    });
    g.finish();
}

fn geoparquet_write(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    let items = item_bytes();
    let h3 = H3Partitioner::new(1).unwrap_or_else(|e| panic!("{e}"));
    let all = rows(&items, &h3);
    let stores = Stores::new(S3Settings::default());
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut g = c.benchmark_group("geoparquet_write");
    g.throughput(Throughput::Elements(all.len() as u64));
    for (name, root) in [
        ("memory", Location::parse("memory://bench/wh").unwrap_or_else(|e| panic!("{e}"))),
        ("local", Location::local(dir.path()).unwrap_or_else(|e| panic!("{e}"))),
    ] {
        g.bench_with_input(BenchmarkId::new("rows", name), &root, |b, root| {
            let namer = FileNamer::new(RunId::new(), "bench");
            b.iter(|| {
                let mut groups = Groups::new();
                groups.extend(all.iter().cloned());
                rt.block_on(async {
                    for (part, rows) in groups.into_sorted() {
                        write_partition(
                            &stores,
                            root,
                            &part,
                            &rows,
                            &namer,
                            &WriterOptions::default(),
                        )
                        .await
                        .unwrap_or_else(|e| panic!("{e}"));
                    }
                })
            })
        });
    }
    g.finish();
}

/// Items with their cells, computed once so both formats time only encoding and decoding.
fn items_with_cells(
    items: &[Vec<u8>],
    h3: &H3Partitioner,
) -> Vec<(serde_json::Value, Vec<String>)> {
    items
        .iter()
        .filter_map(|bytes| {
            let v = serde_json::from_slice::<serde_json::Value>(bytes).ok()?;
            let p = parse_item(bytes).ok()?;
            Some((v, h3.cells(&p.geometry).ok()?))
        })
        .collect()
}

/// The original's staging lines: one item JSON per (item, cell) with `grid_partition` set.
fn ndjson(items: &[(serde_json::Value, Vec<String>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (item, cells) in items {
        let mut v = item.clone();
        for cell in cells {
            v["properties"]["grid_partition"] = serde_json::Value::String(cell.clone());
            out.extend(serde_json::to_vec(&v).unwrap_or_default());
            out.push(b'\n');
        }
    }
    out
}

fn staging_format(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    let items = item_bytes();
    let h3 = H3Partitioner::new(1).unwrap_or_else(|e| panic!("{e}"));
    let all = rows(&items, &h3);
    let stores = Stores::new(S3Settings::default());
    let loc = Location::parse("memory://bench/staged.parquet").unwrap_or_else(|e| panic!("{e}"));
    let with_cells = items_with_cells(&items, &h3);
    let lines = ndjson(&with_cells);
    rt.block_on(write_staged(&stores, &loc, &all)).unwrap_or_else(|e| panic!("{e}"));
    let parquet_size = rt.block_on(async {
        let o = stores.resolve(&loc).unwrap_or_else(|e| panic!("{e}"));
        o.store.head(&o.path).await.map(|m| m.size).unwrap_or(0)
    });
    eprintln!(
        "staging size for {} rows: ndjson {} bytes, parquet {} bytes ({:.1}x smaller)",
        all.len(),
        lines.len(),
        parquet_size,
        lines.len() as f64 / parquet_size.max(1) as f64
    );
    let mut g = c.benchmark_group("staging");
    g.throughput(Throughput::Elements(all.len() as u64));
    g.bench_function("parquet_write", |b| {
        b.iter(|| rt.block_on(write_staged(&stores, &loc, &all)).unwrap_or_else(|e| panic!("{e}")))
    });
    g.bench_function("parquet_read", |b| {
        b.iter(|| {
            black_box(rt.block_on(read_staged(&stores, &loc)).unwrap_or_else(|e| panic!("{e}")))
        })
    });
    g.bench_function("ndjson_write", |b| b.iter(|| black_box(ndjson(&with_cells))));
    g.bench_function("ndjson_read", |b| {
        b.iter(|| {
            let mut rows = Vec::new();
            for line in lines.split(|c| *c == b'\n').filter(|l| !l.is_empty()) {
                let Ok(p) = parse_item(line) else { continue };
                let cell = serde_json::from_slice::<serde_json::Value>(line)
                    .ok()
                    .and_then(|v| v["properties"]["grid_partition"].as_str().map(str::to_string))
                    .unwrap_or_default();
                rows.extend(fan_out(p.row, &[cell]));
            }
            black_box(record_batch(&rows).ok())
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(5));
    targets = parse_fanout_batch, geoparquet_write, staging_format
}
criterion_main!(benches);
