//! Paging: a `token` names the snapshot the first page read and how many items came before,
//! so every later page reads the same snapshot in the same total order and each item is
//! returned exactly once, even when new snapshots are committed meanwhile.

use std::fmt;

use earthcatalog_common::search::{SortBy, SortKey};

use super::error::ApiError;

/// Where a page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    /// The snapshot every page of the search reads.
    pub snapshot: i64,
    /// Items on the pages before this one.
    pub offset: usize,
}

impl Token {
    /// Parses a token this server wrote.
    pub fn parse(text: &str) -> Result<Token, ApiError> {
        let bad = || ApiError::bad_request(format!("invalid paging token '{text}'"));
        let (snapshot, offset) = text.split_once('_').ok_or_else(bad)?;
        Ok(Token {
            snapshot: snapshot.parse().map_err(|_| bad())?,
            offset: offset.parse().map_err(|_| bad())?,
        })
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.snapshot, self.offset)
    }
}

/// `sortby` made a total order: items equal on every key the client gave are ordered by
/// collection and id, so a page boundary falls at the same place on every request.
pub fn total_order(sortby: Option<SortBy>) -> SortBy {
    let mut keys = sortby.unwrap_or_default().0;
    for field in ["id", "collection"] {
        let named = |k: &SortKey| k.field == field || k.field == format!("properties.{field}");
        if !keys.iter().any(named) {
            keys.push(SortKey { field: field.into(), descending: false });
        }
    }
    SortBy(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        let t = Token { snapshot: -42, offset: 30 };
        assert_eq!(Token::parse(&t.to_string()).unwrap(), t);
        for bad in ["", "12", "a_1", "1_-1", "1_x"] {
            assert_eq!(Token::parse(bad).unwrap_err().status(), 400, "{bad}");
        }
    }

    #[test]
    fn the_order_ends_with_collection_and_id() {
        let s = total_order(Some(SortBy::parse("-properties.platform,id").unwrap()));
        let fields: Vec<&str> = s.0.iter().map(|k| k.field.as_str()).collect();
        assert_eq!(fields, ["properties.platform", "id", "collection"]);
    }
}
