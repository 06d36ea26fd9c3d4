//! Minimal lab control for `bench/activation.sh` (keeps the benchmark independent of the
//! `tarmac` binary): `labctl up NAME` (one systemd master), `labctl down NAME`,
//! `labctl ssh NAME HOST CMD` (stdin/stdout passed through; exit status propagated).
#![allow(clippy::print_stderr)]

use std::process::ExitCode;

use tarmac_lab::{Lab, LabSpec, Mode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let res = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["up", name] => Lab::up(
            &LabSpec {
                name: (*name).to_owned(),
                masters: 1,
                agents: 0,
                public_agents: 0,
                mode: Mode::Systemd,
                extra_packages: Vec::new(),
            },
            &tarmac_events::NullSink,
        )
        .map(|_| ExitCode::SUCCESS),
        ["down", name] => Lab::down(name).map(|_| ExitCode::SUCCESS),
        ["ssh", name, host, cmd] => Lab::open(name).and_then(|lab| {
            let mut c = lab.ssh_command("root", host)?;
            let st = c.arg("--").arg(cmd).status().expect("run ssh");
            Ok(ExitCode::from(st.code().unwrap_or(1) as u8))
        }),
        _ => {
            eprintln!("usage: labctl up NAME | down NAME | ssh NAME HOST CMD");
            return ExitCode::from(2);
        }
    };
    res.unwrap_or_else(|e| {
        eprintln!("labctl: {e}");
        ExitCode::FAILURE
    })
}
