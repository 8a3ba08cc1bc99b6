//! Table maintenance: compaction of (cell, year) partitions by a replace commit
//! (`compact.rs`).

pub mod compact;
