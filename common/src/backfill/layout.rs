//! Every staging path of a backfill run, in one place.
//!
//! ```text
//! <staging root>/
//!   _run.json                                     the unfinished run (coordinator)
//!   _compact.json                                 the unfinished distributed compaction
//!   pending/<run id>.jsonl                        items a finished run could not ingest
//! <staging root>/<run id>/
//!   chunks/chunk_{id:06}.parquet                  Phase 1: (bucket, key) rows
//!   chunks/_manifest.json                         Phase 1 settings; `complete` is set last
//!   chunks/_malformed.jsonl                       inventory rows that could not be read
//!   ingest/chunk_{id:06}/attempt_{token}/         Phase 2, one folder per lease attempt:
//!       {cell}/{year|unknown}.parquet             staged rows of one (cell, year)
//!       failures.jsonl                            items that did not become rows
//!   results/ingest/{task:06}.json                 accepted Phase 2 results (coordinator)
//!   results/compact/{task:06}.json                accepted Phase 3 results (coordinator)
//!   object_times/<data file name>                 a delta run's Phase 3: object times of the
//!                                                 data file's items without `updated`
//! ```
//!
//! Phase 3 writes data files straight into the warehouse Hive folders, named
//! `<run>_c<token>_NNNNNN.parquet`: they carry the run and the lease token, so two attempts
//! never write the same object and the outputs of an expired attempt can be told apart and
//! deleted ([`compact_output_token`] is the one reader of that rule).

use crate::geoparquet::FileNamer;
use crate::ids::{CellYear, NULL_YEAR_DIR, RunId};
use crate::location::Location;
use crate::rpc::PhaseKind;

/// File name prefix of Phase 1 chunk files.
const CHUNK_PREFIX: &str = "chunk_";
/// File name suffix of Phase 1 chunk files.
const CHUNK_SUFFIX: &str = ".parquet";
/// File name of the run pointer in the staging root.
const RUN_POINTER: &str = "_run.json";
/// File name of the distributed compaction's pointer in the staging root.
const COMPACT_POINTER: &str = "_compact.json";
/// Folder of the pending failure lists in the staging root.
const PENDING_DIR: &str = "pending";
/// File name suffix of pending failure lists.
const PENDING_SUFFIX: &str = ".jsonl";
/// File name suffix of result records.
const RESULT_SUFFIX: &str = ".json";
/// Writer tag prefix of Phase 3 attempts (`c{token}`).
const COMPACT_WRITER: &str = "c";

/// The staging root that every run of one backfill shares: the pointer to the unfinished run
/// and the failure lists finished runs left for `--retry-pending`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagingRoot {
    root: Location,
}

impl StagingRoot {
    /// The staging root at `root`.
    pub fn new(root: Location) -> Self {
        StagingRoot { root }
    }

    /// Where it is.
    pub fn location(&self) -> &Location {
        &self.root
    }

    /// The pointer naming the unfinished run (its id and what it was started with).
    pub fn run_pointer(&self) -> Location {
        self.root.join(RUN_POINTER)
    }

    /// The pointer naming the unfinished distributed compaction (its run id and plan).
    pub fn compact_pointer(&self) -> Location {
        self.root.join(COMPACT_POINTER)
    }

    /// The folder of pending failure lists.
    pub fn pending_dir(&self) -> Location {
        self.root.join(PENDING_DIR)
    }

    /// The failure list that `run` leaves for a later `--retry-pending`.
    pub fn pending_list(&self, run: &RunId) -> Location {
        self.pending_dir().join(&format!("{run}{PENDING_SUFFIX}"))
    }

    /// Whether a listed object of [`StagingRoot::pending_dir`] is a pending failure list.
    pub fn is_pending_list(location: &Location) -> bool {
        location.file_name().is_some_and(|n| n.ends_with(PENDING_SUFFIX))
    }

    /// The paths of `run` under this root.
    pub fn run(&self, run: RunId) -> StagingLayout {
        StagingLayout::new(&self.root, run)
    }
}

/// The staging paths of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagingLayout {
    run: RunId,
    root: Location,
}

impl StagingLayout {
    /// The layout of `run` under the staging root `staging`.
    pub fn new(staging: &Location, run: RunId) -> Self {
        StagingLayout { root: staging.join(run.as_str()), run }
    }

    /// The run these paths belong to.
    pub fn run(&self) -> &RunId {
        &self.run
    }

    /// The folder holding everything of this run.
    pub fn root(&self) -> &Location {
        &self.root
    }

    /// The folder of Phase 1 chunk files.
    pub fn chunks_dir(&self) -> Location {
        self.root.join("chunks")
    }

    /// Chunk file `id`.
    pub fn chunk(&self, id: u64) -> Location {
        self.chunks_dir().join(&chunk_file_name(id))
    }

    /// The Phase 1 manifest (settings, chunk count, completion flag).
    pub fn chunk_manifest(&self) -> Location {
        self.chunks_dir().join("_manifest.json")
    }

    /// The inventory rows Phase 1 could not read, as JSON lines.
    pub fn malformed_rows(&self) -> Location {
        self.chunks_dir().join("_malformed.jsonl")
    }

