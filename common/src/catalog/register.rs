//! Registering existing Parquet files: footers are read concurrently through object_store, each
//! becomes a [`DataFile`], and the whole batch is one append snapshot (`append.rs`).

use std::collections::{BTreeSet, HashSet};

use futures::{StreamExt, TryStreamExt};
use iceberg::spec::DataFile;
use iceberg::table::Table;

use super::datafile::{DataFileError, data_file_from_footer};
use super::query::data_files;
use super::replace::ReplaceError;
use super::{Catalog, CatalogError};
use crate::geoparquet::{FooterReadError, WrittenFile, read_footer};
use crate::location::Location;

/// Footers read at once: enough to hide S3 latency, few enough to stay polite to one bucket.
const FOOTER_CONCURRENCY: usize = 32;

/// Written files described per thread at least (fewer are described on the caller's thread).
const DESCRIBE_PER_THREAD: usize = 256;

/// Why a batch could not be registered (nothing is committed then).
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// The file's store could not be resolved.
    #[error("cannot reach {file}: {source}")]
    Store {
        /// The file URI.
        file: String,
        /// Why.
        source: crate::stores::StoreError,
    },
    /// The file could not be read (missing, unreachable).
    #[error("cannot read {file}: {source}")]
    Read {
        /// The file URI.
        file: String,
        /// Why.
        source: object_store::Error,
    },
    /// The file's Parquet footer could not be read.
    #[error("cannot read the Parquet footer of {file}: {source}")]
    Footer {
        /// The file URI.
        file: String,
        /// Why.
        source: parquet::errors::ParquetError,
    },
    /// The file's contents do not fit the table.
    #[error(transparent)]
    DataFile(#[from] DataFileError),
    /// Paths already in the table, or given twice in the batch.
    #[error("already registered in the table: {}", paths.join(", "))]
    AlreadyRegistered {
        /// The offending paths.
        paths: Vec<String>,
    },
    /// Reading the table failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The commit failed.
    #[error(transparent)]
    Commit(Box<ReplaceError>),
}

/// What one registration committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterSummary {
    /// The new snapshot, or `None` for an empty batch (nothing committed).
    pub snapshot_id: Option<i64>,
    /// Files added.
    pub files: usize,
    /// Rows added.
    pub records: u64,
}

fn duplicates_in_batch(files: &[Location]) -> Vec<String> {
    let mut seen = HashSet::new();
    let dups: BTreeSet<String> =
        files.iter().map(Location::uri).filter(|u| !seen.insert(u.clone())).collect();
    dups.into_iter().collect()
}

impl Catalog {
    /// Reads the footer of the Parquet file at `file` and describes it for `table`.
    pub async fn describe_file(
        &self,
        table: &Table,
        file: &Location,
    ) -> Result<DataFile, RegisterError> {
        let uri = file.uri();
        let loc = self
            .stores()
            .resolve(file)
            .map_err(|source| RegisterError::Store { file: uri.clone(), source })?;
        let (meta, size) =
            read_footer(loc.store.as_ref(), &loc.path).await.map_err(|e| match e {
                FooterReadError::Store(source) => RegisterError::Read { file: uri.clone(), source },
                FooterReadError::Parquet(source) => {
                    RegisterError::Footer { file: uri.clone(), source }
                }
            })?;
        let metadata = table.metadata();
        Ok(data_file_from_footer(
            &uri,
            size,
            &meta,
            metadata.current_schema(),
            metadata.default_partition_spec(),
        )?)
    }

    /// Describes `files` for `table` from their footers, read concurrently.
    pub async fn describe_files(
        &self,
        table: &Table,
        files: &[Location],
    ) -> Result<Vec<DataFile>, RegisterError> {
        futures::stream::iter(files)
            .map(|f| self.describe_file(table, f))
            .buffered(FOOTER_CONCURRENCY)
            .try_collect()
            .await
    }

    /// Registers `files` (Parquet files anywhere the stores reach) in one append snapshot and
    /// returns the summary with the updated table. Every file is checked before anything is
    /// committed; a path already in the table is refused.
    pub async fn register(
        &self,
        table: &Table,
        files: &[Location],
    ) -> Result<(Table, RegisterSummary), RegisterError> {
        let dups = duplicates_in_batch(files);
        if !dups.is_empty() {
            return Err(RegisterError::AlreadyRegistered { paths: dups });
        }
        if files.is_empty() {
            return Ok((
                table.clone(),
                RegisterSummary { snapshot_id: None, files: 0, records: 0 },
            ));
        }
        let described = self.describe_files(table, files).await?;
        self.commit_files(table, files, described, true).await
    }

