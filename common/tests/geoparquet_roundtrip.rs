//! GeoParquet files written by the data path, read back with the parquet crate.

#![allow(clippy::unwrap_used)]

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float64Type, Int64Type, TimestampMicrosecondType};
use earthcatalog_common::fanout::{Groups, fan_out};
use earthcatalog_common::geoparquet::{FileNamer, WriterOptions, write_partition};
use earthcatalog_common::ids::RunId;
use earthcatalog_common::location::Location;
use earthcatalog_common::sample::itslive_item;
use earthcatalog_common::schema;
use earthcatalog_common::stac::parse_item_value;
use earthcatalog_common::stores::{S3Settings, Stores};
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

fn groups(n: u64, cells: &[&str]) -> Groups {
    let mut g = Groups::new();
    for i in 0..n {
        let parsed = parse_item_value(&itslive_item(i)).unwrap();
        let cells: Vec<String> = cells.iter().map(|c| c.to_string()).collect();
        g.extend(fan_out(parsed.row, &cells));
    }
    g
}

async fn read_back(
    stores: &Stores,
    loc: &Location,
) -> (parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder<bytes::Bytes>, bytes::Bytes) {
    let o = stores.resolve(loc).unwrap();
    let bytes = o.store.get(&o.path).await.unwrap().bytes().await.unwrap();
    (ParquetRecordBatchReaderBuilder::try_new(bytes.clone()).unwrap(), bytes)
}

#[tokio::test]
async fn every_group_becomes_one_file_with_the_fixed_schema_and_geo_metadata() {
    let stores = Stores::new(S3Settings::default());
    let root = Location::parse("memory://wh/warehouse").unwrap();
    let namer = FileNamer::new(RunId::from_string("run1"), "w0");
    let g = groups(300, &["81067ffffffffff", "8106fffffffffff"]);
    assert_eq!(g.row_count(), 600);
    let mut total = 0;
    for (part, rows) in g.into_sorted() {
        let f = write_partition(&stores, &root, &part, &rows, &namer, &WriterOptions::default())
            .await
            .unwrap();
        assert!(
            f.location
                .to_string()
                .starts_with(&format!("memory://wh/warehouse/{}/run1_w0_", part.hive_dir()))
        );
        let (builder, _) = read_back(&stores, &f.location).await;
        // Same columns, same types, whatever the items held.
        let file_schema = builder.schema().clone();
        assert_eq!(file_schema.fields().len(), schema::COLUMNS.len());
        for (field, col) in file_schema.fields().iter().zip(schema::COLUMNS) {
            assert_eq!(field.name(), col.name);
            assert_eq!(field.data_type(), &schema::arrow_type(col.kind), "{}", col.name);
        }
        let kv = builder.metadata().file_metadata().key_value_metadata().unwrap();
        let geo = kv.iter().find(|k| k.key == "geo").and_then(|k| k.value.clone()).unwrap();
        let geo: serde_json::Value = serde_json::from_str(&geo).unwrap();
        assert_eq!(geo["version"], "1.1.0");
        assert_eq!(geo["columns"]["geometry"]["encoding"], "WKB");
        assert_eq!(geo["columns"]["geometry"]["geometry_types"], serde_json::json!(["Polygon"]));
        assert_eq!(
            geo["columns"]["geometry"]["covering"]["bbox"]["xmin"],
            serde_json::json!(["geometry_bbox", "xmin"])
        );
        assert!(kv.iter().any(|k| k.key == "stac-geoparquet"));

        let batches: Vec<_> = builder.build().unwrap().collect::<Result<_, _>>().unwrap();
        let rows_read: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows_read, rows.len());
        total += rows_read;
        let b = &batches[0];
        let cells = b.column_by_name("grid_partition").unwrap().as_string::<i32>();
        assert!(cells.iter().all(|c| c == Some(part.cell.as_str())));
        let years: Vec<i32> = b
            .column_by_name("datetime")
            .unwrap()
            .as_primitive::<TimestampMicrosecondType>()
            .iter()
            .map(|us| earthcatalog_common::stac::datetime::utc_year(us.unwrap()).unwrap())
            .collect();
        assert!(
            years.iter().all(|y| Some(*y) == part.year),
            "year folder, partition and data agree"
        );
        let dt = b.column_by_name("date_dt").unwrap().as_primitive::<Int64Type>();
        assert_eq!(dt.null_count(), 0);
        let cover = b.column_by_name("geometry_bbox").unwrap().as_struct();
        let xmin = cover.column(0).as_primitive::<Float64Type>();
        assert_eq!(xmin.null_count(), 0);
    }
    assert_eq!(total, 600);
}

