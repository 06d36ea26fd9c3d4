//! `tarmac lab …`: real hosts on this machine (network namespaces + systemd-nspawn over a
//! cached minimal Debian image) for demos and tests.

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use tarmac_lab::{Lab, LabSpec, LabStatus, Mode, Suites};

use crate::progress::{OutputMode, Terminal};

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Bring up a lab: hosts with their own network namespace, root filesystem and sshd.
    Up(UpArgs),
    /// Tear a lab down: no namespace, mount, cgroup or process is left (also after a failed `up`).
    Down(DownArgs),
    /// Show the labs on this machine, their hosts, addresses, roles and whether they are up.
    Status(StatusArgs),
    /// SSH to a lab host (by name or IP) as root, host-key checking on.
    Ssh(SshArgs),
    /// Run a command where the lab's hosts are reachable (the lab's control network namespace).
    Exec(ExecArgs),
    /// Record every attempt of the lab's controller or hosts to reach an address outside the
    /// lab (air-gapped runs).
    #[command(subcommand)]
    Egress(EgressCommand),
}

#[derive(Debug, Subcommand)]
pub enum EgressCommand {
    /// Start recording (again: keeps what was recorded). In the control namespace and on
    /// every host, the default routes lead into a sink that drops the packets, and nftables
    /// records each destination outside the lab and every DNS query. Ends with `lab down`.
    Start(EgressArgs),
    /// What was recorded since `start`, per namespace. Exits 1 when anything was.
    Report(EgressArgs),
}

#[derive(Debug, Args)]
pub struct EgressArgs {
    /// The lab (default: `--name`, else TARMAC_LAB, else `tarmac`).
    #[arg(value_name = "NAME")]
    pub lab: Option<String>,
    #[command(flatten)]
    pub name: NameArg,
    /// `human`: one line per attempt. `json`: only JSON on stdout: `start` `{"lab",
    /// "audit"}`, `report` `{"lab", "namespaces": [{"name", "netns", "attempts":
    /// [{"address", "protocol", "port", "dns", "packets"}], "packets"}]}`, or for any failure
    /// one `{"error", "causes", "hint"}` object.
    #[arg(long, value_enum, default_value_t = OutputMode::Human)]
    pub output: OutputMode,
}

impl EgressArgs {
    fn lab_name(&self) -> &str {
        self.lab.as_deref().unwrap_or(&self.name.name)
    }
}

#[derive(Debug, Args)]
pub struct NameArg {
    /// Lab name (several labs with different names can run side by side).
    #[arg(long, short = 'n', env = "TARMAC_LAB", default_value = "tarmac")]
    pub name: String,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub name: NameArg,
    /// Number of master hosts.
    #[arg(long, default_value_t = 1)]
    pub masters: usize,
    /// Number of agent hosts.
    #[arg(long, default_value_t = 1)]
    pub agents: usize,
    /// Number of public agent hosts.
    #[arg(long, default_value_t = 0)]
    pub public_agents: usize,
    /// `systemd`: every host boots real systemd; `plain`: sshd only (large-N benchmarks).
    #[arg(long, default_value = "systemd", value_parser = parse_mode)]
    pub mode: Mode,
    /// Debian packages the hosts get on top of the default image, comma-separated or
    /// repeated (e.g. `python3` for Ansible). The first `up` with a new set builds and caches
    /// another image (a few minutes); the default image stays.
    #[arg(long, value_name = "PKG,…", value_delimiter = ',')]
    pub extra_packages: Vec<String>,
    #[command(flatten)]
    pub suites: SuitesArg,
}

/// `--suites`, shared by `lab up` and `quickstart`.
#[derive(Debug, Clone, Args)]
pub struct SuitesArg {
    /// Debian releases of the hosts (bullseye, bookworm, trixie): `bullseye,bookworm,trixie`
    /// makes the hosts take them in turn (master-1 bullseye, master-2 bookworm, …);
    /// `master=bookworm,agent=bullseye+trixie` gives roles their own (master, agent,
    /// public-agent). Each suite's image is built once and cached. Default: every host on
    /// TARMAC_LAB_SUITE, else this machine's release, else bookworm.
    #[arg(long, env = "TARMAC_LAB_SUITES", value_name = "SUITE,…|ROLE=SUITE+…,…", value_parser = parse_suites)]
    pub suites: Option<Suites>,
}

