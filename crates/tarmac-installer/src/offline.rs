//! The offline prerequisites repository: the Debian packages `install-prereqs` installs, for
//! air-gapped sites.
//!
//! At bundle time, [`download`] resolves the dependency closure of the apt prerequisites for
//! each suite (relative to an empty system, without recommends) with apt-get in a private root
//! (its own configuration, sources, state, cache and an empty dpkg status, so the machine's
//! own apt state is never read or written), checking the archive's signatures with the
//! debian-archive-keyring, and lays it out as:
//!
//! ```text
//! DEST/prereqs.json           format, per suite: requested packages, every file (size, sha256)
//! DEST/<suite>/*.deb          the closure
//! DEST/<suite>/Packages       a flat apt index of those .debs
//! DEST/<suite>/Release        Date + the index's SHA256 (unsigned: see offline_install_script)
//! ```
//!
//! On the site, `install-prereqs --offline` probes each host ([`probe_script`]), picks its
//! suite ([`suite_for_host`]), uploads only that suite's files over SSH, checks every sha256
//! on the host and installs with that directory as apt's only source
//! ([`offline_install_script`]). Preflight uses the same probe to say what a host lacks that
//! the repository does not carry ([`preflight_check`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};
use tarmac_events::{Event, Level, Sink};
use tarmac_types::Digest;
use tarmac_types::apt_source::{self, DEBIAN_KEYRING};
use tarmac_types::error_report::Hinted;
use tarmac_types::shell::quote;

use crate::plan::{CheckResult, PUSH_DIR};
use crate::prereqs::Prereqs;

/// The index's name inside the repository directory.
pub const INDEX_FILE: &str = "prereqs.json";
/// The index format this code writes and reads.
pub const FORMAT: u32 = 1;
/// Where a host receives its suite's files (below the installer's root-only push directory).
pub const REMOTE_DIR: &str = "/var/lib/tarmac-push/prereqs";
/// The preflight check's name.
pub const CHECK_NAME: &str = "offline prerequisites";

#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error("`{name}` is not a Debian suite name (lowercase letters, digits and `-`)")]
    BadSuite { name: String },
    #[error("`{name}` is not a Debian package name")]
    BadPackage { name: String },
    #[error("no suite to download")]
    NoSuites,
    #[error("`{tool}` is not on this machine: {why}")]
    MissingTool { tool: String, why: String },
    #[error("apt-get {step} for suite {suite} failed ({status}){tail}")]
    Apt {
        suite: String,
        step: &'static str,
        mirror: String,
        status: String,
        tail: String,
    },
    #[error("suite {suite}: {file} is not listed in the archive's indexes")]
    Unindexed { suite: String, file: String },
    #[error("cannot {what} `{}`", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "`{}` is not an offline prerequisites repository: {why}",
        path.display()
    )]
    BadIndex { path: PathBuf, why: String },
    #[error(
        "{suite}/{file} in `{}` does not match prereqs.json: {why}",
        dir.display()
    )]
    Damaged {
        dir: PathBuf,
        suite: String,
        file: String,
        why: String,
    },
}

impl tarmac_types::error_report::Hint for OfflineError {
    fn hint(&self) -> Option<std::borrow::Cow<'_, str>> {
        Some(match self {
            OfflineError::BadSuite { .. } => "name codenames, e.g. bookworm,trixie".into(),
            OfflineError::BadPackage { .. } => {
                "package names are lowercase letters, digits and `+.-`".into()
            }
            OfflineError::NoSuites => "name at least one, e.g. --with-prereqs bookworm".into(),
            OfflineError::MissingTool { .. } => "download the prerequisites on a Debian or Ubuntu machine (`apt-get install apt debian-archive-keyring`)".into(),
            OfflineError::Apt { suite, mirror, .. } => format!(
                "check the mirror `{mirror}` serves {suite}, {suite}-updates and {suite}-security (or pass another mirror), and that this machine reaches it"
            )
            .into(),
            OfflineError::Unindexed { .. } => {
                "this is a bug or a mirror serving inconsistent indexes; try again".into()
            }
            OfflineError::Io { .. } => "check the directory exists and is writable".into(),
            OfflineError::BadIndex { .. } => "point --prereqs-dir at the bundle's prereqs/ directory (or create it with `bundle create --with-prereqs SUITES`)".into(),
            OfflineError::Damaged { .. } => {
                "the repository was changed or damaged; extract or create the bundle again".into()
            }
        })
    }
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> OfflineError {
    let path = path.to_owned();
    move |source| OfflineError::Io { what, path, source }
}

/// What to download: the apt prerequisites for each suite.
#[derive(Debug, Clone)]
pub struct DownloadSpec {
    /// Debian codenames, e.g. `bookworm`.
    pub suites: Vec<String>,
    /// Only `apt` is used.
    pub prereqs: Prereqs,
    /// The archive for `<suite>` and `<suite>-updates`; `None`: the lab's rule,
    /// [`apt_source::machine_mirror`] (this machine's apt source for the suite, else
    /// deb.debian.org).
    pub mirror: Option<String>,
    /// The archive for `<suite>-security`; `None`: the same rule for `<suite>-security`.
    pub security_mirror: Option<String>,
    /// dpkg architecture; `None`: this machine's (`dpkg --print-architecture`).
    pub architecture: Option<String>,
}

impl DownloadSpec {
    /// The standard prerequisites for `suites`, from the default mirrors, for this machine's
    /// architecture.
    pub fn new(suites: &[&str]) -> DownloadSpec {
        DownloadSpec {
            suites: suites.iter().map(|s| (*s).to_owned()).collect(),
            prereqs: Prereqs::standard(),
            mirror: None,
            security_mirror: None,
            architecture: None,
        }
    }
}

/// One file of a suite's directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoFile {
    pub name: String,
    pub size: u64,
    pub sha256: String,
    /// The binary package a .deb holds (`None` for the index files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// One suite of the repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuiteIndex {
    pub architecture: String,
    /// Where it was downloaded from (`<suite>`/`-updates`, `-security`).
    pub mirrors: Vec<String>,
    /// The prerequisites asked for (the closure is in `files`).
    pub requested: Vec<String>,
    /// Every file of `<suite>/`, by name.
    pub files: Vec<RepoFile>,
}

