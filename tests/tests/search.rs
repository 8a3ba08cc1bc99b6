//! `earthcatalog search` against tables built by `earthcatalog incremental`, local and on S3:
//! random queries (points, boxes, polygons across the antimeridian and near the poles, datetime
//! instants and intervals, CQL2 on properties) give exactly the ids a brute-force check with
//! shapely over the source items finds, each once; and the real fixtures come back JSON-equal.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

use earthcatalog_common::location::Location;
use earthcatalog_tests::binaries::earthcatalog;
use earthcatalog_tests::ingest::{BUCKET, SampleItem, Samples};
use earthcatalog_tests::python::Python;
use earthcatalog_tests::s3::S3Server;
use serde_json::{Value, json};

/// Runs the CLI with `args` and `env`, and no S3 or earthcatalog settings from this process.
fn run(args: &[String], env: &[(String, String)]) -> Output {
    let mut cmd = Command::new(earthcatalog());
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") || k.starts_with("EARTHCATALOG_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd.env("RUST_LOG", "info").args(args).envs(env.iter().cloned()).output().unwrap();
    eprintln!("$ earthcatalog {}\n{}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    out
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// A small deterministic generator (tests must be repeatable).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 =
            self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next()
    }
    fn pick<'a>(&mut self, xs: &'a [&'a str]) -> &'a str {
        xs[(self.next() * xs.len() as f64) as usize % xs.len()]
    }
}

/// A lon wrapped into [-180, 180).
fn wrap(lon: f64) -> f64 {
    let l = (lon + 180.0).rem_euclid(360.0) - 180.0;
    (l * 1e4).round() / 1e4
}

/// A box footprint from (west, south) of the given size, written the short way across ±180.
fn box_ring(w: f64, s: f64, dx: f64, dy: f64) -> Value {
    let (w2, e2) = (wrap(w), wrap(w + dx));
    let n = (s + dy).min(89.9);
    json!([[[w2, s], [e2, s], [e2, n], [w2, n], [w2, s]]])
}

/// Items spread over the globe, with extra weight on the antimeridian and the polar caps.
fn random_items(n: usize, rng: &mut Rng) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let (lon, lat) = match i % 4 {
                0 => (rng.range(-180.0, 180.0), rng.range(-85.0, 85.0)),
                1 => (rng.range(176.0, 184.0), rng.range(-60.0, 60.0)),
                2 => (rng.range(-180.0, 180.0), rng.range(78.0, 89.0)),
                _ => (rng.range(-180.0, 180.0), rng.range(-89.0, -78.0)),
            };
            let geometry = if i % 7 == 0 {
                json!({"type": "Point", "coordinates": [wrap(lon), (lat * 1e4).round() / 1e4]})
            } else {
                json!({"type": "Polygon", "coordinates": box_ring(lon, lat, rng.range(0.2, 4.0), rng.range(0.2, 3.0))})
            };
            let year = 2015 + (i % 8) as i32;
            let day = 1 + (i % 27);
            let mut props = json!({
                "datetime": format!("{year}-{:02}-{day:02}T12:00:00Z", 1 + i % 12),
                "platform": rng.pick(&["LC08", "LC09", "S2A", "S2B"]),
                "percent_valid_pixels": (rng.next() * 100.0) as i64,
                "cloud": (rng.next() * 1000.0).round() / 10.0,
            });
            if i % 5 == 0 {
                // A range item: its datetime can lie outside the range's years.
                props["start_datetime"] = json!(format!("{}-03-01T00:00:00Z", year - 3));
                props["end_datetime"] = json!(format!("{}-06-30T00:00:00Z", year - 1));
            }
            json!({
                "type": "Feature", "stac_version": "1.1.0", "id": format!("item-{i:04}"),
                "collection": if i % 3 == 0 { "alpha" } else { "beta" },
                "geometry": geometry, "properties": props,
                "links": [], "assets": {"data": {"href": format!("s3://b/{i}.nc")}},
            })
        })
        .collect()
}

/// One query: the CLI flags and the same thing for the brute-force checker.
struct Query {
    args: Vec<String>,
    spec: Value,
}

