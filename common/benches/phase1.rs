//! Phase 1 of the backfill on a large Parquet inventory: streaming the inventory into chunk
//! files (goal: 10 million rows in under a minute, with memory that does not grow with the
//! inventory).
//!
//! `cargo bench -p earthcatalog-common --bench phase1` (ROWS=10000000 by default, CHUNK=100000,
//! RUNS=3). The inventory is generated once, AWS-style (bucket, key, size, last_modified_date
//! as a timestamp, e_tag, storage_class; ITS_LIVE-like keys, 5 % not `.stac.json`, row groups
//! of 1 M rows written by one Parquet writer), under `target/bench-data/`, then reused. Each
//! run writes chunks to a fresh local staging folder. Peak RSS is the process's high-water
//! mark, reset before each run through `/proc/self/clear_refs`.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow_array::builder::{Int64Builder, StringBuilder, TimestampMillisecondBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use earthcatalog_common::backfill::StagingLayout;
use earthcatalog_common::backfill::chunks::{ChunkOptions, ChunkSettings, write_chunks};
use earthcatalog_common::ids::RunId;
use earthcatalog_common::location::Location;
use earthcatalog_common::stores::{S3Settings, Stores};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

const BATCH: usize = 100_000;
const ROW_GROUP: usize = 1_000_000;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("bucket", DataType::Utf8, false),
        Field::new("key", DataType::Utf8, false),
        Field::new("size", DataType::Int64, true),
        Field::new(
            "last_modified_date",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            true,
        ),
        Field::new("e_tag", DataType::Utf8, true),
        Field::new("storage_class", DataType::Utf8, true),
    ]))
}

/// Rows `start..start + n` of the synthetic inventory.
fn batch(start: u64, n: usize) -> RecordBatch {
    let mut buckets = StringBuilder::new();
    let mut keys = StringBuilder::new();
    let mut sizes = Int64Builder::new();
    let mut modified = TimestampMillisecondBuilder::new().with_timezone("UTC");
    let mut etags = StringBuilder::new();
    let mut classes = StringBuilder::new();
    // 2020-01-01T00:00:00Z, then one row every 3 seconds.
    let epoch_ms = 1_577_836_800_000i64;
    for i in start..start + n as u64 {
        let tile = format!("N{:02}W{:03}", 60 + i % 20, 40 + (i / 20) % 100);
        let scene = format!(
            "LC08_L1TP_{:03}{:03}_2020{:04}_X_LC08_L1TP_{:03}{:03}_2020{:04}_G0120V02_P{:03}",
            i % 233,
            (i / 233) % 248,
            i % 10_000,
            i % 233,
            (i / 233) % 248,
            (i + 16) % 10_000,
            i % 100
        );
        // One key in twenty is the pair's NetCDF, which Phase 1 must skip.
        let suffix = if i % 20 == 19 { ".nc" } else { ".stac.json" };
        buckets.append_value("its-live-data");
        keys.append_value(format!("velocity_image_pair/landsatOLI/v02/{tile}/{scene}-{i}{suffix}"));
        sizes.append_value(4_000 + (i % 1_000) as i64);
        modified.append_value(epoch_ms + i as i64 * 3_000);
        etags.append_value(format!("{:032x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
        classes.append_value("STANDARD");
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(buckets.finish()),
        Arc::new(keys.finish()),
        Arc::new(sizes.finish()),
        Arc::new(modified.finish()),
        Arc::new(etags.finish()),
        Arc::new(classes.finish()),
    ];
    RecordBatch::try_new(schema(), columns).unwrap()
}

/// Writes the inventory unless a complete one is already there.
fn ensure_inventory(path: &Path, rows: u64) {
    if path.exists() {
        return;
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let partial = path.with_extension("partial");
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(ROW_GROUP))
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).unwrap()))
        .build();
    let file = std::fs::File::create(&partial).unwrap();
    let mut writer = ArrowWriter::try_new(file, schema(), Some(props)).unwrap();
    let start = Instant::now();
    let mut written = 0u64;
    while written < rows {
        let n = BATCH.min((rows - written) as usize);
        writer.write(&batch(written, n)).unwrap();
        written += n as u64;
    }
    writer.close().unwrap();
    std::fs::rename(&partial, path).unwrap();
    let mb = std::fs::metadata(path).unwrap().len() as f64 / 1e6;
    println!(
        "generated {rows} inventory rows ({mb:.0} MB) in {:.1} s",
        start.elapsed().as_secs_f64()
    );
}

/// The process's peak resident set, in MB.
fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kb / 1e3
}

fn current_rss_mb() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0.0);
    pages * 4096.0 / 1e6
}

fn reset_peak_rss() {
    // "5" resets the high-water mark to the current RSS (Linux ≥ 4.0).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn data_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("bench-data")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

fn main() {
    let rows = env_or("ROWS", 10_000_000);
    let chunk = env_or("CHUNK", 100_000) as usize;
    let runs = env_or("RUNS", 3);
    let inventory = data_dir().join(format!("inventory-{rows}.parquet"));
    ensure_inventory(&inventory, rows);
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let stores = Arc::new(Stores::new(S3Settings::default()));
    let (mut secs, mut peaks) = (Vec::new(), Vec::new());
    for run in 1..=runs {
        let staging = tempfile::tempdir().unwrap();
        let layout = StagingLayout::new(
            &Location::parse(&staging.path().to_string_lossy()).unwrap(),
            RunId::new(),
        );
        let settings = ChunkSettings {
            inventory: Location::parse(&inventory.to_string_lossy()).unwrap(),
            since: None,
            limit: None,
            chunk_size: chunk,
        };
        let before = current_rss_mb();
        reset_peak_rss();
        let start = Instant::now();
        let plan = runtime
            .block_on(write_chunks(&stores, &layout, &settings, &ChunkOptions::default()))
            .unwrap();
        let elapsed = start.elapsed().as_secs_f64();
        let peak = peak_rss_mb();
        let keys: u64 = plan.chunks.iter().map(|c| c.rows).sum();
        println!(
            "run {run}: {rows} rows → {keys} keys in {} chunks of ≤ {chunk} in {elapsed:.1} s \
             ({:.0} rows/s), peak RSS {peak:.0} MB (RSS before the run {before:.0} MB)",
            plan.chunks.len(),
            rows as f64 / elapsed
        );
        secs.push(elapsed);
        peaks.push(peak);
    }
    println!(
        "Phase 1, {rows} Parquet inventory rows, chunk size {chunk}: median {:.1} s, median peak RSS {:.0} MB",
        median(secs),
        median(peaks)
    );
}
