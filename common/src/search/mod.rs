//! Item search over the table, with STAC API item-search semantics.
//!
//! A search resolves its area to the table's cells and its datetime to an Iceberg filter
//! ([`plan`]), lets Iceberg's scan planning pick only the files of those cells and years (and
//! whose `geometry_bbox` bounds meet the area) and its reader skip row groups and rows outside
//! the cells, interval, ids, collections and the column comparisons of the CQL2 filter, reading
//! only the columns the search needs ([`columns`]); then, in a task per file (several at once),
//! tests each footprint exactly ([`Area::intersects`]), rebuilds the item from its columns and
//! applies CQL2; keeps each item once (items are fanned out to one row per cell), sorts and cuts.

mod area;
mod collections;
mod columns;
mod fields;
mod interval;
mod order;
mod plan;
mod pushdown;
mod stac_geoparquet;

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow_array::Float64Array;
use futures::{StreamExt, TryStreamExt};
use iceberg::arrow::ArrowReader;
use iceberg::expr::Bind;
use iceberg::scan::FileScanTask;
use iceberg::table::Table;
use serde_json::Value as Json;
use tokio_util::task::AbortOnDropHandle;

pub use area::Area;
pub use collections::{CollectionSummary, collections};
pub use fields::Fields;
pub use interval::Interval;
pub use order::{SortBy, SortKey};
pub use stac_geoparquet::{StacGeoparquetError, write_stac_geoparquet};

use crate::ids::ItemKey;
use crate::partition::{CoverError, Partitioner};
use crate::stac::{ItemColumns, RebuildError};

/// Why a search could not be run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SearchError {
    /// The bbox is malformed.
    #[error("invalid bbox {bbox:?}: {reason}")]
    BadBbox {
        /// The numbers given.
        bbox: Vec<f64>,
        /// Why.
        reason: String,
    },
    /// The intersects geometry is malformed.
    #[error("invalid intersects geometry: {reason}")]
    BadIntersects {
        /// Why.
        reason: String,
    },
    /// The datetime is malformed.
    #[error("invalid datetime '{datetime}': {reason}")]
    BadDatetime {
        /// The text given.
        datetime: String,
        /// Why.
        reason: String,
    },
    /// The sortby is malformed.
    #[error("invalid sortby '{sortby}': {reason}")]
    BadSortby {
        /// The text given.
        sortby: String,
        /// Why.
        reason: String,
    },
    /// The CQL2 filter does not parse.
    #[error("invalid CQL2 filter '{filter}': {source}")]
    BadFilter {
        /// The text given.
        filter: String,
        /// The parser's error.
        source: Box<cql2::Error>,
    },
    /// The CQL2 filter could not be evaluated on an item.
    #[error("the CQL2 filter cannot be evaluated on item '{id}': {source}")]
    FilterEval {
        /// The item.
        id: String,
        /// cql2's error.
        source: Box<cql2::Error>,
    },
    /// The area cannot be covered with cells.
    #[error("cannot find the cells of the search area: {source}")]
    Cover {
        /// The partitioner's error.
        source: CoverError,
    },
    /// Iceberg failed to plan or read the scan.
    #[error("{action}: {source}")]
    Iceberg {
        /// What we were doing.
        action: &'static str,
        /// iceberg's error.
        source: Box<iceberg::Error>,
    },
    /// A row could not be turned back into an item.
    #[error(transparent)]
    Rebuild(#[from] RebuildError),
    /// The runtime stopped the search's reads before they finished (it is shutting down).
    #[error("the search was stopped before it read every file")]
    Cancelled,
}

/// A parsed CQL2 filter (text or JSON).
#[derive(Debug, Clone)]
pub struct Filter(cql2::Expr);