    /// Describes files this process just wrote for `table`, from the footers the writer
    /// kept (no re-reading).
    pub async fn describe_written(
        &self,
        table: &Table,
        files: &[WrittenFile],
    ) -> Result<Vec<DataFile>, RegisterError> {
        let metadata = table.metadata();
        let describe = |files: &[WrittenFile]| -> Result<Vec<DataFile>, DataFileError> {
            let mut described = Vec::with_capacity(files.len());
            for f in files {
                described.push(data_file_from_footer(
                    &f.location.uri(),
                    f.bytes,
                    f.footer.metadata(),
                    metadata.current_schema(),
                    metadata.default_partition_spec(),
                )?);
            }
            Ok(described)
        };
        // A run that wrote thousands of small files spent a twentieth of its time here on one
        // core while the other waited for the commit.
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        if files.len() < DESCRIBE_PER_THREAD * 2 || threads == 1 {
            return Ok(describe(files)?);
        }
        let per_thread = files.len().div_ceil(threads).max(DESCRIBE_PER_THREAD);
        let described = std::thread::scope(|scope| {
            let parts: Vec<_> =
                files.chunks(per_thread).map(|part| scope.spawn(move || describe(part))).collect();
            let mut described = Vec::with_capacity(files.len());
            for part in parts {
                match part.join() {
                    Ok(part) => described.extend(part?),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
            Ok::<_, DataFileError>(described)
        })?;
        Ok(described)
    }

    /// Registers files this process just wrote, from the footers the writer returned (no
    /// re-reading). Unlike [`Catalog::register`] it does not look through the table for the
    /// paths: writer names are unique per run and writer, so they cannot be there already.
    pub async fn register_written(
        &self,
        table: &Table,
        files: &[WrittenFile],
    ) -> Result<(Table, RegisterSummary), RegisterError> {
        let locations: Vec<Location> = files.iter().map(|f| f.location.clone()).collect();
        let described = self.describe_written(table, files).await?;
        self.register_described(table, &locations, described).await
    }

    /// Commits files this process wrote, already described (see [`Catalog::describe_written`]),
    /// as one append snapshot; `locations` are theirs, in the same order.
    pub async fn register_described(
        &self,
        table: &Table,
        locations: &[Location],
        described: Vec<DataFile>,
    ) -> Result<(Table, RegisterSummary), RegisterError> {
        let dups = duplicates_in_batch(locations);
        if !dups.is_empty() {
            return Err(RegisterError::AlreadyRegistered { paths: dups });
        }
        // Names carry the run id and the writer, so they cannot be in the table already;
        // skipping iceberg's duplicate check avoids reading every manifest on every commit,
        // which made a long run's commits grow with the table.
        self.commit_files(table, locations, described, false).await
    }

    /// Commits described files as one append snapshot; with `check_duplicates`, first refuses
    /// paths the table already holds.
    async fn commit_files(
        &self,
        table: &Table,
        files: &[Location],
        described: Vec<DataFile>,
        check_duplicates: bool,
    ) -> Result<(Table, RegisterSummary), RegisterError> {
        if described.is_empty() {
            return Ok((
                table.clone(),
                RegisterSummary { snapshot_id: None, files: 0, records: 0 },
            ));
        }
        if check_duplicates {
            let held = self.registered_among(table, files).await?;
            if !held.is_empty() {
                return Err(RegisterError::AlreadyRegistered { paths: held });
            }
        }
        let records = described.iter().map(DataFile::record_count).sum();
        let count = described.len();
        let (committed, snapshot_id) =
            self.append(described).await.map_err(|e| RegisterError::Commit(Box::new(e)))?;
        tracing::info!(files = count, records, snapshot = snapshot_id, "registered data files");
        Ok((committed, RegisterSummary { snapshot_id: Some(snapshot_id), files: count, records }))
    }

    /// Which of `files` the table's current snapshot holds, sorted.
    async fn registered_among(
        &self,
        table: &Table,
        files: &[Location],
    ) -> Result<Vec<String>, RegisterError> {
        let wanted: HashSet<String> = files.iter().map(Location::uri).collect();
        let listed = data_files(table).await.map_err(|source| CatalogError::Iceberg {
            action: "list the table's data files".into(),
            catalog: self.path().to_path_buf(),
            source: Box::new(source),
        })?;
        let mut held: Vec<String> =
            listed.into_iter().map(|f| f.path).filter(|p| wanted.contains(p)).collect();
        held.sort();
        Ok(held)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_path_given_twice_in_one_batch_is_named() {
        let a = Location::parse("s3://b/x/a.parquet").unwrap();
        let b = Location::parse("s3://b/x/b.parquet").unwrap();
        assert_eq!(duplicates_in_batch(&[a.clone(), b, a]), vec!["s3://b/x/a.parquet".to_string()]);
    }
}
