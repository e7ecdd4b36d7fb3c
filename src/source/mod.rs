//! Where backup bytes come from: a live etcd cluster.

pub mod etcd;
