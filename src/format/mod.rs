//! Offline readers of etcd's on-disk formats (see `../shared/docs/etcd-formats.md`).
//!
//! Everything here takes bytes (or a [`crate::io::ReadAt`]), returns typed results and never
//! trusts a length, offset or page id it has not checked. No networking, no CLI.

pub mod bolt;
pub mod etcd;
pub mod snap;
pub mod wal;
