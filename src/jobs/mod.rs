//! The commands' work, as library functions that tests can call without a process.
//!
//! `backup` and `verify` share what reads a stored backup back through
//! [`crate::catalog::readback`]; neither imports the other. [`run`] is one backup run
//! (backup, prune, metrics) for the CLI and the daemon; [`verify`], [`scrub`] and
//! [`prune`] add their methods to [`crate::catalog::Repository`].

pub mod backup;
pub mod capture;
pub mod fetch;
pub mod hostlock;
pub mod prune;
pub mod run;
pub mod scrub;
pub mod stage;
pub mod verify;

pub use stage::Stage;
