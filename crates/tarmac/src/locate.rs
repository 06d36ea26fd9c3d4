//! Finding genconf/ from where the operator stands: `./genconf`, else the nearest parent
//! directory holding `genconf/config.yaml`.

use std::path::{Path, PathBuf};

use tarmac_types::error_report::Hinted;

/// The nearest directory at or above `start` that holds `genconf/config.yaml`, looking no
/// higher than `stop` (which is looked in). Returns that `genconf/` directory.
pub fn find_genconf(start: &Path, stop: &Path) -> Option<PathBuf> {
    for dir in start.ancestors() {
        let candidate = dir.join("genconf");
        if candidate.join("config.yaml").is_file() {
            return Some(candidate);
        }
        if dir == stop {
            break;
        }
    }
    None
}

/// Where the search stops: `$HOME` when `start` is inside it (never `$HOME`'s parent),
/// else the filesystem root.
pub fn search_stop(start: &Path, home: Option<&Path>) -> PathBuf {
    match home {
        Some(h) if h.parent().is_some() && start.starts_with(h) => h.to_path_buf(),
        _ => start
            .ancestors()
            .last()
            .map_or_else(|| PathBuf::from("/"), Path::to_path_buf),
    }
}

/// The error when no genconf/ was found: what was looked for, and what to do.
pub fn not_found(stop: &Path) -> anyhow::Error {
    anyhow::Error::new(Hinted::new(
        format!(
            "no genconf/ directory found: looked for ./genconf/config.yaml and in every parent up to {}",
            stop.display()
        ),
        "create genconf/config.yaml and genconf/ip-detect here, or pass --genconf-dir DIR",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn genconf_in(dir: &Path) -> PathBuf {
        let g = dir.join("genconf");
        std::fs::create_dir_all(&g).unwrap();
        std::fs::write(g.join("config.yaml"), "cluster_name: t\n").unwrap();
        g
    }

    #[test]
    fn finds_the_nearest_parent_holding_genconf_config_yaml() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let outer = genconf_in(root);
        let deep = root.join("a/b/c");
        std::fs::create_dir_all(&deep).unwrap();
        assert_eq!(find_genconf(&deep, root), Some(outer));
        let inner = genconf_in(&root.join("a"));
        assert_eq!(find_genconf(&deep, root), Some(inner.clone()));
        // The start directory itself is looked in.
        assert_eq!(find_genconf(&root.join("a"), root), Some(inner));
    }

    #[test]
    fn a_genconf_without_config_yaml_is_passed_over() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let found = genconf_in(root);
        std::fs::create_dir_all(root.join("a/genconf")).unwrap();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        assert_eq!(find_genconf(&root.join("a/b"), root), Some(found));
    }

    #[test]
    fn the_search_stops_at_the_stop_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        genconf_in(root);
        let stop = root.join("home/op");
        let deep = stop.join("work/x");
        std::fs::create_dir_all(&deep).unwrap();
        assert_eq!(find_genconf(&deep, &stop), None);
        let at_stop = genconf_in(&stop);
        assert_eq!(find_genconf(&deep, &stop), Some(at_stop));
    }

    #[test]
    fn the_stop_is_home_inside_it_else_the_root() {
        let home = Path::new("/home/op");
        assert_eq!(
            search_stop(Path::new("/home/op/work"), Some(home)),
            PathBuf::from("/home/op")
        );
        assert_eq!(
            search_stop(Path::new("/srv/cluster"), Some(home)),
            PathBuf::from("/")
        );
        assert_eq!(search_stop(Path::new("/srv"), None), PathBuf::from("/"));
        // HOME=/ would otherwise stop nowhere.
        assert_eq!(
            search_stop(Path::new("/srv"), Some(Path::new("/"))),
            PathBuf::from("/")
        );
    }

    #[test]
    fn not_found_says_what_was_looked_for() {
        let text = crate::render::ErrorReport::of(&*not_found(Path::new("/"))).to_text();
        assert_eq!(
            text,
            "error: no genconf/ directory found: looked for ./genconf/config.yaml and in every parent up to /\nhint: create genconf/config.yaml and genconf/ip-detect here, or pass --genconf-dir DIR\n"
        );
    }
}