#[tokio::test]
async fn column_statistics_are_written_for_bounds_but_not_for_geometry_or_json() {
    let stores = Stores::new(S3Settings::default());
    let dir = tempfile::tempdir().unwrap();
    let root = Location::local(dir.path()).unwrap();
    let namer = FileNamer::new(RunId::new(), "stats");
    let mut g = groups(50, &["8106fffffffffff"]).into_sorted();
    let (part, rows) = g.remove(0);
    let f = write_partition(&stores, &root, &part, &rows, &namer, &WriterOptions::default())
        .await
        .unwrap();
    assert!(f.location.as_local_path().unwrap().is_file());
    let meta = f.footer.metadata();
    let rg = meta.row_group(0);
    let stats = |name: &str| {
        let i = rg.columns().iter().position(|c| c.column_path().string() == name).unwrap();
        rg.column(i).statistics().cloned()
    };
    assert!(stats("id").is_some_and(|s| s.min_bytes_opt().is_some()));
    assert!(stats("datetime").is_some_and(|s| s.min_bytes_opt().is_some()));
    assert!(stats("grid_partition").is_some_and(|s| s.min_bytes_opt() == s.max_bytes_opt()));
    assert!(stats("geometry").is_none_or(|s| s.min_bytes_opt().is_none()));
    assert!(stats("assets").is_none_or(|s| s.min_bytes_opt().is_none()));
}

#[tokio::test]
async fn large_files_are_split_into_row_groups() {
    let stores = Stores::new(S3Settings::default());
    let root = Location::parse("memory://rg/wh").unwrap();
    let namer = FileNamer::new(RunId::new(), "rg");
    let mut g = groups(250, &["8106fffffffffff"]).into_sorted();
    let (part, rows) = g.remove(0);
    let opts = WriterOptions { row_group_rows: 100, ..Default::default() };
    let rows: Vec<_> = rows.into_iter().collect();
    let f = write_partition(&stores, &root, &part, &rows, &namer, &opts).await.unwrap();
    let sizes: Vec<i64> = f.footer.metadata().row_groups().iter().map(|r| r.num_rows()).collect();
    assert_eq!(sizes.iter().sum::<i64>() as usize, rows.len());
    assert!(sizes.iter().all(|n| *n <= 100));
    // The footer kept for registration has no page indexes (registration does not read them).
    assert!(f.footer.metadata().column_index().is_none());
}

#[tokio::test]
async fn small_files_use_snappy_and_large_ones_zstd() {
    use parquet::basic::Compression;
    let stores = Stores::new(S3Settings::default());
    let root = Location::parse("memory://codec/wh").unwrap();
    let namer = FileNamer::new(RunId::new(), "codec");
    let mut g = groups(40, &["8106fffffffffff"]).into_sorted();
    let (part, rows) = g.remove(0);
    let small = write_partition(&stores, &root, &part, &rows, &namer, &WriterOptions::default())
        .await
        .unwrap();
    assert_eq!(small.footer.metadata().row_group(0).column(0).compression(), Compression::SNAPPY);
    let opts = WriterOptions { zstd_min_rows: 1, ..Default::default() };
    let large = write_partition(&stores, &root, &part, &rows, &namer, &opts).await.unwrap();
    assert!(matches!(
        large.footer.metadata().row_group(0).column(0).compression(),
        Compression::ZSTD(_)
    ));
}

