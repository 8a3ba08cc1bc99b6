//! `earthcatalog serve` against tables built by `earthcatalog incremental`, on local files and
//! on S3 (moto, the catalog kept in a store): `stac-api-validator` passes every conformance
//! class the server advertises (on local files); pystac-client finds the same ids as `earthcatalog search`;
//! paging returns every item once, even across a new snapshot; a new incremental run's items
//! appear without a restart; bad requests get 400 with a STAC API error body.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use earthcatalog_tests::ingest::{SampleItem, Samples};
use earthcatalog_tests::on_both_backends;
use earthcatalog_tests::python::Python;
use earthcatalog_tests::site::{Backend, Site, run, strings};
use earthcatalog_tests::stac_api::{Served, item_ids};
use serde_json::{Value, json};

/// Items over a band of the globe in two collections, some with a datetime range, in the
/// shape STAC 1.1.0 gives (what the offline validator has schemas for).
fn items(first: usize, n: usize) -> Samples {
    let items = (first..first + n)
        .map(|i| {
            let lon = -170.0 + (i * 37 % 340) as f64;
            let lat = -60.0 + (i * 17 % 120) as f64;
            let year = 2015 + i % 6;
            let platform = ["LC08", "LC09", "S2A", "S2B"][i % 4];
            let mut props = json!({
                "datetime": format!("{year}-{:02}-{:02}T12:00:00Z", 1 + i % 12, 1 + i % 27),
                "platform": platform,
                "percent_valid_pixels": (i * 13) % 100,
            });
            if i % 5 == 0 {
                props["start_datetime"] = json!(format!("{}-03-01T00:00:00Z", year - 2));
                props["end_datetime"] = json!(format!("{year}-01-01T00:00:00Z"));
            }
            let ring = json!([[
                [lon, lat],
                [lon + 2.0, lat],
                [lon + 2.0, lat + 1.5],
                [lon, lat + 1.5],
                [lon, lat]
            ]]);
            let json = json!({
                "type": "Feature", "stac_version": "1.1.0", "id": format!("item-{i:04}"),
                "collection": if i % 3 == 0 { "alpha" } else { "beta" },
                "bbox": [lon, lat, lon + 2.0, lat + 1.5],
                "geometry": {"type": "Polygon", "coordinates": ring},
                "properties": props, "links": [],
                "assets": {"data": {"href": format!("s3://bucket/{i}.nc"), "roles": ["data"]}},
            });
            SampleItem {
                key: format!("serve/item-{i:04}.stac.json"),
                json,
                modified: "2024-01-01T00:00:00Z".into(),
            }
        })
        .collect();
    Samples { items }
}

fn ids(samples: &Samples) -> BTreeSet<String> {
    samples.ids().into_iter().collect()
}

/// Every id once: the set, failing on a repeat.
fn once_each(ids: Vec<String>) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    for id in ids {
        assert!(set.insert(id.clone()), "{id} returned twice");
    }
    set
}

/// The validator's name for each STAC API conformance class the server may advertise.
const VALIDATOR_CLASSES: &[(&str, &str)] = &[
    ("/core", "core"),
    ("/collections", "collections"),
    ("/ogcapi-features", "features"),
    ("/item-search", "item-search"),
    ("/item-search#sort", "item-search#sort"),
    ("/item-search#fields", "item-search#fields"),
    ("/item-search#filter", "filter"),
];

/// stac-api-validator, with the JSON schemas of STAC 1.1.0 and GeoJSON that pystac ships
/// served from disk instead of the network (this machine has none).
const VALIDATOR: &str = r#"
import pathlib, sys
import pystac
from requests.adapters import HTTPAdapter
from requests.models import Response
SCHEMAS = pathlib.Path(pystac.__file__).parent / "validation" / "jsonschemas"
def local(url):
    if url.startswith("https://schemas.stacspec.org/v1.1.0/"):
        return SCHEMAS / "stac-spec" / "v1.1.0" / url.rsplit("/", 1)[1]
    if url.startswith("https://geojson.org/schema/"):
        return SCHEMAS / "geojson" / url.rsplit("/", 1)[1]
    return None
send = HTTPAdapter.send
def offline(self, request, **kw):
    path = local(request.url)
    if path is None:
        return send(self, request, **kw)
    r = Response()
    r.status_code, r._content, r.url, r.request = 200, path.read_bytes(), request.url, request
    r.headers["content-type"] = "application/json"
    return r
HTTPAdapter.send = offline
from stac_api_validator.__main__ import main
sys.argv[0] = "stac-api-validator"
main()
"#;

/// pystac-client's `Client.open(url).search(**query).items()` ids for each query (argv[2], a
/// JSON list of keyword arguments), with small pages so it follows `next` links.
const PYSTAC_CLIENT: &str = r#"
import json, sys
from pystac_client import Client
client = Client.open(sys.argv[1])
out = []
for q in json.loads(sys.argv[2]):
    out.append([item.id for item in client.search(limit=7, **q).items()])
print(json.dumps(out))
"#;

