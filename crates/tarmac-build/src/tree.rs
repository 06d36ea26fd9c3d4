//! The package tree: discovery of `packages/<name>/[<variant>.]buildinfo.json`,
//! `treeinfo.json`, variant selection, dependency resolution and ordering.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use tarmac_types::PackageName;

use crate::buildinfo::{BuildInfo, SpecError, TreeInfo, read_file, suggest};

#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("`{path}` is not a package tree: {problem}")]
    NotATree { path: PathBuf, problem: String },
    #[error("cannot read `{path}`")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "`{path}`: `{file}` is not a valid buildinfo file name (use `buildinfo.json` or `<variant>.buildinfo.json`)"
    )]
    BadVariantFile { path: PathBuf, file: String },
    #[error("package `{name}` (required by {required_by}) is not in the tree{}", did_you_mean(.suggestion))]
    UnknownPackage {
        name: String,
        required_by: String,
        suggestion: Option<String>,
    },
    #[error("package `{name}` is required by {required_by} but excluded by treeinfo.json")]
    Excluded { name: String, required_by: String },
    #[error("package `{name}` has no variant {}", variant_label(.variant))]
    UnknownVariant {
        name: String,
        variant: Option<String>,
        available: Vec<String>,
    },
    #[error("`{required_by}` requires `{name}` variant {}, but the tree uses variant {}", variant_label(.wanted), variant_label(.selected))]
    VariantConflict {
        name: String,
        required_by: String,
        wanted: Option<String>,
        selected: Option<String>,
    },
    #[error("dependency cycle: {}", .cycle.join(" -> "))]
    Cycle { cycle: Vec<String> },
}

impl tarmac_types::error_report::Hint for TreeError {
    fn hint(&self) -> Option<std::borrow::Cow<'_, str>> {
        match self {
            TreeError::Spec(e) => e.hint(),
            TreeError::NotATree { .. } => Some(
                "a tree is a directory with `treeinfo.json` and `packages/<name>/buildinfo.json`"
                    .into(),
            ),
            TreeError::VariantConflict { .. } => {
                Some("set the variant in treeinfo.json `variants` or change the require".into())
            }
            _ => None,
        }
    }
}

fn did_you_mean(s: &Option<String>) -> String {
    s.as_ref()
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default()
}

fn variant_label(v: &Option<String>) -> String {
    match v {
        None => "<default>".into(),
        Some(v) => format!("`{v}`"),
    }
}

/// One package directory with its variant files.
#[derive(Debug, Clone)]
pub struct PackageDir {
    pub name: PackageName,
    pub dir: PathBuf,
    /// variant (`None` = default) -> buildinfo file
    pub variants: BTreeMap<Option<String>, PathBuf>,
}

/// A loaded tree.
#[derive(Debug, Clone)]
pub struct Tree {
    pub root: PathBuf,
    pub info: TreeInfo,
    pub packages: BTreeMap<PackageName, PackageDir>,
}

/// A package selected for building, with its resolved direct dependencies.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: PackageName,
    pub variant: Option<String>,
    pub dir: PathBuf,
    pub buildinfo_path: PathBuf,
    pub buildinfo_bytes: Vec<u8>,
    pub buildinfo: BuildInfo,
    /// Direct dependencies (names; each has the tree's variant).
    pub deps: BTreeSet<PackageName>,
}

/// Every package of the tree that gets built, in dependency order.
#[derive(Debug, Clone)]
pub struct Plan {
    pub nodes: BTreeMap<PackageName, Node>,
    /// Dependencies before dependents; ties broken by name.
    pub order: Vec<PackageName>,
}

