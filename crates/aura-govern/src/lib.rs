//! The governance kernel (work in progress).
pub mod approvals;
pub mod content;
pub mod counters;
pub mod halts;
pub mod kernel;
pub mod ledger;
pub mod limits;
pub mod loops;
