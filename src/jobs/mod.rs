//! The commands' work, as library functions that tests can call without a process.
//!
//! `backup` and `verify` share what reads a stored backup back through [`readback`];
//! neither imports the other.

pub mod backup;
pub mod fetch;
pub mod hostlock;
pub mod prune;
pub mod readback;
pub mod scrub;
pub mod stage;
pub mod verify;

pub use stage::Stage;

/// Moved to the catalog (what a backup is belongs there); kept here for callers.
pub use crate::catalog::open_backup_db;
