//! Self-contained packages: after a package's build script ran, every dynamically linked
//! ELF file it produced gets its shared-library closure — the C library and the dynamic
//! loader included — copied from the build environment into `tarmac-bundle/` of the
//! package, and is rewritten with `patchelf` to load only those copies:
//!
//! - the program interpreter becomes `/opt/tarmac/packages/<id>/tarmac-bundle/<loader>`.
//!   Package ids are input-addressed (a hash of the build inputs, not of the output), so
//!   the id, and with it the path a host extracts the package to, is known before the build
//!   and writing it into the output creates no cycle;
//! - `DT_RPATH` becomes `$ORIGIN/<relative path to tarmac-bundle>` (after the directories
//!   of libraries the package ships itself). `DT_RPATH`, unlike `DT_RUNPATH`, is searched
//!   before `LD_LIBRARY_PATH` (hosts set `/opt/tarmac/lib`) and is inherited by the whole
//!   closure, so no library ever comes from the host.
//!
//! Libraries are found the way the loader of the build sandbox would find them (see
//! [`Bundler::search_order`]): the requesting object's `DT_RPATH` (and the executable's),
//! the build's `LD_LIBRARY_PATH`, its `DT_RUNPATH`, `/etc/ld.so.cache`, then the loader's
//! default directories, through the sandbox's view of the file system ([`view`]).
//! Static binaries are left alone. Libraries that are only `dlopen`ed (not `DT_NEEDED`)
//! are not bundled; see `docs/packages.md`.

pub mod elf;
pub mod ldcache;
pub mod view;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;

use tarmac_types::Digest;

pub use elf::{ElfError, ElfInfo};
pub use view::View;

/// Where a package's bundled libraries and loader go (a top-level directory, so the
/// copies of different packages never meet in the merged `/opt/tarmac/lib`).
pub const BUNDLE_DIR: &str = "tarmac-bundle";

/// Why a package could not be made self-contained.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error(transparent)]
    Elf(#[from] ElfError),
    #[error("{action} `{path}`")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "`{file}` needs `{library}`{}, which the build environment does not have; searched:\n{}",
        via.as_ref().map(|v| format!(" (through `{v}`)")).unwrap_or_default(),
        searched.iter().map(|s| format!("  {s}")).collect::<Vec<_>>().join("\n")
    )]
    NotFound {
        file: String,
        library: String,
        via: Option<String>,
        searched: Vec<String>,
    },
    #[error(
        "`{file}` has the program interpreter `{interpreter}`, which the build environment does not have (or is not an ELF file of the same machine)"
    )]
    NoInterpreter { file: String, interpreter: String },
    #[error(
        "two different libraries are both named `{name}`: `{first}` (needed by `{first_file}`) and `{second}` (needed by `{second_file}`)"
    )]
    Conflict {
        name: String,
        first: String,
        first_file: String,
        second: String,
        second_file: String,
    },
    #[error(
        "`patchelf {}` failed ({status}):\n{stderr}",
        args.join(" ")
    )]
    Patchelf {
        args: Vec<String>,
        status: String,
        stderr: String,
    },
    #[error("after patchelf, `{file}` has {what} `{found}` instead of `{expected}`")]
    Verify {
        file: String,
        what: &'static str,
        found: String,
        expected: String,
    },
}

impl tarmac_types::error_report::Hint for BundleError {
    fn hint(&self) -> Option<std::borrow::Cow<'_, str>> {
        Some(match self {
            BundleError::NotFound { .. } => "install the library on the build machine, or ship it in the package with a RUNPATH pointing at it; or set \"bundle_libraries\": false in buildinfo.json to ship the file as it is".into(),
            BundleError::NoInterpreter { .. } => "link it for the build machine's loader, or set \"bundle_libraries\": false in buildinfo.json".into(),
            BundleError::Conflict { .. } => format!("a package's ELF files share one {BUNDLE_DIR}/; link them against the same library, or set \"bundle_libraries\": false in buildinfo.json").into(),
            BundleError::Patchelf { .. } => "set \"bundle_libraries\": false in buildinfo.json to ship the file unchanged".into(),
            BundleError::Elf(_) | BundleError::Io { .. } | BundleError::Verify { .. } => return None,
        })
    }
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> BundleError + use<> {
    let path = path.to_owned();
    move |source| BundleError::Io {
        action,
        path,
        source,
    }
}

