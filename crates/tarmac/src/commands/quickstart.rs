//! `tarmac quickstart`: the whole job end to end on the built-in lab. Builds the reference
//! distribution (signed), brings up a lab (3 masters, 2 agents, 1 public agent by default),
//! writes genconf/ from the lab, runs validate-config → genconf → preflight → deploy →
//! postflight → status, prints where to look next, and tears the lab down unless `--keep`.
#![allow(clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use tarmac_lab::{Lab, LabGuard, LabSpec, Mode};
use tarmac_types::error_report::Hinted;

use crate::commands::{build, genconf, keygen, lab, stages};
use crate::progress::{OutputMode, Terminal};

#[derive(Debug, Args)]
pub struct QuickstartArgs {
    /// Lab name (several labs can run side by side).
    #[arg(long, default_value = "quickstart")]
    pub name: String,
    #[arg(long, default_value_t = 3)]
    pub masters: usize,
    #[arg(long, default_value_t = 2)]
    pub agents: usize,
    #[arg(long, default_value_t = 1)]
    pub public_agents: usize,
    /// Extra lab hosts left out of config.yaml, for day-two work (`deploy` of added hosts,
    /// `replace-master`): fresh servers with SSH, nothing installed.
    #[arg(long, default_value_t = 0)]
    pub spare: usize,
    /// Keep the lab (and its cluster) running at the end.
    #[arg(long)]
    pub keep: bool,
    /// Working directory: signing keys, build output and genconf/ go here.
    #[arg(long, default_value = "quickstart-out")]
    pub dir: PathBuf,
    /// The distribution to build and install.
    #[arg(long, env = "TARMAC_DIST", default_value = "dist/reference")]
    pub dist: PathBuf,
    #[command(flatten)]
    pub suites: lab::SuitesArg,
    /// The tarmac-host binary to ship in the bootstrap [default: the `tarmac-host` next to
    /// this binary; scripts/build-portable.sh puts a portable one (glibc >= 2.17) there].
    #[arg(long, value_name = "PATH")]
    pub host_binary: Option<PathBuf>,
}

fn step(n: usize, text: &str) {
    eprintln!("\n[{n}/8] {text}");
}

fn ok(code: ExitCode, what: &str) -> anyhow::Result<()> {
    if code == ExitCode::SUCCESS {
        Ok(())
    } else {
        bail!("{what} did not succeed (see above)")
    }
}