fn random_queries(rng: &mut Rng) -> Vec<Query> {
    let mut qs = Vec::new();
    let bbox = |q: &mut Vec<Query>, b: [f64; 4]| {
        let text = b.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(",");
        q.push(Query { args: vec![format!("--bbox={text}")], spec: json!({"bbox": b}) });
    };
    // Fixed cases first: across the antimeridian, both polar caps, an empty area, the world.
    bbox(&mut qs, [178.0, -20.0, -178.0, 20.0]);
    bbox(&mut qs, [-180.0, 82.0, 180.0, 90.0]);
    bbox(&mut qs, [-180.0, -90.0, 180.0, -83.0]);
    bbox(&mut qs, [10.0, -0.01, 10.01, 0.0]);
    for _ in 0..8 {
        let (w, s) = (rng.range(-180.0, 170.0), rng.range(-90.0, 70.0));
        let b = [w, s, (w + rng.range(1.0, 40.0)).min(180.0), (s + rng.range(1.0, 20.0)).min(90.0)];
        bbox(&mut qs, b.map(|v| (v * 100.0).round() / 100.0));
    }
    for _ in 0..6 {
        let (lon, lat) = (rng.range(-180.0, 180.0), rng.range(-88.0, 85.0));
        let ring = box_ring(lon, lat, rng.range(2.0, 15.0), rng.range(2.0, 10.0));
        let g = json!({"type": "Polygon", "coordinates": ring});
        qs.push(Query { args: vec![format!("--intersects={g}")], spec: json!({"intersects": g}) });
    }
    // A polygon drawn across the antimeridian, and points.
    let g = json!({"type": "Polygon", "coordinates": box_ring(175.0, -30.0, 12.0, 60.0)});
    qs.push(Query { args: vec![format!("--intersects={g}")], spec: json!({"intersects": g}) });
    for _ in 0..3 {
        let g = json!({"type": "Point", "coordinates": [wrap(rng.range(-180.0, 180.0)), 0.0]});
        qs.push(Query { args: vec![format!("--intersects={g}")], spec: json!({"intersects": g}) });
    }
    // Datetime: an instant, closed and open intervals, with and without an area.
    for (dt, lo, hi) in [
        ("2017-03-04T12:00:00Z", Some("2017-03-04T12:00:00Z"), Some("2017-03-04T12:00:00Z")),
        (
            "2016-01-01T00:00:00Z/2016-12-31T23:59:59Z",
            Some("2016-01-01T00:00:00Z"),
            Some("2016-12-31T23:59:59Z"),
        ),
        ("../2015-06-30T00:00:00Z", None, Some("2015-06-30T00:00:00Z")),
        ("2021-07-01T00:00:00Z/..", Some("2021-07-01T00:00:00Z"), None),
    ] {
        qs.push(Query {
            args: vec![format!("--datetime={dt}")],
            spec: json!({"datetime": [lo, hi]}),
        });
        qs.push(Query {
            args: vec![format!("--datetime={dt}"), "--bbox=-180,-60,-30,60".into()],
            spec: json!({"datetime": [lo, hi], "bbox": [-180.0, -60.0, -30.0, 60.0]}),
        });
    }
    // CQL2 on properties (text and JSON), collections, ids.
    qs.push(Query {
        args: strings(&["--filter", "platform = 'LC08' AND percent_valid_pixels >= 50"]),
        spec: json!({"platform": "LC08", "pvp_min": 50}),
    });
    let cql_json = json!({"op": "and", "args": [
        {"op": "=", "args": [{"property": "platform"}, "S2B"]},
        {"op": ">=", "args": [{"property": "percent_valid_pixels"}, 30]}]});
    qs.push(Query {
        args: vec!["--filter".into(), cql_json.to_string(), "--bbox=0,0,180,90".into()],
        spec: json!({"platform": "S2B", "pvp_min": 30, "bbox": [0.0, 0.0, 180.0, 90.0]}),
    });
    // Filters that mix what Iceberg can decide on columns with what only cql2 can (an OR,
    // IN, a literal on the left, an untyped property, a fraction against a whole-number column).
    for (filter, expr) in [
        (
            "percent_valid_pixels < 30 OR platform IN ('LC09', 'S2A')",
            "p['percent_valid_pixels'] < 30 or p['platform'] in ('LC09', 'S2A')",
        ),
        (
            "80 > percent_valid_pixels AND cloud < 50.5",
            "80 > p['percent_valid_pixels'] and p['cloud'] < 50.5",
        ),
        ("properties.percent_valid_pixels >= 40.5", "p['percent_valid_pixels'] >= 40.5"),
        (
            "collection = 'alpha' AND platform <> 'S2B' AND NOT (percent_valid_pixels > 90)",
            "it['collection'] == 'alpha' and p['platform'] != 'S2B' and not p['percent_valid_pixels'] > 90",
        ),
    ] {
        qs.push(Query { args: strings(&["--filter", filter]), spec: json!({"expr": expr}) });
    }
    qs.push(Query {
        args: strings(&["--collections", "alpha"]),
        spec: json!({"collection": "alpha"}),
    });
    qs.push(Query {
        args: strings(&["--ids", "item-0001,item-0002,item-0404,nope"]),
        spec: json!({"ids": ["item-0001", "item-0002", "item-0404", "nope"]}),
    });
    qs
}

