//! What a stage runs on a host: pure command builders and output parsers, tested with
//! exact strings. The stages in `stages.rs` send these over the SSH engine.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tarmac_types::shell::quote;
use tarmac_types::{PackageId, Role};

/// Where install.sh puts the host binary.
pub const HOST_BIN: &str = "/opt/tarmac/tarmac-host";
/// The cluster address script install.sh writes from ip-detect.
pub const DETECT_IP: &str = "/opt/tarmac/bin/detect_ip";
/// Where the installer puts install.sh on a host (uploaded over SSH and sha256-checked, in
/// pull and push mode alike), and with `--push` the copy of the serve directory. Only root can
/// read it. (Secret files go to `/etc/tarmac/secrets/`, see [`crate::secrets`].)
pub const PUSH_DIR: &str = "/var/lib/tarmac-push";

/// Run the install.sh the installer uploaded over SSH. Hosts never run a script that came
/// over HTTP: install.sh carries every sha256 pin and the trusted signing key.
pub fn install_command(role: Role, preflight_only: bool) -> String {
    let flag = if preflight_only {
        " --preflight-only"
    } else {
        ""
    };
    format!("bash {PUSH_DIR}/install.sh{flag} {}", role.as_str())
}

/// Create [`PUSH_DIR`] readable by root only (also when an older installer left it 0755).
pub fn prepare_push_dir_command() -> String {
    format!("mkdir -p -m 0700 {PUSH_DIR} && chmod 0700 {PUSH_DIR}")
}

