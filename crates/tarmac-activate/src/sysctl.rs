//! Applying the sysctl settings of `etc/tarmac-service-configuration.json`
//! (`{"sysctl": {service: {key: value}}}`), as pkgpanda's bootstrap helper did: write
//! `/proc/sys/<key with . as />`; failures are reported, not fatal.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use tarmac_pkg::pkginfo::SysctlValue;

pub type SysctlConf = BTreeMap<String, BTreeMap<String, SysctlValue>>;

/// Read a service-configuration file.
pub fn read_conf(path: &Path) -> Option<SysctlConf> {
    let v: serde_json::Value = serde_json::from_slice(&fs::read(path).ok()?).ok()?;
    let mut out = SysctlConf::new();
    for (svc, keys) in v.get("sysctl")?.as_object()? {
        let mut m = BTreeMap::new();
        for (k, val) in keys.as_object()? {
            let val = match val {
                serde_json::Value::Number(n) => SysctlValue::Int(n.as_i64()?),
                serde_json::Value::String(s) => SysctlValue::Str(s.clone()),
                _ => return None,
            };
            m.insert(k.clone(), val);
        }
        out.insert(svc.clone(), m);
    }
    Some(out)
}

/// `/proc/sys` path of a key: `vm.swappiness` → `/proc/sys/vm/swappiness`.
pub fn proc_path(key: &str) -> PathBuf {
    Path::new("/proc/sys").join(key.replace('.', "/"))
}

/// Apply the settings of `service` (or of every service), returning each key's outcome.
pub fn apply(conf: &SysctlConf, service: Option<&str>) -> Vec<(String, Result<(), String>)> {
    let mut out = Vec::new();
    for (svc, keys) in conf {
        if service.is_some_and(|s| s != svc) {
            continue;
        }
        for (k, v) in keys {
            let p = proc_path(k);
            let res = fs::write(&p, format!("{v}\n")).map_err(|e| format!("{}: {e}", p.display()));
            out.push((k.clone(), res));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_reading() {
        assert_eq!(
            proc_path("net.core.somaxconn"),
            PathBuf::from("/proc/sys/net/core/somaxconn")
        );
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("c.json");
        fs::write(
            &p,
            r#"{"sysctl": {"etcd": {"vm.swappiness": 1, "kernel.x": "a b"}}}"#,
        )
        .unwrap();
        let c = read_conf(&p).unwrap();
        assert_eq!(c["etcd"]["vm.swappiness"], SysctlValue::Int(1));
        assert_eq!(c["etcd"]["kernel.x"], SysctlValue::Str("a b".into()));
    }
}