impl SuitesArg {
    /// The choice, or "every host on the default suite".
    pub fn get(&self) -> Suites {
        self.suites.clone().unwrap_or_default()
    }
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    s.parse()
}

fn parse_suites(s: &str) -> Result<Suites, String> {
    s.parse()
        .map_err(|e: tarmac_lab::LabError| tarmac_types::error_report::text_with_hint(&e))
}

#[derive(Debug, Args)]
pub struct DownArgs {
    #[command(flatten)]
    pub name: NameArg,
    /// Tear down every lab on this machine.
    #[arg(long, conflicts_with = "name")]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only this lab (default: all labs).
    #[arg(long, short = 'n')]
    pub name: Option<String>,
    /// `human`: a table. `json`: only JSON on stdout: the labs, or for any failure one
    /// `{"error", "causes", "hint"}` object.
    #[arg(long, value_enum, default_value_t = OutputMode::Human)]
    pub output: OutputMode,
    /// Same as `--output json`.
    #[arg(long, hide = true)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SshArgs {
    #[command(flatten)]
    pub name: NameArg,
    /// Log in as this user (every host also has `tarmac`, with passwordless sudo).
    #[arg(long, short = 'l', default_value = "root")]
    pub user: String,
    /// Host name (`master-1`, `agent-2`, …) or IP.
    pub host: String,
    /// Command to run (default: an interactive shell).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    #[command(flatten)]
    pub name: NameArg,
    /// The command, after `--`. It gets TARMAC_LAB_DIR and TARMAC_LAB_NAME in its environment.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

pub fn run(cmd: LabCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        LabCommand::Up(a) => up(a),
        LabCommand::Down(a) => down(a),
        LabCommand::Status(a) => status(a),
        LabCommand::Ssh(a) => ssh(a),
        LabCommand::Exec(a) => exec(a),
        LabCommand::Egress(EgressCommand::Start(a)) => egress_start(a),
        LabCommand::Egress(EgressCommand::Report(a)) => egress_report(a),
    }
}

fn egress_start(a: EgressArgs) -> anyhow::Result<ExitCode> {
    let lab = Lab::open(a.lab_name())?;
    lab.egress_audit_start()?;
    if a.output == OutputMode::Json {
        let v = serde_json::json!({ "lab": lab.name(), "audit": "running" });
        out(&format!("{}\n", serde_json::to_string_pretty(&v)?));
    } else {
        out(&format!(
            "lab {n}: egress audit running in the controller's namespace and on {h} hosts; see it with `tarmac lab egress report {n}`\n",
            n = lab.name(),
            h = lab.hosts().len()
        ));
    }
    Ok(ExitCode::SUCCESS)
}

