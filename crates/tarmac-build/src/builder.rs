//! Planning (ids), parallel sandboxed builds, and packing.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, BufRead, Write};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use serde_json::{Value, json};
use tarmac_events::{BuildPhase, Event, Level, Sink, millis};
use tarmac_pkg::pack::{self, PackOptions};
use tarmac_types::{Digest, PackageId, PackageName};

use crate::hash::{canonical_json, pretty_json, tree_digest};
use crate::sandbox::{self, SandboxSpec};
use crate::sources::{SourceCache, source_checksum};
use crate::tree::{Plan, Tree};
use crate::{BUILDER_FORMAT, BuildError, RESERVED_FILES, RESERVED_UNITS, io_err};

/// What to build and where.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The tree (holds `treeinfo.json` and `packages/`).
    pub tree: PathBuf,
    /// Output directory (packages, bootstrap, manifest, logs).
    pub out: PathBuf,
    /// Source cache (downloads, debs, git mirrors).
    pub cache: PathBuf,
    /// Packages to build; empty = the whole tree plus bootstrap and manifest.
    pub names: Vec<PackageName>,
    /// With `names`: build missing dependencies too.
    pub recursive: bool,
    /// Sign the manifest with this ed25519 secret key (PKCS#8 PEM).
    pub sign_key: Option<PathBuf>,
    /// Parallel builds.
    pub jobs: usize,
    /// Variables for `local` sources' `env` overrides (the CLI passes its environment).
    pub vars: BTreeMap<String, String>,
    /// Compression of packages.
    pub pack: PackOptions,
    /// zstd level of the bootstrap archive (its members are already compressed).
    pub bootstrap_level: i32,
    /// Keep the work directory of failed builds for debugging.
    pub keep_work: bool,
}

impl BuildOptions {
    pub fn new(tree: impl Into<PathBuf>, cache: impl Into<PathBuf>) -> BuildOptions {
        let tree = tree.into();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        BuildOptions {
            out: tree.join("out"),
            tree,
            cache: cache.into(),
            names: Vec::new(),
            recursive: false,
            sign_key: None,
            jobs: cores,
            vars: BTreeMap::new(),
            pack: PackOptions::default(),
            bootstrap_level: 3,
            keep_work: false,
        }
    }
}

/// One package of a build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageReport {
    pub id: PackageId,
    pub variant: Option<String>,
    /// `<out>/packages/<name>/<id>.tar.zst`
    pub path: PathBuf,
    pub sha256: Digest,
    pub size: u64,
    /// False when the package was already built (cache hit).
    pub built: bool,
    pub duration_ms: u64,
}

#[derive(Debug, Clone)]
pub struct BuildReport {
    pub packages: Vec<PackageReport>,
    pub bootstrap: Option<crate::bootstrap::BootstrapReport>,
    pub duration_ms: u64,
}

/// The id of a package and the document it was hashed from.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub id: PackageId,
    /// The hash input (recorded as `build_ids` in buildinfo.full.json).
    pub build_ids: Value,
}

