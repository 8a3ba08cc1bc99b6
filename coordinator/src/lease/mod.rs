//! Task leases: the per-task state machine, the table that grants, renews and expires them,
//! the scheduler holding the live phase, and the gRPC service in front of it; fencing tokens
//! and the checks a result passes before it is accepted.

pub mod check;
pub mod scheduler;
pub mod service;
pub mod state;
pub mod table;
pub mod tokens;