impl Filter {
    /// Parses CQL2 text, or CQL2 JSON when the text starts with `{`.
    pub fn parse(text: &str) -> Result<Filter, SearchError> {
        let expr: cql2::Expr = text.trim().parse().map_err(|e| SearchError::BadFilter {
            filter: text.to_string(),
            source: Box::new(e),
        })?;
        Ok(Filter(expr))
    }

    /// Parses CQL2 JSON given as a value.
    pub fn from_json(value: &Json) -> Result<Filter, SearchError> {
        Filter::parse(&value.to_string())
    }

    /// The property names the filter looks up (`platform`, `properties.datetime`).
    fn properties(&self) -> Vec<String> {
        fn walk(e: &cql2::Expr, out: &mut Vec<String>) {
            use cql2::Expr;
            match e {
                Expr::Property { property } => out.push(property.clone()),
                Expr::Operation { args, .. } => args.iter().for_each(|a| walk(a, out)),
                Expr::Interval { interval: xs } | Expr::BBox { bbox: xs } | Expr::Array(xs) => {
                    xs.iter().for_each(|a| walk(a, out))
                }
                Expr::Timestamp { timestamp: x } | Expr::Date { date: x } => walk(x, out),
                _ => {}
            }
        }
        let mut out = Vec::new();
        walk(&self.0, &mut out);
        out
    }

    /// Whether the filter holds for `item`; an item lacking a property it names does not match.
    fn matches(&self, item: &Json) -> Result<bool, Box<cql2::Error>> {
        match self.0.clone().reduce(Some(item)) {
            Ok(reduced) => Ok(reduced.is_true()),
            Err(cql2::Error::NonReduced()) => Ok(false),
            Err(e) => Err(Box::new(e)),
        }
    }
}

/// What to search for. Every restriction given must hold (STAC API item search).
#[derive(Debug, Clone, Default)]
pub struct SearchRequest {
    /// Only items whose footprint meets this area (`bbox` or `intersects`).
    pub area: Option<Area>,
    /// Only items whose `datetime`, or `start_datetime`..`end_datetime` range, meets this.
    pub datetime: Option<Interval>,
    /// Only these item ids.
    pub ids: Vec<String>,
    /// Only these collections.
    pub collections: Vec<String>,
    /// Only items the CQL2 filter holds for.
    pub filter: Option<Filter>,
    /// Result order ([`SortBy::default`] when `None`).
    pub sortby: Option<SortBy>,
    /// At most this many items.
    pub max_items: Option<usize>,
    /// Members to keep in each item.
    pub fields: Fields,
    /// Search this snapshot instead of the current one (a page of a paged search reads the
    /// snapshot its first page read).
    pub snapshot_id: Option<i64>,
}

/// What a search scanned, for logs and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ScanStats {
    /// Data files Iceberg planned (after partition and column-bound pruning).
    pub files: usize,
    /// Columns read from each file (fewer when `fields` leaves members out).
    pub columns: usize,
    /// Rows the reader returned (after row-group pruning and the row filter).
    pub rows: usize,
    /// Distinct items among them that passed every test.
    pub matched: usize,
}

/// The result of a search.
#[derive(Debug, Clone)]
pub struct SearchResult {
    /// The items, sorted and cut to `max_items`, with `fields` applied.
    pub items: Vec<Json>,
    /// What the search scanned and matched.
    pub stats: ScanStats,
}