/// One file of `tarmac-bundle/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Library {
    /// Where it comes from, as the sandbox sees it (every link resolved).
    pub from: PathBuf,
    /// The real file behind `from`.
    pub real: PathBuf,
    /// Another name in the bundle for the same file: this one becomes a link to it.
    pub alias_of: Option<String>,
    /// It has an `RPATH`/`RUNPATH` of its own (which would end the search through the
    /// executable's `RPATH`): the copy gets `RPATH=$ORIGIN`.
    pub fix_rpath: bool,
    /// The package file it was first needed for (for messages).
    pub needed_by: String,
}

/// How one ELF file of the package is rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    /// Path in the package.
    pub path: String,
    /// The new program interpreter (executables).
    pub interpreter: Option<String>,
    /// The new `DT_RPATH` (files that need libraries).
    pub rpath: Option<String>,
}

/// Everything bundling does to one package.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// `tarmac-bundle/<name>` → its source.
    pub libraries: BTreeMap<String, Library>,
    pub rewrites: Vec<Rewrite>,
    /// ELF files that need no loader and no libraries (left alone).
    pub static_files: Vec<String>,
}

impl Plan {
    /// Nothing to copy or rewrite.
    pub fn is_empty(&self) -> bool {
        self.libraries.is_empty() && self.rewrites.is_empty()
    }
}

/// What was bundled (for the build event and `buildinfo.full.json`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// `(name in tarmac-bundle/, where it came from, sha256 of the copy)`; links have
    /// the sha256 of the file they point to.
    pub libraries: Vec<(String, String, Digest)>,
    /// Rewritten package files.
    pub files: Vec<String>,
    /// Static ELF files, left alone.
    pub static_files: Vec<String>,
}

impl Report {
    /// The `bundle` value of `buildinfo.full.json`.
    pub fn to_json(&self) -> serde_json::Value {
        let libs: serde_json::Map<String, serde_json::Value> = self
            .libraries
            .iter()
            .map(|(n, from, sha)| {
                (
                    n.clone(),
                    serde_json::json!({"from": from, "sha256": sha.hex()}),
                )
            })
            .collect();
        serde_json::json!({
            "dir": BUNDLE_DIR,
            "libraries": libs,
            "files": self.files,
            "static": self.static_files,
        })
    }
}

/// `$ORIGIN`-relative path from the package directory `from` to `to` (both relative to
/// the package root, `""` for the root itself): `("bin", "tarmac-bundle")` →
/// `$ORIGIN/../tarmac-bundle`.
pub fn origin_relative(from: &str, to: &str) -> String {
    let split = |s: &str| -> Vec<String> {
        s.split('/')
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let (f, t) = (split(from), split(to));
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut out = String::from("$ORIGIN");
    for _ in common..f.len() {
        out.push_str("/..");
    }
    for c in &t[common..] {
        out.push('/');
        out.push_str(c);
    }
    out
}

/// The loader's compiled-in directories for an object of `info`'s ABI (Debian multiarch
/// first, then the classic ones).
pub fn default_dirs(info: &ElfInfo) -> Vec<String> {
    let triplet = match (info.machine, info.is_64) {
        (62, true) => Some("x86_64-linux-gnu"),
        (3, false) => Some("i386-linux-gnu"),
        (183, true) => Some("aarch64-linux-gnu"),
        _ => None,
    };
    let mut dirs = Vec::new();
    if let Some(t) = triplet {
        dirs.push(format!("/lib/{t}"));
        dirs.push(format!("/usr/lib/{t}"));
    }
    if info.is_64 {
        dirs.push("/lib64".into());
        dirs.push("/usr/lib64".into());
    }
    dirs.push("/lib".into());
    dirs.push("/usr/lib".into());
    dirs
}

/// An object taking part in a closure: where it was loaded from and what it says.
#[derive(Debug, Clone)]
struct Obj {
    /// Sandbox path it was found at (its directory is `$ORIGIN`).
    path: PathBuf,
    info: Rc<ElfInfo>,
}

/// A library found for a name.
#[derive(Debug, Clone)]
struct Hit {
    /// The candidate path that matched (not resolved).
    found_as: PathBuf,
    resolved: view::Found,
}

/// One place to look, with how it reads in an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    Dir { dir: PathBuf, why: String },
    Cache,
}

