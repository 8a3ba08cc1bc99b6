//! A 1,000,000-row Parquet inventory is read in full with a peak heap far below its size.
//!
//! This binary counts every heap allocation (`peak_alloc` as the global allocator), so it holds
//! only this test: other tests running at the same time would add to the peak.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod inventory_support;

use peak_alloc::PeakAlloc;

#[global_allocator]
static HEAP: PeakAlloc = PeakAlloc;

/// Named so that `cargo test inventory` selects these tests.
mod inventory_memory {
    use std::sync::Arc;

    use crate::HEAP;
    use arrow_array::{ArrayRef, RecordBatch, StringArray, TimestampMillisecondArray};
    use earthcatalog_common::inventory::{InventoryRecord, OpenOptions, open};
    use earthcatalog_common::location::Location;
    use futures::StreamExt;
    use parquet::arrow::ArrowWriter;
    use parquet::basic::Compression;
    use parquet::file::properties::WriterProperties;

    const ROWS: usize = 1_000_000;
    const ROWS_PER_GROUP: usize = 100_000;
    const SENSORS: [&str; 3] = ["landsatOLI", "sentinel1", "sentinel2"];

    /// An ITS_LIVE-style key of about 150 characters, different for every `i`.
    fn key(i: usize) -> String {
        let tile = format!(
            "{}{:02}{}{:03}",
            if i.is_multiple_of(2) { 'N' } else { 'S' },
            (i / 7) % 90,
            if i.is_multiple_of(3) { 'E' } else { 'W' },
            i % 180
        );
        format!(
            "velocity_image_pair/{}/v02/{tile}/LC08_L1TP_{:06}_20190524_20200828_02_T1_X_LC08_L1TP_232011_20190711_20200827_02_T1_G0120V02_P{:03}.{}",
            SENSORS[i % 3],
            i,
            i % 1000,
            if i.is_multiple_of(4) { "nc" } else { "stac.json" }
        )
    }

    /// Writes the inventory in slices so the writer never holds more than one row group.
    fn write_inventory(path: &std::path::Path) -> usize {
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(ROWS_PER_GROUP))
            .build();
        let file = std::fs::File::create(path).unwrap();
        let mut writer = None;
        let mut key_bytes = 0;
        for start in (0..ROWS).step_by(ROWS_PER_GROUP) {
            let keys: Vec<String> = (start..start + ROWS_PER_GROUP).map(key).collect();
            key_bytes += keys.iter().map(String::len).sum::<usize>();
            let columns: Vec<(&str, ArrayRef)> = vec![
                ("bucket", Arc::new(StringArray::from(vec!["its-live-data"; ROWS_PER_GROUP]))),
                ("key", Arc::new(StringArray::from(keys))),
                (
                    "last_modified_date",
                    Arc::new(TimestampMillisecondArray::from(vec![
                        1_700_000_000_000;
                        ROWS_PER_GROUP
                    ])),
                ),
            ];
            let batch = RecordBatch::try_from_iter(columns).unwrap();
            let writer = writer.get_or_insert_with(|| {
                ArrowWriter::try_new(file.try_clone().unwrap(), batch.schema(), Some(props.clone()))
                    .unwrap()
            });
            writer.write(&batch).unwrap();
        }
        writer.unwrap().close().unwrap();
        key_bytes
    }

    #[tokio::test]
    async fn a_million_row_parquet_inventory_streams_with_a_peak_heap_far_below_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inventory.parquet");
        let key_bytes = write_inventory(&path);
        let file_bytes = std::fs::metadata(&path).unwrap().len();
        let stores = crate::inventory_support::stores();
        let location = Location::local(&path).unwrap();

        let baseline = HEAP.current_usage();
        HEAP.reset_peak_usage();
        let mut rows = 0usize;
        let mut stac = 0usize;
        let mut last_key = String::new();
        let mut stream = open(&stores, &location, &OpenOptions::default());
        while let Some(item) = stream.next().await {
            match item.unwrap() {
                InventoryRecord::Entry(entry) => {
                    rows += 1;
                    stac += usize::from(entry.key.ends_with(".stac.json"));
                    last_key = entry.key;
                }
                InventoryRecord::Malformed(m) => panic!("unexpected malformed row: {m}"),
            }
        }
        let peak = HEAP.peak_usage().saturating_sub(baseline);

        eprintln!(
            "read {rows} rows; key bytes {key_bytes} ({:.1} MiB); file {file_bytes} bytes ({:.1} MiB); \
         peak heap while reading {peak} ({:.1} MiB)",
            key_bytes as f64 / 1048576.0,
            file_bytes as f64 / 1048576.0,
            peak as f64 / 1048576.0
        );
        assert_eq!(rows, ROWS);
        assert_eq!(stac, ROWS - ROWS / 4);
        assert_eq!(last_key, key(ROWS - 1), "rows come in file order");
        assert!(key_bytes > 140 * ROWS, "keys are realistic, about 150 characters");
        assert!(
            peak < key_bytes / 5,
            "peak heap {peak} is not far below the {key_bytes} key bytes"
        );
        assert!(peak < file_bytes as usize, "peak heap {peak} suggests the whole file was loaded");
    }
}
