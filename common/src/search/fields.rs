//! `fields`: which members of each result item are kept (STAC API fields extension).

use serde_json::{Map, Value as Json};

/// Members to keep and to drop, as dotted paths (`properties.datetime`, `assets`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields {
    /// When not empty, only these (plus `type`, `stac_version`, `id`, `collection`) are kept.
    pub include: Vec<String>,
    /// Dropped after the include step.
    pub exclude: Vec<String>,
}

/// Members every item keeps, whatever `include` says: without them it is no longer a STAC
/// item, nor one this table can name (an item is its collection and id).
pub(crate) const ALWAYS: [&str; 4] = ["type", "stac_version", "id", "collection"];

/// The members the fields extension names as the default set, kept when a client asks to
/// include nothing in particular but to exclude some.
const DEFAULT_SET: [&str; 8] =
    ["type", "stac_version", "id", "geometry", "bbox", "links", "assets", "properties.datetime"];

impl Fields {
    /// The default set less `exclude` (a POST body with an empty or null `include`).
    pub fn default_set_without(exclude: Vec<String>) -> Fields {
        let include =
            DEFAULT_SET.iter().filter(|m| !exclude.iter().any(|e| e == *m)).map(|m| m.to_string());
        Fields { include: include.collect(), exclude }
    }

    /// Parses the GET form: `a,+b,-c` (`-` excludes).
    pub fn parse(text: &str) -> Fields {
        let mut f = Fields::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.strip_prefix('-') {
                Some(x) => f.exclude.push(x.to_string()),
                None => f.include.push(part.trim_start_matches('+').to_string()),
            }
        }
        f
    }

    /// Whether the top-level `member` (or a part of it) is in the items returned.
    pub fn keeps(&self, member: &str) -> bool {
        if ALWAYS.contains(&member) {
            return true;
        }
        let within = self.includes_within(member);
        within || (self.include.is_empty() && !self.exclude.iter().any(|e| e == member))
    }

    /// Whether the items are returned whole.
    pub fn is_empty(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }

    /// Applies the selection to one item.
    pub fn apply(&self, item: Json) -> Json {
        let mut item = if self.include.is_empty() {
            item
        } else {
            let mut kept = Json::Object(Map::new());
            for path in self.include.iter().map(String::as_str).chain(ALWAYS) {
                if let Some(v) = lookup(&item, path) {
                    insert(&mut kept, path, v.clone());
                }
            }
            kept
        };
        for path in &self.exclude {
            if !ALWAYS.contains(&path.as_str()) && !self.includes_within(path) {
                remove(&mut item, path);
            }
        }
        item
    }

    /// Whether `path` or a member inside it is included: the more specific include wins
    /// (`-properties,+properties.platform` keeps `properties.platform`).
    fn includes_within(&self, path: &str) -> bool {
        self.include
            .iter()
            .any(|i| i == path || i.strip_prefix(path).is_some_and(|rest| rest.starts_with('.')))
    }
}

/// The value at a dotted path.
pub(crate) fn lookup<'a>(v: &'a Json, path: &str) -> Option<&'a Json> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

fn insert(v: &mut Json, path: &str, value: Json) {
    let mut cur = v;
    let mut keys = path.split('.').peekable();
    while let Some(k) = keys.next() {
        let Json::Object(map) = cur else { return };
        if keys.peek().is_none() {
            map.insert(k.to_string(), value);
            return;
        }
        cur = map.entry(k.to_string()).or_insert_with(|| Json::Object(Map::new()));
    }
}

fn remove(v: &mut Json, path: &str) {
    match path.rsplit_once('.') {
        None => {
            if let Json::Object(m) = v {
                m.remove(path);
            }
        }
        Some((parent, last)) => {
            let parent = parent.split('.').try_fold(v, |v, k| v.get_mut(k));
            if let Some(Json::Object(m)) = parent {
                m.remove(last);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn include_keeps_the_paths_and_the_identity_and_exclude_drops() {
        let item = json!({"type": "Feature", "id": "a", "assets": {"x": 1},
            "properties": {"datetime": "t", "platform": "p"}});
        let f = Fields::parse("properties.platform,-assets");
        assert_eq!(
            f.apply(item.clone()),
            json!({"type": "Feature", "id": "a", "properties": {"platform": "p"}})
        );
        let f = Fields::parse("-properties,+properties.platform");
        assert_eq!(
            f.apply(item.clone()),
            json!({"type": "Feature", "id": "a", "properties": {"platform": "p"}})
        );
        assert!(!f.keeps("geometry") && !f.keeps("assets") && f.keeps("properties"));
        assert!(f.keeps("id"), "the identity is always kept");
        assert!(Fields::default().keeps("geometry"));
        assert!(!Fields::parse("-geometry").keeps("geometry"));
        let f = Fields::parse("-assets,-properties.datetime,-id");
        assert_eq!(
            f.apply(item),
            json!({"type": "Feature", "id": "a", "properties": {"platform": "p"}})
        );
    }
}