/// Plans the bundle of one package.
pub struct Bundler {
    view: View,
    /// `/opt/tarmac/packages/<id>` in the sandbox.
    pkg_path: PathBuf,
    /// The build's `LD_LIBRARY_PATH` (sandbox paths).
    ld_library_path: Vec<PathBuf>,
    cache: Result<Vec<ldcache::Entry>, String>,
    infos: HashMap<PathBuf, Rc<ElfInfo>>,
}

impl Bundler {
    /// `ld_library_path`: the build environment's `LD_LIBRARY_PATH`. The loader cache is
    /// read from the view's `/etc/ld.so.cache` (a missing or unreadable cache is listed in
    /// "not found" errors, not fatal).
    pub fn new(view: View, pkg_path: &Path, ld_library_path: &str) -> Bundler {
        let cache = match view.resolve(Path::new("/etc/ld.so.cache")) {
            None => Err("/etc/ld.so.cache does not exist".to_owned()),
            Some(f) => match fs::read(&f.real) {
                Ok(bytes) => ldcache::parse(&bytes).map_err(|e| format!("/etc/ld.so.cache: {e}")),
                Err(e) => Err(format!("cannot read /etc/ld.so.cache: {e}")),
            },
        };
        Bundler {
            view,
            pkg_path: pkg_path.to_owned(),
            ld_library_path: std::env::split_paths(ld_library_path)
                .filter(|p| p.is_absolute())
                .collect(),
            cache,
            infos: HashMap::new(),
        }
    }

    /// The parsed ELF file behind a real path, read once.
    fn info(&mut self, real: &Path) -> Result<Rc<ElfInfo>, BundleError> {
        if let Some(i) = self.infos.get(real) {
            return Ok(i.clone());
        }
        let data = fs::read(real).map_err(io_err("cannot read", real))?;
        let info = Rc::new(elf::parse(real, &data)?);
        self.infos.insert(real.to_owned(), info.clone());
        Ok(info)
    }

    /// Like [`Bundler::info`] for a candidate: `None` unless it is an ELF file.
    fn candidate_info(&mut self, real: &Path) -> Option<Rc<ElfInfo>> {
        if let Some(i) = self.infos.get(real) {
            return Some(i.clone());
        }
        let mut magic = [0u8; 4];
        let mut f = fs::File::open(real).ok()?;
        f.read_exact(&mut magic).ok()?;
        if !elf::is_elf(&magic) {
            return None;
        }
        self.info(real).ok()
    }

    /// Where the loader looks for `DT_NEEDED` entries of `obj` loaded by executable `root`,
    /// in order (glibc's `_dl_map_object`).
    fn search_order(&self, obj: &Obj, root: &Obj) -> Vec<Place> {
        let mut out = Vec::new();
        let expand = |list: &[String], at: &Path, what: &str, out: &mut Vec<Place>| {
            let origin = at.parent().unwrap_or(Path::new("/"));
            for entry in list {
                if entry.is_empty() {
                    continue;
                }
                let e = entry
                    .replace("${ORIGIN}", "$ORIGIN")
                    .replace("$ORIGIN", &origin.to_string_lossy());
                if e.contains('$') || !e.starts_with('/') {
                    continue; // $LIB, $PLATFORM and relative entries: not followed
                }
                out.push(Place::Dir {
                    dir: PathBuf::from(e),
                    why: format!("{what} `{entry}` of {}", at.display()),
                });
            }
        };
        if obj.info.runpath.is_empty() {
            expand(&obj.info.rpath, &obj.path, "RPATH", &mut out);
            if obj.path != root.path && root.info.runpath.is_empty() {
                expand(&root.info.rpath, &root.path, "RPATH", &mut out);
            }
        }
        for d in &self.ld_library_path {
            out.push(Place::Dir {
                dir: d.clone(),
                why: "the build's LD_LIBRARY_PATH".into(),
            });
        }
        expand(&obj.info.runpath, &obj.path, "RUNPATH", &mut out);
        out.push(Place::Cache);
        for d in default_dirs(&obj.info) {
            out.push(Place::Dir {
                dir: d.into(),
                why: "default directory".into(),
            });
        }
        out
    }

