//! The part of a CQL2 filter that Iceberg can apply to columns, before any item is rebuilt.
//!
//! The translation is a necessary condition of the filter, never more: every row it drops is a
//! row `cql2` would reject on the rebuilt item, and `cql2` still decides on the rows it keeps.
//! So only what is sure to mean the same on the column and on the item is translated:
//!
//! * comparisons (`=`, `<>`, `<`, `<=`, `>`, `>=`) and `IN` of a property with a literal, on a
//!   typed text column with a text literal, a long column with a whole number (below 2^53: the
//!   item's value is compared as a double), or a double column (`<`..`>=` only, and not with 0:
//!   Arrow orders -0.0 before 0.0, `cql2` does not); a missing value is no match on both sides;
//! * `AND` of any translatable parts, `OR` when every part translates; nothing under `NOT`;
//! * timestamps, JSON text columns, extras, functions, spatial and temporal operators: not at all.
//!
//! `cql2` looks a name up at the item's top level first, then in `properties`: a typed
//! property is the column's value unless the item has a top-level member of that name, which
//! only `extra_fields` can hold, so such a comparison keeps rows that have extra top-level
//! members. `properties.<name>` and the top-level `id` and `collection` need no such guard.

use cql2::Expr;
use iceberg::expr::{Predicate, Reference};
use iceberg::spec::Datum;

use crate::schema::ColumnKind;
use crate::stac::columns::property_columns;

/// Where a filter's property is read from.
struct Target {
    column: &'static str,
    kind: ColumnKind,
    /// Whether a top-level member of the same name, in `extra_fields`, would be seen first.
    shadowed_by_extra_fields: bool,
}

/// The Iceberg row filter implied by a CQL2 expression; `None` when nothing translates.
pub(crate) fn row_predicate(expr: &Expr) -> Option<Predicate> {
    let Expr::Operation { op, args } = expr else { return None };
    let op = op.to_ascii_lowercase();
    match (op.as_str(), args.as_slice()) {
        ("and", _) => args.iter().filter_map(|a| row_predicate(a)).reduce(Predicate::and),
        ("or", _) => {
            let parts: Option<Vec<Predicate>> = args.iter().map(|a| row_predicate(a)).collect();
            parts?.into_iter().reduce(Predicate::or)
        }
        ("in", [left, right]) => in_list(left, right),
        (op, [left, right]) => comparison(op, left, right),
        _ => None,
    }
}

fn comparison(op: &str, left: &Expr, right: &Expr) -> Option<Predicate> {
    let (property, literal, op) = match (left, right) {
        (Expr::Property { property }, literal) => (property, literal, op),
        (literal, Expr::Property { property }) => (property, literal, flipped(op)?),
        _ => return None,
    };
    let target = target(property)?;
    let datum = datum(target.kind, literal)?;
    if target.kind == ColumnKind::Double && !matches!(op, "<" | "<=" | ">" | ">=") {
        return None;
    }
    let column = Reference::new(target.column);
    let predicate = match op {
        "=" => column.equal_to(datum),
        "<>" | "!=" => column.not_equal_to(datum),
        "<" => column.less_than(datum),
        "<=" => column.less_than_or_equal_to(datum),
        ">" => column.greater_than(datum),
        ">=" => column.greater_than_or_equal_to(datum),
        _ => return None,
    };
    Some(guarded(predicate, &target))
}

/// `a < x` is `x > a`.
fn flipped(op: &str) -> Option<&str> {
    Some(match op {
        "=" | "<>" | "!=" => op,
        "<" => ">",
        "<=" => ">=",
        ">" => "<",
        ">=" => "<=",
        _ => return None,
    })
}

fn in_list(left: &Expr, right: &Expr) -> Option<Predicate> {
    let (Expr::Property { property }, Expr::Array(values)) = (left, right) else { return None };
    let target = target(property)?;
    if target.kind == ColumnKind::Double {
        return None;
    }
    let values: Option<Vec<Datum>> = values.iter().map(|v| datum(target.kind, v)).collect();
    let predicate = Reference::new(target.column).is_in(values?);
    Some(guarded(predicate, &target))
}

