//! Which Debian mirror serves a suite: the one rule the lab's images and the offline
//! prerequisites repository (`tarmac-installer::offline`) share. The machine's apt source for
//! that suite wins (deb822 `.sources` and one-line `.list` files under `/etc/apt/
//! sources.list.d/`, in name order, then `/etc/apt/sources.list`); without one,
//! [`DEBIAN_MIRROR`] (or [`DEBIAN_SECURITY_MIRROR`] for `<suite>-security`).
//!
//! Pure: the caller passes how to list a directory and read a file, so this crate keeps its
//! no-I/O promise while the rule (which files, in which order, the fallback) lives here once.

use std::path::{Path, PathBuf};

/// The Debian archive's redirector.
pub const DEBIAN_MIRROR: &str = "http://deb.debian.org/debian";
/// The Debian security archive's redirector (suites `<codename>-security`).
pub const DEBIAN_SECURITY_MIRROR: &str = "http://deb.debian.org/debian-security";
/// The keyring Debian's archive signatures verify with (package debian-archive-keyring).
pub const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// The mirror the machine uses for `suite`, else Debian's redirector. `list_dir` returns a
/// directory's entries (empty when it is missing), `read` a file's text (`None` when missing).
pub fn machine_mirror(
    suite: &str,
    list_dir: impl Fn(&Path) -> Vec<PathBuf>,
    read: impl Fn(&Path) -> Option<String>,
) -> String {
    let mut texts: Vec<(bool, String)> = Vec::new();
    let mut paths = list_dir(Path::new("/etc/apt/sources.list.d"));
    paths.sort();
    for p in paths {
        let ext = p
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default()
            .to_owned();
        if (ext == "sources" || ext == "list")
            && let Some(t) = read(&p)
        {
            texts.push((ext == "sources", t));
        }
    }
    if let Some(t) = read(Path::new("/etc/apt/sources.list")) {
        texts.push((false, t));
    }
    texts
        .iter()
        .find_map(|(deb822, t)| {
            if *deb822 {
                mirror_from_deb822(t, suite)
            } else {
                mirror_from_list(t, suite)
            }
        })
        .unwrap_or_else(|| {
            if suite.ends_with("-security") {
                DEBIAN_SECURITY_MIRROR.into()
            } else {
                DEBIAN_MIRROR.into()
            }
        })
}

/// `VERSION_CODENAME` from os-release.
pub fn os_release_codename(text: &str) -> Option<String> {
    os_release_field(text, "VERSION_CODENAME")
}

/// One `KEY=value` of os-release, unquoted (`None` when absent or empty).
pub fn os_release_field(text: &str, key: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .map(|v| v.trim().trim_matches('"').trim_matches('\'').to_owned())
        .filter(|v| !v.is_empty())
}

/// The first `deb` URI serving exactly `suite` in a deb822 `.sources` file.
pub fn mirror_from_deb822(text: &str, suite: &str) -> Option<String> {
    for stanza in text.split("\n\n") {
        let field = |name: &str| -> Option<String> {
            stanza.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim().eq_ignore_ascii_case(name) && !l.starts_with('#'))
                    .then(|| v.trim().to_owned())
            })
        };
        let enabled = field("Enabled").is_none_or(|v| v != "no");
        let types = field("Types").unwrap_or_default();
        let suites = field("Suites").unwrap_or_default();
        if enabled
            && types.split_whitespace().any(|t| t == "deb")
            && suites.split_whitespace().any(|s| s == suite)
            && let Some(uri) =
                field("URIs").and_then(|u| u.split_whitespace().next().map(str::to_owned))
        {
            return Some(uri);
        }
    }
    None
}

/// The first `deb URI suite …` line for `suite` in a one-line-style `.list` file.
pub fn mirror_from_list(text: &str, suite: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let words: Vec<&str> = l.split_whitespace().collect();
        if words.first() != Some(&"deb") {
            return None;
        }
        let mut i = 1;
        // Skip an options block like `[arch=amd64 signed-by=…]`.
        if words.get(1).is_some_and(|w| w.starts_with('[')) {
            i += words[1..].iter().position(|w| w.ends_with(']'))? + 1;
        }
        (words.get(i + 1) == Some(&suite)).then(|| words[i].to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn deb822_mirror_is_found_for_the_suite() {
        let text = "Types: deb\n# http://snapshot.debian.org/archive/debian/20250520T000000Z\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\nTypes: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\nComponents: main\n";
        assert_eq!(
            mirror_from_deb822(text, "bookworm").as_deref(),
            Some("http://deb.debian.org/debian")
        );
        assert_eq!(
            mirror_from_deb822(text, "bookworm-security").as_deref(),
            Some("http://deb.debian.org/debian-security")
        );
        assert_eq!(mirror_from_deb822(text, "trixie"), None);
        let disabled = "Enabled: no\nTypes: deb\nURIs: http://x/debian\nSuites: bookworm\n";
        assert_eq!(mirror_from_deb822(disabled, "bookworm"), None);
    }

    #[test]
    fn list_mirror_is_found_for_the_suite() {
        let text = "# comment\ndeb-src http://src/debian bookworm main\ndeb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main contrib\ndeb http://other/debian bookworm-updates main\n";
        assert_eq!(
            mirror_from_list(text, "bookworm").as_deref(),
            Some("http://m.example/debian")
        );
        assert_eq!(
            mirror_from_list(text, "bookworm-updates").as_deref(),
            Some("http://other/debian")
        );
        assert_eq!(mirror_from_list(text, "sid"), None);
    }

    #[test]
    fn os_release_fields() {
        let t = "NAME=\"Debian\"\nID=debian\nVERSION_CODENAME=bookworm\nID_LIKE=\n";
        assert_eq!(os_release_codename(t).as_deref(), Some("bookworm"));
        assert_eq!(os_release_field(t, "ID").as_deref(), Some("debian"));
        assert_eq!(os_release_field(t, "ID_LIKE"), None);
        assert_eq!(os_release_codename("NAME=x\n"), None);
    }

    #[test]
    fn the_machine_source_wins_then_the_redirector() {
        let files: BTreeMap<&str, &str> = [
            (
                "/etc/apt/sources.list.d/b.sources",
                "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n",
            ),
            (
                "/etc/apt/sources.list.d/a.txt",
                "deb http://ignored bookworm main\n",
            ),
            (
                "/etc/apt/sources.list",
                "deb http://list.example/debian trixie main\n",
            ),
        ]
        .into_iter()
        .collect();
        let list = |d: &Path| {
            files
                .keys()
                .map(PathBuf::from)
                .filter(|p| p.parent() == Some(d))
                .collect()
        };
        let read = |p: &Path| files.get(p.to_str().unwrap()).map(|s| (*s).to_owned());
        assert_eq!(
            machine_mirror("bookworm", list, read),
            "http://mirror.example/debian"
        );
        assert_eq!(
            machine_mirror("trixie", list, read),
            "http://list.example/debian"
        );
        assert_eq!(machine_mirror("bullseye", list, read), DEBIAN_MIRROR);
        assert_eq!(
            machine_mirror("bullseye-security", list, read),
            DEBIAN_SECURITY_MIRROR
        );
    }
}
