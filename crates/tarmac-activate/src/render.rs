//! The files a generation contains, rendered as exact strings. Everything is sorted (by
//! package name, then key), so the same package set always gives the same bytes.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use tarmac_pkg::pkginfo::SysctlValue;
use tarmac_types::{PackageId, Role};

/// Header line of both environment files.
pub const ENV_HEADER: &str = "# Tarmac provided environment variables";

/// The PATH directories after `<root>/bin` (systemd's default PATH).
pub const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One package's environment section.
pub struct EnvSection<'a> {
    pub id: &'a PackageId,
    pub vars: &'a BTreeMap<String, String>,
}

/// `environment`: systemd `EnvironmentFile=` format. Sections must be sorted by name.
pub fn environment(root: &Path, sections: &[EnvSection<'_>]) -> String {
    let r = root.display();
    let mut s = format!("{ENV_HEADER}\nLD_LIBRARY_PATH={r}/lib\nPATH={r}/bin:{SYSTEM_PATH}\n\n");
    for sec in sections {
        s.push_str(&format!("# package: {}\n", sec.id));
        for (k, v) in sec.vars {
            s.push_str(&format!("{k}={}\n", systemd_quote(v)));
        }
        s.push('\n');
    }
    s
}

/// `environment.export`: for `source` in shells.
pub fn environment_export(root: &Path, sections: &[EnvSection<'_>]) -> String {
    let r = root.display();
    let mut s =
        format!("{ENV_HEADER}\nexport LD_LIBRARY_PATH={r}/lib\nexport PATH=\"{r}/bin:$PATH\"\n\n");
    for sec in sections {
        s.push_str(&format!("# package: {}\n", sec.id));
        for (k, v) in sec.vars {
            s.push_str(&format!("export {k}={}\n", tarmac_types::shell::quote(v)));
        }
        s.push('\n');
    }
    s
}

/// Quote for systemd's EnvironmentFile parser when the raw value would be misread.
pub fn systemd_quote(v: &str) -> String {
    let needs = v.contains(['"', '\'', '\\'])
        || v.starts_with(char::is_whitespace)
        || v.ends_with(char::is_whitespace);
    if needs {
        format!("\"{}\"", v.replace('\\', r"\\").replace('"', "\\\""))
    } else {
        v.to_owned()
    }
}

/// `active.json`: the package set and roles of a generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ActiveJson {
    pub packages: Vec<PackageId>,
    pub roles: Vec<Role>,
    /// Unit name → providing package id.
    pub units: BTreeMap<String, PackageId>,
}

pub fn pretty(v: &impl Serialize) -> String {
    let mut s = serde_json::to_string_pretty(v).expect("serializable");
    s.push('\n');
    s
}

/// `etc/tarmac-service-configuration.json`: `{"sysctl": {service: {key: value}}}`.
pub fn service_configuration(sysctl: &BTreeMap<String, BTreeMap<String, SysctlValue>>) -> String {
    #[derive(Serialize)]
    struct Conf<'a> {
        sysctl: &'a BTreeMap<String, BTreeMap<String, SysctlValue>>,
    }
    pretty(&Conf { sysctl })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_files_exact() {
        let a = PackageId::parse("alpha--1").unwrap();
        let b = PackageId::parse("beta--2").unwrap();
        let av: BTreeMap<String, String> = [
            ("Z".to_owned(), "last".to_owned()),
            ("A_URL".to_owned(), "http://x:1/p?q=1".to_owned()),
        ]
        .into();
        let bv: BTreeMap<String, String> = [
            ("MSG".to_owned(), "it's here".to_owned()),
            ("Q".to_owned(), "say \"hi\"".to_owned()),
            ("EMPTY".to_owned(), String::new()),
        ]
        .into();
        let none = BTreeMap::new();
        let c = PackageId::parse("gamma--3").unwrap();
        let secs = [
            EnvSection { id: &a, vars: &av },
            EnvSection { id: &b, vars: &bv },
            EnvSection {
                id: &c,
                vars: &none,
            },
        ];
        assert_eq!(
            environment(Path::new("/opt/tarmac"), &secs),
            "# Tarmac provided environment variables\n\
             LD_LIBRARY_PATH=/opt/tarmac/lib\n\
             PATH=/opt/tarmac/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n\
             \n\
             # package: alpha--1\n\
             A_URL=http://x:1/p?q=1\n\
             Z=last\n\
             \n\
             # package: beta--2\n\
             EMPTY=\n\
             MSG=\"it's here\"\n\
             Q=\"say \\\"hi\\\"\"\n\
             \n\
             # package: gamma--3\n\
             \n"
        );
        assert_eq!(
            environment_export(Path::new("/opt/tarmac"), &secs),
            "# Tarmac provided environment variables\n\
             export LD_LIBRARY_PATH=/opt/tarmac/lib\n\
             export PATH=\"/opt/tarmac/bin:$PATH\"\n\
             \n\
             # package: alpha--1\n\
             export A_URL='http://x:1/p?q=1'\n\
             export Z=last\n\
             \n\
             # package: beta--2\n\
             export EMPTY=''\n\
             export MSG='it'\\''s here'\n\
             export Q='say \"hi\"'\n\
             \n\
             # package: gamma--3\n\
             \n"
        );
    }

    #[test]
    fn service_configuration_exact() {
        let mut m = BTreeMap::new();
        m.insert(
            "etcd".to_owned(),
            [("vm.swappiness".to_owned(), SysctlValue::Int(1))]
                .into_iter()
                .collect(),
        );
        assert_eq!(
            service_configuration(&m),
            "{\n  \"sysctl\": {\n    \"etcd\": {\n      \"vm.swappiness\": 1\n    }\n  }\n}\n"
        );
        assert_eq!(
            service_configuration(&BTreeMap::new()),
            "{\n  \"sysctl\": {}\n}\n"
        );
    }
}
