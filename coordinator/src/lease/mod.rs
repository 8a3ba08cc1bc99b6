//! Task leases: the per-task state machine and the table that grants, renews and expires them.

pub mod state;
pub mod table;
