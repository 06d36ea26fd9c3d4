//! Test failpoints: `TARMAC_FAILPOINTS=after-flip=kill,after-stop=sleep:200` makes the
//! process kill itself (SIGKILL), abort, exit or pause at a named point of a switch. Used
//! by the crash tests to stop a switch at its most delicate instants; inert otherwise.

use std::sync::OnceLock;
use std::time::Duration;

fn table() -> &'static Vec<(String, String)> {
    static T: OnceLock<Vec<(String, String)>> = OnceLock::new();
    T.get_or_init(|| {
        std::env::var("TARMAC_FAILPOINTS")
            .unwrap_or_default()
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect()
    })
}

/// Run the action configured for `name`, if any.
pub fn hit(name: &str) {
    for (k, action) in table() {
        if k != name {
            continue;
        }
        if action == "kill" {
            // SAFETY: raising a signal on ourselves has no memory-safety preconditions.
            unsafe { libc::raise(libc::SIGKILL) };
        } else if action == "abort" {
            std::process::abort();
        } else if let Some(code) = action.strip_prefix("exit:") {
            std::process::exit(code.parse().unwrap_or(99));
        } else if let Some(ms) = action.strip_prefix("sleep:") {
            std::thread::sleep(Duration::from_millis(ms.parse().unwrap_or(0)));
        }
    }
}
