//! Task leases: the per-task state machine, the table that grants, renews and expires them,
//! the scheduler holding the live phase, and the gRPC service in front of it.

pub mod scheduler;
pub mod service;
pub mod state;
pub mod table;