async fn served_tables_pass_the_stac_api_checks(backend: Backend, py: Python) {
    let first = items(0, 90);
    let later = items(90, 25);
    let all = Samples { items: [first.items.clone(), later.items.clone()].concat() };
    let site = backend.site(&all).await;
    let inv1 = site.put("day1.csv", first.csv().into_bytes()).await;
    assert!(site.run(&inv1, &[]).status.success(), "first ingest");
    let served =
        Served::start(&site.catalog_args(), &["--refresh-secs", "1"], &site.env()).await.unwrap();

    // The validator checks the API's documents, which do not depend on where the table is
    // stored; it sends hundreds of searches, each a table scan on the one-request-at-a-time S3
    // test server, so it runs on local files only. On S3, pystac-client, paging and the refresh
    // below read the table through the same server.
    if matches!(backend, Backend::Local) {
        validator_passes_every_advertised_class(&served, &py).await;
    }
    pystac_client_finds_what_search_finds(&served, &site, &py);
    bad_requests_get_400_with_an_error_body(&served).await;
    fields_keep_the_api_links_only_when_asked(&served).await;

    // Paging: every item once, GET and POST, and the rest of a paged search keeps reading its
    // snapshot while a new one is committed.
    let get = served.get("/search?limit=7").await.unwrap();
    assert_eq!(get.content_type, "application/geo+json");
    assert_eq!(get.body["numberMatched"], 90);
    assert_eq!(once_each(served.all_pages(get).await.unwrap()), ids(&first));
    let alpha: BTreeSet<String> =
        ids(&first).into_iter().filter(|i| i[5..].parse::<usize>().unwrap() % 3 == 0).collect();
    let post = served.post("/search", r#"{"limit": 4, "collections": ["alpha"]}"#).await.unwrap();
    assert_eq!(once_each(served.all_pages(post).await.unwrap()), alpha);
    let started = served.get("/search?limit=30").await.unwrap();

    let inv2 = site.put("day2.csv", later.csv().into_bytes()).await;
    assert!(site.run(&inv2, &[]).status.success(), "second ingest");
    let everything = ids(&all);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = served.get("/search?limit=1").await.unwrap();
        if r.body["numberMatched"] == everything.len() {
            break;
        }
        assert!(Instant::now() < deadline, "the new items never appeared: {}", served.log());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        once_each(served.all_pages(started).await.unwrap()),
        ids(&first),
        "a search paged across a new snapshot reads the snapshot it started on"
    );
    let fresh = served.get("/search?limit=50").await.unwrap();
    assert_eq!(once_each(served.all_pages(fresh).await.unwrap()), everything);
    let one = served.get("/collections/beta/items/item-0091").await.unwrap();
    assert_eq!((one.status, one.body["id"].clone()), (200, json!("item-0091")));
}

