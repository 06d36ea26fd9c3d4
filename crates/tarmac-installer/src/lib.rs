//! The installer: stages that run on every host of a cluster over the SSH engine,
//! with a run lock, a per-run journal, per-host logs and typed events.

pub mod change;
pub mod daytwo;
pub mod journal;
pub mod ledger;
pub mod lock;
pub mod offline;
pub mod password;
pub mod plan;
pub mod prereqs;
pub mod relay;
pub mod secrets;
pub mod serve;
pub mod stages;
pub mod support;
pub mod upgrade;
pub mod verdict;

/// The error types of the installer and its SSH engine whose hints are data
/// ([`tarmac_types::error_report::Hint`]): what every front end passes to
/// `ErrorReport::with_hints`.
pub const TYPED_HINTS: &[tarmac_types::error_report::AsHint] = {
    use tarmac_types::error_report::as_hint;
    &[
        as_hint::<stages::InstallerError>,
        as_hint::<lock::LockError>,
        as_hint::<ledger::LedgerError>,
        as_hint::<journal::JournalError>,
        as_hint::<serve::ServeError>,
        as_hint::<offline::OfflineError>,
        as_hint::<daytwo::DayTwoError>,
        as_hint::<change::ChangeError>,
        as_hint::<password::PasswordError>,
        as_hint::<upgrade::protocol::HostAnswerError>,
        as_hint::<tarmac_ssh::HostKeyError>,
        as_hint::<tarmac_ssh::ConnectError>,
        as_hint::<tarmac_ssh::KeyError>,
        as_hint::<tarmac_ssh::StepError>,
        as_hint::<tarmac_ssh::SelectorError>,
    ]
};