    /// Find `name` for `obj` (loaded by `root`); `Err` lists what was searched.
    fn search(&mut self, name: &str, obj: &Obj, root: &Obj) -> Result<Hit, Vec<String>> {
        let mut searched = Vec::new();
        if name.contains('/') {
            let p = PathBuf::from(name);
            if let Some(h) = self.accept(&p, obj) {
                return Ok(h);
            }
            searched.push(format!("{name} (a path)"));
            return Err(searched);
        }
        for place in self.search_order(obj, root) {
            match place {
                Place::Dir { dir, why } => {
                    if let Some(h) = self.accept(&dir.join(name), obj) {
                        return Ok(h);
                    }
                    searched.push(format!("{} ({why})", dir.display()));
                }
                Place::Cache => {
                    let values: Vec<String> = match &self.cache {
                        Ok(entries) => entries
                            .iter()
                            .filter(|e| e.key == name && e.is_plain_libc6())
                            .map(|e| e.value.clone())
                            .collect(),
                        Err(why) => {
                            searched.push(format!("ld.so.cache: {why}"));
                            continue;
                        }
                    };
                    for v in &values {
                        if let Some(h) = self.accept(Path::new(v), obj) {
                            return Ok(h);
                        }
                    }
                    searched.push(if values.is_empty() {
                        "/etc/ld.so.cache (no entry)".to_owned()
                    } else {
                        format!("/etc/ld.so.cache ({}: none usable)", values.join(", "))
                    });
                }
            }
        }
        Err(searched)
    }

    /// `candidate` if it exists in the sandbox and is an ELF file `obj` can load.
    fn accept(&mut self, candidate: &Path, obj: &Obj) -> Option<Hit> {
        let resolved = self.view.resolve(candidate)?;
        if !fs::metadata(&resolved.real).is_ok_and(|m| m.is_file()) {
            return None;
        }
        let info = self.candidate_info(&resolved.real)?;
        info.same_abi(&obj.info).then(|| Hit {
            found_as: candidate.to_owned(),
            resolved,
        })
    }

    /// Package path (relative) of a sandbox path inside the package, if it is inside.
    fn in_package(&self, p: &Path) -> Option<String> {
        p.strip_prefix(&self.pkg_path)
            .ok()
            .map(|r| r.to_string_lossy().into_owned())
    }

