//! The fleet follows the queue: the one scaling rule (`rule.rs`: workers wanted from the
//! tasks pending and leased, bounds, cooldown, zero at the end) and the EC2 Auto Scaling group
//! that `--scale-asg` keeps at that number (`asg.rs`). The number itself is part of the
//! scheduler's status, so `earthcatalog status`, the `earthcatalog_workers_wanted` metric (for
//! KEDA) and the group all read the same decision.

pub mod asg;
pub mod rule;

pub use rule::{Fleet, Queue, ScalingRule};
