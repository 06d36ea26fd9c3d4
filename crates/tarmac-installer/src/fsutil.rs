//! The installer's atomic write, re-exported from its home in tarmac-fsx (kept for the callers
//! inside `upgrade.rs`; new code calls [`tarmac_fsx::write_atomic_in_private_dir`]).

pub use tarmac_fsx::write_atomic_in_private_dir as write_atomic;
