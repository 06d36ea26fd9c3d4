//! `tarmac exec [--hosts SELECTOR | --role ROLE] [--parallel N] [--timeout DUR] -- CMD`:
//! run a shell command on the cluster's hosts (from `genconf/config.yaml`) over one SSH
//! connection each, with a live summary line and a final per-host table.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use serde::Deserialize;
use tarmac_events::{Event, EventSink, Level, Outcome, Stream};
use tarmac_ssh::{
    Connector, Exec, Fleet, FleetContext, HostKeyPolicy, Limits, LogDir, Secret, Selector,
    SshOptions, StageOptions, StageReport, Target, Upload, UploadSource,
};
use tarmac_types::time::parse_flag_duration;
use tarmac_types::{HostAddr, Role, Stage};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Host output blocks, a live summary line and a final table (also `human`).
    #[value(alias = "human")]
    Text,
    /// Every event as one JSON object per line on stdout.
    Json,
}

/// Exit status: 0 every host ok, 2 some host failed, timed out or was cancelled,
/// 4 some host unreachable (and none failed), 1 the command could not run at all.
#[derive(Debug, Args)]
#[command(
    after_help = "The command is run by the login shell of ssh_user on every host, like `ssh host CMD` \
(words after `--` are joined with spaces).\n\nExit status: 0 all hosts ok; 2 a host failed, timed out or was \
cancelled; 4 a host was unreachable (none failed); 1 nothing ran."
)]
pub struct ExecArgs {
    /// Hosts to run on: a comma list of addresses, globs (10.0.1.*) and roles (@master,
    /// @agent, @agent_public); `!item` excludes. Default: every host.
    #[arg(long, short = 'H', value_name = "SELECTOR", conflicts_with = "role")]
    pub hosts: Option<String>,
    /// Only the hosts of this role (master, agent, agent_public).
    #[arg(long, value_name = "ROLE")]
    pub role: Option<Role>,
    /// Hosts worked on at once (default: ssh_parallelism from the config, else 100).
    #[arg(long, short = 'P', value_name = "N")]
    pub parallel: Option<usize>,
    /// Per-host command timeout (e.g. 30s, 5m; a bare number is seconds); the remote
    /// processes are ended when it passes.
    #[arg(long, value_name = "DUR", value_parser = parse_flag_duration)]
    pub timeout: Option<Duration>,
    /// Time allowed to connect and log in to one host (e.g. 10s, 1m).
    #[arg(long, value_name = "DUR", value_parser = parse_flag_duration, default_value = "10s")]
    pub connect_timeout: Duration,
    /// Deadline for the whole run (e.g. 10m, 1h); hosts still busy then are ended and
    /// reported timed out.
    #[arg(long, value_name = "DUR", value_parser = parse_flag_duration)]
    pub deadline: Option<Duration>,
    /// Directory holding config.yaml.
    #[arg(long, value_name = "DIR", default_value = "genconf")]
    pub genconf_dir: PathBuf,
    /// Run the command as root (through `sudo` when ssh_user is not root).
    #[arg(long = "become", short = 'b')]
    pub become_root: bool,
    /// Ask for the sudo password (or set TARMAC_BECOME_PASSWORD). Implies --become.
    #[arg(long, short = 'K')]
    pub ask_become_pass: bool,
    /// Host key policy, overriding ssh_host_key_policy: strict, accept-new or off.
    #[arg(long, value_name = "POLICY")]
    pub host_key_policy: Option<HostKeyPolicy>,
    /// Connect from inside this network namespace (e.g. a lab's control namespace).
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,
    /// Keep per-host logs here (default: <genconf-dir>/logs/<run id>).
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
    /// Do not print the hosts' output (it is still in the log files).
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Upload a local file to every host before the command runs: `LOCAL:REMOTE`
    /// (streamed, checked by sha256 on the host, replaced atomically). Repeatable.
    #[arg(long, value_name = "LOCAL:REMOTE")]
    pub upload: Vec<String>,
    /// Run everything N times in a row over the same connections, timing each round.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub repeat: usize,
    /// `text` (or `human`): host output, a live summary and a table. `json`: only JSON on
    /// stdout: every event as one JSON object per line, or for a failure before anything ran
    /// one `{"error", "causes", "hint"}` object.
    #[arg(long, value_enum, default_value = "text")]
    pub output: OutputFormat,
    /// Same as `--output json`.
    #[arg(long, hide = true)]
    pub json: bool,
    /// The command line.
    #[arg(required = true, last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// The SSH part of config.yaml. Parsed minimally here; kept in one function so the full
/// validator (tarmac-config) can replace it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterSsh {
    pub targets: Vec<Target>,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub key_path: Option<PathBuf>,
    pub known_hosts: Vec<PathBuf>,
    pub policy: Option<HostKeyPolicy>,
    pub jump: Vec<Target>,
    pub parallelism: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn items(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => s
                .split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Debug, Deserialize, Default)]