/// shapely over the source items: which ids each query must return. Footprints written
/// across ±180 are moved to 0..360 and the query is tried at -360, 0 and +360.
const BRUTE_FORCE: &str = r#"
import json, sys
from datetime import datetime
from shapely.geometry import shape, box
from shapely.affinity import translate

items = json.load(open(sys.argv[1])); queries = json.load(open(sys.argv[2]))

def unwrap(g):
    def fix(ring):
        lons = [p[0] for p in ring]
        if max(lons) - min(lons) > 180:
            return [[p[0] + 360 if p[0] < 0 else p[0], p[1]] for p in ring]
        return ring
    if g["type"] == "Polygon":
        g = {"type": "Polygon", "coordinates": [fix(r) for r in g["coordinates"]]}
    return shape(g)

def ts(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00")) if s else None

def area(q):
    if "bbox" in q:
        w, s, e, n = q["bbox"]
        return [box(w, s, e, n)] if w <= e else [box(w, s, 180, n), box(-180, s, e, n)]
    if "intersects" in q:
        return [unwrap(q["intersects"])]
    return None

def hit(q, it):
    p = it["properties"]
    a = area(q)
    if a is not None:
        g = unwrap(it["geometry"])
        if not any(g.intersects(translate(x, xoff=k)) for x in a for k in (-360, 0, 360)):
            return False
    if "datetime" in q:
        lo, hi = (ts(v) for v in q["datetime"])
        def within(t):
            return t is not None and (lo is None or t >= lo) and (hi is None or t <= hi)
        sd, ed = ts(p.get("start_datetime")), ts(p.get("end_datetime"))
        rng = sd is not None and ed is not None and (hi is None or sd <= hi) and (lo is None or ed >= lo)
        if not (within(ts(p.get("datetime"))) or rng):
            return False
    if "platform" in q and p.get("platform") != q["platform"]:
        return False
    if "pvp_min" in q and not p.get("percent_valid_pixels", -1) >= q["pvp_min"]:
        return False
    if "collection" in q and it.get("collection") != q["collection"]:
        return False
    if "ids" in q and it["id"] not in q["ids"]:
        return False
    if "expr" in q and not eval(q["expr"], {"p": p, "it": it}):
        return False
    return True

print(json.dumps([sorted(it["id"] for it in items if hit(q, it)) for q in queries]))
"#;

fn samples_of(items: &[Value]) -> Samples {
    let items = items
        .iter()
        .map(|j| SampleItem {
            key: format!("search/{}.stac.json", j["id"].as_str().unwrap()),
            json: j.clone(),
            modified: "2024-01-01T00:00:00Z".into(),
        })
        .collect();
    Samples { items }
}

/// The ids of an NDJSON search output, failing on an id returned twice.
fn ids_of(out: &Output) -> BTreeSet<String> {
    assert!(out.status.success(), "search failed: {}", String::from_utf8_lossy(&out.stderr));
    let mut ids = BTreeSet::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let item: Value = serde_json::from_str(line).unwrap();
        let id = item["id"].as_str().unwrap().to_string();
        assert!(ids.insert(id.clone()), "{id} returned twice");
    }
    ids
}

/// Where a table lives, as CLI flags, and the environment its commands need.
struct TablePlace {
    flags: Vec<String>,
    env: Vec<(String, String)>,
}

