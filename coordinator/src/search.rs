//! `earthcatalog search`: STAC API item search over the table, printed as GeoJSON or NDJSON.

use std::io::Write;

use anyhow::Context;
use earthcatalog_common::partition::{GridSpec, open_partitioner};
use earthcatalog_common::search::{
    Area, Fields, Filter, Interval, SearchRequest, SearchResult, SortBy, search,
    write_stac_geoparquet,
};
use earthcatalog_common::stores::Stores;
use serde_json::Value as Json;

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
    let written = match &args.out {
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
    };
    // The process ends next: freeing thousands of items node by node took a tenth of a
    // whole-item answer's time, for memory the exit returns anyway.
    std::mem::forget(result);
    written
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
            write!(out, r#"{{"type":"FeatureCollection","features":["#)?;
            let mut texts = encode_each(&result.items, b',')?;
            if let Some(last) = texts.iter_mut().rev().find(|t| !t.is_empty()) {
                last.pop();
            }
            for text in &texts {
                out.write_all(text)?;
            }
            writeln!(
                out,
                r#"],"numberMatched":{},"numberReturned":{}}}"#,
                result.stats.matched,
                result.items.len()
            )?;
        }
        SearchFormat::Ndjson => {
            for text in encode_each(&result.items, b'\n')? {
                out.write_all(&text)?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// The items' JSON text, each followed by `separator`, in order, encoded on every core: an
/// answer of thousands of whole items spent as long printing as finding them.
fn encode_each(items: &[Json], separator: u8) -> anyhow::Result<Vec<Vec<u8>>> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let per_thread = items.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let encoders: Vec<_> = items
            .chunks(per_thread)
            .map(|chunk| {
                scope.spawn(move || -> serde_json::Result<Vec<u8>> {
                    let mut text = Vec::new();
                    for item in chunk {
                        serde_json::to_writer(&mut text, item)?;
                        text.push(separator);
                    }
                    Ok(text)
                })
            })
            .collect();
        encoders
            .into_iter()
            .map(|e| match e.join() {
                Ok(text) => Ok(text?),
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use earthcatalog_common::search::ScanStats;
    use serde_json::json;

    fn printed(format: SearchFormat, items: Vec<Json>, matched: usize) -> String {
        let result = SearchResult { items, stats: ScanStats { matched, ..ScanStats::default() } };
        let mut out = Vec::new();
        write(&mut out, format, &result).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn every_answer_prints_as_one_feature_collection_or_one_item_per_line() {
        for n in [0, 1, 2, 7] {
            let items: Vec<Json> =
                (0..n).map(|i| json!({"type": "Feature", "id": format!("i{i}"), "n": i})).collect();
            let text = printed(SearchFormat::Geojson, items.clone(), n + 5);
            let collection: Json = serde_json::from_str(&text).unwrap();
            assert_eq!(
                collection,
                json!({"type": "FeatureCollection", "features": items,
                       "numberMatched": n + 5, "numberReturned": n}),
                "{n} items"
            );
            let lines = printed(SearchFormat::Ndjson, items.clone(), n);
            let back: Vec<Json> = lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
            assert_eq!(back, items, "{n} items");
        }
    }
}
