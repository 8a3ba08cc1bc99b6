//! The HTTP routes: each turns its request into documents or a library search, and its
//! failures into STAC API error bodies.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::http::header::{CONTENT_TYPE, HOST};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use earthcatalog_common::search::search;
use serde_json::{Value as Json, json};

use super::documents::{self, GEOJSON, JSON, OPENAPI, SCHEMA_JSON};
use super::error::ApiError;
use super::live::{LiveTable, Loaded};
use super::paging::{Token, total_order};
use super::params::{Origin, SearchParams};

/// What every route shares.
pub struct AppState {
    /// The table being served.
    pub live: Arc<LiveTable>,
    /// The URL clients reach the server at, when it is not the Host header's.
    pub public_url: Option<String>,
}

type Shared = State<Arc<AppState>>;

/// The STAC API's routes.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(landing))
        .route("/conformance", get(conformance))
        .route("/api", get(openapi))
        .route("/queryables", get(queryables))
        .route("/collections", get(collections))
        .route("/collections/{collection}", get(collection))
        .route("/collections/{collection}/queryables", get(collection_queryables))
        .route("/collections/{collection}/items", get(collection_items))
        .route("/collections/{collection}/items/{item}", get(item))
        .route("/search", get(search_get).post(search_post))
        .fallback(|| async { ApiError::not_found("no such path") })
        .with_state(state)
}

/// A JSON document with its media type.
fn document(kind: &'static str, body: &Json) -> Response {
    ([(CONTENT_TYPE, kind)], body.to_string()).into_response()
}

/// The root URL links start with: `--public-url`, else `http://` and the Host header.
fn base(state: &AppState, headers: &HeaderMap) -> String {
    match &state.public_url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => {
            let host = headers.get(HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
            format!("http://{host}")
        }
    }
}

async fn landing(State(s): Shared, headers: HeaderMap) -> Response {
    document(JSON, &documents::landing(&base(&s, &headers), &s.live.current().collections))
}

async fn conformance() -> Response {
    document(JSON, &documents::conformance())
}

async fn openapi(State(s): Shared, headers: HeaderMap) -> Response {
    document(OPENAPI, &documents::openapi(&base(&s, &headers)))
}

async fn queryables(State(s): Shared, headers: HeaderMap) -> Response {
    document(SCHEMA_JSON, &documents::queryables(&format!("{}/queryables", base(&s, &headers))))
}

async fn collections(State(s): Shared, headers: HeaderMap) -> Response {
    document(JSON, &documents::collections(&base(&s, &headers), &s.live.current().collections))
}

/// The loaded table, if it holds `collection`.
fn holding(s: &AppState, collection: &str) -> Result<Arc<Loaded>, ApiError> {
    let loaded = s.live.current();
    if loaded.collections.iter().any(|c| c.id == collection) {
        Ok(loaded)
    } else {
        Err(ApiError::not_found(format!("no collection '{collection}'")))
    }
}

async fn collection(
    State(s): Shared,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let loaded = holding(&s, &id)?;
    let summary = loaded.collections.iter().find(|c| c.id == id);
    let body = summary.map(|c| documents::collection(&base(&s, &headers), c));
    Ok(document(JSON, &body.unwrap_or_default()))
}

async fn collection_queryables(
    State(s): Shared,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    holding(&s, &id)?;
    let href = format!("{}/collections/{id}/queryables", base(&s, &headers));
    Ok(document(SCHEMA_JSON, &documents::queryables(&href)))
}

async fn collection_items(
    State(s): Shared,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let loaded = holding(&s, &id)?;
    let params = SearchParams::from_query(query.as_deref().unwrap_or(""))?.in_collection(&id);
    page(&loaded, &base(&s, &headers), &format!("/collections/{id}/items"), params).await
}

async fn item(
    State(s): Shared,
    headers: HeaderMap,
    Path((collection, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let loaded = holding(&s, &collection)?;
    let mut request = SearchParams::from_query("")?.request;
    request.ids = vec![id.clone()];
    request.collections = vec![collection.clone()];
    let found = search(&loaded.read.table, loaded.partitioner.as_ref(), &request).await?;
    let Some(mut item) = found.items.into_iter().next() else {
        return Err(ApiError::not_found(format!("no item '{id}' in collection '{collection}'")));
    };
    documents::add_item_links(&base(&s, &headers), &mut item);
    Ok(document(GEOJSON, &item))
}

async fn search_get(
    State(s): Shared,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let params = SearchParams::from_query(query.as_deref().unwrap_or(""))?;
    page(&s.live.current(), &base(&s, &headers), "/search", params).await
}

async fn search_post(
    State(s): Shared,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = SearchParams::from_body(&body)?;
    page(&s.live.current(), &base(&s, &headers), "/search", params).await
}

/// One page of a search: the items after the token's offset in the token's snapshot (the
/// current one for a first page), with a `next` link when more follow.
async fn page(
    loaded: &Loaded,
    base: &str,
    path: &str,
    params: SearchParams,
) -> Result<Response, ApiError> {
    let token = params.token.as_deref().map(Token::parse).transpose()?;
    let offset = token.map_or(0, |t| t.offset);
    let snapshot = token.map(|t| t.snapshot).or_else(|| loaded.snapshot_id());
    let mut items = Vec::new();
    let mut matched = 0;
    if let Some(snapshot) = snapshot {
        if loaded.read.table.metadata().snapshot_by_id(snapshot).is_none() {
            return Err(ApiError::bad_request(format!(
                "the paging token's snapshot {snapshot} is no longer in the table: start the search again"
            )));
        }
        let mut request = params.request.clone();
        request.sortby = Some(total_order(request.sortby.take()));
        // The search applies `fields` too, so it reads only the columns they keep; applied
        // again after the API's links are added, so `fields` can select those as well (the
        // links need only `id` and `collection`, which every item keeps).
        let fields = request.fields.clone();
        request.snapshot_id = Some(snapshot);
        request.max_items = Some(offset.saturating_add(params.limit));
        let result = search(&loaded.read.table, loaded.partitioner.as_ref(), &request).await?;
        matched = result.stats.matched;
        items = result
            .items
            .into_iter()
            .skip(offset)
            .map(|mut item| {
                documents::add_item_links(base, &mut item);
                if fields.is_empty() { item } else { fields.apply(item) }
            })
            .collect();
    }
    let href = format!("{base}{path}");
    let mut links = vec![json!({"rel": "root", "href": format!("{base}/"), "type": JSON})];
    links.push(match &params.origin {
        Origin::Query(_) => json!({"rel": "self", "type": GEOJSON,
            "href": with_query(&href, &params.origin.query_string())}),
        Origin::Body(_) => json!({"rel": "self", "type": GEOJSON, "href": href}),
    });
    if let Some(snapshot) = snapshot
        && matched > offset + items.len()
        && !items.is_empty()
    {
        let next = Token { snapshot, offset: offset + items.len() }.to_string();
        links.push(match params.with_token(&next) {
            Origin::Query(pairs) => json!({"rel": "next", "type": GEOJSON,
                "href": with_query(&href, &Origin::Query(pairs).query_string())}),
            Origin::Body(body) => json!({"rel": "next", "type": GEOJSON, "href": href,
                "method": "POST", "body": body, "merge": false}),
        });
    }
    let returned = items.len();
    let collection = json!({
        "type": "FeatureCollection",
        "features": items,
        "links": links,
        "numberMatched": matched,
        "numberReturned": returned,
    });
    Ok(document(GEOJSON, &collection))
}

fn with_query(href: &str, query: &str) -> String {
    if query.is_empty() { href.to_string() } else { format!("{href}?{query}") }
}