async fn check_random_queries(
    py: &Python,
    place: &TablePlace,
    source: &Location,
    items: &[Value],
    dir: &Path,
) {
    let samples = samples_of(items);
    let stores = earthcatalog_common::stores::Stores::new(
        earthcatalog_common::s3_settings::S3Settings::default(),
    );
    samples.upload(&stores, source).await.unwrap();
    let inventory = dir.join("inv.csv");
    std::fs::write(&inventory, samples.csv()).unwrap();
    let mut args = strings(&["incremental", "--inventory", inventory.to_str().unwrap()]);
    args.extend(strings(&["--source", &format!("{BUCKET}={source}"), "--h3-resolution", "2"]));
    args.extend(place.flags.iter().cloned());
    let out = run(&args, &place.env);
    assert!(out.status.success(), "ingest failed");

    let mut rng = Rng(7);
    let queries = random_queries(&mut rng);
    let items_path = dir.join("items.json");
    let queries_path = dir.join("queries.json");
    std::fs::write(&items_path, serde_json::to_vec(items).unwrap()).unwrap();
    let specs: Vec<&Value> = queries.iter().map(|q| &q.spec).collect();
    std::fs::write(&queries_path, serde_json::to_vec(&specs).unwrap()).unwrap();
    let expected = py
        .run_json(BRUTE_FORCE, &[items_path.to_str().unwrap(), queries_path.to_str().unwrap()])
        .unwrap();
    let mut nonempty = 0;
    for (q, want) in queries.iter().zip(expected.as_array().unwrap()) {
        let mut args = strings(&["search", "--format", "ndjson"]);
        args.extend(place.flags.iter().cloned());
        args.extend(q.args.iter().cloned());
        let got = ids_of(&run(&args, &place.env));
        let want: BTreeSet<String> =
            want.as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
        assert_eq!(got, want, "query {:?}", q.args);
        // Asking for a few members reads fewer columns, and finds the same items.
        args.extend(strings(&["--fields", "properties.platform"]));
        let out = run(&args, &place.env);
        assert_eq!(ids_of(&out), want, "query {:?}", args);
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let item: Value = serde_json::from_str(line).unwrap();
            let mut members: Vec<&str> =
                item.as_object().unwrap().keys().map(|k| k.as_str()).collect();
            members.sort();
            assert_eq!(
                members,
                ["collection", "id", "properties", "stac_version", "type"],
                "{line}"
            );
            assert!(item["properties"]["platform"].is_string(), "{line}");
            assert_eq!(item["properties"].as_object().unwrap().len(), 1, "{line}");
        }
        nonempty += usize::from(!want.is_empty());
    }
    assert!(nonempty >= queries.len() / 2, "too few queries matched anything: {nonempty}");

    // The whole table as stac-geoparquet, read back by stac-geoparquet and by rustac.
    let out = dir.join("all.parquet");
    let mut args = strings(&["search", "--format", "stac-geoparquet", "-o", out.to_str().unwrap()]);
    args.extend(place.flags.iter().cloned());
    assert!(run(&args, &place.env).status.success());
    let read = py.run_json(READ_STAC_GEOPARQUET, &[out.to_str().unwrap()]).unwrap();
    let all: BTreeSet<String> =
        items.iter().map(|i| i["id"].as_str().unwrap().to_string()).collect();
    for reader in ["stac_geoparquet", "rustac"] {
        let ids: BTreeSet<String> = serde_json::from_value(read[reader].clone()).unwrap();
        assert_eq!(ids, all, "{reader}");
    }
    assert_eq!(read["platforms_match"], json!(true));
}

/// The ids stac-geoparquet's and rustac's readers find in a stac-geoparquet file, and whether
/// the items' platforms and datetimes came through.
const READ_STAC_GEOPARQUET: &str = r#"
import json, sys
import pyarrow.parquet as pq, rustac
from stac_geoparquet.arrow import stac_table_to_items
items = list(stac_table_to_items(pq.read_table(sys.argv[1])))
r = rustac.read_sync(sys.argv[1])["features"]
ok = all(i["properties"]["platform"] in ("LC08", "LC09", "S2A", "S2B") and i["properties"]["datetime"] for i in items)
print(json.dumps({"stac_geoparquet": sorted(i["id"] for i in items), "rustac": sorted(f["id"] for f in r), "platforms_match": ok}))
"#;

