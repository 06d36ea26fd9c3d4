//! The switch log: `/opt/tarmac/switches.jsonl`, one JSON line appended (and fsynced) before
//! every flip of `current`, saying which generation it goes to, from which, by which command
//! and for which installer operation (`TARMAC_OPERATION`, the run id the installer sets).
//!
//! The record that explains the current generation is the last one whose `to` is it: a switch
//! that failed before its flip leaves a record whose `to` never became current, which that
//! rule skips. A torn last line (a crash mid-append) is ignored by the parser.

use std::io::Write;
use std::path::PathBuf;

pub use tarmac_types::switch::{SwitchRecord, explaining, parse};

use crate::config::HostConfig;
use crate::error::ActivateError;

/// The file inside the tarmac root.
pub const SWITCH_LOG: &str = "switches.jsonl";
/// The environment variable naming the installer operation (its run id).
pub const OPERATION_ENV: &str = "TARMAC_OPERATION";

pub fn path(cfg: &HostConfig) -> PathBuf {
    cfg.root.join(SWITCH_LOG)
}

/// The setup flag install.sh writes for `tarmac-host setup` (which runs in
/// tarmac-setup.service, outside the installer's environment).
pub const OPERATION_FLAG: &str = "operation";

/// The operation a switch records: `TARMAC_OPERATION`, or for `setup` the `operation` setup
/// flag install.sh wrote. Kept only when it is printable ASCII without spaces, at most 200
/// bytes (anything else is dropped rather than written into the log).
pub fn operation(cfg: &HostConfig, command: &str) -> Option<String> {
    let v = std::env::var(OPERATION_ENV).ok().or_else(|| {
        (command == "setup")
            .then(|| std::fs::read_to_string(cfg.setup_flags_dir().join(OPERATION_FLAG)).ok())
            .flatten()
            .map(|s| s.trim().to_owned())
    })?;
    let ok = !v.is_empty() && v.len() <= 200 && v.bytes().all(|b| b.is_ascii_graphic());
    ok.then_some(v)
}

/// Append `rec` and fsync it.
pub fn append(cfg: &HostConfig, rec: &SwitchRecord) -> Result<(), ActivateError> {
    let p = path(cfg);
    let mut line = serde_json::to_string(rec).expect("a switch record serializes");
    line.push('\n');
    let mut f = tarmac_fsx::open_private_append(&p)
        .map_err(|e| ActivateError::io("open the switch log", &p, e))?;
    f.write_all(line.as_bytes())
        .and_then(|()| f.sync_data())
        .map_err(|e| ActivateError::io("append to the switch log", &p, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tarmac_types::Generation;

    fn rec(to: u64, op: Option<&str>) -> SwitchRecord {
        SwitchRecord {
            to: Generation(to),
            from: None,
            command: "activate".into(),
            operation: op.map(str::to_owned),
            at_unix: 1,
            reason: None,
        }
    }

    #[test]
    fn the_last_record_to_the_current_generation_explains_it() {
        let d = tempfile::tempdir().unwrap();
        let cfg = HostConfig::new(d.path());
        append(&cfg, &rec(1, Some("deploy-1"))).unwrap();
        append(&cfg, &rec(2, Some("upgrade-2"))).unwrap();
        // a switch to 3 that failed before its flip, then a rollback to 1
        append(&cfg, &rec(3, Some("upgrade-3"))).unwrap();
        append(&cfg, &rec(1, Some("rollback-4"))).unwrap();
        let mut text = std::fs::read_to_string(path(&cfg)).unwrap();
        text.push_str("{\"to\":5,\"comm"); // torn
        let all = parse(&text);
        assert_eq!(all.len(), 4);
        let op = |g| explaining(&all, Generation(g)).and_then(|r| r.operation.clone());
        assert_eq!(op(1).as_deref(), Some("rollback-4"));
        assert_eq!(op(2).as_deref(), Some("upgrade-2"));
        assert_eq!(explaining(&all, Generation(5)), None);
        assert_eq!(
            serde_json::to_string(&rec(2, None)).unwrap(),
            r#"{"to":2,"from":null,"command":"activate","at_unix":1}"#
        );
    }
}