    /// The folder of every Phase 2 attempt's output, one subfolder per chunk.
    pub fn ingest_dir(&self) -> Location {
        self.root.join("ingest")
    }

    /// The output folder of one Phase 2 attempt (lease token `token`) of chunk `chunk`.
    pub fn ingest_attempt(&self, chunk: u64, token: u64) -> Location {
        self.ingest_dir().join(&format!("chunk_{chunk:06}/attempt_{token}"))
    }

    /// The folder of the accepted results of `phase`'s tasks (coordinator).
    pub fn results_dir(&self, phase: PhaseKind) -> Location {
        let phase = match phase {
            PhaseKind::Ingest => "ingest",
            PhaseKind::Compact => "compact",
        };
        self.root.join("results").join(phase)
    }

    /// Where the coordinator keeps the accepted result of `phase`'s task `task`.
    pub fn result(&self, phase: PhaseKind, task: u64) -> Location {
        self.results_dir(phase).join(&format!("{task:06}{RESULT_SUFFIX}"))
    }

    /// The task whose result a listed object of [`StagingLayout::results_dir`] records.
    pub fn result_task(location: &Location) -> Option<u64> {
        let digits = location.file_name()?.strip_suffix(RESULT_SUFFIX)?;
        digits.bytes().all(|b| b.is_ascii_digit()).then(|| digits.parse().ok()).flatten()
    }

    /// The folder where a delta run's Phase 3 keeps the object times of items without
    /// `updated`, one file per data file ([`object_times_file`]).
    pub fn object_times_dir(&self) -> Location {
        self.root.join("object_times")
    }

    /// The file namer of one Phase 3 attempt: names say the run and the lease token.
    pub fn compact_namer(&self, token: u64) -> FileNamer {
        compact_namer(&self.run, token)
    }

    /// Whether `name` is one that [`Self::compact_namer`] gives Phase 3 attempt `token` of this
    /// run (`<run>_c<token>_NNNNNN.parquet`): the coordinator accepts no other data file from
    /// that attempt.
    pub fn is_compact_file_name(&self, name: &str, token: u64) -> bool {
        compact_output_token(&self.run, name) == Some(token)
    }
}

/// The file namer of the Phase 3 attempt of `run` holding lease token `token`.
pub fn compact_namer(run: &RunId, token: u64) -> FileNamer {
    FileNamer::new(run.clone(), format!("{COMPACT_WRITER}{token}"))
}

/// The lease token of the Phase 3 attempt of `run` that wrote the data file named `name`, or
/// `None` when `name` is no Phase 3 output of `run` (another run's, an incremental run's).
pub fn compact_output_token(run: &RunId, name: &str) -> Option<u64> {
    let rest = name.strip_prefix(run.as_str())?.strip_prefix('_')?.strip_prefix(COMPACT_WRITER)?;
    let (token, seq) = rest.split_once('_')?;
    let seq = seq.strip_suffix(".parquet")?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(token) || !digits(seq) {
        return None;
    }
    // Exactly as the namer writes it: `c042` is no name of attempt 42.
    token.parse().ok().filter(|t: &u64| t.to_string() == token)
}

/// The object-time file of the data file `data_file` in the folder `folder`
/// ([`StagingLayout::object_times_dir`]): data file names are unique within a run.
pub fn object_times_file(folder: &Location, data_file: &Location) -> Location {
    folder.join(data_file.file_name().unwrap_or_default())
}

/// The staged file of `partition` inside a Phase 2 attempt folder.
pub fn staged_file(attempt: &Location, partition: &CellYear) -> Location {
    let year = match partition.year {
        Some(y) => y.to_string(),
        None => NULL_YEAR_DIR.to_string(),
    };
    attempt.join(&partition.cell).join(&format!("{year}.parquet"))
}

/// The failures file inside a Phase 2 attempt folder.
pub fn failures_file(attempt: &Location) -> Location {
    attempt.join("failures.jsonl")
}

/// `chunk_{id:06}.parquet`.
pub fn chunk_file_name(id: u64) -> String {
    format!("{CHUNK_PREFIX}{id:06}{CHUNK_SUFFIX}")
}

