//! The source text of an object's members, so that JSON text columns keep the item's own
//! spelling of every number (`2.75e-05` stays `2.75e-05`, not `0.0000275`) and string.
//!
//! A parsed `serde_json::Value` keeps each number's value exactly (`float_roundtrip`) but not
//! its spelling; the members read here as raw text do, and only insignificant whitespace is
//! removed from them.

use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::Value as Json;
use serde_json::value::RawValue;

/// The members of one JSON object as (key, source text), in source order; empty when the item
/// was given as a parsed value (then values are spelled as serde_json writes them).
#[derive(Debug, Default)]
pub(crate) struct Spelled<'a> {
    members: Vec<(String, &'a RawValue)>,
}

impl<'a> Spelled<'a> {
    /// The members of the object in `text`; empty when `text` is not an object.
    pub(crate) fn of(text: &'a [u8]) -> Spelled<'a> {
        let mut de = serde_json::Deserializer::from_slice(text);
        de.deserialize_map(MembersVisitor).unwrap_or_default()
    }

    /// The source text of member `key` (the last one, as in the parsed value).
    pub(crate) fn raw(&self, key: &str) -> Option<&'a str> {
        self.members.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.get())
    }

    /// Member `key` as compact JSON text: its source spelling, or `value` written by serde_json
    /// when there is no source text.
    pub(crate) fn text(&self, key: &str, value: &Json) -> String {
        self.raw(key).map_or_else(|| value.to_string(), compact)
    }
}

struct MembersVisitor;

impl<'de> Visitor<'de> for MembersVisitor {
    type Value = Spelled<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, &'de RawValue>()? {
            members.push((k, v));
        }
        Ok(Spelled { members })
    }
}

/// JSON text without the whitespace between tokens (strings are copied as they are).
pub(crate) fn compact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_keep_their_spelling_and_lose_only_whitespace() {
        let text = r#"{"a": [1.50, 2.75e-05, -0.0], "b": {"s": "x \" y", "n": 1E3}, "a": 7}"#;
        let s = Spelled::of(text.as_bytes());
        assert_eq!(s.text("b", &Json::Null), r#"{"s":"x \" y","n":1E3}"#);
        assert_eq!(s.raw("a"), Some("7"), "the last of a repeated key, as in the parsed value");
        assert_eq!(Spelled::of(b"[1]").raw("a"), None);
        assert_eq!(Spelled::default().text("a", &serde_json::json!([1.5])), "[1.5]");
        assert_eq!(compact("[ 1.50 ,\n\t2.75e-05 ]"), "[1.50,2.75e-05]");
    }
}
