//! Phase 3: staged rows of one (cell, year) become sorted, deduplicated data files.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod backfill_support;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float64Type, Int64Type, TimestampMicrosecondType};
use arrow_array::RecordBatch;
use backfill_support::{csv_inventory, data_path, put_items, stores};
use earthcatalog_common::backfill::{
    ChunkOptions, ChunkSettings, CompactError, StagingLayout, compact_partition, ingest_chunk,
    write_chunks,
};
use earthcatalog_common::fanout::{CellRow, fan_out};
use earthcatalog_common::geoparquet::{FileNamer, GEO_KEY, WriterOptions};
use earthcatalog_common::ids::{CellYear, RunId};
use earthcatalog_common::location::Location;
use earthcatalog_common::partition::{H3Partitioner, Partitioner};
use earthcatalog_common::sample::itslive_item;
use earthcatalog_common::stac::datetime::utc_year;
use earthcatalog_common::stac::parse_item_value;
use earthcatalog_common::staging::{read_staged, write_staged};
use earthcatalog_common::stores::Stores;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::{BTreeMap, HashMap};

const CELL: &str = "8106fffffffffff";
const RUN: &str = "20260101T000000Z-000004";

/// Sample item `i` dated in 2019, with the given `updated` and percent_valid_pixels.
fn item(i: u64, updated: &str, pvp: i64) -> serde_json::Value {
    let mut v = itslive_item(i);
    let p = &mut v["properties"];
    p["datetime"] =
        format!("2019-{:02}-{:02}T12:00:00Z", 1 + (i * 5) % 12, 1 + (i * 7) % 28).into();
    p["updated"] = updated.into();
    p["percent_valid_pixels"] = pvp.into();
    if i == 3 {
        p.as_object_mut().unwrap().remove("platform");
    }
    v
}

fn rows(items: &[serde_json::Value]) -> Vec<CellRow> {
    items.iter().flat_map(|v| fan_out(parse_item_value(v).unwrap().row, &[CELL.into()])).collect()
}

async fn stage(stores: &Stores, name: &str, items: &[serde_json::Value]) -> Location {
    let at = Location::parse(&format!("memory://staging/{name}/{CELL}/2019.parquet")).unwrap();
    write_staged(stores, &at, &rows(items)).await.unwrap();
    at
}

/// Reads a local data file: its rows and its `geo` metadata.
fn read_local(location: &Location) -> (RecordBatch, serde_json::Value) {
    let file = std::fs::File::open(location.as_local_path().unwrap()).unwrap();
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let geo = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|e| e.key == GEO_KEY).and_then(|e| e.value.clone()))
        .unwrap();
    let schema = builder.schema().clone();
    let batches: Vec<RecordBatch> = builder.build().unwrap().map(Result::unwrap).collect();
    (
        arrow::compute::concat_batches(&schema, &batches).unwrap(),
        serde_json::from_str(&geo).unwrap(),
    )
}

fn strings(b: &RecordBatch, name: &str) -> Vec<Option<String>> {
    b.column_by_name(name)
        .unwrap()
        .as_string::<i32>()
        .iter()
        .map(|s| s.map(str::to_string))
        .collect()
}

fn micros(b: &RecordBatch, name: &str) -> Vec<Option<i64>> {
    b.column_by_name(name).unwrap().as_primitive::<TimestampMicrosecondType>().iter().collect()
}

fn micros_of(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp_micros()
}