async fn validator_passes_every_advertised_class(served: &Served, py: &Python) {
    let conformance = served.get("/conformance").await.unwrap().body;
    let mut args = vec!["--root-url".to_string(), format!("{}/", served.url)];
    args.extend(strings(&["--collection", "alpha", "--validate-pagination"]));
    args.extend(strings(&["--fields-nested-property", "properties.platform"]));
    let geometry = json!({"type": "Polygon", "coordinates": [[[-180, -60], [180, -60], [180, 60], [-180, 60], [-180, -60]]]});
    args.extend(["--geometry".to_string(), geometry.to_string()]);
    for class in conformance["conformsTo"].as_array().unwrap() {
        let class = class.as_str().unwrap();
        let Some(rest) = class.strip_prefix("https://api.stacspec.org/") else { continue };
        let suffix = &rest[rest.find('/').unwrap()..];
        let name = VALIDATOR_CLASSES.iter().find(|(s, _)| *s == suffix);
        let (_, name) = name.unwrap_or_else(|| panic!("{class} is advertised but not validated"));
        args.extend(["--conformance".to_string(), name.to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = py.run(VALIDATOR, &args).unwrap_or_else(|e| panic!("{e}\n{}", served.log()));
    assert!(out.contains("Errors: none"), "stac-api-validator found errors:\n{out}");
}

fn pystac_client_finds_what_search_finds(served: &Served, site: &Site, py: &Python) {
    let polygon = json!({"type": "Polygon", "coordinates": [[[-60, -20], [40, -20], [40, 30], [-60, 30], [-60, -20]]]});
    let cql_json = json!({"op": "and", "args": [
        {"op": "=", "args": [{"property": "platform"}, "S2B"]},
        {"op": ">=", "args": [{"property": "percent_valid_pixels"}, 30]}]});
    let queries: Vec<(Vec<String>, Value)> = vec![
        (strings(&["--bbox=-180,-60,-30,60"]), json!({"bbox": [-180, -60, -30, 60]})),
        (
            strings(&["--datetime", "2016-01-01T00:00:00Z/2016-12-31T23:59:59Z"]),
            json!({"datetime": "2016-01-01T00:00:00Z/2016-12-31T23:59:59Z", "method": "GET"}),
        ),
        (
            strings(&[
                "--collections",
                "alpha",
                "--filter",
                "platform = 'LC08' OR percent_valid_pixels >= 50",
            ]),
            json!({"collections": ["alpha"], "filter": "platform = 'LC08' OR percent_valid_pixels >= 50", "filter_lang": "cql2-text"}),
        ),
        (
            vec!["--filter".into(), cql_json.to_string(), "--bbox=0,-90,180,90".into()],
            json!({"filter": cql_json, "bbox": [0, -90, 180, 90]}),
        ),
        (vec![format!("--intersects={polygon}")], json!({"intersects": polygon})),
        (
            strings(&["--ids", "item-0003,item-0040,nope"]),
            json!({"ids": ["item-0003", "item-0040", "nope"]}),
        ),
    ];
    let kwargs: Vec<&Value> = queries.iter().map(|(_, q)| q).collect();
    let got = py
        .run_json(PYSTAC_CLIENT, &[&served.url, &serde_json::to_string(&kwargs).unwrap()])
        .unwrap();
    for ((flags, query), got) in queries.iter().zip(got.as_array().unwrap()) {
        let mut args = strings(&["search", "--format", "ndjson"]);
        args.extend(site.catalog_args());
        args.extend(flags.iter().cloned());
        let out = run(&args, &site.env());
        assert!(out.status.success(), "search {flags:?}");
        let want: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].as_str().unwrap().to_string())
            .collect();
        let got: Vec<String> = serde_json::from_value(got.clone()).unwrap();
        assert!(!want.is_empty() || flags[0] == "--ids", "query {query} matches nothing");
        assert_eq!(once_each(got), once_each(want), "pystac-client {query} vs search {flags:?}");
    }
}

async fn bad_requests_get_400_with_an_error_body(served: &Served) {
    for (path, says) in [
        ("/search?bbox=10,5,20,1", "invalid bbox"),
        ("/search?bbox=1,2,3", "invalid bbox"),
        ("/search?datetime=last%20week", "invalid datetime"),
        ("/search?filter=platform%20%3D%20%3D%20'x'", "invalid CQL2 filter"),
        ("/search?limit=0", "limit"),
        ("/search?token=garbage", "token"),
        ("/collections/alpha/items?bbox=a,b,c,d", "bbox"),
    ] {
        let r = served.get(path).await.unwrap();
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        assert_eq!(r.body["code"], "BadRequest", "{path}");
        assert!(r.body["description"].as_str().unwrap().contains(says), "{path}: {}", r.body);
    }
    for body in [
        "not json",
        r#"{"bbox": [0, 0, 1, 1], "intersects": {"type": "Point", "coordinates": [0, 0]}}"#,
    ] {
        let r = served.post("/search", body).await.unwrap();
        assert_eq!((r.status, r.body["code"].clone()), (400, json!("BadRequest")), "{body}");
    }
    for path in ["/collections/nope", "/collections/alpha/items/nope", "/nowhere"] {
        let r = served.get(path).await.unwrap();
        assert_eq!((r.status, r.body["code"].clone()), (404, json!("NotFound")), "{path}");
    }
    let capped = served.get("/search?limit=100000").await.unwrap();
    assert_eq!(capped.status, 200, "a limit over 10,000 is cut, not refused");
    assert_eq!(item_ids(&capped.body).len(), 90);
}

/// `fields` selects among the members the API adds too: the item links come with `links` and
/// go without it, whatever columns the search reads for the rest.
async fn fields_keep_the_api_links_only_when_asked(served: &Served) {
    let members =
        |item: &Value| -> BTreeSet<String> { item.as_object().unwrap().keys().cloned().collect() };
    let with_links = served.get("/search?limit=3&fields=links,properties.platform").await.unwrap();
    let features = with_links.body["features"].as_array().unwrap();
    assert_eq!(features.len(), 3);
    for item in features {
        let want = ["type", "stac_version", "id", "collection", "links", "properties"];
        assert_eq!(members(item), want.iter().map(|m| m.to_string()).collect(), "{item}");
        let rels: BTreeSet<&str> =
            item["links"].as_array().unwrap().iter().filter_map(|l| l["rel"].as_str()).collect();
        assert!(rels.contains("self") && rels.contains("collection"), "{item}");
        assert!(item["properties"]["platform"].is_string(), "{item}");
    }
    let without = served.get("/search?limit=3&fields=id,-links").await.unwrap();
    for item in without.body["features"].as_array().unwrap() {
        let want = ["type", "stac_version", "id", "collection"];
        assert_eq!(members(item), want.iter().map(|m| m.to_string()).collect(), "{item}");
    }
    let whole = served.get("/search?limit=1&fields=-assets").await.unwrap();
    let item = &whole.body["features"][0];
    assert!(item.get("assets").is_none() && item.get("geometry").is_some(), "{item}");
    assert!(item["links"].as_array().unwrap().iter().any(|l| l["rel"] == "self"), "{item}");
}

on_both_backends!(served_tables_pass_the_stac_api_checks);
