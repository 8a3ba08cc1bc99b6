//! AWS S3 Inventory manifests whose destination bucket is mapped to memory:// or file://.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod inventory_support;

/// Named so that `cargo test inventory` selects these tests.
mod inventory_manifest {
    use std::sync::Arc;

    use crate::inventory_support::*;
    use arrow_array::{ArrayRef, StringArray, TimestampMillisecondArray};
    use earthcatalog_common::inventory::manifest::{self, DataFormat};
    use earthcatalog_common::inventory::{InventoryError, InventoryFormat, OpenOptions, open};
    use earthcatalog_common::location::Location;
    use earthcatalog_common::stores::{S3Settings, Stores};

    fn mapped(bucket: &str, mirror: &Location) -> Arc<Stores> {
        Arc::new(Stores::new(S3Settings::default()).with_source(bucket, mirror.clone()))
    }

    fn keys_parquet(keys: &[&str], millis: i64) -> Vec<u8> {
        let n = keys.len();
        let bucket: ArrayRef = Arc::new(StringArray::from(vec!["example-source-bucket"; n]));
        let key: ArrayRef = Arc::new(StringArray::from(keys.to_vec()));
        let dates: ArrayRef = Arc::new(TimestampMillisecondArray::from(vec![millis; n]));
        parquet_bytes(vec![("bucket", bucket), ("key", key), ("last_modified_date", dates)], 1024)
    }

    #[tokio::test]
    async fn the_aws_parquet_manifest_reads_its_data_file_from_the_mapped_destination_bucket() {
        let r = roots("manifest-parquet");
        let data_key =
            "inventory/example-source-bucket/data/d754c470-85bb-4255-9218-47023c8b4910.parquet";
        for root in &r.roots {
            let stores = mapped("example-destination-bucket", &root.join("dest"));
            put(
                &stores,
                &root.join("dest").join(data_key),
                keys_parquet(&["a.stac.json", "b.nc"], 1_514_944_800_000),
            )
            .await;
            let location = root.join("inv/2018-01-03T00-00Z/manifest.json");
            assert_eq!(InventoryFormat::of(&location), InventoryFormat::Manifest);
            let data = keys_parquet(&["a.stac.json", "b.nc"], 1_514_944_800_000);
            put(&stores, &location, listing(&fixture("aws-docs_manifest_parquet.json"), &data))
                .await;
            let got = entries(open(&stores, &location, &OpenOptions::default())).await;
            assert_eq!(
                pairs(&got),
                vec![
                    ("example-source-bucket".into(), "a.stac.json".into()),
                    ("example-source-bucket".into(), "b.nc".into())
                ],
                "{root}"
            );
            assert_eq!(got[0].last_modified, Some(utc("2018-01-03T02:00:00Z")));
        }
    }

