//! Builders for the exact command lines sent to a host. Pure functions, tested with exact strings.
//!
//! Every command runs under a small POSIX `sh` wrapper that
//! 1. prints the process group id and pid of the command on stderr as a marker line
//!    (`\x1etarmac-pgid:<pgid> <pid>`), so the engine can end the whole group on timeout or Ctrl-C
//!    from a second channel (`kill -TERM -<pgid>`, then `-KILL`; the XSI form, as dash rejects `--`), and
//! 2. when the command takes no input, starts a watcher (a subshell) that waits for the
//!    channel's stdin to close. If the channel goes away while the command still runs (the
//!    controller died, the connection broke, the engine closed the channel on a deadline), the
//!    watcher ends the command's process group. sshd itself never kills a command whose channel
//!    closed (no pty), so without it a timed-out `sleep 1000` would live on.
//!
//! With sudo the wrapper itself runs as root, so the marker names the root process group and
//! the watcher can end it.

use std::time::Duration;

use tarmac_types::Digest;

use tarmac_types::shell::quote;

/// The marker line the wrapper prints first on stderr.
pub const PGID_MARKER: &str = "\u{1e}tarmac-pgid:";
/// The marker line carrying the sha256 of a downloaded file.
pub const SHA_MARKER: &str = "\u{1e}tarmac-sha256:";

/// Exit status of the upload script when the received bytes do not match the expected sha256.
pub const EXIT_CHECKSUM: u32 = 76;
/// Exit status of the upload script when the file could not be written.
pub const EXIT_WRITE: u32 = 75;

/// How a command gains root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Become {
    /// Run as the login user.
    No,
    /// `sudo -n`: passwordless sudo (fails at once if a password would be needed).
    Sudo,
    /// `sudo -k -S -p ''`: the password is the first line the engine writes on stdin. `-k`
    /// makes sudo always read it, so the line never leaks into the command's input.
    SudoPassword,
}

impl Become {
    /// Does the engine have to write the password line first?
    pub fn needs_password_line(self) -> bool {
        self == Become::SudoPassword
    }
}

/// The wrapper program. `$1` is the command, `$2` is `w` to start the stdin watcher.
///
/// The marker carries the process group and the pid of the command. The watcher is a
/// subshell (a fork, no exec: cheap) in the same process group; it ignores TERM so that
/// ending the group with TERM leaves it alive to follow up with KILL.
const WRAPPER: &str = r#"read -r _ _ _ _ g _ </proc/$$/stat 2>/dev/null || g=$$
printf '\036tarmac-pgid:%s %s\n' "$g" "$$" >&2
if [ "$2" = w ]; then
exec 3<&0
(trap '' TERM; while read -r _; do :; done; kill -0 $$ 2>/dev/null || exit 0; kill -TERM -$g 2>/dev/null; sleep 2; kill -KILL -$g 2>/dev/null) <&3 >/dev/null 2>&1 &
exec /bin/sh -c "$1" </dev/null 3<&-
fi
exec /bin/sh -c "$1""#;

/// The command line to send for `command`.
///
/// `watch`: the command reads nothing from stdin (it gets `/dev/null`) and is ended when the
/// channel closes before it finishes. Commands that consume stdin (uploads) end on EOF instead.
pub fn wrap(command: &str, become_: Become, watch: bool) -> String {
    let prog = match become_ {
        Become::No => "exec /bin/sh -c",
        Become::Sudo => "exec sudo -n -- /bin/sh -c",
        Become::SudoPassword => "exec sudo -k -S -p '' -- /bin/sh -c",
    };
    format!(
        "{prog} {} tarmac {} {}",
        quote(WRAPPER),
        quote(command),
        if watch { "w" } else { "-" }
    )
}

/// Ends the command `pid` and its process group `pgid`: TERM to the group, up to `grace` for
/// the command to go, then KILL to whatever is left of the group (the watcher included).
/// Wrap it with the same [`Become`] as the command it ends.
pub fn kill_group(pgid: u32, pid: u32, grace: Duration) -> String {
    let tenths = (grace.as_millis() / 100).max(1);
    format!(
        "kill -TERM -{pgid} 2>/dev/null || exit 0; i=0; while [ $i -lt {tenths} ] && kill -0 {pid} 2>/dev/null; do \
         sleep 0.1; i=$((i+1)); done; kill -KILL -{pgid} 2>/dev/null; exit 0"
    )
}

/// `sudo -n true`: exit 0 when the login user may use sudo without a password.
pub const SUDO_PROBE: &str = "sudo -n true";

