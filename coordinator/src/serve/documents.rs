//! The JSON documents of the API other than search results: landing page, conformance,
//! collections, queryables, the OpenAPI description, and the links added to items.

use earthcatalog_common::schema::ColumnKind;
use earthcatalog_common::search::CollectionSummary;
use earthcatalog_common::stac::{format_timestamp, typed_properties};
use serde_json::{Value as Json, json};

/// The STAC version of the documents the server writes.
const STAC_VERSION: &str = "1.1.0";
/// `Content-Type` of JSON documents.
pub const JSON: &str = "application/json";
/// `Content-Type` of items and item collections.
pub const GEOJSON: &str = "application/geo+json";
/// `Content-Type` of the queryables.
pub const SCHEMA_JSON: &str = "application/schema+json";
/// `Content-Type` of the OpenAPI description.
pub const OPENAPI: &str = "application/vnd.oai.openapi+json;version=3.0";

/// What the server implements: STAC API core, collections, features, item search with sort,
/// fields and filter (CQL2 text and JSON, basic CQL2).
pub const CONFORMANCE: &[&str] = &[
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/collections",
    "https://api.stacspec.org/v1.0.0/ogcapi-features",
    "https://api.stacspec.org/v1.0.0/item-search",
    "https://api.stacspec.org/v1.0.0/item-search#sort",
    "https://api.stacspec.org/v1.0.0/item-search#fields",
    "https://api.stacspec.org/v1.0.0-rc.3/item-search#filter",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
];

fn link(rel: &str, href: String, kind: &str) -> Json {
    json!({"rel": rel, "href": href, "type": kind})
}

/// The landing page: a catalog linking to everything else.
pub fn landing(base: &str, collections: &[CollectionSummary]) -> Json {
    let mut links = vec![
        link("self", format!("{base}/"), JSON),
        link("root", format!("{base}/"), JSON),
        link("conformance", format!("{base}/conformance"), JSON),
        link("service-desc", format!("{base}/api"), OPENAPI),
        link("data", format!("{base}/collections"), JSON),
        link(
            "http://www.opengis.net/def/rel/ogc/1.0/queryables",
            format!("{base}/queryables"),
            SCHEMA_JSON,
        ),
        json!({"rel": "search", "href": format!("{base}/search"), "type": GEOJSON, "method": "GET"}),
        json!({"rel": "search", "href": format!("{base}/search"), "type": GEOJSON, "method": "POST"}),
    ];
    links.extend(
        collections.iter().map(|c| link("child", format!("{base}/collections/{}", c.id), JSON)),
    );
    json!({
        "type": "Catalog",
        "stac_version": STAC_VERSION,
        "id": "earthcatalog",
        "title": "earthcatalog",
        "description": "STAC items of an earthcatalog Iceberg table",
        "conformsTo": CONFORMANCE,
        "links": links,
    })
}

/// `/conformance`.
pub fn conformance() -> Json {
    json!({"conformsTo": CONFORMANCE})
}

/// One collection, with its temporal extent (the spatial extent is the whole globe: the
/// table keeps no per-collection footprint).
pub fn collection(base: &str, c: &CollectionSummary) -> Json {
    let href = format!("{base}/collections/{}", c.id);
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.and_then(|t| format_timestamp(t.timestamp_micros()))
    };
    json!({
        "type": "Collection",
        "stac_version": STAC_VERSION,
        "id": c.id,
        "description": format!("Items of collection {} in the earthcatalog table", c.id),
        "license": "other",
        "extent": {
            "spatial": {"bbox": [[-180.0, -90.0, 180.0, 90.0]]},
            "temporal": {"interval": [[time(c.start), time(c.end)]]},
        },
        "links": [
            link("self", href.clone(), JSON),
            link("root", format!("{base}/"), JSON),
            link("parent", format!("{base}/"), JSON),
            link("items", format!("{href}/items"), GEOJSON),
            link("http://www.opengis.net/def/rel/ogc/1.0/queryables", format!("{href}/queryables"), SCHEMA_JSON),
        ],
    })
}

/// `/collections`.
pub fn collections(base: &str, all: &[CollectionSummary]) -> Json {
    json!({
        "collections": all.iter().map(|c| collection(base, c)).collect::<Vec<_>>(),
        "links": [
            link("self", format!("{base}/collections"), JSON),
            link("root", format!("{base}/"), JSON),
            link("parent", format!("{base}/"), JSON),
        ],
    })
}

/// The queryables at `href`: the properties with typed columns, plus the core members.
pub fn queryables(href: &str) -> Json {
    let mut properties = serde_json::Map::new();
    properties.insert("id".into(), json!({"type": "string"}));
    properties.insert("collection".into(), json!({"type": "string"}));
    properties
        .insert("geometry".into(), json!({"$ref": "https://geojson.org/schema/Geometry.json"}));
    for (name, kind) in typed_properties() {
        let schema = match kind {
            ColumnKind::String => json!({"type": "string"}),
            ColumnKind::Long => json!({"type": "integer"}),
            ColumnKind::Double => json!({"type": "number"}),
            ColumnKind::TimestampTz => json!({"type": "string", "format": "date-time"}),
            ColumnKind::Binary | ColumnKind::BboxStruct => continue,
        };
        properties.insert(name.into(), schema);
    }
    json!({
        "$schema": "https://json-schema.org/draft/2019-09/schema",
        "$id": href,
        "type": "object",
        "title": "Queryables of the earthcatalog table",
        "properties": properties,
        "additionalProperties": true,
    })
}

/// A short OpenAPI 3.0 description of the routes.
pub fn openapi(base: &str) -> Json {
    let get = |summary: &str| json!({"get": {"summary": summary, "responses": {"200": {"description": "OK"}}}});
    json!({
        "openapi": "3.0.3",
        "info": {"title": "earthcatalog STAC API", "version": env!("CARGO_PKG_VERSION")},
        "servers": [{"url": base}],
        "paths": {
            "/": get("Landing page"),
            "/conformance": get("Conformance classes"),
            "/collections": get("Collections"),
            "/collections/{collectionId}": get("One collection"),
            "/collections/{collectionId}/items": get("Items of a collection"),
            "/collections/{collectionId}/items/{featureId}": get("One item"),
            "/queryables": get("Queryables"),
            "/search": {
                "get": {"summary": "Item search", "responses": {"200": {"description": "OK"}}},
                "post": {"summary": "Item search", "responses": {"200": {"description": "OK"}}},
            },
        },
    })
}

/// Gives an item the API's `self`, `parent`, `collection` and `root` links (replacing any it
/// had).
pub fn add_item_links(base: &str, item: &mut Json) {
    let (Some(id), Some(collection)) = (
        item.get("id").and_then(Json::as_str).map(String::from),
        item.get("collection").and_then(Json::as_str).map(String::from),
    ) else {
        return;
    };
    let Some(Json::Array(links)) = item.get_mut("links") else { return };
    let ours = ["self", "parent", "collection", "root"];
    links.retain(|l| !l.get("rel").and_then(Json::as_str).is_some_and(|r| ours.contains(&r)));
    let href = format!("{base}/collections/{collection}");
    links.push(link("self", format!("{href}/items/{id}"), GEOJSON));
    links.push(link("parent", href.clone(), JSON));
    links.push(link("collection", href, JSON));
    links.push(link("root", format!("{base}/"), JSON));
}
