//! STAC API search parameters, from a GET query string or a POST JSON body, turned into the
//! library's [`SearchRequest`]; and the same parameters again with a new `token`, for the
//! `next` link.

use earthcatalog_common::search::{Area, Fields, Filter, Interval, SearchRequest, SortBy, SortKey};
use serde_json::{Map, Value as Json, json};

use super::error::ApiError;

/// Items per page when the client does not say.
pub const DEFAULT_LIMIT: usize = 10;
/// The most items one page returns; a larger `limit` is cut to this.
pub const MAX_LIMIT: usize = 10_000;

/// How the parameters came, kept to build the `next` link the same way.
#[derive(Debug, Clone)]
pub enum Origin {
    /// GET query pairs, in order.
    Query(Vec<(String, String)>),
    /// The POST body.
    Body(Map<String, Json>),
}

/// The search parameters of one request, parsed.
#[derive(Debug, Clone)]
pub struct SearchParams {
    /// The library request (without paging).
    pub request: SearchRequest,
    /// Items per page.
    pub limit: usize,
    /// The paging token of the page asked for.
    pub token: Option<String>,
    /// What the client sent.
    pub origin: Origin,
}

impl SearchParams {
    /// Parses a GET query string.
    pub fn from_query(query: &str) -> Result<SearchParams, ApiError> {
        let pairs: Vec<(String, String)> =
            url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
        let get = |name: &str| {
            pairs
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .filter(|v| !v.is_empty())
        };
        let list = |name: &str| -> Vec<String> {
            get(name)
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default()
        };
        let bbox = get("bbox")
            .map(|b| {
                b.split(',')
                    .map(|v| v.trim().parse::<f64>())
                    .collect::<Result<Vec<f64>, _>>()
                    .map_err(|_| ApiError::bad_request(format!("invalid bbox '{b}': not numbers")))
            })
            .transpose()?;
        let filter = get("filter").map(|f| parse_filter(f, get("filter-lang"))).transpose()?;
        let request = build(
            bbox,
            get("intersects").map(String::from),
            get("datetime"),
            list("ids"),
            list("collections"),
            filter,
            get("sortby").map(SortBy::parse).transpose()?,
            get("fields").map(Fields::parse).unwrap_or_default(),
        )?;
        Ok(SearchParams {
            request,
            limit: limit(
                get("limit")
                    .map(|l| {
                        l.trim()
                            .parse::<i64>()
                            .map_err(|_| ApiError::bad_request(format!("invalid limit '{l}'")))
                    })
                    .transpose()?,
            )?,
            token: get("token").map(String::from),
            origin: Origin::Query(pairs.clone()),
        })
    }