fn egress_report(a: EgressArgs) -> anyhow::Result<ExitCode> {
    let lab = Lab::open(a.lab_name())?;
    let report = lab.egress_report()?;
    if a.output == OutputMode::Json {
        out(&format!("{}\n", serde_json::to_string_pretty(&report)?));
    } else {
        out(&report.to_string());
    }
    Ok(if report.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn up(a: UpArgs) -> anyhow::Result<ExitCode> {
    let spec = LabSpec {
        name: a.name.name,
        masters: a.masters,
        agents: a.agents,
        public_agents: a.public_agents,
        mode: a.mode,
        extra_packages: a.extra_packages,
    };
    let term = Terminal::new(OutputMode::Human, false);
    let lab = Lab::up_with_suites(&spec, &a.suites.get(), &term)?;
    let mut s = hosts_table(&lab.status()?);
    let _ = write!(
        s,
        "\nlab dir:  {dir}\nconfig:   {cfg}\nssh:      tarmac lab ssh --name {n} {h}\nrun here: tarmac lab exec --name {n} -- <command>   (hosts are reachable from {ctl})\ndown:     tarmac lab down --name {n}\n",
        dir = lab.dir().display(),
        cfg = lab.config_yaml_path().display(),
        n = lab.name(),
        h = lab.hosts()[0].name,
        ctl = lab.ctl_netns(),
    );
    out(&s);
    Ok(ExitCode::SUCCESS)
}

fn down(a: DownArgs) -> anyhow::Result<ExitCode> {
    let term = Terminal::new(OutputMode::Human, false);
    let names: Vec<String> = if a.all {
        Lab::list().iter().map(|l| l.name().to_owned()).collect()
    } else {
        vec![a.name.name]
    };
    let mut failed = false;
    for name in names {
        match Lab::down_with(&name, &term) {
            Ok(r) if !r.existed => out(&format!("lab {name}: nothing to tear down\n")),
            Ok(r) => {
                let logs = r
                    .logs
                    .map(|l| format!("; console logs kept in {}", l.display()))
                    .unwrap_or_default();
                out(&format!("lab {name}: down{logs}\n"));
            }
            Err(e) if a.all => {
                crate::render::print_error(&anyhow::Error::new(e));
                failed = true;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn status(a: StatusArgs) -> anyhow::Result<ExitCode> {
    let labs = match &a.name {
        Some(n) => vec![Lab::open(n)?],
        None => Lab::list(),
    };
    let statuses = labs
        .iter()
        .map(Lab::status)
        .collect::<Result<Vec<_>, _>>()?;
    if a.output == OutputMode::Json {
        out(&format!("{}\n", serde_json::to_string_pretty(&statuses)?));
        return Ok(ExitCode::SUCCESS);
    }
    if statuses.is_empty() {
        out("no labs (start one with `tarmac lab up`)\n");
    }
    let tables: Vec<String> = statuses.iter().map(hosts_table).collect();
    out(&tables.join("\n"));
    Ok(ExitCode::SUCCESS)
}

/// Print to stdout; a closed pipe (`| head`) is not an error.
fn out(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

fn hosts_table(s: &LabStatus) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "lab {}: {} mode{}, {}/{} hosts up, ctl {} in netns {}{}",
        s.name,
        s.mode,
        if s.extra_packages.is_empty() {
            String::new()
        } else {
            format!(" + {}", s.extra_packages.join(","))
        },
        s.up_count(),
        s.hosts.len(),
        s.ctl_ip,
        s.ctl_netns,
        if s.network {
            ""
        } else {
            " (network gone: run `tarmac lab down`)"
        }
    );
    let w = s
        .hosts
        .iter()
        .map(|h| h.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let os_of = |h: &tarmac_lab::HostStatus| -> String {
        match (&h.os, h.suite) {
            (Some(os), _) => os.clone(),
            (None, Some(suite)) => format!("Debian {suite}"),
            (None, None) => "?".to_owned(),
        }
    };
    let ow = s
        .hosts
        .iter()
        .map(|h| os_of(h).chars().count())
        .max()
        .unwrap_or(2)
        .max(2);
    let _ = writeln!(
        t,
        "  {:<w$}  {:<15}  {:<12}  {:<ow$}  STATE",
        "HOST", "IP", "ROLE", "OS"
    );
    for h in &s.hosts {
        let state = match (h.running, h.ssh) {
            (true, true) => "up",
            (true, false) => "no-ssh",
            _ => "down",
        };
        let boot = h
            .boot_state
            .as_deref()
            .map(|b| format!(" ({b})"))
            .unwrap_or_default();
        let _ = writeln!(
            t,
            "  {:<w$}  {:<15}  {:<12}  {:<ow$}  {state}{boot}",
            h.name,
            h.ip.to_string(),
            h.role.as_str(),
            os_of(h)
        );
    }
    t
}

fn ssh(a: SshArgs) -> anyhow::Result<ExitCode> {
    let lab = Lab::open(&a.name.name)?;
    let mut cmd = lab.ssh_command(&a.user, &a.host)?;
    if !a.command.is_empty() {
        cmd.arg("--").args(&a.command);
    }
    let err = cmd.exec();
    Err(err).context("could not run ssh")
}

fn exec(a: ExecArgs) -> anyhow::Result<ExitCode> {
    let lab = Lab::open(&a.name.name)?;
    let mut cmd = lab.ctl_command(&a.command[0]);
    cmd.args(&a.command[1..])
        .env("TARMAC_LAB_DIR", lab.dir())
        .env("TARMAC_LAB_NAME", lab.name());
    let err = cmd.exec();
    Err(err).with_context(|| format!("could not run `{}` in {}", a.command[0], lab.ctl_netns()))
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use tarmac_lab::{HostStatus, Suite};

    use super::*;
    use crate::cli::{Cli, Command};

    fn lab(args: &[&str]) -> LabCommand {
        let mut all = vec!["tarmac", "lab"];
        all.extend_from_slice(args);
        match Cli::try_parse_from(all).unwrap().command {
            Command::Lab(c) => c,
            #[allow(unreachable_patterns)]
            other => panic!("not a lab command: {other:?}"),
        }
    }

    #[test]
    fn up_takes_counts_mode_and_name() {
        let LabCommand::Up(a) = lab(&[
            "up",
            "--masters",
            "3",
            "--agents",
            "2",
            "--public-agents",
            "1",
            "--mode",
            "plain",
            "--name",
            "x",
        ]) else {
            panic!()
        };
        assert_eq!(
            (
                a.masters,
                a.agents,
                a.public_agents,
                a.mode,
                a.name.name.as_str()
            ),
            (3, 2, 1, Mode::Plain, "x")
        );
        let LabCommand::Up(d) = lab(&["up"]) else {
            panic!()
        };
        assert_eq!(
            (d.masters, d.agents, d.public_agents, d.mode),
            (1, 1, 0, Mode::Systemd)
        );
        assert!(d.extra_packages.is_empty());
        assert!(Cli::try_parse_from(["tarmac", "lab", "up", "--mode", "docker"]).is_err());
    }

    #[test]
    fn up_takes_extra_packages_comma_separated_and_repeated() {
        let LabCommand::Up(a) = lab(&[
            "up",
            "--extra-packages",
            "python3-minimal,python3-apt",
            "--extra-packages",
            "curl",
        ]) else {
            panic!()
        };
        assert_eq!(a.extra_packages, ["python3-minimal", "python3-apt", "curl"]);
    }

    #[test]
    fn hosts_table_names_extra_packages() {
        let mut s = LabStatus {
            name: "x".into(),
            mode: Mode::Systemd,
            extra_packages: vec!["python3".into()],
            dir: "/var/lib/tarmac-lab/x".into(),
            ctl_netns: "tm-x-ctl".into(),
            ctl_ip: "10.70.255.1".parse().unwrap(),
            network: true,
            hosts: vec![HostStatus {
                name: "master-1".into(),
                ip: "10.70.0.11".parse().unwrap(),
                role: tarmac_lab::Role::Master,
                running: true,
                ssh: true,
                boot_state: Some("running".into()),
                suite: Some(Suite::Bookworm),
                os: Some("Debian GNU/Linux 12 (bookworm)".into()),
            }],
        };
        assert_eq!(
            hosts_table(&s),
            "lab x: systemd mode + python3, 1/1 hosts up, ctl 10.70.255.1 in netns tm-x-ctl\n  HOST      IP               ROLE          OS                              STATE\n  master-1  10.70.0.11       master        Debian GNU/Linux 12 (bookworm)  up (running)\n"
        );
        s.extra_packages.clear();
        assert!(
            hosts_table(&s).starts_with("lab x: systemd mode, 1/1 hosts up,"),
            "{}",
            hosts_table(&s)
        );
    }

    fn host(name: &str, ip: &str, suite: Option<Suite>, os: Option<&str>) -> HostStatus {
        HostStatus {
            name: name.into(),
            ip: ip.parse().unwrap(),
            role: tarmac_lab::Role::Agent,
            running: true,
            ssh: true,
            boot_state: Some("running".into()),
            suite,
            os: os.map(str::to_owned),
        }
    }

    #[test]
    fn hosts_table_shows_every_hosts_os() {
        let s = LabStatus {
            name: "mix".into(),
            mode: Mode::Systemd,
            extra_packages: Vec::new(),
            dir: "/var/lib/tarmac-lab/mix".into(),
            ctl_netns: "tm-mix-ctl".into(),
            ctl_ip: "10.70.255.1".parse().unwrap(),
            network: true,
            hosts: vec![
                host(
                    "agent-1",
                    "10.70.0.11",
                    Some(Suite::Bullseye),
                    Some("Debian GNU/Linux 11 (bullseye)"),
                ),
                host(
                    "agent-2",
                    "10.70.0.12",
                    Some(Suite::Trixie),
                    Some("Debian GNU/Linux 13 (trixie)"),
                ),
                // The image is gone: the suite from lab.json; an old lab on an odd image: `?`.
                host("agent-3", "10.70.0.13", Some(Suite::Bookworm), None),
                host("agent-4", "10.70.0.14", None, None),
            ],
        };
        assert_eq!(
            hosts_table(&s),
            "lab mix: systemd mode, 4/4 hosts up, ctl 10.70.255.1 in netns tm-mix-ctl
  HOST     IP               ROLE          OS                              STATE
  agent-1  10.70.0.11       agent         Debian GNU/Linux 11 (bullseye)  up (running)
  agent-2  10.70.0.12       agent         Debian GNU/Linux 13 (trixie)    up (running)
  agent-3  10.70.0.13       agent         Debian bookworm                 up (running)
  agent-4  10.70.0.14       agent         ?                               up (running)
"
        );
        let json = serde_json::to_value(&s.hosts[0]).unwrap();
        assert_eq!(json["suite"], "bullseye");
        assert_eq!(json["os"], "Debian GNU/Linux 11 (bullseye)");
    }

    #[test]
    fn up_takes_suites_cycled_or_per_role() {
        let LabCommand::Up(a) = lab(&["up", "--suites", "bullseye,bookworm,trixie"]) else {
            panic!()
        };
        assert_eq!(a.suites.get().to_string(), "bullseye,bookworm,trixie");
        let LabCommand::Up(a) = lab(&["up", "--suites", "master=bookworm,agent=bullseye+trixie"])
        else {
            panic!()
        };
        assert_eq!(
            a.suites.get().to_string(),
            "master=bookworm,agent=bullseye+trixie"
        );
        let err = Cli::try_parse_from(["tarmac", "lab", "up", "--suites", "bullseye,buster"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown Debian suite `buster` in --suites: the lab supports bullseye (11), bookworm (12) and trixie (13)"),
            "{err}"
        );
    }

    #[test]
    fn egress_takes_the_lab_by_position_or_name_and_an_output_mode() {
        let LabCommand::Egress(EgressCommand::Start(a)) = lab(&["egress", "start", "x"]) else {
            panic!()
        };
        assert_eq!((a.lab_name(), a.output), ("x", OutputMode::Human));
        let LabCommand::Egress(EgressCommand::Report(a)) =
            lab(&["egress", "report", "--output", "json", "--name", "y"])
        else {
            panic!()
        };
        assert_eq!((a.lab_name(), a.output), ("y", OutputMode::Json));
        let cli =
            Cli::try_parse_from(["tarmac", "lab", "egress", "report", "--output", "json"]).unwrap();
        assert!(cli.machine_output());
        assert!(Cli::try_parse_from(["tarmac", "lab", "egress", "stop", "x"]).is_err());
    }

    #[test]
    fn ssh_and_exec_pass_the_command_through() {
        let LabCommand::Ssh(s) = lab(&["ssh", "--name", "x", "master-1", "ls", "-la", "/"]) else {
            panic!()
        };
        assert_eq!((s.host.as_str(), s.user.as_str()), ("master-1", "root"));
        assert_eq!(s.command, ["ls", "-la", "/"]);
        let LabCommand::Exec(e) = lab(&["exec", "--", "curl", "-sS", "http://ctl:8080/"]) else {
            panic!()
        };
        assert_eq!(e.command, ["curl", "-sS", "http://ctl:8080/"]);
        assert_eq!(e.name.name, "tarmac");
    }
}