impl SuiteIndex {
    /// Does the suite hold a .deb of `package`?
    pub fn carries(&self, package: &str) -> bool {
        self.files
            .iter()
            .any(|f| f.package.as_deref() == Some(package))
    }
}

/// `prereqs.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrereqsIndex {
    pub format: u32,
    pub suites: BTreeMap<String, SuiteIndex>,
}

impl PrereqsIndex {
    /// The suites, comma-separated (`none` when empty), for messages.
    pub fn suite_list(&self) -> String {
        if self.suites.is_empty() {
            "none".into()
        } else {
            self.suites.keys().cloned().collect::<Vec<_>>().join(", ")
        }
    }
}

/// An offline prerequisites repository on disk.
#[derive(Debug, Clone)]
pub struct OfflineRepo {
    dir: PathBuf,
    index: PrereqsIndex,
}

impl OfflineRepo {
    /// Read `dir/prereqs.json` and check its shape (not the files: see [`Self::verify`]).
    pub fn open(dir: &Path) -> Result<OfflineRepo, OfflineError> {
        let path = dir.join(INDEX_FILE);
        let body = std::fs::read(&path).map_err(|e| OfflineError::BadIndex {
            path: dir.to_owned(),
            why: format!("cannot read {INDEX_FILE}: {e}"),
        })?;
        let index: PrereqsIndex =
            serde_json::from_slice(&body).map_err(|e| OfflineError::BadIndex {
                path: dir.to_owned(),
                why: format!("{INDEX_FILE}: {e}"),
            })?;
        if index.format != FORMAT {
            return Err(OfflineError::BadIndex {
                path: dir.to_owned(),
                why: format!(
                    "{INDEX_FILE} has format {}, this tarmac reads format {FORMAT}",
                    index.format
                ),
            });
        }
        for (suite, s) in &index.suites {
            check_suite_name(suite).map_err(|_| OfflineError::BadIndex {
                path: dir.to_owned(),
                why: format!("bad suite name `{suite}`"),
            })?;
            for f in &s.files {
                if !is_file_name(&f.name)
                    || f.sha256.parse::<Digest>().is_err()
                    || f.sha256.len() != 64
                {
                    return Err(OfflineError::BadIndex {
                        path: dir.to_owned(),
                        why: format!("bad file entry `{}` in suite {suite}", f.name),
                    });
                }
            }
        }
        Ok(OfflineRepo {
            dir: dir.to_owned(),
            index,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn index(&self) -> &PrereqsIndex {
        &self.index
    }

    /// The suites it carries, sorted.
    pub fn suites(&self) -> Vec<&str> {
        self.index.suites.keys().map(String::as_str).collect()
    }

    pub fn suite(&self, suite: &str) -> Option<&SuiteIndex> {
        self.index.suites.get(suite)
    }

    /// Does it hold a .deb of `package` for `suite`?
    pub fn carries(&self, suite: &str, package: &str) -> bool {
        self.suite(suite).is_some_and(|s| s.carries(package))
    }

    /// A suite's files on disk, with their index entries.
    pub fn files(&self, suite: &str) -> Vec<(PathBuf, &RepoFile)> {
        self.suite(suite)
            .map(|s| {
                s.files
                    .iter()
                    .map(|f| (self.dir.join(suite).join(&f.name), f))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Check every file of every suite against its size and sha256.
    pub fn verify(&self) -> Result<(), OfflineError> {
        for suite in self.index.suites.keys() {
            for (path, f) in self.files(suite) {
                let damaged = |why: String| OfflineError::Damaged {
                    dir: self.dir.clone(),
                    suite: suite.clone(),
                    file: f.name.clone(),
                    why,
                };
                let meta = std::fs::metadata(&path).map_err(|e| damaged(e.to_string()))?;
                if meta.len() != f.size {
                    return Err(damaged(format!(
                        "{} bytes, expected {}",
                        meta.len(),
                        f.size
                    )));
                }
                let d = Digest::of_file(&path).map_err(|e| damaged(e.to_string()))?;
                if d.hex() != f.sha256 {
                    return Err(damaged(format!("sha256 {d}, expected {}", f.sha256)));
                }
            }
        }
        Ok(())
    }
}

fn check_suite_name(s: &str) -> Result<(), OfflineError> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(OfflineError::BadSuite { name: s.to_owned() })
    }
}

fn check_package_name(s: &str) -> Result<(), OfflineError> {
    let ok = s.len() >= 2
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(OfflineError::BadPackage { name: s.to_owned() })
    }
}

/// A plain file name safe in a shell here-document and a path: `[A-Za-z0-9+.~_-]`, not
/// starting with `.` or `-`.
fn is_file_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(['.', '-'])
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "+.~_-".contains(c))
}

// ---------------------------------------------------------------------------------------
// Download (bundle time)

/// The private apt configuration of one suite's download root: nothing of the machine's apt
/// configuration, sources, preferences, trusted keys, state or cache is read or written.
pub fn apt_conf(root: &Path, architecture: &str) -> String {
    let r = root.display();
    format!(
        r#"Dir::Etc::Main "/dev/null";
Dir::Etc::Parts "{r}/etc/apt.conf.d";
Dir::Etc::SourceList "{r}/etc/sources.list";
Dir::Etc::SourceParts "{r}/etc/sources.list.d";
Dir::Etc::Preferences "/dev/null";
Dir::Etc::PreferencesParts "{r}/etc/preferences.d";
Dir::Etc::Trusted "/dev/null";
Dir::Etc::TrustedParts "{r}/etc/trusted.gpg.d";
Dir::State "{r}/state";
Dir::State::Lists "{r}/state/lists";
Dir::State::status "{r}/dpkg/status";
Dir::Cache "{r}/cache";
Dir::Cache::Archives "{r}/cache/archives";
Dir::Log "{r}/log";
Acquire::Languages "none";
Acquire::GzipIndexes "false";
APT::Architecture "{architecture}";
APT::Architectures {{ "{architecture}"; }};
APT::Install-Recommends "false";
APT::Install-Suggests "false";
APT::Get::AllowUnauthenticated "false";
"#
    )
}

/// The sources of one suite: `<suite>` and `<suite>-updates` from `mirror`, `<suite>-security`
/// from `security`, every one checked against `keyring`.
pub fn download_sources(suite: &str, mirror: &str, security: &str, keyring: &Path) -> String {
    let k = keyring.display();
    format!(
        "deb [signed-by={k}] {mirror} {suite} main\ndeb [signed-by={k}] {mirror} {suite}-updates main\ndeb [signed-by={k}] {security} {suite}-security main\n"
    )
}

/// The paragraphs of a Packages file.
pub fn stanzas(text: &str) -> impl Iterator<Item = &str> {
    text.split("\n\n")
        .map(|s| s.trim_matches('\n'))
        .filter(|s| !s.is_empty())
}

/// A top-level field of a stanza (first line only).
pub fn field<'a>(stanza: &'a str, name: &str) -> Option<&'a str> {
    stanza.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (!l.starts_with([' ', '\t']) && k == name).then(|| v.trim())
    })
}