    /// Parses a POST body.
    pub fn from_body(body: &[u8]) -> Result<SearchParams, ApiError> {
        let value: Json = if body.iter().all(u8::is_ascii_whitespace) {
            Json::Object(Map::new())
        } else {
            serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?
        };
        let Json::Object(map) = value else {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        };
        let field = |name: &str| map.get(name).filter(|v| !v.is_null());
        let strings = |name: &str| -> Result<Vec<String>, ApiError> {
            match field(name) {
                None => Ok(Vec::new()),
                // A lone string is a list of one, as some clients send it.
                Some(Json::String(x)) => Ok(vec![x.clone()]),
                Some(Json::Array(xs)) => xs
                    .iter()
                    .map(|x| x.as_str().map(String::from))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| {
                        ApiError::bad_request(format!("'{name}' must be a list of strings"))
                    }),
                Some(_) => {
                    Err(ApiError::bad_request(format!("'{name}' must be a list of strings")))
                }
            }
        };
        let bbox = match field("bbox") {
            None => None,
            Some(Json::Array(xs)) => Some(
                xs.iter()
                    .map(Json::as_f64)
                    .collect::<Option<Vec<f64>>>()
                    .ok_or_else(|| ApiError::bad_request("'bbox' must be a list of numbers"))?,
            ),
            Some(_) => return Err(ApiError::bad_request("'bbox' must be a list of numbers")),
        };
        let intersects = field("intersects").map(Json::to_string);
        let datetime = match field("datetime") {
            None => None,
            Some(Json::String(s)) => Some(s.as_str()),
            Some(_) => return Err(ApiError::bad_request("'datetime' must be a string")),
        };
        let lang = field("filter-lang").and_then(Json::as_str);
        let filter = match field("filter") {
            None => None,
            Some(Json::String(s)) => Some(parse_filter(s, lang)?),
            Some(f) => Some(parse_filter(&f.to_string(), lang)?),
        };
        let sortby = match field("sortby") {
            None => None,
            Some(Json::String(s)) => Some(SortBy::parse(s)?),
            Some(Json::Array(keys)) => Some(sort_keys(keys)?),
            Some(_) => {
                return Err(ApiError::bad_request("'sortby' must be a list of {field, direction}"));
            }
        };
        if map.get("fields").is_some_and(Json::is_null) {
            return Err(ApiError::bad_request("'fields' must be {include, exclude}, not null"));
        }
        let fields = match field("fields") {
            None => Fields::default(),
            Some(Json::String(s)) => Fields::parse(s),
            Some(Json::Object(f)) => {
                let list = |k: &str| -> Vec<String> {
                    f.get(k)
                        .and_then(Json::as_array)
                        .map(|xs| xs.iter().filter_map(Json::as_str).map(String::from).collect())
                        .unwrap_or_default()
                };
                let (include, exclude) = (list("include"), list("exclude"));
                if f.contains_key("include") && include.is_empty() && !exclude.is_empty() {
                    Fields::default_set_without(exclude)
                } else {
                    Fields { include, exclude }
                }
            }
            Some(_) => return Err(ApiError::bad_request("'fields' must be {include, exclude}")),
        };
        let request = build(
            bbox,
            intersects,
            datetime,
            strings("ids")?,
            strings("collections")?,
            filter,
            sortby,
            fields,
        )?;
        let limit = match field("limit") {
            None => limit(None)?,
            Some(l) => limit(Some(
                l.as_i64().ok_or_else(|| ApiError::bad_request(format!("invalid limit {l}")))?,
            ))?,
        };
        let token = match field("token") {
            None => None,
            Some(Json::String(t)) => Some(t.clone()),
            Some(_) => return Err(ApiError::bad_request("'token' must be a string")),
        };
        Ok(SearchParams { request, limit, token, origin: Origin::Body(map) })
    }

    /// Restricts the search to one collection (the `/collections/{id}/items` route).
    pub fn in_collection(mut self, collection: &str) -> SearchParams {
        self.request.collections = vec![collection.to_string()];
        self
    }

    /// The GET query string, or the POST body, of the same search with `token`.
    pub fn with_token(&self, token: &str) -> Origin {
        match &self.origin {
            Origin::Query(pairs) => {
                let mut pairs: Vec<_> =
                    pairs.iter().filter(|(k, _)| k != "token").cloned().collect();
                pairs.push(("token".into(), token.into()));
                Origin::Query(pairs)
            }
            Origin::Body(body) => {
                let mut body = body.clone();
                body.insert("token".into(), json!(token));
                Origin::Body(body)
            }
        }
    }
}

impl Origin {
    /// The pairs as a query string (for GET links).
    pub fn query_string(&self) -> String {
        match self {
            Origin::Query(pairs) => {
                url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
            }
            Origin::Body(_) => String::new(),
        }
    }
}

/// A `limit` checked and cut to [`MAX_LIMIT`].
fn limit(given: Option<i64>) -> Result<usize, ApiError> {
    match given {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if n < 1 => {
            Err(ApiError::bad_request(format!("limit must be at least 1, not {n}")))
        }
        Some(n) => Ok(usize::try_from(n).unwrap_or(MAX_LIMIT).min(MAX_LIMIT)),
    }
}

/// A CQL2 filter in the language `lang` says (`cql2-text` or `cql2-json`; either when absent).
fn parse_filter(text: &str, lang: Option<&str>) -> Result<Filter, ApiError> {
    match lang {
        None | Some("cql2-text") | Some("cql2-json") => Ok(Filter::parse(text)?),
        Some(other) => Err(ApiError::bad_request(format!(
            "filter-lang '{other}' is not supported: use cql2-text or cql2-json"
        ))),
    }
}