    /// The bundle plan for the package's ELF files (`(package path, info)`, in package
    /// order).
    pub fn plan(&mut self, files: &[(String, ElfInfo)]) -> Result<Plan, BundleError> {
        let mut plan = Plan::default();
        for (rel, info) in files {
            if !info.is_loadable() {
                continue;
            }
            if info.is_static() {
                plan.static_files.push(rel.clone());
                continue;
            }
            let root = Obj {
                path: self.pkg_path.join(rel),
                info: Rc::new(info.clone()),
            };
            // every name the loader matches without a search: names looked up, sonames
            let mut loaded: HashSet<String> = HashSet::new();
            // names looked up in directories, in order
            let mut looked_up: Vec<(String, Hit, Option<String>)> = Vec::new();
            let mut interpreter = None;
            if let Some(interp) = &info.interpreter {
                let bad = || BundleError::NoInterpreter {
                    file: rel.clone(),
                    interpreter: interp.clone(),
                };
                let candidate = PathBuf::from(interp);
                let hit = self.accept(&candidate, &root).ok_or_else(bad)?;
                let name = candidate
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .ok_or_else(bad)?;
                let li = self.info(&hit.resolved.real)?;
                loaded.insert(name.clone());
                loaded.extend(li.soname.clone());
                // a loader the package ships itself stays as it is
                if self.in_package(&hit.found_as).is_none() {
                    interpreter = Some(format!(
                        "{}/{BUNDLE_DIR}/{name}",
                        self.pkg_path.to_string_lossy()
                    ));
                    looked_up.push((name, hit, None));
                }
            }
            let mut queue: VecDeque<(Obj, Option<String>)> = VecDeque::new();
            queue.push_back((root.clone(), None));
            while let Some((obj, via)) = queue.pop_front() {
                for name in &obj.info.needed {
                    if loaded.contains(name) {
                        continue;
                    }
                    let hit = self.search(name, &obj, &root).map_err(|searched| {
                        BundleError::NotFound {
                            file: rel.clone(),
                            library: name.clone(),
                            via: via.clone(),
                            searched,
                        }
                    })?;
                    let li = self.info(&hit.resolved.real)?;
                    loaded.insert(name.clone());
                    loaded.extend(li.soname.clone());
                    let label = hit.resolved.sandbox.display().to_string();
                    queue.push_back((
                        Obj {
                            path: hit.found_as.clone(),
                            info: li,
                        },
                        Some(label),
                    ));
                    looked_up.push((name.clone(), hit, via.clone()));
                }
            }

            let dir = Path::new(rel)
                .parent()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut rpath: Vec<String> = Vec::new();
            for (name, hit, _) in looked_up {
                if let Some(inside) = self.in_package(&hit.found_as) {
                    let lib_dir = Path::new(&inside)
                        .parent()
                        .map(|p| p.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let entry = origin_relative(&dir, &lib_dir);
                    if !rpath.contains(&entry) {
                        rpath.push(entry);
                    }
                    continue;
                }
                match plan.libraries.get(&name) {
                    Some(l) if l.from == hit.resolved.sandbox => {}
                    Some(l) => {
                        return Err(BundleError::Conflict {
                            name,
                            first: l.from.display().to_string(),
                            first_file: l.needed_by.clone(),
                            second: hit.resolved.sandbox.display().to_string(),
                            second_file: rel.clone(),
                        });
                    }
                    None => {
                        let li = self.info(&hit.resolved.real)?;
                        plan.libraries.insert(
                            name,
                            Library {
                                from: hit.resolved.sandbox,
                                real: hit.resolved.real,
                                alias_of: None,
                                fix_rpath: !li.rpath.is_empty() || !li.runpath.is_empty(),
                                needed_by: rel.clone(),
                            },
                        );
                    }
                }
            }
            let bundle = origin_relative(&dir, BUNDLE_DIR);
            if !info.needed.is_empty() && !rpath.contains(&bundle) {
                rpath.push(bundle);
            }
            plan.rewrites.push(Rewrite {
                path: rel.clone(),
                interpreter,
                rpath: (!info.needed.is_empty()).then(|| rpath.join(":")),
            });
        }
        // One copy per file: later names (in name order) of the same file link to the first.
        let mut first: BTreeMap<PathBuf, String> = BTreeMap::new();
        for (name, lib) in plan.libraries.iter_mut() {
            match first.get(&lib.from) {
                Some(f) => lib.alias_of = Some(f.clone()),
                None => {
                    first.insert(lib.from.clone(), name.clone());
                }
            }
        }
        Ok(plan)
    }
}

/// Every loadable ELF file below `result` (the package output), in package order.
pub fn scan(result: &Path) -> Result<Vec<(String, ElfInfo)>, BundleError> {
    let entries = tarmac_pkg::pack::walk(result).map_err(|e| BundleError::Io {
        action: "cannot list",
        path: result.to_owned(),
        source: io::Error::other(e.to_string()),
    })?;
    let mut out = Vec::new();
    for e in entries {
        if !matches!(e.kind, tarmac_pkg::pack::EntryKind::File { size, .. } if size >= 4) {
            continue;
        }
        let p = result.join(&e.path);
        let mut magic = [0u8; 4];
        fs::File::open(&p)
            .and_then(|mut f| f.read_exact(&mut magic))
            .map_err(io_err("cannot read", &p))?;
        if !elf::is_elf(&magic) {
            continue;
        }
        let data = fs::read(&p).map_err(io_err("cannot read", &p))?;
        let info = elf::parse(Path::new(&e.path), &data)?;
        if info.is_loadable() {
            out.push((e.path, info));
        }
    }
    Ok(out)
}

/// Run `patchelf args…`; its stderr goes into the error.
fn patchelf(program: &Path, args: &[String]) -> Result<(), BundleError> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(io_err("cannot run", program))?;
    if out.status.success() {
        return Ok(());
    }
    Err(BundleError::Patchelf {
        args: args.to_vec(),
        status: out.status.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    })
}

