//! Terminal rendering: errors with their whole cause chain and hints, and tracing setup.
#![allow(clippy::print_stderr)]

/// Print `error: …`, every `caused by: …`, then any `hint: …` lines found in the chain.
pub fn print_error(err: &anyhow::Error) {
    let mut hints = Vec::new();
    for (i, cause) in err.chain().enumerate() {
        let text = cause.to_string();
        let mut body = Vec::new();
        for line in text.lines() {
            match line.trim_start().strip_prefix("hint:") {
                Some(h) => hints.push(h.trim().to_owned()),
                None => body.push(line),
            }
        }
        let body = body.join("\n");
        if i == 0 {
            eprintln!("error: {body}");
        } else if !body.trim().is_empty() {
            eprintln!("  caused by: {body}");
        }
    }
    for h in hints {
        eprintln!("hint: {h}");
    }
}

pub fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info,tarmac=debug",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("TARMAC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
