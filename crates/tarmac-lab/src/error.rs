//! The lab's error type.

use std::path::PathBuf;

/// Everything that can go wrong while building, starting, using or tearing down a lab.
/// Where the user can act, the variant gives a hint
/// ([`tarmac_types::error_report::Hint`]). (Variant fields are named for what they hold.)
#[allow(missing_docs)]
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The lab needs root (namespaces, mounts, cgroups).
    #[error("the lab needs root: it creates network namespaces, mounts and cgroups")]
    NotRoot,

    /// The requested lab makes no sense (bad name, no hosts, too many hosts, …).
    #[error("invalid lab: {reason}")]
    InvalidSpec { reason: String },

    /// An extra package for the lab's image that is not a Debian package name.
    #[error("extra package `{name}` is not a Debian package name: {why}")]
    BadPackage { name: String, why: &'static str },

    /// A Debian suite the lab cannot bootstrap.
    #[error(
        "unknown Debian suite `{name}` in {origin}: the lab supports {supported}",
        supported = crate::suite::SUPPORTED
    )]
    UnknownSuite { name: String, origin: &'static str },

    /// A `--suites` value that does not say which host runs which suite.
    #[error("invalid --suites `{spec}`: {reason}")]
    BadSuites { spec: String, reason: String },

    /// `up` for a name that already has a lab.
    #[error("lab `{name}` already exists ({dir})")]
    AlreadyExists { name: String, dir: PathBuf },

    /// A host could not be powered off or booted.
    #[error("cannot power-cycle {host}: {reason}")]
    HostPower { host: String, reason: String },

    /// No lab with that name.
    #[error("no lab named `{name}`")]
    NotFound { name: String },

    /// A host name or IP that is not part of the lab.
    #[error("lab `{lab}` has no host `{host}`")]
    UnknownHost { lab: String, host: String },

    /// A file system operation failed.
    #[error("{action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A system call failed.
    #[error("{action}")]
    Sys {
        action: String,
        #[source]
        source: std::io::Error,
    },

    /// A system tool could not be started.
    #[error("could not run `{program}`")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },

    /// A system tool ran and failed.
    #[error("`{command}` failed ({status}){}", fmt_stderr(.stderr))]
    Command {
        command: String,
        status: String,
        stderr: String,
    },

    /// Installing the tools the lab needs failed.
    #[error("could not install {packages} with apt-get")]
    Prerequisites {
        packages: String,
        #[source]
        source: Box<LabError>,
    },

    /// A tool the lab needs is missing and cannot be installed on this system.
    #[error("`{program}` is missing and apt-get is not available")]
    Missing { program: String, package: String },

    /// Building the root image failed.
    #[error("could not build the lab's root image {path} (debootstrap {suite} from {mirror})")]
    Image {
        path: PathBuf,
        suite: String,
        mirror: String,
        log: PathBuf,
        #[source]
        source: Box<LabError>,
    },

    /// The lab's state file is unreadable.
    #[error("lab state {path} is unreadable")]
    State {
        name: String,
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    /// Hosts did not come up.
    #[error("{failed} of {total} hosts of lab `{lab}` did not come up:\n{details}")]
    Boot {
        lab: String,
        failed: usize,
        total: usize,
        details: String,
        logs: PathBuf,
    },

    /// Another `up`/`down` of the same lab holds its lock.
    #[error("lab `{name}` is busy: another `tarmac lab up/down` holds {path}")]
    Busy { name: String, path: PathBuf },

    /// A namespace of the lab is missing (the machine rebooted, or someone deleted it).
    #[error("lab `{lab}` has no network namespace {netns}: its network is gone")]
    NetworkGone { lab: String, netns: String },

    /// `egress report` for a namespace the egress audit does not run in.
    #[error(
        "the egress audit of lab `{lab}` does not run in {namespace}{}",
        fmt_stderr(.stderr)
    )]
    EgressNotStarted {
        lab: String,
        namespace: String,
        stderr: String,
    },

    /// `nft -j` said something the egress report cannot read.
    #[error(
        "cannot read the egress audit of {namespace} from `nft -j -n list table inet tarmac_egress`: {reason}"
    )]
    EgressUnreadable { namespace: String, reason: String },

    /// Teardown could not remove everything.
    #[error("teardown of lab `{name}` left things behind: {leftovers}")]
    Leftovers { name: String, leftovers: String },
}

fn fmt_stderr(stderr: &str) -> String {
    let s = stderr.trim();
    if s.is_empty() {
        String::new()
    } else {
        format!(": {s}")
    }
}

impl LabError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> LabError {
        let path = path.into();
        move |source| LabError::Io {
            action,
            path,
            source,
        }
    }

    pub(crate) fn sys(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> LabError {
        let action = action.into();
        move |source| LabError::Sys { action, source }
    }
}

impl tarmac_types::error_report::Hint for LabError {
    fn hint(&self) -> Option<std::borrow::Cow<'_, str>> {
        Some(match self {
            LabError::NotRoot => "run it as root, e.g. `sudo tarmac lab …`".into(),
            LabError::BadPackage { .. } => "give package names as apt knows them (a-z, 0-9, `+`, `.`, `-`; at least two characters, starting with a letter or digit), separated by commas, e.g. `--extra-packages python3,python3-apt`".into(),
            LabError::UnknownSuite { .. } => "e.g. `--suites bullseye,bookworm,trixie` (hosts take them in turn) or `--suites master=bookworm,agent=bullseye+trixie`".into(),
            LabError::BadSuites { .. } => "give suites comma-separated (`bullseye,bookworm,trixie`: hosts take them in turn) or per role (`master=bookworm,agent=bullseye+trixie`; roles master, agent, public-agent)".into(),
            LabError::AlreadyExists { name, .. } => format!("tear it down first with `tarmac lab down --name {name}`, or pick another `--name`").into(),
            LabError::HostPower { .. } => "`tarmac lab status` shows which hosts run; its console log is in /var/log/tarmac-lab/".into(),
            LabError::NotFound { .. } => "`tarmac lab status` lists the labs on this machine".into(),
            LabError::UnknownHost { lab, .. } => format!("`tarmac lab status --name {lab}` lists its hosts").into(),
            LabError::Prerequisites { packages, .. } => format!("install them by hand (`apt-get install --no-install-recommends {packages}`) and retry").into(),
            LabError::Missing { package, .. } => format!("install package `{package}`").into(),
            LabError::Image { log, .. } => format!("check that the apt mirror is reachable; the build log is in {}", log.display()).into(),
            LabError::State { name, .. } => format!("`tarmac lab down --name {name}` still cleans up").into(),
            LabError::Boot { logs, .. } => format!("each host's console log is kept in {} after teardown", logs.display()).into(),
            LabError::Busy { .. } => "wait for it to finish (or end it), then retry".into(),
            LabError::NetworkGone { lab, .. } => format!("`tarmac lab down --name {lab}`, then bring it up again").into(),
            LabError::EgressNotStarted { lab, .. } => format!("start it with `tarmac lab egress start {lab}` (`Lab::egress_audit_start`) before what you audit").into(),
            LabError::EgressUnreadable { .. } => "the audit needs nftables 0.9.6 or newer (`nft --version`)".into(),
            LabError::InvalidSpec { .. }
            | LabError::Io { .. }
            | LabError::Sys { .. }
            | LabError::Spawn { .. }
            | LabError::Command { .. }
            | LabError::Leftovers { .. } => return None,
        })
    }
}
