//! Restoring a cluster from a backup: what etcd's restore computes and writes.
//!
//! * [`ids`]: member and cluster ids exactly as etcd derives them from peer URLs and the
//!   cluster token, so a plan can say in advance what `member list` will show.
//! * [`native`]: members' data dirs written without etcdutl, byte-identical to its output.
//! * [`topology`]: the operator's description of the restored cluster, validated with the
//!   key and line of every problem.
//! * [`plan`]: topology + verified backup → `plan.json`; [`runbook`]: RUNBOOK.md and the
//!   per-node scripts.
//! * [`planner`]: `restore plan` from start to finish (verify, plan, expectations, files).
//! * [`replace`]: one broken member of a healthy cluster replaced (`--mode replace-member`).
//! * [`apply`]: one node's data steps, on this machine; [`guard`]: the rails around them (no
//!   write under a running etcd, one plan per cluster), shared with the scripts.
//! * [`predict`]: what the restored cluster will answer (revision, hashkv, key count),
//!   computed offline for `plan.json`; [`check`]: `restore check`, the running restored
//!   cluster compared with it.
//! * [`pitr`]: `restore plan --to-revision/--to-time`: base backup, records, expectations;
//! * [`replay`]: a restore to a revision: captured changes replayed onto a full backup's db.
//! * [`selftest`]: `restore test`, a backup booted in a throwaway etcd and checked;
//!   [`sandbox_etcd`]: which etcd it boots (the backup's own release unless told).
pub mod apply;
pub mod check;
pub mod guard;
pub mod ids;
pub mod native;
pub mod pitr;
pub mod plan;
pub mod planner;
pub mod predict;
pub mod replace;
pub mod replay;
pub mod runbook;
pub mod sandbox_etcd;
pub mod selftest;
pub mod topology;
