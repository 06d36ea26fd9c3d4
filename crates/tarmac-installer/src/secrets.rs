//! Delivering secret files over SSH: genconf keeps them out of the config packages (which
//! are served over HTTP) in `genconf/secrets/`; deploy and upgrade upload to each host only
//! those of its role, to `/etc/tarmac/secrets/<package id>/<path>` (root, 0600, directories
//! 0700), before `tarmac-host` activates the package (which refuses it without them).

use std::collections::BTreeMap;
use std::path::Path;

use tarmac_pkg::secrets::{self, HOST_SECRETS_DIR, KEY_FILE, MANIFEST_FILE, SecretsManifest};
use tarmac_ssh::{Exec, HostSession, StepError, Upload, UploadSource};
use tarmac_types::shell::quote;
use tarmac_types::{Digest, PackageId, Role};

use crate::stages::InstallerError;

/// One file to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretUpload {
    /// Path below the package's secrets directory (`.key`, `etc_master/…`).
    pub path: String,
    pub bytes: Vec<u8>,
    pub sha256: Digest,
}

/// The secret files of the cluster's config packages, read and checked from
/// `genconf/secrets/`.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    /// Package id → (role of the file, or `None` for every host; the file). The key comes
    /// first, then the files in manifest order.
    files: BTreeMap<PackageId, Vec<(Option<Role>, SecretUpload)>>,
}

fn bad(dir: &Path, message: String) -> InstallerError {
    InstallerError::Secrets {
        dir: dir.to_owned(),
        message,
    }
}

impl Secrets {
    /// Read `<genconf>/secrets/` for the config packages in `packages` (ids whose version
    /// starts with `setup_`, as genconf names them). Every such package must be in the
    /// manifest, and every file must have the sha256 it lists.
    pub fn read(genconf_dir: &Path, packages: &[PackageId]) -> Result<Secrets, InstallerError> {
        let dir = genconf_dir.join("secrets");
        let mpath = dir.join(MANIFEST_FILE);
        let bytes = std::fs::read(&mpath)
            .map_err(|e| bad(&dir, format!("cannot read {}: {e}", mpath.display())))?;
        let manifest = SecretsManifest::parse(&bytes)
            .map_err(|e| bad(&dir, format!("{}: {e}", mpath.display())))?;
        let mut out = Secrets::default();
        for id in packages {
            if !id.version().starts_with("setup_") {
                continue;
            }
            let Some(p) = manifest.packages.get(&id.to_string()) else {
                return Err(bad(
                    &dir,
                    format!(
                        "{} does not list the config package {id} of genconf/serve (the two are from different genconf runs)",
                        mpath.display()
                    ),
                ));
            };
            if p.files.is_empty() {
                continue;
            }
            let read = |rel: &str| -> Result<Vec<u8>, InstallerError> {
                let path = dir.join(id.to_string()).join(rel);
                std::fs::read(&path)
                    .map_err(|e| bad(&dir, format!("cannot read {}: {e}", path.display())))
            };
            let key = read(KEY_FILE)?;
            secrets::parse_key(&String::from_utf8_lossy(&key))
                .map_err(|e| bad(&dir, format!("{}/{id}/{KEY_FILE}: {e}", dir.display())))?;
            let mut files = vec![(
                None,
                SecretUpload {
                    path: KEY_FILE.to_owned(),
                    sha256: Digest::of(&key),
                    bytes: key,
                },
            )];
            for f in &p.files {
                let bytes = read(&f.path)?;
                if Digest::of(&bytes) != f.sha256 {
                    return Err(bad(
                        &dir,
                        format!(
                            "{}/{id}/{} does not have the sha256 {} lists",
                            dir.display(),
                            f.path,
                            mpath.display()
                        ),
                    ));
                }
                files.push((
                    f.role,
                    SecretUpload {
                        path: f.path.clone(),
                        sha256: f.sha256,
                        bytes,
                    },
                ));
            }
            out.files.insert(id.clone(), files);
        }
        Ok(out)
    }

    /// What a host of `role` gets, per package: its files of that role (or of every role)
    /// and, when there is any, the package's key first.
    pub fn for_role(&self, role: Role) -> Vec<(PackageId, Vec<SecretUpload>)> {
        self.files
            .iter()
            .filter_map(|(id, files)| {
                let mine: Vec<SecretUpload> = files
                    .iter()
                    .filter(|(r, f)| f.path != KEY_FILE && r.is_none_or(|r| r == role))
                    .map(|(_, f)| f.clone())
                    .collect();
                if mine.is_empty() {
                    return None;
                }
                let key = files.iter().find(|(_, f)| f.path == KEY_FILE)?.1.clone();
                Some((id.clone(), std::iter::once(key).chain(mine).collect()))
            })
            .collect()
    }

