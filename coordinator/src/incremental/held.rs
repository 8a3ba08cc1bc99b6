//! `--batch-add-files`: a run's rows held across chunks, so that each (cell, year) becomes one
//! data file per run instead of one per chunk.
//!
//! Rows stay in memory up to the run's row budget (`--chunk-rows`). Past it, the largest held
//! (cell, year)s are spilled, until half the budget is left, as staged Parquet files (the
//! backfill's staging row format) into a temporary folder on local disk: the rows of a few
//! large partitions go in few pieces, and the many small ones stay in memory. When the rows are
//! written out, a
//! (cell, year) that was never spilled is written from memory; one that was gets its last rows
//! spilled too and its pieces merged by the backfill's compaction, which sorts them as the
//! incremental writer does. The spills live on local disk because they live exactly as long as
//! the process: a run that fails commits none of them, and the folder is removed with the run.
//! A process killed outright cannot remove it; the folder's owner lock, which the OS releases
//! when its process dies, tells the next run that the folder is abandoned and can go.

use std::collections::BTreeMap;
use std::fs::{File, TryLockError};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use earthcatalog_common::backfill::compact_partition;
use earthcatalog_common::backfill::layout::staged_file;
use earthcatalog_common::fanout::Groups;
use earthcatalog_common::geoparquet::{FileNamer, WrittenFile};
use earthcatalog_common::ids::CellYear;
use earthcatalog_common::location::Location;
use earthcatalog_common::pipeline::DataPath;
use earthcatalog_common::staging::write_staged;
use futures::StreamExt;

/// Name of the spill folders, inside the spill directory.
const FOLDER_PREFIX: &str = "earthcatalog-spill-";

/// The file in a spill folder that its process holds locked while it lives.
const OWNER_LOCK: &str = "owner.lock";

/// An owner lock younger than this is left alone though unlocked: its process may be between
/// creating and locking it.
const LOCK_GRACE: Duration = Duration::from_secs(60);

/// Spilled (cell, year)s merged at once when written out: each holds all of its rows in memory
/// while it is merged.
const MERGES: usize = 4;

/// Rows of the run not written yet: in memory, and spilled past the budget.
pub(super) struct Held {
    rows: Groups,
    budget: usize,
    /// Staged pieces of each spilled (cell, year), in spill order.
    spilled: BTreeMap<CellYear, Vec<Location>>,
    /// Spills so far in the run (each one folder).
    spills: u64,
    /// Removed (with every spill) when the run ends, failed or not.
    dir: tempfile::TempDir,
    /// Locked while the run lives: the folder is in use.
    _owner: File,
}

impl Held {
    /// Nothing held yet; spills go to a new folder inside `spill_dir` (else the system's
    /// temporary folder) once more than `budget` rows are held.
    /// Removes the spill folders of runs that died without removing them.
    pub fn new(spill_dir: Option<&Path>, budget: usize) -> anyhow::Result<Self> {
        let parent = spill_dir.map_or_else(std::env::temp_dir, Path::to_path_buf);
        remove_abandoned_folders(&parent);
        let dir = tempfile::Builder::new()
            .prefix(FOLDER_PREFIX)
            .tempdir_in(&parent)
            .with_context(|| format!("creating a spill folder in {}", parent.display()))?;
        let lock = dir.path().join(OWNER_LOCK);
        let owner = File::create(&lock)
            .and_then(|f| f.try_lock().map_err(std::io::Error::from).map(|()| f))
            .with_context(|| format!("locking {}", lock.display()))?;
        Ok(Held {
            rows: Groups::new(),
            budget,
            spilled: BTreeMap::new(),
            spills: 0,
            dir,
            _owner: owner,
        })
    }

    /// Holds `groups`; past the budget, spills the largest held (cell, year)s until half of it
    /// is left.
    pub async fn hold(&mut self, groups: Groups, data_path: &DataPath) -> anyhow::Result<()> {
        self.rows.absorb(groups);
        if self.rows.row_count() > self.budget {
            let largest = self.rows.split_off_largest(self.budget / 2);
            self.spill(largest, data_path).await?;
        }
        Ok(())
    }

    /// Spills so far in the run.
    pub fn spills(&self) -> u64 {
        self.spills
    }