/// The column a CQL2 property name is read from, when it is a column we translate for.
fn target(property: &str) -> Option<Target> {
    if matches!(property, "id" | "collection") {
        // Every item has an id at the top level; a collection given only inside
        // `properties` is stored in the same column.
        let column = if property == "id" { "id" } else { "collection" };
        return Some(Target { column, kind: ColumnKind::String, shadowed_by_extra_fields: false });
    }
    let (name, shadowed) = match property.strip_prefix("properties.") {
        Some(name) => (name, false),
        None => (property, true),
    };
    let &(_, column, kind) = property_columns().iter().find(|(_, n, _)| *n == name)?;
    Some(Target { column, kind, shadowed_by_extra_fields: shadowed })
}

/// The literal as a value of a column of `kind`, when comparing them means the same as
/// `cql2` comparing the item's value with it.
fn datum(kind: ColumnKind, literal: &Expr) -> Option<Datum> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    match (kind, literal) {
        (ColumnKind::String, Expr::Literal(s)) => Some(Datum::string(s)),
        (ColumnKind::Long, Expr::Float(x)) if x.fract() == 0.0 && x.abs() < EXACT => {
            Some(Datum::long(*x as i64))
        }
        (ColumnKind::Double, Expr::Float(x)) if x.is_finite() && *x != 0.0 => {
            Some(Datum::double(*x))
        }
        _ => None,
    }
}

fn guarded(predicate: Predicate, target: &Target) -> Predicate {
    if target.shadowed_by_extra_fields {
        predicate.or(Reference::new("extra_fields").is_not_null())
    } else {
        predicate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pushed(cql2: &str) -> Option<String> {
        let expr: Expr = cql2.parse().unwrap();
        row_predicate(&expr).map(|p| p.to_string())
    }

    #[test]
    fn comparisons_on_typed_columns_translate_with_the_extra_fields_guard() {
        let got = pushed("platform = 'LC08' AND percent_valid_pixels >= 50").unwrap();
        assert!(got.contains("platform = \"LC08\""), "{got}");
        assert!(got.contains("percent_valid_pixels >= 50"), "{got}");
        assert!(got.contains("extra_fields IS NOT NULL"), "{got}");
        let got = pushed("properties.platform = 'LC08'").unwrap();
        assert!(!got.contains("extra_fields"), "{got}");
        // The literal on the left: the operator turns round.
        let got = pushed("50 < percent_valid_pixels").unwrap();
        assert!(got.contains("percent_valid_pixels > 50"), "{got}");
        let got = pushed("id IN ('a', 'b')").unwrap();
        assert!(got.contains("id IN"), "{got}");
    }

    #[test]
    fn what_might_mean_otherwise_on_the_item_is_left_to_cql2() {
        for cql2 in [
            // Types that cql2 would not compare, or compares differently.
            "percent_valid_pixels >= 49.5",
            "platform = 5",
            "latitude = 70.5",
            "latitude >= 0",
            "datetime > TIMESTAMP('2020-01-01T00:00:00Z')",
            // Not a typed column, a negation, a function, a spatial test.
            "eo:cloud_cover < 10",
            "NOT (platform = 'LC08')",
            "casei(platform) = 'lc08'",
            "S_INTERSECTS(geometry, POINT(0 0))",
            // An OR with one untranslatable side says nothing.
            "platform = 'LC08' OR eo:cloud_cover < 10",
        ] {
            assert_eq!(pushed(cql2), None, "{cql2}");
        }
        // An AND keeps what translates.
        let got = pushed("eo:cloud_cover < 10 AND latitude > 60").unwrap();
        assert!(got.contains("latitude > 60"), "{got}");
        assert!(!got.contains("cloud"), "{got}");
    }
}