pub fn run(args: QuickstartArgs, verbose: bool) -> anyhow::Result<ExitCode> {
    let dir = std::path::absolute(&args.dir)?;
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let keys = dir.join("keys");
    let build_dir = dir.join("build");
    let genconf_dir = dir.join("genconf");

    step(1, "signing key");
    if !keys.join("quickstart.key").exists() {
        ok(
            keygen::run(keygen::KeygenArgs {
                dir: keys.clone(),
                name: "quickstart".into(),
                force: false,
            })?,
            "keygen",
        )?;
    } else {
        eprintln!("using {}", keys.join("quickstart.key").display());
    }

    step(
        2,
        &format!(
            "build {} (cached builds take milliseconds)",
            args.dist.display()
        ),
    );
    let host_binary = match args.host_binary {
        Some(p) => {
            if !p.is_file() {
                return Err(Hinted::new(
                    format!("--host-binary {}: no such file", p.display()),
                    "build it with scripts/build-portable.sh",
                )
                .into());
            }
            p
        }
        None => {
            let exe = std::env::current_exe()?;
            let p = exe.with_file_name("tarmac-host");
            if !p.exists() {
                return Err(Hinted::new(
                    format!("no tarmac-host binary next to {}", exe.display()),
                    "build both binaries first: scripts/build-portable.sh (portable, what hosts need) or cargo build --release --bins",
                )
                .into());
            }
            p
        }
    };
    ok(
        build::run(
            build::BuildArgs {
                tree: args.dist.clone(),
                out: Some(build_dir.clone()),
                cache: None,
                recursive: true,
                sign_key: Some(keys.join("quickstart.key")),
                host_binary: Some(host_binary),
                jobs: None,
                level: tarmac_pkg::pack::DEFAULT_LEVEL,
                keep_work: false,
                output: OutputMode::Human,
                json: false,
                names: Vec::new(),
            },
            verbose,
        )?,
        "build",
    )?;

    let suites = args.suites.get();
    step(
        3,
        &format!(
            "lab `{}`: {} masters, {} agents, {} public agents{}",
            args.name,
            args.masters,
            args.agents,
            args.public_agents,
            if suites.is_empty() {
                String::new()
            } else {
                format!(" (Debian {suites})")
            }
        ),
    );
    let sink = Terminal::new(OutputMode::Human, verbose);
    if Lab::open(&args.name).is_ok() {
        eprintln!(
            "lab `{}` exists from an earlier run: taking it down first",
            args.name
        );
        Lab::down_with(&args.name, &sink)?;
    }
    let spec = LabSpec {
        mode: Mode::Systemd,
        ..LabSpec::new(
            &args.name,
            args.masters,
            args.agents + args.spare,
            args.public_agents,
        )
    };
    let lab = Lab::up_with_suites(&spec, &suites, &sink)?;
    let keep = args.keep;
    let lab = Keep {
        guard: Some(LabGuard::new(lab)),
        keep,
    };
    let lab_ref = lab.lab();

    step(4, "genconf/ from the lab");
    std::fs::create_dir_all(&genconf_dir)?;
    for f in ["config.yaml", "ip-detect"] {
        let src = lab_ref.dir().join("genconf").join(f);
        std::fs::copy(&src, genconf_dir.join(f))
            .with_context(|| format!("cannot copy {}", src.display()))?;
    }
    if args.spare > 0 {
        // The last `spare` agents of the lab stay out of the cluster.
        let agents: Vec<String> = lab_ref
            .hosts_with_role(tarmac_lab::Role::Agent)
            .map(|h| h.ip.to_string())
            .collect();
        let (listed, spare) = agents.split_at(agents.len() - args.spare);
        let path = genconf_dir.join("config.yaml");
        let text = std::fs::read_to_string(&path)?;
        let next = tarmac_config::yamledit::set_keys(
            &text,
            &[("agent_list".to_owned(), Some(serde_json::json!(listed)))],
        )
        .map_err(|e| anyhow::anyhow!("cannot edit {}: {e}", path.display()))?;
        tarmac_fsx::write_atomic(&path, next.as_bytes(), 0o644)?;
        eprintln!("spare hosts (not in config.yaml): {}", spare.join(", "));
    }
    ok(
        genconf::run(genconf::GenconfArgs {
            inputs: genconf::GenconfInputs {
                genconf_dir: genconf_dir.clone(),
                // The distribution comes out of the signed build, as an operator's does.
                source: crate::source::BuildSource {
                    dist: None,
                    build_dir: Some(build_dir.clone()),
                    public_key: Some(keys.join("quickstart.pub")),
                },
            },
            output: OutputMode::Human,
            json: false,
        })?,
        "genconf",
    )?;

    // The hosts are reachable only from the lab's control network namespace: move this
    // process there for the installer stages (the build needed the machine's network).
    lab_ref.enter_ctl_netns()?;
    let common = stages::CommonArgs {
        genconf_dir: genconf_dir.clone(),
        dist: None,
        hosts: None,
        retry_failed: false,
        output: OutputMode::Human,
        json: false,
        sudo_password_stdin: false,
    };
    step(5, "preflight");
    ok(
        stages::preflight(
            stages::PreflightArgs {
                common: common.clone(),
                ignore: Vec::new(),
                push: false,
                listen: None,
                prereqs_dir: None,
            },
            verbose,
        )?,
        "preflight",
    )?;
    step(6, "deploy");
    ok(
        stages::deploy(
            stages::DeployArgs {
                common: common.clone(),
                push: false,
                listen: None,
                timeout: Duration::from_secs(15 * 60),
                batch: tarmac_installer::upgrade::DEFAULT_BATCH.into(),
                confirm_window: Duration::from_secs(120),
                check_timeout: Duration::from_secs(300),
                no_backup: false,
                resume: false,
            },
            verbose,
        )?,
        "deploy",
    )?;
    step(7, "postflight");
    ok(
        stages::postflight(
            stages::PostflightArgs {
                common: common.clone(),
                timeout: Duration::from_secs(10 * 60),
            },
            verbose,
        )?,
        "postflight",
    )?;
    step(8, "status");
    ok(
        stages::status(stages::StatusArgs { common, at: None }, verbose)?,
        "status",
    )?;

    let master = lab_ref
        .hosts()
        .iter()
        .find(|h| h.role == tarmac_lab::Role::Master)
        .map(|h| h.ip.to_string());
    eprintln!("\n✓ quickstart: the cluster is installed and healthy.");
    eprintln!("  config:   {}", genconf_dir.join("config.yaml").display());
    eprintln!("  journals: {}", genconf_dir.join("state/runs").display());
    eprintln!("  logs:     {}", genconf_dir.join("state/logs").display());
    if keep {
        eprintln!("\nThe lab `{}` keeps running. Next:", args.name);
        eprintln!("  tarmac lab status --name {}", args.name);
        eprintln!(
            "  tarmac lab exec --name {} -- tarmac status --genconf-dir {}",
            args.name,
            genconf_dir.display()
        );
        if let Some(m) = master {
            eprintln!(
                "  tarmac lab exec --name {} -- curl -s http://{m}:9090/api/v1/targets   # prometheus",
                args.name
            );
        }
        eprintln!("  tarmac lab down --name {}", args.name);
    } else {
        eprintln!("\nTearing the lab down (pass --keep to explore the cluster).");
    }
    drop(lab);
    Ok(ExitCode::SUCCESS)
}

/// Holds the lab; tears it down on drop unless kept.
struct Keep {
    guard: Option<LabGuard>,
    keep: bool,
}

impl Keep {
    fn lab(&self) -> &Lab {
        self.guard.as_ref().expect("the lab is held until drop")
    }
}

impl Drop for Keep {
    fn drop(&mut self) {
        if let Some(g) = self.guard.take() {
            if self.keep {
                std::mem::forget(g);
            } else if let Err(e) = g.down() {
                eprintln!(
                    "warning: lab teardown: {}",
                    tarmac_types::error_report::text_with_hint(&e)
                );
            }
        }
    }
}