#[tokio::test]
async fn duplicates_keep_the_newest_row_and_files_are_cut_sorted_and_single_partition() {
    let stores = stores();
    let (old, mid, new) = ("2019-01-01T00:00:00Z", "2020-01-01T00:00:00Z", "2021-01-01T00:00:00Z");
    let mut a: Vec<_> = (0..30).map(|i| item(i, mid, 1)).collect();
    a.push(item(40, "2020-06-01T00:00:00Z", 1));
    let mut b: Vec<_> = (20..25).map(|i| item(i, new, 2)).collect();
    b.extend((25..30).map(|i| item(i, old, 2)));
    b.extend((30..40).map(|i| item(i, mid, 2)));
    // Same `updated` as in the first file: the later staged file wins the tie.
    b.push(item(40, "2020-06-01T00:00:00Z", 99));
    let staged = [stage(&stores, "chunk0", &a).await, stage(&stores, "chunk1", &b).await];
    let dir = tempfile::tempdir().unwrap();
    let warehouse = Location::local(dir.path()).unwrap();
    let partition = CellYear::new(CELL, Some(2019));
    let namer = FileNamer::new(RunId::from_string(RUN), "c7");

    let out = compact_partition(
        &stores,
        &partition,
        &staged,
        &warehouse,
        &namer,
        15,
        &WriterOptions::default(),
    )
    .await
    .unwrap();

    assert_eq!((out.input_rows, out.duplicates_dropped, out.output_rows()), (52, 11, 41));
    assert_eq!(out.files.iter().map(|f| f.rows).collect::<Vec<_>>(), [15, 15, 11]);
    let folder = warehouse.join(&partition.hive_dir());
    let mut all_ids = Vec::new();
    let mut keys = Vec::new();
    let mut updated = HashMap::new();
    let mut pvp = HashMap::new();
    for (n, f) in out.files.iter().enumerate() {
        assert_eq!(f.location, folder.join(&format!("{RUN}_c7_{n:06}.parquet")));
        assert_eq!(f.partition, partition);
        let (batch, geo) = read_local(&f.location);
        assert_eq!(batch.num_rows(), f.rows);
        assert!(strings(&batch, "grid_partition").iter().all(|c| c.as_deref() == Some(CELL)));
        let times = micros(&batch, "datetime");
        assert!(times.iter().all(|t| t.and_then(utc_year) == Some(2019)));
        let ids = strings(&batch, "id");
        let platforms = strings(&batch, "platform");
        for (row, id) in ids.iter().enumerate() {
            let id = id.clone().unwrap();
            keys.push((platforms[row].clone().unwrap_or_default(), times[row]));
            updated.insert(id.clone(), micros(&batch, "updated")[row]);
            pvp.insert(
                id.clone(),
                batch
                    .column_by_name("percent_valid_pixels")
                    .unwrap()
                    .as_primitive::<Int64Type>()
                    .value(row),
            );
            all_ids.push(id);
        }
        // The file's geo bbox covers every row's geometry bbox.
        let bbox: Vec<f64> =
            serde_json::from_value(geo["columns"]["geometry"]["bbox"].clone()).unwrap();
        let cover = batch.column_by_name("geometry_bbox").unwrap().as_struct();
        let part = |k: usize| cover.column(k).as_primitive::<Float64Type>().clone();
        let (x0, y0, x1, y1) = (part(0), part(1), part(2), part(3));
        for row in 0..batch.num_rows() {
            assert!(cover.is_valid(row));
            assert!(bbox[0] <= x0.value(row) && bbox[1] <= y0.value(row), "{bbox:?}");
            assert!(x1.value(row) <= bbox[2] && y1.value(row) <= bbox[3], "{bbox:?}");
        }
    }
    // Sorted by (platform, datetime) across the files, the item without a platform first.
    assert!(keys.windows(2).all(|w| w[0] <= w[1]), "{keys:?}");
    assert_eq!(keys[0].0, "");
    let id_of = |i: u64| parse_item_value(&itslive_item(i)).unwrap().row.id().to_string();
    let mut sorted_ids = all_ids.clone();
    sorted_ids.sort();
    sorted_ids.dedup();
    assert_eq!(sorted_ids.len(), 41, "every id exactly once");
    for i in 0..41 {
        let want = match i {
            20..25 => new,
            40 => "2020-06-01T00:00:00Z",
            _ => mid,
        };
        assert_eq!(updated[&id_of(i)], Some(micros_of(want)), "item {i}");
    }
    assert_eq!(pvp[&id_of(40)], 99, "a tie goes to the later staged file");
    assert_eq!(pvp[&id_of(25)], 1, "an older duplicate in a later file loses");
    assert_eq!(pvp[&id_of(22)], 2);
}

