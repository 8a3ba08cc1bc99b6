//! Which columns a search reads: those its tests, its order, its filter and its `fields` need.
//!
//! An item's JSON text columns (`assets`, `links`, the extras) are most of a row's bytes and
//! most of the work of rebuilding it; a search that returns ids, or a few properties, need not
//! read or rebuild them. An item is rebuilt from the columns read (the others read as null), so
//! each member a search looks at must come from a column read here.

use std::collections::BTreeSet;

use super::SearchRequest;
use super::fields::ALWAYS;
use crate::schema::{self, COLUMNS};
use crate::stac::columns::{property_columns, top_level_columns, top_level_json_columns};

/// Columns every search reads: the item's identity, its footprint (the exact test) and its
/// covering (the test before it).
const ALWAYS_READ: [&str; 4] = [schema::ID, "collection", schema::GEOMETRY, schema::GEOMETRY_BBOX];

const EXTRA_PROPERTIES: &str = "extra_properties";
const EXTRA_FIELDS: &str = "extra_fields";

/// The columns `request` needs, by name; `None` when it needs every column.
pub(crate) fn columns_read(request: &SearchRequest) -> Option<BTreeSet<&'static str>> {
    let fields = &request.fields;
    let mut read: BTreeSet<&'static str> = if !fields.include.is_empty() {
        let members = fields.include.iter().map(String::as_str).chain(ALWAYS);
        members.flat_map(columns_of_member).collect()
    } else if !fields.exclude.is_empty() {
        let dropped: BTreeSet<&str> =
            fields.exclude.iter().filter_map(|m| column_dropped_by(m)).collect();
        if dropped.is_empty() {
            return None;
        }
        COLUMNS.iter().map(|c| c.name).filter(|c| !dropped.contains(c)).collect()
    } else {
        return None;
    };
    read.extend(ALWAYS_READ);
    let sortby = request.sortby.clone().unwrap_or_default();
    read.extend(sortby.0.iter().flat_map(|k| columns_of_field(&k.field)));
    if let Some(filter) = &request.filter {
        read.extend(filter.properties().iter().flat_map(|p| columns_of_field(p)));
    }
    Some(read)
}

/// The columns a member path (`assets`, `properties.platform`, `bbox`) is rebuilt from.
fn columns_of_member(path: &str) -> Vec<&'static str> {
    let (head, rest) = path.split_once('.').unwrap_or((path, ""));
    if head == "properties" {
        if rest.is_empty() {
            let mut all: Vec<_> = property_columns().iter().map(|(_, name, _)| *name).collect();
            all.push(EXTRA_PROPERTIES);
            return all;
        }
        return vec![property_column(rest).unwrap_or(EXTRA_PROPERTIES)];
    }
    if head == schema::GEOMETRY {
        return vec![schema::GEOMETRY];
    }
    let top = top_level_columns().iter().chain(top_level_json_columns());
    match top.map(|(_, name, _)| *name).find(|name| *name == head) {
        Some(name) => vec![name],
        None => vec![EXTRA_FIELDS],
    }
}

/// The columns a sort key or a CQL2 property is read from: the path as given at the top level,
/// else inside `properties` (how both look a field up).
pub(crate) fn columns_of_field(field: &str) -> Vec<&'static str> {
    let mut columns = columns_of_member(field);
    // A member every item has at the top level is never looked up inside `properties`, nor is
    // a path into `properties` (a property named `properties` is not worth a column's read).
    if field != schema::ID && !field.starts_with("properties.") {
        columns.extend(columns_of_member(&format!("properties.{field}")));
    }
    columns
}

/// The typed column holding `properties.<path>` (or a member inside it), if there is one.
fn property_column(path: &str) -> Option<&'static str> {
    property_columns()
        .iter()
        .map(|(_, name, _)| *name)
        .find(|name| path == *name || path.strip_prefix(name).is_some_and(|r| r.starts_with('.')))
}

/// The column an exclusion removes whole (`assets`, `properties.platform`), if it names one;
/// the item's identity and footprint are always read.
fn column_dropped_by(path: &str) -> Option<&'static str> {
    match columns_of_member(path).as_slice() {
        [one] if *one != EXTRA_FIELDS && *one != EXTRA_PROPERTIES && !ALWAYS_READ.contains(one) => {
            // `properties.platform.x` excludes a part of the column, not the column.
            let whole = path == *one || path.strip_prefix("properties.") == Some(one);
            whole.then_some(*one)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::{Fields, Filter, SortBy};

    fn read(fields: &str, sortby: Option<&str>, filter: Option<&str>) -> Option<Vec<&'static str>> {
        let request = SearchRequest {
            fields: Fields::parse(fields),
            sortby: sortby.map(|s| SortBy::parse(s).unwrap()),
            filter: filter.map(|f| Filter::parse(f).unwrap()),
            ..Default::default()
        };
        columns_read(&request).map(|c| c.into_iter().collect())
    }

    #[test]
    fn ids_only_read_the_identity_footprint_and_sort_columns() {
        // The default order is by `properties.datetime` (its typed column), then by `id`.
        let want =
            ["collection", "datetime", "geometry", "geometry_bbox", "id", "stac_version", "type"];
        assert_eq!(read("id", None, None).unwrap(), want);
        // A sort on an untyped name may be a top-level member or a property.
        let got = read("id", Some("eo:cloud_cover"), None).unwrap();
        assert!(got.contains(&"extra_fields") && got.contains(&"extra_properties"), "{got:?}");
    }

    #[test]
    fn included_members_and_filter_properties_bring_their_columns() {
        let got = read("properties.platform,assets.thumbnail,links", None, None).unwrap();
        for c in ["platform", "assets", "links"] {
            assert!(got.contains(&c), "{c} in {got:?}");
        }
        assert!(!got.contains(&"extra_fields") && !got.contains(&"scene_1_id"), "{got:?}");
        let got = read("id", None, Some("percent_valid_pixels >= 50 AND mystery = 'x'")).unwrap();
        for c in ["percent_valid_pixels", "extra_properties", "extra_fields"] {
            assert!(got.contains(&c), "{c} in {got:?}");
        }
        let got = read("properties", None, None).unwrap();
        assert!(got.contains(&"scene_2_frame") && got.contains(&"extra_properties"));
    }

    #[test]
    fn whole_items_and_partial_exclusions_read_every_column() {
        assert_eq!(read("", None, None), None);
        assert_eq!(read("", None, Some("platform = 'LC08'")), None);
        assert_eq!(read("-assets.thumbnail,-properties.mystery,-id", None, None), None);
        let got = read("-assets,-properties.scene_1_id", None, None).unwrap();
        assert!(!got.contains(&"assets") && !got.contains(&"scene_1_id"), "{got:?}");
        assert!(got.contains(&"links") && got.contains(&"id"));
        // Excluded but sorted on: read.
        let got = read("-properties.platform", Some("platform"), None).unwrap();
        assert!(got.contains(&"platform"));
    }
}