#[tokio::test]
async fn the_zstd_threshold_counts_rows_and_zero_means_always_zstd() {
    use parquet::basic::{Compression, ZstdLevel};
    let stores = Stores::new(S3Settings::default());
    let root = Location::parse("memory://threshold/wh").unwrap();
    let namer = FileNamer::new(RunId::new(), "threshold");
    let (part, rows) = groups(100, &["8106fffffffffff"]).into_sorted().remove(0);
    let codecs = |f: &earthcatalog_common::geoparquet::WrittenFile| -> Vec<Compression> {
        f.footer.metadata().row_group(0).columns().iter().map(|c| c.compression()).collect()
    };
    // A Parquet footer names the codec, not its level.
    let is_zstd = |c: &Compression| matches!(c, Compression::ZSTD(_));
    // The first (cell, year) group of the sample: a few dozen rows.
    let n = rows.len();
    assert!(n > 2, "{n} rows");
    let at_n = WriterOptions { zstd_min_rows: n, ..Default::default() };
    let f = write_partition(&stores, &root, &part, &rows, &namer, &at_n).await.unwrap();
    assert!(codecs(&f).iter().all(is_zstd), "{n} rows at a threshold of {n}");
    let f = write_partition(&stores, &root, &part, &rows[..n - 1], &namer, &at_n).await.unwrap();
    assert!(codecs(&f).iter().all(|c| *c == Compression::SNAPPY), "{} rows", n - 1);
    let always = WriterOptions { zstd_min_rows: 0, zstd_level: 1, ..Default::default() };
    let f = write_partition(&stores, &root, &part, &rows[..1], &namer, &always).await.unwrap();
    assert!(codecs(&f).iter().all(is_zstd), "one row, zstd_min_rows 0");
    let zstd3 = Compression::ZSTD(ZstdLevel::try_new(3).unwrap());
    assert_eq!(WriterOptions::default().compression(2_047), Compression::SNAPPY);
    assert_eq!(WriterOptions::default().compression(2_048), zstd3);
    assert_eq!(always.compression(0), Compression::ZSTD(ZstdLevel::try_new(1).unwrap()));
}

#[tokio::test]
async fn small_files_have_chunk_statistics_but_no_page_index_or_dictionary_and_large_ones_have_both()
 {
    use parquet::basic::Encoding;
    use parquet::file::metadata::{PageIndexPolicy, ParquetMetaDataReader};
    let stores = Stores::new(S3Settings::default());
    let root = Location::parse("memory://small/wh").unwrap();
    let namer = FileNamer::new(RunId::new(), "small");
    let (part, rows) = groups(40, &["8106fffffffffff"]).into_sorted().remove(0);
    let read = |options: WriterOptions| {
        let (stores, root, part, rows, namer) = (&stores, &root, &part, &rows, &namer);
        async move {
            let f = write_partition(stores, root, part, rows, namer, &options).await.unwrap();
            let (_, bytes) = read_back(stores, &f.location).await;
            ParquetMetaDataReader::new()
                .with_page_index_policy(PageIndexPolicy::Optional)
                .parse_and_finish(&bytes)
                .unwrap()
        }
    };
    let column = |meta: &parquet::file::metadata::ParquetMetaData, name: &str| {
        let rg = meta.row_group(0);
        let i = rg.columns().iter().position(|c| c.column_path().string() == name).unwrap();
        (rg.column(i).clone(), i)
    };
    let small = read(WriterOptions::default()).await;
    let (platform, _) = column(&small, "platform");
    assert!(platform.statistics().is_some_and(|s| s.min_bytes_opt().is_some()));
    assert!(!platform.encodings().any(|e| e == Encoding::RLE_DICTIONARY));
    assert!(small.column_index().is_none() && small.offset_index().is_none());

    let large = read(WriterOptions { small_file_rows: 1, ..Default::default() }).await;
    let (platform, i) = column(&large, "platform");
    assert!(platform.statistics().is_some_and(|s| s.min_bytes_opt().is_some()));
    assert!(platform.encodings().any(|e| e == Encoding::RLE_DICTIONARY));
    assert!(large.offset_index().is_some_and(|o| !o[0][i].page_locations().is_empty()));
    assert!(large.column_index().is_some());
}