/// Compute every package id of the plan, dependencies first. Only `local` sources are
/// read; nothing is fetched.
pub fn compute_ids(
    plan: &Plan,
    vars: &BTreeMap<String, String>,
) -> Result<BTreeMap<PackageName, Resolved>, BuildError> {
    let mut out: BTreeMap<PackageName, Resolved> = BTreeMap::new();
    for name in &plan.order {
        let node = &plan.nodes[name];
        let bi = &node.buildinfo;
        let mut sources = serde_json::Map::new();
        for (sname, spec) in &bi.sources {
            let checksum =
                source_checksum(spec, &node.dir, vars).map_err(|source| BuildError::Source {
                    package: name.to_string(),
                    source_name: sname.clone(),
                    source,
                })?;
            sources.insert(
                sname.clone(),
                json!({"spec": spec.to_json(), "checksum": checksum}),
            );
        }
        // what the host will accept (tarmac-pkg's pkginfo rules)
        let pkginfo = pretty_json(&pkginfo_for(node));
        let origin = node.buildinfo_path.display().to_string();
        tarmac_pkg::PkgInfo::parse(&pkginfo, &origin).map_err(|e| BuildError::BadOutput {
            id: name.to_string(),
            problem: format!("its pkginfo.json would be refused by hosts: {e}"),
        })?;
        let script = node.dir.join(&bi.build_script);
        if !script.is_file() {
            return Err(BuildError::NoBuildScript {
                package: name.to_string(),
                script: bi.build_script.clone(),
                dir: node.dir.clone(),
            });
        }
        let hash_err = |source| BuildError::Hash {
            package: name.to_string(),
            source,
        };
        let extra = node.dir.join("extra");
        let extra = if extra.is_dir() {
            Value::String(tree_digest(&extra).map_err(hash_err)?.hex())
        } else {
            Value::Null
        };
        let requires: Vec<String> = plan
            .deps_closure(name)
            .iter()
            .map(|d| out[d].id.to_string())
            .collect();
        let build_ids = json!({
            "builder": BUILDER_FORMAT,
            "name": name.as_str(),
            "variant": node.variant.clone().unwrap_or_default(),
            "package_dir": tree_digest(&node.dir).map_err(hash_err)?.hex(),
            "buildinfo": Digest::of(&node.buildinfo_bytes).hex(),
            "build_script": Digest::of_file(&script).map_err(io_err("cannot hash", &script))?.hex(),
            "extra": extra,
            "sources": sources,
            "requires": requires,
        });
        let version = Digest::of(canonical_json(&build_ids).as_bytes()).hex();
        let id = PackageId::from_parts(name, &version).expect("hex version is valid");
        out.insert(name.clone(), Resolved { id, build_ids });
    }
    Ok(out)
}

/// The `pkginfo.json` a node's package gets.
fn pkginfo_for(node: &crate::tree::Node) -> Value {
    let mut v = node.buildinfo.pkginfo_json();
    if let Some(variant) = &node.variant {
        v["variant"] = variant.clone().into();
    }
    v
}

/// The special top-level directories of a built tree, sorted: what `pkginfo.json` declares
/// so that a host whose roles use none of them can keep the package as an archive without
/// reading the rest of it (the host checks the claim whenever it extracts the package).
fn special_dirs(tree: &Path) -> Result<Vec<String>, BuildError> {
    let mut out = Vec::new();
    for e in fs::read_dir(tree).map_err(io_err("cannot read", tree))? {
        let e = e.map_err(io_err("cannot read", tree))?;
        if let Some(name) = e.file_name().to_str()
            && tarmac_pkg::layout::SpecialDir::classify(name).is_some()
        {
            out.push(name.to_owned());
        }
    }
    out.sort();
    Ok(out)
}

pub(crate) fn package_file(out: &Path, id: &PackageId) -> PathBuf {
    out.join(tarmac_pkg::manifest::package_path(id))
}

