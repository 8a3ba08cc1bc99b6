//! `earthcatalog info`: snapshots, files, and rows per cell and year of a catalog.

use earthcatalog_common::catalog::{data_files, partition_totals, snapshots};
use earthcatalog_common::stores::Stores;
use serde_json::json;

use crate::cli::InfoArgs;
use crate::read_table;

/// Prints what the catalog holds.
pub async fn run(args: InfoArgs, stores: &Stores) -> anyhow::Result<()> {
    let read = read_table::open(&args.catalog, stores).await?;
    let (table, path) = (read.table, read.path);
    let snaps = snapshots(&table);
    let files = data_files(&table).await?;
    let totals = partition_totals(&files);
    let rows: u64 = files.iter().map(|f| f.record_count).sum();
    if args.json {
        let out = json!({
            "catalog": path.display().to_string(),
            "metadata": table.metadata_location(),
            "properties": table.metadata().properties(),
            "snapshots": snaps.iter().map(|s| json!({
                "id": s.id, "timestamp_ms": s.timestamp_ms, "operation": s.operation, "summary": s.summary,
            })).collect::<Vec<_>>(),
            "files": files.len(),
            "rows": rows,
            "partitions": totals.iter().map(|t| json!({
                "grid_partition": t.grid_partition, "year": t.year, "rows": t.rows, "files": t.files, "bytes": t.bytes,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("catalog    {}", path.display());
    println!("table      earthcatalog.stac_items ({})", table.metadata_location().unwrap_or("-"));
    let mut props: Vec<_> = table.metadata().properties().iter().collect();
    props.sort();
    for (k, v) in props.into_iter().filter(|(k, _)| k.starts_with("earthcatalog.")) {
        println!("property   {k} = {v}");
    }
    println!("snapshots  {}", snaps.len());
    for s in &snaps {
        let when = chrono::DateTime::from_timestamp_millis(s.timestamp_ms)
            .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_default();
        let added = s.summary.get("added-data-files").map(String::as_str).unwrap_or("0");
        let records = s.summary.get("added-records").map(String::as_str).unwrap_or("0");
        println!("  {} {when} {} +{added} files +{records} rows", s.id, s.operation);
    }
    println!("files      {}", files.len());
    println!("rows       {rows}");
    println!(
        "{:<18} {:>7} {:>10} {:>6} {:>12}",
        "grid_partition", "year", "rows", "files", "bytes"
    );
    for t in &totals {
        let year = t.year.map_or_else(|| "unknown".to_string(), |y| y.to_string());
        let cell = t.grid_partition.as_deref().unwrap_or("-");
        println!("{cell:<18} {year:>7} {:>10} {:>6} {:>12}", t.rows, t.files, t.bytes);
    }
    Ok(())
}
