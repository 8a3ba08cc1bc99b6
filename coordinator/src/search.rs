//! `earthcatalog search`: STAC API item search over the table, printed as GeoJSON or NDJSON.

use std::io::Write;

use anyhow::Context;
use earthcatalog_common::partition::{GridSpec, open_partitioner};
use earthcatalog_common::search::{
    Area, Fields, Filter, Interval, SearchRequest, SearchResult, SortBy, search,
    write_stac_geoparquet,
};
use earthcatalog_common::stores::Stores;
use serde_json::json;

use crate::cli::{SearchArgs, SearchFormat};
use crate::read_table;

/// Runs the search and writes the items.
pub async fn run(args: SearchArgs, stores: &Stores) -> anyhow::Result<()> {
    let request = request(&args)?;
    let read = read_table::open(&args.catalog, stores).await?;
    let grid = GridSpec::from_properties(read.table.metadata().properties())
        .context("reading the table's grid")?;
    let partitioner = open_partitioner(&grid, stores).await?;
    let result = search(&read.table, partitioner.as_ref(), &request).await?;
    tracing::info!(
        files = result.stats.files,
        columns = result.stats.columns,
        rows = result.stats.rows,
        matched = result.stats.matched,
        returned = result.items.len(),
        "search done"
    );
    match &args.out {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            let written = write(std::io::BufWriter::new(file), args.format, &result);
            if written.is_err() {
                // A half-written file would look like a result.
                let _ = std::fs::remove_file(path);
            }
            written.with_context(|| format!("writing {}", path.display()))
        }
        None => write(std::io::BufWriter::new(std::io::stdout()), args.format, &result)
            .context("writing to stdout"),
    }
}

/// The library request the flags describe.
fn request(args: &SearchArgs) -> anyhow::Result<SearchRequest> {
    let area = match (&args.bbox, &args.intersects) {
        (Some(b), None) => Some(Area::from_bbox(b)?),
        (None, Some(g)) => Some(Area::from_geojson(&text_or_file(g, "--intersects")?)?),
        (None, None) => None,
        (Some(_), Some(_)) => anyhow::bail!("give --bbox or --intersects, not both"),
    };
    Ok(SearchRequest {
        area,
        datetime: args.datetime.as_deref().map(Interval::parse).transpose()?,
        ids: args.ids.clone(),
        collections: args.collections.clone(),
        filter: match &args.filter {
            Some(f) => Some(Filter::parse(&text_or_file(f, "--filter")?)?),
            None => None,
        },
        sortby: args.sortby.as_deref().map(SortBy::parse).transpose()?,
        max_items: args.max_items,
        fields: args.fields.as_deref().map(Fields::parse).unwrap_or_default(),
        snapshot_id: None,
    })
}

/// The value itself, or the contents of the file it names with a leading `@`.
fn text_or_file(value: &str, flag: &str) -> anyhow::Result<String> {
    match value.strip_prefix('@') {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("{flag}: reading {path}"))
        }
        None => Ok(value.to_string()),
    }
}

fn write(
    mut out: impl Write + Send,
    format: SearchFormat,
    result: &SearchResult,
) -> anyhow::Result<()> {
    match format {
        SearchFormat::StacGeoparquet => write_stac_geoparquet(&result.items, &mut out)?,
        SearchFormat::Geojson => {
            let collection = json!({
                "type": "FeatureCollection",
                "features": result.items,
                "numberMatched": result.stats.matched,
                "numberReturned": result.items.len(),
            });
            serde_json::to_writer(&mut out, &collection)?;
            writeln!(out)?;
        }
        SearchFormat::Ndjson => {
            for item in &result.items {
                serde_json::to_writer(&mut out, item)?;
                writeln!(out)?;
            }
        }
    }
    out.flush()?;
    Ok(())
}
