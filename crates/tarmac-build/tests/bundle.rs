//! Self-contained packages, built for real (needs bubblewrap, gcc with the static C
//! library, and patchelf; the tools are installed with apt-get when missing): a package
//! whose build script compiles dynamically linked C programs gets the C library, libm and
//! the loader of this build machine in `tarmac-bundle/`, its ELF files load them (checked
//! by running a program through the bundled loader with the loader's debug output), the
//! library it ships itself stays where it is, a static program is left alone, the opt-out
//! and the `tarmac-host` package are untouched — and the same inputs give the same ids and
//! bytes twice.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use tarmac_build::elf_versions::read_needs;
use tarmac_build::{BuildOptions, BuildReport, build};
use tarmac_events::{BuildPhase, Event, Sink, VecSink};

const HELLO_C: &str = r#"#include <math.h>
#include <stdio.h>
int main(int argc, char **argv) {
    volatile double x = argc;
    printf("hello %.0f\n", cos(x - 1.0));
    return 0;
}
"#;

const GREET_C: &str = r#"#include <stdio.h>
void greet(void) { puts("hello from libgreet"); }
"#;

const GREET_MAIN_C: &str = r#"void greet(void);
int main(void) { greet(); return 0; }
"#;

/// `bin/hello` (libm + libc), `lib/libgreet.so.1` and `bin/greet` using it through
/// `$ORIGIN/../lib`, and a static `bin/static`.
const HELLO_BUILD: &str = r#"
install -d "$PKG_PATH/bin" "$PKG_PATH/lib"
gcc -O1 -o "$PKG_PATH/bin/hello" /pkg/extra/hello.c -Wl,--no-as-needed -lm
gcc -O1 -shared -fPIC -Wl,-soname,libgreet.so.1 -o "$PKG_PATH/lib/libgreet.so.1" /pkg/extra/greet.c
gcc -O1 -o "$PKG_PATH/bin/greet" /pkg/extra/main.c -L"$PKG_PATH/lib" -l:libgreet.so.1 -Wl,-rpath,'$ORIGIN/../lib'
gcc -O1 -static -o "$PKG_PATH/bin/static" /pkg/extra/hello.c -lm
"#;

/// `(package, libraries, files, static files)` of a `Bundled` event.
type Bundled = (String, Vec<String>, Vec<String>, Vec<String>);