#[tokio::test]
async fn random_queries_on_a_local_table_return_exactly_the_brute_force_ids_once_each() {
    let Some(py) = Python::find("search local") else { return };
    let dir = tempfile::tempdir().unwrap();
    let items = random_items(400, &mut Rng(42));
    let place = TablePlace {
        flags: strings(&[
            "--catalog",
            dir.path().join("catalog.db").to_str().unwrap(),
            "--warehouse",
            dir.path().join("warehouse").to_str().unwrap(),
        ]),
        env: Vec::new(),
    };
    let source = Location::local(dir.path().join("items")).unwrap();
    check_random_queries(&py, &place, &source, &items, dir.path()).await;
}

#[tokio::test]
async fn random_queries_on_an_s3_table_return_exactly_the_brute_force_ids_once_each() {
    let Some(py) = Python::find("search s3") else { return };
    let Some(server) = S3Server::shared("search s3") else { return };
    let bucket = server.new_bucket().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let items = random_items(150, &mut Rng(43));
    let place = TablePlace {
        flags: strings(&[
            "--catalog",
            dir.path().join("work.db").to_str().unwrap(),
            "--catalog-store",
            &bucket.join("catalog").to_string(),
            "--warehouse",
            &bucket.join("warehouse").to_string(),
        ]),
        env: server.env(),
    };
    let source = Location::local(dir.path().join("items")).unwrap();
    check_random_queries(&py, &place, &source, &items, dir.path()).await;
}

#[test]
fn bad_queries_fail_with_a_message_that_names_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let flags = |extra: &[&str]| {
        let mut a = strings(&["search", "--catalog", dir.path().join("c.db").to_str().unwrap()]);
        a.extend(strings(extra));
        a
    };
    for (extra, says) in [
        (&["--bbox=10,5,20,1"][..], "invalid bbox"),
        (&["--datetime", "last week"][..], "invalid datetime 'last week'"),
        (&["--filter", "platform = = 'x'"][..], "invalid CQL2 filter"),
        (&["--intersects", "{\"type\":\"Polygon\"}"][..], "invalid intersects geometry"),
    ] {
        let out = run(&flags(extra), &[]);
        assert_eq!(out.status.code(), Some(1), "{extra:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{extra:?}: {err}");
    }
}

/// A stored value against the source value: numbers by value (`48.0` is stored as 48), and
/// timestamps by instant (they come back in UTC with `Z`), as `docs/schema.md` says.
fn same(got: &Value, want: &Value, path: &str) -> Result<(), String> {
    use earthcatalog_common::stac::datetime::parse_timestamp;
    match (got, want) {
        (Value::Number(a), Value::Number(b)) if a.as_f64() == b.as_f64() => Ok(()),
        (Value::String(a), Value::String(b))
            if a == b
                || (parse_timestamp(a).is_some() && parse_timestamp(a) == parse_timestamp(b)) =>
        {
            Ok(())
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .try_for_each(|(i, (x, y))| same(x, y, &format!("{path}[{i}]"))),
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            keys.into_iter().try_for_each(|k| match (a.get(k), b.get(k)) {
                (Some(x), Some(y)) => same(x, y, &format!("{path}.{k}")),
                _ => Err(format!("{path}.{k}: {:?} vs {:?}", a.get(k), b.get(k))),
            })
        }
        _ if got == want => Ok(()),
        _ => Err(format!("{path}: got {got}, want {want}")),
    }
}

