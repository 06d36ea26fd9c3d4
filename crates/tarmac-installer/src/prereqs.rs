//! `install-prereqs`: what a minimal host needs before install.sh can run, per package-manager
//! family, and the pure command builders that install it (apt, dnf, yum, zypper).

use std::fmt;

use tarmac_types::shell::quote;

/// A host's package manager, in the order the install-prereqs script looks for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PackageManager {
    /// Debian, Ubuntu (`apt-get`).
    Apt,
    /// RHEL 8+, Rocky, Alma, Fedora, Amazon Linux 2023 (`dnf`).
    Dnf,
    /// RHEL/CentOS 7, Amazon Linux 2 (`yum`).
    Yum,
    /// SUSE Linux Enterprise, openSUSE (`zypper`).
    Zypper,
}

impl PackageManager {
    /// Every manager, in detection order (dnf before yum: on RHEL 8+ `yum` is dnf's alias).
    pub const ALL: [PackageManager; 4] = [
        PackageManager::Apt,
        PackageManager::Dnf,
        PackageManager::Yum,
        PackageManager::Zypper,
    ];

    /// The command whose presence selects this manager.
    pub fn command(self) -> &'static str {
        match self {
            PackageManager::Apt => "apt-get",
            PackageManager::Dnf => "dnf",
            PackageManager::Yum => "yum",
            PackageManager::Zypper => "zypper",
        }
    }

    /// The family name used in messages and `--output json`.
    pub fn name(self) -> &'static str {
        match self {
            PackageManager::Apt => "apt",
            PackageManager::Dnf => "dnf",
            PackageManager::Yum => "yum",
            PackageManager::Zypper => "zypper",
        }
    }

    /// The non-interactive shell command that installs `packages` (already the names of this
    /// family); `None` when there is nothing to install. Every name is shell-quoted.
    pub fn install_command(self, packages: &[String]) -> Option<String> {
        if packages.is_empty() {
            return None;
        }
        let pkgs = packages
            .iter()
            .map(|p| quote(p))
            .collect::<Vec<_>>()
            .join(" ");
        Some(match self {
            PackageManager::Apt => format!(
                "DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends {pkgs}"
            ),
            PackageManager::Dnf => {
                format!("dnf install -y -q --setopt=install_weak_deps=False {pkgs}")
            }
            PackageManager::Yum => format!("yum install -y -q {pkgs}"),
            // Never --gpg-auto-import-keys: a repository key the host does not already trust
            // stays untrusted.
            PackageManager::Zypper => {
                format!("zypper --non-interactive --quiet install --no-recommends {pkgs}")
            }
        })
    }
}

impl fmt::Display for PackageManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The packages install-prereqs installs, per family (the names differ between families).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Prereqs {
    /// Debian/Ubuntu package names.
    pub apt: Vec<String>,
    /// RHEL-family names (dnf and yum).
    pub rpm: Vec<String>,
    /// SUSE names.
    pub zypper: Vec<String>,
}

impl Prereqs {
    /// What install.sh and the services need on a minimal host: curl + CA certificates for
    /// downloads, ip for ip-detect, ps/pkill, tar, and useradd for service users.
    pub fn standard() -> Prereqs {
        let own = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect();
        Prereqs {
            apt: own(&[
                "curl",
                "ca-certificates",
                "iproute2",
                "procps",
                "tar",
                "passwd",
            ]),
            rpm: own(&[
                "curl",
                "ca-certificates",
                "iproute",
                "procps-ng",
                "tar",
                "shadow-utils",
            ]),
            zypper: own(&[
                "curl",
                "ca-certificates",
                "iproute2",
                "procps",
                "tar",
                "shadow",
            ]),
        }
    }

    /// Nothing to install (every family).
    pub fn none() -> Prereqs {
        Prereqs {
            apt: Vec::new(),
            rpm: Vec::new(),
            zypper: Vec::new(),
        }
    }

