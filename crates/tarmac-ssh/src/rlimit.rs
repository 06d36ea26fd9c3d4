//! Raising `RLIMIT_NOFILE`: every connection holds a socket, every running step a log file.

use std::sync::OnceLock;

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Raise the soft open-file limit to the hard limit (once per process) and return the
/// resulting soft limit.
pub fn raise_nofile_limit() -> u64 {
    static LIMIT: OnceLock<u64> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        let cur = getrlimit(Resource::Nofile);
        let soft = cur.current.unwrap_or(u64::MAX);
        let hard = cur.maximum;
        let want = hard.unwrap_or(1 << 20).min(1 << 20);
        if soft < want
            && setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: Some(want),
                    maximum: hard,
                },
            )
            .is_ok()
        {
            return want;
        }
        soft
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn raises_to_at_least_the_old_soft_limit() {
        let before = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(u64::MAX);
        let now = super::raise_nofile_limit();
        assert!(now >= before.min(1 << 20));
    }
}
