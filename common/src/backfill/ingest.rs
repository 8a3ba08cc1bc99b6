//! Phase 2: one chunk's items fetched, fanned out and staged as one Parquet file per
//! (cell, year), plus a JSON-lines file of the items that failed.
//!
//! Each call writes only under the `output` folder it is given — in a run, the lease attempt's
//! own folder ([`super::layout::StagingLayout::ingest_attempt`]) — so a retried chunk never
//! mixes its files with those of an expired attempt. A call either returns its outcome or
//! deletes what it wrote (best effort) and returns the error.

use std::collections::HashSet;
use std::sync::Arc;

use futures::StreamExt;

use super::chunks::{ChunkError, read_chunk};
use super::layout::{failures_file, staged_file};
use crate::fanout::CellRow;
use crate::geoparquet::WriteError;
use crate::ids::CellYear;
use crate::json_lines::{self, JsonLinesError};
use crate::location::Location;
use crate::pipeline::{DataPath, ItemFailure, ObjectKey};
use crate::staging::write_staged;

/// Why a chunk could not be ingested.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The chunk file could not be read.
    #[error(transparent)]
    Chunk(#[from] ChunkError),
    /// A staged file could not be written.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// The failures file could not be read or written, or has a line that is not a record.
    #[error(transparent)]
    List(#[from] JsonLinesError),
    /// The failures file given to [`retry_failed`] does not exist.
    #[error("failures file {0} does not exist")]
    NoFailuresFile(String),
}

impl IngestError {
    /// Whether trying again may succeed (store and network errors may; bad input will not).
    pub fn is_retryable(&self) -> bool {
        match self {
            IngestError::Chunk(e) => e.is_retryable(),
            IngestError::Write(e) => e.is_retryable(),
            IngestError::List(e) => e.is_retryable(),
            _ => false,
        }
    }
}

/// A staged file of one (cell, year).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StagedFile {
    /// Its (cell, year).
    #[serde(flatten)]
    pub partition: CellYear,
    /// Where it is.
    #[serde(rename = "uri")]
    pub location: Location,
    /// Rows in it.
    pub rows: u64,
}

/// What one chunk (or one retry of failed items) produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestOutcome {
    /// One staged file per (cell, year), ordered by (cell, year).
    pub staged: Vec<StagedFile>,
    /// Items that became rows.
    pub items: u64,
    /// Items that did not, each listed in the failures file.
    pub failed_items: u64,
    /// The JSON-lines failures file (one [`ItemFailure`] per line), if any item failed.
    pub failures_file: Option<Location>,
}

impl IngestOutcome {
    /// Rows staged in all files (the fan-out of `items`).
    pub fn rows(&self) -> u64 {
        self.staged.iter().map(|s| s.rows).sum()
    }
}

/// Ingests the chunk file `chunk` into the folder `output`.
pub async fn ingest_chunk(
    data_path: &DataPath,
    chunk: &Location,
    output: &Location,
) -> Result<IngestOutcome, IngestError> {
    let keys = read_chunk(data_path.stores(), chunk).await?;
    tracing::debug!(chunk = %chunk, keys = keys.len(), "ingesting chunk");
    ingest_keys(data_path, keys, output).await
}

/// Ingests again only the items listed in an earlier failures file (`--retry-pending`), into
/// the folder `output`. Records without a bucket and key cannot be retried and are skipped.
pub async fn retry_failed(
    data_path: &DataPath,
    failures: &Location,
    output: &Location,
) -> Result<IngestOutcome, IngestError> {
    let listed = read_failures(data_path.stores(), failures).await?;
    let mut seen = HashSet::new();
    let mut keys = Vec::new();
    for f in listed {
        if f.bucket.is_empty() || f.key.is_empty() {
            tracing::warn!(file = %failures, reason = %f.reason, "failure without a key cannot be retried");
            continue;
        }
        let key = ObjectKey::new(f.bucket, f.key);
        if seen.insert(key.clone()) {
            keys.push(key);
        }
    }
    ingest_keys(data_path, keys, output).await
}

/// The failure records of a failures file written by Phase 2.
pub async fn read_failures(
    stores: &crate::stores::Stores,
    location: &Location,
) -> Result<Vec<ItemFailure>, IngestError> {
    json_lines::read(stores, location)
        .await?
        .ok_or_else(|| IngestError::NoFailuresFile(location.to_string()))
}

async fn ingest_keys(
    data_path: &DataPath,
    keys: Vec<ObjectKey>,
    output: &Location,
) -> Result<IngestOutcome, IngestError> {
    let collected = data_path.collect(keys).await;
    let stores = data_path.stores();
    let writes = data_path.options().write_concurrency;
    let staged = write_groups(stores, collected.groups.into_sorted(), output, writes).await?;
    let failures_file = if collected.failures.is_empty() {
        None
    } else {
        let at = failures_file(output);
        if let Err(e) = json_lines::write(stores, &at, &collected.failures).await {
            let written: Vec<Location> = staged.iter().map(|s| s.location.clone()).collect();
            stores.delete_all(&written, "an abandoned output").await;
            return Err(e.into());
        }
        Some(at)
    };
    Ok(IngestOutcome {
        staged,
        items: collected.items as u64,
        failed_items: collected.failures.len() as u64,
        failures_file,
    })
}

/// Writes every group as one staged file, `concurrency` at a time; all or nothing.
async fn write_groups(
    stores: &Arc<crate::stores::Stores>,
    groups: Vec<(CellYear, Vec<CellRow>)>,
    output: &Location,
    concurrency: usize,
) -> Result<Vec<StagedFile>, IngestError> {
    let writes = futures::stream::iter(groups).map(|(partition, rows)| {
        let stores = stores.clone();
        let location = staged_file(output, &partition);
        // Spawned so that encoding runs on every core.
        tokio::spawn(async move {
            let result = write_staged(&stores, &location, &rows).await;
            (StagedFile { partition, location, rows: rows.len() as u64 }, result)
        })
    });
    let results: Vec<_> = writes.buffered(concurrency.max(1)).collect().await;
    let mut staged = Vec::with_capacity(results.len());
    let mut attempted = Vec::with_capacity(results.len());
    let mut first_error = None;
    for joined in results {
        match joined {
            Ok((file, Ok(()))) => {
                attempted.push(file.location.clone());
                staged.push(file);
            }
            Ok((file, Err(e))) => {
                attempted.push(file.location);
                first_error = first_error.or(Some(e));
            }
            Err(join) => first_error = first_error.or(Some(WriteError::Panicked(join.to_string()))),
        }
    }
    match first_error {
        None => Ok(staged),
        Some(e) => {
            stores.delete_all(&attempted, "an abandoned output").await;
            Err(e.into())
        }
    }
}
