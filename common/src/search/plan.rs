//! The Iceberg filter of a search: what scan planning prunes files with (partition values and
//! column bounds), what row-group statistics prune row groups with, and what iceberg's reader
//! applies to each row before we see it.
//!
//! * cells: `grid_partition IN (cells of the area)` (the identity partition);
//! * datetime: `datetime` within the interval (the year partition is projected from it), OR
//!   the `start_datetime`/`end_datetime` range overlapping it (file bounds prune that branch);
//! * area: the `geometry_bbox` covering overlapping one of the area's boxes. A covering that
//!   leaves ±180 (footprints written in 0..360) cannot be compared and is kept;
//! * `ids`, `collections`: `IN` lists;
//! * the CQL2 filter's part that columns can decide ([`super::pushdown`]).
//!
//! The covering restriction is for planning only ([`Filters::plan`]): iceberg-rust 0.10.1's
//! reader refuses a row filter on a struct's child ("Leaf column `ymin` in predicates isn't a
//! root column"), so the reader gets the rest ([`Filters::read`]) and the exact geometry test
//! does the covering's work on rows. Only the geometry test and CQL2 are left for after the read.

use iceberg::expr::{Predicate, Reference};
use iceberg::spec::Datum;

use super::area::Area;
use super::interval::Interval;
use crate::schema;

/// The filters of one search; `None` where nothing restricts.
pub(crate) struct Filters {
    /// What scan planning prunes files with (every restriction).
    pub plan: Option<Predicate>,
    /// What the reader filters rows with (every restriction but the covering).
    pub read: Option<Predicate>,
}

/// Builds the conjunctions of every restriction that applies.
pub(crate) fn filters(
    cells: Option<&[String]>,
    area: Option<&Area>,
    interval: Option<&Interval>,
    ids: &[String],
    collections: &[String],
    filter: Option<Predicate>,
) -> Filters {
    let rows = [
        cells.map(|c| in_list(schema::GRID_PARTITION, c)),
        interval.map(time_overlaps),
        (!ids.is_empty()).then(|| in_list("id", ids)),
        (!collections.is_empty()).then(|| in_list("collection", collections)),
        filter,
    ];
    let read = rows.into_iter().flatten().reduce(Predicate::and);
    let plan = match (read.clone(), area.map(covering_overlaps)) {
        (Some(r), Some(c)) => Some(r.and(c)),
        (r, c) => r.or(c),
    };
    Filters { plan, read }
}

fn in_list(column: &str, values: &[String]) -> Predicate {
    Reference::new(column).is_in(values.iter().map(Datum::string))
}

fn child(name: &str) -> Reference {
    Reference::new(format!("{}.{name}", schema::GEOMETRY_BBOX))
}

fn covering_overlaps(area: &Area) -> Predicate {
    let outside_180 = child("xmin")
        .less_than(Datum::double(-180.0))
        .or(child("xmax").greater_than(Datum::double(180.0)));
    let overlaps = |b: [f64; 4]| {
        let lat = child("ymin")
            .less_than_or_equal_to(Datum::double(b[3]))
            .and(child("ymax").greater_than_or_equal_to(Datum::double(b[1])));
        let lon = child("xmin")
            .less_than_or_equal_to(Datum::double(b[2]))
            .and(child("xmax").greater_than_or_equal_to(Datum::double(b[0])));
        lat.and(lon.or(outside_180.clone()))
    };
    area.boxes().into_iter().map(overlaps).reduce(Predicate::or).unwrap_or(Predicate::AlwaysTrue)
}

fn time_overlaps(interval: &Interval) -> Predicate {
    let ts = Datum::timestamptz_micros;
    let (start, end) = (interval.start_micros(), interval.end_micros());
    let within = |column: &str| {
        let lo = start.map(|s| Reference::new(column).greater_than_or_equal_to(ts(s)));
        let hi = end.map(|e| Reference::new(column).less_than_or_equal_to(ts(e)));
        [lo, hi].into_iter().flatten().reduce(Predicate::and)
    };
    let instant = within(schema::DATETIME).unwrap_or(Predicate::AlwaysTrue);
    // The range [start_datetime, end_datetime] overlaps [start, end].
    let range = [
        end.map(|e| Reference::new("start_datetime").less_than_or_equal_to(ts(e))),
        start.map(|s| Reference::new("end_datetime").greater_than_or_equal_to(ts(s))),
    ]
    .into_iter()
    .flatten()
    .reduce(Predicate::and)
    .unwrap_or(Predicate::AlwaysTrue)
    .and(Reference::new("start_datetime").is_not_null())
    .and(Reference::new("end_datetime").is_not_null());
    instant.or(range)
}
