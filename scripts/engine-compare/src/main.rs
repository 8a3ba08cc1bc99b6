//! `earthcatalog search`'s path against DataFusion (through iceberg-datafusion) on the same
//! table, in one process, warm: for each query, the wall time of
//!
//! * **ours**: `search::search` (Iceberg scan planning with the cell, year and covering filter,
//!   the reader's row filter, then the exact footprint test, CQL2 and the item rebuild);
//! * **datafusion**: the same filters as SQL over `IcebergStaticTableProvider` (so Iceberg
//!   prunes files the same way), the rows collected by DataFusion, then the same exact footprint
//!   test and item rebuild (DataFusion has no spatial functions) — the CQL2 filter written as SQL;
//! * **datafusion, rows only**: the SQL alone, without the footprint test and rebuild.
//!
//! Usage: `engine-compare CATALOG.db WAREHOUSE RUNS`. Prints one line per query and path
//! (median and p95 of RUNS runs) and checks both paths return the same items.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use datafusion::arrow::array::RecordBatch;
use datafusion::prelude::SessionContext;
use earthcatalog_common::catalog::Catalog;
use earthcatalog_common::ids::ItemKey;
use earthcatalog_common::location::Location;
use earthcatalog_common::partition::{GridSpec, Partitioner, open_partitioner};
use earthcatalog_common::s3_settings::S3Settings;
use earthcatalog_common::search::{Area, Filter, Interval, SearchRequest, search};
use earthcatalog_common::stac::ItemColumns;
use earthcatalog_common::stores::Stores;
use iceberg_datafusion::IcebergStaticTableProvider;

struct Query {
    name: &'static str,
    area: Area,
    interval: Option<Interval>,
    cql2: Option<&'static str>,
    /// The CQL2 filter as SQL (DataFusion has no CQL2 parser).
    sql_filter: Option<&'static str>,
}

