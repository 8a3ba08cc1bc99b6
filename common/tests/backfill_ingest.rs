//! Phase 2: a chunk becomes staged files per (cell, year) and a failures file.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod backfill_support;

use std::collections::BTreeMap;

use backfill_support::{BUCKET, csv_inventory, data_path, put, put_item, put_items, stores, text};
use earthcatalog_common::backfill::layout::{failures_file, staged_file};
use earthcatalog_common::backfill::{
    ChunkOptions, ChunkSettings, StagingLayout, ingest_chunk, retry_failed, write_chunks,
};
use earthcatalog_common::ids::{CellYear, RunId};
use earthcatalog_common::location::Location;
use earthcatalog_common::partition::{H3Partitioner, Partitioner};
use earthcatalog_common::pipeline::ItemFailure;
use earthcatalog_common::sample::itslive_item;
use earthcatalog_common::stac::datetime::utc_year;
use earthcatalog_common::stac::parse_item_value;
use earthcatalog_common::staging::read_staged;
use earthcatalog_common::stores::Stores;

const MISSING: &str = "velocity_image_pair/v02/missing.stac.json";
const BAD_JSON: &str = "velocity_image_pair/v02/bad.stac.json";

/// Rows per (cell, year) that items `range` fan out to, computed without the data path.
fn expected_fan_out(range: std::ops::Range<u64>) -> BTreeMap<CellYear, u64> {
    let h3 = H3Partitioner::new(1).unwrap();
    let mut out = BTreeMap::new();
    for i in range {
        let parsed = parse_item_value(&itslive_item(i)).unwrap();
        let year = parsed.row.datetime_micros().and_then(utc_year);
        for cell in h3.cells(&parsed.geometry).unwrap() {
            *out.entry(CellYear::new(cell, year)).or_insert(0) += 1;
        }
    }
    out
}

/// Sample items 0..40, a missing key and a bad-JSON object, staged as chunk 0 of a run.
async fn one_chunk(stores: &std::sync::Arc<Stores>) -> (StagingLayout, Location) {
    let mut keys = put_items(stores, 0..40).await;
    put(stores, &stores.source_location(BUCKET, BAD_JSON), "{\"type\": \"Feature\", ").await;
    keys.insert(10, MISSING.into());
    keys.insert(20, BAD_JSON.into());
    let inventory = Location::parse("memory://inv/inventory.csv").unwrap();
    csv_inventory(stores, &inventory, &keys).await;
    let layout = StagingLayout::new(
        &Location::parse("memory://staging").unwrap(),
        RunId::from_string("20260101T000000Z-000002"),
    );
    let settings = ChunkSettings { inventory, since: None, limit: None, chunk_size: 1000 };
    let plan = write_chunks(stores, &layout, &settings, &ChunkOptions::default()).await.unwrap();
    assert_eq!(plan.chunks.len(), 1);
    let chunk = plan.chunks[0].location.clone();
    (layout, chunk)
}

#[tokio::test]
async fn a_chunk_is_staged_as_one_file_per_cell_and_year_whose_rows_add_up_to_the_fan_out() {
    let stores = stores();
    let (layout, chunk) = one_chunk(&stores).await;
    let attempt = layout.ingest_attempt(0, 1);

    let outcome = ingest_chunk(&data_path(&stores), &chunk, &attempt).await.unwrap();

    assert_eq!((outcome.items, outcome.failed_items), (40, 2));
    let got: BTreeMap<CellYear, u64> =
        outcome.staged.iter().map(|s| (s.partition.clone(), s.rows)).collect();
    assert_eq!(got.len(), outcome.staged.len(), "one file per (cell, year)");
    assert_eq!(got, expected_fan_out(0..40));
    for s in &outcome.staged {
        assert_eq!(s.location, staged_file(&attempt, &s.partition));
        let batches = read_staged(&stores, &s.location).await.unwrap();
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows as u64, s.rows, "{}", s.location);
        for b in &batches {
            let cells = b.column_by_name("grid_partition").unwrap();
            let cells = arrow::array::AsArray::as_string::<i32>(cells.as_ref());
            assert!(cells.iter().all(|c| c == Some(s.partition.cell.as_str())));
        }
    }
}

#[tokio::test]
async fn failures_file_lists_the_missing_key_and_the_bad_json_item_with_reasons() {
    let stores = stores();
    let (layout, chunk) = one_chunk(&stores).await;
    let attempt = layout.ingest_attempt(0, 1);

    let outcome = ingest_chunk(&data_path(&stores), &chunk, &attempt).await.unwrap();

    assert_eq!(outcome.failures_file, Some(failures_file(&attempt)));
    let lines = text(&stores, &failures_file(&attempt)).await;
    let mut failures: Vec<ItemFailure> =
        lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    failures.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(failures.len(), 2);
    assert_eq!(
        (failures[0].bucket.as_str(), failures[0].key.as_str(), failures[0].kind.as_str()),
        (BUCKET, BAD_JSON, "invalid_json")
    );
    assert!(failures[0].reason.starts_with("not valid JSON"), "{}", failures[0].reason);
    assert_eq!(
        (failures[1].key.as_str(), failures[1].kind.as_str(), failures[1].reason.as_str()),
        (MISSING, "not_found", "not found")
    );
}