impl Tree {
    pub fn load(root: &Path) -> Result<Tree, TreeError> {
        let root = root.to_owned();
        if !root.is_dir() {
            return Err(TreeError::NotATree {
                path: root,
                problem: "no such directory".into(),
            });
        }
        let ti = root.join("treeinfo.json");
        let info = if ti.exists() {
            TreeInfo::parse(&ti, &read_file(&ti)?)?
        } else {
            TreeInfo::default()
        };
        let pkgs = root.join("packages");
        let rd = fs::read_dir(&pkgs).map_err(|_| TreeError::NotATree {
            path: root.clone(),
            problem: "it has no `packages/` directory".into(),
        })?;
        let mut packages = BTreeMap::new();
        for e in rd {
            let e = e.map_err(|source| TreeError::Io {
                path: pkgs.clone(),
                source,
            })?;
            let dir = e.path();
            if !dir.is_dir() {
                continue;
            }
            let mut variants = BTreeMap::new();
            for f in fs::read_dir(&dir).map_err(|source| TreeError::Io {
                path: dir.clone(),
                source,
            })? {
                let f = f.map_err(|source| TreeError::Io {
                    path: dir.clone(),
                    source,
                })?;
                let fname = f.file_name().to_string_lossy().into_owned();
                if fname == "buildinfo.json" {
                    variants.insert(None, f.path());
                } else if let Some(v) = fname.strip_suffix(".buildinfo.json") {
                    if v.is_empty()
                        || !v
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                    {
                        return Err(TreeError::BadVariantFile {
                            path: dir.clone(),
                            file: fname,
                        });
                    }
                    variants.insert(Some(v.to_owned()), f.path());
                } else if fname.ends_with("buildinfo.json") {
                    return Err(TreeError::BadVariantFile {
                        path: dir.clone(),
                        file: fname,
                    });
                }
            }
            if variants.is_empty() {
                continue;
            }
            let dname = e.file_name().to_string_lossy().into_owned();
            let name: PackageName = dname.parse().map_err(|err| TreeError::NotATree {
                path: dir.clone(),
                problem: format!("{err}"),
            })?;
            packages.insert(
                name.clone(),
                PackageDir {
                    name,
                    dir,
                    variants,
                },
            );
        }
        if packages.is_empty() {
            return Err(TreeError::NotATree {
                path: root,
                problem: "`packages/` holds no package with a buildinfo.json".into(),
            });
        }
        let all_names: Vec<String> = packages.keys().map(|n| n.to_string()).collect();
        for n in info
            .exclude
            .iter()
            .chain(&info.bootstrap_package_list)
            .chain(info.variants.keys())
        {
            if !packages.contains_key(n) {
                return Err(TreeError::UnknownPackage {
                    name: n.to_string(),
                    required_by: "treeinfo.json".into(),
                    suggestion: suggest(n.as_str(), all_names.iter().map(String::as_str)),
                });
            }
        }
        Ok(Tree {
            root,
            info,
            packages,
        })
    }

    /// The variant the tree uses for `name`.
    pub fn selected_variant(&self, name: &PackageName) -> Option<String> {
        self.info.variants.get(name).cloned()
    }

    /// Resolve every non-excluded package (with its tree variant) and order them.
    pub fn plan(&self) -> Result<Plan, TreeError> {
        let all_names: Vec<String> = self.packages.keys().map(|n| n.to_string()).collect();
        let mut nodes = BTreeMap::new();
        for (name, pd) in &self.packages {
            if self.info.exclude.contains(name) {
                continue;
            }
            let variant = self.selected_variant(name);
            let buildinfo_path =
                pd.variants
                    .get(&variant)
                    .cloned()
                    .ok_or_else(|| TreeError::UnknownVariant {
                        name: name.to_string(),
                        variant: variant.clone(),
                        available: pd.variants.keys().map(variant_label).collect(),
                    })?;
            let bytes = read_file(&buildinfo_path)?;
            let buildinfo = BuildInfo::parse(&buildinfo_path, name, variant.as_deref(), &bytes)?;
            let mut deps = BTreeSet::new();
            for r in &buildinfo.requires {
                let required_by = format!("`{name}`");
                if !self.packages.contains_key(&r.name) {
                    return Err(TreeError::UnknownPackage {
                        name: r.name.to_string(),
                        required_by,
                        suggestion: suggest(r.name.as_str(), all_names.iter().map(String::as_str)),
                    });
                }
                if self.info.exclude.contains(&r.name) {
                    return Err(TreeError::Excluded {
                        name: r.name.to_string(),
                        required_by,
                    });
                }
                let selected = self.selected_variant(&r.name);
                if let Some(wanted) = &r.variant
                    && *wanted != selected
                {
                    return Err(TreeError::VariantConflict {
                        name: r.name.to_string(),
                        required_by: name.to_string(),
                        wanted: wanted.clone(),
                        selected,
                    });
                }
                deps.insert(r.name.clone());
            }
            nodes.insert(
                name.clone(),
                Node {
                    name: name.clone(),
                    variant,
                    dir: pd.dir.clone(),
                    buildinfo_path,
                    buildinfo_bytes: bytes,
                    buildinfo,
                    deps,
                },
            );
        }
        let order = topo_order(&nodes)?;
        Ok(Plan { nodes, order })
    }
}