struct RawConfig {
    #[serde(default)]
    master_list: Option<Vec<String>>,
    #[serde(default)]
    agent_list: Option<Vec<String>>,
    #[serde(default)]
    public_agent_list: Option<Vec<String>>,
    #[serde(default)]
    ssh_user: Option<String>,
    #[serde(default)]
    ssh_port: Option<u16>,
    #[serde(default)]
    ssh_key_path: Option<String>,
    #[serde(default)]
    ssh_known_hosts: Option<OneOrMany>,
    #[serde(default)]
    ssh_host_key_policy: Option<String>,
    #[serde(default)]
    ssh_jump: Option<OneOrMany>,
    #[serde(default)]
    ssh_parallelism: Option<usize>,
}

/// Parse the SSH-related keys of config.yaml. Relative paths are taken relative to `base`
/// (the directory that holds `genconf/`, as with the DC/OS installer).
pub fn parse_cluster_ssh(yaml: &str, base: &Path) -> anyhow::Result<ClusterSsh> {
    let raw: RawConfig = serde_saphyr::from_str(yaml)
        .context("config.yaml is not valid YAML for the SSH settings")?;
    let resolve = |p: &str| {
        let p = PathBuf::from(p);
        if p.is_absolute() { p } else { base.join(p) }
    };
    let mut targets = Vec::new();
    for (key, list, role) in [
        ("master_list", raw.master_list, Role::Master),
        ("agent_list", raw.agent_list, Role::Agent),
        (
            "public_agent_list",
            raw.public_agent_list,
            Role::AgentPublic,
        ),
    ] {
        for h in list.unwrap_or_default() {
            let t: Target = h
                .parse()
                .with_context(|| format!("{key}: invalid host `{h}`"))?;
            if targets.iter().any(|o: &Target| o.addr == t.addr) {
                anyhow::bail!(
                    "{key}: host {} is listed twice\nhint: every host has exactly one role",
                    t.addr
                );
            }
            targets.push(t.with_role(role));
        }
    }
    let policy = raw
        .ssh_host_key_policy
        .map(|p| p.parse::<HostKeyPolicy>().map_err(anyhow::Error::msg))
        .transpose()
        .context("ssh_host_key_policy")?;
    let jump = match raw.ssh_jump {
        Some(j) => j
            .items()
            .iter()
            .map(|s| {
                s.parse::<Target>()
                    .with_context(|| format!("ssh_jump: invalid host `{s}`"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?,
        None => Vec::new(),
    };
    Ok(ClusterSsh {
        targets,
        user: raw.ssh_user,
        port: raw.ssh_port,
        key_path: raw.ssh_key_path.as_deref().map(resolve),
        known_hosts: raw
            .ssh_known_hosts
            .map(|k| k.items().iter().map(|p| resolve(p)).collect())
            .unwrap_or_default(),
        policy,
        jump,
        parallelism: raw.ssh_parallelism,
    })
}

/// Ansible-like exit codes: 0 all ok, 2 failures, 4 only unreachable.
pub fn exit_code(report: &StageReport) -> u8 {
    let s = &report.summary;
    if s.all_succeeded() {
        0
    } else if s.failed + s.timed_out + s.cancelled + s.skipped > 0 {
        2
    } else {
        4
    }
}

/// The line of a failure message worth a table cell: not a `hint:`, and for a command that
/// ran, the stderr line after the "`step` failed on host: exit code N" header.
fn table_reason(message: &str, ran: bool) -> String {
    let lines: Vec<&str> = message
        .lines()
        .filter(|l| !l.trim_start().starts_with("hint:"))
        .collect();
    match (ran, lines.len()) {
        (true, n) if n > 1 => lines[n - 1].to_owned(),
        _ => lines.first().copied().unwrap_or("").to_owned(),
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// The final table, one row per host in config order.
pub fn render_table(report: &StageReport) -> String {
    let rows: Vec<[String; 6]> = report
        .hosts
        .iter()
        .map(|h| {
            let (exit, msg) = match &h.outcome {
                Outcome::Failed {
                    exit_code,
                    signal,
                    message,
                } => (
                    exit_code
                        .map(|c| c.to_string())
                        .or(signal.as_ref().map(|s| format!("SIG{s}")))
                        .unwrap_or_default(),
                    table_reason(message, exit_code.is_some() || signal.is_some()),
                ),
                Outcome::Ok | Outcome::Unchanged => ("0".into(), String::new()),
                Outcome::Unreachable { message } => (String::new(), first_line(message).to_owned()),
                Outcome::TimedOut { after_ms } => (
                    String::new(),
                    format!("ended after {:.1}s", *after_ms as f64 / 1000.0),
                ),
                Outcome::Skipped { reason } => (String::new(), reason.clone()),
                Outcome::Cancelled => (String::new(), String::new()),
            };
            [
                h.target.addr.to_string(),
                h.target
                    .role
                    .map(|r| r.to_string())
                    .unwrap_or_else(|| "-".into()),
                h.outcome.label().to_owned(),
                exit,
                format!("{:.2}s", h.duration.as_secs_f64()),
                msg,
            ]
        })
        .collect();
    let mut w = [4usize, 4, 6, 4, 6];
    for r in &rows {
        for (i, wi) in w.iter_mut().enumerate() {
            *wi = (*wi).max(r[i].chars().count());
        }
    }
    let fmt_row = |r: [&str; 6]| {
        let line = format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}  {:>w4$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            r[5],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3],
            w4 = w[4]
        );
        format!("{}\n", line.trim_end())
    };
    let mut out = fmt_row(["HOST", "ROLE", "RESULT", "EXIT", "TIME", "MESSAGE"]);
    for r in &rows {
        out.push_str(&fmt_row([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5]]));
    }
    out
}

/// `150 hosts: 148 ok, 1 failed, 1 unreachable, 0 timed out in 1.23s`.
pub fn render_summary(report: &StageReport) -> String {
    let s = &report.summary;
    let mut parts = vec![
        format!("{} ok", s.ok + s.unchanged),
        format!("{} failed", s.failed),
        format!("{} unreachable", s.unreachable),
        format!("{} timed out", s.timed_out),
    ];
    if s.cancelled > 0 {
        parts.push(format!("{} cancelled", s.cancelled));
    }
    format!(
        "{} hosts: {} in {:.2}s",
        s.total,
        parts.join(", "),
        report.duration.as_secs_f64()
    )
}

/// Renders events for a terminal: host output blocks and a live summary line.
struct TextSink {
    bar: Option<indicatif::ProgressBar>,
    quiet: bool,
    state: Mutex<TextState>,
}

#[derive(Default)]
struct TextState {
    total: usize,
    done: usize,
    ok: usize,
    failed: usize,
    unreachable: usize,
    timed_out: usize,
    output: HashMap<HostAddr, Vec<(Stream, String)>>,
}

impl TextSink {
    /// Host output goes to stdout, above the live line.
    fn say(&self, s: &str) {
        match &self.bar {
            Some(b) => b.suspend(|| println!("{s}")),
            None => println!("{s}"),
        }
    }

    fn warn(&self, s: &str) {
        match &self.bar {
            Some(b) => b.suspend(|| eprintln!("{s}")),
            None => eprintln!("{s}"),
        }
    }
}

impl EventSink for TextSink {
    fn emit(&self, event: Event) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            Event::StageStarted { hosts, .. } => st.total = hosts.len(),
            Event::Output {
                host, stream, line, ..
            } if !self.quiet => {
                st.output.entry(host).or_default().push((stream, line));
            }
            Event::HostFinished {
                host,
                outcome,
                duration_ms,
            } => {
                st.done += 1;
                match &outcome {
                    Outcome::Ok | Outcome::Unchanged => st.ok += 1,
                    Outcome::Failed { .. } | Outcome::Cancelled | Outcome::Skipped { .. } => {
                        st.failed += 1
                    }
                    Outcome::Unreachable { .. } => st.unreachable += 1,
                    Outcome::TimedOut { .. } => st.timed_out += 1,
                }
                let lines = st.output.remove(&host).unwrap_or_default();
                if !self.quiet && (!lines.is_empty() || !outcome.is_success()) {
                    let mut block = format!(
                        "{host} | {} | {:.2}s{}",
                        outcome.label(),
                        duration_ms as f64 / 1000.0,
                        match &outcome {
                            Outcome::Failed {
                                exit_code: Some(c), ..
                            } => format!(" | rc={c}"),
                            Outcome::Unreachable { message } =>
                                format!(" | {}", first_line(message)),
                            _ => String::new(),
                        }
                    );
                    for (stream, l) in lines {
                        block.push('\n');
                        block.push_str(match stream {
                            Stream::Stdout => "  ",
                            Stream::Stderr => "! ",
                        });
                        block.push_str(&l);
                    }
                    self.say(&block);
                }
                if let Some(b) = &self.bar {
                    b.set_message(format!(
                        "{}/{} done · {} ok · {} failed · {} unreachable · {} timed out · {} running",
                        st.done, st.total, st.ok, st.failed, st.unreachable, st.timed_out,
                        st.total.saturating_sub(st.done)
                    ));
                }
            }
            Event::Notice { level, message } if level >= Level::Warn => {
                self.warn(&format!("warning: {message}"))
            }
            _ => {}
        }
    }
}

struct JsonSink;

impl EventSink for JsonSink {
    fn emit(&self, event: Event) {
        if let Ok(s) = serde_json::to_string(&event) {
            println!("{s}");
        }
    }
}

fn default_identity_files(genconf: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    let dcos_default = genconf.join("ssh_key");
    if dcos_default.exists() {
        v.push(dcos_default);
    }
    if let Some(home) = std::env::var_os("HOME").map(PathBuf::from) {
        for k in ["id_ed25519", "id_ecdsa", "id_rsa"] {
            let p = home.join(".ssh").join(k);
            if p.exists() {
                v.push(p);
            }
        }
    }
    v
}

pub fn run(args: ExecArgs) -> anyhow::Result<ExitCode> {
    let config_path = args.genconf_dir.join("config.yaml");
    let yaml = std::fs::read_to_string(&config_path).with_context(|| {
        format!("cannot read {}\nhint: run from the directory that holds genconf/, or pass --genconf-dir", config_path.display())
    })?;
    let base = args
        .genconf_dir
        .canonicalize()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."));
    let cluster =
        parse_cluster_ssh(&yaml, &base).with_context(|| format!("in {}", config_path.display()))?;
    if cluster.targets.is_empty() {
        anyhow::bail!(
            "{} lists no hosts\nhint: fill master_list, agent_list or public_agent_list",
            config_path.display()
        );
    }
    let selector = match (&args.hosts, args.role) {
        (Some(s), _) => Selector::parse(s)?,
        (None, Some(r)) => Selector::role(r),
        (None, None) => Selector::all(),
    };
    let targets = selector.select(&cluster.targets)?;

    let mut opts = SshOptions::default();
    if let Some(u) = &cluster.user {
        opts.user = u.clone();
    }
    if let Some(p) = cluster.port {
        opts.port = p;
    }
    opts.identity_files = match &cluster.key_path {
        Some(p) => vec![p.clone()],
        None => default_identity_files(&args.genconf_dir),
    };
    if !cluster.known_hosts.is_empty() {
        opts.known_hosts = cluster.known_hosts.clone();
    }
    opts.host_key_policy = args.host_key_policy.or(cluster.policy).unwrap_or_default();
    opts.jump = cluster.jump.clone();
    opts.connect_timeout = args.connect_timeout;
    opts.command_timeout = args.timeout;
    let parallel = args.parallel.or(cluster.parallelism).unwrap_or(100);
    opts.limits = Limits::parallel(parallel);
    let interactive = std::io::stdin().is_terminal();
    opts.passphrase = Some(Arc::new(move |path: &Path| {
        if let Ok(p) = std::env::var(tarmac_ssh::PASSPHRASE_ENV) {
            return Some(Secret::new(p));
        }
        if interactive {
            rpassword::prompt_password(format!("Passphrase for SSH key {}: ", path.display()))
                .ok()
                .map(Secret::new)
        } else {
            None
        }
    }));
    let become_root = args.become_root || args.ask_become_pass;
    if args.ask_become_pass {
        let p = rpassword::prompt_password(format!("sudo password for {}: ", opts.user))
            .context("cannot read the sudo password")?;
        opts.sudo_password = Some(Secret::new(p));
    } else if let Ok(p) = std::env::var("TARMAC_BECOME_PASSWORD") {
        opts.sudo_password = Some(Secret::new(p));
    }
    if let Some(ns) = &args.netns {
        opts.connector = Connector::netns(ns).with_context(|| format!("--netns {ns}"))?;
    }

    let command = args.command.join(" ");
    let run_id = format!("exec-{}", tarmac_ssh_run_stamp());
    let log_root = args
        .log_dir
        .clone()
        .unwrap_or_else(|| args.genconf_dir.join("logs").join(&run_id));
    let text = args.output == OutputFormat::Text;
    let bar = (text && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new_spinner();
        b.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                .expect("valid template"),
        );
        b.enable_steady_tick(Duration::from_millis(100));
        b.set_message(format!("connecting to {} hosts…", targets.len()));
        b
    });
    let sink: tarmac_events::Sink = if text {
        Arc::new(TextSink {
            bar: bar.clone(),
            quiet: args.quiet,
            state: Mutex::new(TextState::default()),
        })
    } else {
        Arc::new(JsonSink)
    };
    let ctx = FleetContext::new(sink.clone())
        .with_log_dir(LogDir::new(&log_root))
        .with_run_id(run_id);
    let cancel = ctx.cancel.clone();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let uploads = args
        .upload
        .iter()
        .map(|spec| {
            let (local, remote) = spec
                .split_once(':')
                .with_context(|| format!("--upload {spec}: expected LOCAL:REMOTE"))?;
            anyhow::ensure!(
                remote.starts_with('/'),
                "--upload {spec}: the remote path must be absolute"
            );
            let src = UploadSource::file(local).with_context(|| format!("cannot read {local}"))?;
            Ok((src, remote.to_owned()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let live = bar.clone();
    let rounds = rt.block_on(async move {
        tokio::spawn({
            let cancel = cancel.clone();
            async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    cancel.cancel();
                    // A second Ctrl-C leaves at once.
                    if tokio::signal::ctrl_c().await.is_ok() {
                        std::process::exit(130);
                    }
                }
            }
        });
        let fleet = Fleet::new(targets, opts, ctx)?;
        let exec = Exec {
            command: command.clone(),
            root: become_root,
            timeout: None,
            stdin: None,
            quiet: false,
        };
        let mut rounds = Vec::new();
        for round in 1..=args.repeat.max(1) {
            let report = fleet
                .run_all(
                    Stage::Exec,
                    StageOptions {
                        deadline: args.deadline,
                        only: None,
                        // The last round frees each host's connection as soon as it is done.
                        release: round == args.repeat.max(1),
                    },
                    |h| {
                        let exec = exec.clone();
                        let uploads = &uploads;
                        async move {
                            for (src, dest) in uploads {
                                let up = Upload {
                                    source: src.clone(),
                                    dest: dest.clone(),
                                    mode: 0o644,
                                    root: exec.root,
                                    timeout: None,
                                };
                                h.upload(&format!("upload {}", src.name), &up).await?;
                            }
                            h.check("exec", exec).await?;
                            Ok(Outcome::Ok)
                        }
                    },
                )
                .await;
            if args.repeat > 1 && text {
                let line = format!("round {round}/{}: {}", args.repeat, render_summary(&report));
                match &live {
                    Some(b) => b.suspend(|| println!("{line}")),
                    None => println!("{line}"),
                }
            }
            let stop = fleet.cancel_token().is_cancelled();
            rounds.push(report);
            if stop {
                break;
            }
        }
        fleet.close().await;
        anyhow::Ok(rounds)
    })?;
    let report = rounds
        .iter()
        .max_by_key(|r| exit_code(r))
        .cloned()
        .expect("at least one round");
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    if text {
        print!("{}", render_table(&report));
        println!("{}", render_summary(&report));
        println!("logs: {}", log_root.display());
    }
    Ok(ExitCode::from(exit_code(&report)))
}

fn tarmac_ssh_run_stamp() -> String {
    let ms = tarmac_types::time::now_ms();
    format!("{}-{:03}", ms / 1000, ms % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tarmac_events::Summary;
    use tarmac_ssh::HostResult;

    #[test]
    fn config_parsing() {
        let yaml = "cluster_name: x\nbootstrap_url: http://10.0.0.254\nmaster_list:\n- 10.0.0.1\n- 10.0.0.2:2222\nagent_list: [core@10.0.1.1]\n\
                    public_agent_list: []\nssh_user: centos\nssh_port: 2200\nssh_key_path: genconf/ssh_key\n\
                    ssh_known_hosts: [/etc/kh, genconf/known_hosts]\nssh_host_key_policy: accept-new\nssh_jump: ops@bastion:2222,10.9.9.9\n\
                    ssh_parallelism: 40\nsome_other_key: {a: [1, 2]}\n";
        let c = parse_cluster_ssh(yaml, Path::new("/work")).unwrap();
        let t: Vec<String> = c
            .targets
            .iter()
            .map(|t| format!("{t} {:?}", t.role))
            .collect();
        assert_eq!(
            t,
            [
                "10.0.0.1 Some(Master)",
                "10.0.0.2:2222 Some(Master)",
                "core@10.0.1.1 Some(Agent)"
            ]
        );
        assert_eq!(c.user.as_deref(), Some("centos"));
        assert_eq!(c.port, Some(2200));
        assert_eq!(c.key_path, Some(PathBuf::from("/work/genconf/ssh_key")));
        assert_eq!(
            c.known_hosts,
            [
                PathBuf::from("/etc/kh"),
                PathBuf::from("/work/genconf/known_hosts")
            ]
        );
        assert_eq!(c.policy, Some(HostKeyPolicy::AcceptNew));
        assert_eq!(
            c.jump.iter().map(|j| j.to_string()).collect::<Vec<_>>(),
            ["ops@bastion:2222", "10.9.9.9"]
        );
        assert_eq!(c.parallelism, Some(40));

        let c =
            parse_cluster_ssh("ssh_known_hosts: /kh\nssh_jump: [a, b]\n", Path::new("/")).unwrap();
        assert_eq!(c.known_hosts, [PathBuf::from("/kh")]);
        assert_eq!(c.jump.len(), 2);
        let e = parse_cluster_ssh(
            "master_list: [10.0.0.1]\nagent_list: [10.0.0.1]\n",
            Path::new("/"),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "agent_list: host 10.0.0.1 is listed twice\nhint: every host has exactly one role"
        );
        let e = parse_cluster_ssh("ssh_host_key_policy: maybe\n", Path::new("/")).unwrap_err();
        assert_eq!(
            format!("{e:#}"),
            "ssh_host_key_policy: unknown host key policy `maybe`: expected strict, accept-new or off"
        );
        let e = parse_cluster_ssh("master_list: [not a host]\n", Path::new("/")).unwrap_err();
        assert_eq!(e.to_string(), "master_list: invalid host `not a host`");
    }

    fn report() -> StageReport {
        let h = |a: &str, role: Role, outcome: Outcome, ms: u64| HostResult {
            target: a.parse::<Target>().unwrap().with_role(role),
            outcome,
            duration: Duration::from_millis(ms),
        };
        let hosts = vec![
            h("10.0.0.1", Role::Master, Outcome::Ok, 120),
            h(
                "10.0.0.2",
                Role::Agent,
                Outcome::Failed {
                    exit_code: Some(3),
                    signal: None,
                    message: "`exec` failed on 10.0.0.2: exit code 3\nno such file".into(),
                },
                80,
            ),
            h(
                "10.0.0.3",
                Role::Agent,
                Outcome::Unreachable {
                    message:
                        "10.0.0.3 is unreachable: no SSH connection to 10.0.0.3 within 2s\nhint: x"
                            .into(),
                },
                2000,
            ),
            h(
                "[fd00::4]:2222",
                Role::AgentPublic,
                Outcome::TimedOut { after_ms: 1500 },
                1510,
            ),
        ];
        let mut summary = Summary::default();
        for x in &hosts {
            summary.add(&x.outcome);
        }
        StageReport {
            run_id: "r".into(),
            stage: Stage::Exec,
            hosts,
            summary,
            duration: Duration::from_millis(2010),
        }
    }

    #[test]
    fn table_and_summary() {
        let r = report();
        assert_eq!(
            render_table(&r),
            "HOST            ROLE          RESULT       EXIT    TIME  MESSAGE\n\
             10.0.0.1        master        ok              0   0.12s\n\
             10.0.0.2        agent         failed          3   0.08s  no such file\n\
             10.0.0.3        agent         unreachable         2.00s  10.0.0.3 is unreachable: no SSH connection to 10.0.0.3 within 2s\n\
             [fd00::4]:2222  agent_public  timed-out           1.51s  ended after 1.5s\n"
        );
        assert_eq!(
            render_summary(&r),
            "4 hosts: 1 ok, 1 failed, 1 unreachable, 1 timed out in 2.01s"
        );
        assert_eq!(exit_code(&r), 2);
    }

    #[test]
    fn exit_codes() {
        let mut r = report();
        r.hosts
            .retain(|h| matches!(h.outcome, Outcome::Ok | Outcome::Unreachable { .. }));
        r.summary = Summary::default();
        for h in &r.hosts {
            r.summary.add(&h.outcome);
        }
        assert_eq!(exit_code(&r), 4);
        r.hosts.truncate(1);
        r.summary = Summary::default();
        r.summary.add(&Outcome::Ok);
        assert_eq!(exit_code(&r), 0);
    }
}