fn ensure_tools() {
    let have_static_libc = Path::new("/usr/lib/x86_64-linux-gnu/libc.a").is_file();
    let have = |p: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {p}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !(have("gcc") && have("patchelf") && have("readelf") && have_static_libc) {
        let st = Command::new("apt-get")
            .args([
                "install",
                "-y",
                "-q",
                "--no-install-recommends",
                "gcc",
                "libc6-dev",
                "binutils",
                "patchelf",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .unwrap();
        assert!(
            st.success(),
            "this test needs gcc, libc6-dev, binutils and patchelf"
        );
    }
}

fn write(path: &Path, content: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

fn tree(root: &Path) {
    write(
        &root.join("treeinfo.json"),
        r#"{"bootstrap_package_list": ["tarmac-host", "hello", "plain"]}"#,
    );
    let p = root.join("packages");
    for pkg in ["hello", "plain"] {
        write(&p.join(pkg).join("extra/hello.c"), HELLO_C);
        write(&p.join(pkg).join("extra/greet.c"), GREET_C);
        write(&p.join(pkg).join("extra/main.c"), GREET_MAIN_C);
        write(&p.join(pkg).join("build"), HELLO_BUILD);
    }
    write(&p.join("hello/buildinfo.json"), "{}");
    write(
        &p.join("plain/buildinfo.json"),
        r#"{"bundle_libraries": false}"#,
    );
    // the host agent: a dynamically linked program of this machine, shipped as it is
    write(
        &p.join("tarmac-host/buildinfo.json"),
        r#"{"single_source": {"kind": "local", "path": "/usr/bin/true"}}"#,
    );
    write(
        &p.join("tarmac-host/build"),
        "install -D -m0755 /pkg/src/tarmac-host/true \"$PKG_PATH/bin/tarmac-host\"\n",
    );
}

fn opts(tree: &Path, out: &Path, cache: &Path) -> BuildOptions {
    let mut o = BuildOptions::new(tree, cache);
    o.out = out.to_owned();
    o.jobs = 2;
    o
}

fn extract(archive: &Path, dest: &Path) {
    let f = fs::File::open(archive).unwrap();
    tar::Archive::new(zstd::stream::read::Decoder::new(f).unwrap())
        .unpack(dest)
        .unwrap();
}

fn package<'a>(r: &'a BuildReport, name: &str) -> &'a tarmac_build::PackageReport {
    r.packages
        .iter()
        .find(|p| p.id.name().as_str() == name)
        .unwrap_or_else(|| panic!("{name} was not built"))
}

fn readelf_dynamic(file: &Path) -> String {
    let out = Command::new("readelf")
        .arg("-d")
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "readelf -d {}", file.display());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn dynamically_linked_programs_get_their_libraries_and_loader_bundled() {
    ensure_tools();
    let d = tempfile::tempdir().unwrap();
    let (t, cache) = (d.path().join("tree"), d.path().join("cache"));
    tree(&t);
    let events = VecSink::new();
    let sink: Sink = Arc::new(events.clone());
    let r = build(&opts(&t, &d.path().join("out"), &cache), sink).unwrap();
    let hello = package(&r, "hello");
    let id = hello.id.to_string();

    // The build reports what it bundled, for `hello` only.
    let bundled: Vec<Bundled> = events
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::PackageBuild {
                name,
                phase:
                    BuildPhase::Bundled {
                        libraries,
                        files,
                        static_files,
                        ..
                    },
            } => Some((name, libraries, files, static_files)),
            _ => None,
        })
        .collect();
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        bundled,
        [(
            "hello".to_owned(),
            strings(&["ld-linux-x86-64.so.2", "libc.so.6", "libm.so.6"]),
            strings(&["bin/greet", "bin/hello", "lib/libgreet.so.1"]),
            strings(&["bin/static"]),
        )]
    );

    // The bundle holds this machine's C library, libm and loader, byte for byte; the
    // package's own library is not copied.
    let x = d.path().join("hello");
    extract(&hello.path, &x);
    let bundle = x.join("tarmac-bundle");
    assert_eq!(
        listing(&bundle),
        ["ld-linux-x86-64.so.2", "libc.so.6", "libm.so.6"]
    );
    for lib in ["libc.so.6", "libm.so.6", "ld-linux-x86-64.so.2"] {
        let system = fs::canonicalize(Path::new("/lib/x86_64-linux-gnu").join(lib)).unwrap();
        assert_eq!(
            fs::read(bundle.join(lib)).unwrap(),
            fs::read(&system).unwrap(),
            "{lib}"
        );
    }
    let full: serde_json::Value =
        serde_json::from_slice(&fs::read(x.join("buildinfo.full.json")).unwrap()).unwrap();
    let libc_from = fs::canonicalize("/lib/x86_64-linux-gnu/libc.so.6").unwrap();
    assert_eq!(
        full["bundle"]["libraries"]["libc.so.6"]["from"],
        libc_from.display().to_string()
    );
    assert_eq!(full["bundle"]["static"], serde_json::json!(["bin/static"]));

    // Every dynamic ELF file loads the bundled loader (at the path the host extracts the
    // package to) and finds its libraries through RPATH; the static one is unchanged.
    let loader = format!("/opt/tarmac/packages/{id}/tarmac-bundle/ld-linux-x86-64.so.2");
    for exe in ["bin/hello", "bin/greet"] {
        let needs = read_needs(&x.join(exe)).unwrap();
        assert_eq!(needs.interpreter.as_deref(), Some(loader.as_str()), "{exe}");
    }
    assert!(
        readelf_dynamic(&x.join("bin/hello")).contains("Library rpath: [$ORIGIN/../tarmac-bundle]")
    );
    let greet = readelf_dynamic(&x.join("bin/greet"));
    assert!(
        greet.contains("Library rpath: [$ORIGIN/../lib:$ORIGIN/../tarmac-bundle]"),
        "{greet}"
    );
    assert!(!greet.contains("RUNPATH"), "{greet}");
    assert!(
        readelf_dynamic(&x.join("lib/libgreet.so.1"))
            .contains("Library rpath: [$ORIGIN/../tarmac-bundle]")
    );
    let st = read_needs(&x.join("bin/static")).unwrap();
    assert!(st.interpreter.is_none() && st.needed.is_empty(), "{st:?}");

    // Run through the bundled loader: every library comes from the bundle or the package.
    for (exe, want) in [
        ("bin/hello", "hello 1\n"),
        ("bin/greet", "hello from libgreet\n"),
    ] {
        let out = Command::new(bundle.join("ld-linux-x86-64.so.2"))
            .arg(x.join(exe))
            .env_clear()
            .env("LD_DEBUG", "libs")
            .env("LD_LIBRARY_PATH", "/lib/x86_64-linux-gnu")
            .output()
            .unwrap();
        let debug = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{exe}: {debug}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), want);
        let inits: Vec<&str> = debug
            .lines()
            .filter_map(|l| l.split_once("calling init: ").map(|(_, p)| p.trim()))
            .collect();
        assert!(!inits.is_empty(), "{debug}");
        for p in &inits {
            let p = fs::canonicalize(p).unwrap();
            assert!(
                p.starts_with(&bundle) || p.starts_with(x.join("lib")),
                "{exe} loaded {} from outside the package:\n{debug}",
                p.display()
            );
        }
        assert!(
            inits
                .iter()
                .any(|p| p.ends_with("/tarmac-bundle/libc.so.6"))
        );
    }

    // The opt-out and the host agent are shipped as built.
    let plain = d.path().join("plain");
    extract(&package(&r, "plain").path, &plain);
    assert!(!plain.join("tarmac-bundle").exists());
    assert_eq!(
        read_needs(&plain.join("bin/hello"))
            .unwrap()
            .interpreter
            .as_deref(),
        Some("/lib64/ld-linux-x86-64.so.2")
    );
    let b = r.bootstrap.as_ref().unwrap();
    let warned = events.events().into_iter().any(|e| {
        matches!(e, Event::Notice { level: tarmac_events::Level::Warn, message }
            if message.starts_with("the bootstrap's tarmac-host will not run on every host") && message.contains("GLIBC_2.34"))
    });
    assert!(warned, "a non-portable host binary is warned about");
    assert_eq!(
        fs::read(b.host_binary.as_ref().unwrap()).unwrap(),
        fs::read(fs::canonicalize("/usr/bin/true").unwrap()).unwrap()
    );

    // Same inputs, a fresh output directory: the same ids and the same bytes.
    let r2 = build(
        &opts(&t, &d.path().join("out2"), &cache),
        Arc::new(tarmac_events::NullSink),
    )
    .unwrap();
    let digests = |r: &BuildReport| -> BTreeMap<String, String> {
        r.packages
            .iter()
            .map(|p| (p.id.to_string(), p.sha256.hex()))
            .collect()
    };
    assert_eq!(digests(&r), digests(&r2));
    assert!(r2.packages.iter().all(|p| p.built));
    assert_eq!(r.bootstrap.unwrap().id, r2.bootstrap.unwrap().id);
}

