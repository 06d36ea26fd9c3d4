//! What a host runs: the `tarmac-host` commands of an upgrade or rollback (pure functions,
//! exact-string tests) and the parsers of their JSON answers (the types of
//! [`tarmac_types::confirm`]).

use std::fmt::Write as _;
use std::time::Duration;

use serde::Deserialize;
use tarmac_types::PackageId;
use tarmac_types::shell::quote;

use crate::plan::HOST_BIN;
use tarmac_types::Generation;
use tarmac_types::confirm::{HostStatus, SwitchOutcome};

use super::UPGRADE_DIR;

/// `tarmac-host status --json` (typed: [`HostStatus`]), with the sha256 of every file
/// under `watched` in the current generation. With `recover`, the host first finishes (or
/// undoes) a switch that was interrupted: an installer killed mid-activation drops its SSH
/// session, which stops `tarmac-host` between its commit point and starting the units. A host
/// without tarmac-host prints nothing ([`parse_host_status`] reads that as not installed).
pub fn status_command(watched: &[String], recover: bool) -> String {
    let mut s = format!("if [ -x {HOST_BIN} ]; then {HOST_BIN}");
    if recover {
        s.push_str(" --wait");
    }
    s.push_str(" --json status");
    if recover {
        s.push_str(" --recover");
    }
    for w in watched {
        let _ = write!(s, " --watched {}", quote(w));
    }
    s.push_str("; fi");
    s
}

/// Why a host's answer could not be used.
#[derive(Debug, thiserror::Error)]
pub enum HostAnswerError {
    #[error("tarmac-host printed no usable {what}: {source}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "tarmac-host answered in format {found}, this installer reads format {}",
        tarmac_types::confirm::FORMAT
    )]
    Format { found: u32 },
}

impl tarmac_types::error_report::Hint for HostAnswerError {
    fn hint(&self) -> Option<std::borrow::Cow<'_, str>> {
        use std::borrow::Cow;
        Some(match self {
            HostAnswerError::Json { .. } => Cow::Borrowed(
                "the host may run an older tarmac-host; redeploy it with `tarmac deploy`",
            ),
            HostAnswerError::Format { .. } => {
                Cow::Borrowed("use a tarmac and tarmac-host of the same release")
            }
        })
    }
}

/// The answer of [`status_command`]: `None` when tarmac-host is not installed.
pub fn parse_host_status(stdout: &str) -> Result<Option<HostStatus>, HostAnswerError> {
    if stdout.trim().is_empty() {
        return Ok(None);
    }
    let st: HostStatus = serde_json::from_str(stdout).map_err(|source| HostAnswerError::Json {
        what: "status",
        source,
    })?;
    if st.format != tarmac_types::confirm::FORMAT {
        return Err(HostAnswerError::Format { found: st.format });
    }
    Ok(Some(st))
}

/// Where the target list goes on a host.
pub fn list_path(list_id: &str) -> String {
    format!("{UPGRADE_DIR}/{list_id}.package_list.json")
}

/// Download and verify every package of the list (nothing is activated; services keep running).
pub fn fetch_command(repository_url: &str, list_id: &str) -> String {
    fetch_command_from(repository_url, list_id, &[])
}

/// [`fetch_command`], trying the peers `mirrors` (relays) first.
pub fn fetch_command_from(repository_url: &str, list_id: &str, mirrors: &[String]) -> String {
    let mut cmd = format!(
        "{HOST_BIN} fetch --repository-url {} --package-list {} --require-sha256",
        quote(repository_url),
        list_path(list_id)
    );
    for m in mirrors {
        cmd.push_str(" --mirror ");
        cmd.push_str(&quote(m));
    }
    cmd
}

/// The switch: `tarmac-host switch` activates `ids`, makes the uploaded list the setup flag,
/// and reverts by itself (also across a reboot) unless confirmed within `window`; a failed
/// activation reverts at once. Prints a [`SwitchOutcome`].
pub fn switch_command(window: Duration, list_id: &str, ids: &[PackageId]) -> String {
    let ids: Vec<String> = ids.iter().map(|i| quote(&i.to_string())).collect();
    format!(
        "{HOST_BIN} --wait --json switch --confirm-within {}s --setup-list {} {}",
        window.as_secs().max(1),
        list_path(list_id),
        ids.join(" ")
    )
}

/// The switch's answer.
pub fn parse_switch(stdout: &str) -> Result<SwitchOutcome, HostAnswerError> {
    let out: SwitchOutcome =
        serde_json::from_str(stdout).map_err(|source| HostAnswerError::Json {
            what: "switch outcome",
            source,
        })?;
    if out.pending.format != tarmac_types::confirm::FORMAT {
        return Err(HostAnswerError::Format {
            found: out.pending.format,
        });
    }
    Ok(out)
}

/// Keep generation `generation`; fails (exit 1, with the reason) when the host already
/// reverted or the pending switch is to another generation.
pub fn confirm_command(generation: Generation) -> String {
    format!("{HOST_BIN} --wait confirm --generation {generation}")
}

/// Revert the pending switch now (checks failed). The host knows where to go back to; the
/// switch log records it as `<op>/revert`.
pub fn revert_command() -> String {
    format!("{HOST_BIN} --wait revert")
}

/// `tarmac rollback`: back to the previous generation (or `to`), with the setup flags
/// pointing at what is then active so that a reboot stays there. Prints a switch report.
pub fn rollback_command(to: Option<u64>) -> String {
    let to = to.map(|n| format!(" --to {n}")).unwrap_or_default();
    format!("{HOST_BIN} --wait --json rollback{to} --set-setup-list")
}

/// The generation a rollback reached (`to` of its JSON report).
pub fn parse_rollback(stdout: &str) -> Result<Generation, HostAnswerError> {
    #[derive(Deserialize)]
    struct Report {
        to: Generation,
    }
    serde_json::from_str::<Report>(stdout)
        .map(|r| r.to)
        .map_err(|source| HostAnswerError::Json {
            what: "rollback report",
            source,
        })
}
