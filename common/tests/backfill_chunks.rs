//! Phase 1: inventories become chunk files; resumption keeps what is already staged.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod backfill_support;

use backfill_support::{BUCKET, csv_inventory, delete, etags, exists, put, stores, text};
use earthcatalog_common::backfill::{
    ChunkError, ChunkOptions, ChunkSettings, StagingLayout, read_chunk, write_chunks,
};
use earthcatalog_common::ids::RunId;
use earthcatalog_common::location::Location;
use earthcatalog_common::pipeline::ObjectKey;

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("velocity_image_pair/v02/item_{i:05}.stac.json")).collect()
}

fn settings(inventory: &Location, chunk_size: usize) -> ChunkSettings {
    ChunkSettings { inventory: inventory.clone(), since: None, limit: None, chunk_size }
}

fn layout(staging: &Location) -> StagingLayout {
    StagingLayout::new(staging, RunId::from_string("20260101T000000Z-000001"))
}

#[tokio::test]
async fn an_inventory_of_2500_keys_becomes_chunks_of_1000_1000_and_500_in_inventory_order() {
    let dir = tempfile::tempdir().unwrap();
    for staging in
        [Location::parse("memory://staging").unwrap(), Location::local(dir.path()).unwrap()]
    {
        let stores = stores();
        let inventory = Location::parse("memory://inv/inventory.csv").unwrap();
        let all = keys(2500);
        csv_inventory(&stores, &inventory, &all).await;
        let layout = layout(&staging);

        let plan =
            write_chunks(&stores, &layout, &settings(&inventory, 1000), &ChunkOptions::default())
                .await
                .unwrap();

        let rows: Vec<u64> = plan.chunks.iter().map(|c| c.rows).collect();
        assert_eq!(rows, [1000, 1000, 500], "staging {staging}");
        assert_eq!((plan.written, plan.kept, plan.reused), (3, 0, false));
        assert_eq!(plan.counts.kept, 2500);
        let mut read_back = Vec::new();
        for (id, chunk) in plan.chunks.iter().enumerate() {
            assert_eq!(chunk.id, id as u64);
            assert_eq!(chunk.location, layout.chunk(id as u64));
            read_back.extend(read_chunk(&stores, &chunk.location).await.unwrap());
        }
        let expected: Vec<ObjectKey> = all.iter().map(|k| ObjectKey::new(BUCKET, k)).collect();
        assert_eq!(read_back, expected);
        let manifest: serde_json::Value =
            serde_json::from_str(&text(&stores, &layout.chunk_manifest()).await).unwrap();
        assert_eq!(manifest["complete"], true);
        assert_eq!(manifest["chunks"], 3);
        assert_eq!(manifest["chunk_size"], 1000);
        assert_eq!(manifest["inventory"], "memory://inv/inventory.csv");
    }
}