#[tokio::test]
async fn a_staged_file_of_another_year_is_refused_and_nothing_is_written() {
    let stores = stores();
    let good = stage(&stores, "chunk0", &[item(1, "2020-01-01T00:00:00Z", 1)]).await;
    let mut stray = item(2, "2020-01-01T00:00:00Z", 1);
    stray["properties"]["datetime"] = "2018-03-01T00:00:00Z".into();
    let bad = stage(&stores, "chunk1", &[item(3, "2020-01-01T00:00:00Z", 1), stray]).await;
    let dir = tempfile::tempdir().unwrap();
    let warehouse = Location::local(dir.path()).unwrap();

    let err = compact_partition(
        &stores,
        &CellYear::new(CELL, Some(2019)),
        &[good, bad.clone()],
        &warehouse,
        &FileNamer::new(RunId::from_string(RUN), "c8"),
        100,
        &WriterOptions::default(),
    )
    .await
    .unwrap_err();

    assert!(matches!(err, CompactError::WrongPartition { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "staged file {bad} row 1 belongs to grid_partition={CELL}/year=2018, not grid_partition={CELL}/year=2019"
        )
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn an_item_listed_twice_in_the_inventory_is_written_once_per_cell_after_all_three_phases() {
    let stores = stores();
    let mut keys = put_items(&stores, 0..30).await;
    keys.extend(keys[20..30].to_vec());
    let inventory = Location::parse("memory://inv/inventory.csv").unwrap();
    csv_inventory(&stores, &inventory, &keys).await;
    let staging_dir = tempfile::tempdir().unwrap();
    let layout =
        StagingLayout::new(&Location::local(staging_dir.path()).unwrap(), RunId::from_string(RUN));
    let settings = ChunkSettings { inventory, since: None, limit: None, chunk_size: 15 };
    let plan = write_chunks(&stores, &layout, &settings, &ChunkOptions::default()).await.unwrap();
    assert_eq!(plan.chunks.iter().map(|c| c.rows).collect::<Vec<_>>(), [15, 15, 10]);
    let path = data_path(&stores);
    let mut by_partition: BTreeMap<CellYear, Vec<Location>> = BTreeMap::new();
    let mut staged_rows = 0;
    for c in &plan.chunks {
        let out = ingest_chunk(&path, &c.location, &layout.ingest_attempt(c.id, 100 + c.id))
            .await
            .unwrap();
        assert_eq!(out.failed_items, 0);
        staged_rows += out.rows();
        for s in out.staged {
            by_partition.entry(s.partition).or_default().push(s.location);
        }
    }
    let warehouse = Location::parse("memory://warehouse/wh").unwrap();

    let mut written = 0;
    let mut dropped = 0;
    let mut ids_per_cell: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (token, (partition, staged)) in by_partition.iter().enumerate() {
        let namer = layout.compact_namer(token as u64);
        let out = compact_partition(
            &stores,
            partition,
            staged,
            &warehouse,
            &namer,
            1000,
            &WriterOptions::default(),
        )
        .await
        .unwrap();
        written += out.output_rows();
        dropped += out.duplicates_dropped;
        for f in &out.files {
            assert!(
                f.location
                    .to_string()
                    .starts_with(&format!("{}/", warehouse.join(&partition.hive_dir())))
            );
            for b in read_staged(&stores, &f.location).await.unwrap() {
                let times = micros(&b, "datetime");
                assert!(times.iter().all(|t| t.and_then(utc_year) == partition.year));
                assert!(
                    strings(&b, "grid_partition")
                        .iter()
                        .all(|c| c.as_deref() == Some(partition.cell.as_str()))
                );
                ids_per_cell
                    .entry(partition.cell.clone())
                    .or_default()
                    .extend(strings(&b, "id").into_iter().flatten());
            }
        }
    }

    assert_eq!(written + dropped, staged_rows);
    let single: usize = {
        let mut again = 0;
        for ids in ids_per_cell.values() {
            let mut unique = ids.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), ids.len(), "each (item, cell) exactly once");
            again += ids.len();
        }
        again
    };
    assert_eq!(single as u64, written);
    let h3 = H3Partitioner::new(1).unwrap();
    let cells_of = |i: u64| {
        h3.cells(&parse_item_value(&itslive_item(i)).unwrap().geometry).unwrap().len() as u64
    };
    assert_eq!(written, (0..30).map(cells_of).sum::<u64>());
    assert_eq!(dropped, (20..30).map(cells_of).sum::<u64>(), "the ten keys listed twice");
}

#[tokio::test]
async fn one_id_in_two_collections_is_two_items_and_both_are_written() {
    let stores = stores();
    let first = item(7, "2021-01-01T00:00:00Z", 1);
    let mut other = item(7, "2020-01-01T00:00:00Z", 2);
    other["collection"] = "itslive-granules-v3".into();
    // A true copy of the first (same collection, older) is still dropped.
    let older_copy = item(7, "2019-06-01T00:00:00Z", 3);
    let staged = [
        stage(&stores, "chunk0", std::slice::from_ref(&first)).await,
        stage(&stores, "chunk1", &[other, older_copy]).await,
    ];
    let dir = tempfile::tempdir().unwrap();
    let warehouse = Location::local(dir.path()).unwrap();
    let partition = CellYear::new(CELL, Some(2019));
    let namer = FileNamer::new(RunId::from_string(RUN), "c8");
    let out = compact_partition(
        &stores,
        &partition,
        &staged,
        &warehouse,
        &namer,
        100,
        &WriterOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!((out.input_rows, out.duplicates_dropped, out.output_rows()), (3, 1, 2));
    let (batch, _) = read_local(&out.files[0].location);
    let mut items: Vec<(Option<String>, Option<String>)> =
        strings(&batch, "collection").into_iter().zip(strings(&batch, "id")).collect();
    items.sort();
    let id = first["id"].as_str().map(str::to_string);
    assert_eq!(
        items,
        [
            (Some("itslive-granules".to_string()), id.clone()),
            (Some("itslive-granules-v3".to_string()), id)
        ]
    );
    let pvp = batch.column_by_name("percent_valid_pixels").unwrap().as_primitive::<Int64Type>();
    let mut kept: Vec<i64> = pvp.values().to_vec();
    kept.sort();
    assert_eq!(kept, [1, 2], "the newest copy in the first collection, and the other item");
}

/// Rows of items without `updated`, their objects last modified at `modified` (microseconds).
fn unversioned_rows(ids: std::ops::Range<u64>, modified: i64, pvp: i64) -> Vec<CellRow> {
    ids.flat_map(|i| {
        let mut v = item(i, "", pvp);
        v["properties"].as_object_mut().unwrap().remove("updated");
        let mut row = parse_item_value(&v).unwrap().row;
        row.set_object_modified(modified);
        fan_out(row, &[CELL.into()])
    })
    .collect()
}

#[tokio::test]
async fn items_without_updated_keep_their_newest_object_and_its_time_goes_with_the_file() {
    let stores = stores();
    // Chunk 0 read objects written at 2,000; chunk 1 read 0..5 again at 1,000 (an older copy
    // listed later) and 5..10 at 3,000 (re-processed).
    let at = |name: &str| Location::parse(&format!("memory://staging/{name}/{CELL}/2019.parquet"));
    let first = at("times0").unwrap();
    write_staged(&stores, &first, &unversioned_rows(0..10, 2_000, 1)).await.unwrap();
    let mut later = unversioned_rows(0..5, 1_000, 2);
    later.extend(unversioned_rows(5..10, 3_000, 3));
    let second = at("times1").unwrap();
    write_staged(&stores, &second, &later).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let warehouse = Location::local(dir.path()).unwrap();
    let partition = CellYear::new(CELL, Some(2019));
    let namer = FileNamer::new(RunId::from_string(RUN), "c8");
    let out = compact_partition(
        &stores,
        &partition,
        &[first, second],
        &warehouse,
        &namer,
        6,
        &WriterOptions::default(),
    )
    .await
    .unwrap();

    assert_eq!((out.input_rows, out.duplicates_dropped, out.output_rows()), (20, 10, 10));
    let mut pvp = BTreeMap::new();
    for f in &out.files {
        let (batch, _) = read_local(&f.location);
        assert_eq!(batch.num_columns(), earthcatalog_common::schema::arrow_schema().fields().len());
        let values = batch.column_by_name("percent_valid_pixels").unwrap();
        for (id, v) in strings(&batch, "id").into_iter().zip(values.as_primitive::<Int64Type>()) {
            pvp.insert(id.unwrap(), v.unwrap());
        }
    }
    let expected: BTreeMap<String, i64> = (0..10)
        .map(|i| (itslive_item(i)["id"].as_str().unwrap().to_string(), if i < 5 { 1 } else { 3 }))
        .collect();
    assert_eq!(pvp, expected, "the copy of the newest object of each item");

    // Each file's object times go with it: one list per file, its rows' newest times.
    assert_eq!(out.object_times.len(), out.files.len());
    let mut times = BTreeMap::new();
    for (kept, file) in out.object_times.iter().zip(&out.files) {
        assert_eq!(kept.file, file.location);
        assert_eq!(kept.items.num_rows(), file.rows);
        let ids = strings(&kept.items, "id");
        for (id, t) in ids.into_iter().zip(micros(&kept.items, "object_modified")) {
            times.insert(id.unwrap(), t.unwrap());
        }
    }
    let expected: BTreeMap<String, i64> = (0..10)
        .map(|i| {
            (itslive_item(i)["id"].as_str().unwrap().to_string(), if i < 5 { 2_000 } else { 3_000 })
        })
        .collect();
    assert_eq!(times, expected);
}
