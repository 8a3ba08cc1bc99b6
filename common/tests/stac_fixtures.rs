//! The STAC transform on every real item in `tests/data/stac/` (see its SOURCES.md).
//!
//! Each item must become a row in which nothing is lost: every property is either in its typed
//! column (same value, timestamps as the same instant) or in `extra_properties`, and every
//! unknown top-level member is in `extra_fields`. Each item also gets H3 cells (every vertex's
//! cell among them) and reads back from the GeoParquet file of its rows.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use arrow::datatypes::Float64Type;
use earthcatalog_common::stac::datetime::parse_timestamp_micros;
use earthcatalog_common::stac::{Value, parse_item};
use serde_json::{Map, Value as Json};

fn fixtures() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/stac");
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".stac.json"))
        .map(|p| {
            (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    out
}

fn text(v: Option<&Value>) -> Option<String> {
    match v {
        Some(Value::Text(s)) => Some(s.clone()),
        _ => None,
    }
}

#[test]
fn every_real_fixture_becomes_a_row_that_loses_nothing() {
    let all = fixtures();
    assert_eq!(all.len(), 25);
    for (name, bytes) in all {
        let src: Json = serde_json::from_slice(&bytes).unwrap();
        let parsed = parse_item(&bytes).unwrap_or_else(|e| panic!("{name}: rejected: {e}"));
        let row = &parsed.row;
        assert_eq!(row.id(), src["id"].as_str().unwrap(), "{name}");
        assert!(!row.wkb().is_empty(), "{name}");

        let props = src["properties"].as_object().unwrap();
        let extra: Map<String, Json> = text(row.get_by_name("extra_properties"))
            .map(|s| serde_json::from_str(&s).unwrap())
            .unwrap_or_default();
        for (key, value) in props {
            match row.get_by_name(key) {
                Some(Value::Micros(us)) => {
                    assert_eq!(
                        Some(*us),
                        parse_timestamp_micros(value.as_str().unwrap()),
                        "{name}.{key}"
                    )
                }
                Some(Value::Text(s)) => match value {
                    Json::String(v) => assert_eq!(s, v, "{name}.{key}"),
                    other => assert_eq!(s, &other.to_string(), "{name}.{key}"),
                },
                Some(Value::Long(n)) => {
                    assert_eq!(*n as f64, value.as_f64().unwrap(), "{name}.{key}")
                }
                Some(Value::Double(x)) => assert_eq!(*x, value.as_f64().unwrap(), "{name}.{key}"),
                Some(Value::Null) => assert!(value.is_null(), "{name}.{key} lost"),
                Some(other) => panic!("{name}.{key}: unexpected {other:?}"),
                None => assert_eq!(
                    extra.get(key),
                    Some(value),
                    "{name}.{key} must be in extra_properties"
                ),
            }
        }
        for key in extra.keys() {
            assert!(props.contains_key(key), "{name}: invented extra property {key}");
        }
        // JSON text columns hold the source values exactly (numbers and key order kept).
        for key in ["assets", "links", "stac_extensions", "bbox"] {
            let col = text(row.get_by_name(key)).map(|s| serde_json::from_str::<Json>(&s).unwrap());
            assert_eq!(col.as_ref(), src.get(key).filter(|v| !v.is_null()), "{name}.{key}");
        }
    }
}

#[test]
fn fixture_specific_rules_hold() {
    let get = |file: &str| {
        let all = fixtures();
        let (_, bytes) = all.into_iter().find(|(n, _)| n == file).unwrap();
        parse_item(&bytes).unwrap().row
    };
    // No timezone at all: taken as UTC (documented), not rejected.
    let naive = get("0fbe7681-e8d4-4480-bd45-eb008c59f72d.stac.json");
    assert_eq!(naive.datetime_micros(), parse_timestamp_micros("2025-11-13T01:18:44.291467Z"));
    // Null datetime with start/end: kept, datetime null (goes to the null-year folder).
    let lulc = get("60V-2023.stac.json");
    assert_eq!(lulc.datetime_micros(), None);
    assert!(matches!(lulc.get_by_name("start_datetime"), Some(Value::Micros(_))));
    // Pre-1.0 item with `collection` inside properties.
    let beta = get("LC08_L2SR_081119_20200101_20200823_02_T2.stac.json");
    assert!(matches!(beta.get_by_name("collection"), Some(Value::Text(_))));
    assert!(text(beta.get_by_name("extra_fields")).unwrap().contains("description"));
    // 3-D bbox is kept as given (6 numbers).
    let lidar = get("USGS_LPC_UT_StatewideSouth_2020_A20_12SUH7021.stac.json");
    let bbox: Vec<f64> = serde_json::from_str(&text(lidar.get_by_name("bbox")).unwrap()).unwrap();
    assert_eq!(bbox.len(), 6);
    // "+00:00" offsets (ITS_LIVE mosaics) parse to the same instant as "Z".
    let mosaic = get("RGI05A_STATIC.stac.json");
    assert_eq!(mosaic.datetime_micros(), parse_timestamp_micros("2024-12-31T00:00:00Z"));
    // MultiPolygons are kept whole.
    let maxar = get("17_031331303020_10300100DB064000.stac.json");
    assert_eq!(&maxar.wkb()[0..5], &[1, 6, 0, 0, 0]);
    // The covering bbox comes from the geometry.
    let dem = get("Copernicus_DSM_COG_10_S90_00_W180_00_DEM.stac.json");
    let b = dem.geometry_bbox().unwrap();
    assert!(b[1] <= -89.99 && b[0] <= -180.0);
}

/// The H3 cell of a position, longitudes past ±180 brought back.
fn cell_at(lon: f64, lat: f64, res: h3o::Resolution) -> String {
    let lon = if lon.abs() > 180.0 { lon - 360.0 * (lon / 360.0).round() } else { lon };
    h3o::LatLng::new(lat, lon).unwrap().to_cell(res).to_string()
}

#[tokio::test]
async fn every_real_fixture_gets_h3_cells_and_reads_back_from_its_geoparquet_file() {
    use arrow::array::AsArray;
    use earthcatalog_common::fanout::fan_out;
    use earthcatalog_common::geoparquet::{WriterOptions, write_rows};
    use earthcatalog_common::location::Location;
    use earthcatalog_common::partition::{H3Partitioner, Partitioner};
    use earthcatalog_common::stores::{S3Settings, Stores};
    use geo::CoordsIter;
    use object_store::ObjectStoreExt;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    let stores = Stores::new(S3Settings::default());
    let all = fixtures();
    assert_eq!(all.len(), 25);
    for res in [1u8, 3] {
        let h3 = H3Partitioner::new(res).unwrap();
        let resolution = h3o::Resolution::try_from(res).unwrap();
        for (name, bytes) in &all {
            let parsed = parse_item(bytes).unwrap();
            let cells = h3.cells(&parsed.geometry).unwrap_or_else(|e| panic!("{name}: {e}"));
            // Every vertex lies in a cell of the cover.
            for c in parsed.geometry.coords_iter() {
                let cell = cell_at(c.x, c.y, resolution);
                assert!(cells.contains(&cell), "{name} at {res}: vertex {c:?} in {cell} missed");
            }

            let rows = fan_out(parsed.row.clone(), &cells);
            assert_eq!(rows.len(), cells.len(), "{name}: one row per cell");
            let loc = Location::parse(&format!("memory://fixtures/r{res}/{name}.parquet")).unwrap();
            let (_, size) =
                write_rows(&stores, &loc, &rows, &WriterOptions::default()).await.unwrap();
            let o = stores.resolve(&loc).unwrap();
            let file = o.store.get(&o.path).await.unwrap().bytes().await.unwrap();
            assert_eq!(file.len() as u64, size, "{name}");
            let reader = ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap();
            let batches: Vec<_> = reader.collect::<Result<_, _>>().unwrap();
            let batch = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
            assert_eq!(batch.num_rows(), cells.len(), "{name}");
            let ids = batch.column_by_name("id").unwrap().as_string::<i32>();
            assert!(ids.iter().all(|id| id == Some(parsed.row.id())), "{name}");
            let keys: Vec<&str> = batch
                .column_by_name("grid_partition")
                .unwrap()
                .as_string::<i32>()
                .iter()
                .map(Option::unwrap)
                .collect();
            assert_eq!(keys, cells, "{name}: the cells, in order");
            let wkb = batch.column_by_name("geometry").unwrap().as_binary::<i32>();
            assert_eq!(wkb.value(0), parsed.row.wkb(), "{name}: geometry as written");
            let cover = batch.column_by_name("geometry_bbox").unwrap().as_struct();
            let bbox = parsed.row.geometry_bbox().unwrap();
            for (k, part) in ["xmin", "ymin", "xmax", "ymax"].iter().enumerate() {
                let v = cover.column_by_name(part).unwrap().as_primitive::<Float64Type>().value(0);
                assert_eq!(v, bbox[k], "{name}.geometry_bbox.{part}");
            }
        }
    }
}