    /// The names for one manager.
    pub fn for_manager(&self, pm: PackageManager) -> &[String] {
        match pm {
            PackageManager::Apt => &self.apt,
            PackageManager::Dnf | PackageManager::Yum => &self.rpm,
            PackageManager::Zypper => &self.zypper,
        }
    }

    /// The script install-prereqs runs on every host (as root): it picks the first manager
    /// present, prints `package manager: NAME`, and installs that family's list. A host with
    /// none of them fails with exit code 3 and says which commands were looked for.
    pub fn script(&self) -> String {
        let mut s = String::from("set -e\n");
        for (i, pm) in PackageManager::ALL.iter().enumerate() {
            let kw = if i == 0 { "if" } else { "elif" };
            s.push_str(&format!(
                "{kw} command -v {} >/dev/null 2>&1; then\n  echo \"package manager: {}\"\n",
                pm.command(),
                pm.name()
            ));
            match pm.install_command(self.for_manager(*pm)) {
                Some(cmd) => s.push_str(&format!("  {cmd}\n")),
                None => s.push_str("  :\n"),
            }
        }
        let looked: Vec<&str> = PackageManager::ALL.iter().map(|p| p.command()).collect();
        s.push_str(&format!(
            "else\n  echo \"no supported package manager on this host (looked for {}): install {} by hand, or use an image that has them\" >&2\n  exit 3\nfi\necho \"prerequisites installed\"\n",
            looked.join(", "),
            self.apt.join(", ")
        ));
        s
    }
}

impl Default for Prereqs {
    fn default() -> Self {
        Prereqs::standard()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(l: &[&str]) -> Vec<String> {
        l.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn install_commands_per_family() {
        let p = v(&["curl", "iproute2"]);
        assert_eq!(
            PackageManager::Apt.install_command(&p).unwrap(),
            "DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends curl iproute2"
        );
        assert_eq!(
            PackageManager::Dnf.install_command(&p).unwrap(),
            "dnf install -y -q --setopt=install_weak_deps=False curl iproute2"
        );
        assert_eq!(
            PackageManager::Yum.install_command(&p).unwrap(),
            "yum install -y -q curl iproute2"
        );
        assert_eq!(
            PackageManager::Zypper.install_command(&p).unwrap(),
            "zypper --non-interactive --quiet install --no-recommends curl iproute2"
        );
        assert_eq!(PackageManager::Zypper.install_command(&[]), None);
    }

    #[test]
    fn names_are_quoted() {
        assert_eq!(
            PackageManager::Yum
                .install_command(&v(&["a b", "x;rm -rf /"]))
                .unwrap(),
            "yum install -y -q 'a b' 'x;rm -rf /'"
        );
    }

    #[test]
    fn the_script_tries_each_manager_in_order() {
        let p = Prereqs {
            apt: v(&["curl"]),
            rpm: v(&["curl", "iproute"]),
            zypper: Vec::new(),
        };
        assert_eq!(
            p.script(),
            r#"set -e
if command -v apt-get >/dev/null 2>&1; then
  echo "package manager: apt"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends curl
elif command -v dnf >/dev/null 2>&1; then
  echo "package manager: dnf"
  dnf install -y -q --setopt=install_weak_deps=False curl iproute
elif command -v yum >/dev/null 2>&1; then
  echo "package manager: yum"
  yum install -y -q curl iproute
elif command -v zypper >/dev/null 2>&1; then
  echo "package manager: zypper"
  :
else
  echo "no supported package manager on this host (looked for apt-get, dnf, yum, zypper): install curl by hand, or use an image that has them" >&2
  exit 3
fi
echo "prerequisites installed"
"#
        );
    }

    #[test]
    fn the_script_runs_in_bash() {
        // Syntax check with the real shell: `bash -n`.
        let script = Prereqs::standard().script();
        let out = std::process::Command::new("bash")
            .arg("-n")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
