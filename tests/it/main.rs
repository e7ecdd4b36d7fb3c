//! The integration tests: one binary (it compiles `common` once and links once), one module per
//! area. Run one area with `cargo test --test it <module>::`, e.g. `cargo test --test it s3::`.

mod common;

mod backup;
mod backup_manifest;
mod capture;
mod check_member;
mod cli;
mod config;
mod encryption;
mod etcd_versions;
mod golden;
mod harness;
mod inspect;
mod live_errors;
mod native_restore;
mod offline_integrity;
mod pitr;
mod restore;
mod restore_check;
mod restore_guard;
mod restore_selftest;
mod robustness;
mod s3;
mod schedule_daemon;
mod schedule_oneshot;
mod schedule_prune;
mod schedule_systemd;
mod soak;
mod status;
mod wal_dump;
mod wal_robustness;
