//! The filter stage: `.stac.json` suffix, `since`, `limit`, and its counters.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod inventory_support;

/// Named so that `cargo test inventory` selects these tests.
mod inventory_filter {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use crate::inventory_support::*;
    use earthcatalog_common::inventory::{
        Filter, FilterCounts, InventoryEntry, InventoryRecord, InventoryStream, MalformedReason,
        MalformedRow, OpenOptions, RowPosition, filter, open, parse_since,
    };
    use futures::StreamExt;

    fn entry(key: &str) -> InventoryRecord {
        InventoryRecord::Entry(InventoryEntry {
            bucket: "b".into(),
            key: key.into(),
            last_modified: None,
        })
    }

    /// A stream of `records` that counts how many items were pulled from it.
    fn counted(records: Vec<InventoryRecord>) -> (InventoryStream, Arc<AtomicUsize>) {
        let pulled = Arc::new(AtomicUsize::new(0));
        let counter = pulled.clone();
        let stream = futures::stream::iter(records)
            .inspect(move |_| {
                counter.fetch_add(1, Ordering::SeqCst);
            })
            .map(Ok)
            .boxed();
        (stream, pulled)
    }

    #[tokio::test]
    async fn only_keys_ending_exactly_in_stac_json_pass() {
        let (stream, _) = counted(vec![
            entry("a.STAC.json"),
            entry("a.stac.json.bak"),
            entry("a.json"),
            entry("dir.stac.json/x.nc"),
            entry("ok/a.stac.json"),
        ]);
        let (kept, counters) = filter(stream, Filter::default());
        let keys: Vec<String> = entries(kept).await.into_iter().map(|e| e.key).collect();
        assert_eq!(keys, ["ok/a.stac.json"]);
        assert_eq!(
            counters.snapshot(),
            FilterCounts { rows_read: 5, kept: 1, not_stac: 4, ..Default::default() }
        );
    }

    #[tokio::test]
    async fn since_keeps_the_boundary_converts_offsets_and_counts_rows_without_a_date() {
        let stores = stores();
        let r = roots("filter-since");
        let text = "bucket,key,last_modified_date\n\
                b,at-boundary.stac.json,2024-01-31T00:00:00Z\n\
                b,one-second-early.stac.json,2024-01-30T23:59:59Z\n\
                b,offset-early.stac.json,2024-01-31T01:00:00+02:00\n\
                b,offset-late.stac.json,2024-01-30T23:00:00-02:00\n\
                b,no-date.stac.json,\n\
                b,not-stac.nc,2020-01-01\n\
                b,naive-late.stac.json,2024-02-01 08:00:00\n";
        let since = parse_since("2024-01-31").unwrap();
        for root in &r.roots {
            let location = root.join("since.csv");
            put(&stores, &location, text).await;
            let (kept, counters) = filter(
                open(&stores, &location, &OpenOptions::default()),
                Filter { since: Some(since), ..Default::default() },
            );
            let keys: Vec<String> = entries(kept).await.into_iter().map(|e| e.key).collect();
            assert_eq!(
                keys,
                [
                    "at-boundary.stac.json",
                    "offset-late.stac.json",
                    "no-date.stac.json",
                    "naive-late.stac.json"
                ],
                "{root}"
            );
            let counts = counters.snapshot();
            assert_eq!(
                counts,
                FilterCounts {
                    rows_read: 7,
                    kept: 4,
                    not_stac: 1,
                    before_since: 2,
                    without_date: 1,
                    malformed: 0
                }
            );
            assert_eq!(
                counts.to_string(),
                "7 rows read, 4 kept, 1 not .stac.json, 2 before since, 1 without a date, 0 malformed"
            );
        }
    }

    #[tokio::test]
    async fn limit_stops_pulling_from_the_reader_once_reached() {
        let (stream, pulled) = counted(vec![
            entry("1.stac.json"),
            entry("skip.nc"),
            entry("2.stac.json"),
            entry("3.stac.json"),
            entry("4.stac.json"),
        ]);
        let (kept, counters) = filter(stream, Filter { limit: Some(2), ..Default::default() });
        let keys: Vec<String> = entries(kept).await.into_iter().map(|e| e.key).collect();
        assert_eq!(keys, ["1.stac.json", "2.stac.json"]);
        assert_eq!(pulled.load(Ordering::SeqCst), 3, "nothing is read after the second kept entry");
        assert_eq!(counters.snapshot().rows_read, 3);

        let (stream, pulled) = counted(vec![entry("1.stac.json")]);
        let (kept, _) = filter(stream, Filter { limit: Some(0), ..Default::default() });
        assert!(entries(kept).await.is_empty());
        assert_eq!(pulled.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn limit_applies_to_a_real_reader() {
        let stores = stores();
        let r = roots("filter-limit");
        for root in &r.roots {
            let location = root.join("keys.csv");
            put(&stores, &location, fixture("itslive_keys_seen_in_public_code.csv")).await;
            let (kept, counters) = filter(
                open(&stores, &location, &OpenOptions::default()),
                Filter { limit: Some(3), stac_only: false, ..Default::default() },
            );
            assert_eq!(entries(kept).await.len(), 3);
            assert_eq!(counters.snapshot().rows_read, 3);
        }
    }

    #[tokio::test]
    async fn malformed_rows_are_counted_and_passed_on_for_reporting() {
        let bad = MalformedRow {
            object: "memory://x/inv.csv".into(),
            position: RowPosition::Line(2),
            reason: MalformedReason::EmptyKey,
        };
        let (stream, _) =
            counted(vec![InventoryRecord::Malformed(bad.clone()), entry("a.stac.json")]);
        let (out, counters) = filter(stream, Filter::default());
        let items = collect(out).await;
        assert_eq!(malformed(&items), vec![bad]);
        assert_eq!(items.len(), 2);
        assert_eq!(
            counters.snapshot(),
            FilterCounts { rows_read: 2, kept: 1, malformed: 1, ..Default::default() }
        );
    }

    #[test]
    fn since_values_for_the_cli_accept_dates_and_timestamps_and_name_bad_input() {
        assert_eq!(parse_since("2024-01-31").unwrap(), utc("2024-01-31T00:00:00Z"));
        assert_eq!(parse_since("2024-01-31T12:00:00+01:00").unwrap(), utc("2024-01-31T11:00:00Z"));
        let err = parse_since("last tuesday").unwrap_err();
        assert!(err.to_string().starts_with("'last tuesday' is not a date"), "{err}");
    }
}
