//! POSIX shell quoting: the one quoter of the workspace (remote commands, generated scripts,
//! environment exports, install.sh templates).

/// Quote `s` so a POSIX shell reads it back as exactly one word with the same bytes.
/// Words made only of safe characters are left alone so logged commands stay readable.
pub fn quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'_' | b'-' | b'.' | b'/' | b':' | b'=' | b'@' | b'%' | b'+' | b','
                )
        });
    if safe {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// Quote every word and join with spaces: an argv as one shell command line.
pub fn join<I, S>(argv: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    argv.into_iter()
        .map(|a| quote(a.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_exactly() {
        assert_eq!(quote("abc"), "abc");
        assert_eq!(
            quote("/opt/tarmac/bin:x=1,y@z%+"),
            "/opt/tarmac/bin:x=1,y@z%+"
        );
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote("$HOME"), "'$HOME'");
        assert_eq!(quote("a\nb"), "'a\nb'");
        assert_eq!(quote("*"), "'*'");
        assert_eq!(quote("~"), "'~'");
        assert_eq!(
            join(["echo", "hello world", "it's"]),
            "echo 'hello world' 'it'\\''s'"
        );
    }

    #[test]
    fn round_trips_through_sh() {
        for s in [
            "plain",
            "a b",
            "it's",
            "$(rm -rf /)",
            "`x`",
            "\"q\"",
            "a\\b",
            "\n\t",
            "'",
            "''",
            "é ü",
        ] {
            let out = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(format!("printf %s {}", quote(s)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), s, "{s:?}");
        }
    }
}
