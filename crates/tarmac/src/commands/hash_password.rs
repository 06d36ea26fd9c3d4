//! `tarmac hash-password`: SHA-512 crypt for passwords in config.yaml.
#![allow(clippy::print_stdout)]

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

#[derive(Debug, Args)]
pub struct HashPasswordArgs {
    /// The password. Prefer the prompt or stdin: arguments are visible in `ps` and shell history.
    pub password: Option<String>,
}

pub fn run(args: HashPasswordArgs) -> anyhow::Result<ExitCode> {
    let password = match args.password {
        Some(p) => p,
        None if std::io::stdin().is_terminal() => {
            let p = rpassword::prompt_password("Password: ").context("cannot read the password")?;
            let again = rpassword::prompt_password("Repeat password: ")
                .context("cannot read the password")?;
            if p != again {
                return Err(tarmac_types::error_report::Hinted::new(
                    "the two passwords differ",
                    "type the same password twice",
                )
                .into());
            }
            p
        }
        None => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("cannot read the password from stdin")?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    let hash = tarmac_installer::password::hash_password(&password)?;
    println!("{hash}");
    Ok(ExitCode::SUCCESS)
}