    #[tokio::test]
    async fn data_files_are_read_in_the_listed_order_and_a_missing_one_is_named_without_stopping_the_rest()
     {
        let r = roots("manifest-order");
        let json = r#"{"destinationBucket": "arn:aws:s3:::dest", "fileFormat": "Parquet",
        "files": [{"key": "d/2.parquet"}, {"key": "d/missing.parquet"}, {"key": "d/1.parquet"}]}"#;
        for root in &r.roots {
            let stores = mapped("dest", &root.join("mirror"));
            put(&stores, &root.join("mirror/d/1.parquet"), keys_parquet(&["one.stac.json"], 0))
                .await;
            put(&stores, &root.join("mirror/d/2.parquet"), keys_parquet(&["two.stac.json"], 0))
                .await;
            let location = root.join("manifest.json");
            put(&stores, &location, json).await;
            let items = collect(open(&stores, &location, &OpenOptions::default())).await;
            assert_eq!(items.len(), 3);
            assert!(
                matches!(&items[0], Ok(earthcatalog_common::inventory::InventoryRecord::Entry(e)) if e.key == "two.stac.json")
            );
            let err = items[1].as_ref().unwrap_err();
            assert!(
                err.to_string().starts_with(&format!(
                    "cannot read inventory {}: ",
                    root.join("mirror/d/missing.parquet")
                )),
                "{err}"
            );
            assert!(
                matches!(&items[2], Ok(earthcatalog_common::inventory::InventoryRecord::Entry(e)) if e.key == "one.stac.json")
            );
        }
    }

    #[tokio::test]
    async fn a_csv_manifest_reads_headerless_gzip_data_files_with_its_file_schema() {
        let r = roots("manifest-csv");
        let data_key = "Inventory/example-source-bucket/2016-11-06T21-32Z/files/939c6d46-85a9-4ba8-87bd-9db705a579ce.csv.gz";
        let rows = gzip(&fixture("orcabus-test_rows_20col_missing_fields.csv")).await;
        // The 18-field doc manifest and the 20-field one both put the date in column 6.
        for manifest_name in
            ["s3-manifest-crate_manifest_csv_acl_owner.json", "aws-docs_manifest_csv.json"]
        {
            let parsed = manifest::parse(&fixture(manifest_name), manifest_name).unwrap();
            assert_eq!(parsed.file_format, DataFormat::Csv);
            assert_eq!(
                parsed.destination_bucket.as_deref(),
                Some("example-inventory-destination-bucket")
            );
            assert!(parsed.file_schema.as_deref().unwrap().starts_with("Bucket, Key, VersionId, "));
            for root in &r.roots {
                let stores = mapped("example-inventory-destination-bucket", &root.join("dest"));
                put(&stores, &root.join("dest").join(data_key), rows.clone()).await;
                let location = root.join("inv/manifest.json");
                put(&stores, &location, listing(&fixture(manifest_name), &rows)).await;
                let got = entries(open(&stores, &location, &OpenOptions::default())).await;
                let keys: Vec<&str> = got.iter().map(|e| e.key.as_str()).collect();
                assert_eq!(
                    keys,
                    ["inventory_test/", "inventory_test/key1", "inventory_test/key2"],
                    "{manifest_name} in {root}"
                );
                assert!(got.iter().all(|e| e.bucket == "bucket"));
                assert_eq!(got[1].last_modified, Some(utc("2024-04-22T01:13:28Z")));
            }
        }
    }

    #[tokio::test]
    async fn a_data_file_whose_size_differs_from_the_listing_is_an_error_naming_both() {
        let r = roots("manifest-size");
        let data = keys_parquet(&["one.stac.json"], 0);
        let json = format!(
            r#"{{"destinationBucket": "arn:aws:s3:::dest", "fileFormat": "Parquet",
            "files": [{{"key": "d/short.parquet", "size": {}}}, {{"key": "d/ok.parquet", "size": {}}}]}}"#,
            data.len() + 100,
            data.len()
        );
        for root in &r.roots {
            let stores = mapped("dest", &root.join("mirror"));
            put(&stores, &root.join("mirror/d/short.parquet"), data.clone()).await;
            put(&stores, &root.join("mirror/d/ok.parquet"), data.clone()).await;
            let location = root.join("manifest.json");
            put(&stores, &location, json.clone()).await;
            let items = collect(open(&stores, &location, &OpenOptions::default())).await;
            assert_eq!(items.len(), 2, "the error, then the good file's row");
            let err = items[0].as_ref().unwrap_err().to_string();
            assert_eq!(
                err,
                format!(
                    "invalid manifest {location}: data file {} is {} bytes, the manifest lists {}: it was replaced or truncated after the manifest was written",
                    root.join("mirror/d/short.parquet"),
                    data.len(),
                    data.len() + 100
                )
            );
            assert!(items[1].is_ok());
        }
    }

    #[tokio::test]
    async fn an_orc_manifest_is_refused_naming_the_manifest() {
        let r = roots("manifest-orc");
        for root in &r.roots {
            let stores = stores();
            let location = root.join("orc/manifest.json");
            put(&stores, &location, fixture("aws-docs_manifest_orc.json")).await;
            let items = collect(open(&stores, &location, &OpenOptions::default())).await;
            assert_eq!(items.len(), 1);
            let err = items.into_iter().next().unwrap().unwrap_err();
            assert!(matches!(err, InventoryError::UnsupportedFormat { .. }));
            assert_eq!(
                err.to_string(),
                format!(
                    "manifest {location} declares fileFormat 'ORC', which is not supported (use CSV or Parquet)"
                )
            );
        }
    }

    #[tokio::test]
    async fn a_manifest_without_a_destination_bucket_reads_from_its_own_bucket() {
        let stores = stores();
        let root = Location::parse("memory://own-bucket").unwrap();
        put(&stores, &root.join("data/x.parquet"), keys_parquet(&["x.stac.json"], 0)).await;
        let location = root.join("inv/manifest.json");
        put(&stores, &location, r#"{"files": [{"key": "data/x.parquet"}]}"#).await;
        let got = entries(open(&stores, &location, &OpenOptions::default())).await;
        assert_eq!(pairs(&got), vec![("example-source-bucket".into(), "x.stac.json".into())]);
    }

    #[tokio::test]
    async fn manifest_json_that_cannot_be_read_is_an_error_naming_it() {
        let r = roots("manifest-bad");
        for root in &r.roots {
            let stores = stores();
            let location = root.join("bad/manifest.json");
            put(&stores, &location, "{\"files\": [").await;
            let err = collect(open(&stores, &location, &OpenOptions::default()))
                .await
                .remove(0)
                .unwrap_err();
            assert!(
                err.to_string().starts_with(&format!("invalid manifest {location}: ")),
                "{err}"
            );

            let missing = root.join("absent/manifest.json");
            let err = collect(open(&stores, &missing, &OpenOptions::default()))
                .await
                .remove(0)
                .unwrap_err();
            assert!(
                err.to_string().starts_with(&format!("cannot read inventory {missing}: ")),
                "{err}"
            );
        }
    }
}
