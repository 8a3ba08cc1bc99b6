//! Parquet inventories from memory:// and file:// stores.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod inventory_support;

/// Named so that `cargo test inventory` selects these tests.
mod inventory_parquet {
    use std::sync::Arc;

    use crate::inventory_support::*;
    use arrow_array::{
        ArrayRef, BinaryArray, Int64Array, StringArray, TimestampMicrosecondArray,
        TimestampMillisecondArray, TimestampNanosecondArray, TimestampSecondArray,
    };
    use earthcatalog_common::inventory::{
        InventoryError, InventoryFormat, InventoryRecord, MalformedReason, OpenOptions,
        RowPosition, open,
    };

    fn strings(values: Vec<Option<String>>) -> ArrayRef {
        Arc::new(StringArray::from(values))
    }

    #[tokio::test]
    async fn rows_come_in_order_across_row_groups_and_batches_with_string_dates() {
        let stores = stores();
        let r = roots("pq-strings");
        let n = 250;
        let keys: Vec<Option<String>> =
            (0..n).map(|i| Some(format!("k/{i:04}.stac.json"))).collect();
        let dates: Vec<Option<String>> = (0..n)
            .map(|i| match i % 3 {
                0 => None,
                1 => Some("2026-04-01T00:00:00.000Z".into()),
                _ => Some("2026-03-31T23:00:00-02:00".into()),
            })
            .collect();
        let bytes = parquet_bytes(
            vec![
                ("bucket", strings(vec![Some("its-live-data".into()); n])),
                ("key", strings(keys.clone())),
                ("size", Arc::new(Int64Array::from(vec![7; n]))),
                ("storage_class", strings(vec![Some("STANDARD".into()); n])),
                ("last_modified_date", strings(dates)),
            ],
            100,
        );
        let options = OpenOptions { parquet_batch_size: 64, ..Default::default() };
        for root in &r.roots {
            let location = root.join("inv/data.parquet");
            assert_eq!(InventoryFormat::of(&location), InventoryFormat::Parquet);
            put(&stores, &location, bytes.clone()).await;
            let got = entries(open(&stores, &location, &options)).await;
            assert_eq!(got.len(), n, "{root}");
            let got_keys: Vec<Option<String>> = got.iter().map(|e| Some(e.key.clone())).collect();
            assert_eq!(got_keys, keys);
            assert_eq!(got[0].last_modified, None);
            assert_eq!(got[1].last_modified, Some(utc("2026-04-01T00:00:00Z")));
            // The offset is converted: 23:00 at -02:00 is 01:00 UTC the next day.
            assert_eq!(got[2].last_modified, Some(utc("2026-04-01T01:00:00Z")));
        }
    }