/// Runs a search over the current snapshot of `table`, whose cells `partitioner` computes.
pub async fn search(
    table: &Table,
    partitioner: &dyn Partitioner,
    request: &SearchRequest,
) -> Result<SearchResult, SearchError> {
    let iceberg = |action| move |e| SearchError::Iceberg { action, source: Box::new(e) };
    let cells = match &request.area {
        Some(area) => area.cells(partitioner)?,
        None => None,
    };
    let mut stats = ScanStats::default();
    if cells.as_ref().is_some_and(Vec::is_empty) {
        return Ok(SearchResult { items: Vec::new(), stats });
    }
    let filters = plan::filters(
        cells.as_deref(),
        request.area.as_ref(),
        request.datetime.as_ref(),
        &request.ids,
        &request.collections,
        request.filter.as_ref().and_then(|f| pushdown::row_predicate(&f.0)),
    );
    let schema = table.metadata().current_schema();
    let mut scan = match columns::columns_read(request) {
        Some(names) => {
            // A table made before a column existed has no such column to read.
            let names: Vec<&str> =
                names.into_iter().filter(|n| schema.field_id_by_name(n).is_some()).collect();
            stats.columns = names.len();
            table.scan().select(names)
        }
        None => {
            stats.columns = schema.as_struct().fields().len();
            table.scan().select_all()
        }
    };
    scan = scan.with_row_group_filtering_enabled(true);
    if let Some(id) = request.snapshot_id {
        scan = scan.snapshot_id(id);
    }
    if let Some(f) = filters.plan {
        scan = scan.with_filter(f);
    }
    let scan = scan.build().map_err(iceberg("planning the scan"))?;
    let mut tasks: Vec<_> = scan
        .plan_files()
        .await
        .map_err(iceberg("planning the scan"))?
        .try_collect()
        .await
        .map_err(iceberg("planning the scan"))?;
    stats.files = tasks.len();
    tracing::debug!(
        files = stats.files,
        columns = stats.columns,
        cells = cells.as_ref().map(Vec::len),
        "scan planned"
    );
    for task in &mut tasks {
        task.predicate = match &filters.read {
            Some(p) => Some(
                p.clone().bind(task.schema.clone(), true).map_err(iceberg("binding the filter"))?,
            ),
            None => None,
        };
    }
    let reader = table.reader_builder().with_row_group_filtering_enabled(true).build();
    let shared = Arc::new(request.clone());
    // Files are read and their rows tested on the runtime's threads at once; the search's own
    // thread would otherwise decode and rebuild every item alone. Handles abort on drop, so a
    // search that fails or is given up stops its reads.
    let mut files = futures::stream::iter(tasks)
        .map(|task| {
            let reader = reader.clone();
            let request = Arc::clone(&shared);
            AbortOnDropHandle::new(tokio::spawn(scan_file(reader, task, request)))
        })
        .buffered(files_at_once());
    let mut seen: HashSet<u128> = HashSet::new();
    let mut items = Vec::new();
    while let Some(joined) = files.next().await {
        let found = match joined {
            Ok(found) => found?,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => return Err(SearchError::Cancelled),
        };
        stats.rows += found.rows;
        // Every row of an item holds the same item, so a later file's copy adds nothing.
        items.extend(found.items.into_iter().filter(|(k, _)| seen.insert(*k)).map(|(_, i)| i));
    }
    stats.matched = items.len();
    let sortby = request.sortby.clone().unwrap_or_default();
    sortby.sort(&mut items);
    if let Some(n) = request.max_items {
        items.truncate(n);
    }
    if !request.fields.is_empty() {
        items = items.into_iter().map(|i| request.fields.apply(i)).collect();
    }
    Ok(SearchResult { items, stats })
}

/// The `geometry_bbox` covering of a batch's rows: the reader cannot filter rows on a struct's
/// child (see [`plan`]), and testing it here spares decoding the footprints of rows whose box
/// misses the area (most rows of a point query's partitions).
struct Coverings(Option<[Float64Array; 4]>);

impl Coverings {
    fn of(batch: &arrow_array::RecordBatch) -> Coverings {
        let children = batch
            .column_by_name(crate::schema::GEOMETRY_BBOX)
            .and_then(|c| c.as_struct_opt())
            .and_then(|s| {
                let child = |name: &str| {
                    s.column_by_name(name)
                        .and_then(|c| c.as_primitive_opt::<arrow::datatypes::Float64Type>())
                        .cloned()
                };
                Some([child("xmin")?, child("ymin")?, child("xmax")?, child("ymax")?])
            });
        Coverings(children)
    }