    /// The secret files' sha256 by package and path (for `upgrade --plan`).
    pub fn digests(&self) -> impl Iterator<Item = (&PackageId, &str, Digest)> {
        self.files.iter().flat_map(|(id, files)| {
            files
                .iter()
                .filter(|(_, f)| f.path != KEY_FILE)
                .map(move |(_, f)| (id, f.path.as_str(), f.sha256))
        })
    }
}

/// Where a secret file of package `id` goes on a host.
pub fn host_path(id: &PackageId, path: &str) -> String {
    format!("{HOST_SECRETS_DIR}/{id}/{path}")
}

/// Create the package's secrets directories (0700: the umask; existing ones keep their
/// mode, which activation makes 0711) and print `tarmac-secret-need|<path>` for each file
/// that is missing or has other bytes than `files` says. `/etc/tarmac` itself, made here
/// before install.sh runs, is 0755 like install.sh makes it (the services must traverse it).
pub fn prepare_script(id: &PackageId, files: &[(String, Digest)]) -> String {
    let base = format!("{HOST_SECRETS_DIR}/{id}");
    let mut dirs = vec![base.clone()];
    for (p, _) in files {
        if let Some((d, _)) = p.rsplit_once('/') {
            let d = format!("{base}/{d}");
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
    }
    let config_dir = HOST_SECRETS_DIR
        .rsplit_once('/')
        .map_or(HOST_SECRETS_DIR, |(d, _)| d);
    let mut s = format!(
        "[ -d {cd} ] || mkdir -p -m 0755 -- {cd} || exit 1\n\
         umask 077 && mkdir -p -- {dirs} && cd -- {base} || exit 1\n",
        cd = quote(config_dir),
        dirs = dirs.iter().map(|d| quote(d)).collect::<Vec<_>>().join(" "),
        base = quote(&base)
    );
    for (p, sha) in files {
        let q = quote(p);
        s.push_str(&format!(
            "s=$([ -f {q} ] && sha256sum < {q}); [ \"${{s%% *}}\" = {sha} ] || echo {}\n",
            quote(&format!("tarmac-secret-need|{p}")),
            sha = sha.hex(),
        ));
    }
    s
}

/// The paths [`prepare_script`] says need uploading.
pub fn parse_needed(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.trim().strip_prefix("tarmac-secret-need|"))
        .map(str::to_owned)
        .collect()
}

