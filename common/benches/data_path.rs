//! Data-path micro-benchmarks: parse → H3 fan-out → Arrow batch, GeoParquet writing, and the
//! staging format: one file of all rows (Parquet vs the original's NDJSON), and realistic staged
//! files (one per (chunk, cell, year), 1, 5 or 50 rows) as NDJSON, Parquet Snappy, Parquet zstd 1 and Arrow IPC
//! (plain, lz4, zstd). Numbers go to `docs/benchmarks.md`.
//!
//! Run: `cargo bench -p earthcatalog-common --bench data_path [-- <group>]`.

#![allow(missing_docs)]

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use arrow::ipc::CompressionType;
use arrow::ipc::reader::FileReader;
use arrow::ipc::writer::{FileWriter, IpcWriteOptions};
use arrow_array::RecordBatch;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use earthcatalog_common::fanout::{CellRow, Groups, fan_out};
use earthcatalog_common::geoparquet::{
    FileNamer, WriterOptions, record_batch, write_partition, write_rows,
};
use earthcatalog_common::ids::RunId;
use earthcatalog_common::location::Location;
use earthcatalog_common::partition::{H3Partitioner, Partitioner};
use earthcatalog_common::sample::itslive_item;
use earthcatalog_common::stac::parse_item;
use earthcatalog_common::staging::{read_staged, staging_options, write_staged};
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

/// Rows per staged file in the staged-files comparison. A backfill chunk's rows of one (cell,
/// year) are a handful when items are spread out (the sample: 1-3) and tens when they cluster
/// (real inventories list neighbouring scenes together).
const ROWS_PER_FILE: [usize; 3] = [1, 5, 50];

/// The sample's rows sorted by (cell, year), cut into staged files of `per_file` rows.
fn staged_groups(all: &[CellRow], per_file: usize) -> Vec<Vec<CellRow>> {
    let mut groups = Groups::new();
    groups.extend(all.iter().cloned());
    let sorted: Vec<CellRow> =
        groups.into_sorted().into_iter().flat_map(|(_, rows)| rows).collect();
    sorted.chunks(per_file).map(<[CellRow]>::to_vec).collect()
}

/// A staged-file format: how a file of rows becomes bytes and back into a record batch.
#[derive(Clone, Copy)]
enum Format {
    Ndjson,
    Parquet(&'static str, fn() -> WriterOptions),
    Ipc(&'static str, Option<CompressionType>),
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Ndjson => "ndjson",
            Format::Parquet(name, _) | Format::Ipc(name, _) => name,
        }
    }
}

fn snappy() -> WriterOptions {
    WriterOptions { zstd_min_rows: usize::MAX, ..staging_options() }
}

fn zstd1() -> WriterOptions {
    WriterOptions { zstd_min_rows: 0, zstd_level: 1, ..staging_options() }
}

const FORMATS: [Format; 6] = [
    Format::Ndjson,
    Format::Parquet("parquet_snappy", snappy),
    Format::Parquet("parquet_zstd1", zstd1),
    Format::Ipc("ipc_plain", None),
    Format::Ipc("ipc_lz4", Some(CompressionType::LZ4_FRAME)),
    Format::Ipc("ipc_zstd", Some(CompressionType::ZSTD)),
];

/// The original's staging lines for `rows`: the item JSON with `grid_partition` set.
fn ndjson_of(rows: &[CellRow], sources: &HashMap<String, serde_json::Value>) -> Vec<u8> {
    let mut out = Vec::new();
    for r in rows {
        let mut v = sources.get(r.item.id()).cloned().unwrap_or_default();
        v["properties"]["grid_partition"] = serde_json::Value::String(r.cell.to_string());
        out.extend(serde_json::to_vec(&v).unwrap_or_default());
        out.push(b'\n');
    }
    out
}

fn ndjson_read(bytes: &[u8]) -> RecordBatch {
    let mut rows = Vec::new();
    for line in bytes.split(|c| *c == b'\n').filter(|l| !l.is_empty()) {
        let Ok(p) = parse_item(line) else { continue };
        let cell = serde_json::from_slice::<serde_json::Value>(line)
            .ok()
            .and_then(|v| v["properties"]["grid_partition"].as_str().map(str::to_string))
            .unwrap_or_default();
        rows.extend(fan_out(p.row, &[cell]));
    }
    record_batch(&rows).unwrap_or_else(|e| panic!("{e}"))
}