    /// Whether the row's footprint may meet one of `boxes` (the area's, `None`: no area): as
    /// the planning filter, a covering that leaves ±180 or is unknown may.
    fn may_meet(&self, row: usize, boxes: &Option<Vec<[f64; 4]>>) -> bool {
        let (Some([xmin, ymin, xmax, ymax]), Some(boxes)) = (&self.0, boxes) else { return true };
        if [xmin, ymin, xmax, ymax].iter().any(|c| c.is_null(row)) {
            return true;
        }
        let (x0, y0, x1, y1) = (xmin.value(row), ymin.value(row), xmax.value(row), ymax.value(row));
        let outside_180 = x0 < -180.0 || x1 > 180.0;
        boxes
            .iter()
            .any(|b| y0 <= b[3] && y1 >= b[1] && (outside_180 || (x0 <= b[2] && x1 >= b[0])))
    }
}

/// How many data files a search reads and tests at once: enough to keep every core busy, and
/// a few more so that one file's object-store round trips overlap another's work.
fn files_at_once() -> usize {
    std::thread::available_parallelism().map_or(2, usize::from).max(2) * 2
}

/// What one data file gave: the rows read, and each matching item with its key's digest (in
/// row order, each item once).
struct FileMatches {
    rows: usize,
    items: Vec<(u128, Json)>,
}

/// Reads one planned file and keeps the items of its rows that pass every test the scan could
/// not do.
async fn scan_file(
    reader: ArrowReader,
    task: FileScanTask,
    request: Arc<SearchRequest>,
) -> Result<FileMatches, SearchError> {
    let iceberg = |action| move |e| SearchError::Iceberg { action, source: Box::new(e) };
    let mut batches = reader
        .read(futures::stream::iter([Ok(task)]).boxed())
        .map_err(iceberg("reading the data files"))?
        .stream();
    let boxes = request.area.as_ref().map(Area::boxes);
    let mut seen: HashSet<u128> = HashSet::new();
    let mut found = FileMatches { rows: 0, items: Vec::new() };
    while let Some(batch) = batches.next().await {
        let batch = batch.map_err(iceberg("reading the data files"))?;
        found.rows += batch.num_rows();
        let columns = ItemColumns::new(&batch)?;
        let coverings = Coverings::of(&batch);
        for row in 0..columns.len() {
            if !coverings.may_meet(row, &boxes) {
                continue;
            }
            if let Some(item) = matching_item(&columns, row, &request, &mut seen)? {
                found.items.push(item);
            }
        }
    }
    Ok(found)
}

/// The item of one row (with its key's digest) when it passes the tests the scan could not
/// do, and was not seen yet.
fn matching_item(
    columns: &ItemColumns,
    row: usize,
    request: &SearchRequest,
    seen: &mut HashSet<u128>,
) -> Result<Option<(u128, Json)>, SearchError> {
    let Some(id) = columns.id(row) else { return Err(RebuildError::MissingId.into()) };
    // Every row of an item holds the same item: the first one decides. An item is its
    // (collection, id): one id in two collections is two items.
    let digest = ItemKey { collection: columns.collection(row), id }.digest();
    if !seen.insert(digest) {
        return Ok(None);
    }
    let geometry = columns.geometry(row)?;
    if let Some(area) = &request.area
        && !area.intersects(&geometry)
    {
        return Ok(None);
    }
    // Serializing a footprint is much of an item's cost: skipped when `fields` drops it and no
    // filter could look at it.
    let shown = request.fields.keeps(crate::schema::GEOMETRY) || request.filter.is_some();
    let item = columns.item(row, shown.then_some(&geometry))?;
    if let Some(filter) = &request.filter {
        let ok = filter
            .matches(&item)
            .map_err(|source| SearchError::FilterEval { id: id.to_string(), source })?;
        if !ok {
            return Ok(None);
        }
    }
    Ok(Some((digest, item)))
}
