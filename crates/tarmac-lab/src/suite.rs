//! The Debian releases a lab host can run ([`Suite`]) and which host runs which
//! ([`Suites`], the `--suites` value). Pure: no I/O but reading `TARMAC_LAB_SUITE` and
//! the machine's `/etc/os-release` in [`Suite::machine_default`].

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tarmac_types::Role;

use crate::LabError;
use crate::plan::LabHost;

/// A Debian release the lab can bootstrap and boot with `systemd-nspawn -b`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Suite {
    /// Debian 11 (systemd 247).
    Bullseye,
    /// Debian 12 (systemd 252).
    #[default]
    Bookworm,
    /// Debian 13 (systemd 257).
    Trixie,
}

/// `bullseye, bookworm and trixie`, for messages.
pub(crate) const SUPPORTED: &str = "bullseye (11), bookworm (12) and trixie (13)";

impl Suite {
    /// Every supported suite, oldest first.
    pub const ALL: [Suite; 3] = [Suite::Bullseye, Suite::Bookworm, Suite::Trixie];

    /// The codename: `bullseye`, `bookworm`, `trixie`.
    pub fn as_str(self) -> &'static str {
        match self {
            Suite::Bullseye => "bullseye",
            Suite::Bookworm => "bookworm",
            Suite::Trixie => "trixie",
        }
    }

    /// The Debian version number (`VERSION_ID`).
    pub fn version(self) -> u32 {
        match self {
            Suite::Bullseye => 11,
            Suite::Bookworm => 12,
            Suite::Trixie => 13,
        }
    }

    /// Parse a codename; `origin` says where it came from in the error (`--suites`,
    /// `TARMAC_LAB_SUITE`).
    pub fn parse(name: &str, origin: &'static str) -> Result<Suite, LabError> {
        Suite::ALL
            .into_iter()
            .find(|s| s.as_str() == name)
            .ok_or_else(|| LabError::UnknownSuite {
                name: name.to_owned(),
                origin,
            })
    }

    /// The suite of hosts nobody chose one for: `TARMAC_LAB_SUITE` if set, else the
    /// machine's own release when the lab supports it, else bookworm.
    pub fn machine_default() -> Result<Suite, LabError> {
        let env = std::env::var("TARMAC_LAB_SUITE").ok();
        let os_release = crate::sys::read_opt(Path::new("/etc/os-release"));
        Suite::default_from(env.as_deref(), os_release.as_deref())
    }

    /// [`Suite::machine_default`] from the variable's value and the machine's os-release.
    pub fn default_from(env: Option<&str>, os_release: Option<&str>) -> Result<Suite, LabError> {
        if let Some(v) = env.map(str::trim).filter(|v| !v.is_empty()) {
            return Suite::parse(v, "TARMAC_LAB_SUITE");
        }
        Ok(os_release
            .and_then(crate::image::os_release_codename)
            .and_then(|c| Suite::parse(&c, "os-release").ok())
            .unwrap_or_default())
    }
}

impl fmt::Display for Suite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Suite {
    type Err = LabError;
    fn from_str(s: &str) -> Result<Suite, LabError> {
        Suite::parse(s, "--suites")
    }
}

/// Which suite each host of a lab runs: the `--suites` value.
///
/// `bullseye,bookworm,trixie` makes the hosts take the suites in turn, in lab order
/// (master-1 bullseye, master-2 bookworm, master-3 trixie, agent-1 bullseye, …).
/// `master=bookworm,agent=bullseye+trixie` gives a role its own list (its hosts take
/// those in turn); both forms mix (`bookworm,agent=trixie`: agents trixie, every other
/// host bookworm). Hosts nothing names run the default suite ([`Suite::machine_default`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Suites {
    /// Hosts of roles without a list of their own take these in turn. Empty: the default.
    pub cycle: Vec<Suite>,
    /// A role's own list, at most one per role.
    pub per_role: Vec<(Role, Vec<Suite>)>,
}

/// The role names `--suites` takes, as in the host names.
fn role_name(role: Role) -> &'static str {
    match role {
        Role::Master => "master",
        Role::Agent => "agent",
        Role::AgentPublic => "public-agent",
    }
}

impl Suites {
    /// Every host on `suite`.
    pub fn single(suite: Suite) -> Suites {
        Suites {
            cycle: vec![suite],
            per_role: Vec::new(),
        }
    }

    /// Nothing chosen: every host runs the default suite.
    pub fn is_empty(&self) -> bool {
        self.cycle.is_empty() && self.per_role.is_empty()
    }