fn queries() -> anyhow::Result<Vec<Query>> {
    Ok(vec![
        Query {
            name: "point",
            area: Area::from_geojson(r#"{"type":"Point","coordinates":[-40,70]}"#)?,
            interval: None,
            cql2: None,
            sql_filter: None,
        },
        Query {
            name: "bbox",
            area: Area::from_bbox(&[-146.0, 60.0, -142.0, 62.0])?,
            interval: None,
            cql2: None,
            sql_filter: None,
        },
        Query {
            name: "one cell-year",
            area: Area::from_bbox(&[-40.5, 69.5, -39.5, 70.5])?,
            interval: Some(Interval::parse("2019-01-01T00:00:00Z/2019-12-31T23:59:59Z")?),
            cql2: None,
            sql_filter: None,
        },
        Query {
            name: "cql2",
            area: Area::from_bbox(&[-55.0, 70.0, -22.0, 80.0])?,
            interval: None,
            cql2: Some("platform = 'LC08' AND percent_valid_pixels >= 50"),
            sql_filter: Some("platform = 'LC08' AND percent_valid_pixels >= 50"),
        },
    ])
}

/// The query as SQL: the cells, the interval and the covering boxes, as the search's plan.
fn sql(q: &Query, cells: &[String]) -> String {
    let mut conditions = Vec::new();
    let quoted: Vec<String> = cells.iter().map(|c| format!("'{c}'")).collect();
    conditions.push(format!("grid_partition IN ({})", quoted.join(", ")));
    let boxes: Vec<String> = q
        .area
        .boxes()
        .iter()
        .map(|b| {
            let c = |n: &str| format!("geometry_bbox['{n}']");
            format!(
                "({} <= {} AND {} >= {} AND ({} <= {} AND {} >= {} OR {} < -180 OR {} > 180))",
                c("ymin"),
                b[3],
                c("ymax"),
                b[1],
                c("xmin"),
                b[2],
                c("xmax"),
                b[0],
                c("xmin"),
                c("xmax")
            )
        })
        .collect();
    conditions.push(format!("({})", boxes.join(" OR ")));
    if let Some(i) = &q.interval {
        let ts = |m: i64| format!("to_timestamp_micros({m})");
        let (s, e) = (i.start_micros().unwrap_or(i64::MIN), i.end_micros().unwrap_or(i64::MAX));
        conditions.push(format!(
            "((datetime >= {s} AND datetime <= {e}) OR (start_datetime IS NOT NULL AND \
             end_datetime IS NOT NULL AND start_datetime <= {e} AND end_datetime >= {s}))",
            s = ts(s),
            e = ts(e)
        ));
    }
    if let Some(f) = q.sql_filter {
        conditions.push(format!("({f})"));
    }
    format!("SELECT * FROM items WHERE {}", conditions.join(" AND "))
}

/// The items of DataFusion's rows that meet the area exactly, once each.
fn items_of(batches: &[RecordBatch], area: &Area) -> anyhow::Result<BTreeSet<(String, String)>> {
    let mut seen = std::collections::HashSet::new();
    let mut out = BTreeSet::new();
    for batch in batches {
        let columns = ItemColumns::new(batch)?;
        for row in 0..columns.len() {
            let id = columns.id(row).context("a row without an id")?;
            let key = ItemKey { collection: columns.collection(row), id };
            if !seen.insert(key.digest()) {
                continue;
            }
            let geometry = columns.geometry(row)?;
            if !area.intersects(&geometry) {
                continue;
            }
            let item = columns.item(row, &geometry)?;
            let collection = item["collection"].as_str().unwrap_or_default().to_string();
            out.insert((collection, id.to_string()));
        }
    }
    Ok(out)
}

fn percentile(times: &mut [f64], p: f64) -> f64 {
    times.sort_by(f64::total_cmp);
    let i = ((times.len() - 1) as f64 * p).round() as usize;
    times[i]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, db, warehouse, runs] = &args[..] else {
        bail!("usage: engine-compare CATALOG.db WAREHOUSE RUNS");
    };
    let runs: usize = runs.parse().context("RUNS")?;
    let stores = Arc::new(Stores::new(S3Settings::default()));
    let catalog =
        Catalog::open(std::path::Path::new(db), &Location::parse(warehouse)?, stores.clone())
            .await?;
    let table = catalog.load_table().await?.context("no table in the catalog")?;
    let grid = GridSpec::from_properties(table.metadata().properties())?;
    let partitioner: Arc<dyn Partitioner> = open_partitioner(&grid, &stores).await?;
    let ctx = SessionContext::new();
    ctx.register_table(
        "items",
        Arc::new(IcebergStaticTableProvider::try_new_from_table(table.clone()).await?),
    )?;

    println!(
        "{:14} {:>6} | {:>22} | {:>22} | {:>22}",
        "query", "items", "ours p50 / p95", "datafusion p50 / p95", "df rows only p50 / p95"
    );
    for q in queries()? {
        let cells = q.area.cells(partitioner.as_ref())?.context("no cells")?;
        let request = SearchRequest {
            area: Some(q.area.clone()),
            datetime: q.interval.clone(),
            filter: q.cql2.map(Filter::parse).transpose()?,
            ..Default::default()
        };
        let text = sql(&q, &cells);
        let (mut ours, mut df, mut df_rows) = (Vec::new(), Vec::new(), Vec::new());
        let (mut ours_ids, mut df_ids) = (BTreeSet::new(), BTreeSet::new());
        let mut rows = 0;
        for _ in 0..runs {
            let t = Instant::now();
            let result = search(&table, partitioner.as_ref(), &request).await?;
            ours.push(t.elapsed().as_secs_f64() * 1e3);
            ours_ids = result
                .items
                .iter()
                .map(|i| {
                    let s = |k: &str| i[k].as_str().unwrap_or_default().to_string();
                    (s("collection"), s("id"))
                })
                .collect();

            let t = Instant::now();
            let batches = ctx.sql(&text).await?.collect().await?;
            df_rows.push(t.elapsed().as_secs_f64() * 1e3);
            df_ids = items_of(&batches, &q.area)?;
            df.push(t.elapsed().as_secs_f64() * 1e3);
            rows = batches.iter().map(RecordBatch::num_rows).sum::<usize>();
        }
        if ours_ids != df_ids {
            bail!(
                "{}: ours {} items, datafusion {} items (first differences: {:?})",
                q.name,
                ours_ids.len(),
                df_ids.len(),
                ours_ids.symmetric_difference(&df_ids).take(3).collect::<Vec<_>>()
            );
        }
        let show = |t: &mut Vec<f64>| {
            format!("{:8.1} / {:8.1} ms", percentile(t, 0.5), percentile(t, 0.95))
        };
        println!(
            "{:14} {:>6} | {:>22} | {:>22} | {:>22}   ({rows} rows from DataFusion)",
            q.name,
            ours_ids.len(),
            show(&mut ours),
            show(&mut df),
            show(&mut df_rows)
        );
    }
    Ok(())
}