#[tokio::test]
async fn limit_counts_only_stac_keys_and_malformed_rows_are_returned_and_written() {
    let stores = stores();
    let inventory = Location::parse("memory://inv/inventory.csv").unwrap();
    let mut csv = String::from("bucket,key\n");
    for (i, k) in keys(30).iter().enumerate() {
        csv.push_str(&format!("{BUCKET},{k}\n"));
        if i == 4 {
            csv.push_str(&format!("{BUCKET},velocity_image_pair/v02/item.nc\n"));
            csv.push_str(",orphan.stac.json\n");
        }
    }
    put(&stores, &inventory, csv).await;
    let layout = layout(&Location::parse("memory://staging").unwrap());
    let wanted = ChunkSettings { limit: Some(25), ..settings(&inventory, 10) };

    let plan = write_chunks(&stores, &layout, &wanted, &ChunkOptions::default()).await.unwrap();

    assert_eq!(plan.chunks.iter().map(|c| c.rows).collect::<Vec<_>>(), [10, 10, 5]);
    assert_eq!((plan.counts.kept, plan.counts.not_stac, plan.counts.malformed), (25, 1, 1));
    assert_eq!(plan.malformed.len(), 1);
    let m = &plan.malformed[0];
    assert_eq!(
        (m.object.as_str(), m.position.as_str(), m.reason.as_str()),
        ("memory://inv/inventory.csv", "line 8", "empty bucket")
    );
    let stored = text(&stores, &layout.malformed_rows()).await;
    assert_eq!(stored.lines().count(), 1);
    assert!(stored.contains(r#""position":"line 8""#), "{stored}");
}

#[tokio::test]
async fn resuming_after_losing_the_manifest_and_one_chunk_rewrites_only_that_chunk() {
    let stores = stores();
    let inventory = Location::parse("memory://inv/inventory.csv").unwrap();
    csv_inventory(&stores, &inventory, &keys(2500)).await;
    let layout = layout(&Location::parse("memory://staging").unwrap());
    let wanted = settings(&inventory, 1000);
    write_chunks(&stores, &layout, &wanted, &ChunkOptions::default()).await.unwrap();
    let before = etags(&stores, &layout.chunks_dir()).await;
    let lost = read_chunk(&stores, &layout.chunk(1)).await.unwrap();
    delete(&stores, &layout.chunk_manifest()).await;
    delete(&stores, &layout.chunk(1)).await;

    let plan = write_chunks(&stores, &layout, &wanted, &ChunkOptions::default()).await.unwrap();

    assert_eq!((plan.written, plan.kept, plan.reused), (1, 2, false));
    let after = etags(&stores, &layout.chunks_dir()).await;
    assert_eq!(after["chunk_000000.parquet"], before["chunk_000000.parquet"]);
    assert_eq!(after["chunk_000002.parquet"], before["chunk_000002.parquet"]);
    assert_ne!(after["chunk_000001.parquet"], before["chunk_000001.parquet"]);
    assert_eq!(read_chunk(&stores, &layout.chunk(1)).await.unwrap(), lost);
    assert!(exists(&stores, &layout.chunk_manifest()).await);
}

#[tokio::test]
async fn a_chunk_staged_from_another_inventory_is_rewritten_and_extra_chunks_removed() {
    let stores = stores();
    let inventory = Location::parse("memory://inv/inventory.csv").unwrap();
    let layout = layout(&Location::parse("memory://staging").unwrap());
    csv_inventory(&stores, &inventory, &keys(35)).await;
    write_chunks(&stores, &layout, &settings(&inventory, 10), &ChunkOptions::default())
        .await
        .unwrap();
    // The manifest is gone, so nothing says the old chunks came from another inventory.
    delete(&stores, &layout.chunk_manifest()).await;
    let mut shorter = keys(20);
    shorter[15] = "velocity_image_pair/v02/replaced.stac.json".into();
    csv_inventory(&stores, &inventory, &shorter).await;

    let plan = write_chunks(&stores, &layout, &settings(&inventory, 10), &ChunkOptions::default())
        .await
        .unwrap();

    assert_eq!((plan.written, plan.kept, plan.chunks.len()), (1, 1, 2));
    let second = read_chunk(&stores, &layout.chunk(1)).await.unwrap();
    assert_eq!(second[5].key, "velocity_image_pair/v02/replaced.stac.json");
    assert!(!exists(&stores, &layout.chunk(2)).await, "chunk 2 is beyond the new inventory");
    assert!(!exists(&stores, &layout.chunk(3)).await);
}

#[tokio::test]
async fn a_finished_phase_1_is_reused_without_reading_the_inventory() {
    let stores = stores();
    let inventory = Location::parse("memory://inv/inventory.csv").unwrap();
    let mut csv = String::from("bucket,key\n");
    for k in keys(25) {
        csv.push_str(&format!("{BUCKET},{k}\n"));
    }
    csv.push_str(&format!("{BUCKET},\n"));
    put(&stores, &inventory, csv).await;
    let layout = layout(&Location::parse("memory://staging").unwrap());
    let wanted = settings(&inventory, 10);
    let first = write_chunks(&stores, &layout, &wanted, &ChunkOptions::default()).await.unwrap();
    delete(&stores, &inventory).await;
    let before = etags(&stores, &layout.chunks_dir()).await;

    let again = write_chunks(&stores, &layout, &wanted, &ChunkOptions::default()).await.unwrap();

    assert!(again.reused);
    assert_eq!(again.chunks, first.chunks);
    assert_eq!(again.counts, first.counts);
    assert_eq!(again.malformed, first.malformed);
    assert_eq!(again.malformed[0].reason, "empty key");
    assert_eq!(etags(&stores, &layout.chunks_dir()).await, before);
}

#[tokio::test]
async fn a_changed_chunk_size_or_inventory_is_refused_naming_what_differs() {
    let stores = stores();
    let inventory = Location::parse("memory://inv/inventory.csv").unwrap();
    csv_inventory(&stores, &inventory, &keys(50)).await;
    let layout = layout(&Location::parse("memory://staging").unwrap());
    write_chunks(&stores, &layout, &settings(&inventory, 1000), &ChunkOptions::default())
        .await
        .unwrap();

    let err = write_chunks(&stores, &layout, &settings(&inventory, 500), &ChunkOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ChunkError::SettingsChanged { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("chunk size: staged 1000, requested 500"), "{msg}");
    assert!(msg.contains(&layout.chunk_manifest().to_string()), "{msg}");

    let other = Location::parse("memory://inv/other.csv").unwrap();
    csv_inventory(&stores, &other, &keys(50)).await;
    let err = write_chunks(&stores, &layout, &settings(&other, 1000), &ChunkOptions::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains(
            "inventory: staged memory://inv/inventory.csv, requested memory://inv/other.csv"
        ),
        "{err}"
    );
}

#[tokio::test]
async fn an_interrupted_phase_1_keeps_its_settings_and_refuses_others() {
    let stores = stores();
    let inventory = Location::parse("memory://inv/inventory.csv").unwrap();
    // The inventory does not exist yet: Phase 1 records its settings, then fails reading it.
    let layout = layout(&Location::parse("memory://staging").unwrap());
    let since = chrono::DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z").unwrap().to_utc();
    let wanted = ChunkSettings { since: Some(since), ..settings(&inventory, 10) };
    let err = write_chunks(&stores, &layout, &wanted, &ChunkOptions::default()).await.unwrap_err();
    assert!(err.to_string().contains("memory://inv/inventory.csv"), "{err}");
    let manifest = text(&stores, &layout.chunk_manifest()).await;
    assert!(manifest.contains(r#""complete": false"#), "{manifest}");

    let err = write_chunks(&stores, &layout, &settings(&inventory, 10), &ChunkOptions::default())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("since: staged 2024-01-01T00:00:00.000000Z, requested none"),
        "{err}"
    );

    csv_inventory(&stores, &inventory, &keys(15)).await;
    let plan = write_chunks(&stores, &layout, &wanted, &ChunkOptions::default()).await.unwrap();
    assert_eq!(plan.chunks.iter().map(|c| c.rows).collect::<Vec<_>>(), [10, 5]);
    assert_eq!(plan.counts.without_date, 15);
}