/// Rewrite install.sh's `readonly BOOTSTRAP_URL=…` line to the pushed copy on the host.
pub fn pushed_install_script(script: &str) -> String {
    script
        .lines()
        .map(|l| {
            if l.starts_with("readonly BOOTSTRAP_URL=") {
                format!("readonly BOOTSTRAP_URL='file://{PUSH_DIR}'")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// Print the host's active package ids, one per line (empty when nothing is installed).
pub fn active_command() -> String {
    format!("if [ -x {HOST_BIN} ]; then {HOST_BIN} active; fi")
}

/// Parse `tarmac-host active` output into sorted ids (ignoring anything that is not an id).
pub fn parse_active(out: &str) -> Vec<PackageId> {
    let mut v: Vec<PackageId> = out
        .lines()
        .filter_map(|l| PackageId::parse(l.trim()).ok())
        .collect();
    v.sort();
    v
}

/// One line of install.sh's preflight output: `Checking NAME … PASS|FAIL`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    pub name: String,
    pub passed: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                chars.next();
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Parse install.sh `--preflight-only` output (and the installer's own `tarmac-check|…` lines)
/// into check results; indented lines after a FAIL are its detail.
pub fn parse_checks(out: &str) -> Vec<CheckResult> {
    let mut checks: Vec<CheckResult> = Vec::new();
    for raw in out.lines() {
        let line = strip_ansi(raw);
        if let Some(rest) = line.strip_prefix("tarmac-check|") {
            let mut parts = rest.splitn(3, '|');
            let (Some(name), Some(status)) = (parts.next(), parts.next()) else {
                continue;
            };
            checks.push(CheckResult {
                name: name.to_owned(),
                passed: status == "ok",
                detail: parts.next().unwrap_or_default().to_owned(),
            });
            continue;
        }
        let trimmed = line.trim_end();
        if let Some(name) = trimmed.strip_prefix("Checking ") {
            let (name, passed) = if let Some(n) = name.strip_suffix("PASS") {
                (n, true)
            } else if let Some(n) = name.strip_suffix("FAIL") {
                (n, false)
            } else {
                continue;
            };
            checks.push(CheckResult {
                name: name.trim().to_owned(),
                passed,
                detail: String::new(),
            });
        } else if line.starts_with("    ")
            && let Some(last) = checks.last_mut().filter(|c| !c.passed)
        {
            if !last.detail.is_empty() {
                last.detail.push('\n');
            }
            last.detail.push_str(line.trim());
        }
    }
    checks
}

/// The installer's own host checks (beyond install.sh's): OS, architecture, clock.
/// Prints `tarmac-check|NAME|ok|detail` or `tarmac-check|NAME|fail|detail` lines, and the
/// host's clock as `tarmac-clock|<unix seconds with fraction>`.
pub fn host_checks_script() -> String {
    r#"os=unknown; [ -r /etc/os-release ] && . /etc/os-release && os="${ID:-unknown} ${VERSION_ID:-}"
arch=$(uname -m)
case "$arch" in x86_64|aarch64) echo "tarmac-check|architecture|ok|$arch";; *) echo "tarmac-check|architecture|fail|$arch is not supported (x86_64 or aarch64)";; esac
case "${ID:-} ${ID_LIKE:-}" in *debian*|*ubuntu*|*rhel*|*fedora*|*centos*|*rocky*|*alma*) echo "tarmac-check|operating system|ok|$os";; *) echo "tarmac-check|operating system|fail|$os is not a supported distribution (Debian/Ubuntu or RHEL family)";; esac
echo "tarmac-clock|$(date +%s.%N)"
"#
    .to_owned()
}

/// Parse `tarmac-clock|…` into seconds since the epoch.
pub fn parse_clock(out: &str) -> Option<f64> {
    out.lines()
        .find_map(|l| l.strip_prefix("tarmac-clock|")?.trim().parse().ok())
}

/// A clock offset check: `offset` = host clock − controller clock (seconds).
pub fn clock_check(offset: f64, max: f64) -> CheckResult {
    CheckResult {
        name: "clock offset".into(),
        passed: offset.abs() <= max,
        detail: if offset.abs() <= max {
            format!("{offset:+.2}s")
        } else {
            format!(
                "the host's clock is {offset:+.1}s off the installer's (max ±{max:.0}s): etcd and TLS need synchronised clocks; enable NTP (e.g. systemd-timesyncd or chrony)"
            )
        },
    }
}

/// Stop and remove everything Tarmac put on a host. State directories stay unless `purge`.
pub fn uninstall_script(purge: bool) -> String {
    let purge_cmd = if purge {
        "rm -rf /var/lib/tarmac\n"
    } else {
        ""
    };
    format!(
        r#"set -u
if [ -x {HOST_BIN} ]; then {HOST_BIN} uninstall || echo "tarmac-host uninstall reported an error; removing by hand" >&2; fi
systemctl stop tarmac.target tarmac-setup.service tarmac-confirm.service 2>/dev/null || true
systemctl disable tarmac-setup.service tarmac-confirm.service 2>/dev/null || true
for u in /etc/systemd/system/tarmac.target /etc/systemd/system/tarmac-setup.service /etc/systemd/system/tarmac-confirm.service; do rm -f "$u"; done
rm -rf /etc/systemd/system/tarmac.target.wants
systemctl daemon-reload 2>/dev/null || true
rm -rf /opt/tarmac /etc/tarmac {PUSH_DIR}
{purge_cmd}echo "tarmac removed"
"#
    )
}

/// The status probe: active ids, current generation, units of tarmac.target and failed checks,
/// as sections the parser below reads.
pub fn status_script() -> String {
    format!(
        r#"echo "== active"
if [ -x {HOST_BIN} ]; then {HOST_BIN} active 2>/dev/null; fi
echo "== generation"
readlink /opt/tarmac/current 2>/dev/null || true
echo "== units"
for u in $(systemctl list-dependencies --plain --no-legend tarmac.target 2>/dev/null | sed 's/^[^a-zA-Z0-9@_.-]*//' | sort -u); do
  echo "$u $(systemctl is-active "$u" 2>/dev/null)"
done
echo "== checks"
if [ -x {HOST_BIN} ]; then {HOST_BIN} check --json 2>/dev/null || true; fi
echo "== switches"
if [ -f /opt/tarmac/switches.jsonl ]; then tail -n 200 /opt/tarmac/switches.jsonl; else echo none; fi
"#
    )
}

/// What the status probe found on a host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostStatus {
    pub active: Vec<PackageId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<String>,
    pub units: BTreeMap<String, String>,
    /// Names of checks that failed.
    pub failed_checks: Vec<String>,
    /// The switch-log record that made the current generation current (`None`: the log has
    /// none for it, or the host has no log: see `switch_log`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switch: Option<tarmac_types::switch::SwitchRecord>,
    /// The host keeps a switch log (a tarmac-host from before the ledger does not).
    #[serde(default)]
    pub switch_log: bool,
}

/// `script` with the peers install.sh tries before bootstrap_url (the relay tree's).
pub fn with_mirrors(mirrors: &[String], script: &str) -> String {
    if mirrors.is_empty() {
        return script.to_owned();
    }
    format!(
        "export TARMAC_MIRRORS={}\n{script}",
        quote(&mirrors.join(" "))
    )
}

