//! POSIX shell quoting, re-exported from its home, [`tarmac_types::shell`].

pub use tarmac_types::shell::{join, quote};