    /// Writes every held row into the warehouse, one file per (cell, year), and forgets them.
    /// All or nothing: on an error the files this call wrote are deleted (best effort).
    pub async fn write_out(
        &mut self,
        data_path: &DataPath,
        warehouse: &Location,
        namer: &Arc<FileNamer>,
    ) -> anyhow::Result<Vec<WrittenFile>> {
        let mut in_memory = std::mem::take(&mut self.rows);
        let rest = in_memory.split_off(|p| self.spilled.contains_key(p));
        if !rest.is_empty() {
            // The last rows of a spilled (cell, year) join its pieces, to be merged with them.
            self.spill(rest, data_path).await?;
        }
        let pieces = std::mem::take(&mut self.spilled);
        let mut files = data_path.write(in_memory, warehouse, namer).await?;
        match merge(data_path, pieces, warehouse, namer).await {
            Ok(merged) => files.extend(merged),
            Err(e) => {
                data_path.delete_files(&files).await;
                return Err(e);
            }
        }
        self.clear_spills().await;
        Ok(files)
    }

    /// Writes `groups` as one staged file per (cell, year) in the next spill folder.
    async fn spill(&mut self, groups: Groups, data_path: &DataPath) -> anyhow::Result<()> {
        self.spills += 1;
        let folder = self.root()?.join(&format!("spill-{:06}", self.spills));
        let (partitions, rows) = (groups.len(), groups.row_count());
        let writes = futures::stream::iter(groups.into_sorted()).map(|(part, rows)| {
            let location = staged_file(&folder, &part);
            async move {
                write_staged(data_path.stores(), &location, &rows)
                    .await
                    .with_context(|| format!("spilling the held rows of {part}"))?;
                Ok::<_, anyhow::Error>((part, location))
            }
        });
        let mut done = writes.buffer_unordered(data_path.options().write_concurrency.max(1));
        while let Some(written) = done.next().await {
            let (part, location) = written?;
            self.spilled.entry(part).or_default().push(location);
        }
        tracing::info!(spill = self.spills, partitions, rows, "held rows spilled to {folder}");
        Ok(())
    }

    /// Empties the spill folder, which stays for later spills (best effort, logged: what is left
    /// goes with the folder at the end of the run).
    async fn clear_spills(&self) {
        let cleared = async {
            let mut entries = tokio::fs::read_dir(self.dir.path()).await?;
            while let Some(e) = entries.next_entry().await? {
                if e.file_name() != OWNER_LOCK {
                    tokio::fs::remove_dir_all(e.path()).await?;
                }
            }
            Ok::<_, std::io::Error>(())
        };
        if let Err(e) = cleared.await {
            tracing::warn!("cannot empty the spill folder {}: {e}", self.dir.path().display());
        }
    }

    fn root(&self) -> anyhow::Result<Location> {
        Location::local(self.dir.path()).context("the spill folder")
    }
}

/// Removes the spill folders in `parent` whose owner lock no process holds (best effort,
/// logged): what a run killed outright left behind.
fn remove_abandoned_folders(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let ours = entry.file_name().to_str().is_some_and(|n| n.starts_with(FOLDER_PREFIX));
        if !ours || !path.is_dir() {
            continue;
        }
        let lock = path.join(OWNER_LOCK);
        let Ok(file) = File::open(&lock) else { continue };
        let old = file
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age >= LOCK_GRACE);
        match file.try_lock() {
            Ok(()) if old => match std::fs::remove_dir_all(&path) {
                Ok(()) => tracing::info!(
                    "removed {}: the spill folder of a run that ended without removing it",
                    path.display()
                ),
                Err(e) => tracing::warn!("cannot remove the abandoned {}: {e}", path.display()),
            },
            Ok(()) | Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(e)) => {
                tracing::warn!("cannot tell whether {} is in use: {e}", lock.display())
            }
        }
    }
}

/// Merges the spilled pieces of each (cell, year) into one data file; all or nothing.
async fn merge(
    data_path: &DataPath,
    pieces: BTreeMap<CellYear, Vec<Location>>,
    warehouse: &Location,
    namer: &Arc<FileNamer>,
) -> anyhow::Result<Vec<WrittenFile>> {
    let merges = futures::stream::iter(pieces).map(|(part, staged)| async move {
        let stores = data_path.stores();
        let writer = &data_path.options().writer;
        compact_partition(stores, &part, &staged, warehouse, namer, usize::MAX, writer)
            .await
            .with_context(|| format!("merging the spilled rows of {part}"))
    });
    let results: Vec<_> = merges.buffer_unordered(MERGES).collect().await;
    let mut files = Vec::new();
    let mut first_error = None;
    for r in results {
        match r {
            Ok(outcome) => files.extend(outcome.files),
            Err(e) => first_error = first_error.or(Some(e)),
        }
    }
    match first_error {
        None => Ok(files),
        Some(e) => {
            data_path.delete_files(&files).await;
            Err(e)
        }
    }
}