/// Prefix a root script so that every `tarmac-host` switch it makes records the installer's
/// run: `TARMAC_OPERATION` is what tarmac-host writes into its switch log.
pub fn with_operation(run_id: &str, script: &str) -> String {
    format!("export TARMAC_OPERATION={}\n{script}", quote(run_id))
}

pub fn parse_status(out: &str) -> HostStatus {
    let mut st = HostStatus::default();
    let mut section = "";
    let mut checks_json = String::new();
    let mut switches = String::new();
    for line in out.lines() {
        if let Some(s) = line.strip_prefix("== ") {
            section = match s.trim() {
                "active" => "active",
                "generation" => "generation",
                "units" => "units",
                "checks" => "checks",
                "switches" => "switches",
                _ => "",
            };
            continue;
        }
        match section {
            "active" => {
                if let Ok(id) = PackageId::parse(line.trim()) {
                    st.active.push(id);
                }
            }
            "generation" if !line.trim().is_empty() => {
                st.generation = Some(
                    line.trim()
                        .rsplit('/')
                        .next()
                        .unwrap_or(line.trim())
                        .to_owned(),
                );
            }
            "units" => {
                if let Some((u, s)) = line.trim().split_once(' ')
                    && u != "tarmac.target"
                {
                    st.units.insert(u.to_owned(), s.to_owned());
                }
            }
            "checks" => {
                checks_json.push_str(line);
                checks_json.push('\n');
            }
            "switches" if line.trim() != "none" => {
                st.switch_log = true;
                switches.push_str(line);
                switches.push('\n');
            }
            _ => {}
        }
    }
    st.active.sort();
    let records = tarmac_types::switch::parse(&switches);
    st.switch = st
        .generation
        .as_deref()
        .and_then(|g| g.parse::<u64>().ok())
        .and_then(|g| tarmac_types::switch::explaining(&records, tarmac_types::Generation(g)))
        .cloned();
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&checks_json) {
        let items = v
            .get("checks")
            .and_then(|c| c.as_array())
            .or(v.as_array())
            .cloned();
        for c in items.unwrap_or_default() {
            let ok = c
                .get("ok")
                .and_then(|b| b.as_bool())
                .or_else(|| c.get("passed").and_then(|b| b.as_bool()))
                .or_else(|| {
                    c.get("status")
                        .and_then(|s| s.as_str())
                        .map(|s| s == "ok" || s == "pass")
                })
                .unwrap_or(true);
            if !ok {
                let check = c
                    .get("check")
                    .or_else(|| c.get("name"))
                    .and_then(|n| n.as_str());
                let package = c
                    .get("package")
                    .and_then(|p| p.as_str())
                    .and_then(|p| PackageId::parse(p).ok());
                let name = match (package, check) {
                    (Some(p), Some(c)) => format!("{}/{c}", p.name()),
                    (None, Some(c)) => c.to_owned(),
                    _ => "unnamed check".to_owned(),
                };
                st.failed_checks.push(name);
            }
        }
    }
    st
}

/// How a host's state compares with the cluster package list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drift {
    pub missing: Vec<PackageId>,
    pub unexpected: Vec<PackageId>,
    pub inactive_units: Vec<String>,
}

impl Drift {
    pub fn of(expected: &[PackageId], st: &HostStatus) -> Drift {
        Drift {
            missing: expected
                .iter()
                .filter(|i| !st.active.contains(i))
                .cloned()
                .collect(),
            unexpected: st
                .active
                .iter()
                .filter(|i| !expected.contains(i))
                .cloned()
                .collect(),
            inactive_units: st
                .units
                .iter()
                .filter(|(_, s)| s.as_str() != "active")
                .map(|(u, s)| format!("{u} ({s})"))
                .collect(),
        }
    }

    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.inactive_units.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_command_runs_the_uploaded_script() {
        assert_eq!(
            install_command(Role::AgentPublic, true),
            "bash /var/lib/tarmac-push/install.sh --preflight-only agent_public"
        );
        assert_eq!(
            install_command(Role::Master, false),
            "bash /var/lib/tarmac-push/install.sh master"
        );
    }

