//! Which copy of an item is kept when one input lists it more than once: the copy with the
//! newest `updated`, a missing `updated` older than any; on a tie the copy listed later. Copies
//! are items with the same identity, (collection, id) ([`crate::ids::ItemKey`]).
//!
//! One rule for both pipelines: backfill compaction applies it to the staged rows of a
//! (cell, year), the incremental pipeline to the items of a chunk before they are fanned out.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use crate::ids::ItemKey;

/// Whether a copy listed later (`later`, its `updated` in microseconds) replaces the copy kept
/// so far (`kept`). Ties go to the later copy: an inventory lists the newer object last.
pub fn later_copy_wins(later: Option<i64>, kept: Option<i64>) -> bool {
    // `None` orders before every `Some`, so an item without `updated` loses to one with it.
    later >= kept
}

/// Keeps one copy per key of `items` (in listing order) by [`later_copy_wins`]; the kept items
/// stay in listing order. Returns them and how many copies were dropped.
pub fn keep_newest<T>(
    items: Vec<T>,
    key: impl Fn(&T) -> ItemKey<'_>,
    updated: impl Fn(&T) -> Option<i64>,
) -> (Vec<T>, usize) {
    let mut winner: HashMap<ItemKey<'_>, usize> = HashMap::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match winner.entry(key(item)) {
            Entry::Vacant(v) => {
                v.insert(i);
            }
            Entry::Occupied(mut o) => {
                if later_copy_wins(updated(item), updated(&items[*o.get()])) {
                    o.insert(i);
                }
            }
        }
    }
    let mut keep = vec![false; items.len()];
    for &i in winner.values() {
        keep[i] = true;
    }
    let dropped = items.len() - winner.len();
    let kept = items.into_iter().zip(keep).filter_map(|(item, k)| k.then_some(item)).collect();
    (kept, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> ItemKey<'_> {
        ItemKey { collection: None, id }
    }

    fn ids(kept: &[(&'static str, Option<i64>, u8)]) -> Vec<(&'static str, u8)> {
        kept.iter().map(|(id, _, tag)| (*id, *tag)).collect()
    }

    #[test]
    fn the_newest_updated_wins_wherever_it_is_listed() {
        let items =
            vec![("a", Some(5), 1), ("b", Some(1), 2), ("a", Some(3), 3), ("a", Some(9), 4)];
        let (kept, dropped) = keep_newest(items, |i| key(i.0), |i| i.1);
        assert_eq!(ids(&kept), [("b", 2), ("a", 4)]);
        assert_eq!(dropped, 2);

        let items = vec![("a", Some(9), 1), ("a", Some(3), 2)];
        let (kept, dropped) = keep_newest(items, |i| key(i.0), |i| i.1);
        assert_eq!(ids(&kept), [("a", 1)], "a newer copy listed first still wins");
        assert_eq!(dropped, 1);
    }

    #[test]
    fn ties_go_to_the_later_copy_and_no_updated_is_older_than_any() {
        let items = vec![("a", Some(5), 1), ("a", Some(5), 2)];
        assert_eq!(ids(&keep_newest(items, |i| key(i.0), |i| i.1).0), [("a", 2)]);
        let items = vec![("a", None, 1), ("a", None, 2)];
        assert_eq!(ids(&keep_newest(items, |i| key(i.0), |i| i.1).0), [("a", 2)]);
        let items = vec![("a", Some(0), 1), ("a", None, 2)];
        assert_eq!(ids(&keep_newest(items, |i| key(i.0), |i| i.1).0), [("a", 1)]);
    }

    #[test]
    fn one_id_in_two_collections_is_two_items() {
        let items = vec![(Some("v1"), "a", Some(5)), (Some("v2"), "a", Some(1)), (None, "a", None)];
        let (kept, dropped) = keep_newest(items, |i| ItemKey { collection: i.0, id: i.1 }, |i| i.2);
        assert_eq!(kept.len(), 3);
        assert_eq!(dropped, 0);
    }

    #[test]
    fn distinct_ids_are_all_kept_in_order() {
        let items = vec![("c", None, 1), ("a", Some(1), 2), ("b", Some(0), 3)];
        let (kept, dropped) = keep_newest(items, |i| key(i.0), |i| i.1);
        assert_eq!(ids(&kept), [("c", 1), ("a", 2), ("b", 3)]);
        assert_eq!(dropped, 0);
    }
}
