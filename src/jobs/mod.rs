//! The commands' work, as library functions that tests can call without a process.
//!
//! `backup` and `verify` share what reads a stored backup back through [`readback`];
//! neither imports the other.

pub mod backup;
pub mod fetch;
pub mod hostlock;
pub mod prune;
pub mod readback;
pub mod run;
pub mod scrub;
pub mod verify;
