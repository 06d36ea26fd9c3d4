//! What a build needs of the host it runs on, carried in the signed manifest, and the pure
//! check of a host's facts against it.
//!
//! A distribution declares architecture, kernel, systemd and command requirements in
//! `treeinfo.json`; the builder adds, per package, the newest glibc that any of its ELF files
//! still loads from the host (a binary whose libraries are bundled needs none). Preflight runs
//! the bootstrap's own `tarmac-host check-host` on every host, so a host that cannot run the
//! artifact fails preflight with the reason, never deploy.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

/// What the artifact needs of a host. Empty fields ask for nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostRequirements {
    /// `uname -m` values the build runs on (e.g. `x86_64`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub architectures: Vec<String>,
    /// Oldest kernel release (`4.19`), compared numerically by its leading dotted numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_kernel: Option<String>,
    /// Oldest systemd version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_systemd: Option<u32>,
    /// Commands the distribution's units or checks run from the host's `PATH`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<String>,
    /// Packages that load the host's glibc, with the newest version each needs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub glibc: Vec<GlibcNeed>,
}

/// One package's need of the host's C library.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlibcNeed {
    /// The package name.
    pub package: String,
    /// The file (inside the package) that needs the newest version.
    pub file: String,
    /// The newest `GLIBC_x.y` it needs, as `x.y`.
    pub version: String,
}

impl HostRequirements {
    pub fn is_empty(&self) -> bool {
        self == &HostRequirements::default()
    }

    /// The newest glibc any package needs, with the package.
    pub fn max_glibc(&self) -> Option<&GlibcNeed> {
        self.glibc
            .iter()
            .max_by(|a, b| compare_versions(&a.version, &b.version))
    }
}

/// What `tarmac-host check-host` found on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFacts {
    /// `uname -m`.
    pub architecture: String,
    /// `uname -r`.
    pub kernel: String,
    /// `systemctl --version`'s number, `None` without systemd.
    pub systemd: Option<u32>,
    /// `gnu_get_libc_version()`, `None` on a non-glibc host.
    pub glibc: Option<String>,
    /// Of the required commands, those not found on `PATH`.
    pub missing_commands: Vec<String>,
}

/// A requirement the host does not meet; `Display` is the reason preflight prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unmet {
    Architecture {
        found: String,
        supported: Vec<String>,
    },
    Kernel {
        found: String,
        needed: String,
    },
    Systemd {
        found: Option<u32>,
        needed: u32,
    },
    Glibc {
        found: Option<String>,
        need: GlibcNeed,
    },
    Commands {
        missing: Vec<String>,
    },
}

impl fmt::Display for Unmet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unmet::Architecture { found, supported } => write!(
                f,
                "architecture {found} is not one this build runs on ({})",
                supported.join(", ")
            ),
            Unmet::Kernel { found, needed } => {
                write!(f, "kernel {found} < {needed} needed by the distribution")
            }
            Unmet::Systemd {
                found: Some(v),
                needed,
            } => write!(f, "systemd {v} < {needed} needed by the distribution"),
            Unmet::Systemd {
                found: None,
                needed,
            } => write!(
                f,
                "systemd not found (no systemctl): the distribution needs systemd {needed} or newer"
            ),
            Unmet::Glibc {
                found: Some(v),
                need,
            } => write!(
                f,
                "glibc {v} < {} needed by {} ({})",
                need.version, need.package, need.file
            ),
            Unmet::Glibc { found: None, need } => write!(
                f,
                "no glibc on this host (musl or static userland?): {} ({}) needs glibc {}",
                need.package, need.file, need.version
            ),
            Unmet::Commands { missing } => write!(
                f,
                "missing command{}: {} (install-prereqs or the host's package manager provides them)",
                if missing.len() == 1 { "" } else { "s" },
                missing.join(", ")
            ),
        }
    }
}

/// Compare two dotted version strings by their leading numeric components (`5.10.0-28-amd64`
/// reads as 5.10.0); a missing component is 0.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let (a, b) = (numeric_prefix(a), numeric_prefix(b));
    let n = a.len().max(b.len());
    for i in 0..n {
        let (x, y) = (
            a.get(i).copied().unwrap_or(0),
            b.get(i).copied().unwrap_or(0),
        );
        match x.cmp(&y) {
            Ordering::Equal => {}
            o => return o,
        }
    }
    Ordering::Equal
}

fn numeric_prefix(v: &str) -> Vec<u64> {
    let mut out = Vec::new();
    for part in v.split('.') {
        let digits: String = part.chars().take_while(|c| c.is_ascii_digit()).collect();
        if digits.is_empty() {
            break;
        }
        out.push(digits.parse().unwrap_or(u64::MAX));
        if digits.len() != part.len() {
            break;
        }
    }
    out
}

