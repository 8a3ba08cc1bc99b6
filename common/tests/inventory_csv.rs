//! CSV and CSV.gz inventories from memory:// and file:// stores.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod inventory_support;

/// Named so that `cargo test inventory` selects these tests.
mod inventory_csv {
    use crate::inventory_support::*;
    use earthcatalog_common::inventory::{
        InventoryError, InventoryFormat, MalformedReason, OpenOptions, RowPosition, open,
    };
    use earthcatalog_common::location::Location;

    const TWENTY_FIELD_SCHEMA: &str = "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag, StorageClass, IsMultipartUploaded, ReplicationStatus, EncryptionStatus, ObjectLockRetainUntilDate, ObjectLockMode, ObjectLockLegalHoldStatus, IntelligentTieringAccessTier, BucketKeyStatus, ChecksumAlgorithm, ObjectAccessControlList, ObjectOwner";

    #[tokio::test]
    async fn a_csv_with_a_header_finds_columns_by_name_in_any_case_and_keeps_keys_as_they_are() {
        let stores = stores();
        let r = roots("csv-header");
        let text = "\n\"Bucket\",SIZE,\"KEY\",Last_Modified_Date\n\
                its-live-data,10,a/one+two.stac.json,2024-01-31T10:00:00.000Z\n\
                \n\
                its-live-data,11,\"b/with,comma.stac.json\",2024-02-01\n\
                its-live-data,12,c/x.nc,\n";
        for root in &r.roots {
            let location = root.join("inv/plain.csv");
            put(&stores, &location, text).await;
            let got = entries(open(&stores, &location, &OpenOptions::default())).await;
            assert_eq!(
                pairs(&got),
                vec![
                    ("its-live-data".into(), "a/one+two.stac.json".into()),
                    ("its-live-data".into(), "b/with,comma.stac.json".into()),
                    ("its-live-data".into(), "c/x.nc".into()),
                ],
                "{root}"
            );
            assert_eq!(got[0].last_modified, Some(utc("2024-01-31T10:00:00Z")));
            assert_eq!(got[1].last_modified, Some(utc("2024-02-01T00:00:00Z")));
            assert_eq!(got[2].last_modified, None);
        }
    }

    #[tokio::test]
    async fn a_header_that_does_not_start_with_bucket_is_still_a_header() {
        let stores = stores();
        let r = roots("csv-header-order");
        let text = "Key,LAST_MODIFIED_DATE,bucket\n\
                a/one+two.stac.json,2024-01-31T10:00:00Z,its-live-data\n\
                b/two.stac.json,,other-bucket\n";
        for root in &r.roots {
            let location = root.join("inv/key-first.csv");
            put(&stores, &location, text).await;
            let got = entries(open(&stores, &location, &OpenOptions::default())).await;
            assert_eq!(
                pairs(&got),
                vec![
                    ("its-live-data".into(), "a/one+two.stac.json".into()),
                    ("other-bucket".into(), "b/two.stac.json".into()),
                ],
                "{root}"
            );
            assert_eq!(got[0].last_modified, Some(utc("2024-01-31T10:00:00Z")));
            assert_eq!(got[1].last_modified, None);
        }
    }

    #[tokio::test]
    async fn headerless_aws_rows_take_bucket_and_key_from_the_first_two_columns_and_url_decode_keys()
     {
        let stores = stores();
        let r = roots("csv-8col");
        for root in &r.roots {
            let location = root.join("public-code-comments_rows_8col.csv");
            put(&stores, &location, fixture("public-code-comments_rows_8col.csv")).await;
            let got = entries(open(&stores, &location, &OpenOptions::default())).await;
            assert_eq!(
                pairs(&got),
                vec![
                    (
                        "leodatacenter".into(),
                        "AWS SKO 2015/2015 AWS Sales Kickoff Agenda.pdf".into()
                    ),
                    (
                        "ctripcorp-nephele-file-eu".into(),
                        "fd/tg/g3/M08/E6/51/CggYG1Y26zCAfj-uAAFPZF8NV_g821.jpg".into()
                    ),
                ],
                "{root}"
            );
            assert!(got.iter().all(|e| e.last_modified.is_none()), "no schema, so no date column");
        }
    }

    #[tokio::test]
    async fn a_manifest_schema_gives_headerless_rows_their_date_column() {
        let stores = stores();
        let r = roots("csv-8col-schema");
        let options = OpenOptions {
        csv_file_schema: Some(
            "Bucket, Key, Size, LastModifiedDate, ETag, StorageClass, IsMultipartUploaded, ReplicationStatus".into(),
        ),
        ..Default::default()
    };
        for root in &r.roots {
            let location = root.join("rows.csv");
            put(&stores, &location, fixture("public-code-comments_rows_8col.csv")).await;
            let got = entries(open(&stores, &location, &options)).await;
            assert_eq!(got[0].last_modified, Some(utc("2015-08-29T06:56:01Z")));
            assert_eq!(got[1].last_modified, Some(utc("2017-08-09T07:07:56Z")));
        }
    }