/// Build what changed. See the crate docs for the output layout.
pub fn build(opts: &BuildOptions, sink: Sink) -> Result<BuildReport, BuildError> {
    let started = Instant::now();
    let tree = Tree::load(&opts.tree)?;
    let plan = tree.plan()?;
    let ids = compute_ids(&plan, &opts.vars)?;

    fs::create_dir_all(&opts.out).map_err(io_err("cannot create", &opts.out))?;
    let _lock = lock_out(&opts.out, &sink)?;
    // Leftovers of an interrupted run (we hold the lock, so nobody is using them).
    let _ = fs::remove_dir_all(opts.out.join(".work"));

    // What this run must provide.
    let all_names: Vec<String> = plan.nodes.keys().map(|n| n.to_string()).collect();
    let targets: BTreeSet<PackageName> = if opts.names.is_empty() {
        plan.nodes.keys().cloned().collect()
    } else {
        for n in &opts.names {
            if !plan.nodes.contains_key(n) {
                return Err(BuildError::UnknownPackage {
                    name: n.to_string(),
                    suggestion: crate::buildinfo::suggest(
                        n.as_str(),
                        all_names.iter().map(String::as_str),
                    ),
                });
            }
        }
        if opts.recursive {
            plan.closure(opts.names.iter())
        } else {
            opts.names.iter().cloned().collect()
        }
    };
    // Dependencies outside the targets must already exist.
    for t in &targets {
        for d in plan.deps_closure(t) {
            if !targets.contains(&d) && !package_file(&opts.out, &ids[&d].id).is_file() {
                return Err(BuildError::MissingDependency {
                    package: t.to_string(),
                    dependency: d.to_string(),
                    id: ids[&d].id.to_string(),
                });
            }
        }
    }

    let mut reports: BTreeMap<PackageName, PackageReport> = BTreeMap::new();
    let mut to_build: BTreeSet<PackageName> = BTreeSet::new();
    for name in &targets {
        let id = &ids[name].id;
        let file = package_file(&opts.out, id);
        if file.is_file() {
            let t = Instant::now();
            let sha256 = Digest::of_file(&file).map_err(io_err("cannot hash", &file))?;
            let size = fs::metadata(&file)
                .map_err(io_err("cannot stat", &file))?
                .len();
            check_record(&opts.out, id, sha256, size, &file)?;
            sink.emit(Event::PackageBuild {
                name: name.to_string(),
                phase: BuildPhase::CacheHit { id: id.clone() },
            });
            reports.insert(
                name.clone(),
                PackageReport {
                    id: id.clone(),
                    variant: plan.nodes[name].variant.clone(),
                    path: file,
                    sha256,
                    size,
                    built: false,
                    duration_ms: millis(t.elapsed()),
                },
            );
        } else {
            to_build.insert(name.clone());
        }
    }

    if !to_build.is_empty() {
        let bwrap = sandbox::ensure_bwrap().map_err(BuildError::Sandbox)?;
        let ctx = Ctx {
            opts,
            plan: &plan,
            ids: &ids,
            sink: &sink,
            bwrap,
            cache: SourceCache::new(&opts.cache),
            host: sandbox::host_entries(Path::new("/")),
        };
        let built = run_parallel(&ctx, &to_build)?;
        reports.extend(built);
    }

    let bootstrap = if opts.names.is_empty() {
        Some(crate::bootstrap::make(opts, &tree, &plan, &reports, &sink)?)
    } else {
        None
    };
    let packages = plan
        .order
        .iter()
        .filter_map(|n| reports.remove(n))
        .collect();
    Ok(BuildReport {
        packages,
        bootstrap,
        duration_ms: millis(started.elapsed()),
    })
}

/// Exclusive lock on `<out>/.lock` for the whole run.
fn lock_out(out: &Path, sink: &Sink) -> Result<File, BuildError> {
    let path = out.join(".lock");
    let f = File::create(&path).map_err(io_err("cannot create", &path))?;
    if !tarmac_fsx::lock_exclusive(&f, false).map_err(io_err("cannot lock", &path))? {
        sink.emit(Event::Notice {
            level: Level::Info,
            message: format!("waiting for another build holding {}", path.display()),
        });
        tarmac_fsx::lock_exclusive(&f, true).map_err(io_err("cannot lock", &path))?;
    }
    Ok(f)
}

struct Ctx<'a> {
    opts: &'a BuildOptions,
    plan: &'a Plan,
    ids: &'a BTreeMap<PackageName, Resolved>,
    sink: &'a Sink,
    bwrap: PathBuf,
    cache: SourceCache,
    host: Vec<sandbox::HostEntry>,
}

#[derive(Default)]
struct Sched {
    pending: BTreeSet<PackageName>,
    running: usize,
    done: BTreeMap<PackageName, PackageReport>,
    errors: Vec<BuildError>,
}

