//! The backfill's building blocks: Phases 1–3 as plain async functions over object stores.
//!
//! The coordinator and its workers (gRPC, leases) call these; nothing here knows about leases
//! beyond the attempt token that names output folders and files.
//!
//! * [`layout`]: every staging path of a run.
//! * [`chunks`]: Phase 1, an inventory streamed into chunk files of (bucket, key) rows.
//! * [`ingest`]: Phase 2, one chunk fetched, fanned out and staged per (cell, year).
//! * [`compact`]: Phase 3, the staged rows of one (cell, year) merged into data files.
//! * [`object_times`]: what a delta run's Phase 3 keeps for Phase 4 of items without `updated`.

pub mod chunks;
pub mod compact;
pub mod ingest;
pub mod layout;
pub mod object_times;

pub use chunks::{
    ChunkError, ChunkFile, ChunkManifest, ChunkOptions, ChunkPlan, ChunkSettings, MalformedEntry,
    read_chunk, write_chunks,
};
pub use compact::{CompactError, CompactOutcome, compact_partition};
pub use ingest::{IngestError, IngestOutcome, StagedFile, ingest_chunk, retry_failed};
pub use layout::{StagingLayout, StagingRoot};
