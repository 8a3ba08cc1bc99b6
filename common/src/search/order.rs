//! `sortby`: the order of search results.

use std::cmp::Ordering;

use serde_json::Value as Json;

use super::SearchError;
use super::fields::lookup;
use crate::stac::datetime::parse_timestamp;

/// One sort key: a field and its direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    /// The field: a top-level member (`id`, `collection`) or a property, with or without the
    /// `properties.` prefix.
    pub field: String,
    /// Largest first.
    pub descending: bool,
}

/// The keys results are sorted by, most significant first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortBy(pub Vec<SortKey>);

impl Default for SortBy {
    /// Newest first, then by id: the order STAC API servers such as pgstac use.
    fn default() -> Self {
        SortBy(vec![
            SortKey { field: "properties.datetime".into(), descending: true },
            SortKey { field: "id".into(), descending: false },
        ])
    }
}

impl SortBy {
    /// Parses the GET form: `+field,-field,field` (no sign = ascending).
    pub fn parse(text: &str) -> Result<SortBy, SearchError> {
        let mut keys = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (descending, field) = match part.as_bytes()[0] {
                b'-' => (true, &part[1..]),
                b'+' => (false, &part[1..]),
                _ => (false, part),
            };
            if field.is_empty() {
                return Err(SearchError::BadSortby {
                    sortby: text.into(),
                    reason: "a key has no field".into(),
                });
            }
            keys.push(SortKey { field: field.to_string(), descending });
        }
        if keys.is_empty() {
            return Err(SearchError::BadSortby { sortby: text.into(), reason: "no keys".into() });
        }
        Ok(SortBy(keys))
    }

    /// Compares two items by the keys; an item without the field sorts after one with it.
    pub fn compare(&self, a: &Json, b: &Json) -> Ordering {
        self.compare_keys(&self.keys_of(a), &self.keys_of(b))
    }

    /// Sorts `items` by the keys (stable), each item's values looked up and their timestamps
    /// parsed once rather than at every comparison.
    pub fn sort(&self, items: &mut Vec<Json>) {
        let keys: Vec<Vec<Option<KeyValue<'_>>>> = items.iter().map(|i| self.keys_of(i)).collect();
        let mut order: Vec<usize> = (0..items.len()).collect();
        order.sort_by(|a, b| self.compare_keys(&keys[*a], &keys[*b]));
        drop(keys);
        let mut slots: Vec<Json> = std::mem::take(items);
        *items = order.into_iter().map(|i| std::mem::take(&mut slots[i])).collect();
    }

    fn keys_of<'a>(&self, item: &'a Json) -> Vec<Option<KeyValue<'a>>> {
        self.0.iter().map(|k| field_value(item, &k.field).map(KeyValue::new)).collect()
    }

    fn compare_keys(&self, a: &[Option<KeyValue<'_>>], b: &[Option<KeyValue<'_>>]) -> Ordering {
        for ((key, x), y) in self.0.iter().zip(a).zip(b) {
            let ord = match (x, y) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(x), Some(y)) => {
                    let o = x.compare(y);
                    if key.descending { o.reverse() } else { o }
                }
            };
            if ord != Ordering::Equal {
                return ord;
            }
        }
        Ordering::Equal
    }
}

/// A sort field's value with its instant, when it is a timestamp string.
struct KeyValue<'a> {
    value: &'a Json,
    instant: Option<chrono::DateTime<chrono::Utc>>,
}

impl<'a> KeyValue<'a> {
    fn new(value: &'a Json) -> Self {
        let instant = value.as_str().and_then(parse_timestamp);
        KeyValue { value, instant }
    }

    /// As [`compare_values`], with the instants parsed already.
    fn compare(&self, other: &KeyValue<'_>) -> Ordering {
        match (self.value, other.value, self.instant, other.instant) {
            (Json::String(_), Json::String(_), Some(a), Some(b)) => a.cmp(&b),
            (Json::String(a), Json::String(b), _, _) => a.cmp(b),
            (x, y, _, _) => compare_values(x, y),
        }
    }
}

/// The value of a sort field: the path as given, else inside `properties`.
fn field_value<'a>(item: &'a Json, field: &str) -> Option<&'a Json> {
    lookup(item, field).or_else(|| lookup(item.get("properties")?, field)).filter(|v| !v.is_null())
}

/// Numbers by value, timestamps by instant, other strings by text, then by JSON text.
fn compare_values(x: &Json, y: &Json) -> Ordering {
    match (x, y) {
        (Json::Number(a), Json::Number(b)) => {
            a.as_f64().partial_cmp(&b.as_f64()).unwrap_or(Ordering::Equal)
        }
        (Json::String(a), Json::String(b)) => match (parse_timestamp(a), parse_timestamp(b)) {
            (Some(ta), Some(tb)) => ta.cmp(&tb),
            _ => a.cmp(b),
        },
        (Json::Bool(a), Json::Bool(b)) => a.cmp(b),
        _ => x.to_string().cmp(&y.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sorting_matches_the_pairwise_comparison_and_keeps_ties_in_order() {
        let items: Vec<Json> = [
            json!({"id": "b", "properties": {"datetime": "2020-01-01T00:00:00Z", "n": 2}}),
            json!({"id": "a", "properties": {"datetime": "2020-01-01T00:00:00+00:00", "n": 1}}),
            json!({"id": "c", "properties": {"n": "text"}}),
            json!({"id": "d", "properties": {"datetime": "2021-06-01T00:00:00Z", "n": 10}}),
            json!({"id": "e", "properties": {"datetime": "not a time", "n": 2}}),
        ]
        .into();
        for sortby in ["-properties.datetime,id", "n,-id", "id", "+n"] {
            let by = SortBy::parse(sortby).unwrap();
            let mut pairwise = items.clone();
            pairwise.sort_by(|a, b| by.compare(a, b));
            let mut sorted = items.clone();
            by.sort(&mut sorted);
            assert_eq!(sorted, pairwise, "{sortby}");
        }
        let mut by_time = items.clone();
        SortBy::default().sort(&mut by_time);
        let ids: Vec<&str> = by_time.iter().map(|i| i["id"].as_str().unwrap()).collect();
        // Same instant written two ways: by id; a string that is no time sorts by its text.
        assert_eq!(ids, ["e", "d", "a", "b", "c"]);
    }

    #[test]
    fn keys_parse_with_their_directions() {
        let s = SortBy::parse("-properties.datetime,+id,collection").unwrap();
        assert_eq!(s.0.len(), 3);
        assert!(s.0[0].descending);
        assert!(!s.0[2].descending);
        assert!(SortBy::parse(" , ").is_err());
    }

    #[test]
    fn timestamps_compare_as_instants_and_missing_values_go_last() {
        let a = json!({"id": "a", "properties": {"datetime": "2020-01-01T00:00:00.5Z"}});
        let b = json!({"id": "b", "properties": {"datetime": "2020-01-01T00:00:00Z"}});
        let c = json!({"id": "c", "properties": {}});
        let s = SortBy::parse("datetime").unwrap();
        assert_eq!(s.compare(&b, &a), Ordering::Less);
        assert_eq!(s.compare(&c, &a), Ordering::Greater);
        let s = SortBy::parse("-datetime").unwrap();
        assert_eq!(s.compare(&c, &a), Ordering::Greater);
        assert_eq!(SortBy::default().compare(&a, &b), Ordering::Less, "newest first");
    }
}