    #[tokio::test]
    async fn the_its_live_keys_fixture_reads_all_eleven_keys_in_order() {
        let stores = stores();
        let r = roots("csv-itslive");
        for root in &r.roots {
            let location = root.join("keys.csv");
            put(&stores, &location, fixture("itslive_keys_seen_in_public_code.csv")).await;
            let got = entries(open(&stores, &location, &OpenOptions::default())).await;
            assert_eq!(got.len(), 11);
            assert!(got.iter().all(|e| e.bucket == "its-live-data"));
            assert_eq!(
                got[0].key,
                "velocity_image_pair/landsatOLI/v02/N60W030/LC08_L1TP_232011_20190524_20200828_02_T1_X_LC08_L1TP_232011_20190711_20200827_02_T1_G0120V02_P056.stac.json"
            );
            assert!(got[10].key.starts_with("NSIDC/velocity_image_pair_sample/"));
        }
    }

    #[tokio::test]
    async fn twenty_column_rows_with_empty_strings_or_missing_fields_read_the_same() {
        let stores = stores();
        let r = roots("csv-20col");
        let options =
            OpenOptions { csv_file_schema: Some(TWENTY_FIELD_SCHEMA.into()), ..Default::default() };
        for root in &r.roots {
            let mut results = Vec::new();
            for name in [
                "orcabus-test_rows_20col_empty_strings.csv",
                "orcabus-test_rows_20col_missing_fields.csv",
            ] {
                let location = root.join(name);
                put(&stores, &location, fixture(name)).await;
                results.push(entries(open(&stores, &location, &options)).await);
            }
            assert_eq!(results[0], results[1], "{root}");
            let keys: Vec<&str> = results[0].iter().map(|e| e.key.as_str()).collect();
            assert_eq!(keys, ["inventory_test/", "inventory_test/key1", "inventory_test/key2"]);
            assert_eq!(results[0][2].last_modified, Some(utc("2024-04-22T01:14:53Z")));
        }
    }

    #[tokio::test]
    async fn multi_member_gzip_csv_reads_every_member() {
        let stores = stores();
        let r = roots("csv-gz");
        let mut bytes = gzip(b"bucket,key\nb,one.stac.json\n").await;
        bytes.extend(gzip(b"b,two.stac.json\nb,three%20four.stac.json\n").await);
        for root in &r.roots {
            let location = root.join("inv/data.csv.gz");
            assert_eq!(InventoryFormat::of(&location), InventoryFormat::CsvGz);
            put(&stores, &location, bytes.clone()).await;
            let got = entries(open(&stores, &location, &OpenOptions::default())).await;
            let keys: Vec<&str> = got.iter().map(|e| e.key.as_str()).collect();
            // A header makes keys literal: "%20" is not decoded.
            assert_eq!(
                keys,
                ["one.stac.json", "two.stac.json", "three%20four.stac.json"],
                "{root}"
            );
        }
    }

    #[tokio::test]
    async fn headerless_gzip_csv_url_decodes_keys() {
        let stores = stores();
        let r = roots("csv-gz-headerless");
        let bytes = gzip(b"\"its-live-data\",\"a+b/c%2Bd.stac.json\"\n").await;
        for root in &r.roots {
            let location = root.join("data.csv.gz");
            put(&stores, &location, bytes.clone()).await;
            let got = entries(open(&stores, &location, &OpenOptions::default())).await;
            assert_eq!(pairs(&got), vec![("its-live-data".into(), "a b/c+d.stac.json".into())]);
        }
    }