/// The POST form of `sortby`: `[{"field": ..., "direction": "asc" | "desc"}]`.
fn sort_keys(keys: &[Json]) -> Result<SortBy, ApiError> {
    let bad = || ApiError::bad_request("'sortby' must be a list of {field, direction}");
    let keys = keys
        .iter()
        .map(|k| {
            let field =
                k.get("field").and_then(Json::as_str).filter(|f| !f.is_empty()).ok_or_else(bad)?;
            let descending = match k.get("direction").and_then(Json::as_str) {
                None | Some("asc") => false,
                Some("desc") => true,
                Some(_) => return Err(bad()),
            };
            Ok(SortKey { field: field.to_string(), descending })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    if keys.is_empty() {
        return Err(bad());
    }
    Ok(SortBy(keys))
}

/// The library request the parameters describe.
#[allow(clippy::too_many_arguments)]
fn build(
    bbox: Option<Vec<f64>>,
    intersects: Option<String>,
    datetime: Option<&str>,
    ids: Vec<String>,
    collections: Vec<String>,
    filter: Option<Filter>,
    sortby: Option<SortBy>,
    fields: Fields,
) -> Result<SearchRequest, ApiError> {
    let area = match (bbox, intersects) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request("give bbox or intersects, not both"));
        }
        (Some(b), None) => Some(Area::from_bbox(&b)?),
        (None, Some(g)) => Some(Area::from_geojson(&g)?),
        (None, None) => None,
    };
    Ok(SearchRequest {
        area,
        datetime: datetime.map(Interval::parse_rfc3339).transpose()?,
        ids,
        collections,
        filter,
        sortby,
        max_items: None,
        fields,
        snapshot_id: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_and_post_give_the_same_request() {
        let get = SearchParams::from_query(
            "bbox=-10,-5,10,5&datetime=2020-01-01T00:00:00Z/..&collections=a,b&limit=3&sortby=-id&fields=-assets",
        )
        .unwrap();
        let post = SearchParams::from_body(
            br#"{"bbox":[-10,-5,10,5],"datetime":"2020-01-01T00:00:00Z/..","collections":["a","b"],
                "limit":3,"sortby":[{"field":"id","direction":"desc"}],"fields":{"exclude":["assets"]}}"#,
        )
        .unwrap();
        for p in [&get, &post] {
            assert_eq!(p.limit, 3);
            assert_eq!(p.request.collections, ["a", "b"]);
            assert_eq!(
                p.request.sortby,
                Some(SortBy(vec![SortKey { field: "id".into(), descending: true }]))
            );
            assert_eq!(p.request.fields.exclude, ["assets"]);
            assert!(p.request.area.is_some() && p.request.datetime.is_some());
        }
    }

    #[test]
    fn limits_default_are_capped_and_must_be_positive() {
        assert_eq!(SearchParams::from_query("").unwrap().limit, DEFAULT_LIMIT);
        assert_eq!(SearchParams::from_query("limit=100000").unwrap().limit, MAX_LIMIT);
        assert_eq!(SearchParams::from_query("limit=0").unwrap_err().status(), 400);
        assert_eq!(SearchParams::from_body(br#"{"limit":-1}"#).unwrap_err().status(), 400);
    }

    #[test]
    fn malformed_parameters_are_bad_requests() {
        for q in [
            "bbox=1,2,x,4",
            "bbox=1,2,3",
            "datetime=yesterday",
            "filter=a%20%3D%3D",
            "intersects={",
            "bbox=0,0,1,1&intersects={}",
        ] {
            assert_eq!(SearchParams::from_query(q).unwrap_err().status(), 400, "{q}");
        }
        assert_eq!(SearchParams::from_body(b"[1]").unwrap_err().status(), 400);
        assert_eq!(SearchParams::from_body(br#"{"ids":5}"#).unwrap_err().status(), 400);
        assert_eq!(SearchParams::from_body(br#"{"ids":["a",1]}"#).unwrap_err().status(), 400);
        // A lone string is taken as a list of one (some clients send it so).
        assert_eq!(SearchParams::from_body(br#"{"ids":"a"}"#).unwrap().request.ids, ["a"]);
    }

    #[test]
    fn the_next_query_replaces_the_token() {
        let p = SearchParams::from_query("limit=2&token=old").unwrap();
        assert_eq!(p.with_token("new").query_string(), "limit=2&token=new");
    }
}
