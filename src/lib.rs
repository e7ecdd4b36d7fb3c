//! lifeboat: backs up etcd clusters, proves each backup is good, and walks operators
//! through restoring a cluster after disaster.
//!
//! The modules follow the data:
//!
//! * [`source`]: where bytes come from (a live etcd cluster over the Maintenance API).
//! * [`pipeline`]: what happens to them in flight (trailer check, SHA-256, framed zstd).
//! * [`store`]: where they land (a local directory; S3 with the `s3` feature), behind one
//!   small trait, with fan-out and retry as wrappers.
//! * [`catalog`]: what is recorded about them (backup ids, manifests, retention).
//! * [`format`]: offline readers of etcd's on-disk formats (bbolt, etcd buckets, WAL,
//!   snap files, capture segments): the `lifeboat-format` crate. They take bytes, know
//!   nothing of networks, and never trust a length.
//! * [`offline`]: `inspect`, `get` and `diff` over snapshots and backups, never answering from
//!   a page or file that failed a check.
//! * [`member`]: verdicts on a member's data dir, built on the readers.
//! * [`live`]: verdicts on a running cluster (`status`), built on [`source`]'s survey.
//! * [`jobs`]: the commands' work (backup, verify, fetch ...), callable without a process.
//! * [`restore`]: plans, each node's data steps, and the native writer of member data dirs.
//! * [`daemon`], [`metrics`]: the scheduler (`lifeboat run`) and what it reports.
//! * [`config`]: one configuration merged from file, environment and flags.
//! * [`cli`]: the edge: flag parsing, merging flags into the one configuration, output
//!   and exit codes.

// No unsafe code, except the three libc calls that have no safe wrapper, each allowed
// where it stands and only on Linux: `fallocate` (restore/native/dirs.rs) and glibc's
// `mallopt`/`malloc_trim` (daemon/memory.rs). See DESIGN.md, "Unsafe code".
#![deny(unsafe_code)]

pub mod catalog;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod error;
pub mod host;
pub mod jobs;
pub mod live;
pub mod member;
pub mod metrics;
pub mod offline;
pub mod pipeline;
pub mod restore;
pub mod source;
pub mod store;
pub mod task;
pub mod timestamp;
pub mod units;

#[cfg(test)]
mod layering;

pub use error::{Error, ExitCode, Result};
/// The offline format readers and writers, and the positional-read seam under them, live in
/// their own crate (crates/lifeboat-format); these paths keep their place in lifeboat's tree.
pub use lifeboat_format as format;
pub use lifeboat_format::io;
