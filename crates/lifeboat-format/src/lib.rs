//! Offline readers (and the few writers a restore needs) of etcd's on-disk formats, as
//! lifeboat uses them: a crate of its own so that nothing here can reach a network, a store
//! or the CLI (its only dependencies are small decoding crates).
//!
//! Everything here takes bytes (or a [`crate::io::ReadAt`]), returns typed results and never
//! trusts a length, offset or page id it has not checked. No networking, no CLI.
//!
//! [`wire`] is the one protobuf wire reader for all of them (WAL records, snap files, etcd's
//! bucket values), with gogo-protobuf 1.3.2's notion of what fails to unmarshal.

#![deny(unsafe_code)]

pub mod bolt;
pub mod capture;
pub mod etcd;
pub mod io;
pub mod snap;
pub mod wal;
pub mod wire;