    /// The suite of every host, in the order of `hosts`.
    pub fn assign(&self, hosts: &[LabHost], default: Suite) -> Vec<Suite> {
        let mut seen_cycle = 0usize;
        let mut seen_role: Vec<(Role, usize)> = Vec::new();
        hosts
            .iter()
            .map(|h| {
                let (list, pos) = match self.per_role.iter().find(|(r, _)| *r == h.role) {
                    Some((_, list)) => {
                        let n = match seen_role.iter_mut().find(|(r, _)| *r == h.role) {
                            Some((_, n)) => n,
                            None => {
                                seen_role.push((h.role, 0));
                                &mut seen_role.last_mut().expect("just pushed").1
                            }
                        };
                        *n += 1;
                        (list.as_slice(), *n - 1)
                    }
                    None => {
                        seen_cycle += 1;
                        (self.cycle.as_slice(), seen_cycle - 1)
                    }
                };
                if list.is_empty() {
                    default
                } else {
                    list[pos % list.len()]
                }
            })
            .collect()
    }
}

fn bad(spec: &str, reason: String) -> LabError {
    LabError::BadSuites {
        spec: spec.to_owned(),
        reason,
    }
}

fn parse_list(spec: &str, list: &str, sep: char) -> Result<Vec<Suite>, LabError> {
    list.split(sep)
        .map(|name| {
            let name = name.trim();
            if name.is_empty() {
                Err(bad(spec, "it has an empty suite name".into()))
            } else {
                name.parse()
            }
        })
        .collect()
}

impl std::str::FromStr for Suites {
    type Err = LabError;
    fn from_str(spec: &str) -> Result<Suites, LabError> {
        let mut out = Suites::default();
        if spec.trim().is_empty() {
            return Err(bad(spec, "it names no suite".into()));
        }
        for item in spec.split(',') {
            let item = item.trim();
            match item.split_once('=') {
                None if item.contains('+') => {
                    out.cycle.extend(parse_list(spec, item, '+')?);
                }
                None if item.is_empty() => {
                    return Err(bad(spec, "it has an empty suite name".into()));
                }
                None => out.cycle.push(item.parse()?),
                Some((role, list)) => {
                    let role = role.trim();
                    let Some(r) = Role::ALL.into_iter().find(|r| role_name(*r) == role) else {
                        return Err(bad(
                            spec,
                            format!("`{role}` is not a role (use master, agent or public-agent)"),
                        ));
                    };
                    if out.per_role.iter().any(|(x, _)| *x == r) {
                        return Err(bad(spec, format!("role `{role}` is given twice")));
                    }
                    out.per_role.push((r, parse_list(spec, list, '+')?));
                }
            }
        }
        Ok(out)
    }
}

impl fmt::Display for Suites {
    /// The canonical `--suites` form (`bullseye,bookworm,agent=trixie+bullseye`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = self.cycle.iter().map(|s| s.to_string()).collect();
        for (role, list) in &self.per_role {
            let names: Vec<&str> = list.iter().map(|s| s.as_str()).collect();
            parts.push(format!("{}={}", role_name(*role), names.join("+")));
        }
        f.write_str(&parts.join(","))
    }
}