    #[tokio::test]
    async fn malformed_rows_are_reported_with_their_line_and_reading_goes_on() {
        let stores = stores();
        let r = roots("csv-malformed");
        let mut text = b"bucket,key,last_modified_date\n\
                     b,good1.stac.json,2024-01-01\n\
                     only-one-field\n\
                     b,,2024-01-01\n\
                     b,bad-date.stac.json,yesterday\n\
                     ,no-bucket.stac.json,\n"
            .to_vec();
        text.extend(b"b,bad-\xff-utf8.stac.json,\n");
        text.extend(b"b,good2.stac.json,\n");
        for root in &r.roots {
            let location = root.join("bad.csv");
            put(&stores, &location, text.clone()).await;
            let items = collect(open(&stores, &location, &OpenOptions::default())).await;
            assert_eq!(items.len(), 7, "every data row yields one item");
            let bad = malformed(&items);
            let got: Vec<(RowPosition, MalformedReason)> =
                bad.iter().map(|m| (m.position, m.reason.clone())).collect();
            assert_eq!(
                got,
                vec![
                    (RowPosition::Line(3), MalformedReason::TooFewFields { found: 1, needed: 2 }),
                    (RowPosition::Line(4), MalformedReason::EmptyKey),
                    (
                        RowPosition::Line(5),
                        MalformedReason::BadDate {
                            column: "last_modified_date".into(),
                            value: "yesterday".into()
                        }
                    ),
                    (RowPosition::Line(6), MalformedReason::EmptyBucket),
                    (RowPosition::Line(7), MalformedReason::BadUtf8 { column: "key".into() }),
                ]
            );
            assert_eq!(bad[0].object, location.uri());
            assert_eq!(
                bad[2].to_string(),
                format!(
                    "malformed row in {location} at line 5: unparseable date in column 'last_modified_date': 'yesterday'"
                )
            );
            let good = items
                .iter()
                .filter(|i| {
                    !matches!(i, Ok(earthcatalog_common::inventory::InventoryRecord::Malformed(_)))
                })
                .count();
            assert_eq!(good, 2);
        }
    }

    #[tokio::test]
    async fn a_header_without_a_key_column_is_an_error_naming_the_object() {
        let stores = stores();
        let r = roots("csv-nokey");
        for root in &r.roots {
            let location = root.join("nokey.csv");
            put(&stores, &location, "bucket,size\nb,1\n").await;
            let items = collect(open(&stores, &location, &OpenOptions::default())).await;
            assert_eq!(items.len(), 1);
            let err = items.into_iter().next().unwrap().unwrap_err();
            assert!(
                matches!(err, InventoryError::MissingColumn { ref column, .. } if column == "key")
            );
            assert_eq!(
                err.to_string(),
                format!("inventory {location} has no 'key' column (columns: bucket, size)")
            );
        }
    }

    #[tokio::test]
    async fn a_header_without_a_bucket_column_is_an_error_naming_the_column_and_the_object() {
        let stores = stores();
        let r = roots("csv-nobucket");
        let text = "key,size,last_modified_date\n\
                a/one.stac.json,10,2024-01-31T10:00:00Z\n\
                a/two.stac.json,11,2024-01-31T10:00:00Z\n";
        for root in &r.roots {
            for name in ["nobucket.csv", "nobucket.csv.gz"] {
                let location = root.join(name);
                let bytes = match name.ends_with(".gz") {
                    true => gzip(text.as_bytes()).await,
                    false => text.as_bytes().to_vec(),
                };
                put(&stores, &location, bytes).await;
                let items = collect(open(&stores, &location, &OpenOptions::default())).await;
                assert_eq!(items.len(), 1, "the header is not read as a data row: {location}");
                let err = items.into_iter().next().unwrap().unwrap_err();
                assert!(
                    matches!(err, InventoryError::MissingColumn { ref column, .. } if column == "bucket"),
                    "{err}"
                );
                assert_eq!(
                    err.to_string(),
                    format!(
                        "inventory {location} has no 'bucket' column (columns: key, size, last_modified_date)"
                    )
                );
            }
        }
    }

    #[tokio::test]
    async fn a_missing_object_is_an_error_naming_it() {
        let stores = stores();
        let r = roots("csv-missing");
        for root in &r.roots {
            for name in ["absent.csv", "absent.csv.gz"] {
                let location: Location = root.join(name);
                let items = collect(open(&stores, &location, &OpenOptions::default())).await;
                assert_eq!(items.len(), 1);
                let err = items.into_iter().next().unwrap().unwrap_err();
                assert!(matches!(err, InventoryError::Fetch { .. }), "{err}");
                assert!(
                    err.to_string().starts_with(&format!("cannot read inventory {location}: "))
                );
            }
        }
    }

    #[tokio::test]
    async fn a_corrupt_gzip_stream_is_an_error_naming_the_object() {
        let stores = stores();
        let r = roots("csv-corrupt-gz");
        let mut bytes = gzip(b"bucket,key\nb,one.stac.json\n").await;
        let mid = bytes.len() / 2;
        bytes.truncate(mid);
        for root in &r.roots {
            let location = root.join("cut.csv.gz");
            put(&stores, &location, bytes.clone()).await;
            let items = collect(open(&stores, &location, &OpenOptions::default())).await;
            let err = items.into_iter().find_map(Result::err).expect("an error");
            assert!(
                err.to_string().starts_with(&format!("cannot read inventory {location} near line")),
                "{err}"
            );
        }
    }
}
