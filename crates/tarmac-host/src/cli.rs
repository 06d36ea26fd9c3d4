//! Command-line interface of `tarmac-host`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Install, switch and audit Tarmac packages on this host, atomically.
#[derive(Debug, Parser)]
#[command(name = "tarmac-host", version, about, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Install root.
    #[arg(
        long,
        global = true,
        env = "TARMAC_ROOT",
        default_value = "/opt/tarmac"
    )]
    pub root: PathBuf,
    /// Package store [default: <root>/packages].
    #[arg(long, global = true)]
    pub repository: Option<PathBuf>,
    /// Configuration directory (roles in roles/, bootstrap flags in setup-flags/).
    #[arg(long, global = true, default_value = "/etc/tarmac")]
    pub config_dir: PathBuf,
    /// Parent of package state directories.
    #[arg(long, global = true, default_value = "/var/lib/tarmac")]
    pub state_dir_root: PathBuf,
    /// Put systemd units under <root>/rooted-systemd instead of /etc/systemd/system.
    #[arg(long, global = true)]
    pub rooted_systemd: bool,
    /// Never run systemctl (units are still copied).
    #[arg(long, global = true)]
    pub no_systemd: bool,
    /// Never create users: packages' users must already exist.
    #[arg(long, global = true)]
    pub no_users: bool,
    /// The only CA trusted for an https repository (PEM)
    /// [default: <config-dir>/setup-flags/repository-ca.pem, written by install.sh].
    #[arg(long, global = true, value_name = "FILE")]
    pub repository_ca: Option<PathBuf>,
    /// Wait for another tarmac-host to finish instead of failing.
    #[arg(long, global = true)]
    pub wait: bool,
    /// Extract every package fetched or added, also those no role of this host uses
    /// (they are otherwise kept as verified archives, extracted when a role needs them).
    /// TARMAC_EXTRACT_ALL=1 (or true, yes, on) sets it too.
    #[arg(
        long,
        global = true,
        env = "TARMAC_EXTRACT_ALL",
        value_parser = clap::builder::BoolishValueParser::new(),
        action = clap::ArgAction::SetTrue
    )]
    pub extract_all: bool,
    /// Print results as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    /// Show progress (activation phases).
    #[arg(short, long, global = true)]
    pub verbose: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the packages in the store.
    List,
    /// List the active packages.
    Active,
    /// Add a package archive (`<id>.tar.zst`, .tar.xz or .tar.gz) to the store.
    Add {
        file: PathBuf,
        /// Expected sha256 of the archive: checked before anything is extracted.
        #[arg(long)]
        sha256: Option<String>,
    },
    /// Fetch packages from a repository (`<url>/packages/<name>/<id>.tar.zst`).
    Fetch {
        #[arg(long)]
        repository_url: String,
        /// Expected sha256 and size in bytes of an archive, as ID=SHA256:SIZE (repeatable).
        /// Every package fetched from an http(s) repository needs one (or a package list).
        #[arg(long = "sha256", value_name = "ID=SHA256:SIZE")]
        sha256: Vec<String>,
        /// A package list (JSON, as written by `tarmac genconf`) giving ids, sha256s and
        /// sizes; its ids are fetched too.
        #[arg(long)]
        package_list: Option<PathBuf>,
        /// Refuse packages without a known sha256 and size (even from a local repository).
        #[arg(long)]
        require_sha256: bool,
        /// A peer that already holds the packages (`tarmac-host relay`), tried before
        /// --repository-url (repeatable, in order). Only pinned packages come from a peer,
        /// checked against the pin like any download; a peer that fails is passed over.
        #[arg(long = "mirror", value_name = "URL")]
        mirrors: Vec<String>,
        ids: Vec<String>,
    },
    /// Remove packages from the store (refuses packages any generation uses).
    Remove {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Activate exactly these packages as a new generation.
    Activate {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Activate exactly these packages, and go back by itself unless `confirm` runs within
    /// --confirm-within (also across a reboot: see `confirm-guard`).
    Switch {
        #[arg(required = true)]
        ids: Vec<String>,
        /// How long the switch waits for `tarmac-host confirm` before it reverts (e.g. 2m).
        #[arg(long, value_name = "DUR", value_parser = tarmac_types::time::parse_flag_duration)]
        confirm_within: std::time::Duration,
        /// Make this package list the setup flag `cluster-package-list` (a revert restores
        /// the previous one).
        #[arg(long, value_name = "FILE")]
        setup_list: Option<PathBuf>,
    },
    /// Keep a pending switch (idempotent).
    Confirm {
        /// Refuse unless the pending switch is to this generation and the host is on it.
        #[arg(long)]
        generation: Option<u64>,
    },
    /// Revert the pending switch now (nothing to do when none is pending).
    Revert,
    /// The host's state: generations, pending confirmation, units, the last switch.
    Status {
        /// Also the sha256 of every file under this path of the current generation
        /// (repeatable; e.g. etc/etcd).
        #[arg(long = "watched", value_name = "PATH")]
        watched: Vec<String>,
        /// First finish or undo an interrupted switch (takes the lock).
        #[arg(long)]
        recover: bool,
    },
    /// Enforce a pending switch's deadline (run by tarmac-confirm.service): revert at once
    /// when the record survived a reboot or its deadline passed, else sleep until the
    /// deadline and revert unless it was confirmed meanwhile.
    ConfirmGuard,
    /// Replace the active package of the same name.
    Swap { id: String },
    /// Switch back to the previous generation (or to --to N).
    Rollback {
        #[arg(long)]
        to: Option<u64>,
        /// Also point the setup flag `cluster-package-list` at what is then active (so that a
        /// reboot stays there) and drop a pending confirmation.
        #[arg(long)]
        set_setup_list: bool,
    },
    /// List generations.
    Generations,
    /// Remove old generations and the packages only they used.
    Gc {
        /// Generations to keep (the current one is always kept).
        #[arg(long, default_value_t = 5)]
        keep: usize,
    },
    /// Run the check/ executables of the active packages.
    Check {
        /// Only list the checks.
        #[arg(long)]
        list: bool,
        /// Per-check timeout (e.g. 1m, 30s; a bare number is seconds).
        #[arg(long, value_name = "DUR", value_parser = tarmac_types::time::parse_flag_duration, default_value = "1m")]
        timeout: std::time::Duration,
    },
    /// Run the active packages' backup/ hooks and pack what they wrote into one snapshot
    /// file (`.tar.zst`, mode 0600); prints its size and sha256.
    Backup {
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Per-hook timeout.
        #[arg(long, value_name = "DUR", value_parser = tarmac_types::time::parse_flag_duration, default_value = "10m")]
        timeout: std::time::Duration,
    },
    /// Run one phase of the active packages' restore/ hooks with a snapshot from `backup`
    /// (stop, apply, start, verify: each on every member before the next).
    Restore {
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
        #[arg(long)]
        phase: tarmac_activate::hooks::RestorePhase,
        /// Refuse a snapshot whose sha256 is not this.
        #[arg(long)]
        sha256: Option<String>,
        /// Per-hook timeout.
        #[arg(long, value_name = "DUR", value_parser = tarmac_types::time::parse_flag_duration, default_value = "10m")]
        timeout: std::time::Duration,
    },
    /// Run the active packages' membership/ hooks: `list`, `add HOST`, `remove HOST`.
    Membership {
        #[arg(value_parser = ["list", "add", "remove"])]
        action: String,
        member: Option<String>,
        /// Per-hook timeout.
        #[arg(long, value_name = "DUR", value_parser = tarmac_types::time::parse_flag_duration, default_value = "2m")]
        timeout: std::time::Duration,
    },
    /// Bootstrap: fetch and activate what setup-flags/ asks for, then start tarmac.target.
    Setup,
    /// Audit: re-hash every stored package and check the current generation and units.
    Verify,
    /// Stop and remove everything tarmac put on this host.
    Uninstall {
        /// Also remove state directories and the configuration directory.
        #[arg(long)]
        purge: bool,
    },
    /// Finish or undo an interrupted switch (every mutating command does this first).
    Recover,
    /// Apply the sysctl settings of a service (for ExecStartPre=).
    ApplySysctl { service: String },
    /// Check that this host can run a build: architecture, kernel, systemd, glibc and commands
    /// against the host requirements in the build's manifest (exit 3 with every reason if not).
    CheckHost {
        /// The build manifest (`bootstrap/<id>.manifest.json`) holding `host_requirements`.
        #[arg(long)]
        manifest: PathBuf,
    },
    /// Serve this host's verified package archives (`packages/<name>/<id>.tar.zst`) and the
    /// `--file`s to peers over HTTP, for the installer's relay tree during a deploy. Ends
    /// after --for (or when the installer ends it); peers check every byte against their pins.
    Relay {
        /// Address and port to listen on (the host's cluster address, from detect_ip).
        #[arg(long, value_name = "ADDR:PORT")]
        listen: std::net::SocketAddr,
        /// Also serve a local file under a repository path, as REL=PATH (repeatable), e.g.
        /// the tarmac-host binary install.sh fetches.
        #[arg(long = "file", value_name = "REL=PATH")]
        files: Vec<String>,
        /// Stop serving after this long.
        #[arg(long = "for", value_name = "DUR", value_parser = tarmac_types::time::parse_flag_duration, default_value = "1h")]
        ttl: std::time::Duration,
    },
    /// Print the tarmac-setup.service unit.
    PrintSetupUnit {
        /// Path of the tarmac-host binary the unit runs [default: this binary].
        #[arg(long)]
        binary: Option<PathBuf>,
    },
}