/// `PRETTY_NAME` from an os-release text, e.g. `Debian GNU/Linux 11 (bullseye)`.
pub fn os_release_pretty_name(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::plan_hosts;
    use tarmac_types::error_report::text_with_hint;

    fn names(hosts: &[LabHost], suites: &[Suite]) -> Vec<String> {
        hosts
            .iter()
            .zip(suites)
            .map(|(h, s)| format!("{} {s}", h.name))
            .collect()
    }

    #[test]
    fn suites_parse_and_print() {
        assert_eq!("trixie".parse::<Suite>().unwrap(), Suite::Trixie);
        assert_eq!(Suite::Bullseye.to_string(), "bullseye");
        assert_eq!(
            Suite::ALL.map(Suite::version),
            [11, 12, 13],
            "versions oldest first"
        );
        assert_eq!(
            serde_json::to_string(&Suite::Bookworm).unwrap(),
            r#""bookworm""#
        );
    }

    #[test]
    fn unknown_suite_lists_the_supported_ones() {
        assert_eq!(
            text_with_hint(&"buster".parse::<Suite>().unwrap_err()),
            "unknown Debian suite `buster` in --suites: the lab supports bullseye (11), bookworm (12) and trixie (13)\nhint: e.g. `--suites bullseye,bookworm,trixie` (hosts take them in turn) or `--suites master=bookworm,agent=bullseye+trixie`"
        );
        assert_eq!(
            text_with_hint(&Suite::default_from(Some("sid"), None).unwrap_err()),
            "unknown Debian suite `sid` in TARMAC_LAB_SUITE: the lab supports bullseye (11), bookworm (12) and trixie (13)\nhint: e.g. `--suites bullseye,bookworm,trixie` (hosts take them in turn) or `--suites master=bookworm,agent=bullseye+trixie`"
        );
    }

    #[test]
    fn default_suite_is_env_then_machine_then_bookworm() {
        let trixie_machine =
            "PRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\nVERSION_CODENAME=trixie\n";
        let ubuntu = "NAME=Ubuntu\nVERSION_CODENAME=noble\n";
        assert_eq!(
            Suite::default_from(Some("bullseye"), Some(trixie_machine)).unwrap(),
            Suite::Bullseye
        );
        assert_eq!(
            Suite::default_from(Some(""), Some(trixie_machine)).unwrap(),
            Suite::Trixie
        );
        assert_eq!(
            Suite::default_from(None, Some(ubuntu)).unwrap(),
            Suite::Bookworm
        );
        assert_eq!(Suite::default_from(None, None).unwrap(), Suite::Bookworm);
    }

    #[test]
    fn hosts_cycle_over_the_suites_in_lab_order() {
        let hosts = plan_hosts(9, 3, 2, 1);
        let s: Suites = "bullseye,bookworm,trixie".parse().unwrap();
        assert_eq!(s.to_string(), "bullseye,bookworm,trixie");
        assert_eq!(
            names(&hosts, &s.assign(&hosts, Suite::Bookworm)),
            [
                "master-1 bullseye",
                "master-2 bookworm",
                "master-3 trixie",
                "agent-1 bullseye",
                "agent-2 bookworm",
                "public-agent-1 trixie",
            ]
        );
        // Nothing chosen: the default everywhere.
        assert_eq!(
            Suites::default().assign(&hosts[..2], Suite::Trixie),
            [Suite::Trixie, Suite::Trixie]
        );
        assert!(Suites::default().is_empty());
        assert_eq!(
            Suites::single(Suite::Bullseye).assign(&hosts[..2], Suite::Trixie),
            [Suite::Bullseye, Suite::Bullseye]
        );
    }

    #[test]
    fn roles_can_have_their_own_suites() {
        let hosts = plan_hosts(9, 2, 3, 1);
        let s: Suites = "master=bookworm, agent=bullseye+trixie".parse().unwrap();
        assert_eq!(s.to_string(), "master=bookworm,agent=bullseye+trixie");
        assert_eq!(
            names(&hosts, &s.assign(&hosts, Suite::Bookworm)),
            [
                "master-1 bookworm",
                "master-2 bookworm",
                "agent-1 bullseye",
                "agent-2 trixie",
                "agent-3 bullseye",
                "public-agent-1 bookworm",
            ]
        );
        // Mixed: roles without a list cycle over the plain suites.
        let s: Suites = "trixie+bullseye,public-agent=bookworm".parse().unwrap();
        assert_eq!(s.to_string(), "trixie,bullseye,public-agent=bookworm");
        assert_eq!(
            names(&hosts, &s.assign(&hosts, Suite::Bookworm)),
            [
                "master-1 trixie",
                "master-2 bullseye",
                "agent-1 trixie",
                "agent-2 bullseye",
                "agent-3 trixie",
                "public-agent-1 bookworm",
            ]
        );
    }

    #[test]
    fn bad_suites_are_explained() {
        let hint = "\nhint: give suites comma-separated (`bullseye,bookworm,trixie`: hosts take them in turn) or per role (`master=bookworm,agent=bullseye+trixie`; roles master, agent, public-agent)";
        for (spec, msg) in [
            ("", "invalid --suites ``: it names no suite"),
            (
                "bullseye,,trixie",
                "invalid --suites `bullseye,,trixie`: it has an empty suite name",
            ),
            (
                "worker=trixie",
                "invalid --suites `worker=trixie`: `worker` is not a role (use master, agent or public-agent)",
            ),
            (
                "agent=trixie,agent=bullseye",
                "invalid --suites `agent=trixie,agent=bullseye`: role `agent` is given twice",
            ),
            (
                "agent=",
                "invalid --suites `agent=`: it has an empty suite name",
            ),
        ] {
            assert_eq!(
                text_with_hint(&spec.parse::<Suites>().unwrap_err()),
                format!("{msg}{hint}"),
                "{spec}"
            );
        }
        assert!(matches!(
            "master=jessie".parse::<Suites>(),
            Err(LabError::UnknownSuite { name, .. }) if name == "jessie"
        ));
    }

    #[test]
    fn pretty_name_from_os_release() {
        assert_eq!(
            os_release_pretty_name(
                "PRETTY_NAME=\"Debian GNU/Linux 11 (bullseye)\"\nNAME=\"Debian GNU/Linux\"\n"
            )
            .as_deref(),
            Some("Debian GNU/Linux 11 (bullseye)")
        );
        assert_eq!(os_release_pretty_name("NAME=x\n"), None);
    }
}