#[tokio::test]
async fn the_real_fixtures_come_back_json_equal_after_ingest_and_search() {
    let fixtures = Path::new("/work/shared/fixtures/real/stac");
    let fixtures = if fixtures.is_dir() {
        fixtures.to_path_buf()
    } else {
        earthcatalog_tests::python::workspace_root().join("../shared/fixtures/real/stac")
    };
    let mut items: Vec<Value> = std::fs::read_dir(&fixtures)
        .unwrap()
        .map(|e| serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap())
        .collect();
    items.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    assert!(items.len() >= 20, "fixtures missing at {}", fixtures.display());
    let dir = tempfile::tempdir().unwrap();
    let samples = samples_of(&items);
    let source = Location::local(dir.path().join("items")).unwrap();
    samples
        .upload(
            &earthcatalog_common::stores::Stores::new(
                earthcatalog_common::s3_settings::S3Settings::default(),
            ),
            &source,
        )
        .await
        .unwrap();
    std::fs::write(dir.path().join("inv.csv"), samples.csv()).unwrap();
    let table = table_flags(dir.path());
    let mut args =
        strings(&["incremental", "--inventory", dir.path().join("inv.csv").to_str().unwrap()]);
    args.extend(strings(&["--source", &format!("{BUCKET}={source}")]));
    args.extend(table.iter().cloned());
    assert!(run(&args, &[]).status.success());

    let mut args = strings(&["search", "--format", "ndjson"]);
    args.extend(table);
    let out = run(&args, &[]);
    assert!(out.status.success());
    let back: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(back.len(), items.len(), "every fixture comes back once");
    let mut problems = Vec::new();
    for want in &items {
        let id = want["id"].as_str().unwrap();
        let got = back.iter().find(|g| g["id"] == want["id"]).unwrap();
        if let Err(e) = same(got, want, id) {
            problems.push(e);
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // As stac-geoparquet: rustac reads every item back with the same properties (rustac adds
    // the other items' members as nulls; stac-geoparquet 0.8.3 cannot read this file, as it
    // fails on a `proj:geometry` that only some items have).
    let Some(py) = Python::find("search fixtures") else { return };
    let out_file = dir.path().join("fixtures.parquet");
    let mut args =
        strings(&["search", "--format", "stac-geoparquet", "-o", out_file.to_str().unwrap()]);
    args.extend(table_flags(dir.path()));
    assert!(run(&args, &[]).status.success());
    let ndjson = dir.path().join("fixtures.ndjson");
    std::fs::write(&ndjson, &out.stdout).unwrap();
    let mismatched = py
        .run_json(RUSTAC_SAME_PROPERTIES, &[out_file.to_str().unwrap(), ndjson.to_str().unwrap()])
        .unwrap();
    assert_eq!(mismatched, json!([]), "items whose properties rustac reads back differently");
}

#[tokio::test]
async fn one_id_in_two_collections_is_two_items_and_both_are_found() {
    let dir = tempfile::tempdir().unwrap();
    let base = Samples::itslive(0, 1).items.remove(0);
    let in_collection = |c: &str| {
        let mut json = base.json.clone();
        json["collection"] = c.into();
        SampleItem { key: format!("{c}/{}", base.key), json, ..base.clone() }
    };
    let samples = Samples { items: vec![in_collection("first"), in_collection("second")] };
    let table = ingest_locally(dir.path(), &samples).await;

    let bbox =
        base.json["bbox"].as_array().unwrap().iter().map(|v| v.to_string()).collect::<Vec<_>>();
    let found = |extra: &[&str]| {
        let mut args = strings(&["search", "--format", "ndjson", "--bbox", &bbox.join(",")]);
        args.extend(strings(extra));
        args.extend(table.iter().cloned());
        let out = run(&args, &[]);
        assert!(out.status.success());
        let mut got: Vec<(String, String)> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .map(|i| (i["collection"].as_str().unwrap().into(), i["id"].as_str().unwrap().into()))
            .collect();
        got.sort();
        got
    };
    let id = base.id();
    assert_eq!(found(&[]), [("first".into(), id.clone()), ("second".into(), id.clone())]);
    assert_eq!(found(&["--collections", "second"]), [("second".to_string(), id)]);
}

/// The `rows=` a search logged: rows its reader returned.
fn rows_read(out: &Output) -> usize {
    let log = String::from_utf8_lossy(&out.stderr);
    let line = log.lines().find(|l| l.contains("search done")).expect("a 'search done' line");
    let rows = line.split_whitespace().find_map(|w| w.strip_prefix("rows="));
    rows.and_then(|r| r.parse().ok()).unwrap_or_else(|| panic!("no rows= in {line}"))
}

#[tokio::test]
async fn a_filter_sees_a_top_level_member_before_the_property_and_columns_decide_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let item = |i: usize, platform: &str, top: Value| {
        let mut it = json!({
            "type": "Feature", "stac_version": "1.1.0", "id": format!("f-{i:02}"),
            "collection": "c", "links": [], "assets": {},
            "geometry": {"type": "Point", "coordinates": [10.0 + i as f64, 45.0]},
            "properties": {"datetime": "2020-06-01T00:00:00Z", "platform": platform},
        });
        it.as_object_mut().unwrap().extend(top.as_object().unwrap().clone());
        it
    };
    let mut items: Vec<Value> = (0..10).map(|i| item(i, "S2A", json!({}))).collect();
    items.extend([
        item(10, "LC08", json!({})),
        item(11, "LC08", json!({})),
        // cql2 looks a name up at the top level first: this one is LC08 to `platform`...
        item(12, "S2A", json!({"platform": "LC08"})),
        // ...and this one is not, though its property is.
        item(13, "LC08", json!({"platform": "S2A"})),
        item(14, "S2A", json!({"note": "an extra top-level member"})),
    ]);
    let table = ingest_locally(dir.path(), &samples_of(&items)).await;

    let search = |filter: &str| {
        let mut args = strings(&["search", "--format", "ndjson", "--filter", filter]);
        args.extend(table.iter().cloned());
        let out = run(&args, &[]);
        (ids_of(&out).into_iter().collect::<Vec<_>>(), rows_read(&out))
    };
    // Points: one row per item. The reader returns the rows whose column says LC08 and those
    // with extra top-level members, which cql2 then decides on.
    let (ids, rows) = search("platform = 'LC08'");
    assert_eq!(ids, ["f-10", "f-11", "f-12"]);
    assert_eq!(
        rows, 5,
        "LC08 in the column: 3, with extra top-level members: 2 (one of them LC08)"
    );
    let (ids, rows) = search("properties.platform = 'LC08'");
    assert_eq!(ids, ["f-10", "f-11", "f-13"]);
    assert_eq!(rows, 3);
    // What only cql2 can decide reads every row.
    let (ids, rows) = search("NOT (platform <> 'LC08')");
    assert_eq!(ids, ["f-10", "f-11", "f-12"]);
    assert_eq!(rows, 15);
}

/// `samples` written as item files under `dir` and ingested into a table there at resolution
/// 1; the table's flags.
async fn ingest_locally(dir: &Path, samples: &Samples) -> Vec<String> {
    let source = Location::local(dir.join("items")).unwrap();
    let stores = earthcatalog_common::stores::Stores::new(
        earthcatalog_common::s3_settings::S3Settings::default(),
    );
    samples.upload(&stores, &source).await.unwrap();
    std::fs::write(dir.join("inv.csv"), samples.csv()).unwrap();
    let table = table_flags(dir);
    let mut args = strings(&["incremental", "--inventory", dir.join("inv.csv").to_str().unwrap()]);
    args.extend(strings(&["--source", &format!("{BUCKET}={source}"), "--h3-resolution", "1"]));
    args.extend(table.iter().cloned());
    assert!(run(&args, &[]).status.success(), "ingest failed");
    table
}

fn table_flags(dir: &Path) -> Vec<String> {
    strings(&[
        "--catalog",
        dir.join("catalog.db").to_str().unwrap(),
        "--warehouse",
        dir.join("warehouse").to_str().unwrap(),
    ])
}

/// Ids whose properties (other than members null in rustac's item and absent in ours) differ,
/// comparing timestamps and numbers by value; our extra top-level members count as properties.
const RUSTAC_SAME_PROPERTIES: &str = r#"
import json, sys, rustac
from datetime import datetime
def norm(v):
    if isinstance(v, str):
        try:
            return datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            return v
    if isinstance(v, dict):
        return {k: norm(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [norm(x) for x in v]
    return v
CORE = {"type", "stac_version", "stac_extensions", "id", "geometry", "bbox", "properties", "links", "assets", "collection"}
def props(item):
    # stac-geoparquet has one column namespace: other top-level members come back as properties.
    p = {k: v for k, v in item["properties"].items() if k not in CORE}
    p.update({k: v for k, v in item.items() if k not in CORE})
    return p
ours = {json.loads(l)["id"]: json.loads(l) for l in open(sys.argv[2])}
back = {f["id"]: f for f in rustac.read_sync(sys.argv[1])["features"]}
bad = sorted(i for i in ours if i not in back or norm(back[i]["properties"]) != norm(props(ours[i])))
print(json.dumps(bad))
"#;