#[tokio::test]
async fn a_chunk_without_failures_writes_no_failures_file() {
    let stores = stores();
    let keys = put_items(&stores, 0..5).await;
    let inventory = Location::parse("memory://inv/inventory.csv").unwrap();
    csv_inventory(&stores, &inventory, &keys).await;
    let layout = StagingLayout::new(
        &Location::parse("memory://staging").unwrap(),
        RunId::from_string("20260101T000000Z-000003"),
    );
    let settings = ChunkSettings { inventory, since: None, limit: None, chunk_size: 10 };
    let plan = write_chunks(&stores, &layout, &settings, &ChunkOptions::default()).await.unwrap();
    let attempt = layout.ingest_attempt(0, 9);

    let outcome =
        ingest_chunk(&data_path(&stores), &plan.chunks[0].location, &attempt).await.unwrap();

    assert_eq!((outcome.items, outcome.failed_items, outcome.failures_file), (5, 0, None));
    assert!(!backfill_support::exists(&stores, &failures_file(&attempt)).await);
}

#[tokio::test]
async fn two_attempts_of_one_chunk_write_to_separate_folders() {
    let stores = stores();
    let (layout, chunk) = one_chunk(&stores).await;
    let (first_root, second_root) = (layout.ingest_attempt(0, 1), layout.ingest_attempt(0, 2));
    let path = data_path(&stores);

    let first = ingest_chunk(&path, &chunk, &first_root).await.unwrap();
    let second = ingest_chunk(&path, &chunk, &second_root).await.unwrap();

    let under = |root: &Location, at: &Location| at.to_string().starts_with(&format!("{root}/"));
    assert!(first.staged.iter().all(|s| under(&first_root, &s.location)));
    assert!(second.staged.iter().all(|s| under(&second_root, &s.location)));
    assert!(under(&second_root, second.failures_file.as_ref().unwrap()));
    let parts = |o: &earthcatalog_common::backfill::IngestOutcome| {
        o.staged.iter().map(|s| (s.partition.clone(), s.rows)).collect::<Vec<_>>()
    };
    assert_eq!(parts(&first), parts(&second));
    // The expired attempt's files can go without touching the accepted one's.
    for s in &first.staged {
        backfill_support::delete(&stores, &s.location).await;
    }
    for s in &second.staged {
        assert_eq!(
            read_staged(&stores, &s.location)
                .await
                .unwrap()
                .iter()
                .map(|b| b.num_rows())
                .sum::<usize>() as u64,
            s.rows
        );
    }
}

#[tokio::test]
async fn retrying_failed_items_ingests_only_those_keys() {
    let stores = stores();
    let (layout, chunk) = one_chunk(&stores).await;
    let path = data_path(&stores);
    let first = ingest_chunk(&path, &chunk, &layout.ingest_attempt(0, 1)).await.unwrap();
    // The missing object appears; the bad JSON stays bad.
    put_item(&stores, MISSING, &itslive_item(1000)).await;
    let retry_root = layout.ingest_attempt(0, 2);

    let retried =
        retry_failed(&path, first.failures_file.as_ref().unwrap(), &retry_root).await.unwrap();

    assert_eq!((retried.items, retried.failed_items), (1, 1));
    let got: BTreeMap<CellYear, u64> =
        retried.staged.iter().map(|s| (s.partition.clone(), s.rows)).collect();
    assert_eq!(got, expected_fan_out(1000..1001));
    let still = text(&stores, retried.failures_file.as_ref().unwrap()).await;
    assert_eq!(still.lines().count(), 1);
    assert!(still.contains(BAD_JSON), "{still}");
}

#[tokio::test]
async fn a_damaged_failures_file_is_refused_naming_the_file_and_line() {
    let stores = stores();
    let at = Location::parse("memory://staging/failures.jsonl").unwrap();
    put(
        &stores,
        &at,
        "{\"bucket\":\"b\",\"key\":\"k\",\"kind\":\"not_found\",\"reason\":\"x\"}\nnot json\n",
    )
    .await;

    let err =
        retry_failed(&data_path(&stores), &at, &Location::parse("memory://staging/out").unwrap())
            .await
            .unwrap_err();

    assert!(
        err.to_string()
            .starts_with("invalid failures file memory://staging/failures.jsonl at line 2"),
        "{err}"
    );
}
