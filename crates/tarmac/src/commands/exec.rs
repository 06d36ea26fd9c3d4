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
use tarmac_events::{Event, EventSink, Level, Outcome, Stream, Summary};
use tarmac_ssh::{
    Connector, Exec, Fleet, FleetContext, HostKeyPolicy, Limits, LogDir, Secret, Selector,
    SshOptions, StageOptions, StageReport, Target, Upload, UploadSource,
};
use tarmac_types::error_report::Hinted;
use tarmac_types::time::parse_flag_duration;

use crate::render::HintContext as _;
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
    /// Hosts worked on at once (default: ssh_parallelism from config.yaml).
    #[arg(long, short = 'P', value_name = "N")]
    pub parallel: Option<usize>,
    /// Per-host command timeout (e.g. 30s, 5m; a bare number is seconds; default:
    /// process_timeout from config.yaml); the remote processes are ended when it passes.
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

/// The live line under the host output: `12/150 done · 11 ok · 1 failed · …`.
fn live_line(s: &Summary, total: usize) -> String {
    format!(
        "{}/{total} done · {} ok · {} failed · {} unreachable · {} timed out · {} running",
        s.total,
        s.ok + s.unchanged,
        s.failed + s.cancelled + s.skipped,
        s.unreachable,
        s.timed_out,
        total.saturating_sub(s.total)
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
    /// The hosts finished so far, counted as every renderer counts them.
    done: Summary,
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
                st.done.add(&outcome);
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
                    b.set_message(live_line(&st.done, st.total));
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

/// The hosts and SSH options of an exec run: the installer's (config.yaml's `ssh_*`, checked
/// by tarmac-config), with the command line's overrides.
pub fn plan(
    cfg: tarmac_config::ResolvedConfig,
    args: &ExecArgs,
) -> anyhow::Result<(Vec<Target>, SshOptions)> {
    let config_path = args.genconf_dir.join("config.yaml");
    let key_set = cfg.user_values().contains_key("ssh_key_path");
    let installer = tarmac_installer::stages::Installer::new(
        &args.genconf_dir,
        cfg,
        Arc::new(tarmac_events::NullSink),
    );
    let hosts: Vec<Target> = installer
        .hosts()
        .into_iter()
        .map(|(h, r)| Target::new(h).with_role(r))
        .collect();
    if hosts.is_empty() {
        return Err(Hinted::new(
            format!("{} lists no hosts", config_path.display()),
            "fill master_list, agent_list or public_agent_list",
        )
        .into());
    }
    let selector = match (&args.hosts, args.role) {
        (Some(s), _) => Selector::parse(s)?,
        (None, Some(r)) => Selector::role(r),
        (None, None) => Selector::all(),
    };
    let targets = selector.select(&hosts)?;
    let mut opts = installer.ssh_options()?;
    // ssh_key_path left at its default and no genconf/ssh_key: the user's own keys, as ssh does.
    if !key_set && opts.identity_files.iter().all(|p| !p.exists()) {
        opts.identity_files = default_identity_files(&args.genconf_dir);
    }
    if let Some(p) = args.host_key_policy {
        opts.host_key_policy = p;
    }
    opts.connect_timeout = args.connect_timeout;
    if args.timeout.is_some() {
        opts.command_timeout = args.timeout;
    }
    if let Some(p) = args.parallel {
        opts.limits = Limits::parallel(p.max(1));
    }
    Ok((targets, opts))
}

pub fn run(args: ExecArgs) -> anyhow::Result<ExitCode> {
    let json_out = args.output == OutputFormat::Json;
    let cfg = match tarmac_config::load_installer_settings(&args.genconf_dir) {
        Ok(c) => c,
        Err(report) if json_out => {
            return Err(anyhow::anyhow!("{report}")).hint_context(
                || "the configuration is invalid; no host was touched".to_owned(),
                "`tarmac validate-config` gives every key's mistake",
            );
        }
        Err(report) => {
            eprint!("{}", report.render());
            eprintln!("error: the configuration is invalid; no host was touched");
            return Ok(ExitCode::from(1));
        }
    };
    if !json_out {
        for w in cfg.warnings() {
            let hint = w
                .hint
                .as_deref()
                .map(|h| format!(" (hint: {h})"))
                .unwrap_or_default();
            eprintln!("warning: {}: {}{hint}", w.key, w.message);
        }
    }
    let (targets, mut opts) = plan(cfg, &args)?;
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
                        on_finish: None,
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
    #[test]
    fn the_live_line_counts_as_the_summary_does() {
        use super::{Outcome, Summary, live_line};
        let mut s = Summary::default();
        for o in [
            Outcome::Ok,
            Outcome::Unchanged,
            Outcome::Failed {
                exit_code: Some(1),
                signal: None,
                message: "x".into(),
            },
            Outcome::Cancelled,
            Outcome::Unreachable {
                message: "refused".into(),
            },
            Outcome::TimedOut { after_ms: 5 },
        ] {
            s.add(&o);
        }
        assert_eq!(
            live_line(&s, 10),
            "6/10 done · 2 ok · 2 failed · 1 unreachable · 1 timed out · 4 running"
        );
    }

    use super::*;
    use tarmac_events::Summary;
    use tarmac_ssh::HostResult;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        exec: ExecArgs,
    }

    /// `config.yaml` (plus an ip-detect) in a fresh genconf/, and exec's args for it.
    fn genconf(yaml: &str, extra: &[&str]) -> (tempfile::TempDir, ExecArgs) {
        use clap::Parser as _;
        let t = tempfile::tempdir().unwrap();
        let g = t.path().join("genconf");
        std::fs::create_dir(&g).unwrap();
        std::fs::write(g.join("config.yaml"), yaml).unwrap();
        std::fs::write(g.join("ip-detect"), "#!/bin/sh\necho 10.0.0.1\n").unwrap();
        let mut argv = vec!["exec", "--genconf-dir", g.to_str().unwrap()];
        argv.extend(extra);
        argv.extend(["--", "uptime"]);
        (t, Cli::parse_from(argv).exec)
    }

    #[test]
    fn the_installer_settings_reach_the_hosts() {
        let yaml = "cluster_name: x\nbootstrap_url: http://10.0.0.254\nmaster_list:\n- 10.0.0.1\n- 10.0.0.2:2222\nagent_list: [10.0.1.1]\n\
                    public_agent_list: []\nssh_user: centos\nssh_port: 2200\nssh_key_path: genconf/ssh_key\n\
                    ssh_known_hosts: genconf/known_hosts\nssh_host_key_policy: accept-new\nssh_jump: ops@bastion:2222,10.9.9.9\n\
                    ssh_parallelism: 40\nsome_distribution_key: {a: [1, 2]}\n";
        let (t, args) = genconf(yaml, &[]);
        let cfg = tarmac_config::load_installer_settings(&args.genconf_dir).unwrap();
        assert!(cfg.warnings().is_empty(), "{:?}", cfg.warnings());
        let (targets, o) = plan(cfg, &args).unwrap();
        let t_ = |v: &[Target]| {
            v.iter()
                .map(|t| format!("{t} {:?}", t.role))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            t_(&targets),
            [
                "10.0.0.1 Some(Master)",
                "10.0.0.2:2222 Some(Master)",
                "10.0.1.1 Some(Agent)"
            ]
        );
        assert_eq!(o.user, "centos");
        assert_eq!(o.port, 2200);
        let base = t
            .path()
            .canonicalize()
            .unwrap_or_else(|_| t.path().to_owned());
        let strip = |p: &PathBuf| {
            p.strip_prefix(&base)
                .or_else(|_| p.strip_prefix(t.path()))
                .map(Path::to_path_buf)
                .unwrap_or_else(|_| p.clone())
        };
        assert_eq!(
            o.identity_files.iter().map(strip).collect::<Vec<_>>(),
            [PathBuf::from("genconf/ssh_key")]
        );
        assert_eq!(
            o.known_hosts.iter().map(strip).collect::<Vec<_>>(),
            [PathBuf::from("genconf/known_hosts")]
        );
        assert_eq!(o.host_key_policy, HostKeyPolicy::AcceptNew);
        assert_eq!(
            o.jump.iter().map(|j| j.to_string()).collect::<Vec<_>>(),
            ["ops@bastion:2222", "10.9.9.9"]
        );
        assert_eq!(o.limits, Limits::parallel(40));
        assert_eq!(o.command_timeout, Some(Duration::from_secs(600)));

        // The command line wins over config.yaml.
        let (_t, args) = genconf(
            yaml,
            &[
                "--role",
                "agent",
                "-P",
                "7",
                "--host-key-policy",
                "off",
                "--timeout",
                "5s",
            ],
        );
        let cfg = tarmac_config::load_installer_settings(&args.genconf_dir).unwrap();
        let (targets, o) = plan(cfg, &args).unwrap();
        assert_eq!(t_(&targets), ["10.0.1.1 Some(Agent)"]);
        assert_eq!(o.limits, Limits::parallel(7));
        assert_eq!(o.host_key_policy, HostKeyPolicy::Off);
        assert_eq!(o.command_timeout, Some(Duration::from_secs(5)));
    }

    #[test]
    fn config_mistakes_are_the_validators() {
        let load = |yaml: &str| {
            let (_t, args) = genconf(yaml, &[]);
            tarmac_config::load_installer_settings(&args.genconf_dir)
        };
        let errors = |yaml: &str| {
            load(yaml)
                .unwrap_err()
                .errors
                .iter()
                .map(|d| (d.key.clone(), d.loc().map(|l| l.to_string())))
                .collect::<Vec<_>>()
        };
        let url = "bootstrap_url: http://10.0.0.254\n";
        assert_eq!(
            errors(&format!(
                "{url}master_list: [10.0.0.1]\nagent_list: [10.0.0.1]\n"
            )),
            [
                ("master_list".to_owned(), Some("2:15".to_owned())),
                ("agent_list".to_owned(), Some("3:14".to_owned()))
            ]
        );
        assert_eq!(
            errors(&format!(
                "{url}master_list: [10.0.0.1]\nssh_host_key_policy: maybe\n"
            )),
            [("ssh_host_key_policy".to_owned(), Some("3:22".to_owned()))]
        );
        assert_eq!(
            errors(&format!("{url}master_list: [not a host]\n"))[0].0,
            "master_list"
        );
        // A misspelt installer key is a warning here (the distribution's keys are not known).
        let cfg = load(&format!("{url}master_list: [10.0.0.1]\nssh_uesr: centos\n")).unwrap();
        let w = &cfg.warnings()[0];
        assert_eq!(
            (w.key.as_str(), w.hint.as_deref()),
            ("ssh_uesr", Some("did you mean `ssh_user`?"))
        );
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
