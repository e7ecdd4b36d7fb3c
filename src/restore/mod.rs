//! Restoring a cluster from a backup: what etcd's restore computes and writes.
//!
//! * [`ids`]: member and cluster ids exactly as etcd derives them from peer URLs and the
//!   cluster token, so a plan can say in advance what `member list` will show.
//! * [`native`]: members' data dirs written without etcdutl, byte-identical to its output.
pub mod ids;
pub mod native;
