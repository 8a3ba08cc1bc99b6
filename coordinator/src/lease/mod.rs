//! Task leases: the per-task state machine, the table that grants, renews and expires them,
//! the scheduler holding the live phase, and the gRPC service in front of it.

pub mod scheduler;
pub mod service;
// The state machine and table offer more than the driver uses today (introspection of done
// tasks, per-worker release); tests and benchmarks use the rest.
#[allow(dead_code)]
pub mod state;
#[allow(dead_code)]
pub mod table;
