//! The Tarmac lab: many real Linux hosts on one machine, for demos and tests.
//!
//! Each host has its own network namespace with an IP on a bridge that lives in the lab's
//! control namespace (`tm-<lab>-ctl`, address `10.X.255.1`, called `ctl` on the hosts),
//! its own copy-on-write root (overlay over a cached minimal Debian image), hostname,
//! pid/ipc/uts/mount namespaces, ed25519 host key, machine-id and sshd. In
//! [`Mode::Systemd`] (the default) each host boots real systemd with `systemd-nspawn -b`;
//! in [`Mode::Plain`] a tiny init runs sshd only (large-N fan-out benchmarks).
//!
//! The hosts are reachable only from the control namespace: use [`Lab::ssh`],
//! [`Lab::ctl_command`], or [`enter_ctl_netns`] for in-process sockets.
//!
//! ```no_run
//! use tarmac_lab::{Lab, LabGuard, LabSpec, Mode};
//! let spec = LabSpec { mode: Mode::Systemd, ..LabSpec::new("mytest", 1, 2, 0) };
//! let lab = LabGuard::new(Lab::up(&spec, &tarmac_events::NullSink)?);
//! let out = lab.ssh("master-1", "systemctl is-system-running")?;
//! assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "running");
//! # Ok::<(), tarmac_lab::LabError>(())
//! ```
//!
//! [`LabSpec::extra_packages`] gives the hosts more Debian packages (e.g. `python3` for
//! Ansible): their image is built once with them and cached next to the default one.
//!
//! One lab can mix Debian releases ([`Suite`]: bullseye, bookworm, trixie):
//! [`Lab::up_with_suites`] with [`Suites`] (`"bullseye,bookworm,trixie"`: hosts take them
//! in turn; `"master=bookworm,agent=bullseye+trixie"`: per role). Each suite's image is
//! built once and cached; hosts nothing names run [`Suite::machine_default`]
//! (`TARMAC_LAB_SUITE`, else the machine's release, else bookworm).
//!
//! [`Lab::egress_audit_start`] makes every attempt of the controller (the control
//! namespace) or a host to reach an address outside the lab visible: such packets get a
//! route into a sink inside their own namespace, and nftables records each destination
//! (and every DNS query); [`Lab::egress_report`] says what was tried, per namespace.
//!
//! The lab directory (`/var/lib/tarmac-lab/<name>/`) holds `id_ed25519` (+ `.pub`),
//! `known_hosts`, `ssh_config` and `genconf/config.yaml` + `genconf/ip-detect`, so the
//! installer can be pointed at the lab directly. Needs root.

#![warn(missing_docs)]

mod egress;
mod error;
mod events;
mod host;
mod image;
mod lab;
mod plan;
mod prereq;
mod sshkey;
mod suite;
mod sys;

pub use egress::{
    CONTROLLER, EGRESS_IF, EGRESS_SINK, EGRESS_TABLE, EgressAttempt, EgressReport, NamespaceEgress,
};
pub use error::LabError;
pub use lab::{
    DownReport, HostStatus, LOG_ROOT, Lab, LabGuard, LabSpec, LabStatus, STATE_ROOT, ctl_command,
    enter_ctl_netns,
};
pub use plan::{LabHost, MAX_HOSTS, Mode};
pub use suite::{Suite, Suites};
pub use tarmac_types::Role;

/// Where the shared root images are cached.
pub use image::CACHE_DIR;