/// Build `to_build` with up to `jobs` threads; a package starts when all its
/// dependencies in the set are done. The first failure stops new starts.
fn run_parallel(
    ctx: &Ctx<'_>,
    to_build: &BTreeSet<PackageName>,
) -> Result<BTreeMap<PackageName, PackageReport>, BuildError> {
    let state = Mutex::new(Sched {
        pending: to_build.clone(),
        ..Default::default()
    });
    let cv = Condvar::new();
    let jobs = ctx.opts.jobs.max(1).min(to_build.len());
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| {
                loop {
                    let next = {
                        let mut st = state.lock().expect("scheduler poisoned");
                        loop {
                            if !st.errors.is_empty() || (st.pending.is_empty()) {
                                break None;
                            }
                            let ready =
                                st.pending
                                    .iter()
                                    .find(|n| {
                                        ctx.plan.nodes[*n].deps.iter().all(|d| {
                                            !to_build.contains(d) || st.done.contains_key(d)
                                        })
                                    })
                                    .cloned();
                            if let Some(n) = ready {
                                st.pending.remove(&n);
                                st.running += 1;
                                break Some(n);
                            }
                            if st.running == 0 {
                                break None; // nothing can make progress
                            }
                            st = cv.wait(st).expect("scheduler poisoned");
                        }
                    };
                    let Some(name) = next else {
                        cv.notify_all();
                        return;
                    };
                    let res = build_one(ctx, &name);
                    let mut st = state.lock().expect("scheduler poisoned");
                    st.running -= 1;
                    match res {
                        Ok(r) => {
                            st.done.insert(name, r);
                        }
                        Err(e) => {
                            ctx.sink.emit(Event::PackageBuild {
                                name: name.to_string(),
                                phase: BuildPhase::Failed {
                                    message: first_line(&e),
                                },
                            });
                            st.errors.push(e);
                        }
                    }
                    cv.notify_all();
                }
            });
        }
    });
    let mut st = state.into_inner().expect("scheduler poisoned");
    if !st.errors.is_empty() {
        return Err(st.errors.remove(0));
    }
    Ok(st.done)
}

fn first_line(e: &BuildError) -> String {
    e.to_string().lines().next().unwrap_or_default().to_owned()
}

