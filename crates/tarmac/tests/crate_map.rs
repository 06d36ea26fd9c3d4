//! The crate map in ARCHITECTURE.md ("Crate map and who may depend on whom") is generated
//! from `cargo metadata --format-version 1 --no-deps`, and the dependency rules listed under it
//! hold. No lab, no root: this reads the workspace's manifests only.
//!
//! Regenerate the table with `scripts/crate-map.sh` (it runs this test with
//! `TARMAC_UPDATE_CRATE_MAP=1`, which rewrites the table in place).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

const ARCHITECTURE: &str = "ARCHITECTURE.md";
const SECTION: &str = "## Crate map and who may depend on whom";
const REGENERATE: &str = "scripts/crate-map.sh";
/// Set to rewrite the table in ARCHITECTURE.md instead of comparing it.
const UPDATE_ENV: &str = "TARMAC_UPDATE_CRATE_MAP";

/// Column widths of the table: crate name, dependencies, and the description's wrap width.
const NAME_W: usize = 19;
const DEPS_W: usize = 36;
const DESC_W: usize = 60;

/// One workspace crate, as `cargo metadata` describes it.
#[derive(Debug)]
struct Crate {
    /// A binary only (no library target): `[bin]` in the table.
    bin: bool,
    description: String,
    /// The workspace crates among its normal (not dev, not build) dependencies.
    normal: BTreeSet<String>,
}