/// The stanza with its `Filename:` pointing at `./name` in a flat repository.
pub fn flat_stanza(stanza: &str, name: &str) -> String {
    let mut out = String::new();
    for l in stanza.lines() {
        if l.starts_with("Filename:") {
            let _ = writeln!(out, "Filename: ./{name}");
        } else {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// RFC 2822 date, as apt wants in a Release file.
pub fn release_date(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let (y, m, d) = tarmac_types::time::civil_from_days(days);
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let rem = secs % 86_400;
    format!(
        "{}, {d:02} {} {y:04} {:02}:{:02}:{:02} UTC",
        WD[(days % 7) as usize],
        MON[(m - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The flat repository's Release file: its Date and the Packages index's size and sha256
/// (so apt fetches exactly that file and no compressed variants).
pub fn release_file(suite: &str, architecture: &str, packages: &[u8], date: &str) -> String {
    format!(
        "Origin: tarmac\nLabel: tarmac prerequisites\nSuite: {suite}\nArchitectures: {architecture}\nDate: {date}\nSHA256:\n {} {} Packages\n",
        Digest::of(packages).hex(),
        packages.len()
    )
}

fn notice(sink: &Sink, message: String) {
    sink.emit(Event::Notice {
        level: Level::Info,
        message,
    });
}

fn machine_architecture() -> Result<String, OfflineError> {
    let out = Command::new("dpkg")
        .arg("--print-architecture")
        .output()
        .map_err(|e| OfflineError::MissingTool {
            tool: "dpkg".into(),
            why: e.to_string(),
        })?;
    let a = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() || a.is_empty() {
        return Err(OfflineError::MissingTool {
            tool: "dpkg".into(),
            why: "`dpkg --print-architecture` printed nothing".into(),
        });
    }
    Ok(a)
}

fn machine_mirror(suite: &str) -> String {
    apt_source::machine_mirror(
        suite,
        |d| {
            std::fs::read_dir(d)
                .map(|rd| rd.flatten().map(|e| e.path()).collect())
                .unwrap_or_default()
        },
        |p| std::fs::read_to_string(p).ok(),
    )
}

/// Download the closure of `spec.prereqs.apt` for every suite of `spec` into `dest` (see the
/// module documentation for the layout). Everything is written into a temporary directory
/// next to `dest` and renamed into place at the end (an existing `dest` is replaced only
/// then); on failure nothing is left behind. Network use: only apt-get, only to the mirrors.
pub fn download(
    spec: &DownloadSpec,
    dest: &Path,
    sink: &Sink,
) -> Result<OfflineRepo, OfflineError> {
    if spec.suites.is_empty() {
        return Err(OfflineError::NoSuites);
    }
    let suites: BTreeSet<&str> = spec.suites.iter().map(String::as_str).collect();
    for s in &suites {
        check_suite_name(s)?;
    }
    for p in &spec.prereqs.apt {
        check_package_name(p)?;
    }
    let keyring = Path::new(DEBIAN_KEYRING);
    if !keyring.is_file() {
        return Err(OfflineError::MissingTool {
            tool: DEBIAN_KEYRING.into(),
            why: "the Debian archive keyring checks the archive's signatures".into(),
        });
    }
    if Command::new("apt-get").arg("--version").output().is_err() {
        return Err(OfflineError::MissingTool {
            tool: "apt-get".into(),
            why: "it resolves and downloads the packages".into(),
        });
    }
    let architecture = match &spec.architecture {
        Some(a) => a.clone(),
        None => machine_architecture()?,
    };
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(io("create", &parent))?;
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "prereqs".into());
    let tmp = TempDir::new(parent.join(format!(".{name}.tmp-{}", std::process::id())))?;
    let mut index = PrereqsIndex {
        format: FORMAT,
        suites: BTreeMap::new(),
    };
    for suite in suites {
        let s = download_suite(spec, suite, &architecture, keyring, &tmp.0, sink)?;
        index.suites.insert(suite.to_owned(), s);
    }
    let body = serde_json::to_vec_pretty(&index).expect("index serialises");
    let ipath = tmp.0.join(INDEX_FILE);
    std::fs::write(&ipath, body).map_err(io("write", &ipath))?;
    // Into place: an existing repository moves aside first and is removed after the rename.
    let old = parent.join(format!(".{name}.old-{}", std::process::id()));
    let had_old = dest.exists();
    if had_old {
        std::fs::rename(dest, &old).map_err(io("move aside", dest))?;
    }
    if let Err(e) = std::fs::rename(&tmp.0, dest) {
        if had_old {
            let _ = std::fs::rename(&old, dest);
        }
        return Err(io("rename into place", dest)(e));
    }
    tmp.keep();
    if had_old {
        let _ = std::fs::remove_dir_all(&old);
    }
    let _ = tarmac_fsx::fsync_dir(&parent);
    notice(
        sink,
        format!(
            "offline prerequisites: {} ready ({})",
            dest.display(),
            index.suite_list()
        ),
    );
    Ok(OfflineRepo {
        dir: dest.to_owned(),
        index,
    })
}

/// A directory removed on drop unless kept.
struct TempDir(PathBuf, bool);

impl TempDir {
    fn new(path: PathBuf) -> Result<TempDir, OfflineError> {
        if path.exists() {
            std::fs::remove_dir_all(&path).map_err(io("remove", &path))?;
        }
        std::fs::create_dir(&path).map_err(io("create", &path))?;
        Ok(TempDir(path, false))
    }

    fn keep(mut self) {
        self.1 = true;
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.1 {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn download_suite(
    spec: &DownloadSpec,
    suite: &str,
    architecture: &str,
    keyring: &Path,
    tmp: &Path,
    sink: &Sink,
) -> Result<SuiteIndex, OfflineError> {
    let mirror = spec.mirror.clone().unwrap_or_else(|| machine_mirror(suite));
    let security = spec
        .security_mirror
        .clone()
        .unwrap_or_else(|| machine_mirror(&format!("{suite}-security")));
    let root = TempDir::new(tmp.join(format!(".apt-{suite}")))?;
    let r = &root.0;
    for d in [
        "etc/apt.conf.d",
        "etc/sources.list.d",
        "etc/preferences.d",
        "etc/trusted.gpg.d",
        "state/lists/partial",
        "cache/archives/partial",
        "dpkg",
        "log",
    ] {
        let p = r.join(d);
        std::fs::create_dir_all(&p).map_err(io("create", &p))?;
    }
    let write = |rel: &str, body: String| {
        let p = r.join(rel);
        std::fs::write(&p, body).map_err(io("write", &p))
    };
    // The empty dpkg status: the closure is complete relative to an empty system.
    write("dpkg/status", String::new())?;
    write("apt.conf", apt_conf(r, architecture))?;
    write(
        "etc/sources.list",
        download_sources(suite, &mirror, &security, keyring),
    )?;
    notice(
        sink,
        format!(
            "offline prerequisites {suite}/{architecture}: resolving {} from {mirror} and {security}",
            spec.prereqs.apt.join(", ")
        ),
    );
    let apt = |step: &'static str, args: &[&str]| -> Result<(), OfflineError> {
        let out = Command::new("apt-get")
            .env("APT_CONFIG", r.join("apt.conf"))
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(args)
            .output()
            .map_err(|e| OfflineError::MissingTool {
                tool: "apt-get".into(),
                why: e.to_string(),
            })?;
        // apt-get update exits 0 on some fetch failures but says so with `E:`/`W:` lines.
        let stderr = String::from_utf8_lossy(&out.stderr);
        let failed_fetch = stderr.lines().any(|l| l.starts_with("E:"))
            || (step == "update" && stderr.lines().any(|l| l.starts_with("W: Failed to fetch")));
        if !out.status.success() || failed_fetch {
            let tail: String = stderr
                .lines()
                .rev()
                .take(8)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .map(|l| format!("\n    {l}"))
                .collect();
            return Err(OfflineError::Apt {
                suite: suite.to_owned(),
                step,
                mirror: mirror.clone(),
                status: out.status.to_string(),
                tail,
            });
        }
        Ok(())
    };
    apt("update", &["-q", "update"])?;
    let mut args = vec!["-q", "-y", "--download-only", "install"];
    args.extend(spec.prereqs.apt.iter().map(String::as_str));
    apt("install --download-only", &args)?;

    // The archive's stanzas of what was downloaded, found by sha256.
    let lists = r.join("state/lists");
    let mut by_sha: BTreeMap<String, String> = BTreeMap::new();
    for e in std::fs::read_dir(&lists)
        .map_err(io("read", &lists))?
        .flatten()
    {
        let p = e.path();
        if !p.to_string_lossy().ends_with("_Packages") {
            continue;
        }
        let text = std::fs::read_to_string(&p).map_err(io("read", &p))?;
        for st in stanzas(&text) {
            if let Some(sha) = field(st, "SHA256") {
                by_sha.insert(sha.to_owned(), st.to_owned());
            }
        }
    }
    let out_dir = tmp.join(suite);
    std::fs::create_dir(&out_dir).map_err(io("create", &out_dir))?;
    let archives = r.join("cache/archives");
    let mut debs: Vec<PathBuf> = std::fs::read_dir(&archives)
        .map_err(io("read", &archives))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .collect();
    debs.sort();
    let mut entries: Vec<(String, RepoFile)> = Vec::new();
    for deb in debs {
        let sha = Digest::of_file(&deb).map_err(io("read", &deb))?.hex();
        let file = deb.file_name().unwrap_or_default().to_string_lossy();
        let st = by_sha.get(&sha).ok_or_else(|| OfflineError::Unindexed {
            suite: suite.to_owned(),
            file: file.clone().into_owned(),
        })?;
        let (Some(package), Some(version), Some(pool)) = (
            field(st, "Package"),
            field(st, "Version"),
            field(st, "Filename"),
        ) else {
            return Err(OfflineError::Unindexed {
                suite: suite.to_owned(),
                file: file.into_owned(),
            });
        };
        let name = pool.rsplit('/').next().unwrap_or_default().to_owned();
        if !is_file_name(&name) {
            return Err(OfflineError::Unindexed {
                suite: suite.to_owned(),
                file: name,
            });
        }
        let to = out_dir.join(&name);
        std::fs::rename(&deb, &to).map_err(io("move", &deb))?;
        let size = std::fs::metadata(&to).map_err(io("stat", &to))?.len();
        entries.push((
            flat_stanza(st, &name),
            RepoFile {
                name,
                size,
                sha256: sha,
                package: Some(package.to_owned()),
                version: Some(version.to_owned()),
            },
        ));
    }
    entries.sort_by(|a, b| a.1.package.cmp(&b.1.package));
    let packages: String = entries
        .iter()
        .map(|(st, _)| st.clone())
        .collect::<Vec<_>>()
        .join("\n");
    let now = tarmac_types::time::now_unix();
    let release = release_file(suite, architecture, packages.as_bytes(), &release_date(now));
    let mut files: Vec<RepoFile> = entries.into_iter().map(|(_, f)| f).collect();
    for (name, body) in [("Packages", packages), ("Release", release)] {
        let p = out_dir.join(name);
        std::fs::write(&p, &body).map_err(io("write", &p))?;
        files.push(RepoFile {
            name: name.into(),
            size: body.len() as u64,
            sha256: Digest::of(body.as_bytes()).hex(),
            package: None,
            version: None,
        });
    }
    let total: u64 = files.iter().map(|f| f.size).sum();
    notice(
        sink,
        format!(
            "offline prerequisites {suite}/{architecture}: {} packages, {:.1} MB",
            files.len() - 2,
            total as f64 / 1e6
        ),
    );
    drop(root);
    Ok(SuiteIndex {
        architecture: architecture.to_owned(),
        mirrors: vec![mirror, security],
        requested: spec.prereqs.apt.clone(),
        files,
    })
}

// ---------------------------------------------------------------------------------------
// On the hosts (install-prereqs --offline, preflight)

/// How the probe tells whether an apt prerequisite is present.
fn presence_test(package: &str) -> String {
    match package {
        "curl" => "command -v curl".into(),
        "ca-certificates" => "test -s /etc/ssl/certs/ca-certificates.crt".into(),
        "iproute2" => "command -v ip".into(),
        "procps" => "command -v ps".into(),
        "tar" => "command -v tar".into(),
        "passwd" => "command -v useradd".into(),
        other => format!(
            "test \"$(dpkg-query -W -f='${{db:Status-Status}}' {} 2>/dev/null)\" = installed",
            quote(other)
        ),
    }
}

/// The probe (run as root): the host's OS, its apt architecture if it has apt-get, and for
/// each apt prerequisite whether it is present (its command exists; for packages without a
/// known command, dpkg says it is installed).
pub fn probe_script(prereqs: &Prereqs) -> String {
    let mut s = String::from(
        r#"( [ -r /etc/os-release ] && . /etc/os-release; echo "tarmac-os|${ID:-}|${VERSION_CODENAME:-}|${PRETTY_NAME:-}" )
if command -v apt-get >/dev/null 2>&1; then echo "tarmac-apt|$(dpkg --print-architecture 2>/dev/null)"; fi
present() { if "$@" >/dev/null 2>&1; then echo yes; else echo no; fi; }
"#,
    );
    for p in &prereqs.apt {
        let t = presence_test(p);
        let _ = writeln!(
            s,
            "echo \"tarmac-prereq|{p}|$(present sh -c {})\"",
            quote(&t)
        );
    }
    s
}

/// A host's operating system, from os-release.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostOs {
    pub id: String,
    pub codename: String,
    pub pretty: String,
}

impl std::fmt::Display for HostOs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let short = format!("{} {}", self.id, self.codename);
        let short = short.trim();
        match (self.pretty.is_empty(), short.is_empty()) {
            (true, true) => f.write_str("an unknown OS (no /etc/os-release)"),
            (true, false) => f.write_str(short),
            (false, _) => write!(f, "{} ({short})", self.pretty),
        }
    }
}

/// What [`probe_script`] found on a host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostProbe {
    pub os: HostOs,
    /// `Some(dpkg architecture)` when the host has apt-get.
    pub apt: Option<String>,
    /// Prerequisite package → present.
    pub present: BTreeMap<String, bool>,
}

impl HostProbe {
    /// The prerequisites of `prereqs.apt` the host does not have, in order.
    pub fn missing<'a>(&self, prereqs: &'a Prereqs) -> Vec<&'a str> {
        prereqs
            .apt
            .iter()
            .filter(|p| self.present.get(p.as_str()) != Some(&true))
            .map(String::as_str)
            .collect()
    }
}

pub fn parse_probe(out: &str) -> HostProbe {
    let mut p = HostProbe::default();
    for l in out.lines() {
        if let Some(rest) = l.strip_prefix("tarmac-os|") {
            let mut it = rest.splitn(3, '|');
            p.os = HostOs {
                id: it.next().unwrap_or_default().trim().to_owned(),
                codename: it.next().unwrap_or_default().trim().to_owned(),
                pretty: it.next().unwrap_or_default().trim().to_owned(),
            };
        } else if let Some(a) = l.strip_prefix("tarmac-apt|") {
            p.apt = Some(a.trim().to_owned());
        } else if let Some(rest) = l.strip_prefix("tarmac-prereq|")
            && let Some((name, v)) = rest.split_once('|')
        {
            p.present.insert(name.to_owned(), v.trim() == "yes");
        }
    }
    p
}

/// Why a host cannot install from the repository: the message names the host, its OS and what
/// the repository carries; the hint says what to do.
pub fn suite_for_host<'a>(
    host: &str,
    index: &'a PrereqsIndex,
    probe: &HostProbe,
) -> Result<(&'a str, &'a SuiteIndex), Hinted> {
    let carries = index.suite_list();
    let Some(arch) = &probe.apt else {
        return Err(Hinted::new(
            format!(
                "host {host} runs {} and has no apt-get; the offline prerequisites repository holds Debian packages only (it carries {carries})",
                probe.os
            ),
            "install the prerequisites on this host by hand, or use a Debian host",
        ));
    };
    let wanted = || {
        let mut s: BTreeSet<String> = index.suites.keys().cloned().collect();
        if !probe.os.codename.is_empty() {
            s.insert(probe.os.codename.clone());
        }
        s.into_iter().collect::<Vec<_>>().join(",")
    };
    let Some((suite, s)) = index.suites.get_key_value(probe.os.codename.as_str()) else {
        return Err(Hinted::new(
            format!(
                "host {host} runs {}, but the offline prerequisites repository carries {carries} only",
                probe.os
            ),
            format!("bundle create --with-prereqs {}", wanted()),
        ));
    };
    if !arch.is_empty() && *arch != s.architecture {
        return Err(Hinted::new(
            format!(
                "host {host} runs {} on {arch}, but the offline prerequisites repository's {suite} packages are for {}",
                probe.os, s.architecture
            ),
            format!("create the bundle on a {arch} machine (bundle create --with-prereqs {suite})"),
        ));
    }
    Ok((suite.as_str(), s))
}

/// The root-only directory a host's suite is uploaded into, emptied first.
pub fn prepare_remote_command() -> String {
    format!(
        "mkdir -p -m 0700 {PUSH_DIR} && chmod 0700 {PUSH_DIR} && rm -rf {REMOTE_DIR} && mkdir -p -m 0700 {REMOTE_DIR}/repo"
    )
}

/// The script that installs `packages` on a host from its suite's files, uploaded to
/// `{REMOTE_DIR}/repo`: it checks every file's sha256 first, then runs apt with that directory
/// as its ONLY source (a private sources list and source parts, and private lists so the
/// host's own apt lists stay as they are): no network repository is contacted. It removes the
/// files when done.
pub fn offline_install_script(suite: &SuiteIndex, packages: &[String]) -> String {
    let mut sums = String::new();
    for f in &suite.files {
        let _ = writeln!(sums, "{}  {}", f.sha256, f.name);
    }
    let pkgs = packages
        .iter()
        .map(|p| quote(p))
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        r#"set -e
d={REMOTE_DIR}
cd "$d/repo"
command -v sha256sum >/dev/null 2>&1 || {{ echo "sha256sum is missing: cannot check the uploaded packages" >&2; exit 3; }}
sha256sum --check --strict --quiet <<'TARMAC_SUMS'
{sums}TARMAC_SUMS
echo "sha256 checked: {n} files"
mkdir -p "$d/lists/partial" "$d/sources.list.d"
# [trusted=yes]: the Release file is unsigned, and needs no signature: every file of this
# repository came over the authenticated SSH channel and its sha256 was checked just above
# against the list in this script (which came over the same channel).
echo "deb [trusted=yes] file:$d/repo ./" > "$d/sources.list"
set -- -o "Dir::Etc::SourceList=$d/sources.list" -o "Dir::Etc::SourceParts=$d/sources.list.d" -o "Dir::State::Lists=$d/lists" -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= -o Acquire::Languages=none -o APT::Sandbox::User=root
export DEBIAN_FRONTEND=noninteractive
apt-get "$@" update -qq
apt-get "$@" install -y -qq --no-install-recommends {pkgs}
cd /
rm -rf "$d"
echo "prerequisites installed (offline)"
"#,
        n = suite.files.len()
    )
}

