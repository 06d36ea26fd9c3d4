//! `tarmac validate-config`: check genconf/config.yaml against the distribution's schema and
//! explain every mistake at once.
//!
//! Exit codes: 0 valid (warnings are printed but do not fail), 1 invalid or unreadable.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;

use crate::source::BuildSource;
use anyhow::{Context as _, anyhow};
use clap::Args;

use crate::progress::OutputMode;

#[derive(Debug, Args)]
pub struct ValidateConfigArgs {
    /// Directory holding config.yaml and ip-detect.
    #[arg(long, value_name = "DIR", default_value = "genconf")]
    pub genconf_dir: PathBuf,
    /// The build (and its distribution) to check against.
    #[command(flatten)]
    pub source: BuildSource,
    /// `human`: a summary line on stdout, the mistakes explained on stderr. `json`: only
    /// JSON on stdout: `{key: message}` (`{}` when valid), or for any other failure one
    /// `{"error", "causes", "hint"}` object.
    #[arg(long, value_enum, default_value_t = OutputMode::Human)]
    pub output: OutputMode,
    /// Same as `--output json`.
    #[arg(long, hide = true)]
    pub json: bool,
}

pub fn run(args: ValidateConfigArgs) -> anyhow::Result<ExitCode> {
    let dist = args
        .source
        .load(&crate::source::notice_sink())
        .context("cannot validate genconf/config.yaml")?
        .dist;
    let result = tarmac_config::load_genconf(&args.genconf_dir, &dist);
    if args.output == OutputMode::Json {
        let map = match &result {
            Ok(_) => Default::default(),
            Err(report) => report.to_json_map(),
        };
        println!("{}", serde_json::to_string_pretty(&map)?);
        return Ok(if result.is_ok() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    match result {
        Ok(cfg) => {
            for w in cfg.warnings() {
                let mut r = tarmac_config::Report::new(
                    &args.genconf_dir.join("config.yaml").display().to_string(),
                    &std::fs::read_to_string(args.genconf_dir.join("config.yaml"))
                        .unwrap_or_default(),
                );
                r.warnings.push(w.clone());
                eprint!("{}", r.render());
            }
            let n = |role, one: &str, many: &str| {
                let k = cfg.hosts(role).len();
                format!("{k} {}", if k == 1 { one } else { many })
            };
            println!(
                "{} is valid: {}, {}, {} (config id {})",
                args.genconf_dir.join("config.yaml").display(),
                n(tarmac_types::Role::Master, "master", "masters"),
                n(tarmac_types::Role::Agent, "agent", "agents"),
                n(
                    tarmac_types::Role::AgentPublic,
                    "public agent",
                    "public agents"
                ),
                &cfg.config_id().hex()[..12],
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(report) => {
            eprint!("{}", report.render());
            Err(anyhow!("{report}"))
        }
    }
}