/// Fetch, build in the sandbox, validate, pack. Nothing is left behind on failure
/// except the log.
fn build_one(ctx: &Ctx<'_>, name: &PackageName) -> Result<PackageReport, BuildError> {
    let started = Instant::now();
    let opts = ctx.opts;
    let node = &ctx.plan.nodes[name];
    let resolved = &ctx.ids[name];
    let id = &resolved.id;
    let work_root = opts.out.join(".work");
    fs::create_dir_all(&work_root).map_err(io_err("cannot create", &work_root))?;
    let work = tempfile::Builder::new()
        .prefix(&format!("{name}-"))
        .tempdir_in(&work_root)
        .map_err(io_err("cannot create a work directory in", &work_root))?;
    let result = (|| {
        ctx.sink.emit(Event::PackageBuild {
            name: name.to_string(),
            phase: BuildPhase::Fetching,
        });
        let src = work.path().join("src");
        fs::create_dir(&src).map_err(io_err("cannot create", &src))?;
        for (sname, spec) in &node.buildinfo.sources {
            ctx.cache
                .checkout(
                    spec,
                    &format!("{name}/{sname}"),
                    &node.dir,
                    &opts.vars,
                    &src.join(sname),
                    ctx.sink,
                )
                .map_err(|source| BuildError::Source {
                    package: name.to_string(),
                    source_name: sname.clone(),
                    source,
                })?;
        }
        let root = work.path().join("root");
        let deps: Vec<PackageId> = ctx
            .plan
            .deps_closure(name)
            .iter()
            .map(|d| ctx.ids[d].id.clone())
            .collect();
        install_root(&opts.out, &root, &deps, id)?;
        let result = work.path().join("result");
        fs::create_dir(&result).map_err(io_err("cannot create", &result))?;

        ctx.sink.emit(Event::PackageBuild {
            name: name.to_string(),
            phase: BuildPhase::Building { id: id.clone() },
        });
        let logs = opts.out.join("logs");
        fs::create_dir_all(&logs).map_err(io_err("cannot create", &logs))?;
        let log = logs.join(format!("{id}.log"));
        let pkg_path = format!("/opt/tarmac/packages/{id}");
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let extra = node.dir.join("extra");
        let spec = SandboxSpec {
            host: ctx.host.clone(),
            install_root: root.clone(),
            result: result.clone(),
            pkg_path: pkg_path.clone(),
            src: src.clone(),
            pkg_dir: node.dir.clone(),
            extra: extra.is_dir().then_some(extra),
            script: node.buildinfo.build_script.clone(),
            env: sandbox::build_env(
                name.as_str(),
                id.version(),
                &id.to_string(),
                &pkg_path,
                node.variant.as_deref(),
                cores,
            ),
            user_namespace: !is_root(),
        };
        run_sandbox(&ctx.bwrap, &spec, &log, id)?;

        validate_output(&result, id)?;
        let bi = &node.buildinfo;
        let bundled = if bi.bundle_libraries {
            Some(bundle_package(ctx, name, id, &root, &pkg_path, &result)?)
        } else {
            None
        };
        let write = |file: &str, v: &Value| -> Result<(), BuildError> {
            let p = result.join(file);
            fs::write(&p, pretty_json(v)).map_err(io_err("cannot write", &p))
        };
        let mut pkginfo = pkginfo_for(node);
        pkginfo["special_dirs"] = special_dirs(&result)?.into();
        write("pkginfo.json", &pkginfo)?;
        let sources: serde_json::Map<String, Value> = bi
            .sources
            .iter()
            .map(|(k, spec)| {
                let mut v = spec.to_json();
                v["checksum"] = resolved.build_ids["sources"][k]["checksum"].clone();
                (k.clone(), v)
            })
            .collect();
        write(
            "buildinfo.full.json",
            &json!({
                "name": name.as_str(),
                "variant": node.variant,
                "package_version": id.version(),
                "package_id": id.to_string(),
                "build_ids": resolved.build_ids,
                "sources": sources,
                "bundle": bundled.as_ref().map(crate::bundle::Report::to_json),
            }),
        )?;
        pack::write_file_list(&result)?;
        let file = package_file(&opts.out, id);
        let dir = file.parent().expect("package file has a parent");
        fs::create_dir_all(dir).map_err(io_err("cannot create", dir))?;
        let packed = pack::pack_dir(&result, &file, &opts.pack)?;
        write_record(&opts.out, id, packed.sha256, packed.size)?;
        Ok(PackageReport {
            id: id.clone(),
            variant: node.variant.clone(),
            path: file,
            sha256: packed.sha256,
            size: packed.size,
            built: true,
            duration_ms: millis(started.elapsed()),
        })
    })();
    match &result {
        Ok(r) => ctx.sink.emit(Event::PackageBuild {
            name: name.to_string(),
            phase: BuildPhase::Built {
                id: id.clone(),
                duration_ms: r.duration_ms,
            },
        }),
        Err(_) if opts.keep_work => {
            let kept = work.keep();
            ctx.sink.emit(Event::Notice {
                level: Level::Info,
                message: format!("kept the work directory of {id}: {}", kept.display()),
            });
        }
        Err(_) => {}
    }
    result
}

/// Make the package output `result` self-contained ([`crate::bundle`]) and report it.
fn bundle_package(
    ctx: &Ctx<'_>,
    name: &PackageName,
    id: &PackageId,
    root: &Path,
    pkg_path: &str,
    result: &Path,
) -> Result<crate::bundle::Report, BuildError> {
    use crate::bundle::{self, Bundler, View};
    let wrap = |source| BuildError::Bundle {
        id: id.to_string(),
        source,
    };
    let files = bundle::scan(result).map_err(wrap)?;
    if files.is_empty() {
        return Ok(bundle::Report::default());
    }
    let pkg_path = Path::new(pkg_path);
    let view = View::for_build(&ctx.host, root, pkg_path, result);
    let plan = Bundler::new(view, pkg_path, sandbox::LD_LIBRARY_PATH)
        .plan(&files)
        .map_err(wrap)?;
    let patchelf = if plan.is_empty() {
        PathBuf::new()
    } else {
        sandbox::ensure_patchelf().map_err(BuildError::Sandbox)?
    };
    let report = bundle::apply(&plan, result, &patchelf).map_err(wrap)?;
    ctx.sink.emit(Event::PackageBuild {
        name: name.to_string(),
        phase: BuildPhase::Bundled {
            id: id.clone(),
            libraries: report.libraries.iter().map(|l| l.0.clone()).collect(),
            files: report.files.clone(),
            static_files: report.static_files.clone(),
        },
    });
    Ok(report)
}