fn ipc_write(rows: &[CellRow], codec: Option<CompressionType>) -> Vec<u8> {
    let batch = record_batch(rows).unwrap_or_else(|e| panic!("{e}"));
    let options =
        IpcWriteOptions::default().try_with_compression(codec).unwrap_or_else(|e| panic!("{e}"));
    let mut out = Vec::new();
    let mut w = FileWriter::try_new_with_options(&mut out, &batch.schema(), options)
        .unwrap_or_else(|e| panic!("{e}"));
    w.write(&batch).unwrap_or_else(|e| panic!("{e}"));
    w.finish().unwrap_or_else(|e| panic!("{e}"));
    drop(w);
    out
}

fn ipc_read(bytes: bytes::Bytes) -> Vec<RecordBatch> {
    let reader =
        FileReader::try_new(std::io::Cursor::new(bytes), None).unwrap_or_else(|e| panic!("{e}"));
    reader.collect::<Result<_, _>>().unwrap_or_else(|e| panic!("{e}"))
}

/// Writes every staged file in `format` to the memory store under `prefix`; returns the bytes.
async fn write_all(
    stores: &Stores,
    prefix: &Location,
    files: &[Vec<CellRow>],
    format: Format,
    sources: &HashMap<String, serde_json::Value>,
) -> u64 {
    let mut total = 0;
    for (i, rows) in files.iter().enumerate() {
        let loc = prefix.join(&format!("{i:05}"));
        let o = stores.resolve(&loc).unwrap_or_else(|e| panic!("{e}"));
        let bytes = match format {
            Format::Ndjson => ndjson_of(rows, sources),
            Format::Ipc(_, codec) => ipc_write(rows, codec),
            Format::Parquet(_, options) => {
                let (_, size) = write_rows(stores, &loc, rows, &options())
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                total += size;
                continue;
            }
        };
        total += bytes.len() as u64;
        o.store.put(&o.path, bytes.into()).await.unwrap_or_else(|e| panic!("{e}"));
    }
    total
}

/// Reads every staged file back as record batches; returns the rows read.
async fn read_all(stores: &Stores, prefix: &Location, files: usize, format: Format) -> usize {
    let mut rows = 0;
    for i in 0..files {
        let loc = prefix.join(&format!("{i:05}"));
        let batches = match format {
            Format::Parquet(..) => {
                read_staged(stores, &loc).await.unwrap_or_else(|e| panic!("{e}"))
            }
            Format::Ndjson | Format::Ipc(..) => {
                let o = stores.resolve(&loc).unwrap_or_else(|e| panic!("{e}"));
                let get = o.store.get(&o.path).await.unwrap_or_else(|e| panic!("{e}"));
                let bytes = get.bytes().await.unwrap_or_else(|e| panic!("{e}"));
                match format {
                    Format::Ndjson => vec![ndjson_read(&bytes)],
                    _ => ipc_read(bytes),
                }
            }
        };
        rows += batches.iter().map(RecordBatch::num_rows).sum::<usize>();
    }
    rows
}

/// The staging formats on realistic staged files: many files of 1, 5 and 50 rows.
fn staged_files(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    let items = item_bytes();
    let h3 = H3Partitioner::new(1).unwrap_or_else(|e| panic!("{e}"));
    let all = rows(&items, &h3);
    let sources: HashMap<String, serde_json::Value> = items
        .iter()
        .filter_map(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
        .map(|v| (v["id"].as_str().unwrap_or_default().to_string(), v))
        .collect();
    let stores = Stores::new(S3Settings::default());
    let mut g = c.benchmark_group("staged_files");
    g.throughput(Throughput::Elements(all.len() as u64));
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    for per_file in ROWS_PER_FILE {
        let files = staged_groups(&all, per_file);
        for format in FORMATS {
            let name = format!("{}/{per_file}", format.name());
            let prefix = Location::parse(&format!("memory://bench/staged/{name}"))
                .unwrap_or_else(|e| panic!("{e}"));
            let bytes = rt.block_on(write_all(&stores, &prefix, &files, format, &sources));
            let read = rt.block_on(read_all(&stores, &prefix, files.len(), format));
            assert_eq!(read, all.len(), "{name}");
            eprintln!(
                "staged size {name} rows/file: {} files, {bytes} bytes ({:.0} bytes/row)",
                files.len(),
                bytes as f64 / all.len() as f64
            );
            g.bench_function(BenchmarkId::new("write", &name), |b| {
                b.iter(|| rt.block_on(write_all(&stores, &prefix, &files, format, &sources)))
            });
            g.bench_function(BenchmarkId::new("read", &name), |b| {
                b.iter(|| rt.block_on(read_all(&stores, &prefix, files.len(), format)))
            });
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(5));
    targets = parse_fanout_batch, geoparquet_write, staging_format, staged_files
}
criterion_main!(benches);
