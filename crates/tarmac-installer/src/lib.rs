//! The installer: stages that run on every host of a cluster over the SSH engine,
//! with a run lock, a per-run journal, per-host logs and typed events.

pub mod daytwo;
pub mod journal;
pub mod ledger;
pub mod lock;
pub mod offline;
pub mod password;
pub mod plan;
pub mod prereqs;
pub mod secrets;
pub mod serve;
pub mod stages;
pub mod support;
pub mod upgrade;
pub mod verdict;