fn topo_order(nodes: &BTreeMap<PackageName, Node>) -> Result<Vec<PackageName>, TreeError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit(
        n: &PackageName,
        nodes: &BTreeMap<PackageName, Node>,
        marks: &mut BTreeMap<PackageName, Mark>,
        stack: &mut Vec<PackageName>,
        out: &mut Vec<PackageName>,
    ) -> Result<(), TreeError> {
        match marks.get(n) {
            Some(Mark::Done) => return Ok(()),
            Some(Mark::Visiting) => {
                let start = stack.iter().position(|s| s == n).unwrap_or(0);
                let mut cycle: Vec<String> = stack[start..].iter().map(|s| s.to_string()).collect();
                cycle.push(n.to_string());
                return Err(TreeError::Cycle { cycle });
            }
            None => {}
        }
        marks.insert(n.clone(), Mark::Visiting);
        stack.push(n.clone());
        for d in &nodes[n].deps {
            visit(d, nodes, marks, stack, out)?;
        }
        stack.pop();
        marks.insert(n.clone(), Mark::Done);
        out.push(n.clone());
        Ok(())
    }
    let mut marks = BTreeMap::new();
    let mut out = Vec::new();
    for n in nodes.keys() {
        visit(n, nodes, &mut marks, &mut Vec::new(), &mut out)?;
    }
    Ok(out)
}