/// Receives exactly the bytes on stdin into `dest`: written to a temporary file in the same
/// directory, checked against `sha256`, given `mode`, synced, then renamed over `dest`.
/// A partial or corrupt transfer never replaces `dest`.
pub fn upload(dest: &str, sha256: &Digest, mode: u32) -> String {
    let (dir, name) = match dest.rsplit_once('/') {
        Some(("", name)) => ("/".to_owned(), name.to_owned()),
        Some((dir, name)) => (dir.to_owned(), name.to_owned()),
        None => (".".to_owned(), dest.to_owned()),
    };
    let tmp_prefix = if dir == "/" {
        format!("/.{name}")
    } else {
        format!("{dir}/.{name}")
    };
    let d = quote(dest);
    let sha = sha256.hex();
    format!(
        "mkdir -p -- {dir} || exit {EXIT_WRITE}; t={tmp}.tarmac-tmp.$$; \
         if ! (umask 077; cat >\"$t\"); then rm -f -- \"$t\"; echo \"tarmac: cannot write $t\" >&2; exit {EXIT_WRITE}; fi; \
         s=$(sha256sum <\"$t\") || {{ rm -f -- \"$t\"; exit {EXIT_WRITE}; }}; s=${{s%% *}}; \
         if [ \"$s\" != {sha} ]; then rm -f -- \"$t\"; echo \"tarmac: checksum mismatch for \"{d}\": expected {sha}, got $s\" >&2; exit {EXIT_CHECKSUM}; fi; \
         chmod {mode:o} \"$t\" && {{ sync -- \"$t\" 2>/dev/null || true; }} && mv -f -- \"$t\" {d} || {{ rm -f -- \"$t\"; exit {EXIT_WRITE}; }}",
        dir = quote(&dir),
        tmp = quote(&tmp_prefix),
    )
}

/// Writes the file on stdout, then its sha256 as a marker line on stderr.
pub fn download(path: &str) -> String {
    let p = quote(path);
    format!(
        "cat -- {p} || exit $?; s=$(sha256sum <{p}) || exit $?; printf '\\036tarmac-sha256:%s\\n' \"${{s%% *}}\" >&2"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_plain() {
        let w = wrap("echo hi", Become::No, true);
        assert!(
            w.starts_with("exec /bin/sh -c 'read -r _ _ _ _ g _ </proc/$$/stat"),
            "{w}"
        );
        assert!(
            w.ends_with("exec /bin/sh -c \"$1\"' tarmac 'echo hi' w"),
            "{w}"
        );
        let w = wrap("cat", Become::No, false);
        assert!(w.ends_with(" tarmac cat -"), "{w}");
    }

    #[test]
    fn wrap_sudo() {
        assert!(wrap("id -u", Become::Sudo, true).starts_with("exec sudo -n -- /bin/sh -c 'read "));
        assert!(
            wrap("id -u", Become::SudoPassword, true)
                .starts_with("exec sudo -k -S -p '' -- /bin/sh -c 'read ")
        );
        assert!(Become::SudoPassword.needs_password_line());
        assert!(!Become::Sudo.needs_password_line());
    }

    #[test]
    fn kill_script_exact() {
        assert_eq!(
            kill_group(4242, 4250, Duration::from_secs(2)),
            "kill -TERM -4242 2>/dev/null || exit 0; i=0; while [ $i -lt 20 ] && kill -0 4250 2>/dev/null; do \
             sleep 0.1; i=$((i+1)); done; kill -KILL -4242 2>/dev/null; exit 0"
        );
    }

    #[test]
    fn upload_script_exact() {
        let d = Digest::of(b"abc");
        assert_eq!(
            upload("/opt/tarmac/boot strap.tar", &d, 0o644),
            "mkdir -p -- /opt/tarmac || exit 75; t='/opt/tarmac/.boot strap.tar'.tarmac-tmp.$$; \
             if ! (umask 077; cat >\"$t\"); then rm -f -- \"$t\"; echo \"tarmac: cannot write $t\" >&2; exit 75; fi; \
             s=$(sha256sum <\"$t\") || { rm -f -- \"$t\"; exit 75; }; s=${s%% *}; \
             if [ \"$s\" != ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad ]; then rm -f -- \"$t\"; \
             echo \"tarmac: checksum mismatch for \"'/opt/tarmac/boot strap.tar'\": expected \
             ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad, got $s\" >&2; exit 76; fi; \
             chmod 644 \"$t\" && { sync -- \"$t\" 2>/dev/null || true; } && mv -f -- \"$t\" \
             '/opt/tarmac/boot strap.tar' || { rm -f -- \"$t\"; exit 75; }"
        );
        assert!(
            upload("/x", &d, 0o600).starts_with("mkdir -p -- / || exit 75; t=/.x.tarmac-tmp.$$;")
        );
        assert!(
            upload("rel", &d, 0o600)
                .starts_with("mkdir -p -- . || exit 75; t=./.rel.tarmac-tmp.$$;")
        );
    }

    #[test]
    fn download_script_exact() {
        assert_eq!(
            download("/var/log/a b"),
            "cat -- '/var/log/a b' || exit $?; s=$(sha256sum <'/var/log/a b') || exit $?; \
             printf '\\036tarmac-sha256:%s\\n' \"${s%% *}\" >&2"
        );
    }
}