    #[tokio::test]
    async fn timestamp_dates_in_every_unit_with_or_without_a_zone_are_utc_instants() {
        let stores = stores();
        let r = roots("pq-timestamps");
        let instant = utc("2024-04-22T01:14:53Z");
        let s = instant.timestamp();
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("s-naive", Arc::new(TimestampSecondArray::from(vec![Some(s), None]))),
            (
                "ms-utc",
                Arc::new(
                    TimestampMillisecondArray::from(vec![Some(s * 1_000), None])
                        .with_timezone("UTC"),
                ),
            ),
            (
                "us-offset",
                Arc::new(
                    TimestampMicrosecondArray::from(vec![Some(s * 1_000_000), None])
                        .with_timezone("+02:00"),
                ),
            ),
            (
                "ns-naive",
                Arc::new(TimestampNanosecondArray::from(vec![Some(s * 1_000_000_000), None])),
            ),
        ];
        for (name, dates) in columns {
            let bytes = parquet_bytes(
                vec![
                    ("bucket", strings(vec![Some("b".into()); 2])),
                    ("key", strings(vec![Some("x.stac.json".into()), Some("y.stac.json".into())])),
                    ("last_modified_date", dates),
                ],
                1024,
            );
            for root in &r.roots {
                let location = root.join(&format!("{name}.parquet"));
                put(&stores, &location, bytes.clone()).await;
                let got = entries(open(&stores, &location, &OpenOptions::default())).await;
                assert_eq!(got[0].last_modified, Some(instant), "{name} in {root}");
                assert_eq!(got[1].last_modified, None, "a null date is no date ({name})");
            }
        }
    }

    #[tokio::test]
    async fn column_names_match_in_any_case_and_binary_keys_are_read_as_utf8() {
        let stores = stores();
        let r = roots("pq-case");
        let keys: ArrayRef = Arc::new(BinaryArray::from(vec![
            Some(b"a.stac.json".as_slice()),
            Some(b"bad-\xff.stac.json".as_slice()),
        ]));
        let bytes = parquet_bytes(
            vec![("Bucket", strings(vec![Some("b".into()); 2])), ("KEY", keys)],
            1024,
        );
        for root in &r.roots {
            let location = root.join("case.parquet");
            put(&stores, &location, bytes.clone()).await;
            let items = collect(open(&stores, &location, &OpenOptions::default())).await;
            assert!(
                matches!(&items[0], Ok(InventoryRecord::Entry(e)) if e.key == "a.stac.json"),
                "{:?}",
                items[0]
            );
            let bad = malformed(&items);
            assert_eq!(bad.len(), 1);
            assert_eq!(bad[0].position, RowPosition::Row(1));
            assert_eq!(bad[0].reason, MalformedReason::BadUtf8 { column: "key".into() });
        }
    }

    #[tokio::test]
    async fn null_or_empty_keys_and_unreadable_dates_are_reported_by_0_based_row() {
        let stores = stores();
        let r = roots("pq-malformed");
        let bytes = parquet_bytes(
            vec![
                (
                    "bucket",
                    strings(vec![
                        Some("b".into()),
                        Some("b".into()),
                        None,
                        Some("b".into()),
                        Some("b".into()),
                    ]),
                ),
                (
                    "key",
                    strings(vec![
                        Some("ok.stac.json".into()),
                        None,
                        Some("nobucket.stac.json".into()),
                        Some("".into()),
                        Some("date.stac.json".into()),
                    ]),
                ),
                (
                    "last_modified_date",
                    strings(vec![None, None, None, None, Some("31/01/2024".into())]),
                ),
            ],
            2,
        );
        for root in &r.roots {
            let location = root.join("bad.parquet");
            put(&stores, &location, bytes.clone()).await;
            let items = collect(open(
                &stores,
                &location,
                &OpenOptions { parquet_batch_size: 1, ..Default::default() },
            ))
            .await;
            assert_eq!(items.len(), 5);
            let got: Vec<String> = malformed(&items).iter().map(ToString::to_string).collect();
            assert_eq!(
                got,
                vec![
                    format!("malformed row in {location} at row 1 (0-based): empty key"),
                    format!("malformed row in {location} at row 2 (0-based): empty bucket"),
                    format!("malformed row in {location} at row 3 (0-based): empty key"),
                    format!(
                        "malformed row in {location} at row 4 (0-based): unparseable date in column 'last_modified_date': '31/01/2024'"
                    ),
                ]
            );
        }
    }

    #[tokio::test]
    async fn a_parquet_file_without_a_key_column_is_an_error_naming_the_object() {
        let stores = stores();
        let r = roots("pq-nokey");
        let bytes = parquet_bytes(
            vec![
                ("bucket", strings(vec![Some("b".into())])),
                ("size", Arc::new(Int64Array::from(vec![1]))),
            ],
            1024,
        );
        for root in &r.roots {
            let location = root.join("nokey.parquet");
            put(&stores, &location, bytes.clone()).await;
            let items = collect(open(&stores, &location, &OpenOptions::default())).await;
            assert_eq!(items.len(), 1);
            let err = items.into_iter().next().unwrap().unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("inventory {location} has no 'key' column (columns: bucket, size)")
            );
        }
    }

    #[tokio::test]
    async fn a_date_column_of_another_type_is_an_error_naming_the_column() {
        let stores = stores();
        let r = roots("pq-datetype");
        let bytes = parquet_bytes(
            vec![
                ("bucket", strings(vec![Some("b".into())])),
                ("key", strings(vec![Some("k".into())])),
                ("last_modified_date", Arc::new(Int64Array::from(vec![1]))),
            ],
            1024,
        );
        for root in &r.roots {
            let location = root.join("datetype.parquet");
            put(&stores, &location, bytes.clone()).await;
            let err = collect(open(&stores, &location, &OpenOptions::default()))
                .await
                .remove(0)
                .unwrap_err();
            assert!(matches!(err, InventoryError::ColumnType { .. }));
            assert_eq!(
                err.to_string(),
                format!(
                    "inventory {location}: column 'last_modified_date' has type Int64, which is not supported"
                )
            );
        }
    }

    #[tokio::test]
    async fn an_object_that_is_not_parquet_or_is_missing_is_an_error_naming_it() {
        let stores = stores();
        let r = roots("pq-notparquet");
        for root in &r.roots {
            let location = root.join("fake.parquet");
            put(&stores, &location, "bucket,key\nb,k\n").await;
            let items = collect(open(&stores, &location, &OpenOptions::default())).await;
            assert_eq!(items.len(), 1);
            let err = items.into_iter().next().unwrap().unwrap_err();
            assert!(matches!(err, InventoryError::Parquet { .. }), "{err}");
            assert!(
                err.to_string().starts_with(&format!("cannot read Parquet inventory {location}: "))
            );

            let missing = root.join("absent.parquet");
            let err = collect(open(&stores, &missing, &OpenOptions::default()))
                .await
                .remove(0)
                .unwrap_err();
            assert!(matches!(err, InventoryError::Fetch { .. }), "{err}");
            assert!(err.to_string().starts_with(&format!("cannot read inventory {missing}: ")));
        }
    }

    #[tokio::test]
    async fn an_empty_parquet_file_yields_nothing() {
        let stores = stores();
        let r = roots("pq-empty");
        let bytes =
            parquet_bytes(vec![("bucket", strings(vec![])), ("key", strings(vec![]))], 1024);
        for root in &r.roots {
            let location = root.join("empty.parquet");
            put(&stores, &location, bytes.clone()).await;
            assert!(collect(open(&stores, &location, &OpenOptions::default())).await.is_empty());
        }
    }
}