/// `<out>/.records/<id>.json`: digest and size of a package as built, so a package file
/// changed after its build is never signed into a manifest.
fn record_path(out: &Path, id: &PackageId) -> PathBuf {
    out.join(".records").join(format!("{id}.json"))
}

fn write_record(out: &Path, id: &PackageId, sha256: Digest, size: u64) -> Result<(), BuildError> {
    let path = record_path(out, id);
    let dir = path.parent().expect("record has a parent");
    fs::create_dir_all(dir).map_err(io_err("cannot create", dir))?;
    let v = json!({"id": id.to_string(), "sha256": sha256.hex(), "size": size});
    pack::write_file_atomic(&path, &pretty_json(&v), 0o644)?;
    Ok(())
}

fn check_record(
    out: &Path,
    id: &PackageId,
    sha256: Digest,
    size: u64,
    file: &Path,
) -> Result<(), BuildError> {
    let path = record_path(out, id);
    let Ok(bytes) = fs::read(&path) else {
        // built by an older tarmac or copied in: adopt it
        return write_record(out, id, sha256, size);
    };
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if v["sha256"].as_str() != Some(sha256.hex().as_str()) || v["size"].as_u64() != Some(size) {
        return Err(BuildError::ChangedOutput {
            id: id.to_string(),
            file: file.to_owned(),
            recorded: v["sha256"].as_str().unwrap_or("?").to_owned(),
            now: sha256.to_string(),
        });
    }
    Ok(())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn run_sandbox(
    bwrap: &Path,
    spec: &SandboxSpec,
    log: &Path,
    id: &PackageId,
) -> Result<(), BuildError> {
    let mut f = File::create(log).map_err(io_err("cannot create", log))?;
    writeln!(
        f,
        "# tarmac build {id}\n# sandbox: {} {}",
        bwrap.display(),
        sandbox::bwrap_args(spec)
            .iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    )
    .map_err(io_err("cannot write", log))?;
    let err = f.try_clone().map_err(io_err("cannot write", log))?;
    let status = Command::new(bwrap)
        .args(sandbox::bwrap_args(spec))
        .stdin(Stdio::null())
        .stdout(Stdio::from(f))
        .stderr(Stdio::from(err))
        .status()
        .map_err(io_err("cannot run", bwrap))?;
    if status.success() {
        return Ok(());
    }
    let text = File::open(log)
        .map(|f| {
            io::BufReader::new(f)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let tail = text[text.len().saturating_sub(25)..]
        .iter()
        .map(|l| format!("  | {l}"))
        .collect::<Vec<_>>()
        .join("\n");
    Err(BuildError::ScriptFailed {
        id: id.to_string(),
        status: status.to_string(),
        log: log.to_owned(),
        tail,
    })
}

/// Refuse outputs a host would refuse, or that collide with builder-written files.
fn validate_output(result: &Path, id: &PackageId) -> Result<(), BuildError> {
    let bad = |problem: String| BuildError::BadOutput {
        id: id.to_string(),
        problem,
    };
    let entries = pack::walk(result).map_err(|e| bad(e.to_string()))?;
    for e in &entries {
        let top = e.path.split('/').next().unwrap_or_default();
        if RESERVED_FILES.contains(&top) {
            return Err(bad(format!(
                "`{top}` is written by the builder or the host; the build script must not create it"
            )));
        }
        if let Some((dir, unit)) = e.path.split_once('/') {
            let (base, _) = tarmac_types::Role::split_dir(dir);
            if base == "systemd"
                && (RESERVED_UNITS.contains(&unit) || unit.starts_with(crate::RESERVED_UNIT_PREFIX))
            {
                return Err(bad(format!(
                    "`{}` uses a reserved unit name ({})",
                    e.path,
                    RESERVED_UNITS.join(", ")
                )));
            }
        }
    }
    if entries.is_empty() {
        return Err(bad("the build script put nothing into $PKG_PATH".into()));
    }
    Ok(())
}

/// Assemble `/opt/tarmac` for a build: dependencies extracted under `packages/<id>`,
/// their `bin lib etc include` merged as symlinks, `active/<name>` links, environment
/// files, and an empty mount point for the package being built.
fn install_root(
    out: &Path,
    root: &Path,
    deps: &[PackageId],
    own: &PackageId,
) -> Result<(), BuildError> {
    let pkgs = root.join("packages");
    fs::create_dir_all(pkgs.join(own.to_string())).map_err(io_err("cannot create", &pkgs))?;
    fs::create_dir_all(root.join("active")).map_err(io_err("cannot create", root))?;
    for d in ["bin", "lib", "etc", "include"] {
        fs::create_dir_all(root.join(d)).map_err(io_err("cannot create", root))?;
    }
    let mut sorted = deps.to_vec();
    sorted.sort();
    let mut env = String::from("# Tarmac build-time environment of the dependencies\n");
    let mut env_export = env.clone();
    for id in &sorted {
        let dir = pkgs.join(id.to_string());
        let archive = package_file(out, id);
        let f = File::open(&archive).map_err(io_err("cannot open", &archive))?;
        let dec = zstd::stream::read::Decoder::new(f).map_err(io_err("cannot read", &archive))?;
        tar::Archive::new(dec)
            .unpack(&dir)
            .map_err(io_err("cannot extract", &archive))?;
        let target = format!("/opt/tarmac/packages/{id}");
        symlink(&target, root.join("active").join(id.name().as_str()))
            .map_err(io_err("cannot link", root))?;
        for d in ["bin", "lib", "etc", "include"] {
            merge_links(&dir.join(d), &root.join(d), &format!("{target}/{d}"), id)?;
        }
        let pkginfo = dir.join("pkginfo.json");
        if let Ok(bytes) = fs::read(&pkginfo)
            && let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(&bytes)
            && let Some(Value::Object(e)) = m.get("environment")
        {
            env.push_str(&format!("# package: {id}\n"));
            env_export.push_str(&format!("# package: {id}\n"));
            for (k, v) in e {
                let v = v.as_str().unwrap_or_default();
                env.push_str(&format!("{k}={v}\n"));
                env_export.push_str(&format!("export {k}='{}'\n", v.replace('\'', "'\\''")));
            }
        }
    }
    fs::write(root.join("environment"), env).map_err(io_err("cannot write", root))?;
    fs::write(root.join("environment.export"), env_export).map_err(io_err("cannot write", root))?;
    Ok(())
}

fn merge_links(
    src: &Path,
    dest: &Path,
    target_prefix: &str,
    id: &PackageId,
) -> Result<(), BuildError> {
    let Ok(rd) = fs::read_dir(src) else {
        return Ok(());
    };
    for e in rd {
        let e = e.map_err(io_err("cannot read", src))?;
        let name = e.file_name();
        let to = dest.join(&name);
        let target = format!("{target_prefix}/{}", name.to_string_lossy());
        let is_dir = e
            .file_type()
            .map_err(io_err("cannot stat", &e.path()))?
            .is_dir();
        if is_dir {
            if fs::symlink_metadata(&to).is_ok_and(|m| !m.is_dir()) {
                return Err(BuildError::BadOutput {
                    id: id.to_string(),
                    problem: format!("dependency file conflict at `{}`", to.display()),
                });
            }
            fs::create_dir_all(&to).map_err(io_err("cannot create", &to))?;
            merge_links(&e.path(), &to, &target, id)?;
        } else {
            symlink(&target, &to).map_err(|err| {
                if err.kind() == io::ErrorKind::AlreadyExists {
                    BuildError::BadOutput {
                        id: id.to_string(),
                        problem: format!("two dependencies provide `{}`", to.display()),
                    }
                } else {
                    io_err("cannot link", &to)(err)
                }
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(root: &Path) {
        let p = root.join("packages");
        fs::create_dir_all(p.join("a/extra")).unwrap();
        fs::create_dir_all(p.join("b")).unwrap();
        fs::create_dir_all(p.join("c")).unwrap();
        fs::write(root.join("treeinfo.json"), "{}").unwrap();
        fs::write(
            p.join("a/buildinfo.json"),
            r#"{"requires": ["b"], "single_source": {"kind": "local", "path": "src.txt"}}"#,
        )
        .unwrap();
        fs::write(p.join("a/src.txt"), "source").unwrap();
        fs::write(p.join("a/build"), "cp /pkg/src/a/src.txt $PKG_PATH/\n").unwrap();
        fs::write(p.join("a/extra/conf"), "x=1\n").unwrap();
        fs::write(p.join("b/buildinfo.json"), r#"{"requires": ["c"]}"#).unwrap();
        fs::write(p.join("b/build"), "true\n").unwrap();
        fs::write(p.join("c/buildinfo.json"), "{}").unwrap();
        fs::write(p.join("c/build"), "true\n").unwrap();
    }

    fn ids(root: &Path) -> BTreeMap<String, String> {
        let plan = Tree::load(root).unwrap().plan().unwrap();
        compute_ids(&plan, &BTreeMap::new())
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.id.to_string()))
            .collect()
    }

    #[test]
    fn ids_are_stable_when_the_tree_moves() {
        let d = tempfile::tempdir().unwrap();
        tree(&d.path().join("one"));
        tree(&d.path().join("elsewhere/two"));
        let a = ids(&d.path().join("one"));
        assert_eq!(a, ids(&d.path().join("elsewhere/two")));
        assert_eq!(a.len(), 3);
        assert!(a["a"].starts_with("a--") && a["a"].len() == 3 + 64);
    }

    #[test]
    fn one_changed_input_byte_changes_the_id_and_its_dependents() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        tree(root);
        let base = ids(root);
        let p = root.join("packages");
        let change = |file: &str, content: &str| {
            let before = fs::read(p.join(file)).unwrap();
            fs::write(p.join(file), content).unwrap();
            let after = ids(root);
            fs::write(p.join(file), before).unwrap();
            after
        };
        // build script, extra/, local source, buildinfo.json of `a`: only `a` changes
        for (file, content) in [
            ("a/build", "cp /pkg/src/a/src.txt $PKG_PATH/ \n"),
            ("a/extra/conf", "x=2\n"),
            ("a/src.txt", "sourcf"),
            (
                "a/buildinfo.json",
                r#"{"requires": ["b"], "single_source": {"kind": "local", "path": "src.txt"}} "#,
            ),
        ] {
            let after = change(file, content);
            assert_ne!(after["a"], base["a"], "{file}");
            assert_eq!(after["b"], base["b"], "{file}");
            assert_eq!(after["c"], base["c"], "{file}");
        }
        // a change in `c` changes everything that depends on it, transitively
        let after = change("c/build", "true \n");
        assert!(after.iter().all(|(k, v)| *v != base[k]));
        // the exec bit of an extra file counts
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(p.join("a/extra/conf"), fs::Permissions::from_mode(0o755)).unwrap();
        assert_ne!(ids(root)["a"], base["a"]);
        fs::set_permissions(p.join("a/extra/conf"), fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(ids(root), base);
    }

    #[test]
    fn missing_build_script_and_bad_pkginfo_are_reported() {
        let d = tempfile::tempdir().unwrap();
        tree(d.path());
        fs::remove_file(d.path().join("packages/c/build")).unwrap();
        let plan = Tree::load(d.path()).unwrap().plan().unwrap();
        let e = compute_ids(&plan, &BTreeMap::new()).unwrap_err();
        assert!(matches!(e, BuildError::NoBuildScript { .. }), "{e}");
        fs::write(d.path().join("packages/c/build"), "true\n").unwrap();
        fs::write(
            d.path().join("packages/c/buildinfo.json"),
            r#"{"environment": {"A": "x\ny"}}"#,
        )
        .unwrap();
        let plan = Tree::load(d.path()).unwrap().plan().unwrap();
        let e = compute_ids(&plan, &BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("would be refused by hosts"), "{e}");
    }
}