/// Every requirement `facts` does not meet, in a fixed order (architecture, kernel, systemd,
/// glibc by package, commands). Empty means the host can run the artifact.
pub fn check(req: &HostRequirements, facts: &HostFacts) -> Vec<Unmet> {
    let mut out = Vec::new();
    if !req.architectures.is_empty() && !req.architectures.contains(&facts.architecture) {
        out.push(Unmet::Architecture {
            found: facts.architecture.clone(),
            supported: req.architectures.clone(),
        });
    }
    if let Some(k) = &req.min_kernel
        && compare_versions(&facts.kernel, k) == Ordering::Less
    {
        out.push(Unmet::Kernel {
            found: facts.kernel.clone(),
            needed: k.clone(),
        });
    }
    if let Some(s) = req.min_systemd
        && facts.systemd.is_none_or(|v| v < s)
    {
        out.push(Unmet::Systemd {
            found: facts.systemd,
            needed: s,
        });
    }
    let mut needs = req.glibc.clone();
    needs.sort();
    for need in needs {
        let ok = facts
            .glibc
            .as_deref()
            .is_some_and(|v| compare_versions(v, &need.version) != Ordering::Less);
        if !ok {
            out.push(Unmet::Glibc {
                found: facts.glibc.clone(),
                need,
            });
        }
    }
    if !facts.missing_commands.is_empty() {
        out.push(Unmet::Commands {
            missing: facts.missing_commands.clone(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> HostRequirements {
        HostRequirements {
            architectures: vec!["x86_64".into()],
            min_kernel: Some("4.19".into()),
            min_systemd: Some(232),
            commands: vec!["useradd".into(), "ip".into()],
            glibc: vec![
                GlibcNeed {
                    package: "prometheus".into(),
                    file: "bin/prometheus".into(),
                    version: "2.34".into(),
                },
                GlibcNeed {
                    package: "etcd".into(),
                    file: "bin/etcd".into(),
                    version: "2.17".into(),
                },
            ],
        }
    }

    fn bullseye() -> HostFacts {
        HostFacts {
            architecture: "x86_64".into(),
            kernel: "5.10.0-28-amd64".into(),
            systemd: Some(247),
            glibc: Some("2.31".into()),
            missing_commands: vec![],
        }
    }

    #[test]
    fn versions_compare_numerically() {
        assert_eq!(
            compare_versions("5.10.0-28-amd64", "4.19"),
            Ordering::Greater
        );
        assert_eq!(compare_versions("2.31", "2.34"), Ordering::Less);
        assert_eq!(compare_versions("2.4", "2.34"), Ordering::Less);
        assert_eq!(compare_versions("2.17", "2.17.0"), Ordering::Equal);
        assert_eq!(
            compare_versions("3.10.0-1160.el7.x86_64", "3.10"),
            Ordering::Equal
        );
    }

    #[test]
    fn an_old_glibc_host_is_told_which_package_needs_more() {
        let unmet = check(&req(), &bullseye());
        let text: Vec<String> = unmet.iter().map(|u| u.to_string()).collect();
        assert_eq!(
            text,
            vec!["glibc 2.31 < 2.34 needed by prometheus (bin/prometheus)"]
        );
    }

    #[test]
    fn every_unmet_requirement_is_listed() {
        let facts = HostFacts {
            architecture: "aarch64".into(),
            kernel: "3.10.0-1160.el7.x86_64".into(),
            systemd: None,
            glibc: None,
            missing_commands: vec!["useradd".into(), "ip".into()],
        };
        let text: Vec<String> = check(&req(), &facts)
            .iter()
            .map(|u| u.to_string())
            .collect();
        assert_eq!(
            text,
            vec![
                "architecture aarch64 is not one this build runs on (x86_64)",
                "kernel 3.10.0-1160.el7.x86_64 < 4.19 needed by the distribution",
                "systemd not found (no systemctl): the distribution needs systemd 232 or newer",
                "no glibc on this host (musl or static userland?): etcd (bin/etcd) needs glibc 2.17",
                "no glibc on this host (musl or static userland?): prometheus (bin/prometheus) needs glibc 2.34",
                "missing commands: useradd, ip (install-prereqs or the host's package manager provides them)",
            ]
        );
    }

    #[test]
    fn a_new_host_meets_everything_and_empty_asks_nothing() {
        let mut f = bullseye();
        f.glibc = Some("2.36".into());
        assert!(check(&req(), &f).is_empty());
        assert!(check(&HostRequirements::default(), &f).is_empty());
        assert_eq!(req().max_glibc().unwrap().package, "prometheus");
    }

    #[test]
    fn serialized_form_skips_empty_fields() {
        let r = HostRequirements {
            min_systemd: Some(232),
            ..Default::default()
        };
        assert_eq!(serde_json::to_string(&r).unwrap(), r#"{"min_systemd":232}"#);
        assert!(serde_json::from_str::<HostRequirements>(r#"{"min_systemdd":1}"#).is_err());
    }
}
