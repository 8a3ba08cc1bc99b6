//! Every number of an item comes back from its GeoParquet file with the value and spelling of
//! the source: in the WKB geometry, in `bbox`, `assets` and `extra_properties`.
//!
//! The source's numbers are read from its text and parsed by the standard library (correctly
//! rounded), not by the JSON parser under test. The real fixtures of `tests/data/stac/` hold
//! numbers that a fast approximate float parser reads one unit in the last place off, and
//! spellings (`2.75e-05`) that re-serialising changes; one generated item holds the reported
//! case `49.184200486300604` in every place a number can be.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use arrow::array::{Array, AsArray, RecordBatch};
use earthcatalog_common::fanout::fan_out;
use earthcatalog_common::geoparquet::{WriterOptions, write_rows};
use earthcatalog_common::location::Location;
use earthcatalog_common::stac::parse_item;
use earthcatalog_common::stores::{S3Settings, Stores};
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::value::RawValue;

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

/// An item whose numbers a fast float parser reads one unit in the last place off
/// (`49.184200486300604` → `49.18420048630061`), spelled in several ways.
fn one_ulp_item() -> Vec<u8> {
    let n = "49.184200486300604";
    format!(
        r#"{{"type": "Feature", "stac_version": "1.0.0", "id": "ulp", "collection": "c",
        "bbox": [-120.79521679830417, {n}, -119.5, 50.0000000000000071],
        "geometry": {{"type": "Polygon", "coordinates": [[[-120.79521679830417, {n}],
            [-119.5, {n}], [-119.5, 50.0000000000000071], [-120.79521679830417, {n}]]]}},
        "properties": {{"datetime": "2020-01-01T00:00:00Z", "sun_elevation": {n},
            "scale": 2.75e-05, "offset": -2E+2, "ratio": 1.50, "nested": {{"a": [{n}, 1e-7]}}}},
        "links": [], "assets": {{"b": {{"href": "x", "raster:bands": [{{"scale": 2.75e-05,
            "offset": {n}}}]}}}}}}"#
    )
    .into_bytes()
}

/// The number tokens of JSON text, in order (strings skipped).
fn numbers(text: &str) -> Vec<String> {
    let (mut out, mut current) = (Vec::new(), String::new());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        } else if c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E') {
            current.push(c);
        } else if !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The (lon, lat) of every position of a GeoJSON geometry's text, parsed by the standard
/// library; a third number (height) is left out, as the table does.
fn positions(geometry: &str) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    let mut open: Vec<Vec<String>> = Vec::new();
    let (mut in_string, mut escaped, mut token) = (false, false, String::new());
    for c in geometry.chars() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        if c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E') {
            token.push(c);
            continue;
        }
        if !token.is_empty()
            && let Some(array) = open.last_mut()
        {
            array.push(std::mem::take(&mut token));
        }
        match c {
            '"' => in_string = true,
            '[' => open.push(Vec::new()),
            ']' => {
                let array = open.pop().unwrap();
                if array.len() >= 2 {
                    out.push((array[0].parse().unwrap(), array[1].parse().unwrap()));
                }
            }
            _ => {}
        }
    }
    out
}

/// Every (x, y) of little-endian ISO WKB, in order.
fn wkb_positions(wkb: &[u8]) -> Vec<(f64, f64)> {
    fn u32_at(b: &[u8], at: &mut usize) -> u32 {
        let v = u32::from_le_bytes(b[*at..*at + 4].try_into().unwrap());
        *at += 4;
        v
    }
    fn f64_at(b: &[u8], at: &mut usize) -> f64 {
        let v = f64::from_le_bytes(b[*at..*at + 8].try_into().unwrap());
        *at += 8;
        v
    }
    fn points(b: &[u8], at: &mut usize, n: u32, out: &mut Vec<(f64, f64)>) {
        for _ in 0..n {
            let x = f64_at(b, at);
            out.push((x, f64_at(b, at)));
        }
    }
    fn geometry(b: &[u8], at: &mut usize, out: &mut Vec<(f64, f64)>) {
        assert_eq!(b[*at], 1, "little-endian");
        *at += 1;
        match u32_at(b, at) {
            1 => points(b, at, 1, out),
            2 => {
                let n = u32_at(b, at);
                points(b, at, n, out);
            }
            3 => {
                for _ in 0..u32_at(b, at) {
                    let n = u32_at(b, at);
                    points(b, at, n, out);
                }
            }
            4..=7 => {
                for _ in 0..u32_at(b, at) {
                    geometry(b, at, out);
                }
            }
            other => panic!("WKB type {other}"),
        }
    }
    let (mut at, mut out) = (0, Vec::new());
    geometry(wkb, &mut at, &mut out);
    assert_eq!(at, wkb.len());
    out
}