/// Run `f` on `file` with its owner-write bit set, then restore its mode.
fn writable<T>(file: &Path, f: impl FnOnce() -> Result<T, BundleError>) -> Result<T, BundleError> {
    let mode = fs::metadata(file)
        .map_err(io_err("cannot stat", file))?
        .permissions()
        .mode();
    if mode & 0o200 == 0 {
        fs::set_permissions(file, fs::Permissions::from_mode(mode | 0o200))
            .map_err(io_err("cannot chmod", file))?;
    }
    let r = f();
    fs::set_permissions(file, fs::Permissions::from_mode(mode))
        .map_err(io_err("cannot chmod", file))?;
    r
}

/// Carry out `plan` in the package output `result` with the `patchelf` at `program`,
/// then check every rewritten file.
pub fn apply(plan: &Plan, result: &Path, program: &Path) -> Result<Report, BundleError> {
    let mut report = Report {
        static_files: plan.static_files.clone(),
        ..Report::default()
    };
    if plan.is_empty() {
        return Ok(report);
    }
    let dir = result.join(BUNDLE_DIR);
    fs::create_dir(&dir).map_err(io_err("cannot create", &dir))?;
    let mut digests: BTreeMap<&str, Digest> = BTreeMap::new();
    for (name, lib) in plan.libraries.iter().filter(|(_, l)| l.alias_of.is_none()) {
        let dest = dir.join(name);
        fs::copy(&lib.real, &dest).map_err(io_err("cannot copy", &lib.real))?;
        // the loader must be executable (the kernel opens it like a program); the rest
        // keep their exec bit, without any write or special bits
        let src_mode = fs::metadata(&lib.real)
            .map_err(io_err("cannot stat", &lib.real))?
            .permissions()
            .mode();
        let mode = if src_mode & 0o111 != 0 { 0o755 } else { 0o644 };
        fs::set_permissions(&dest, fs::Permissions::from_mode(mode))
            .map_err(io_err("cannot chmod", &dest))?;
        if lib.fix_rpath {
            let d = dest.to_string_lossy().into_owned();
            writable(&dest, || {
                patchelf(
                    program,
                    &[
                        "--force-rpath".into(),
                        "--set-rpath".into(),
                        "$ORIGIN".into(),
                        d,
                    ],
                )
            })?;
        }
        digests.insert(
            name,
            Digest::of_file(&dest).map_err(io_err("cannot hash", &dest))?,
        );
    }
    for (name, lib) in &plan.libraries {
        if let Some(target) = &lib.alias_of {
            let link = dir.join(name);
            symlink(target, &link).map_err(io_err("cannot link", &link))?;
        }
        let sha = digests[lib.alias_of.as_deref().unwrap_or(name)];
        report
            .libraries
            .push((name.clone(), lib.from.display().to_string(), sha));
    }
    for rw in &plan.rewrites {
        let file = result.join(&rw.path);
        let mut args = Vec::new();
        if let Some(i) = &rw.interpreter {
            args.extend(["--set-interpreter".to_owned(), i.clone()]);
        }
        if let Some(r) = &rw.rpath {
            args.extend(["--force-rpath".to_owned(), "--set-rpath".into(), r.clone()]);
        }
        args.push(file.to_string_lossy().into_owned());
        writable(&file, || patchelf(program, &args))?;
        verify(&file, rw)?;
        report.files.push(rw.path.clone());
    }
    Ok(report)
}