/// Preflight's verdict on a host's missing prerequisites against the repository: failed when
/// one is missing that the repository does not carry for the host's suite (or it carries no
/// suite for the host); otherwise passed, with a note naming what install-prereqs --offline
/// will install.
pub fn preflight_check(
    host: &str,
    probe: &HostProbe,
    index: &PrereqsIndex,
    prereqs: &Prereqs,
) -> CheckResult {
    let missing = probe.missing(prereqs);
    if missing.is_empty() {
        return CheckResult {
            name: CHECK_NAME.into(),
            passed: true,
            detail: "every prerequisite is present".into(),
        };
    }
    let list = missing.join(", ");
    let (suite, s) = match suite_for_host(host, index, probe) {
        Ok(x) => x,
        Err(Hinted {
            message: first,
            hint,
        }) => {
            return CheckResult {
                name: CHECK_NAME.into(),
                passed: false,
                detail: format!(
                    "host {host} lacks {list}: {}\nhint: {hint} (or install {list} on the host by hand)",
                    first
                        .strip_prefix(&format!("host {host} "))
                        .unwrap_or(&first)
                ),
            };
        }
    };
    let (carried, lacking): (Vec<&str>, Vec<&str>) = missing.iter().partition(|p| s.carries(p));
    let mut detail = String::new();
    if !lacking.is_empty() {
        let l = lacking.join(", ");
        let _ = write!(
            detail,
            "host {host} ({}) lacks {l}, and the offline prerequisites repository's {suite} packages do not include {}\nhint: create the bundle with them (bundle create --with-prereqs {suite}), or install {l} on the host by hand",
            probe.os,
            if lacking.len() == 1 { "it" } else { "them" }
        );
    }
    if !carried.is_empty() {
        if !detail.is_empty() {
            detail.push('\n');
        }
        let _ = write!(
            detail,
            "note: install-prereqs --offline will install {}",
            carried.join(", ")
        );
    }
    CheckResult {
        name: CHECK_NAME.into(),
        passed: lacking.is_empty(),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(l: &[&str]) -> Vec<String> {
        l.iter().map(|s| (*s).to_owned()).collect()
    }

    fn file(name: &str, package: Option<&str>) -> RepoFile {
        RepoFile {
            name: name.into(),
            size: 3,
            sha256: "ab".repeat(32),
            package: package.map(str::to_owned),
            version: package.map(|_| "1.0".to_owned()),
        }
    }

    fn index() -> PrereqsIndex {
        let mut suites = BTreeMap::new();
        suites.insert(
            "bookworm".to_owned(),
            SuiteIndex {
                architecture: "amd64".into(),
                mirrors: v(&["http://deb.debian.org/debian"]),
                requested: v(&["curl", "tar"]),
                files: vec![
                    file("curl_7.88_amd64.deb", Some("curl")),
                    file("libc6_2.36_amd64.deb", Some("libc6")),
                    file("Packages", None),
                ],
            },
        );
        PrereqsIndex { format: 1, suites }
    }

    fn probe(codename: &str, apt: Option<&str>, present: &[(&str, bool)]) -> HostProbe {
        HostProbe {
            os: HostOs {
                id: "debian".into(),
                codename: codename.into(),
                pretty: format!("Debian GNU/Linux ({codename})"),
            },
            apt: apt.map(str::to_owned),
            present: present.iter().map(|(k, b)| ((*k).to_owned(), *b)).collect(),
        }
    }

    #[test]
    fn apt_conf_is_private() {
        let c = apt_conf(Path::new("/t/r"), "amd64");
        assert!(c.starts_with(
            "Dir::Etc::Main \"/dev/null\";\nDir::Etc::Parts \"/t/r/etc/apt.conf.d\";\n"
        ));
        assert!(c.contains("Dir::State::status \"/t/r/dpkg/status\";\n"));
        assert!(c.contains("Dir::Etc::Trusted \"/dev/null\";\n"));
        assert!(c.contains("APT::Architectures { \"amd64\"; };\n"));
    }

    #[test]
    fn sources_are_signed_by_the_keyring() {
        assert_eq!(
            download_sources(
                "bookworm",
                "http://m/debian",
                "http://m/debian-security",
                Path::new("/k.gpg")
            ),
            "deb [signed-by=/k.gpg] http://m/debian bookworm main\ndeb [signed-by=/k.gpg] http://m/debian bookworm-updates main\ndeb [signed-by=/k.gpg] http://m/debian-security bookworm-security main\n"
        );
    }

    #[test]
    fn stanzas_and_flat_filenames() {
        let text = "Package: curl\nVersion: 7.88\nDescription: x\n more: yes\nFilename: pool/main/c/curl/curl_7.88_amd64.deb\nSHA256: aa\n\nPackage: tar\nFilename: pool/t.deb\n";
        let st: Vec<&str> = stanzas(text).collect();
        assert_eq!(st.len(), 2);
        assert_eq!(field(st[0], "Version"), Some("7.88"));
        assert_eq!(field(st[0], "more"), None);
        assert_eq!(field(st[0], "SHA256"), Some("aa"));
        assert_eq!(
            flat_stanza(st[0], "curl_7.88_amd64.deb"),
            "Package: curl\nVersion: 7.88\nDescription: x\n more: yes\nFilename: ./curl_7.88_amd64.deb\nSHA256: aa\n"
        );
    }

    #[test]
    fn release_file_pins_the_index() {
        assert_eq!(release_date(0), "Thu, 01 Jan 1970 00:00:00 UTC");
        assert_eq!(release_date(1_796_299_168), "Thu, 03 Dec 2026 11:59:28 UTC");
        assert_eq!(
            release_file("bookworm", "amd64", b"abc", "D"),
            "Origin: tarmac\nLabel: tarmac prerequisites\nSuite: bookworm\nArchitectures: amd64\nDate: D\nSHA256:\n ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad 3 Packages\n"
        );
    }

    #[test]
    fn names_are_checked() {
        assert!(check_suite_name("bookworm").is_ok());
        assert!(check_suite_name("Bookworm").is_err());
        assert!(check_suite_name("../x").is_err());
        assert!(check_package_name("libstdc++6").is_ok());
        assert!(check_package_name("a b").is_err());
        assert!(is_file_name("libaudit1_3.0.9-1_amd64.deb"));
        assert!(!is_file_name("../x.deb"));
        assert!(!is_file_name("x\ny"));
    }

    #[test]
    fn the_probe_script() {
        let p = Prereqs {
            apt: v(&["curl", "passwd", "jq"]),
            rpm: Vec::new(),
            zypper: Vec::new(),
        };
        assert_eq!(
            probe_script(&p),
            r#"( [ -r /etc/os-release ] && . /etc/os-release; echo "tarmac-os|${ID:-}|${VERSION_CODENAME:-}|${PRETTY_NAME:-}" )
if command -v apt-get >/dev/null 2>&1; then echo "tarmac-apt|$(dpkg --print-architecture 2>/dev/null)"; fi
present() { if "$@" >/dev/null 2>&1; then echo yes; else echo no; fi; }
echo "tarmac-prereq|curl|$(present sh -c 'command -v curl')"
echo "tarmac-prereq|passwd|$(present sh -c 'command -v useradd')"
echo "tarmac-prereq|jq|$(present sh -c 'test "$(dpkg-query -W -f='\''${db:Status-Status}'\'' jq 2>/dev/null)" = installed')"
"#
        );
    }

    #[test]
    fn the_probe_runs_here() {
        let mut pr = Prereqs::standard();
        pr.apt.push("dpkg".into());
        pr.apt.push("no-such-package-here".into());
        let out = Command::new("sh")
            .arg("-c")
            .arg(probe_script(&pr))
            .output()
            .unwrap();
        assert!(out.status.success());
        let p = parse_probe(&String::from_utf8_lossy(&out.stdout));
        assert_eq!(p.present.len(), 8, "{p:?}");
        assert_eq!(p.present.get("tar"), Some(&true));
        assert_eq!(p.present.get("dpkg"), Some(&true));
        assert_eq!(p.present.get("no-such-package-here"), Some(&false));
    }

    #[test]
    fn probe_output_is_parsed() {
        let p = parse_probe(
            "tarmac-os|debian|bookworm|Debian GNU/Linux 12 (bookworm)\ntarmac-apt|amd64\ntarmac-prereq|curl|no\ntarmac-prereq|tar|yes\nnoise\n",
        );
        assert_eq!(p.os.codename, "bookworm");
        assert_eq!(p.apt.as_deref(), Some("amd64"));
        assert_eq!(
            p.os.to_string(),
            "Debian GNU/Linux 12 (bookworm) (debian bookworm)"
        );
        let pr = Prereqs {
            apt: v(&["curl", "tar", "procps"]),
            ..Prereqs::none()
        };
        assert_eq!(p.missing(&pr), vec!["curl", "procps"]);
        assert_eq!(
            parse_probe("tarmac-os|||\n").os.to_string(),
            "an unknown OS (no /etc/os-release)"
        );
    }

    #[test]
    fn a_host_gets_its_suite_or_a_precise_refusal() {
        let ix = index();
        let (s, _) = suite_for_host("h1", &ix, &probe("bookworm", Some("amd64"), &[])).unwrap();
        assert_eq!(s, "bookworm");
        assert_eq!(
            suite_for_host("h1", &ix, &probe("trixie", Some("amd64"), &[])).unwrap_err(),
            Hinted::new(
                "host h1 runs Debian GNU/Linux (trixie) (debian trixie), but the offline prerequisites repository carries bookworm only",
                "bundle create --with-prereqs bookworm,trixie"
            )
        );
        assert_eq!(
            suite_for_host("h1", &ix, &probe("bookworm", None, &[])).unwrap_err(),
            Hinted::new(
                "host h1 runs Debian GNU/Linux (bookworm) (debian bookworm) and has no apt-get; the offline prerequisites repository holds Debian packages only (it carries bookworm)",
                "install the prerequisites on this host by hand, or use a Debian host"
            )
        );
        assert_eq!(
            suite_for_host("h1", &ix, &probe("bookworm", Some("arm64"), &[])).unwrap_err(),
            Hinted::new(
                "host h1 runs Debian GNU/Linux (bookworm) (debian bookworm) on arm64, but the offline prerequisites repository's bookworm packages are for amd64",
                "create the bundle on a arm64 machine (bundle create --with-prereqs bookworm)"
            )
        );
    }

    #[test]
    fn preflight_names_what_the_bundle_lacks() {
        let ix = index();
        let pr = Prereqs {
            apt: v(&["curl", "tar"]),
            ..Prereqs::none()
        };
        let all = probe("bookworm", Some("amd64"), &[("curl", true), ("tar", true)]);
        let c = preflight_check("h1", &all, &ix, &pr);
        assert!(c.passed);
        assert_eq!(c.name, CHECK_NAME);
        let no_curl = probe("bookworm", Some("amd64"), &[("curl", false), ("tar", true)]);
        let c = preflight_check("h1", &no_curl, &ix, &pr);
        assert!(c.passed);
        assert_eq!(
            c.detail,
            "note: install-prereqs --offline will install curl"
        );
        let neither = probe(
            "bookworm",
            Some("amd64"),
            &[("curl", false), ("tar", false)],
        );
        let c = preflight_check("h1", &neither, &ix, &pr);
        assert!(!c.passed);
        assert_eq!(
            c.detail,
            "host h1 (Debian GNU/Linux (bookworm) (debian bookworm)) lacks tar, and the offline prerequisites repository's bookworm packages do not include it\nhint: create the bundle with them (bundle create --with-prereqs bookworm), or install tar on the host by hand\nnote: install-prereqs --offline will install curl"
        );
        let trixie = probe("trixie", Some("amd64"), &[("curl", false), ("tar", true)]);
        let c = preflight_check("h1", &trixie, &ix, &pr);
        assert!(!c.passed);
        assert_eq!(
            c.detail,
            "host h1 lacks curl: runs Debian GNU/Linux (trixie) (debian trixie), but the offline prerequisites repository carries bookworm only\nhint: bundle create --with-prereqs bookworm,trixie (or install curl on the host by hand)"
        );
        // A suite the repository lacks does not matter when nothing is missing.
        let trixie_ok = probe("trixie", Some("amd64"), &[("curl", true), ("tar", true)]);
        assert!(preflight_check("h1", &trixie_ok, &ix, &pr).passed);
    }

    #[test]
    fn the_offline_install_script() {
        let ix = index();
        let s = &ix.suites["bookworm"];
        let h = "ab".repeat(32);
        assert_eq!(
            offline_install_script(s, &v(&["curl", "tar"])),
            format!(
                r#"set -e
d=/var/lib/tarmac-push/prereqs
cd "$d/repo"
command -v sha256sum >/dev/null 2>&1 || {{ echo "sha256sum is missing: cannot check the uploaded packages" >&2; exit 3; }}
sha256sum --check --strict --quiet <<'TARMAC_SUMS'
{h}  curl_7.88_amd64.deb
{h}  libc6_2.36_amd64.deb
{h}  Packages
TARMAC_SUMS
echo "sha256 checked: 3 files"
mkdir -p "$d/lists/partial" "$d/sources.list.d"
# [trusted=yes]: the Release file is unsigned, and needs no signature: every file of this
# repository came over the authenticated SSH channel and its sha256 was checked just above
# against the list in this script (which came over the same channel).
echo "deb [trusted=yes] file:$d/repo ./" > "$d/sources.list"
set -- -o "Dir::Etc::SourceList=$d/sources.list" -o "Dir::Etc::SourceParts=$d/sources.list.d" -o "Dir::State::Lists=$d/lists" -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= -o Acquire::Languages=none -o APT::Sandbox::User=root
export DEBIAN_FRONTEND=noninteractive
apt-get "$@" update -qq
apt-get "$@" install -y -qq --no-install-recommends curl tar
cd /
rm -rf "$d"
echo "prerequisites installed (offline)"
"#
            )
        );
        assert_eq!(
            prepare_remote_command(),
            "mkdir -p -m 0700 /var/lib/tarmac-push && chmod 0700 /var/lib/tarmac-push && rm -rf /var/lib/tarmac-push/prereqs && mkdir -p -m 0700 /var/lib/tarmac-push/prereqs/repo"
        );
    }

    #[test]
    fn host_scripts_pass_bash_n() {
        let ix = index();
        for script in [
            offline_install_script(&ix.suites["bookworm"], &Prereqs::standard().apt),
            probe_script(&Prereqs::standard()),
        ] {
            let out = Command::new("bash")
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

    #[test]
    fn open_rejects_what_it_cannot_use() {
        let d = tempfile::tempdir().unwrap();
        let e =
            tarmac_types::error_report::text_with_hint(&OfflineRepo::open(d.path()).unwrap_err());
        assert!(e.contains("cannot read prereqs.json"), "{e}");
        assert!(e.contains("\nhint: "), "{e}");
        let mut ix = index();
        ix.format = 9;
        std::fs::write(d.path().join(INDEX_FILE), serde_json::to_vec(&ix).unwrap()).unwrap();
        let e = OfflineRepo::open(d.path()).unwrap_err().to_string();
        assert!(e.contains("format 9"), "{e}");
        let mut ix = index();
        ix.suites.get_mut("bookworm").unwrap().files[0].name = "../evil".into();
        std::fs::write(d.path().join(INDEX_FILE), serde_json::to_vec(&ix).unwrap()).unwrap();
        let e = OfflineRepo::open(d.path()).unwrap_err().to_string();
        assert!(e.contains("bad file entry"), "{e}");
    }

    #[test]
    fn verify_finds_a_changed_file() {
        let d = tempfile::tempdir().unwrap();
        let body = b"abc";
        std::fs::create_dir(d.path().join("bookworm")).unwrap();
        std::fs::write(d.path().join("bookworm/Packages"), body).unwrap();
        let mut ix = index();
        ix.suites.get_mut("bookworm").unwrap().files = vec![RepoFile {
            name: "Packages".into(),
            size: 3,
            sha256: Digest::of(body).hex(),
            package: None,
            version: None,
        }];
        std::fs::write(d.path().join(INDEX_FILE), serde_json::to_vec(&ix).unwrap()).unwrap();
        let r = OfflineRepo::open(d.path()).unwrap();
        r.verify().unwrap();
        assert_eq!(r.suites(), vec!["bookworm"]);
        assert!(!r.carries("bookworm", "curl"));
        std::fs::write(d.path().join("bookworm/Packages"), b"abd").unwrap();
        let e = r.verify().unwrap_err().to_string();
        assert!(e.contains("bookworm/Packages"), "{e}");
        assert!(e.contains("sha256"), "{e}");
    }
}
