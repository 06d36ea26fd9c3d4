//! `tarmac genconf`: validate genconf/config.yaml and write genconf/serve/ (config packages,
//! package list, install.sh, the build's artifacts).
//!
//! Exit codes: 0 written, 1 invalid configuration or any other failure (serve/ unchanged).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use tarmac_events::Sink;
use tarmac_genconf::{GenconfError, GenconfOptions};
use tarmac_pkg::pack::PackOptions;
use tarmac_types::error_report::Hinted;

use crate::progress::OutputMode;
use crate::source::BuildSource;

/// What genconf reads: shared by `tarmac genconf` and `tarmac web` (which runs genconf too).
#[derive(Debug, Clone, Args)]
pub struct GenconfInputs {
    /// Directory holding config.yaml and ip-detect; serve/ and state/ are written inside it.
    #[arg(long, alias = "genconf", value_name = "DIR", default_value = "genconf")]
    pub genconf_dir: PathBuf,
    /// The build, its distribution and the trusted key.
    #[command(flatten)]
    pub source: BuildSource,
}

#[derive(Debug, Args)]
pub struct GenconfArgs {
    #[command(flatten)]
    pub inputs: GenconfInputs,
    /// `human`: progress on stderr, a summary on stdout. `json`: only JSON on stdout: the
    /// result (ids, paths, fingerprints), `{key: message}` for an invalid configuration, or
    /// for any other failure one `{"error", "causes", "hint"}` object.
    #[arg(long, value_enum, default_value_t = OutputMode::Human)]
    pub output: OutputMode,
    /// Same as `--output json`.
    #[arg(long, hide = true)]
    pub json: bool,
}

/// Load the build and its distribution, render genconf/serve/ under the run lock and record
/// the new target in the ledger. Shared by `tarmac genconf` and the day-two commands that
/// change config.yaml (remove-hosts, replace-master).
pub(crate) fn render(
    inputs: &GenconfInputs,
) -> anyhow::Result<Result<tarmac_genconf::GenconfReport, GenconfError>> {
    let sink: Sink = crate::source::notice_sink();
    let loaded = inputs.source.load(&sink)?;
    let build = match loaded.build {
        Some(b) => b,
        None => inputs.source.build()?,
    };
    let opts = GenconfOptions {
        genconf_dir: inputs.genconf_dir.clone(),
        build_dir: build.dir.clone(),
        public_key: loaded.public_key.clone(),
        pack: PackOptions::default(),
    };
    let dist = loaded.dist;
    // The run lock: no genconf while a stage runs from serve/, and the ledger entry below
    // is appended under it.
    let state_dir = inputs.genconf_dir.join("state");
    // (A missing genconf/ is genconf's own error to report; nothing is created for it.)
    let lock = if inputs.genconf_dir.is_dir() {
        Some(tarmac_installer::lock::RunLock::acquire(
            &state_dir,
            "tarmac genconf",
        )?)
    } else {
        None
    };
    let result = tarmac_genconf::genconf(&dist, &opts, &sink);
    if let (Ok(r), Some(lock)) = (&result, &lock) {
        let ledger = tarmac_installer::ledger::Ledger::new(&state_dir);
        let target = tarmac_installer::ledger::Target {
            list_id: r.cluster_package_list_id.clone(),
            packages: r.packages.clone(),
        };
        if let Some(e) = ledger.record_genconf(lock, target, &r.bootstrap_id, &r.config_id)? {
            eprintln!(
                "ledger entry {}: genconf rendered cluster package list {}",
                e.seq, r.cluster_package_list_id
            );
        }
    }
    drop(lock);
    Ok(result)
}

pub fn run(args: GenconfArgs) -> anyhow::Result<ExitCode> {
    let result = render(&args.inputs)?;
    match result {
        Ok(r) => {
            if args.output == OutputMode::Json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!("Wrote {} in {} ms", r.serve_dir.display(), r.duration_ms);
                println!("  config id            {}", r.config_id);
                println!("  cluster package list {}", r.cluster_package_list_id);
                println!("  bootstrap            {}", r.bootstrap_id);
                for id in &r.config_packages {
                    println!("  config package       {id}");
                }
                println!(
                    "  manifest signature   {}",
                    if r.signed {
                        "checked, and checked again on every host"
                    } else {
                        "not checked (no --public-key)"
                    }
                );
                println!("  install.sh sha256    {}", r.install_sh_sha256);
                if let Some(fp) = &r.signing_key_fingerprint {
                    println!("  signing key          {fp}");
                }
                if let Some(fp) = &r.repository_ca_fingerprint {
                    println!("  repository CA        {fp} (hosts trust only it for https)");
                }
                if r.secret_files > 0 {
                    println!(
                        "  secret files         {} in {} (not served; deploy and upgrade deliver them over SSH)",
                        r.secret_files,
                        r.secrets_dir.display()
                    );
                }
                println!(
                    "Install: `tarmac preflight && tarmac deploy` (install.sh goes over SSH). To let a host install itself"
                );
                println!(
                    "(tarmac serve), run on it exactly this, which checks install.sh before running it:"
                );
                if r.secret_files > 0 {
                    println!(
                        "  (first copy the secret files of its role over SSH: {}/<config package id>/.key and /<path> to /etc/tarmac/secrets/<config package id>/, root, 0600)",
                        r.secrets_dir.display()
                    );
                }
                println!(
                    "  {}",
                    tarmac_genconf::self_install_command(
                        &r.bootstrap_url,
                        &r.install_sh_sha256,
                        r.signing_key_fingerprint.as_deref(),
                        r.server_key_pin.as_deref(),
                        "<master|agent|agent_public>",
                    )
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(GenconfError::Invalid(report)) => {
            if args.output == OutputMode::Json {
                println!("{}", serde_json::to_string_pretty(&report.to_json_map())?);
                return Ok(ExitCode::from(1));
            }
            eprint!("{}", report.render());
            Err(Hinted::new(
                report.to_string(),
                "nothing was written; genconf/serve/ is unchanged",
            )
            .into())
        }
        Err(e) => Err(e.into()),
    }
}
