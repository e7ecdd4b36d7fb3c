//! Offline readers of etcd's on-disk formats.
//!
//! Everything here takes bytes (or a [`crate::io::ReadAt`]), returns typed results and never
//! trusts a length, offset or page id it has not checked. No networking, no CLI.
//!
//! [`wire`] is the one protobuf wire reader for all of them (WAL records, snap files, etcd's
//! bucket values), with gogo-protobuf 1.3.2's notion of what fails to unmarshal.

pub mod bolt;
pub mod capture;
pub mod etcd;
pub mod snap;
pub mod wal;
pub mod wire;