impl Plan {
    /// `names` and everything they depend on, transitively (sorted).
    pub fn closure<'a>(
        &self,
        names: impl IntoIterator<Item = &'a PackageName>,
    ) -> BTreeSet<PackageName> {
        let mut out = BTreeSet::new();
        let mut todo: Vec<PackageName> = names.into_iter().cloned().collect();
        while let Some(n) = todo.pop() {
            if out.insert(n.clone())
                && let Some(node) = self.nodes.get(&n)
            {
                todo.extend(node.deps.iter().cloned());
            }
        }
        out
    }

    /// Transitive dependencies of `name` (without `name`).
    pub fn deps_closure(&self, name: &PackageName) -> BTreeSet<PackageName> {
        let mut c = self.closure(self.nodes[name].deps.iter());
        c.remove(name);
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn write_tree(root: &Path, treeinfo: &str, pkgs: &[(&str, &str, &str)]) {
        fs::create_dir_all(root.join("packages")).unwrap();
        fs::write(root.join("treeinfo.json"), treeinfo).unwrap();
        for (name, file, json) in pkgs {
            let d = root.join("packages").join(name);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join(file), json).unwrap();
            fs::write(d.join("build"), "true\n").unwrap();
        }
    }

    fn names(v: &[PackageName]) -> Vec<&str> {
        v.iter().map(|n| n.as_str()).collect()
    }

    #[test]
    fn order_and_closure() {
        let d = tempfile::tempdir().unwrap();
        write_tree(
            d.path(),
            r#"{"exclude": ["unused"]}"#,
            &[
                ("a", "buildinfo.json", r#"{"requires": ["b", "c"]}"#),
                ("b", "buildinfo.json", r#"{"requires": ["c"]}"#),
                ("c", "buildinfo.json", "{}"),
                ("d", "buildinfo.json", "{}"),
                ("unused", "buildinfo.json", r#"{"requires": ["nope"]}"#),
            ],
        );
        let plan = Tree::load(d.path()).unwrap().plan().unwrap();
        assert_eq!(names(&plan.order), ["c", "b", "a", "d"]);
        let a: PackageName = "a".parse().unwrap();
        let c = plan.deps_closure(&a);
        assert_eq!(c.iter().map(|n| n.as_str()).collect::<Vec<_>>(), ["b", "c"]);
    }

    #[test]
    fn cycles_are_reported_with_their_path() {
        let d = tempfile::tempdir().unwrap();
        write_tree(
            d.path(),
            "{}",
            &[
                ("a", "buildinfo.json", r#"{"requires": ["b"]}"#),
                ("b", "buildinfo.json", r#"{"requires": ["c"]}"#),
                ("c", "buildinfo.json", r#"{"requires": ["a"]}"#),
            ],
        );
        let e = Tree::load(d.path()).unwrap().plan().unwrap_err();
        assert_eq!(e.to_string(), "dependency cycle: a -> b -> c -> a");
    }

    #[test]
    fn unknown_and_excluded_requires() {
        let d = tempfile::tempdir().unwrap();
        write_tree(
            d.path(),
            r#"{"exclude": ["x"]}"#,
            &[
                ("a", "buildinfo.json", r#"{"requires": ["etdc"]}"#),
                ("etcd", "buildinfo.json", "{}"),
                ("x", "buildinfo.json", "{}"),
            ],
        );
        let e = Tree::load(d.path())
            .unwrap()
            .plan()
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "package `etdc` (required by `a`) is not in the tree (did you mean `etcd`?)"
        );
        fs::write(
            d.path().join("packages/a/buildinfo.json"),
            r#"{"requires": ["x"]}"#,
        )
        .unwrap();
        let e = Tree::load(d.path()).unwrap().plan().unwrap_err();
        assert!(matches!(e, TreeError::Excluded { .. }), "{e}");
    }

    #[test]
    fn variants_are_selected_by_treeinfo() {
        let d = tempfile::tempdir().unwrap();
        write_tree(
            d.path(),
            r#"{"variants": {"b": "ee"}}"#,
            &[
                (
                    "a",
                    "buildinfo.json",
                    r#"{"requires": [{"name": "b", "variant": "ee"}]}"#,
                ),
                ("b", "buildinfo.json", "{}"),
                ("b", "ee.buildinfo.json", r#"{"environment": {"EE": "1"}}"#),
            ],
        );
        let plan = Tree::load(d.path()).unwrap().plan().unwrap();
        let b = &plan.nodes[&"b".parse::<PackageName>().unwrap()];
        assert_eq!(b.variant.as_deref(), Some("ee"));
        assert_eq!(b.buildinfo.build_script, "ee.build");
        assert!(b.buildinfo.environment.contains_key("EE"));

        // an explicit default-variant require conflicts with the tree's choice
        fs::write(
            d.path().join("packages/a/buildinfo.json"),
            r#"{"requires": [{"name": "b", "variant": null}]}"#,
        )
        .unwrap();
        let e = Tree::load(d.path())
            .unwrap()
            .plan()
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("`a` requires `b` variant <default>, but the tree uses variant `ee`"),
            "{e}"
        );

        // selecting a variant that does not exist
        fs::write(
            d.path().join("packages/a/buildinfo.json"),
            r#"{"requires": ["b"]}"#,
        )
        .unwrap();
        fs::write(
            d.path().join("treeinfo.json"),
            r#"{"variants": {"b": "nope"}}"#,
        )
        .unwrap();
        let e = Tree::load(d.path()).unwrap().plan().unwrap_err();
        assert!(matches!(e, TreeError::UnknownVariant { .. }), "{e}");

        fs::write(d.path().join("packages/b/.buildinfo.json"), "{}").unwrap();
        assert!(matches!(
            Tree::load(d.path()),
            Err(TreeError::BadVariantFile { .. })
        ));
    }
}