/// The id of a chunk file name (`chunk_000042.parquet` → 42); other names give `None`.
pub fn parse_chunk_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(CHUNK_PREFIX)?.strip_suffix(CHUNK_SUFFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> StagingLayout {
        StagingLayout::new(
            &Location::parse("s3://bucket/staging").unwrap(),
            RunId::from_string("20260101T000000Z-abcdef"),
        )
    }

    #[test]
    fn phase_1_paths_sit_under_the_run_chunks_folder() {
        let l = layout();
        assert_eq!(
            l.chunk(7).to_string(),
            "s3://bucket/staging/20260101T000000Z-abcdef/chunks/chunk_000007.parquet"
        );
        assert_eq!(
            l.chunk_manifest().to_string(),
            "s3://bucket/staging/20260101T000000Z-abcdef/chunks/_manifest.json"
        );
        assert_eq!(
            l.malformed_rows().to_string(),
            "s3://bucket/staging/20260101T000000Z-abcdef/chunks/_malformed.jsonl"
        );
    }

    #[test]
    fn each_ingest_attempt_has_its_own_folder() {
        let l = layout();
        let a = l.ingest_attempt(3, 11);
        let b = l.ingest_attempt(3, 12);
        assert_ne!(a, b);
        assert_eq!(
            staged_file(&a, &CellYear::new("8106fffffffffff", Some(2019))).to_string(),
            "s3://bucket/staging/20260101T000000Z-abcdef/ingest/chunk_000003/attempt_11/8106fffffffffff/2019.parquet"
        );
        assert_eq!(
            staged_file(&b, &CellYear::new("x", None)).to_string(),
            "s3://bucket/staging/20260101T000000Z-abcdef/ingest/chunk_000003/attempt_12/x/unknown.parquet"
        );
        assert_eq!(
            failures_file(&a).to_string(),
            "s3://bucket/staging/20260101T000000Z-abcdef/ingest/chunk_000003/attempt_11/failures.jsonl"
        );
    }

    #[test]
    fn results_and_compact_names_carry_the_task_and_the_token() {
        let l = layout();
        assert_eq!(
            l.result(PhaseKind::Ingest, 5).to_string(),
            "s3://bucket/staging/20260101T000000Z-abcdef/results/ingest/000005.json"
        );
        assert_eq!(
            l.result(PhaseKind::Compact, 9).to_string(),
            "s3://bucket/staging/20260101T000000Z-abcdef/results/compact/000009.json"
        );
        assert_eq!(StagingLayout::result_task(&l.result(PhaseKind::Compact, 9)), Some(9));
        assert_eq!(
            StagingLayout::result_task(&l.results_dir(PhaseKind::Ingest).join("x.json")),
            None
        );
        assert_eq!(l.compact_namer(42).next_name(), "20260101T000000Z-abcdef_c42_000000.parquet");
    }

    #[test]
    fn a_compact_output_name_gives_back_its_attempt_token_and_nothing_else_does() {
        let l = layout();
        let name = l.compact_namer(42).next_name();
        assert_eq!(compact_output_token(l.run(), &name), Some(42));
        let other = RunId::from_string("20260101T000000Z-zzzzzz");
        assert_eq!(compact_output_token(&other, &name), None);
        for not_ours in [
            "20260101T000000Z-abcdef_inc_000000.parquet",
            "20260101T000000Z-abcdef_c_000000.parquet",
            "20260101T000000Z-abcdef_c4x_000000.parquet",
            "20260101T000000Z-abcdef_c42_000000.json",
        ] {
            assert_eq!(compact_output_token(l.run(), not_ours), None, "{not_ours}");
        }
    }

    #[test]
    fn only_names_of_the_run_and_the_attempt_are_its_compact_files() {
        let l = layout();
        let namer = l.compact_namer(42);
        for _ in 0..3 {
            assert!(l.is_compact_file_name(&namer.next_name(), 42));
        }
        assert!(!l.is_compact_file_name(&l.compact_namer(421).next_name(), 42));
        assert!(!l.is_compact_file_name(&l.compact_namer(4).next_name(), 42));
        let other_run = StagingLayout::new(l.root(), RunId::from_string("20250101T000000Z-000000"));
        assert!(!l.is_compact_file_name(&other_run.compact_namer(42).next_name(), 42));
        for name in [
            "20260101T000000Z-abcdef_c42_.parquet",
            "20260101T000000Z-abcdef_c42_000001.json",
            "20260101T000000Z-abcdef_c42_00000x.parquet",
            "20260101T000000Z-abcdef_c42_000001.parquet/../x.parquet",
        ] {
            assert!(!l.is_compact_file_name(name, 42), "{name}");
        }
    }

    #[test]
    fn the_staging_root_holds_the_run_pointer_and_the_pending_lists() {
        let root = StagingRoot::new(Location::parse("s3://bucket/staging").unwrap());
        assert_eq!(root.run_pointer().to_string(), "s3://bucket/staging/_run.json");
        assert_eq!(root.compact_pointer().to_string(), "s3://bucket/staging/_compact.json");
        let run = RunId::from_string("r1");
        assert_eq!(root.pending_list(&run).to_string(), "s3://bucket/staging/pending/r1.jsonl");
        assert!(StagingRoot::is_pending_list(&root.pending_list(&run)));
        assert_eq!(root.run(run.clone()), StagingLayout::new(root.location(), run));
    }

    #[test]
    fn only_well_formed_chunk_names_parse() {
        assert_eq!(parse_chunk_file_name("chunk_000042.parquet"), Some(42));
        assert_eq!(parse_chunk_file_name(&chunk_file_name(1_234_567)), Some(1_234_567));
        assert_eq!(parse_chunk_file_name("chunk_.parquet"), None);
        assert_eq!(parse_chunk_file_name("chunk_12a.parquet"), None);
        assert_eq!(parse_chunk_file_name("_manifest.json"), None);
    }
}