    #[test]
    fn uninstall_removes_the_secrets_too() {
        // /etc/tarmac holds /etc/tarmac/secrets (tarmac-host uninstall removes it as well).
        assert!(
            uninstall_script(false)
                .contains("\nrm -rf /opt/tarmac /etc/tarmac /var/lib/tarmac-push\n"),
            "{}",
            uninstall_script(false)
        );
    }

    #[test]
    fn push_rewrites_only_the_url_line() {
        let s = "#!/bin/bash\nreadonly BOOTSTRAP_URL='http://x:8080'\nreadonly X=1\n";
        assert_eq!(
            pushed_install_script(s),
            "#!/bin/bash\nreadonly BOOTSTRAP_URL='file:///var/lib/tarmac-push'\nreadonly X=1\n"
        );
    }

    #[test]
    fn parses_install_sh_checks() {
        let out = concat!(
            "Running preflight checks for agent\n",
            "Checking for an existing installation                      \u{1b}[32mPASS\u{1b}[0m\n",
            "Checking free TCP ports (9100)                             \u{1b}[31mFAIL\u{1b}[0m\n",
            "    port 9100 is in use by node_exporter\n",
            "tarmac-check|clock offset|ok|+0.01s\n",
        );
        let checks = parse_checks(out);
        assert_eq!(
            checks,
            vec![
                CheckResult {
                    name: "for an existing installation".into(),
                    passed: true,
                    detail: "".into()
                },
                CheckResult {
                    name: "free TCP ports (9100)".into(),
                    passed: false,
                    detail: "port 9100 is in use by node_exporter".into()
                },
                CheckResult {
                    name: "clock offset".into(),
                    passed: true,
                    detail: "+0.01s".into()
                },
            ]
        );
    }

    #[test]
    fn clock() {
        assert_eq!(
            parse_clock("x\ntarmac-clock|1700000000.25\n"),
            Some(1_700_000_000.25)
        );
        assert!(clock_check(0.3, 5.0).passed);
        let c = clock_check(-42.0, 5.0);
        assert!(!c.passed);
        assert!(
            c.detail.starts_with("the host's clock is -42.0s off"),
            "{}",
            c.detail
        );
    }

    #[test]
    fn status_and_drift() {
        let out = "== active\netcd--abc\nnode-exporter--def\n== generation\ngenerations/3\n== units\netcd.service active\nnode-exporter.service failed\ntarmac.target active\n== checks\n[{\"package\":\"etcd--abc\",\"check\":\"etcd-health\",\"status\":\"failed\"},{\"package\":\"etcd--abc\",\"check\":\"disk\",\"status\":\"ok\"}]\n";
        let st = parse_status(out);
        assert_eq!(st.generation.as_deref(), Some("3"));
        assert_eq!(st.active.len(), 2);
        assert_eq!(st.failed_checks, vec!["etcd/etcd-health".to_owned()]);
        let expected = vec![
            PackageId::parse("etcd--abc").unwrap(),
            PackageId::parse("prometheus--1").unwrap(),
        ];
        let d = Drift::of(&expected, &st);
        assert_eq!(d.missing, vec![PackageId::parse("prometheus--1").unwrap()]);
        assert_eq!(
            d.unexpected,
            vec![PackageId::parse("node-exporter--def").unwrap()]
        );
        assert_eq!(
            d.inactive_units,
            vec!["node-exporter.service (failed)".to_owned()]
        );
        assert!(!d.is_clean());
    }

    #[test]
    fn the_switch_that_explains_the_generation() {
        let out = "== active\netcd--abc\n== generation\ngenerations/2\n== switches\n\
            {\"to\":2,\"from\":1,\"command\":\"activate\",\"operation\":\"upgrade-1-002-switch\",\"at_unix\":5}\n\
            {\"to\":3,\"from\":2,\"command\":\"activate\",\"operation\":\"upgrade-2-001-switch\",\"at_unix\":6}\n\
            {\"to\":4,\"comm\n";
        let st = parse_status(out);
        assert!(st.switch_log);
        let rec = st.switch.expect("a record for generation 2");
        assert_eq!(rec.operation.as_deref(), Some("upgrade-1-002-switch"));
        let none =
            parse_status("== active\netcd--abc\n== generation\ngenerations/2\n== switches\nnone\n");
        assert!(!none.switch_log);
        assert_eq!(none.switch, None);
    }

    #[test]
    fn active_ids() {
        assert_eq!(
            parse_active("b--2\nnoise\na--1\n")
                .iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>(),
            vec!["a--1", "b--2"]
        );
    }
}