#[test]
fn a_library_the_build_environment_lacks_is_a_clear_error() {
    ensure_tools();
    let d = tempfile::tempdir().unwrap();
    let t = d.path().join("tree");
    write(&t.join("treeinfo.json"), "{}");
    let p = t.join("packages/broken");
    write(&p.join("buildinfo.json"), "{}");
    write(&p.join("extra/greet.c"), GREET_C);
    write(&p.join("extra/main.c"), GREET_MAIN_C);
    // linked against a library that only exists in the build's /tmp
    write(
        &p.join("build"),
        r#"
gcc -shared -fPIC -Wl,-soname,libgone.so -o /tmp/libgone.so /pkg/extra/greet.c
install -d "$PKG_PATH/bin"
gcc -o "$PKG_PATH/bin/broken" /pkg/extra/main.c -L/tmp -lgone
"#,
    );
    let e = build(
        &opts(&t, &d.path().join("out"), &d.path().join("cache")),
        Arc::new(tarmac_events::NullSink),
    )
    .unwrap_err();
    let text = tarmac_types::error_report::ErrorReport::with_hints(&e, tarmac_build::TYPED_HINTS)
        .to_text();
    assert!(
        text.starts_with("error: cannot make `broken--"),
        "the error names the package: {text}"
    );
    for want in [
        "`bin/broken` needs `libgone.so`, which the build environment does not have; searched:",
        "  /opt/tarmac/lib (the build's LD_LIBRARY_PATH)",
        "  /etc/ld.so.cache (no entry)",
        "  /usr/lib/x86_64-linux-gnu (default directory)",
        "hint: install the library on the build machine",
        "\"bundle_libraries\": false",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    // nothing half-made is left in the output
    assert!(!d.path().join("out/packages/broken").exists());
}