/// The rewritten file says what `rw` wanted.
fn verify(file: &Path, rw: &Rewrite) -> Result<(), BundleError> {
    let data = fs::read(file).map_err(io_err("cannot read", file))?;
    let info = elf::parse(Path::new(&rw.path), &data)?;
    let bad = |what, found: String, expected: &str| BundleError::Verify {
        file: rw.path.clone(),
        what,
        found,
        expected: expected.to_owned(),
    };
    if let Some(i) = &rw.interpreter
        && info.interpreter.as_deref() != Some(i.as_str())
    {
        return Err(bad(
            "the interpreter",
            info.interpreter.unwrap_or_default(),
            i,
        ));
    }
    if let Some(r) = &rw.rpath {
        let found = info.rpath.join(":");
        if found != *r || !info.runpath.is_empty() {
            return Err(bad(
                "RPATH",
                format!("{found} (RUNPATH {})", info.runpath.join(":")),
                r,
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_relative_paths() {
        for (from, to, want) in [
            ("bin", BUNDLE_DIR, "$ORIGIN/../tarmac-bundle"),
            ("bin_master", BUNDLE_DIR, "$ORIGIN/../tarmac-bundle"),
            ("", BUNDLE_DIR, "$ORIGIN/tarmac-bundle"),
            ("lib/x/y", BUNDLE_DIR, "$ORIGIN/../../../tarmac-bundle"),
            ("lib", "lib", "$ORIGIN"),
            ("a/b", "a/c", "$ORIGIN/../c"),
            ("a", "a/b", "$ORIGIN/b"),
            ("lib", "", "$ORIGIN/.."),
        ] {
            assert_eq!(origin_relative(from, to), want, "{from} -> {to}");
        }
    }

    #[test]
    fn default_directories_by_abi() {
        let x86_64 = ElfInfo {
            is_64: true,
            machine: 62,
            ..ElfInfo::default()
        };
        assert_eq!(
            default_dirs(&x86_64),
            [
                "/lib/x86_64-linux-gnu",
                "/usr/lib/x86_64-linux-gnu",
                "/lib64",
                "/usr/lib64",
                "/lib",
                "/usr/lib"
            ]
        );
        let riscv32 = ElfInfo {
            is_64: false,
            machine: 243,
            ..ElfInfo::default()
        };
        assert_eq!(default_dirs(&riscv32), ["/lib", "/usr/lib"]);
    }

    #[test]
    fn the_search_order_follows_the_loader() {
        let d = tempfile::tempdir().unwrap();
        let view = View::new([("/usr".into(), d.path().to_owned())]);
        let b = Bundler::new(
            view,
            Path::new("/opt/tarmac/packages/p--1"),
            "/opt/tarmac/lib",
        );
        let obj = |path: &str, rpath: &[&str], runpath: &[&str]| Obj {
            path: path.into(),
            info: Rc::new(ElfInfo {
                is_64: true,
                machine: 62,
                rpath: rpath.iter().map(|s| s.to_string()).collect(),
                runpath: runpath.iter().map(|s| s.to_string()).collect(),
                ..ElfInfo::default()
            }),
        };
        let text = |places: Vec<Place>| -> Vec<String> {
            places
                .into_iter()
                .map(|p| match p {
                    Place::Dir { dir, why } => format!("{} ({why})", dir.display()),
                    Place::Cache => "cache".into(),
                })
                .collect()
        };
        let exe = obj(
            "/opt/tarmac/packages/p--1/bin/app",
            &["$ORIGIN/../lib", "", "/x/$PLATFORM"],
            &[],
        );
        let lib = obj("/usr/lib/libq.so.1", &["/rp"], &[]);
        assert_eq!(
            text(b.search_order(&lib, &exe)),
            [
                "/rp (RPATH `/rp` of /usr/lib/libq.so.1)",
                "/opt/tarmac/packages/p--1/bin/../lib (RPATH `$ORIGIN/../lib` of /opt/tarmac/packages/p--1/bin/app)",
                "/opt/tarmac/lib (the build's LD_LIBRARY_PATH)",
                "cache",
                "/lib/x86_64-linux-gnu (default directory)",
                "/usr/lib/x86_64-linux-gnu (default directory)",
                "/lib64 (default directory)",
                "/usr/lib64 (default directory)",
                "/lib (default directory)",
                "/usr/lib (default directory)",
            ]
        );
        // a RUNPATH replaces every RPATH and comes after LD_LIBRARY_PATH
        let lib = obj("/usr/lib/libr.so.1", &["/rp"], &["${ORIGIN}/r"]);
        assert_eq!(
            text(b.search_order(&lib, &exe))[..3],
            [
                "/opt/tarmac/lib (the build's LD_LIBRARY_PATH)",
                "/usr/lib/r (RUNPATH `${ORIGIN}/r` of /usr/lib/libr.so.1)",
                "cache",
            ]
        );
    }
}