fn workspace() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn metadata() -> BTreeMap<String, Crate> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(&cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(workspace())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{cargo} metadata`: {e}"));
    assert!(
        out.status.success(),
        "`cargo metadata` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON");
    let packages = meta["packages"].as_array().expect("packages");
    let members: BTreeSet<String> = packages
        .iter()
        .map(|p| p["name"].as_str().expect("name").to_owned())
        .collect();
    packages
        .iter()
        .map(|p| {
            let name = p["name"].as_str().expect("name").to_owned();
            let kinds: BTreeSet<&str> = p["targets"]
                .as_array()
                .expect("targets")
                .iter()
                .flat_map(|t| t["kind"].as_array().expect("kind").iter())
                .filter_map(Value::as_str)
                .collect();
            let normal = p["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                .filter(|d| d["kind"].is_null())
                .filter_map(|d| d["name"].as_str())
                .filter(|d| members.contains(*d))
                .map(str::to_owned)
                .collect();
            let description = p["description"].as_str().unwrap_or_default().to_owned();
            assert!(
                !description.is_empty(),
                "crates/{name}/Cargo.toml has no `description`: the crate map's third column is \
                 that one line"
            );
            let c = Crate {
                bin: kinds.contains("bin") && !kinds.contains("lib"),
                description,
                normal,
            };
            (name, c)
        })
        .collect()
}

/// How far a crate sits above the bottom of the graph: 0 without Tarmac dependencies,
/// otherwise one more than its highest dependency. Rows (and each row's dependencies) are
/// listed by layer, then by name.
fn layer(
    name: &str,
    crates: &BTreeMap<String, Crate>,
    memo: &mut BTreeMap<String, usize>,
) -> usize {
    if let Some(&l) = memo.get(name) {
        return l;
    }
    let l = crates[name]
        .normal
        .iter()
        .map(|d| layer(d, crates, memo) + 1)
        .max()
        .unwrap_or(0);
    memo.insert(name.to_owned(), l);
    l
}

/// `tarmac-pkg` → `pkg`.
fn short(name: &str) -> &str {
    name.strip_prefix("tarmac-").unwrap_or(name)
}

/// Greedy wrap of `words` (already carrying their separators) into lines of at most `width`.
fn wrap<'a>(words: impl IntoIterator<Item = &'a str>, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for w in words {
        match lines.last_mut() {
            Some(l) if l.chars().count() + 1 + w.chars().count() <= width => {
                l.push(' ');
                l.push_str(w);
            }
            _ => lines.push(w.to_owned()),
        }
    }
    lines
}

/// A description on one line when it fits, otherwise with its parenthetical on the next.
fn description_lines(desc: &str) -> Vec<String> {
    if desc.chars().count() <= DESC_W {
        return vec![desc.to_owned()];
    }
    let (head, tail) = match desc.find(" (") {
        Some(i) => (&desc[..i], Some(&desc[i + 1..])),
        None => (desc, None),
    };
    let mut lines = wrap(head.split(' '), DESC_W);
    if let Some(t) = tail {
        lines.extend(wrap(t.split(' '), DESC_W));
    }
    lines
}

/// The table, as it stands between the fences in ARCHITECTURE.md.
fn table(crates: &BTreeMap<String, Crate>) -> String {
    let mut memo = BTreeMap::new();
    let order = |names: &mut Vec<&String>, memo: &mut BTreeMap<String, usize>| {
        names.sort_by_key(|n| (layer(n, crates, memo), n.as_str().to_owned()));
    };
    let mut rows: Vec<&String> = crates.keys().collect();
    order(&mut rows, &mut memo);
    let mut out = format!(
        "{:<NAME_W$}depends on (Tarmac crates, normal dependencies; generated from cargo metadata)\n",
        "crate"
    );
    for name in rows {
        let c = &crates[name];
        let mut deps: Vec<&String> = c.normal.iter().collect();
        order(&mut deps, &mut memo);
        let deps: Vec<String> = deps
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let comma = if i + 1 < deps.len() { "," } else { "" };
                format!("{}{comma}", short(d))
            })
            .collect();
        let dep_lines = if deps.is_empty() {
            vec!["–".to_owned()]
        } else {
            wrap(deps.iter().map(String::as_str), DEPS_W - 1)
        };
        let desc_lines = description_lines(&c.description);
        let label = if c.bin {
            format!("{name} [bin]")
        } else {
            name.clone()
        };
        for i in 0..dep_lines.len().max(desc_lines.len()) {
            let first = if i == 0 { label.as_str() } else { "" };
            let line = format!(
                "{first:<NAME_W$}{:<DEPS_W$}{}",
                dep_lines.get(i).map_or("", String::as_str),
                desc_lines.get(i).map_or("", String::as_str),
            );
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
    out
}

/// The byte range of the table inside ARCHITECTURE.md: the first ```text fence of the section.
fn table_range(doc: &str) -> std::ops::Range<usize> {
    let section = doc
        .find(SECTION)
        .unwrap_or_else(|| panic!("{ARCHITECTURE} has no `{SECTION}` section"));
    let open = "```text\n";
    let start = doc[section..]
        .find(open)
        .map(|i| section + i + open.len())
        .unwrap_or_else(|| panic!("no ```text block under `{SECTION}` in {ARCHITECTURE}"));
    let end = doc[start..]
        .find("```")
        .map(|i| start + i)
        .unwrap_or_else(|| panic!("the crate map's ```text block in {ARCHITECTURE} is not closed"));
    start..end
}

#[test]
fn architecture_crate_map_is_the_generated_one() {
    let want = table(&metadata());
    let path = workspace().join(ARCHITECTURE);
    let doc = fs::read_to_string(&path).expect("read ARCHITECTURE.md");
    let range = table_range(&doc);
    if std::env::var_os(UPDATE_ENV).is_some() {
        let mut new = doc.clone();
        new.replace_range(range, &want);
        if new != doc {
            fs::write(&path, new).expect("write ARCHITECTURE.md");
        }
        return;
    }
    let have = &doc[range];
    if have != want {
        // The lines between the common head and tail, as they are and as they should be.
        let (h, w): (Vec<&str>, Vec<&str>) = (have.lines().collect(), want.lines().collect());
        let head = h.iter().zip(&w).take_while(|(a, b)| a == b).count();
        let tail = h[head..]
            .iter()
            .rev()
            .zip(w[head..].iter().rev())
            .take_while(|(a, b)| a == b)
            .count();
        let diff: String = h[head..h.len() - tail]
            .iter()
            .map(|l| format!("-{l}\n"))
            .chain(w[head..w.len() - tail].iter().map(|l| format!("+{l}\n")))
            .collect();
        panic!(
            "the crate map in {ARCHITECTURE} differs from `cargo metadata`:\n{diff}\nhint: run \
             `{REGENERATE}` to regenerate it (and commit the result)"
        );
    }
}

#[test]
fn dependency_rules_hold() {
    let crates = metadata();
    let mut broken = Vec::new();
    let mut only = |name: &str, allowed: &[&str], why: &str| {
        for d in &crates[name].normal {
            if !allowed.contains(&d.as_str()) {
                broken.push(format!("{name} depends on {d}: {why}"));
            }
        }
    };
    only("tarmac-fsx", &[], "tarmac-fsx depends on no Tarmac crate");
    only(
        "tarmac-types",
        &[],
        "tarmac-types depends on no Tarmac crate",
    );
    only(
        "tarmac-events",
        &["tarmac-types"],
        "tarmac-events depends on tarmac-types only",
    );
    only(
        "tarmac-host",
        &[
            "tarmac-activate",
            "tarmac-pkg",
            "tarmac-events",
            "tarmac-types",
            "tarmac-fsx",
        ],
        "the on-host binary uses only activate, pkg, events, types and fsx (never SSH, web, lab or config code)",
    );
    for (name, c) in &crates {
        if name != "tarmac" && c.normal.contains("tarmac-lab") {
            broken.push(format!(
                "{name} depends on tarmac-lab: only the tarmac binary and tests (dev-dependencies) may"
            ));
        }
        for front in ["tarmac", "tarmac-web"] {
            if name == "tarmac-installer" && c.normal.contains(front) {
                broken.push(format!(
                    "tarmac-installer depends on {front}: the front ends use the installer, never the reverse"
                ));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "dependency rules of {ARCHITECTURE} broken:\n{}",
        broken.join("\n")
    );
}

#[test]
fn wraps_like_the_table() {
    assert_eq!(
        wrap(
            ["fsx,", "types,", "events,", "pkg,", "activate,", "config"],
            DEPS_W - 1
        ),
        vec!["fsx, types, events, pkg, activate,", "config"]
    );
    assert_eq!(
        description_lines(
            "config packages, serve/, install.sh (activate only for the setup unit text)"
        ),
        vec![
            "config packages, serve/, install.sh",
            "(activate only for the setup unit text)"
        ]
    );
    assert_eq!(
        description_lines("pure nouns, no I/O"),
        vec!["pure nouns, no I/O"]
    );
}