/// Upload the secret files of `role` that the host does not have yet (root, 0600).
pub async fn deliver(host: &HostSession, secrets: &Secrets, role: Role) -> Result<(), StepError> {
    for (id, files) in secrets.for_role(role) {
        let want: Vec<(String, Digest)> =
            files.iter().map(|f| (f.path.clone(), f.sha256)).collect();
        let r = host
            .check(
                &format!("secrets: check {id}"),
                Exec::root(prepare_script(&id, &want)).quiet(),
            )
            .await?;
        let needed = parse_needed(&r.stdout);
        for f in files.iter().filter(|f| needed.contains(&f.path)) {
            host.upload(
                &format!("secrets: upload {id}/{}", f.path),
                &Upload::new(
                    UploadSource::bytes(
                        f.path.rsplit('/').next().unwrap_or("secret"),
                        f.bytes.clone(),
                    ),
                    host_path(&id, &f.path),
                )
                .mode(0o600)
                .root(),
            )
            .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_script_exact() {
        let id = PackageId::parse("tarmac-config--setup_ab").unwrap();
        let d = Digest::of(b"abc");
        assert_eq!(
            prepare_script(
                &id,
                &[
                    (".key".into(), d),
                    ("etc_master/prometheus/prometheus.yml".into(), d),
                    ("etc_master/prometheus/web.yml".into(), d),
                ]
            ),
            "[ -d /etc/tarmac ] || mkdir -p -m 0755 -- /etc/tarmac || exit 1\n\
             umask 077 && mkdir -p -- /etc/tarmac/secrets/tarmac-config--setup_ab \
             /etc/tarmac/secrets/tarmac-config--setup_ab/etc_master/prometheus && \
             cd -- /etc/tarmac/secrets/tarmac-config--setup_ab || exit 1\n\
             s=$([ -f .key ] && sha256sum < .key); [ \"${s%% *}\" = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad ] || echo 'tarmac-secret-need|.key'\n\
             s=$([ -f etc_master/prometheus/prometheus.yml ] && sha256sum < etc_master/prometheus/prometheus.yml); [ \"${s%% *}\" = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad ] || echo 'tarmac-secret-need|etc_master/prometheus/prometheus.yml'\n\
             s=$([ -f etc_master/prometheus/web.yml ] && sha256sum < etc_master/prometheus/web.yml); [ \"${s%% *}\" = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad ] || echo 'tarmac-secret-need|etc_master/prometheus/web.yml'\n"
        );
        assert_eq!(
            host_path(&id, "etc_master/p.yml"),
            "/etc/tarmac/secrets/tarmac-config--setup_ab/etc_master/p.yml"
        );
        assert_eq!(
            parse_needed("noise\ntarmac-secret-need|.key\ntarmac-secret-need|etc_master/x\n"),
            [".key", "etc_master/x"]
        );
    }

    #[test]
    fn the_script_finds_what_is_missing_or_different() {
        // Run it against a scratch directory instead of /etc/tarmac/secrets.
        let tmp = tempfile::tempdir().unwrap();
        let id = PackageId::parse("cfg--setup_1").unwrap();
        let base = tmp.path().join("s");
        std::fs::create_dir_all(base.join(id.to_string())).unwrap();
        std::fs::write(base.join(format!("{id}/.key")), b"k").unwrap();
        std::fs::write(base.join(format!("{id}/b")), b"old").unwrap();
        let script = prepare_script(
            &id,
            &[
                (".key".into(), Digest::of(b"k")),
                ("b".into(), Digest::of(b"new")),
                ("etc/c".into(), Digest::of(b"c")),
            ],
        )
        .replace(HOST_SECRETS_DIR, &base.display().to_string())
        .replace("/etc/tarmac", &tmp.path().join("etc").display().to_string());
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            parse_needed(&String::from_utf8_lossy(&out.stdout)),
            ["b", "etc/c"]
        );
        assert!(base.join(format!("{id}/etc")).is_dir());
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&tmp.path().join("etc")), 0o755);
        assert_eq!(mode(&base.join(format!("{id}/etc"))), 0o700);
        assert!(
            out.stderr.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn read_checks_and_selects_by_role() {
        use tarmac_pkg::secrets::{PackageSecrets, SecretFile};
        let tmp = tempfile::tempdir().unwrap();
        let g = tmp.path();
        let id = PackageId::parse("cfg--setup_1").unwrap();
        let other = PackageId::parse("etcd--3").unwrap();
        let s = g.join("secrets");
        std::fs::create_dir_all(s.join(format!("{id}/etc_master"))).unwrap();
        std::fs::create_dir_all(s.join(format!("{id}/etc"))).unwrap();
        let key = secrets::key_text(&[1; 32]);
        std::fs::write(s.join(format!("{id}/.key")), &key).unwrap();
        std::fs::write(s.join(format!("{id}/etc_master/m")), b"m").unwrap();
        std::fs::write(s.join(format!("{id}/etc/all")), b"a").unwrap();
        let file = |path: &str, role, bytes: &[u8]| SecretFile {
            path: path.into(),
            role,
            sha256: Digest::of(bytes),
            hmac_sha256: Digest::of(b"unused here"),
            size: bytes.len() as u64,
            mode: "0600".into(),
            owner: None,
            group: None,
        };
        let mut m = SecretsManifest {
            format: 1,
            packages: [(
                id.to_string(),
                PackageSecrets {
                    files: vec![
                        file("etc/all", None, b"a"),
                        file("etc_master/m", Some(Role::Master), b"m"),
                    ],
                },
            )]
            .into(),
        };
        std::fs::write(s.join(MANIFEST_FILE), m.to_json()).unwrap();
        let sec = Secrets::read(g, &[other.clone(), id.clone()]).unwrap();
        let paths = |r| -> Vec<String> {
            sec.for_role(r)
                .into_iter()
                .flat_map(|(_, f)| f.into_iter().map(|f| f.path))
                .collect()
        };
        assert_eq!(paths(Role::Master), [".key", "etc/all", "etc_master/m"]);
        assert_eq!(paths(Role::Agent), [".key", "etc/all"]);
        assert_eq!(sec.for_role(Role::Master)[0].1[0].bytes, key.as_bytes());

        // A file changed after genconf: refused, naming it.
        std::fs::write(s.join(format!("{id}/etc/all")), b"changed").unwrap();
        let dir = g.display().to_string();
        assert_eq!(
            tarmac_types::error_report::text_with_hint(
                &Secrets::read(g, std::slice::from_ref(&id)).unwrap_err()
            )
            .replace(&dir, "<g>"),
            "cannot use the secret files in <g>/secrets: <g>/secrets/cfg--setup_1/etc/all does not have the sha256 <g>/secrets/manifest.json lists\nhint: run `tarmac genconf` again"
        );
        // serve/ from another genconf run than secrets/.
        m.packages.clear();
        std::fs::write(s.join(MANIFEST_FILE), m.to_json()).unwrap();
        assert_eq!(
            tarmac_types::error_report::text_with_hint(
                &Secrets::read(g, std::slice::from_ref(&id)).unwrap_err()
            )
            .replace(&dir, "<g>"),
            "cannot use the secret files in <g>/secrets: <g>/secrets/manifest.json does not list the config package cfg--setup_1 of genconf/serve (the two are from different genconf runs)\nhint: run `tarmac genconf` again"
        );
        std::fs::remove_file(s.join(MANIFEST_FILE)).unwrap();
        assert!(
            Secrets::read(g, &[id])
                .unwrap_err()
                .to_string()
                .replace(&dir, "<g>")
                .starts_with("cannot use the secret files in <g>/secrets: cannot read <g>/secrets/manifest.json: ")
        );
    }
}
