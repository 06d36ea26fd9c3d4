//! Output shared by every command: the event sink, errors, JSON and switch reports.

use std::sync::Arc;

use anyhow::Result;
use serde::Serialize;
use tarmac_activate::{ActivateError, SwitchReport};
use tarmac_events::{Event, Level, Sink};
use tarmac_types::PackageId;
use tarmac_types::error_report::{AsHint, ErrorReport, as_hint};

/// The error types whose hints are data: tarmac-activate's and tarmac-pkg's.
static TYPED_HINTS: std::sync::LazyLock<Vec<AsHint>> = std::sync::LazyLock::new(|| {
    let mut v: Vec<AsHint> = vec![as_hint::<ActivateError>];
    v.extend_from_slice(tarmac_pkg::TYPED_HINTS);
    v
});

/// `error: …`, every `caused by: …`, then the hints found in the chain.
pub fn print_error(err: &anyhow::Error) {
    eprint!(
        "{}",
        ErrorReport::with_hints(&**err, &TYPED_HINTS).to_text()
    );
}

pub fn sink(verbose: bool) -> Sink {
    Arc::new(move |e: Event| match e {
        Event::Notice {
            level: Level::Warn | Level::Error,
            message,
        } => eprintln!("warning: {message}"),
        Event::Notice {
            level: Level::Info,
            message,
        } if verbose => eprintln!("{message}"),
        Event::Activation { phase, packages } if verbose => {
            eprintln!("{phase} ({} packages)", packages.len())
        }
        _ => {}
    })
}

pub fn ids(raw: &[String]) -> Result<Vec<PackageId>> {
    raw.iter()
        .map(|s| PackageId::parse(s).map_err(anyhow::Error::from))
        .collect()
}

pub fn print_json(v: &impl Serialize) {
    println!("{}", serde_json::to_string_pretty(v).expect("serializable"));
}

pub fn report_switch(json: bool, r: &SwitchReport) {
    if json {
        print_json(r);
    } else if r.unchanged {
        println!(
            "unchanged: generation {} already runs these {} packages",
            r.to,
            r.packages.len()
        );
    } else {
        let from = r
            .from
            .map_or_else(|| "nothing".to_owned(), |g| format!("generation {g}"));
        println!(
            "switched from {from} to generation {} ({} packages; stopped {}; flip {} µs; total {} ms)",
            r.to,
            r.packages.len(),
            if r.stopped.is_empty() {
                "nothing".to_owned()
            } else {
                r.stopped.join(" ")
            },
            r.flip_us,
            r.total_ms
        );
    }
}