/// The item's rows written to a GeoParquet file and read back.
async fn written(bytes: &[u8], name: &str) -> RecordBatch {
    let stores = Stores::new(S3Settings::default());
    let parsed = parse_item(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    let rows = fan_out(parsed.row, &["cell".to_string()]);
    let loc = Location::parse(&format!("memory://numbers/{name}.parquet")).unwrap();
    write_rows(&stores, &loc, &rows, &WriterOptions::default()).await.unwrap();
    let o = stores.resolve(&loc).unwrap();
    let file = o.store.get(&o.path).await.unwrap().bytes().await.unwrap();
    let mut reader = ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap();
    reader.next().unwrap().unwrap()
}

fn text_column<'a>(batch: &'a RecordBatch, name: &str) -> Option<&'a str> {
    let col = batch.column_by_name(name).unwrap().as_string::<i32>();
    col.is_valid(0).then(|| col.value(0))
}

/// Checks one item; returns how many numbers were compared.
async fn check(name: &str, bytes: &[u8]) -> usize {
    let src: BTreeMap<String, Box<RawValue>> = serde_json::from_slice(bytes).unwrap();
    let batch = written(bytes, name).await;
    let mut compared = 0;

    let expected = positions(src["geometry"].get());
    let wkb = batch.column_by_name("geometry").unwrap().as_binary::<i32>().value(0);
    let got = wkb_positions(wkb);
    assert_eq!(got.len(), expected.len(), "{name}: positions");
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert!(
            g.0.to_bits() == e.0.to_bits() && g.1.to_bits() == e.1.to_bits(),
            "{name}: geometry position {i} is {g:?}, the source says {e:?}"
        );
    }
    compared += 2 * got.len();

    for key in ["bbox", "assets"] {
        let Some(raw) = src.get(key) else { continue };
        let stored = text_column(&batch, key).unwrap_or_else(|| panic!("{name}.{key} missing"));
        assert_eq!(numbers(stored), numbers(raw.get()), "{name}.{key}");
        compared += numbers(stored).len();
    }

    let props: BTreeMap<String, Box<RawValue>> =
        serde_json::from_str(src["properties"].get()).unwrap();
    if let Some(extras) = text_column(&batch, "extra_properties") {
        let extras: BTreeMap<String, Box<RawValue>> = serde_json::from_str(extras).unwrap();
        for (key, stored) in &extras {
            let source = props[key].get();
            assert_eq!(numbers(stored.get()), numbers(source), "{name}.properties.{key}");
            compared += numbers(source).len();
        }
    }
    compared
}

#[tokio::test]
async fn every_number_of_the_real_fixtures_keeps_its_value_and_spelling() {
    let all = fixtures();
    assert_eq!(all.len(), 25);
    let mut compared = 0;
    for (name, bytes) in &all {
        compared += check(name, bytes).await;
    }
    assert!(compared > 3_000, "only {compared} numbers compared");
}

#[tokio::test]
async fn a_number_a_fast_parser_reads_one_ulp_off_keeps_its_value_everywhere() {
    let compared = check("one-ulp", &one_ulp_item()).await;
    assert!(compared >= 20, "{compared}");
    // The reported case, spelled out.
    let batch = written(&one_ulp_item(), "one-ulp-spelled").await;
    let bbox = text_column(&batch, "bbox").unwrap();
    assert_eq!(bbox, "[-120.79521679830417,49.184200486300604,-119.5,50.0000000000000071]");
    let extras = text_column(&batch, "extra_properties").unwrap();
    assert!(extras.contains(r#""scale":2.75e-05,"offset":-2E+2,"ratio":1.50"#), "{extras}");
}
